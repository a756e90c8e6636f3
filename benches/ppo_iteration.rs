//! Criterion benchmarks of the PPO iteration and of the machine's floor.
//!
//! * `ppo_iteration_kaggle_T16`: one PPO iteration (rollout + GAE + update) on the
//!   Kaggle-notebook config with a shortened rollout (T = 16) so a sample takes seconds;
//!   `train --bench` times the full-size iteration with a breakdown.
//! * `floor`: the rates the throughput floor of issue 14 is computed from, on one thread:
//!   the update's dominant matmul shape (`[256, 502] x [502, 64]`, reported in
//!   "elements" = FLOP per second) with libtorch, and the read bandwidth over a buffer the
//!   size of the Kaggle config's offset tables (1,024 slots x 148 KB).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use emergence_lab::config::Evolved;
use emergence_lab::{Config, TrainState};
use tch::{Device, Kind, Tensor};

fn iteration(c: &mut Criterion) {
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

fn floor(c: &mut Criterion) {
    tch::set_num_threads(1);
    let mut group = c.benchmark_group("floor");
    group.sample_size(20);
    let (m, k, n) = (256i64, 502i64, 64i64);
    let a = Tensor::randn([m, k], (Kind::Float, Device::Cpu));
    let w = Tensor::randn([n, k], (Kind::Float, Device::Cpu));
    group.throughput(Throughput::Elements((2 * m * k * n) as u64));
    group.bench_function("matmul_256x502x64_flop", |b| b.iter(|| a.matmul(&w.tr())));
    let bytes = 1024 * 37_063 * 4;
    let buf = vec![1f32; bytes / 4];
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("read_offsets_152MB", |b| {
        b.iter(|| {
            let mut acc = [0f32; 16];
            for c in buf.chunks_exact(16) {
                for l in 0..16 {
                    acc[l] += c[l];
                }
            }
            std::hint::black_box(acc)
        })
    });
    group.finish();
}

criterion_group!(benches, floor, iteration);
criterion_main!(benches);
