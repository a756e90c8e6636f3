//! `train`: trains the Emergence Lab population with PPO + evolution.
//!
//! `train [--config FILE] [--group.field VALUE ...]` trains; `train --bench [ITERS [THREADS [auto|tch]]]` times
//! full PPO iterations of the Kaggle-notebook config (evolved all / heads / disabled) and
//! prints the rollout / world / network / update breakdown, with each time as a multiple of
//! the machine's floor measured in the same run ([`emergence_lab::train::floor`]).

use std::time::Instant;

use anyhow::{Context, Result};
use emergence_lab::config::{Evolved, RolloutOffsets};
use emergence_lab::metrics::names;
use emergence_lab::ppo::Backend;
use emergence_lab::progress::{ReportMode, Reporter};
use emergence_lab::train::floor::{IterationWork, MachineFloor};
use emergence_lab::train::CheckpointedRun;
use emergence_lab::{config::Config, train::TrainState};

/// CPU seconds (user + system, all threads) this process has used so far, from
/// `/proc/self/stat` (Linux; in USER_HZ = 100 ticks per second); NaN elsewhere. On a shared
/// machine CPU time per iteration is steadier than wall time.
fn process_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name `(...)`: state is field 3, utime 14, stime 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    match (
        f.get(11).map(|v| v.parse::<f64>()),
        f.get(12).map(|v| v.parse::<f64>()),
    ) {
        (Some(Ok(u)), Some(Ok(s))) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

fn bench(iters: usize, backend: Backend) -> Result<()> {
    let threads = emergence_lab::policy::native::threads();
    println!(
        "# PPO iteration benchmark: Config::kaggle_notebook(), {threads} threads (native CPU passes; libtorch {} thread(s)), CPU, update backend {backend:?}",
        tch::get_num_threads()
    );
    for (label, enabled, evolved, rollout_offsets) in [
        ("evolved=all", true, Evolved::All, RolloutOffsets::F32),
        ("evolved=all f16", true, Evolved::All, RolloutOffsets::F16),
        ("evolved=heads", true, Evolved::Heads, RolloutOffsets::F32),
        (
            "evolution disabled",
            false,
            Evolved::All,
            RolloutOffsets::F32,
        ),
    ] {
        let mut c = Config::kaggle_notebook();
        c.evolution.enabled = enabled;
        c.evolution.evolved = evolved;
        c.evolution.rollout_offsets = rollout_offsets;
        c.train.device = "cpu".into();
        let mut state = TrainState::new(c.clone(), tch::Device::Cpu)?;
        state.update_backend = backend;
        // The machine's floor, measured just before this variant's iterations (same threads).
        let floor = MachineFloor::measure(threads);
        println!("# {label}: {}", floor.describe());
        let params = state.policy.num_params() as usize;
        let offset_floats = state
            .offsets
            .as_ref()
            .map_or(0, |o| o.per_slot_numel() as usize);
        for it in 0..iters {
            let (t, cpu0) = (Instant::now(), process_cpu_s());
            let m = state.iterate()?;
            let s = t.elapsed().as_secs_f64();
            let cpu = process_cpu_s() - cpu0;
            let g = |k: &str| m.get(k).unwrap_or(f64::NAN);
            let work = IterationWork::new(
                g(names::PERF_ALIVE_AGENT_STEPS),
                c.train.num_epochs,
                params,
                offset_floats,
            );
            let floor_s = floor.total_s(&work);
            println!(
                "{label:20} iter={} total_s={s:.3} cpu_s={cpu:.2} slot_steps_per_s={:.0} floor_s={floor_s:.3} x_floor={:.2} rollout_x_floor={:.2} update_x_floor={:.2} alive_steps={} rollout_s={:.3} (world_s={:.3} network_s={:.3} offsets_s={:.3}) update_s={:.3} (batch_s={:.3} gather_s={:.3} forward_s={:.3} backward_s={:.3} adam_s={:.3} sync_s={:.3} host_syncs={}) minibatches={} pop={:.2}",
                it + 1,
                c.steps_per_iteration() as f64 / s,
                s / floor_s,
                g(names::PERF_ROLLOUT_S) / floor.rollout_s(&work),
                g(names::PERF_UPDATE_S) / floor.update_s(&work),
                                g(names::PERF_ALIVE_AGENT_STEPS),
                g(names::PERF_ROLLOUT_S),
                g(names::PERF_WORLD_S),
                g(names::PERF_NETWORK_S),
                g(names::PERF_OFFSETS_S),
                g(names::PERF_UPDATE_S),
                g(names::PERF_UPDATE_BATCH_S),
                g(names::PERF_UPDATE_GATHER_S),
                g(names::PERF_UPDATE_FORWARD_S),
                g(names::PERF_UPDATE_BACKWARD_S),
                g(names::PERF_UPDATE_ADAM_S),
                g(names::PERF_UPDATE_SYNC_S),
                g(names::PERF_UPDATE_HOST_SYNCS),
                g(names::PERF_MINIBATCHES),
                g(names::POPULATION),
            );
        }
    }
    Ok(())
}

#[path = "../../crates/core/src/bin/common/mod.rs"]
mod common;

fn main() -> std::process::ExitCode {
    common::exit(run())
}

fn run() -> Result<std::process::ExitCode> {
    let args: Vec<String> = common::text_args()?;
    if args.first().map(String::as_str) == Some("--bench") {
        let iters = match args.get(1) {
            Some(n) => n
                .parse()
                .with_context(|| format!("--bench takes a number of iterations, got {n:?}"))?,
            None => 3,
        };
        let backend = match args.get(3).map(String::as_str) {
            None | Some("auto") => Backend::Auto,
            Some("tch") => Backend::Tch,
            Some(b) => anyhow::bail!("--bench ITERS THREADS [auto|tch]: unknown backend {b:?}"),
        };
        if let Some(t) = args.get(2) {
            let t: i32 = t
                .parse()
                .with_context(|| format!("--bench ITERS THREADS: bad thread count {t:?}"))?;
            // As the trainer on the CPU: the native passes get the threads, libtorch one
            // (all of them with the libtorch backend).
            emergence_lab::policy::native::set_threads(t.max(1) as usize);
            tch::set_num_threads(if backend == Backend::Tch { t } else { 1 });
        } else if backend == Backend::Auto {
            // The default thread setting (train.num_threads = 0), chosen by the trainer's code.
            let mut c = Config::kaggle_notebook();
            c.train.device = "cpu".into();
            emergence_lab::train::Trainer::prepare_device(&c)?;
            if let Some(choice) = emergence_lab::train::threads::take_last_choice() {
                println!("# {}", choice.describe());
            }
        }
        return bench(iters, backend).map(|()| std::process::ExitCode::SUCCESS);
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: train [--config FILE] [--group.field VALUE ...]\n       train --bench [ITERATIONS [THREADS [auto|tch]]]\n\noptions (defaults):\n{}",
            Config::options_help()
        );
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let (config, overrides) = Config::load_cli_with_overrides(args.iter().cloned())?;
    // Resume (train.resume_from), periodic/final/emergency checkpoints, SIGINT/SIGTERM.
    let mut run = CheckpointedRun::start_with_overrides(config, &overrides)?
        .with_reporter(Reporter::new(ReportMode::Auto))
        .handle_signals(true);
    for w in run.warnings().to_vec() {
        run.trainer_mut().reporter.warn(&w);
    }
    if let Some(info) = run.resumed_from().cloned() {
        run.trainer_mut().reporter.info(&format!(
            "resumed from {} (step {}, iteration {})",
            info.path.display(),
            info.step,
            info.iteration
        ));
    }
    let out = run.run()?;
    let summary = &out.summary;
    let reporter = &mut run.trainer_mut().reporter;
    if let Some(m) = &summary.last_metrics {
        reporter.info(&format!(
            "final step={} mean_reward={:.4} population={:.2} policy_loss={:.4} value_loss={:.4}",
            m.step,
            m.get(names::MEAN_REWARD).unwrap_or(f64::NAN),
            m.get(names::POPULATION).unwrap_or(f64::NAN),
            m.get(names::LOSSES_POLICY_LOSS).unwrap_or(f64::NAN),
            m.get(names::LOSSES_VALUE_LOSS).unwrap_or(f64::NAN),
        ));
    }
    for e in &summary.events {
        reporter.event(e);
    }
    for f in &summary.files {
        reporter.info(&format!("wrote {}", f.display()));
    }
    reporter.info(&out.message);
    Ok(std::process::ExitCode::from(out.exit_code() as u8))
}
