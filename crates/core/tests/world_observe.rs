//! Observation layout (model.md section 4) checked index by index on a hand-built state.

use emergence_lab_core::rng::Rng;
use emergence_lab_core::world::{World, WorldParams};

fn params() -> WorldParams {
    WorldParams {
        num_envs: 2,
        num_slots: 3,
        grid_size: 5,
        num_food: 4,
        num_channels: 2,
        max_steps: 100,
        observation_radius: 1,
        observed_food: 3,
        food_respawn_prob: 0.0,
        diffusion_rate: 0.1,
        decay_rate: 0.05,
        write_strength: 1.0,
        num_agents: 0,
        min_agents: 0,
        starting_energy: 100.0,
        energy_per_step: 1.0,
        food_energy: 50.0,
        max_energy: 200.0,
        reproduce_threshold: 150.0,
        reproduce_cost: 80.0,
    }
}

/// Field value of env 0 at (r, c, ch) before clamping: spans [-2.6, 9.45].
fn raw(r: i32, c: i32, ch: usize) -> f32 {
    (r * 5 + c) as f32 * 0.5 - 2.6 + ch as f32 * 0.05
}

fn clamped(r: i32, c: i32, ch: usize) -> f32 {
    raw(r, c, ch).clamp(-1.0, 1.0)
}

/// Env 0: slot 0 dead, slot 1 at (0, 4) with energy 50, slot 2 dead. Env 1: slot 0 at
/// (2, 2) with energy 250 (above the cap, to check the clamp), field zero except (2, 2).
fn hand_built() -> World {
    let mut rng = Rng::seed_from_u64(0);
    let mut w = World::new(params(), &mut rng);
    for r in 0..5 {
        for c in 0..5 {
            for ch in 0..2 {
                w.field[(r * 5 + c) as usize * 2 + ch] = raw(r, c, ch);
            }
        }
    }
    w.alive[1] = true;
    (w.row[1], w.col[1], w.energy[1]) = (0, 4, 50.0);
    w.row[0] = 3; // a dead slot's leftovers must not show
                  // Foods of env 0: q0 (1,3) Manhattan 2; q1 (0,3) M1; q2 (2,4) Chebyshev 2 > R: hidden;
                  // q3 (1,4) M1 (tie with q1: lower index first).
    for (q, (r, c)) in [(1, 3), (0, 3), (2, 4), (1, 4)].into_iter().enumerate() {
        (w.food_row[q], w.food_col[q], w.food_collected[q]) = (r, c, false);
    }
    w.alive[3] = true;
    (w.row[3], w.col[3], w.energy[3]) = (2, 2, 250.0);
    w.field[50 + (2 * 5 + 2) * 2 + 1] = -3.0;
    for q in 4..8 {
        (w.food_row[q], w.food_col[q], w.food_collected[q]) = (2, 2, true);
    }
    w
}

#[test]
fn layout_index_by_index() {
    let w = hand_built();
    let d = w.obs_dim();
    assert_eq!(d, 3 + 9 * 2 + 3 * 3);
    let mut out = vec![7.0; 2 * 3 * d];
    w.observe(&mut out);
    let slot1 = &out[d..2 * d];
    let mut want = vec![-1.0, 1.0, 0.25]; // row 0 -> -1, col 4 -> 1, 50/200
                                          // Neighbourhood rows -1, 0, +1 clamp to rows 0, 0, 1; columns 3, 4, 5 clamp to 3, 4, 4.
    for (r, c) in [
        (0, 3),
        (0, 4),
        (0, 4),
        (0, 3),
        (0, 4),
        (0, 4),
        (1, 3),
        (1, 4),
        (1, 4),
    ] {
        want.push(clamped(r, c, 0));
        want.push(clamped(r, c, 1));
    }
    want.extend([0.0, -0.2, 1.0]); // q1: drow 0, dcol -1
    want.extend([0.2, 0.0, 1.0]); // q3: drow 1, dcol 0
    want.extend([0.2, -0.2, 1.0]); // q0: drow 1, dcol -1
    assert_eq!(slot1.len(), want.len());
    for (i, (a, b)) in slot1.iter().zip(&want).enumerate() {
        assert_eq!(a, b, "index {i}");
    }
    assert!(want[3..21].contains(&1.0) && want[3..21].contains(&-1.0));
    assert!(
        out[..d].iter().all(|&v| v == 0.0),
        "dead slot 0 is all zeros"
    );
    assert!(
        out[2 * d..3 * d].iter().all(|&v| v == 0.0),
        "dead slot 2 is all zeros"
    );

    // Env 1 slot 0: centre of the grid, energy clamped to 1, its own field, no food.
    let e1 = &out[3 * d..4 * d];
    assert_eq!(&e1[..3], &[0.0, 0.0, 1.0]);
    for cell in 0..9 {
        let want = if cell == 4 { [0.0, -1.0] } else { [0.0, 0.0] };
        assert_eq!(&e1[3 + cell * 2..5 + cell * 2], &want, "env 1 cell {cell}");
    }
    assert!(e1[21..].iter().all(|&v| v == 0.0), "no visible food: zeros");
    assert!(out[4 * d..].iter().all(|&v| v == 0.0));
}

