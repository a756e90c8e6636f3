//! `kaggle_run --smoke` against the fake server: the shrunk notebook goes to a kernel of its
//! own with the source, and the verdict checks the CUDA device line and a verified checkpoint.

mod common;

use common::*;
use serde_json::{json, Value};

fn log_with(lines: &[&str]) -> String {
    let entries: Vec<Value> = lines
        .iter()
        .map(|l| json!({"stream_name": "stdout", "time": 1.0, "data": format!("{l}\n")}))
        .collect();
    serde_json::to_string(&entries).unwrap()
}

const CUDA: &str = "device picked=cuda:0 reason=auto gpu=\"Tesla T4\" cc=7.5 cuda_backend=true";

fn smoke_env(device: &str, checkpoint: Option<Vec<u8>>) -> Env {
    let e = Env::with_metadata();
    e.fake.set_statuses(vec![
        json!({}),
        json!({"status": "RUNNING"}),
        json!({"status": "COMPLETE"}),
    ]);
    e.fake.set_log(&log_with(&[
        "[setup] times: toolchain 20.0 s, evcxr 1.0 s; total 30.0 s",
        device,
        "progress step=4096 total=4096",
    ]));
    if let Some(c) = checkpoint {
        e.fake.add_output("checkpoints/step_4096.safetensors", c);
    }
    e.fake.add_output("runs/metrics.jsonl", b"{}\n".to_vec());
    e
}

fn smoke(e: &Env) -> Run {
    e.run("kaggle_run", &["--smoke", "--smoke-interval", "0.05"])
}

#[test]
fn smoke_passes_with_the_gpu_and_a_verified_checkpoint() {
    let e = smoke_env(CUDA, Some(checkpoint_bytes(4096, "final")));
    let r = smoke(&e);
    assert_eq!(r.code, 0, "{}", r.all());
    let verdict: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("SMOKE"))
        .collect();
    assert_eq!(verdict.len(), 1, "{}", r.stdout);
    let v = verdict[0];
    assert!(v.starts_with("SMOKE PASS: cuda:0 (Tesla T4)"), "{v}");
    assert!(
        v.contains("step 4096 verified") && v.contains("times: push "),
        "{v}"
    );
    assert!(v.contains("setup cell: toolchain 20.0 s"), "{v}");
    let save = e.fake.rpcs("SaveKernel");
    assert_eq!(save.len(), 1);
    let b = save[0].json();
    assert_eq!(b["slug"], "fake-user/emergence-lab-smoke");
    assert_eq!(b["newTitle"], "Emergence Lab Smoke");
    assert_eq!(b["enableGpu"], true);
    assert_eq!(b["machineShape"], "NvidiaTeslaT4");
    assert!(b.get("kernelExecutionType").is_none(), "saved and run");
    assert_eq!(
        b["datasetDataSources"],
        json!(["fake-user/emergence-lab-src"])
    );
    assert!(b.get("kernelDataSources").is_none());
    let nb: Value = serde_json::from_str(b["text"].as_str().unwrap()).unwrap();
    let first = nb["cells"][0]["source"].as_str().unwrap();
    assert!(first.contains("EMERGENCE_LAB_OVERRIDES") && first.contains("train.total_steps=4096"));
    assert_eq!(
        e.fake.rpcs("GetKernelSessionStatus")[0].json()["kernelSlug"],
        "emergence-lab-smoke"
    );
    assert!(
        !e.proj().join("notebooks/.kaggle-run.json").exists(),
        "the training run is not replaced"
    );
    assert!(
        e.fake.gets("/files/runs/").is_empty(),
        "only checkpoints are fetched"
    );
}

#[test]
fn smoke_fails_on_the_cpu() {
    let e = smoke_env(
        "device picked=cpu reason=no-gpu cuda_backend=false",
        Some(checkpoint_bytes(4096, "final")),
    );
    let r = smoke(&e);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains("SMOKE FAIL: ran on the CPU"),
        "{}",
        r.stdout
    );
}

#[test]
fn smoke_fails_without_a_verified_checkpoint() {
    let e = smoke_env(CUDA, None);
    let r = smoke(&e);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains("SMOKE FAIL: no verified checkpoint"),
        "{}",
        r.stdout
    );
    let mut bad = checkpoint_bytes(4096, "final");
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    let e = smoke_env(CUDA, Some(bad));
    let r = smoke(&e);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains("SMOKE FAIL: no verified checkpoint"),
        "{}",
        r.stdout
    );
}

#[test]
fn smoke_reports_a_failed_run_and_a_timeout() {
    let e = smoke_env(CUDA, None);
    e.fake.set_statuses(vec![
        json!({"status": "ERROR", "failureMessage": "build cell failed"}),
    ]);
    let r = smoke(&e);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stdout
            .contains("SMOKE FAIL: the run ended in ERROR: build cell failed"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("| device picked=cuda:0"),
        "log tail: {}",
        r.stderr
    );
    let e = smoke_env(CUDA, None);
    e.fake.set_statuses(vec![json!({"status": "RUNNING"})]);
    let r = e.run(
        "kaggle_run",
        &[
            "--smoke",
            "--smoke-interval",
            "0.05",
            "--smoke-timeout",
            "0.3",
        ],
    );
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains("SMOKE FAIL: the run is still RUNNING"),
        "{}",
        r.stdout
    );
}

#[test]
fn smoke_push_refused_is_an_error() {
    let e = smoke_env(CUDA, None);
    e.fake.script(
        "SaveKernel",
        vec![Reply::Json(
            200,
            json!({"error": "Maximum weekly GPU quota of 30.00 hours reached."}),
        )],
    );
    let r = smoke(&e);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("quota"), "{}", r.stderr);
}

/// With the toolchain cache made (`kaggle_run --toolchain`), the smoke run restores it too; the
/// training kernel's own output (with its checkpoints) stays out.
#[test]
fn smoke_keeps_the_toolchain_cache_and_nothing_else() {
    let e = smoke_env(
        "device picked=cuda:0 reason=auto gpu=\"Tesla T4\" cuda_backend=true",
        Some(checkpoint_bytes(4096, "final")),
    );
    let mut meta = e.metadata();
    meta["kernel_sources"] = json!([KERNEL, "fake-user/emergence-lab-toolchain"]);
    e.write_metadata(&meta);
    let r = smoke(&e);
    assert_eq!(r.code, 0, "{}", r.all());
    let b = e.fake.rpcs("SaveKernel")[0].json();
    assert_eq!(
        b["kernelDataSources"],
        json!(["fake-user/emergence-lab-toolchain"])
    );
}
