#!/usr/bin/env python3
"""Executes emergence-lab's notebooks for real and checks their outputs.

Run through tests/notebook/run_notebooks.sh, which installs the tools and sets the environment:
  EMERGENCE_LAB_REPO        repository root
  EMERGENCE_LAB_KERNEL      name of the evcxr kernelspec (installed by kernel/install.sh)
  EMERGENCE_LAB_EVCXR       evcxr_jupyter binary (for the Kaggle rehearsal)
  EMERGENCE_LAB_EVCXR_TMPDIR  persistent evcxr build folder shared by every test (sequential)
  LIBTORCH                  libtorch folder
  EMERGENCE_LAB_KAGGLE_NB   path of the generated Kaggle notebook (written by kaggle_notebook)
Tests (argument, default all): validate, local (Test 1, two runs: fresh then resume),
kaggle_gpu (a visible but unusable GPU fails the Kaggle run at the build cell),
interrupt (the interrupt button stops training with a checkpoint), kaggle (Test 2, rehearsal
through the python3 kernel and %%rust, resuming from Test 1's checkpoints attached as an
input, plus a failing cell), kaggle_chain (kaggle_setup + kaggle_run --sessions 2 against a fake
Kaggle that runs each pushed notebook; bit-exact against a straight run), plumbing (a tiny notebook: kernel, :dep, rich output, errors).
"""
import copy
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = os.environ["EMERGENCE_LAB_REPO"]
KERNEL = os.environ.get("EMERGENCE_LAB_KERNEL", "emergence-lab-rust")
RUST_NB = os.path.join(REPO, "notebooks", "kaggle_training.ipynb")
WORK = os.environ.get("EMERGENCE_LAB_TEST_DIR") or tempfile.mkdtemp(prefix="el-notebook-tests-")
TIMES = []

# Training: ~30-40 s for the first run (400 iterations of 1024 steps) on a loaded 2-core
# machine, ~10-15 s for each resumed run; identical in every test so
# that Test 2 may resume Test 1's checkpoints (only run-control fields may differ on resume).
SHRINK = ("train.num_envs=2 train.num_steps=32 train.num_epochs=2 train.minibatch_size=512 "
          "train.num_threads=1 evolution.max_agents=16 env.num_agents=8 "
          "analysis.emergence_check_interval=1024 analysis.specialization_check_interval=1024")
STEPS_PER_ITER = 2 * 32 * 16
RUN1_STEPS = int(os.environ.get("EMERGENCE_LAB_TEST_STEPS", STEPS_PER_ITER * 400))
MORE_STEPS = STEPS_PER_ITER * 120  # added by each resumed run


class Failure(AssertionError):
    pass


def check(cond, what, cell=None):
    if not cond:
        detail = f"\n--- cell output ---\n{text_of(cell)}" if cell is not None else ""
        raise Failure(what + detail)


def timed(name):
    class T:
        def __enter__(self):
            self.t = time.time()
            print(f"== {name} ...", flush=True)

        def __exit__(self, kind, *rest):
            dt = time.time() - self.t
            TIMES.append((name, dt))
            print(f"== {name}: {dt:.1f} s{' (FAILED)' if kind else ''}", flush=True)

    return T()


def text_of(cell):
    out = []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            out.append(o["text"])
        elif o["output_type"] == "error":
            out.append(f"{o['ename']}: {o['evalue']}\n" + "\n".join(o.get("traceback", [])))
        elif "text/plain" in o.get("data", {}):
            out.append(o["data"]["text/plain"])
    return "".join(out)


def mimes_of(cell):
    return {m for o in cell.get("outputs", []) for m in o.get("data", {})}


def by_tag(nb, tag):
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    check(len(cells) == 1, f"expected one cell tagged {tag}, found {len(cells)}")
    return cells[0]


def cell_seconds(cell):
    ex = cell.get("metadata", {}).get("execution", {})
    a, b = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
    if not (a and b):
        return float("nan")
    from datetime import datetime

    f = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
    return (f(b) - f(a)).total_seconds()


