//! The simulated world of model.md sections 2-4: E independent envs x A agent slots on a
//! G x G grid with food and a shared diffusing field. Pure Rust, no tch.
//!
//! Layout is struct-of-arrays over all envs (`[E * A]` for slots, `[E * F]` for food,
//! `[E * G * G * C]` for the field); observations are written in place into one `f32`
//! buffer `[E, A, obs_dim]`. All randomness comes from the caller's [`Rng`], drawn in a
//! fixed order documented on [`World::reset_env`] and [`World::step`].

mod field;
mod observe;
mod saved;
mod tick;

pub use field::diffuse_decay;
pub use tick::{Birth, TickInfo};

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
    /// Independent envs `E` (`train.num_envs`).
    pub num_envs: usize,
    /// Agent slots per env `A` (`evolution.max_agents`).
    pub num_slots: usize,
    /// Grid side `G` (`env.grid_size`).
    pub grid_size: usize,
    /// Food items per env `F` (`env.num_food`).
    pub num_food: usize,
    /// Field channels `C` (`field.num_channels`).
    pub num_channels: usize,
    /// Ticks per episode (`env.max_steps`).
    pub max_steps: u32,
    /// Field neighbourhood radius `R` (`env.observation_radius`).
    pub observation_radius: usize,
    /// Foods listed per observation `K` (`env.observed_food`).
    pub observed_food: usize,
    /// Per-tick respawn probability of a collected food.
    pub food_respawn_prob: f32,
    /// Blend factor of the 3x3 blur.
    pub diffusion_rate: f32,
    /// Fraction of the field lost per tick.
    pub decay_rate: f32,
    /// Amount an alive agent adds to every channel of its cell per tick.
    pub write_strength: f32,
    /// Agents alive at reset.
    pub num_agents: usize,
    /// Population floor per env (0 disables).
    pub min_agents: usize,
    /// Energy of reset and floor agents.
    pub starting_energy: f32,
    /// Energy drained per tick.
    pub energy_per_step: f32,
    /// Energy (and reward) per food eaten.
    pub food_energy: f32,
    /// Energy cap.
    pub max_energy: f32,
    /// Energy needed to reproduce.
    pub reproduce_threshold: f32,
    /// Energy a parent pays, and its child starts with.
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

    /// Checks what the world needs to run without panics or NaN: at least one env and one
    /// slot, a non-empty grid, finite non-negative physics, probabilities and rates in
    /// [0, 1], and a positive `max_energy`. (Config validation is stricter.)
    pub fn check(&self) -> Result<(), ParamsError> {
        let bad = |field: &'static str, value: String, need: &'static str| {
            Err(ParamsError { field, value, need })
        };
        if self.num_envs == 0 {
            return bad("train.num_envs", "0".into(), "at least 1");
        }
        if self.num_slots == 0 {
            return bad("evolution.max_agents", "0".into(), "at least 1");
        }
        if self.grid_size == 0 {
            return bad("env.grid_size", "0".into(), "at least 1");
        }
        let unit = [
            ("env.food_respawn_prob", self.food_respawn_prob),
            ("field.diffusion_rate", self.diffusion_rate),
            ("field.decay_rate", self.decay_rate),
        ];
        for (field, v) in unit {
            if !(0.0..=1.0).contains(&v) {
                return bad(field, v.to_string(), "a number in [0, 1]");
            }
        }
        let non_negative = [
            ("field.write_strength", self.write_strength),
            ("evolution.starting_energy", self.starting_energy),
            ("evolution.energy_per_step", self.energy_per_step),
            ("evolution.food_energy", self.food_energy),
            ("evolution.reproduce_threshold", self.reproduce_threshold),
            ("evolution.reproduce_cost", self.reproduce_cost),
        ];
        for (field, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, v.to_string(), "a finite number >= 0");
            }
        }
        if !(self.max_energy.is_finite() && self.max_energy > 0.0) {
            return bad(
                "evolution.max_energy",
                self.max_energy.to_string(),
                "a finite number > 0",
            );
        }
        Ok(())
    }

    /// Observation length: `3 + (2R+1)^2 C + 3K`.
    pub fn obs_dim(&self) -> usize {
        let side = 2 * self.observation_radius + 1;
        3 + side * side * self.num_channels + 3 * self.observed_food
    }
}

/// A world parameter the world cannot run with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("world parameter `{field}` is {value}, but must be {need}; fix it in the config")]
pub struct ParamsError {
    /// Config name of the field (`group.field`).
    pub field: &'static str,
    /// The value given.
    pub value: String,
    /// What the value must be.
    pub need: &'static str,
}

/// Parent id of agents that have no parent (episode resets and floor respawns).
///
/// Agent ids start at 1, so id 0 also marks a slot that has never held an agent.
pub const NO_PARENT: u64 = 0;

/// Private per-step scratch space; not state (never affects the future), so it is neither
/// serialised nor compared.
#[derive(Debug, Clone, Default)]
struct Scratch {
    /// One env's field, `G * G * C` (intermediate of the separable blur).
    field: Vec<f32>,
    /// `[A]`: slot received a child this tick (children cannot reproduce on their birth tick).
    born: Vec<bool>,
    /// `[G * G]`: lowest alive slot on each cell during eating, `u32::MAX` when empty
    /// (restored to all `u32::MAX` after use).
    occupant: Vec<u32>,
}

