//! `kaggle_setup`: check Kaggle credentials and write notebooks/kernel-metadata.json.
use emergence_lab_scripts::cli::{main_with, setup};
fn main() {
    main_with::<setup::SetupArgs>(setup::run)
}