def print_cell_times(nb, label):
    parts = []
    for c in nb.cells:
        tags = c.get("metadata", {}).get("tags", [])
        if c.cell_type == "code" and tags:
            parts.append(f"{tags[0]} {cell_seconds(c):.1f}s")
    print(f"   {label} cell times: " + ", ".join(parts), flush=True)


def execute(nb, kernel_name, cwd, env, timeout=1800, expect_error=False):
    """Runs nb in place with os.environ extended by env; returns the CellExecutionError or None."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        client = NotebookClient(nb, kernel_name=kernel_name, timeout=timeout, record_timing=True,
                                resources={"metadata": {"path": cwd}}, startup_timeout=120)
        try:
            client.execute()
        except CellExecutionError as e:
            if not expect_error:
                dump = os.path.join(WORK, "failed.ipynb")
                nbformat.write(nb, dump)
                raise Failure(f"notebook failed (outputs in {dump}):\n{e}") from None
            return e
        check(not expect_error, "the notebook was expected to fail but succeeded")
        return None
    finally:
        os.environ.clear()
        os.environ.update(saved)


def checkpoints_in(folder):
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder) if f.endswith(".safetensors") and not f.startswith("latest"))


def step_of_trained(cell):
    m = re.search(r"trained steps (\d+) -> (\d+)", text_of(cell))
    check(m, "train cell did not report 'trained steps A -> B'", cell)
    return int(m.group(1)), int(m.group(2))


def local_env(total_steps, run_dir):
    return {
        "EMERGENCE_LAB_OVERRIDES": (
            f"{SHRINK} train.total_steps={total_steps} log.save_interval={STEPS_PER_ITER * 100} "
            f"log.log_interval={STEPS_PER_ITER * 40} log.checkpoint_dir={run_dir}/checkpoints "
            f"log.metrics_path={run_dir}/runs/metrics.jsonl log.tensorboard_dir={run_dir}/runs/tb"),
        "CARGO_NET_OFFLINE": "true",
    }


# ---------------------------------------------------------------------------------------------
def test_validate():
    with timed("nbformat validation"):
        nb = nbformat.read(RUST_NB, as_version=4)
        nbformat.validate(nb)
        check(nb.metadata.kernelspec.name == "emergence-lab-rust", "Rust notebook kernelspec")
        for tag in ("gpu", "source", "build", "config", "resume", "train", "results"):
            cell = by_tag(nb, tag)
            idx = nb.cells.index(cell)
            check(idx > 0 and nb.cells[idx - 1].cell_type == "markdown", f"markdown above {tag}")
            check(not cell.outputs, f"{tag} cell is committed with outputs")
        src = by_tag(nb, "source").source
        check('let repo_url: &str = "";' in src and "github.com" not in src,
              "no default clone address in the source cell")
        check("emergence-lab-source.json" in src, "the source cell reads the attached source's manifest")
        knb = nbformat.read(os.environ["EMERGENCE_LAB_KAGGLE_NB"], as_version=4)
        nbformat.validate(knb)
        check(knb.metadata.kernelspec.name == "python3", "Kaggle notebook kernelspec python3")
        check("register_magic_function" in knb.cells[0].source, "Kaggle notebook starts with the setup cell")
        code = [c for c in knb.cells[1:] if c.cell_type == "code"]
        check(code and all(c.source.startswith("%%rust\n") for c in code), "every Rust cell uses %%rust")


def test_local():
    run_dir = os.path.join(WORK, "local")
    shutil.rmtree(run_dir, ignore_errors=True)
    nb_dir = os.path.join(REPO, "notebooks")
    nb = nbformat.read(RUST_NB, as_version=4)
    with timed("Test 1 run 1: Rust notebook through evcxr, fresh"):
        execute(nb, KERNEL, nb_dir, local_env(RUN1_STEPS, run_dir))
    print_cell_times(nb, "run 1")
    gpu = by_tag(nb, "gpu")
    check("CPU threads:" in text_of(gpu) and "GPUs:" in text_of(gpu), "GPU cell ran", gpu)
    check("device picked=cpu" in text_of(by_tag(nb, "build")) and "libtorch_cuda=" in text_of(by_tag(nb, "build")),
          "build cell printed the device line", by_tag(nb, "build"))
    check("train.total_steps" in text_of(by_tag(nb, "config")), "config table printed", by_tag(nb, "config"))
    check("starts fresh" in text_of(by_tag(nb, "resume")), "fresh start reported", by_tag(nb, "resume"))
    train = by_tag(nb, "train")
    check("progress step=" in text_of(train), "progress lines visible in the train cell", train)
    start, end = step_of_trained(train)
    check(start == 0 and end >= RUN1_STEPS, f"run 1 trained 0 -> >= {RUN1_STEPS}, got {start} -> {end}", train)
    ckpts = checkpoints_in(os.path.join(run_dir, "checkpoints"))
    check(ckpts, "a checkpoint file exists after run 1")
    results = by_tag(nb, "results")
    check(mimes_of(results) & {"image/png", "image/svg+xml"}, "results cell produced an image", results)
    check(".safetensors" in text_of(results), "results cell lists the checkpoints", results)

    nb2 = nbformat.read(RUST_NB, as_version=4)
    total2 = end + MORE_STEPS
    with timed("Test 1 run 2: same notebook again, resumes"):
        execute(nb2, KERNEL, nb_dir, local_env(total2, run_dir))
    print_cell_times(nb2, "run 2")
    resume = by_tag(nb2, "resume")
    check(f"resuming at step {end}" in text_of(resume), f"run 2 found the checkpoint at step {end}", resume)
    start2, end2 = step_of_trained(by_tag(nb2, "train"))
    check(start2 == end and end2 >= total2, f"run 2 continued {end} -> >= {total2}, got {start2} -> {end2}",
          by_tag(nb2, "train"))
    return end2


def test_interrupt():
    """The kernel's interrupt button (SIGINT through the kernelspec) stops training with a checkpoint."""
    from jupyter_client.manager import KernelManager

    run_dir = os.path.join(WORK, "interrupt")
    shutil.rmtree(run_dir, ignore_errors=True)
    nb = nbformat.read(RUST_NB, as_version=4)
    env = dict(os.environ, **local_env(10**12, run_dir))
    env["EMERGENCE_LAB_OVERRIDES"] = env["EMERGENCE_LAB_OVERRIDES"].replace(
        f"log.save_interval={STEPS_PER_ITER * 100}", "log.save_interval=0")
    km = KernelManager(kernel_name=KERNEL)
    km.start_kernel(cwd=os.path.join(REPO, "notebooks"), env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)

        def run(code, on_output=None, timeout=1200):
            msg_id = kc.execute(code)
            text, deadline = [], time.time() + timeout
            while True:
                check(time.time() < deadline, f"cell timed out: {code[:60]}")
                try:
                    m = kc.get_iopub_msg(timeout=2)
                except queue.Empty:
                    continue
                if m["parent_header"].get("msg_id") != msg_id:
                    continue
                c = m["content"]
                if m["msg_type"] == "stream":
                    text.append(c["text"])
                    if on_output:
                        on_output("".join(text))
                elif m["msg_type"] == "error":
                    text.append(f"{c['ename']}: {c['evalue']}")
                elif m["msg_type"] == "status" and c["execution_state"] == "idle":
                    break
            reply = kc.get_shell_msg(timeout=30)
            return reply["content"]["status"], "".join(text)

        with timed("interrupt test: cells up to resume"):
            for tag in ("gpu", "source", "build", "config", "resume"):
                status, out = run(by_tag(nb, tag).source)
                check(status == "ok", f"cell {tag} failed: {out}")
        sent = {}

        def interrupt_once(text):
            if "progress step=" in text and not sent:
                sent["at"] = time.time()
                km.interrupt_kernel()

        with timed("interrupt test: train, interrupt at the first progress line"):
            status, out = run(by_tag(nb, "train").source, on_output=interrupt_once)
        check(sent, f"no progress line before the train cell ended:\n{out}")
        took = time.time() - sent["at"]
        print(f"   train cell returned {took:.1f} s after the interrupt", flush=True)
        check(status == "ok", f"the interrupted train cell must return cleanly, got {status}:\n{out}")
        check(re.search(r"stopped: .*(Signal|Interrupt|Stop)", out), f"summary says it stopped on request:\n{out}")
        ckpts = checkpoints_in(os.path.join(run_dir, "checkpoints"))
        check(ckpts, f"a checkpoint was saved on interrupt:\n{out}")
        status, out2 = run('println!("alive {}", outcome.as_ref().map(|o| o.summary.final_step).unwrap_or(0));')
        check(status == "ok" and "alive" in out2, f"kernel alive with its variables after the interrupt: {out2}")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def copy_repo(dest):
    """A copy of the working tree's tracked files (like a repository attached as a Kaggle input)."""
    files = subprocess.run(["git", "-C", REPO, "ls-files", "-z"], capture_output=True, check=True).stdout
    for rel in files.decode().split("\0"):
        src = os.path.join(REPO, rel)
        if rel and os.path.isfile(src) and not os.path.islink(src):
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, rel))


