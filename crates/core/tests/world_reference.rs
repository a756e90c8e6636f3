//! Model-based check: the optimised `World::step` against a naive, line-by-line
//! implementation of model.md section 2 (steps 1-10) on the public state, over random
//! configs and actions. Everything must match exactly. (The field update reuses the public
//! `diffuse_decay`, which is checked against a direct 3x3 convolution in its unit tests.)

use emergence_lab_core::rng::Rng;
use emergence_lab_core::world::{diffuse_decay, Birth, TickInfo, World, WorldParams, NUM_ACTIONS};
use proptest::prelude::*;

/// One tick, written as plainly as possible from the spec (same random draw order).
#[allow(clippy::needless_range_loop)]
fn reference_step(
    w: &mut World,
    actions: &[u8],
    rng: &mut Rng,
) -> (Vec<f32>, Vec<Birth>, Vec<bool>) {
    let p = w.params.clone();
    let (a, f, g) = (p.num_slots, p.num_food, p.grid_size as i32);
    let mut rewards = vec![0.0; p.num_envs * a];
    let mut births = Vec::new();
    let mut truncated = vec![false; p.num_envs];
    for e in 0..p.num_envs {
        let slots: Vec<usize> = (e * a..(e + 1) * a).collect();
        let alive_start: Vec<bool> = slots.iter().map(|&k| w.alive[k]).collect();
        // 1. move
        for &k in &slots {
            if w.alive[k] {
                match actions[k] {
                    1 => w.row[k] -= 1,
                    2 => w.row[k] += 1,
                    3 => w.col[k] -= 1,
                    4 => w.col[k] += 1,
                    _ => {}
                }
                w.row[k] = w.row[k].clamp(0, g - 1);
                w.col[k] = w.col[k].clamp(0, g - 1);
            }
        }
        // 2. eat
        for q in e * f..(e + 1) * f {
            if w.food_collected[q] {
                continue;
            }
            let mut eligible: Vec<(i32, usize)> = slots
                .iter()
                .filter(|&&k| w.alive[k])
                .map(|&k| {
                    (
                        (w.row[k] - w.food_row[q])
                            .abs()
                            .max((w.col[k] - w.food_col[q]).abs()),
                        k,
                    )
                })
                .filter(|&(d, _)| d <= 1)
                .collect();
            eligible.sort();
            if let Some(&(_, k)) = eligible.first() {
                w.food_collected[q] = true;
                w.energy[k] = (w.energy[k] + p.food_energy).min(p.max_energy);
                rewards[k] += p.food_energy;
            }
        }
        // 3. respawn
        for q in e * f..(e + 1) * f {
            if w.food_collected[q] && rng.uniform_f32() < p.food_respawn_prob {
                let c = rng.below(p.grid_size * p.grid_size) as i32;
                (w.food_row[q], w.food_col[q], w.food_collected[q]) = (c / g, c % g, false);
            }
        }
        // 5. field
        let n = p.grid_size * p.grid_size * p.num_channels;
        let mut scratch = vec![0.0; n];
        let fld = &mut w.field[e * n..(e + 1) * n];
        diffuse_decay(
            fld,
            &mut scratch,
            p.grid_size,
            p.num_channels,
            p.diffusion_rate,
            p.decay_rate,
        );
        for &k in &slots {
            if w.alive[k] {
                let at = (w.row[k] * g + w.col[k]) as usize * p.num_channels;
                fld[at..at + p.num_channels]
                    .iter_mut()
                    .for_each(|v| *v += p.write_strength);
            }
        }
        // 6, 7. drain, death
        for &k in &slots {
            if w.alive[k] {
                w.energy[k] = (w.energy[k] - p.energy_per_step).max(0.0);
                if w.energy[k] <= 0.0 {
                    w.alive[k] = false;
                }
            }
        }
        // 8. reproduction
        let mut born = vec![false; a];
        for i in 0..a {
            let k = e * a + i;
            if w.alive[k] && !born[i] && actions[k] == 5 && w.energy[k] >= p.reproduce_threshold {
                if let Some(j) = (0..a).find(|&j| !w.alive[e * a + j]) {
                    w.energy[k] = (w.energy[k] - p.reproduce_cost).max(0.0);
                    let du = rng.below(3) as i32 - 1;
                    let dv = rng.below(3) as i32 - 1;
                    let c = e * a + j;
                    w.row[c] = (w.row[k] + du).clamp(0, g - 1);
                    w.col[c] = (w.col[k] + dv).clamp(0, g - 1);
                    w.energy[c] = p.reproduce_cost.min(p.max_energy);
                    w.alive[c] = true;
                    w.agent_id[c] = w.next_id[e];
                    w.next_id[e] += 1;
                    w.parent_id[c] = w.agent_id[k];
                    w.birth_tick[c] = w.tick[e];
                    born[j] = true;
                    births.push(Birth {
                        env: e,
                        parent_slot: i,
                        child_slot: j,
                    });
                }
            }
        }
        // 9. floor
        while p.min_agents > 0 && w.alive_count(e) < p.min_agents.min(a) {
            let j = (0..a).find(|&j| !w.alive[e * a + j]).unwrap();
            let c = rng.below(p.grid_size * p.grid_size) as i32;
            let k = e * a + j;
            (w.row[k], w.col[k]) = (c / g, c % g);
            w.energy[k] = p.starting_energy.min(p.max_energy);
            w.alive[k] = true;
            w.agent_id[k] = w.next_id[e];
            w.next_id[e] += 1;
            w.parent_id[k] = 0;
            w.birth_tick[k] = w.tick[e];
        }
        // 10. tick, time limit
        w.tick[e] += 1;
        if w.tick[e] >= p.max_steps {
            truncated[e] = true;
            w.reset_env(e, rng);
        }
        for (i, &k) in slots.iter().enumerate() {
            if !alive_start[i] {
                assert_eq!(rewards[k], 0.0);
            }
        }
    }
    (rewards, births, truncated)
}

