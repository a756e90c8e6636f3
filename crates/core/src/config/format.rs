//! Writing a config out: TOML (a file users can edit and pass back with `--config`), JSON
//! (lossless, for checkpoints), a plain-text table for humans and a content hash.
//!
//! `from_json(to_json(c)) == c` exactly, floats and map order included.

use sha2::{Digest, Sha256};

use super::error::ConfigError;
use super::overrides::ConfigOverrides;
use super::schema::{Kind, RawValue, FIELDS};
use super::Config;

impl Config {
    /// The config as a TOML document with one `[group]` table per group, readable by
    /// [`Config::from_toml_str`] and `--config` (exactly the same config comes back).
    pub fn to_toml_string(&self) -> String {
        let mut out = String::new();
        let mut group = "";
        for (spec, (_, value)) in FIELDS.iter().zip(self.entries()) {
            if spec.group != group {
                if !group.is_empty() {
                    out.push('\n');
                }
                group = spec.group;
                out.push_str(&format!("[{group}]\n"));
            }
            // TOML integers are i64: larger unsigned values (a seed) are written as text.
            let value = match (spec.kind, value.parse::<u64>()) {
                (Kind::UInt, Ok(u)) if u > i64::MAX as u64 => format!("\"{u}\""),
                _ => value,
            };
            out.push_str(&format!("{} = {value}\n", spec.field));
        }
        out
    }

    /// Compact JSON of the whole config (the form stored in checkpoints).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a config always serialises to JSON")
    }

    /// Indented JSON of the whole config.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a config always serialises to JSON")
    }

    /// Reads JSON written by [`Config::to_json`]; missing fields take their defaults.
    ///
    /// The result is not validated (a checkpoint's config is taken as it was); call
    /// [`Config::validate`] if needed. Unknown or mistyped fields are errors naming them.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        match serde_json::from_str::<Config>(text) {
            Ok(c) => Ok(c),
            Err(serde_err) => {
                // Produce messages with field names and suggestions where we can.
                let value: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| ConfigError::Json(format!("not valid JSON: {e}")))?;
                let serde_json::Value::Object(groups) = &value else {
                    return Err(ConfigError::Json("expected an object of groups".into()));
                };
                let mut overrides = ConfigOverrides::default();
                for (group, fields) in groups {
                    match fields {
                        serde_json::Value::Object(fields) => {
                            for (field, v) in fields {
                                overrides
                                    .push_raw(&format!("{group}.{field}"), RawValue::from_json(v));
                            }
                        }
                        v => overrides.push_raw(group, RawValue::from_json(v)),
                    }
                }
                let mut config = Config::default();
                overrides.apply_unchecked(&mut config)?;
                Err(ConfigError::Json(serde_err.to_string()))
            }
        }
    }

    /// All fields as an aligned plain-text table, one `group.field = value` per line; a
    /// field that differs from [`Config::default`] shows the default after `#`.
    pub fn summary_table(&self) -> String {
        let ours = self.entries();
        let defaults = Config::default().entries();
        let key_w = ours.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let val_w = ours.iter().map(|(_, v)| v.len()).max().unwrap_or(0).min(40);
        let mut out = String::new();
        for ((key, value), (_, default)) in ours.iter().zip(&defaults) {
            let line = if value == default {
                format!("{key:<key_w$} = {value}")
            } else {
                format!("{key:<key_w$} = {value:<val_w$}  # default {default}")
            };
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// SHA-256 (hex) of the compact JSON form; equal configs give equal hashes.
    pub fn hash_hex(&self) -> String {
        let digest = Sha256::digest(self.to_json().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A help text listing every config option with its type and default, for binaries'
    /// `--help` (e.g. clap's `after_help`).
    pub fn options_help() -> String {
        let defaults = Config::default().entries();
        let rows: Vec<(String, String)> = FIELDS
            .iter()
            .zip(&defaults)
            .map(|(spec, (_, default))| {
                let name = spec.key.replace('_', "-");
                let option = match spec.kind {
                    Kind::Bool => {
                        let (group, field) = name.split_once('.').expect("dotted key");
                        format!("--{group}.[no-]{field}")
                    }
                    Kind::Enum(names) => format!("--{name} <{}>", names.join("|")),
                    Kind::UInt | Kind::U32 => format!("--{name} <unsigned integer>"),
                    Kind::Int => format!("--{name} <integer>"),
                    Kind::Float => format!("--{name} <number>"),
                    Kind::Str => format!("--{name} <text>"),
                    Kind::UIntList => format!("--{name} <n,n,...>"),
                    Kind::StrList => format!("--{name} <a,b,...>"),
                    Kind::FloatMap => format!("--{name} <name=std,...>"),
                };
                (option, format!("[default: {default}]"))
            })
            .collect();
        let width = rows.iter().map(|(o, _)| o.len()).max().unwrap_or(0);
        let mut out = String::from(
            "Config options (defaults < --config FILE < --group.field value < \
             EMERGENCE_LAB_OVERRIDES=\"group.field=value ...\"):\n",
        );
        for (option, default) in rows {
            out.push_str(&format!("  {option:<width$}  {default}\n"));
        }
        out
    }

    /// The number of leaf fields (rows of [`Config::summary_table`]).
    pub fn num_fields() -> usize {
        FIELDS.len()
    }
}

impl ConfigOverrides {
    pub(crate) fn push_raw(&mut self, key: &str, value: RawValue) {
        self.entries.push(super::overrides::Override {
            key: key.to_string(),
            value,
            origin: super::overrides::Origin::Api,
        });
    }
}
