//! The metrics JSONL sink: exact round trip, and resume without duplicated or missing
//! iterations after a crash that wrote past the checkpoint.

use std::io::Write;

use emergence_lab_core::metrics::Metrics;
use emergence_lab_core::sinks::{read_metrics_jsonl, MetricsJsonl, SinkError};

fn metrics(iteration: u64) -> Metrics {
    let mut m = Metrics::new(iteration * 100, iteration);
    m.set("losses/policy_loss", -0.01 * iteration as f64 + 0.1 + 0.2);
    m.set("charts/mean_reward", 1.0 / (iteration as f64 + 3.0));
    m.set("world/population", 7.0 + iteration as f64 * 1e-300);
    m
}

fn steps(path: &std::path::Path) -> Vec<u64> {
    read_metrics_jsonl(path)
        .unwrap()
        .iter()
        .map(|m| m.step)
        .collect()
}

#[test]
fn lines_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs/metrics.jsonl");
    let mut sink = MetricsJsonl::open(&path, None).unwrap();
    let mut written: Vec<Metrics> = (1..=5).map(metrics).collect();
    written[2].set("losses/approx_kl", f64::NAN);
    for m in &written {
        sink.append(m).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 5);
    assert!(text
        .lines()
        .next()
        .unwrap()
        .starts_with("{\"step\":100,\"iteration\":1,\"losses/policy_loss\":"));
    assert!(text.contains("\"losses/approx_kl\":null"));
    let back = read_metrics_jsonl(&path).unwrap();
    assert_eq!(back.len(), 5);
    for (a, b) in back.iter().zip(&written) {
        assert_eq!((a.step, a.iteration), (b.step, b.iteration));
        assert_eq!(
            a.values.keys().collect::<Vec<_>>(),
            b.values.keys().collect::<Vec<_>>()
        );
        for (x, y) in a.values.values().zip(b.values.values()) {
            assert!(
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                "{x} vs {y}"
            );
        }
    }
}

#[test]
fn resume_drops_lines_after_checkpoint_and_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let mut sink = MetricsJsonl::open(&path, None).unwrap();
    for i in 1..=10 {
        sink.append(&metrics(i)).unwrap();
    }
    drop(sink);
    // The crash tore the 11th line mid-write.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"step\":1100,\"iteration\":11,\"losses/pol")
        .unwrap();
    let before = read_metrics_jsonl(&path).expect("a torn last line is tolerated");
    assert_eq!(before.len(), 10);
    // The checkpoint was at step 700: iterations 8..10 are redone by the resumed run.
    let mut sink = MetricsJsonl::open(&path, Some(700)).unwrap();
    assert_eq!(sink.last_step(), Some(700));
    assert!(
        sink.warnings.iter().any(|w| w.contains("torn")),
        "{:?}",
        sink.warnings
    );
    assert!(
        sink.warnings.iter().any(|w| w.contains("dropped 3")),
        "{:?}",
        sink.warnings
    );
    assert_eq!(steps(&path), (1..=7).map(|i| i * 100).collect::<Vec<_>>());
    for i in 8..=12 {
        sink.append(&metrics(i)).unwrap();
    }
    let all = read_metrics_jsonl(&path).unwrap();
    assert_eq!(
        all.iter().map(|m| m.iteration).collect::<Vec<_>>(),
        (1..=12).collect::<Vec<_>>()
    );
    assert_eq!(all[3], metrics(4), "kept lines are unchanged");
    assert!(!dir.path().join("metrics.jsonl.tmp").exists());
}

#[test]
fn resume_restores_missing_iterations_from_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    // The file only has iterations 1 and 2, the checkpoint's history has 1..=4.
    let mut sink = MetricsJsonl::open(&path, None).unwrap();
    sink.append(&metrics(1)).unwrap();
    sink.append(&metrics(2)).unwrap();
    drop(sink);
    let history: Vec<Metrics> = (1..=4).map(metrics).collect();
    let mut sink = MetricsJsonl::open_with_history(&path, Some(400), &history).unwrap();
    sink.append(&metrics(5)).unwrap();
    assert_eq!(steps(&path), vec![100, 200, 300, 400, 500]);
    // A missing file is rebuilt from the history too.
    std::fs::remove_file(&path).unwrap();
    MetricsJsonl::open_with_history(&path, Some(300), &history).unwrap();
    assert_eq!(steps(&path), vec![100, 200, 300]);
}

#[test]
fn fresh_run_moves_old_file_aside_and_steps_must_increase() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let mut sink = MetricsJsonl::open(&path, None).unwrap();
    sink.append(&metrics(1)).unwrap();
    drop(sink);
    let mut sink = MetricsJsonl::open(&path, None).unwrap();
    assert!(read_metrics_jsonl(&path).unwrap().is_empty());
    let moved: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".prev"))
        .collect();
    assert_eq!(moved.len(), 1, "old data kept");
    assert_eq!(read_metrics_jsonl(&moved[0]).unwrap(), vec![metrics(1)]);
    sink.append(&metrics(2)).unwrap();
    let err = sink.append(&metrics(2)).unwrap_err();
    assert!(
        matches!(
            err,
            SinkError::StepOrder {
                step: 200,
                last: 200,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn corrupt_lines_are_reported_and_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    std::fs::write(
        &path,
        "{\"step\":100,\"iteration\":1,\"a\":1}\nnot json\n{\"step\":200,\"iteration\":2,\"a\":2}\n",
    )
    .unwrap();
    let err = read_metrics_jsonl(&path).unwrap_err();
    assert!(matches!(err, SinkError::BadLine { line: 2, .. }), "{err}");
    assert!(err.to_string().contains("line 2"));
    let sink = MetricsJsonl::open(&path, Some(1000)).unwrap();
    assert_eq!(steps(&path), vec![100, 200]);
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".corrupt"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert!(std::fs::read_to_string(&aside[0])
        .unwrap()
        .contains("not json"));
    assert!(sink.warnings.iter().any(|w| w.contains("unreadable")));
    let missing = read_metrics_jsonl(dir.path().join("nope.jsonl")).unwrap_err();
    assert!(missing.to_string().contains("nope.jsonl"), "{missing}");
}

#[test]
fn configured_sinks_write_both_and_can_be_disabled() {
    use emergence_lab_core::config::LogConfig;
    use emergence_lab_core::sinks::Sinks;
    let dir = tempfile::tempdir().unwrap();
    let log = LogConfig {
        metrics_path: dir.path().join("m.jsonl").to_string_lossy().into_owned(),
        tensorboard_dir: dir.path().join("tb").to_string_lossy().into_owned(),
        ..LogConfig::default()
    };
    let mut sinks = Sinks::open(&log, None, &[], None).unwrap();
    sinks.write(&metrics(1)).unwrap();
    sinks.sync().unwrap();
    assert_eq!(sinks.files().len(), 2);
    assert_eq!(
        read_metrics_jsonl(dir.path().join("m.jsonl")).unwrap(),
        vec![metrics(1)]
    );
    let off = LogConfig {
        metrics_path: String::new(),
        tensorboard_dir: String::new(),
        ..log
    };
    let mut none = Sinks::open(&off, Some(100), &[], None).unwrap();
    none.write(&metrics(2)).unwrap();
    assert!(none.files().is_empty() && none.warnings().is_empty());
}
