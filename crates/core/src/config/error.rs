//! The one error type of the config system, whose `Display` is the message shown to users.
//!
//! Every message names the offending field (`group.field`) and, where possible, says how to
//! fix it; several problems found together are reported together, one per line.

use std::path::PathBuf;

/// Everything that can go wrong while building, loading or validating a [`crate::config::Config`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key whose group part is not one of the config groups.
    #[error("unknown config group `{group}` in `{key}`{}; groups are: {valid}", suggest(.suggestion))]
    UnknownGroup {
        key: String,
        group: String,
        suggestion: Option<String>,
        valid: String,
    },
    /// A key that names no field.
    #[error("unknown config key `{key}`{}", suggest(.suggestion))]
    UnknownKey {
        key: String,
        suggestion: Option<String>,
    },
    /// A key without the `group.field` shape.
    #[error("config key `{key}` must have the form group.field (e.g. train.total_steps){}", suggest(.suggestion))]
    BadKey {
        key: String,
        suggestion: Option<String>,
    },
    /// A value that cannot be read as the field's type.
    #[error("{key} expects {expected}, got {got}")]
    WrongType {
        key: String,
        expected: String,
        got: String,
    },
    /// A value of the right type that is impossible or inconsistent.
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    /// A malformed command line.
    #[error("command line: {0}")]
    Cli(String),
    /// A malformed `EMERGENCE_LAB_OVERRIDES` value.
    #[error("EMERGENCE_LAB_OVERRIDES: {0}")]
    Env(String),
    /// A duration that `parse_duration` cannot read.
    #[error(
        "invalid duration {value:?}: {reason} (examples: 11h30m, 90m, 45s, 1.5h, 3600 for seconds)"
    )]
    Duration { value: String, reason: String },
    /// A TOML document that is not valid TOML or not shaped like a config.
    #[error("{origin}: {message}")]
    Toml { origin: String, message: String },
    /// A JSON document that does not describe a config.
    #[error("config JSON: {0}")]
    Json(String),
    /// A config file that cannot be read.
    #[error("cannot read config file {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Resume requested changes to fields that must stay as the checkpoint had them.
    #[error("{}", resume_message(.conflicts))]
    ResumeConflict {
        /// `(key, checkpoint value, requested value)` per differing field.
        conflicts: Vec<(String, String, String)>,
    },
    /// A problem with a setting from a named source (a file, the command line, the
    /// environment variable).
    #[error("{error} (from {origin})")]
    InSource {
        origin: String,
        error: Box<ConfigError>,
    },
    /// Several problems at once (never nested).
    #[error("{} problems in the configuration:\n{}", .0.len(), list(.0))]
    Many(Vec<ConfigError>),
}

fn suggest(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

fn list(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn resume_message(conflicts: &[(String, String, String)]) -> String {
    let mut s = String::from(
        "cannot resume with a different configuration: the checkpoint's config is the run's \
         config, and only run-control fields (see RUN_CONTROL_FIELDS) may be overridden. \
         Differing fields:",
    );
    for (k, ours, theirs) in conflicts {
        s.push_str(&format!(
            "\n  - {k}: checkpoint has {ours}, requested {theirs}"
        ));
    }
    s.push_str(
        "\nDrop these overrides to continue the run, or start a new run in another \
         log.checkpoint_dir.",
    );
    s
}

impl ConfigError {
    /// Combines collected errors: `Ok` for none, the error itself for one, `Many` otherwise.
    pub fn collect(errors: Vec<ConfigError>) -> Result<(), ConfigError> {
        let mut flat = Vec::new();
        for e in errors {
            match e {
                ConfigError::Many(inner) => flat.extend(inner),
                e => flat.push(e),
            }
        }
        match flat.len() {
            0 => Ok(()),
            1 => Err(flat.pop().expect("one error")),
            _ => Err(ConfigError::Many(flat)),
        }
    }

    /// The individual problems (one for a plain error, each of them for `Many`).
    pub fn problems(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Many(v) => v.iter().collect(),
            e => vec![e],
        }
    }

    /// The `group.field` key the error is about, when it concerns a single field.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownGroup { key, .. }
            | ConfigError::UnknownKey { key, .. }
            | ConfigError::BadKey { key, .. }
            | ConfigError::WrongType { key, .. }
            | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::InSource { error, .. } => error.key(),
            _ => None,
        }
    }
}
