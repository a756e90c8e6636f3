//! Training runs, in layers: [`TrainState`] (all state + the `iterate` step); the run loop
//! (`run.rs`: iterate -> sinks -> reporter -> events -> checkpoint schedule -> stop checks)
//! driven by [`Trainer`]; [`CheckpointedRun`] around it (resume, saves, signals, deadline);
//! [`train`] and [`train_with_checkpoints`] for notebook cells.
//!
//! The library prints nothing unless the caller gives a [`Reporter`]
//! ([`Trainer::with_reporter`], [`CheckpointedRun::with_reporter`], the `reporter` argument of
//! [`train_with_checkpoints`]): it is silent by default, and the outcome is returned as a
//! [`TrainSummary`] / [`RunOutcome`]. The `train` binary and the notebook ask for
//! `Reporter::new(ReportMode::Auto)` (a bar on a terminal, plain lines otherwise).

mod checkpoint;
pub mod floor;
mod run;
mod session;
mod signals;
mod state;
pub mod threads;

pub use session::{train_with_checkpoints, CheckpointedRun, RunError, RunOutcome};
pub use signals::SignalGuard;
pub use state::{check_config, TrainState};

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::progress::Reporter;

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
    /// A tracker could not measure.
    #[error("tracker: {0}")]
    Tracker(#[from] crate::trackers::TrackerError),
    /// A metrics sink (JSONL / TensorBoard) failed.
    #[error("metrics output: {0}")]
    Sink(#[from] crate::sinks::SinkError),
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
    /// All tracker events of the run so far (including before a resume).
    pub events: Vec<crate::trackers::TrackerEvent>,
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
    /// Where progress, events and messages go (default: [`Reporter::silent`]).
    pub reporter: Reporter,
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

    /// Applies `train.num_threads` and resolves `train.device`. On the CPU the network runs
    /// in the native passes on `num_threads` threads (0: measured by
    /// [`threads::choose_threads`], reported by the run) and libtorch gets one thread (its
    /// OpenMP workers spin between ops and would take the cores from the native passes);
    /// on other devices `num_threads > 0` sets libtorch's CPU threads.
    pub fn prepare_device(config: &Config) -> Result<tch::Device, TrainError> {
        let device = crate::device::select(&config.train.device)
            .map_err(|e| TrainError::Device(e.to_string()))?;
        let n = config.train.num_threads;
        if device == tch::Device::Cpu {
            tch::set_num_threads(1);
            if n > 0 {
                crate::policy::native::set_threads(n);
            } else {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                threads::choose_threads(config.obs_dim(), &config.agent.hidden_dims, cores);
            }
        } else if n > 0 {
            tch::set_num_threads(n as i32);
        }
        Ok(device)
    }

    /// A trainer continuing `state` (e.g. loaded from a checkpoint).
    pub fn from_state(state: TrainState) -> Trainer {
        Trainer {
            state,
            reporter: Reporter::silent(),
            stop: Arc::new(AtomicBool::new(false)),
            on_progress: None,
            started: Instant::now(),
        }
    }

    /// The stop flag: set it (from a signal handler, another thread, a notebook) and the
    /// run returns with [`StopReason::StopRequested`]: after the current iteration for a
    /// plain [`Trainer::run`], within a rollout tick or update minibatch for a
    /// [`CheckpointedRun`] (which then saves the last completed iteration).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Replaces the reporter (e.g. `Reporter::new(ReportMode::Auto)` to see progress).
    pub fn with_reporter(mut self, reporter: Reporter) -> Self {
        self.reporter = reporter;
        self
    }

    /// Calls `f` after every iteration, after the metrics were written and reported.
    pub fn on_progress(&mut self, f: impl FnMut(&TrainState, &Metrics) + 'static) {
        self.on_progress = Some(Box::new(f));
    }
}

/// A new run identity: 16 hex digits from the clock, the process id and the standard
/// library's random hasher keys (it never draws from the run's generator, so determinism
/// is untouched).
pub fn new_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Trains a fresh run of `config` to the end, silently: `Trainer::new(config)?.run()`.
pub fn train(config: Config) -> Result<TrainSummary, TrainError> {
    Trainer::new(config)?.run()
}
