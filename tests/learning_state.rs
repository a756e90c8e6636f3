//! TrainState evidence: determinism, exact checkpoint round trip, and per-agent weights
//! that act (different offsets => different policies; evolution off => identical).

use emergence_lab::checkpoint::CheckpointKind;
use emergence_lab::policy::{Offsets, Policy};
use emergence_lab::ppo::evaluate;
use emergence_lab::{config::Config, rng::Rng, train::TrainState};
use tch::Device;

fn small_config() -> Config {
    let mut c = Config::default();
    c.env.grid_size = 8;
    c.env.num_agents = 3;
    c.env.num_food = 6;
    c.env.observation_radius = 2;
    c.env.max_steps = 12; // episode resets inside the rollouts
    c.train.num_envs = 3;
    c.train.num_steps = 8;
    c.train.minibatch_size = 32;
    c.train.num_epochs = 2;
    c.train.total_steps = 10_000;
    c.evolution.max_agents = 6;
    c.evolution.min_agents = 2;
    c.evolution.starting_energy = 20.0;
    c.evolution.reproduce_threshold = 30.0;
    c.evolution.reproduce_cost = 10.0;
    c.evolution.mutation_std = 0.05;
    c.specialization.diversity_bonus = 0.1;
    c.specialization.niche_pressure = 0.05;
    c.analysis.emergence_check_interval = 1.into();
    c.analysis.specialization_check_interval = 1.into();
    c.analysis.event_window = 1;
    c
}

fn flat(s: &TrainState) -> Vec<f32> {
    Vec::try_from(s.policy.flat.detach().to_device(Device::Cpu)).unwrap()
}

