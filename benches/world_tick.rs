//! Criterion benchmark of the world: one tick of all 32 envs with the Kaggle notebook values
//! (A = 32, G = 20, F = 20), with and without writing the observations, and observing alone.
//!
//! `cargo bench --bench world_tick`. On a shared machine, run the built bench binary under
//! `chrt -f 10` so that other processes do not preempt it mid-measurement.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use emergence_lab::world::{TickInfo, World, WorldParams, NUM_ACTIONS};
use emergence_lab::{config::Config, rng::Rng};

/// A world warmed up for a few hundred ticks, plus pre-drawn random action sets.
fn setup() -> (World, Vec<Vec<u8>>, Rng) {
    let params = WorldParams::from_config(&Config::kaggle_notebook());
    let mut rng = Rng::seed_from_u64(0);
    let mut world = World::new(params, &mut rng);
    let n = world.num_envs() * world.num_slots();
    let actions: Vec<Vec<u8>> = (0..64)
        .map(|_| (0..n).map(|_| rng.below(NUM_ACTIONS) as u8).collect())
        .collect();
    let mut info = TickInfo::default();
    for t in 0..300 {
        world.step(&actions[t % actions.len()], &mut rng, &mut info);
    }
    (world, actions, rng)
}

fn bench(c: &mut Criterion) {
    let (world0, actions, rng0) = setup();
    let obs_len = world0.num_envs() * world0.num_slots() * world0.obs_dim();

    let (mut world, mut rng) = (world0.clone(), rng0.clone());
    let mut info = TickInfo::default();
    let mut obs = vec![0.0f32; obs_len];
    let mut t = 0;
    c.bench_function("tick_32_envs_with_observe", |b| {
        b.iter(|| {
            world.step(&actions[t % actions.len()], &mut rng, &mut info);
            world.observe(&mut obs);
            t += 1;
            black_box(&obs);
        })
    });

    let (mut world, mut rng) = (world0.clone(), rng0.clone());
    let mut t = 0;
    c.bench_function("step_32_envs", |b| {
        b.iter(|| {
            world.step(&actions[t % actions.len()], &mut rng, &mut info);
            t += 1;
            black_box(&info);
        })
    });

    c.bench_function("observe_32_envs", |b| {
        b.iter(|| {
            world0.observe(&mut obs);
            black_box(&obs);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