def attach_source(dest):
    """The source as kaggle_push attaches it: the dataset's archive and manifest, written by
    `kaggle_push --write-source` (Kaggle may unpack the archive; here it does not, so the
    notebook unpacks it). Returns the commit."""
    subprocess.run([os.environ["EMERGENCE_LAB_KAGGLE_PUSH_BIN"], "--write-source", dest, "--allow-dirty"],
                   cwd=REPO, capture_output=True, check=True)
    return subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, check=True,
                          text=True).stdout.strip()


def kaggle_env(root, total_steps):
    run = f"{root}/working"
    return {
        "EMERGENCE_LAB_KAGGLE_ROOT": root,
        "EMERGENCE_LAB_OFFLINE": "1",
        "EMERGENCE_LAB_LIBTORCH": os.environ["LIBTORCH"],
        "EMERGENCE_LAB_EVCXR": os.environ["EMERGENCE_LAB_EVCXR"],
        "EMERGENCE_LAB_EVCXR_TMPDIR": os.environ["EMERGENCE_LAB_EVCXR_TMPDIR"],
        "EMERGENCE_LAB_OVERRIDES": (f"{SHRINK} train.total_steps={total_steps} "
                                    f"log.save_interval={STEPS_PER_ITER * 100} log.log_interval={STEPS_PER_ITER * 40}"),
        "KAGGLE_KERNEL_RUN_TYPE": "Batch",
    }


