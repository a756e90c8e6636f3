# emergence-lab: Kaggle setup cell. Generated from kernel/kaggle_setup.py: edit that file, not this cell.
#
# Kaggle runs only Python kernels, so this cell gets what the Rust cells below need and runs them
# through an evcxr (Rust) kernel: (1) a Rust toolchain (rustup, minimal profile) when missing,
# (2) evcxr_jupyter 0.22.0, reusing a build found in /kaggle/working or /kaggle/input and leaving
# one in /kaggle/working/emergence-lab-tools for the next session (attach this notebook's output as
# an input to reuse it), (3) libtorch 2.11.0 (the image's torch when it is 2.11.0, else
# pip-installs torch==2.11.0 for the GPU's CUDA version into /kaggle/temp), (4) an evcxr kernel
# started through jupyter_client, and (5) the %%rust cell magic that runs a cell there and relays
# its output, errors and images. Each phase is timed.
#
# Environment variables (all optional; the CI rehearsal uses them to run without network):
#   EMERGENCE_LAB_KAGGLE_ROOT   Kaggle folders root (default /kaggle): input/, working/, temp/
#   EMERGENCE_LAB_OFFLINE=1     never download: fail with a clear message when something is missing
#   EMERGENCE_LAB_EVCXR         evcxr_jupyter binary to use
#   EMERGENCE_LAB_LIBTORCH      libtorch folder (with lib/) to use instead of torch's
#   EMERGENCE_LAB_EVCXR_TMPDIR  evcxr build folder (default <root>/temp/evcxr)
#   EMERGENCE_LAB_NOTEBOOK_DIR  working directory of the Rust kernel (default <root>/temp/notebook)
#   EMERGENCE_LAB_KEEP_TOOLS=0  do not leave evcxr_jupyter in <root>/working for the next session
#   EMERGENCE_LAB_TOOLCHAIN_BUILD=cu128  toolchain kernel mode (set by the notebook `kaggle_run --toolchain`
#                               generates): install the libtorch of that build whatever the GPU
#
# Toolchain cache: when an input holds emergence-lab-toolchain.json (the output of the kernel
# USER/emergence-lab-toolchain that `kaggle_run --toolchain` creates, listed in kernel_sources), the
# phases restore from it instead of downloading and building: the Rust toolchain and the crates
# of Cargo.lock, evcxr_jupyter, libtorch, and evcxr's build folder with tch, torch-sys and every
# dependency of the library already compiled. Each part is checked first (rustc version,
# evcxr version, libtorch version and folder, Cargo.lock hash) and a mismatch is said with what
# it costs. Without the cache everything still works (with internet on) and the cell says how
# to make it.
import os as _os


