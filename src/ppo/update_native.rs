//! The PPO minibatches on the CPU without libtorch: the hand-written forward/backward of
//! [`crate::policy::native`], the loss and its gradient written out, global-norm clipping
//! and Adam as loops over the flat parameter vector. The learning is the same as the
//! libtorch backend's up to floating-point order (checked in tests). Nothing is
//! synchronised: every value is on the host.

use std::time::Instant;

use super::adam::Adam;
use super::update::{add_epoch_sums, plan_epoch, Batch, NonFiniteLoss, UpdateStats};
use crate::config::TrainConfig;
use crate::policy::native::{cpu_slice, cpu_slice_mut, Layout, OffsetRows, Seg, Workspace};
use crate::policy::{Offsets, Policy};
use crate::rng::Rng;
use crate::world::NUM_ACTIONS;

/// The per-sample inputs of the loss for the rows of one minibatch.
#[derive(Debug, Default)]
pub struct LossRows {
    pub actions: Vec<usize>,
    pub old_logp: Vec<f32>,
    pub advantages: Vec<f32>,
    pub returns: Vec<f32>,
}

/// PPO loss hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub struct LossCoefs {
    pub clip_eps: f64,
    pub vf_coef: f64,
    pub ent_coef: f64,
}

/// The PPO loss (model.md section 6.4) of `n` rows given the network's `logits` `[n, 6]` and
/// `value` `[n]`: writes `d loss / d logits` and `d loss / d value` and returns the six
/// metrics (order of [`super::update::METRIC_NAMES`]).
pub fn loss_and_grad(
    logits: &[f32],
    value: &[f32],
    rows: &LossRows,
    c: LossCoefs,
    dlogits: &mut Vec<f32>,
    dvalue: &mut Vec<f32>,
) -> [f64; 6] {
    let n = rows.actions.len();
    let nf = n as f64;
    dlogits.resize(n * NUM_ACTIONS, 0.0);
    dvalue.resize(n, 0.0);
    // Advantage normalisation (mean, population std, + 1e-8).
    let mean = rows.advantages.iter().map(|&a| a as f64).sum::<f64>() / nf;
    let var = rows
        .advantages
        .iter()
        .map(|&a| (a as f64 - mean).powi(2))
        .sum::<f64>()
        / nf;
    let std = var.sqrt();
    let (lo, hi) = (1.0 - c.clip_eps, 1.0 + c.clip_eps);
    let mut m = [0f64; 6];
    for r in 0..n {
        let z = &logits[r * NUM_ACTIONS..(r + 1) * NUM_ACTIONS];
        let zmax = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let lse = zmax as f64
            + z.iter()
                .map(|&v| ((v - zmax) as f64).exp())
                .sum::<f64>()
                .ln();
        let mut logp = [0f64; NUM_ACTIONS];
        let mut ent = 0f64;
        for k in 0..NUM_ACTIONS {
            logp[k] = z[k] as f64 - lse;
            ent -= logp[k].exp() * logp[k];
        }
        let a = rows.actions[r];
        let adv = (rows.advantages[r] as f64 - mean) / (std + 1e-8);
        let logratio = logp[a] - rows.old_logp[r] as f64;
        let ratio = logratio.exp();
        let (pg1, pg2) = (-adv * ratio, -adv * ratio.clamp(lo, hi));
        m[0] += pg1.max(pg2);
        // d pg / d ratio: the unclipped term where it is the max or the clip is inactive.
        let dratio = if (lo..=hi).contains(&ratio) || pg1 > pg2 {
            -adv
        } else {
            0.0
        };
        let g_newlogp = dratio * ratio / nf;
        let dv = value[r] as f64 - rows.returns[r] as f64;
        m[1] += dv * dv;
        m[2] += ent;
        m[3] += (ratio - 1.0) - logratio;
        m[4] += f64::from(u8::from((ratio - 1.0).abs() > c.clip_eps));
        dvalue[r] = (c.vf_coef * 2.0 * dv / nf) as f32;
        // d(-ent_coef * H / n) / dz_k = ent_coef / n * p_k (log p_k + H).
        let ec = c.ent_coef / nf;
        for k in 0..NUM_ACTIONS {
            let p = logp[k].exp();
            let onehot = if k == a { 1.0 } else { 0.0 };
            let g = g_newlogp * (onehot - p) + ec * p * (logp[k] + ent);
            dlogits[r * NUM_ACTIONS + k] = g as f32;
        }
    }
    for v in &mut m[..5] {
        *v /= nf;
    }
    m[5] = m[0] + c.vf_coef * m[1] - c.ent_coef * m[2];
    m
}

/// Scales `grad` so its L2 norm is at most `max_norm` (factor `max_norm / (norm + 1e-6)`
/// when below 1, as [`super::adam::clip_grad_norm`]). Returns the norm before clipping.
pub fn clip_grad_norm(grad: &mut [f32], max_norm: f64) -> f64 {
    let norm = grad
        .iter()
        .map(|&g| (g as f64) * (g as f64))
        .sum::<f64>()
        .sqrt();
    let coef = (max_norm / (norm + 1e-6)).min(1.0) as f32;
    if coef < 1.0 {
        grad.iter_mut().for_each(|g| *g *= coef);
    }
    norm
}

/// One Adam step on host slices (the formula of [`Adam::step`]).
#[allow(clippy::too_many_arguments)]
pub fn adam_step(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    step: i64,
    lr: f64,
    (beta1, beta2, eps): (f64, f64, f64),
) {
    let t = step as i32;
    let step_size = (lr / (1.0 - beta1.powi(t))) as f32;
    let bc2_sqrt = (1.0 - beta2.powi(t)).sqrt() as f32;
    let (b1, b2, eps) = (beta1 as f32, beta2 as f32, eps as f32);
    for i in 0..p.len() {
        let gi = g[i];
        m[i] += (1.0 - b1) * (gi - m[i]);
        v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
        let denom = v[i].sqrt() / bc2_sqrt + eps;
        p[i] -= step_size * (m[i] / denom);
    }
}

