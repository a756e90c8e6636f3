//! A stop takes seconds whatever the iteration length (issue 13 section 4): a signal or the
//! stop flag abandons the running iteration and writes the state of the last completed one;
//! continuing from that file repeats the abandoned iteration bit for bit; the deadline keeps
//! time for the final save.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use emergence_lab::checkpoint::{read_checkpoint, verify_checkpoint, Checkpoint, CheckpointKind};
use emergence_lab::config::Config;
use emergence_lab::progress::Reporter;
use emergence_lab::train::{CheckpointedRun, RunOutcome, StopReason};

/// The `train` binary's settings of a run whose iterations take well over 10 s on a
/// 2-core CPU (the default population, 1536-tick rollouts, one thread; 152 MB checkpoints).
fn long_iteration_args(dir: &Path) -> Vec<String> {
    [
        "--train.device",
        "cpu",
        "--train.num-threads",
        "1",
        "--train.num-steps",
        "1536",
        "--train.total-steps",
        "100000000",
        "--log.log-interval",
        "1",
        "--log.metrics-path",
        "",
        "--log.tensorboard-dir",
        "",
        "--log.checkpoint-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([dir.display().to_string()])
    .collect()
}

#[test]
fn sigterm_in_a_long_iteration_leaves_a_verified_checkpoint_within_5_seconds() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("ck");
    let mut child = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(long_iteration_args(&dir))
        .current_dir(root.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("train ended before starting").unwrap();
        if line.starts_with("start ") {
            break;
        }
    }
    // The first iteration is running now (its rollout alone takes seconds).
    std::thread::sleep(Duration::from_secs(3));
    let want = dir.join("emergency_step_0.safetensors");
    let t0 = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    while !want.exists() && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let to_file = t0.elapsed();
    let status = child.wait().unwrap();
    let to_exit = t0.elapsed();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "exit code 128 + SIGTERM; {rest:?}"
    );
    assert!(
        !rest.iter().any(|l| l.starts_with("progress ")),
        "the stop waited for the iteration to end: {rest:?}"
    );
    verify_checkpoint(&want).expect("the emergency checkpoint verifies");
    let ck = read_checkpoint(&want).unwrap();
    assert_eq!((ck.meta.kind, ck.meta.step), (CheckpointKind::Emergency, 0));

    // How long one iteration of this config takes here: continue from that file for one
    // iteration (it also proves the file resumes).
    let t1 = Instant::now();
    let mut args = long_iteration_args(&dir);
    let spi = ck_steps_per_iteration(&ck);
    args.extend([
        "--train.resume-from".into(),
        "auto".into(),
        "--train.total-steps".into(),
        spi.to_string(),
    ]);
    let out = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(&args)
        .current_dir(root.path())
        .output()
        .unwrap();
    let iteration = t1.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("resumed from") && text.contains("emergency_step_0"),
        "{text}"
    );
    println!(
        "signal to verified checkpoint: {:.2} s (process exit {:.2} s); one iteration of this config: {:.1} s",
        to_file.as_secs_f64(),
        to_exit.as_secs_f64(),
        iteration.as_secs_f64()
    );
    assert!(to_file < Duration::from_secs(5), "stop took {to_file:?}");
    assert!(
        iteration > 2 * to_file,
        "the config must have iterations much longer than the stop ({iteration:?} vs {to_file:?})"
    );
}

fn ck_steps_per_iteration(ck: &Checkpoint) -> u64 {
    let c: Config = serde_json::from_str(&ck.meta.config_json).unwrap();
    c.steps_per_iteration()
}

/// A small config with 4 iterations and a save after each.
fn small(dir: &Path) -> Config {
    let mut c = Config::tiny();
    c.evolution.reproduce_threshold = 110.0;
    c.evolution.reproduce_cost = 20.0;
    c.specialization.diversity_bonus = 0.1;
    c.train.num_steps = 256;
    c.train.num_epochs = 2;
    c.train.seed = 5;
    c.train.device = "cpu".into();
    c.train.num_threads = 1;
    c.train.total_steps = 4 * c.steps_per_iteration();
    c.train.resume_from = "auto".into();
    c.log.save_interval = (2 * c.steps_per_iteration() as i64).into();
    c.log.checkpoint_dir = dir.to_string_lossy().into_owned();
    c.log.metrics_path = String::new();
    c.log.tensorboard_dir = String::new();
    c
}

fn run(cfg: Config, stop_after: Option<Duration>) -> (RunOutcome, CheckpointedRun) {
    let mut run = CheckpointedRun::start(cfg).unwrap();
    run.trainer_mut().reporter = Reporter::silent();
    if let Some(d) = stop_after {
        let flag = run.stop_flag();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            flag.store(true, Ordering::SeqCst);
        });
    }
    let out = run.run().unwrap();
    (out, run)
}

