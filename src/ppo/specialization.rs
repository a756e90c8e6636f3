//! Specialization pressure (model.md section 5): diversity bonus and niche pressure from
//! cosine distances between alive agents' effective evolved weights, per env.
//!
//! `u_i = w_evolved + d_i` flattened; `dist_ij = 1 - cos(u_i, u_j)` with norms floored at
//! 1e-8. Gram matrices are one batched product per evolved parameter over all envs.

use tch::{Device, Kind, Tensor};

use crate::policy::{Offsets, Policy};

/// Cosine distance matrices `[E][A*A]` (f64) of the effective evolved weights of every slot
/// (alive or not; callers mask). Without offsets every agent has the same weights: all 0.
///
/// Off CUDA the envs are split between up to two threads ([`crate::policy::native::threads`])
/// and each thread works one env at a time, so its effective weights (4.7 MB at the Kaggle
/// shapes) stay in the cache between the sum and the product; each env's Gram matrix is the
/// same product whichever thread computes it and whatever the thread count.
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
    let workers = crate::policy::native::threads().clamp(1, 2);
    let g = gram_matrices(policy, o, num_envs, a, workers);
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

/// The Gram matrices `[E, A, A]` (flattened, on the host) of every env: off CUDA one env at a
/// time, the envs split between `workers` threads (this one and at most one more); on CUDA one
/// batched product per parameter.
fn gram_matrices(
    policy: &Policy,
    o: &Offsets,
    num_envs: usize,
    a: usize,
    workers: usize,
) -> Vec<f32> {
    // One libtorch thread per product: the Gram sums must not depend on the thread count
    // (which `train.num_threads = 0` picks by measuring), or neither would the rewards. The
    // count is per thread for OpenMP and MKL: every thread that multiplies sets it.
    struct Restore(i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            tch::set_num_threads(self.0);
        }
    }
    let _restore = Restore(tch::get_num_threads());
    tch::set_num_threads(1);
    let (weights, tables) = flat_evolved(policy, o);
    let dev = o.device();
    if dev.is_cuda() {
        return env_grams(&weights, &tables, 0..num_envs, a, dev);
    }
    let one_by_one = |w: &[Tensor], t: &[Tensor], envs: std::ops::Range<usize>| -> Vec<f32> {
        envs.flat_map(|e| env_grams(w, t, e..e + 1, a, dev))
            .collect()
    };
    let split = if workers > 1 { num_envs / 2 } else { 0 };
    if split == 0 {
        return one_by_one(&weights, &tables, 0..num_envs);
    }
    // The second half on a helper thread with its own handles of the same tensors (read only).
    let views = |v: &[Tensor]| v.iter().map(Tensor::shallow_clone).collect::<Vec<_>>();
    let (w2, t2) = (views(&weights), views(&tables));
    std::thread::scope(|s| {
        let second = s.spawn(move || {
            tch::set_num_threads(1);
            one_by_one(&w2, &t2, split..num_envs)
        });
        let mut g = one_by_one(&weights, &tables, 0..split);
        g.extend(second.join().expect("the Gram matrix thread panicked"));
        g
    })
}

/// The evolved parameters flattened (`[1, len]` each) and their offset tables (`[slots, len]`).
fn flat_evolved(policy: &Policy, o: &Offsets) -> (Vec<Tensor>, Vec<Tensor>) {
    let weights = o
        .param_index
        .iter()
        .map(|&pi| policy.params[pi].detach().flatten(0, -1).unsqueeze(0))
        .collect();
    let tables = o.tensors.iter().map(|d| d.flatten(1, -1)).collect();
    (weights, tables)
}

/// The Gram matrices `[envs, A, A]` (flattened, on the host) of the effective evolved weights
/// `u = w + d` of the envs `envs`: per env, the sum over the evolved parameters (in order) of
/// `u_p u_p^T`, one batched product per parameter.
fn env_grams(
    weights: &[Tensor],
    tables: &[Tensor],
    envs: std::ops::Range<usize>,
    a: usize,
    dev: Device,
) -> Vec<f32> {
    let ne = envs.len() as i64;
    let gram = tch::no_grad(|| {
        let mut gram = Tensor::zeros([ne, a as i64, a as i64], (Kind::Float, dev));
        for (w, d) in weights.iter().zip(tables) {
            let rows = d.narrow(0, (envs.start * a) as i64, ne * a as i64);
            let u = (rows + w).view([ne, a as i64, -1]);
            gram += u.bmm(&u.transpose(1, 2));
        }
        gram
    });
    Vec::try_from(gram.to_device(Device::Cpu).flatten(0, -1)).expect("a Gram matrix on the host")
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

    /// The Gram matrices of all envs in one batched product per parameter (the form before
    /// the per-env threads): the same bits as one env at a time on two threads.
    #[test]
    fn per_env_grams_equal_the_batched_products_bit_for_bit() {
        let mut c = Config::default();
        c.evolution.evolved = crate::config::Evolved::All;
        for (obs, hidden, envs, slots) in [(502, vec![64, 64], 3, 32), (11, vec![8, 8], 5, 4)] {
            let p = Policy::new(obs, &hidden, &mut Rng::seed_from_u64(1), Device::Cpu);
            let mut o = Offsets::new(&p, &c, envs * slots).unwrap();
            let mut rng = Rng::seed_from_u64(2);
            for k in 0..envs * slots {
                let row: Vec<Tensor> = o
                    .param_index
                    .iter()
                    .map(|&i| {
                        let shape = p.params[i].size();
                        let n: i64 = shape.iter().product();
                        let v: Vec<f32> = (0..n).map(|_| rng.normal_f32() * 0.05).collect();
                        Tensor::from_slice(&v).view(shape.as_slice())
                    })
                    .collect();
                o.set_row(k, &row);
            }
            let (weights, tables) = flat_evolved(&p, &o);
            let threads = tch::get_num_threads();
            tch::set_num_threads(1);
            let batched = env_grams(&weights, &tables, 0..envs, slots, Device::Cpu);
            tch::set_num_threads(threads);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            for workers in [1, 2] {
                let g = gram_matrices(&p, &o, envs, slots, workers);
                assert_eq!(bits(&g), bits(&batched), "obs {obs}, {workers} worker(s)");
                assert_eq!(
                    tch::get_num_threads(),
                    threads,
                    "the thread count is restored"
                );
            }
            // The public function gives the distances of those Grams, every entry.
            let dist = cosine_distances(&p, Some(&o), envs, slots);
            for (e, d) in dist.iter().enumerate() {
                let m = &batched[e * slots * slots..(e + 1) * slots * slots];
                let norm = |i: usize| (m[i * slots + i].max(0.0) as f64).sqrt().max(1e-8);
                for i in 0..slots {
                    for j in 0..slots {
                        let want = 1.0 - m[i * slots + j] as f64 / (norm(i) * norm(j));
                        assert_eq!(
                            d[i * slots + j].to_bits(),
                            want.to_bits(),
                            "env {e} ({i}, {j})"
                        );
                    }
                }
            }
            assert!(dist.iter().flatten().any(|&d| d > 1e-3), "distinct agents");
        }
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
