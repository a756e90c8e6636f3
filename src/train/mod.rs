//! Training runs: [`TrainState`] (all state + the `iterate` step), the [`Trainer`] loop
//! with stop flag, wall-time limit and progress callback, and [`train`] for notebook cells.
//!
//! The library never prints: progress goes to the `on_progress` callback, the outcome is
//! returned as a [`TrainSummary`].

mod checkpoint;
mod state;

pub use state::{check_config, TrainState};

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::metrics::Metrics;

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A loss became NaN or infinite; training stops (the latest good checkpoint is kept).
    #[error(
        "iteration {iteration}: {metric} is {value} (not finite); training stopped. \
         Try a lower train.learning_rate or train.max_grad_norm; the last good checkpoint is unchanged"
    )]
    NonFinite {
        iteration: u64,
        metric: String,
        value: f64,
    },
    /// The configuration cannot be trained.
    #[error("invalid config: {0}")]
    Config(String),
    /// The requested device is unusable.
    #[error("device: {0}")]
    Device(String),
    /// A checkpoint does not match what the state needs.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// An error from libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Why a run returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `train.total_steps` reached.
    Completed,
    /// The next iteration would have crossed `train.max_wall_time`.
    WallTime,
    /// The stop flag was set (signal, notebook interrupt, caller).
    StopRequested,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Step counter when the run started (non-zero after a resume).
    pub start_step: u64,
    /// Step counter at the end.
    pub final_step: u64,
    /// Iterations done in this run.
    pub iterations: u64,
    pub stopped: StopReason,
    /// Metrics of the last iteration, if any ran.
    pub last_metrics: Option<Metrics>,
    /// Tracker events (filled once the trackers land).
    pub events: Vec<String>,
    /// The checkpoint written at the end, if any (set by the checkpoint layer).
    pub checkpoint: Option<PathBuf>,
    /// Other files written (metrics, TensorBoard, ...).
    pub files: Vec<PathBuf>,
}

/// Progress callback: called after every iteration with the state and its metrics.
pub type ProgressFn = Box<dyn FnMut(&TrainState, &Metrics)>;

/// Runs iterations of a [`TrainState`] until done, out of wall time or asked to stop.
pub struct Trainer {
    /// The state being trained (public: the checkpoint layer saves it).
    pub state: TrainState,
    stop: Arc<AtomicBool>,
    on_progress: Option<ProgressFn>,
    started: Instant,
}

impl Trainer {
    /// A fresh run of a validated config: device from `train.device`, `tch::set_num_threads(train.num_threads)`
    /// when > 0, state from `train.seed`.
    pub fn new(config: Config) -> Result<Trainer, TrainError> {
        config
            .validate()
            .map_err(|e| TrainError::Config(e.to_string()))?;
        let device = Self::prepare_device(&config)?;
        Ok(Trainer::from_state(TrainState::new(config, device)?))
    }

    /// Applies `train.num_threads` and resolves `train.device`.
    pub fn prepare_device(config: &Config) -> Result<tch::Device, TrainError> {
        if config.train.num_threads > 0 {
            tch::set_num_threads(config.train.num_threads as i32);
        }
        crate::device::select(&config.train.device).map_err(TrainError::Device)
    }

    /// A trainer continuing `state` (e.g. loaded from a checkpoint).
    pub fn from_state(state: TrainState) -> Trainer {
        Trainer {
            state,
            stop: Arc::new(AtomicBool::new(false)),
            on_progress: None,
            started: Instant::now(),
        }
    }

    /// The stop flag: set it (from a signal handler, another thread, a notebook) and the
    /// run returns after the current iteration with [`StopReason::StopRequested`].
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Calls `f` after every iteration (the reporter hooks in here).
    pub fn on_progress(&mut self, f: impl FnMut(&TrainState, &Metrics) + 'static) {
        self.on_progress = Some(Box::new(f));
    }

    /// Trains until `train.total_steps`, the wall-time limit or a stop request.
    pub fn run(&mut self) -> Result<TrainSummary, TrainError> {
        self.started = Instant::now();
        let wall = self.state.config.max_wall_time();
        let start_step = self.state.step;
        let mut iterations = 0;
        let mut last: Option<Metrics> = None;
        let mut slowest = Duration::ZERO;
        let stopped = loop {
            if self.state.step >= self.state.config.train.total_steps {
                break StopReason::Completed;
            }
            if self.stop.load(Ordering::SeqCst) {
                break StopReason::StopRequested;
            }
            if let Some(w) = wall {
                // Stop before an iteration that would likely cross the limit.
                if self.started.elapsed() + slowest >= w {
                    break StopReason::WallTime;
                }
            }
            let t = Instant::now();
            let m = self.state.iterate()?;
            slowest = slowest.max(t.elapsed());
            iterations += 1;
            if let Some(f) = self.on_progress.as_mut() {
                f(&self.state, &m);
            }
            last = Some(m);
        };
        Ok(TrainSummary {
            start_step,
            final_step: self.state.step,
            iterations,
            stopped,
            last_metrics: last,
            events: Vec::new(),
            checkpoint: None,
            files: Vec::new(),
        })
    }
}

/// Trains a fresh run of `config` to the end: `Trainer::new(config)?.run()`.
pub fn train(config: Config) -> Result<TrainSummary, TrainError> {
    Trainer::new(config)?.run()
}
