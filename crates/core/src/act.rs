//! The acting step, written once for everything that makes agents act: the PPO rollout, the
//! ablation's episodes, `simulate`, and the tests that play a policy.
//!
//! One step of a set of worlds (model.md sections 3 and 6.1):
//!
//! 1. **observe**: every world writes its observations (in parallel); the living agents' rows of
//!    all worlds are gathered into one [`Batch`], world by world in slot order (dead slots never
//!    reach the network);
//! 2. **choose**: the [`Brain`] scores the batch in one call (the network), and each world's
//!    generator picks the actions ([`Choice`]: sampled from log-probabilities, greedy, or
//!    uniformly random without observing);
//! 3. **tick**: every world steps with its actions and its own generator (in parallel), then
//!    draws the mutation of each birth from that generator, in birth order ([`MutationSpec`]:
//!    the one place a mutation is drawn);
//! 4. **lineage**: world by world, the brain hears what the tick did to each slot's heritable
//!    weights, in one order: births (parent row plus the drawn mutation), floor respawns (zero),
//!    episode resets (zero the env's slots).
//!
//! Random draws per world and tick: the choice's draws (one `uniform_f32` per living slot for
//! [`Choice::Sampled`], one `below(NUM_ACTIONS)` per slot, dead ones too, for
//! [`Choice::Uniform`], none for [`Choice::Greedy`]), then the world's draws, then the mutations.
//! Each world only touches its own state in the parallel phases, so results do not depend on the
//! number of threads.

use std::ops::Range;
use std::time::Instant;

use rayon::prelude::*;

use crate::rng::Rng;
use crate::world::{TickInfo, World, NUM_ACTIONS};

/// How actions are chosen from the brain's scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Scores are log-probabilities; one uniform draw per living agent (inverse CDF).
    Sampled,
    /// The first maximal score; no draws.
    Greedy,
    /// Uniformly random over the actions for every slot (dead ones too), without observing or
    /// asking the brain: the world's own random-policy baseline.
    Uniform,
}

/// The shapes and standard deviations of one mutation of a slot's heritable weights (plain
/// data, shareable across threads).
#[derive(Debug, Clone, PartialEq)]
pub struct MutationSpec {
    /// Elements per slot of each evolved parameter.
    pub numel: Vec<usize>,
    /// Mutation std of each evolved parameter.
    pub stds: Vec<f32>,
}

impl MutationSpec {
    /// One mutation: `N(0, std^2)` per element, in parameter order then row-major element
    /// order; parameters with std 0 draw nothing (zeros).
    pub fn draw(&self, rng: &mut Rng) -> Vec<Vec<f32>> {
        self.numel
            .iter()
            .zip(&self.stds)
            .map(|(&n, &std)| {
                if std == 0.0 {
                    vec![0.0; n]
                } else {
                    (0..n).map(|_| rng.normal_f32() * std).collect()
                }
            })
            .collect()
    }
}

/// What a tick did to the heritable weights of one world's slots (slot indices of that world).
#[derive(Debug, Clone, PartialEq)]
pub enum Lineage<'a> {
    /// `child` was born from `parent`: its weights become the parent's plus `mutation`
    /// (empty when the step was given no [`MutationSpec`]).
    Birth {
        parent: usize,
        child: usize,
        mutation: &'a [Vec<f32>],
    },
    /// The population floor placed a fresh agent in `slot`: zero weights.
    Respawn { slot: usize },
    /// The env owning `slots` reached its time limit and was reset: zero weights.
    Reset { slots: Range<usize> },
}

impl Lineage<'_> {
    /// The slots whose weights the event overwrites, and whether with zeros.
    pub fn overwrites(&self) -> (Range<usize>, bool) {
        match self {
            Lineage::Birth { child, .. } => (*child..*child + 1, false),
            Lineage::Respawn { slot } => (*slot..*slot + 1, true),
            Lineage::Reset { slots } => (slots.clone(), true),
        }
    }
}

