//! The products and dot products of the native passes ([`super::native`]): per-chunk
//! products with `W + D_s`, the three product layouts (the kernels of [`super::gemm`], or
//! `matrixmultiply` where they do not run), the fixed-order dot product and the heads.

use super::gemm;
use super::native::Seg;
use crate::world::NUM_ACTIONS;

/// Chunks of at most this many rows use dot products instead of a product with `W + D_s`.
pub(super) const SMALL_CHUNK: usize = 2;

/// `c = a_s (W + D_s)^T` (`transpose_b`, `a_s` `[len, k]`, `W` `[n, k]`) or `c = a_s (W + D_s)`
/// (`a_s` `[len, k]`, `W` `[k, n]`) for each chunk `s`, forming `W + D_s` in `eff`.
#[allow(clippy::too_many_arguments)]
pub(super) fn per_chunk_product<'r>(
    segs: &[Seg],
    rows: &dyn Fn(usize) -> &'r [f32],
    w: &[f32],
    k: usize,
    n: usize,
    a: &[f32],
    c: &mut [f32],
    eff: &mut Vec<f32>,
    bt: &mut Vec<f32>,
    transpose_b: bool,
    shared_done: bool,
) {
    eff.resize(w.len(), 0.0);
    let mut last = usize::MAX;
    for (si, s) in segs.iter().enumerate() {
        if transpose_b && s.len <= SMALL_CHUNK {
            // A few rows: dot products read D_s once, nothing is formed; `x W^T` comes from
            // one product over all rows when every chunk is small (rollout ticks).
            let d = rows(s.entry);
            for r in s.start..s.start + s.len {
                let ar = &a[r * k..(r + 1) * k];
                for j in 0..n {
                    let dj = dot(ar, &d[j * k..(j + 1) * k]);
                    c[r * n + j] = if shared_done {
                        c[r * n + j] + dj
                    } else {
                        dot(ar, &w[j * k..(j + 1) * k]) + dj
                    };
                }
            }
            continue;
        }
        let fast_t = transpose_b && gemm::fast();
        if s.entry != last {
            let d = rows(s.entry);
            if fast_t {
                // `(W + D_s)^T`, the layout the kernels read: no further copy.
                gemm::transpose_add(n, k, w, Some(d), eff);
            } else {
                for ((e, &x), &y) in eff.iter_mut().zip(w).zip(d) {
                    *e = x + y;
                }
            }
            last = s.entry;
        }
        let a_s = &a[s.start * k..(s.start + s.len) * k];
        let c_s = &mut c[s.start * n..];
        if fast_t {
            // The next chunk's offsets (main memory) load while this chunk is multiplied.
            let next = segs[si + 1..].iter().find(|t| t.entry != s.entry);
            let ahead = next.map_or(&[][..], |t| rows(t.entry));
            gemm::product_prefetching(s.len, k, n, a_s, k, 1, eff, 0.0, c_s, ahead);
        } else if transpose_b {
            gemm_abt(s.len, k, n, a_s, eff, 0.0, c_s, bt);
        } else {
            gemm_ab(s.len, k, n, a_s, eff, 0.0, c_s);
        }
    }
}

/// `c = beta * c + a b^T` for row-major `a` `[m, k]`, `b` `[n, k]`, `c` `[m, n]`; `bt` is
/// scratch for `b^T` (the AVX-512 kernels of [`super::gemm`] read `B` by rows).
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_abt(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
    bt: &mut Vec<f32>,
) {
    assert!(a.len() >= m * k && b.len() >= n * k && c.len() >= m * n);
    if gemm::fast() {
        gemm::transpose(n, k, b, bt);
        return gemm::product(m, k, n, a, k, 1, bt, beta, c);
    }
    gemm::portable_product(m, k, n, a, (k, 1), b, (1, k), beta, c)
}

