//! The PPO update (model.md section 6.4), CleanRL-style: epochs x minibatches of whole
//! agent segments, masked advantage normalisation, clipped surrogate, value loss, entropy
//! bonus, global grad-norm clip, Adam on the shared weights only.
//!
//! Samples are grouped into chunks of at most [`CHUNK_LEN`] consecutive ticks of one agent;
//! a minibatch is a padded `[U, L]` block of chunks, so each agent's offsets are gathered
//! once per minibatch and applied to all its timesteps with one `bmm`. Only alive samples
//! are in the batch (the same as zero weight for dead ones). As in model.md, `minibatch_size`
//! counts slot samples, dead ones included: an epoch has `ceil(E*T*A / minibatch_size)`
//! minibatches, and the alive chunks are spread over them (each epoch shuffles the chunks and
//! packs whole chunks up to the alive share of one minibatch, at least one chunk each), so
//! the number of Adam steps does not depend on the population.

use crate::metrics::names;
use tch::Tensor;

use super::adam::Adam;
use super::interrupt::Interrupt;
use super::rollout::Rollout;
use crate::config::TrainConfig;
use crate::policy::{Offsets, Policy};
use crate::rng::Rng;

/// Longest run of one agent's consecutive samples kept together in a minibatch.
pub const CHUNK_LEN: usize = 32;

/// Consecutive samples of one agent (indices into the compact sample arrays).
#[derive(Debug, Clone)]
pub struct Chunk {
    pub samples: Vec<i64>,
    pub entry: i64,
}

/// The flattened training batch of one iteration: observations on the policy's device,
/// per-sample data on the host (compact sample order).
#[derive(Debug)]
pub struct Batch {
    /// Observations `[rows, obs_dim]` (the rollout's, see [`Rollout::obs`]): compact sample
    /// `s`'s is row `obs_row[s]`.
    pub obs: Tensor,
    /// Row of `obs` of each compact sample.
    pub obs_row: Vec<i64>,
    pub actions: Vec<i64>,
    pub logp: Vec<f32>,
    pub advantages: Vec<f32>,
    pub returns: Vec<f32>,
    pub chunks: Vec<Chunk>,
    /// Slot samples of the rollout, dead ones included (`E * T * A`).
    pub slot_samples: usize,
    /// Rows `N..` of the rollout's virtual offset table (see [`Rollout::extra`]).
    pub extra: Option<Vec<Tensor>>,
}

/// Loss metrics averaged over all minibatches of the update.
#[derive(Debug, Clone, Default)]
pub struct UpdateStats {
    pub policy_loss: f64,
    pub value_loss: f64,
    pub entropy: f64,
    pub approx_kl: f64,
    pub clip_fraction: f64,
    pub total_loss: f64,
    pub minibatches: u64,
    /// The update stopped before its last minibatch (see [`update_until`]): the weights and
    /// Adam moments are part-way through the update.
    pub interrupted: bool,
    /// Where the update's time went.
    pub profile: UpdateProfile,
}

/// Seconds per part of one update, and the host synchronisations it made.
#[derive(Debug, Clone, Default)]
pub struct UpdateProfile {
    /// Minibatch plans, index tensors / input rows (native backend: plus listing the parts'
    /// rows, read in place, thread-seconds summed over the parts).
    pub batch_s: f64,
    /// Per-agent offset gathers (libtorch backend only; the native pass reads in place).
    pub gather_s: f64,
    /// Forward pass and loss (native backend: thread-seconds summed over the parts).
    pub forward_s: f64,
    /// Backward pass and gradient clipping (native: thread-seconds summed over the parts,
    /// plus adding the parts' gradients).
    pub backward_s: f64,
    /// Adam steps.
    pub adam_s: f64,
    /// Device-to-host reads of the loss sums (waiting for the device included).
    pub sync_s: f64,
    /// Device-to-host synchronisations (at most one per epoch).
    pub host_syncs: u64,
}

/// A loss that came out NaN or infinite.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFiniteLoss {
    /// Metric name, e.g. `losses/value_loss`.
    pub metric: String,
    pub value: f64,
}

/// Builds the batch from a rollout and its `[T, N]` advantages/returns. Compact sample order
/// is tick-major, slot ascending.
pub fn build_batch(rollout: Rollout, adv: &[f32], ret: &[f32]) -> Batch {
    let g = &rollout.gae;
    let (t_n, n) = (g.num_steps, g.num_columns);
    let mut compact = vec![-1i64; t_n * n];
    let (mut acts, mut logps, mut advs, mut rets) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut obs_row = Vec::new();
    for k in 0..t_n * n {
        if g.alive[k] {
            compact[k] = acts.len() as i64;
            obs_row.push(rollout.obs_row[k]);
            acts.push(rollout.action[k] as i64);
            logps.push(rollout.logp[k]);
            advs.push(adv[k]);
            rets.push(ret[k]);
        }
    }
    let mut chunks = Vec::new();
    for c in 0..n {
        let mut cur: Option<Chunk> = None;
        let mut cur_id = 0u64;
        for t in 0..t_n {
            let k = t * n + c;
            if !g.alive[k] {
                chunks.extend(cur.take());
                continue;
            }
            let same = cur
                .as_ref()
                .is_some_and(|ch| cur_id == g.agent_id[k] && ch.samples.len() < CHUNK_LEN);
            if !same {
                chunks.extend(cur.take());
                cur = Some(Chunk {
                    samples: Vec::new(),
                    entry: rollout.entry[k],
                });
                cur_id = g.agent_id[k];
            }
            cur.as_mut().unwrap().samples.push(compact[k]);
        }
        chunks.extend(cur.take());
    }
    Batch {
        obs: rollout.obs,
        obs_row,
        actions: acts,
        logp: logps,
        advantages: advs,
        returns: rets,
        chunks,
        slot_samples: t_n * n,
        extra: rollout.extra,
    }
}

