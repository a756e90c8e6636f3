//! Small row-major fp32 matrix products for the native passes, without packing.
//!
//! `matrixmultiply` packs both operands on every call; at this network's shapes (a few
//! hundred rows, 64 columns) packing and its buffer allocation cost a third of the product.
//! Here every product is written as `C[m, n] (+)= A(r, k) B[k, n]` with `B`'s rows
//! contiguous: vectors run along `n`, elements of `A` are broadcast, so `A` is read in place
//! (any strides) and `B` needs no copy (`A B`, `A^T B`) or one transposed copy (`A B^T`,
//! made by the caller once and reused: [`transpose`]).
//!
//! **The same bits as `matrixmultiply`.** Its kernels compute each element of `C` as a
//! sequential fused multiply-add over `k` starting from zero, in blocks of
//! [`KC`] = 256 values of `k`; the first block is stored (`beta = 0`) or added to `C`
//! (`beta = 1`), every later block added to `C`. These kernels do exactly that, so every
//! result (and the format-v1 checkpoint fixture's bit-exact continuation) is unchanged;
//! `tests` compare them bit for bit with `matrixmultiply` on odd shapes. They run on CPUs
//! with AVX-512F (16-float vectors) or AVX2 + FMA (8-float vectors; the same order per
//! element, so the same bits); elsewhere `matrixmultiply` runs as before.

/// `k` block of `matrixmultiply`'s sgemm (`S_KC`): the float order of every product.
pub const KC: usize = 256;

/// The kernels available on this CPU, widest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// AVX-512F: 16 floats per vector, masked column tails.
    Avx512,
    /// AVX2 + FMA: 8 floats per vector.
    Avx2,
}

/// This CPU's kernel, for the entry points that require one.
///
/// # Panics
/// If the CPU has neither AVX-512F nor AVX2 + FMA.
fn required_kernel() -> Kernel {
    kernel().expect("the kernels need AVX-512F or AVX2 + FMA")
}

fn kernel() -> Option<Kernel> {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::policy::simd::avx512() {
            return Some(Kernel::Avx512);
        }
        if crate::policy::simd::avx2_fma() {
            return Some(Kernel::Avx2);
        }
    }
    None
}

/// Whether these kernels run on this CPU (AVX-512F, or AVX2 with FMA; else the callers
/// use `matrixmultiply`).
#[inline]
pub fn fast() -> bool {
    kernel().is_some()
}

/// `out[k, n] = b[n, k]^T` (row-major), resizing `out`.
pub fn transpose(n: usize, k: usize, b: &[f32], out: &mut Vec<f32>) {
    out.resize(n * k, 0.0);
    transpose_add(n, k, b, None, out);
}

/// `out[k, n] = (b + d)[n, k]^T`: the sum rounded once per element, as `b + d`.
pub fn transpose_add(n: usize, k: usize, b: &[f32], d: Option<&[f32]>, out: &mut [f32]) {
    transpose_add_with(kernel(), n, k, b, d, out)
}

/// [`transpose_add`] with the kernel `kern` (which the CPU must support).
fn transpose_add_with(
    kern: Option<Kernel>,
    n: usize,
    k: usize,
    b: &[f32],
    d: Option<&[f32]>,
    out: &mut [f32],
) {
    assert!(b.len() >= n * k && out.len() >= n * k && d.is_none_or(|d| d.len() >= n * k));
    const T: usize = 16;
    let mut j_done = 0;
    #[cfg(target_arch = "x86_64")]
    {
        /// Transposes (and adds) whole blocks of rows in registers.
        type Blocks = unsafe fn(usize, usize, usize, *const f32, Option<*const f32>, *mut f32);
        let blocks: Option<(usize, Blocks)> = match kern {
            Some(Kernel::Avx512) => Some((16, avx512::transpose_add)),
            Some(Kernel::Avx2) => Some((8, avx2::transpose_add)),
            None => None,
        };
        if let Some((rows, blocks)) = blocks {
            j_done = n / rows * rows;
            let d = d.map(|d| d.as_ptr());
            // SAFETY: `kern` is supported by this CPU; the extents are checked above.
            unsafe { blocks(j_done, n, k, b.as_ptr(), d, out.as_mut_ptr()) };
        }
    }
    for j0 in (j_done..n).step_by(T) {
        let j1 = (j0 + T).min(n);
        for k0 in (0..k).step_by(T) {
            let k1 = (k0 + T).min(k);
            for j in j0..j1 {
                let row = &b[j * k..(j + 1) * k];
                match d {
                    Some(d) => {
                        let drow = &d[j * k..(j + 1) * k];
                        for kk in k0..k1 {
                            out[kk * n + j] = row[kk] + drow[kk];
                        }
                    }
                    None => {
                        for kk in k0..k1 {
                            out[kk * n + j] = row[kk];
                        }
                    }
                }
            }
        }
    }
}

