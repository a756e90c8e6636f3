//! `gpu_check`: the GPU check (run by `scripts/gpu_check.sh`): device line, PPO iterations of the Kaggle
//! config on CUDA and on the CPU (slot-steps/s of each), a checkpoint saved from CUDA and
//! resumed on the CPU and on CUDA (the CUDA continuation compared bit for bit with a straight
//! run), one ablation on CUDA, then one JSON line of results with a pass/fail verdict.
//!
//! `gpu_check [--out DIR] [--iters N] [--tiny] [--allow-cpu]`: `--tiny` uses a small config and
//! `--allow-cpu` runs everything on the CPU (the tests of the non-GPU logic); without
//! `--allow-cpu` a run that did not get a CUDA device fails loudly.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use emergence_lab::ablation::{self, AblationOptions};
use emergence_lab::checkpoint::{read_checkpoint, write_checkpoint, Checkpoint, CheckpointKind};
use emergence_lab::config::DeviceSpec;
use emergence_lab::device::resolve;
use emergence_lab::{config::Config, train::TrainState};
use serde_json::{json, Value};
use tch::Device;

struct Args {
    out: PathBuf,
    iters: usize,
    tiny: bool,
    allow_cpu: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        out: std::env::temp_dir().join("emergence-lab-gpu-check"),
        iters: 3,
        tiny: false,
        allow_cpu: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--out" => a.out = it.next().context("--out needs a folder")?.into(),
            "--iters" => {
                a.iters = it
                    .next()
                    .context("--iters needs a number")?
                    .parse()
                    .context("--iters needs a number >= 2")?
            }
            "--tiny" => a.tiny = true,
            "--allow-cpu" => a.allow_cpu = true,
            other => bail!("unknown argument {other:?}: gpu_check [--out DIR] [--iters N] [--tiny] [--allow-cpu]"),
        }
    }
    if a.iters < 2 {
        bail!("--iters must be >= 2 (a checkpoint is taken half-way)");
    }
    Ok(a)
}

fn config(tiny: bool, device: Device) -> Config {
    let mut c = if tiny {
        Config::tiny()
    } else {
        Config::kaggle_notebook()
    };
    c.train.device = match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".into(),
    };
    c
}

/// Runs `iters` iterations; returns the state and slot-steps per second.
fn timed_iterations(mut s: TrainState, iters: usize) -> Result<(TrainState, f64)> {
    let t = Instant::now();
    for _ in 0..iters {
        s.iterate()?;
    }
    let sps = (s.config.steps_per_iteration() * iters as u64) as f64 / t.elapsed().as_secs_f64();
    Ok((s, sps))
}

/// The arrays that make up the learning state (not timings), for a bit-for-bit comparison.
fn state_arrays(ck: &Checkpoint) -> Vec<(&str, &[u8])> {
    let mut v: Vec<(&str, &[u8])> = ck
        .arrays
        .iter()
        .filter(|a| {
            ["policy/", "adam/", "offsets/", "world/", "rng/"]
                .iter()
                .any(|p| a.name.starts_with(p))
        })
        .map(|a| (a.name.as_str(), a.data.as_slice()))
        .collect();
    v.sort();
    v
}

/// Names of the state arrays that differ between two checkpoints.
fn differing(a: &Checkpoint, b: &Checkpoint) -> Vec<String> {
    let (a, b) = (state_arrays(a), state_arrays(b));
    if a.len() != b.len() {
        return vec![format!("{} vs {} state arrays", a.len(), b.len())];
    }
    a.iter()
        .zip(&b)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| x.0.to_string())
        .collect()
}

fn run(args: &Args, results: &mut Value) -> Result<Vec<String>> {
    let mut failures = Vec::new();
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    let spec = if args.allow_cpu {
        DeviceSpec::Cpu
    } else {
        DeviceSpec::Auto
    };
    let resolved = resolve(spec).context("device")?;
    println!("{}", resolved.report);
    let gpu = resolved.device;
    results["device_line"] = json!(resolved.report.to_string());
    results["device"] = json!(resolved.report.picked);
    if gpu == Device::Cpu && !args.allow_cpu {
        bail!(
            "the run got the CPU, not a GPU: {} (a GPU check on the CPU proves nothing)",
            resolved.report
        );
    }
    let (iters, half) = (args.iters, args.iters / 2);

    // 1. Throughput on the GPU and on the CPU.
    let (_, gpu_sps) = timed_iterations(TrainState::new(config(args.tiny, gpu), gpu)?, iters)?;
    println!(
        "{} slot-steps/s on {:?} ({iters} iterations)",
        gpu_sps.round(),
        gpu
    );
    let (_, cpu_sps) = timed_iterations(
        TrainState::new(config(args.tiny, Device::Cpu), Device::Cpu)?,
        iters,
    )?;
    println!(
        "{} slot-steps/s on the CPU ({iters} iterations, {} threads)",
        cpu_sps.round(),
        tch::get_num_threads()
    );
    results["gpu_slot_steps_per_s"] = json!(gpu_sps.round());
    results["cpu_slot_steps_per_s"] = json!(cpu_sps.round());
    results["gpu_over_cpu"] = json!((gpu_sps / cpu_sps * 100.0).round() / 100.0);

    // 2. Checkpoint from the GPU, resumed on the CPU and on the GPU.
    let (mut straight, _) = timed_iterations(TrainState::new(config(args.tiny, gpu), gpu)?, half)?;
    let path = args.out.join("half.safetensors");
    write_checkpoint(
        &path,
        &straight.to_checkpoint(CheckpointKind::Periodic),
        true,
    )?;
    for _ in half..iters {
        straight.iterate()?;
    }
    let straight_end = straight.to_checkpoint(CheckpointKind::Final);
    let saved = read_checkpoint(&path).with_context(|| format!("read back {}", path.display()))?;
    let mut on_cpu = TrainState::from_checkpoint(&saved, Device::Cpu)?;
    on_cpu.iterate()?;
    results["resume_on_cpu"] = json!("ok");
    let mut resumed = TrainState::from_checkpoint(&saved, gpu)?;
    for _ in half..iters {
        resumed.iterate()?;
    }
    let diff = differing(&straight_end, &resumed.to_checkpoint(CheckpointKind::Final));
    results["resume_bit_exact"] = json!(diff.is_empty());
    if !diff.is_empty() {
        results["resume_differs_in"] = json!(diff);
        failures.push(format!("the resume on {gpu:?} is not bit-exact: {diff:?}"));
    }
    println!(
        "resume from {}: on the CPU ok; on {gpu:?} bit-exact: {}",
        path.display(),
        diff.is_empty()
    );

    // 3. One ablation on the GPU.
    let ab = ablation::run(&AblationOptions {
        checkpoint: path.clone(),
        episodes: 2,
        device: results["device"].as_str().unwrap_or("cpu").to_string(),
        ..AblationOptions::default()
    })?;
    results["ablation_conditions"] = json!(ab.conditions.len());
    println!("ablation on {gpu:?}: {} conditions", ab.conditions.len());
    Ok(failures)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    let mut results = json!({ "check": "gpu", "config": if args.tiny { "tiny" } else { "kaggle" }, "iters": args.iters });
    let failures = match run(&args, &mut results) {
        Ok(f) => f,
        Err(e) => vec![format!("{e:#}")],
    };
    results["failures"] = json!(failures);
    results["verdict"] = json!(if failures.is_empty() { "pass" } else { "fail" });
    println!("{results}");
    if !failures.is_empty() {
        eprintln!("GPU CHECK FAILED: {}", failures.join("; "));
        std::process::exit(1);
    }
}