/// Reusable buffers of one acting world.
#[derive(Debug, Default)]
pub struct ActBuffers {
    /// `[E*A, obs_dim]` observations of every slot (last observe).
    pub obs: Vec<f32>,
    /// `[E*A]` actions of the last tick (0 for dead slots).
    pub actions: Vec<u8>,
    /// What the last tick did.
    pub info: TickInfo,
    /// The mutations of the last tick's births, in birth order.
    pub mutations: Vec<Vec<Vec<f32>>>,
}

/// Mutable access to the parts of one acting world.
pub struct ActorParts<'a> {
    /// The world.
    pub world: &'a mut World,
    /// Its generator (actions, world draws, mutations).
    pub rng: &'a mut Rng,
    /// Its buffers.
    pub buffers: &'a mut ActBuffers,
}

/// One world that acts: a world, its generator and its buffers.
pub trait Actor: Send {
    /// The parts, borrowed together.
    fn parts(&mut self) -> ActorParts<'_>;
    /// The world (read-only).
    fn world(&self) -> &World;
    /// The buffers (read-only).
    fn buffers(&self) -> &ActBuffers;
    /// Writes every slot's observation into the buffers (an ablation condition may change the
    /// world's field first or hide it).
    fn observe(&mut self) {
        let p = self.parts();
        p.buffers.obs.resize(
            p.world.num_envs() * p.world.num_slots() * p.world.obs_dim(),
            0.0,
        );
        p.world.observe(&mut p.buffers.obs);
    }
    /// Called right after this world's tick and mutation draws, in the parallel phase (own
    /// state only).
    fn ticked(&mut self) {}
}

/// A world borrowed for acting.
pub struct BorrowedActor<'a> {
    /// The world.
    pub world: &'a mut World,
    /// Its generator.
    pub rng: &'a mut Rng,
    /// Its buffers.
    pub buffers: &'a mut ActBuffers,
}

impl Actor for BorrowedActor<'_> {
    fn parts(&mut self) -> ActorParts<'_> {
        ActorParts {
            world: self.world,
            rng: self.rng,
            buffers: self.buffers,
        }
    }
    fn world(&self) -> &World {
        self.world
    }
    fn buffers(&self) -> &ActBuffers {
        self.buffers
    }
}

/// A world that owns its generator and buffers.
#[derive(Debug)]
pub struct OwnedActor {
    /// The world.
    pub world: World,
    /// Its generator.
    pub rng: Rng,
    /// Its buffers.
    pub buffers: ActBuffers,
}

impl Actor for OwnedActor {
    fn parts(&mut self) -> ActorParts<'_> {
        ActorParts {
            world: &mut self.world,
            rng: &mut self.rng,
            buffers: &mut self.buffers,
        }
    }
    fn world(&self) -> &World {
        &self.world
    }
    fn buffers(&self) -> &ActBuffers {
        &self.buffers
    }
}

/// The living agents' observations of all worlds at one tick, world by world in slot order.
#[derive(Debug, Default)]
pub struct Batch {
    /// Observation length.
    pub obs_dim: usize,
    /// `[rows, obs_dim]` observations.
    pub rows: Vec<f32>,
    /// World of each row (index into the actors).
    pub actor: Vec<usize>,
    /// Slot of each row within its world.
    pub slot: Vec<usize>,
    /// Row of each agent in a table stacking every world's slots (`actor * slots + slot`),
    /// as the network's offset tables index them.
    pub table_row: Vec<i64>,
}

impl Batch {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.slot.len()
    }

    /// No living agent.
    pub fn is_empty(&self) -> bool {
        self.slot.is_empty()
    }

    /// Gathers the living agents' rows of `actors` (after their observe).
    pub fn gather<A: Actor>(&mut self, actors: &[A]) {
        self.rows.clear();
        self.actor.clear();
        self.slot.clear();
        self.table_row.clear();
        for (i, a) in actors.iter().enumerate() {
            let w = a.world();
            let (n, d) = (w.num_envs() * w.num_slots(), w.obs_dim());
            self.obs_dim = d;
            let obs = &a.buffers().obs;
            for k in (0..n).filter(|&k| w.alive[k]) {
                self.rows.extend_from_slice(&obs[k * d..(k + 1) * d]);
                self.actor.push(i);
                self.slot.push(k);
                self.table_row.push((i * n + k) as i64);
            }
        }
    }
}