/// `c = beta c + A B` with `A(r, kk) = a[r * rsa + kk * csa]` (`r < m`, `kk < k`), `B`
/// row-major `[k, n]`, `c` row-major `[m, n]`; `beta` 0 or 1. Requires [`fast`].
///
/// # Panics
/// If a slice is shorter than its extent, `beta` is neither 0 nor 1, or the CPU has neither
/// AVX-512F nor AVX2 + FMA.
#[allow(clippy::too_many_arguments)]
pub fn product(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    rsa: usize,
    csa: usize,
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    let kernel = required_kernel();
    product_on(kernel, m, k, n, a, rsa, csa, b, beta, c)
}

/// `matrixmultiply`'s `c = beta c + A B` with `A(r, kk) = a[r * rsa + kk * csa]` and
/// `B(kk, j) = b[kk * rsb + j * csb]`, `c` row-major `[m, n]`: the portable path where the
/// kernels do not run (and the reference the kernels are tested against).
///
/// # Panics
/// If a slice is shorter than its strided extent.
#[allow(clippy::too_many_arguments)]
pub fn portable_product(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= m * n);
    if k > 0 {
        assert!(a.len() > (m - 1) * rsa + (k - 1) * csa);
        assert!(b.len() > (k - 1) * rsb + (n - 1) * csb);
    }
    // SAFETY: the slices hold the strided extents checked above.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn product_on(
    kernel: Kernel,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    rsa: usize,
    csa: usize,
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    if m > 0 && n > 0 && k > 0 {
        assert!(a.len() > (m - 1) * rsa + (k - 1) * csa);
    }
    assert!(m == 0 || n == 0 || b.len() >= k * n);
    let a = Strided::of(a, rsa);
    let b = Strided::of(b, n);
    // SAFETY: the extents of both operands are checked above.
    unsafe { operands_product(kernel, m, k, n, a, csa, b, beta, c, &[]) }
}

/// `c = beta c + A B` with `A`'s rows `[m, k]` from `a` (the first `k` values of each) and `B`
/// row-major `[k, n]`, `c` row-major `[m, n]`; `beta` 0 or 1. With [`Rows::dense`] rows this
/// is [`product`]; with a [`RowTable`]'s rows the same bits, the rows read in place.
/// Requires [`fast`].
///
/// # Panics
/// If `a` has fewer than `m` rows or `k` values per row, a slice is shorter than its
/// extent, `beta` is neither 0 nor 1, or the CPU has neither AVX-512F nor AVX2 + FMA.
#[allow(clippy::too_many_arguments)]
pub fn rows_product(
    m: usize,
    k: usize,
    n: usize,
    a: Rows,
    b: &[f32],
    beta: f32,
    c: &mut [f32],
    ahead: &[f32],
) {
    assert!(
        a.len() >= m && a.width() >= k,
        "A is {}x{}, not {m}x{k}",
        a.len(),
        a.width()
    );
    let kernel = required_kernel();
    assert!(m == 0 || n == 0 || b.len() >= k * n);
    let b = Strided::of(b, n);
    // SAFETY: the extents of both operands are checked above.
    unsafe { operands_product(kernel, m, k, n, a.operand(), 1, b, beta, c, ahead) }
}

