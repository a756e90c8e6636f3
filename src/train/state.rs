//! `TrainState`: everything a checkpoint needs (model.md section 8) and the training step
//! `iterate` (TrainState -> TrainState + metrics), PureJaxRL-style.
//!
//! One iteration = rollout -> specialization bonus -> GAE -> PPO update -> metrics, in
//! exactly the order of model.md section 6.

use crate::metrics::names;
use std::time::Instant;

use tch::Device;

use super::TrainError;
use crate::config::{Config, LrSchedule};
use crate::metrics::Metrics;
use crate::policy::{Offsets, Policy};
use crate::ppo::RolloutScratch;
use crate::ppo::{self, specialization, Adam};
use crate::rng::Rng;
use crate::trackers::{TrackerEvent, Trackers};
use crate::world::{World, WorldParams};
use emergence_lab_core::json_array::JsonArray;

/// The complete training state: if it is not here, it is not state.
#[derive(Debug)]
pub struct TrainState {
    /// The run's config (as loaded; saved in checkpoints).
    pub config: Config,
    /// Shared actor-critic weights.
    pub policy: Policy,
    /// Adam state over the shared weights.
    pub adam: Adam,
    /// Per-slot evolved offsets (`None` when `evolution.enabled = false`).
    pub offsets: Option<Offsets>,
    /// All env states.
    pub world: World,
    /// The run's one random generator.
    pub rng: Rng,
    /// Steps done (agent-slot env ticks, dead slots included).
    pub step: u64,
    /// Iterations done.
    pub iteration: u64,
    /// Metrics of every iteration so far (read with [`TrainState::metrics_history`]).
    metrics_history: Vec<Metrics>,
    /// `metrics_history` as compact JSON, the form a checkpoint stores, extended by one record
    /// per iteration: keeping the last iteration ready to write then copies it instead of
    /// serialising a history that grows all run (92 ms at 40,000 iterations).
    metrics_json: JsonArray,
    /// Emergence and specialization trackers (history and events).
    pub trackers: Trackers,
    /// Tracker events raised by the last [`TrainState::iterate`] (transient, not state).
    pub new_events: Vec<TrackerEvent>,
    /// Identity of this run ([`super::new_run_id`]): stored in its checkpoints and in the
    /// first record of its metrics file, so a resume never rewrites another run's files.
    pub run_id: String,
    /// Which implementation runs the PPO minibatches (transient, not state; default
    /// [`ppo::Backend::Auto`]: the native CPU pass on the CPU).
    pub update_backend: ppo::Backend,
    scratch: RolloutScratch,
}

/// Basic checks the learner relies on (the config module's `validate` does the rest).
pub fn check_config(c: &Config) -> Result<(), TrainError> {
    let bad = |m: &str| Err(TrainError::Config(m.to_string()));
    if c.train.num_envs == 0 || c.train.num_steps == 0 || c.evolution.max_agents == 0 {
        return bad("train.num_envs, train.num_steps and evolution.max_agents must be >= 1");
    }
    if c.agent.hidden_dims.is_empty() || c.agent.hidden_dims.contains(&0) {
        return bad("agent.hidden_dims must be a non-empty list of positive widths, e.g. [64, 64]");
    }
    if c.train.minibatch_size == 0 {
        return bad("train.minibatch_size must be >= 1");
    }
    if c.env.grid_size == 0 {
        return bad("env.grid_size must be >= 1");
    }
    WorldParams::from_config(c)
        .check()
        .map_err(|e| TrainError::Config(e.to_string()))?;
    // Sizes: overflowing products and runs larger than this machine's memory are refused
    // here, before anything is allocated.
    let available = crate::config::machine_memory().unwrap_or(u64::MAX);
    c.check_memory(available)
        .map(|_| ())
        .map_err(|e| TrainError::Config(e.to_string()))
}

impl TrainState {
    /// A fresh state: `Rng::seed_from_u64(train.seed)`, then the world's resets, then the
    /// network initialisation, all from that one generator.
    pub fn new(config: Config, device: Device) -> Result<TrainState, TrainError> {
        check_config(&config)?;
        let mut rng = Rng::seed_from_u64(config.train.seed);
        let world = World::new(WorldParams::from_config(&config), &mut rng);
        let policy = Policy::new(world.obs_dim(), &config.agent.hidden_dims, &mut rng, device);
        let adam = Adam::new(std::slice::from_ref(&policy.flat));
        let offsets = Offsets::new(&policy, &config, world.num_envs() * world.num_slots());
        Ok(TrainState::from_parts(
            config, policy, adam, offsets, world, rng,
        ))
    }