/// `c = beta * c + a b` for row-major `a` `[m, k]`, `b` `[k, n]`, `c` `[m, n]`.
pub(super) fn gemm_ab(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    if gemm::fast() {
        return gemm::product(m, k, n, a, k, 1, b, beta, c);
    }
    gemm::portable_product(m, k, n, a, (k, 1), b, (n, 1), beta, c)
}

/// `c = a^T b` for row-major `a` `[k, m]`, `b` `[k, n]`, `c` `[m, n]` (overwritten).
pub(super) fn gemm_atb(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    if gemm::fast() {
        return gemm::product(m, k, n, a, 1, m, b, 0.0, c);
    }
    gemm::portable_product(m, k, n, a, (1, m), b, (n, 1), 0.0, c)
}

/// Dot product with sixteen independent partial sums (fixed order on a given machine):
/// AVX2 + FMA when the CPU has them, else plain multiply-adds.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the enabled features.
            return unsafe { dot_fma(a, b) };
        }
    }
    dot_lanes(a, b, |x, y, acc| acc + x * y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_fma(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b, |x, y, acc| x.mul_add(y, acc))
}

#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32], fma: impl Fn(f32, f32, f32) -> f32) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..16 {
            acc[l] = fma(x[l], y[l], acc[l]);
        }
    }
    let mut tail = 0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail = fma(*x, *y, tail);
    }
    for l in 0..8 {
        acc[l] += acc[l + 8];
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// The heads' parameters for one chunk: shared `[actor W, actor b, critic W, critic b]`
/// and the chunk's offsets of each.
pub(super) struct Heads<'a> {
    pub h: usize,
    pub w: [&'a [f32]; 4],
    pub d: [Option<&'a [f32]>; 4],
}

impl Heads<'_> {
    /// Logits `[rows, 6]` and values `[rows]` of the activations `a` `[rows, h]`: per output
    /// `dot(a, W_o) + b_o (+ dot(a, D_o)) (+ d_o)` with [`dot`]'s order.
    pub fn run(&self, a: &[f32], logits: &mut [f32], value: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU supports the enabled features.
                return unsafe { self.run_fma(a, logits, value) };
            }
        }
        self.run_with(dot, a, logits, value)
    }

    /// [`Heads::run`] with the fused dot product inlined (what [`dot`] runs on such CPUs).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_fma(&self, a: &[f32], logits: &mut [f32], value: &mut [f32]) {
        self.run_with(
            |x, y| dot_lanes(x, y, |p, q, acc| p.mul_add(q, acc)),
            a,
            logits,
            value,
        )
    }

    #[inline(always)]
    fn run_with(
        &self,
        dot: impl Fn(&[f32], &[f32]) -> f32,
        a: &[f32],
        logits: &mut [f32],
        value: &mut [f32],
    ) {
        let h = self.h;
        let [wa, ba, wc, bc] = self.w;
        let [dwa, dba, dwc, dbc] = self.d;
        for ((ar, lr), v) in a
            .chunks_exact(h)
            .zip(logits.chunks_exact_mut(NUM_ACTIONS))
            .zip(value.iter_mut())
        {
            for o in 0..NUM_ACTIONS {
                let mut s = dot(ar, &wa[o * h..(o + 1) * h]) + ba[o];
                if let Some(d) = dwa {
                    s += dot(ar, &d[o * h..(o + 1) * h]);
                }
                lr[o] = s + dba.map_or(0.0, |d| d[o]);
            }
            let mut x = dot(ar, wc) + bc[0];
            if let Some(d) = dwc {
                x += dot(ar, d);
            }
            *v = x + dbc.map_or(0.0, |d| d[0]);
        }
    }
}

/// `out = w (+ d)`.
pub(super) fn add_offset(out: &mut [f32], w: &[f32], d: Option<&[f32]>) {
    match d {
        Some(d) => {
            for ((o, a), b) in out.iter_mut().zip(w).zip(d) {
                *o = a + b;
            }
        }
        None => out.copy_from_slice(&w[..out.len()]),
    }
}
