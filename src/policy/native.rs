//! A hand-written CPU forward and backward pass of the actor-critic MLP (model.md section 5)
//! for a batch of agent chunks, on host slices: the products of [`super::gemm`] (AVX-512 or
//! AVX2 + FMA; `matrixmultiply` elsewhere, the same bits) through [`super::products`].
//!
//! libtorch spends more time dispatching the ~100 small operations (and their autograd
//! nodes) of one PPO minibatch than on its arithmetic. Here a minibatch is a handful of
//! sgemm calls: per layer one shared product over all rows and, with per-agent offsets,
//! one product per chunk of rows that reads the agent's offset rows in place
//! (`w + d_i` is never formed). Tests check it against tch autograd.

use super::gemm::Rows;
use super::param_shapes;
use super::products::{
    add_offset, gemm_ab, gemm_abt, gemm_atb, per_chunk_product, ChunkRows, Heads, SMALL_CHUNK,
};
use super::rows::{norm_backward, norm_forward, Affine, NormGrads};
use crate::world::NUM_ACTIONS;

static THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// Sets the number of threads of the native CPU passes (rollout evaluation, PPO update);
/// at least 1. Separate from libtorch's intra-op threads: on the CPU the trainer keeps
/// libtorch at one thread so its spinning OpenMP workers do not compete with these.
pub fn set_threads(threads: usize) {
    THREADS.store(threads.max(1), std::sync::atomic::Ordering::Relaxed);
}

/// The number of threads of the native CPU passes (default 1; see [`set_threads`]).
pub fn threads() -> usize {
    THREADS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A shared rayon pool of `threads` threads (`None` for one thread: run inline). Built
/// once per thread count and kept.
pub fn thread_pool(threads: usize) -> Option<std::sync::Arc<rayon::ThreadPool>> {
    use std::sync::{Arc, Mutex, OnceLock};
    /// The pools built so far, by thread count.
    type Pools = Mutex<Vec<(usize, Arc<rayon::ThreadPool>)>>;
    static POOLS: OnceLock<Pools> = OnceLock::new();
    if threads <= 1 {
        return None;
    }
    let mut pools = POOLS.get_or_init(|| Mutex::new(Vec::new())).lock().ok()?;
    if let Some((_, p)) = pools.iter().find(|(t, _)| *t == threads) {
        return Some(p.clone());
    }
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .ok()?,
    );
    pools.push((threads, pool.clone()));
    Some(pool)
}

/// The data of a contiguous f32 CPU tensor, or `None` for any other tensor.
pub fn cpu_slice(t: &tch::Tensor) -> Option<&[f32]> {
    if t.device() != tch::Device::Cpu || t.kind() != tch::Kind::Float || !t.is_contiguous() {
        return None;
    }
    let n = t.numel();
    if n == 0 {
        return Some(&[]);
    }
    // SAFETY: a contiguous CPU f32 tensor holds `numel` floats at `data_ptr`, alive while
    // `t` is borrowed.
    Some(unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, n) })
}

/// Mutable access to the data of a contiguous f32 CPU tensor.
///
/// # Safety
/// No other reference to the tensor's storage (through any tensor or slice) may be used
/// while the returned slice is alive.
// The storage belongs to libtorch (shared by every handle of the tensor), not to the borrow
// of `t`: exclusivity is the caller's promise above, hence `&Tensor` in, `&mut [f32]` out.
#[allow(clippy::mut_from_ref)]
pub unsafe fn cpu_slice_mut(t: &tch::Tensor) -> Option<&mut [f32]> {
    if t.device() != tch::Device::Cpu || t.kind() != tch::Kind::Float || !t.is_contiguous() {
        return None;
    }
    let n = t.numel();
    if n == 0 {
        return Some(&mut []);
    }
    Some(std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n))
}

