//! `kaggle_push`: save the notebook on Kaggle without running it.
use clap::Parser;
use emergence_lab_scripts::cli::{exit_with, push};
fn main() {
    exit_with(push::push(push::PushArgs::parse()))
}
