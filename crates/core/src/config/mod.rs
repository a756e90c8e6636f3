//! Run configuration: every group and field of `docs/model.md` with its default, plus how
//! configs are built from files, command lines and the environment, validated and stored.
//!
//! # Sources and precedence (later wins)
//!
//! 1. [`Config::default()`] (or [`Config::kaggle_notebook()`] in notebooks);
//! 2. TOML files given with `--config run.toml` (`[train]` tables with `total_steps = 8192`;
//!    several files apply in order);
//! 3. command-line options `--group.field value` or `--group.field=value`, hyphens or
//!    underscores in names (`--train.total-steps 8192`); booleans `--evolution.enabled`,
//!    `--evolution.no-enabled`, `--evolution.enabled false`; lists space- or
//!    comma-separated (`--train.resume-search a b` or `a,b`, `--agent.hidden-dims 128,128`);
//!    the map `--specialization.layer-mutation-rates actor=0.02,critic=0.01` (or a TOML
//!    inline table `{ actor = 0.02 }`);
//! 4. the environment variable `EMERGENCE_LAB_OVERRIDES`, whitespace-separated `key=value`
//!    pairs (`"train.total_steps=8192 env.grid_size=10"`; quote values with spaces:
//!    `log.checkpoint_dir="my runs/a"`).
//!
//! [`Config::load_cli`] does all of this and validates; binaries with their own flags first
//! call [`split_args`]. Notebook cells use [`Config::set`] (`config.set("train.total_steps",
//! "8192")?`), [`Config::apply_env_overrides`] and [`Config::validate`].
//!
//! Integers accept `_` separators and integral scientific notation (`1e7`); booleans
//! `true/false/yes/no/on/off/1/0`; enums by name (`lr_schedule` linear|constant, `evolved`
//! all|heads); `train.max_wall_time` durations like `11h30m`, `90m`, `1.5h` or `3600`
//! seconds ([`parse_duration`]).
//!
//! # Errors
//!
//! Every problem names its field: unknown keys suggest the closest valid one, wrong types
//! say what was expected, impossible values say why; all problems found are reported
//! together, one per line ([`ConfigError`]).
//!
//! # Storage and resume
//!
//! [`Config::to_json`] / [`Config::from_json`] round-trip exactly (checkpoints);
//! [`Config::to_toml_string`] writes an editable file. On resume the checkpoint's config is
//! the run's config: [`ConfigOverrides::apply_for_resume`] applies the user's explicit
//! settings, taking run-control fields ([`RUN_CONTROL_FIELDS`]) and rejecting any setting
//! that would change another field.

mod access;
mod budget;
mod cli;
mod device_spec;
mod duration;
mod error;
mod format;
mod interval;
mod overrides;
mod resume;
mod resume_from;
pub mod schema;
mod validate;
mod wall_time;

pub use budget::{format_bytes, machine_memory, max_threads, MemoryEstimate};
pub use cli::split_args;
pub use device_spec::DeviceSpec;
pub use duration::parse_duration;
pub use error::ConfigError;
pub use interval::StepInterval;
pub use overrides::{ConfigOverrides, Origin, Override, ENV_VAR};
pub use resume::{is_run_control, RUN_CONTROL_FIELDS};
pub use resume_from::ResumeFrom;
pub use validate::valid_device;
pub use wall_time::WallTimeLimit;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// The whole configuration of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub env: EnvConfig,
    pub field: FieldConfig,
    pub agent: AgentConfig,
    pub train: TrainConfig,
    pub log: LogConfig,
    pub analysis: AnalysisConfig,
    pub evolution: EvolutionConfig,
    pub specialization: SpecializationConfig,
}

/// The grid world (model.md section 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvConfig {
    /// Side length `G` of the square grid.
    pub grid_size: usize,
    /// Agents alive at reset.
    pub num_agents: usize,
    /// Food items `F` per env.
    pub num_food: usize,
    /// Ticks per episode; the env resets (time-limit truncation) when reached.
    pub max_steps: u32,
    /// Field neighbourhood radius `R` in the observation.
    pub observation_radius: usize,
    /// Nearest foods `K` listed in the observation.
    pub observed_food: usize,
    /// Probability per tick that a collected food respawns.
    pub food_respawn_prob: f64,
}

impl Default for EnvConfig {
    fn default() -> Self {
        Self {
            grid_size: 20,
            num_agents: 8,
            num_food: 10,
            max_steps: 500,
            observation_radius: 5,
            observed_food: 5,
            food_respawn_prob: 0.1,
        }
    }
}

/// The shared diffusing field (model.md section 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldConfig {
    /// Channels `C`.
    pub num_channels: usize,
    /// Blend factor of the 3x3 blur per tick.
    pub diffusion_rate: f64,
    /// Fraction lost per tick.
    pub decay_rate: f64,
    /// Amount each alive agent adds to every channel of its cell per tick.
    pub write_strength: f64,
}

impl Default for FieldConfig {
    fn default() -> Self {
        Self {
            num_channels: 4,
            diffusion_rate: 0.1,
            decay_rate: 0.05,
            write_strength: 1.0,
        }
    }
}