/// Where each parameter lives in the flat parameter vector ([`super::Policy::flat`]).
#[derive(Debug, Clone)]
pub struct Layout {
    /// Observation length.
    pub obs_dim: usize,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Start of each parameter (order of [`super::Policy::params`]).
    pub start: Vec<usize>,
    /// Number of scalars of each parameter.
    pub len: Vec<usize>,
    /// Total number of scalars.
    pub total: usize,
}

impl Layout {
    /// The layout of the network with `obs_dim` inputs and `hidden` widths.
    pub fn new(obs_dim: usize, hidden: &[usize]) -> Layout {
        let shapes = param_shapes(obs_dim, hidden);
        let len: Vec<usize> = shapes
            .iter()
            .map(|s| s.iter().product::<i64>() as usize)
            .collect();
        let mut start = Vec::with_capacity(len.len());
        let mut total = 0;
        for &l in &len {
            start.push(total);
            total += l;
        }
        Layout {
            obs_dim,
            hidden: hidden.to_vec(),
            start,
            len,
            total,
        }
    }

    fn param<'a>(&self, p: &'a [f32], i: usize) -> &'a [f32] {
        &p[self.start[i]..self.start[i] + self.len[i]]
    }

    fn width(&self, k: usize) -> usize {
        if k == 0 {
            self.obs_dim
        } else {
            self.hidden[k - 1]
        }
    }
}

/// Per-parameter offset rows of a virtual table: entry `e < num_slots` is row `e` of the
/// parameter's slot table, larger entries are row `e - num_slots` of its extra table.
#[derive(Debug, Clone)]
pub struct OffsetRows<'a> {
    /// `(slot table, extra table)` per parameter (order of [`super::Policy::params`]);
    /// `None` for parameters without offsets.
    pub tables: Vec<Option<(&'a [f32], &'a [f32])>>,
    /// The rollout's f16 copy of a parameter's slot table, read instead of it where present
    /// (`evolution.rollout_offsets = "f16"`; empty otherwise).
    pub half: Vec<Option<&'a [half::f16]>>,
    /// Rows of the slot tables.
    pub num_slots: usize,
}

impl<'a> OffsetRows<'a> {
    /// The offsets of parameter `p` (`len` scalars) for table entry `entry`.
    #[inline]
    pub fn row(&self, p: usize, len: usize, entry: usize) -> Option<&'a [f32]> {
        let (slots, extra) = self.tables[p]?;
        Some(if entry < self.num_slots {
            &slots[entry * len..(entry + 1) * len]
        } else {
            let e = entry - self.num_slots;
            &extra[e * len..(e + 1) * len]
        })
    }

    /// The f16 copy of the offsets of parameter `p` for slot `entry`, when there is one.
    #[inline]
    fn half_row(&self, p: usize, len: usize, entry: usize) -> Option<&'a [half::f16]> {
        let table = (*self.half.get(p)?)?;
        (entry < self.num_slots).then(|| &table[entry * len..(entry + 1) * len])
    }
}

/// Rows `start..start + len` of a batch act with the offsets of table entry `entry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seg {
    /// Entry of the virtual offset table (ignored without offsets).
    pub entry: usize,
    /// First row.
    pub start: usize,
    /// Number of rows.
    pub len: usize,
}

