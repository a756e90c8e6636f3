//! A checkpointed training run: resume, periodic / final / emergency saves, signals and
//! the wall-time deadline around [`Trainer`], for the `train` binary and notebook cells.
//!
//! Periodic saves go through an [`AsyncSaver`] (the loop only converts the state). The
//! state of the last completed iteration is kept converted, so a stop (signal, stop flag,
//! deadline) abandons the running iteration within a rollout tick or update minibatch and
//! writes that state: seconds, whatever the iteration length. The deadline keeps time for
//! that final save (see `run.rs`).
//!
//! From a notebook cell (SIGINT/SIGTERM are handled only while the call runs):
//!
//! ```text
//! let mut config = Config::kaggle_notebook();
//! config.train.resume_from = "auto".into();          // newest good checkpoint, or fresh
//! config.train.resume_search = vec!["/kaggle/input".into()];
//! config.train.max_wall_time = "11h30m".into();      // stop, save, return before this
//! // Progress as a bar on a terminal, plain lines otherwise; or CheckpointedRun for hooks.
//! let outcome = train_with_checkpoints(config, Reporter::new(ReportMode::Auto))?;
//! println!("{}", outcome.message);
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::run::Saves;
use super::signals::SignalGuard;
use super::{StopReason, TrainError, TrainState, TrainSummary, Trainer};
use crate::checkpoint::{
    find_resume, list_checkpoints, parse_checkpoint_file_name, read_checkpoint, verify_checkpoint,
    AsyncSaver, CheckpointError, CheckpointInfo, CheckpointKind, CheckpointStore, FolderLock,
    SaverStats,
};
use crate::config::{Config, ConfigOverrides, ResumeFrom};
use crate::metrics::Metrics;
use crate::progress::Reporter;

/// Errors of a checkpointed run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Finding, reading or writing a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Training failed (pending saves were flushed first; `latest` is the last good state).
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The requested config cannot continue the checkpoint's run.
    #[error("cannot resume from {path}: {detail}")]
    Resume { path: PathBuf, detail: String },
    /// A fresh start was asked for in a folder that holds another run's checkpoints.
    #[error("log.checkpoint_dir {dir} already holds checkpoints of a run (newest: step {step}); a fresh run there would mix two runs and rotate the old files away. Continue that run with --train.resume-from auto (or latest), or start fresh in another folder (--log.checkpoint-dir DIR)")]
    Occupied { dir: PathBuf, step: u64 },
    /// Installing the signal handlers failed.
    #[error("cannot install SIGINT/SIGTERM handling: {0}")]
    Signals(std::io::Error),
    /// A fresh start was asked for in a folder holding checkpoint files this build cannot
    /// read or verify (a newer format version, damaged files): a run there would overwrite
    /// or rotate them away.
    #[error("log.checkpoint_dir {} holds checkpoint files this build cannot use:\n{}\nA fresh run there would overwrite or rotate them away. Move them out of the folder (or read them with the build that wrote them), or start fresh in another folder (--log.checkpoint-dir DIR)", .dir.display(), list_files(.files))]
    Unusable {
        dir: PathBuf,
        /// `(file, why it cannot be used)`.
        files: Vec<(PathBuf, String)>,
    },
    /// Training stopped with an error while its state was still good (e.g. the metrics disk
    /// is full); that state was saved first.
    #[error("{error}; the state at step {step} was saved as {} — fix the problem above and continue with --train.resume-from auto (notebooks: train.resume_from = \"auto\")", .saved.display())]
    SavedAfter {
        #[source]
        error: TrainError,
        step: u64,
        saved: PathBuf,
    },
    /// Training panicked (pending saves were flushed first).
    #[error("training panicked: {message}; {}", last_good_text(.last_good))]
    Panic {
        message: String,
        /// The newest good checkpoint of this run (saved or resumed from), if any.
        last_good: Option<PathBuf>,
    },
}

