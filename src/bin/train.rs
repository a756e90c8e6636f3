//! `train`: trains the Emergence Lab population with PPO + evolution.
//!
//! `train [--config FILE] [--group.field VALUE ...]` trains; `train --bench [ITERS [THREADS]]` times
//! full PPO iterations of the Kaggle-notebook config (evolved all / heads / disabled) and
//! prints the rollout / world / network / update breakdown.

use std::time::Instant;

use anyhow::{Context, Result};
use emergence_lab::config::Evolved;
use emergence_lab::checkpoint::CheckpointedRun;
use emergence_lab::{Config, TrainState};

fn bench(iters: usize) -> Result<()> {
    let threads = tch::get_num_threads();
    println!(
        "# PPO iteration benchmark: Config::kaggle_notebook(), {threads} libtorch threads, CPU"
    );
    for (label, enabled, evolved) in [
        ("evolved=all", true, Evolved::All),
        ("evolved=heads", true, Evolved::Heads),
        ("evolution disabled", false, Evolved::All),
    ] {
        let mut c = Config::kaggle_notebook();
        c.evolution.enabled = enabled;
        c.evolution.evolved = evolved;
        c.train.device = "cpu".into();
        let mut state = TrainState::new(c.clone(), tch::Device::Cpu)?;
        for it in 0..iters {
            let t = Instant::now();
            let m = state.iterate()?;
            let s = t.elapsed().as_secs_f64();
            let g = |k: &str| m.get(k).unwrap_or(f64::NAN);
            println!(
                "{label:20} iter={} total_s={s:.3} slot_steps_per_s={:.0} alive_steps={} rollout_s={:.3} (world_s={:.3} network_s={:.3} offsets_s={:.3}) update_s={:.3} minibatches={} pop={:.2}",
                it + 1,
                c.steps_per_iteration() as f64 / s,
                g("perf/alive_agent_steps"),
                g("perf/rollout_s"),
                g("perf/world_s"),
                g("perf/network_s"),
                g("perf/offsets_s"),
                g("perf/update_s"),
                g("perf/minibatches"),
                g("world/population"),
            );
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--bench") {
        let iters = match args.get(1) {
            Some(n) => n
                .parse()
                .with_context(|| format!("--bench takes a number of iterations, got {n:?}"))?,
            None => 3,
        };
        if let Some(t) = args.get(2) {
            let t: i32 = t
                .parse()
                .with_context(|| format!("--bench ITERS THREADS: bad thread count {t:?}"))?;
            tch::set_num_threads(t);
        }
        return bench(iters);
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: train [--config FILE] [--group.field VALUE ...]\n       train --bench [ITERATIONS [THREADS]]\n\noptions (defaults):\n{}",
            Config::options_help()
        );
        return Ok(());
    }
    let (config, overrides) = Config::load_cli_with_overrides(args.iter().cloned())?;
    // Resume (train.resume_from), periodic/final/emergency checkpoints, SIGINT/SIGTERM.
    let mut run = CheckpointedRun::start_with_overrides(config, &overrides)?.handle_signals(true);
    for w in run.warnings() {
        eprintln!("warning: {w}");
    }
    if let Some(info) = run.resumed_from() {
        println!("resumed from {} (step {}, iteration {})", info.path.display(), info.step, info.iteration);
    }
    let total = run.trainer().state.config.train.total_steps;
    let log_interval = run.trainer().state.config.log.log_interval;
    let start_step = run.trainer().state.step;
    let started = Instant::now();
    let mut last_logged = start_step;
    run.on_progress(move |state, m| {
        let due = log_interval > 0
            && state.step / log_interval as u64 > last_logged / log_interval as u64;
        if due || state.step >= total {
            last_logged = state.step;
            let sps = (state.step - start_step) as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let eta = total.saturating_sub(state.step) as f64 / sps.max(1e-9);
            println!(
                "progress step={} total={} iter={} reward={:.4} pop={:.2} sps={:.0} eta_s={:.0}",
                state.step,
                total,
                state.iteration,
                m.get("charts/mean_reward").unwrap_or(0.0),
                m.get("world/population").unwrap_or(0.0),
                sps,
                eta
            );
        }
    });
    let out = run.run()?;
    let summary = &out.summary;
    println!(
        "done stopped={:?} start_step={} final_step={} iterations={}",
        summary.stopped, summary.start_step, summary.final_step, summary.iterations
    );
    println!("{}", out.message);
    std::process::exit(out.exit_code());
}