    /// Assembles a state at step 0 from its parts (used by checkpoint loading too).
    pub(crate) fn from_parts(
        config: Config,
        policy: Policy,
        adam: Adam,
        offsets: Option<Offsets>,
        world: World,
        rng: Rng,
    ) -> TrainState {
        TrainState {
            trackers: Trackers::new(&config.analysis),
            config,
            policy,
            adam,
            offsets,
            world,
            rng,
            step: 0,
            iteration: 0,
            metrics_history: Vec::new(),
            metrics_json: JsonArray::new(),
            new_events: Vec::new(),
            run_id: super::new_run_id(),
            update_backend: ppo::Backend::Auto,
            scratch: RolloutScratch::default(),
        }
    }

    /// Device of the network.
    pub fn device(&self) -> Device {
        self.policy.device()
    }

    /// Iterations the run takes: `ceil(total_steps / steps_per_iteration)`, at least 1.
    pub fn num_iterations(&self) -> u64 {
        let spi = self.config.steps_per_iteration().max(1);
        self.config.train.total_steps.div_ceil(spi).max(1)
    }

    /// Learning rate of the next iteration: linear from `learning_rate` down to 0 over the
    /// run's iterations (from the iteration counter, so it continues after a resume), or
    /// constant.
    pub fn learning_rate(&self) -> f64 {
        let lr = self.config.train.learning_rate;
        match self.config.train.lr_schedule {
            LrSchedule::Constant => lr,
            LrSchedule::Linear => {
                let frac = 1.0 - self.iteration as f64 / self.num_iterations() as f64;
                lr * frac.max(0.0)
            }
        }
    }

    /// One PPO iteration (model.md section 6). On a NaN/Inf loss returns
    /// [`TrainError::NonFinite`] naming the iteration and metric (the state is then only
    /// good for a debug save).
    pub fn iterate(&mut self) -> Result<Metrics, TrainError> {
        Ok(self
            .iterate_until(&ppo::Interrupt::never())?
            .expect("an iteration that is never interrupted completes"))
    }

