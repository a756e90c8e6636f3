//! The one scrubber of the helpers: removes credentials from any text before it reaches the
//! terminal or a log file, in clear and in the encodings a server or a URL may use for them
//! (JSON `\uXXXX` / `\xHH` / `\/` escapes, URL `%HH` encoding, HTML character references and
//! base64, standard or URL-safe, alone or inside a longer base64 text such as a Basic header);
//! plus [`terminal_text`], which strips control characters and ANSI escapes from server text and
//! bounds its size.
//!
//! Secrets are registered once per process with [`protect`] (the command layer does it as soon
//! as credentials are found); [`scrub`] then redacts every registered secret. Callers that hold
//! a specific secret use a [`Redactor`] directly.

use base64::Engine;
use std::sync::RwLock;

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// Secrets shorter than this are not scrubbed (they would match ordinary text).
const MIN_SECRET_CHARS: usize = 4;

/// A set of secret patterns, each matched in clear or in any per-character encoding.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Patterns (longest first), as chars.
    patterns: Vec<Vec<char>>,
}

/// The base64 characters of `secret` that do not depend on surrounding bytes, for each of the
/// three byte alignments it can have inside a longer encoded text, plus its plain encodings.
fn base64_forms(secret: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let bytes = secret.as_bytes();
    let mut out = vec![];
    for engine in [&STANDARD, &URL_SAFE] {
        out.push(engine.encode(bytes));
        for align in 0..3usize {
            let mut padded = vec![0u8; align];
            padded.extend_from_slice(bytes);
            let enc = engine.encode(&padded);
            let first_group = align.div_ceil(3);
            let end_group = (align + bytes.len()) / 3;
            if end_group > first_group {
                let core = &enc[4 * first_group..4 * end_group];
                if core.len() >= 8 {
                    out.push(core.to_string());
                }
            }
        }
    }
    out
}

impl Redactor {
    /// An empty redactor (scrubs nothing).
    pub const fn new() -> Self {
        Redactor {
            patterns: Vec::new(),
        }
    }

    /// A redactor for these secrets.
    pub fn of(secrets: &[&str]) -> Self {
        let mut r = Redactor::new();
        for s in secrets {
            r.add(s);
        }
        r
    }

    /// Add a secret (and its base64 forms); secrets under 4 characters are ignored.
    pub fn add(&mut self, secret: &str) {
        let secret = secret.trim();
        if secret.chars().count() < MIN_SECRET_CHARS {
            return;
        }
        let mut forms = vec![secret.to_string()];
        forms.extend(base64_forms(secret));
        for f in forms {
            let p: Vec<char> = f.chars().collect();
            if !self.patterns.contains(&p) {
                self.patterns.push(p);
            }
        }
        self.patterns.sort_by_key(|p| std::cmp::Reverse(p.len()));
    }

    /// True when no secret is registered.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// `text` with every secret form replaced by `<redacted>`.
    pub fn scrub(&self, text: &str) -> String {
        if self.patterns.is_empty() {
            return text.to_string();
        }
        let t: Vec<char> = text.chars().collect();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        while i < t.len() {
            match self.patterns.iter().find_map(|p| match_at(&t, i, p)) {
                Some(end) => {
                    out.push_str(REDACTED);
                    i = end;
                }
                None => {
                    out.push(t[i]);
                    i += 1;
                }
            }
        }
        out
    }

    /// The longest encoded length a secret can take in text (for bounded scrubbing).
    fn max_encoded_chars(&self) -> usize {
        // `&#x10FFFF;` is the longest per-character form (10 chars), `\\\\u0041` aside.
        self.patterns.first().map(|p| p.len() * 12).unwrap_or(0)
    }
}

fn hex_at(t: &[char], at: usize, digits: usize) -> Option<u32> {
    let s: String = t.get(at..at + digits)?.iter().collect();
    if s.chars().all(|c| c.is_ascii_hexdigit()) {
        u32::from_str_radix(&s, 16).ok()
    } else {
        None
    }
}

