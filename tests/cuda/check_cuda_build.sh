#!/usr/bin/env bash
# Proves, on a machine without a GPU, that a build against a CUDA libtorch gets torch's CUDA
# backend, both in our binaries (link time: build.rs keeps libtorch_cuda.so needed) and in code
# loaded the way evcxr loads notebook cells (run time: device::ensure_cuda_loaded). Without a GPU
# a tensor on cuda:0 must fail with a driver error ("Found no NVIDIA driver"), never with a
# missing-backend error; with a GPU it must succeed.
#
# Usage: tests/cuda/check_cuda_build.sh   (sets up the CUDA libtorch: ~2.2 GB download once,
# cached in ~/.cache/emergence-lab; builds into target-cuda/)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO="$(pwd)"
start=$(date +%s)
stamp() { echo "== [cuda $(( $(date +%s) - start ))s] $*"; }
passed=0
failed=0
check() { # check NAME CONDITION-EXIT-CODE DETAIL
  if [ "$2" -eq 0 ]; then passed=$((passed + 1)); echo "ok: $1"; else failed=$((failed + 1)); echo "FAILED: $1: $3"; fi
}

stamp "CUDA libtorch (PyPI wheels, pinned and hash-checked)"
python3 scripts/setup_libtorch.py --cuda
LT="$(cd .libtorch-cuda && pwd -P)"
export LIBTORCH="$LT"
export CARGO_TARGET_DIR="${EMERGENCE_LAB_CUDA_TARGET:-$REPO/target-cuda}"

stamp "build against it: train, the probe example, the evcxr-like probe library"
cargo build --release --locked -p emergence_lab --bin train --example cuda_probe
cargo build --release --locked -p emergence_lab_cuda_probe
BIN="$CARGO_TARGET_DIR/release"

gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then gpu=1; fi
expect_tensor() { # the cuda_tensor field a probe must report here
  if [ "$gpu" = 1 ]; then [ "$1" = ok ]; else
    case "$1" in
      *"Found no NVIDIA driver"*|*"no CUDA-capable device"*) return 0 ;;
      *) return 1 ;;
    esac
  fi
}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

stamp "1. link time: binaries keep libtorch_cuda.so"
for b in "$BIN/train" "$BIN/examples/cuda_probe"; do
  readelf -d "$b" | grep -q 'NEEDED.*\[libtorch_cuda.so\]'
  check "$(basename "$b") needs libtorch_cuda.so" $? "$(readelf -d "$b" | grep NEEDED | tr -s ' ' | cut -d' ' -f6 | tr '\n' ' ')"
done
out="$("$BIN/examples/cuda_probe")"
echo "   $out"
[ "$(field "$out" has_cudart)" = True ]
check "binary: CUDA backend registered before any library call" $? "$out"
expect_tensor "$(field "$out" cuda_tensor)"
check "binary: tensor on cuda:0 fails with a driver error (no GPU) or works (GPU)" $? "$out"

stamp "2. run time: a dynamic library loaded like an evcxr cell (LD_LIBRARY_PATH only)"
DYLIB="$BIN/libemergence_lab_cuda_probe.so"
if readelf -d "$DYLIB" | grep -q 'NEEDED.*\[libtorch_cuda.so\]'; then r=1; else r=0; fi
check "dylib does not link libtorch_cuda.so (as evcxr cells)" $r "it does: the control below proves nothing"
out="$(LD_LIBRARY_PATH="$LT/lib" python3 tests/cuda/load_dylib.py "$DYLIB" probe_without_loading)"
echo "   control: ${out:0:400}"
[ "$(field "$out" has_cudart)" = False ]
check "dylib control: without the run-time load torch has no CUDA backend" $? "$out"
out="$(LD_LIBRARY_PATH="$LT/lib" python3 tests/cuda/load_dylib.py "$DYLIB" probe_after_loading)"
echo "   $out"
[ "$(field "$out" has_cudart)" = True ]
check "dylib: ensure_cuda_loaded registers the CUDA backend" $? "$out"
expect_tensor "$(field "$out" cuda_tensor)"
check "dylib: tensor on cuda:0 fails with a driver error (no GPU) or works (GPU)" $? "$out"

if [ "$gpu" = 0 ]; then
  stamp "3. auto with a GPU that nvidia-smi shows but no driver: an error, not a CPU run"
  FAKE="$(mktemp -d)"
  cat > "$FAKE/nvidia-smi" <<'EOF'
#!/bin/sh
case "$1" in
  -L) echo "GPU 0: Tesla T4 (UUID: GPU-00000000-0000-0000-0000-000000000000)" ;;
  --query-gpu*) echo "0, Tesla T4, 7.5, 15360, 580.65.06" ;;
  *) echo "| NVIDIA-SMI 580.65.06   Driver Version: 580.65.06   CUDA Version: 13.0 |" ;;
esac
EOF
  chmod +x "$FAKE/nvidia-smi"
  set +e
  out="$(cd "$FAKE" && PATH="$FAKE:$PATH" RUST_BACKTRACE=0 "$BIN/train" --train.total-steps 64 --train.device auto 2>&1)"
  rc=$?
  set -e
  echo "   ${out:0:400}" | head -3
  [ $rc -ne 0 ] && [[ "$out" == *"no NVIDIA driver"* ]] && [[ "$out" != *"progress step="* ]]
  check "train (CUDA build) with a visible GPU and no driver fails naming the driver" $? "rc=$rc $out"
  rm -rf "$FAKE"
fi

stamp "done"
echo "cuda: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
