//! The table of every config field (`group.field` and its value kind) and the typed reading
//! of values given as text (CLI, environment) or as TOML/JSON values.
//!
//! A unit test keeps this table in step with the structs: every leaf of the serialised
//! default config must appear here, in the same order, with a matching kind.

use indexmap::IndexMap;
use serde_json::Value;

use super::error::ConfigError;

/// The value kind of a config field, which decides how text is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    /// `usize` / `u64`.
    UInt,
    /// `u32`.
    U32,
    /// `i64`.
    Int,
    /// `f64`, finite.
    Float,
    Str,
    /// A lowercase string out of a fixed set.
    Enum(&'static [&'static str]),
    /// A list of unsigned integers (`agent.hidden_dims`).
    UIntList,
    /// A list of strings (`train.resume_search`).
    StrList,
    /// An ordered `name -> f64` map (`specialization.layer_mutation_rates`).
    FloatMap,
}

impl Kind {
    /// What a value of this kind looks like, for error messages.
    pub fn describe(self) -> String {
        match self {
            Kind::Bool => "a boolean (true or false)".into(),
            Kind::UInt => "an unsigned integer".into(),
            Kind::U32 => "an unsigned integer up to 4294967295".into(),
            Kind::Int => "an integer".into(),
            Kind::Float => "a finite number".into(),
            Kind::Str => "a string".into(),
            Kind::Enum(v) => format!("one of {}", v.join("|")),
            Kind::UIntList => "a list of unsigned integers (e.g. 64,64 or \"64 64\")".into(),
            Kind::StrList => "a list of strings (comma- or space-separated)".into(),
            Kind::FloatMap => {
                "a map of name=number pairs (e.g. actor=0.02,critic=0.01 or { actor = 0.02 })"
                    .into()
            }
        }
    }
}

/// One config field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub group: &'static str,
    pub field: &'static str,
    /// `group.field`.
    pub key: &'static str,
    pub kind: Kind,
}

/// The config groups, in struct order.
pub const GROUPS: &[&str] = &[
    "env",
    "field",
    "agent",
    "train",
    "log",
    "analysis",
    "evolution",
    "specialization",
];

const LR_SCHEDULES: &[&str] = &["linear", "constant"];
const EVOLVED: &[&str] = &["all", "heads"];
const ROLLOUT_OFFSETS: &[&str] = &["f32", "f16"];

macro_rules! fields {
    ($($group:ident . $field:ident : $kind:expr),* $(,)?) => {
        /// Every leaf field of the config, in struct order.
        pub const FIELDS: &[FieldSpec] = &[$(FieldSpec {
            group: stringify!($group),
            field: stringify!($field),
            key: concat!(stringify!($group), ".", stringify!($field)),
            kind: $kind,
        }),*];
    };
}

fields! {
    env.grid_size: Kind::UInt,
    env.num_agents: Kind::UInt,
    env.num_food: Kind::UInt,
    env.max_steps: Kind::U32,
    env.observation_radius: Kind::UInt,
    env.observed_food: Kind::UInt,
    env.food_respawn_prob: Kind::Float,
    field.num_channels: Kind::UInt,
    field.diffusion_rate: Kind::Float,
    field.decay_rate: Kind::Float,
    field.write_strength: Kind::Float,
    agent.hidden_dims: Kind::UIntList,
    train.seed: Kind::UInt,
    train.num_envs: Kind::UInt,
    train.num_steps: Kind::UInt,
    train.total_steps: Kind::UInt,
    train.learning_rate: Kind::Float,
    train.lr_schedule: Kind::Enum(LR_SCHEDULES),
    train.gamma: Kind::Float,
    train.gae_lambda: Kind::Float,
    train.clip_eps: Kind::Float,
    train.vf_coef: Kind::Float,
    train.ent_coef: Kind::Float,
    train.max_grad_norm: Kind::Float,
    train.reward_scale: Kind::Float,
    train.num_epochs: Kind::UInt,
    train.minibatch_size: Kind::UInt,
    train.device: Kind::Str,
    train.num_threads: Kind::UInt,
    train.resume_from: Kind::Str,
    train.resume_search: Kind::StrList,
    train.max_wall_time: Kind::Str,
    log.checkpoint_dir: Kind::Str,
    log.keep_checkpoints: Kind::UInt,
    log.save_interval: Kind::Int,
    log.min_save_interval: Kind::Str,
    log.log_interval: Kind::Int,
    log.metrics_path: Kind::Str,
    log.tensorboard_dir: Kind::Str,
    analysis.emergence_check_interval: Kind::Int,
    analysis.specialization_check_interval: Kind::Int,
    analysis.event_window: Kind::UInt,
    analysis.event_threshold: Kind::Float,
    evolution.enabled: Kind::Bool,
    evolution.evolved: Kind::Enum(EVOLVED),
    evolution.rollout_offsets: Kind::Enum(ROLLOUT_OFFSETS),
    evolution.starting_energy: Kind::Float,
    evolution.energy_per_step: Kind::Float,
    evolution.food_energy: Kind::Float,
    evolution.max_energy: Kind::Float,
    evolution.reproduce_threshold: Kind::Float,
    evolution.reproduce_cost: Kind::Float,
    evolution.mutation_std: Kind::Float,
    evolution.max_agents: Kind::UInt,
    evolution.min_agents: Kind::UInt,
    specialization.diversity_bonus: Kind::Float,
    specialization.niche_pressure: Kind::Float,
    specialization.layer_mutation_rates: Kind::FloatMap,
}

