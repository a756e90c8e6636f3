//! Validation of a whole config: impossible values and inconsistent combinations.
//!
//! Every problem names its field and is collected, so one run of `validate` reports all of
//! them; single-field checks are also run by `Config::set` for the field it changes.

use super::error::ConfigError;
use super::Config;

struct Problem {
    /// Fields the check reads; a single-field check has exactly one.
    keys: &'static [&'static str],
    error: ConfigError,
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn check(&mut self, keys: &'static [&'static str], ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            let error = ConfigError::Invalid {
                key: keys[0].to_string(),
                message: message(),
            };
            self.problems.push(Problem { keys, error });
        }
    }

    fn at_least(&mut self, key: &'static [&'static str], v: u64, min: u64) {
        self.check(key, v >= min, || format!("must be at least {min}, got {v}"));
    }

    fn positive(&mut self, key: &'static [&'static str], v: f64) {
        self.check(key, v.is_finite() && v > 0.0, || {
            format!("must be greater than 0, got {v}")
        });
    }

    fn non_negative(&mut self, key: &'static [&'static str], v: f64) {
        self.check(key, v.is_finite() && v >= 0.0, || {
            format!("must not be negative, got {v}")
        });
    }

    fn unit(&mut self, key: &'static [&'static str], v: f64) {
        self.check(key, (0.0..=1.0).contains(&v), || {
            format!("must be between 0 and 1, got {v}")
        });
    }
}

/// True for `auto`, `cpu`, `cuda` and `cuda:N` (see [`super::DeviceSpec`]).
pub fn valid_device(d: &str) -> bool {
    d.parse::<super::DeviceSpec>().is_ok()
}

