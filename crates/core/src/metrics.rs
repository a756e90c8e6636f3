//! Per-iteration metrics: one named set of numbers per PPO iteration, keyed by step.
//!
//! Names are grouped by prefix like CleanRL (`losses/...`, `charts/...`, `world/...`,
//! `perf/...`); the JSONL and TensorBoard sinks and the reports all read this type.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// The metrics of one iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Metrics {
    /// Step counter after the iteration (agent-slot env ticks, dead slots included).
    pub step: u64,
    /// Iteration index, starting at 1 for the first completed iteration.
    pub iteration: u64,
    /// Named values in insertion order, e.g. `losses/policy_loss`, `charts/mean_reward`.
    pub values: IndexMap<String, f64>,
}

impl Metrics {
    /// Empty metrics for `step` / `iteration`.
    pub fn new(step: u64, iteration: u64) -> Self {
        Self {
            step,
            iteration,
            values: IndexMap::new(),
        }
    }

    /// Sets a value (replacing an earlier one of the same name).
    pub fn set(&mut self, name: &str, value: f64) {
        self.values.insert(name.to_string(), value);
    }

    /// A value by name.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }
}

/// The metric names, in one place (the trainer sets them; sinks, reports and binaries read them).
pub mod names {
    /// `charts/iteration`.
    pub const CHARTS_ITERATION: &str = "charts/iteration";
    /// `charts/learning_rate`.
    pub const CHARTS_LEARNING_RATE: &str = "charts/learning_rate";
    /// `charts/mean_return`.
    pub const CHARTS_MEAN_RETURN: &str = "charts/mean_return";
    /// `charts/mean_reward`.
    pub const MEAN_REWARD: &str = "charts/mean_reward";
    /// `charts/mean_value`.
    pub const CHARTS_MEAN_VALUE: &str = "charts/mean_value";
    /// `emergence/entropy`.
    pub const EMERGENCE_ENTROPY: &str = "emergence/entropy";
    /// `emergence/structure`.
    pub const EMERGENCE_STRUCTURE: &str = "emergence/structure";
    /// `losses/approx_kl`.
    pub const LOSSES_APPROX_KL: &str = "losses/approx_kl";
    /// `losses/clip_fraction`.
    pub const LOSSES_CLIP_FRACTION: &str = "losses/clip_fraction";
    /// `losses/entropy`.
    pub const LOSSES_ENTROPY: &str = "losses/entropy";
    /// `losses/policy_loss`.
    pub const LOSSES_POLICY_LOSS: &str = "losses/policy_loss";
    /// `losses/total_loss`.
    pub const LOSSES_TOTAL_LOSS: &str = "losses/total_loss";
    /// `losses/value_loss`.
    pub const LOSSES_VALUE_LOSS: &str = "losses/value_loss";
    /// `perf/alive_agent_steps`.
    pub const PERF_ALIVE_AGENT_STEPS: &str = "perf/alive_agent_steps";
    /// `perf/env_ticks`.
    pub const PERF_ENV_TICKS: &str = "perf/env_ticks";
    /// `perf/minibatches`.
    pub const PERF_MINIBATCHES: &str = "perf/minibatches";
    /// `perf/network_s`.
    pub const PERF_NETWORK_S: &str = "perf/network_s";
    /// `perf/offsets_s`.
    pub const PERF_OFFSETS_S: &str = "perf/offsets_s";
    /// `perf/rollout_s`.
    pub const PERF_ROLLOUT_S: &str = "perf/rollout_s";
    /// `perf/steps_per_sec`.
    pub const PERF_STEPS_PER_SEC: &str = "perf/steps_per_sec";
    /// `perf/update_adam_s`.
    pub const PERF_UPDATE_ADAM_S: &str = "perf/update_adam_s";
    /// `perf/update_backward_s`.
    pub const PERF_UPDATE_BACKWARD_S: &str = "perf/update_backward_s";
    /// `perf/update_batch_s`.
    pub const PERF_UPDATE_BATCH_S: &str = "perf/update_batch_s";
    /// `perf/update_forward_s`.
    pub const PERF_UPDATE_FORWARD_S: &str = "perf/update_forward_s";
    /// `perf/update_gather_s`.
    pub const PERF_UPDATE_GATHER_S: &str = "perf/update_gather_s";
    /// `perf/update_host_syncs`.
    pub const PERF_UPDATE_HOST_SYNCS: &str = "perf/update_host_syncs";
    /// `perf/update_s`.
    pub const PERF_UPDATE_S: &str = "perf/update_s";
    /// `perf/update_sync_s`.
    pub const PERF_UPDATE_SYNC_S: &str = "perf/update_sync_s";
    /// `perf/world_s`.
    pub const PERF_WORLD_S: &str = "perf/world_s";
    /// `specialization/max_divergence`.
    pub const SPECIALIZATION_MAX_DIVERGENCE: &str = "specialization/max_divergence";
    /// `specialization/num_alive`.
    pub const SPECIALIZATION_NUM_ALIVE: &str = "specialization/num_alive";
    /// `specialization/weight_divergence`.
    pub const SPECIALIZATION_WEIGHT_DIVERGENCE: &str = "specialization/weight_divergence";
    /// `world/births`.
    pub const WORLD_BIRTHS: &str = "world/births";
    /// `world/deaths`.
    pub const WORLD_DEATHS: &str = "world/deaths";
    /// `world/floor_respawns`.
    pub const WORLD_FLOOR_RESPAWNS: &str = "world/floor_respawns";
    /// `world/foods_eaten`.
    pub const WORLD_FOODS_EATEN: &str = "world/foods_eaten";
    /// `world/max_energy`.
    pub const WORLD_MAX_ENERGY: &str = "world/max_energy";
    /// `world/mean_energy`.
    pub const WORLD_MEAN_ENERGY: &str = "world/mean_energy";
    /// `world/min_energy`.
    pub const WORLD_MIN_ENERGY: &str = "world/min_energy";
    /// `world/oldest_age`.
    pub const WORLD_OLDEST_AGE: &str = "world/oldest_age";
    /// `world/population`.
    pub const POPULATION: &str = "world/population";
}
