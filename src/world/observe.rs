//! Observations of model.md section 4, written in place into one `[E, A, obs_dim]` buffer.
//!
//! Per living slot: position, energy, the clamped `(2R+1)^2 x C` field neighbourhood
//! (edge-clamped coordinates, values clamped to [-1, 1]) and the K nearest visible foods;
//! dead slots are all zeros.

use super::World;

impl World {
    /// Writes every slot's observation into `out` (`[E * A * obs_dim]`); dead slots get zeros.
    pub fn observe(&self, out: &mut [f32]) {
        self.observe_masked(out, false);
    }

    /// Like [`World::observe`]; with `hide_field` the field part is zeroed (ablation
    /// `no_field`).
    pub fn observe_masked(&self, out: &mut [f32], hide_field: bool) {
        let per_env = self.params.num_slots * self.obs_dim();
        assert_eq!(
            out.len(),
            self.params.num_envs * per_env,
            "out must be [E * A * obs_dim]"
        );
        if per_env == 0 {
            return;
        }
        for (env, chunk) in out.chunks_exact_mut(per_env).enumerate() {
            self.observe_env(env, chunk, hide_field);
        }
    }

    /// Writes the observations of one env's slots into `out` (`[A * obs_dim]`).
    pub(crate) fn observe_env(&self, env: usize, out: &mut [f32], hide_field: bool) {
        let p = &self.params;
        let (a, g, ch, r) = (
            p.num_slots,
            p.grid_size,
            p.num_channels,
            p.observation_radius,
        );
        let d = self.obs_dim();
        let side = 2 * r + 1;
        let field_len = side * side * ch;
        let fld = self.env_field(env);
        let gm1 = (g.max(2) - 1) as f32;
        let gf = g as f32;
        let pside = g + 2 * r;
        PADDED.with_borrow_mut(|padded| {
            if !hide_field {
                pad_clamped(fld, g, ch, r, padded);
            }
            for (i, o) in out.chunks_exact_mut(d).enumerate() {
                let k = env * a + i;
                if !self.alive[k] {
                    o.fill(0.0);
                    continue;
                }
                let (y, x) = (self.row[k], self.col[k]);
                o[0] = y as f32 / gm1 * 2.0 - 1.0;
                o[1] = x as f32 / gm1 * 2.0 - 1.0;
                o[2] = (self.energy[k] / p.max_energy).clamp(0.0, 1.0);
                let (fpart, foods) = o[3..].split_at_mut(field_len);
                if hide_field {
                    fpart.fill(0.0);
                } else {
                    // Row dy of the neighbourhood is one contiguous run of the padded field.
                    let (py, px) = (y as usize, x as usize);
                    for (dy, orow) in fpart.chunks_exact_mut(side * ch).enumerate() {
                        let at = ((py + dy) * pside + px) * ch;
                        orow.copy_from_slice(&padded[at..at + side * ch]);
                    }
                }
                self.write_foods(env, y, x, foods, gf);
            }
        });
    }

    /// The K nearest uncollected foods within Chebyshev distance R, by Manhattan distance
    /// (ties: lower food index), as `(drow/G, dcol/G, 1)`; missing entries `(0, 0, 0)`.
    fn write_foods(&self, env: usize, y: i32, x: i32, out: &mut [f32], gf: f32) {
        let f = self.params.num_food;
        let k = self.params.observed_food;
        let r = self.params.observation_radius as i32;
        let fs = env * f;
        let rows = &self.food_row[fs..fs + f];
        let cols = &self.food_col[fs..fs + f];
        let collected = &self.food_collected[fs..fs + f];
        // Sort key: Manhattan distance in the high bits, food index in the low bits, so the
        // keys are distinct and order exactly as the spec says.
        let key_of = |q: usize| -> Option<u64> {
            let (dr, dc) = ((rows[q] - y).abs(), (cols[q] - x).abs());
            (!collected[q] && dr.max(dc) <= r).then(|| ((dr + dc) as u64) << 32 | q as u64)
        };
        let mut write = |n: usize, key: u64| {
            let q = (key & 0xffff_ffff) as usize;
            out[3 * n] = (rows[q] - y) as f32 / gf;
            out[3 * n + 1] = (cols[q] - x) as f32 / gf;
            out[3 * n + 2] = 1.0;
        };
        let mut found = 0;
        if k == 0 {
            return;
        } else if k <= TOP_K_STACK {
            // One pass, insertion into a sorted top-K list.
            let mut top = [u64::MAX; TOP_K_STACK];
            for q in 0..f {
                let Some(key) = key_of(q) else { continue };
                if found == k && key >= top[k - 1] {
                    continue;
                }
                let mut p = found.min(k - 1);
                while p > 0 && top[p - 1] > key {
                    top[p] = top[p - 1];
                    p -= 1;
                }
                top[p] = key;
                found = (found + 1).min(k);
            }
            for (n, &key) in top[..found].iter().enumerate() {
                write(n, key);
            }
        } else {
            // Large K: K passes, each taking the smallest key above the previous one.
            let mut prev: Option<u64> = None;
            while found < k {
                let best = (0..f)
                    .filter_map(key_of)
                    .filter(|&key| prev.is_none_or(|p| key > p))
                    .min();
                let Some(key) = best else { break };
                write(found, key);
                prev = Some(key);
                found += 1;
            }
        }
        out[3 * found..].fill(0.0);
    }
}

thread_local! {
    /// One env's clamped, edge-padded field (reused between calls; never state).
    static PADDED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes `fld` (`g x g x ch`) clamped to [-1, 1] with an edge-replicated border of `r`
/// cells into `out` (`(g+2r) x (g+2r) x ch`).
fn pad_clamped(fld: &[f32], g: usize, ch: usize, r: usize, out: &mut Vec<f32>) {
    let ps = g + 2 * r;
    out.resize(ps * ps * ch, 0.0);
    let row_len = g * ch;
    for (py, prow) in out.chunks_exact_mut(ps * ch).enumerate() {
        let yy = py.saturating_sub(r).min(g - 1);
        let src = &fld[yy * row_len..(yy + 1) * row_len];
        let (left, rest) = prow.split_at_mut(r * ch);
        let (mid, right) = rest.split_at_mut(row_len);
        for cell in left.chunks_exact_mut(ch) {
            clamp_copy(cell, &src[..ch]);
        }
        clamp_copy(mid, src);
        for cell in right.chunks_exact_mut(ch) {
            clamp_copy(cell, &src[row_len - ch..]);
        }
    }
}

/// Largest K handled by the one-pass (stack-buffer) food selection.
const TOP_K_STACK: usize = 16;

/// `dst[i] = clamp(src[i], -1, 1)`.
#[inline]
fn clamp_copy(dst: &mut [f32], src: &[f32]) {
    // Written as compares so it compiles to plain packed max/min (the field has no NaN).
    for (d, &s) in dst.iter_mut().zip(src) {
        let lo = if s < -1.0 { -1.0 } else { s };
        *d = if lo > 1.0 { 1.0 } else { lo };
    }
}
