//! Runs the world alone under a uniformly random policy and records population dynamics.
//!
//! Used to check that a parameter set is survivable before spending GPU hours: alive
//! counts, foods eaten and respawned, births, deaths, floor respawns, energy and field
//! statistics per tick, over all envs and per env. Energy and field values are those at the
//! end of the tick: for an env whose episode ended at that tick, the end-of-episode values
//! (before its reset).

use serde::{Deserialize, Serialize};

use crate::act::{ActBuffers, Acting, Actor, Batch, BorrowedActor, Brain, Choice};
use crate::rng::Rng;
use crate::world::{ParamsError, TickInfo, World, WorldParams};

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
    /// Foods respawned this tick, all envs.
    pub foods_respawned: u32,
    /// Births this tick.
    pub births: u32,
    /// Deaths this tick.
    pub deaths: u32,
    /// Agents placed by the population floor this tick.
    pub floor_respawns: u32,
    /// Envs that reached `max_steps` and were reset after this tick.
    pub resets: u32,
    /// Mean energy of the living agents at the end of the tick (0 if none).
    pub mean_energy: f32,
    /// Mean of the field over all envs, cells and channels at the end of the tick.
    pub field_mean: f32,
    /// Largest field value at the end of the tick.
    pub field_max: f32,
    /// Fraction of field values (all envs, cells, channels) above the report's
    /// `field_threshold` at the end of the tick.
    pub field_above: f32,
}

/// One env's statistics, one entry per tick (columns, so the JSON stays compact).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvSeries {
    /// Env index.
    pub env: usize,
    /// Living agents at the end of the tick.
    pub alive: Vec<u32>,
    /// Foods eaten.
    pub foods_eaten: Vec<u32>,
    /// Foods respawned.
    pub foods_respawned: Vec<u32>,
    /// Births.
    pub births: Vec<u32>,
    /// Deaths.
    pub deaths: Vec<u32>,
    /// Population-floor respawns.
    pub floor_respawns: Vec<u32>,
    /// The episode ended at this tick (the env was reset after it).
    pub reset: Vec<bool>,
    /// Mean energy of the living agents (0 if none).
    pub mean_energy: Vec<f32>,
    /// Mean field value.
    pub field_mean: Vec<f32>,
    /// Largest field value.
    pub field_max: Vec<f32>,
    /// Fraction of field values above `field_threshold`.
    pub field_above: Vec<f32>,
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
    /// Foods respawned in the window (all envs).
    pub foods_respawned: u64,
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
    /// Mean of the per-tick fraction of field values above `field_threshold`.
    pub field_above: f64,
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
    /// The field value above which a cell counts in `field_above`.
    pub field_threshold: f32,
    /// One entry per tick, all envs together.
    pub per_tick: Vec<TickStats>,
    /// One series per env.
    pub per_env: Vec<EnvSeries>,
}

/// Runs `ticks` ticks of a fresh world (`params.num_envs` envs) seeded by `seed`, every slot
/// acting uniformly at random over the [`NUM_ACTIONS`] actions; `field_threshold` is the field
/// value above which a cell counts in `field_above`.
///
/// One [`Rng`] drives everything: `World::new`, then per tick the acting step's
/// [`Choice::Uniform`] (`below(NUM_ACTIONS)` for each of the `E*A` slots in order, dead slots
/// too), then that tick's world draws.
pub fn simulate(
    params: &WorldParams,
    ticks: u64,
    seed: u64,
    field_threshold: f32,
) -> Result<SimulationReport, ParamsError> {
    params.check()?;
    let mut rng = Rng::seed_from_u64(seed);
    let mut world = World::new(params.clone(), &mut rng);
    let mut buffers = ActBuffers::default();
    let mut recorder = Recorder {
        field_threshold,
        per_tick: Vec::with_capacity(ticks as usize),
        per_env: (0..params.num_envs)
            .map(|env| EnvSeries {
                env,
                ..EnvSeries::default()
            })
            .collect(),
    };
    let mut acting = Acting::default();
    let mut actors = [BorrowedActor {
        world: &mut world,
        rng: &mut rng,
        buffers: &mut buffers,
    }];
    for _ in 1..=ticks {
        acting.step(&mut actors, Choice::Uniform, None, &mut recorder, None);
    }
    let Recorder {
        per_tick, per_env, ..
    } = recorder;
    Ok(SimulationReport {
        params: params.clone(),
        ticks,
        seed,
        field_threshold,
        per_tick,
        per_env,
    })
}

