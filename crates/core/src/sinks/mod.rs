//! Metrics sinks: a JSON Lines file (one object per iteration) and TensorBoard event files,
//! both step-keyed and both continuing at the right step after a resume.
//!
//! Resume rule for both: everything up to the checkpoint's step is kept, anything written
//! after it (a crash between the last checkpoint and the end) is dropped, then new
//! iterations are appended, so no iteration is duplicated or missing.

mod jsonl;
pub mod tensorboard;
pub mod tfrecord;

use std::path::{Path, PathBuf};

pub use jsonl::{metrics_to_json_line, parse_metrics_line, read_metrics_jsonl, MetricsJsonl};
use tensorboard::TensorBoardWriter;

use crate::config::LogConfig;
use crate::metrics::Metrics;

/// Errors of the sinks: file system problems and unreadable files, each naming the path.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An I/O operation on `path` failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A metrics file line is not a metrics object.
    #[error("{path} line {line}: {reason}; fix or delete that line (each line must be a JSON object with integer \"step\" and \"iteration\")")]
    BadLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// A metric was appended at a step not after the previous one.
    #[error("metrics for step {step} appended after step {last} in {path}; steps must increase (is another run writing the same file?)")]
    StepOrder { path: PathBuf, step: u64, last: u64 },
    /// An event file is not valid TFRecord / Event data.
    #[error("{path}: {reason}")]
    BadEventFile { path: PathBuf, reason: String },
}

impl SinkError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        SinkError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The sinks a run writes to, as configured by `log.metrics_path` and
/// `log.tensorboard_dir` (an empty string disables either).
#[derive(Debug)]
pub struct Sinks {
    /// The JSON Lines file, if enabled.
    pub jsonl: Option<MetricsJsonl>,
    /// The TensorBoard writer, if enabled.
    pub tensorboard: Option<TensorBoardWriter>,
}

impl Sinks {
    /// Opens the configured sinks; `resume_step` is the checkpoint's step when resuming,
    /// `history` the checkpoint's metrics history (used to fill iterations the JSONL file
    /// lacks) and `run_id` the run's identity: files of another run are moved aside, never
    /// truncated (`None`: unknown, files are treated as this run's own).
    pub fn open(
        log: &LogConfig,
        resume_step: Option<u64>,
        history: &[Metrics],
        run_id: Option<&str>,
    ) -> Result<Self, SinkError> {
        let jsonl = if log.metrics_path.is_empty() {
            None
        } else {
            Some(MetricsJsonl::open_for_run(
                &log.metrics_path,
                resume_step,
                history,
                run_id,
            )?)
        };
        let tensorboard = if log.tensorboard_dir.is_empty() {
            None
        } else {
            Some(TensorBoardWriter::open_for_run(
                &log.tensorboard_dir,
                resume_step,
                run_id,
            )?)
        };
        Ok(Self { jsonl, tensorboard })
    }

    /// Writes one iteration's metrics to every sink.
    pub fn write(&mut self, m: &Metrics) -> Result<(), SinkError> {
        if let Some(j) = &mut self.jsonl {
            j.append(m)?;
        }
        if let Some(t) = &mut self.tensorboard {
            t.write(m)?;
        }
        Ok(())
    }

    /// Notes about what opening did (files moved aside, torn lines dropped, ...), for the
    /// reporter.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if let Some(j) = &self.jsonl {
            w.extend(j.warnings.iter().cloned());
        }
        if let Some(t) = &self.tensorboard {
            w.extend(t.warnings.iter().cloned());
        }
        w
    }

    /// The files written, for the end-of-run summary.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut f = Vec::new();
        if let Some(j) = &self.jsonl {
            f.push(j.path().to_path_buf());
        }
        if let Some(t) = &self.tensorboard {
            f.push(t.path().to_path_buf());
        }
        f
    }

    /// Forces written data to disk (call before saving a checkpoint).
    pub fn sync(&mut self) -> Result<(), SinkError> {
        if let Some(j) = &mut self.jsonl {
            j.sync()?;
        }
        if let Some(t) = &mut self.tensorboard {
            t.sync()?;
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, then
/// renamed over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SinkError> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(|e| SinkError::io("create", &tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| SinkError::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| SinkError::io("sync", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path)
        .map_err(|e| SinkError::io("rename temporary file onto", path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Best effort: make the rename durable (not supported on every platform).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