fn params_strategy() -> impl Strategy<Value = WorldParams> {
    (
        (
            1usize..3,
            1usize..10,
            1usize..7,
            0usize..12,
            1usize..3,
            1u32..30,
        ),
        (0.0f32..=1.0, 0.0f32..=1.0, 0.0f32..=1.0),
        (
            0usize..10,
            0usize..10,
            1.0f32..250.0,
            0.0f32..30.0,
            0.0f32..120.0,
        ),
        (20.0f32..250.0, 0.0f32..200.0, 0.0f32..150.0),
    )
        .prop_map(
            |(
                (e, a, g, f, c, ms),
                (prob, diff, decay),
                (n, m, s0, drain, fe),
                (cap, thr, cost),
            )| WorldParams {
                num_envs: e,
                num_slots: a,
                grid_size: g,
                num_food: f,
                num_channels: c,
                max_steps: ms,
                observation_radius: 2,
                observed_food: 3,
                food_respawn_prob: prob,
                diffusion_rate: diff,
                decay_rate: decay,
                write_strength: 1.0,
                num_agents: n.min(a),
                min_agents: m.min(a),
                starting_energy: s0,
                energy_per_step: drain,
                food_energy: fe,
                max_energy: cap,
                reproduce_threshold: thr,
                reproduce_cost: cost,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn step_matches_the_naive_reference(p in params_strategy(), seed in any::<u64>(), ticks in 1usize..60) {
        let mut rng = Rng::seed_from_u64(seed);
        let mut w = World::new(p.clone(), &mut rng);
        let mut r = w.clone();
        let mut rrng = rng.clone();
        let mut act_rng = Rng::seed_from_u64(seed ^ 1);
        let mut info = TickInfo::default();
        for _ in 0..ticks {
            let actions: Vec<u8> = (0..p.num_envs * p.num_slots)
                .map(|_| if act_rng.below(3) == 0 { 5 } else { act_rng.below(NUM_ACTIONS) as u8 })
                .collect();
            w.step(&actions, &mut rng, &mut info);
            let (rewards, births, truncated) = reference_step(&mut r, &actions, &mut rrng);
            prop_assert_eq!(&info.rewards, &rewards);
            prop_assert_eq!(&info.births, &births);
            prop_assert_eq!(&info.truncated, &truncated);
            prop_assert_eq!(&w.row, &r.row);
            prop_assert_eq!(&w.col, &r.col);
            prop_assert_eq!(&w.energy, &r.energy);
            prop_assert_eq!(&w.alive, &r.alive);
            prop_assert_eq!(&w.agent_id, &r.agent_id);
            prop_assert_eq!(&w.parent_id, &r.parent_id);
            prop_assert_eq!(&w.birth_tick, &r.birth_tick);
            prop_assert_eq!(&w.food_row, &r.food_row);
            prop_assert_eq!(&w.food_col, &r.food_col);
            prop_assert_eq!(&w.food_collected, &r.food_collected);
            prop_assert_eq!(&w.tick, &r.tick);
            prop_assert_eq!(&w.next_id, &r.next_id);
            prop_assert!(rng == rrng, "random draws diverged");
            prop_assert_eq!(&w.field, &r.field);
        }
    }
}