/// Records every tick's statistics (the acting step's observer; it chooses nothing).
struct Recorder {
    field_threshold: f32,
    per_tick: Vec<TickStats>,
    per_env: Vec<EnvSeries>,
}

impl<A: Actor> Brain<A> for Recorder {
    fn scores(&mut self, _batch: &Batch) -> &[f32] {
        // Choice::Uniform never asks for scores.
        &[]
    }

    fn ticked(&mut self, _index: usize, actor: &A) {
        let t = self.per_tick.len() as u64 + 1;
        let stats = tick_stats(
            t,
            actor.world(),
            &actor.buffers().info,
            self.field_threshold,
            &mut self.per_env,
        );
        self.per_tick.push(stats);
    }
}

/// End-of-tick energy and field sums of one env (end-of-episode values for a reset env).
struct EnvEnd {
    alive: u32,
    energy_sum: f64,
    field_sum: f64,
    field_max: f32,
    field_above: u64,
    cells: usize,
}

fn env_end(env: usize, w: &World, info: &TickInfo, threshold: f32) -> EnvEnd {
    let a = w.params.num_slots;
    let cells = w.params.grid_size * w.params.grid_size * w.params.num_channels;
    let slots = env * a..(env + 1) * a;
    let (field, energy_sum) = if info.truncated[env] {
        let e: f64 = info.terminal_energy[slots].iter().map(|&e| e as f64).sum();
        (&info.terminal_field[env * cells..(env + 1) * cells], e)
    } else {
        let e: f64 = slots
            .filter(|&k| w.alive[k])
            .map(|k| w.energy[k] as f64)
            .sum();
        (&w.field[env * cells..(env + 1) * cells], e)
    };
    EnvEnd {
        alive: info.alive_count[env],
        energy_sum,
        field_sum: field.iter().map(|&v| v as f64).sum(),
        field_max: field.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        field_above: field.iter().filter(|&&v| v > threshold).count() as u64,
        cells,
    }
}