fn offsets(s: &TrainState) -> Vec<Vec<f32>> {
    s.offsets
        .as_ref()
        .map(|o| {
            o.tensors
                .iter()
                .map(|t| Vec::try_from(t.flatten(0, -1)).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn same_seed_same_threads_is_bit_identical_after_three_iterations() {
    tch::set_num_threads(1);
    let run = || {
        let mut s = TrainState::new(small_config(), Device::Cpu).unwrap();
        for _ in 0..3 {
            s.iterate().unwrap();
        }
        s
    };
    let (a, b) = (run(), run());
    assert_eq!(flat(&a), flat(&b));
    assert_eq!(offsets(&a), offsets(&b));
    assert_eq!(a.world, b.world);
    assert_eq!(a.rng, b.rng);
    assert_eq!(a.metrics_history().len(), 3);
    // The run did something: weights moved and the world saw births (offsets inherited).
    let fresh = TrainState::new(small_config(), Device::Cpu).unwrap();
    assert_ne!(flat(&a), flat(&fresh));
    let births: f64 = a
        .metrics_history()
        .iter()
        .map(|m| m.get("world/births").unwrap())
        .sum();
    assert!(births > 0.0, "the test config should produce births");
    // A different seed gives a different run.
    let mut c = small_config();
    c.train.seed = 1;
    let mut other = TrainState::new(c, Device::Cpu).unwrap();
    other.iterate().unwrap();
    assert_ne!(flat(&other), flat(&a));
}

#[test]
fn checkpoint_round_trip_continues_bit_identically() {
    tch::set_num_threads(1);
    let mut a = TrainState::new(small_config(), Device::Cpu).unwrap();
    a.iterate().unwrap();
    a.iterate().unwrap();
    assert_eq!(a.trackers.emergence.history().len(), 2);
    assert_eq!(a.trackers.specialization.history().len(), 2);
    let ck = a.to_checkpoint(CheckpointKind::Periodic);
    assert!(ck.array("policy/hidden0/weight").is_some());
    assert!(ck.array("adam/m/policy/critic/bias").is_some());
    assert!(ck.array("offsets/policy/actor/weight").is_some());
    assert!(ck.array("world/field").is_some());
    assert_eq!(ck.meta.step, a.step);
    let mut b = TrainState::from_checkpoint(&ck, Device::Cpu).unwrap();
    assert_eq!(b.step, a.step);
    assert_eq!(b.iteration, 2);
    assert_eq!(b.metrics_history(), a.metrics_history());
    assert_eq!(b.trackers, a.trackers);
    assert_eq!(b.adam.step, a.adam.step);
    assert_eq!(b.world, a.world);
    assert_eq!(flat(&b), flat(&a));
    let ma = a.iterate().unwrap();
    let mb = b.iterate().unwrap();
    assert_eq!(flat(&a), flat(&b));
    assert_eq!(offsets(&a), offsets(&b));
    assert_eq!(a.world, b.world);
    assert_eq!(a.rng, b.rng);
    assert_eq!(a.trackers, b.trackers);
    assert_eq!(a.trackers.emergence.history().len(), 3);
    let strip = |m: &emergence_lab::metrics::Metrics| {
        m.values
            .iter()
            .filter(|(k, _)| !k.starts_with("perf/"))
            .map(|(k, v)| (k.clone(), *v))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&ma), strip(&mb));
}

#[test]
fn checkpoint_with_missing_array_is_a_clear_error() {
    tch::set_num_threads(1);
    let a = TrainState::new(small_config(), Device::Cpu).unwrap();
    let mut ck = a.to_checkpoint(CheckpointKind::Final);
    ck.arrays.retain(|x| x.name != "world/energy");
    let err = TrainState::from_checkpoint(&ck, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("world/energy"), "{err}");
}

#[test]
fn checkpoint_with_impossible_values_is_a_clear_error_not_a_panic() {
    tch::set_num_threads(1);
    let a = TrainState::new(small_config(), Device::Cpu).unwrap();
    let good = a.to_checkpoint(CheckpointKind::Final);
    // A row far outside the grid (checksums would pass for a crafted file).
    let mut ck = good.clone();
    let row = ck
        .arrays
        .iter_mut()
        .find(|x| x.name == "world/row")
        .unwrap();
    row.data[..4].copy_from_slice(&1000i32.to_le_bytes());
    let err = TrainState::from_checkpoint(&ck, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("world/row"), "{err}");
    // A negative Adam step count.
    let mut ck = good.clone();
    let step = ck
        .arrays
        .iter_mut()
        .find(|x| x.name == "adam/step")
        .unwrap();
    step.data[..8].copy_from_slice(&(-3i64).to_le_bytes());
    let err = TrainState::from_checkpoint(&ck, Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("adam/step"), "{err}");
    // The untouched checkpoint still loads.
    assert!(TrainState::from_checkpoint(&good, Device::Cpu).is_ok());
}

/// Two batch rows computed from the same inputs: equal up to the last bits of rounding
/// (far below the 1e-3 differences that offsets make).
fn assert_rows_close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        let tol = 1e-5 * x.abs().max(y.abs()).max(1.0);
        assert!(
            (x - y).abs() <= tol,
            "rows differ beyond rounding: {a:?} vs {b:?}"
        );
    }
}

#[test]
fn per_agent_offsets_change_the_policy_and_disabled_evolution_does_not() {
    tch::set_num_threads(1);
    let c = Config::default();
    let obs_dim = c.obs_dim();
    let policy = Policy::new(
        obs_dim,
        &c.agent.hidden_dims,
        &mut Rng::seed_from_u64(4),
        Device::Cpu,
    );
    let mut rng = Rng::seed_from_u64(9);
    let obs: Vec<f32> = (0..obs_dim)
        .map(|_| rng.uniform_f32() * 2.0 - 1.0)
        .collect();
    let both: Vec<f32> = obs.iter().chain(obs.iter()).copied().collect();

    // Slot 1 is a mutated child of slot 0 (all parameters evolve, with a visible std).
    let mut cfg = c.clone();
    cfg.evolution.mutation_std = 0.2;
    let mut o = Offsets::new(&policy, &cfg, 2).unwrap();
    o.birth(0, 1, &mut rng);
    let (lp, v, _) = evaluate(&policy, Some(&o), &both, &[0, 1], false);
    let diff: f32 = (0..6).map(|k| (lp[k] - lp[6 + k]).abs()).sum();
    assert!(
        diff > 1e-3,
        "offsets must change the action distribution: {lp:?}"
    );
    assert_ne!(v[0], v[1]);

    // Same offsets => same distribution (two rows of one batch: batched kernels may round
    // each row differently in the last bits, e.g. AVX2 vs AVX-512, so compare with a tolerance).
    let (lp2, _, _) = evaluate(&policy, Some(&o), &both, &[1, 1], false);
    assert_rows_close(&lp2[..6], &lp2[6..]);

    // Evolution disabled: no offsets, everyone acts with the shared weights.
    let mut off = c.clone();
    off.evolution.enabled = false;
    assert!(Offsets::new(&policy, &off, 2).is_none());
    let (lp3, v3, _) = evaluate(&policy, None, &both, &[0, 1], false);
    assert_rows_close(&lp3[..6], &lp3[6..]);
    assert_rows_close(&v3[..1], &v3[1..2]);

    // Through a whole TrainState with evolution disabled there are no offsets at all.
    let mut sc = small_config();
    sc.evolution.enabled = false;
    let mut s = TrainState::new(sc, Device::Cpu).unwrap();
    assert!(s.offsets.is_none());
    s.iterate().unwrap();
    let ck = s.to_checkpoint(CheckpointKind::Final);
    assert!(ck.arrays.iter().all(|a| !a.name.starts_with("offsets/")));
}

#[test]
fn a_rollout_keeps_its_observations_until_the_scratch_is_told_they_are_free() {
    use emergence_lab::ppo::{collect, RolloutScratch};
    use emergence_lab::world::{World, WorldParams};
    let c = small_config();
    let mut rng = Rng::seed_from_u64(3);
    let mut world = World::new(WorldParams::from_config(&c), &mut rng);
    let policy = Policy::new(world.obs_dim(), &c.agent.hidden_dims, &mut rng, Device::Cpu);
    let mut scratch = RolloutScratch::default();
    let steps = c.train.num_steps;
    let first = collect(&mut world, &mut rng, &policy, None, steps, &mut scratch);
    let kept: Vec<f32> = Vec::try_from(first.obs.flatten(0, -1)).unwrap();
    // Without `recycle`, the next rollout must not write into the first one's observations.
    let second = collect(&mut world, &mut rng, &policy, None, steps, &mut scratch);
    let now: Vec<f32> = Vec::try_from(first.obs.flatten(0, -1)).unwrap();
    assert_eq!(
        kept, now,
        "the first rollout's observations were overwritten"
    );
    let second_obs: Vec<f32> = Vec::try_from(second.obs.flatten(0, -1)).unwrap();
    assert_ne!(kept, second_obs, "the two rollouts saw different ticks");
    // Once told, the store is reused (same data pointer) and holds the new rollout.
    let ptr = second.obs.data_ptr();
    drop(second);
    scratch.recycle();
    let third = collect(&mut world, &mut rng, &policy, None, steps, &mut scratch);
    assert_eq!(third.obs.data_ptr(), ptr, "the freed store is reused");
}

#[test]
fn the_checkpoint_stores_the_metrics_history_as_its_json_byte_for_byte() {
    tch::set_num_threads(1);
    let mut s = TrainState::new(small_config(), Device::Cpu).unwrap();
    for _ in 0..3 {
        s.iterate().unwrap();
    }
    let want = serde_json::to_string(s.metrics_history()).unwrap();
    let ck = s.to_checkpoint(CheckpointKind::Periodic);
    assert_eq!(ck.meta.metrics_json, want);
    // Restored, then one more iteration: still the JSON of the whole history.
    let mut r = TrainState::from_checkpoint(&ck, Device::Cpu).unwrap();
    r.iterate().unwrap();
    assert_eq!(r.metrics_history().len(), 4);
    let again = r.to_checkpoint_reusing(CheckpointKind::Periodic, Some(ck));
    assert_eq!(
        again.meta.metrics_json,
        serde_json::to_string(r.metrics_history()).unwrap()
    );
}
