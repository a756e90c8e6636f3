//! The typed value of `train.resume_from`: fresh (empty), `latest`, `auto` or a path, parsed
//! once when the config is built; TOML, CLI and JSON keep the string form.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What a run continues from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ResumeFrom {
    /// A fresh start (written as the empty string).
    #[default]
    Fresh,
    /// `log.checkpoint_dir/latest.safetensors`, verified; an error when missing or bad.
    Latest,
    /// The newest checkpoint that verifies in `log.checkpoint_dir` and every
    /// `train.resume_search` folder; a fresh start when there is none.
    Auto,
    /// That checkpoint file, verified; an error when missing or bad.
    Path(PathBuf),
}

impl ResumeFrom {
    /// Reads the string form (surrounding spaces ignored): `""` fresh, `latest`, `auto`,
    /// anything else a path. Every string is a value; a path is checked when the run starts.
    pub fn parse(text: &str) -> ResumeFrom {
        match text.trim() {
            "" => ResumeFrom::Fresh,
            "latest" => ResumeFrom::Latest,
            "auto" => ResumeFrom::Auto,
            path => ResumeFrom::Path(PathBuf::from(path)),
        }
    }
}

impl fmt::Display for ResumeFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResumeFrom::Fresh => Ok(()),
            ResumeFrom::Latest => f.write_str("latest"),
            ResumeFrom::Auto => f.write_str("auto"),
            ResumeFrom::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

impl From<&str> for ResumeFrom {
    fn from(s: &str) -> Self {
        ResumeFrom::parse(s)
    }
}

impl From<String> for ResumeFrom {
    fn from(s: String) -> Self {
        ResumeFrom::parse(&s)
    }
}

impl From<Cow<'_, str>> for ResumeFrom {
    fn from(s: Cow<'_, str>) -> Self {
        ResumeFrom::parse(&s)
    }
}

impl From<ResumeFrom> for String {
    fn from(r: ResumeFrom) -> String {
        r.to_string()
    }
}

impl PartialEq<&str> for ResumeFrom {
    fn eq(&self, other: &&str) -> bool {
        *self == ResumeFrom::parse(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form_and_writes_it_back() {
        for (s, r) in [
            ("", ResumeFrom::Fresh),
            ("  ", ResumeFrom::Fresh),
            ("latest", ResumeFrom::Latest),
            (" auto ", ResumeFrom::Auto),
            (
                "ck/step_5.safetensors",
                ResumeFrom::Path("ck/step_5.safetensors".into()),
            ),
        ] {
            assert_eq!(ResumeFrom::parse(s), r, "{s:?}");
            assert_eq!(ResumeFrom::parse(&r.to_string()), r);
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("{:?}", s.trim()));
            assert_eq!(serde_json::from_str::<ResumeFrom>(&json).unwrap(), r);
        }
        assert_ne!(
            ResumeFrom::parse("Auto"),
            ResumeFrom::Auto,
            "spellings are exact"
        );
    }
}
