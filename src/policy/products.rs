//! The products and dot products of the native passes ([`super::native`]): per-chunk
//! products with `W + D_s`, the three product layouts (the kernels of [`super::gemm`], or
//! `matrixmultiply` where they do not run), the fixed-order dot product and the heads.

use half::f16;

use super::gemm::{self, Rows};
use super::native::Seg;
use crate::world::NUM_ACTIONS;

/// Chunks of at most this many rows use dot products instead of a product with `W + D_s`.
pub(super) const SMALL_CHUNK: usize = 2;

/// Where a chunk's offsets `D_s` are read: the f32 table row of an entry, or the rollout's
/// f16 copy of it when `f16` gives one (then the f16 values are the offsets).
pub(super) struct ChunkRows<'f, 'r> {
    pub f32: &'f dyn Fn(usize) -> &'r [f32],
    pub f16: &'f dyn Fn(usize) -> Option<&'r [f16]>,
}

/// `c = a_s (W + D_s)^T` (`transpose_b`, `a_s` `[len, k]`, `W` `[n, k]`) or `c = a_s (W + D_s)`
/// (`a_s` `[len, k]`, `W` `[k, n]`) for each chunk `s` (rows of `a`, read in place), forming
/// `W + D_s` in `eff`.
#[allow(clippy::too_many_arguments)]
pub(super) fn per_chunk_product(
    segs: &[Seg],
    rows: &ChunkRows,
    w: &[f32],
    k: usize,
    n: usize,
    a: Rows,
    c: &mut [f32],
    eff: &mut Vec<f32>,
    bt: &mut Vec<f32>,
    transpose_b: bool,
    shared_done: bool,
) {
    eff.resize(w.len(), 0.0);
    let mut last = usize::MAX;
    let mut widened = Vec::new();
    for (si, s) in segs.iter().enumerate() {
        let half = (rows.f16)(s.entry);
        if transpose_b && s.len <= SMALL_CHUNK {
            // A few rows: dot products read D_s once, nothing is formed; `x W^T` comes from
            // one product over all rows when every chunk is small (rollout ticks).
            let d = (rows.f32)(s.entry);
            for r in s.start..s.start + s.len {
                let ar = a.row(r);
                for j in 0..n {
                    let dj = match half {
                        Some(h) => dot_half(ar, &h[j * k..(j + 1) * k]),
                        None => dot(ar, &d[j * k..(j + 1) * k]),
                    };
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
            let d = match half {
                Some(h) => {
                    // The f16 copy's values, widened (exact) for the product.
                    widened.clear();
                    widened.extend(h.iter().map(|x| x.to_f32()));
                    &widened[..]
                }
                None => (rows.f32)(s.entry),
            };
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
        let a_s = a.range(s.start, s.len);
        let c_s = &mut c[s.start * n..];
        if fast_t {
            // The next chunk's offsets (main memory) load while this chunk is multiplied.
            let next = segs[si + 1..].iter().find(|t| t.entry != s.entry);
            let ahead = next.map_or(&[][..], |t| (rows.f32)(t.entry));
            gemm::rows_product(s.len, k, n, a_s, eff, 0.0, c_s, ahead);
        } else if transpose_b {
            gemm_abt(s.len, k, n, a_s, eff, 0.0, c_s, bt);
        } else {
            // The backward's `dz` rows: one slice already (borrowed, not copied).
            gemm_ab(s.len, k, n, &a_s.contiguous(), eff, 0.0, c_s);
        }
    }
}

/// `c = beta * c + a b^T` for `a`'s rows `[m, k]` (read in place), row-major `b` `[n, k]`,
/// `c` `[m, n]`; `bt` is scratch for `b^T` (the kernels of [`super::gemm`] read `B` by rows).
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_abt(
    m: usize,
    k: usize,
    n: usize,
    a: Rows,
    b: &[f32],
    beta: f32,
    c: &mut [f32],
    bt: &mut Vec<f32>,
) {
    assert!(a.len() >= m && a.width() == k && b.len() >= n * k && c.len() >= m * n);
    if gemm::fast() {
        gemm::transpose(n, k, b, bt);
        return gemm::rows_product(m, k, n, a, bt, beta, c, &[]);
    }
    let a = a.range(0, m).contiguous();
    gemm::portable_product(m, k, n, &a, (k, 1), b, (1, k), beta, c)
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

/// `c = a^T b` for row-major `a` `[k, m]`, `b`'s rows `[k, n]` (read in place), `c` `[m, n]`
/// (overwritten).
pub(super) fn gemm_atb(m: usize, k: usize, n: usize, a: &[f32], b: Rows, c: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= k && b.width() == n && c.len() >= m * n);
    if gemm::fast() {
        return gemm::product_rows_at(m, k, n, a, b, c);
    }
    let b = b.range(0, k).contiguous();
    gemm::portable_product(m, k, n, a, (1, m), &b, (n, 1), 0.0, c)
}

/// Dot product with sixteen independent partial sums (fixed order on a given machine):
/// AVX2 + FMA when the CPU has them, else plain multiply-adds.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if super::simd::avx2_fma() {
            // SAFETY: the CPU supports the enabled features.
            return unsafe { dot_fma(a, b) };
        }
    }
    dot_lanes(a, b, |x, y, acc| acc + x * y)
}

