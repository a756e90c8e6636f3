//! `kaggle_status`: status of the remembered run; `--watch` follows it with live progress.
use emergence_lab_scripts::cli::{main_with, status};
fn main() {
    main_with::<status::StatusArgs>(status::run)
}
