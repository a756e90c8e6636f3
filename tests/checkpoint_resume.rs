//! Exact resume (issue 4 section 4): a run stopped after 2 of 4 iterations (periodic save +
//! process exit, or SIGTERM mid-rollout) and resumed ends bit-identical to a run of 4
//! iterations straight; plus deadline, config-override and kill -9 rules. CPU, 1 thread.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use emergence_lab::checkpoint::{auto_resume, read_checkpoint, Checkpoint, CheckpointKind};
use emergence_lab::config::Config;
use emergence_lab::config::{ConfigOverrides, ResumeFrom};
use emergence_lab::progress::Reporter;
use emergence_lab::train::StopReason;
use emergence_lab::train::{CheckpointedRun, RunError};

const CHILD_VAR: &str = "EMERGENCE_LAB_RESUME_TEST_CHILD";
const SPI: u64 = 2 * 16 * 4; // steps per iteration of `tiny`

fn tiny(dir: &Path) -> Config {
    let mut c = Config::tiny();
    c.evolution.reproduce_threshold = 110.0;
    c.evolution.reproduce_cost = 20.0;
    c.specialization.diversity_bonus = 0.1;
    c.specialization.niche_pressure = 0.05;
    c.train.num_epochs = 2;
    c.train.total_steps = 4 * SPI;
    c.train.seed = 11;
    c.train.resume_from = "auto".into();
    c.log.save_interval = (SPI as i64).into();
    c.log.checkpoint_dir = dir.to_string_lossy().into_owned();
    c.log.metrics_path = String::new();
    c.log.tensorboard_dir = String::new();
    c
}

/// The child process: `periodic` exits (no final save) right after iteration 2's periodic
/// save is written; `sigterm` trains with signal handling and exits with 128 + signal.
#[test]
#[ignore = "helper process of the resume tests"]
fn resume_child() {
    let Ok(spec) = std::env::var(CHILD_VAR) else {
        return;
    };
    let (mode, dir) = spec.split_once(':').unwrap();
    let mut cfg = if mode == "sigterm" {
        long(Path::new(dir))
    } else {
        tiny(Path::new(dir))
    };
    if mode == "forever" {
        cfg.train.total_steps = 1 << 40;
        cfg.log.keep_checkpoints = 2;
    }
    let mut run = CheckpointedRun::start(cfg)
        .unwrap()
        .handle_signals(mode == "sigterm" || mode == "slow");
    let dir = PathBuf::from(dir);
    let mode2 = mode.to_string();
    run.on_progress(move |s, _| {
        println!("ITER {}", s.iteration);
        if mode2 == "slow" {
            std::thread::sleep(Duration::from_millis(1500));
        }
        if mode2 == "periodic" && s.iteration == 2 {
            // Wait until the background writer has put iteration 2 on disk, then leave
            // without any final save, as a killed notebook would.
            let want = dir.join(format!("step_{}.safetensors", 2 * SPI));
            while !want.exists() {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(50));
            std::process::exit(0);
        }
    });
    let out = run.run().unwrap();
    std::process::exit(out.exit_code());
}

fn spawn_child(mode: &str, dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "resume_child",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_VAR, format!("{mode}:{}", dir.display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `tiny(dir)` to the end in this process and returns its final checkpoint.
/// `tiny` with 64x longer rollouts (so a signal lands inside one) and the same 4 iterations.
fn long(dir: &Path) -> Config {
    let mut c = tiny(dir);
    // Long enough that iterations 3 and 4 cannot both end before the signal arrives on a
    // loaded machine (the run would then be over and the late SIGTERM kill it).
    c.train.num_steps = 1024;
    let spi = c.steps_per_iteration();
    c.train.total_steps = 4 * spi;
    c.log.save_interval = (spi as i64).into();
    c
}

fn run_to_end(dir: &Path) -> (Checkpoint, emergence_lab::train::RunOutcome) {
    run_config_to_end(tiny(dir))
}

fn run_config_to_end(cfg: Config) -> (Checkpoint, emergence_lab::train::RunOutcome) {
    let mut run = CheckpointedRun::start(cfg).unwrap();
    run.trainer_mut().reporter = Reporter::silent();
    let out = run.run().unwrap();
    let path = out
        .summary
        .checkpoint
        .clone()
        .expect("final checkpoint path");
    (read_checkpoint(&path).unwrap(), out)
}

fn timing_free_metrics(c: &Checkpoint) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&c.meta.metrics_json).unwrap();
    for m in v.as_array_mut().unwrap() {
        let values = m["values"].as_object_mut().unwrap();
        values.retain(|k, _| !(k.ends_with("_s") || k.contains("per_sec")));
    }
    v
}