/// The actor-critic network (model.md section 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Widths of the hidden layers.
    pub hidden_dims: Vec<usize>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            hidden_dims: vec![64, 64],
        }
    }
}

/// Learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// Anneal linearly from `learning_rate` to 0 over the run's iterations.
    Linear,
    /// Keep `learning_rate` fixed.
    Constant,
}

/// PPO and run control (model.md section 6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Seed of the one random generator of the run.
    pub seed: u64,
    /// Independent envs `E`.
    pub num_envs: usize,
    /// Rollout length `T` in ticks.
    pub num_steps: usize,
    /// Run length in steps (one step = one agent slot for one env tick).
    pub total_steps: u64,
    pub learning_rate: f64,
    pub lr_schedule: LrSchedule,
    pub gamma: f64,
    pub gae_lambda: f64,
    pub clip_eps: f64,
    pub vf_coef: f64,
    pub ent_coef: f64,
    pub max_grad_norm: f64,
    /// Multiplier on rewards (food reward + specialization bonus) before GAE; the reported
    /// `charts/mean_reward` stays unscaled. 0 means auto: `1 / evolution.food_energy`, so one
    /// food is worth 1 to the learner (raw rewards of 50-100 per food make the unclipped
    /// value loss dominate the gradient-norm clip and PPO stops learning).
    pub reward_scale: f64,
    pub num_epochs: usize,
    pub minibatch_size: usize,
    /// `auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Threads (libtorch and the native CPU pass); 0 measures at start-up and picks the
    /// fastest (the run reports the choice). On the CPU results do not depend on it.
    pub num_threads: usize,
    /// Checkpoint to resume from: a path, `latest`, `auto`, or empty for a fresh start
    /// (written as those strings; `"auto".into()` in code).
    pub resume_from: ResumeFrom,
    /// Extra folders searched by `resume_from = "auto"` (e.g. Kaggle inputs).
    pub resume_search: Vec<String>,
    /// Stop cleanly (and save) before this much wall time, e.g. `11h30m`; empty: no limit.
    pub max_wall_time: WallTimeLimit,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            num_envs: 32,
            num_steps: 128,
            total_steps: 10_000_000,
            learning_rate: 3e-4,
            lr_schedule: LrSchedule::Linear,
            gamma: 0.99,
            gae_lambda: 0.95,
            clip_eps: 0.2,
            vf_coef: 0.5,
            ent_coef: 0.01,
            max_grad_norm: 0.5,
            reward_scale: 0.0,
            num_epochs: 4,
            minibatch_size: 256,
            device: "auto".into(),
            num_threads: 0,
            resume_from: ResumeFrom::Fresh,
            resume_search: Vec::new(),
            max_wall_time: WallTimeLimit::none(),
        }
    }
}

/// Checkpoints, metrics files and progress output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub checkpoint_dir: String,
    /// Periodic checkpoints kept by rotation.
    pub keep_checkpoints: usize,
    /// Steps between periodic checkpoints (<= 0 disables). The default, 5,000,000 (about 38
    /// iterations of the Kaggle config), keeps the 150 MB checkpoints to one every few
    /// minutes at full CPU speed; 100,000 wrote one every iteration.
    pub save_interval: StepInterval,
    /// Least wall-clock time between periodic checkpoints (a duration like `5m`; empty: none).
    /// A periodic save waits until both this time has passed since the last one (or the run's
    /// start) and the step counter crossed a multiple of `save_interval` since the last one:
    /// at full speed a short `save_interval` then writes one file per this time, not one per
    /// iteration. Final, emergency and stop saves ignore it.
    pub min_save_interval: WallTimeLimit,
    /// Steps between progress lines (<= 0 disables).
    pub log_interval: StepInterval,
    /// JSON Lines metrics file (one object per iteration); empty disables.
    pub metrics_path: String,
    /// TensorBoard event folder; empty disables.
    pub tensorboard_dir: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            checkpoint_dir: "checkpoints".into(),
            keep_checkpoints: 5,
            save_interval: StepInterval::every(5_000_000),
            min_save_interval: WallTimeLimit::none(),
            log_interval: StepInterval::every(10_000),
            metrics_path: "runs/metrics.jsonl".into(),
            tensorboard_dir: "runs/tensorboard".into(),
        }
    }
}

/// Emergence and specialization trackers (model.md section 7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisConfig {
    /// Steps between emergence measurements (`<= 0` disables).
    pub emergence_check_interval: StepInterval,
    /// Steps between specialization measurements (`<= 0` disables).
    pub specialization_check_interval: StepInterval,
    /// Previous values an event is judged against.
    pub event_window: usize,
    /// Z-score above which a value is an event.
    pub event_threshold: f64,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        Self {
            emergence_check_interval: StepInterval::every(10_000),
            specialization_check_interval: StepInterval::every(10_000),
            event_window: 20,
            event_threshold: 3.0,
        }
    }
}

