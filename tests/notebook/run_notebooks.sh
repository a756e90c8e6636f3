#!/usr/bin/env bash
# Executes the notebooks for real (Test 1: the Rust notebook through the evcxr kernel, twice,
# fresh then resumed; the interrupt test; Test 2: the generated Kaggle notebook through a python3
# kernel and the %%rust bridge, offline, with Kaggle's folders mapped to a temporary folder).
# Usage: tests/notebook/run_notebooks.sh [validate|local|interrupt|kaggle|kaggle_gpu|kaggle_chain|plumbing ...]
#
# Tools come from caches that CI keeps when present (first run: evcxr_jupyter builds in ~15-30
# min on 2 cores; the first :dep build of the library in evcxr takes minutes, later runs reuse
# EVCXR_TMPDIR):
#   EMERGENCE_LAB_TOOLS         evcxr_jupyter (default ${XDG_CACHE_HOME:-$HOME/.cache}/emergence-lab/tools)
#   EMERGENCE_LAB_VENV          Python venv with Jupyter (default ${XDG_CACHE_HOME:-$HOME/.cache}/emergence-lab/venv)
#   EMERGENCE_LAB_EVCXR_TMPDIR  evcxr build folder (default ${XDG_CACHE_HOME:-$HOME/.cache}/emergence-lab/evcxr-tests)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO="$(pwd)"
start=$(date +%s)
stamp() { echo "== [notebooks $(( $(date +%s) - start ))s] $*"; }

export EMERGENCE_LAB_TOOLS="${EMERGENCE_LAB_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/emergence-lab/tools}"
export EMERGENCE_LAB_VENV="${EMERGENCE_LAB_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/emergence-lab/venv}"
export EMERGENCE_LAB_EVCXR_TMPDIR="${EMERGENCE_LAB_EVCXR_TMPDIR:-${XDG_CACHE_HOME:-$HOME/.cache}/emergence-lab/evcxr-tests}"

stamp "tools (evcxr_jupyter, Jupyter venv, libtorch)"
kernel/install_tools.sh all
python3 scripts/setup_libtorch.py >/dev/null
export LIBTORCH="${LIBTORCH:-$(cd .libtorch && pwd -P)}"
export EMERGENCE_LAB_EVCXR="$EMERGENCE_LAB_TOOLS/bin/evcxr_jupyter"
export PATH="$EMERGENCE_LAB_VENV/bin:$PATH"

stamp "crates of Cargo.lock (all platforms) into the cargo cache: the notebook builds run offline"
# A Linux build never downloads Windows-only crates of the lockfile (anstyle-wincon, ...), but
# evcxr's offline builds resolve the whole lockfile: fetch everything once, while online.
cargo fetch --locked

stamp "kernelspec into a private Jupyter data folder"
TEST_DIR="$(mktemp -d "${TMPDIR:-/tmp}/el-notebook-tests-XXXXXX")"
export EMERGENCE_LAB_TEST_DIR="$TEST_DIR"
export JUPYTER_DATA_DIR="$TEST_DIR/jupyter"
export EMERGENCE_LAB_KERNEL=emergence-lab-rust-test
EMERGENCE_LAB_KERNEL_NAME="$EMERGENCE_LAB_KERNEL" EVCXR_JUPYTER="$EMERGENCE_LAB_EVCXR" \
  OMP_NUM_THREADS=1 kernel/install.sh

stamp "Kaggle notebook generation (kaggle_notebook)"
cargo build --release --locked -p emergence_lab_scripts --bin kaggle_notebook --bin kaggle_push \
  --bin kaggle_run --bin kaggle_setup
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/kaggle_notebook"
export EMERGENCE_LAB_KAGGLE_PUSH_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/kaggle_push"
export EMERGENCE_LAB_KAGGLE_NB_BIN="$BIN"
export EMERGENCE_LAB_KAGGLE_RUN_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/kaggle_run"
export EMERGENCE_LAB_KAGGLE_SETUP_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/kaggle_setup"
export EMERGENCE_LAB_KAGGLE_NB="$TEST_DIR/kaggle_training.kaggle.ipynb"
"$BIN" --input notebooks/kaggle_training.ipynb --output "$EMERGENCE_LAB_KAGGLE_NB"

stamp "notebook tests"
export EMERGENCE_LAB_REPO="$REPO"
"$EMERGENCE_LAB_VENV/bin/python" tests/notebook/test_notebooks.py "$@"
rm -rf "$TEST_DIR"
stamp "notebook tests passed"
