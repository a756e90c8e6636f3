//! Runs the world alone under a uniformly random policy and records population dynamics.
//!
//! Used to check that a parameter set is survivable before spending GPU hours: alive
//! counts, foods eaten, births, deaths, floor respawns, energy and field statistics per tick.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use crate::world::{ParamsError, TickInfo, World, WorldParams, NUM_ACTIONS};

/// Statistics of one tick over all envs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TickStats {
    /// Tick number (1 = after the first tick).
    pub tick: u64,
    /// Living agents summed over envs after the tick (before any episode reset).
    pub alive: u32,
    /// Smallest per-env alive count after the tick.
    pub min_alive: u32,
    /// Foods eaten this tick, all envs.
    pub foods_eaten: u32,
    /// Births this tick.
    pub births: u32,
    /// Deaths this tick.
    pub deaths: u32,
    /// Agents placed by the population floor this tick.
    pub floor_respawns: u32,
    /// Envs that reached `max_steps` and were reset after this tick.
    pub resets: u32,
    /// Mean energy of the living agents after the tick and any episode reset (0 if none).
    pub mean_energy: f32,
    /// Mean of the field over all envs, cells and channels after the tick and any reset.
    pub field_mean: f32,
    /// Largest field value after the tick and any reset.
    pub field_max: f32,
}

/// A window of ticks aggregated for the summary table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// First tick of the window.
    pub from_tick: u64,
    /// Last tick of the window.
    pub to_tick: u64,
    /// Mean alive agents per env over the window.
    pub alive_per_env: f64,
    /// Smallest per-env alive count seen in the window.
    pub min_alive: u32,
    /// Foods eaten in the window (all envs).
    pub foods_eaten: u64,
    /// Births in the window.
    pub births: u64,
    /// Deaths in the window.
    pub deaths: u64,
    /// Population-floor respawns in the window.
    pub floor_respawns: u64,
    /// Mean of the per-tick mean energy.
    pub mean_energy: f64,
    /// Mean of the per-tick field mean.
    pub field_mean: f64,
    /// Largest field value in the window.
    pub field_max: f32,
}

/// Everything [`simulate`] measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulationReport {
    /// The world constants the run used.
    pub params: WorldParams,
    /// Ticks run.
    pub ticks: u64,
    /// Seed of the run's generator.
    pub seed: u64,
    /// One entry per tick.
    pub per_tick: Vec<TickStats>,
}

/// Runs `ticks` ticks of a fresh world (`params.num_envs` envs) seeded by `seed`, every slot
/// acting uniformly at random over the [`NUM_ACTIONS`] actions.
///
/// One [`Rng`] drives everything: `World::new`, then per tick `below(NUM_ACTIONS)` for each
/// of the `E*A` slots in order (dead slots too), then that tick's world draws.
pub fn simulate(
    params: &WorldParams,
    ticks: u64,
    seed: u64,
) -> Result<SimulationReport, ParamsError> {
    params.check()?;
    let mut rng = Rng::seed_from_u64(seed);
    let mut world = World::new(params.clone(), &mut rng);
    let n = params.num_envs * params.num_slots;
    let mut actions = vec![0u8; n];
    let mut info = TickInfo::default();
    let mut per_tick = Vec::with_capacity(ticks as usize);
    for t in 1..=ticks {
        for a in actions.iter_mut() {
            *a = rng.below(NUM_ACTIONS) as u8;
        }
        world.step(&actions, &mut rng, &mut info);
        per_tick.push(tick_stats(t, &world, &info));
    }
    Ok(SimulationReport {
        params: params.clone(),
        ticks,
        seed,
        per_tick,
    })
}

fn tick_stats(tick: u64, w: &World, info: &TickInfo) -> TickStats {
    let (alive_e, energy_sum) = w
        .alive
        .iter()
        .zip(&w.energy)
        .filter(|(a, _)| **a)
        .fold((0u32, 0.0f64), |(n, s), (_, &e)| (n + 1, s + e as f64));
    let field_sum: f64 = w.field.iter().map(|&v| v as f64).sum();
    TickStats {
        tick,
        alive: info.alive_count.iter().sum(),
        min_alive: info.alive_count.iter().copied().min().unwrap_or(0),
        foods_eaten: info.foods_eaten.iter().sum(),
        births: info.births.len() as u32,
        deaths: info.deaths.iter().sum(),
        floor_respawns: info.floor_respawns.len() as u32,
        resets: info.truncated.iter().filter(|&&t| t).count() as u32,
        mean_energy: if alive_e > 0 {
            (energy_sum / alive_e as f64) as f32
        } else {
            0.0
        },
        field_mean: if w.field.is_empty() {
            0.0
        } else {
            (field_sum / w.field.len() as f64) as f32
        },
        field_max: if w.field.is_empty() {
            0.0
        } else {
            w.field.iter().copied().fold(f32::NEG_INFINITY, f32::max)
        },
    }
}

