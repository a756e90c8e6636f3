//! emergence_lab: multi-agent reinforcement learning + evolution ("Emergence Lab") on tch.
//!
//! Agents on a grid read and write a shared diffusing field, eat, die and reproduce with
//! heritable per-agent weights, while a shared actor-critic policy learns with PPO. The
//! library is written to be driven from evcxr notebook cells as well as from the `train`
//! binary. Data flows one way: config -> world -> rollout -> PPO update -> TrainState ->
//! checkpoint / metrics / reporter.

pub mod ablation;
pub mod checkpoint;
pub mod device;
pub mod policy;
pub mod ppo;
pub mod report;
pub mod train;

// What needs no tensors lives in the libtorch-free core crate; re-exported so a notebook cell
// needs only `:dep emergence_lab`.
pub use emergence_lab_core::{
    act, config, metrics, progress, rng, simulate, sinks, trackers, world,
};
