//! `report`: charts (PNG + SVG) of a run from its metrics JSONL file and/or a checkpoint.
//!
//! `cargo run --release --bin report -- --metrics runs/metrics.jsonl [--checkpoint PATH] --out runs/report`

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

/// Turn a run's metrics (and a checkpoint's tracker history and events) into charts.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Metrics JSON Lines file written by `train` (`log.metrics_path`).
    #[arg(long)]
    metrics: Option<PathBuf>,
    /// Checkpoint whose metrics history, tracker history and events are added.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Folder for the PNG and SVG files.
    #[arg(long, default_value = "runs/report")]
    out: PathBuf,
}

#[path = "../../crates/core/src/bin/common/mod.rs"]
mod common;

fn main() -> std::process::ExitCode {
    common::exit(run())
}

fn run() -> Result<()> {
    let args = Args::parse();
    let run = emergence_lab::report::load_run(args.metrics.as_deref(), args.checkpoint.as_deref())
        .context("loading the run")?;
    let files = emergence_lab::report::write_charts(&run.metrics, &run.events, &args.out)
        .with_context(|| format!("writing charts into {}", args.out.display()))?;
    println!(
        "report: {} iterations (steps {}..{}), {} tracker events",
        run.metrics.len(),
        run.metrics.first().map_or(0, |m| m.step),
        run.metrics.last().map_or(0, |m| m.step),
        run.events.len()
    );
    for f in &files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
