//! The run loop, in the order a reader expects:
//!
//! ```text
//! loop {
//!     stop checks: total steps, stop flag (signal, notebook, caller), deadline
//!     iterate                      (interruptible when saves are kept, see below)
//!     metrics sinks (JSONL, TensorBoard)
//!     reporter (progress line / bar)
//!     trackers' events
//!     checkpoint schedule          (when the run keeps checkpoints: [`Saves`])
//!     the caller's progress hook
//! }
//! ```
//!
//! [`Trainer::run`] runs it without checkpoints (an iteration always ends); the checkpoint
//! layer ([`super::CheckpointedRun`]) passes its [`Saves`]: then the state of the last
//! completed iteration is always kept as a ready-to-write [`Checkpoint`], the stop flag and
//! the deadline are polled inside the iteration (each rollout tick, each update minibatch),
//! and a stop abandons the iteration at once: the run writes the kept state (a stop takes
//! seconds, whatever the iteration length) and the continuation repeats the abandoned
//! iteration bit for bit.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{threads, StopReason, TrainError, TrainState, TrainSummary, Trainer};
use crate::checkpoint::{AsyncSaver, Checkpoint, CheckpointError, CheckpointKind};
use crate::config::StepInterval;
use crate::metrics::{names, Metrics};
use crate::ppo::Interrupt;
use crate::progress::Progress;
use crate::sinks::Sinks;

/// Disk speed assumed for the first save's time before any save was measured (bytes/s).
const ASSUMED_WRITE_BYTES_PER_S: f64 = 100e6;

/// The checkpoint side of the loop: the background saver, the save schedule and the state
/// of the last completed iteration, converted and ready to write.
pub(crate) struct Saves<'a> {
    saver: &'a AsyncSaver,
    interval: StepInterval,
    /// `log.min_save_interval`: least time between periodic saves.
    min_gap: Option<Duration>,
    /// When the last periodic save was queued (or the run started).
    saved_at: Instant,
    /// The last completed iteration as a checkpoint (kind periodic until written).
    ready: Option<Checkpoint>,
    /// Step of the last periodic save that was queued.
    saved_step: u64,
    /// Slowest conversion of the state to a checkpoint, seconds.
    convert_s: f64,
    /// A save that failed (the run stops and reports it).
    pub(crate) failure: Option<CheckpointError>,
}

impl<'a> Saves<'a> {
    /// Converts `state` (the run's starting state) right away: from here on a stop always
    /// has a state to write.
    pub(crate) fn new(saver: &'a AsyncSaver, state: &TrainState) -> Saves<'a> {
        let mut s = Saves {
            saver,
            interval: state.config.log.save_interval,
            min_gap: state.config.log.min_save_interval.limit(),
            saved_at: Instant::now(),
            ready: None,
            saved_step: state.step,
            convert_s: 0.0,
            failure: None,
        };
        s.keep(state, None);
        s
    }

    fn keep(&mut self, state: &TrainState, spare: Option<Checkpoint>) {
        let t = Instant::now();
        self.ready = Some(state.to_checkpoint_reusing(CheckpointKind::Periodic, spare));
        self.convert_s = self.convert_s.max(t.elapsed().as_secs_f64());
    }

    /// The checkpoint schedule after a completed iteration: keep its state ready, and queue
    /// a periodic save when the step crossed a multiple of `log.save_interval` since the last
    /// one and `log.min_save_interval` has passed. False when a save failed (the run must
    /// stop).
    fn after_iteration(&mut self, state: &TrainState) -> bool {
        let old = self.ready.take().or_else(|| self.saver.take_spare());
        self.keep(state, old);
        let waited = self
            .min_gap
            .is_none_or(|gap| self.saved_at.elapsed() >= gap);
        if waited && self.interval.crossed(self.saved_step, state.step) {
            self.saved_step = state.step;
            self.saved_at = Instant::now();
            let ckpt = self.ready.take().expect("kept above");
            if let Err(e) = self.saver.submit(ckpt) {
                self.failure.get_or_insert(e);
            }
            // The submitted copy is the saver's now; keep another (into the spare buffers).
            let spare = self.saver.take_spare();
            self.keep(state, spare);
        }
        self.failure.is_none()
    }

    /// The state of the last completed iteration, ready to write.
    pub(crate) fn take_ready(&mut self) -> Option<Checkpoint> {
        self.ready.take()
    }

    /// Time to keep free before a deadline for the final save: twice the slowest measured
    /// save (or, before the first, the size at [`ASSUMED_WRITE_BYTES_PER_S`]), plus
    /// converting and restoring the state, plus half a second.
    pub(crate) fn reserve(&self) -> Duration {
        let stats = self.saver.stats();
        let write = match stats.max_write_seconds {
            s if s > 0.0 => s,
            _ => {
                let bytes: usize = self
                    .ready
                    .as_ref()
                    .map_or(0, |c| c.arrays.iter().map(|a| a.data.len()).sum());
                bytes as f64 / ASSUMED_WRITE_BYTES_PER_S
            }
        };
        Duration::from_secs_f64(2.0 * (write + 2.0 * self.convert_s) + 0.5)
    }
}

/// How the loop ended.
pub(crate) struct LoopEnd {
    pub(crate) summary: TrainSummary,
    /// The stop abandoned an iteration: `Trainer::state` is part-way through it and must be
    /// replaced by the kept state of the last completed iteration.
    pub(crate) abandoned: bool,
}

impl Trainer {
    /// Trains until `train.total_steps`, the wall-time limit or a stop request. Writes each
    /// iteration's metrics to the sinks of `log` (JSONL, TensorBoard; continuing at the
    /// right step after a resume), reports progress every `log.log_interval` steps and
    /// tracker events as they happen. Without checkpoints an iteration always runs to its
    /// end (a stop is seen between iterations).
    pub fn run(&mut self) -> Result<TrainSummary, TrainError> {
        self.run_loop(None).map(|end| end.summary)
    }

