//! Reading and writing single fields by their dotted key (`config.set("train.total_steps",
//! "8192")`), the way notebook cells and every override source change a config.
//!
//! Writes go through the JSON form of the config, so each field is parsed by its type and
//! the result is checked by serde; the one ordered map is carried over separately.

use serde_json::Value;

use super::error::ConfigError;
use super::schema::{coerce, fmt_float, lookup, FieldSpec, FieldValue, Kind, RawValue, FIELDS};
use super::Config;

impl Config {
    /// Sets one field from text, e.g. `config.set("train.total-steps", "8192")`.
    ///
    /// The key is `group.field` (hyphens or underscores); the text is parsed by the field's
    /// type (booleans `true/false/yes/no/on/off/1/0`, lists `a,b` or `a b`, the map
    /// `actor=0.02,critic=0.01`, enums by name). The field's own range checks run too
    /// (e.g. `env.grid_size` >= 3); checks that combine fields run in [`Config::validate`],
    /// so related fields can be set in any order. On error the config is unchanged.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let spec = lookup(key)?;
        let mut next = self.clone();
        next.set_raw(spec, &RawValue::Text(value.to_string()))?;
        ConfigError::collect(next.single_field_problems(spec.key))?;
        *self = next;
        Ok(())
    }

    /// The value of one field as TOML-like text (strings quoted, lists in brackets).
    pub fn get(&self, key: &str) -> Result<String, ConfigError> {
        let spec = lookup(key)?;
        Ok(render(&self.leaf(spec), spec.kind))
    }

    /// Every field as `(group.field, TOML-like value)`, in struct order.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        let tree = self.tree();
        FIELDS
            .iter()
            .map(|s| (s.key, render(&self.leaf_in(&tree, s), s.kind)))
            .collect()
    }

    /// Reads `raw` as the field's type and stores it (no range checks).
    pub(crate) fn set_raw(&mut self, spec: &FieldSpec, raw: &RawValue) -> Result<(), ConfigError> {
        let value = coerce(spec, raw)?;
        let mut tree = self.tree();
        let slot = &mut tree[spec.group][spec.field];
        match &value {
            FieldValue::Json(v) => *slot = v.clone(),
            FieldValue::Map(_) => *slot = Value::Object(Default::default()),
        }
        let mut next: Config =
            serde_json::from_value(tree).map_err(|e| ConfigError::WrongType {
                key: spec.key.to_string(),
                expected: spec.kind.describe(),
                got: format!("{} ({e})", raw.show()),
            })?;
        // serde_json::Value objects do not keep insertion order; carry the map directly.
        next.specialization.layer_mutation_rates = match value {
            FieldValue::Map(m) => m,
            FieldValue::Json(_) => self.specialization.layer_mutation_rates.clone(),
        };
        *self = next;
        Ok(())
    }

    fn tree(&self) -> Value {
        serde_json::to_value(self).expect("a config always serialises to JSON")
    }

    /// The JSON value of one leaf; the ordered map becomes a list of `[name, std]` pairs.
    pub(crate) fn leaf(&self, spec: &FieldSpec) -> Value {
        self.leaf_in(&self.tree(), spec)
    }

    fn leaf_in(&self, tree: &Value, spec: &FieldSpec) -> Value {
        if spec.kind == Kind::FloatMap {
            let pairs = self.specialization.layer_mutation_rates.iter();
            return Value::Array(pairs.map(|(k, v)| serde_json::json!([k, v])).collect());
        }
        tree[spec.group][spec.field].clone()
    }
}

/// Renders a leaf value TOML-like: `"auto"`, `0.0003`, `[64, 64]`, `{ actor = 0.02 }`.
pub(crate) fn render(v: &Value, kind: Kind) -> String {
    match (kind, v) {
        (Kind::FloatMap, Value::Array(pairs)) => {
            if pairs.is_empty() {
                return "{}".into();
            }
            let items: Vec<String> = pairs
                .iter()
                .map(|p| {
                    let name = p[0].as_str().unwrap_or_default();
                    let bare = !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    let name = if bare {
                        name.to_string()
                    } else {
                        json_str(name)
                    };
                    format!("{name} = {}", fmt_float(p[1].as_f64().unwrap_or(f64::NAN)))
                })
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        (_, Value::Array(items)) => {
            let items: Vec<String> = items.iter().map(|i| render(i, Kind::Str)).collect();
            format!("[{}]", items.join(", "))
        }
        (_, Value::String(s)) => json_str(s),
        (_, Value::Number(n)) if n.is_f64() => fmt_float(n.as_f64().unwrap_or(f64::NAN)),
        (_, other) => other.to_string(),
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}
