//! Explicit settings from a TOML file, the command line or `EMERGENCE_LAB_OVERRIDES`, kept as
//! an ordered list so they can be applied to the defaults or, on resume, to a checkpoint's
//! config.
//!
//! Applying collects every problem (unknown keys with suggestions, wrong types) before
//! failing, and leaves the target config unchanged on error.

use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::schema::{lookup, RawValue};
use super::Config;

/// The environment variable read by [`Config::apply_env_overrides`] and `load_cli`.
pub const ENV_VAR: &str = "EMERGENCE_LAB_OVERRIDES";

/// Where an override came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A TOML config file.
    File(PathBuf),
    /// A `--group.field` command-line option.
    Cli,
    /// The `EMERGENCE_LAB_OVERRIDES` variable.
    Env,
    /// Code (`ConfigOverrides::push`).
    Api,
}

impl Origin {
    /// The source as named in error messages (`None` for code).
    pub fn describe(&self) -> Option<String> {
        match self {
            Origin::File(p) => Some(p.display().to_string()),
            Origin::Cli => Some("the command line".into()),
            Origin::Env => Some(ENV_VAR.into()),
            Origin::Api => None,
        }
    }
}

/// One explicit setting: key as written, value as written, and its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub key: String,
    pub value: RawValue,
    pub origin: Origin,
}

/// The explicit settings of a run, later entries winning over earlier ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigOverrides {
    pub entries: Vec<Override>,
}

impl ConfigOverrides {
    /// Adds a setting given as text (as on the command line).
    pub fn push(&mut self, key: &str, value: &str) {
        self.entries.push(Override {
            key: key.to_string(),
            value: RawValue::Text(value.to_string()),
            origin: Origin::Api,
        });
    }

    /// Appends all of `other`'s settings (they win over this one's).
    pub fn extend(&mut self, other: ConfigOverrides) {
        self.entries.extend(other.entries);
    }

    /// True when there are no settings.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The canonical `group.field` keys that are set (unknown keys left out), first-set order.
    pub fn keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        for e in &self.entries {
            if let Ok(spec) = lookup(&e.key) {
                if !keys.contains(&spec.key) {
                    keys.push(spec.key);
                }
            }
        }
        keys
    }

    /// Reads a TOML document of `[group]` tables; `origin` names it in error messages.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Toml {
            origin: origin.display().to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let mut out = ConfigOverrides::default();
        for (group, value) in &table {
            match value {
                toml::Value::Table(fields) => {
                    for (field, v) in fields {
                        out.entries.push(Override {
                            key: format!("{group}.{field}"),
                            value: RawValue::from_toml(v),
                            origin: Origin::File(origin.to_path_buf()),
                        });
                    }
                }
                // A bare top-level key: lookup will report it with a suggestion.
                v => out.entries.push(Override {
                    key: group.clone(),
                    value: RawValue::from_toml(v),
                    origin: Origin::File(origin.to_path_buf()),
                }),
            }
        }
        Ok(out)
    }

    /// Reads a TOML config file.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, path)
    }

    /// Reads `key=value` pairs separated by whitespace, as in `EMERGENCE_LAB_OVERRIDES`.
    ///
    /// Values with spaces may be quoted (`log.checkpoint_dir="my runs/a"` or `'...'`); a
    /// backslash escapes the next character outside single quotes; keys may start with `--`.
    pub fn from_env_str(text: &str) -> Result<Self, ConfigError> {
        let mut out = ConfigOverrides::default();
        for token in shell_words(text)? {
            let Some((key, value)) = token.split_once('=') else {
                return Err(ConfigError::Env(format!(
                    "{token:?} is not key=value; write e.g. \
                     EMERGENCE_LAB_OVERRIDES=\"train.total_steps=8192 env.grid_size=10\""
                )));
            };
            out.entries.push(Override {
                key: key.to_string(),
                value: RawValue::Text(value.to_string()),
                origin: Origin::Env,
            });
        }
        Ok(out)
    }

    /// Reads the `EMERGENCE_LAB_OVERRIDES` variable of this process (unset: no settings).
    pub fn from_env() -> Result<Self, ConfigError> {
        match env_text()? {
            Some(text) => Self::from_env_str(&text),
            None => Ok(Self::default()),
        }
    }

    /// Applies every setting to `config`, collecting all problems; unchanged on error.
    pub(crate) fn apply_unchecked(&self, config: &mut Config) -> Result<(), ConfigError> {
        let mut next = config.clone();
        let mut errors = Vec::new();
        for e in &self.entries {
            let result = lookup(&e.key).and_then(|spec| next.set_raw(spec, &e.value));
            if let Err(error) = result {
                errors.push(match e.origin.describe() {
                    Some(origin) => ConfigError::InSource {
                        origin,
                        error: Box::new(error),
                    },
                    None => error,
                });
            }
        }
        ConfigError::collect(errors)?;
        *config = next;
        Ok(())
    }

    /// Applies the settings like repeated [`Config::set`] calls: types and each changed
    /// field's own range are checked, combinations are left to [`Config::validate`].
    pub fn apply(&self, config: &mut Config) -> Result<(), ConfigError> {
        let mut next = config.clone();
        self.apply_unchecked(&mut next)?;
        let problems = self
            .keys()
            .iter()
            .flat_map(|k| next.single_field_problems(k))
            .collect();
        ConfigError::collect(problems)?;
        *config = next;
        Ok(())
    }

    /// `base` with all settings applied, fully validated.
    pub fn apply_to(&self, mut base: Config) -> Result<Config, ConfigError> {
        self.apply_unchecked(&mut base)?;
        base.validate()?;
        Ok(base)
    }
}

