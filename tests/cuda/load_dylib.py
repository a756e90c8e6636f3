#!/usr/bin/env python3
"""Loads a dynamic library at run time, as evcxr loads a notebook cell, and prints what its
probe function returns: load_dylib.py LIBRARY FUNCTION."""
import ctypes
import sys

lib = ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)
fn = getattr(lib, sys.argv[2])
fn.restype = ctypes.c_char_p
print(fn().decode())
