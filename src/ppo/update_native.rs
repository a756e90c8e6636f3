//! The PPO minibatches on the CPU without libtorch: the hand-written forward/backward of
//! [`crate::policy::native`], the loss and its gradient written out, global-norm clipping
//! and Adam as loops over the flat parameter vector. The learning is the same as the
//! libtorch backend's up to floating-point order (checked in tests). Nothing is
//! synchronised: every value is on the host.

use std::time::Instant;

use super::adam::Adam;
pub use super::adam_native::{adam_step, adam_step_scaled, clip_grad_norm, reduce_grad};
use super::adam_native::{add_parts, sum_squares};
use super::pair::SpinPair;
use super::update::{add_epoch_sums, plan_epoch, Batch, NonFiniteLoss, UpdateStats};
use crate::config::TrainConfig;
use crate::policy::gemm::{Prefetcher, RowTable};
use crate::policy::native::{cpu_slice, cpu_slice_mut, Layout, OffsetRows, Seg, Workspace};
use crate::policy::{Offsets, Policy};
use crate::rng::Rng;
use crate::world::NUM_ACTIONS;

/// Parts each minibatch is split into (the most threads the update uses); fixed, so the
/// results do not depend on the thread count.
pub const PARTS: usize = 2;

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

/// Minibatch-wide constants of the loss: advantage mean and population std, sample count.
#[derive(Debug, Clone, Copy)]
pub struct Norm {
    pub adv_mean: f64,
    pub adv_std: f64,
    pub n: f64,
}

impl Norm {
    /// The constants of a minibatch with advantages `adv` (all its rows).
    pub fn of(adv: impl Iterator<Item = f32> + Clone) -> Norm {
        let (mut sum, mut n) = (0f64, 0usize);
        for a in adv.clone() {
            sum += a as f64;
            n += 1;
        }
        let nf = n.max(1) as f64;
        let mean = sum / nf;
        let var = adv.map(|a| (a as f64 - mean).powi(2)).sum::<f64>() / nf;
        Norm {
            adv_mean: mean,
            adv_std: var.sqrt(),
            n: n as f64,
        }
    }
}

/// Sums of the per-sample PPO loss terms (policy, value, entropy, approx KL, clipped) of
/// `rows` given the network's `logits` `[rows, 6]` and `value` `[rows]`; writes the
/// gradient of the minibatch loss (model.md section 6.4; means over `norm.n` samples)
/// with respect to the logits and values. See [`finish_metrics`].
pub fn loss_and_grad(
    logits: &[f32],
    value: &[f32],
    rows: &LossRows,
    norm: Norm,
    c: LossCoefs,
    dlogits: &mut Vec<f32>,
    dvalue: &mut Vec<f32>,
) -> [f64; 5] {
    let n = rows.actions.len();
    let nf = norm.n;
    dlogits.resize(n * NUM_ACTIONS, 0.0);
    dvalue.resize(n, 0.0);
    let (mean, std) = (norm.adv_mean, norm.adv_std);
    let (lo, hi) = (1.0 - c.clip_eps, 1.0 + c.clip_eps);
    let mut m = [0f64; 5];
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
    m
}

/// The six metrics (order of [`super::update::METRIC_NAMES`]) from the sums of
/// [`loss_and_grad`] over a minibatch of `n` samples.
pub fn finish_metrics(sums: [f64; 5], n: f64, c: LossCoefs) -> [f64; 6] {
    let m: Vec<f64> = sums.iter().map(|v| v / n).collect();
    [
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        m[0] + c.vf_coef * m[1] - c.ent_coef * m[2],
    ]
}