/// [`dot`] with AVX2 + FMA: lanes 0..8 and 8..16 of the sixteen in two vectors, one fused
/// multiply-add each per sixteen values (bit for bit [`dot_lanes`] with `mul_add`, which the
/// compiler vectorised two lanes at a time).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
fn dot_fma(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let blocks = n / 16;
    let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for i in 0..blocks {
        let (x, y) = (&a[16 * i..16 * i + 16], &b[16 * i..16 * i + 16]);
        // SAFETY: 16 values of each slice (checked by the slicing above).
        unsafe {
            let (pa, pb) = (x.as_ptr(), y.as_ptr());
            lo = _mm256_fmadd_ps(_mm256_loadu_ps(pa), _mm256_loadu_ps(pb), lo);
            hi = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(8)), _mm256_loadu_ps(pb.add(8)), hi);
        }
    }
    let mut acc = [0f32; 16];
    // SAFETY: `acc` holds 16 values.
    unsafe {
        _mm256_storeu_ps(acc.as_mut_ptr(), lo);
        _mm256_storeu_ps(acc.as_mut_ptr().add(8), hi);
    }
    let t = 16 * blocks;
    finish_lanes(
        acc,
        &a[t..n],
        &b[t..n],
        |y| y,
        |x, y, acc| x.mul_add(y, acc),
    )
}

#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32], fma: impl Fn(f32, f32, f32) -> f32) -> f32 {
    widened_dot_lanes(a, b, |y| y, fma)
}

/// `dot`'s sixteen lanes over `a` and `b` widened to f32 by `widen` (exact for f32 and f16).
#[inline(always)]
fn widened_dot_lanes<T: Copy>(
    a: &[f32],
    b: &[T],
    widen: impl Fn(T) -> f32,
    fma: impl Fn(f32, f32, f32) -> f32,
) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..16 {
            acc[l] = fma(x[l], widen(y[l]), acc[l]);
        }
    }
    finish_lanes(acc, ca.remainder(), cb.remainder(), widen, fma)
}

