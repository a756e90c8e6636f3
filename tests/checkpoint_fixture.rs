//! Checkpoints written before the saved-state schema still load, and continue exactly as the
//! code that wrote them did (see tests/fixtures/format_v1/README.md).

use std::path::Path;
use std::process::Command;

use emergence_lab::checkpoint::read_checkpoint;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/format_v1")
        .join(name)
}

/// The metrics history without the `perf/` timings (wall-clock, never equal twice).
fn learned_metrics(json: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
    for record in v.as_array_mut().unwrap() {
        record["values"]
            .as_object_mut()
            .unwrap()
            .retain(|k, _| !k.starts_with("perf/"));
    }
    assert!(v.as_array().is_some_and(|a| a.len() == 4), "{v}");
    v
}

#[test]
fn a_checkpoint_of_the_old_code_resumes_and_continues_bit_exactly() {
    continues_bit_exactly(None);
}

/// The native passes compiled for AVX2 + FMA (what a CPU without AVX-512 runs) continue the
/// same checkpoint to the same bits (on a CPU without AVX-512 both tests run that path).
#[test]
fn without_avx512_the_same_checkpoint_continues_to_the_same_bits() {
    continues_bit_exactly(Some("avx2"));
}

/// Resumes the fixture with `train` (`EMERGENCE_LAB_CPU_FEATURES` = `features` when given)
/// and requires the expected final checkpoint, bit for bit.
fn continues_bit_exactly(features: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let mut train = Command::new(env!("CARGO_BIN_EXE_train"));
    match features {
        Some(f) => train.env("EMERGENCE_LAB_CPU_FEATURES", f),
        None => train.env_remove("EMERGENCE_LAB_CPU_FEATURES"),
    };
    let out = train
        .args([
            "--train.resume-from",
            fixture("step_128.safetensors").to_str().unwrap(),
            "--train.total-steps",
            "512",
        ])
        .arg(format!(
            "--log.checkpoint-dir={}",
            dir.path().join("ck").display()
        ))
        .arg(format!(
            "--log.metrics-path={}",
            dir.path().join("m.jsonl").display()
        ))
        .arg(format!(
            "--log.tensorboard-dir={}",
            dir.path().join("tb").display()
        ))
        .env_remove("EMERGENCE_LAB_OVERRIDES")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "resume failed: {err}");
    let got = read_checkpoint(&dir.path().join("ck/final_step_512.safetensors")).unwrap();
    let want = read_checkpoint(&fixture("expected_final_step_512.safetensors")).unwrap();
    assert_eq!(got.meta.step, want.meta.step);
    assert_eq!(got.meta.iteration, want.meta.iteration);
    assert_eq!(
        got.meta.run_id, want.meta.run_id,
        "the run keeps its identity"
    );
    let names = |c: &emergence_lab::checkpoint::Checkpoint| {
        let mut v: Vec<String> = c.arrays.iter().map(|a| a.name.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&got), names(&want), "the same arrays are saved");
    let differing: Vec<&str> = want
        .arrays
        .iter()
        .filter(|w| got.array(&w.name) != Some(*w))
        .map(|w| w.name.as_str())
        .collect();
    assert!(
        differing.is_empty(),
        "arrays that no longer continue bit-exactly from the old checkpoint: {differing:?}"
    );
    assert_eq!(
        learned_metrics(&got.meta.metrics_json),
        learned_metrics(&want.meta.metrics_json),
        "metrics history (timings aside)"
    );
    assert_eq!(
        got.meta.trackers_json, want.meta.trackers_json,
        "tracker state"
    );
}