/// Checks combining fields are skipped when one of their fields is already reported as
/// impossible on its own, so one mistake gives one message.
fn run(c: &Config) -> Vec<Problem> {
    let mut k = Checker::default();
    let (e, f, t, l, a, v, s) = (
        &c.env,
        &c.field,
        &c.train,
        &c.log,
        &c.analysis,
        &c.evolution,
        &c.specialization,
    );

    // env
    k.at_least(&["env.grid_size"], e.grid_size as u64, 3);
    k.at_least(&["env.num_agents"], e.num_agents as u64, 1);
    k.check(
        &["env.num_agents", "evolution.max_agents"],
        e.num_agents <= v.max_agents || v.max_agents == 0,
        || {
            format!(
                "{} agents at reset do not fit in evolution.max_agents = {} slots; lower \
             env.num_agents or raise evolution.max_agents",
                e.num_agents, v.max_agents
            )
        },
    );
    k.at_least(&["env.max_steps"], e.max_steps as u64, 1);
    k.at_least(&["env.observation_radius"], e.observation_radius as u64, 1);
    let max_radius = e.grid_size.saturating_sub(1).max(1);
    k.check(
        &["env.observation_radius", "env.grid_size"],
        e.observation_radius <= max_radius || e.grid_size < 3,
        || {
            format!(
                "{} is larger than needed: with env.grid_size = {} a radius of {max_radius} \
                 already sees the whole grid from any cell",
                e.observation_radius, e.grid_size
            )
        },
    );
    k.unit(&["env.food_respawn_prob"], e.food_respawn_prob);

    // field
    k.at_least(&["field.num_channels"], f.num_channels as u64, 1);
    k.unit(&["field.diffusion_rate"], f.diffusion_rate);
    k.unit(&["field.decay_rate"], f.decay_rate);
    k.non_negative(&["field.write_strength"], f.write_strength);

    // agent
    let dims = &c.agent.hidden_dims;
    k.check(
        &["agent.hidden_dims"],
        !dims.is_empty() && !dims.contains(&0),
        || format!("needs at least one layer and no zero widths, got {dims:?}"),
    );

    // train
    k.at_least(&["train.num_envs"], t.num_envs as u64, 1);
    k.at_least(&["train.num_steps"], t.num_steps as u64, 1);
    k.at_least(&["train.total_steps"], t.total_steps, 1);
    k.positive(&["train.learning_rate"], t.learning_rate);
    k.unit(&["train.gamma"], t.gamma);
    k.unit(&["train.gae_lambda"], t.gae_lambda);
    k.check(
        &["train.clip_eps"],
        t.clip_eps > 0.0 && t.clip_eps <= 1.0,
        || format!("must be greater than 0 and at most 1, got {}", t.clip_eps),
    );
    k.non_negative(&["train.vf_coef"], t.vf_coef);
    k.non_negative(&["train.ent_coef"], t.ent_coef);
    k.positive(&["train.max_grad_norm"], t.max_grad_norm);
    k.non_negative(&["train.reward_scale"], t.reward_scale);
    k.at_least(&["train.num_epochs"], t.num_epochs as u64, 1);
    k.at_least(&["train.minibatch_size"], t.minibatch_size as u64, 1);
    let batch = (t.num_envs as u128) * (t.num_steps as u128) * (v.max_agents as u128);
    k.check(
        &[
            "train.minibatch_size",
            "train.num_envs",
            "train.num_steps",
            "evolution.max_agents",
        ],
        t.minibatch_size as u128 <= batch || batch == 0,
        || {
            format!(
                "{} is larger than a batch of train.num_envs * train.num_steps * \
                 evolution.max_agents = {} * {} * {} = {batch} samples",
                t.minibatch_size, t.num_envs, t.num_steps, v.max_agents
            )
        },
    );
    let max_threads = super::budget::max_threads();
    k.check(&["train.num_threads"], t.num_threads <= max_threads, || {
        format!(
            "{} threads is more than this machine can use (at most {max_threads}: 4 per core); \
             0 keeps libtorch's default",
            t.num_threads
        )
    });
    k.check(&["train.device"], valid_device(&t.device), || {
        format!(
            "must be auto, cpu, cuda or cuda:N (e.g. cuda:0), got {:?}",
            t.device
        )
    });
    if let Some(problem) = t.max_wall_time.problem() {
        k.check(&["train.max_wall_time"], false, || problem);
    }
    if let Some(problem) = c.log.min_save_interval.problem() {
        k.check(&["log.min_save_interval"], false, || problem);
    }
    k.check(
        &["train.resume_search"],
        t.resume_search.iter().all(|p| !p.trim().is_empty()),
        || "must not contain empty paths".into(),
    );

    // log
    k.check(
        &["log.checkpoint_dir"],
        !l.checkpoint_dir.trim().is_empty(),
        || "must not be empty (checkpoints need a folder)".into(),
    );
    k.at_least(&["log.keep_checkpoints"], l.keep_checkpoints as u64, 1);

    // analysis
    k.at_least(&["analysis.event_window"], a.event_window as u64, 2);
    k.positive(&["analysis.event_threshold"], a.event_threshold);

    // evolution
    k.positive(&["evolution.starting_energy"], v.starting_energy);
    k.non_negative(&["evolution.energy_per_step"], v.energy_per_step);
    k.non_negative(&["evolution.food_energy"], v.food_energy);
    k.positive(&["evolution.max_energy"], v.max_energy);
    k.check(
        &["evolution.max_energy", "evolution.starting_energy"],
        v.max_energy >= v.starting_energy || v.max_energy.is_nan() || v.max_energy <= 0.0,
        || {
            format!(
                "{} is below evolution.starting_energy = {}; agents would start above the cap",
                v.max_energy, v.starting_energy
            )
        },
    );
    k.non_negative(&["evolution.reproduce_threshold"], v.reproduce_threshold);
    k.check(
        &["evolution.reproduce_threshold", "evolution.max_energy"],
        v.reproduce_threshold <= v.max_energy || v.max_energy.is_nan() || v.max_energy <= 0.0,
        || {
            format!(
                "{} is above evolution.max_energy = {}; energy is capped there, so no agent \
                 could ever reproduce",
                v.reproduce_threshold, v.max_energy
            )
        },
    );
    k.positive(&["evolution.reproduce_cost"], v.reproduce_cost);
    k.check(
        &["evolution.reproduce_cost", "evolution.reproduce_threshold"],
        v.reproduce_cost <= v.reproduce_threshold,
        || {
            format!(
                "{} is above evolution.reproduce_threshold = {}; a parent could be left with \
                 negative energy",
                v.reproduce_cost, v.reproduce_threshold
            )
        },
    );
    k.non_negative(&["evolution.mutation_std"], v.mutation_std);
    k.at_least(&["evolution.max_agents"], v.max_agents as u64, 1);
    k.check(
        &["evolution.min_agents", "evolution.max_agents"],
        v.min_agents <= v.max_agents || v.max_agents == 0,
        || {
            format!(
                "{} is above evolution.max_agents = {}; the population floor cannot exceed \
                 the slots",
                v.min_agents, v.max_agents
            )
        },
    );

    // specialization
    k.non_negative(&["specialization.diversity_bonus"], s.diversity_bonus);
    k.non_negative(&["specialization.niche_pressure"], s.niche_pressure);
    for (name, std) in &s.layer_mutation_rates {
        k.check(
            &["specialization.layer_mutation_rates"],
            std.is_finite() && *std >= 0.0,
            || format!("the std for layer {name:?} must not be negative, got {std}"),
        );
        k.check(
            &["specialization.layer_mutation_rates"],
            !name.trim().is_empty(),
            || "layer names must not be empty".into(),
        );
    }
    // sizes: only when every field is in range on its own (one mistake, one message)
    if k.problems.is_empty() {
        let available = super::budget::machine_memory().unwrap_or(u64::MAX);
        if let Err(error) = c.check_memory(available) {
            k.problems.push(Problem {
                keys: &["train.num_envs", "evolution.max_agents"],
                error,
            });
        }
    }
    k.problems
}

impl Config {
    /// Checks every field and combination; all problems are reported together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::collect(run(self).into_iter().map(|p| p.error).collect())
    }

    /// The problems of checks that read only the field `key` (used by `set`).
    pub(crate) fn single_field_problems(&self, key: &str) -> Vec<ConfigError> {
        run(self)
            .into_iter()
            .filter(|p| p.keys.len() == 1 && p.keys[0] == key)
            .map(|p| p.error)
            .collect()
    }
}