/// The text of `EMERGENCE_LAB_OVERRIDES`: `None` when unset, an error when it is not
/// valid UTF-8 (never silently ignored).
pub(crate) fn env_text() -> Result<Option<String>, ConfigError> {
    match std::env::var(ENV_VAR) {
        Ok(text) => Ok(Some(text)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(ConfigError::Env(format!(
            "the value is not valid UTF-8 text ({v:?}); unset it or write it as UTF-8"
        ))),
    }
}

/// Splits on whitespace outside quotes; quotes are removed.
fn shell_words(text: &str) -> Result<Vec<String>, ConfigError> {
    let mut words = Vec::new();
    let mut current: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => current.get_or_insert_with(String::new).push(c),
            (_, '\\') => {
                let next = chars.next().ok_or_else(|| {
                    ConfigError::Env("a trailing backslash escapes nothing".into())
                })?;
                current.get_or_insert_with(String::new).push(next);
            }
            (Some(_), c) => current.get_or_insert_with(String::new).push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                current.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(current.take()),
            (None, c) => current.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(q) = quote {
        return Err(ConfigError::Env(format!(
            "unterminated {q} quote in {text:?}"
        )));
    }
    words.extend(current);
    Ok(words)
}

impl Config {
    /// Defaults with the settings of a TOML document applied and validated.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        ConfigOverrides::from_toml_str(text, Path::new("config TOML"))?.apply_to(Config::default())
    }

    /// Defaults with the settings of a TOML file applied and validated.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        ConfigOverrides::from_toml_file(path)?.apply_to(Config::default())
    }

    /// Applies `EMERGENCE_LAB_OVERRIDES` (if set) like repeated [`Config::set`] calls.
    pub fn apply_env_overrides(&mut self) -> Result<(), ConfigError> {
        ConfigOverrides::from_env()?.apply(self)
    }

    /// Applies overrides written like `EMERGENCE_LAB_OVERRIDES` (`"a.b=1 c.d=2"`).
    pub fn apply_overrides_str(&mut self, text: &str) -> Result<(), ConfigError> {
        ConfigOverrides::from_env_str(text)?.apply(self)
    }

    /// Defaults with overrides written like `EMERGENCE_LAB_OVERRIDES` applied and validated.
    pub fn from_env_overrides_str(text: &str) -> Result<Config, ConfigError> {
        ConfigOverrides::from_env_str(text)?.apply_to(Config::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_quotes_and_escapes() {
        let w = shell_words(r#"a=1  b="x y" c='p "q"' d=e\ f "" "#).unwrap();
        assert_eq!(w, vec!["a=1", "b=x y", "c=p \"q\"", "d=e f", ""]);
        assert!(shell_words("a=\"open").is_err());
        assert!(shell_words("").unwrap().is_empty());
    }
}