fn list_files(files: &[(PathBuf, String)]) -> String {
    files
        .iter()
        .map(|(p, why)| format!("  - {}: {why}", p.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn last_good_text(p: &Option<PathBuf>) -> String {
    match p {
        Some(p) => format!("the last good checkpoint is {}", p.display()),
        None => "no checkpoint of this run was saved before it".into(),
    }
}

/// What a checkpointed run did.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The trainer's summary (`checkpoint` holds the file written at the end).
    pub summary: TrainSummary,
    /// The checkpoint the run continued from, `None` for a fresh start.
    pub resumed_from: Option<CheckpointInfo>,
    /// Skipped checkpoint files and other notes (each names its file).
    pub warnings: Vec<String>,
    /// The signal that stopped the run, if any (SIGINT = 2, SIGTERM = 15).
    pub signal: Option<i32>,
    /// The stop came inside an iteration, which was abandoned: the checkpoint holds the
    /// iteration before it, and continuing repeats the abandoned one exactly.
    pub abandoned_iteration: bool,
    /// Counters of the background writer.
    pub saver: SaverStats,
    /// One line for the user: what happened and how to continue.
    pub message: String,
}

impl RunOutcome {
    /// Process exit code: 128 + signal after a signal, otherwise 0.
    pub fn exit_code(&self) -> i32 {
        self.signal.map_or(0, |s| 128 + s)
    }
}

/// A training run with checkpoints: build with [`CheckpointedRun::start`], then [`CheckpointedRun::run`].
pub struct CheckpointedRun {
    trainer: Trainer,
    /// Held for the whole life of the run (released on drop, or by the OS on exit).
    lock: FolderLock,
    store: CheckpointStore,
    resumed_from: Option<CheckpointInfo>,
    warnings: Vec<String>,
    handle_signals: bool,
}

impl CheckpointedRun {
    /// Resolves `train.resume_from`, loads and restores the checkpoint (its config with the
    /// run-control fields of `config`; any other difference is an error listing the fields),
    /// or starts fresh; opens `log.checkpoint_dir`. For notebooks, which hold a full config.
    pub fn start(config: Config) -> Result<CheckpointedRun, RunError> {
        Self::start_with(config, |theirs, requested| {
            Config::merge_run_control(theirs, requested).map_err(|e| e.to_string())
        })
    }

    /// Like [`CheckpointedRun::start`] for binaries: on resume only the settings the user
    /// gave (`overrides`: config files, command line, environment) are applied to the
    /// checkpoint's config, via [`ConfigOverrides::apply_for_resume`].
    pub fn start_with_overrides(
        config: Config,
        overrides: &ConfigOverrides,
    ) -> Result<CheckpointedRun, RunError> {
        Self::start_with(config, |theirs, _| {
            overrides
                .apply_for_resume(theirs)
                .map_err(|e| e.to_string())
        })
    }

    fn start_with(
        config: Config,
        resolve: impl FnOnce(&Config, &Config) -> Result<Config, String>,
    ) -> Result<CheckpointedRun, RunError> {
        let mut lock = FolderLock::acquire(std::path::Path::new(&config.log.checkpoint_dir))?;
        let choice = find_resume(&config)?;
        let mut warnings = choice.warnings;
        let (trainer, resumed_from) = match choice.checkpoint {
            None => {
                refuse_to_mix_runs(&config)?;
                (Trainer::new(config)?, None)
            }
            Some(info) => {
                let ckpt = read_checkpoint(&info.path)?;
                let theirs: Config =
                    serde_json::from_str(&ckpt.meta.config_json).map_err(|e| RunError::Resume {
                        path: info.path.clone(),
                        detail: format!("its config does not parse with this build: {e}"),
                    })?;
                let merged = resolve(&theirs, &config).map_err(|detail| RunError::Resume {
                    path: info.path.clone(),
                    detail,
                })?;
                let device = Trainer::prepare_device(&merged)?;
                let state = TrainState::from_checkpoint_with_config(&ckpt, merged, device)?;
                if state.step >= state.config.train.total_steps {
                    warnings.push(format!(
                        "{} is at step {} >= train.total_steps {}: nothing left to train (raise train.total_steps to continue)",
                        info.path.display(),
                        state.step,
                        state.config.train.total_steps
                    ));
                }
                (Trainer::from_state(state), Some(info))
            }
        };
        let log = &trainer.state.config.log;
        if !same_folder(lock.dir(), std::path::Path::new(&log.checkpoint_dir)) {
            // The checkpoint's config names another folder: that is where this run writes.
            lock = FolderLock::acquire(std::path::Path::new(&log.checkpoint_dir))?;
        }
        let store = CheckpointStore::new(&log.checkpoint_dir, log.keep_checkpoints)?;
        Ok(CheckpointedRun {
            trainer,
            lock,
            store,
            resumed_from,
            warnings,
            handle_signals: false,
        })
    }

    /// Sends progress, events and messages to `reporter` (the run is silent without one).
    pub fn with_reporter(mut self, reporter: Reporter) -> Self {
        self.trainer.reporter = reporter;
        self
    }

    /// Install SIGINT/SIGTERM handling while [`CheckpointedRun::run`] runs (default off).
    pub fn handle_signals(mut self, yes: bool) -> Self {
        self.handle_signals = yes;
        self
    }

    /// Calls `f` after every completed iteration (after its checkpoint schedule ran).
    pub fn on_progress(&mut self, f: impl FnMut(&TrainState, &Metrics) + 'static) {
        self.trainer.on_progress(f);
    }

    /// The trainer's stop flag: set it and the run saves and returns after this iteration.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.trainer.stop_flag()
    }

    /// The trainer (state, config).
    pub fn trainer(&self) -> &Trainer {
        &self.trainer
    }

    /// The trainer, mutably (e.g. its `reporter`).
    pub fn trainer_mut(&mut self) -> &mut Trainer {
        &mut self.trainer
    }

    /// The trainer, e.g. to keep the final state after `run`.
    pub fn into_trainer(self) -> Trainer {
        self.trainer
    }

    /// Notes from choosing the checkpoint (skipped corrupt files, nothing left to train, ...).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The checkpoint folder this run holds the lock of (see [`FolderLock`]).
    pub fn locked_folder(&self) -> &std::path::Path {
        self.lock.dir()
    }

    /// The checkpoint being continued, if any.
    pub fn resumed_from(&self) -> Option<&CheckpointInfo> {
        self.resumed_from.as_ref()
    }

    /// Trains to `train.total_steps`, the deadline or a stop; saves periodic checkpoints in
    /// the background, then a final (completed, deadline) or emergency (stop/signal) one.
    /// A NaN/Inf failure saves a `nonfinite` debug file and never touches `latest`; other
    /// failures and panics flush pending saves and return the error.
    pub fn run(&mut self) -> Result<RunOutcome, RunError> {
        let saver = AsyncSaver::new(self.store.clone())?;
        let stop = self.trainer.stop_flag();
        let which = Arc::new(AtomicUsize::new(0));
        let step_at_start = self.trainer.state.step;
        let guard = if self.handle_signals {
            Some(SignalGuard::install(stop.clone(), which.clone()).map_err(RunError::Signals)?)
        } else {
            None
        };
        let mut saves = Saves::new(&saver, &self.trainer.state);
        let result = catch_unwind(AssertUnwindSafe(|| self.trainer.run_loop(Some(&mut saves))));
        let signal = match which.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        };
        let outcome = match result {
            Ok(Ok(end)) => self.finish(end.summary, end.abandoned, &mut saves, &saver, signal),
            Ok(Err(e @ TrainError::NonFinite { .. })) => {
                let _ = saver.wait();
                let _ = saver.submit(self.trainer.state.to_checkpoint(CheckpointKind::Nonfinite));
                let _ = saver.wait();
                Err(RunError::Train(e))
            }
            Ok(Err(e @ TrainError::Sink(_))) if self.trainer.state.step != step_at_start => {
                // A metrics file failed between iterations: the state is good, save it.
                let _ = saver.wait();
                let saved = saver
                    .submit(self.trainer.state.to_checkpoint(CheckpointKind::Emergency))
                    .and_then(|()| saver.wait());
                match (saved, saver.stats().last) {
                    (Ok(()), Some(r)) => Err(RunError::SavedAfter {
                        error: e,
                        step: self.trainer.state.step,
                        saved: r.path,
                    }),
                    _ => Err(RunError::Train(e)),
                }
            }
            Ok(Err(e)) => {
                let _ = saver.wait();
                Err(RunError::Train(e))
            }
            Err(panic) => {
                let _ = saver.wait();
                let last_good = saver
                    .stats()
                    .last
                    .filter(|r| r.updated_latest)
                    .map(|r| r.path)
                    .or_else(|| self.resumed_from.as_ref().map(|r| r.path.clone()));
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                Err(RunError::Panic {
                    message: msg,
                    last_good,
                })
            }
        };
        drop(guard);
        drop(saves);
        let _ = saver.finish();
        outcome
    }

    /// After the loop: the final (completed, deadline) or emergency (stop) checkpoint of the
    /// last completed iteration, unless a verified file of that step already exists (the
    /// checkpoint resumed from, or a periodic save of this very step). When the stop
    /// abandoned an iteration, the trainer's state is replaced by that kept state.
    fn finish(
        &mut self,
        mut summary: TrainSummary,
        abandoned: bool,
        saves: &mut Saves,
        saver: &AsyncSaver,
        signal: Option<i32>,
    ) -> Result<RunOutcome, RunError> {
        if let Some(e) = saves.failure.take() {
            let _ = saver.wait();
            return Err(RunError::Checkpoint(e));
        }
        let kind = match summary.stopped {
            StopReason::Completed | StopReason::WallTime => CheckpointKind::Final,
            StopReason::StopRequested => CheckpointKind::Emergency,
        };
        let step = self.trainer.state.step;
        let mut kept = saves.take_ready();
        let unchanged = self
            .resumed_from
            .as_ref()
            .filter(|r| summary.iterations == 0 && r.step == step);
        // A stop right after a periodic save of this very step: that file, once verified, is
        // the checkpoint (no emergency copy of the same state).
        let saved_here = if kind == CheckpointKind::Emergency && unchanged.is_none() {
            saver.wait()?;
            saver.stats().last.as_ref().map(|r| r.path.clone()).filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                matches!(parse_checkpoint_file_name(name), Some((CheckpointKind::Periodic, s)) if s == step)
                    && verify_checkpoint(p).is_ok()
            })
        } else {
            None
        };
        if let Some(r) = unchanged {
            // Nothing trained since the checkpoint we resumed from: do not write it again.
            summary.checkpoint = Some(r.path.clone());
        } else if let Some(p) = saved_here {
            summary.checkpoint = Some(p);
        } else {
            let mut ckpt = match kept.take() {
                Some(c) => c,
                None if !abandoned => self
                    .trainer
                    .state
                    .to_checkpoint_reusing(kind, saver.take_spare()),
                None => return Err(lost_state()),
            };
            ckpt.meta.kind = kind;
            ckpt.meta.created_unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            saver.submit(ckpt)?;
            saver.wait()?;
            let written = saver.stats().last.map(|r| r.path);
            if let Some(p) = &written {
                verify_checkpoint(p)?;
            }
            summary.checkpoint = written;
            // The written checkpoint comes back as the saver's spare.
            kept = saver.take_spare();
        }
        if abandoned {
            // The state is part-way through the abandoned iteration: continue from the kept
            // one (what was just written), as a resume from that file would.
            let ckpt = kept.ok_or_else(lost_state)?;
            let state = &self.trainer.state;
            let backend = state.update_backend;
            let mut restored = TrainState::from_checkpoint_with_config(
                &ckpt,
                state.config.clone(),
                state.device(),
            )?;
            restored.update_backend = backend;
            self.trainer.state = restored;
        }
        let stats = saver.stats();
        let saved = summary
            .checkpoint
            .as_ref()
            .map_or("nothing".into(), |p| p.display().to_string());
        let state = &self.trainer.state;
        let message = match summary.stopped {
            StopReason::Completed => {
                format!("run complete at step {} (iteration {}); saved {saved}", state.step, state.iteration)
            }
            StopReason::WallTime => format!(
                "stopped before train.max_wall_time at step {} of {}; saved {saved}. To continue, run again with \
                 --train.resume-from auto (notebooks: train.resume_from = \"auto\") and the same log.checkpoint_dir",
                state.step, state.config.train.total_steps
            ),
            StopReason::StopRequested => format!(
                "stopped{} at step {} of {}; saved {saved}. To continue, run again with --train.resume-from auto (notebooks: train.resume_from = \"auto\")",
                signal.map_or(String::new(), |s| format!(" by signal {s}")),
                state.step,
                state.config.train.total_steps
            ),
        };
        Ok(RunOutcome {
            summary,
            resumed_from: self.resumed_from.clone(),
            warnings: self.warnings.clone(),
            signal,
            abandoned_iteration: abandoned,
            saver: stats,
            message,
        })
    }
}

