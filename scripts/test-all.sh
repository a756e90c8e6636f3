#!/usr/bin/env bash
# Sets everything up on a fresh machine and runs every test of emergence-lab.
# Needs only the Rust toolchain and Python 3 (with pip); downloads come from the package
# registries (crates.io, PyPI). Safe to re-run: every setup step is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - start ))s] $*"; }

stamp "libtorch (CPU) for tch"
python3 scripts/setup_libtorch.py

stamp "cargo test (release, whole workspace)"
cargo test --release --workspace --locked

stamp "criterion benchmarks compile (they hold the speed figures; not run here)"
cargo bench --workspace --locked --no-run

stamp "Kaggle setup cell: libtorch choice on recorded nvidia-smi answers; the toolchain cache"
python3 tests/python/test_kaggle_libtorch_choice.py
python3 tests/python/test_kaggle_toolchain_cache.py

stamp "CUDA build proven without a GPU (links and loads libtorch_cuda; driver error expected)"
bash tests/cuda/check_cuda_build.sh

stamp "notebooks executed for real (evcxr kernel, Kaggle rehearsal, interrupt)"
bash tests/notebook/run_notebooks.sh validate local interrupt kaggle kaggle_gpu kaggle_chain

stamp "all tests passed"
