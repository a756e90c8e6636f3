"""Test `kaggle_chain`: the whole Kaggle path rehearsed offline, across two sessions.

`kaggle_setup` and `kaggle_run --push-first --sessions 2` run for real against the fake Kaggle
(fake_kaggle.py), which executes each pushed notebook as Kaggle would: the python3 kernel with
the %%rust bridge, `/kaggle` mapped to a temporary folder, no network, the sources listed in the
kernel metadata mounted under `input/`. Session 1 is stopped by its deadline
(`train.max_wall_time`), the chain fetches its newest checkpoint, verifies it and publishes it as
the checkpoints dataset's next version, and session 2 resumes from it to `total_steps`. The final
parameters must equal those of a straight run of the same total steps, bit for bit.
"""
import json
import os
import re
import shutil
import subprocess
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from fake_kaggle import FakeKaggle

USER = "rehearsal-user"
KERNEL = f"{USER}/emergence-lab-training"
TOOLCHAIN = f"{USER}/emergence-lab-toolchain"


class TimedClient(NotebookClient):
    """Records every stream output with the time it arrived (Kaggle's log has the same shape)."""

    def __init__(self, nb, t0, log, **kw):
        super().__init__(nb, **kw)
        self.t0, self.log_entries = t0, log

    def process_message(self, msg, cell, cell_index):
        kind, c = msg["msg_type"], msg["content"]
        if kind == "stream":
            self.log_entries.append({"stream_name": c["name"], "time": time.time() - self.t0,
                                     "data": c["text"]})
        elif kind == "error":
            self.log_entries.append({"stream_name": "stderr", "time": time.time() - self.t0,
                                     "data": f"{c['ename']}: {c['evalue']}\n"})
        return super().process_message(msg, cell, cell_index)


def run_notebook(nb, root, env, timeout=1800):
    """Runs nb (in place) in the python3 kernel with exactly os.environ + env, cwd root/working.
    Returns (ok, failure message, log entries)."""
    log = []
    client = TimedClient(nb, time.time(), log, kernel_name="python3", timeout=timeout,
                         record_timing=True, startup_timeout=120,
                         resources={"metadata": {"path": os.path.join(root, "working")}})
    try:
        client.execute(env=dict(os.environ, **env))
        return True, None, log
    except CellExecutionError as e:
        return False, str(e).splitlines()[-1] if str(e) else "cell failed", log


def first_progress_s(log):
    """Seconds from the session's first cell to its first training progress line."""
    return next((e["time"] for e in log if "progress step=" in e["data"]), None)


def safetensors_arrays(path):
    """{name: (dtype, shape, raw bytes)} of a safetensors file, read with the standard library."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    base = 8 + n
    return {k: (v["dtype"], v["shape"], data[base + v["data_offsets"][0]:base + v["data_offsets"][1]])
            for k, v in header.items() if k != "__metadata__"}


def newest_checkpoint(folder):
    found = []
    for d, _, files in os.walk(folder):
        for n in files:
            p = os.path.join(d, n)
            if n.endswith(".safetensors") and not n.startswith("latest") and not os.path.islink(p):
                found.append(p)
    def step(p):
        m = re.search(r"(\d+)\.safetensors$", os.path.basename(p))
        return int(m.group(1)) if m else -1

    return max(found, key=lambda p: (step(p), p)) if found else None


def metrics_range(downloads):
    """'N records, steps A..B' of the newest session's metrics.jsonl (informational)."""
    found = sorted(os.path.join(d, n) for d, _, files in os.walk(downloads) for n in files
                   if n == "metrics.jsonl" and "session-" in d)
    if not found:
        return "no metrics.jsonl"
    steps = []
    with open(found[-1]) as f:
        for line in f:
            try:
                steps.append(int(json.loads(line).get("step")))
            except (ValueError, TypeError, AttributeError):
                pass
    return f"{len(steps)} records, steps {min(steps)}..{max(steps)}" if steps else "no step records"


