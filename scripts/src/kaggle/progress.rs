//! Reading a run's log: the stored JSON-array log and the server-sent-event stream. The
//! training progress lines in it are read with the core crate's one tolerant parser
//! (re-exported here), the same code that reads them everywhere else.

use serde::Deserialize;

pub use emergence_lab_core::progress::{last_progress, parse_progress_line, ProgressRecord};

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
pub fn describe(p: &ProgressRecord) -> String {
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