def test_kaggle(previous_step):
    root = os.path.join(WORK, "kaggle")
    shutil.rmtree(root, ignore_errors=True)
    with timed("Test 2: prepare /kaggle (the source dataset and Test 1's checkpoints as inputs)"):
        commit = attach_source(os.path.join(root, "input", "emergence-lab-src"))
        shutil.copytree(os.path.join(WORK, "local", "checkpoints"),
                        os.path.join(root, "input", "previous-output", "checkpoints"), symlinks=True)
        os.makedirs(os.path.join(root, "working"))
    knb = nbformat.read(os.environ["EMERGENCE_LAB_KAGGLE_NB"], as_version=4)
    bad = nbformat.v4.new_code_cell('%%rust\nlet deliberately_wrong: u32 = "not a number";')
    bad.metadata["tags"] = ["failing"]
    knb.cells.append(bad)
    total = previous_step + MORE_STEPS
    with timed("Test 2: Kaggle notebook through python3 + %%rust"):
        err = execute(knb, "python3", os.path.join(root, "working"), kaggle_env(root, total), expect_error=True)
    print_cell_times(knb, "Kaggle")
    setup = knb.cells[0]
    st = text_of(setup)
    check("[setup] times:" in st and "Rust kernel ready" in st, "setup cell ran and timed its phases", setup)
    print("   " + next(l for l in st.splitlines() if l.startswith("[setup] times:")), flush=True)
    check("no toolchain cache attached" in st and "kaggle_run --toolchain" in st,
          "without the toolchain cache the setup cell says how to make it", setup)
    check(os.path.isfile(os.path.join(root, "working", "emergence-lab-tools", "bin", "evcxr_jupyter")),
          "evcxr_jupyter left in working for the next session")
    gpu = by_tag(knb, "gpu")
    check("Kaggle (" in text_of(gpu) and "CPU threads:" in text_of(gpu), "GPU cell ran (on Kaggle)", gpu)
    source = by_tag(knb, "source")
    check("attached dataset" in text_of(source) and f"commit {commit}" in text_of(source),
          "source from the attached source dataset, its commit printed", source)
    check(os.path.isfile(os.path.join(root, "temp", "emergence-lab-src", "Cargo.toml")),
          "the attached archive was unpacked into /kaggle/temp")
    resume = by_tag(knb, "resume")
    check("copied " in text_of(resume) and f"resuming at step {previous_step}" in text_of(resume),
          "resume found the input checkpoint, copied it and continues from its step", resume)
    train = by_tag(knb, "train")
    check("progress step=" in text_of(train), "progress relayed through %%rust", train)
    start, end = step_of_trained(train)
    check(start == previous_step and end >= total, f"trained {previous_step} -> >= {total}, got {start} -> {end}", train)
    check(checkpoints_in(os.path.join(root, "working", "checkpoints")), "checkpoint in /kaggle/working/checkpoints")
    results = by_tag(knb, "results")
    check(mimes_of(results) & {"image/png", "image/svg+xml"}, "results image relayed through %%rust", results)
    failing = by_tag(knb, "failing")
    check("mismatched types" in text_of(failing) and "RustCellError" in text_of(failing),
          "the failing cell shows the Rust compiler error and raises", failing)
    check("RustCellError" in str(err), f"the run failed at the failing cell: {err}")