impl Batch {
    /// The observations of the compact samples in order, `[S, obs_dim]`: `obs` itself when it
    /// is already in that order (off the CPU), else one gather of its rows.
    pub fn compact_obs(&self) -> Tensor {
        let in_order = self.obs.size().first() == Some(&(self.obs_row.len() as i64))
            && self.obs_row.iter().enumerate().all(|(s, &r)| r == s as i64);
        if in_order {
            return self.obs.shallow_clone();
        }
        let rows = Tensor::from_slice(&self.obs_row).to_device(self.obs.device());
        self.obs.index_select(0, &rows)
    }
}

/// Which implementation runs the minibatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The hand-written CPU pass ([`crate::policy::native`]) when everything is on the CPU,
    /// else libtorch.
    #[default]
    Auto,
    /// libtorch ops with autograd (any device; at most one host sync per epoch).
    Tch,
}

/// One epoch's minibatches: `order` (a shuffled chunk list) split into consecutive groups of
/// whole chunks, each up to `mb_size` samples (at least one chunk).
pub fn plan_epoch(batch: &Batch, order: &[usize], mb_size: usize) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        let mut count = 0;
        while end < order.len()
            && (end == start || count + batch.chunks[order[end]].samples.len() <= mb_size)
        {
            count += batch.chunks[order[end]].samples.len();
            end += 1;
        }
        groups.push(start..end);
        start = end;
    }
    groups
}

/// Runs `num_epochs` epochs of minibatch updates of the shared weights. Minibatch order
/// comes from `rng` (one shuffle of the chunk list per epoch). A non-finite loss is
/// detected at the end of its epoch (one host read per epoch) and returned as an error.
pub fn update(
    policy: &Policy,
    offsets: Option<&Offsets>,
    adam: &mut Adam,
    batch: &Batch,
    cfg: &TrainConfig,
    lr: f64,
    rng: &mut Rng,
) -> Result<UpdateStats, NonFiniteLoss> {
    update_until(
        policy,
        offsets,
        adam,
        batch,
        cfg,
        lr,
        rng,
        Backend::Auto,
        &Interrupt::never(),
    )
}

/// [`update`] with an explicit [`Backend`], polling `stop` before each minibatch; when it is requested the update
/// returns at once with [`UpdateStats::interrupted`] set (throw the weights away).
#[allow(clippy::too_many_arguments)]
pub fn update_until(
    policy: &Policy,
    offsets: Option<&Offsets>,
    adam: &mut Adam,
    batch: &Batch,
    cfg: &TrainConfig,
    lr: f64,
    rng: &mut Rng,
    backend: Backend,
    stop: &Interrupt,
) -> Result<UpdateStats, NonFiniteLoss> {
    let mut stats = UpdateStats::default();
    if batch.chunks.is_empty() {
        return Ok(stats);
    }
    // Alive samples per minibatch: the alive share of `minibatch_size` slot samples.
    let alive_total: usize = batch.chunks.iter().map(|c| c.samples.len()).sum();
    let num_minibatches = batch
        .slot_samples
        .div_ceil(cfg.minibatch_size.max(1))
        .max(1);
    let mb_size = alive_total.div_ceil(num_minibatches).max(1);
    let native = match backend {
        Backend::Tch => None,
        Backend::Auto => super::update_native::NativeUpdate::new(policy, offsets, adam, batch),
    };
    let mut sums = [0f64; 6];
    match native {
        Some(mut nat) => {
            let threads = crate::policy::native::threads();
            nat.run(
                batch, cfg, lr, rng, mb_size, threads, &mut sums, &mut stats, stop,
            )?
        }
        None => super::update_tch::run(
            policy, offsets, adam, batch, cfg, lr, rng, mb_size, &mut sums, &mut stats, stop,
        )?,
    }
    if stats.interrupted {
        return Ok(stats);
    }
    let m = stats.minibatches.max(1) as f64;
    stats.policy_loss = sums[0] / m;
    stats.value_loss = sums[1] / m;
    stats.entropy = sums[2] / m;
    stats.approx_kl = sums[3] / m;
    stats.clip_fraction = sums[4] / m;
    stats.total_loss = sums[5] / m;
    Ok(stats)
}

/// Adds one epoch's loss sums to `sums`, or names the first non-finite metric.
pub(super) fn add_epoch_sums(sums: &mut [f64; 6], epoch: &[f64]) -> Result<(), NonFiniteLoss> {
    for (i, &v) in epoch.iter().enumerate() {
        if !v.is_finite() {
            return Err(NonFiniteLoss {
                metric: METRIC_NAMES[i].to_string(),
                value: v,
            });
        }
        sums[i] += v;
    }
    Ok(())
}

/// Metric names of the update's losses, in the order used internally.
pub const METRIC_NAMES: [&str; 6] = [
    names::LOSSES_POLICY_LOSS,
    names::LOSSES_VALUE_LOSS,
    names::LOSSES_ENTROPY,
    names::LOSSES_APPROX_KL,
    names::LOSSES_CLIP_FRACTION,
    names::LOSSES_TOTAL_LOSS,
];
