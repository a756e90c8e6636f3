#!/usr/bin/env python3
"""Provide a CPU-only libtorch 2.11.0 for tch 0.24 on a fresh machine.

Downloads pinned, hash-checked wheels from PyPI (torch 2.11.0 plus the two small
NVIDIA runtime wheels its CPU library links against), assembles a CPU-only
libtorch folder in a cache outside the repository, and links it to `.libtorch`
in the repository root (where `.cargo/config.toml` points `LIBTORCH`).

Idempotent: when the cache is complete and the link is right it does nothing.
Needs only Python 3 with pip. See docs in README.md ("Building against CUDA").
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VERSION = "2.11.0"
WHEELS = {
    "torch==2.11.0": "7aa2f9bbc6d4595ba72138026b2074be1233186150e9292865e04b7a63b8c67a",
    "nvidia-cuda-runtime==13.0.96": "7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548",
    "nvidia-cuda-cupti==13.0.85": "4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8",
}
# (path inside a wheel, destination under the libtorch folder)
LIBS = [
    ("torch/lib/libtorch_cpu.so", "lib/libtorch_cpu.so"),
    ("torch/lib/libc10.so", "lib/libc10.so"),
    ("torch/lib/libgomp.so.1", "lib/libgomp.so.1"),
    ("nvidia/cu13/lib/libcudart.so.13", "lib/libcudart.so.13"),
    ("nvidia/cu13/lib/libcupti.so.13", "lib/libcupti.so.13"),
]
MARKER = ".emergence-lab-complete"


def log(msg):
    print(f"[setup-libtorch] {msg}", flush=True)


def fail(msg):
    print(f"[setup-libtorch] error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def default_cache():
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "emergence-lab" / f"libtorch-{VERSION}-cpu"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(dest: Path):
    reqs = dest / "requirements.txt"
    reqs.write_text("".join(f"{spec} --hash=sha256:{h}\n" for spec, h in WHEELS.items()))
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
        "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
        "--abi", "cp311", "--platform", "manylinux_2_28_x86_64",
        "--platform", "manylinux_2_25_x86_64", "--platform", "manylinux_2_17_x86_64",
        "--progress-bar", "off", "-d", str(dest), "-r", str(reqs),
    ]
    log("downloading torch 2.11.0 (~530 MB) and the CUDA runtime wheels from PyPI")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-8:])
        fail("could not download the libtorch wheels from PyPI (is the package registry "
             "reachable? is pip installed for this python?).\npip said:\n" + tail)
    wheels = sorted(dest.glob("*.whl"))
    known = set(WHEELS.values())
    for w in wheels:
        if sha256(w) not in known:
            fail(f"downloaded wheel {w.name} does not match a pinned hash")
    return wheels


def assemble(wheels, out: Path):
    (out / "lib").mkdir(parents=True)
    wanted = dict(LIBS)
    found = set()
    for w in wheels:
        with zipfile.ZipFile(w) as z:
            for name in z.namelist():
                if name in wanted:
                    target = out / wanted[name]
                    with z.open(name) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    found.add(name)
                elif name.startswith("torch/include/") and not name.endswith("/"):
                    target = out / "include" / name[len("torch/include/"):]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(name) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
    missing = set(wanted) - found
    if missing:
        fail(f"the wheels lack expected files: {sorted(missing)}")
    os.symlink("libtorch_cpu.so", out / "lib" / "libtorch.so")
    (out / "build-version").write_text(VERSION + "\n")
    (out / MARKER).write_text(VERSION + "\n")


def ensure_cache(cache: Path):
    if (cache / MARKER).is_file():
        log(f"libtorch {VERSION} (CPU) already in {cache}")
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.parent, prefix=".dl-") as tmp:
        tmp = Path(tmp)
        (tmp / "wheels").mkdir()
        wheels = download(tmp / "wheels")
        staging = tmp / "libtorch"
        log("extracting the CPU libraries and headers")
        assemble(wheels, staging)
        if cache.exists():
            shutil.rmtree(cache)
        os.rename(staging, cache)
    log(f"libtorch {VERSION} (CPU) assembled in {cache}")


def ensure_link(repo: Path, cache: Path):
    link = repo / ".libtorch"
    if link.is_symlink() and Path(os.readlink(link)) == cache:
        log(f"{link} -> {cache} (unchanged)")
        return
    if link.exists() or link.is_symlink():
        if link.is_symlink() or link.is_file():
            link.unlink()
        else:
            fail(f"{link} is a real folder; remove it or pass --no-link")
    os.symlink(cache, link)
    log(f"linked {link} -> {cache}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="where to keep libtorch (default: ~/.cache/emergence-lab/libtorch-2.11.0-cpu, "
                        "or $EMERGENCE_LAB_LIBTORCH_CACHE)")
    p.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent,
                   help="repository root to link .libtorch into")
    p.add_argument("--no-link", action="store_true", help="only fill the cache")
    a = p.parse_args()
    cache = a.cache_dir or (Path(os.environ["EMERGENCE_LAB_LIBTORCH_CACHE"])
                            if os.environ.get("EMERGENCE_LAB_LIBTORCH_CACHE") else default_cache())
    cache = cache.expanduser().resolve()
    ensure_cache(cache)
    if not a.no_link:
        ensure_link(a.repo.resolve(), cache)


if __name__ == "__main__":
    main()
