//! One tick of every env, in the exact order of model.md section 2 (steps 1-10).
//!
//! Envs are stepped one after another (0..E), each through all ten steps, so the random
//! draws of env `e` (respawns, child placement, floor, reset) all precede those of `e + 1`.

use super::{diffuse_decay, World, NO_PARENT};
use crate::rng::Rng;
use crate::world::ACTION_REPRODUCE;

/// What happened in one tick, across all envs. Reused between ticks (no allocation per
/// tick once the buffers have their size).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickInfo {
    /// `[E*A]` `food_energy` x foods credited this tick (not reduced by the cap); 0 for dead.
    pub rewards: Vec<f32>,
    /// `[E*A]` alive at tick start, dead after the death step.
    pub died: Vec<bool>,
    /// `[E]` foods collected this tick.
    pub foods_eaten: Vec<u32>,
    /// `[E]` deaths this tick.
    pub deaths: Vec<u32>,
    /// Births in the order they happened (env ascending, parent slot ascending).
    pub births: Vec<Birth>,
    /// `(env, slot)` filled by the population floor, in order.
    pub floor_respawns: Vec<(usize, usize)>,
    /// `[E]` living agents after the tick (before any reset).
    pub alive_count: Vec<u32>,
    /// `[E]` the tick reached `max_steps`: the env was reset after this tick.
    pub truncated: Vec<bool>,
    /// `[E*A*obs_dim]`: for envs with `truncated[e]`, the observation of the final
    /// (pre-reset) state, for the bootstrap value; other envs' rows are unspecified.
    pub terminal_obs: Vec<f32>,
    /// `[E]` foods respawned this tick (step 3).
    pub food_respawns: Vec<u32>,
    /// `[E*G*G*C]`: for envs with `truncated[e]`, the field of the final (pre-reset) state;
    /// other envs' rows are unspecified.
    pub terminal_field: Vec<f32>,
    /// `[E*A]`: for envs with `truncated[e]`, each slot's energy in the final (pre-reset)
    /// state, 0 for dead slots; other envs' rows are unspecified.
    pub terminal_energy: Vec<f32>,
}

/// A child born in step 8 of a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Birth {
    /// Env of the birth.
    pub env: usize,
    /// Slot of the parent (its agent paid `reproduce_cost`).
    pub parent_slot: usize,
    /// Slot the child was placed in (the lowest dead slot at that moment).
    pub child_slot: usize,
}

impl TickInfo {
    /// Sizes every buffer for `e` envs x `a` slots and clears the per-tick counts.
    fn prepare(&mut self, e: usize, a: usize, obs_dim: usize, cells: usize) {
        fn reset<T: Clone>(v: &mut Vec<T>, n: usize, x: T) {
            v.clear();
            v.resize(n, x);
        }
        reset(&mut self.rewards, e * a, 0.0);
        reset(&mut self.died, e * a, false);
        reset(&mut self.foods_eaten, e, 0);
        reset(&mut self.deaths, e, 0);
        reset(&mut self.alive_count, e, 0);
        reset(&mut self.truncated, e, false);
        reset(&mut self.food_respawns, e, 0);
        self.births.clear();
        self.floor_respawns.clear();
        // At most one birth or floor agent per slot per tick: reserve once, never grow.
        self.births.reserve(e * a);
        self.floor_respawns.reserve(e * a);
        if self.terminal_obs.len() != e * a * obs_dim {
            self.terminal_obs.resize(e * a * obs_dim, 0.0);
        }
        if self.terminal_field.len() != e * cells {
            self.terminal_field.resize(e * cells, 0.0);
        }
        if self.terminal_energy.len() != e * a {
            self.terminal_energy.resize(e * a, 0.0);
        }
    }
}