    /// [`TrainState::iterate`], polling `stop` before each rollout tick and each update
    /// minibatch. `Ok(None)`: it was interrupted and this state is part-way through the
    /// iteration (world, generator, weights): throw it away and continue from the state of
    /// the last completed iteration (e.g. its checkpoint), which repeats this iteration
    /// exactly.
    pub fn iterate_until(&mut self, stop: &ppo::Interrupt) -> Result<Option<Metrics>, TrainError> {
        let t_start = Instant::now();
        let c = &self.config;
        let (e_n, a_n, t_n) = (c.train.num_envs, c.evolution.max_agents, c.train.num_steps);

        // 1-2. Rollout with bootstrap values.
        let Some(mut rollout) = ppo::collect_until(
            &mut self.world,
            &mut self.rng,
            &self.policy,
            self.offsets.as_mut(),
            t_n,
            &mut self.scratch,
            stop,
        ) else {
            return Ok(None);
        };
        let rollout_s = t_start.elapsed().as_secs_f64();
        let stats = rollout.stats.clone();
        let g = &mut rollout.gae;
        let samples = stats.alive_agent_steps.max(1) as f64;
        let food_reward: f64 = (0..g.alive.len())
            .filter(|&k| g.alive[k])
            .map(|k| g.reward[k] as f64)
            .sum();

        // Specialization pressure from the offsets and alive mask after the rollout; added
        // to every alive reward of the agents present at its end (not to mean_reward).
        let sp = &self.config.specialization;
        if sp.diversity_bonus != 0.0 || sp.niche_pressure != 0.0 {
            let dist =
                specialization::cosine_distances(&self.policy, self.offsets.as_ref(), e_n, a_n);
            let bonus = specialization::bonus_from_distances(
                &dist,
                &self.world.alive,
                a_n,
                sp.diversity_bonus,
                sp.niche_pressure,
            );
            let n = e_n * a_n;
            for k in 0..t_n * n {
                let col = k % n;
                if g.alive[k] && self.world.alive[col] && g.agent_id[k] == self.world.agent_id[col]
                {
                    g.reward[k] += bonus[col];
                }
            }
        }

        // Rewards in learner units (see `train.reward_scale`); mean_reward above stays raw.
        let scale = self.config.effective_reward_scale() as f32;
        if scale != 1.0 {
            g.reward.iter_mut().for_each(|r| *r *= scale);
        }

        // 3. GAE.
        let (adv, ret) = ppo::compute_gae(g, self.config.train.gamma, self.config.train.gae_lambda);
        let (mut value_sum, mut return_sum) = (0f64, 0f64);
        for ((&alive, &v), &r) in g.alive.iter().zip(&g.value).zip(&ret) {
            if alive {
                value_sum += v as f64;
                return_sum += r as f64;
            }
        }

        // 4-5. Update.
        let t_update = Instant::now();
        let lr = self.learning_rate();
        let batch = ppo::build_batch(rollout, &adv, &ret);
        let up = ppo::update_until(
            &self.policy,
            self.offsets.as_ref(),
            &mut self.adam,
            &batch,
            &self.config.train,
            lr,
            &mut self.rng,
            self.update_backend,
            stop,
        )
        .map_err(|e| TrainError::NonFinite {
            iteration: self.iteration + 1,
            metric: e.metric,
            value: e.value,
        })?;
        drop(batch);
        // The rollout's observations are no longer referenced: the next rollout reuses them.
        self.scratch.recycle();
        if up.interrupted {
            return Ok(None);
        }
        let update_s = t_update.elapsed().as_secs_f64();

        self.iteration += 1;
        self.step += self.config.steps_per_iteration();
        let total_s = t_start.elapsed().as_secs_f64();

        // 6. Metrics.
        let mut m = Metrics::new(self.step, self.iteration);
        m.set(names::LOSSES_POLICY_LOSS, up.policy_loss);
        m.set(names::LOSSES_VALUE_LOSS, up.value_loss);
        m.set(names::LOSSES_ENTROPY, up.entropy);
        m.set(names::LOSSES_APPROX_KL, up.approx_kl);
        m.set(names::LOSSES_CLIP_FRACTION, up.clip_fraction);
        m.set(names::LOSSES_TOTAL_LOSS, up.total_loss);
        m.set(names::MEAN_REWARD, food_reward / samples);
        m.set(names::CHARTS_MEAN_VALUE, value_sum / samples);
        m.set(names::CHARTS_MEAN_RETURN, return_sum / samples);
        m.set(names::CHARTS_LEARNING_RATE, lr);
        let w = &self.world;
        let alive: Vec<usize> = (0..w.alive.len()).filter(|&k| w.alive[k]).collect();
        let energies = alive.iter().map(|&k| w.energy[k] as f64);
        let (emin, emax) = energies
            .clone()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(x), b.max(x))
            });
        let oldest = alive
            .iter()
            .map(|&k| w.tick[k / a_n].saturating_sub(w.birth_tick[k]) as f64)
            .fold(0.0, f64::max);
        let any = !alive.is_empty();
        m.set(
            names::POPULATION,
            stats.alive_agent_steps as f64 / (e_n * t_n) as f64,
        );
        m.set(names::WORLD_BIRTHS, stats.births as f64);
        m.set(names::WORLD_DEATHS, stats.deaths as f64);
        m.set(names::WORLD_FOODS_EATEN, stats.foods_eaten as f64);
        m.set(names::WORLD_FLOOR_RESPAWNS, stats.floor_respawns as f64);
        m.set(
            names::WORLD_MEAN_ENERGY,
            if any {
                energies.sum::<f64>() / alive.len() as f64
            } else {
                0.0
            },
        );
        m.set(names::WORLD_MIN_ENERGY, if any { emin } else { 0.0 });
        m.set(names::WORLD_MAX_ENERGY, if any { emax } else { 0.0 });
        m.set(names::WORLD_OLDEST_AGE, oldest);
        m.set(
            names::PERF_STEPS_PER_SEC,
            self.config.steps_per_iteration() as f64 / total_s,
        );
        m.set(names::PERF_ENV_TICKS, (e_n * t_n) as f64);
        m.set(
            names::PERF_ALIVE_AGENT_STEPS,
            stats.alive_agent_steps as f64,
        );
        m.set(names::PERF_ROLLOUT_S, rollout_s);
        m.set(names::PERF_UPDATE_S, update_s);
        m.set(names::PERF_WORLD_S, stats.world_s);
        m.set(names::PERF_NETWORK_S, stats.network_s);
        m.set(names::PERF_OFFSETS_S, stats.offsets_s);
        m.set(names::PERF_MINIBATCHES, up.minibatches as f64);
        let pr = &up.profile;
        m.set(names::PERF_UPDATE_BATCH_S, pr.batch_s);
        m.set(names::PERF_UPDATE_GATHER_S, pr.gather_s);
        m.set(names::PERF_UPDATE_FORWARD_S, pr.forward_s);
        m.set(names::PERF_UPDATE_BACKWARD_S, pr.backward_s);
        m.set(names::PERF_UPDATE_ADAM_S, pr.adam_s);
        m.set(names::PERF_UPDATE_SYNC_S, pr.sync_s);
        m.set(names::PERF_UPDATE_HOST_SYNCS, pr.host_syncs as f64);

        // 7. Trackers (env 0), at their intervals.
        self.new_events.clear();
        let prev_step = self.step - self.config.steps_per_iteration();
        if self.trackers.emergence_due(prev_step, self.step) {
            let p = &self.world.params;
            let ev = self.trackers.update_emergence(
                self.step,
                self.world.env_field(0),
                p.grid_size,
                p.num_channels,
            )?;
            self.new_events.extend(ev);
        }
        if self.trackers.specialization_due(prev_step, self.step) {
            let rows = self.effective_evolved_weights(0);
            let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
            let ev = self.trackers.update_specialization(self.step, &refs)?;
            self.new_events.extend(ev);
        }
        self.trackers.record_into(&mut m);
        self.record_metrics(m.clone());
        Ok(Some(m))
    }

    /// Metrics of every iteration so far.
    pub fn metrics_history(&self) -> &[Metrics] {
        &self.metrics_history
    }

    /// The metrics history as compact JSON (`serde_json::to_string` of it, byte for byte).
    pub(crate) fn metrics_json(&self) -> &str {
        self.metrics_json.as_str()
    }

    /// Appends one iteration's metrics to the history and to its JSON.
    fn record_metrics(&mut self, m: Metrics) {
        self.metrics_json.push(&m).expect("metrics serialise");
        self.metrics_history.push(m);
    }

    /// Replaces the metrics history (a restored checkpoint's).
    pub(crate) fn set_metrics_history(&mut self, history: Vec<Metrics>) {
        self.metrics_json = JsonArray::of(&history).expect("metrics serialise");
        self.metrics_history = history;
    }

    /// Flattened effective evolved weights (`w + d_i`) of the alive agents of `env`, in
    /// slot order. Without offsets every agent acts with the shared weights.
    pub fn effective_evolved_weights(&self, env: usize) -> Vec<Vec<f32>> {
        let a = self.world.num_slots();
        let shared: Vec<usize> = match &self.offsets {
            Some(o) => o.param_index.clone(),
            None => crate::policy::offsets::evolved_names(
                &self.policy.names,
                self.config.evolution.evolved,
            ),
        };
        let to_vec = |t: tch::Tensor| -> Vec<f32> {
            Vec::try_from(t.to_device(Device::Cpu).flatten(0, -1)).unwrap_or_default()
        };
        (env * a..(env + 1) * a)
            .filter(|&k| self.world.alive[k])
            .map(|k| {
                let parts: Vec<tch::Tensor> = shared
                    .iter()
                    .enumerate()
                    .map(|(j, &pi)| {
                        let w = self.policy.params[pi].detach();
                        let u = match &self.offsets {
                            Some(o) => w + o.tensors[j].get(k as i64),
                            None => w,
                        };
                        u.flatten(0, -1)
                    })
                    .collect();
                to_vec(tch::Tensor::cat(&parts, 0))
            })
            .collect()
    }
}
