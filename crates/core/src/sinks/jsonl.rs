//! The metrics JSON Lines file: one flat object per iteration,
//! `{"step":131072,"iteration":1,"losses/policy_loss":-0.01,...}`, appended and flushed as
//! each iteration ends; non-finite values are written as `null` and read back as NaN.
//!
//! The first record of a run's file also carries `"run_id"` (the run's identity, also in
//! its checkpoints; readers skip non-numeric values). On resume a file whose first record
//! names another run is moved aside, never truncated; a file without a run id (written
//! before run ids existed) is treated as the resuming run's own, as before.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::Value;

use super::{unix_now, write_atomic, SinkError};
use crate::metrics::Metrics;

/// Appends one line per iteration to a metrics file; see [`MetricsJsonl::open`].
#[derive(Debug)]
pub struct MetricsJsonl {
    path: PathBuf,
    file: File,
    last_step: Option<u64>,
    /// Stamped into the first record written to an empty file.
    run_id: Option<String>,
    /// What opening had to do besides appending (moved files, dropped lines).
    pub warnings: Vec<String>,
}

/// One metrics object as a single JSON line (no newline): `step`, `iteration`, then the
/// values in order; non-finite values become `null`.
pub fn metrics_to_json_line(m: &Metrics) -> String {
    let mut s = format!("{{\"step\":{},\"iteration\":{}", m.step, m.iteration);
    for (k, v) in &m.values {
        let key = serde_json::to_string(k).unwrap_or_else(|_| "\"?\"".into());
        let val = if v.is_finite() {
            serde_json::to_string(v).unwrap_or("null".into())
        } else {
            "null".into()
        };
        s.push(',');
        s.push_str(&key);
        s.push(':');
        s.push_str(&val);
    }
    s.push('}');
    s
}

/// Parses one line of a metrics file; `null` values read as NaN, non-numeric values are
/// skipped.
pub fn parse_metrics_line(line: &str) -> Result<Metrics, String> {
    let map: IndexMap<String, Value> =
        serde_json::from_str(line).map_err(|e| format!("not a JSON object ({e})"))?;
    let int = |k: &str| -> Result<u64, String> {
        map.get(k)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("missing or non-integer \"{k}\""))
    };
    let mut m = Metrics::new(int("step")?, int("iteration")?);
    for (k, v) in &map {
        if k == "step" || k == "iteration" {
            continue;
        }
        match v {
            Value::Number(n) => m.set(k, n.as_f64().unwrap_or(f64::NAN)),
            Value::Null => m.set(k, f64::NAN),
            _ => {}
        }
    }
    Ok(m)
}

/// Reads a metrics file. A torn last line (a crash mid-write) is ignored; any other bad
/// line is an error naming the line.
pub fn read_metrics_jsonl(path: impl AsRef<Path>) -> Result<Vec<Metrics>, SinkError> {
    let path = path.as_ref();
    let text =
        std::fs::read_to_string(path).map_err(|e| SinkError::io("read metrics file", path, e))?;
    let (lines, _torn) = split_lines(&text);
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines {
        let m = parse_metrics_line(line).map_err(|reason| SinkError::BadLine {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        })?;
        out.push(m);
    }
    Ok(out)
}

/// Non-empty complete lines with their 0-based numbers, and the torn tail (a last line
/// without newline that does not parse), if any.
fn split_lines(text: &str) -> (Vec<(usize, &str)>, Option<&str>) {
    let mut lines: Vec<(usize, &str)> = text
        .split('\n')
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let mut torn = None;
    if !text.ends_with('\n') {
        if let Some(&(_, last)) = lines.last() {
            if parse_metrics_line(last).is_err() {
                torn = Some(last);
                lines.pop();
            }
        }
    }
    (lines, torn)
}

impl MetricsJsonl {
    /// Opens `path` for a run.
    ///
    /// * `resume_step = None` (fresh run): an existing non-empty file is moved aside to
    ///   `<name>.<unix-time>.prev` (never deleted) and a new file is started.
    /// * `resume_step = Some(s)`: lines with `step <= s` are kept, later ones (written after
    ///   the checkpoint by a run that then crashed) and a torn last line are dropped, the
    ///   file is rewritten atomically if anything changed, and new lines are appended.
    pub fn open(path: impl AsRef<Path>, resume_step: Option<u64>) -> Result<Self, SinkError> {
        Self::open_with_history(path, resume_step, &[])
    }

