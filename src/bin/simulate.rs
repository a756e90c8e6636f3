//! `simulate`: runs the world alone under a uniformly random policy and prints population
//! dynamics, to check that a parameter set is survivable before spending GPU hours.
//!
//! `cargo run --release --bin simulate -- --ticks 2000 --envs 8 --seed 0 [--json out.json]
//! [--config run.toml] [--preset kaggle] [--group.field value ...]`

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use emergence_lab::simulate::simulate;
use emergence_lab::world::WorldParams;
use emergence_lab::Config;

/// Runs the world alone with a uniformly random policy and prints population dynamics.
///
/// Config flags are accepted too: `--config FILE` (TOML), `--preset kaggle` (the seed's
/// Kaggle notebook values) and overrides `--group.field value` (e.g. `--env.num-food 20`).
#[derive(Debug, Parser)]
#[command(name = "simulate")]
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
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (config_args, own_args) = interim_split_args(&argv);
    let args = Args::parse_from(std::iter::once("simulate".to_string()).chain(own_args));
    let mut config = interim_load_config(&config_args)?;
    if let Some(envs) = args.envs {
        config.train.num_envs = envs;
    }
    let seed = args.seed.unwrap_or(config.train.seed);
    let params = WorldParams::from_config(&config);
    let started = std::time::Instant::now();
    let report = simulate(&params, args.ticks, seed)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "simulate: {} ticks x {} envs x {} slots, seed {seed}, grid {}, food {}, random policy ({:.2} s, {:.0} env ticks/s)",
        args.ticks,
        params.num_envs,
        params.num_slots,
        params.grid_size,
        params.num_food,
        secs,
        (args.ticks as f64 * params.num_envs as f64) / secs.max(1e-9),
    );
    print!("{}", report.table(args.rows));
    let totals = report.summary(1);
    if let Some(t) = totals.first() {
        println!(
            "total: {} eaten, {} births, {} deaths, {} floor respawns; smallest env population {}",
            t.foods_eaten, t.births, t.deaths, t.floor_respawns, t.min_alive
        );
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "config": config,
            "report": report,
            "summary": report.summary(args.rows),
        });
        let text = serde_json::to_string_pretty(&doc).context("serialising the report")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// INTERIM (to be replaced): config flags. Replace these two functions with
// `emergence_lab::config::split_args` and `Config::load_cli` once the config helper's work
// lands on main.
// ---------------------------------------------------------------------------------------

/// Splits argv into config flags (`--config F`, `--preset P`, `--group.field [value]`, also
/// in `--flag=value` form) and everything else (for clap).
fn interim_split_args(args: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut config, mut other) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let name = a
            .strip_prefix("--")
            .map(|n| n.split('=').next().unwrap_or(n));
        let is_config =
            matches!(name, Some(n) if n == "config" || n == "preset" || n.contains('.'));
        if !is_config {
            other.push(a.clone());
            i += 1;
            continue;
        }
        config.push(a.clone());
        let has_value = !a.contains('=') && args.get(i + 1).is_some_and(|v| !v.starts_with("--"));
        if has_value {
            config.push(args[i + 1].clone());
            i += 1;
        }
        i += 1;
    }
    (config, other)
}

/// Builds the config: `--preset kaggle` (else defaults), then `--config FILE`, then the
/// `--group.field value` overrides in order (values parsed as TOML, else taken as strings;
/// a flag without value means `true`).
fn interim_load_config(args: &[String]) -> Result<Config> {
    let mut pairs = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].trim_start_matches("--");
        let (name, value) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None if args.get(i + 1).is_some_and(|v| !v.starts_with("--")) => {
                i += 1;
                (a.to_string(), Some(args[i].clone()))
            }
            None => (a.to_string(), None),
        };
        pairs.push((name, value));
        i += 1;
    }
    let mut config = Config::default();
    for (name, value) in &pairs {
        if name == "preset" {
            match value.as_deref() {
                Some("kaggle") => config = Config::kaggle_notebook(),
                other => bail!("unknown --preset {other:?}; the only preset is `kaggle`"),
            }
        }
    }
    for (name, value) in &pairs {
        if name == "config" {
            let path = value.as_deref().context("--config needs a file path")?;
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {path}"))?;
            config =
                toml::from_str(&text).with_context(|| format!("parsing config file {path}"))?;
        }
    }
    let mut tree = toml::Value::try_from(&config).context("converting the config to TOML")?;
    for (name, value) in pairs.iter().filter(|(n, _)| n.contains('.')) {
        let key = name.replace('-', "_");
        let (group, field) = key.split_once('.').unwrap_or((&key, ""));
        let slot = tree
            .get_mut(group)
            .and_then(|g| g.get_mut(field))
            .with_context(|| format!("unknown config field `{key}` (from --{name})"))?;
        let raw = value.clone().unwrap_or_else(|| "true".into());
        *slot = if slot.is_str() {
            toml::Value::String(raw)
        } else {
            toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(raw))
        };
    }
    tree.try_into()
        .context("applying the --group.field overrides")
}
