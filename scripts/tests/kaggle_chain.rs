//! `kaggle_run --sessions N` against the fake server: sessions chained through the
//! checkpoints dataset, the stop conditions (N sessions, total_steps, quota, failure), the
//! state file that lets the same command continue, and Ctrl-C that stops only the following.

mod common;

use common::*;
use serde_json::{json, Value};

fn log_with(lines: &[&str]) -> String {
    let entries: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| json!({"stream_name": "stdout", "time": i as f64, "data": format!("{l}\n")}))
        .collect();
    serde_json::to_string(&entries).unwrap()
}

/// A session that completes with a checkpoint at `step` of `total`.
fn completed_session(e: &Env, step: u64, total: u64) {
    e.fake.set_statuses(vec![
        json!({"status": "RUNNING"}),
        json!({"status": "COMPLETE"}),
    ]);
    e.fake.add_output(
        &format!("checkpoints/step_{step}.safetensors"),
        checkpoint_bytes(step, "periodic"),
    );
    e.fake
        .add_output("runs/metrics.jsonl", b"{\"step\":1}\n".to_vec());
    e.fake.set_log(&log_with(&[
        "device picked=cuda:0 reason=auto gpu=\"Tesla T4\" cuda_backend=true",
        &format!("progress step={step} total={total} reward=1.5"),
        "stopped: wall-time budget",
    ]));
}

fn state(e: &Env) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(e.proj().join("notebooks/.kaggle-chain.json")).unwrap(),
    )
    .unwrap()
}

const FAST: &[&str] = &["--interval", "0.05"];

fn chain(e: &Env, extra: &[&str]) -> Run {
    let mut a: Vec<&str> = extra.to_vec();
    a.extend_from_slice(FAST);
    e.run("kaggle_run", &a)
}