    /// Like [`MetricsJsonl::open`], and on resume also restores iterations up to the
    /// resume step that the file lacks (lost or deleted) from `history` (the checkpoint's
    /// metrics history), keeping the file ordered by step.
    pub fn open_with_history(
        path: impl AsRef<Path>,
        resume_step: Option<u64>,
        history: &[Metrics],
    ) -> Result<Self, SinkError> {
        Self::open_for_run(path, resume_step, history, None)
    }

    /// Like [`MetricsJsonl::open_with_history`] for the run `run_id`: its id goes into the
    /// file's first record, and on resume a file whose first record names another run is
    /// moved aside to `<name>.other-run-<id>.<unix-time>` (with a warning) instead of being
    /// truncated; its iterations up to the resume step are restored from `history`.
    pub fn open_for_run(
        path: impl AsRef<Path>,
        resume_step: Option<u64>,
        history: &[Metrics],
        run_id: Option<&str>,
    ) -> Result<Self, SinkError> {
        let path = path.as_ref().to_path_buf();
        let run_id = run_id.map(str::to_string);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| SinkError::io("create folder", dir, e))?;
        }
        let mut warnings = Vec::new();
        if std::fs::metadata(&path).is_ok_and(|m| !m.is_file()) {
            // A device or pipe (`/dev/null`, a FIFO): a write-only target, never read, moved
            // or rewritten (reading `/dev/zero`-like devices would never end).
            let file = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| SinkError::io("open metrics target for writing", &path, e))?;
            return Ok(Self {
                path,
                file,
                last_step: None,
                run_id,
                warnings,
            });
        }
        let existing = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(SinkError::io("read metrics file", &path, e)),
        };
        let mut last_step = None;
        match resume_step {
            None => {
                if existing.as_deref().is_some_and(|t| !t.trim().is_empty()) {
                    let aside = sibling(&path, &format!("{}.prev", unix_now() as u64));
                    std::fs::rename(&path, &aside)
                        .map_err(|e| SinkError::io("move old metrics file aside", &path, e))?;
                    warnings.push(format!(
                        "fresh run: moved the existing metrics file to {}",
                        aside.display()
                    ));
                }
                File::create(&path).map_err(|e| SinkError::io("create metrics file", &path, e))?;
            }
            Some(s) => {
                let mut text = existing.unwrap_or_default();
                let theirs = first_run_id(&text);
                if let (Some(ours), Some(theirs)) = (&run_id, &theirs) {
                    if ours != theirs {
                        let aside =
                            sibling(&path, &format!("other-run-{theirs}.{}", unix_now() as u64));
                        std::fs::rename(&path, &aside).map_err(|e| {
                            SinkError::io("move another run's metrics file aside", &path, e)
                        })?;
                        warnings.push(format!(
                            "{} belongs to another run (run id {theirs}, this run is {ours}): \
                             moved it to {} untouched and started this run's file",
                            path.display(),
                            aside.display()
                        ));
                        text.clear();
                    }
                }
                let (mut kept, last) = resume_lines(&path, &text, s, history, &mut warnings)?;
                if let Some(id) = &run_id {
                    kept = stamp_first_line(&kept, id);
                }
                last_step = last;
                if kept != text {
                    write_atomic(&path, kept.as_bytes())?;
                }
            }
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| SinkError::io("open metrics file for appending", &path, e))?;
        Ok(Self {
            path,
            file,
            last_step,
            run_id,
            warnings,
        })
    }

    /// Appends one iteration (one line, written in one call and flushed).
    pub fn append(&mut self, m: &Metrics) -> Result<(), SinkError> {
        if let Some(last) = self.last_step {
            if m.step <= last {
                return Err(SinkError::StepOrder {
                    path: self.path.clone(),
                    step: m.step,
                    last,
                });
            }
        }
        let mut line = metrics_to_json_line(m);
        if let (None, Some(id)) = (self.last_step, &self.run_id) {
            if self
                .file
                .metadata()
                .is_ok_and(|md| md.is_file() && md.len() == 0)
            {
                line = stamp_first_line(&line, id).trim_end().to_string();
            }
        }
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| SinkError::io("append to metrics file", &self.path, e))?;
        self.last_step = Some(m.step);
        Ok(())
    }

    /// Forces the file's data to disk.
    pub fn sync(&mut self) -> Result<(), SinkError> {
        self.file
            .sync_data()
            .map_err(|e| SinkError::io("sync metrics file", &self.path, e))
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Step of the last line in the file, if any.
    pub fn last_step(&self) -> Option<u64> {
        self.last_step
    }
}

