//! `kaggle_run`: save and run the notebook on Kaggle, remembering the version.
use clap::Parser;
use emergence_lab_scripts::cli::{exit_with, push};
fn main() {
    exit_with(push::run(push::RunArgs::parse()))
}