def _emergence_lab_setup():
    import glob
    import json
    import queue
    import shutil
    import subprocess
    import sys
    import time

    evcxr_version = "0.22.0"
    torch_version = "2.11.0"
    env = _os.environ
    root = env.get("EMERGENCE_LAB_KAGGLE_ROOT", "/kaggle")
    working = _os.path.join(root, "working")
    inputs = _os.path.join(root, "input")
    temp = _os.path.join(root, "temp")
    offline = env.get("EMERGENCE_LAB_OFFLINE") == "1"
    timings = []

    def phase(name):
        class _Phase:
            def __enter__(self):
                self.t = time.time()
                print(f"[setup] {name} ...", flush=True)
                return self

            def __exit__(self, *exc):
                dt = time.time() - self.t
                timings.append((name, dt))
                print(f"[setup] {name}: {dt:.1f} s", flush=True)

        return _Phase()

    def run(cmd, **kw):
        print("[setup] $ " + " ".join(cmd), flush=True)
        return subprocess.run(cmd, check=True, **kw)

    def need_network(what):
        if offline:
            raise SetupError(f"{what} is missing and EMERGENCE_LAB_OFFLINE=1 forbids downloading it")

    previous = globals().get("_EMERGENCE_LAB_RUST")
    if previous is not None and previous["km"].is_alive():
        print("[setup] the Rust kernel from an earlier run of this cell is still alive: reusing it")
        return previous

    session_start = env.get("EMERGENCE_LAB_SESSION_START") or str(int(time.time()))
    for d in (working, temp):
        _os.makedirs(d, exist_ok=True)
    toolchain_build = env.get("EMERGENCE_LAB_TOOLCHAIN_BUILD", "").strip()

    # 0. The toolchain cache (an input holding emergence-lab-toolchain.json).
    with phase("toolchain cache"):
        cache = None if toolchain_build else _find_toolchain_cache(inputs)
        if cache is None:
            if not toolchain_build:
                print("[setup] no toolchain cache attached: this session installs Rust, evcxr_jupyter "
                      "and libtorch and builds tch and the library (20-60 minutes, internet on). Make "
                      "the cache once with `kaggle_run --toolchain` (README, Kaggle section): later sessions "
                      "then start in minutes, with internet off.")
        else:
            cache_dir, manifest = cache
            print(f"[setup] toolchain cache: {cache_dir} (made with {manifest.get('rustc')}, evcxr "
                  f"{manifest.get('evcxr')}, libtorch {manifest.get('libtorch_version')})")
            cargo_home = _os.path.expanduser("~/.cargo")
            rust_tar = manifest.get("files", {}).get("rust")
            if shutil.which("cargo") is None and not _os.path.isfile(_os.path.join(cargo_home, "bin", "cargo")):
                if rust_tar:
                    _extract(_os.path.join(cache_dir, rust_tar), _os.path.expanduser("~"))
                    print(f"[setup] restored the Rust toolchain and the crates of Cargo.lock into "
                          f"{_os.path.expanduser('~')}")
                else:
                    print("[setup] the cache has no Rust toolchain: installing one")
            elif rust_tar:
                print("[setup] a Rust toolchain is already installed: the cache's is not restored")

    # 1. Rust toolchain.
    with phase("rust toolchain"):
        cargo_bin = _os.path.expanduser("~/.cargo/bin")
        if shutil.which("cargo") is None and _os.path.isfile(_os.path.join(cargo_bin, "cargo")):
            env["PATH"] = cargo_bin + _os.pathsep + env["PATH"]
        if shutil.which("cargo") is None:
            need_network("the Rust toolchain (cargo)")
            installer = _os.path.join(temp, "rustup-init.sh")
            run(["curl", "--proto", "=https", "--tlsv1.2", "-sSf", "-o", installer, "https://sh.rustup.rs"])
            run(["sh", installer, "-y", "--profile", "minimal", "--component", "rust-src",
                 "--default-toolchain", "stable", "--no-modify-path"])
            env["PATH"] = cargo_bin + _os.pathsep + env["PATH"]
        version = subprocess.run(["cargo", "--version"], capture_output=True, text=True, check=True).stdout.strip()
        print(f"[setup] {version} at {shutil.which('cargo')}")

    # 2. evcxr_jupyter, cached in <root>/working for the next session.
    with phase("evcxr_jupyter"):
        tools_bin = _os.path.join(working, "emergence-lab-tools", "bin")
        kept = _os.path.join(tools_bin, "evcxr_jupyter")

        def works(path):
            # evcxr_jupyter has no --version; its build paths name the version.
            try:
                with open(path, "rb") as f:
                    return f"evcxr_jupyter-{evcxr_version}".encode() in f.read()
            except OSError:
                return False

        candidates = [env.get("EMERGENCE_LAB_EVCXR"), kept]
        candidates += sorted(glob.glob(_os.path.join(inputs, "**", "evcxr_jupyter"), recursive=True))
        candidates.append(shutil.which("evcxr_jupyter"))
        evcxr, origin = None, ""
        for c in candidates:
            if not c or not _os.path.isfile(c):
                continue
            found = c
            if not _os.access(c, _os.X_OK):  # inputs may lose the exec bit: run a copy
                local = _os.path.join(temp, "bin", "evcxr_jupyter")
                _os.makedirs(_os.path.dirname(local), exist_ok=True)
                shutil.copy2(c, local)
                _os.chmod(local, 0o755)
                c = local
            if works(c):
                evcxr, origin = c, (f" (copied from {found})" if c != found else "")
                break
            print(f"[setup] ignoring {c}: not evcxr_jupyter {evcxr_version}")
        if evcxr is None:
            need_network(f"evcxr_jupyter {evcxr_version}")
            print("[setup] building evcxr_jupyter (about 10 minutes, once: later sessions reuse it)")
            build_env = dict(env, CARGO_TARGET_DIR=_os.path.join(temp, "evcxr-build"))
            run(["cargo", "install", "--locked", "evcxr_jupyter", "--version", evcxr_version,
                 "--root", _os.path.dirname(tools_bin)], env=build_env)
            evcxr = kept
        if env.get("EMERGENCE_LAB_KEEP_TOOLS", "1") != "0" and _os.path.abspath(evcxr) != _os.path.abspath(kept):
            _os.makedirs(tools_bin, exist_ok=True)
            shutil.copy2(evcxr, kept)
            _os.chmod(kept, 0o755)
            print(f"[setup] left a copy in {kept} for the next session")
        print(f"[setup] evcxr_jupyter {evcxr_version}: {evcxr}{origin}")

    # 3. libtorch 2.11.0 (tch 0.24).
    with phase("libtorch"):
        libtorch = env.get("EMERGENCE_LAB_LIBTORCH")
        probe = ("import os, torch; print(torch.__version__); print(torch.version.cuda or ''); "
                 "print(os.path.dirname(torch.__file__)); "
                 "print(torch._C._cuda_getArchFlags() if torch.version.cuda else '')")
        if libtorch:
            print(f"[setup] using EMERGENCE_LAB_LIBTORCH={libtorch}")
        elif toolchain_build:
            # The toolchain kernel has no GPU: it installs the build the GPU sessions will use.
            if toolchain_build not in [t for t, _, _ in _TORCH_BUILDS] + ["cpu"]:
                raise SetupError(f"EMERGENCE_LAB_TOOLCHAIN_BUILD={toolchain_build} is not one of "
                                 + ", ".join([t for t, _, _ in _TORCH_BUILDS] + ["cpu"]))
            target = _os.path.join(temp, f"torch-{torch_version}-{toolchain_build}")
            libtorch = _install_torch(target, toolchain_build, torch_version, probe, run, need_network, temp)[2]
        else:
            facts = _nvidia_smi_facts()
            for g in facts["gpus"]:
                print(f"[setup] GPU: {g['name']} ({g['sm'] or 'architecture unknown'}), driver "
                      f"{g['driver']}, driver CUDA {'.'.join(map(str, facts['driver_cuda'] or ())) or 'none'}")
            out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
            lines = out.stdout.split("\n") if out.returncode == 0 else ["", "", "", ""]
            image_version, image_cuda, image_dir, image_archs = (lines + ["", "", "", ""])[:4]
            print(f"[setup] image torch: {image_version or 'none'} (CUDA {image_cuda or 'none'})")
            image = (image_version, _cuda_tuple(image_cuda), image_archs.split() or None)
            choice, problem = _choose_libtorch(facts, image if image_version else None)
            if problem:
                raise SetupError(problem)
            cached = cache[1].get("libtorch_choice") if cache is not None else None
            if cached and cached != choice and _cached_torch_fits(facts, cached):
                print(f"[setup] the cache's torch ({cached}) fits this machine: using it, not {choice}")
                choice = cached
            print(f"[setup] libtorch choice: {choice}")
            if choice == "image":
                libtorch = image_dir
            else:
                target = _os.path.join(temp, f"torch-{torch_version}-{choice}")
                if cache is not None and not _os.path.isdir(target):
                    cache_dir, manifest = cache
                    tar = manifest.get("files", {}).get("libtorch")
                    if tar and manifest.get("libtorch_choice") == choice:
                        _extract(_os.path.join(cache_dir, tar), temp)
                        print(f"[setup] restored torch {manifest.get('libtorch_version')} ({choice}) from the cache")
                    elif tar:
                        print(f"[setup] the cache holds torch for {manifest.get('libtorch_choice')}, this GPU "
                              f"needs {choice}: installing it (make the cache again with "
                              f"`kaggle_run --toolchain --torch {choice}` to skip this)")
                have = _install_torch(target, choice, torch_version, probe, run, need_network, temp)
                # Check the installed build itself before building against it.
                if facts["gpus"]:
                    problem = _libtorch_problem(facts, _cuda_tuple(have[1]), have[3].split() or None)
                    if problem:
                        raise SetupError(f"the installed torch {have[0]} cannot use this GPU: {problem}")
                libtorch = have[2]
        if not _os.path.isdir(_os.path.join(libtorch, "lib")):
            raise SetupError(f"libtorch folder {libtorch} has no lib/ folder")
        print(f"[setup] LIBTORCH={libtorch}")

    nb_dir = env.get("EMERGENCE_LAB_NOTEBOOK_DIR", _os.path.join(temp, "notebook"))
    evcxr_tmp = env.get("EMERGENCE_LAB_EVCXR_TMPDIR", _os.path.join(temp, "evcxr"))
    if cache is not None:
        with phase("evcxr build folder from the cache"):
            _os.makedirs(evcxr_tmp, exist_ok=True)
            _restore_build_folder(cache, evcxr_tmp, libtorch, _source_cargo_lock(inputs))
    # With the cache's Rust (and the crates of this very Cargo.lock), cargo needs no network:
    # a session with internet off must not try to reach crates.io.
    crates_local = (cache is not None and "rust" in cache[1].get("files", {})
                    and cache[1].get("cargo_lock_sha256") == _lock_sha(_source_cargo_lock(inputs)))

    # 4. The evcxr kernel.
    with phase("start Rust kernel"):
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager

        spec_dir = _os.path.join(temp, "jupyter", "kernels", "emergence-lab-rust")
        _os.makedirs(spec_dir, exist_ok=True)
        with open(_os.path.join(spec_dir, "kernel.json"), "w") as f:
            json.dump({
                # SIGINT is ignored by evcxr and its worker; the training call installs a
                # handler, so an interrupt stops training with a checkpoint.
                "argv": ["/bin/sh", "-c", "trap '' INT; exec \"$1\" --control_file \"$0\"",
                         "{connection_file}", evcxr],
                "display_name": "Rust (emergence-lab)", "language": "rust",
                "interrupt_mode": "signal",
            }, f, indent=2)
        _os.makedirs(nb_dir, exist_ok=True)
        _os.makedirs(evcxr_tmp, exist_ok=True)
        # Each cell is a cdylib linked to the toolchain's libstd-*.so (evcxr's relative rpath
        # misses it when the build folder is not at the depth it expects).
        sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True,
                                 check=True).stdout.strip()
        host = next(l.split(": ", 1)[1] for l in subprocess.run(
            ["rustc", "-vV"], capture_output=True, text=True, check=True).stdout.splitlines()
            if l.startswith("host: "))
        rust_lib = _os.path.join(sysroot, "lib", "rustlib", host, "lib")
        kenv = dict(env)
        kenv.pop("PYTHONEXECUTABLE", None)
        kenv.update({
            "LIBTORCH": libtorch,
            "LD_LIBRARY_PATH": _os.pathsep.join(
                p for p in [_os.path.join(libtorch, "lib"), rust_lib, env.get("LD_LIBRARY_PATH", "")] if p),
            "EVCXR_TMPDIR": evcxr_tmp,
            "EMERGENCE_LAB_KAGGLE_ROOT": root,
            "EMERGENCE_LAB_SESSION_START": session_start,
            # evcxr builds in the dev profile: train as fast as the release binary.
            "CARGO_PROFILE_DEV_DEBUG_ASSERTIONS": "false",
            "CARGO_PROFILE_DEV_OVERFLOW_CHECKS": "false",
        })
        if offline or crates_local:
            kenv["CARGO_NET_OFFLINE"] = "true"
            if crates_local and not offline:
                print("[setup] cargo runs offline: the cache holds every crate of this Cargo.lock")
        ksm = KernelSpecManager(kernel_dirs=[_os.path.dirname(spec_dir)])
        km = KernelManager(kernel_name="emergence-lab-rust", kernel_spec_manager=ksm)
        km.start_kernel(cwd=nb_dir, env=kenv)
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=120)
        except RuntimeError as e:
            km.shutdown_kernel(now=True)
            raise SetupError(f"the evcxr kernel did not start: {e}") from None
        print(f"[setup] Rust kernel ready (working directory {nb_dir}, EVCXR_TMPDIR {evcxr_tmp})")

    # 5. The %%rust cell magic.
    with phase("register %%rust"):
        state = {"km": km, "kc": kc, "timings": timings, "evcxr": evcxr, "libtorch": libtorch,
                 "evcxr_tmp": evcxr_tmp, "toolchain_build": toolchain_build}
        _register_rust_magic(state)

    total = sum(t for _, t in timings)
    print("[setup] times: " + ", ".join(f"{n} {t:.1f} s" for n, t in timings) + f"; total {total:.1f} s")
    return state