#[test]
fn collected_food_is_skipped_and_missing_entries_are_zero() {
    let mut w = hand_built();
    w.food_collected[3] = true;
    let d = w.obs_dim();
    let mut out = vec![7.0; 2 * 3 * d];
    w.observe(&mut out);
    let foods = &out[d + 21..2 * d];
    assert_eq!(foods, &[0.0, -0.2, 1.0, 0.2, -0.2, 1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn wider_radius_sorts_by_manhattan_distance() {
    let mut p = params();
    p.observation_radius = 2;
    p.observed_food = 4;
    let mut rng = Rng::seed_from_u64(0);
    let mut w = World::new(p, &mut rng);
    w.alive[0] = true;
    (w.row[0], w.col[0], w.energy[0]) = (2, 2, 100.0);
    // q0 (0,0) M4; q1 (4,3) M3; q2 (2,1) M1; q3 (1,3) M2.
    for (q, (r, c)) in [(0, 0), (4, 3), (2, 1), (1, 3)].into_iter().enumerate() {
        (w.food_row[q], w.food_col[q], w.food_collected[q]) = (r, c, false);
    }
    let d = w.obs_dim();
    assert_eq!(d, 3 + 25 * 2 + 12);
    let mut out = vec![0.0; 2 * 3 * d];
    w.observe(&mut out);
    let foods = &out[3 + 50..d];
    let want = [
        0.0, -0.2, 1.0, -0.2, 0.2, 1.0, 0.4, 0.2, 1.0, -0.4, -0.4, 1.0,
    ];
    assert_eq!(foods, &want);
    // Neighbourhood of the centre agent covers the whole 5x5 grid in order.
    for (n, v) in out[3..53].iter().enumerate() {
        assert_eq!(*v, w.field[n], "field index {n}");
    }
}

#[test]
fn masked_observation_hides_only_the_field() {
    let mut w = hand_built();
    w.field.iter_mut().for_each(|v| *v += 0.5);
    let d = w.obs_dim();
    let mut full = vec![0.0; 2 * 3 * d];
    let mut masked = vec![7.0; 2 * 3 * d];
    w.observe(&mut full);
    w.observe_masked(&mut masked, true);
    for (i, (a, b)) in full.iter().zip(&masked).enumerate() {
        let in_field = (3..21).contains(&(i % d));
        if in_field {
            assert_eq!(*b, 0.0, "index {i}");
        } else {
            assert_eq!(a, b, "index {i}");
        }
    }
    assert!(full[d + 3..d + 21].iter().any(|&v| v != 0.0));
}

/// Reference food list: sort all visible foods by (Manhattan, index), take K.
fn reference_foods(w: &World, env: usize, slot: usize) -> Vec<f32> {
    let p = &w.params;
    let (f, k, r, g) = (
        p.num_food,
        p.observed_food,
        p.observation_radius as i32,
        p.grid_size as f32,
    );
    let s = env * p.num_slots + slot;
    let (y, x) = (w.row[s], w.col[s]);
    let mut vis: Vec<(i32, usize)> = (0..f)
        .filter(|&q| !w.food_collected[env * f + q])
        .map(|q| (w.food_row[env * f + q] - y, w.food_col[env * f + q] - x, q))
        .filter(|&(dr, dc, _)| dr.abs().max(dc.abs()) <= r)
        .map(|(dr, dc, q)| (dr.abs() + dc.abs(), q))
        .collect();
    vis.sort();
    let mut out = vec![0.0; 3 * k];
    for (n, &(_, q)) in vis.iter().take(k).enumerate() {
        out[3 * n] = (w.food_row[env * f + q] - y) as f32 / g;
        out[3 * n + 1] = (w.food_col[env * f + q] - x) as f32 / g;
        out[3 * n + 2] = 1.0;
    }
    out
}

#[test]
fn food_selection_matches_a_full_sort_for_small_and_large_k() {
    for (k, f, r) in [(1, 5, 2), (5, 20, 5), (16, 40, 3), (17, 40, 3), (30, 25, 9)] {
        let mut p = params();
        p.grid_size = 12;
        p.num_agents = 3;
        p.num_food = f;
        p.observed_food = k;
        p.observation_radius = r;
        for seed in 0..20 {
            let mut rng = Rng::seed_from_u64(seed);
            let mut w = World::new(p.clone(), &mut rng);
            for q in 0..w.food_collected.len() {
                w.food_collected[q] = rng.below(4) == 0;
            }
            let d = w.obs_dim();
            let mut out = vec![0.0; 2 * 3 * d];
            w.observe(&mut out);
            for env in 0..2 {
                for slot in 0..3 {
                    let o = &out[(env * 3 + slot) * d..(env * 3 + slot + 1) * d];
                    assert_eq!(
                        &o[d - 3 * k..],
                        &reference_foods(&w, env, slot)[..],
                        "k={k} seed={seed}"
                    );
                }
            }
        }
    }
}

#[test]
fn observing_envs_in_parallel_equals_observe() {
    use emergence_lab_core::world::{TickInfo, NUM_ACTIONS};
    use rayon::prelude::*;
    let params = WorldParams::from_config(&emergence_lab_core::config::Config::kaggle_notebook());
    let mut rng = Rng::seed_from_u64(11);
    let mut w = World::new(params, &mut rng);
    let n = w.num_envs() * w.num_slots();
    let mut info = TickInfo::default();
    for _ in 0..30 {
        let actions: Vec<u8> = (0..n).map(|_| rng.below(NUM_ACTIONS) as u8).collect();
        w.step(&actions, &mut rng, &mut info);
    }
    let per_env = w.num_slots() * w.obs_dim();
    let mut serial = vec![0.0; n * w.obs_dim()];
    let mut parallel = vec![1.0; n * w.obs_dim()];
    w.observe(&mut serial);
    parallel
        .par_chunks_mut(per_env)
        .enumerate()
        .for_each(|(e, c)| w.observe_env(e, c, false));
    assert_eq!(serial, parallel);
    assert!(serial.iter().any(|&v| v != 0.0));
}
