//! Where a report's data comes from: the metrics JSONL file, a checkpoint's metrics history
//! and tracker state, or both merged by step.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::ReportError;
use crate::metrics::Metrics;
use crate::sinks::read_metrics_jsonl;
use crate::trackers::{TrackerEvent, Trackers};

/// Everything a report draws.
#[derive(Debug, Clone, Default)]
pub struct RunData {
    /// Per-iteration metrics ordered by step, tracker measurements merged in under
    /// `emergence/...` and `specialization/...`.
    pub metrics: Vec<Metrics>,
    /// Tracker events, ordered by step.
    pub events: Vec<TrackerEvent>,
    /// The trackers, when a checkpoint was read.
    pub trackers: Option<Trackers>,
}

/// Loads a run from a metrics JSONL file and/or a checkpoint. With both, the file's lines
/// win and the checkpoint adds iterations the file lacks plus the tracker history/events.
pub fn load_run(
    metrics_jsonl: Option<&Path>,
    checkpoint: Option<&Path>,
) -> Result<RunData, ReportError> {
    if metrics_jsonl.is_none() && checkpoint.is_none() {
        return Err(ReportError::Empty(
            "give a metrics file (--metrics runs/metrics.jsonl) or a checkpoint (--checkpoint PATH)"
                .into(),
        ));
    }
    let mut by_step: BTreeMap<u64, Metrics> = BTreeMap::new();
    if let Some(path) = metrics_jsonl {
        for m in read_metrics_jsonl(path)? {
            by_step.entry(m.step).or_insert(m);
        }
    }
    let mut trackers = None;
    if let Some(path) = checkpoint {
        let (history, t) = load_checkpoint_history(path)?;
        for m in history {
            by_step.entry(m.step).or_insert(m);
        }
        trackers = t;
    }
    let mut events = Vec::new();
    if let Some(t) = &trackers {
        for (step, name, value) in t.metric_points() {
            by_step
                .entry(step)
                .or_insert_with(|| Metrics::new(step, 0))
                .values
                .entry(name.to_string())
                .or_insert(value);
        }
        events = t.events();
    }
    Ok(RunData {
        metrics: by_step.into_values().collect(),
        events,
        trackers,
    })
}

/// The metrics history and trackers stored in a checkpoint's safetensors header
/// (`__metadata__` keys `metrics` and `trackers`), without reading its tensors.
pub fn load_checkpoint_history(
    path: &Path,
) -> Result<(Vec<Metrics>, Option<Trackers>), ReportError> {
    let bad = |reason: String| ReportError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let mut f = std::fs::File::open(path).map_err(|source| ReportError::Io {
        action: "open checkpoint",
        path: path.to_path_buf(),
        source,
    })?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|e| bad(format!("too short for a safetensors file ({e})")))?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        return Err(bad(format!(
            "header length {len} is not plausible; not a safetensors checkpoint"
        )));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header)
        .map_err(|e| bad(format!("truncated header ({e}); the file is incomplete")))?;
    let header: Value = serde_json::from_slice(&header).map_err(|e| {
        bad(format!(
            "header is not JSON ({e}); not a safetensors checkpoint"
        ))
    })?;
    let meta = header.get("__metadata__").ok_or_else(|| {
        bad("no __metadata__ in the header; not an emergence-lab checkpoint".into())
    })?;
    let metrics = match meta.get("metrics").and_then(Value::as_str) {
        Some(json) => parse_metrics_history(json).map_err(bad)?,
        None => Vec::new(),
    };
    let trackers = match meta.get("trackers").and_then(Value::as_str) {
        Some(json) if !json.trim().is_empty() => {
            Some(Trackers::from_json(json).map_err(|e| bad(format!("trackers entry: {e}")))?)
        }
        _ => None,
    };
    Ok((metrics, trackers))
}

/// Parses a JSON array of `Metrics` (`{"step","iteration","values":{..}}`), reading `null`
/// values as NaN.
fn parse_metrics_history(json: &str) -> Result<Vec<Metrics>, String> {
    let v: Value =
        serde_json::from_str(json).map_err(|e| format!("metrics entry is not JSON ({e})"))?;
    let arr = v.as_array().ok_or("metrics entry is not a JSON array")?;
    let mut out = Vec::with_capacity(arr.len());
    for (i, item) in arr.iter().enumerate() {
        let int = |k: &str| {
            item.get(k)
                .and_then(Value::as_u64)
                .ok_or(format!("metrics entry {i}: missing integer \"{k}\""))
        };
        let mut m = Metrics::new(int("step")?, int("iteration")?);
        if let Some(values) = item.get("values").and_then(Value::as_object) {
            for (k, v) in values {
                match v {
                    Value::Number(n) => m.set(k, n.as_f64().unwrap_or(f64::NAN)),
                    Value::Null => m.set(k, f64::NAN),
                    _ => {}
                }
            }
        }
        out.push(m);
    }
    Ok(out)
}
