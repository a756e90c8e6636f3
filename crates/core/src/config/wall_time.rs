//! The typed value of `train.max_wall_time`: no limit (empty) or a positive duration
//! (`11h30m`, `90m`, `1.5h`, `3600`), parsed once when the value is set; TOML, CLI and JSON
//! keep the text as written.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration::parse_duration;

/// `train.max_wall_time`: the text as written and the limit it means.
///
/// Any text can be assigned (`"11h30m".into()`, `format!("{secs}s").into()`); text that is
/// not a positive duration is reported by [`Config::validate`](super::Config::validate),
/// saying what is wrong and how to write it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct WallTimeLimit {
    text: String,
    /// `Ok(None)`: no limit; `Err`: why the text is not a duration.
    limit: Result<Option<Duration>, String>,
}

impl WallTimeLimit {
    /// Reads the text form: empty (or spaces) is no limit, anything else a duration.
    pub fn parse(text: &str) -> WallTimeLimit {
        let t = text.trim();
        let limit = if t.is_empty() {
            Ok(None)
        } else {
            parse_duration(t).map(Some).map_err(|e| e.to_string())
        };
        WallTimeLimit {
            text: text.to_string(),
            limit,
        }
    }

    /// No limit.
    pub fn none() -> WallTimeLimit {
        WallTimeLimit::parse("")
    }

    /// The limit; `None` when there is none or the text is not a duration (which
    /// `Config::validate` reports).
    pub fn limit(&self) -> Option<Duration> {
        self.limit.clone().ok().flatten()
    }

    /// Why the text is not a usable limit, if it is not (for the validator).
    pub fn problem(&self) -> Option<String> {
        match &self.limit {
            Ok(Some(d)) if d.is_zero() => Some("must be positive, or empty for no limit".into()),
            Ok(_) => None,
            Err(e) => Some(format!("{e}; or leave it empty for no limit")),
        }
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Default for WallTimeLimit {
    fn default() -> Self {
        WallTimeLimit::none()
    }
}

impl PartialEq for WallTimeLimit {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl PartialEq<&str> for WallTimeLimit {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl fmt::Display for WallTimeLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<&str> for WallTimeLimit {
    fn from(s: &str) -> Self {
        WallTimeLimit::parse(s)
    }
}

impl From<String> for WallTimeLimit {
    fn from(s: String) -> Self {
        WallTimeLimit::parse(&s)
    }
}

impl From<WallTimeLimit> for String {
    fn from(w: WallTimeLimit) -> String {
        w.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_once_text_kept() {
        let w: WallTimeLimit = "11h30m".into();
        assert_eq!(w.limit(), Some(Duration::from_secs(41_400)));
        assert_eq!(w.as_str(), "11h30m");
        assert_eq!(serde_json::to_string(&w).unwrap(), "\"11h30m\"");
        let back: WallTimeLimit = serde_json::from_str("\"11h30m\"").unwrap();
        assert_eq!(back.limit(), w.limit());
        assert_eq!(WallTimeLimit::none().limit(), None);
        assert_eq!(WallTimeLimit::none().problem(), None);
        let bad: WallTimeLimit = "soon".into();
        assert_eq!(bad.limit(), None);
        assert!(bad.problem().unwrap().contains("11h30m"));
        assert!(WallTimeLimit::parse("0s")
            .problem()
            .unwrap()
            .contains("positive"));
    }
}
