//! The episode loop of one ablation condition: all episodes step together, each in its own
//! one-env [`World`] with its own generator, and every tick the living agents of all
//! episodes go through the network in one batched greedy forward pass.
//!
//! World work (condition, observation, tick, mutation draws) runs in parallel over episodes
//! with rayon; each episode only touches its own state, so results do not depend on the
//! number of threads.

use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use super::results::EpisodeResult;
use super::{AblationOptions, Condition, ObservedBatch, Start};
use crate::checkpoint::copy_env_arrays;
use crate::policy::{MutationSpec, Offsets, Policy};
use crate::rng::{Rng, RngState};
use crate::train::TrainState;
use crate::world::{TickInfo, World, WorldParams, NUM_ACTIONS};

/// The generator of stream `stream` of ChaCha8 seeded with `seed`.
pub(crate) fn stream_rng(seed: u64, stream: u64) -> Rng {
    let base = Rng::seed_from_u64(seed).state();
    Rng::from_state(RngState {
        stream,
        word_pos: 0,
        ..base
    })
}

/// One running episode.
struct Episode {
    world: World,
    rng: Rng,
    noise: Rng,
    start_field: Vec<f32>,
    obs: Vec<f32>,
    actions: Vec<u8>,
    info: TickInfo,
    /// Births of the last tick with their mutation: (parent slot, child slot, noise).
    births: Vec<(usize, usize, Vec<Vec<f32>>)>,
    result: EpisodeResult,
}

impl Episode {
    /// Applies the condition to the world's field and writes the observation.
    fn observe(&mut self, condition: Condition) {
        match condition {
            Condition::Normal | Condition::NoField => {}
            Condition::Zeroed => self.world.field.fill(0.0),
            Condition::Random => {
                for v in self.world.field.iter_mut() {
                    *v = self.noise.uniform_f32();
                }
            }
            Condition::Frozen => self.world.field.copy_from_slice(&self.start_field),
        }
        self.world
            .observe_masked(&mut self.obs, condition == Condition::NoField);
    }

    /// One world tick with `self.actions`, then the mutation draws of its births.
    fn step(&mut self, noise: Option<&MutationSpec>) {
        self.world
            .step(&self.actions, &mut self.rng, &mut self.info);
        let info = &self.info;
        let r = &mut self.result;
        r.total_reward += info.rewards.iter().map(|&x| x as f64).sum::<f64>();
        r.foods_eaten += info.foods_eaten[0] as u64;
        r.deaths += info.deaths[0] as u64;
        r.births += info.births.len() as u64;
        r.floor_respawns += info.floor_respawns.len() as u64;
        r.final_population = info.alive_count[0] as u64;
        self.births.clear();
        if let Some(spec) = noise {
            for b in &info.births {
                self.births
                    .push((b.parent_slot, b.child_slot, spec.draw(&mut self.rng)));
            }
        }
    }
}

/// A one-env world holding a copy of env `e` of `src`, at tick 0.
fn copy_env(params: WorldParams, src: &World, e: usize) -> World {
    let mut w = World::new(params, &mut Rng::seed_from_u64(0));
    // Every saved array of the world (declared once), env `e` of `src` into env 0.
    copy_env_arrays(w.saved_arrays_mut(), 0, &src.saved_arrays(), e);
    w.tick[0] = 0;
    w
}

/// The offsets table `[episodes * A, ...]` at the start of the episodes (see the module
/// docs of `ablation` for which rows come from where).
fn initial_offsets(
    state: &TrainState,
    options: &AblationOptions,
    worlds: &[World],
) -> Option<Offsets> {
    let src = state.offsets.as_ref()?;
    let a = state.world.num_slots();
    let n = options.episodes;
    let table = Offsets::new(&state.policy, &state.config, n * a)?;
    let device = table.device();
    let mut rows: Vec<i64> = Vec::with_capacity(n * a);
    match options.start {
        Start::Checkpoint => {
            let e_n = state.world.num_envs();
            for k in 0..n {
                let e = k % e_n;
                rows.extend((e * a..(e + 1) * a).map(|r| r as i64));
            }
        }
        Start::Fresh => {
            let pool: Vec<i64> = (0..state.world.alive.len())
                .filter(|&s| state.world.alive[s])
                .map(|s| s as i64)
                .collect();
            let per = state.config.env.num_agents;
            for (k, w) in worlds.iter().enumerate() {
                for i in 0..a {
                    // -1 marks a zero row (dead slot, or no living agent to copy).
                    rows.push(if w.alive[i] && !pool.is_empty() {
                        pool[(k * per + i) % pool.len()]
                    } else {
                        -1
                    });
                }
            }
        }
    }
    let keep: Vec<bool> = rows.iter().map(|&r| r >= 0).collect();
    let idx: Vec<i64> = rows.iter().map(|&r| r.max(0)).collect();
    let idx = Tensor::from_slice(&idx).to_device(device);
    let keep = Tensor::from_slice(&keep).to_device(device);
    tch::no_grad(|| {
        for (t, s) in table.tensors.iter().zip(&src.tensors) {
            let mut shape = vec![(n * a) as i64];
            shape.extend(std::iter::repeat_n(1, t.dim() - 1));
            let picked = s.index_select(0, &idx);
            let picked = picked.where_self(&keep.view(shape.as_slice()), &picked.zeros_like());
            let mut t = t.shallow_clone();
            t.copy_(&picked);
        }
    });
    Some(table)
}