fn assert_same_run(a: &Checkpoint, b: &Checkpoint) {
    assert_eq!(
        (a.meta.step, a.meta.iteration),
        (b.meta.step, b.meta.iteration)
    );
    assert_eq!(a.arrays.len(), b.arrays.len());
    for x in &a.arrays {
        let y = b
            .array(&x.name)
            .unwrap_or_else(|| panic!("{} missing after resume", x.name));
        assert!(x == y, "array {} differs after resume", x.name);
    }
    assert_eq!(a.meta.trackers_json, b.meta.trackers_json);
    let (ma, mb) = (timing_free_metrics(a), timing_free_metrics(b));
    for (x, y) in ma.as_array().unwrap().iter().zip(mb.as_array().unwrap()) {
        for (k, v) in x["values"].as_object().unwrap() {
            assert_eq!(
                Some(v),
                y["values"].get(k),
                "metric {k} of iteration {} differs",
                x["iteration"]
            );
        }
    }
    assert_eq!(ma, mb);
    let mut ca: Config = serde_json::from_str(&a.meta.config_json).unwrap();
    let cb: Config = serde_json::from_str(&b.meta.config_json).unwrap();
    ca.log.checkpoint_dir = cb.log.checkpoint_dir.clone();
    assert_eq!(ca, cb);
}

#[test]
fn stop_by_periodic_save_and_exit_then_resume_is_bit_identical() {
    tch::set_num_threads(1);
    let root = tempfile::tempdir().unwrap();
    let (a, out_a) = run_to_end(&root.path().join("a"));
    assert_eq!(out_a.summary.stopped, StopReason::Completed);
    assert_eq!(
        (a.meta.step, a.meta.iteration, a.meta.kind),
        (4 * SPI, 4, CheckpointKind::Final)
    );

    let b_dir = root.path().join("b");
    let status = spawn_child("periodic", &b_dir).wait().unwrap();
    assert!(status.success(), "{status}");
    let resumed = auto_resume(std::slice::from_ref(&b_dir))
        .checkpoint
        .unwrap();
    assert_eq!(
        (resumed.step, resumed.kind),
        (2 * SPI, CheckpointKind::Periodic)
    );
    let (b, out_b) = run_to_end(&b_dir);
    assert_eq!(out_b.resumed_from.unwrap().step, 2 * SPI);
    assert_eq!(out_b.summary.start_step, 2 * SPI);
    assert_eq!(
        out_b.summary.iterations, 2,
        "continues towards total_steps, not a new full run"
    );
    assert_same_run(&a, &b);
}

#[test]
fn stop_by_sigterm_mid_rollout_then_resume_is_bit_identical() {
    tch::set_num_threads(1);
    let root = tempfile::tempdir().unwrap();
    let (a, _) = run_config_to_end(long(&root.path().join("a")));
    let spi = long(root.path()).steps_per_iteration();
    let b_dir = root.path().join("b");
    let mut child = spawn_child("sigterm", &b_dir);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .expect("child ended before iteration 2")
            .unwrap();
        if line.trim() == "ITER 2" {
            break;
        }
    }
    // Iteration 3 is now running (its rollout comes first).
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "exit code 128 + SIGTERM: {status:?}"
    );
    let info = auto_resume(std::slice::from_ref(&b_dir))
        .checkpoint
        .unwrap();
    // Saves are periodic every iteration here: the stop after iteration 3 finds its periodic
    // file already written and verified, and writes no emergency copy of the same state.
    assert!(
        info.kind == CheckpointKind::Emergency || info.kind == CheckpointKind::Periodic,
        "{info:?}"
    );
    assert!(
        info.step == 3 * spi || info.step == 2 * spi,
        "stop save at step {}",
        info.step
    );
    if info.kind == CheckpointKind::Periodic {
        assert!(
            !b_dir
                .join(format!("emergency_step_{}.safetensors", info.step))
                .exists(),
            "no emergency copy of a step that has a verified checkpoint"
        );
    }
    eprintln!(
        "SIGTERM led to an emergency save at iteration {}",
        info.step / spi
    );
    let (b, _) = run_config_to_end(long(&b_dir));
    assert_same_run(&a, &b);
}

