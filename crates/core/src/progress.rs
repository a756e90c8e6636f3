//! The reporter: the one place through which the library's progress, events and messages
//! reach the user, as an indicatif bar on a terminal or as plain, parseable lines elsewhere.
//!
//! # Line format (stable; the Kaggle status helper and tests parse it)
//!
//! In `Lines` mode (and `Auto` when stderr is not a terminal, e.g. notebook cells, Kaggle
//! logs, files) every call writes exactly one line, flushed at once:
//!
//! ```text
//! start step=0 total=10000000
//! progress step=131072 total=10000000 iter=1 reward=0.012500 pop=7.8125 sps=65536.0 eta_s=150.6
//! event kind=emergence step=1310720 metric=entropy value=5.123457 z=3.412
//! warning: <text>
//! done: <text>
//! ```
//!
//! * `progress`: `step`, `total`, `iter` are unsigned integers; `reward` has 6 decimals,
//!   `pop` 4, `sps` and `eta_s` 1 (seconds). Non-finite numbers print as `NaN`, `inf` or
//!   `-inf` (Rust's `Display`), which [`parse_progress_line`] reads back (and
//!   [`Progress::from_line`], strictly).
//! * `event`: `kind` is `emergence` or `specialization`, `metric` the tracker value that
//!   jumped, `value` has 6 decimals, `z` (the z-score) 3. Free-text events are written as
//!   `event text=<text with spaces replaced by '_'>`.
//! * Every token after the first word is `key=value`; values never contain spaces. New
//!   keys may be appended in later versions, so parsers must ignore unknown keys.
//! * `start`: the step the run starts at (non-zero after a resume) and the run's total.
//! * `info` text is written as is; `warn` adds `warning: `; `finish` adds `done: `.
//!
//! Write errors (a closed pipe, a full disk) are ignored: reporting must never stop a run.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::trackers::TrackerEvent;

/// One progress report, usually once per `log.log_interval` steps.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Progress {
    /// Step counter now.
    pub step: u64,
    /// Steps of the whole run (`train.total_steps`).
    pub total: u64,
    /// Iterations completed.
    pub iteration: u64,
    /// Mean reward of the last iteration.
    pub mean_reward: f64,
    /// Mean alive agents per env.
    pub population: f64,
    /// Steps per second (recent).
    pub steps_per_sec: f64,
    /// Estimated seconds until `total`.
    pub eta_s: f64,
}

impl Progress {
    /// The stable `progress ...` line (no trailing newline).
    pub fn to_line(&self) -> String {
        format!(
            "progress step={} total={} iter={} reward={:.6} pop={:.4} sps={:.1} eta_s={:.1}",
            self.step,
            self.total,
            self.iteration,
            self.mean_reward,
            self.population,
            self.steps_per_sec,
            self.eta_s
        )
    }
}

impl Progress {
    /// Reads a line written by [`Progress::to_line`] back, strictly: `None` unless it is a
    /// progress line carrying every key (the tolerant [`parse_progress_line`] decides).
    pub fn from_line(line: &str) -> Option<Progress> {
        let r = parse_progress_line(line)?;
        Some(Progress {
            step: r.step,
            total: r.total?,
            iteration: r.iter?,
            mean_reward: r.reward?,
            population: r.pop?,
            steps_per_sec: r.sps?,
            eta_s: r.eta_s?,
        })
    }
}

/// A progress line as read back by a tool (the Kaggle helpers follow logs with it): every
/// key but `step` may be missing, and keys it does not know are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProgressRecord {
    /// Environment steps done.
    pub step: u64,
    /// Steps planned.
    pub total: Option<u64>,
    /// PPO iterations done.
    pub iter: Option<u64>,
    /// Mean reward (may be NaN or infinite when training diverged).
    pub reward: Option<f64>,
    /// Mean population.
    pub pop: Option<f64>,
    /// Steps per second.
    pub sps: Option<f64>,
    /// Estimated seconds left.
    pub eta_s: Option<f64>,
    /// Other `key=value` pairs on the line, by key.
    pub extra: std::collections::BTreeMap<String, String>,
}

