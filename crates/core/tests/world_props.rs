//! Property tests of the world over random configs and action sequences: invariants hold
//! every tick, runs are reproducible, and save -> restore -> continue equals not stopping.

use std::collections::HashSet;

use emergence_lab_core::rng::Rng;
use emergence_lab_core::world::{TickInfo, World, WorldParams, NUM_ACTIONS};
use proptest::prelude::*;

fn params_strategy() -> impl Strategy<Value = WorldParams> {
    (
        (
            1usize..4,
            1usize..12,
            3usize..9,
            0usize..10,
            1usize..4,
            1u32..40,
        ),
        (
            0usize..5,
            0usize..20,
            0.0f32..=1.0,
            0.0f32..=1.0,
            0.0f32..=1.0,
            0.0f32..3.0,
        ),
        (
            0usize..12,
            0usize..12,
            1.0f32..300.0,
            0.0f32..20.0,
            0.0f32..150.0,
        ),
        (10.0f32..300.0, 0.0f32..300.0, 0.0f32..200.0),
    )
        .prop_map(
            |(
                (e, a, g, f, c, max_steps),
                (r, k, p, diff, decay, ws),
                (n, m, s0, drain, fe),
                (cap, thr, cost),
            )| {
                WorldParams {
                    num_envs: e,
                    num_slots: a,
                    grid_size: g,
                    num_food: f,
                    num_channels: c,
                    max_steps,
                    observation_radius: r,
                    observed_food: k,
                    food_respawn_prob: p,
                    diffusion_rate: diff,
                    decay_rate: decay,
                    write_strength: ws,
                    num_agents: n.min(a),
                    min_agents: m.min(a),
                    starting_energy: s0,
                    energy_per_step: drain,
                    food_energy: fe,
                    max_energy: cap,
                    reproduce_threshold: thr,
                    reproduce_cost: cost,
                }
            },
        )
}

/// Actions biased towards reproduction so births happen often.
fn draw_actions(rng: &mut Rng, n: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend((0..n).map(|_| {
        if rng.below(3) == 0 {
            5
        } else {
            rng.below(NUM_ACTIONS) as u8
        }
    }));
}