fn tick_stats(
    tick: u64,
    w: &World,
    info: &TickInfo,
    threshold: f32,
    per_env: &mut [EnvSeries],
) -> TickStats {
    let mut births = vec![0u32; per_env.len()];
    for b in &info.births {
        births[b.env] += 1;
    }
    let mut floor = vec![0u32; per_env.len()];
    for &(env, _) in &info.floor_respawns {
        floor[env] += 1;
    }
    let (mut alive, mut energy, mut fsum, mut fmax, mut above, mut cells) =
        (0u64, 0.0f64, 0.0f64, f32::NEG_INFINITY, 0u64, 0usize);
    for (env, series) in per_env.iter_mut().enumerate() {
        let end = env_end(env, w, info, threshold);
        let mean = |sum: f64, n: f64| if n > 0.0 { (sum / n) as f32 } else { 0.0 };
        series.alive.push(end.alive);
        series.foods_eaten.push(info.foods_eaten[env]);
        series.foods_respawned.push(info.food_respawns[env]);
        series.births.push(births[env]);
        series.deaths.push(info.deaths[env]);
        series.floor_respawns.push(floor[env]);
        series.reset.push(info.truncated[env]);
        series
            .mean_energy
            .push(mean(end.energy_sum, end.alive as f64));
        series
            .field_mean
            .push(mean(end.field_sum, end.cells as f64));
        series
            .field_max
            .push(if end.cells > 0 { end.field_max } else { 0.0 });
        series
            .field_above
            .push(mean(end.field_above as f64, end.cells as f64));
        alive += end.alive as u64;
        energy += end.energy_sum;
        fsum += end.field_sum;
        fmax = fmax.max(end.field_max);
        above += end.field_above;
        cells += end.cells;
    }
    let ratio = |sum: f64, n: f64| if n > 0.0 { (sum / n) as f32 } else { 0.0 };
    TickStats {
        tick,
        alive: info.alive_count.iter().sum(),
        min_alive: info.alive_count.iter().copied().min().unwrap_or(0),
        foods_eaten: info.foods_eaten.iter().sum(),
        foods_respawned: info.food_respawns.iter().sum(),
        births: info.births.len() as u32,
        deaths: info.deaths.iter().sum(),
        floor_respawns: info.floor_respawns.len() as u32,
        resets: info.truncated.iter().filter(|&&t| t).count() as u32,
        mean_energy: ratio(energy, alive as f64),
        field_mean: ratio(fsum, cells as f64),
        field_max: if cells > 0 { fmax } else { 0.0 },
        field_above: ratio(above as f64, cells as f64),
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
                    foods_respawned: sum(|s| s.foods_respawned),
                    births: sum(|s| s.births),
                    deaths: sum(|s| s.deaths),
                    floor_respawns: sum(|s| s.floor_respawns),
                    mean_energy: mean(|s| s.mean_energy),
                    field_mean: mean(|s| s.field_mean),
                    field_max: window
                        .iter()
                        .map(|s| s.field_max)
                        .fold(f32::NEG_INFINITY, f32::max),
                    field_above: mean(|s| s.field_above),
                })
            })
            .collect()
    }

    /// The summary as a plain-text table (one line per row, with a header).
    pub fn table(&self, rows: usize) -> String {
        let mut out = format!(
            "{:>13} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>7} {:>8} {:>10} {:>9} {:>9}\n",
            "ticks",
            "alive/env",
            "min alive",
            "eaten",
            "respawned",
            "births",
            "deaths",
            "floor",
            "energy",
            "field mean",
            "field max",
            format!("f>{}", self.field_threshold)
        );
        for r in self.summary(rows) {
            out += &format!(
                "{:>13} {:>9.2} {:>9} {:>9} {:>9} {:>8} {:>8} {:>7} {:>8.1} {:>10.4} {:>9.3} {:>8.1}%\n",
                format!("{}-{}", r.from_tick, r.to_tick),
                r.alive_per_env,
                r.min_alive,
                r.foods_eaten,
                r.foods_respawned,
                r.births,
                r.deaths,
                r.floor_respawns,
                r.mean_energy,
                r.field_mean,
                r.field_max,
                r.field_above * 100.0
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::world::NUM_ACTIONS;

    fn small() -> WorldParams {
        let mut c = Config::kaggle_notebook();
        c.train.num_envs = 3;
        c.env.max_steps = 50;
        WorldParams::from_config(&c)
    }

    #[test]
    fn counts_match_a_hand_driven_world_and_are_reproducible() {
        let p = small();
        let rep = simulate(&p, 120, 5, 0.5).unwrap();
        assert_eq!(rep.per_tick.len(), 120);
        assert_eq!(rep, simulate(&p, 120, 5, 0.5).unwrap());
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
    fn an_env_reset_at_a_tick_reports_its_end_of_episode_values() {
        let p = small(); // max_steps 50: every env resets after tick 50
        let rep = simulate(&p, 50, 3, 0.5).unwrap();
        let mut rng = Rng::seed_from_u64(3);
        let mut w = World::new(p.clone(), &mut rng);
        let mut info = TickInfo::default();
        let mut actions = vec![0u8; p.num_envs * p.num_slots];
        for _ in 0..50 {
            actions
                .iter_mut()
                .for_each(|a| *a = rng.below(NUM_ACTIONS) as u8);
            w.step(&actions, &mut rng, &mut info);
        }
        assert!(info.truncated.iter().all(|&t| t));
        let cells = p.grid_size * p.grid_size * p.num_channels;
        for e in 0..p.num_envs {
            let s = &rep.per_env[e];
            assert!(s.reset[49] && !s.reset[48]);
            let pre = &info.terminal_field[e * cells..(e + 1) * cells];
            let pre_mean = (pre.iter().map(|&v| v as f64).sum::<f64>() / cells as f64) as f32;
            let post = &w.field[e * cells..(e + 1) * cells];
            let post_mean = (post.iter().map(|&v| v as f64).sum::<f64>() / cells as f64) as f32;
            assert_eq!(
                s.field_mean[49], pre_mean,
                "end-of-episode field, not the reset one"
            );
            assert_ne!(pre_mean, post_mean);
            let alive: Vec<f32> = (e * p.num_slots..(e + 1) * p.num_slots)
                .map(|k| info.terminal_energy[k])
                .filter(|&x| x > 0.0)
                .collect();
            if s.alive[49] > 0 {
                let want =
                    (alive.iter().map(|&x| x as f64).sum::<f64>() / s.alive[49] as f64) as f32;
                assert_eq!(s.mean_energy[49], want);
            }
        }
    }

    #[test]
    fn per_env_series_add_up_to_the_totals() {
        let p = small();
        let rep = simulate(&p, 120, 9, 0.2).unwrap();
        assert_eq!(rep.per_env.len(), p.num_envs);
        for (t, tick) in rep.per_tick.iter().enumerate() {
            let sum =
                |f: fn(&EnvSeries) -> &Vec<u32>| rep.per_env.iter().map(|s| f(s)[t]).sum::<u32>();
            assert_eq!(sum(|s| &s.alive), tick.alive);
            assert_eq!(sum(|s| &s.foods_eaten), tick.foods_eaten);
            assert_eq!(sum(|s| &s.foods_respawned), tick.foods_respawned);
            assert_eq!(sum(|s| &s.births), tick.births);
            assert_eq!(sum(|s| &s.deaths), tick.deaths);
            assert_eq!(sum(|s| &s.floor_respawns), tick.floor_respawns);
            let fmax = rep
                .per_env
                .iter()
                .map(|s| s.field_max[t])
                .fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(fmax, tick.field_max);
            assert!((0.0..=1.0).contains(&tick.field_above));
        }
        let eaten: u32 = rep.per_tick.iter().map(|s| s.foods_eaten).sum();
        let respawned: u32 = rep.per_tick.iter().map(|s| s.foods_respawned).sum();
        assert!(
            respawned > 0 && respawned <= eaten,
            "{respawned} of {eaten}"
        );
        // A higher threshold never counts more cells.
        let high = simulate(&p, 120, 9, 1e9).unwrap();
        assert!(high.per_tick.iter().all(|s| s.field_above == 0.0));
    }

    #[test]
    fn bad_params_are_an_error_naming_the_field() {
        let mut p = small();
        p.food_respawn_prob = 1.5;
        let e = simulate(&p, 10, 0, 0.5).unwrap_err();
        assert_eq!(e.field, "env.food_respawn_prob");
        assert!(e.to_string().contains("[0, 1]"), "{e}");
        let mut p = small();
        p.grid_size = 0;
        assert_eq!(simulate(&p, 10, 0, 0.5).unwrap_err().field, "env.grid_size");
    }

    #[test]
    fn summary_of_few_ticks_has_one_row_per_tick() {
        let rep = simulate(&small(), 3, 1, 0.5).unwrap();
        let rows = rep.summary(10);
        assert_eq!(rows.len(), 3);
        assert!(rows
            .iter()
            .enumerate()
            .all(|(i, r)| r.from_tick == i as u64 + 1 && r.to_tick == r.from_tick));
        assert!(simulate(&small(), 0, 1, 0.5)
            .unwrap()
            .summary(10)
            .is_empty());
    }
}