#[test]
fn chain_runs_n_sessions_publishing_each_checkpoint_for_the_next() {
    let e = Env::with_metadata();
    completed_session(&e, 100, 1000);
    let r = chain(&e, &["--push-first", "--sessions", "2"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let saves = e.fake.rpcs("SaveKernel");
    assert_eq!(saves.len(), 2, "{}", r.all());
    assert!(saves
        .iter()
        .all(|s| s.json().get("kernelExecutionType").is_none()));
    assert_eq!(
        saves[1].json()["datasetDataSources"],
        json!([
            "fake-user/emergence-lab-src",
            "fake-user/emergence-lab-checkpoints"
        ])
    );
    // Each session was followed by its own version.
    let labels: Vec<Value> = e
        .fake
        .rpcs("GetKernelSessionStatus")
        .iter()
        .map(|r| r.json()["versionLabel"].clone())
        .collect();
    assert_eq!(labels.first().unwrap(), "v7");
    assert_eq!(labels.last().unwrap(), "v8");
    // Session 1 created the checkpoints dataset, session 2 added a version.
    let created: Vec<String> = e
        .fake
        .rpcs("CreateDataset")
        .iter()
        .map(|r| r.json()["slug"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        created,
        vec!["emergence-lab-src", "emergence-lab-checkpoints"]
    );
    let versions = e.fake.rpcs("CreateDatasetVersion");
    assert_eq!(versions.len(), 1);
    assert_eq!(
        versions[0].json()["datasetSlug"],
        "emergence-lab-checkpoints"
    );
    let names: Vec<String> = e
        .fake
        .rpcs("StartBlobUpload")
        .iter()
        .map(|r| r.json()["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names[2..4].to_vec(),
        vec!["step_100.safetensors", "metrics.jsonl"],
        "the newest verified checkpoint and the metrics"
    );
    assert_eq!(e.fake.rpcs("GetAcceleratorQuotaStatistics").len(), 2);
    assert!(r.stdout.contains("GPU quota: 29.0 h left"), "{}", r.stdout);
    assert!(
        r.stdout.contains("Chain finished: 2 session(s) done"),
        "{}",
        r.stdout
    );
    let s = state(&e);
    assert_eq!(s["sessions_done"], 2);
    assert_eq!(s["current"], Value::Null);
    assert_eq!(s["checkpoint_versions"], 2);
    assert_eq!(s["last_checkpoint"]["step"], 100);
    assert_eq!(s["total_steps"], 1000);
    assert!(e
        .proj()
        .join("kaggle_output/chain/session-1-v7/checkpoints/step_100.safetensors")
        .is_file());
    // Running the same command again continues the finished chain: nothing new is started.
    let r = chain(&e, &["--sessions", "2"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("Chain finished"), "{}", r.stdout);
    assert_eq!(e.fake.rpcs("SaveKernel").len(), 2);
}

#[test]
fn chain_stops_at_total_steps() {
    let e = Env::with_metadata();
    completed_session(&e, 200, 200);
    let r = chain(&e, &["--push-first", "--sessions", "5"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(e.fake.rpcs("SaveKernel").len(), 1);
    assert!(
        r.stdout.contains("reached total_steps (200 of 200)"),
        "{}",
        r.stdout
    );
}

#[test]
fn chain_pauses_when_the_quota_would_not_cover_a_session() {
    let e = Env::with_metadata();
    e.fake.script(
        "GetAcceleratorQuotaStatistics",
        vec![Reply::Json(200, json!({"gpuQuota": {"timeUsed": "90000s", "timeReserved": "10000s", "totalTimeAllowed": "108000s"}}))],
    );
    let r = chain(&e, &["--sessions", "3"]);
    assert_eq!(r.code, 5, "{}", r.all());
    assert!(r.stdout.contains("2.2 h of GPU quota left"), "{}", r.stdout);
    assert!(e.fake.rpcs("SaveKernel").is_empty());
    assert_eq!(state(&e)["sessions_done"], 0);
}

#[test]
fn failed_session_prints_the_log_tail_and_the_chain_can_be_rerun() {
    let e = Env::with_metadata();
    e.fake.set_statuses(vec![
        json!({"status": "RUNNING"}),
        json!({"status": "ERROR", "failureMessage": "cell 6 failed"}),
    ]);
    e.fake.set_log(&log_with(&[
        "building",
        "ERROR: the GPU cannot be used: boom",
    ]));
    let r = chain(&e, &["--push-first", "--sessions", "2"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr.contains("cell 6 failed")
            && r.stderr.contains("| ERROR: the GPU cannot be used: boom"),
        "{}",
        r.stderr
    );
    let s = state(&e);
    assert_eq!(s["current"], Value::Null);
    assert_eq!(s["sessions_done"], 0);
    assert!(e
        .fake
        .rpcs("CreateDataset")
        .iter()
        .all(|r| r.json()["slug"] == "emergence-lab-src"));
}

#[test]
fn rerun_follows_the_session_in_flight_instead_of_starting_one() {
    let e = Env::with_metadata();
    completed_session(&e, 100, 1000);
    std::fs::write(
        e.proj().join("notebooks/.kaggle-chain.json"),
        serde_json::to_string(&json!({
            "kernel": KERNEL, "checkpoints_dataset": "fake-user/emergence-lab-checkpoints",
            "sessions_target": 1, "sessions_done": 0,
            "current": {"version": 5, "started_unix": 1},
            "checkpoint_versions": 0, "last_checkpoint": null, "total_steps": null}))
        .unwrap(),
    )
    .unwrap();
    let r = chain(&e, &["--push-first", "--sessions", "1"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("following version 5"), "{}", r.stdout);
    assert!(e.fake.rpcs("SaveKernel").is_empty(), "nothing new started");
    assert!(e
        .fake
        .rpcs("StartBlobUpload")
        .iter()
        .all(|r| r.json()["name"] != "emergence-lab-src.zip"));
    assert_eq!(
        e.fake.rpcs("GetKernelSessionStatus")[0].json()["versionLabel"],
        "v5"
    );
    assert_eq!(state(&e)["sessions_done"], 1);
    assert_eq!(state(&e)["last_checkpoint"]["from_version"], 5);
}

#[test]
fn chain_state_of_another_kernel_is_refused() {
    let e = Env::with_metadata();
    std::fs::write(
        e.proj().join("notebooks/.kaggle-chain.json"),
        serde_json::to_string(&json!({
            "kernel": "someone/else-kernel", "checkpoints_dataset": "someone/x-dataset",
            "sessions_target": 1, "sessions_done": 0, "current": null,
            "checkpoint_versions": 0, "last_checkpoint": null, "total_steps": null}))
        .unwrap(),
    )
    .unwrap();
    let r = chain(&e, &["--sessions", "1"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("--new-chain"), "{}", r.stderr);
    assert!(e.fake.requests().is_empty());
}

#[test]
fn refused_push_stops_the_chain_with_an_error() {
    let e = Env::with_metadata();
    e.fake.script(
        "SaveKernel",
        vec![Reply::Json(
            200,
            json!({"error": "Maximum batch GPU session count of 2 reached."}),
        )],
    );
    let r = chain(&e, &["--push-first", "--sessions", "2"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("Maximum batch GPU session count"),
        "{}",
        r.stderr
    );
    assert_eq!(state(&e)["current"], Value::Null);
}

#[test]
fn failed_checkpoint_publication_is_an_error() {
    let e = Env::with_metadata();
    completed_session(&e, 100, 1000);
    e.fake.script(
        "CreateDataset",
        vec![Reply::Json(500, json!({"code": 500, "message": "Internal error"})); 4],
    );
    let r = chain(&e, &["--push-first", "--sessions", "2", "--no-source"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("Internal error") || r.stderr.contains("500"),
        "{}",
        r.stderr
    );
    assert_eq!(
        e.fake.rpcs("SaveKernel").len(),
        1,
        "no second session without a checkpoint"
    );
    assert_eq!(
        state(&e)["current"]["version"],
        7,
        "the session stays to be harvested on a rerun"
    );
}

#[test]
fn ctrl_c_stops_following_not_the_run() {
    let e = Env::with_metadata();
    e.fake.set_statuses(vec![json!({"status": "RUNNING"})]);
    let child = e
        .command(
            "kaggle_run",
            &["--push-first", "--sessions", "2", "--interval", "0.05"],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while e.fake.rpcs("GetKernelSessionStatus").len() < 2 {
        assert!(std::time::Instant::now() < deadline, "never followed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let ok = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}");
    assert!(stdout.contains("the Kaggle run goes on"), "{stdout}");
    assert_eq!(state(&e)["current"]["version"], 7);
    assert_eq!(e.fake.rpcs("SaveKernel").len(), 1);
}