#[test]
fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child("slow", dir.path());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while !lines
        .next()
        .expect("child ended early")
        .unwrap()
        .ends_with("ITER 1")
    {}
    // Both arrive while the child sits in its progress callback: the first asks for a stop,
    // the second exits at once (128 + SIGINT) without the emergency save.
    let pid = child.id().to_string();
    let t0 = std::time::Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 2));
    assert!(
        t0.elapsed() < Duration::from_millis(1000),
        "exit took {:?}",
        t0.elapsed()
    );
    let emergency = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("emergency"));
    assert!(!emergency, "no emergency save after a second signal");
}

#[test]
fn deadline_stops_saves_final_and_says_how_to_continue() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny(dir.path());
    cfg.train.max_wall_time = "0.001".into();
    cfg.log.save_interval = 0.into();
    let out = CheckpointedRun::start(cfg.clone()).unwrap().run().unwrap();
    assert_eq!(out.summary.stopped, StopReason::WallTime);
    assert_eq!(out.exit_code(), 0);
    assert!(out.summary.final_step < 4 * SPI);
    assert!(out.message.contains("resume_from"), "{}", out.message);
    let saved = out.summary.checkpoint.unwrap();
    assert_eq!(
        saved.file_name().unwrap().to_string_lossy(),
        format!("final_step_{}.safetensors", out.summary.final_step)
    );
    assert_eq!(
        out.saver.written, 1,
        "no periodic saves with save_interval = 0"
    );
    // Continuing with more time picks up where it stopped.
    cfg.train.max_wall_time = "".into();
    let out2 = CheckpointedRun::start(cfg).unwrap().run().unwrap();
    assert_eq!(out2.summary.start_step, out.summary.final_step);
    assert_eq!(out2.summary.final_step, 4 * SPI);
}

#[test]
fn resume_allows_only_run_control_changes() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny(dir.path());
    cfg.train.total_steps = SPI;
    CheckpointedRun::start(cfg.clone()).unwrap().run().unwrap();
    let mut bad = cfg.clone();
    bad.train.gamma = 0.9;
    bad.env.grid_size = 7;
    let e = CheckpointedRun::start(bad)
        .err()
        .expect("a changed gamma and grid must be refused");
    assert!(matches!(e, RunError::Resume { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("train.gamma") && msg.contains("env.grid_size"),
        "{msg}"
    );
    // Binaries: only the settings the user gave count (here a default config + overrides).
    let mut base = Config::default();
    base.log.checkpoint_dir = cfg.log.checkpoint_dir.clone();
    base.train.resume_from = "auto".into();
    let mut ov = ConfigOverrides::default();
    ov.push("train.total_steps", &(3 * SPI).to_string());
    ov.push("train.seed", "11");
    let run = CheckpointedRun::start_with_overrides(base.clone(), &ov).unwrap();
    assert_eq!(run.trainer().state.config.train.total_steps, 3 * SPI);
    assert_eq!(
        run.trainer().state.config.env.grid_size,
        6,
        "the checkpoint's config, not the defaults"
    );
    drop(run); // a run holds its folder's lock until dropped
    ov.push("train.seed", "12");
    let e = CheckpointedRun::start_with_overrides(base, &ov)
        .err()
        .unwrap();
    assert!(e.to_string().contains("train.seed"), "{e}");
    let mut more = cfg;
    more.train.total_steps = 2 * SPI;
    more.log.keep_checkpoints = 1;
    let mut run = CheckpointedRun::start(more).unwrap();
    assert_eq!(run.trainer().state.config.log.keep_checkpoints, 1);
    let out = run.run().unwrap();
    assert_eq!(
        (out.summary.start_step, out.summary.final_step),
        (SPI, 2 * SPI)
    );
    drop(run);
    // Resuming a finished run trains nothing, says so, and writes no new file.
    let mut done = CheckpointedRun::start(tiny_total(dir.path(), 2 * SPI)).unwrap();
    assert!(
        done.warnings()
            .iter()
            .any(|w| w.contains("nothing left to train")),
        "{:?}",
        done.warnings()
    );
    let again = done.run().unwrap();
    assert_eq!(again.summary.iterations, 0);
    assert_eq!(again.saver.written, 0);
    assert_eq!(again.summary.checkpoint, out.summary.checkpoint);
}

fn tiny_total(dir: &Path, total: u64) -> Config {
    let mut c = tiny(dir);
    c.train.total_steps = total;
    c
}

#[test]
fn kill9_during_training_never_breaks_resume() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    let mut last = 0;
    for round in 0..20 {
        let mut child = spawn_child("forever", dir.path());
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Wait until it trains (so libtorch start-up is not all we kill), then a random moment.
        while !lines
            .next()
            .expect("child ended early")
            .unwrap()
            .contains("ITER")
        {}
        while round == 0 && !dir.path().join("latest.safetensors").exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 230));
        child.kill().unwrap();
        child.wait().unwrap();
        let l = read_checkpoint(&dir.path().join("latest.safetensors"))
            .unwrap_or_else(|e| panic!("round {round}: latest does not load: {e}"));
        let choice = auto_resume(&[dir.path().to_path_buf()]);
        let info = choice
            .checkpoint
            .unwrap_or_else(|| panic!("round {round}: {:?}", choice.warnings));
        assert!(
            info.step >= l.meta.step && info.step >= last,
            "round {round}: went back to {}",
            info.step
        );
        last = info.step;
    }
    assert!(
        last >= 2 * SPI,
        "training made progress across kills: step {last}"
    );
}