/// `c = A^T B` (overwritten) with `a` row-major `[k, m]` and `B`'s rows `[k, n]` from `b` (the
/// first `n` values of each), `c` row-major `[m, n]`: with [`Rows::dense`] rows the bits of
/// [`product`] with `rsa = 1, csa = m`, whatever the rows' places. Requires [`fast`].
///
/// # Panics
/// If `b` has fewer than `k` rows or `n` values per row, a slice is shorter than its extent,
/// or the CPU has neither AVX-512F nor AVX2 + FMA.
pub fn product_rows_at(m: usize, k: usize, n: usize, a: &[f32], b: Rows, c: &mut [f32]) {
    assert!(
        b.len() >= k && b.width() >= n,
        "B is {}x{}, not {k}x{n}",
        b.len(),
        b.width()
    );
    let kernel = required_kernel();
    assert!(m == 0 || k == 0 || a.len() >= k * m);
    let a = Strided::of(a, 1);
    // SAFETY: the extents of both operands are checked above.
    unsafe { operands_product(kernel, m, k, n, a, m, b.operand(), 0.0, c, &[]) }
}

/// The kernels' `c = beta c + A B` on any operands.
///
/// # Safety
/// `A(r, kk) = a.at(r)[kk * csa]` and `B(kk, j) = b.at(kk)[j]` must be readable for `r < m`,
/// `kk < k`, `j < n` when all three are positive.
#[allow(clippy::too_many_arguments)]
unsafe fn operands_product(
    kernel: Kernel,
    m: usize,
    k: usize,
    n: usize,
    a: Operand,
    csa: usize,
    b: Operand,
    beta: f32,
    c: &mut [f32],
    ahead: &[f32],
) {
    assert!(beta == 0.0 || beta == 1.0, "beta must be 0 or 1");
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= m * n);
    if k == 0 {
        if beta == 0.0 {
            c[..m * n].fill(0.0);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let c = c.as_mut_ptr();
        macro_rules! on {
            ($a:expr, $b:expr) => {
                match kernel {
                    Kernel::Avx512 => avx512::product(m, k, n, $a, csa, $b, beta, c, ahead),
                    Kernel::Avx2 => avx2::product(m, k, n, $a, csa, $b, beta, c, ahead),
                }
            };
        }
        // SAFETY: `kernel` names features this CPU has (see `kernel()`); the caller
        // guarantees the operands' extents.
        match (a, b) {
            (Operand::Strided(a), Operand::Strided(b)) => on!(a, b),
            (Operand::Table(a), Operand::Strided(b)) => on!(a, b),
            (Operand::Strided(a), Operand::Table(b)) => on!(a, b),
            (Operand::Table(a), Operand::Table(b)) => on!(a, b),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (kernel, a, b, csa, ahead);
}

/// Spreads prefetches of `ahead` (data read next from main memory, e.g. the next chunk's
/// offsets) over the steps of other work (the tiles of a product, the rows of a list), so the
/// loads overlap that work. A hint: no effect on any value (nothing on other architectures).
pub struct Prefetcher<'a> {
    ahead: &'a [f32],
    per_step: usize,
    line: usize,
}

impl<'a> Prefetcher<'a> {
    /// Prefetches of `ahead` spread over `steps` steps.
    pub fn new(ahead: &'a [f32], steps: usize) -> Self {
        Prefetcher {
            ahead,
            per_step: ahead.len().div_ceil(16).div_ceil(steps.max(1)),
            line: 0,
        }
    }

    /// The next step's share of cache lines.
    #[inline(always)]
    pub fn step(&mut self) {
        #[cfg(target_arch = "x86_64")]
        for _ in 0..self.per_step {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
            if self.line * 16 < self.ahead.len() {
                // SAFETY: a prefetch of an address inside `ahead`; it never faults.
                unsafe {
                    _mm_prefetch::<_MM_HINT_T1>(self.ahead.as_ptr().add(self.line * 16) as *const i8)
                };
            }
            self.line += 1;
        }
    }
}

mod operand;
#[cfg(target_arch = "x86_64")]
use operand::{Corner, RowAt};
use operand::{Operand, Strided};
pub use operand::{RowTable, Rows};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn products_equal_matrixmultiply_bit_for_bit() {
        let kernels: Vec<Kernel> = match kernel() {
            Some(Kernel::Avx512) => vec![Kernel::Avx512, Kernel::Avx2],
            Some(Kernel::Avx2) => vec![Kernel::Avx2],
            None => {
                eprintln!("no AVX-512F or AVX2 + FMA: the kernels do not run here");
                return;
            }
        };
        for kern in kernels {
            check_kernel(kern);
        }
    }

    fn check_kernel(kern: Kernel) {
        let mut checked = 0;
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 7, 5),
            (128, 502, 64),
            (33, 257, 17),
            (64, 128, 502),
            (6, 300, 64),
            (5, 513, 70),
            (130, 64, 6),
            (7, 6, 64),
            (2, 0, 3),
        ] {
            let a = data(m * k.max(1), (m * 31 + k) as u32);
            let b = data(k.max(1) * n, (n * 17 + k) as u32);
            let c0 = data(m * n, 99);
            for beta in [0.0f32, 1.0] {
                // A B (a row-major [m, k]).
                let (mut want, mut got) = (c0.clone(), c0.clone());
                portable_product(m, k, n, &a, (k, 1), &b, (n, 1), beta, &mut want);
                product_on(kern, m, k, n, &a, k, 1, &b, beta, &mut got);
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{kern:?} A B {m}x{k}x{n} beta {beta}"
                );
                // A^T B (a row-major [k, m]).
                let (mut want, mut got) = (c0.clone(), c0.clone());
                portable_product(m, k, n, &a, (1, m), &b, (n, 1), beta, &mut want);
                product_on(kern, m, k, n, &a, 1, m, &b, beta, &mut got);
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{kern:?} A^T B {m}x{k}x{n} beta {beta}"
                );
                // A B^T (b row-major [n, k], transposed once).
                let (mut want, mut got) = (c0.clone(), c0.clone());
                portable_product(m, k, n, &a, (k, 1), &b, (1, k), beta, &mut want);
                let mut bt = Vec::new();
                transpose(n, k, &b, &mut bt);
                product_on(kern, m, k, n, &a, k, 1, &bt, beta, &mut got);
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{kern:?} A B^T {m}x{k}x{n} beta {beta}"
                );
                checked += 3;
            }
        }
        assert_eq!(checked, 60);
    }

    /// The rows of `data` (`rows x width`) through a table, in a scrambled place each (a
    /// larger buffer, reversed), as the update reads observation rows in place.
    fn scattered(data: &[f32], width: usize, store: &mut Vec<f32>) -> Vec<usize> {
        let rows = data.len() / width;
        store.clear();
        store.resize((2 * rows + 1) * width, f32::NAN);
        let place: Vec<usize> = (0..rows).map(|i| 2 * (rows - 1 - i) + 1).collect();
        for (i, &p) in place.iter().enumerate() {
            store[p * width..(p + 1) * width].copy_from_slice(&data[i * width..(i + 1) * width]);
        }
        place
    }

    #[test]
    fn row_tables_give_the_same_bits_as_dense_rows() {
        let kernels: Vec<Kernel> = match kernel() {
            Some(Kernel::Avx512) => vec![Kernel::Avx512, Kernel::Avx2],
            Some(Kernel::Avx2) => vec![Kernel::Avx2],
            None => {
                eprintln!("no AVX-512F or AVX2 + FMA: the kernels do not run here");
                return;
            }
        };
        let mut checked = 0;
        for kern in kernels {
            for &(m, k, n) in &[
                (1, 1, 1),
                (3, 7, 5),
                (128, 502, 64),
                (33, 257, 17),
                (64, 300, 70),
            ] {
                let a = data(m * k, (m * 7 + k) as u32);
                let b = data(k * n, (n * 5 + k) as u32);
                let c0 = data(m * n, 3);
                let mut store = Vec::new();
                for beta in [0.0f32, 1.0] {
                    // A's rows through a table: `A B`.
                    let (mut want, mut got) = (c0.clone(), c0.clone());
                    product_on(kern, m, k, n, &a, k, 1, &b, beta, &mut want);
                    let place = scattered(&a, k, &mut store);
                    let mut t = RowTable::new(k);
                    place
                        .iter()
                        .for_each(|&p| t.push(&store[p * k..(p + 1) * k]));
                    let ar = t.rows();
                    let bs = Strided::of(&b, n);
                    // SAFETY: `m` rows of `k` values; `b` is `[k, n]`.
                    unsafe {
                        operands_product(kern, m, k, n, ar.operand(), 1, bs, beta, &mut got, &[])
                    };
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "{kern:?} table A {m}x{k}x{n} beta {beta}"
                    );
                    checked += 1;
                }
                // B's rows through a table: `A^T B` with `a` as `[k, m]`.
                let at = data(k * m, (m * 3 + k) as u32);
                let (mut want, mut got) = (c0.clone(), c0.clone());
                product_on(kern, m, k, n, &at, 1, m, &b, 0.0, &mut want);
                let place = scattered(&b, n, &mut store);
                let mut t = RowTable::new(n);
                place
                    .iter()
                    .for_each(|&p| t.push(&store[p * n..(p + 1) * n]));
                let aa = Strided::of(&at, 1);
                // SAFETY: `a` is `[k, m]`; `k` rows of `n` values.
                unsafe {
                    operands_product(kern, m, k, n, aa, m, t.rows().operand(), 0.0, &mut got, &[])
                };
                assert_eq!(bits(&got), bits(&want), "{kern:?} table B {m}x{k}x{n}");
                checked += 1;
            }
        }
        assert!(checked >= 15);
        // The public entry points (this CPU's kernel), dense rows against `product`.
        let (m, k, n) = (40, 70, 33);
        let (a, b) = (data(m * k, 1), data(k * n, 2));
        let (mut want, mut got) = (vec![0f32; m * n], vec![1f32; m * n]);
        product(m, k, n, &a, k, 1, &b, 0.0, &mut want);
        rows_product(m, k, n, Rows::dense(&a, k), &b, 0.0, &mut got, &[]);
        assert_eq!(bits(&got), bits(&want));
        let at = data(k * m, 4);
        product(m, k, n, &at, 1, m, &b, 0.0, &mut want);
        product_rows_at(m, k, n, &at, Rows::dense(&b, n), &mut got);
        assert_eq!(bits(&got), bits(&want));
    }

    #[test]
    #[should_panic(expected = "A is 3x4, not 4x4")]
    fn a_product_refuses_too_few_rows() {
        let a = [0f32; 12];
        let mut c = [0f32; 8];
        rows_product(4, 4, 2, Rows::dense(&a, 4), &[0f32; 8], 0.0, &mut c, &[]);
    }

    #[test]
    fn transpose_add_rounds_the_sum_once() {
        let kernels: Vec<Option<Kernel>> = match kernel() {
            Some(Kernel::Avx512) => vec![Some(Kernel::Avx512), Some(Kernel::Avx2), None],
            Some(Kernel::Avx2) => vec![Some(Kernel::Avx2), None],
            None => vec![None],
        };
        for kern in kernels {
            for (n, k) in [
                (5, 37),
                (64, 502),
                (35, 16),
                (16, 3),
                (48, 64),
                (9, 7),
                (8, 8),
            ] {
                let (b, d) = (data(n * k, 1), data(n * k, 2));
                let mut out = vec![0f32; n * k];
                transpose_add_with(kern, n, k, &b, Some(&d), &mut out);
                for j in 0..n {
                    for kk in 0..k {
                        let want = b[j * k + kk] + d[j * k + kk];
                        assert_eq!(
                            out[kk * n + j].to_bits(),
                            want.to_bits(),
                            "{kern:?} {n}x{k} at {j},{kk}"
                        );
                    }
                }
            }
        }
        // `transpose` (the public entry point, this CPU's kernel) without a sum.
        for (n, k) in [(5, 37), (64, 502), (35, 16), (16, 3), (48, 64)] {
            let b = data(n * k, 1);
            let mut t = Vec::new();
            transpose(n, k, &b, &mut t);
            for j in 0..n {
                for kk in 0..k {
                    assert_eq!(t[kk * n + j].to_bits(), b[j * k + kk].to_bits(), "{n}x{k}");
                }
            }
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }
}