fn parse_count(v: &str) -> Option<u64> {
    v.parse::<u64>().ok().or_else(|| {
        v.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f as u64)
    })
}

/// The one progress-line parser, tolerant: keys in any order, unknown keys kept in `extra`,
/// a malformed value read as missing, and `progress` may follow bracketed prefixes such as a
/// timestamp (`[12:00:01] progress step=...`). `None` when the line is not a progress line or
/// has no valid `step`. Non-finite numbers (`NaN`, `inf`) are read as such.
pub fn parse_progress_line(line: &str) -> Option<ProgressRecord> {
    let mut tokens = line.split_whitespace();
    let first = tokens
        .by_ref()
        .find(|t| !(t.starts_with('[') && t.ends_with(']')))?;
    if first != "progress" {
        return None;
    }
    let mut r = ProgressRecord::default();
    let mut step = None;
    for t in tokens {
        let Some((k, v)) = t.split_once('=') else {
            continue;
        };
        let f = v.parse::<f64>().ok();
        match k {
            "step" => step = parse_count(v),
            "total" => r.total = parse_count(v),
            "iter" => r.iter = parse_count(v),
            "reward" => r.reward = f,
            "pop" => r.pop = f,
            "sps" => r.sps = f,
            "eta_s" => r.eta_s = f,
            _ => {
                r.extra.insert(k.to_string(), v.to_string());
            }
        }
    }
    r.step = step?;
    Some(r)
}

/// The last progress line in a block of text.
pub fn last_progress(text: &str) -> Option<ProgressRecord> {
    text.lines().rev().find_map(parse_progress_line)
}

/// How the reporter shows things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReportMode {
    /// A bar when stderr is a terminal, plain lines on stdout otherwise.
    #[default]
    Auto,
    /// An indicatif bar on stderr; messages are printed above it.
    Bar,
    /// Plain lines on stdout (see the module doc for the format).
    Lines,
    /// Nothing at all.
    Silent,
}

/// Something that can be reported with [`Reporter::event`].
pub trait ReportEvent {
    /// The `event ...` line (no trailing newline).
    fn event_line(&self) -> String;
}

impl ReportEvent for TrackerEvent {
    fn event_line(&self) -> String {
        format!(
            "event kind={} step={} metric={} value={:.6} z={:.3}",
            self.kind.as_str(),
            self.step,
            self.metric.replace(char::is_whitespace, "_"),
            self.value,
            self.z
        )
    }
}

impl ReportEvent for str {
    fn event_line(&self) -> String {
        format!(
            "event text={}",
            self.trim().replace(char::is_whitespace, "_")
        )
    }
}

impl ReportEvent for String {
    fn event_line(&self) -> String {
        self.as_str().event_line()
    }
}

/// An in-memory writer that can be shared with a [`Reporter`] and read afterwards
/// (tests, notebook cells that want the lines as data).
#[derive(Debug, Clone, Default)]
pub struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far, as text (invalid UTF-8 replaced).
    pub fn contents(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Output {
    Bar(ProgressBar),
    Lines(Box<dyn Write + Send>),
    Silent,
}

/// Shows progress, tracker events and messages; see the module doc for the line format.
pub struct Reporter {
    out: Output,
}

impl fmt::Debug for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.out {
            Output::Bar(_) => "bar",
            Output::Lines(_) => "lines",
            Output::Silent => "silent",
        };
        f.debug_struct("Reporter").field("mode", &mode).finish()
    }
}

impl Default for Reporter {
    fn default() -> Self {
        Self::new(ReportMode::Auto)
    }
}