TOOLCHAIN_MANIFEST = "emergence-lab-toolchain.json"
TOOLCHAIN_FORMAT = 1


def _find_toolchain_cache(inputs):
    """(folder, manifest) of the first toolchain cache under `inputs` (5 levels: Kaggle mounts
    outputs as input/SLUG or deeper), or None.
    A manifest that cannot be read is reported and skipped."""
    import glob
    import json

    for depth in range(0, 6):
        for path in sorted(glob.glob(_os.path.join(inputs, *(["*"] * depth), TOOLCHAIN_MANIFEST))):
            try:
                with open(path) as f:
                    m = json.load(f)
                if m.get("format") != TOOLCHAIN_FORMAT:
                    print(f"[setup] ignoring {path}: cache format {m.get('format')}, this cell reads "
                          f"format {TOOLCHAIN_FORMAT} (make the cache again with kaggle_run --toolchain)")
                    continue
                return _os.path.dirname(path), m
            except (OSError, ValueError) as e:
                print(f"[setup] ignoring {path}: unreadable ({e})")
    return None


def _extract(tar_path, dest):
    """Unpacks a cache archive (mtimes kept: cargo compares them) into dest."""
    import tarfile

    _os.makedirs(dest, exist_ok=True)
    with tarfile.open(tar_path) as t:
        try:
            t.extractall(dest, filter="tar")
        except TypeError:  # Python < 3.12 without extraction filters
            t.extractall(dest)


