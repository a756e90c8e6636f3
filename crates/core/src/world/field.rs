//! The field update of model.md section 3: diffuse with the 3x3 kernel
//! `[[1,2,1],[2,4,2],[1,2,1]]/16` on an edge-replicated border, then decay.
//!
//! The kernel is separable (`[1,2,1]/4` along columns, then along rows), so one env's
//! `G x G x C` field takes two linear passes over contiguous rows.

/// Diffuses then decays one env's field in place: `v' = ((1-r) v + r blur(v)) (1-d)` with
/// `r = rate`, `d = decay`, blur per channel on an edge-replicated border.
///
/// `field` is `grid * grid * channels` (row-major, channels innermost); `scratch` must have
/// the same length (its contents are overwritten).
pub fn diffuse_decay(
    field: &mut [f32],
    scratch: &mut [f32],
    grid: usize,
    channels: usize,
    rate: f32,
    decay: f32,
) {
    let w = grid * channels;
    assert_eq!(
        field.len(),
        grid * w,
        "field must be grid * grid * channels"
    );
    assert_eq!(scratch.len(), field.len(), "scratch must match the field");
    if grid == 0 || channels == 0 {
        return;
    }
    // Horizontal pass: h = v[x-1] + 2 v[x] + v[x+1], columns clamped.
    for (src, dst) in field.chunks_exact(w).zip(scratch.chunks_exact_mut(w)) {
        if grid == 1 {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = 4.0 * s;
            }
            continue;
        }
        let c = channels;
        for k in 0..c {
            dst[k] = 3.0 * src[k] + src[c + k];
            dst[w - c + k] = src[w - 2 * c + k] + 3.0 * src[w - c + k];
        }
        for ((d, (l, m)), r) in dst[c..w - c]
            .iter_mut()
            .zip(src[..w - 2 * c].iter().zip(&src[c..w - c]))
            .zip(&src[2 * c..])
        {
            *d = l + 2.0 * m + r;
        }
    }
    // Vertical pass, blend and decay, written back in place (reads only h and v at the
    // same index, so overwriting v is safe).
    let keep = 1.0 - rate;
    let fade = 1.0 - decay;
    for y in 0..grid {
        let up = &scratch[y.saturating_sub(1) * w..][..w];
        let mid = &scratch[y * w..][..w];
        let down = &scratch[(y + 1).min(grid - 1) * w..][..w];
        let out = &mut field[y * w..][..w];
        for (((o, u), m), d) in out.iter_mut().zip(up).zip(mid).zip(down) {
            let blur = (u + 2.0 * m + d) * 0.0625;
            *o = (keep * *o + rate * blur) * fade;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct 3x3 convolution, the definition, for comparison.
    fn reference(v: &[f32], g: usize, c: usize, r: f32, d: f32) -> Vec<f32> {
        let k = [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]];
        let at = |y: i64, x: i64, ch: usize| {
            let yy = y.clamp(0, g as i64 - 1) as usize;
            let xx = x.clamp(0, g as i64 - 1) as usize;
            v[(yy * g + xx) * c + ch] as f64
        };
        let mut out = vec![0.0; v.len()];
        for y in 0..g {
            for x in 0..g {
                for ch in 0..c {
                    let mut s = 0.0;
                    for (dy, row) in k.iter().enumerate() {
                        for (dx, w) in row.iter().enumerate() {
                            s += w * at(y as i64 + dy as i64 - 1, x as i64 + dx as i64 - 1, ch);
                        }
                    }
                    let i = (y * g + x) * c + ch;
                    let blur = s / 16.0;
                    out[i] = (((1.0 - r as f64) * v[i] as f64 + r as f64 * blur) * (1.0 - d as f64))
                        as f32;
                }
            }
        }
        out
    }

    #[test]
    fn matches_direct_convolution_on_pseudo_random_field() {
        for (g, c) in [(1, 1), (2, 3), (3, 1), (5, 4), (8, 2)] {
            let mut v: Vec<f32> = (0..g * g * c)
                .map(|i| ((i * 7919 % 113) as f32 - 50.0) / 7.0)
                .collect();
            let want = reference(&v, g, c, 0.3, 0.05);
            let mut s = vec![0.0; v.len()];
            diffuse_decay(&mut v, &mut s, g, c, 0.3, 0.05);
            for (i, (a, b)) in v.iter().zip(&want).enumerate() {
                assert!((a - b).abs() < 1e-5, "g={g} c={c} i={i}: {a} vs {b}");
            }
        }
    }
}
