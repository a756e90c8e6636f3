#!/usr/bin/env bash
# Installs (or refreshes) the `emergence-lab-rust` Jupyter kernelspec: evcxr_jupyter started
# through a wrapper that ignores SIGINT, with `interrupt_mode: signal`, so Jupyter's interrupt
# button reaches the training loop as a stop request (it saves a checkpoint and returns) instead
# of evcxr's stock SIGKILL of the cell's process. Idempotent; prints the kernelspec it wrote.
#
# Environment (all optional):
#   EVCXR_JUPYTER          evcxr_jupyter binary (default: PATH, then $EMERGENCE_LAB_TOOLS/bin)
#   EMERGENCE_LAB_TOOLS    tools cache of kernel/install_tools.sh (${XDG_CACHE_HOME:-$HOME/.cache}/emergence-lab/tools)
#   LIBTORCH               libtorch folder (default: the repo's .libtorch link, resolved)
#   EMERGENCE_LAB_EVCXR_TMPDIR  persistent evcxr build folder, reused between kernel starts
#                          (default ${XDG_CACHE_HOME:-$HOME/.cache}/emergence-lab/evcxr); never share one between
#                          two kernels running at the same time
#   EMERGENCE_LAB_KERNEL_NAME   kernelspec name (default emergence-lab-rust)
#   JUPYTER_DATA_DIR       Jupyter data folder (default $HOME/.local/share/jupyter)
#   OMP_NUM_THREADS        when set, passed to the kernel (libtorch threads)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
NAME="${EMERGENCE_LAB_KERNEL_NAME:-emergence-lab-rust}"
TOOLS="${EMERGENCE_LAB_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/emergence-lab/tools}"

die() { printf 'kernel/install.sh: %s\n' "$*" >&2; exit 1; }

EVCXR="${EVCXR_JUPYTER:-}"
if [[ -z "$EVCXR" ]]; then
  if [[ -x "$TOOLS/bin/evcxr_jupyter" ]]; then EVCXR="$TOOLS/bin/evcxr_jupyter"
  elif command -v evcxr_jupyter >/dev/null; then EVCXR="$(command -v evcxr_jupyter)"
  else die "evcxr_jupyter not found: run kernel/install_tools.sh evcxr (or set EVCXR_JUPYTER)"
  fi
fi
[[ -x "$EVCXR" ]] || die "EVCXR_JUPYTER=$EVCXR is not an executable file"
EVCXR="$(cd "$(dirname "$EVCXR")" && pwd)/$(basename "$EVCXR")"

TORCH="${LIBTORCH:-$REPO/.libtorch}"
[[ -d "$TORCH/lib" ]] || die "no libtorch at $TORCH (expected $TORCH/lib): run python3 scripts/setup_libtorch.py or set LIBTORCH"
TORCH="$(cd "$TORCH" && pwd -P)"

TMPD="${EMERGENCE_LAB_EVCXR_TMPDIR:-${XDG_CACHE_HOME:-$HOME/.cache}/emergence-lab/evcxr}"
mkdir -p "$TMPD"
TMPD="$(cd "$TMPD" && pwd -P)"
case "$TMPD/" in "$REPO"/*)
  [[ "$TMPD/" == "$REPO/notebooks/.evcxr/"* ]] || die "EVCXR_TMPDIR $TMPD is inside the cargo workspace; use a folder outside it or notebooks/.evcxr (excluded)";;
esac

# Each cell is a cdylib linked to the toolchain's libstd-*.so; evcxr relies on a relative rpath
# that misses it when the build folder is not at the depth it expects: name it explicitly.
command -v rustc >/dev/null || die "rustc not found: install Rust (https://rustup.rs)"
RUST_LIB="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/lib"
[[ -d "$RUST_LIB" ]] || die "no Rust standard library folder at $RUST_LIB"

DEST="${JUPYTER_DATA_DIR:-$HOME/.local/share/jupyter}/kernels/$NAME"
mkdir -p "$DEST"

python3 - "$DEST/kernel.json" "$EVCXR" "$TORCH" "$TMPD" "$NAME" "$RUST_LIB" <<'PY'
import json, os, sys
dest, evcxr, torch, tmpd, name, rust_lib = sys.argv[1:]
env = {
    "LIBTORCH": torch,
    "LD_LIBRARY_PATH": os.path.join(torch, "lib") + ":" + rust_lib,
    "EVCXR_TMPDIR": tmpd,
    # evcxr builds in cargo's dev profile (`:opt 2` sets only the optimisation level): without
    # these, debug assertions and overflow checks run in every hot loop of the library.
    "CARGO_PROFILE_DEV_DEBUG_ASSERTIONS": "false",
    "CARGO_PROFILE_DEV_OVERFLOW_CHECKS": "false",
}
if os.environ.get("OMP_NUM_THREADS"):
    env["OMP_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"]
spec = {
    # sh ignores SIGINT and execs evcxr_jupyter, which (and its cell worker) inherits the
    # ignore; a training call installs its own SIGINT handler, so the interrupt button becomes
    # a stop request. $0 = connection file, $1 = evcxr_jupyter.
    "argv": ["/bin/sh", "-c", "trap '' INT; exec \"$1\" --control_file \"$0\"",
             "{connection_file}", evcxr],
    "display_name": "Rust (emergence-lab)",
    "language": "rust",
    "interrupt_mode": "signal",
    "env": env,
    "metadata": {"emergence_lab": {"kernel": name}},
}
with open(dest + ".tmp", "w") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
os.replace(dest + ".tmp", dest)
PY
echo "installed kernelspec $NAME in $DEST (evcxr: $EVCXR, libtorch: $TORCH, EVCXR_TMPDIR: $TMPD)"
