//! Reading a run's log: the stored JSON-array log, the server-sent-event stream, and the
//! training progress lines `progress step=.. total=.. iter=.. reward=.. pop=.. sps=.. eta_s=..`.
//! Parsing is tolerant: unknown keys, any key order and unparsable entries are skipped.

use serde::Deserialize;
use std::collections::BTreeMap;

/// One training progress report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Progress {
    /// Environment steps done.
    pub step: u64,
    /// Steps planned.
    pub total: Option<u64>,
    /// PPO iteration.
    pub iter: Option<u64>,
    /// Mean reward.
    pub reward: Option<f64>,
    /// Mean population.
    pub pop: Option<f64>,
    /// Steps per second.
    pub sps: Option<f64>,
    /// Estimated seconds left.
    pub eta_s: Option<f64>,
    /// Other `key=value` pairs on the line.
    pub extra: BTreeMap<String, String>,
}

fn int(v: &str) -> Option<u64> {
    v.parse::<u64>().ok().or_else(|| {
        v.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f as u64)
    })
}

/// Parse a `progress key=value ...` line (the word `progress` may follow a prefix such as a
/// timestamp). `None` when the line is not a progress line or has no valid `step`.
pub fn parse_progress_line(line: &str) -> Option<Progress> {
    let mut tokens = line.split_whitespace();
    tokens.by_ref().find(|t| *t == "progress")?;
    let mut p = Progress::default();
    let mut step = None;
    for t in tokens {
        let Some((k, v)) = t.split_once('=') else {
            continue;
        };
        let f = v.parse::<f64>().ok().filter(|f| f.is_finite());
        match k {
            "step" => step = int(v),
            "total" => p.total = int(v),
            "iter" => p.iter = int(v),
            "reward" => p.reward = f,
            "pop" => p.pop = f,
            "sps" => p.sps = f,
            "eta_s" => p.eta_s = f,
            _ => {
                p.extra.insert(k.to_string(), v.to_string());
            }
        }
    }
    p.step = step?;
    Some(p)
}

/// The last progress line in a block of text.
pub fn last_progress(text: &str) -> Option<Progress> {
    text.lines().rev().find_map(parse_progress_line)
}

/// One entry of Kaggle's log (`{"stream_name", "time", "data"}`).
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct LogEntry {
    /// `stdout` or `stderr`.
    pub stream_name: String,
    /// Seconds since the session started.
    pub time: f64,
    /// Text (may hold several lines or a partial one).
    pub data: String,
}

/// Parse a stored log (JSON array of entries); entries that do not parse are skipped.
/// Text that is not a JSON array is returned as a single stdout entry.
pub fn parse_log_json(text: &str) -> Vec<LogEntry> {
    match serde_json::from_str::<Vec<serde_json::Value>>(text) {
        Ok(items) => items
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect(),
        Err(_) if text.trim().is_empty() => vec![],
        Err(_) => vec![LogEntry {
            stream_name: "stdout".into(),
            time: 0.0,
            data: text.to_string(),
        }],
    }
}

/// The entries' text concatenated (what the notebook printed).
pub fn log_text(entries: &[LogEntry]) -> String {
    entries.iter().map(|e| e.data.as_str()).collect()
}

/// One event of the log stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A log entry.
    Entry(LogEntry),
    /// `data: END_OF_LOG`: the run finished.
    End,
}

/// Longest stream line kept while waiting for its end; a longer one is dropped (a server
/// cannot make the helper buffer without bound).
pub const MAX_STREAM_LINE_BYTES: usize = 1024 * 1024;

/// Incremental parser for the `text/event-stream` log.
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
}

impl SseParser {
    /// Feed bytes; returns the complete events found.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<StreamEvent> {
        self.pending.extend_from_slice(bytes);
        let mut out = vec![];
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let data = data.trim_start();
            if data == "END_OF_LOG" {
                out.push(StreamEvent::End);
            } else if let Ok(e) = serde_json::from_str::<LogEntry>(data) {
                out.push(StreamEvent::Entry(e));
            }
        }
        if self.pending.len() > MAX_STREAM_LINE_BYTES {
            self.pending.clear();
        }
        out
    }
}

/// Accumulates streamed text and yields complete lines, so progress lines split across
/// entries are still recognised.
#[derive(Debug, Default)]
pub struct LineBuffer {
    partial: String,
}

