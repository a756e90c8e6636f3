//! Hand-built states checking each rule of the tick (model.md section 2, steps 1-10).

use emergence_lab_core::rng::Rng;
use emergence_lab_core::world::{Birth, TickInfo, World, WorldParams, ACTION_REPRODUCE, NO_PARENT};

/// A tiny deterministic world: 1 env, 4 slots, 5x5 grid, 1 channel, no agents at reset,
/// no respawn, no field dynamics, no floor.
fn params() -> WorldParams {
    WorldParams {
        num_envs: 1,
        num_slots: 4,
        grid_size: 5,
        num_food: 1,
        num_channels: 1,
        max_steps: 100,
        observation_radius: 1,
        observed_food: 2,
        food_respawn_prob: 0.0,
        diffusion_rate: 0.0,
        decay_rate: 0.0,
        write_strength: 0.0,
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

fn world(p: WorldParams, seed: u64) -> (World, Rng) {
    let mut rng = Rng::seed_from_u64(seed);
    (World::new(p, &mut rng), rng)
}

/// Makes slot `k` alive at (r, c) with energy `e` and a fresh id.
fn put(w: &mut World, k: usize, r: i32, c: i32, e: f32) {
    w.row[k] = r;
    w.col[k] = c;
    w.energy[k] = e;
    w.alive[k] = true;
    w.agent_id[k] = 1000 + k as u64;
}

fn put_food(w: &mut World, q: usize, r: i32, c: i32) {
    w.food_row[q] = r;
    w.food_col[q] = c;
    w.food_collected[q] = false;
}

#[test]
fn movement_is_clipped_to_the_grid_and_dead_slots_are_ignored() {
    let (mut w, mut rng) = world(params(), 0);
    w.food_collected[0] = true;
    put(&mut w, 0, 0, 0, 100.0);
    put(&mut w, 1, 4, 4, 100.0);
    put(&mut w, 2, 2, 2, 100.0);
    w.row[3] = 1;
    let mut info = TickInfo::default();
    w.step(&[1, 2, 4, 4], &mut rng, &mut info);
    assert_eq!((w.row[0], w.col[0]), (0, 0), "up from row 0 stays");
    assert_eq!((w.row[1], w.col[1]), (4, 4), "down from row 4 stays");
    assert_eq!((w.row[2], w.col[2]), (2, 3), "right moves one column");
    assert_eq!(w.row[3], 1, "dead slot does not move");
    w.step(&[3, 0, 1, 5], &mut rng, &mut info);
    assert_eq!((w.row[0], w.col[0]), (0, 0), "left from column 0 stays");
    assert_eq!((w.row[1], w.col[1]), (4, 4), "stay");
    assert_eq!((w.row[2], w.col[2]), (1, 3), "up moves one row");
}

#[test]
fn food_goes_to_the_closest_agent_then_lowest_slot() {
    // Slots 1 and 2 at Chebyshev distance 1, slot 3 out of reach: slot 1 wins the tie.
    let (mut w, mut rng) = world(params(), 0);
    put_food(&mut w, 0, 2, 2);
    put(&mut w, 1, 1, 1, 100.0);
    put(&mut w, 2, 3, 2, 100.0);
    put(&mut w, 3, 4, 4, 100.0);
    let mut info = TickInfo::default();
    w.step(&[0; 4], &mut rng, &mut info);
    assert_eq!(info.rewards, vec![0.0, 50.0, 0.0, 0.0]);
    assert_eq!(info.foods_eaten, vec![1]);
    assert!(w.food_collected[0]);
    assert_eq!(w.energy[1..4], [149.0, 99.0, 99.0]);

    // Distance 0 in slot 3 beats distance 1 in slot 0; eating happens after moving.
    let (mut w, mut rng) = world(params(), 0);
    put_food(&mut w, 0, 2, 2);
    put(&mut w, 0, 1, 2, 100.0);
    put(&mut w, 3, 2, 1, 100.0);
    w.step(&[0, 0, 0, 4], &mut rng, &mut info);
    assert_eq!(info.rewards, vec![0.0, 0.0, 0.0, 50.0]);

    // Out of reach after moving away: nobody eats.
    let (mut w, mut rng) = world(params(), 0);
    put_food(&mut w, 0, 2, 2);
    put(&mut w, 0, 1, 1, 100.0);
    w.step(&[1, 0, 0, 0], &mut rng, &mut info);
    assert_eq!(info.foods_eaten, vec![0]);
    assert!(!w.food_collected[0]);
}

#[test]
fn energy_is_capped_but_reward_is_not() {
    let mut p = params();
    p.num_food = 2;
    let (mut w, mut rng) = world(p, 0);
    put_food(&mut w, 0, 2, 2);
    put_food(&mut w, 1, 3, 3);
    put(&mut w, 0, 2, 3, 190.0);
    let mut info = TickInfo::default();
    w.step(&[0; 4], &mut rng, &mut info);
    assert_eq!(
        info.rewards[0], 100.0,
        "two foods credited, reward not reduced by the cap"
    );
    assert_eq!(w.energy[0], 199.0, "capped at 200, then drained by 1");
    assert_eq!(info.foods_eaten, vec![2]);
}

#[test]
fn collected_food_respawns_with_its_probability() {
    let mut p = params();
    p.food_respawn_prob = 1.0;
    let (mut w, mut rng) = world(p, 0);
    put_food(&mut w, 0, 2, 2);
    put(&mut w, 0, 2, 2, 100.0);
    let mut info = TickInfo::default();
    w.step(&[0; 4], &mut rng, &mut info);
    assert_eq!(info.foods_eaten, vec![1]);
    assert!(
        !w.food_collected[0],
        "p = 1: eaten food respawns in the same tick"
    );
    assert!((0..5).contains(&w.food_row[0]) && (0..5).contains(&w.food_col[0]));

    let (mut w, mut rng) = world(params(), 0);
    put_food(&mut w, 0, 2, 2);
    put(&mut w, 0, 2, 2, 100.0);
    for _ in 0..20 {
        w.step(&[0; 4], &mut rng, &mut info);
    }
    assert!(w.food_collected[0], "p = 0: never respawns");

    // p = 0.5: respawns eventually, at varying cells.
    let mut p = params();
    p.food_respawn_prob = 0.5;
    let (mut w, mut rng) = world(p, 1);
    let mut cells = std::collections::HashSet::new();
    let mut waits = 0;
    for _ in 0..40 {
        w.food_collected[0] = true;
        let mut t = 0;
        while w.food_collected[0] {
            w.step(&[0; 4], &mut rng, &mut info);
            t += 1;
        }
        waits += t;
        cells.insert((w.food_row[0], w.food_col[0]));
    }
    assert!(
        waits > 45 && waits < 160,
        "mean wait about 2 ticks, got {waits} / 40"
    );
    assert!(cells.len() > 5, "respawn cells vary: {cells:?}");
}

#[test]
fn reproduction_needs_threshold_after_drain_and_pays_cost() {
    let (mut w, mut rng) = world(params(), 3);
    w.food_collected[0] = true;
    put(&mut w, 0, 2, 2, 151.0); // 150 after drain: reproduces
    put(&mut w, 2, 0, 0, 150.0); // 149 after drain: does not
    let t0 = w.tick[0];
    let next = w.next_id[0];
    let mut info = TickInfo::default();
    w.step(&[ACTION_REPRODUCE; 4], &mut rng, &mut info);
    assert_eq!(
        info.births,
        vec![Birth {
            env: 0,
            parent_slot: 0,
            child_slot: 1
        }]
    );
    assert_eq!(w.energy[0], 70.0, "parent pays 80");
    assert_eq!(w.energy[2], 149.0, "below threshold: no cost");
    assert!(w.alive[1]);
    assert_eq!(w.energy[1], 80.0, "child starts with reproduce_cost");
    assert_eq!(w.agent_id[1], next);
    assert_eq!(w.next_id[0], next + 1);
    assert_eq!(w.parent_id[1], 1000);
    assert_eq!(w.birth_tick[1], t0);
    assert!((w.row[1] - 2).abs() <= 1 && (w.col[1] - 2).abs() <= 1);
    assert_eq!(info.alive_count, vec![3]);
    assert_eq!(info.rewards, vec![0.0; 4], "births give no reward");
}

#[test]
fn agents_not_choosing_reproduce_do_not_reproduce() {
    let (mut w, mut rng) = world(params(), 3);
    w.food_collected[0] = true;
    put(&mut w, 0, 2, 2, 200.0);
    let mut info = TickInfo::default();
    for a in 0..5u8 {
        w.step(&[a, 5, 5, 5], &mut rng, &mut info);
        assert!(info.births.is_empty(), "action {a}");
    }
}

#[test]
fn children_cannot_reproduce_on_their_birth_tick() {
    let mut p = params();
    p.reproduce_threshold = 50.0;
    p.reproduce_cost = 60.0;
    let (mut w, mut rng) = world(p, 4);
    w.food_collected[0] = true;
    put(&mut w, 0, 2, 2, 200.0);
    let mut info = TickInfo::default();
    w.step(&[ACTION_REPRODUCE; 4], &mut rng, &mut info);
    assert_eq!(
        info.births.len(),
        1,
        "child in slot 1 (energy 60 >= 50) waits: {:?}",
        info.births
    );
    assert_eq!(w.energy[0], 139.0);
    w.step(&[ACTION_REPRODUCE; 4], &mut rng, &mut info);
    // Tick 2: parent (138 -> 78) fills slot 2, child (59 >= 50 -> 0) fills slot 3.
    let slots: Vec<_> = info
        .births
        .iter()
        .map(|b| (b.parent_slot, b.child_slot))
        .collect();
    assert_eq!(slots, vec![(0, 2), (1, 3)]);
    assert_eq!(
        w.energy[1], 0.0,
        "parent energy after paying is floored at 0"
    );
}

#[test]
fn no_free_slot_means_no_birth_and_no_cost() {
    let (mut w, mut rng) = world(params(), 5);
    w.food_collected[0] = true;
    for k in 0..4 {
        put(&mut w, k, k as i32, 0, 200.0);
    }
    let ids = w.agent_id.clone();
    let mut info = TickInfo::default();
    w.step(&[ACTION_REPRODUCE; 4], &mut rng, &mut info);
    assert!(info.births.is_empty());
    assert_eq!(w.energy, vec![199.0; 4]);
    assert_eq!(w.agent_id, ids);
}

#[test]
fn child_goes_to_the_lowest_dead_slot_including_one_freed_by_death_this_tick() {
    let (mut w, mut rng) = world(params(), 6);
    w.food_collected[0] = true;
    put(&mut w, 0, 2, 2, 1.0); // dies in step 7
    put(&mut w, 1, 2, 2, 200.0);
    put(&mut w, 2, 2, 2, 100.0);
    put(&mut w, 3, 2, 2, 100.0);
    let mut info = TickInfo::default();
    w.step(&[0, ACTION_REPRODUCE, 0, 0], &mut rng, &mut info);
    assert_eq!(info.died, vec![true, false, false, false]);
    assert_eq!(info.deaths, vec![1]);
    assert_eq!(
        info.births,
        vec![Birth {
            env: 0,
            parent_slot: 1,
            child_slot: 0
        }]
    );
    assert_eq!(w.parent_id[0], 1001);
    assert!(!info.died[1] && w.alive[0]);
}

#[test]
fn child_placement_stays_within_one_cell_and_inside_the_grid() {
    let mut seen = std::collections::HashSet::new();
    for seed in 0..60 {
        let (mut w, mut rng) = world(params(), seed);
        w.food_collected[0] = true;
        let (r, c) = [(0, 0), (4, 4), (2, 2), (0, 4)][seed as usize % 4];
        put(&mut w, 0, r, c, 200.0);
        let mut info = TickInfo::default();
        w.step(&[ACTION_REPRODUCE, 0, 0, 0], &mut rng, &mut info);
        assert_eq!(info.births.len(), 1);
        let (cr, cc) = (w.row[1], w.col[1]);
        assert!(
            (0..5).contains(&cr) && (0..5).contains(&cc),
            "child at ({cr},{cc})"
        );
        assert!((cr - r).abs() <= 1 && (cc - c).abs() <= 1);
        if (r, c) == (2, 2) {
            seen.insert((cr - 2, cc - 2));
        }
    }
    assert!(
        seen.len() >= 6,
        "offsets in the interior vary over {{-1,0,1}}^2: {seen:?}"
    );
}

#[test]
fn population_floor_fills_lowest_dead_slots_with_fresh_agents() {
    let mut p = params();
    p.min_agents = 2;
    let (mut w, mut rng) = world(p, 7);
    w.food_collected[0] = true;
    put(&mut w, 2, 1, 1, 1.0); // dies this tick
    w.agent_id[0] = 50; // a long-dead agent's leftovers
    w.next_id[0] = 2000;
    let mut info = TickInfo::default();
    w.step(&[0; 4], &mut rng, &mut info);
    assert!(info.died[2]);
    assert_eq!(info.floor_respawns, vec![(0, 0), (0, 1)]);
    assert_eq!(info.alive_count, vec![2]);
    for k in 0..2 {
        assert!(w.alive[k]);
        assert_eq!(w.energy[k], 100.0, "starting energy");
        assert_eq!(w.parent_id[k], NO_PARENT);
        assert_eq!(w.agent_id[k], 2000 + k as u64);
        assert_eq!(w.birth_tick[k], 0);
    }
    assert!(!w.alive[2]);

    // min_agents = 0 disables the floor.
    let (mut w, mut rng) = world(params(), 7);
    put(&mut w, 2, 1, 1, 1.0);
    w.step(&[0; 4], &mut rng, &mut info);
    assert!(info.floor_respawns.is_empty());
    assert_eq!(w.alive_count(0), 0);
}

#[test]
fn reset_places_distinct_agents_and_fresh_food() {
    let mut p = params();
    p.num_envs = 3;
    p.grid_size = 3;
    p.num_slots = 12;
    p.num_agents = 9; // every cell of the 3x3 grid
    p.num_food = 7;
    let (w, _) = world(p, 8);
    for e in 0..3 {
        let s = e * 12;
        let mut cells: Vec<_> = (s..s + 9).map(|k| (w.row[k], w.col[k])).collect();
        cells.sort();
        cells.dedup();
        assert_eq!(cells.len(), 9, "distinct cells");
        assert!((s..s + 9).all(|k| w.alive[k] && w.energy[k] == 100.0));
        assert!((s + 9..s + 12).all(|k| !w.alive[k]));
        assert_eq!(w.alive_count(e), 9);
        assert_eq!(w.tick[e], 0);
    }
    assert!(w.food_collected.iter().all(|c| !c));
    assert!(w.field.iter().all(|&v| v == 0.0));
    assert_eq!(&w.agent_id[0..9], &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
}

#[test]
fn time_limit_resets_the_env_with_truncation_flag_and_terminal_obs() {
    let mut p = params();
    p.num_envs = 2;
    p.num_agents = 2;
    p.max_steps = 3;
    p.write_strength = 1.0;
    let (mut w, mut rng) = world(p, 9);
    let mut info = TickInfo::default();
    let acts = [1, 2, 3, 4, 0, 1, 2, 3];
    w.step(&acts, &mut rng, &mut info);
    w.step(&acts, &mut rng, &mut info);
    assert_eq!(info.truncated, vec![false, false]);
    // A twin that never times out: its state after the third tick is the terminal state.
    let mut twin = w.clone();
    twin.params.max_steps = 100;
    let mut twin_rng = rng.clone();
    let mut twin_info = TickInfo::default();
    twin.step(&acts, &mut twin_rng, &mut twin_info);
    let ids_before: u64 = *w.agent_id.iter().max().unwrap();
    w.step(&acts, &mut rng, &mut info);
    assert_eq!(info.truncated, vec![true, true]);
    assert_eq!(
        info.alive_count, twin_info.alive_count,
        "alive count is pre-reset"
    );
    let mut want = vec![0.0; twin.num_envs() * twin.num_slots() * twin.obs_dim()];
    twin.observe(&mut want);
    assert_eq!(info.terminal_obs, want);
    assert!(want.iter().any(|&v| v != 0.0));
    // The env was reset: tick 0, field zero, fresh agents with new ids.
    assert_eq!(w.tick, vec![0, 0]);
    assert!(w.field.iter().all(|&v| v == 0.0));
    assert_eq!(w.alive_count(0), 2);
    assert_eq!(ids_before, 2);
    for k in [0, 1, 4, 5] {
        assert_eq!(
            w.agent_id[k],
            3 + k as u64 % 4,
            "ids keep counting (never reused)"
        );
        assert_eq!(w.energy[k], 100.0);
    }
    assert_eq!(w.next_id, vec![5, 5]);
    w.step(&acts, &mut rng, &mut info);
    assert_eq!(info.truncated, vec![false, false]);
    assert_eq!(w.tick, vec![1, 1]);
}

#[test]
fn field_update_diffuses_decays_then_adds_writes() {
    let mut p = params();
    p.grid_size = 3;
    p.diffusion_rate = 0.5;
    p.decay_rate = 0.1;
    p.write_strength = 2.0;
    p.num_channels = 2;
    let (mut w, mut rng) = world(p, 10);
    w.food_collected[0] = true;
    // Channel 0: a unit at the corner (0,0); channel 1: zero.
    w.field[0] = 1.0;
    put(&mut w, 0, 2, 2, 100.0);
    put(&mut w, 1, 2, 2, 100.0);
    let mut info = TickInfo::default();
    w.step(&[0; 4], &mut rng, &mut info);
    // blur of the corner unit on an edge-replicated border: 9/16 at (0,0), 3/16 at (0,1)
    // and (1,0), 1/16 at (1,1), 0 elsewhere.
    let blur = [9.0, 3.0, 0.0, 3.0, 1.0, 0.0, 0.0, 0.0, 0.0];
    for (cell, b) in blur.iter().enumerate() {
        let v0 = if cell == 0 { 1.0 } else { 0.0 };
        let want = (0.5 * v0 + 0.5 * b / 16.0) * 0.9;
        let writes = if cell == 8 { 4.0 } else { 0.0 };
        assert!(
            (w.field[cell * 2] - (want + writes)).abs() < 1e-6,
            "cell {cell}: {}",
            w.field[cell * 2]
        );
        assert!(
            (w.field[cell * 2 + 1] - writes).abs() < 1e-6,
            "channel 1 of cell {cell}"
        );
    }
}
