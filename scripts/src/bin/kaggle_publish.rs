//! `kaggle_publish`: upload checkpoints as a private dataset version for the next session.
use emergence_lab_scripts::cli::{main_with, publish};
fn main() {
    main_with::<publish::PublishArgs>(publish::run)
}