def _cached_torch_fits(facts, tag):
    """True when the torch build `tag` runs on this machine's GPUs (or `cpu` without one)."""
    if not facts.get("gpus"):
        return tag == "cpu"
    build = next((b for b in _TORCH_BUILDS if b[0] == tag), None)
    return build is not None and _libtorch_problem(facts, build[1], build[2]) is None


def _install_torch(target, choice, torch_version, probe, run, need_network, temp):
    """torch `torch_version` for `choice` in `target` (pip --target, skipped when there);
    returns the probe's four lines (version, CUDA, folder, architectures)."""
    import subprocess
    import sys

    pyenv = dict(_os.environ, PYTHONPATH=target)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=pyenv, cwd=temp)
    have = out.stdout.split("\n") if out.returncode == 0 else [""]
    if have[0].split("+")[0] != torch_version:
        need_network(f"torch {torch_version} ({choice})")
        print(f"[setup] installing torch {torch_version} for {choice} into {target} (a few minutes)")
        run([sys.executable, "-m", "pip", "install", "--quiet", "--target", target,
             f"torch=={torch_version}", "--index-url", f"https://download.pytorch.org/whl/{choice}"])
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             env=pyenv, cwd=temp, check=True)
        have = out.stdout.split("\n")
    return (have + ["", "", "", ""])[:4]