/// Buffers of one forward/backward pass, reused across calls.
#[derive(Debug, Default)]
pub struct Workspace {
    rows: usize,
    /// Input rows `[rows, obs_dim]`, filled by the caller (see [`Workspace::input_mut`]).
    x: Vec<f32>,
    /// Per hidden layer: normalised pre-activations (LayerNorm output before the affine).
    nhat: Vec<Vec<f32>>,
    /// Per hidden layer: `1 / sqrt(var + eps)` per row.
    rstd: Vec<Vec<f32>>,
    /// Per hidden layer: tanh outputs.
    act: Vec<Vec<f32>>,
    /// Logits `[rows, 6]` of the last forward.
    pub logits: Vec<f32>,
    /// Values `[rows]` of the last forward.
    pub value: Vec<f32>,
    da: Vec<f32>,
    dz: Vec<f32>,
    /// Scratch for one chunk's effective weight matrix `W + D_s` (or its transpose).
    eff: Vec<f32>,
    /// Scratch for a transposed weight matrix (see [`gemm_abt`]).
    bt: Vec<f32>,
    /// One chunk's LayerNorm constants (bias, scale, shift: shared + offsets).
    bias: Vec<f32>,
    scale: Vec<f32>,
    shift: Vec<f32>,
    /// Shared LayerNorm gradient accumulators of one layer.
    acc: Vec<f32>,
    /// Evolved weight matrices: `false` forms `W + D_s` per chunk in one reused scratch
    /// and multiplies once (half the arithmetic); `true` computes `x W^T` for all rows plus
    /// `x_s D_s^T` per chunk.
    pub split_offsets: bool,
}

pub use super::rows::tanh_in_place;

impl Workspace {
    /// Sizes the buffers for `rows` rows and returns the input rows `[rows, obs_dim]` to fill
    /// (for [`Workspace::forward`] and [`Workspace::backward`]).
    pub fn input_mut(&mut self, lay: &Layout, rows: usize) -> &mut [f32] {
        self.size(lay, rows);
        self.x.resize(rows * lay.obs_dim, 0.0);
        &mut self.x
    }

    /// Sizes the buffers for `rows` rows whose inputs are read in place (for
    /// [`Workspace::forward_on`] and [`Workspace::backward_on`]).
    pub fn size(&mut self, lay: &Layout, rows: usize) {
        self.rows = rows;
        let nh = lay.hidden.len();
        self.nhat.resize_with(nh, Vec::new);
        self.rstd.resize_with(nh, Vec::new);
        self.act.resize_with(nh, Vec::new);
        for (k, &h) in lay.hidden.iter().enumerate() {
            self.nhat[k].resize(rows * h, 0.0);
            self.rstd[k].resize(rows, 0.0);
            self.act[k].resize(rows * h, 0.0);
        }
        self.logits.resize(rows * NUM_ACTIONS, 0.0);
        self.value.resize(rows, 0.0);
    }

    /// Forward pass over the input rows of [`Workspace::input_mut`]: fills
    /// [`Workspace::logits`] and [`Workspace::value`]. `segs` must cover the rows when `off`
    /// is given.
    pub fn forward(&mut self, lay: &Layout, p: &[f32], segs: &[Seg], off: Option<&OffsetRows>) {
        let x = std::mem::take(&mut self.x);
        self.forward_on(lay, p, Rows::dense(&x, lay.obs_dim), segs, off);
        self.x = x;
    }