fn lost_state() -> RunError {
    RunError::Train(TrainError::Checkpoint(
        "the state of the last completed iteration was not kept (a failed save took it); \
         continue from the newest checkpoint with --train.resume-from auto"
            .into(),
    ))
}

/// Notebook entry point: resume per `train.resume_from`, train with checkpoints reporting to
/// `reporter`, handle SIGINT/SIGTERM only for the duration of the call.
pub fn train_with_checkpoints(config: Config, reporter: Reporter) -> Result<RunOutcome, RunError> {
    let mut run = CheckpointedRun::start(config)?
        .with_reporter(reporter)
        .handle_signals(true);
    run.run()
}

/// Whether two folder paths name the same folder (canonically when both exist).
fn same_folder(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A fresh start must not write into a folder holding another run's checkpoints: rotation
/// and `latest` would mix the two runs and rotate the old files away.
///
/// * `train.resume_from = ""`: any checkpoint file refuses the folder.
/// * `auto` that found nothing to resume: files it could not use (unreadable, a newer
///   format version, failed verification) refuse the folder; `nonfinite` debug saves,
///   which are never rotated and never resumed, do not.
/// * Files this build cannot read refuse the folder in both cases, naming each file.
fn refuse_to_mix_runs(config: &Config) -> Result<(), RunError> {
    let auto = match config.train.resume_from {
        ResumeFrom::Fresh => false,
        ResumeFrom::Auto => true,
        ResumeFrom::Latest | ResumeFrom::Path(_) => return Ok(()),
    };
    let dir = std::path::Path::new(&config.log.checkpoint_dir);
    if !dir.is_dir() {
        return Ok(());
    }
    let listing = list_checkpoints(dir)?;
    let mut files: Vec<(PathBuf, String)> = listing
        .skipped
        .iter()
        .map(|(p, e)| (p.clone(), e.to_string()))
        .collect();
    if auto {
        files.extend(
            listing
                .checkpoints
                .iter()
                .filter(|c| c.kind != CheckpointKind::Nonfinite)
                .map(|c| {
                    (
                        c.path.clone(),
                        "its header reads but the file does not verify (see the warnings)".into(),
                    )
                }),
        );
    } else if let Some(step) = listing.checkpoints.iter().map(|c| c.step).max() {
        if files.is_empty() {
            return Err(RunError::Occupied {
                dir: dir.to_path_buf(),
                step,
            });
        }
        files.extend(listing.checkpoints.iter().map(|c| {
            (
                c.path.clone(),
                format!("a checkpoint of a run (step {})", c.step),
            )
        }));
    }
    if files.is_empty() {
        Ok(())
    } else {
        Err(RunError::Unusable {
            dir: dir.to_path_buf(),
            files,
        })
    }
}
