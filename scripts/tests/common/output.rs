//! Test support: what must never appear in the helpers' output (every form of the test
//! credentials), and running a helper with a time limit.

use super::{Env, Run, KEY, TOKEN, USER};
use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

/// `s` with every character as a JSON `\uXXXX` escape.
pub fn json_escaped(s: &str) -> String {
    s.chars().map(|c| format!("\\u{:04x}", c as u32)).collect()
}

/// `s` with every byte percent-encoded.
pub fn pct_encoded(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

pub fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Every form of the test credentials that must never be printed: in clear, JSON-escaped,
/// URL-encoded, base64 (alone and as the Basic header's `user:key`).
pub fn secret_forms() -> Vec<String> {
    let mut v = vec![];
    for s in [KEY, TOKEN] {
        v.push(s.to_string());
        v.push(json_escaped(s));
        v.push(json_escaped(s).to_uppercase().replace("\\U", "\\u"));
        v.push(pct_encoded(s));
        v.push(pct_encoded(s).to_lowercase());
        v.push(b64(s));
        v.push(b64(s).trim_end_matches('=').to_string());
    }
    v.push(b64(&format!("{USER}:{KEY}")));
    v
}

/// Decode `\uXXXX` and `%XX` escapes (independently of the helpers' scrubber).
fn decode_escapes(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let hex = |from: usize, n: usize| -> Option<char> {
        let s: String = c.get(from..from + n)?.iter().collect();
        char::from_u32(u32::from_str_radix(&s, 16).ok()?)
    };
    let mut out = String::new();
    let mut i = 0;
    while i < c.len() {
        if c[i] == '\\' && c.get(i + 1) == Some(&'u') {
            if let Some(ch) = hex(i + 2, 4) {
                out.push(ch);
                i += 6;
                continue;
            }
        }
        if c[i] == '%' {
            if let Some(ch) = hex(i + 1, 2) {
                out.push(ch);
                i += 3;
                continue;
            }
        }
        out.push(c[i]);
        i += 1;
    }
    out
}

pub fn assert_no_secrets(text: &str) {
    for s in secret_forms() {
        assert!(
            !text.contains(&s),
            "credential leaked into output as {s:?}:\n{text}"
        );
    }
    let decoded = decode_escapes(text);
    for s in [KEY, TOKEN] {
        assert!(
            !decoded.contains(s),
            "credential leaked into output (escaped):\n{text}"
        );
    }
}

impl Env {
    /// Run a helper for at most `limit` (then kill it: code -1); asserts no credential appears
    /// in its output.
    pub fn run_for(&self, bin: &str, args: &[&str], limit: Duration) -> Run {
        let mut child = self
            .command(bin, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut so = child.stdout.take().unwrap();
        let mut se = child.stderr.take().unwrap();
        let ho = std::thread::spawn(move || {
            let mut b = vec![];
            let _ = so.read_to_end(&mut b);
            b
        });
        let he = std::thread::spawn(move || {
            let mut b = vec![];
            let _ = se.read_to_end(&mut b);
            b
        });
        let start = std::time::Instant::now();
        let code = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st.code().unwrap_or(-1);
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                break -1;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let r = Run {
            code,
            stdout: String::from_utf8_lossy(&ho.join().unwrap()).to_string(),
            stderr: String::from_utf8_lossy(&he.join().unwrap()).to_string(),
        };
        assert_no_secrets(&r.all());
        r
    }
}
