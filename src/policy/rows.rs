//! The per-row element-wise parts of the native passes (LayerNorm, affine, tanh and their
//! backward), compiled twice: for the CPU's AVX-512 / AVX2 + FMA when it has them (chosen at
//! run time) and for the baseline target. Only the vector width changes, never the order of
//! operations (no multiply-add is fused that was not written as one), so both versions give
//! the same bits.

use super::simd::dispatch_simd;
use super::LAYER_NORM_EPS;

/// Sum with eight independent partial sums (vectorisable, fixed order).
#[inline(always)]
pub fn sum_lanes(v: impl Iterator<Item = f32>) -> f32 {
    let mut acc = [0f32; 8];
    for (i, x) in v.enumerate() {
        acc[i % 8] += x;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// `tanh` of every element in place: Eigen's rational approximation (odd degree-13 over
/// even degree-6 polynomial, clamped): within 1e-6 relative of `tanh`, and vectorisable.
// Eigen's constants as published (the f32 values are what count).
#[allow(clippy::excessive_precision)]
#[inline(always)]
pub fn tanh_in_place(v: &mut [f32]) {
    const CLAMP: f32 = 7.905_311;
    const A: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_3e-4,
        1.485_722_4e-5,
        5.122_297e-8,
        -8.604_672e-11,
        2.000_187_9e-13,
        -2.760_768_5e-16,
    ];
    const B: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347e-4, 1.198_258_4e-6];
    for x in v.iter_mut() {
        let c = x.clamp(-CLAMP, CLAMP);
        let x2 = c * c;
        let p = ((((((A[6] * x2 + A[5]) * x2 + A[4]) * x2 + A[3]) * x2 + A[2]) * x2 + A[1]) * x2
            + A[0])
            * c;
        let q = ((B[3] * x2 + B[2]) * x2 + B[1]) * x2 + B[0];
        *x = if c.abs() < 4e-4 { c } else { p / q };
    }
}

/// The per-row constants of one chunk's LayerNorm: `bias`, `scale`, `shift` (`[h]` each).
pub struct Affine<'a> {
    pub bias: &'a [f32],
    pub scale: &'a [f32],
    pub shift: &'a [f32],
}

dispatch_simd! {
    /// Forward of `rows` rows of width `h`: `z += bias`, LayerNorm (writes the normalised
    /// values back to `z` and `1 / std` to `rstd`), `act = tanh(nhat * scale + shift)`.
    pub fn norm_forward(h: usize, z: &mut [f32], act: &mut [f32], rstd: &mut [f32], c: &Affine) => norm_forward_body;
}

#[inline(always)]
fn norm_forward_body(h: usize, z: &mut [f32], act: &mut [f32], rstd: &mut [f32], c: &Affine) {
    let (bias, scale, shift) = (&c.bias[..h], &c.scale[..h], &c.shift[..h]);
    for ((zr, ar), rs_out) in z
        .chunks_exact_mut(h)
        .zip(act.chunks_exact_mut(h))
        .zip(rstd.iter_mut())
    {
        zr.iter_mut().zip(bias).for_each(|(z, b)| *z += b);
        let mean = sum_lanes(zr.iter().copied()) / h as f32;
        let var = sum_lanes(zr.iter().map(|v| (v - mean) * (v - mean))) / h as f32;
        let rs = 1.0 / (var + LAYER_NORM_EPS as f32).sqrt();
        *rs_out = rs;
        for ((a, z), (sc, sh)) in ar
            .iter_mut()
            .zip(zr.iter_mut())
            .zip(scale.iter().zip(shift))
        {
            let nh = (*z - mean) * rs;
            *z = nh;
            *a = nh * sc + sh;
        }
        tanh_in_place(ar);
    }
}

/// The shared-gradient accumulators of one layer's LayerNorm (`[h]` each).
pub struct NormGrads<'a> {
    /// Of the LayerNorm scale.
    pub g: &'a mut [f32],
    /// Of the LayerNorm shift.
    pub t: &'a mut [f32],
    /// Of the linear bias.
    pub b: &'a mut [f32],
}

dispatch_simd! {
    /// Backward of [`norm_forward`] for rows of width `h` (one chunk, LayerNorm scale `scale`):
    /// from the activations `a`, normalised values `nhat`, `rstd` and the gradient `da` of the
    /// activations, writes the gradient of the pre-activations to `dz` and adds the shared
    /// gradients to `acc` (row by row, in row order).
    #[allow(clippy::too_many_arguments)]
    pub fn norm_backward(
        h: usize,
        a: &[f32],
        nhat: &[f32],
        rstd: &[f32],
        da: &[f32],
        dz: &mut [f32],
        scale: &[f32],
        acc: &mut NormGrads,
    ) => norm_backward_body;
}

/// Rows whose two row sums are formed together (independent chains; each row's sums keep
/// their sequential order).
const GROUP: usize = 8;

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn norm_backward_body(
    h: usize,
    a: &[f32],
    nhat: &[f32],
    rstd: &[f32],
    da: &[f32],
    dz: &mut [f32],
    scale: &[f32],
    acc: &mut NormGrads,
) {
    let rows = rstd.len();
    let (scale, acc_g, acc_t, acc_b) = (
        &scale[..h],
        &mut acc.g[..h],
        &mut acc.t[..h],
        &mut acc.b[..h],
    );
    let (a, nhat, da, dz) = (
        &a[..rows * h],
        &nhat[..rows * h],
        &da[..rows * h],
        &mut dz[..rows * h],
    );
    // Pass 1: through tanh and the affine; the scale and shift gradients.
    for (((ar, nr), dar), dzr) in a
        .chunks_exact(h)
        .zip(nhat.chunks_exact(h))
        .zip(da.chunks_exact(h))
        .zip(dz.chunks_exact_mut(h))
    {
        for j in 0..h {
            let dpre = dar[j] * (1.0 - ar[j] * ar[j]);
            acc_g[j] += dpre * nr[j];
            acc_t[j] += dpre;
            dzr[j] = dpre * scale[j];
        }
    }
    // Pass 2: per row the sums of dz and dz * nhat (sequential in j, as `Iterator::sum`),
    // GROUP rows side by side; pass 3: through the normalisation, the bias gradient.
    let mut r0 = 0;
    while r0 < rows {
        let cnt = (rows - r0).min(GROUP);
        let (mut m1, mut m2) = ([-0.0f32; GROUP], [-0.0f32; GROUP]);
        if cnt == GROUP {
            for j in 0..h {
                for g in 0..GROUP {
                    let (x, y) = (dz[(r0 + g) * h + j], nhat[(r0 + g) * h + j]);
                    m1[g] += x;
                    m2[g] += x * y;
                }
            }
        } else {
            for g in 0..cnt {
                let (dzr, nr) = (&dz[(r0 + g) * h..(r0 + g + 1) * h], &nhat[(r0 + g) * h..]);
                m1[g] = dzr.iter().sum::<f32>();
                m2[g] = dzr.iter().zip(nr).map(|(x, y)| x * y).sum::<f32>();
            }
        }
        for g in 0..cnt {
            let r = r0 + g;
            let (m1, m2) = (m1[g] / h as f32, m2[g] / h as f32);
            let rs = rstd[r];
            let (dzr, nr) = (&mut dz[r * h..(r + 1) * h], &nhat[r * h..(r + 1) * h]);
            for j in 0..h {
                let v = rs * (dzr[j] - m1 - nr[j] * m2);
                dzr[j] = v;
                acc_b[j] += v;
            }
        }
        r0 += cnt;
    }
}
