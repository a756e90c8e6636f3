//! Trainer loop: completes at total_steps, honours the stop flag and the wall-time limit,
//! reports progress per iteration, and stops with a typed error on a non-finite loss.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use emergence_lab::progress::Reporter;
use emergence_lab::{
    config::Config, train::StopReason, train::TrainError, train::TrainState, train::Trainer,
};
use tch::Device;

fn tiny() -> Config {
    let mut c = Config::default();
    c.env.grid_size = 6;
    c.env.num_agents = 2;
    c.env.num_food = 3;
    c.env.observation_radius = 1;
    c.env.observed_food = 2;
    c.train.num_envs = 2;
    c.train.num_steps = 4;
    c.train.minibatch_size = 8;
    c.train.num_epochs = 1;
    c.evolution.max_agents = 3;
    c.agent.hidden_dims = vec![8];
    c.train.device = "cpu".into();
    c.train.num_threads = 1;
    c.log.metrics_path = String::new();
    c.log.tensorboard_dir = String::new();
    c
}

fn trainer(c: Config) -> Trainer {
    Trainer::new(c).unwrap().with_reporter(Reporter::silent())
}

#[test]
fn the_library_prints_nothing_unless_given_a_reporter() {
    let t = Trainer::new(tiny()).unwrap();
    assert!(
        format!("{:?}", t.reporter).contains("silent"),
        "a new trainer must be silent: {:?}",
        t.reporter
    );
    let t = Trainer::new(tiny())
        .unwrap()
        .with_reporter(Reporter::new(emergence_lab::progress::ReportMode::Lines));
    assert!(format!("{:?}", t.reporter).contains("lines"));
}

#[test]
fn runs_to_total_steps_and_reports_progress() {
    let mut c = tiny();
    c.train.total_steps = 3 * c.steps_per_iteration() - 1; // needs 3 iterations
    let mut t = trainer(c);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s2 = seen.clone();
    t.on_progress(move |state, m| s2.borrow_mut().push((state.step, m.iteration)));
    let summary = t.run().unwrap();
    assert_eq!(summary.stopped, StopReason::Completed);
    assert_eq!(summary.iterations, 3);
    assert_eq!(summary.start_step, 0);
    assert_eq!(summary.final_step, 72);
    assert_eq!(*seen.borrow(), vec![(24, 1), (48, 2), (72, 3)]);
    assert_eq!(summary.last_metrics.unwrap().iteration, 3);
    // Linear annealing reaches 0 after the last iteration of the run.
    assert_eq!(t.state.learning_rate(), 0.0);
}

#[test]
fn stop_flag_and_wall_time_stop_cleanly() {
    let mut c = tiny();
    c.train.total_steps = 1_000_000;
    let mut t = trainer(c.clone());
    let flag = t.stop_flag();
    let f2 = flag.clone();
    t.on_progress(move |state, _| {
        if state.iteration == 2 {
            f2.store(true, Ordering::SeqCst);
        }
    });
    let s = t.run().unwrap();
    assert_eq!(s.stopped, StopReason::StopRequested);
    assert_eq!(s.iterations, 2);

    c.train.max_wall_time = "1s".into();
    let start = std::time::Instant::now();
    let s = trainer(c).run().unwrap();
    assert_eq!(s.stopped, StopReason::WallTime);
    assert!(s.iterations > 0);
    assert!(start.elapsed().as_secs_f64() < 1.5, "{:?}", start.elapsed());
}

#[test]
fn invalid_config_and_device_are_clear_errors() {
    let mut c = tiny();
    c.train.device = "tpu".into();
    let e = Trainer::new(c).err().unwrap().to_string();
    assert!(e.contains("tpu"), "{e}");
}

#[test]
fn nan_loss_stops_with_iteration_and_metric() {
    tch::set_num_threads(1);
    let mut s = TrainState::new(tiny(), Device::Cpu).unwrap();
    s.iterate().unwrap();
    let i = s.policy.index_of("policy/critic/bias").unwrap();
    tch::no_grad(|| {
        let _ = s.policy.params[i].fill_(f64::NAN);
    });
    match s.iterate() {
        Err(TrainError::NonFinite {
            iteration,
            metric,
            value,
        }) => {
            assert_eq!(iteration, 2);
            assert!(metric.starts_with("losses/"), "{metric}");
            assert!(!value.is_finite());
            let msg = TrainError::NonFinite {
                iteration,
                metric: metric.clone(),
                value,
            }
            .to_string();
            assert!(
                msg.contains("iteration 2") && msg.contains(&metric),
                "{msg}"
            );
        }
        other => panic!("expected a NonFinite error, got {other:?}"),
    }
}

#[test]
fn writes_metrics_jsonl_and_reports_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = tiny();
    c.train.total_steps = 2 * c.steps_per_iteration();
    c.log.metrics_path = dir.path().join("m.jsonl").to_string_lossy().into_owned();
    c.log.log_interval = 1.into();
    let buf = emergence_lab::progress::SharedBuffer::new();
    let mut t = Trainer::new(c)
        .unwrap()
        .with_reporter(Reporter::to_writer(Box::new(buf.clone())));
    let s = t.run().unwrap();
    assert_eq!(s.files.len(), 1);
    let text = std::fs::read_to_string(dir.path().join("m.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(text.contains("losses/policy_loss"));
    let out = buf.contents();
    let lines: Vec<_> = out
        .lines()
        .filter_map(emergence_lab::progress::Progress::from_line)
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[1].step, 48);
}
