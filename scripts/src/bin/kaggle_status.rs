//! `kaggle_status`: status of the remembered run; `--watch` follows it with live progress.
use clap::Parser;
use emergence_lab_scripts::cli::{exit_with, status};
fn main() {
    exit_with(status::run(status::StatusArgs::parse()))
}
