//! `checkpoint`: inspects, verifies and lists Emergence Lab checkpoint files.
//!
//! `checkpoint inspect PATH...` prints step, iteration, kind, config summary, tensors and
//! whether each verifies (exit 1 if any does not); `checkpoint list DIR` lists a folder.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use emergence_lab::checkpoint::{self, header::kind_name, LATEST_NAME};

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

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
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
                println!("{report}");
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
                println!(
                    "{:>14} {:>8} {:<9} {:>12} bytes  {}",
                    c.step,
                    c.iteration,
                    kind_name(c.kind),
                    c.size_bytes,
                    c.path.display()
                );
            }
            match checkpoint::latest(&dir) {
                Ok(l) => println!("latest -> step {} ({})", l.step, kind_name(l.kind)),
                Err(e) => println!("latest: {e}"),
            }
            for (p, e) in &listing.skipped {
                println!("unreadable {}: {e}", p.display());
            }
            Ok(if listing.skipped.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