/// Where the encoding of `c` that starts at `t[j]` ends, if one does.
fn match_char(t: &[char], j: usize, c: char) -> Option<usize> {
    let cur = *t.get(j)?;
    if cur == c {
        return Some(j + 1);
    }
    let code = c as u32;
    match cur {
        '\\' => {
            // One or more backslashes (JSON inside JSON), then u+4 hex, x+2 hex, or `c` itself.
            let mut k = j;
            while t.get(k) == Some(&'\\') {
                k += 1;
            }
            match *t.get(k)? {
                'u' | 'U' if hex_at(t, k + 1, 4) == Some(code) => Some(k + 5),
                'x' | 'X' if hex_at(t, k + 1, 2) == Some(code) => Some(k + 3),
                n if n == c && !c.is_ascii_alphanumeric() => Some(k + 1),
                _ => None,
            }
        }
        '%' if code < 0x80 && hex_at(t, j + 1, 2) == Some(code) => Some(j + 3),
        '&' if t.get(j + 1) == Some(&'#') => {
            let (start, radix) = match t.get(j + 2) {
                Some('x') | Some('X') => (j + 3, 16),
                _ => (j + 2, 10),
            };
            let mut k = start;
            while t.get(k).is_some_and(|d| d.is_digit(radix)) && k - start < 8 {
                k += 1;
            }
            let digits: String = t.get(start..k)?.iter().collect();
            let v = u32::from_str_radix(&digits, radix).ok()?;
            (v == code && t.get(k) == Some(&';')).then_some(k + 1)
        }
        '+' if c == ' ' => Some(j + 1),
        _ => None,
    }
}

fn match_at(t: &[char], i: usize, pattern: &[char]) -> Option<usize> {
    let mut j = i;
    for &c in pattern {
        j = match_char(t, j, c)?;
    }
    Some(j)
}

static REGISTRY: RwLock<Redactor> = RwLock::new(Redactor::new());

/// Register a secret for this process: from now on [`scrub`] and [`for_terminal`] remove it.
pub fn protect(secret: &str) {
    let mut r = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    r.add(secret);
}

/// `text` with every registered secret removed.
pub fn scrub(text: &str) -> String {
    REGISTRY
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .scrub(text)
}

/// Remove ANSI escape sequences and control characters (replaced by a space), flatten
/// whitespace to single spaces, and cut to `max_chars` characters (marked with `...`).
pub fn terminal_text(text: &str, max_chars: usize) -> String {
    clean(text, max_chars, true)
}

