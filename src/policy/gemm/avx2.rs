//! The AVX2 + FMA kernel of [`super::product`]: 8-float vectors, `[4, 16]` register tiles.

// Register tiles are indexed arrays of vectors on purpose (they must stay in registers).
#![allow(clippy::needless_range_loop)]

use super::KC;
use std::arch::x86_64::*;

/// Rows of `C` per tile.
const MR: usize = 4;
/// 8-float vectors of `C` columns per tile.
const NV: usize = 2;

/// As `avx512::product`, 8 floats per vector (the same order per element).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn product(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: usize,
    csa: usize,
    b: *const f32,
    beta: f32,
    c: *mut f32,
) {
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
                let ap = a.add(r0 * rsa + k0 * csa);
                let bp = b.add(k0 * n + j0);
                let cp = c.add(r0 * n + j0);
                macro_rules! go {
                    ($($mr:literal, $nv:literal);*) => {
                        match (mr, nv) {
                            $(($mr, $nv) => tile::<$mr, $nv>(k1 - k0, ap, rsa, csa, bp, n, mask, cp, add),)*
                            _ => unreachable!(),
                        }
                    };
                }
                go!(4, 2; 4, 1; 3, 2; 3, 1; 2, 2; 2, 1; 1, 2; 1, 1);
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
unsafe fn tile<const R: usize, const V: usize>(
    kc: usize,
    a: *const f32,
    rsa: usize,
    csa: usize,
    b: *const f32,
    ldb: usize,
    mask: __m256i,
    c: *mut f32,
    add: bool,
) {
    let full = _mm256_set1_epi32(-1);
    let mut acc = [[_mm256_setzero_ps(); V]; R];
    for kk in 0..kc {
        let brow = b.add(kk * ldb);
        let mut bv = [_mm256_setzero_ps(); V];
        for v in 0..V {
            bv[v] = if v + 1 == V {
                _mm256_maskload_ps(brow.add(8 * v), mask)
            } else {
                _mm256_loadu_ps(brow.add(8 * v))
            };
        }
        let ak = a.add(kk * csa);
        for r in 0..R {
            let av = _mm256_set1_ps(*ak.add(r * rsa));
            for v in 0..V {
                acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
            }
        }
    }
    for r in 0..R {
        for v in 0..V {
            let p = c.add(r * ldb + 8 * v);
            let m = if v + 1 == V { mask } else { full };
            let out = if add {
                _mm256_add_ps(_mm256_maskload_ps(p, m), acc[r][v])
            } else {
                acc[r][v]
            };
            _mm256_maskstore_ps(p, m, out);
        }
    }
}