impl Reporter {
    /// A reporter in `mode` (`Auto` picks a bar when stderr is a terminal).
    pub fn new(mode: ReportMode) -> Self {
        let mode = match mode {
            ReportMode::Auto if std::io::stderr().is_terminal() => ReportMode::Bar,
            ReportMode::Auto => ReportMode::Lines,
            m => m,
        };
        let out = match mode {
            ReportMode::Bar => Output::Bar(new_bar()),
            ReportMode::Lines | ReportMode::Auto => Output::Lines(Box::new(std::io::stdout())),
            ReportMode::Silent => Output::Silent,
        };
        Self { out }
    }

    /// A reporter writing plain lines into `writer` (a file, a [`SharedBuffer`], ...).
    pub fn to_writer(writer: Box<dyn Write + Send>) -> Self {
        Self {
            out: Output::Lines(writer),
        }
    }

    /// A reporter that shows nothing.
    pub fn silent() -> Self {
        Self {
            out: Output::Silent,
        }
    }

    /// Whether this reporter draws a bar (rather than lines or nothing).
    pub fn is_bar(&self) -> bool {
        matches!(self.out, Output::Bar(_))
    }

    /// Begins a run at `start_step` (non-zero after a resume) of `total` steps.
    pub fn start(&mut self, start_step: u64, total: u64) {
        match &mut self.out {
            Output::Bar(bar) => {
                bar.set_length(total);
                bar.set_position(start_step.min(total));
                bar.reset_elapsed();
                bar.set_message("starting");
            }
            Output::Lines(_) => {
                self.line(&format!("start step={start_step} total={total}"));
            }
            Output::Silent => {}
        }
    }

    /// Reports progress: moves the bar, or writes one `progress ...` line.
    pub fn progress(&mut self, p: &Progress) {
        match &mut self.out {
            Output::Bar(bar) => {
                if bar.length() != Some(p.total) {
                    bar.set_length(p.total);
                }
                bar.set_position(p.step.min(p.total));
                bar.set_message(format!(
                    "{:.0} steps/s  ETA {}  reward {:.4}  pop {:.2}  iter {}",
                    p.steps_per_sec,
                    format_eta(p.eta_s),
                    p.mean_reward,
                    p.population,
                    p.iteration
                ));
            }
            Output::Lines(_) => self.line(&p.to_line()),
            Output::Silent => {}
        }
    }

    /// Reports a tracker event (or a free-text event) as one `event ...` line.
    pub fn event<E: ReportEvent + ?Sized>(&mut self, event: &E) {
        let line = event.event_line();
        self.line(&line);
    }

    /// An informational message, written as is.
    pub fn info(&mut self, msg: &str) {
        self.line(msg);
    }

    /// A warning, written as `warning: <msg>`.
    pub fn warn(&mut self, msg: &str) {
        self.line(&format!("warning: {msg}"));
    }

    /// Ends the run: finishes the bar and writes `done: <msg>`.
    pub fn finish(&mut self, msg: &str) {
        if let Output::Bar(bar) = &self.out {
            bar.finish();
        }
        self.line(&format!("done: {msg}"));
    }

    fn line(&mut self, text: &str) {
        match &mut self.out {
            Output::Bar(bar) => bar.println(text),
            Output::Lines(w) => {
                // Ignored on purpose: a broken log must not stop training.
                let _ = writeln!(w, "{text}");
                let _ = w.flush();
            }
            Output::Silent => {}
        }
    }
}

fn new_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "[{elapsed_precise}] {wide_bar:.cyan/blue} {human_pos}/{human_len} steps  {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=>-");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}

/// `1h02m`, `3m05s`, `12s`, or `?` for a non-finite or negative estimate.
fn format_eta(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".into();
    }
    let s = secs.round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_formatting() {
        assert_eq!(format_eta(12.4), "12s");
        assert_eq!(format_eta(185.0), "3m05s");
        assert_eq!(format_eta(3720.0), "1h02m");
        assert_eq!(format_eta(f64::NAN), "?");
    }
}