def _rustc_version():
    """`rustc --version` of the toolchain on PATH, or None."""
    import subprocess

    try:
        out = subprocess.run(["rustc", "--version"], capture_output=True, text=True)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except OSError:
        return None


def _libtorch_version(path):
    """The version of the libtorch in `path`: its build-version file (C++ distribution) or
    version.py (a pip torch folder); None when neither says."""
    import re

    try:
        with open(_os.path.join(path, "build-version")) as f:
            return f.read().strip() or None
    except OSError:
        pass
    try:
        with open(_os.path.join(path, "version.py")) as f:
            m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", f.read())
            return m.group(1) if m else None
    except OSError:
        return None


def _source_cargo_lock(inputs):
    """Cargo.lock of the attached source (kaggle_push's dataset, unpacked or as its archive, or a
    repository copy), or None."""
    import glob
    import zipfile

    for depth in range(0, 6):
        for m in sorted(glob.glob(_os.path.join(inputs, *(["*"] * depth), "emergence-lab-source.json"))):
            d = _os.path.dirname(m)
            for lock in sorted(glob.glob(_os.path.join(d, "**", "Cargo.lock"), recursive=True)):
                with open(lock, "rb") as f:
                    return f.read()
            try:
                with zipfile.ZipFile(_os.path.join(d, "emergence-lab-src.zip")) as z:
                    return z.read("Cargo.lock")
            except (OSError, KeyError, zipfile.BadZipFile):
                pass
    for depth in range(1, 6):
        for toml in sorted(glob.glob(_os.path.join(inputs, *(["*"] * depth), "Cargo.toml"))):
            try:
                with open(toml) as f:
                    if 'name = "emergence_lab"' not in f.read():
                        continue
                with open(_os.path.join(_os.path.dirname(toml), "Cargo.lock"), "rb") as f:
                    return f.read()
            except OSError:
                continue
    return None


