//! `kaggle_download`: fetch the run's outputs, verify checkpoints, print the resume command.
use clap::Parser;
use emergence_lab_scripts::cli::{download, exit_with};
fn main() {
    exit_with(download::run(download::DownloadArgs::parse()))
}
