//! The PPO minibatches on libtorch (any device): each epoch builds its index tensors once
//! (all minibatches' padded `[U, L]` blocks back to back) and sums the six losses on the
//! device; the only device-to-host read is those sums (and the finiteness check) at the
//! end of the epoch. Used when the native CPU pass does not apply.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use super::adam::{clip_grad_norm, Adam};
use super::update::{add_epoch_sums, plan_epoch, Batch, NonFiniteLoss, UpdateStats};
use crate::config::TrainConfig;
use crate::policy::{AgentOffsets, Offsets, Policy};
use crate::rng::Rng;

/// Device-to-host synchronisations made by libtorch updates in this process (a debug
/// counter: every host read of the update goes through [`read_to_host`]).
pub static HOST_SYNCS: AtomicU64 = AtomicU64::new(0);

/// Copies `t` to the host as f64 values, counting one synchronisation.
fn read_to_host(t: &Tensor) -> Vec<f64> {
    HOST_SYNCS.fetch_add(1, Ordering::Relaxed);
    Vec::try_from(t.to_device(Device::Cpu).to_kind(Kind::Double)).unwrap()
}

/// Masked mean over `[U, L]` with `n` real samples.
fn mmean(x: &Tensor, mask: &Tensor, n: f64) -> Tensor {
    (x * mask).sum(Kind::Float) / n
}

/// The samples of one minibatch as padded `[U, L]` tensors.
pub struct MinibatchData<'a> {
    /// Observations `[U, L, obs_dim]`.
    pub x: Tensor,
    /// Per-agent offsets of the `U` chunks.
    pub offsets: Option<&'a AgentOffsets>,
    pub actions: Tensor,
    pub old_logp: Tensor,
    pub advantages: Tensor,
    pub returns: Tensor,
    /// 1 for real samples, 0 for padding.
    pub mask: Tensor,
    /// Number of real samples.
    pub n: f64,
}

/// The PPO loss of one minibatch (model.md section 6.4) with parameters `params` (views of
/// the policy's flat tensor): returns the total loss and the six metrics as one `[6]`
/// tensor (order of [`super::update::METRIC_NAMES`]), both on the device.
pub fn minibatch_loss(
    policy: &Policy,
    params: &[Tensor],
    mb: &MinibatchData,
    cfg: &TrainConfig,
) -> (Tensor, Tensor) {
    let (mask, n) = (&mb.mask, mb.n);
    let (logits, value) = policy.forward_with(params, &mb.x, mb.offsets);
    let logp_all = logits.log_softmax(-1, Kind::Float);
    let newlogp = logp_all
        .gather(-1, &mb.actions.unsqueeze(-1), false)
        .squeeze_dim(-1);
    let entropy = -(logp_all.exp() * &logp_all).sum_dim_intlist(-1, false, Kind::Float);

    // Per-minibatch masked advantage normalisation (population std, + 1e-8).
    let adv = &mb.advantages;
    let adv_mean = mmean(adv, mask, n);
    let adv_std = mmean(&(adv - &adv_mean).square(), mask, n).sqrt();
    let adv = (adv - adv_mean) / (adv_std + 1e-8);

    let logratio = newlogp - &mb.old_logp;
    let ratio = logratio.exp();
    let pg1 = -&adv * &ratio;
    let pg2 = -&adv * ratio.clamp(1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps);
    let pg_loss = mmean(&pg1.maximum(&pg2), mask, n);
    let v_loss = mmean(&(value - &mb.returns).square(), mask, n);
    let ent = mmean(&entropy, mask, n);
    let loss = &pg_loss + &v_loss * cfg.vf_coef - &ent * cfg.ent_coef;

    let metrics = tch::no_grad(|| {
        let kl = mmean(&((&ratio - 1.0) - &logratio), mask, n);
        let cf = mmean(
            &(&ratio - 1.0).abs().gt(cfg.clip_eps).to_kind(Kind::Float),
            mask,
            n,
        );
        Tensor::stack(&[&pg_loss, &v_loss, &ent, &kl, &cf, &loss], 0)
    });
    (loss, metrics)
}

/// Index tensors of one epoch: all minibatches' padded blocks back to back.
struct EpochIndex {
    idx: Tensor,
    mask: Tensor,
    lo: Tensor,
    hi: Tensor,
    in_slots: Tensor,
    /// Per minibatch: `(U, L, first block element, first chunk, samples, all slots, all extra)`.
    blocks: Vec<(i64, i64, i64, i64, usize, bool, bool)>,
}