def test_kaggle_gpu():
    """On Kaggle, a GPU that nvidia-smi shows but libtorch cannot use (here: a fake nvidia-smi and
    the CPU libtorch) fails the run at the build cell with the reason, instead of training on the
    CPU for hours."""
    root = os.path.join(WORK, "kaggle-gpu")
    shutil.rmtree(root, ignore_errors=True)
    fake = os.path.join(root, "bin")
    os.makedirs(fake)
    with open(os.path.join(fake, "nvidia-smi"), "w") as f:
        f.write("#!/bin/sh\ncase \"$1\" in\n"
                "  -L) echo 'GPU 0: Tesla T4 (UUID: GPU-0)' ;;\n"
                "  --query-gpu*) echo '0, Tesla T4, 7.5, 15360, 580.65.06' ;;\n"
                "  *) echo '| NVIDIA-SMI 580.65.06  Driver Version: 580.65.06  CUDA Version: 13.0 |' ;;\n"
                "esac\n")
    os.chmod(os.path.join(fake, "nvidia-smi"), 0o755)
    copy_repo(os.path.join(root, "input", "emergence-lab-repo"))
    os.makedirs(os.path.join(root, "working"))
    knb = nbformat.read(os.environ["EMERGENCE_LAB_KAGGLE_NB"], as_version=4)
    env = kaggle_env(root, STEPS_PER_ITER * 4)
    env["PATH"] = fake + os.pathsep + os.environ.get("PATH", "")
    with timed("Kaggle rehearsal with a visible GPU and a CPU libtorch"):
        err = execute(knb, "python3", os.path.join(root, "working"), env, expect_error=True)
    build = by_tag(knb, "build")
    check("the GPU cannot be used" in text_of(build) and "built without CUDA" in text_of(build),
          "the build cell fails naming the cause", build)
    check("progress step=" not in text_of(by_tag(knb, "train")), "no training on the CPU", by_tag(knb, "train"))
    check(not checkpoints_in(os.path.join(root, "working", "checkpoints")), "nothing written")
    check(err is not None, "the run failed")