/// A value as written in a source, before it is read as a field's kind.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// Text from the command line or the environment (or a TOML/JSON string).
    Text(String),
    Bool(bool),
    Int(i128),
    Float(f64),
    List(Vec<RawValue>),
    /// Ordered key/value pairs (a TOML table).
    Map(Vec<(String, RawValue)>),
}

impl RawValue {
    /// The value as shown in messages: text quoted, others TOML-like.
    pub fn show(&self) -> String {
        match self {
            RawValue::Text(s) => format!("{s:?}"),
            RawValue::Bool(b) => b.to_string(),
            RawValue::Int(i) => i.to_string(),
            RawValue::Float(f) => fmt_float(*f),
            RawValue::List(v) => {
                format!(
                    "[{}]",
                    v.iter().map(RawValue::show).collect::<Vec<_>>().join(", ")
                )
            }
            RawValue::Map(m) => {
                let inner: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k} = {}", v.show()))
                    .collect();
                format!("{{ {} }}", inner.join(", "))
            }
        }
    }

    /// Converts a TOML value (table order kept).
    pub fn from_toml(v: &toml::Value) -> RawValue {
        match v {
            toml::Value::String(s) => RawValue::Text(s.clone()),
            toml::Value::Integer(i) => RawValue::Int(*i as i128),
            toml::Value::Float(f) => RawValue::Float(*f),
            toml::Value::Boolean(b) => RawValue::Bool(*b),
            toml::Value::Datetime(d) => RawValue::Text(d.to_string()),
            toml::Value::Array(a) => RawValue::List(a.iter().map(RawValue::from_toml).collect()),
            toml::Value::Table(t) => RawValue::Map(
                t.iter()
                    .map(|(k, v)| (k.clone(), RawValue::from_toml(v)))
                    .collect(),
            ),
        }
    }

    /// Converts a JSON value.
    pub fn from_json(v: &Value) -> RawValue {
        match v {
            Value::Null => RawValue::Text("null".into()),
            Value::Bool(b) => RawValue::Bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    RawValue::Int(u as i128)
                } else if let Some(i) = n.as_i64() {
                    RawValue::Int(i as i128)
                } else {
                    RawValue::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => RawValue::Text(s.clone()),
            Value::Array(a) => RawValue::List(a.iter().map(RawValue::from_json).collect()),
            Value::Object(o) => RawValue::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), RawValue::from_json(v)))
                    .collect(),
            ),
        }
    }
}

/// A value read as a field's kind: JSON for the struct, or the ordered map.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Json(Value),
    Map(IndexMap<String, f64>),
}

/// Formats a float so that it reads back exactly and always looks like a float (`1.0`,
/// `0.0003`, `1e-300`); valid TOML for finite values.
pub fn fmt_float(f: f64) -> String {
    format!("{f:?}")
}

/// Normalises a user-written key: trims, drops leading dashes, `-` -> `_`, lowercase.
pub fn normalize_key(key: &str) -> String {
    key.trim()
        .trim_start_matches('-')
        .replace('-', "_")
        .to_lowercase()
}