fn epoch_index(
    batch: &Batch,
    order: &[usize],
    groups: &[std::ops::Range<usize>],
    num_slots: i64,
    dev: Device,
) -> EpochIndex {
    let (mut idx, mut mask) = (Vec::new(), Vec::new());
    let (mut lo, mut hi, mut in_slots) = (Vec::new(), Vec::new(), Vec::new());
    let mut blocks = Vec::with_capacity(groups.len());
    for g in groups {
        let group = &order[g.clone()];
        let l = group
            .iter()
            .map(|&c| batch.chunks[c].samples.len())
            .max()
            .unwrap();
        let (start, first_chunk) = (idx.len() as i64, lo.len() as i64);
        let mut count = 0;
        for &c in group {
            let ch = &batch.chunks[c];
            count += ch.samples.len();
            idx.extend_from_slice(&ch.samples);
            mask.extend(std::iter::repeat_n(1f32, ch.samples.len()));
            idx.extend(std::iter::repeat_n(0i64, l - ch.samples.len()));
            mask.extend(std::iter::repeat_n(0f32, l - ch.samples.len()));
            lo.push(ch.entry.min(num_slots - 1));
            hi.push((ch.entry - num_slots).max(0));
            in_slots.push(ch.entry < num_slots);
        }
        let es = group.iter().map(|&c| batch.chunks[c].entry);
        let all_slots = es.clone().all(|e| e < num_slots);
        let all_extra = es.clone().all(|e| e >= num_slots);
        blocks.push((
            group.len() as i64,
            l as i64,
            start,
            first_chunk,
            count,
            all_slots,
            all_extra,
        ));
    }
    let t = |v: Tensor| v.to_device(dev);
    EpochIndex {
        idx: t(Tensor::from_slice(&idx)),
        mask: t(Tensor::from_slice(&mask)),
        lo: t(Tensor::from_slice(&lo)),
        hi: t(Tensor::from_slice(&hi)),
        in_slots: t(Tensor::from_slice(&in_slots)),
        blocks,
    }
}

/// Runs the epochs with libtorch; adds the per-epoch loss sums to `sums`.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    policy: &Policy,
    offsets: Option<&Offsets>,
    adam: &mut Adam,
    batch: &Batch,
    cfg: &TrainConfig,
    lr: f64,
    rng: &mut Rng,
    mb_size: usize,
    sums: &mut [f64; 6],
    stats: &mut UpdateStats,
    stop: &super::Interrupt,
) -> Result<(), NonFiniteLoss> {
    let dev = policy.device();
    let obs_dim = policy.obs_dim as i64;
    let prof = &mut stats.profile;
    let t0 = Instant::now();
    let to_dev = |t: Tensor| t.to_device(dev);
    let actions = to_dev(Tensor::from_slice(&batch.actions));
    let old_logp = to_dev(Tensor::from_slice(&batch.logp));
    let advantages = to_dev(Tensor::from_slice(&batch.advantages));
    let returns = to_dev(Tensor::from_slice(&batch.returns));
    let obs = batch.compact_obs();
    let num_slots = offsets.map_or(1, |o| o.num_slots() as i64);
    let mut order: Vec<usize> = (0..batch.chunks.len()).collect();
    prof.batch_s += t0.elapsed().as_secs_f64();
    for _epoch in 0..cfg.num_epochs {
        let t = Instant::now();
        rng.shuffle(&mut order);
        let groups = plan_epoch(batch, &order, mb_size);
        let ei = epoch_index(batch, &order, &groups, num_slots, dev);
        let mut epoch_sums = Tensor::zeros([6], (Kind::Double, dev));
        prof.batch_s += t.elapsed().as_secs_f64();
        for &(u, l, start, first_chunk, count, all_slots, all_extra) in &ei.blocks {
            if stop.requested() {
                stats.interrupted = true;
                return Ok(());
            }
            let t = Instant::now();
            let idx = ei.idx.narrow(0, start, u * l);
            let pick = |x: &Tensor| x.index_select(0, &idx).view([u, l]);
            let x = obs.index_select(0, &idx).view([u, l, obs_dim]);
            let mb_mask = ei.mask.narrow(0, start, u * l).view([u, l]);
            let (actions, old_logp) = (pick(&actions), pick(&old_logp));
            let (advantages, returns) = (pick(&advantages), pick(&returns));
            prof.batch_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let d = match (offsets, &batch.extra) {
                (Some(o), Some(extra)) => Some(o.gather_entry_tensors(
                    extra,
                    &ei.lo.narrow(0, first_chunk, u),
                    &ei.hi.narrow(0, first_chunk, u),
                    &ei.in_slots.narrow(0, first_chunk, u),
                    all_slots,
                    all_extra,
                )),
                _ => None,
            };
            prof.gather_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mb = MinibatchData {
                x,
                offsets: d.as_ref(),
                actions,
                old_logp,
                advantages,
                returns,
                mask: mb_mask,
                n: count as f64,
            };
            let params = policy.fresh_params();
            let (loss, metrics) = minibatch_loss(policy, &params, &mb, cfg);
            epoch_sums += metrics.to_kind(Kind::Double);
            prof.forward_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut grads = Tensor::run_backward(&[&loss], &[&policy.flat], false, false);
            let _ = clip_grad_norm(&mut grads, cfg.max_grad_norm);
            prof.backward_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            adam.step(std::slice::from_ref(&policy.flat), &grads, lr);
            prof.adam_s += t.elapsed().as_secs_f64();
            stats.minibatches += 1;
        }
        let t = Instant::now();
        let epoch = read_to_host(&epoch_sums);
        prof.host_syncs += 1;
        prof.sync_s += t.elapsed().as_secs_f64();
        add_epoch_sums(sums, &epoch)?;
    }
    Ok(())
}