/// The network side of the acting step, and the observer of what the step did.
pub trait Brain<A: Actor> {
    /// Scores of every row of `batch` (`NUM_ACTIONS` per row): log-probabilities for
    /// [`Choice::Sampled`], anything ordered for [`Choice::Greedy`]. Never called for
    /// [`Choice::Uniform`] or an empty batch.
    fn scores(&mut self, batch: &Batch) -> &[f32];
    /// The actions are chosen (`actions[j]` for row `j`), before the tick.
    fn chosen(&mut self, _actors: &[A], _batch: &Batch, _actions: &[u8]) {}
    /// World `index` ticked (its info and mutations are in its buffers), before its lineage.
    fn ticked(&mut self, _index: usize, _actor: &A) {}
    /// What world `index`'s tick did to its slots' heritable weights, in order.
    fn lineage(&mut self, _index: usize, _event: Lineage<'_>) {}
}

/// Runs `f` on every actor: inline for one, in parallel (in `pool` when given) for more.
fn each<A: Actor>(
    pool: Option<&rayon::ThreadPool>,
    actors: &mut [A],
    f: impl Fn(&mut A) + Sync + Send,
) {
    match (actors.len(), pool) {
        (0, _) => {}
        (1, _) => f(&mut actors[0]),
        (_, Some(p)) => p.install(|| actors.par_iter_mut().for_each(f)),
        (_, None) => actors.par_iter_mut().for_each(f),
    }
}

/// The acting step and its reusable batch.
#[derive(Debug, Default)]
pub struct Acting {
    batch: Batch,
    actions: Vec<u8>,
}

impl Acting {
    /// The batch of the last [`Acting::observe`] or [`Acting::step`].
    pub fn batch(&self) -> &Batch {
        &self.batch
    }

    /// Phase 1 alone: every world observes and the living rows are gathered (for example the
    /// rollout's bootstrap values after its last tick). Returns the seconds spent.
    pub fn observe<A: Actor>(&mut self, actors: &mut [A], pool: Option<&rayon::ThreadPool>) -> f64 {
        let t = Instant::now();
        each(pool, actors, |a| a.observe());
        self.batch.gather(actors);
        t.elapsed().as_secs_f64()
    }

    /// One acting step of every world (see the module docs). `mutation` is the shape of a
    /// birth's mutation (None: births carry no heritable weights to mutate). Returns the
    /// wall-clock seconds spent in the world's code (observing and ticking).
    pub fn step<A: Actor, B: Brain<A>>(
        &mut self,
        actors: &mut [A],
        choice: Choice,
        mutation: Option<&MutationSpec>,
        brain: &mut B,
        pool: Option<&rayon::ThreadPool>,
    ) -> f64 {
        let mut world_s = 0.0;
        for a in actors.iter_mut() {
            let p = a.parts();
            let n = p.world.num_envs() * p.world.num_slots();
            p.buffers.actions.clear();
            p.buffers.actions.resize(n, 0);
        }
        if choice == Choice::Uniform {
            for a in actors.iter_mut() {
                let p = a.parts();
                for act in p.buffers.actions.iter_mut() {
                    *act = p.rng.below(NUM_ACTIONS) as u8;
                }
            }
        } else {
            world_s += self.observe(actors, pool);
            self.choose(actors, choice, brain);
        }

        let t = Instant::now();
        each(pool, actors, |a| {
            let p = a.parts();
            let b = p.buffers;
            p.world.step(&b.actions, p.rng, &mut b.info);
            b.mutations.clear();
            if let Some(spec) = mutation {
                for _ in &b.info.births {
                    b.mutations.push(spec.draw(p.rng));
                }
            }
            a.ticked();
        });
        world_s += t.elapsed().as_secs_f64();

        for (i, a) in actors.iter().enumerate() {
            brain.ticked(i, a);
            let a_n = a.world().num_slots();
            let b = a.buffers();
            let info = &b.info;
            for (j, birth) in info.births.iter().enumerate() {
                brain.lineage(
                    i,
                    Lineage::Birth {
                        parent: birth.env * a_n + birth.parent_slot,
                        child: birth.env * a_n + birth.child_slot,
                        mutation: b.mutations.get(j).map_or(&[], |m| m.as_slice()),
                    },
                );
            }
            for &(env, slot) in &info.floor_respawns {
                brain.lineage(
                    i,
                    Lineage::Respawn {
                        slot: env * a_n + slot,
                    },
                );
            }
            for (env, _) in info.truncated.iter().enumerate().filter(|(_, &t)| t) {
                brain.lineage(
                    i,
                    Lineage::Reset {
                        slots: env * a_n..(env + 1) * a_n,
                    },
                );
            }
        }
        world_s
    }

