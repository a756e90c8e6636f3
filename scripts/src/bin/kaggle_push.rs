//! `kaggle_push`: save the notebook on Kaggle without running it.
use emergence_lab_scripts::cli::{main_with, push};
fn main() {
    main_with::<push::PushArgs>(push::push)
}
