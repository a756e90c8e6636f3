//! One run's files are never destroyed by another: the checkpoint folder lock (two real
//! `train` processes, kill -9, the notebook call), folders holding files this build cannot
//! read, metrics files of another run, a metrics disk failure, exact tensor shapes, and
//! error messages without backtraces.

#[path = "../crates/core/tests/cli_support/mod.rs"]
mod cli_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use emergence_lab::checkpoint::{
    read_checkpoint, write_checkpoint, CheckpointKind, LOCK_FILE_NAME,
};
use emergence_lab::progress::Reporter;
use emergence_lab::sinks::read_metrics_jsonl;
use emergence_lab::train::{train_with_checkpoints, CheckpointedRun, RunError};
use emergence_lab::{config::Config, train::TrainState};

const SPI: u64 = 2 * 16 * 4;

fn tiny(dir: &Path) -> Config {
    let mut c = Config::tiny();
    c.train.total_steps = 2 * SPI;
    c.log.save_interval = (SPI as i64).into();
    c.log.checkpoint_dir = dir.join("ckpt").to_string_lossy().into_owned();
    c.log.metrics_path = String::new();
    c.log.tensorboard_dir = String::new();
    c
}

/// `tiny` as `train` command-line options.
fn tiny_args(dir: &Path, total: u64) -> Vec<String> {
    let mut a: Vec<String> = [
        "--env.grid-size=6",
        "--env.num-agents=3",
        "--env.num-food=3",
        "--env.max-steps=20",
        "--env.observation-radius=1",
        "--env.observed-food=2",
        "--field.num-channels=2",
        "--agent.hidden-dims=8,8",
        "--train.num-envs=2",
        "--train.num-steps=16",
        "--evolution.max-agents=4",
        "--train.minibatch-size=32",
        "--train.num-epochs=1",
        "--train.device=cpu",
        "--train.num-threads=1",
        "--log.tensorboard-dir=",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(format!("--train.total-steps={total}"));
    a.push(format!("--log.save-interval={SPI}"));
    a.push(format!(
        "--log.checkpoint-dir={}",
        dir.join("ckpt").to_string_lossy()
    ));
    a.push(format!(
        "--log.metrics-path={}",
        dir.join("metrics.jsonl").to_string_lossy()
    ));
    a
}

fn train_cmd(dir: &Path, total: u64) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_train"));
    c.args(tiny_args(dir, total))
        .env_remove("EMERGENCE_LAB_OVERRIDES")
        .current_dir(dir);
    c
}