/// Finds the field named by `key` (hyphens or underscores, any case).
pub fn lookup(key: &str) -> Result<&'static FieldSpec, ConfigError> {
    let norm = normalize_key(key);
    if let Some(spec) = FIELDS.iter().find(|f| f.key == norm) {
        return Ok(spec);
    }
    let Some((group, field)) = norm.split_once('.') else {
        // `total_steps` alone: suggest the full key if a field has that name.
        let suggestion = FIELDS
            .iter()
            .find(|f| f.field == norm)
            .map(|f| f.key.to_string())
            .or_else(|| closest_key(&norm));
        return Err(ConfigError::BadKey {
            key: key.trim().to_string(),
            suggestion,
        });
    };
    if !GROUPS.contains(&group) {
        let suggestion = closest_key(&norm).or_else(|| {
            closest(group, GROUPS.iter().copied(), 0.7).map(|g| format!("{g}.{field}"))
        });
        return Err(ConfigError::UnknownGroup {
            key: key.trim().to_string(),
            group: group.to_string(),
            suggestion,
            valid: GROUPS.join(", "),
        });
    }
    // Same field name in another group first (env.num_envs -> train.num_envs), then the
    // closest field of the group, then the closest key overall.
    let suggestion = FIELDS
        .iter()
        .find(|f| f.field == field)
        .map(|f| f.key.to_string())
        .or_else(|| {
            closest(
                field,
                FIELDS.iter().filter(|f| f.group == group).map(|f| f.field),
                0.7,
            )
            .map(|f| format!("{group}.{f}"))
        })
        .or_else(|| closest_key(&norm));
    Err(ConfigError::UnknownKey {
        key: key.trim().to_string(),
        suggestion,
    })
}

fn closest_key(norm: &str) -> Option<String> {
    closest(norm, FIELDS.iter().map(|f| f.key), 0.8).map(str::to_string)
}

fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>, min: f64) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= min)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Reads `raw` as a value of `spec`'s kind.
pub fn coerce(spec: &FieldSpec, raw: &RawValue) -> Result<FieldValue, ConfigError> {
    let wrong = || ConfigError::WrongType {
        key: spec.key.to_string(),
        expected: spec.kind.describe(),
        got: raw.show(),
    };
    let scalar = |raw: &RawValue, kind: Kind| -> Option<Value> {
        match (kind, raw) {
            (Kind::Bool, RawValue::Bool(b)) => Some(Value::Bool(*b)),
            (Kind::Bool, RawValue::Text(s)) => parse_bool(s).map(Value::Bool),
            (Kind::UInt, RawValue::Int(i)) => u64::try_from(*i).ok().map(Value::from),
            (Kind::U32, RawValue::Int(i)) => u32::try_from(*i).ok().map(Value::from),
            (Kind::Int, RawValue::Int(i)) => i64::try_from(*i).ok().map(Value::from),
            (Kind::UInt | Kind::U32 | Kind::Int, RawValue::Text(s)) => {
                let i = parse_int(s)?;
                scalar_int(kind, i)
            }
            (Kind::Float, RawValue::Int(i)) => Some(Value::from(*i as f64)),
            (Kind::Float, RawValue::Float(f)) if f.is_finite() => Some(Value::from(*f)),
            (Kind::Float, RawValue::Text(s)) => {
                let f: f64 = s.trim().replace('_', "").parse().ok()?;
                f.is_finite().then(|| Value::from(f))
            }
            (Kind::Str, RawValue::Text(s)) => Some(Value::String(s.clone())),
            (Kind::Enum(names), RawValue::Text(s)) => {
                let s = s.trim().to_lowercase();
                names.contains(&s.as_str()).then_some(Value::String(s))
            }
            _ => None,
        }
    };
    match spec.kind {
        Kind::UIntList | Kind::StrList => {
            let item_kind = if spec.kind == Kind::UIntList {
                Kind::UInt
            } else {
                Kind::Str
            };
            let items: Vec<RawValue> = match raw {
                RawValue::List(items) => items.clone(),
                RawValue::Text(s) => split_list(s).into_iter().map(RawValue::Text).collect(),
                _ => return Err(wrong()),
            };
            let values: Option<Vec<Value>> = items.iter().map(|i| scalar(i, item_kind)).collect();
            values
                .map(|v| FieldValue::Json(Value::Array(v)))
                .ok_or_else(wrong)
        }
        Kind::FloatMap => {
            let pairs = match raw {
                RawValue::Map(m) => m.clone(),
                RawValue::Text(s) => parse_map_text(s).ok_or_else(wrong)?,
                _ => return Err(wrong()),
            };
            let mut map = IndexMap::new();
            for (k, v) in &pairs {
                let f = scalar(v, Kind::Float)
                    .and_then(|v| v.as_f64())
                    .ok_or_else(wrong)?;
                if map.insert(k.clone(), f).is_some() {
                    return Err(ConfigError::Invalid {
                        key: spec.key.to_string(),
                        message: format!("layer name {k:?} appears twice"),
                    });
                }
            }
            Ok(FieldValue::Map(map))
        }
        kind => scalar(raw, kind).map(FieldValue::Json).ok_or_else(wrong),
    }
}

