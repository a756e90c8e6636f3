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
        assert_eq!(out.len(), self.params.num_envs * per_env, "out must be [E * A * obs_dim]");
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
        let (a, g, ch, r) = (p.num_slots, p.grid_size, p.num_channels, p.observation_radius);
        let d = self.obs_dim();
        let side = 2 * r + 1;
        let field_len = side * side * ch;
        let fld = self.env_field(env);
        let row_len = g * ch;
        let gm1 = (g.max(2) - 1) as f32;
        let gf = g as f32;
        let (ri, gi) = (r as i32, g as i32);
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
                // Columns: `lpad` copies of column 0, the in-grid span, `rpad` copies of G-1.
                let lpad = (ri - x).max(0) as usize;
                let rpad = (x + ri - (gi - 1)).max(0) as usize;
                let x0 = (x - ri).max(0) as usize;
                let x1 = (x + ri).min(gi - 1) as usize;
                for (dy, orow) in fpart.chunks_exact_mut(side * ch).enumerate() {
                    let yy = (y + dy as i32 - ri).clamp(0, gi - 1) as usize;
                    let src = &fld[yy * row_len..(yy + 1) * row_len];
                    let (left, rest) = orow.split_at_mut(lpad * ch);
                    let (mid, right) = rest.split_at_mut((x1 + 1 - x0) * ch);
                    for cell in left.chunks_exact_mut(ch) {
                        clamp_copy(cell, &src[..ch]);
                    }
                    clamp_copy(mid, &src[x0 * ch..(x1 + 1) * ch]);
                    for cell in right.chunks_exact_mut(ch) {
                        clamp_copy(cell, &src[row_len - ch..]);
                    }
                    debug_assert_eq!(right.len(), rpad * ch);
                }
            }
            self.write_foods(env, y, x, foods, gf);
        }
    }

    /// The K nearest uncollected foods within Chebyshev distance R, by Manhattan distance
    /// (ties: lower food index), as `(drow/G, dcol/G, 1)`; missing entries `(0, 0, 0)`.
    fn write_foods(&self, env: usize, y: i32, x: i32, out: &mut [f32], gf: f32) {
        let f = self.params.num_food;
        let r = self.params.observation_radius as i32;
        let fs = env * f;
        let mut prev: Option<(i32, usize)> = None;
        for (n, slot) in out.chunks_exact_mut(3).enumerate() {
            let mut best: Option<(i32, usize)> = None;
            for q in 0..f {
                if self.food_collected[fs + q] {
                    continue;
                }
                let dr = self.food_row[fs + q] - y;
                let dc = self.food_col[fs + q] - x;
                if dr.abs().max(dc.abs()) > r {
                    continue;
                }
                let key = (dr.abs() + dc.abs(), q);
                if prev.is_none_or(|p| key > p) && best.is_none_or(|b| key < b) {
                    best = Some(key);
                }
            }
            let Some((_, q)) = best else {
                out[n * 3..].fill(0.0);
                return;
            };
            slot[0] = (self.food_row[fs + q] - y) as f32 / gf;
            slot[1] = (self.food_col[fs + q] - x) as f32 / gf;
            slot[2] = 1.0;
            prev = best;
        }
    }
}

/// `dst[i] = clamp(src[i], -1, 1)`.
#[inline]
fn clamp_copy(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = s.clamp(-1.0, 1.0);
    }
}