/// Runs `ticks` ticks, returning every tick's info and observations.
fn run(w: &mut World, rng: &mut Rng, act_rng: &mut Rng, ticks: usize) -> Vec<(TickInfo, Vec<f32>)> {
    let n = w.num_envs() * w.num_slots();
    let mut actions = Vec::new();
    let mut out = Vec::new();
    for _ in 0..ticks {
        draw_actions(act_rng, n, &mut actions);
        let mut info = TickInfo::default();
        w.step(&actions, rng, &mut info);
        let mut obs = vec![0.0; n * w.obs_dim()];
        w.observe(&mut obs);
        out.push((info, obs));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_every_tick(p in params_strategy(), seed in any::<u64>(), ticks in 1usize..80) {
        let mut rng = Rng::seed_from_u64(seed);
        let mut act_rng = Rng::seed_from_u64(seed ^ 0x5eed);
        let mut w = World::new(p.clone(), &mut rng);
        let (e_n, a, f, g) = (p.num_envs, p.num_slots, p.num_food, p.grid_size as i32);
        let mut seen: Vec<HashSet<u64>> = (0..e_n)
            .map(|e| w.agent_id[e * a..(e + 1) * a].iter().copied().filter(|&id| id != 0).collect())
            .collect();
        let mut info = TickInfo::default();
        let mut actions = Vec::new();
        let mut obs = vec![0.0; e_n * a * w.obs_dim()];
        for _ in 0..ticks {
            let uncollected_before: Vec<usize> =
                (0..e_n).map(|e| w.food_collected[e * f..(e + 1) * f].iter().filter(|c| !**c).count()).collect();
            let ids_before = w.agent_id.clone();
            let alive_before = w.alive.clone();
            draw_actions(&mut act_rng, e_n * a, &mut actions);
            w.step(&actions, &mut rng, &mut info);
            w.observe(&mut obs);
            prop_assert_eq!(w.food_row.len(), e_n * f);
            prop_assert_eq!(w.food_collected.len(), e_n * f);
            for e in 0..e_n {
                let alive = w.alive_count(e);
                prop_assert!(alive <= a);
                prop_assert!(info.alive_count[e] as usize <= a);
                if !info.truncated[e] {
                    prop_assert_eq!(info.alive_count[e] as usize, alive);
                    prop_assert!(alive >= p.min_agents.min(a), "floor: {} < {}", alive, p.min_agents);
                    // Uncollected foods: before - eaten + respawned (respawns only add).
                    let un = w.food_collected[e * f..(e + 1) * f].iter().filter(|c| !**c).count();
                    prop_assert!(un + info.foods_eaten[e] as usize >= uncollected_before[e]);
                    prop_assert!(un <= f);
                } else {
                    prop_assert_eq!(w.tick[e], 0);
                    prop_assert_eq!(alive, p.num_agents.min(a));
                }
                let deaths = (e * a..(e + 1) * a).filter(|&k| info.died[k]).count();
                prop_assert_eq!(deaths, info.deaths[e] as usize);
                let mut alive_ids = HashSet::new();
                for k in e * a..(e + 1) * a {
                    prop_assert!(w.energy[k] >= 0.0 && w.energy[k] <= p.max_energy, "energy {}", w.energy[k]);
                    if info.died[k] {
                        prop_assert!(alive_before[k]);
                    }
                    if !alive_before[k] {
                        prop_assert_eq!(info.rewards[k], 0.0);
                    }
                    if w.alive[k] {
                        prop_assert!((0..g).contains(&w.row[k]) && (0..g).contains(&w.col[k]));
                        prop_assert!(alive_ids.insert(w.agent_id[k]), "duplicate alive id");
                        prop_assert!(w.agent_id[k] < w.next_id[e]);
                    }
                    if w.agent_id[k] != ids_before[k] && w.agent_id[k] != 0 {
                        prop_assert!(seen[e].insert(w.agent_id[k]), "id {} reused", w.agent_id[k]);
                    }
                }
            }
            for b in info.births.iter().filter(|b| !info.truncated[b.env]) {
                let c = b.env * a + b.child_slot;
                prop_assert!(w.agent_id[c] != ids_before[c] && w.agent_id[c] != 0, "child has a new id");
                prop_assert!(!alive_before[c] || info.died[c], "child slot was free");
                prop_assert_eq!(w.parent_id[c], w.agent_id[b.env * a + b.parent_slot]);
            }
            prop_assert!(w.field.iter().all(|v| v.is_finite()), "field not finite");
            prop_assert!(obs.iter().all(|v| v.is_finite() && (-1.0..=1.0).contains(v)), "obs out of range");
        }
    }

    #[test]
    fn same_seed_gives_identical_trajectories(p in params_strategy(), seed in any::<u64>(), ticks in 1usize..60) {
        let mut runs = Vec::new();
        for _ in 0..2 {
            let mut rng = Rng::seed_from_u64(seed);
            let mut act_rng = Rng::seed_from_u64(!seed);
            let mut w = World::new(p.clone(), &mut rng);
            let steps = run(&mut w, &mut rng, &mut act_rng, ticks);
            runs.push((w, rng, steps));
        }
        prop_assert!(runs[0] == runs[1]);
    }

    #[test]
    fn save_restore_continue_equals_not_stopping(
        p in params_strategy(), seed in any::<u64>(), before in 0usize..40, after in 1usize..40,
    ) {
        let mut rng = Rng::seed_from_u64(seed);
        let mut act_rng = Rng::seed_from_u64(seed.wrapping_add(1));
        let mut w = World::new(p, &mut rng);
        run(&mut w, &mut rng, &mut act_rng, before);
        let saved = serde_json::to_string(&(&w, &rng, &act_rng)).unwrap();
        let straight = run(&mut w, &mut rng, &mut act_rng, after);
        let (mut w2, mut rng2, mut act2): (World, Rng, Rng) = serde_json::from_str(&saved).unwrap();
        let resumed = run(&mut w2, &mut rng2, &mut act2, after);
        prop_assert!(straight == resumed, "trajectories differ after restore");
        prop_assert!(w == w2);
        prop_assert!(rng == rng2);
    }
}
