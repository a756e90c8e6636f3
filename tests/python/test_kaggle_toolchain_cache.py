#!/usr/bin/env python3
"""The Kaggle setup cell's toolchain cache (kernel/kaggle_setup.py): what the toolchain kernel
packs, how a training session finds it, which parts it restores and what it says when the
versions (rustc, libtorch, Cargo.lock) do not match."""
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import tempfile
import unittest
import zipfile

os.environ["EMERGENCE_LAB_SETUP_NO_RUN"] = "1"
_path = os.path.join(os.path.dirname(__file__), "..", "..", "kernel", "kaggle_setup.py")
_spec = importlib.util.spec_from_file_location("kaggle_setup", _path)
setup = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(setup)


def write(path, data=b"x", mtime=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def printed(fn, *args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = fn(*args)
    return result, out.getvalue()


class Decision(unittest.TestCase):
    M = {"rustc": "rustc 1.91.0", "libtorch_version": "2.11.0+cu128", "libtorch_path": "/k/t/torch",
         "cargo_lock_sha256": "abc"}

    def test_everything_matches(self):
        self.assertEqual(setup._build_folder_decision(self.M, "rustc 1.91.0", "2.11.0+cu128", "/k/t/torch", "abc"),
                         (True, []))

    def test_other_rustc_is_not_restored_and_says_why(self):
        restore, notes = setup._build_folder_decision(self.M, "rustc 1.92.0", "2.11.0+cu128", "/k/t/torch", "abc")
        self.assertFalse(restore)
        self.assertIn("rustc 1.92.0", notes[0])
        self.assertIn("rustc 1.91.0", notes[0])
        self.assertIn("kaggle_run --toolchain", notes[0])

    def test_other_libtorch_or_lock_restores_and_names_the_rebuild(self):
        restore, notes = setup._build_folder_decision(self.M, "rustc 1.91.0", "2.11.0+cu126", "/k/t/torch", "def")
        self.assertTrue(restore)
        self.assertEqual(len(notes), 2, notes)
        self.assertIn("torch-sys, tch and the library are rebuilt", notes[0])
        self.assertIn("2.11.0+cu126", notes[0])
        self.assertIn("Cargo.lock differs", notes[1])
        restore, notes = setup._build_folder_decision(self.M, "rustc 1.91.0", "2.11.0+cu128", "/other", "abc")
        self.assertTrue(restore)
        self.assertIn("/other", notes[0])


class PackAndRestore(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.d = self.tmp.name
        self.build = os.path.join(self.d, "evcxr")
        write(os.path.join(self.build, "Cargo.lock"), b"lock")
        write(os.path.join(self.build, "target/debug/deps/libtch-1.rlib"), b"tch", mtime=1_000_000)
        write(os.path.join(self.build, "target/debug/incremental/code-1/x"), b"big")
        write(os.path.join(self.build, "target/debug/deps/libcode_3.so"), b"cell")
        self.evcxr = os.path.join(self.d, "tools/evcxr_jupyter")
        write(self.evcxr, b"evcxr_jupyter-0.22.0")
        self.libtorch = os.path.join(self.d, "torch-2.11.0-cu128/torch")
        write(os.path.join(self.libtorch, "version.py"), b"__version__ = '2.11.0+cu128'\n")
        write(os.path.join(self.libtorch, "lib/libtorch.so"), b"so")
        write(os.path.join(self.d, "torch-2.11.0-cu128/nvidia/lib/libcudart.so"), b"cudart")
        self.inputs = os.path.join(self.d, "input")
        self.out = os.path.join(self.inputs, "emergence-lab-toolchain")

    def tearDown(self):
        self.tmp.cleanup()

    def test_pack_find_restore(self):
        m = setup._emergence_lab_pack_toolchain(self.out, self.evcxr, self.build, self.libtorch, "cu128", b"lock")
        self.assertEqual(m["libtorch_version"], "2.11.0+cu128")
        self.assertEqual(m["cargo_lock_sha256"], hashlib.sha256(b"lock").hexdigest())
        self.assertEqual(m["rustc"], setup._rustc_version())
        found = setup._find_toolchain_cache(self.inputs)
        self.assertIsNotNone(found)
        self.assertEqual(found[0], self.out)
        self.assertEqual(found[1]["files"]["libtorch"], "libtorch.tar")
        self.assertTrue(os.path.isfile(os.path.join(self.out, "bin", "evcxr_jupyter")))

        dest = os.path.join(self.d, "session", "evcxr")
        _, text = printed(setup._restore_build_folder, found, dest, self.libtorch, b"lock")
        self.assertIn("rustc, libtorch and Cargo.lock match", text)
        rlib = os.path.join(dest, "target/debug/deps/libtch-1.rlib")
        self.assertTrue(os.path.isfile(rlib), text)
        self.assertEqual(int(os.path.getmtime(rlib)), 1_000_000, "mtimes kept: cargo compares them")
        self.assertFalse(os.path.exists(os.path.join(dest, "target/debug/incremental")), "no incremental caches")
        self.assertFalse(os.path.exists(os.path.join(dest, "target/debug/deps/libcode_3.so")), "no cell libraries")

        # A folder that already holds a build is left alone.
        _, text = printed(setup._restore_build_folder, found, dest, self.libtorch, b"lock")
        self.assertIn("already holds a build", text)

        # A different Cargo.lock still restores, and says what is rebuilt.
        dest2 = os.path.join(self.d, "session2", "evcxr")
        _, text = printed(setup._restore_build_folder, found, dest2, self.libtorch, b"other lock")
        self.assertIn("Cargo.lock differs", text)
        self.assertTrue(os.path.isfile(os.path.join(dest2, "target/debug/deps/libtch-1.rlib")))

        # libtorch: unpacked next to where it was, torch/ and nvidia/ together.
        setup._extract(os.path.join(self.out, "libtorch.tar"), os.path.join(self.d, "temp"))
        self.assertTrue(os.path.isfile(os.path.join(self.d, "temp/torch-2.11.0-cu128/nvidia/lib/libcudart.so")))
        self.assertEqual(setup._libtorch_version(os.path.join(self.d, "temp/torch-2.11.0-cu128/torch")),
                         "2.11.0+cu128")

    def test_other_rustc_keeps_the_build_folder_out(self):
        setup._emergence_lab_pack_toolchain(self.out, self.evcxr, self.build, self.libtorch, None, b"lock")
        found = setup._find_toolchain_cache(self.inputs)
        found[1]["rustc"] = "rustc 0.0.1 (not this one)"
        dest = os.path.join(self.d, "session", "evcxr")
        _, text = printed(setup._restore_build_folder, found, dest, self.libtorch, b"lock")
        self.assertIn("not restored", text)
        self.assertFalse(os.path.exists(os.path.join(dest, "target")))
        self.assertNotIn("libtorch", found[1]["files"], "no libtorch packed when not asked")

    def test_unreadable_or_foreign_manifests_are_skipped(self):
        write(os.path.join(self.inputs, "a", setup.TOOLCHAIN_MANIFEST), b"{not json")
        write(os.path.join(self.inputs, "b", setup.TOOLCHAIN_MANIFEST), json.dumps({"format": 99}).encode())
        found, text = printed(setup._find_toolchain_cache, self.inputs)
        self.assertIsNone(found)
        self.assertIn("unreadable", text)
        self.assertIn("format 99", text)
        self.assertIsNone(printed(setup._find_toolchain_cache, os.path.join(self.d, "none"))[0])


class SourceLock(unittest.TestCase):
    def test_lock_from_the_source_archive_or_a_repository_copy(self):
        with tempfile.TemporaryDirectory() as d:
            self.assertIsNone(setup._source_cargo_lock(d))
            src = os.path.join(d, "emergence-lab-src")
            write(os.path.join(src, "emergence-lab-source.json"), b"{}")
            with zipfile.ZipFile(os.path.join(src, "emergence-lab-src.zip"), "w") as z:
                z.writestr("Cargo.lock", "from the zip")
            self.assertEqual(setup._source_cargo_lock(d), b"from the zip")
        with tempfile.TemporaryDirectory() as d:
            write(os.path.join(d, "repo", "Cargo.toml"), b'[package]\nname = "emergence_lab"\n')
            write(os.path.join(d, "repo", "Cargo.lock"), b"repo lock")
            write(os.path.join(d, "other", "Cargo.toml"), b'[package]\nname = "other"\n')
            self.assertEqual(setup._source_cargo_lock(d), b"repo lock")


if __name__ == "__main__":
    unittest.main()
