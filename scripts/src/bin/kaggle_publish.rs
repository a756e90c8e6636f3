//! `kaggle_publish`: upload checkpoints as a private dataset version for the next session.
use clap::Parser;
use emergence_lab_scripts::cli::{exit_with, publish};
fn main() {
    exit_with(publish::run(publish::PublishArgs::parse()))
}
