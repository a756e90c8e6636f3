//! The reporter's plain lines: one per call, flushed, parseable back, stable formatting.

use emergence_lab_core::progress::{
    last_progress, parse_progress_line, Progress, ReportMode, Reporter, SharedBuffer,
};
use emergence_lab_core::trackers::{TrackerEvent, TrackerKind};

fn sample(step: u64) -> Progress {
    Progress {
        step,
        total: 10_000_000,
        iteration: step / 131_072,
        mean_reward: 0.0125 + step as f64 * 1e-9,
        population: 7.8125,
        steps_per_sec: 65_536.04,
        eta_s: 150.55,
    }
}

#[test]
fn progress_lines_parse_back() {
    let buf = SharedBuffer::new();
    let mut r = Reporter::to_writer(Box::new(buf.clone()));
    r.start(0, 10_000_000);
    let reports: Vec<Progress> = (1..=5).map(|i| sample(i * 131_072)).collect();
    for (i, p) in reports.iter().enumerate() {
        r.progress(p);
        // Flushed immediately: the line is there before the next call.
        let text = buf.contents();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("progress "))
            .collect();
        assert_eq!(lines.len(), i + 1, "exactly one line per call");
    }
    let text = buf.contents();
    let parsed: Vec<Progress> = text.lines().filter_map(Progress::from_line).collect();
    assert_eq!(parsed.len(), reports.len());
    for (got, want) in parsed.iter().zip(&reports) {
        assert_eq!(got.step, want.step);
        assert_eq!(got.total, want.total);
        assert_eq!(got.iteration, want.iteration);
        assert!((got.mean_reward - want.mean_reward).abs() <= 5e-7);
        assert!((got.population - want.population).abs() <= 5e-5);
        assert!((got.steps_per_sec - want.steps_per_sec).abs() <= 0.05);
        assert!((got.eta_s - want.eta_s).abs() <= 0.05);
    }
}

#[test]
fn number_formatting_is_stable() {
    let line = sample(131_072).to_line();
    assert_eq!(
        line,
        "progress step=131072 total=10000000 iter=1 reward=0.012631 pop=7.8125 sps=65536.0 eta_s=150.6"
    );
    let odd = Progress {
        mean_reward: f64::NAN,
        eta_s: f64::INFINITY,
        ..sample(0)
    };
    let line = odd.to_line();
    assert!(
        line.contains("reward=NaN") && line.contains("eta_s=inf"),
        "{line}"
    );
    let back = Progress::from_line(&line).expect("non-finite values parse back");
    assert!(back.mean_reward.is_nan() && back.eta_s.is_infinite());
    // Every token after the first is key=value with no spaces inside.
    for token in line.split(' ').skip(1) {
        assert!(token
            .split_once('=')
            .is_some_and(|(k, v)| !k.is_empty() && !v.is_empty()));
    }
}

#[test]
fn strict_reading_rejects_other_lines_and_ignores_unknown_keys() {
    assert!(Progress::from_line("warning: progress step=1").is_none());
    assert!(
        Progress::from_line("progress step=1 total=2").is_none(),
        "missing keys"
    );
    assert!(
        Progress::from_line("progress step=x total=2 iter=0 reward=0 pop=0 sps=0 eta_s=0")
            .is_none()
    );
    let p =
        Progress::from_line("progress step=1 total=2 iter=0 reward=0.5 pop=1 sps=3 eta_s=4 gpu=0")
            .expect("unknown keys are ignored");
    assert_eq!(p.step, 1);
    assert_eq!(p.mean_reward, 0.5);
}

#[test]
fn tolerant_parser_reads_partial_lines_any_order_extra_keys_and_timestamps() {
    let p = parse_progress_line(
        "[12:00:01] progress foo=bar eta_s=5 step=9 births=3 total=10 reward=nan pop=x",
    )
    .unwrap();
    assert_eq!(p.step, 9);
    assert_eq!(p.total, Some(10));
    assert!(
        p.reward.is_some_and(f64::is_nan),
        "a diverged run shows as NaN"
    );
    assert_eq!(p.pop, None, "a malformed value reads as missing");
    assert_eq!(p.eta_s, Some(5.0));
    assert_eq!(p.extra.get("births").map(String::as_str), Some("3"));
    assert_eq!(p.extra.get("foo").map(String::as_str), Some("bar"));
    assert!(
        parse_progress_line("progress total=10").is_none(),
        "no step"
    );
    assert!(parse_progress_line("no progress here=1").is_none());
    assert!(parse_progress_line("progressive step=1").is_none());
    assert!(parse_progress_line("warning: progress step=1").is_none());
    assert_eq!(
        last_progress("progress step=1\nhello\nprogress step=2 total=4\nbye").map(|p| p.step),
        Some(2)
    );
}

#[test]
fn events_warnings_and_finish() {
    let buf = SharedBuffer::new();
    let mut r = Reporter::to_writer(Box::new(buf.clone()));
    let ev = TrackerEvent {
        kind: TrackerKind::Emergence,
        step: 1_310_720,
        metric: "entropy".into(),
        value: 5.1234567,
        mean: 4.0,
        std: 0.3,
        z: 3.41234,
    };
    r.event(&ev);
    r.event("population collapsed in env 3");
    r.info("saved checkpoints/step_000131072");
    r.warn("no CUDA device, using CPU");
    r.finish("reached total_steps");
    let text = buf.contents();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec![
            "event kind=emergence step=1310720 metric=entropy value=5.123457 z=3.412",
            "event text=population_collapsed_in_env_3",
            "saved checkpoints/step_000131072",
            "warning: no CUDA device, using CPU",
            "done: reached total_steps",
        ]
    );
}

#[test]
fn silent_reporter_accepts_everything() {
    let mut r = Reporter::silent();
    r.start(5, 10);
    r.progress(&sample(7));
    r.warn("nothing shown");
    r.finish("ok");
    assert!(!r.is_bar());
}

#[test]
fn bar_mode_accepts_everything_without_a_terminal() {
    // Under the test harness stderr is not a terminal: the bar draws nothing, but every
    // call must still work (this is the code path a terminal user gets).
    let mut r = Reporter::new(ReportMode::Bar);
    assert!(r.is_bar());
    r.start(131_072, 10_000_000);
    r.progress(&sample(262_144));
    r.event("checkpoint saved");
    r.warn("slow disk");
    r.finish("ok");
}

#[test]
fn start_line_names_resume_step() {
    let buf = SharedBuffer::new();
    let mut r = Reporter::to_writer(Box::new(buf.clone()));
    r.start(393_216, 10_000_000);
    assert_eq!(buf.contents(), "start step=393216 total=10000000\n");
}
