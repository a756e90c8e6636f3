//! TensorBoard event files: readable by our reader, one scalar per metric per iteration, and
//! a resume continues after the checkpoint's step with no duplicated or missing steps.

use std::io::Write;

use emergence_lab_core::metrics::Metrics;
use emergence_lab_core::sinks::tensorboard::{event_files, read_events, TensorBoardWriter};

fn metrics(iteration: u64) -> Metrics {
    let mut m = Metrics::new(iteration * 131_072, iteration);
    m.set("losses/value_loss", 0.5 / iteration as f64);
    m.set("charts/mean_reward", 0.25 * iteration as f64);
    m
}

/// Steps of the scalar events for `tag` over every file of `dir`, in TensorBoard's order.
fn scalar_steps(dir: &std::path::Path, tag: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for f in event_files(dir).unwrap() {
        for ev in read_events(&f).unwrap() {
            if ev.scalars.iter().any(|(t, _)| t == tag) {
                out.push(ev.step);
            }
        }
    }
    out
}

#[test]
fn writes_standard_event_file() {
    let dir = tempfile::tempdir().unwrap();
    let tb = dir.path().join("tb");
    let mut w = TensorBoardWriter::open(&tb, None).unwrap();
    for i in 1..=4 {
        w.write(&metrics(i)).unwrap();
    }
    let name = w.path().file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    let events = read_events(w.path()).unwrap();
    assert_eq!(events.len(), 5);
    assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
    assert!(events[0].wall_time > 1.6e9);
    for (i, ev) in events[1..].iter().enumerate() {
        let m = metrics(i as u64 + 1);
        assert_eq!(ev.step, m.step as i64);
        let get = |tag: &str| ev.scalars.iter().find(|(t, _)| t == tag).map(|s| s.1);
        assert_eq!(
            get("losses/value_loss"),
            Some(m.get("losses/value_loss").unwrap() as f32)
        );
        assert_eq!(
            get("charts/mean_reward"),
            Some(m.get("charts/mean_reward").unwrap() as f32)
        );
    }
    python_reads_it_if_available(&tb);
}

#[test]
fn resume_continues_after_checkpoint_step() {
    let dir = tempfile::tempdir().unwrap();
    let tb = dir.path().join("tb");
    let mut w = TensorBoardWriter::open(&tb, None).unwrap();
    for i in 1..=10 {
        w.write(&metrics(i)).unwrap();
    }
    let first = w.path().to_path_buf();
    drop(w);
    // The crash left a torn record behind.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&first)
        .unwrap()
        .write_all(&[9, 0, 0])
        .unwrap();
    // Checkpoint at iteration 6: iterations 7.. are redone.
    let resume = metrics(6).step;
    let mut w = TensorBoardWriter::open(&tb, Some(resume)).unwrap();
    assert_ne!(w.path(), first.as_path());
    assert!(
        w.warnings.iter().any(|n| n.contains("removed 4 event(s)")),
        "{:?}",
        w.warnings
    );
    // The resumed run may pass already-written iterations again; they are skipped.
    for i in 5..=12 {
        w.write(&metrics(i)).unwrap();
    }
    drop(w);
    let want: Vec<i64> = (1..=12).map(|i| metrics(i).step as i64).collect();
    assert_eq!(scalar_steps(&tb, "charts/mean_reward"), want);
    assert_eq!(event_files(&tb).unwrap().len(), 2);
    python_reads_it_if_available(&tb);
}

#[test]
fn fresh_run_moves_older_files_aside() {
    let dir = tempfile::tempdir().unwrap();
    let tb = dir.path().join("tb");
    let mut w = TensorBoardWriter::open(&tb, None).unwrap();
    w.write(&metrics(1)).unwrap();
    drop(w);
    let w = TensorBoardWriter::open(&tb, None).unwrap();
    assert_eq!(event_files(&tb).unwrap(), vec![w.path().to_path_buf()]);
    let prev: Vec<_> = std::fs::read_dir(&tb)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(prev.len(), 1);
    assert_eq!(scalar_steps(&prev[0], "charts/mean_reward"), vec![131_072]);
}

/// Cross-check with TensorBoard's own reader when Python has it installed.
fn python_reads_it_if_available(dir: &std::path::Path) {
    let probe = std::process::Command::new("python3")
        .args([
            "-c",
            "import tensorboard.backend.event_processing.event_accumulator",
        ])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipping the TensorBoard cross-check: python3 with `tensorboard` not available");
        return;
    }
    let script =
        "import sys\nfrom tensorboard.backend.event_processing import event_accumulator as ea\n\
a = ea.EventAccumulator(sys.argv[1]); a.Reload()\n\
print(len(a.Scalars('charts/mean_reward')))";
    let out = std::process::Command::new("python3")
        .args(["-c", script, &dir.to_string_lossy()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(n, scalar_steps(dir, "charts/mean_reward").len());
}
