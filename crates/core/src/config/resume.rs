//! Resume rules: the checkpoint's config is the run's config, and only run-control fields
//! (how long, where to save and log, which device) may change when a run continues.
//!
//! `ConfigOverrides::apply_for_resume` applies the user's explicit settings (config file,
//! CLI, environment) to the checkpoint's config and rejects those that would change
//! anything else, listing every such field with both values.

use super::error::ConfigError;
use super::overrides::ConfigOverrides;
use super::schema::{lookup, FieldSpec, Kind, RawValue, FIELDS};
use super::{access::render, Config};

/// Fields a resumed run may change; every other field must match the checkpoint's config.
pub const RUN_CONTROL_FIELDS: &[&str] = &[
    "train.total_steps",
    "log.save_interval",
    "log.min_save_interval",
    "log.log_interval",
    "log.checkpoint_dir",
    "log.keep_checkpoints",
    "train.max_wall_time",
    "train.device",
    "log.metrics_path",
    "log.tensorboard_dir",
    "train.resume_from",
    "train.resume_search",
    "train.num_threads",
];

/// True when `key` (canonical `group.field`) is a run-control field.
pub fn is_run_control(key: &str) -> bool {
    RUN_CONTROL_FIELDS.contains(&key)
}

impl Config {
    /// Every leaf field whose value differs: `(group.field, ours, theirs)`, values TOML-like.
    pub fn diff(&self, other: &Config) -> Vec<(String, String, String)> {
        FIELDS
            .iter()
            .filter_map(|spec| {
                let (a, b) = (self.leaf(spec), other.leaf(spec));
                (a != b).then(|| {
                    (
                        spec.key.to_string(),
                        render(&a, spec.kind),
                        render(&b, spec.kind),
                    )
                })
            })
            .collect()
    }

    /// The checkpoint's config with the run-control fields of `requested`; an error listing
    /// every other field where `requested` differs from the checkpoint.
    ///
    /// This is the strict rule for a caller holding only a full config: `requested` must
    /// equal the checkpoint's config outside run control. Binaries should prefer
    /// [`ConfigOverrides::apply_for_resume`], which only looks at the settings the user
    /// actually gave.
    pub fn merge_run_control(
        checkpoint: &Config,
        requested: &Config,
    ) -> Result<Config, ConfigError> {
        let mut conflicts = Vec::new();
        let mut out = checkpoint.clone();
        for (key, ours, theirs) in checkpoint.diff(requested) {
            if is_run_control(&key) {
                let spec = lookup(&key)?;
                out.set_raw(spec, &raw_of(requested, spec))?;
            } else {
                conflicts.push((key, ours, theirs));
            }
        }
        if !conflicts.is_empty() {
            return Err(ConfigError::ResumeConflict { conflicts });
        }
        out.validate()?;
        Ok(out)
    }
}

/// The current value of a field as a raw value that `set_raw` reads back exactly.
fn raw_of(config: &Config, spec: &FieldSpec) -> RawValue {
    if spec.kind == Kind::FloatMap {
        let m = &config.specialization.layer_mutation_rates;
        return RawValue::Map(
            m.iter()
                .map(|(k, v)| (k.clone(), RawValue::Float(*v)))
                .collect(),
        );
    }
    RawValue::from_json(&config.leaf(spec))
}

impl ConfigOverrides {
    /// The config of a resumed run: `checkpoint` with these settings applied. Settings of
    /// run-control fields ([`RUN_CONTROL_FIELDS`]) are taken; any other setting must leave
    /// its field as the checkpoint has it (so passing the run's original `--config` again
    /// is fine), otherwise the error lists every such field with both values.
    pub fn apply_for_resume(&self, checkpoint: &Config) -> Result<Config, ConfigError> {
        let mut out = checkpoint.clone();
        self.apply_unchecked(&mut out)?;
        let conflicts: Vec<_> = checkpoint
            .diff(&out)
            .into_iter()
            .filter(|(key, _, _)| !is_run_control(key))
            .collect();
        if !conflicts.is_empty() {
            return Err(ConfigError::ResumeConflict { conflicts });
        }
        out.validate()?;
        Ok(out)
    }
}
