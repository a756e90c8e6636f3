//! `checkpoint`: inspects, verifies and lists Emergence Lab checkpoint files.
//!
//! `checkpoint inspect PATH...` prints step, iteration, kind, config summary, tensors and
//! whether each verifies (exit 1 if any does not); `checkpoint list DIR` lists a folder.
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use emergence_lab_core::checkpoint::{self, LATEST_NAME};

#[derive(Parser)]
#[command(about = "Inspect and verify Emergence Lab checkpoints")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a checkpoint's contents and verify it (a folder means its latest.safetensors).
    Inspect { paths: Vec<PathBuf> },
    /// List the checkpoints in a folder (headers only) and where latest points.
    List { dir: PathBuf },
}

mod common;

fn main() -> ExitCode {
    common::exit(main_result())
}

fn main_result() -> anyhow::Result<ExitCode> {
    match run(Cli::parse(), &mut std::io::stdout().lock()) {
        // `checkpoint inspect x | head`: a closed pipe is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        r => r,
    }
}

fn run(cli: Cli, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Inspect { paths } => {
            if paths.is_empty() {
                anyhow::bail!("give at least one checkpoint file or folder");
            }
            let mut all_ok = true;
            for p in paths {
                let p = if p.is_dir() { p.join(LATEST_NAME) } else { p };
                let report = checkpoint::inspect(&p)
                    .with_context(|| format!("inspecting {}", p.display()))?;
                writeln!(out, "{report}")?;
                all_ok &= report.verified();
            }
            Ok(if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::List { dir } => {
            let listing = checkpoint::list_checkpoints(&dir)
                .with_context(|| format!("listing {}", dir.display()))?;
            for c in &listing.checkpoints {
                writeln!(
                    out,
                    "{:>14} {:>8} {:<9} {:>12} bytes  {}",
                    c.step,
                    c.iteration,
                    c.kind,
                    c.size_bytes,
                    c.path.display()
                )?;
            }
            match checkpoint::latest(&dir) {
                Ok(l) => writeln!(out, "latest -> step {} ({})", l.step, l.kind)?,
                Err(e) => writeln!(out, "latest: {e}")?,
            }
            for (p, e) in &listing.skipped {
                writeln!(out, "unreadable {}: {e}", p.display())?;
            }
            Ok(if listing.skipped.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