#[test]
fn reusing_the_previous_saves_buffers_gives_the_same_checkpoint() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let mut state =
        emergence_lab::train::TrainState::new(tiny(dir.path()), tch::Device::Cpu).unwrap();
    state.iterate().unwrap();
    let old = state.to_checkpoint(CheckpointKind::Periodic);
    state.iterate().unwrap();
    let fresh = state.to_checkpoint(CheckpointKind::Final);
    let reused = state.to_checkpoint_reusing(CheckpointKind::Final, Some(old.clone()));
    assert_eq!(fresh.arrays, reused.arrays);
    assert_ne!(
        old.arrays, reused.arrays,
        "the spare's old contents were overwritten"
    );
    assert_eq!(
        (fresh.meta.step, fresh.meta.kind),
        (reused.meta.step, reused.meta.kind)
    );
}

#[test]
fn a_fresh_start_refuses_a_folder_holding_another_runs_checkpoints() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny(dir.path());
    cfg.train.total_steps = SPI;
    CheckpointedRun::start(cfg.clone()).unwrap().run().unwrap();
    let before = std::fs::read_dir(dir.path()).unwrap().count();
    // Fresh start requested in the same folder: refused, nothing written or rotated.
    let mut fresh = cfg.clone();
    fresh.train.resume_from = ResumeFrom::Fresh;
    let e = CheckpointedRun::start(fresh)
        .err()
        .expect("must refuse")
        .to_string();
    assert!(
        e.contains("already holds checkpoints") && e.contains("--train.resume-from auto"),
        "{e}"
    );
    let after = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(before, after);
    // A fresh start in an empty folder is fine.
    let other = tempfile::tempdir().unwrap();
    let mut fresh = tiny(other.path());
    fresh.train.total_steps = SPI;
    fresh.train.resume_from = ResumeFrom::Fresh;
    assert!(CheckpointedRun::start(fresh).is_ok());
}

#[test]
fn min_save_interval_holds_back_periodic_saves_but_not_the_final_one() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    // save_interval = one iteration: a periodic file every iteration without a minimum ...
    let mut cfg = tiny(dir.path().join("every").as_path());
    let out = CheckpointedRun::start(cfg.clone()).unwrap().run().unwrap();
    assert!(
        out.saver.written >= 2,
        "periodic saves and the final one: {:?}",
        out.saver
    );
    // ... and none with an hour's minimum (the final save still comes).
    cfg = tiny(dir.path().join("gated").as_path());
    cfg.log.min_save_interval = "1h".into();
    let out = CheckpointedRun::start(cfg.clone()).unwrap().run().unwrap();
    assert_eq!(out.saver.written, 1, "only the final save");
    assert_eq!(out.summary.final_step, 4 * SPI);
    // A bad duration is refused with the key and how to write it.
    cfg.log.min_save_interval = "often".into();
    let e = CheckpointedRun::start(cfg).err().unwrap().to_string();
    assert!(e.contains("log.min_save_interval"), "{e}");
}