def test_plumbing():
    """A tiny notebook using only :dep + Config: kernel, build, rich output and error relay."""
    root = os.path.join(WORK, "plumbing")
    shutil.rmtree(root, ignore_errors=True)
    full = nbformat.read(RUST_NB, as_version=4)
    nb = nbformat.v4.new_notebook(metadata=copy.deepcopy(full.metadata))
    nb.cells = [copy.deepcopy(by_tag(full, "gpu")), copy.deepcopy(by_tag(full, "source"))]
    build = nbformat.v4.new_code_cell(
        ':opt 3\n:dep emergence_lab = { path = "emergence-lab-src" }\n'
        'let mut config = emergence_lab::Config::kaggle_notebook();\n'
        'config.train.total_steps = 1234;\n'
        'println!("total_steps={} obs_dim={}", config.train.total_steps, config.obs_dim());')
    build.metadata["tags"] = ["build"]
    image = nbformat.v4.new_code_cell(
        'println!("EVCXR_BEGIN_CONTENT image/svg+xml\\n<svg xmlns=\\"http://www.w3.org/2000/svg\\" '
        'width=\\"10\\" height=\\"10\\"><rect width=\\"10\\" height=\\"10\\"/></svg>\\nEVCXR_END_CONTENT");')
    image.metadata["tags"] = ["image"]
    nb.cells += [build, image]
    with timed("plumbing: tiny Rust notebook through evcxr"):
        execute(nb, KERNEL, os.path.join(REPO, "notebooks"), {"CARGO_NET_OFFLINE": "true"})
    print_cell_times(nb, "plumbing")
    check("total_steps=1234" in text_of(by_tag(nb, "build")), "Config usable from a cell", by_tag(nb, "build"))
    check("image/svg+xml" in mimes_of(by_tag(nb, "image")), "rich output", by_tag(nb, "image"))

    # The same through the Kaggle bridge, with a failing cell.
    knb = json.loads(subprocess.run(
        [os.environ["EMERGENCE_LAB_KAGGLE_NB_BIN"], "--input", "/dev/stdin", "--output", "-"],
        input=nbformat.writes(nb).encode(), capture_output=True, check=True).stdout)
    knb = nbformat.from_dict(knb)
    bad = nbformat.v4.new_code_cell('%%rust\nlet deliberately_wrong: u32 = "not a number";')
    bad.metadata["tags"] = ["failing"]
    knb.cells.append(bad)
    os.makedirs(os.path.join(root, "working"))
    copy_repo(os.path.join(root, "input", "emergence-lab-repo"))
    with timed("plumbing: the same through python3 + %%rust"):
        err = execute(knb, "python3", os.path.join(root, "working"), kaggle_env(root, 1), expect_error=True)
    print_cell_times(knb, "plumbing Kaggle")
    print("   " + next(l for l in text_of(knb.cells[0]).splitlines() if l.startswith("[setup] times:")), flush=True)
    check("total_steps=1234" in text_of(by_tag(knb, "build")), "output relayed", by_tag(knb, "build"))
    check("image/svg+xml" in mimes_of(by_tag(knb, "image")), "rich output relayed", by_tag(knb, "image"))
    failing = by_tag(knb, "failing")
    check("mismatched types" in text_of(failing), "compiler error relayed", failing)
    check("RustCellError" in str(err), f"the run failed at the failing cell: {err}")


def test_kaggle_chain():
    """Two chained Kaggle sessions through kaggle_run and the fake Kaggle (chain_rehearsal.py)."""
    import chain_rehearsal

    chain_rehearsal.test_kaggle_chain(sys.modules[__name__])


def main(argv):
    which = argv[1:] or ["validate", "local", "interrupt", "kaggle"]
    print(f"notebook tests in {WORK}: {' '.join(which)}", flush=True)
    step = None
    for name in which:
        if name == "local":
            step = test_local()
        elif name == "kaggle":
            if step is None:
                raise SystemExit("the kaggle test resumes the local test's checkpoints: run `local` first")
            test_kaggle(step)
        else:
            globals()[f"test_{name}"]()
    print("notebook tests passed; times: " + ", ".join(f"{n} {t:.0f}s" for n, t in TIMES), flush=True)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except Failure as e:
        print(f"NOTEBOOK TEST FAILED: {e}", file=sys.stderr)
        print("times: " + ", ".join(f"{n} {t:.0f}s" for n, t in TIMES), file=sys.stderr)
        sys.exit(1)