    /// [`Workspace::forward`] with the input rows `x` (`[rows, obs_dim]` of
    /// [`Workspace::size`]) read in place: the same bits wherever the rows are.
    ///
    /// # Panics
    /// If `x` does not have the sized number of rows of `obs_dim` values.
    pub fn forward_on(
        &mut self,
        lay: &Layout,
        p: &[f32],
        x: Rows,
        segs: &[Seg],
        off: Option<&OffsetRows>,
    ) {
        let n = self.rows;
        assert!(
            x.len() == n && x.width() == lay.obs_dim,
            "input rows of the wrong shape"
        );
        for k in 0..lay.hidden.len() {
            let (h, w_in) = (lay.hidden[k], lay.width(k));
            let (wi, bi, gi, ti) = (4 * k, 4 * k + 1, 4 * k + 2, 4 * k + 3);
            let (before, rest) = self.act.split_at_mut(k);
            let input = if k == 0 {
                x
            } else {
                Rows::dense(&before[k - 1], w_in)
            };
            let z = &mut self.nhat[k];
            let evolved = off.filter(|o| o.tables[wi].is_some());
            if let (Some(o), false) = (evolved, self.split_offsets) {
                // z_s = x_s (W + D_s)^T.
                let rows = |e: usize| o.row(wi, lay.len[wi], e).unwrap();
                let half = |e: usize| o.half_row(wi, lay.len[wi], e);
                let w = lay.param(p, wi);
                let all_small = segs.iter().all(|s| s.len <= SMALL_CHUNK);
                let (eff, bt) = (&mut self.eff, &mut self.bt);
                if all_small {
                    gemm_abt(n, w_in, h, input, w, 0.0, z, bt);
                }
                let rows = ChunkRows {
                    f32: &rows,
                    f16: &half,
                };
                per_chunk_product(segs, &rows, w, w_in, h, input, z, eff, bt, true, all_small);
            } else {
                // z = x W^T (+ x_s D_s^T per chunk s).
                gemm_abt(n, w_in, h, input, lay.param(p, wi), 0.0, z, &mut self.bt);
            }
            if let (Some(o), true) = (off, self.split_offsets) {
                for s in segs {
                    if let Some(d) = o.row(wi, lay.len[wi], s.entry) {
                        let xs = input.range(s.start, s.len);
                        let bt = &mut self.bt;
                        gemm_abt(s.len, w_in, h, xs, d, 1.0, &mut z[s.start * h..], bt);
                    }
                }
            }
            let (b, g, t) = (lay.param(p, bi), lay.param(p, gi), lay.param(p, ti));
            let act = &mut rest[0];
            let rstd = &mut self.rstd[k];
            let (bias, scale, shift) = (&mut self.bias, &mut self.scale, &mut self.shift);
            for v in [&mut *bias, &mut *scale, &mut *shift] {
                v.resize(h, 0.0);
            }
            let mut run = |rows: std::ops::Range<usize>, entry: Option<usize>| {
                let row = |i: usize| entry.and_then(|e| off.and_then(|o| o.row(i, h, e)));
                add_offset(bias, b, row(bi));
                add_offset(scale, g, row(gi));
                add_offset(shift, t, row(ti));
                let aff = Affine { bias, scale, shift };
                let (zs, acts) = (
                    &mut z[rows.start * h..rows.end * h],
                    &mut act[rows.start * h..rows.end * h],
                );
                norm_forward(h, zs, acts, &mut rstd[rows], &aff);
            };
            match off {
                Some(_) => segs
                    .iter()
                    .for_each(|s| run(s.start..s.start + s.len, Some(s.entry))),
                None => run(0..n, None),
            }
        }
        self.heads_forward(lay, p, segs, off);
    }

    fn heads_forward(&mut self, lay: &Layout, p: &[f32], segs: &[Seg], off: Option<&OffsetRows>) {
        let n = self.rows;
        let h = *lay.hidden.last().unwrap();
        let a = &self.act[lay.hidden.len() - 1];
        let ai = 4 * lay.hidden.len();
        let (wa, ba, wc, bc) = (
            lay.param(p, ai),
            lay.param(p, ai + 1),
            lay.param(p, ai + 2),
            lay.param(p, ai + 3),
        );
        let (logits, value) = (&mut self.logits, &mut self.value);
        let mut run = |rows: std::ops::Range<usize>, entry: Option<usize>| {
            let row = |i: usize| entry.and_then(|e| off.and_then(|o| o.row(i, lay.len[i], e)));
            let heads = Heads {
                h,
                w: [wa, ba, wc, bc],
                d: [row(ai), row(ai + 1), row(ai + 2), row(ai + 3)],
            };
            let (lg, v) = (
                &mut logits[rows.start * NUM_ACTIONS..rows.end * NUM_ACTIONS],
                &mut value[rows.clone()],
            );
            heads.run(&a[rows.start * h..rows.end * h], lg, v);
        };
        match off {
            Some(_) => segs
                .iter()
                .for_each(|s| run(s.start..s.start + s.len, Some(s.entry))),
            None => run(0..n, None),
        }
    }