/// Waits until the lock file names process `pid` (it holds the folder).
fn wait_for_holder(dir: &Path, pid: u32) -> String {
    let lock = dir.join("ckpt").join(LOCK_FILE_NAME);
    let t = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(&lock) {
            if s.contains(&format!("process {pid} ")) {
                return s;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(120), "no lock holder");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn two_train_processes_on_one_folder_the_second_fails_at_once_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    // Long enough to still hold the folder while the second one starts.
    let mut first = train_cmd(dir.path(), 4000 * SPI)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let holder = wait_for_holder(dir.path(), first.id());
    assert!(
        holder.contains(&format!("process {}", first.id())),
        "{holder}"
    );
    let t = Instant::now();
    let second = train_cmd(dir.path(), 2 * SPI)
        .arg("--train.resume-from=auto")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains("already in use") && err.contains(&format!("process {}", first.id())),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(30), "fails at once");
    // The first run is untouched by the attempt: once it trains, stop it cleanly
    // (SIGTERM): it saves.
    let t = Instant::now();
    while !dir.path().join("ckpt/latest.safetensors").exists() {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "first run never saved"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    unsafe_sigterm(first.id());
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let latest = read_checkpoint(&dir.path().join("ckpt/latest.safetensors")).unwrap();
    // An emergency file, or the periodic file of the stop's step when one was just written.
    assert!(
        matches!(
            latest.meta.kind,
            CheckpointKind::Emergency | CheckpointKind::Periodic
        ),
        "{:?}",
        latest.meta.kind
    );
    // kill -9 releases the lock too: a run after a killed run takes the folder.
    let mut killed = train_cmd(dir.path(), 4000 * SPI)
        .arg("--train.resume-from=auto")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let holder = wait_for_holder(dir.path(), killed.id());
    assert!(
        holder.contains(&format!("process {}", killed.id())),
        "{holder}"
    );
    killed.kill().unwrap();
    killed.wait().unwrap();
    let after = train_cmd(dir.path(), latest.meta.step + SPI)
        .arg("--train.resume-from=auto")
        .output()
        .unwrap();
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
}

fn unsafe_sigterm(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn the_notebook_call_takes_the_same_lock_and_releases_it_when_it_returns() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny(dir.path());
    let held = CheckpointedRun::start(cfg.clone()).unwrap();
    let mut other = cfg.clone();
    other.train.resume_from = "auto".into();
    match train_with_checkpoints(other.clone(), Reporter::silent()) {
        Err(RunError::Checkpoint(e)) => assert_eq!(e.check(), "locked", "{e}"),
        r => panic!(
            "expected the folder to be locked: {:?}",
            r.map(|o| o.message)
        ),
    }
    drop(held);
    train_with_checkpoints(other.clone(), Reporter::silent())
        .expect("free once the holder is dropped");
    // ... and free again after the call returned.
    let mut more = other;
    more.train.total_steps = 3 * SPI;
    let out =
        train_with_checkpoints(more, Reporter::silent()).expect("released when the call returned");
    assert_eq!(out.summary.final_step, 3 * SPI);
}

/// A checkpoint file rewritten as if by a newer build (`format_version` 2).
fn make_newer(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let key = b"\"format_version\":\"1\"";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("version key");
    bytes[at + key.len() - 2] = b'2';
    std::fs::write(path, bytes).unwrap();
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != LOCK_FILE_NAME)
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_folder_of_newer_format_checkpoints_is_refused_by_fresh_and_auto_starts() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny(dir.path());
    CheckpointedRun::start(cfg.clone()).unwrap().run().unwrap();
    let ckpt = dir.path().join("ckpt");
    let mut names = Vec::new();
    for e in std::fs::read_dir(&ckpt).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".safetensors") && !e.file_type().unwrap().is_symlink() {
            make_newer(&e.path());
            names.push(name);
        }
    }
    assert!(!names.is_empty());
    let before = listing(&ckpt);
    for from in ["", "auto"] {
        let mut c = cfg.clone();
        c.train.resume_from = from.into();
        let e = CheckpointedRun::start(c)
            .err()
            .unwrap_or_else(|| panic!("resume_from={from:?} must refuse"))
            .to_string();
        for n in &names {
            assert!(e.contains(n.as_str()), "names {n}: {e}");
        }
        assert!(
            e.contains("format_version") && e.contains("another folder"),
            "{e}"
        );
        assert_eq!(
            before,
            listing(&ckpt),
            "nothing written, rotated or removed"
        );
    }
}

#[test]
fn a_transposed_weight_with_the_right_element_count_is_refused() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let state = TrainState::new(tiny(dir.path()), tch::Device::Cpu).unwrap();
    let mut ck = state.to_checkpoint(CheckpointKind::Periodic);
    let a = ck
        .arrays
        .iter_mut()
        .find(|a| a.shape.len() == 2 && a.shape[0] != a.shape[1] && a.name.starts_with("policy/"))
        .expect("a non-square weight");
    let name = a.name.clone();
    a.shape.reverse();
    // Through a file, as a Python script would write it.
    let path = dir.path().join("transposed.safetensors");
    write_checkpoint(&path, &ck, false).unwrap();
    let back = read_checkpoint(&path).unwrap();
    let e = TrainState::from_checkpoint(&back, tch::Device::Cpu)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains(&name) && e.contains("shape"), "{e}");
    // Same for a world array and an offsets array.
    for prefix in ["world/field", "offsets/"] {
        let mut ck = state.to_checkpoint(CheckpointKind::Periodic);
        let a = ck
            .arrays
            .iter_mut()
            .find(|a| a.name.starts_with(prefix))
            .unwrap();
        let n: usize = a.shape.iter().product();
        a.shape = vec![n];
        let e = TrainState::from_checkpoint(&ck, tch::Device::Cpu)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("shape"), "{prefix}: {e}");
    }
}

#[test]
fn a_checkpoint_without_run_id_still_loads_and_resumes() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let mut state = TrainState::new(tiny(dir.path()), tch::Device::Cpu).unwrap();
    state.iterate().unwrap();
    let mut ck = state.to_checkpoint(CheckpointKind::Periodic);
    assert_eq!(ck.meta.run_id.as_deref(), Some(state.run_id.as_str()));
    ck.meta.run_id = None;
    let path = dir.path().join("old.safetensors");
    write_checkpoint(&path, &ck, false).unwrap();
    let back = read_checkpoint(&path).unwrap();
    assert_eq!(back.meta.run_id, None);
    let loaded = TrainState::from_checkpoint(&back, tch::Device::Cpu).unwrap();
    assert_eq!(loaded.step, state.step);
    assert!(!loaded.run_id.is_empty(), "an unknown run gets a fresh id");
}