impl PartialEq for Scratch {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The state of all `E` envs (model.md section 2), struct-of-arrays.
///
/// Slot arrays are `[E * A]` (index `e * A + i`), food arrays `[E * F]`, the field
/// `[E * G * G * C]` row-major with channels innermost. Everything that affects the future
/// is a public field and serialises, so save -> restore -> continue is bit-exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct World {
    /// The constants this world runs with.
    pub params: WorldParams,
    /// Slot row (0 = top).
    pub row: Vec<i32>,
    /// Slot column.
    pub col: Vec<i32>,
    /// Slot energy, in `[0, max_energy]`.
    pub energy: Vec<f32>,
    /// Slot holds a living agent.
    pub alive: Vec<bool>,
    /// Id of the agent in the slot (last one, if dead); 0 = never used since reset.
    pub agent_id: Vec<u64>,
    /// Id of the agent's parent, [`NO_PARENT`] for reset and floor agents.
    pub parent_id: Vec<u64>,
    /// Env tick at which the agent was born or placed.
    pub birth_tick: Vec<u32>,
    /// Food row.
    pub food_row: Vec<i32>,
    /// Food column.
    pub food_col: Vec<i32>,
    /// Food has been eaten and not yet respawned.
    pub food_collected: Vec<bool>,
    /// The field, `[E * G * G * C]`.
    pub field: Vec<f32>,
    /// `[E]` tick within the current episode.
    pub tick: Vec<u32>,
    /// `[E]` next agent id; ids are unique per env and never reused (across resets too).
    pub next_id: Vec<u64>,
    #[serde(skip)]
    scratch: Scratch,
}

impl World {
    /// A world with every env reset (model.md "Reset"); envs are reset in order 0..E.
    ///
    /// # Panics
    /// If `params` fail [`WorldParams::check`] (the message names the field); configs that
    /// passed config validation always pass.
    pub fn new(params: WorldParams, rng: &mut Rng) -> World {
        if let Err(e) = params.check() {
            panic!("{e}");
        }
        let (e, a, f) = (params.num_envs, params.num_slots, params.num_food);
        let cells = params.grid_size * params.grid_size * params.num_channels;
        let mut w = World {
            row: vec![0; e * a],
            col: vec![0; e * a],
            energy: vec![0.0; e * a],
            alive: vec![false; e * a],
            agent_id: vec![0; e * a],
            parent_id: vec![NO_PARENT; e * a],
            birth_tick: vec![0; e * a],
            food_row: vec![0; e * f],
            food_col: vec![0; e * f],
            food_collected: vec![false; e * f],
            field: vec![0.0; e * cells],
            tick: vec![0; e],
            next_id: vec![1; e],
            params,
            scratch: Scratch::default(),
        };
        for env in 0..e {
            w.reset_env(env, rng);
        }
        w
    }

    /// Resets one env (model.md "Reset"): tick 0, field zero, every slot cleared and dead,
    /// then `num_agents` fresh agents in slots `0..num_agents` on distinct random cells, then
    /// every food uncollected on a random cell. Ids keep counting (never reused).
    ///
    /// Random draws, in order: for each placed agent, `below(G*G)` repeated until the cell
    /// is free (cells are only required distinct while free cells remain); then for each
    /// food, one `below(G*G)`.
    pub fn reset_env(&mut self, env: usize, rng: &mut Rng) {
        let p = &self.params;
        let (a, f, g) = (p.num_slots, p.num_food, p.grid_size);
        let n = p.num_agents.min(a);
        let start = p.starting_energy.min(p.max_energy).max(0.0);
        let cells = g * g * p.num_channels;
        self.tick[env] = 0;
        self.field[env * cells..(env + 1) * cells].fill(0.0);
        let s = env * a;
        self.row[s..s + a].fill(0);
        self.col[s..s + a].fill(0);
        self.energy[s..s + a].fill(0.0);
        self.alive[s..s + a].fill(false);
        self.agent_id[s..s + a].fill(0);
        self.parent_id[s..s + a].fill(NO_PARENT);
        self.birth_tick[s..s + a].fill(0);
        for i in 0..n {
            let cell = loop {
                let c = rng.below(g * g);
                let taken = i < g * g
                    && (0..i)
                        .any(|j| (self.row[s + j] as usize) * g + self.col[s + j] as usize == c);
                if !taken {
                    break c;
                }
            };
            self.place_fresh(env, i, cell, start, 0);
        }
        for k in env * f..(env + 1) * f {
            let c = rng.below(g * g);
            self.food_row[k] = (c / g) as i32;
            self.food_col[k] = (c % g) as i32;
            self.food_collected[k] = false;
        }
    }

    /// Puts a fresh parentless agent (new id) in `slot` of `env` at grid cell `cell`.
    fn place_fresh(&mut self, env: usize, slot: usize, cell: usize, energy: f32, tick: u32) {
        let g = self.params.grid_size;
        let k = env * self.params.num_slots + slot;
        self.row[k] = (cell / g) as i32;
        self.col[k] = (cell % g) as i32;
        self.energy[k] = energy;
        self.alive[k] = true;
        self.agent_id[k] = self.next_id[env];
        self.next_id[env] += 1;
        self.parent_id[k] = NO_PARENT;
        self.birth_tick[k] = tick;
    }

    /// Observation length per slot: `3 + (2R+1)^2 C + 3K`.
    pub fn obs_dim(&self) -> usize {
        self.params.obs_dim()
    }

    /// Living agents in `env`.
    pub fn alive_count(&self, env: usize) -> usize {
        let a = self.params.num_slots;
        self.alive[env * a..(env + 1) * a]
            .iter()
            .filter(|&&x| x)
            .count()
    }

    /// Number of envs `E`.
    pub fn num_envs(&self) -> usize {
        self.params.num_envs
    }

    /// Slots per env `A`.
    pub fn num_slots(&self) -> usize {
        self.params.num_slots
    }

    /// The field of one env, `G * G * C`.
    pub fn env_field(&self, env: usize) -> &[f32] {
        let n = self.params.grid_size * self.params.grid_size * self.params.num_channels;
        &self.field[env * n..(env + 1) * n]
    }
}
