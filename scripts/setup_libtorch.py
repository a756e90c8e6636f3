#!/usr/bin/env python3
"""Provide libtorch 2.11.0 for tch 0.24 on a fresh machine: CPU-only, or with CUDA (--cuda).

Downloads pinned, hash-checked wheels from PyPI and assembles a libtorch folder in a cache
outside the repository (~/.cache/emergence-lab/), then links it into the repository root:
- default: torch 2.11.0 plus the two small NVIDIA runtime wheels its CPU library links
  against -> a CPU-only folder (~490 MB), linked as `.libtorch` (where `.cargo/config.toml`
  points `LIBTORCH`);
- `--cuda`: torch 2.11.0 (CUDA 13.0 build) plus the 12 nvidia wheels its CUDA library needs
  to load (~2.2 GB download, ~3.4 GB on disk), laid out as in a Python site-packages folder
  (torch/lib finds nvidia/*/lib through its own rpath), linked as `.libtorch-cuda`. Build with
  `LIBTORCH=$PWD/.libtorch-cuda cargo build ...`. Its kernels are for sm_75, sm_80, sm_86,
  sm_90, sm_100 and sm_120 (written to `cuda-arch-list`), and CUDA 13 needs an NVIDIA driver
  >= 580; a machine without a GPU can still build and link against it.

Idempotent: when the cache is complete and the link is right it does nothing.
Needs only Python 3 with pip. See README.md ("Building against CUDA").
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

def _declared_version() -> str:
    """The libtorch version, declared once in the root Cargo.toml ([workspace.metadata.libtorch])."""
    text = (Path(__file__).resolve().parent.parent / "Cargo.toml").read_text()
    try:
        import tomllib
        return tomllib.loads(text)["workspace"]["metadata"]["libtorch"]["version"]
    except ImportError:  # Python < 3.11: the one line is enough
        import re
        m = re.search(r'\[workspace\.metadata\.libtorch\]\s*\nversion\s*=\s*"([^"]+)"', text)
        if not m:
            sys.exit("Cargo.toml has no [workspace.metadata.libtorch] version")
        return m.group(1)


VERSION = _declared_version()
WHEELS = {
    f"torch=={VERSION}": "7aa2f9bbc6d4595ba72138026b2074be1233186150e9292865e04b7a63b8c67a",
    "nvidia-cuda-runtime==13.0.96": "7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548",
    "nvidia-cuda-cupti==13.0.85": "4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8",
}
# The CUDA 13.0 build: torch plus what libtorch_cuda.so needs to load (cusolver, nvrtc and
# triton are only loaded on demand, by features this project does not use).
CUDA_WHEELS = {
    f"torch=={VERSION}": "7aa2f9bbc6d4595ba72138026b2074be1233186150e9292865e04b7a63b8c67a",
    "nvidia-cuda-runtime==13.0.96": "7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548",
    "nvidia-cuda-cupti==13.0.85": "4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8",
    "nvidia-cublas==13.1.0.3": "ee8722c1f0145ab246bccb9e452153b5e0515fd094c3678df50b2a0888b8b171",
    "nvidia-cufft==12.0.0.61": "6c44f692dce8fd5ffd3e3df134b6cdb9c2f72d99cf40b62c32dde45eea9ddad3",
    "nvidia-cufile==1.15.1.6": "08a3ecefae5a01c7f5117351c64f17c7c62efa5fffdbe24fc7d298da19cd0b44",
    "nvidia-curand==10.4.0.35": "1aee33a5da6e1db083fe2b90082def8915f30f3248d5896bcec36a579d941bfc",
    "nvidia-cusparse==12.6.3.3": "2b3c89c88d01ee0e477cb7f82ef60a11a4bcd57b6b87c33f789350b59759360b",
    "nvidia-nvjitlink==13.0.88": "13a74f429e23b921c1109976abefacc69835f2f433ebd323d3946e11d804e47b",
    "nvidia-cudnn-cu13==9.19.0.56": "d20e1734305e9d68889a96e3f35094d733ff1f83932ebe462753973e53a572bf",
    "nvidia-cusparselt-cu13==0.8.0": "25e30a8a7323935d4ad0340b95a0b69926eee755767e8e0b1cf8dd85b197d3fd",
    "nvidia-nccl-cu13==2.28.9": "e4553a30f34195f3fa1da02a6da3d6337d28f2003943aa0a3d247bbc25fefc42",
    "nvidia-nvshmem-cu13==3.4.5": "290f0a2ee94c9f3687a02502f3b9299a9f9fe826e6d0287ee18482e78d495b80",
}
CUDA_TAG = "cu130"
# GPU architectures of PyPI's torch 2.11.0 (CUDA 13.0) kernels, without PTX fallback.
CUDA_ARCH_LIST = "sm_75 sm_80 sm_86 sm_90 sm_100 sm_120"
# Torch libraries that need what the CUDA wheels above leave out (not loaded by tch).
CUDA_SKIP = {"torch/lib/libtorch_python.so"}
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_25_x86_64",
             "manylinux_2_18_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux_2_12_x86_64", "manylinux2010_x86_64"]

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


def default_cache(cuda=False):
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    flavour = CUDA_TAG if cuda else "cpu"
    return Path(base) / "emergence-lab" / f"libtorch-{VERSION}-{flavour}"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(dest: Path, wheels=None, what="torch 2.11.0 (~530 MB) and the CUDA runtime wheels"):
    wheels = wheels or WHEELS
    reqs = dest / "requirements.txt"
    reqs.write_text("".join(f"{spec} --hash=sha256:{h}\n" for spec, h in wheels.items()))
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
        "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
        "--abi", "cp311", *[a for p in PLATFORMS for a in ("--platform", p)],
        "--progress-bar", "off", "-d", str(dest), "-r", str(reqs),
    ]
    log(f"downloading {what} from PyPI")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-8:])
        fail("could not download the libtorch wheels from PyPI (is the package registry "
             "reachable? is pip installed for this python?).\npip said:\n" + tail)
    found = sorted(dest.glob("*.whl"))
    known = set(wheels.values())
    wheels = found
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


def assemble_cuda(wheels, out: Path):
    """Lays the wheels out as in site-packages: out/torch/{lib,include} and out/nvidia/*/lib
    (torch's libraries find the nvidia ones through their $ORIGIN/../../nvidia rpath)."""
    out.mkdir(parents=True)
    have_cuda = False
    for w in wheels:
        with zipfile.ZipFile(w) as z:
            for name in z.namelist():
                keep = (
                    (name.startswith("torch/lib/") and ".so" in name and name not in CUDA_SKIP)
                    or name.startswith("torch/include/")
                    or (name.startswith("nvidia/") and "/lib/" in name and ".so" in name)
                )
                if not keep or name.endswith("/"):
                    continue
                target = out / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(name) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                have_cuda |= name == "torch/lib/libtorch_cuda.so"
    if not have_cuda:
        fail("the torch wheel has no torch/lib/libtorch_cuda.so: not a CUDA build")
    torch = out / "torch"
    (torch / "build-version").write_text(VERSION + "\n")
    (torch / "cuda-arch-list").write_text(CUDA_ARCH_LIST + "\n")
    (out / MARKER).write_text(f"{VERSION}+{CUDA_TAG}\n")


def ensure_cache(cache: Path, cuda=False):
    """Fills `cache` once; returns the libtorch folder to link (with lib/ and include/)."""
    label = f"{VERSION} ({'CUDA ' + CUDA_TAG if cuda else 'CPU'})"
    folder = cache / "torch" if cuda else cache
    if (cache / MARKER).is_file():
        log(f"libtorch {label} already in {cache}")
        return folder
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.parent, prefix=".dl-") as tmp:
        tmp = Path(tmp)
        (tmp / "wheels").mkdir()
        staging = tmp / "libtorch"
        if cuda:
            wheels = download(tmp / "wheels", CUDA_WHEELS,
                              "torch 2.11.0 and 12 nvidia wheels (~2.2 GB)")
            log("extracting torch and the CUDA libraries (~3.4 GB)")
            assemble_cuda(wheels, staging)
        else:
            wheels = download(tmp / "wheels")
            log("extracting the CPU libraries and headers")
            assemble(wheels, staging)
        if cache.exists():
            shutil.rmtree(cache)
        os.rename(staging, cache)
    log(f"libtorch {label} assembled in {cache}")
    return folder


def ensure_link(repo: Path, cache: Path, name=".libtorch"):
    link = repo / name
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
    p.add_argument("--cuda", action="store_true",
                   help="the CUDA 13.0 libtorch instead (~2.2 GB download), linked as .libtorch-cuda "
                        "(default cache: ~/.cache/emergence-lab/libtorch-2.11.0-cu130, or "
                        "$EMERGENCE_LAB_LIBTORCH_CUDA_CACHE)")
    a = p.parse_args()
    env_var = "EMERGENCE_LAB_LIBTORCH_CUDA_CACHE" if a.cuda else "EMERGENCE_LAB_LIBTORCH_CACHE"
    cache = a.cache_dir or (Path(os.environ[env_var]) if os.environ.get(env_var)
                            else default_cache(a.cuda))
    cache = cache.expanduser().resolve()
    folder = ensure_cache(cache, a.cuda)
    if not a.no_link:
        ensure_link(a.repo.resolve(), folder, ".libtorch-cuda" if a.cuda else ".libtorch")


if __name__ == "__main__":
    main()
