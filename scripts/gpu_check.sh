#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU (from a fresh clone, with Rust and Python):
# sets up a CUDA libtorch, builds, prints the device line, trains 3 PPO iterations of the Kaggle
# config on CUDA and on the CPU (slot-steps/s of each), saves a checkpoint on CUDA and resumes
# it on the CPU and on CUDA (the CUDA continuation compared bit for bit with a straight run),
# runs one ablation, and ends with one JSON line of results and a verdict. Fails loudly (exit 1)
# when the run did not get the GPU. Target: under 5 minutes.
#
# libtorch, first found: $EMERGENCE_LAB_LIBTORCH; the Python torch 2.11.0 with CUDA of
# `python3` (no download); else `scripts/setup_libtorch.py --cuda` (~2.2 GB from PyPI, cached).
# GPU_CHECK_BIN=path/to/gpu_check skips the build (a binary built elsewhere against the same
# libtorch, e.g. for a machine without Rust). Extra arguments go to the check (e.g. --iters 4).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
stamp() { echo "== [gpu-check $(( $(date +%s) - start ))s] $*" >&2; }

stamp "GPU"
if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "GPU CHECK FAILED: nvidia-smi lists no GPU on this machine (run it where a GPU is)" >&2
  exit 1
fi
nvidia-smi --query-gpu=index,name,compute_cap,memory.total,driver_version --format=csv,noheader >&2

stamp "libtorch with CUDA"
if [ -n "${EMERGENCE_LAB_LIBTORCH:-}" ]; then
  LT="$EMERGENCE_LAB_LIBTORCH"
elif LT="$(python3 -c 'import os, torch; assert torch.__version__.split("+")[0] == "2.11.0" and torch.version.cuda; print(os.path.dirname(torch.__file__))' 2>/dev/null)"; then
  [ -f "$LT/build-version" ] || echo "2.11.0" > "$LT/build-version" 2>/dev/null || export LIBTORCH_BYPASS_VERSION_CHECK=1
else
  python3 scripts/setup_libtorch.py --cuda >&2
  LT="$(cd .libtorch-cuda && pwd -P)"
fi
[ -f "$LT/lib/libtorch_cuda.so" ] || { echo "GPU CHECK FAILED: $LT/lib has no libtorch_cuda.so (not a CUDA libtorch)" >&2; exit 1; }
echo "libtorch: $LT" >&2
export LIBTORCH="$LT"
export LD_LIBRARY_PATH="$LT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Deterministic cuBLAS, so a resumed run can continue bit for bit.
export CUBLAS_WORKSPACE_CONFIG="${CUBLAS_WORKSPACE_CONFIG:-:4096:8}"

BIN="${GPU_CHECK_BIN:-}"
if [ -z "$BIN" ]; then
  stamp "build (release, target-cuda/)"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-cuda}"
  cargo build --release --locked --bin gpu_check >&2
  BIN="$CARGO_TARGET_DIR/release/gpu_check"
fi
readelf -d "$BIN" | grep -q 'NEEDED.*\[libtorch_cuda.so\]' \
  || { echo "GPU CHECK FAILED: $BIN does not link libtorch_cuda.so" >&2; exit 1; }

stamp "check"
OUT="$(mktemp -d)"
set +e
"$BIN" --out "$OUT" "$@"
rc=$?
set -e
rm -rf "$OUT"
stamp "done (exit $rc)"
exit $rc