/// The `run_id` of the first complete record of a metrics file, if it has one.
pub fn first_run_id(text: &str) -> Option<String> {
    let first = text.lines().find(|l| !l.trim().is_empty())?;
    let map: IndexMap<String, Value> = serde_json::from_str(first).ok()?;
    map.get("run_id")?.as_str().map(str::to_string)
}

/// `text` with `"run_id": id` in its first line (after `step` and `iteration`), replacing
/// any id there; other lines untouched.
fn stamp_first_line(text: &str, id: &str) -> String {
    let (first, rest) = match text.find('\n') {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, ""),
    };
    let Ok(mut map) = serde_json::from_str::<IndexMap<String, Value>>(first) else {
        return text.to_string();
    };
    map.shift_remove("run_id");
    let at = map.len().min(2);
    map.shift_insert(at, "run_id".into(), Value::String(id.into()));
    match serde_json::to_string(&map) {
        Ok(line) => line + rest,
        Err(_) => text.to_string(),
    }
}

/// `dir/name.suffix` next to `path`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// The file content to keep when resuming at `step`, and its last step.
fn resume_lines(
    path: &Path,
    text: &str,
    step: u64,
    history: &[Metrics],
    warnings: &mut Vec<String>,
) -> Result<(String, Option<u64>), SinkError> {
    let (lines, torn) = split_lines(text);
    if torn.is_some() {
        warnings.push(format!(
            "{}: dropped a torn last line (interrupted write)",
            path.display()
        ));
    }
    let mut rows: Vec<(u64, String)> = Vec::with_capacity(lines.len());
    let (mut dropped_later, mut bad) = (0usize, 0usize);
    for (_, line) in lines {
        match parse_metrics_line(line) {
            Ok(m) if m.step <= step => rows.push((m.step, line.trim().to_string())),
            Ok(_) => dropped_later += 1,
            Err(_) => bad += 1,
        }
    }
    if bad > 0 {
        // Keep the original: nothing is ever lost, only set aside.
        let aside = sibling(path, &format!("{}.corrupt", unix_now() as u64));
        std::fs::write(&aside, text)
            .map_err(|e| SinkError::io("save copy of metrics file", &aside, e))?;
        warnings.push(format!(
            "{}: {bad} unreadable line(s) dropped; the original file was saved as {}",
            path.display(),
            aside.display()
        ));
    }
    if dropped_later > 0 {
        warnings.push(format!(
            "{}: dropped {dropped_later} iteration(s) after the checkpoint's step {step}",
            path.display()
        ));
    }
    let have: std::collections::HashSet<u64> = rows.iter().map(|r| r.0).collect();
    let mut restored = 0usize;
    for m in history
        .iter()
        .filter(|m| m.step <= step && !have.contains(&m.step))
    {
        rows.push((m.step, metrics_to_json_line(m)));
        restored += 1;
    }
    if restored > 0 {
        warnings.push(format!(
            "{}: restored {restored} iteration(s) from the checkpoint's metrics history",
            path.display()
        ));
    }
    rows.sort_by_key(|r| r.0); // stable: the file's own line wins on equal steps
    rows.dedup_by_key(|r| r.0);
    let last = rows.last().map(|r| r.0);
    let mut out = String::with_capacity(text.len());
    for (_, line) in rows {
        out.push_str(&line);
        out.push('\n');
    }
    Ok((out, last))
}
