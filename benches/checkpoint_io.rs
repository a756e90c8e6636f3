//! Checkpoint save/load cost at the Kaggle-notebook config (1024 slots x 37,063 offsets), on
//! the arrays a real training state writes.
//!
//! Measures CRC-32C, plain write, atomic durable save (fsync + rename + latest), load,
//! verify, the caller's synchronous part of a background save, and the file size.
//! `EMERGENCE_LAB_BENCH_DIR` chooses the folder written to (default: the temp folder).
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use emergence_lab::checkpoint::{
    read_checkpoint, verify_checkpoint, write_checkpoint, AsyncSaver, Checkpoint, CheckpointKind,
    CheckpointStore,
};
use emergence_lab::{config::Config, train::TrainState};

/// A real training state of the Kaggle notebook's config, one iteration in: the arrays are
/// exactly what the trainer writes (the saved state is declared once, by the parts).
fn kaggle_state() -> TrainState {
    let mut cfg = Config::kaggle_notebook();
    cfg.train.device = "cpu".into();
    cfg.log.metrics_path = String::new();
    cfg.log.tensorboard_dir = String::new();
    TrainState::new(cfg, tch::Device::Cpu).expect("the Kaggle config builds")
}

/// The state's checkpoint with `metrics` history entries in its header.
fn kaggle_checkpoint(state: &TrainState, metrics: usize) -> Checkpoint {
    let mut ckpt = state.to_checkpoint(CheckpointKind::Periodic);
    let entry = r#"{"step":131072,"iteration":1,"values":{"losses/policy_loss":-0.0123456789,"losses/value_loss":0.123456789,"losses/entropy":1.7890123,"losses/approx_kl":0.00123456,"losses/clip_fraction":0.0456789,"losses/total_loss":0.0512345,"charts/mean_reward":0.123456,"charts/mean_value":1.23456,"charts/mean_return":1.34567,"world/population":12.3456,"world/births":3.0,"world/deaths":2.0,"world/foods_eaten":45.0,"world/mean_energy":123.456,"world/min_energy":12.345,"world/max_energy":199.5,"world/oldest_age":1234.0,"charts/learning_rate":0.000299,"perf/steps_per_second":65432.1}}"#;
    ckpt.meta.metrics_json = format!("[{}]", vec![entry; metrics].join(","));
    ckpt
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("EMERGENCE_LAB_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn checkpoint_io(cr: &mut Criterion) {
    let state = kaggle_state();
    let ckpt = kaggle_checkpoint(&state, 0);
    let data_bytes: u64 = ckpt.arrays.iter().map(|a| a.data.len() as u64).sum();
    let dir = bench_dir();
    let file = dir.path().join("bench.safetensors");
    let size = write_checkpoint(&file, &ckpt, true).unwrap();
    let late = kaggle_checkpoint(&state, 21_600); // metrics history after ~12 h at ~2 s per iteration
    let late_size = write_checkpoint(&dir.path().join("late.safetensors"), &late, false).unwrap();
    eprintln!(
        "checkpoint file: {size} bytes ({:.1} MB), data {data_bytes} bytes; with 21,600 metrics entries: {late_size} bytes (+{:.1} MB header)",
        size as f64 / 1e6,
        (late_size - size) as f64 / 1e6
    );

    let mut g = cr.benchmark_group("checkpoint_io");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    g.throughput(Throughput::Bytes(size));
    g.bench_function("crc32c_data", |b| {
        b.iter(|| {
            black_box(
                ckpt.arrays
                    .iter()
                    .fold(0u32, |c, a| crc32c::crc32c_append(c, &a.data)),
            )
        })
    });
    g.bench_function("write_no_fsync", |b| {
        b.iter(|| write_checkpoint(&file, &ckpt, false).unwrap())
    });
    let store = CheckpointStore::new(dir.path().join("store"), 2).unwrap();
    g.bench_function("store_save_atomic_fsync", |b| {
        b.iter(|| store.save(&ckpt).unwrap())
    });
    g.bench_function("store_save_atomic_fsync_12h_metrics", |b| {
        b.iter(|| store.save(&late).unwrap())
    });
    write_checkpoint(&file, &ckpt, true).unwrap();
    g.bench_function("load_and_verify", |b| {
        b.iter(|| black_box(read_checkpoint(&file).unwrap()))
    });
    g.bench_function("verify_only", |b| {
        b.iter(|| black_box(verify_checkpoint(&file).unwrap()))
    });
    // The caller's synchronous part of a background save (building the Checkpoint from the
    // state) is measured in `train_state` below.
    let saver =
        AsyncSaver::new(CheckpointStore::new(dir.path().join("async"), 2).unwrap()).unwrap();
    g.finish();

    // One training-like sequence: an iteration of ~2 s per save, measured end to end.
    let (mut blocked, mut convert) = (Duration::ZERO, Duration::ZERO);
    let saves = 5;
    for i in 0..saves {
        let t0 = Instant::now();
        let mut c = state.to_checkpoint_reusing(CheckpointKind::Periodic, saver.take_spare());
        c.meta.step = ckpt.meta.step + i;
        convert += t0.elapsed();
        let t0 = Instant::now();
        saver.submit(c).unwrap();
        blocked += t0.elapsed();
        std::thread::sleep(Duration::from_millis(2000));
    }
    let stats = saver.finish().unwrap();
    eprintln!(
        "async saver: {saves} saves at 2 s intervals: conversion {:.1} ms/save (spare buffers after the first), submit {:.3} ms/save; writer {:.0} ms per save; {} written, {} superseded",
        convert.as_secs_f64() * 1e3 / saves as f64,
        blocked.as_secs_f64() * 1e3 / saves as f64,
        stats.write_seconds * 1e3 / stats.written.max(1) as f64,
        stats.written,
        stats.superseded
    );
}

/// The real conversions at the notebook config: `TrainState::to_checkpoint` (the caller's
/// synchronous part of every save) and `TrainState::from_checkpoint_with_config` (resume).
fn train_state_conversion(cr: &mut Criterion) {
    tch::set_num_threads(1);
    let state = kaggle_state();
    let cfg = state.config.clone();
    let ckpt = state.to_checkpoint(CheckpointKind::Periodic);
    let bytes: u64 = ckpt.arrays.iter().map(|a| a.data.len() as u64).sum();
    let mut g = cr.benchmark_group("train_state");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("to_checkpoint", |b| {
        b.iter(|| black_box(state.to_checkpoint(CheckpointKind::Periodic)))
    });
    let mut spare = Some(state.to_checkpoint(CheckpointKind::Periodic));
    g.bench_function("to_checkpoint_reusing_spare", |b| {
        b.iter(|| {
            let c = state.to_checkpoint_reusing(CheckpointKind::Periodic, spare.take());
            spare = Some(black_box(c));
        })
    });
    g.bench_function("from_checkpoint", |b| {
        b.iter(|| {
            black_box(
                emergence_lab::train::TrainState::from_checkpoint_with_config(
                    &ckpt,
                    cfg.clone(),
                    tch::Device::Cpu,
                )
                .unwrap(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, checkpoint_io, train_state_conversion);
criterion_main!(benches);