/// The native update's view of the state: host slices of the parameters, Adam moments,
/// observations (read in place: a minibatch's rows are never copied) and offsets.
pub struct NativeUpdate<'a> {
    lay: Layout,
    params: &'a mut [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    step: &'a mut i64,
    betas: (f64, f64, f64),
    obs: &'a [f32],
    obs_row: &'a [i64],
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
            (Some(o), Some(extra)) => Some(o.host_rows(Some(extra))?),
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
            obs_row: &batch.obs_row,
            offsets,
        })
    }

    /// Runs the epochs on `threads` threads; adds the per-epoch loss sums to `sums`.
    ///
    /// Each minibatch is split into [`PARTS`] parts of whole chunks (by rows); each part
    /// runs forward, loss and backward on its own buffers and the part gradients are
    /// added in part order, so results depend neither on the thread count nor on
    /// scheduling.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        batch: &Batch,
        cfg: &TrainConfig,
        lr: f64,
        rng: &mut Rng,
        mb_size: usize,
        threads: usize,
        sums: &mut [f64; 6],
        stats: &mut UpdateStats,
        stop: &super::Interrupt,
    ) -> Result<(), NonFiniteLoss> {
        let threads = threads.clamp(1, PARTS);
        let coefs = LossCoefs {
            clip_eps: cfg.clip_eps,
            vf_coef: cfg.vf_coef,
            ent_coef: cfg.ent_coef,
        };
        // Two threads: this one and a spinning helper (see `super::pair`).
        let pair = if threads > 1 { SpinPair::new() } else { None };
        let nparts = PARTS;
        let mut parts: Vec<Part> = (0..nparts)
            .map(|_| Part::new(self.lay.total, self.lay.obs_dim))
            .collect();
        let mut grad = vec![0f32; self.lay.total];
        let mut order: Vec<usize> = (0..batch.chunks.len()).collect();
        let prof = &mut stats.profile;
        for _epoch in 0..cfg.num_epochs {
            let t = Instant::now();
            rng.shuffle(&mut order);
            let groups = plan_epoch(batch, &order, mb_size);
            prof.batch_s += t.elapsed().as_secs_f64();
            let mut epoch = [0f64; 6];
            for g in groups {
                if stop.requested() {
                    stats.interrupted = true;
                    return Ok(());
                }
                let t = Instant::now();
                let group = &order[g];
                let total: usize = group.iter().map(|&c| batch.chunks[c].samples.len()).sum();
                let norm = Norm::of(
                    group
                        .iter()
                        .flat_map(|&c| batch.chunks[c].samples.iter())
                        .map(|&s| batch.advantages[s as usize]),
                );
                // Whole chunks to parts, about `total / PARTS` rows each.
                let mut next = 0;
                for (p, part) in parts.iter_mut().enumerate() {
                    let target = (total * (p + 1)).div_ceil(nparts);
                    let mut end = next;
                    let mut rows = part_rows(batch, &group[..next]);
                    while end < group.len() && (rows < target || p + 1 == nparts) {
                        rows += batch.chunks[group[end]].samples.len();
                        end += 1;
                    }
                    part.group = next..end;
                    next = end;
                }
                prof.batch_s += t.elapsed().as_secs_f64();
                let t = Instant::now();
                let (lay, params, off) = (&self.lay, &*self.params, self.offsets.as_ref());
                let obs = Obs {
                    data: self.obs,
                    row: self.obs_row,
                };
                let rows = HostRows::of(batch);
                // Each part lists its own rows (in parallel), then computes.
                let work = |part: &mut Part<'a>| {
                    let tf = Instant::now();
                    part.fill(&rows, &group[part.group.clone()], obs, lay, off);
                    part.fill_s = tf.elapsed().as_secs_f64();
                    part.compute(lay, params, off, norm, coefs)
                };
                match (&pair, &mut parts[..]) {
                    (Some(pair), [a, b]) => pair.run_two(&work, a, b),
                    (_, parts) => parts.iter_mut().for_each(work),
                }
                let t_reduce_start = t.elapsed().as_secs_f64();
                let mut loss_sums = [0f64; 5];
                for part in parts.iter() {
                    for (s, v) in loss_sums.iter_mut().zip(part.sums) {
                        *s += v;
                    }
                }
                for (e, v) in epoch
                    .iter_mut()
                    .zip(finish_metrics(loss_sums, norm.n, coefs))
                {
                    *e += v;
                }
                // Sum of the part gradients and its norm in one pass; the clipping factor
                // (as `clip_grad_norm`) is folded into the Adam step.
                let grads: Vec<&[f32]> = parts
                    .iter()
                    .enumerate()
                    .filter(|(i, p)| *i == 0 || !p.rows.actions.is_empty())
                    .map(|(_, p)| p.grad.as_slice())
                    .collect();
                // Element-wise parts on both threads; the norm's f64 sum on one (its order).
                let half = split_point(grad.len());
                let grad_norm = match &pair {
                    Some(pair) => {
                        let (g0, g1) = grad.split_at_mut(half);
                        let (mut h0, mut h1) = ((g0, 0), (g1, half));
                        let add = |(g, off): &mut (&mut [f32], usize)| add_parts(g, &grads, *off);
                        pair.run_two(&add, &mut h0, &mut h1);
                        sum_squares(&grad)
                    }
                    None => reduce_grad(&mut grad, &grads),
                }
                .sqrt();
                let coef = (cfg.max_grad_norm / (grad_norm + 1e-6)).min(1.0) as f32;
                // Forward + loss and backward summed over the parts (thread-seconds: wall
                // time on one thread); adding the part gradients counts as backward.
                let wall = t.elapsed().as_secs_f64();
                let fwd: f64 = parts.iter().map(|p| p.forward_s).sum();
                prof.batch_s += parts.iter().map(|p| p.fill_s).sum::<f64>();
                let bwd: f64 = parts.iter().map(|p| p.backward_s).sum();
                prof.forward_s += fwd;
                prof.backward_s += bwd + (wall - t_reduce_start).max(0.0);
                let t = Instant::now();
                *self.step += 1;
                let (step, betas) = (*self.step, self.betas);
                match &pair {
                    Some(pair) => {
                        // Element-wise: the same values whichever thread does which half.
                        let (p0, p1) = self.params.split_at_mut(half);
                        let (m0, m1) = self.m.split_at_mut(half);
                        let (v0, v1) = self.v.split_at_mut(half);
                        let (g0, g1) = grad.split_at(half);
                        let (mut h0, mut h1) = ((p0, g0, m0, v0), (p1, g1, m1, v1));
                        let adam = |(p, g, m, v): &mut AdamHalf| {
                            adam_step_scaled(p, g, coef, m, v, step, lr, betas)
                        };
                        pair.run_two(&adam, &mut h0, &mut h1);
                    }
                    None => {
                        adam_step_scaled(self.params, &grad, coef, self.m, self.v, step, lr, betas)
                    }
                }
                prof.adam_s += t.elapsed().as_secs_f64();
                stats.minibatches += 1;
            }
            add_epoch_sums(sums, &epoch)?;
        }
        Ok(())
    }
}