    /// Phase 2: the brain scores the batch, each world's generator picks its rows' actions.
    fn choose<A: Actor, B: Brain<A>>(&mut self, actors: &mut [A], choice: Choice, brain: &mut B) {
        self.actions.clear();
        if self.batch.is_empty() {
            brain.chosen(actors, &self.batch, &self.actions);
            return;
        }
        let scores = brain.scores(&self.batch);
        assert_eq!(
            scores.len(),
            self.batch.len() * NUM_ACTIONS,
            "the brain must score every row of the batch"
        );
        for (j, row) in scores.chunks_exact(NUM_ACTIONS).enumerate() {
            let p = actors[self.batch.actor[j]].parts();
            let act = match choice {
                Choice::Sampled => sample_action(row, p.rng),
                Choice::Greedy | Choice::Uniform => greedy_action(row),
            };
            p.buffers.actions[self.batch.slot[j]] = act;
            self.actions.push(act);
        }
        brain.chosen(actors, &self.batch, &self.actions);
    }
}

/// Samples an action from log-probabilities with one uniform draw (inverse CDF); rounding
/// that leaves the cumulative sum below the draw picks the last action of non-zero probability.
pub fn sample_action(logp: &[f32], rng: &mut Rng) -> u8 {
    let u = rng.uniform_f32();
    let mut cum = 0f32;
    let mut last_nonzero = 0;
    for (k, &lp) in logp.iter().enumerate() {
        let p = lp.exp();
        if p > 0.0 {
            last_nonzero = k;
        }
        cum += p;
        if u < cum {
            return k as u8;
        }
    }
    last_nonzero as u8
}

/// The first maximal score's action.
pub fn greedy_action(scores: &[f32]) -> u8 {
    let mut best = 0;
    for (k, &v) in scores.iter().enumerate() {
        if v > scores[best] {
            best = k;
        }
    }
    best as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::world::WorldParams;

    /// A world that breeds quickly, with its own generator and buffers.
    fn own(seed: u64) -> OwnedActor {
        let mut c = Config::tiny();
        c.train.num_envs = 2;
        c.env.max_steps = 7;
        c.evolution.max_agents = 8;
        c.env.num_food = 8;
        c.evolution.starting_energy = 200.0;
        c.evolution.food_energy = 100.0;
        c.evolution.reproduce_threshold = 120.0;
        c.evolution.reproduce_cost = 50.0;
        let mut rng = Rng::seed_from_u64(seed);
        let world = World::new(WorldParams::from_config(&c), &mut rng);
        OwnedActor {
            world,
            rng,
            buffers: ActBuffers::default(),
        }
    }

    /// Scores from the observation (a fixed function), recording every lineage event.
    #[derive(Default)]
    struct Log {
        scores: Vec<f32>,
        events: Vec<(usize, String)>,
    }

    impl<A: Actor> Brain<A> for Log {
        fn scores(&mut self, batch: &Batch) -> &[f32] {
            self.scores = batch
                .rows
                .chunks(batch.obs_dim)
                .flat_map(|r| {
                    let s: f32 = r.iter().enumerate().map(|(i, v)| v * (i % 7) as f32).sum();
                    let preferred = (s.abs() * 1000.0) as usize % NUM_ACTIONS;
                    // Log-probabilities: 0.5 for the preferred action, 0.1 for the others.
                    (0..NUM_ACTIONS).map(move |k| {
                        if k == preferred {
                            0.5f32.ln()
                        } else {
                            0.1f32.ln()
                        }
                    })
                })
                .collect();
            &self.scores
        }
        fn lineage(&mut self, index: usize, event: Lineage<'_>) {
            let name = match &event {
                Lineage::Birth { mutation, .. } => format!("birth {}", mutation.len()),
                Lineage::Respawn { .. } => "respawn".into(),
                Lineage::Reset { slots } => format!("reset {slots:?}"),
            };
            self.events.push((index, name));
        }
    }

    #[test]
    fn worlds_stepped_together_equal_worlds_stepped_alone_and_events_come_in_order() {
        let spec = MutationSpec {
            numel: vec![3, 2],
            stds: vec![0.1, 0.0],
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for choice in [Choice::Sampled, Choice::Greedy, Choice::Uniform] {
            let mut together = vec![own(1), own(2)];
            let mut log = Log::default();
            let mut acting = Acting::default();
            for _ in 0..20 {
                acting.step(&mut together, choice, Some(&spec), &mut log, Some(&pool));
            }
            for (i, seed) in [1u64, 2].into_iter().enumerate() {
                let mut alone = vec![own(seed)];
                let mut log1 = Log::default();
                let mut acting1 = Acting::default();
                for _ in 0..20 {
                    acting1.step(&mut alone, choice, Some(&spec), &mut log1, None);
                }
                let w = &alone[0].world;
                assert_eq!(w.alive, together[i].world.alive, "{choice:?}");
                assert_eq!(w.energy, together[i].world.energy, "{choice:?}");
                assert_eq!(w.field, together[i].world.field, "{choice:?}");
                assert_eq!(alone[0].rng.state(), together[i].rng.state(), "{choice:?}");
                let mine: Vec<&String> = log
                    .events
                    .iter()
                    .filter(|e| e.0 == i)
                    .map(|e| &e.1)
                    .collect();
                let want: Vec<&String> = log1.events.iter().map(|e| &e.1).collect();
                assert_eq!(mine, want, "{choice:?}");
            }
            // Births carry the drawn mutation; 20 ticks of 7-tick episodes reset both envs
            // of each world twice.
            assert!(
                log.events.iter().any(|e| e.1 == "birth 2"),
                "{:?}",
                log.events
            );
            let resets = log
                .events
                .iter()
                .filter(|e| e.1.starts_with("reset"))
                .count();
            assert_eq!(resets, 2 * 2 * 2, "{:?}", log.events);
        }
    }

    #[test]
    fn sampling_follows_the_probabilities() {
        let logp: Vec<f32> = [0.1f32, 0.2, 0.3, 0.4, 0.0, 0.0]
            .iter()
            .map(|p| p.ln())
            .collect();
        let mut rng = Rng::seed_from_u64(3);
        let mut counts = [0u32; NUM_ACTIONS];
        for _ in 0..20_000 {
            counts[sample_action(&logp, &mut rng) as usize] += 1;
        }
        assert_eq!(
            counts[4] + counts[5],
            0,
            "zero probability is never drawn: {counts:?}"
        );
        for (k, p) in [0.1, 0.2, 0.3, 0.4].iter().enumerate() {
            let f = counts[k] as f64 / 20_000.0;
            assert!((f - p).abs() < 0.015, "action {k}: {f} vs {p} ({counts:?})");
        }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(greedy_action(&[0.0, 2.0, 1.0, 2.0, -1.0, 0.5]), 1);
        assert_eq!(greedy_action(&[3.0, 2.0, 1.0, 2.0, -1.0, 0.5]), 0);
    }
}