impl SimulationReport {
    /// Aggregates the run into `rows` windows of (nearly) equal length (one row per 10% of
    /// the run for `rows = 10`); fewer rows when there are fewer ticks.
    pub fn summary(&self, rows: usize) -> Vec<SummaryRow> {
        let n = self.per_tick.len();
        let rows = rows.clamp(1, n.max(1));
        let envs = self.params.num_envs.max(1) as f64;
        (0..rows)
            .filter_map(|r| {
                let window = &self.per_tick[r * n / rows..(r + 1) * n / rows];
                let first = window.first()?;
                let len = window.len() as f64;
                let sum =
                    |f: fn(&TickStats) -> u32| window.iter().map(|s| f(s) as u64).sum::<u64>();
                let mean = |f: fn(&TickStats) -> f32| {
                    window.iter().map(|s| f(s) as f64).sum::<f64>() / len
                };
                Some(SummaryRow {
                    from_tick: first.tick,
                    to_tick: window[window.len() - 1].tick,
                    alive_per_env: sum(|s| s.alive) as f64 / len / envs,
                    min_alive: window.iter().map(|s| s.min_alive).min().unwrap_or(0),
                    foods_eaten: sum(|s| s.foods_eaten),
                    births: sum(|s| s.births),
                    deaths: sum(|s| s.deaths),
                    floor_respawns: sum(|s| s.floor_respawns),
                    mean_energy: mean(|s| s.mean_energy),
                    field_mean: mean(|s| s.field_mean),
                    field_max: window
                        .iter()
                        .map(|s| s.field_max)
                        .fold(f32::NEG_INFINITY, f32::max),
                })
            })
            .collect()
    }

    /// The summary as a plain-text table (one line per row, with a header).
    pub fn table(&self, rows: usize) -> String {
        let mut out = format!(
            "{:>13} {:>9} {:>9} {:>9} {:>8} {:>8} {:>7} {:>8} {:>10} {:>9}\n",
            "ticks",
            "alive/env",
            "min alive",
            "eaten",
            "births",
            "deaths",
            "floor",
            "energy",
            "field mean",
            "field max"
        );
        for r in self.summary(rows) {
            out += &format!(
                "{:>13} {:>9.2} {:>9} {:>9} {:>8} {:>8} {:>7} {:>8.1} {:>10.4} {:>9.3}\n",
                format!("{}-{}", r.from_tick, r.to_tick),
                r.alive_per_env,
                r.min_alive,
                r.foods_eaten,
                r.births,
                r.deaths,
                r.floor_respawns,
                r.mean_energy,
                r.field_mean,
                r.field_max
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn small() -> WorldParams {
        let mut c = Config::kaggle_notebook();
        c.train.num_envs = 3;
        c.env.max_steps = 50;
        WorldParams::from_config(&c)
    }

    #[test]
    fn counts_match_a_hand_driven_world_and_are_reproducible() {
        let p = small();
        let rep = simulate(&p, 120, 5).unwrap();
        assert_eq!(rep.per_tick.len(), 120);
        assert_eq!(rep, simulate(&p, 120, 5).unwrap());
        // Drive the same world by hand with the documented draw order.
        let mut rng = Rng::seed_from_u64(5);
        let mut w = World::new(p.clone(), &mut rng);
        let mut info = TickInfo::default();
        let mut actions = vec![0u8; p.num_envs * p.num_slots];
        let (mut eaten, mut births, mut deaths) = (0u64, 0u64, 0u64);
        for _ in 0..120 {
            actions
                .iter_mut()
                .for_each(|a| *a = rng.below(NUM_ACTIONS) as u8);
            w.step(&actions, &mut rng, &mut info);
            eaten += info.foods_eaten.iter().sum::<u32>() as u64;
            births += info.births.len() as u64;
            deaths += info.deaths.iter().sum::<u32>() as u64;
        }
        let rows = rep.summary(10);
        assert_eq!(rows.len(), 10);
        assert_eq!((rows[0].from_tick, rows[9].to_tick), (1, 120));
        assert_eq!(rows.iter().map(|r| r.foods_eaten).sum::<u64>(), eaten);
        assert_eq!(rows.iter().map(|r| r.births).sum::<u64>(), births);
        assert_eq!(rows.iter().map(|r| r.deaths).sum::<u64>(), deaths);
        assert!(
            eaten > 0 && births > 0,
            "random agents eat and breed: {eaten} {births}"
        );
        assert_eq!(rep.per_tick.iter().map(|s| s.resets).sum::<u32>(), 2 * 3);
        assert!(rep
            .per_tick
            .iter()
            .all(|s| s.field_max >= s.field_mean && s.field_mean >= 0.0));
        let table = rep.table(10);
        assert_eq!(table.lines().count(), 11);
        assert!(table
            .lines()
            .nth(1)
            .unwrap()
            .trim_start()
            .starts_with("1-12 "));
    }

    #[test]
    fn bad_params_are_an_error_naming_the_field() {
        let mut p = small();
        p.food_respawn_prob = 1.5;
        let e = simulate(&p, 10, 0).unwrap_err();
        assert_eq!(e.field, "env.food_respawn_prob");
        assert!(e.to_string().contains("[0, 1]"), "{e}");
        let mut p = small();
        p.grid_size = 0;
        assert_eq!(simulate(&p, 10, 0).unwrap_err().field, "env.grid_size");
    }

    #[test]
    fn summary_of_few_ticks_has_one_row_per_tick() {
        let rep = simulate(&small(), 3, 1).unwrap();
        let rows = rep.summary(10);
        assert_eq!(rows.len(), 3);
        assert!(rows
            .iter()
            .enumerate()
            .all(|(i, r)| r.from_tick == i as u64 + 1 && r.to_tick == r.from_tick));
        assert!(simulate(&small(), 0, 1).unwrap().summary(10).is_empty());
    }
}