/// One thread's half of the Adam step: parameters, gradient, first and second moments.
type AdamHalf<'x> = (&'x mut [f32], &'x [f32], &'x mut [f32], &'x mut [f32]);

/// Where the flat parameter vector is split between two threads (a multiple of 16).
fn split_point(total: usize) -> usize {
    (total / 2) / 16 * 16
}

fn part_rows(batch: &Batch, chunks: &[usize]) -> usize {
    chunks.iter().map(|&c| batch.chunks[c].samples.len()).sum()
}

/// The host-side per-sample data of a [`Batch`] (shareable between threads).
struct HostRows<'a> {
    chunks: &'a [super::update::Chunk],
    actions: &'a [i64],
    logp: &'a [f32],
    advantages: &'a [f32],
    returns: &'a [f32],
}

impl<'a> HostRows<'a> {
    fn of(b: &'a Batch) -> Self {
        HostRows {
            chunks: &b.chunks,
            actions: &b.actions,
            logp: &b.logp,
            advantages: &b.advantages,
            returns: &b.returns,
        }
    }
}

/// The batch's observations: compact sample `s`'s row is `data[row[s] * d..]`.
#[derive(Clone, Copy)]
struct Obs<'a> {
    data: &'a [f32],
    row: &'a [i64],
}

/// One thread's share of a minibatch and its buffers.
struct Part<'a> {
    /// This part's chunks: a range of the minibatch's chunk list.
    group: std::ops::Range<usize>,
    /// Seconds of the last [`Part::fill`].
    fill_s: f64,
    /// The part's input rows, in place in the observation store.
    input: RowTable<'a>,
    ws: Workspace,
    rows: LossRows,
    segs: Vec<Seg>,
    dlogits: Vec<f32>,
    dvalue: Vec<f32>,
    grad: Vec<f32>,
    sums: [f64; 5],
    /// Seconds of the last forward + loss.
    forward_s: f64,
    /// Seconds of the last backward.
    backward_s: f64,
}

