//! The GPU check's logic on a CPU (`src/bin/gpu_check.rs`): with `--allow-cpu` every step runs
//! (throughput, checkpoint from the device, resume on the CPU and on the device compared bit for
//! bit, ablation) and the JSON verdict is `pass`; without it, a machine that gives the CPU fails
//! loudly with exit code 1.

use std::path::PathBuf;
use std::process::Command;

fn gpu_check() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gpu_check"))
}

fn last_json(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("a JSON line");
    serde_json::from_str(line).unwrap()
}

#[test]
fn every_step_runs_and_the_cpu_resume_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(gpu_check())
        .args(["--tiny", "--allow-cpu", "--iters", "2", "--out"])
        .arg(dir.path())
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("run gpu_check");
    let v = last_json(&o.stdout);
    assert!(
        o.status.success(),
        "{v}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(v["verdict"], "pass", "{v}");
    assert_eq!(v["device"], "cpu");
    assert_eq!(v["resume_bit_exact"], true);
    assert_eq!(v["resume_on_cpu"], "ok");
    assert!(v["gpu_slot_steps_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["ablation_conditions"].as_u64().unwrap() >= 2);
    assert!(v["device_line"]
        .as_str()
        .unwrap()
        .starts_with("device picked=cpu"));
}

#[test]
fn a_run_that_gets_the_cpu_fails_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(gpu_check())
        .args(["--tiny", "--iters", "2", "--out"])
        .arg(dir.path())
        .env("PATH", "/nonexistent") // no nvidia-smi: auto gives the CPU
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    let v = last_json(&o.stdout);
    if v["device"] != "cpu" {
        return; // this machine has a usable GPU: nothing to prove here
    }
    assert_eq!(o.status.code(), Some(1), "{v}");
    assert_eq!(v["verdict"], "fail");
    assert!(
        v["failures"][0].as_str().unwrap().contains("got the CPU"),
        "{v}"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("GPU CHECK FAILED"));
}