impl LineBuffer {
    /// Add text; returns the lines completed by it.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        self.partial.push_str(text);
        let mut lines = vec![];
        while let Some(pos) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=pos).collect();
            lines.push(line.trim_end_matches(['\n', '\r']).to_string());
        }
        if self.partial.len() > MAX_STREAM_LINE_BYTES {
            self.partial.clear();
        }
        lines
    }
}

/// Format seconds as `1h02m`, `3m05s` or `42s`.
pub fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// One plain status line: `step 123/1000 (12.3%) reward=1.25 pop=7.5 sps=1234 eta=42s`.
pub fn describe(p: &Progress) -> String {
    let mut s = match p.total {
        Some(t) if t > 0 => format!(
            "step {}/{} ({:.1}%)",
            p.step,
            t,
            100.0 * p.step as f64 / t as f64
        ),
        _ => format!("step {}", p.step),
    };
    if let Some(r) = p.reward {
        s.push_str(&format!(" reward={r:.3}"));
    }
    if let Some(v) = p.pop {
        s.push_str(&format!(" pop={v:.1}"));
    }
    if let Some(v) = p.sps {
        s.push_str(&format!(" sps={v:.0}"));
    }
    if let Some(v) = p.eta_s {
        s.push_str(&format!(" eta={}", human_duration(v)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_canonical_line() {
        let p = parse_progress_line(
            "progress step=123 total=1000 iter=3 reward=1.25 pop=7.5 sps=1234 eta_s=42",
        )
        .unwrap();
        assert_eq!(p.step, 123);
        assert_eq!(p.total, Some(1000));
        assert_eq!(p.iter, Some(3));
        assert_eq!(p.reward, Some(1.25));
        assert_eq!(p.pop, Some(7.5));
        assert_eq!(p.sps, Some(1234.0));
        assert_eq!(p.eta_s, Some(42.0));
    }

    #[test]
    fn tolerant_of_order_extra_keys_and_prefix() {
        let p = parse_progress_line(
            "[12:00:01] progress foo=bar eta_s=5 step=9 births=3 total=10 reward=nan",
        )
        .unwrap();
        assert_eq!(p.step, 9);
        assert_eq!(p.total, Some(10));
        assert_eq!(p.reward, None);
        assert_eq!(p.extra.get("births").map(String::as_str), Some("3"));
        assert!(parse_progress_line("progress total=10").is_none());
        assert!(parse_progress_line("no progress here=1").is_none());
        assert!(parse_progress_line("progressive step=1").is_none());
    }

    #[test]
    fn stored_log_and_last_progress() {
        let log = r#"[{"stream_name":"stdout","time":1.0,"data":"progress step=1 total=4\n"},
                      {"stream_name":"stderr","time":2.0,"data":"warn\n"}, 5,
                      {"stream_name":"stdout","time":3.0,"data":"progress step=2 total=4\nbye\n"}]"#;
        let entries = parse_log_json(log);
        assert_eq!(entries.len(), 3);
        let text = log_text(&entries);
        assert_eq!(last_progress(&text).unwrap().step, 2);
        assert_eq!(parse_log_json("plain text").len(), 1);
    }

    #[test]
    fn sse_stream_in_pieces() {
        let mut p = SseParser::default();
        let mut ev = p.feed(b"data: {\"stream_name\":\"stdout\",\"time\":1,\"da");
        assert!(ev.is_empty());
        ev.extend(p.feed(b"ta\":\"progress step=5\\n\"}\n\n: ping\ndata: END_OF_LOG\n"));
        assert_eq!(ev.len(), 2);
        assert!(matches!(&ev[0], StreamEvent::Entry(e) if e.data == "progress step=5\n"));
        assert_eq!(ev[1], StreamEvent::End);
    }

    #[test]
    fn line_buffer_joins_split_lines() {
        let mut b = LineBuffer::default();
        assert!(b.push("progress st").is_empty());
        assert_eq!(b.push("ep=3\nnext"), vec!["progress step=3".to_string()]);
    }

    #[test]
    fn describe_formats() {
        let p = parse_progress_line("progress step=250 total=1000 reward=1.5 pop=7 eta_s=3725")
            .unwrap();
        assert_eq!(
            describe(&p),
            "step 250/1000 (25.0%) reward=1.500 pop=7.0 eta=1h02m"
        );
    }
}
