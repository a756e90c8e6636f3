//! `kaggle_setup`: check Kaggle credentials and write notebooks/kernel-metadata.json.
use clap::Parser;
use emergence_lab_scripts::cli::{exit_with, setup};
fn main() {
    exit_with(setup::run(setup::SetupArgs::parse()))
}