/// [`dot`] of `a` with the f16 values `b`: bit for bit `dot(a, b as f32)` (the widening is
/// exact and the lanes and their order are `dot`'s), with `b` read as half the bytes. F16C
/// converts eight values per instruction where the CPU has it.
pub(super) fn dot_half(a: &[f32], b: &[f16]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if super::simd::avx2_fma() && std::is_x86_feature_detected!("f16c") {
            // SAFETY: the CPU supports the enabled features.
            return unsafe { dot_half_f16c(a, b) };
        }
        if super::simd::avx2_fma() {
            // SAFETY: as above.
            return unsafe { dot_half_fma(a, b) };
        }
    }
    dot_half_lanes(a, b, |x, y, acc| acc + x * y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_half_fma(a: &[f32], b: &[f16]) -> f32 {
    dot_half_lanes(a, b, |x, y, acc| x.mul_add(y, acc))
}

#[inline(always)]
fn dot_half_lanes(a: &[f32], b: &[f16], fma: impl Fn(f32, f32, f32) -> f32) -> f32 {
    widened_dot_lanes(a, b, f16::to_f32, fma)
}

/// `dot`'s ending: the tail in order, then the sixteen lanes summed in its fixed tree.
#[inline(always)]
fn finish_lanes<T: Copy>(
    mut acc: [f32; 16],
    a: &[f32],
    b: &[T],
    widen: impl Fn(T) -> f32,
    fma: impl Fn(f32, f32, f32) -> f32,
) -> f32 {
    let mut tail = 0f32;
    for (x, y) in a.iter().zip(b) {
        tail = fma(*x, widen(*y), tail);
    }
    for l in 0..8 {
        acc[l] += acc[l + 8];
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_half_f16c(a: &[f32], b: &[f16]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let blocks = n / 16;
    let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for i in 0..blocks {
        // SAFETY: `16 * i + 16 <= n` values of each slice; `f16` is a `u16` in memory.
        let (pa, pb) = (
            a.as_ptr().add(16 * i),
            b.as_ptr().add(16 * i) as *const __m128i,
        );
        let (b0, b1) = (
            _mm256_cvtph_ps(_mm_loadu_si128(pb)),
            _mm256_cvtph_ps(_mm_loadu_si128(pb.add(1))),
        );
        // Lanes 0..8 and 8..16 of `dot`'s sixteen, one fused multiply-add each.
        lo = _mm256_fmadd_ps(_mm256_loadu_ps(pa), b0, lo);
        hi = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(8)), b1, hi);
    }
    let mut acc = [0f32; 16];
    _mm256_storeu_ps(acc.as_mut_ptr(), lo);
    _mm256_storeu_ps(acc.as_mut_ptr().add(8), hi);
    let t = 16 * blocks;
    finish_lanes(acc, &a[t..n], &b[t..n], f16::to_f32, |x, y, acc| {
        x.mul_add(y, acc)
    })
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
            if super::simd::avx2_fma() {
                // SAFETY: the CPU supports the enabled features.
                return unsafe { self.run_fma(a, logits, value) };
            }
        }
        self.run_with(dot, a, logits, value)
    }

    /// [`Heads::run`] with the fused dot product inlined (what [`dot`] runs on such CPUs).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn run_fma(&self, a: &[f32], logits: &mut [f32], value: &mut [f32]) {
        self.run_with(|x, y| dot_fma(x, y), a, logits, value)
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

#[cfg(test)]
mod half_tests {
    use super::*;

    #[test]
    fn dot_half_is_dot_of_the_widened_values_bit_for_bit() {
        let mut s = 7u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        for n in [0, 1, 5, 15, 16, 17, 31, 32, 48, 502, 1000] {
            let a: Vec<f32> = (0..n).map(|_| next()).collect();
            let b: Vec<f16> = (0..n).map(|_| f16::from_f32(next() * 0.3)).collect();
            let wide: Vec<f32> = b.iter().map(|x| x.to_f32()).collect();
            assert_eq!(
                dot_half(&a, &b).to_bits(),
                dot(&a, &wide).to_bits(),
                "n = {n}"
            );
            // The vector dot is the sixteen fused lanes, bit for bit.
            #[cfg(target_arch = "x86_64")]
            if crate::policy::simd::avx2_fma() {
                let lanes = dot_lanes(&a, &wide, |x, y, acc| x.mul_add(y, acc));
                assert_eq!(dot(&a, &wide).to_bits(), lanes.to_bits(), "n = {n}");
                let short = &wide[..n / 2];
                let lanes = dot_lanes(&a, short, |x, y, acc| x.mul_add(y, acc));
                assert_eq!(
                    dot(&a, short).to_bits(),
                    lanes.to_bits(),
                    "n = {n}, b shorter"
                );
            }
            // The portable lanes give the same value as the plain `dot` fallback.
            let plain = dot_lanes(&a, &wide, |x, y, acc| acc + x * y);
            let plain_half = dot_half_lanes(&a, &b, |x, y, acc| acc + x * y);
            assert_eq!(plain.to_bits(), plain_half.to_bits(), "n = {n}");
        }
    }
}
