//! Human-readable report of one checkpoint file: counters, config summary, tensors, and
//! whether it verifies; used by the `checkpoint` command and from notebook cells.
//!
//! A report is produced for broken files too (as far as they can be read), with the
//! failed check in `problem`.

use std::fmt;
use std::path::{Path, PathBuf};

use super::error::{CheckpointError, Result};
use super::format::{CheckpointKind, DType};
use super::header::Header;
use super::reader::{read_header, verify_checkpoint};
use crate::config::Config;

/// One tensor of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSummary {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub bytes: u64,
}

/// What [`inspect`] found.
#[derive(Debug, Clone)]
pub struct CheckpointReport {
    pub path: PathBuf,
    /// Where a symlink (`latest`) leads, if `path` is one.
    pub link_target: Option<PathBuf>,
    pub size_bytes: u64,
    pub step: Option<u64>,
    pub iteration: Option<u64>,
    pub kind: Option<CheckpointKind>,
    pub created_unix: Option<u64>,
    /// One-line summary of the stored config (or why it does not parse).
    pub config_summary: Option<String>,
    /// Number of entries in the metrics history, if it parses.
    pub metrics_entries: Option<usize>,
    pub tensors: Vec<TensorSummary>,
    /// `None` when the file verifies; otherwise the failed check.
    pub problem: Option<String>,
}

impl CheckpointReport {
    /// Whether the file fully verifies (header, offsets, CRC).
    pub fn verified(&self) -> bool {
        self.problem.is_none()
    }
}

/// A one-line summary of a config JSON.
pub(crate) fn config_summary(config_json: &str) -> String {
    match serde_json::from_str::<Config>(config_json) {
        Ok(c) => format!(
            "envs={} steps/rollout={} slots={} grid={} agents={} food={} hidden={:?} evolution={} \
             total_steps={} steps/iteration={} seed={} save_interval={}",
            c.train.num_envs,
            c.train.num_steps,
            c.evolution.max_agents,
            c.env.grid_size,
            c.env.num_agents,
            c.env.num_food,
            c.agent.hidden_dims,
            if c.evolution.enabled { "on" } else { "off" },
            c.train.total_steps,
            c.steps_per_iteration(),
            c.train.seed,
            c.log.save_interval,
        ),
        Err(e) => format!("(config does not parse with this build: {e})"),
    }
}

fn fill_from_header(r: &mut CheckpointReport, h: &Header) {
    r.step = Some(h.meta.step);
    r.iteration = Some(h.meta.iteration);
    r.kind = Some(h.meta.kind);
    r.created_unix = Some(h.meta.created_unix);
    r.config_summary = Some(config_summary(&h.meta.config_json));
    r.metrics_entries = serde_json::from_str::<Vec<serde_json::Value>>(&h.meta.metrics_json)
        .ok()
        .map(|v| v.len());
    r.tensors = h
        .tensors
        .iter()
        .map(|t| TensorSummary {
            name: t.name.clone(),
            dtype: t.dtype,
            shape: t.shape.clone(),
            bytes: t.end - t.begin,
        })
        .collect();
}

/// Reads and verifies `path` and describes it. `Err` only when the file cannot be opened;
/// a corrupt file gives `Ok` with `problem` set.
pub fn inspect(path: &Path) -> Result<CheckpointReport> {
    let md = std::fs::metadata(path).map_err(|e| CheckpointError::io(path, "open", e))?;
    let mut r = CheckpointReport {
        path: path.to_path_buf(),
        link_target: std::fs::read_link(path).ok(),
        size_bytes: md.len(),
        step: None,
        iteration: None,
        kind: None,
        created_unix: None,
        config_summary: None,
        metrics_entries: None,
        tensors: Vec::new(),
        problem: None,
    };
    match read_header(path) {
        Ok(h) => fill_from_header(&mut r, &h),
        Err(e @ CheckpointError::Io { .. }) => return Err(e),
        Err(e) => {
            r.problem = Some(e.to_string());
            return Ok(r);
        }
    }
    if let Err(e) = verify_checkpoint(path) {
        r.problem = Some(e.to_string());
    }
    Ok(r)
}

fn human_bytes(b: u64) -> String {
    crate::config::format_bytes(b as u128)
}

impl fmt::Display for CheckpointReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "checkpoint {}", self.path.display())?;
        if let Some(t) = &self.link_target {
            write!(f, " -> {}", t.display())?;
        }
        writeln!(f)?;
        let opt = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
        writeln!(
            f,
            "  step {}  iteration {}",
            opt(self.step),
            opt(self.iteration)
        )?;
        if let Some(k) = self.kind {
            writeln!(f, "  kind {}", super::header::kind_name(k))?;
        }
        if let Some(c) = self.created_unix {
            writeln!(f, "  created_unix {c}")?;
        }
        if let Some(s) = &self.config_summary {
            writeln!(f, "  config: {s}")?;
        }
        if let Some(n) = self.metrics_entries {
            writeln!(f, "  metrics history: {n} entries")?;
        }
        writeln!(f, "  tensors: {}", self.tensors.len())?;
        for t in &self.tensors {
            writeln!(
                f,
                "    {:<48} {:>4} {:<18} {:>12}",
                t.name,
                super::header::dtype_name(t.dtype),
                format!("{:?}", t.shape),
                human_bytes(t.bytes)
            )?;
        }
        writeln!(
            f,
            "  total size: {} ({} bytes)",
            human_bytes(self.size_bytes),
            self.size_bytes
        )?;
        match &self.problem {
            None => write!(f, "  verifies: yes (header, offsets, CRC-32C)"),
            Some(p) => write!(f, "  verifies: NO: {p}"),
        }
    }
}
