//! `kaggle_notebook`: write the Kaggle (python3) notebook generated from the Rust notebook, to
//! preview what `kaggle_push` sends or to rehearse it locally (tests/notebook).

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;

/// Generate the Kaggle notebook (setup cell + `%%rust` cells) from the Rust notebook.
#[derive(Parser)]
struct Args {
    /// The Rust (evcxr) notebook.
    #[arg(long, default_value = "notebooks/kaggle_training.ipynb")]
    input: PathBuf,
    /// Where to write the Kaggle notebook; `-` for stdout.
    #[arg(long, default_value = "-")]
    output: PathBuf,
}

fn main() {
    // Errors as message + hint, never a backtrace (RUST_BACKTRACE=1 is common).
    emergence_lab_scripts::cli::exit_with(run().map(|()| 0))
}

fn run() -> Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("cannot read the Rust notebook {}", args.input.display()))?;
    let out = emergence_lab_scripts::notebook::kaggle_notebook_from_rust(&text)
        .with_context(|| format!("cannot convert {}", args.input.display()))?;
    if args.output.as_os_str() == "-" {
        print!("{out}");
    } else {
        std::fs::write(&args.output, out)
            .with_context(|| format!("cannot write {}", args.output.display()))?;
    }
    Ok(())
}
