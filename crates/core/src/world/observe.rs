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

    /// Writes the observations of one env's slots into `out` (`[A * obs_dim]`), field part
    /// zeroed with `hide_field`. Envs are independent, so callers may observe envs in
    /// parallel (e.g. rayon over `out.chunks_mut(A * obs_dim)`); the result is the same.
    pub fn observe_env(&self, env: usize, out: &mut [f32], hide_field: bool) {
        let p = &self.params;
        let (a, g, ch, r) = (
            p.num_slots,
            p.grid_size,
            p.num_channels,
            p.observation_radius,
        );
        let d = self.obs_dim();
        assert_eq!(out.len(), a * d, "out must be [num_slots * obs_dim]");
        let side = 2 * r + 1;
        let field_len = side * side * ch;
        let fld = self.env_field(env);
        let gm1 = (g.max(2) - 1) as f32;
        let gf = g as f32;
        let pside = g + 2 * r;
        let f = p.num_food;
        let fs = env * f;
        SCRATCH.with_borrow_mut(|scratch| {
            let ObsScratch { padded, foods } = scratch;
            if !hide_field {
                pad_clamped(fld, g, ch, r, padded);
            }
            foods.clear();
            foods.extend(
                (0..f)
                    .filter(|&q| !self.food_collected[fs + q])
                    .map(|q| (self.food_row[fs + q], self.food_col[fs + q])),
            );
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
                let (fpart, food_out) = o[3..].split_at_mut(field_len);
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
                write_foods(foods, y, x, r as i32, food_out, gf);
            }
        });
    }
}

/// Per-env working space of [`World::observe_env`] (reused between calls; never state).
struct ObsScratch {
    /// The env's field clamped to [-1, 1] with an edge-replicated border of R cells.
    padded: Vec<f32>,
    /// The env's uncollected foods in index order: (row, col).
    foods: Vec<(i32, i32)>,
}

thread_local! {
    /// Scratch of the observing thread.
    static SCRATCH: std::cell::RefCell<ObsScratch> = const {
        std::cell::RefCell::new(ObsScratch { padded: Vec::new(), foods: Vec::new() })
    };
}

/// Writes `fld` (`g x g x ch`) clamped to [-1, 1] with an edge-replicated border of `r`
/// cells into `out` (`(g+2r) x (g+2r) x ch`).
fn pad_clamped(fld: &[f32], g: usize, ch: usize, r: usize, out: &mut Vec<f32>) {
    let ps = g + 2 * r;
    let prow_len = ps * ch;
    out.resize(ps * prow_len, 0.0);
    let row_len = g * ch;
    // The G grid rows: clamped copy with R replicated cells on each side.
    for (yy, src) in fld.chunks_exact(row_len).enumerate() {
        let prow = &mut out[(yy + r) * prow_len..(yy + r + 1) * prow_len];
        let (left, rest) = prow.split_at_mut(r * ch);
        let (mid, right) = rest.split_at_mut(row_len);
        clamp_copy(mid, src);
        for cell in left.chunks_exact_mut(ch) {
            cell.copy_from_slice(&mid[..ch]);
        }
        for cell in right.chunks_exact_mut(ch) {
            cell.copy_from_slice(&mid[row_len - ch..]);
        }
    }
    // R replicated rows above and below.
    for py in 0..r {
        out.copy_within(r * prow_len..(r + 1) * prow_len, py * prow_len);
        let last = r + g - 1;
        out.copy_within(
            last * prow_len..(last + 1) * prow_len,
            (last + 1 + py) * prow_len,
        );
    }
}

/// The K = `out.len() / 3` nearest of `foods` (uncollected, in index order) within Chebyshev
/// distance `r` of (y, x), by Manhattan distance (ties: lower food index), as
/// `(drow/G, dcol/G, 1)`; missing entries `(0, 0, 0)`.
fn write_foods(foods: &[(i32, i32)], y: i32, x: i32, r: i32, out: &mut [f32], gf: f32) {
    let k = out.len() / 3;
    if k == 0 {
        return;
    }
    // Sort key: Manhattan distance in the high bits, position in `foods` in the low bits
    // (positions follow food indices), so keys are distinct and order exactly as the spec.
    let key_of = |(n, &(fr, fc)): (usize, &(i32, i32))| -> Option<u64> {
        let (dr, dc) = ((fr - y).abs(), (fc - x).abs());
        (dr.max(dc) <= r).then_some(((dr + dc) as u64) << 32 | n as u64)
    };
    let mut write = |n: usize, key: u64| {
        let (fr, fc) = foods[(key & 0xffff_ffff) as usize];
        out[3 * n] = (fr - y) as f32 / gf;
        out[3 * n + 1] = (fc - x) as f32 / gf;
        out[3 * n + 2] = 1.0;
    };
    let mut found = 0;
    if k <= TOP_K_STACK {
        // One pass, insertion into a sorted top-K list.
        let mut top = [u64::MAX; TOP_K_STACK];
        for key in foods.iter().enumerate().filter_map(key_of) {
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
            let best = foods
                .iter()
                .enumerate()
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