impl<'a> Part<'a> {
    fn new(total: usize, obs_dim: usize) -> Part<'a> {
        Part {
            group: 0..0,
            fill_s: 0.0,
            input: RowTable::new(obs_dim),
            ws: Workspace::default(),
            rows: LossRows::default(),
            segs: Vec::new(),
            dlogits: Vec::new(),
            dvalue: Vec::new(),
            grad: vec![0f32; total],
            sums: [0.0; 5],
            forward_s: 0.0,
            backward_s: 0.0,
        }
    }

    /// Lists the samples of `chunks` (rows in chunk order; observations in place).
    fn fill(
        &mut self,
        batch: &HostRows,
        chunks: &[usize],
        obs: Obs<'a>,
        lay: &Layout,
        off: Option<&OffsetRows>,
    ) {
        let d = lay.obs_dim;
        self.segs.clear();
        let r = &mut self.rows;
        r.actions.clear();
        r.old_logp.clear();
        r.advantages.clear();
        r.returns.clear();
        for &c in chunks {
            let ch = &batch.chunks[c];
            self.segs.push(Seg {
                entry: ch.entry as usize,
                start: r.actions.len(),
                len: ch.samples.len(),
            });
            for &s in &ch.samples {
                let s = s as usize;
                r.actions.push(batch.actions[s] as usize);
                r.old_logp.push(batch.logp[s]);
                r.advantages.push(batch.advantages[s]);
                r.returns.push(batch.returns[s]);
            }
        }
        let n = r.actions.len();
        // The first layer's weight offsets (parameter 0) of the first chunk are requested
        // now, before the forward needs them (it prefetches each later chunk's during the
        // one before).
        let ahead = self
            .segs
            .first()
            .zip(off)
            .and_then(|(s, o)| o.row(0, lay.len[0], s.entry))
            .unwrap_or(&[]);
        Prefetcher::new(ahead, 1).step();
        self.ws.size(lay, n);
        self.input.reset(d);
        for &c in chunks {
            for &s in &batch.chunks[c].samples {
                let row = usize::try_from(obs.row[s as usize])
                    .expect("an alive sample has an observation row");
                self.input.push(&obs.data[row * d..(row + 1) * d]);
            }
        }
    }

    /// Forward, loss and backward of this part (nothing for an empty part).
    fn compute(
        &mut self,
        lay: &Layout,
        params: &[f32],
        off: Option<&OffsetRows>,
        norm: Norm,
        coefs: LossCoefs,
    ) {
        self.sums = [0.0; 5];
        self.forward_s = 0.0;
        self.backward_s = 0.0;
        if self.rows.actions.is_empty() {
            return;
        }
        let t = Instant::now();
        let (ws, x) = (&mut self.ws, self.input.rows());
        ws.forward_on(lay, params, x, &self.segs, off);
        self.sums = loss_and_grad(
            &ws.logits,
            &ws.value,
            &self.rows,
            norm,
            coefs,
            &mut self.dlogits,
            &mut self.dvalue,
        );
        self.forward_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        ws.backward_on(
            lay,
            params,
            x,
            &self.segs,
            off,
            &self.dlogits,
            &self.dvalue,
            &mut self.grad,
        );
        self.backward_s = t.elapsed().as_secs_f64();
    }
}
