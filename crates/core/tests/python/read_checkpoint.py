"""Reads an emergence-lab checkpoint with Python's safetensors + numpy and prints a JSON summary.

Used by tests/checkpoint_python.rs to prove the files are readable outside Rust:
`python3 read_checkpoint.py FILE` prints {"metadata": {...}, "tensors": {name: {...}}}.
"""
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def main(path):
    with safe_open(path, framework="np") as f:
        metadata = f.metadata()
        names = list(f.keys())
    arrays = load_file(path)
    assert sorted(arrays) == sorted(names)
    tensors = {}
    for name, a in arrays.items():
        tensors[name] = {
            "dtype": str(a.dtype),
            "shape": list(a.shape),
            "first": a.reshape(-1)[:8].tolist(),
            "sum": float(np.sum(a.astype(np.float64))),
        }
    # The JSON blobs in the metadata must parse.
    parsed = {k: json.loads(metadata[k]) for k in ("config", "trackers", "metrics")}
    print(json.dumps({"metadata": metadata, "tensors": tensors, "seed": parsed["config"]["train"]["seed"]}))


if __name__ == "__main__":
    main(sys.argv[1])
