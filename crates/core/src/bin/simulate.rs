//! `simulate`: runs the world alone under a uniformly random policy and prints population
//! dynamics, to check that a parameter set is survivable before spending GPU hours.
//!
//! `cargo run --release --bin simulate -- --ticks 2000 --envs 8 --seed 0 [--json out.json]
//! [--config run.toml] [--preset kaggle] [--group.field value ...]`

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use emergence_lab_core::config::Config;
use emergence_lab_core::config::{split_args, ConfigOverrides};
use emergence_lab_core::simulate::simulate;
use emergence_lab_core::world::WorldParams;

/// Runs the world alone with a uniformly random policy and prints population dynamics.
///
/// Config options are accepted too: `--config FILE` (TOML), overrides `--group.field value`
/// (e.g. `--env.num-food 20`) and `EMERGENCE_LAB_OVERRIDES`, applied on top of the defaults
/// or of `--preset kaggle`.
#[derive(Debug, Parser)]
#[command(name = "simulate", after_help = Config::options_help())]
struct Args {
    /// Ticks to run.
    #[arg(long, default_value_t = 2000)]
    ticks: u64,
    /// Envs (default: the config's `train.num_envs`).
    #[arg(long)]
    envs: Option<usize>,
    /// Seed (default: the config's `train.seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Also write the full per-tick statistics and the summary as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Rows of the summary table (each covers an equal share of the run).
    #[arg(long, default_value_t = 10)]
    rows: usize,
    /// Field value above which a cell counts in the "f>" column and `field_above`.
    #[arg(long, default_value_t = 0.5)]
    field_threshold: f32,
    /// Start from a preset instead of the defaults (config file and overrides apply on top).
    #[arg(long, value_enum)]
    preset: Option<Preset>,
}

/// Named starting configs.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Preset {
    /// The seed's Kaggle notebook values (`Config::kaggle_notebook`).
    Kaggle,
}

mod common;

fn main() -> std::process::ExitCode {
    common::exit(run().or_else(|e| {
        // `simulate ... | head`: a closed stdout ends the run quietly.
        let closed_pipe = e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe);
        if closed_pipe {
            Ok(())
        } else {
            Err(e)
        }
    }))
}

fn run() -> Result<()> {
    let argv: Vec<String> = common::text_args()?;
    let (config_args, own_args) = split_args(&argv);
    let args = Args::parse_from(std::iter::once("simulate".to_string()).chain(own_args));
    let overrides = ConfigOverrides::from_cli(&config_args)?;
    let base = match args.preset {
        Some(Preset::Kaggle) => Config::kaggle_notebook(),
        None => Config::default(),
    };
    let mut config = overrides.apply_to(base)?;
    if let Some(envs) = args.envs {
        config.set("train.num_envs", &envs.to_string())?;
        config.validate()?; // sizes: the world of `envs` envs must fit in memory
    }
    check_ticks(args.ticks, args.json.is_some())?;
    let seed = args.seed.unwrap_or(config.train.seed);
    let params = WorldParams::from_config(&config);
    anyhow::ensure!(
        args.field_threshold.is_finite(),
        "--field-threshold must be a finite number, got {}",
        args.field_threshold
    );
    let started = std::time::Instant::now();
    let report = simulate(&params, args.ticks, seed, args.field_threshold)?;
    let secs = started.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "simulate: {} ticks x {} envs x {} slots, seed {seed}, grid {}, food {}, random policy ({:.2} s, {:.0} env ticks/s)",
        args.ticks,
        params.num_envs,
        params.num_slots,
        params.grid_size,
        params.num_food,
        secs,
        (args.ticks as f64 * params.num_envs as f64) / secs.max(1e-9),
    )?;
    write!(out, "{}", report.table(args.rows))?;
    let totals = report.summary(1);
    if let Some(t) = totals.first() {
        writeln!(
            out,
            "total: {} eaten, {} respawned, {} births, {} deaths, {} floor respawns; smallest env population {}",
            t.foods_eaten, t.foods_respawned, t.births, t.deaths, t.floor_respawns, t.min_alive
        )?;
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "config": config,
            "report": report,
            "summary": report.summary(args.rows),
            "totals": totals.first(),
        });
        let text = serde_json::to_string_pretty(&doc).context("serialising the report")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        writeln!(out, "wrote {}", path.display())?;
    }
    out.flush()?;
    Ok(())
}

/// The per-tick statistics (and their JSON) of `ticks` ticks must fit in memory.
fn check_ticks(ticks: u64, json: bool) -> Result<()> {
    let per_tick = std::mem::size_of::<emergence_lab_core::simulate::TickStats>() as u128
        + if json { 256 } else { 0 };
    let need = ticks as u128 * per_tick;
    let have = emergence_lab_core::config::machine_memory().unwrap_or(u64::MAX) as u128;
    anyhow::ensure!(
        need <= have / 2,
        "--ticks {ticks}: the per-tick statistics need about {} but this machine has {}; \
         lower --ticks",
        emergence_lab_core::config::format_bytes(need),
        emergence_lab_core::config::format_bytes(have)
    );
    Ok(())
}
