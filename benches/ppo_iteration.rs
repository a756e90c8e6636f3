//! Criterion benchmarks of the PPO iteration and of the machine's floor (issue 14).
//!
//! Threads: `EMERGENCE_LAB_BENCH_THREADS` (default: all available cores) for the native
//! CPU passes and the floor kernels; libtorch keeps one thread, as in the trainer.
//!
//! * `floor`: the two rates the floor is computed from ([`emergence_lab::train::floor`]),
//!   with the same threads: one `1024`³ fp32 product (`matrixmultiply` split over the
//!   threads, and libtorch's on as many intra-op threads), reported in "elements" = FLOP
//!   per second, and a streaming read of 1 GiB (bytes per second).
//! * `ppo_iteration_kaggle_T16`: one PPO iteration (rollout + GAE + update) of the
//!   Kaggle-notebook config with a shortened rollout (T = 16) so a sample takes a second;
//!   throughput in "elements" = slot-steps per second. Before the group the floor of such an
//!   iteration (every slot alive) is printed: divide criterion's time by it for the multiple.
//!   `train --bench` times the full-size iteration with a breakdown and the multiples.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use emergence_lab::config::Evolved;
use emergence_lab::train::floor::{self, IterationWork, MachineFloor, MATMUL_DIM, READ_BYTES};
use emergence_lab::{config::Config, train::TrainState};

fn threads() -> usize {
    std::env::var("EMERGENCE_LAB_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

fn iteration(c: &mut Criterion) {
    let threads = threads();
    emergence_lab::policy::native::set_threads(threads);
    tch::set_num_threads(1);
    let machine = MachineFloor::measure(threads);
    eprintln!("{}", machine.describe());
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
        let mut state = TrainState::new(cfg.clone(), tch::Device::Cpu).unwrap();
        let slot_steps = cfg.steps_per_iteration();
        let work = IterationWork::new(
            slot_steps as f64,
            cfg.train.num_epochs,
            state.policy.num_params() as usize,
            state
                .offsets
                .as_ref()
                .map_or(0, |o| o.per_slot_numel() as usize),
        );
        eprintln!(
            "{name}: floor of one T=16 iteration (every slot alive) {:.4} s",
            machine.total_s(&work)
        );
        group.throughput(Throughput::Elements(slot_steps as u64));
        group.bench_function(name, |b| b.iter(|| state.iterate().unwrap()));
    }
    group.finish();
}

fn floor(c: &mut Criterion) {
    let threads = threads();
    let mut group = c.benchmark_group(format!("floor_{threads}_threads"));
    group.sample_size(10);
    let n = MATMUL_DIM;
    let a = floor::matrix_data(n);
    let mut out = vec![0f32; n * n];
    group.throughput(Throughput::Elements(2 * (n * n * n) as u64));
    group.bench_function("matmul_1024_matrixmultiply_flop", |b| {
        b.iter(|| floor::native_matmul_pass(&a, &mut out, threads))
    });
    let ta = tch::Tensor::from_slice(&a).view([n as i64, n as i64]);
    tch::set_num_threads(threads as i32);
    group.bench_function("matmul_1024_libtorch_flop", |b| b.iter(|| ta.matmul(&ta)));
    tch::set_num_threads(1);
    let buf = vec![1f32; READ_BYTES / 4];
    group.throughput(Throughput::Bytes(READ_BYTES as u64));
    group.bench_function("read_1GiB", |b| b.iter(|| floor::read_pass(&buf, threads)));
    group.finish();
}

criterion_group!(benches, floor, iteration);
criterion_main!(benches);
