//! The simulated world of model.md sections 2-4: E independent envs x A agent slots on a
//! G x G grid with food and a shared diffusing field. Pure Rust, no tch.
//!
//! Layout is struct-of-arrays over all envs (`[E * A]` for slots, `[E * F]` for food,
//! `[E * G * G * C]` for the field); observations are written in place into one `f32`
//! buffer `[E, A, obs_dim]`. All randomness comes from the caller's [`Rng`].

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::rng::Rng;

/// Number of actions: stay, up, down, left, right, reproduce.
pub const NUM_ACTIONS: usize = 6;
/// The reproduce action.
pub const ACTION_REPRODUCE: u8 = 5;

/// World constants derived from a [`Config`] (f32 physics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorldParams {
    pub num_envs: usize,
    pub num_slots: usize,
    pub grid_size: usize,
    pub num_food: usize,
    pub num_channels: usize,
    pub max_steps: u32,
    pub observation_radius: usize,
    pub observed_food: usize,
    pub food_respawn_prob: f32,
    pub diffusion_rate: f32,
    pub decay_rate: f32,
    pub write_strength: f32,
    pub num_agents: usize,
    pub min_agents: usize,
    pub starting_energy: f32,
    pub energy_per_step: f32,
    pub food_energy: f32,
    pub max_energy: f32,
    pub reproduce_threshold: f32,
    pub reproduce_cost: f32,
}

impl WorldParams {
    /// Derives the world constants from a (validated) config.
    pub fn from_config(c: &Config) -> Self {
        Self {
            num_envs: c.train.num_envs,
            num_slots: c.evolution.max_agents,
            grid_size: c.env.grid_size,
            num_food: c.env.num_food,
            num_channels: c.field.num_channels,
            max_steps: c.env.max_steps,
            observation_radius: c.env.observation_radius,
            observed_food: c.env.observed_food,
            food_respawn_prob: c.env.food_respawn_prob as f32,
            diffusion_rate: c.field.diffusion_rate as f32,
            decay_rate: c.field.decay_rate as f32,
            write_strength: c.field.write_strength as f32,
            num_agents: c.env.num_agents,
            min_agents: c.evolution.min_agents,
            starting_energy: c.evolution.starting_energy as f32,
            energy_per_step: c.evolution.energy_per_step as f32,
            food_energy: c.evolution.food_energy as f32,
            max_energy: c.evolution.max_energy as f32,
            reproduce_threshold: c.evolution.reproduce_threshold as f32,
            reproduce_cost: c.evolution.reproduce_cost as f32,
        }
    }

    /// Observation length: `3 + (2R+1)^2 C + 3K`.
    pub fn obs_dim(&self) -> usize {
        let side = 2 * self.observation_radius + 1;
        3 + side * side * self.num_channels + 3 * self.observed_food
    }
}