def _build_folder_decision(manifest, rustc, libtorch_version, libtorch_path, lock_sha):
    """Whether to restore the cache's evcxr build folder, and what will be rebuilt and why:
    (restore: bool, [reasons]). A different rustc invalidates every compiled crate, so the
    folder is not restored; a different libtorch rebuilds torch-sys, tch and the library; a
    different Cargo.lock rebuilds the dependencies that changed."""
    if manifest.get("rustc") != rustc:
        return False, [f"rustc here is {rustc or 'missing'}, the cache was built with "
                       f"{manifest.get('rustc')}: every crate would be rebuilt, so the build folder "
                       "is not restored (make the cache again with kaggle_run --toolchain)"]
    notes = []
    if (manifest.get("libtorch_version"), manifest.get("libtorch_path")) != (libtorch_version, libtorch_path):
        notes.append(f"libtorch differs (cache: {manifest.get('libtorch_version')} at "
                     f"{manifest.get('libtorch_path')}; here: {libtorch_version} at {libtorch_path}): "
                     "torch-sys, tch and the library are rebuilt")
    if lock_sha is None:
        notes.append("the source's Cargo.lock was not found: cargo rebuilds what it finds changed")
    elif manifest.get("cargo_lock_sha256") != lock_sha:
        notes.append("Cargo.lock differs from the cache's: the dependencies that changed are rebuilt")
    return True, notes


def _lock_sha(lock):
    """sha256 (hex) of Cargo.lock's bytes, or None without one."""
    import hashlib

    return hashlib.sha256(lock).hexdigest() if lock is not None else None


def _restore_build_folder(cache, evcxr_tmp, libtorch, lock):
    """Unpacks the cache's evcxr build folder into evcxr_tmp (unless it already holds a build),
    saying what matches and what cargo will rebuild."""
    import hashlib

    cache_dir, manifest = cache
    tar = manifest.get("files", {}).get("build")
    if not tar:
        print("[setup] the cache has no evcxr build folder: the first build compiles tch and the library")
        return
    if _os.path.isdir(_os.path.join(evcxr_tmp, "target")):
        print(f"[setup] {evcxr_tmp} already holds a build: the cache's is not restored")
        return
    lock_sha = hashlib.sha256(lock).hexdigest() if lock is not None else None
    restore, notes = _build_folder_decision(manifest, _rustc_version(), _libtorch_version(libtorch),
                                            libtorch, lock_sha)
    for n in notes:
        print(f"[setup] build cache: {n}")
    if restore:
        _extract(_os.path.join(cache_dir, tar), evcxr_tmp)
        if not notes:
            print("[setup] build cache: rustc, libtorch and Cargo.lock match: only the library's own "
                  "changes are compiled")
        print(f"[setup] restored the evcxr build folder into {evcxr_tmp}")