#[test]
fn resuming_next_to_another_runs_metrics_moves_them_aside_untouched() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("runs/metrics.jsonl");
    let tb = dir.path().join("runs/tb");
    let with_sinks = |sub: &str, total: u64| {
        let mut c = tiny(&dir.path().join(sub));
        c.train.total_steps = total;
        c.train.resume_from = "auto".into();
        c.log.metrics_path = metrics.to_string_lossy().into_owned();
        c.log.tensorboard_dir = tb.to_string_lossy().into_owned();
        c
    };
    // Run A: two iterations, then run B (another checkpoint folder, same runs/ folder).
    let a = CheckpointedRun::start(with_sinks("a", 2 * SPI))
        .unwrap()
        .run()
        .unwrap();
    let a_id = read_checkpoint(&dir.path().join("a/ckpt/latest.safetensors"))
        .unwrap()
        .meta
        .run_id
        .unwrap();
    assert_eq!(a.summary.final_step, 2 * SPI);
    CheckpointedRun::start(with_sinks("b", 3 * SPI))
        .unwrap()
        .run()
        .unwrap();
    let b_id = read_checkpoint(&dir.path().join("b/ckpt/latest.safetensors"))
        .unwrap()
        .meta
        .run_id
        .unwrap();
    assert_ne!(a_id, b_id);
    let b_text = std::fs::read_to_string(&metrics).unwrap();
    assert!(b_text.lines().next().unwrap().contains(&b_id), "{b_text}");
    let b_tb: Vec<_> = emergence_lab::sinks::tensorboard::event_files(&tb).unwrap();
    // Resume A with the same runs/ folder: B's files are moved aside byte for byte.
    let mut run = CheckpointedRun::start(with_sinks("a", 3 * SPI)).unwrap();
    let out = run.run().unwrap();
    assert_eq!(out.summary.final_step, 3 * SPI);
    let aside: Vec<_> = std::fs::read_dir(metrics.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(&format!("other-run-{b_id}")))
        .collect();
    let file = aside
        .iter()
        .find(|p| p.is_file())
        .expect("B's metrics file moved aside");
    assert_eq!(std::fs::read_to_string(file).unwrap(), b_text);
    let tb_aside = std::fs::read_dir(&tb)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains(&format!("other-run-{b_id}")))
        .expect("B's event files moved aside");
    assert_eq!(
        emergence_lab::sinks::tensorboard::event_files(&tb_aside)
            .unwrap()
            .len(),
        b_tb.len()
    );
    // A's file holds A's iterations only, in order, stamped with A's id.
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(text.lines().next().unwrap().contains(&a_id), "{text}");
    let steps: Vec<u64> = read_metrics_jsonl(&metrics)
        .unwrap()
        .iter()
        .map(|m| m.step)
        .collect();
    assert_eq!(steps, vec![SPI, 2 * SPI, 3 * SPI]);
}

#[cfg(target_os = "linux")]
#[test]
fn a_metrics_disk_failure_saves_the_good_state_before_stopping() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let mut c = tiny(dir.path());
    c.log.metrics_path = "/dev/full".into(); // every write: "No space left on device"
    c.log.save_interval = 0.into();
    let e = CheckpointedRun::start(c)
        .unwrap()
        .run()
        .err()
        .expect("fails");
    let RunError::SavedAfter { step, saved, .. } = &e else {
        panic!("expected a save before the stop: {e}");
    };
    assert_eq!(*step, SPI);
    let msg = e.to_string();
    assert!(
        msg.contains("/dev/full") && msg.contains("resume-from auto"),
        "{msg}"
    );
    let ck = read_checkpoint(saved).unwrap();
    assert_eq!(
        (ck.meta.step, ck.meta.kind),
        (SPI, CheckpointKind::Emergency)
    );
}

#[test]
fn panic_messages_never_name_a_checkpoint_that_does_not_exist() {
    let e = RunError::Panic {
        message: "boom".into(),
        last_good: None,
    }
    .to_string();
    assert!(
        !e.contains("latest.safetensors") && e.contains("no checkpoint"),
        "{e}"
    );
}

#[test]
fn user_errors_print_no_backtrace_even_with_rust_backtrace_set() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            env!("CARGO_BIN_EXE_train"),
            vec!["--train.totl-steps", "5"],
            "did you mean",
        ),
        (
            env!("CARGO_BIN_EXE_report"),
            vec!["--metrics", "/nonexistent/m.jsonl"],
            "/nonexistent",
        ),
        (
            env!("CARGO_BIN_EXE_ablation"),
            vec!["--checkpoint", "/nonexistent/c.safetensors"],
            "/nonexistent",
        ),
    ];
    cli_support::assert_user_errors_are_clean(dir.path(), &cases);
}
