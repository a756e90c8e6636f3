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
