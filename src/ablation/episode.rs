//! The episode loop of one ablation condition: all episodes step together, each in its own
//! one-env [`World`] with its own generator, and every tick the living agents of all
//! episodes go through the network in one batched greedy forward pass.
//!
//! World work (condition, observation, tick, mutation draws) runs in parallel over episodes
//! with rayon; each episode only touches its own state, so results do not depend on the
//! number of threads.

use tch::{Device, Kind, Tensor};

use super::results::EpisodeResult;
use super::{AblationOptions, Condition, ObservedBatch, Start};
use crate::act::{
    ActBuffers, Acting, Actor, ActorParts, Batch, Brain, Choice, Lineage, OwnedActor,
};
use crate::checkpoint::copy_env_arrays;
use crate::policy::{Offsets, Policy};
use crate::rng::{Rng, RngState};
use crate::train::TrainState;
use crate::world::{World, WorldParams};

/// The generator of stream `stream` of ChaCha8 seeded with `seed`.
pub(crate) fn stream_rng(seed: u64, stream: u64) -> Rng {
    let base = Rng::seed_from_u64(seed).state();
    Rng::from_state(RngState {
        stream,
        word_pos: 0,
        ..base
    })
}

/// One running episode: a one-env world acting with its own generator.
struct Episode {
    /// The world, its generator and buffers.
    own: OwnedActor,
    /// The `Random` condition's field values (a stream of their own).
    noise: Rng,
    condition: Condition,
    start_field: Vec<f32>,
    result: EpisodeResult,
}

impl Actor for Episode {
    fn parts(&mut self) -> ActorParts<'_> {
        self.own.parts()
    }

    fn world(&self) -> &World {
        &self.own.world
    }

    fn buffers(&self) -> &ActBuffers {
        &self.own.buffers
    }

    /// Applies the condition to the world's field, then observes (without the field for
    /// `NoField`).
    fn observe(&mut self) {
        let OwnedActor { world, buffers, .. } = &mut self.own;
        match self.condition {
            Condition::Normal | Condition::NoField => {}
            Condition::Zeroed => world.field.fill(0.0),
            Condition::Random => {
                for v in world.field.iter_mut() {
                    *v = self.noise.uniform_f32();
                }
            }
            Condition::Frozen => world.field.copy_from_slice(&self.start_field),
        }
        buffers.obs.resize(world.num_slots() * world.obs_dim(), 0.0);
        world.observe_masked(&mut buffers.obs, self.condition == Condition::NoField);
    }

    fn ticked(&mut self) {
        let info = &self.own.buffers.info;
        let r = &mut self.result;
        r.total_reward += info.rewards.iter().map(|&x| x as f64).sum::<f64>();
        r.foods_eaten += info.foods_eaten[0] as u64;
        r.deaths += info.deaths[0] as u64;
        r.births += info.births.len() as u64;
        r.floor_respawns += info.floor_respawns.len() as u64;
        r.final_population = info.alive_count[0] as u64;
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

/// The ablation's side of the acting step: greedy actions of the shared policy with every
/// episode's offsets (one batched forward pass per tick), the inspection hook, and the offsets
/// of births and respawns.
struct GreedyPolicy<'a> {
    policy: &'a Policy,
    offsets: Option<Offsets>,
    condition: Condition,
    /// Slots per episode (an episode's rows in the offsets table start at `index * slots`).
    slots: usize,
    tick: u32,
    logits: Vec<f32>,
    alive_ticks: Vec<u64>,
    inspect: &'a mut dyn FnMut(&ObservedBatch),
}

impl Brain<Episode> for GreedyPolicy<'_> {
    /// The logits of the living agents (first maximal logit wins).
    fn scores(&mut self, batch: &Batch) -> &[f32] {
        let x = Tensor::from_slice(&batch.rows)
            .view([batch.len() as i64, 1, batch.obs_dim as i64])
            .to_device(self.policy.device());
        let logits = tch::no_grad(|| {
            let d = self.offsets.as_ref().map(|o| o.by_slots(&batch.table_row));
            self.policy.forward(&x, d.as_ref()).0
        });
        let logits = logits
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .flatten(0, -1);
        self.logits = Vec::<f32>::try_from(&logits).expect("logits are f32");
        &self.logits
    }

    fn chosen(&mut self, _actors: &[Episode], batch: &Batch, actions: &[u8]) {
        for &k in &batch.actor {
            self.alive_ticks[k] += 1;
        }
        (self.inspect)(&ObservedBatch {
            condition: self.condition,
            tick: self.tick,
            obs_dim: batch.obs_dim,
            episode: &batch.actor,
            obs: &batch.rows,
            actions,
        });
    }

    /// Children inherit + mutate (in birth order); floor respawns and the final reset start
    /// from zero.
    fn lineage(&mut self, index: usize, event: Lineage<'_>) {
        let Some(o) = self.offsets.as_mut() else {
            return;
        };
        o.apply(index * self.slots, &event);
    }
}

/// Runs all episodes of one condition; returns their results in episode order.
pub(super) fn run_condition(
    state: &TrainState,
    options: &AblationOptions,
    condition: Condition,
    pool: Option<&rayon::ThreadPool>,
    inspect: &mut dyn FnMut(&ObservedBatch),
) -> Vec<EpisodeResult> {
    let mut params = WorldParams::from_config(&state.config);
    params.num_envs = 1;
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
                own: OwnedActor {
                    world,
                    rng,
                    buffers: ActBuffers::default(),
                },
                noise: stream_rng(options.seed, 2 * k as u64 + 1),
                condition,
                result: EpisodeResult::new(k, start_env),
            }
        })
        .collect();
    let worlds: Vec<World> = match options.start {
        Start::Fresh => eps.iter().map(|e| e.own.world.clone()).collect(),
        Start::Checkpoint => Vec::new(),
    };
    let offsets = initial_offsets(state, options, &worlds);
    let mutation = offsets.as_ref().map(Offsets::mutation_spec);
    let mut brain = GreedyPolicy {
        policy: &state.policy,
        offsets,
        condition,
        slots: params.num_slots,
        tick: 0,
        logits: Vec::new(),
        alive_ticks: vec![0; n],
        inspect,
    };
    let mut acting = Acting::default();
    for tick in 0..params.max_steps {
        brain.tick = tick;
        acting.step(
            &mut eps,
            Choice::Greedy,
            mutation.as_ref(),
            &mut brain,
            pool,
        );
    }
    let alive_ticks = brain.alive_ticks;
    eps.into_iter()
        .zip(alive_ticks)
        .map(|(ep, alive)| {
            let mut r = ep.result;
            r.mean_population = alive as f64 / params.max_steps.max(1) as f64;
            r
        })
        .collect()
}