def _emergence_lab_pack_toolchain(out_dir, evcxr, evcxr_tmp, libtorch, libtorch_choice, lock,
                                  rust_home=None, evcxr_version="0.22.0"):
    """Writes the toolchain cache into out_dir (the toolchain kernel's /kaggle/working):
    the manifest, evcxr_jupyter, the evcxr build folder without its incremental caches and cell
    libraries, and, when given, libtorch (`libtorch_choice` not None: the folder pip installed
    it into) and the Rust toolchain with the crates of Cargo.lock (`rust_home`: the HOME
    holding .rustup and .cargo). Returns the manifest."""
    import hashlib
    import json
    import shutil
    import tarfile
    import time

    _os.makedirs(_os.path.join(out_dir, "bin"), exist_ok=True)
    shutil.copy2(evcxr, _os.path.join(out_dir, "bin", "evcxr_jupyter"))
    files = {"evcxr": "bin/evcxr_jupyter", "build": "evcxr-build.tar"}

    def skip_cells(info):
        parts = info.name.split("/")
        if "incremental" in parts or parts[-1].startswith("libcode_") or "/.fingerprint/code_" in "/" + info.name:
            return None
        return info

    with tarfile.open(_os.path.join(out_dir, files["build"]), "w") as t:
        for name in ("Cargo.lock", "target"):
            if _os.path.exists(_os.path.join(evcxr_tmp, name)):
                t.add(_os.path.join(evcxr_tmp, name), arcname=name, filter=skip_cells)
    if libtorch_choice is not None:
        files["libtorch"] = "libtorch.tar"
        top = _os.path.dirname(libtorch)  # the pip --target folder holding torch/ and nvidia/
        with tarfile.open(_os.path.join(out_dir, files["libtorch"]), "w") as t:
            t.add(top, arcname=_os.path.basename(top))
    if rust_home is not None:
        files["rust"] = "rust.tar"
        with tarfile.open(_os.path.join(out_dir, files["rust"]), "w") as t:
            for name in (".rustup", ".cargo"):
                if _os.path.isdir(_os.path.join(rust_home, name)):
                    t.add(_os.path.join(rust_home, name), arcname=name)
    manifest = {
        "format": TOOLCHAIN_FORMAT,
        "made_unix": int(time.time()),
        "rustc": _rustc_version(),
        "evcxr": evcxr_version,
        "libtorch_version": _libtorch_version(libtorch),
        "libtorch_path": libtorch,
        "libtorch_choice": libtorch_choice,
        "cargo_lock_sha256": hashlib.sha256(lock).hexdigest() if lock is not None else None,
        "evcxr_tmpdir": evcxr_tmp,
        "files": files,
    }
    with open(_os.path.join(out_dir, TOOLCHAIN_MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)
    return manifest


def _cuda_tuple(text):
    """'12.8' -> (12, 8); '' or junk -> None."""
    try:
        major, minor = text.strip().split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


class SetupError(RuntimeError):
    """The Kaggle setup could not get a tool; the message says which and how to fix it."""


# torch 2.11.0 builds on the PyTorch index: (tag, CUDA version, GPU architectures with kernels).
# cu130 is also PyPI's default build. The list of an installed build is read back from torch
# itself (torch._C._cuda_getArchFlags) and checked again before anything is built.
_TORCH_BUILDS = [
    ("cu130", (13, 0), ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]),
    ("cu128", (12, 8), ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]),
    ("cu126", (12, 6), ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]),
]


def _parse_nvidia_smi(header, query):
    """GPU facts from `nvidia-smi` (header) and `nvidia-smi --query-gpu=name,compute_cap,
    driver_version --format=csv,noheader`: {'driver_cuda': (12, 8) or None, 'gpus':
    [{'name', 'sm' ('sm_75' or None), 'driver'}]}. Unreadable parts stay None."""
    import re

    m = re.search(r"CUDA Version:\s*([0-9]+)\.([0-9]+)", header or "")
    gpus = []
    for line in (query or "").splitlines():
        f = [x.strip() for x in line.split(",")]
        if len(f) < 3 or not f[0]:
            continue
        cc = re.fullmatch(r"([0-9]+)\.([0-9]+)", f[1])
        gpus.append({"name": f[0], "sm": f"sm_{cc.group(1)}{cc.group(2)}" if cc else None,
                     "driver": f[2] or None})
    return {"driver_cuda": (int(m.group(1)), int(m.group(2))) if m else None, "gpus": gpus}


def _libtorch_problem(facts, cuda, archs):
    """Why a torch build for CUDA `cuda` ((major, minor) or None) with kernels for `archs`
    cannot run on the GPUs of `facts`, or None when it can."""
    gpus = facts.get("gpus") or []
    driver = facts.get("driver_cuda")
    names = ", ".join(f"{g['name']} ({g.get('sm') or 'architecture unknown'})" for g in gpus)
    if cuda is None:
        return f"it is a CPU-only build and this machine has {names}"
    if driver is None:
        return (f"nvidia-smi lists {names} but reports no CUDA version: the NVIDIA driver is not "
                "working (restart the session with a GPU accelerator)")
    if cuda > driver:
        return (f"it needs CUDA {cuda[0]}.{cuda[1]} but the driver supports CUDA up to "
                f"{driver[0]}.{driver[1]}")
    missing = sorted({g["sm"] for g in gpus if g.get("sm")} - set(archs or []))
    if archs is not None and missing:
        return f"it has kernels for {' '.join(archs)}, not for {' '.join(missing)} ({names})"
    return None