/// Which parameters carry per-agent evolved offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Evolved {
    /// Every parameter of the network.
    All,
    /// Actor and critic heads only.
    Heads,
}

/// How the rollout reads the hidden layers' per-agent weight offsets (the update, the saved
/// state and every checkpoint keep them in f32 whatever this says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutOffsets {
    /// The offsets as stored: the rollout acts with exactly the policy the update learns.
    #[default]
    F32,
    /// A copy rounded to IEEE half precision (relative error at most 2^-11), refreshed at
    /// every rollout and birth: half the bytes the rollout streams each tick with
    /// `evolved = "all"` (its bound on a CPU). The behaviour policy then differs from the
    /// learned one by that rounding; PPO's ratio accounts for it.
    F16,
}

/// Energy, death, reproduction and mutation (model.md sections 2 and 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvolutionConfig {
    /// Per-agent weight offsets on/off (the physics always runs).
    pub enabled: bool,
    pub evolved: Evolved,
    /// Precision of the rollout's copy of the hidden layers' weight offsets (`"f32"`: none).
    pub rollout_offsets: RolloutOffsets,
    pub starting_energy: f64,
    pub energy_per_step: f64,
    pub food_energy: f64,
    pub max_energy: f64,
    pub reproduce_threshold: f64,
    pub reproduce_cost: f64,
    pub mutation_std: f64,
    /// Slots `A` per env.
    pub max_agents: usize,
    /// Population floor per env (0 disables).
    pub min_agents: usize,
}

impl Default for EvolutionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            evolved: Evolved::All,
            rollout_offsets: RolloutOffsets::F32,
            starting_energy: 100.0,
            energy_per_step: 1.0,
            food_energy: 50.0,
            max_energy: 200.0,
            reproduce_threshold: 150.0,
            reproduce_cost: 80.0,
            mutation_std: 0.01,
            max_agents: 32,
            min_agents: 2,
        }
    }
}

/// Specialization pressure (model.md section 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SpecializationConfig {
    pub diversity_bonus: f64,
    pub niche_pressure: f64,
    /// Per-layer mutation std: layer-name substring -> std, first match wins.
    pub layer_mutation_rates: IndexMap<String, f64>,
}

impl Config {
    /// A tiny world and network that trains an iteration in milliseconds on one CPU thread
    /// (6x6 grid, 2 envs x 4 slots, 16 ticks per iteration, `[8, 8]` hidden layers): for tests,
    /// smoke runs and the GPU check's `--tiny`. Not meant to learn anything.
    pub fn tiny() -> Self {
        let mut c = Config::default();
        c.env.grid_size = 6;
        c.env.num_agents = 3;
        c.env.num_food = 3;
        c.env.max_steps = 20;
        c.env.observation_radius = 1;
        c.env.observed_food = 2;
        c.field.num_channels = 2;
        c.agent.hidden_dims = vec![8, 8];
        c.train.num_envs = 2;
        c.train.num_steps = 16;
        c.train.minibatch_size = 32;
        c.train.num_epochs = 1;
        c.evolution.max_agents = 4;
        c.train.device = "cpu".into();
        c.train.num_threads = 1;
        c
    }

    /// The values of the seed's Kaggle notebook (32 envs, survival-friendly evolution).
    pub fn kaggle_notebook() -> Self {
        let mut c = Config::default();
        c.env.num_food = 20;
        c.evolution.starting_energy = 200.0;
        c.evolution.food_energy = 100.0;
        c.evolution.reproduce_threshold = 120.0;
        c.evolution.reproduce_cost = 50.0;
        // The notebook saves every 100,000 steps (about one iteration): at most one 150 MB
        // periodic file per 5 minutes.
        c.log.min_save_interval = "5m".into();
        c.specialization.diversity_bonus = 0.1;
        c.specialization.niche_pressure = 0.05;
        c
    }

    /// Observation length: `3 + (2R+1)^2 C + 3K`.
    /// Saturates at `usize::MAX` for sizes [`Config::validate`] rejects.
    pub fn obs_dim(&self) -> usize {
        self.checked_obs_dim().unwrap_or(usize::MAX)
    }

    /// The reward multiplier in effect (`train.reward_scale`, or `1 / food_energy` when 0).
    pub fn effective_reward_scale(&self) -> f64 {
        if self.train.reward_scale > 0.0 {
            self.train.reward_scale
        } else if self.evolution.food_energy > 0.0 {
            1.0 / self.evolution.food_energy
        } else {
            1.0
        }
    }

    /// Steps per PPO iteration: `E * T * A`.
    /// Saturates at `u64::MAX` for sizes [`Config::validate`] rejects.
    pub fn steps_per_iteration(&self) -> u64 {
        (self.train.num_envs as u64)
            .saturating_mul(self.train.num_steps as u64)
            .saturating_mul(self.evolution.max_agents as u64)
    }

    /// `train.max_wall_time` as a duration; `None` when empty (no limit) or unreadable
    /// (which [`Config::validate`] reports).
    pub fn max_wall_time(&self) -> Option<std::time::Duration> {
        self.train.max_wall_time.limit()
    }
}