    /// The loop (module docs); `saves`: the checkpoint layer's schedule and kept state.
    pub(crate) fn run_loop(
        &mut self,
        mut saves: Option<&mut Saves>,
    ) -> Result<LoopEnd, TrainError> {
        self.started = Instant::now();
        let cfg = self.state.config.clone();
        let wall = cfg.max_wall_time();
        let total = cfg.train.total_steps;
        let start_step = self.state.step;
        let resume = (start_step > 0).then_some(start_step);
        let mut sinks = Sinks::open(
            &cfg.log,
            resume,
            self.state.metrics_history(),
            Some(&self.state.run_id),
        )?;
        for w in sinks.warnings() {
            self.reporter.warn(&w);
        }
        self.reporter
            .info(&crate::device::report(&cfg.train.device, self.state.device()).to_string());
        if let Some(choice) = threads::take_last_choice() {
            self.reporter.info(&choice.describe());
        }
        self.reporter.start(start_step, total);
        let mut iterations = 0;
        let mut last: Option<Metrics> = None;
        let mut slowest = Duration::ZERO;
        let mut abandoned = false;
        let stopped = loop {
            // Stop checks.
            let reserve = saves.as_ref().map_or(Duration::ZERO, |s| s.reserve());
            if self.state.step >= total {
                break StopReason::Completed;
            }
            if self.stop.load(Ordering::SeqCst) {
                break StopReason::StopRequested;
            }
            if let Some(w) = wall {
                // Stop before an iteration that would likely cross the limit.
                if self.started.elapsed() + slowest + reserve >= w {
                    break StopReason::WallTime;
                }
            }

            // Iterate.
            let interrupt = match saves {
                Some(_) => Interrupt::new(
                    Some(self.stop.clone()),
                    wall.map(|w| self.started + w.saturating_sub(reserve)),
                ),
                None => Interrupt::never(),
            };
            let prev_step = self.state.step;
            let t = Instant::now();
            let Some(m) = self.state.iterate_until(&interrupt)? else {
                abandoned = true;
                break if self.stop.load(Ordering::SeqCst) {
                    StopReason::StopRequested
                } else {
                    StopReason::WallTime
                };
            };
            slowest = slowest.max(t.elapsed());
            iterations += 1;

            // Metrics sinks.
            sinks.write(&m)?;

            // Reporter.
            if cfg.log.log_interval.crossed(prev_step, self.state.step) || self.state.step >= total
            {
                let sps = (self.state.step - start_step) as f64
                    / self.started.elapsed().as_secs_f64().max(1e-9);
                self.reporter.progress(&Progress {
                    step: self.state.step,
                    total,
                    iteration: self.state.iteration,
                    mean_reward: m.get(names::MEAN_REWARD).unwrap_or(0.0),
                    population: m.get(names::POPULATION).unwrap_or(0.0),
                    steps_per_sec: sps,
                    eta_s: total.saturating_sub(self.state.step) as f64 / sps.max(1e-9),
                });
            }

            // Trackers' events.
            for e in &self.state.new_events {
                self.reporter.event(e);
            }

            // Checkpoint schedule.
            if let Some(s) = saves.as_deref_mut() {
                if !s.after_iteration(&self.state) {
                    self.stop.store(true, Ordering::SeqCst);
                }
            }

            if let Some(f) = self.on_progress.as_mut() {
                f(&self.state, &m);
            }
            last = Some(m);
        };
        sinks.sync()?;
        self.reporter.finish(&format!(
            "stopped={stopped:?} step={} iterations={iterations} events={}",
            self.state.step,
            self.state.trackers.events().len()
        ));
        Ok(LoopEnd {
            summary: TrainSummary {
                start_step,
                final_step: self.state.step,
                iterations,
                stopped,
                last_metrics: last,
                events: self.state.trackers.events(),
                checkpoint: None,
                files: sinks.files(),
            },
            abandoned,
        })
    }
}
