//! `ablation`: does the shared field carry information? Runs paired greedy episodes from a
//! checkpoint under field ablations and prints the table of model.md section 9.
//!
//! `ablation --checkpoint PATH [--episodes 20] [--seed 0] [--conditions normal,zeroed,random]
//! [--output ablation_results.json] [--start checkpoint|fresh] [--device cpu] [--threads N]`
//! prints the table on stdout and writes the JSON file and a CSV file next to it.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use emergence_lab::ablation::{self, AblationOptions, Condition, Start};

#[derive(Parser)]
#[command(
    about = "Field ablation of an Emergence Lab checkpoint: paired greedy episodes with the field normal, zeroed, random, frozen or hidden",
    after_help = "Conditions: normal (as trained), zeroed (field set to 0 before every observation), \
random (field replaced by uniform [0,1) values before every observation), frozen (field restored to its \
episode-start value), no_field (field part of the observation zeroed, world untouched). \
The gaps are normal - condition over paired episodes with a 95% t interval."
)]
struct Cli {
    /// Checkpoint file written by `train` (or its folder: uses latest.safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Episodes per condition (each `env.max_steps` ticks).
    #[arg(long, default_value_t = 20)]
    episodes: usize,
    /// Seed of the episode generators (episode k uses stream 2k).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Comma-separated conditions (normal is always included).
    #[arg(long, default_value = "normal,zeroed,random")]
    conditions: String,
    /// JSON output file; the CSV goes next to it with extension .csv.
    #[arg(long, default_value = "ablation_results.json")]
    output: PathBuf,
    /// Episode start: `checkpoint` (env k mod E of the checkpoint) or `fresh` (new reset).
    #[arg(long, default_value = "checkpoint")]
    start: String,
    /// Compute device: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Worker threads for the episodes (0 = one per core); libtorch uses 1 thread on CPU.
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[path = "../../crates/core/src/bin/common/mod.rs"]
mod common;

fn main() -> std::process::ExitCode {
    common::exit(run())
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let options = AblationOptions {
        checkpoint: cli.checkpoint,
        episodes: cli.episodes,
        seed: cli.seed,
        conditions: Condition::parse_list(&cli.conditions)?,
        start: cli.start.parse::<Start>()?,
        device: cli.device,
        threads: cli.threads,
    };
    let t = Instant::now();
    let results = ablation::run(&options)?;
    let secs = t.elapsed().as_secs_f64();
    print!("{}", results.table());
    let (json, csv) = results.write(&cli.output)?;
    eprintln!(
        "wrote {} and {} ({} conditions x {} episodes x {} ticks in {secs:.1} s)",
        json.display(),
        csv.display(),
        results.conditions.len(),
        results.episodes,
        results.ticks
    );
    Ok(())
}