def project_copy(repo, dest):
    """A git repository holding the working tree's tracked files, committed (the user's clone)."""
    files = subprocess.run(["git", "-C", repo, "ls-files", "-z"], capture_output=True, check=True).stdout
    for rel in files.decode().split("\0"):
        src = os.path.join(repo, rel)
        if rel and os.path.isfile(src) and not os.path.islink(src):
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, rel))
    g = ["git", "-C", dest, "-c", "user.name=rehearsal", "-c", "user.email=rehearsal@example.com"]
    subprocess.run(g[:3] + ["init", "-q"], check=True)
    subprocess.run(g + ["add", "-A"], check=True)
    subprocess.run(g + ["commit", "-q", "-m", "rehearsal"], check=True)
    return subprocess.run(g + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def test_kaggle_chain(t):
    """`t` is test_notebooks (check, timed, kaggle_env, SHRINK...)."""
    work = os.path.join(t.WORK, "chain")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    total = t.STEPS_PER_ITER * int(os.environ.get("EMERGENCE_LAB_CHAIN_ITERS", "400"))
    deadline_s = os.environ.get("EMERGENCE_LAB_CHAIN_DEADLINE", "3s")
    session_env = {
        1: {"EMERGENCE_LAB_OVERRIDES_EXTRA": f"train.max_wall_time={deadline_s}"},
        2: {},
    }
    started = []

    def run_session(session, root):
        if session.kernel == TOOLCHAIN:
            # The stand-in toolchain kernel: offline here, so it reuses the tests' warm evcxr
            # build folder and this machine's Rust and libtorch (not packed: EMERGENCE_LAB_LIBTORCH
            # is set and EMERGENCE_LAB_PACK_RUST=0); it packs the build folder for real.
            env = t.kaggle_env(root, total)
            env["EMERGENCE_LAB_PACK_RUST"] = "0"
            nb = nbformat.reads(session.request["text"], as_version=4)
            with t.timed("chain: the toolchain kernel (stand-in: warm build folder)"):
                ok, failure, log = run_notebook(nb, root, env)
            nbformat.write(nb, os.path.join(work, "toolchain.ipynb"))
            results["toolchain"] = {"nb": nb, "log": log, "root": root}
            return ok, failure, log
        n = len([s for s in fake.sessions(KERNEL) if s.version <= session.version])
        started.append((n, session.mounted))
        env = t.kaggle_env(root, total)
        env["EMERGENCE_LAB_KEEP_TOOLS"] = "0"
        if with_cache:
            # evcxr_jupyter and the build folder come from the toolchain cache (the build folder
            # into the session's /kaggle/temp, as on Kaggle).
            env["EMERGENCE_LAB_EVCXR_TMPDIR"] = os.path.join(root, "temp", "evcxr")
            env["EMERGENCE_LAB_EVCXR"] = ""
        extra = session_env.get(n, {}).get("EMERGENCE_LAB_OVERRIDES_EXTRA")
        if extra:
            env["EMERGENCE_LAB_OVERRIDES"] += " " + extra
        nb = nbformat.reads(session.request["text"], as_version=4)
        with t.timed(f"chain: Kaggle session {n} (version {session.version})"):
            ok, failure, log = run_notebook(nb, root, env)
        nbformat.write(nb, os.path.join(work, f"session-{n}.ipynb"))
        results[n] = {"nb": nb, "log": log, "root": root}
        return ok, failure, log

    results = {}
    fake = FakeKaggle(os.path.join(work, "kaggle"), USER, run_session)
    proj = os.path.join(work, "project")
    commit = project_copy(t.REPO, proj)
    home = os.path.join(work, "home")
    os.makedirs(os.path.join(home, ".kaggle"))
    kj = os.path.join(home, ".kaggle", "kaggle.json")
    with open(kj, "w") as f:
        json.dump({"username": USER, "key": "rehearsal-key-0000"}, f)
    os.chmod(kj, 0o600)
    henv = {"PATH": os.environ["PATH"], "HOME": home, "KAGGLE_CONFIG_DIR": os.path.join(home, ".kaggle"),
            "KAGGLE_HELPERS_ENDPOINT": fake.url, "KAGGLE_HELPERS_DATASET_POLL_S": "0.2",
            "TMPDIR": work}

    def helper(name, *args, timeout=3600):
        r = subprocess.run([os.environ[f"EMERGENCE_LAB_{name.upper()}_BIN"], *args], cwd=proj, env=henv,
                           capture_output=True, text=True, timeout=timeout)
        for line in (r.stdout + r.stderr).splitlines():
            print(f"   [{name}] {line}", flush=True)
        return r

    with_cache = os.environ.get("EMERGENCE_LAB_CHAIN_NO_CACHE") != "1"
    try:
        r = helper("kaggle_setup")
        t.check(r.returncode == 0, f"kaggle_setup failed:\n{r.stdout}{r.stderr}")
        if with_cache:
            with t.timed("chain: kaggle_run --toolchain (the toolchain cache, once)"):
                r = helper("kaggle_run", "--toolchain", "--torch", "cpu", "--toolchain-interval", "1")
            t.check(r.returncode == 0, f"kaggle_run --toolchain failed:\n{r.stdout}{r.stderr}")
            with open(os.path.join(proj, "notebooks", "kernel-metadata.json")) as f:
                t.check(TOOLCHAIN in json.load(f)["kernel_sources"], "the toolchain kernel is in kernel_sources")
        with t.timed("chain: kaggle_run --push-first --sessions 2 (two Kaggle sessions)"):
            r = helper("kaggle_run", "--push-first", "--sessions", "2", "--interval", "1",
                       "--chain-dir", os.path.join(work, "downloads"), "--publish-timeout", "60")
        out = r.stdout + r.stderr
        t.check(r.returncode == 0, f"the chain failed (exit {r.returncode}):\n{out}")
    finally:
        fake.close()

    # Source published and found.
    src = fake.datasets.get(f"{USER}/emergence-lab-src")
    t.check(src and "emergence-lab-source.json" in src[-1], "the source was published as a dataset")
    t.check(json.loads(src[-1]["emergence-lab-source.json"])["commit"] == commit, "the manifest names the commit")
    t.check([n for n, _ in started] == [1, 2], f"two sessions ran: {started}")
    t.check(f"{USER}/emergence-lab-src" in started[0][1], f"session 1 had the source attached: {started[0][1]}")
    s1, s2 = results[1], results[2]
    if with_cache:
        pack = t.text_of(t.by_tag(results["toolchain"]["nb"], "emergence-lab-toolchain-pack"))
        t.check("toolchain cache written" in pack, "the toolchain kernel packed the cache", None)
    for n, s in ((1, s1), (2, s2)):
        if with_cache:
            t.check(TOOLCHAIN in started[n - 1][1], f"session {n} had the toolchain attached: {started[n - 1][1]}")
            setup = t.text_of(s["nb"].cells[0])
            t.check("restored the evcxr build folder" in setup and "Cargo.lock match" in setup,
                    f"session {n} restored the build folder, versions matching", s["nb"].cells[0])
            t.check(re.search(r"evcxr_jupyter 0\.22\.0: .*/input/emergence-lab-toolchain/bin/evcxr_jupyter", setup),
                    f"session {n} ran the cache's evcxr_jupyter", s["nb"].cells[0])
        src_cell = t.by_tag(s["nb"], "source")
        t.check("attached dataset" in t.text_of(src_cell) and f"commit {commit}" in t.text_of(src_cell),
                f"session {n} built the attached source's commit", src_cell)
        setup = t.text_of(s["nb"].cells[0])
        line = next((l for l in setup.splitlines() if l.startswith("[setup] times:")), None)
        t.check(line, f"session {n}: the setup cell timed its phases", s["nb"].cells[0])
        print(f"   session {n} {line}; first progress line after {first_progress_s(s['log']):.1f} s", flush=True)

    # Session 1 stopped by its deadline, before total_steps, with a checkpoint.
    train1 = t.by_tag(s1["nb"], "train")
    start1, end1 = t.step_of_trained(train1)
    t.check(start1 == 0 and 0 < end1 < total,
            f"session 1 trained 0 -> (0, {total}), got {start1} -> {end1} (if it reached {total}, this machine "
            f"beat the {deadline_s} deadline: raise EMERGENCE_LAB_CHAIN_ITERS)", train1)
    t.check("stopped: WallTime" in t.text_of(train1), "session 1 stopped at its deadline", train1)
    # Fetched, verified, published as the checkpoints dataset's next version.
    ckpts = fake.datasets.get(f"{USER}/emergence-lab-checkpoints")
    t.check(ckpts and len(ckpts) == 2, f"two checkpoint versions published (one per session): {ckpts and len(ckpts)}")
    t.check(any(n.endswith(".safetensors") for n in ckpts[0]), f"version 1 holds a checkpoint: {list(ckpts[0])}")
    t.check("verified" in out.lower() or "step " + str(end1) in out, f"the chain reports the checkpoint:\n{out}")
    t.check(f"{USER}/emergence-lab-checkpoints" in started[1][1], f"session 2 had the checkpoints attached: {started[1][1]}")
    # Session 2 resumed from it and finished.
    resume2 = t.by_tag(s2["nb"], "resume")
    t.check(f"resuming at step {end1}" in t.text_of(resume2), f"session 2 resumed at step {end1}", resume2)
    start2, end2 = t.step_of_trained(t.by_tag(s2["nb"], "train"))
    t.check(start2 == end1 and end2 >= total, f"session 2 trained {end1} -> >= {total}, got {start2} -> {end2}")
    t.check("Chain finished" in out, f"the chain says it finished:\n{out}")
    print("   metrics of the last session's download: " + metrics_range(os.path.join(work, "downloads")), flush=True)
    chained = newest_checkpoint(os.path.join(work, "downloads"))
    t.check(chained and f"{end2}" in os.path.basename(chained), f"session 2's final checkpoint downloaded: {chained}")

    # A straight run of the same total steps, in one session.
    straight = os.path.join(work, "straight")
    os.makedirs(os.path.join(straight, "working"))
    t.attach_source(os.path.join(straight, "input", "emergence-lab-src"))
    nb = nbformat.reads(fake.kernels[KERNEL]["text"], as_version=4)
    with t.timed("chain: a straight run of the same total steps"):
        ok, failure, _ = run_notebook(nb, straight, t.kaggle_env(straight, total))
    t.check(ok, f"the straight run failed: {failure}")
    s0, e0 = t.step_of_trained(t.by_tag(nb, "train"))
    t.check(s0 == 0 and e0 == end2, f"straight run 0 -> {end2}, got {s0} -> {e0}")
    reference = newest_checkpoint(os.path.join(straight, "working", "checkpoints"))
    a, b = safetensors_arrays(chained), safetensors_arrays(reference)
    t.check(sorted(a) == sorted(b), f"same tensors: {sorted(set(a) ^ set(b))}")
    differ = [k for k in a if a[k] != b[k]]
    t.check(not differ, f"{len(differ)} of {len(a)} arrays differ after the chain: {differ[:8]}")
    print(f"   chain == straight run: {len(a)} arrays, {sum(len(v[2]) for v in a.values())} bytes, "
          f"bit for bit (step {end2}; session 1 stopped at {end1})", flush=True)