impl World {
    /// Advances every env by one tick (model.md section 2, steps 1-10) with `actions`
    /// (`[E*A]`, values 0..6; dead slots are ignored, unknown values act as 0 "stay").
    ///
    /// Random draws, per env in order 0..E: step 3, for each collected food in index order
    /// one `uniform_f32` and, if below `food_respawn_prob`, one `below(G*G)` for its cell;
    /// step 8, per birth `below(3)` for the row offset then `below(3)` for the column
    /// offset; step 9, per floor agent one `below(G*G)`; step 10, if the episode ended, the
    /// draws of [`World::reset_env`].
    ///
    /// Energy is kept in `[0, max_energy]`: a parent's energy after paying
    /// `reproduce_cost` is floored at 0 and a child's (and a fresh agent's) is capped at
    /// `max_energy` (neither matters for configs with
    /// `reproduce_cost <= reproduce_threshold` and costs within the cap).
    pub fn step(&mut self, actions: &[u8], rng: &mut Rng, info: &mut TickInfo) {
        let (e_n, a) = (self.params.num_envs, self.params.num_slots);
        assert_eq!(
            actions.len(),
            e_n * a,
            "actions must be [num_envs * num_slots]"
        );
        let obs_dim = self.obs_dim();
        let cells = self.params.grid_size * self.params.grid_size * self.params.num_channels;
        info.prepare(e_n, a, obs_dim, cells);
        self.scratch.field.resize(cells, 0.0);
        self.scratch.born.resize(a, false);
        let g = self.params.grid_size;
        self.scratch.occupant.resize(g * g, u32::MAX);
        for env in 0..e_n {
            self.step_env(env, actions, rng, info);
            let n = self.alive_count(env);
            info.alive_count[env] = n as u32;
            self.tick[env] += 1;
            if self.tick[env] >= self.params.max_steps {
                info.truncated[env] = true;
                let out = &mut info.terminal_obs[env * a * obs_dim..(env + 1) * a * obs_dim];
                self.observe_env(env, out, false);
                info.terminal_field[env * cells..(env + 1) * cells]
                    .copy_from_slice(&self.field[env * cells..(env + 1) * cells]);
                for k in env * a..(env + 1) * a {
                    info.terminal_energy[k] = if self.alive[k] { self.energy[k] } else { 0.0 };
                }
                self.reset_env(env, rng);
            }
        }
    }

