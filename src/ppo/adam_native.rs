//! The optimiser step of the native update on host slices: gradient sum over the parts and
//! its norm, global-norm clipping and Adam, each one pass over the flat parameter vector
//! compiled for AVX-512 / AVX2 at run time (element-wise or in a fixed order: the same bits
//! on every path). Re-exported by [`super::update_native`].

use crate::policy::simd::dispatch_simd;

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

/// One Adam step on host slices (the formula of [`super::adam::Adam::step`]).
#[allow(clippy::too_many_arguments)]
pub fn adam_step(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    step: i64,
    lr: f64,
    betas: (f64, f64, f64),
) {
    adam_step_scaled(p, g, 1.0, m, v, step, lr, betas)
}

/// [`adam_step`] on the gradient `coef * g` (the clipping factor folded in: the same values
/// as scaling `g` first). One pass over the parameters, vectorisable.
#[allow(clippy::too_many_arguments)]
pub fn adam_step_scaled(
    p: &mut [f32],
    g: &[f32],
    coef: f32,
    m: &mut [f32],
    v: &mut [f32],
    step: i64,
    lr: f64,
    (beta1, beta2, eps): (f64, f64, f64),
) {
    let t = step as i32;
    let k = AdamConsts {
        step_size: (lr / (1.0 - beta1.powi(t))) as f32,
        bc2_sqrt: (1.0 - beta2.powi(t)).sqrt() as f32,
        b1: beta1 as f32,
        b2: beta2 as f32,
        eps: eps as f32,
        coef,
    };
    adam(p, g, m, v, k)
}

/// The per-step constants of [`adam_step_scaled`].
#[derive(Clone, Copy)]
struct AdamConsts {
    step_size: f32,
    bc2_sqrt: f32,
    b1: f32,
    b2: f32,
    eps: f32,
    coef: f32,
}

dispatch_simd! {
    /// The Adam loop, compiled for the CPU's widest vectors (element-wise: the same bits).
    fn adam(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: AdamConsts) => adam_body;
}

#[inline(always)]
fn adam_body(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: AdamConsts) {
    let AdamConsts {
        step_size,
        bc2_sqrt,
        b1,
        b2,
        eps,
        coef,
    } = k;
    let n = p.len().min(g.len()).min(m.len()).min(v.len());
    let (p, g, m, v) = (&mut p[..n], &g[..n], &mut m[..n], &mut v[..n]);
    let step = |pi: &mut f32, gi: f32, mi: &mut f32, vi: &mut f32| {
        *mi += (1.0 - b1) * (gi - *mi);
        *vi = b2 * *vi + (1.0 - b2) * gi * gi;
        let denom = vi.sqrt() / bc2_sqrt + eps;
        *pi -= step_size * (*mi / denom);
    };
    if coef < 1.0 {
        for i in 0..n {
            step(&mut p[i], g[i] * coef, &mut m[i], &mut v[i]);
        }
    } else {
        for i in 0..n {
            step(&mut p[i], g[i], &mut m[i], &mut v[i]);
        }
    }
}

dispatch_simd! {
    /// `grad = parts[0] + parts[1] + ...` (in part order), returning the squared L2 norm of
    /// the sum (f64, eight partial sums in a fixed order: vectorisable).
    pub fn reduce_grad(grad: &mut [f32], parts: &[&[f32]]) -> f64 => reduce_grad_body;
}

#[inline(always)]
fn reduce_grad_body(grad: &mut [f32], parts: &[&[f32]]) -> f64 {
    add_parts_body(grad, parts, 0);
    sum_squares_body(grad)
}

dispatch_simd! {
    /// `grad = parts[0][off..] + parts[1][off..] + ...` (in part order) for `grad.len()` values:
    /// the element-wise half of [`reduce_grad`], so it can be split between threads.
    pub(crate) fn add_parts(grad: &mut [f32], parts: &[&[f32]], off: usize) => add_parts_body;
}

#[inline(always)]
fn add_parts_body(grad: &mut [f32], parts: &[&[f32]], off: usize) {
    let n = grad.len();
    grad.copy_from_slice(&parts[0][off..off + n]);
    for q in &parts[1..] {
        grad.iter_mut()
            .zip(&q[off..off + n])
            .for_each(|(g, x)| *g += x);
    }
}

dispatch_simd! {
    /// The squared L2 norm of `grad` in [`reduce_grad`]'s order (one thread: a fixed order).
    pub(crate) fn sum_squares(grad: &[f32]) -> f64 => sum_squares_body;
}

#[inline(always)]
fn sum_squares_body(grad: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let mut blocks = grad.chunks_exact(8);
    for c in &mut blocks {
        for l in 0..8 {
            acc[l] += (c[l] as f64) * (c[l] as f64);
        }
    }
    for (l, &x) in blocks.remainder().iter().enumerate() {
        acc[l] += (x as f64) * (x as f64);
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}