fn clean(text: &str, max_chars: usize, collapse: bool) -> String {
    let mut flat = String::with_capacity(text.len().min(max_chars * 4 + 16));
    let mut chars = text.chars().peekable();
    let mut count = 0usize;
    let mut last_space = true;
    let mut cut = false;
    while let Some(c) = chars.next() {
        let c = if c == '\u{1b}' {
            // CSI `ESC [ ... final`, OSC `ESC ] ... BEL|ESC \`, or a two-character escape.
            match chars.peek() {
                Some('[') => {
                    chars.next();
                    for d in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&d) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    chars.next();
                    while let Some(d) = chars.next() {
                        if d == '\u{7}' || (d == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                Some(_) => {
                    chars.next();
                }
                None => {}
            }
            ' '
        } else if c.is_control() || is_format_control(c) || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' {
            if last_space && collapse {
                continue;
            }
            last_space = true;
        } else {
            last_space = false;
        }
        if count == max_chars {
            cut = true;
            break;
        }
        flat.push(c);
        count += 1;
    }
    let trimmed = if collapse {
        flat.trim()
    } else {
        flat.trim_end()
    };
    if cut {
        format!("{trimmed}...")
    } else {
        trimmed.to_string()
    }
}

/// Invisible characters that reorder or hide text on a terminal (bidi overrides, zero-width).
fn is_format_control(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// Shorten a server message to one clean line of at most 300 characters (no secrets removed:
/// see [`for_terminal`]).
pub fn one_line(text: &str) -> String {
    terminal_text(text, 300)
}

/// One line fit for the terminal: every registered secret removed (before cutting, so a
/// secret is never half shown), control characters and ANSI escapes replaced by spaces (the
/// line's own spacing kept), at most `max_chars` characters.
pub fn for_terminal(text: &str, max_chars: usize) -> String {
    let r = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    let head = scrub_head(&r, text, max_chars);
    clean(&head, max_chars, false)
}

/// Server text for a message: credentials removed, then as [`terminal_text`] (one line of
/// single spaces, at most `max_chars` characters).
pub fn bounded_scrub(r: &Redactor, text: &str, max_chars: usize) -> String {
    terminal_text(&scrub_head(r, text, max_chars), max_chars)
}

/// Scrub only as much of `text` as can still be shown: a secret starting before the cut is
/// always seen whole.
fn scrub_head(r: &Redactor, text: &str, max_chars: usize) -> String {
    // Whitespace runs collapse, so keep a generous margin of raw characters.
    let margin = r.max_encoded_chars() + 64;
    let limit = max_chars.saturating_mul(4).saturating_add(margin);
    let head: String = if text.len() > limit {
        text.chars().take(limit).collect()
    } else {
        text.to_string()
    };
    r.scrub(&head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    const K: &str = "FAKEKEY0123456789";

    fn json_escaped(s: &str, upper: bool) -> String {
        s.chars()
            .map(|c| {
                if upper {
                    format!("\\u{:04X}", c as u32)
                } else {
                    format!("\\u{:04x}", c as u32)
                }
            })
            .collect()
    }

    fn pct(s: &str) -> String {
        s.bytes().map(|b| format!("%{b:02X}")).collect()
    }

    #[test]
    fn every_encoding_is_scrubbed() {
        let r = Redactor::of(&[K]);
        let basic = STANDARD.encode(format!("fake-user:{K}"));
        let mixed = "FAKE\\u004bEY%30123&#52;&#x35;6789".to_string();
        for form in [
            K.to_string(),
            json_escaped(K, false),
            json_escaped(K, true),
            json_escaped(K, false).replace('\\', "\\\\"),
            pct(K),
            pct(K).to_lowercase(),
            STANDARD.encode(K),
            URL_SAFE.encode(K),
            basic.clone(),
            STANDARD.encode(format!("xx{K}yy")),
            STANDARD.encode(format!("x{K}")),
            pct(&basic),
            mixed,
        ] {
            let text = format!("before {form} after");
            let s = r.scrub(&text);
            assert!(s.contains(REDACTED), "{form} -> {s}");
            assert!(!s.contains(&form), "{form} -> {s}");
            assert!(s.starts_with("before ") && s.ends_with(" after"), "{s}");
        }
        assert_eq!(r.scrub("nothing secret"), "nothing secret");
        assert_eq!(Redactor::of(&["abc"]).scrub("abc"), "abc");
    }

    #[test]
    fn terminal_text_strips_escapes_and_bounds() {
        let s = terminal_text(
            "\u{1b}[31mred\u{1b}[0m \u{1b}]0;title\u{7}x\r\ny\u{202e}z",
            100,
        );
        assert_eq!(s, "red x y z");
        let long = "y".repeat(50_000_000);
        let s = terminal_text(&long, 300);
        assert_eq!(s.len(), 303);
        assert_eq!(one_line("a\nb\r\n  c"), "a b c");
    }

    #[test]
    fn bounded_scrub_never_shows_half_a_secret() {
        let r = Redactor::of(&[K]);
        let text = format!("{}{K}", "a".repeat(290));
        let s = bounded_scrub(&r, &text, 300);
        assert!(!s.contains("FAKEKEY"), "{s}");
        let huge = format!("{K} {}", "z".repeat(10_000_000));
        let s = bounded_scrub(&r, &huge, 50);
        assert!(s.starts_with(REDACTED) && s.len() < 60, "{s}");
    }
}
