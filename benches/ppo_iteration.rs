//! Criterion benchmark of one PPO iteration (rollout + GAE + update) on the Kaggle-notebook
//! config with a shortened rollout (T = 16) so a sample takes seconds, not tens of seconds;
//! `train --bench` times the full-size iteration with a breakdown.

use criterion::{criterion_group, criterion_main, Criterion};
use emergence_lab::config::Evolved;
use emergence_lab::{Config, TrainState};

fn bench(c: &mut Criterion) {
    tch::set_num_threads(1);
    let mut group = c.benchmark_group("ppo_iteration_kaggle_T16");
    group.sample_size(10);
    for (name, enabled, evolved) in [
        ("all", true, Evolved::All),
        ("heads", true, Evolved::Heads),
        ("disabled", false, Evolved::All),
    ] {
        let mut cfg = Config::kaggle_notebook();
        cfg.train.num_steps = 16;
        cfg.evolution.enabled = enabled;
        cfg.evolution.evolved = evolved;
        let mut state = TrainState::new(cfg, tch::Device::Cpu).unwrap();
        group.bench_function(name, |b| b.iter(|| state.iterate().unwrap()));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