/// The native update's view of the state: host slices of the parameters, Adam moments,
/// observations and offsets.
pub struct NativeUpdate<'a> {
    lay: Layout,
    params: &'a mut [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    step: &'a mut i64,
    betas: (f64, f64, f64),
    obs: &'a [f32],
    offsets: Option<OffsetRows<'a>>,
}

impl<'a> NativeUpdate<'a> {
    /// `None` unless the parameters, Adam moments, observations and offsets are all
    /// contiguous f32 CPU tensors (then the libtorch backend runs).
    pub fn new(
        policy: &'a Policy,
        offsets: Option<&'a Offsets>,
        adam: &'a mut Adam,
        batch: &'a Batch,
    ) -> Option<NativeUpdate<'a>> {
        if adam.m.len() != 1 || adam.v.len() != 1 {
            return None;
        }
        let obs = cpu_slice(&batch.obs)?;
        let offsets = match (offsets, &batch.extra) {
            (Some(o), Some(extra)) => Some(o.host_rows(extra)?),
            (None, _) => None,
            (Some(_), None) => return None,
        };
        let betas = (adam.beta1, adam.beta2, adam.eps);
        let Adam { m, v, step, .. } = adam;
        // SAFETY: for the lifetime of this value the flat parameters and the Adam moments
        // are only accessed through these slices (the update holds the policy and Adam).
        let (params, m, v) = unsafe {
            (
                cpu_slice_mut(&policy.flat)?,
                cpu_slice_mut(&m[0])?,
                cpu_slice_mut(&v[0])?,
            )
        };
        let lay = Layout::new(policy.obs_dim, &policy.hidden_dims);
        if params.len() != lay.total || m.len() != lay.total || v.len() != lay.total {
            return None;
        }
        Some(NativeUpdate {
            lay,
            params,
            m,
            v,
            step,
            betas,
            obs,
            offsets,
        })
    }

    /// Runs the epochs; adds the per-epoch loss sums to `sums`.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        batch: &Batch,
        cfg: &TrainConfig,
        lr: f64,
        rng: &mut Rng,
        mb_size: usize,
        sums: &mut [f64; 6],
        stats: &mut UpdateStats,
    ) -> Result<(), NonFiniteLoss> {
        let lay = &self.lay;
        let d = lay.obs_dim;
        let coefs = LossCoefs {
            clip_eps: cfg.clip_eps,
            vf_coef: cfg.vf_coef,
            ent_coef: cfg.ent_coef,
        };
        let betas = self.betas;
        let mut ws = Workspace::default();
        let mut rows = LossRows::default();
        let mut segs: Vec<Seg> = Vec::new();
        let (mut dlogits, mut dvalue) = (Vec::new(), Vec::new());
        let mut grad = vec![0f32; lay.total];
        let mut order: Vec<usize> = (0..batch.chunks.len()).collect();
        let prof = &mut stats.profile;
        for _epoch in 0..cfg.num_epochs {
            let t = Instant::now();
            rng.shuffle(&mut order);
            let groups = plan_epoch(batch, &order, mb_size);
            prof.batch_s += t.elapsed().as_secs_f64();
            let mut epoch = [0f64; 6];
            for g in groups {
                let t = Instant::now();
                let group = &order[g];
                segs.clear();
                rows.actions.clear();
                rows.old_logp.clear();
                rows.advantages.clear();
                rows.returns.clear();
                for &c in group {
                    let ch = &batch.chunks[c];
                    segs.push(Seg {
                        entry: ch.entry as usize,
                        start: rows.actions.len(),
                        len: ch.samples.len(),
                    });
                    for &s in &ch.samples {
                        let s = s as usize;
                        rows.actions.push(batch.actions[s] as usize);
                        rows.old_logp.push(batch.logp[s]);
                        rows.advantages.push(batch.advantages[s]);
                        rows.returns.push(batch.returns[s]);
                    }
                }
                let n = rows.actions.len();
                let x = ws.input_mut(lay, n);
                let mut r = 0;
                for &c in group {
                    for &s in &batch.chunks[c].samples {
                        let s = s as usize;
                        x[r * d..(r + 1) * d].copy_from_slice(&self.obs[s * d..(s + 1) * d]);
                        r += 1;
                    }
                }
                prof.batch_s += t.elapsed().as_secs_f64();
                let t = Instant::now();
                let off = self.offsets.as_ref();
                ws.forward(lay, self.params, &segs, off);
                let metrics = loss_and_grad(
                    &ws.logits,
                    &ws.value,
                    &rows,
                    coefs,
                    &mut dlogits,
                    &mut dvalue,
                );
                for (e, v) in epoch.iter_mut().zip(metrics) {
                    *e += v;
                }
                prof.forward_s += t.elapsed().as_secs_f64();
                let t = Instant::now();
                ws.backward(lay, self.params, &segs, off, &dlogits, &dvalue, &mut grad);
                clip_grad_norm(&mut grad, cfg.max_grad_norm);
                prof.backward_s += t.elapsed().as_secs_f64();
                let t = Instant::now();
                *self.step += 1;
                adam_step(self.params, &grad, self.m, self.v, *self.step, lr, betas);
                prof.adam_s += t.elapsed().as_secs_f64();
                stats.minibatches += 1;
            }
            add_epoch_sums(sums, &epoch)?;
        }
        Ok(())
    }
}
