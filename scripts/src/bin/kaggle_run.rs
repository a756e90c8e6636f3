//! `kaggle_run`: save and run the notebook on Kaggle, remembering the version.
use emergence_lab_scripts::cli::{main_with, push};
fn main() {
    main_with::<push::RunArgs>(push::run)
}
