#!/usr/bin/env bash
# Idempotent install of the notebook tooling: evcxr_jupyter (pinned, cargo install --locked)
# and a Python venv with the pinned Jupyter pieces (kernel/requirements-notebook.txt).
# Both live in a cache folder outside the repository that CI reuses when present:
#   EMERGENCE_LAB_TOOLS  (default ${XDG_CACHE_HOME:-$HOME/.cache}/emergence-lab/tools)  -> bin/evcxr_jupyter
#   EMERGENCE_LAB_VENV   (default ${XDG_CACHE_HOME:-$HOME/.cache}/emergence-lab/venv)   -> Python venv
# Re-running is instant when the right versions are already there.
set -euo pipefail

EVCXR_VERSION="${EVCXR_VERSION:-0.22.0}"
TOOLS="${EMERGENCE_LAB_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/emergence-lab/tools}"
VENV="${EMERGENCE_LAB_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/emergence-lab/venv}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQS="$HERE/requirements-notebook.txt"

log() { printf '[install_tools] %s\n' "$*" >&2; }

install_evcxr() {
  local bin="$TOOLS/bin/evcxr_jupyter"
  # evcxr_jupyter has no --version: cargo's install record says which version is there.
  if [[ -x "$bin" ]] && grep -qs "\"evcxr_jupyter $EVCXR_VERSION " "$TOOLS/.crates.toml"; then
    log "evcxr_jupyter $EVCXR_VERSION already in $TOOLS/bin"
    return
  fi
  command -v cargo >/dev/null || { log "cargo not found: install Rust (https://rustup.rs) first"; exit 1; }
  log "building evcxr_jupyter $EVCXR_VERSION into $TOOLS (about 15-30 minutes on 2 cores)"
  local start=$SECONDS
  mkdir -p "$TOOLS"
  CARGO_TARGET_DIR="$TOOLS/target" cargo install --locked evcxr_jupyter \
    --version "$EVCXR_VERSION" --root "$TOOLS"
  rm -rf "$TOOLS/target"   # build artefacts are not needed once the binary is installed
  log "evcxr_jupyter built in $((SECONDS - start)) s"
}

install_venv() {
  local stamp="$VENV/.requirements.sha256"
  local want
  want="$(sha256sum "$REQS" | cut -d' ' -f1)"
  if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    log "Python venv up to date in $VENV"
    return
  fi
  local py="${PYTHON:-python3}"
  log "creating Python venv in $VENV with $REQS"
  "$py" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS"
  echo "$want" > "$stamp"
}

case "${1:-all}" in
  evcxr) install_evcxr ;;
  venv) install_venv ;;
  all) install_venv; install_evcxr ;;
  *) echo "usage: $0 [all|evcxr|venv]" >&2; exit 2 ;;
esac