/// Greedy actions (first maximal logit) of `rows` (`[n, obs_dim]`) acting with the offsets
/// of table rows `slots`.
fn greedy(
    policy: &Policy,
    offsets: Option<&Offsets>,
    rows: &[f32],
    slots: &[i64],
    out: &mut Vec<u8>,
) {
    out.clear();
    if slots.is_empty() {
        return;
    }
    let n = slots.len() as i64;
    let x = Tensor::from_slice(rows)
        .view([n, 1, policy.obs_dim as i64])
        .to_device(policy.device());
    let logits = tch::no_grad(|| {
        let d = offsets.map(|o| o.by_slots(slots));
        policy.forward(&x, d.as_ref()).0
    });
    let logits = logits
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .flatten(0, -1);
    let logits = Vec::<f32>::try_from(&logits).expect("logits are f32");
    out.extend(logits.chunks_exact(NUM_ACTIONS).map(|l| {
        let mut best = 0;
        for (k, &v) in l.iter().enumerate() {
            if v > l[best] {
                best = k;
            }
        }
        best as u8
    }));
}

/// Runs all episodes of one condition; returns their results in episode order.
pub(super) fn run_condition(
    state: &TrainState,
    options: &AblationOptions,
    condition: Condition,
    pool: Option<&rayon::ThreadPool>,
    inspect: &mut dyn FnMut(&ObservedBatch),
) -> Vec<EpisodeResult> {
    // Runs `f` on every episode in parallel (in `pool` when given).
    fn each(
        pool: Option<&rayon::ThreadPool>,
        eps: &mut [Episode],
        f: impl Fn(&mut Episode) + Sync + Send,
    ) {
        match pool {
            Some(p) => p.install(|| eps.par_iter_mut().for_each(f)),
            None => eps.par_iter_mut().for_each(f),
        }
    }
    let mut params = WorldParams::from_config(&state.config);
    params.num_envs = 1;
    let a = params.num_slots;
    let d = params.obs_dim();
    let e_n = state.world.num_envs();
    let n = options.episodes;

    let mut eps: Vec<Episode> = (0..n)
        .map(|k| {
            let mut rng = stream_rng(options.seed, 2 * k as u64);
            let (world, start_env) = match options.start {
                Start::Checkpoint => (
                    copy_env(params.clone(), &state.world, k % e_n),
                    Some(k % e_n),
                ),
                Start::Fresh => (World::new(params.clone(), &mut rng), None),
            };
            Episode {
                start_field: world.field.clone(),
                world,
                rng,
                noise: stream_rng(options.seed, 2 * k as u64 + 1),
                obs: vec![0.0; a * d],
                actions: vec![0; a],
                info: TickInfo::default(),
                births: Vec::new(),
                result: EpisodeResult::new(k, start_env),
            }
        })
        .collect();
    let worlds: Vec<World> = match options.start {
        Start::Fresh => eps.iter().map(|e| e.world.clone()).collect(),
        Start::Checkpoint => Vec::new(),
    };
    let mut offsets = initial_offsets(state, options, &worlds);
    let spec = offsets.as_ref().map(Offsets::mutation_spec);

    let mut rows: Vec<f32> = Vec::new();
    let mut slots: Vec<i64> = Vec::new();
    let mut row_episode: Vec<usize> = Vec::new();
    let mut actions: Vec<u8> = Vec::new();
    let mut alive_ticks = vec![0u64; n];
    for tick in 0..params.max_steps {
        each(pool, &mut eps, |ep| ep.observe(condition));

        rows.clear();
        slots.clear();
        row_episode.clear();
        for (k, ep) in eps.iter().enumerate() {
            for i in 0..a {
                if ep.world.alive[i] {
                    rows.extend_from_slice(&ep.obs[i * d..(i + 1) * d]);
                    slots.push((k * a + i) as i64);
                    row_episode.push(k);
                    alive_ticks[k] += 1;
                }
            }
        }
        greedy(&state.policy, offsets.as_ref(), &rows, &slots, &mut actions);
        inspect(&ObservedBatch {
            condition,
            tick,
            obs_dim: d,
            episode: &row_episode,
            obs: &rows,
            actions: &actions,
        });
        for ep in eps.iter_mut() {
            ep.actions.fill(0);
        }
        for (&s, &act) in slots.iter().zip(&actions) {
            let s = s as usize;
            eps[s / a].actions[s % a] = act;
        }

        let spec = spec.as_ref();
        each(pool, &mut eps, |ep| ep.step(spec));

        // Offsets: children inherit + mutate (in birth order), floor respawns start at 0.
        if let Some(o) = offsets.as_mut() {
            for (k, ep) in eps.iter().enumerate() {
                for (parent, child, noise) in &ep.births {
                    o.birth_with_noise(k * a + parent, k * a + child, noise);
                }
                for &(_, slot) in &ep.info.floor_respawns {
                    o.zero_rows(k * a + slot..k * a + slot + 1);
                }
            }
        }
    }
    eps.into_iter()
        .zip(alive_ticks)
        .map(|(ep, alive)| {
            let mut r = ep.result;
            r.mean_population = alive as f64 / params.max_steps.max(1) as f64;
            r
        })
        .collect()
}