    /// Steps 1-9 of one env.
    fn step_env(&mut self, env: usize, actions: &[u8], rng: &mut Rng, info: &mut TickInfo) {
        let p = &self.params;
        let (a, f, g) = (p.num_slots, p.num_food, p.grid_size);
        let gmax = g as i32 - 1;
        let s = env * a;
        let t = self.tick[env];

        // 1. Move.
        for (k, &act) in (s..s + a).zip(&actions[s..s + a]) {
            if !self.alive[k] {
                continue;
            }
            let (dr, dc) = match act {
                1 => (-1, 0),
                2 => (1, 0),
                3 => (0, -1),
                4 => (0, 1),
                _ => (0, 0),
            };
            self.row[k] = (self.row[k] + dr).clamp(0, gmax);
            self.col[k] = (self.col[k] + dc).clamp(0, gmax);
        }

        // 2. Eat: each uncollected food goes to the closest (Chebyshev) alive agent within
        //    distance 1, ties to the lowest slot. 4. Reward = food_energy per food.
        //    Via an occupancy grid: an agent on the food's cell (distance 0) wins, else the
        //    lowest slot on the 8 neighbouring cells (distance 1).
        let (fe, cap) = (p.food_energy, p.max_energy);
        let occ = &mut self.scratch.occupant;
        for i in (0..a).rev() {
            if self.alive[s + i] {
                occ[self.row[s + i] as usize * g + self.col[s + i] as usize] = i as u32;
            }
        }
        for q in env * f..(env + 1) * f {
            if self.food_collected[q] {
                continue;
            }
            let (fr, fc) = (self.food_row[q] as usize, self.food_col[q] as usize);
            let mut best = occ[fr * g + fc];
            if best == u32::MAX {
                for y in fr.saturating_sub(1)..(fr + 2).min(g) {
                    for x in fc.saturating_sub(1)..(fc + 2).min(g) {
                        best = best.min(occ[y * g + x]);
                    }
                }
            }
            if best != u32::MAX {
                let k = s + best as usize;
                self.food_collected[q] = true;
                info.foods_eaten[env] += 1;
                info.rewards[k] += fe;
                self.energy[k] = (self.energy[k] + fe).min(cap);
            }
        }
        for k in s..s + a {
            if self.alive[k] {
                occ[self.row[k] as usize * g + self.col[k] as usize] = u32::MAX;
            }
        }

        // 3. Food respawn.
        let prob = p.food_respawn_prob;
        for q in env * f..(env + 1) * f {
            if self.food_collected[q] && rng.uniform_f32() < prob {
                info.food_respawns[env] += 1;
                let c = rng.below(g * g);
                self.food_row[q] = (c / g) as i32;
                self.food_col[q] = (c % g) as i32;
                self.food_collected[q] = false;
            }
        }

        // 5. Field: diffuse, decay, then every alive agent writes to all channels of its cell.
        let ch = p.num_channels;
        let cells = g * g * ch;
        let fld = &mut self.field[env * cells..(env + 1) * cells];
        diffuse_decay(
            fld,
            &mut self.scratch.field,
            g,
            ch,
            p.diffusion_rate,
            p.decay_rate,
        );
        let ws = p.write_strength;
        for k in s..s + a {
            if self.alive[k] {
                let at = (self.row[k] as usize * g + self.col[k] as usize) * ch;
                for v in &mut fld[at..at + ch] {
                    *v += ws;
                }
            }
        }

        // 6. Drain. 7. Death.
        let drain = p.energy_per_step;
        for k in s..s + a {
            if self.alive[k] {
                self.energy[k] = (self.energy[k] - drain).max(0.0);
                if self.energy[k] <= 0.0 {
                    self.alive[k] = false;
                    info.died[k] = true;
                    info.deaths[env] += 1;
                }
            }
        }

        // 8. Reproduction into the lowest dead slot; children wait for the next tick.
        let (thr, cost) = (p.reproduce_threshold, p.reproduce_cost);
        let born = &mut self.scratch.born;
        born.fill(false);
        for i in 0..a {
            let k = s + i;
            if !self.alive[k] || born[i] || actions[k] != ACTION_REPRODUCE || self.energy[k] < thr {
                continue;
            }
            let Some(j) = (0..a).find(|&j| !self.alive[s + j]) else {
                break; // no free slot: nothing happens, no cost (and none frees up this step)
            };
            self.energy[k] = (self.energy[k] - cost).max(0.0);
            let du = rng.below(3) as i32 - 1;
            let dv = rng.below(3) as i32 - 1;
            let c = s + j;
            self.row[c] = (self.row[k] + du).clamp(0, gmax);
            self.col[c] = (self.col[k] + dv).clamp(0, gmax);
            self.energy[c] = cost.min(cap);
            self.alive[c] = true;
            self.agent_id[c] = self.next_id[env];
            self.next_id[env] += 1;
            self.parent_id[c] = self.agent_id[k];
            self.birth_tick[c] = t;
            born[j] = true;
            info.births.push(Birth {
                env,
                parent_slot: i,
                child_slot: j,
            });
        }

        // 9. Population floor (Fix): fresh agents in the lowest dead slots.
        let floor = p.min_agents.min(a);
        if floor > 0 {
            let start = p.starting_energy.min(cap).max(0.0);
            let mut n = self.alive_count(env);
            while n < floor {
                let j = (0..a)
                    .find(|&j| !self.alive[s + j])
                    .expect("a dead slot exists below the floor");
                let c = rng.below(g * g);
                self.place_fresh(env, j, c, start, t);
                debug_assert_eq!(self.parent_id[s + j], NO_PARENT);
                info.floor_respawns.push((env, j));
                n += 1;
            }
        }
    }
}