def _choose_libtorch(facts, image=None):
    """Picks the torch 2.11.0 build for this machine, before anything is downloaded or built.

    facts: _parse_nvidia_smi(...); image: the image's torch as (version, (major, minor) CUDA or
    None, arch list or None), or None. Returns ('image', None) to use the image's torch,
    (tag, None) to install that build ('cpu' without a GPU), or (None, message) when no build
    can use the GPU: the message names the driver's CUDA version, the GPU's architecture, what
    each build needs, and how to fix it."""
    image_ok = image is not None and image[0].split("+")[0] == "2.11.0"
    if not facts.get("gpus"):
        return ("image" if image_ok else "cpu"), None
    if image_ok and image[1] and not _libtorch_problem(facts, image[1], image[2]):
        return "image", None
    problems = []
    for tag, cuda, archs in _TORCH_BUILDS:
        problem = _libtorch_problem(facts, cuda, archs)
        if problem is None:
            return tag, None
        problems.append(f"{tag}: {problem}")
    gpus = ", ".join(f"{g['name']} ({g.get('sm') or 'architecture unknown'})" for g in facts["gpus"])
    driver = ".".join(map(str, facts.get("driver_cuda") or ())) or "none"
    return None, (f"no torch 2.11.0 build can use {gpus} with this driver (CUDA {driver}): "
                  + "; ".join(problems) + ". Fix: pick "
                  "a GPU whose architecture is listed (Kaggle: 'GPU T4 x2', sm_75), update the "
                  "driver, or set EMERGENCE_LAB_LIBTORCH to a libtorch built for this GPU.")


def _nvidia_smi_facts():
    """_parse_nvidia_smi of this machine's nvidia-smi (empty facts without one)."""
    import subprocess

    def ask(args):
        try:
            r = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=60)
            return r.stdout if r.returncode == 0 else ""
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return _parse_nvidia_smi(ask([]), ask(["--query-gpu=name,compute_cap,driver_version",
                                           "--format=csv,noheader"]))


class RustCellError(RuntimeError):
    """A %%rust cell failed (compiler error, panic or error value); the message is evcxr's."""


def _register_rust_magic(state):
    import queue
    import sys
    import time

    from IPython import get_ipython
    from IPython.display import publish_display_data

    km, kc = state["km"], state["kc"]

    def relay(msg):
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            stream = sys.stdout if content.get("name") == "stdout" else sys.stderr
            stream.write(content.get("text", ""))
            stream.flush()
        elif kind in ("display_data", "execute_result", "update_display_data"):
            publish_display_data(data=content.get("data", {}), metadata=content.get("metadata", {}))
        elif kind == "error":
            sys.stderr.write("\n".join(content.get("traceback") or [content.get("evalue", "")]) + "\n")
            sys.stderr.flush()

    def rust(line, cell):
        """Run this cell in the emergence-lab Rust (evcxr) kernel."""
        if not km.is_alive():
            raise RustCellError("the Rust kernel is not running: run the setup cell again")
        msg_id = kc.execute(cell, store_history=True, allow_stdin=False)
        error, idle, interrupts = None, False, 0
        while not idle:
            try:
                try:
                    msg = kc.get_iopub_msg(timeout=5)
                except queue.Empty:
                    if not km.is_alive():
                        raise RustCellError("the Rust kernel died while running this cell "
                                            "(out of memory?); run the setup cell again") from None
                    continue
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "error":
                    error = msg["content"]
                if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                    idle = True
                else:
                    relay(msg)
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts > 1:
                    raise
                print("\n[%%rust] interrupt: asking the Rust cell to stop (training saves a checkpoint)",
                      file=sys.stderr, flush=True)
                km.interrupt_kernel()
        reply = None
        deadline = time.time() + 30
        while reply is None and time.time() < deadline:
            try:
                m = kc.get_shell_msg(timeout=5)
            except queue.Empty:
                continue
            if m["parent_header"].get("msg_id") == msg_id:
                reply = m["content"]
        if reply is not None and reply.get("status") == "error" and error is None:
            error = reply
        if error is not None:
            raise RustCellError(f"{error.get('ename', 'Error')}: {error.get('evalue', '')}".strip())

    ip = get_ipython()
    if ip is None:
        raise RuntimeError("the %%rust magic needs IPython (run this cell in a Jupyter notebook)")
    ip.register_magic_function(rust, magic_kind="cell", magic_name="rust")

    import atexit

    def stop_kernel():
        try:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
        except Exception:
            pass

    atexit.register(stop_kernel)


if not _os.environ.get("EMERGENCE_LAB_SETUP_NO_RUN"):  # set by the tests of the helpers above
    _EMERGENCE_LAB_RUST = _emergence_lab_setup()
