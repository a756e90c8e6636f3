//! `kaggle_download`: fetch the run's outputs, verify checkpoints, print the resume command.
use emergence_lab_scripts::cli::{download, main_with};
fn main() {
    main_with::<download::DownloadArgs>(download::run)
}