fn same_arrays(a: &Checkpoint, b: &Checkpoint) {
    assert_eq!(
        (a.meta.step, a.meta.iteration),
        (b.meta.step, b.meta.iteration)
    );
    assert_eq!(a.arrays.len(), b.arrays.len());
    for x in &a.arrays {
        assert!(b.array(&x.name) == Some(x), "array {} differs", x.name);
    }
}

#[test]
fn a_stop_inside_an_iteration_continues_bit_exactly() {
    let root = tempfile::tempdir().unwrap();
    let (straight, _) = run(small(&root.path().join("a")), None);
    let a = read_checkpoint(straight.summary.checkpoint.as_ref().unwrap()).unwrap();

    // Stop at a few points in time until one lands inside an iteration (timing varies).
    let t = Instant::now();
    run(small(&root.path().join("timing")), None);
    let per_iteration = t.elapsed() / 4;
    let mut abandoned = None;
    for (i, frac) in [1.5, 2.5, 1.3, 2.7, 0.5, 3.5].iter().enumerate() {
        let dir = root.path().join(format!("b{i}"));
        let (out, stopped) = run(small(&dir), Some(per_iteration.mul_f64(*frac)));
        // On a busy machine the timing run can be slower than this one, and the stop can come
        // after the run has ended: that attempt proves nothing either way, try the next point.
        if out.summary.stopped == StopReason::Completed {
            continue;
        }
        assert_eq!(out.summary.stopped, StopReason::StopRequested);
        if out.abandoned_iteration {
            abandoned = Some((dir, out, stopped));
            break;
        }
    }
    let (dir, out, stopped) = abandoned.expect("no stop landed inside an iteration");
    let path = out
        .summary
        .checkpoint
        .clone()
        .expect("a checkpoint after the stop");
    verify_checkpoint(&path).unwrap();
    let saved = read_checkpoint(&path).unwrap();
    // The state the call returns with is the saved one (not the half-done iteration).
    let st = &stopped.trainer().state;
    assert_eq!(
        (st.step, st.iteration),
        (saved.meta.step, saved.meta.iteration)
    );
    let here = st.to_checkpoint(CheckpointKind::Emergency);
    same_arrays(&saved, &here);
    drop(stopped); // releases the folder's lock
                   // No emergency copy of a step that already had a verified periodic checkpoint.
    let periodic = dir.join(format!("step_{}.safetensors", saved.meta.step));
    if periodic.exists() {
        assert_eq!(path, periodic, "the periodic file is the checkpoint");
        assert!(!dir
            .join(format!("emergency_step_{}.safetensors", saved.meta.step))
            .exists());
    } else {
        assert_eq!(saved.meta.kind, CheckpointKind::Emergency);
    }
    let (resumed, _) = run(small(&dir), None);
    assert_eq!(resumed.summary.start_step, saved.meta.step);
    let b = read_checkpoint(resumed.summary.checkpoint.as_ref().unwrap()).unwrap();
    same_arrays(&a, &b);
    assert_eq!(a.meta.trackers_json, b.meta.trackers_json);
}

#[test]
fn the_deadline_keeps_time_for_the_final_save() {
    let root = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.train.device = "cpu".into();
    c.train.num_threads = 1;
    c.train.num_steps = 512; // one iteration takes longer than the whole limit
    c.train.total_steps = 1 << 40;
    c.train.max_wall_time = "7s".into();
    c.log.save_interval = 0.into();
    c.log.checkpoint_dir = root.path().join("ck").to_string_lossy().into_owned();
    c.log.metrics_path = String::new();
    c.log.tensorboard_dir = String::new();
    let mut r = CheckpointedRun::start(c).unwrap();
    r.trainer_mut().reporter = Reporter::silent();
    let t0 = Instant::now();
    let out = r.run().unwrap();
    let took = t0.elapsed();
    println!(
        "deadline 7 s: returned after {:.2} s, final save {:.2} s, abandoned iteration: {}",
        took.as_secs_f64(),
        out.saver.max_write_seconds,
        out.abandoned_iteration
    );
    assert_eq!(out.summary.stopped, StopReason::WallTime);
    assert!(
        out.abandoned_iteration,
        "the deadline came inside the first iteration"
    );
    let path = out.summary.checkpoint.clone().unwrap();
    verify_checkpoint(&path).unwrap();
    assert_eq!(
        read_checkpoint(&path).unwrap().meta.kind,
        CheckpointKind::Final
    );
    assert!(
        took < Duration::from_secs(7),
        "overshot the limit: {took:?}"
    );
}
