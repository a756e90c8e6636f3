//! The AVX2 + FMA kernel of [`super::product`]: 8-float vectors, `[6, 16]` register tiles
//! (12 accumulators, two vectors of a row of `B` and one broadcast: 15 of the 16 registers).

// Register tiles are indexed arrays of vectors on purpose (they must stay in registers).
#![allow(clippy::needless_range_loop)]

use super::{Corner, RowAt, KC};
use std::arch::x86_64::*;

/// Rows of `C` per tile.
const MR: usize = 6;
/// 8-float vectors of `C` columns per tile.
const NV: usize = 2;

/// As `avx512::product`, 8 floats per vector (the same order per element).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
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
    let tiles = m.div_ceil(MR) * n.div_ceil(8 * NV) * k.div_ceil(KC);
    let mut prefetch = super::Prefetcher::new(ahead, tiles);
    let mut r0 = 0;
    while r0 < m {
        let mr = (m - r0).min(MR);
        let mut j0 = 0;
        while j0 < n {
            let cols = (n - j0).min(8 * NV);
            let nv = cols.div_ceil(8);
            let rem = (cols - 8 * (nv - 1)) as i32;
            // Lanes below `rem` of the last vector are in the matrix.
            let mask = _mm256_cmpgt_epi32(
                _mm256_set1_epi32(rem),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            );
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
                            $(($mr, $nv) => if rem == 8 {
                                tile::<$mr, $nv, true, A, B>(k1 - k0, a, csa, b, at, n, mask, cp, add)
                            } else {
                                tile::<$mr, $nv, false, A, B>(k1 - k0, a, csa, b, at, n, mask, cp, add)
                            },)*
                            _ => unreachable!(),
                        }
                    };
                }
                go!(6, 2; 6, 1; 5, 2; 5, 1; 4, 2; 4, 1; 3, 2; 3, 1; 2, 2; 2, 1; 1, 2; 1, 1);
                k0 = k1;
            }
            j0 += cols;
        }
        r0 += mr;
    }
}

#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize, const V: usize, const FULL: bool, A: RowAt, B: RowAt>(
    kc: usize,
    a: A,
    csa: usize,
    b: B,
    at: Corner,
    ldc: usize,
    mask: __m256i,
    c: *mut f32,
    add: bool,
) {
    let arow: [*const f32; R] = std::array::from_fn(|r| a.at(at.r0 + r).add(at.k0 * csa));
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    for kk in 0..kc {
        let brow = b.at(at.k0 + kk).add(at.j0);
        let mut bv = [_mm256_setzero_ps(); V];
        for v in 0..V {
            // A whole last vector (`FULL`) loads like the others.
            bv[v] = if v + 1 == V && !FULL {
                _mm256_maskload_ps(brow.add(8 * v), mask)
            } else {
                _mm256_loadu_ps(brow.add(8 * v))
            };
        }
        for r in 0..R {
            let av = _mm256_set1_ps(*arow[r].add(kk * csa));
            for v in 0..V {
                acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
            }
        }
    }
    for r in 0..R {
        for v in 0..V {
            let p = c.add(r * ldc + 8 * v);
            if FULL || v + 1 < V {
                let out = if add {
                    _mm256_add_ps(_mm256_loadu_ps(p), acc[r][v])
                } else {
                    acc[r][v]
                };
                _mm256_storeu_ps(p, out);
                continue;
            }
            let out = if add {
                _mm256_add_ps(_mm256_maskload_ps(p, mask), acc[r][v])
            } else {
                acc[r][v]
            };
            _mm256_maskstore_ps(p, mask, out);
        }
    }
}

/// `out[kk, j] = b[j, kk] (+ d[j, kk])` for rows `j < rows` (a multiple of 8) of the `[n, k]`
/// matrices, `out` row-major `[k, n]`: 8 x 8 blocks transposed in registers, the last
/// `k % 8` columns one by one (the same single addition per element).
#[target_feature(enable = "avx2")]
pub unsafe fn transpose_add(
    rows: usize,
    n: usize,
    k: usize,
    b: *const f32,
    d: Option<*const f32>,
    out: *mut f32,
) {
    let k_full = k / 8 * 8;
    let mut j0 = 0;
    while j0 < rows {
        let mut k0 = 0;
        while k0 < k_full {
            let mut r = [_mm256_setzero_ps(); 8];
            for (i, ri) in r.iter_mut().enumerate() {
                let off = (j0 + i) * k + k0;
                let mut v = _mm256_loadu_ps(b.add(off));
                if let Some(d) = d {
                    v = _mm256_add_ps(v, _mm256_loadu_ps(d.add(off)));
                }
                *ri = v;
            }
            for (i, ti) in transpose8(r).iter().enumerate() {
                _mm256_storeu_ps(out.add((k0 + i) * n + j0), *ti);
            }
            k0 += 8;
        }
        for j in j0..j0 + 8 {
            for kk in k_full..k {
                let off = j * k + kk;
                *out.add(kk * n + j) = match d {
                    Some(d) => *b.add(off) + *d.add(off),
                    None => *b.add(off),
                };
            }
        }
        j0 += 8;
    }
}

/// The transpose of 8 rows of 8 floats.
#[inline]
#[target_feature(enable = "avx2")]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let mut t = [_mm256_setzero_ps(); 8];
    for i in 0..4 {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    let mut u = [_mm256_setzero_ps(); 8];
    for h in 0..2 {
        let b = 4 * h;
        u[b] = _mm256_shuffle_ps::<0x44>(t[b], t[b + 2]);
        u[b + 1] = _mm256_shuffle_ps::<0xee>(t[b], t[b + 2]);
        u[b + 2] = _mm256_shuffle_ps::<0x44>(t[b + 1], t[b + 3]);
        u[b + 3] = _mm256_shuffle_ps::<0xee>(t[b + 1], t[b + 3]);
    }
    for i in 0..4 {
        t[i] = _mm256_permute2f128_ps::<0x20>(u[i], u[4 + i]);
        t[4 + i] = _mm256_permute2f128_ps::<0x31>(u[i], u[4 + i]);
    }
    t
}
