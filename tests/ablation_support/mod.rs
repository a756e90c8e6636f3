//! Shared helpers of the ablation tests: a tiny config and a checkpoint from a short run.

use std::path::{Path, PathBuf};

use emergence_lab::checkpoint::{write_checkpoint, CheckpointKind};
use emergence_lab::{config::Config, train::TrainState};

/// A tiny, fast config (6x6 grid, 4 slots, 2 envs, 30-tick episodes).
pub fn tiny() -> Config {
    let mut c = Config::tiny();
    c.env.max_steps = 30;
    c.train.num_epochs = 2;
    c.evolution.starting_energy = 60.0;
    c.evolution.reproduce_threshold = 70.0;
    c.evolution.reproduce_cost = 20.0;
    c.evolution.mutation_std = 0.05;
    c.train.seed = 5;
    c
}

/// Trains `iterations` PPO iterations of `config` and writes the state to `dir/name`.
pub fn trained_checkpoint(config: Config, iterations: usize, dir: &Path, name: &str) -> PathBuf {
    tch::set_num_threads(1);
    let mut state = TrainState::new(config, tch::Device::Cpu).expect("tiny config trains");
    for _ in 0..iterations {
        state.iterate().expect("iteration");
    }
    let path = dir.join(name);
    write_checkpoint(&path, &state.to_checkpoint(CheckpointKind::Final), false)
        .expect("write checkpoint");
    path
}