    /// Backward pass of the last [`Workspace::forward`] given the loss gradients with
    /// respect to the logits (`[rows, 6]`) and values (`[rows]`): writes the gradient of
    /// the shared parameters into `grad` (`lay.total` scalars, overwritten). Offsets get no
    /// gradient.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &mut self,
        lay: &Layout,
        p: &[f32],
        segs: &[Seg],
        off: Option<&OffsetRows>,
        dlogits: &[f32],
        dvalue: &[f32],
        grad: &mut [f32],
    ) {
        let x = std::mem::take(&mut self.x);
        let x_rows = Rows::dense(&x, lay.obs_dim);
        self.backward_on(lay, p, x_rows, segs, off, dlogits, dvalue, grad);
        self.x = x;
    }

    /// [`Workspace::backward`] of the last [`Workspace::forward_on`], with its input rows `x`.
    ///
    /// # Panics
    /// If `x` does not have the sized number of rows of `obs_dim` values.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_on(
        &mut self,
        lay: &Layout,
        p: &[f32],
        x: Rows,
        segs: &[Seg],
        off: Option<&OffsetRows>,
        dlogits: &[f32],
        dvalue: &[f32],
        grad: &mut [f32],
    ) {
        let n = self.rows;
        assert!(
            x.len() == n && x.width() == lay.obs_dim,
            "input rows of the wrong shape"
        );
        let nh = lay.hidden.len();
        let h = lay.hidden[nh - 1];
        grad[..lay.total].fill(0.0);
        let ai = 4 * nh;
        // Heads: d(Wa) = dlogits^T a, d(Wc) = dvalue^T a, d(a) = dlogits (Wa + Da) + dvalue (Wc + Dc).
        self.da.resize(n * h, 0.0);
        {
            let a = &self.act[nh - 1];
            let (wa, wc) = (lay.param(p, ai), lay.param(p, ai + 2));
            let (ga, rest) = grad[lay.start[ai]..].split_at_mut(lay.len[ai]);
            gemm_atb(NUM_ACTIONS, n, h, dlogits, Rows::dense(a, h), ga);
            for r in 0..n {
                for o in 0..NUM_ACTIONS {
                    rest[o] += dlogits[r * NUM_ACTIONS + o];
                }
            }
            let gc = &mut grad[lay.start[ai + 2]..lay.start[ai + 2] + h];
            gemm_atb(1, n, h, dvalue, Rows::dense(a, h), gc);
            grad[lay.start[ai + 3]] += dvalue.iter().sum::<f32>();
            let da = &mut self.da;
            gemm_ab(n, NUM_ACTIONS, h, dlogits, wa, 0.0, da);
            for r in 0..n {
                let dv = dvalue[r];
                for (d, w) in da[r * h..(r + 1) * h].iter_mut().zip(wc) {
                    *d += dv * w;
                }
            }
            if let Some(o) = off {
                for s in segs {
                    let rows = s.start..s.start + s.len;
                    if let Some(d) = o.row(ai, lay.len[ai], s.entry) {
                        let dl = &dlogits[rows.start * NUM_ACTIONS..rows.end * NUM_ACTIONS];
                        gemm_ab(s.len, NUM_ACTIONS, h, dl, d, 1.0, &mut da[rows.start * h..]);
                    }
                    if let Some(d) = o.row(ai + 2, lay.len[ai + 2], s.entry) {
                        for r in rows {
                            let dv = dvalue[r];
                            for (x, w) in da[r * h..(r + 1) * h].iter_mut().zip(d) {
                                *x += dv * w;
                            }
                        }
                    }
                }
            }
        }
        // Hidden layers, last to first.
        for k in (0..nh).rev() {
            let (h, w_in) = (lay.hidden[k], lay.width(k));
            let (wi, bi, gi, ti) = (4 * k, 4 * k + 1, 4 * k + 2, 4 * k + 3);
            self.dz.resize(n * h, 0.0);
            let (a, nhat, rstd) = (&self.act[k], &self.nhat[k], &self.rstd[k]);
            let (da, dz) = (&self.da, &mut self.dz);
            let g = lay.param(p, gi);
            // Shared gradients of the LayerNorm scale, shift and the linear bias.
            let acc = &mut self.acc;
            acc.clear();
            acc.resize(3 * h, 0.0);
            let (acc_g, acc_rest) = acc.split_at_mut(h);
            let (acc_t, acc_b) = acc_rest.split_at_mut(h);
            let mut grads = NormGrads {
                g: acc_g,
                t: acc_t,
                b: acc_b,
            };
            let scale = &mut self.scale;
            scale.resize(h, 0.0);
            let mut run = |rows: std::ops::Range<usize>, entry: Option<usize>| {
                add_offset(
                    scale,
                    g,
                    entry.and_then(|e| off.and_then(|o| o.row(gi, h, e))),
                );
                let span = rows.start * h..rows.end * h;
                norm_backward(
                    h,
                    &a[span.clone()],
                    &nhat[span.clone()],
                    &rstd[rows],
                    &da[span.clone()],
                    &mut dz[span],
                    scale,
                    &mut grads,
                );
            };
            match off {
                Some(_) => segs
                    .iter()
                    .for_each(|s| run(s.start..s.start + s.len, Some(s.entry))),
                None => run(0..n, None),
            }
            let NormGrads {
                g: acc_g,
                t: acc_t,
                b: acc_b,
            } = grads;
            for (i, part) in [(gi, &*acc_g), (ti, &*acc_t), (bi, &*acc_b)] {
                grad[lay.start[i]..lay.start[i] + h].copy_from_slice(part);
            }
            let input = if k == 0 {
                x
            } else {
                Rows::dense(&self.act[k - 1], w_in)
            };
            let gw = &mut grad[lay.start[wi]..lay.start[wi] + lay.len[wi]];
            gemm_atb(h, n, w_in, &self.dz, input, gw);
            if k > 0 {
                // d(input) = dz (W + D_s) per chunk; the first layer's input needs none.
                self.da.resize(n * w_in, 0.0);
                let evolved = off.filter(|o| o.tables[wi].is_some());
                if let (Some(o), false) = (evolved, self.split_offsets) {
                    let rows = |e: usize| o.row(wi, lay.len[wi], e).unwrap();
                    // The backward is the update's: f32 offsets only.
                    let rows = ChunkRows {
                        f32: &rows,
                        f16: &|_| None,
                    };
                    let (w, dz, da) = (lay.param(p, wi), &self.dz, &mut self.da);
                    let (eff, bt) = (&mut self.eff, &mut self.bt);
                    let dz = Rows::dense(dz, h);
                    per_chunk_product(segs, &rows, w, h, w_in, dz, da, eff, bt, false, false);
                } else {
                    gemm_ab(n, h, w_in, &self.dz, lay.param(p, wi), 0.0, &mut self.da);
                }
                if let (Some(o), true) = (off, self.split_offsets) {
                    for s in segs {
                        if let Some(d) = o.row(wi, lay.len[wi], s.entry) {
                            let dzs = &self.dz[s.start * h..(s.start + s.len) * h];
                            let out = &mut self.da[s.start * w_in..];
                            gemm_ab(s.len, h, w_in, dzs, d, 1.0, out);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_tanh_is_within_1e_6_relative() {
        let xs: Vec<f32> = (-200_000..=200_000).map(|i| i as f32 * 5e-5).collect();
        let mut ys = xs.clone();
        tanh_in_place(&mut ys);
        for (&x, &y) in xs.iter().zip(&ys) {
            let want = (x as f64).tanh();
            assert!(
                (y as f64 - want).abs() <= 1e-6 * want.abs().max(1e-3),
                "tanh({x}) = {y}, want {want}"
            );
        }
        let mut big = [20.0f32, -20.0, 1e-6];
        tanh_in_place(&mut big);
        assert_eq!(big, [1.0, -1.0, 1e-6]);
    }
}