fn scalar_int(kind: Kind, i: i128) -> Option<Value> {
    match kind {
        Kind::UInt => u64::try_from(i).ok().map(Value::from),
        Kind::U32 => u32::try_from(i).ok().map(Value::from),
        _ => i64::try_from(i).ok().map(Value::from),
    }
}

/// `true/false`, `yes/no`, `on/off`, `1/0` (any case).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Integers with optional `_` separators, or integral scientific notation (`1e7`).
fn parse_int(s: &str) -> Option<i128> {
    let t = s.trim().replace('_', "");
    if let Ok(i) = t.parse::<i128>() {
        return Some(i);
    }
    if t.contains(['e', 'E']) {
        let f: f64 = t.parse().ok()?;
        if f.is_finite() && f.fract() == 0.0 && f.abs() <= 9.007_199_254_740_992e15 {
            return Some(f as i128);
        }
    }
    None
}

/// Splits a list written as `a,b`, `a b` or `[a, b]`; the empty string is the empty list.
pub fn split_list(s: &str) -> Vec<String> {
    let t = s.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(t);
    t.split(|c: char| c == ',' || c.is_whitespace())
        .map(|p| p.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// `actor=0.02,critic=0.01`, `actor:0.02 critic:0.01` or a TOML inline table.
fn parse_map_text(s: &str) -> Option<Vec<(String, RawValue)>> {
    let t = s.trim();
    if t.starts_with('{') {
        let table: toml::Table = toml::from_str(&format!("v = {t}")).ok()?;
        return match RawValue::from_toml(table.get("v")?) {
            RawValue::Map(m) => Some(m),
            _ => None,
        };
    }
    t.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p.split_once(['=', ':'])?;
            let k = k.trim().trim_matches(|c| c == '"' || c == '\'');
            (!k.is_empty()).then(|| (k.to_string(), RawValue::Text(v.trim().to_string())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// The table lists exactly the struct's leaves, in order, with matching kinds.
    #[test]
    fn fields_match_the_structs() {
        let tree = toml::Value::try_from(Config::default()).unwrap();
        let mut leaves = Vec::new();
        for (group, fields) in tree.as_table().unwrap() {
            for (field, v) in fields.as_table().unwrap() {
                leaves.push((format!("{group}.{field}"), v.clone()));
            }
        }
        let keys: Vec<&str> = leaves.iter().map(|(k, _)| k.as_str()).collect();
        let table: Vec<&str> = FIELDS.iter().map(|f| f.key).collect();
        assert_eq!(keys, table);
        for ((key, v), spec) in leaves.iter().zip(FIELDS) {
            let ok = match spec.kind {
                Kind::Bool => v.is_bool(),
                Kind::UInt | Kind::U32 | Kind::Int => v.is_integer(),
                Kind::Float => v.is_float(),
                Kind::Str | Kind::Enum(_) => v.is_str(),
                Kind::UIntList | Kind::StrList => v.is_array(),
                Kind::FloatMap => v.is_table(),
            };
            assert!(ok, "{key}: kind {:?} does not match default {v}", spec.kind);
            assert_eq!(GROUPS.iter().filter(|g| **g == spec.group).count(), 1);
        }
    }

    #[test]
    fn lookup_accepts_hyphens_and_case() {
        assert_eq!(
            lookup("train.total-steps").unwrap().key,
            "train.total_steps"
        );
        assert_eq!(
            lookup("--Train.Total_Steps").unwrap().key,
            "train.total_steps"
        );
    }

    #[test]
    fn lists_and_maps_from_text() {
        assert_eq!(split_list("[a, b] "), vec!["a", "b"]);
        assert_eq!(split_list("64 64,32"), vec!["64", "64", "32"]);
        assert!(split_list("  ").is_empty());
        let m = parse_map_text("actor=0.02, critic:0.01").unwrap();
        assert_eq!(m[0], ("actor".into(), RawValue::Text("0.02".into())));
        assert_eq!(m[1].0, "critic");
        let m = parse_map_text("{ critic = 0.5, actor = 1 }").unwrap();
        assert_eq!(
            m,
            vec![
                ("critic".into(), RawValue::Float(0.5)),
                ("actor".into(), RawValue::Int(1))
            ]
        );
        assert!(parse_map_text("actor").is_none());
    }

    #[test]
    fn integers_from_text() {
        assert_eq!(parse_int("10_000_000"), Some(10_000_000));
        assert_eq!(parse_int("1e7"), Some(10_000_000));
        assert_eq!(parse_int("1.5e0"), None);
        assert_eq!(parse_int("abc"), None);
        assert_eq!(parse_int("-3"), Some(-3));
    }
}
