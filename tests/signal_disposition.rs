//! After a notebook `train` call returns, SIGINT/SIGTERM are handled exactly as before the
//! call (issue 13 section 4). Its own test binary: dispositions are per process.

use std::sync::atomic::{AtomicUsize, Ordering};

use emergence_lab::config::Config;
use emergence_lab::progress::Reporter;
use emergence_lab::train::{train_with_checkpoints, CheckpointedRun, StopReason};

static CAUGHT: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count(_: libc::c_int) {
    CAUGHT.fetch_add(1, Ordering::SeqCst);
}

fn handler_of(sig: i32) -> libc::sighandler_t {
    // SAFETY: query only.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(sig, std::ptr::null(), &mut old), 0);
        old.sa_sigaction
    }
}

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::tiny();
    c.train.device = "cpu".into();
    c.train.total_steps = 2 * c.steps_per_iteration();
    c.log.checkpoint_dir = dir.to_string_lossy().into_owned();
    c.log.metrics_path = String::new();
    c.log.tensorboard_dir = String::new();
    c
}

#[test]
fn train_calls_leave_the_signal_handling_as_they_found_it() {
    // SAFETY: a plain counting handler; SIGTERM back to the default.
    unsafe {
        libc::signal(libc::SIGINT, count as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
    }
    let root = tempfile::tempdir().unwrap();
    train_with_checkpoints(config(&root.path().join("a")), Reporter::silent()).unwrap();
    assert_eq!(
        handler_of(libc::SIGINT),
        count as *const () as libc::sighandler_t
    );
    assert_eq!(handler_of(libc::SIGTERM), libc::SIG_DFL);

    // A second call handles signals again: SIGINT during it stops that run...
    let mut run = CheckpointedRun::start(config(&root.path().join("b")))
        .unwrap()
        .handle_signals(true);
    run.trainer_mut().reporter = Reporter::silent();
    run.on_progress(|_, _| {
        // SAFETY: raising a signal in this process.
        unsafe {
            libc::raise(libc::SIGINT);
        }
    });
    let before = CAUGHT.load(Ordering::SeqCst);
    let out = run.run().unwrap();
    assert_eq!(out.summary.stopped, StopReason::StopRequested);
    assert_eq!(out.signal, Some(libc::SIGINT));
    assert_eq!(out.summary.iterations, 1);
    drop(run);

    // ...and afterwards the caller's handler is back, and live.
    assert_eq!(
        handler_of(libc::SIGINT),
        count as *const () as libc::sighandler_t
    );
    assert_eq!(handler_of(libc::SIGTERM), libc::SIG_DFL);
    let during = CAUGHT.load(Ordering::SeqCst);
    // SAFETY: raising a signal in this process, handled by `count`.
    unsafe {
        libc::raise(libc::SIGINT);
    }
    assert_eq!(CAUGHT.load(Ordering::SeqCst), during + 1);
    // signal-hook chains to the handler it found, so the caller's also saw the run's signal.
    assert!(during >= before);
}
