//! The AVX-512F kernels of [`super`]: products with `[4, 64]` register tiles and masked
//! column tails, and 16 x 16 in-register transposes.

// Register tiles are indexed arrays of vectors on purpose (they must stay in registers).
#![allow(clippy::needless_range_loop)]

use super::{Corner, RowAt, KC};
use std::arch::x86_64::*;

/// Rows of `C` per tile.
const MR: usize = 4;
/// 16-float vectors of `C` columns per tile.
const NV: usize = 4;

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
pub unsafe fn product<A: RowAt, B: RowAt>(
    m: usize,
    k: usize,
    n: usize,
    a: A,
    csa: usize,
    b: B,
    beta: f32,
    c: *mut f32,
    ahead: &[f32],
) {
    let tiles = m.div_ceil(MR) * n.div_ceil(16 * NV) * k.div_ceil(KC);
    let mut prefetch = super::Prefetcher::new(ahead, tiles);
    let mut r0 = 0;
    while r0 < m {
        let mr = (m - r0).min(MR);
        let mut j0 = 0;
        while j0 < n {
            let cols = (n - j0).min(16 * NV);
            let nv = cols.div_ceil(16);
            let rem = cols - 16 * (nv - 1);
            let mask: __mmask16 = if rem == 16 { 0xffff } else { (1u16 << rem) - 1 };
            let mut k0 = 0;
            while k0 < k {
                let k1 = (k0 + KC).min(k);
                let add = k0 > 0 || beta != 0.0;
                let at = Corner { r0, k0, j0 };
                let cp = c.add(r0 * n + j0);
                prefetch.step();
                macro_rules! go {
                    ($($mr:literal, $nv:literal);*) => {
                        match (mr, nv) {
                            $(($mr, $nv) => tile::<$mr, $nv, A, B>(k1 - k0, a, csa, b, at, n, mask, cp, add),)*
                            _ => unreachable!(),
                        }
                    };
                }
                go!(4, 4; 4, 3; 4, 2; 4, 1; 3, 4; 3, 3; 3, 2; 3, 1;
                    2, 4; 2, 3; 2, 2; 2, 1; 1, 4; 1, 3; 1, 2; 1, 1);
                k0 = k1;
            }
            j0 += cols;
        }
        r0 += mr;
    }
}

/// `out[kk, j] = b[j, kk] (+ d[j, kk])` for rows `j < rows` (a multiple of 16) of the
/// `[n, k]` matrices, `out` row-major `[k, n]`.
#[target_feature(enable = "avx512f")]
pub unsafe fn transpose_add(
    rows: usize,
    n: usize,
    k: usize,
    b: *const f32,
    d: Option<*const f32>,
    out: *mut f32,
) {
    let mut j0 = 0;
    while j0 < rows {
        let mut k0 = 0;
        while k0 < k {
            let kc = (k - k0).min(16);
            let mask: __mmask16 = if kc == 16 { 0xffff } else { (1u16 << kc) - 1 };
            let mut r = [_mm512_setzero_ps(); 16];
            for (i, ri) in r.iter_mut().enumerate() {
                let off = (j0 + i) * k + k0;
                let mut v = _mm512_maskz_loadu_ps(mask, b.add(off));
                if let Some(d) = d {
                    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, d.add(off)));
                }
                *ri = v;
            }
            let t = transpose16(r);
            for (i, ti) in t.iter().enumerate().take(kc) {
                _mm512_storeu_ps(out.add((k0 + i) * n + j0), *ti);
            }
            k0 += kc;
        }
        j0 += 16;
    }
}

/// The transpose of 16 rows of 16 floats.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    let mut u = [_mm512_setzero_ps(); 16];
    for q in 0..4 {
        let b = 4 * q;
        u[b] = _mm512_shuffle_ps::<0x44>(t[b], t[b + 2]);
        u[b + 1] = _mm512_shuffle_ps::<0xee>(t[b], t[b + 2]);
        u[b + 2] = _mm512_shuffle_ps::<0x44>(t[b + 1], t[b + 3]);
        u[b + 3] = _mm512_shuffle_ps::<0xee>(t[b + 1], t[b + 3]);
    }
    for h in 0..2 {
        let b = 8 * h;
        for i in 0..4 {
            t[b + i] = _mm512_shuffle_f32x4::<0x88>(u[b + i], u[b + 4 + i]);
            t[b + 4 + i] = _mm512_shuffle_f32x4::<0xdd>(u[b + i], u[b + 4 + i]);
        }
    }
    for i in 0..8 {
        u[i] = _mm512_shuffle_f32x4::<0x88>(t[i], t[8 + i]);
        u[8 + i] = _mm512_shuffle_f32x4::<0xdd>(t[i], t[8 + i]);
    }
    u
}

/// One `[R, 16 V]` tile of `C` over `kc` values of `k`: each element a sequential FMA
/// chain from zero, then stored or added to `C` (one rounding). The last vector is
/// masked by `mask`.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize, const V: usize, A: RowAt, B: RowAt>(
    kc: usize,
    a: A,
    csa: usize,
    b: B,
    at: Corner,
    ldc: usize,
    mask: __mmask16,
    c: *mut f32,
    add: bool,
) {
    let arow: [*const f32; R] = std::array::from_fn(|r| a.at(at.r0 + r).add(at.k0 * csa));
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for kk in 0..kc {
        let brow = b.at(at.k0 + kk).add(at.j0);
        let mut bv = [_mm512_setzero_ps(); V];
        for v in 0..V {
            bv[v] = if v + 1 == V {
                _mm512_maskz_loadu_ps(mask, brow.add(16 * v))
            } else {
                _mm512_loadu_ps(brow.add(16 * v))
            };
        }
        for r in 0..R {
            let av = _mm512_set1_ps(*arow[r].add(kk * csa));
            for v in 0..V {
                acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
            }
        }
    }
    for r in 0..R {
        for v in 0..V {
            let p = c.add(r * ldc + 16 * v);
            let m = if v + 1 == V { mask } else { 0xffff };
            let out = if add {
                _mm512_add_ps(_mm512_maskz_loadu_ps(m, p), acc[r][v])
            } else {
                acc[r][v]
            };
            _mm512_mask_storeu_ps(p, m, out);
        }
    }
}
