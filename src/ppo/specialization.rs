//! Specialization pressure (model.md section 5): diversity bonus and niche pressure from
//! cosine distances between alive agents' effective evolved weights, per env.
//!
//! `u_i = w_evolved + d_i` flattened; `dist_ij = 1 - cos(u_i, u_j)` with norms floored at
//! 1e-8. Gram matrices are one batched product per evolved parameter over all envs.

use tch::{Device, Kind, Tensor};

use crate::policy::{Offsets, Policy};

/// Cosine distance matrices `[E][A*A]` (f64) of the effective evolved weights of every slot
/// (alive or not; callers mask). Without offsets every agent has the same weights: all 0.
pub fn cosine_distances(
    policy: &Policy,
    offsets: Option<&Offsets>,
    num_envs: usize,
    num_slots: usize,
) -> Vec<Vec<f64>> {
    let a = num_slots;
    let Some(o) = offsets else {
        return vec![vec![0.0; a * a]; num_envs];
    };
    // One libtorch thread: the Gram sums must not depend on the thread count (which
    // `train.num_threads = 0` picks by measuring), or neither would the rewards.
    let threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let gram = tch::no_grad(|| {
        let mut gram = Tensor::zeros(
            [num_envs as i64, a as i64, a as i64],
            (Kind::Float, o.device()),
        );
        for (&pi, d) in o.param_index.iter().zip(&o.tensors) {
            let w = policy.params[pi].detach().flatten(0, -1).unsqueeze(0);
            let u = (d.flatten(1, -1) + w).view([num_envs as i64, a as i64, -1]);
            gram += u.bmm(&u.transpose(1, 2));
        }
        gram
    });
    tch::set_num_threads(threads);
    let g: Vec<f32> = Vec::try_from(gram.to_device(Device::Cpu).flatten(0, -1)).unwrap();
    (0..num_envs)
        .map(|e| {
            let m = &g[e * a * a..(e + 1) * a * a];
            let norm: Vec<f64> = (0..a)
                .map(|i| (m[i * a + i].max(0.0) as f64).sqrt().max(1e-8))
                .collect();
            let mut out = vec![0f64; a * a];
            for i in 0..a {
                for j in 0..a {
                    out[i * a + j] = 1.0 - m[i * a + j] as f64 / (norm[i] * norm[j]);
                }
            }
            out
        })
        .collect()
}

/// Bonus per slot `[E*A]` from the distance matrices and the alive mask: for an alive slot
/// with at least one alive partner, `diversity * mean_j dist_ij - niche * max(0, 1 - min_j dist_ij)`;
/// 0 otherwise.
pub fn bonus_from_distances(
    dist: &[Vec<f64>],
    alive: &[bool],
    num_slots: usize,
    diversity: f64,
    niche: f64,
) -> Vec<f32> {
    let a = num_slots;
    let mut out = vec![0f32; dist.len() * a];
    for (e, m) in dist.iter().enumerate() {
        for i in 0..a {
            if !alive[e * a + i] {
                continue;
            }
            let (mut sum, mut min, mut cnt) = (0f64, f64::INFINITY, 0usize);
            for j in 0..a {
                if j != i && alive[e * a + j] {
                    let d = m[i * a + j];
                    sum += d;
                    min = min.min(d);
                    cnt += 1;
                }
            }
            if cnt > 0 {
                let b = diversity * sum / cnt as f64 - niche * (1.0 - min).max(0.0);
                out[e * a + i] = b as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::rng::Rng;

    #[test]
    fn identical_weights_have_zero_distance_and_get_niche_penalty() {
        let c = Config::default();
        let p = Policy::new(6, &[4], &mut Rng::seed_from_u64(0), Device::Cpu);
        let o = Offsets::new(&p, &c, 3).unwrap();
        let dist = cosine_distances(&p, Some(&o), 1, 3);
        assert!(dist[0].iter().all(|d| d.abs() < 1e-6));
        let b = bonus_from_distances(&dist, &[true, true, false], 3, 0.1, 0.05);
        assert!((b[0] + 0.05).abs() < 1e-6 && (b[1] + 0.05).abs() < 1e-6);
        assert_eq!(b[2], 0.0);
        // A lone agent has no partner: no bonus.
        let b = bonus_from_distances(&dist, &[true, false, false], 3, 0.1, 0.05);
        assert_eq!(b[0], 0.0);
    }

    #[test]
    fn opposite_weights_have_distance_two() {
        let c = Config::default();
        let p = Policy::new(6, &[4], &mut Rng::seed_from_u64(0), Device::Cpu);
        let mut o = Offsets::new(&p, &c, 2).unwrap();
        // Slot 1's effective weights = -w  =>  d_1 = -2w.
        let row: Vec<Tensor> = o
            .param_index
            .iter()
            .map(|&i| p.params[i].detach() * -2.0)
            .collect();
        o.set_row(1, &row);
        let dist = cosine_distances(&p, Some(&o), 1, 2);
        assert!((dist[0][1] - 2.0).abs() < 1e-5, "{:?}", dist);
        let b = bonus_from_distances(&dist, &[true, true], 2, 0.1, 0.05);
        assert!((b[0] as f64 - 0.2).abs() < 1e-5);
    }
}
