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

use tch::{Device, Kind, Tensor};

use super::adam::{clip_grad_norm, Adam};
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

/// The flattened training batch of one iteration, on the policy's device.
#[derive(Debug)]
pub struct Batch {
    pub obs: Tensor,
    pub actions: Tensor,
    pub logp: Tensor,
    pub advantages: Tensor,
    pub returns: Tensor,
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
}

/// A loss that came out NaN or infinite.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFiniteLoss {
    /// Metric name, e.g. `losses/value_loss`.
    pub metric: String,
    pub value: f64,
}

/// Builds the batch from a rollout and its `[T, N]` advantages/returns. Compact sample order
/// is tick-major, slot ascending (the order of `rollout.obs`).
pub fn build_batch(rollout: Rollout, adv: &[f32], ret: &[f32]) -> Batch {
    let g = &rollout.gae;
    let (t_n, n) = (g.num_steps, g.num_columns);
    let mut compact = vec![-1i64; t_n * n];
    let (mut acts, mut logps, mut advs, mut rets) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for k in 0..t_n * n {
        if g.alive[k] {
            compact[k] = acts.len() as i64;
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
    let dev = rollout.obs.device();
    Batch {
        obs: rollout.obs,
        actions: Tensor::from_slice(&acts).to_device(dev),
        logp: Tensor::from_slice(&logps).to_device(dev),
        advantages: Tensor::from_slice(&advs).to_device(dev),
        returns: Tensor::from_slice(&rets).to_device(dev),
        chunks,
        slot_samples: t_n * n,
        extra: rollout.extra,
    }
}

/// Masked mean over `[U, L]` with `n` real samples.
fn mmean(x: &Tensor, mask: &Tensor, n: f64) -> Tensor {
    (x * mask).sum(Kind::Float) / n
}

/// Runs `num_epochs` epochs of minibatch updates of the shared weights. Minibatch order
/// comes from `rng` (one shuffle of the chunk list per epoch).
pub fn update(
    policy: &Policy,
    offsets: Option<&Offsets>,
    adam: &mut Adam,
    batch: &Batch,
    cfg: &TrainConfig,
    lr: f64,
    rng: &mut Rng,
) -> Result<UpdateStats, NonFiniteLoss> {
    let mut stats = UpdateStats::default();
    if batch.chunks.is_empty() {
        return Ok(stats);
    }
    let dev = policy.device();
    let obs_dim = policy.obs_dim as i64;
    // Alive samples per minibatch: the alive share of `minibatch_size` slot samples.
    let alive_total: usize = batch.chunks.iter().map(|c| c.samples.len()).sum();
    let num_minibatches = batch
        .slot_samples
        .div_ceil(cfg.minibatch_size.max(1))
        .max(1);
    let mb_size = alive_total.div_ceil(num_minibatches).max(1);
    let mut order: Vec<usize> = (0..batch.chunks.len()).collect();
    let mut sums = [0f64; 6];
    for _epoch in 0..cfg.num_epochs {
        rng.shuffle(&mut order);
        let mut start = 0;
        while start < order.len() {
            // Pack whole chunks up to the minibatch size (at least one chunk).
            let mut end = start;
            let mut count = 0;
            while end < order.len()
                && (end == start || count + batch.chunks[order[end]].samples.len() <= mb_size)
            {
                count += batch.chunks[order[end]].samples.len();
                end += 1;
            }
            let group = &order[start..end];
            start = end;
            let u = group.len();
            let l = group
                .iter()
                .map(|&c| batch.chunks[c].samples.len())
                .max()
                .unwrap();
            let mut idx = vec![0i64; u * l];
            let mut mask = vec![0f32; u * l];
            let mut entries = Vec::with_capacity(u);
            for (r, &c) in group.iter().enumerate() {
                let ch = &batch.chunks[c];
                entries.push(ch.entry);
                for (j, &s) in ch.samples.iter().enumerate() {
                    idx[r * l + j] = s;
                    mask[r * l + j] = 1.0;
                }
            }
            let (ui, li) = (u as i64, l as i64);
            let idx_t = Tensor::from_slice(&idx).to_device(dev);
            let mask = Tensor::from_slice(&mask).to_device(dev).view([ui, li]);
            let n = count as f64;
            let pick = |t: &Tensor| t.index_select(0, &idx_t).view([ui, li]);
            let x = batch.obs.index_select(0, &idx_t).view([ui, li, obs_dim]);
            let d = match (offsets, &batch.extra) {
                (Some(o), Some(extra)) => Some(o.gather_entries(extra, &entries)),
                _ => None,
            };
            let params = policy.fresh_params();
            let (logits, value) = policy.forward_with(&params, &x, d.as_ref());
            let logp_all = logits.log_softmax(-1, Kind::Float);
            let act = pick(&batch.actions);
            let newlogp = logp_all
                .gather(-1, &act.unsqueeze(-1), false)
                .squeeze_dim(-1);
            let entropy = -(logp_all.exp() * &logp_all).sum_dim_intlist(-1, false, Kind::Float);

            // Per-minibatch masked advantage normalisation (population std, + 1e-8).
            let adv = pick(&batch.advantages);
            let adv_mean = mmean(&adv, &mask, n);
            let adv_std = mmean(&(&adv - &adv_mean).square(), &mask, n).sqrt();
            let adv = (adv - adv_mean) / (adv_std + 1e-8);

            let logratio = newlogp - pick(&batch.logp);
            let ratio = logratio.exp();
            let pg1 = -&adv * &ratio;
            let pg2 = -&adv * ratio.clamp(1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps);
            let pg_loss = mmean(&pg1.maximum(&pg2), &mask, n);
            let v_loss = mmean(&(value - pick(&batch.returns)).square(), &mask, n);
            let ent = mmean(&entropy, &mask, n);
            let loss = &pg_loss + &v_loss * cfg.vf_coef - &ent * cfg.ent_coef;

            let (approx_kl, clip_frac) = tch::no_grad(|| {
                let kl = mmean(&((&ratio - 1.0) - &logratio), &mask, n);
                let cf = mmean(
                    &(&ratio - 1.0).abs().gt(cfg.clip_eps).to_kind(Kind::Float),
                    &mask,
                    n,
                );
                (kl, cf)
            });
            let values = Tensor::stack(
                &[
                    pg_loss.detach(),
                    v_loss.detach(),
                    ent.detach(),
                    approx_kl,
                    clip_frac,
                    loss.detach(),
                ],
                0,
            )
            .to_device(Device::Cpu);
            let values: Vec<f32> = Vec::try_from(&values).unwrap();
            for (i, &v) in values.iter().enumerate() {
                if !v.is_finite() {
                    return Err(NonFiniteLoss {
                        metric: METRIC_NAMES[i].to_string(),
                        value: v as f64,
                    });
                }
                sums[i] += v as f64;
            }

            let mut grads = Tensor::run_backward(&[&loss], &[&policy.flat], false, false);
            let _ = clip_grad_norm(&mut grads, cfg.max_grad_norm);
            adam.step(std::slice::from_ref(&policy.flat), &grads, lr);
            stats.minibatches += 1;
        }
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

/// Metric names of the update's losses, in the order used internally.
pub const METRIC_NAMES: [&str; 6] = [
    "losses/policy_loss",
    "losses/value_loss",
    "losses/entropy",
    "losses/approx_kl",
    "losses/clip_fraction",
    "losses/total_loss",
];
