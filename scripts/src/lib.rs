//! Companion tools for emergence-lab that must build and run without libtorch:
//! the Kaggle API helpers and notebook generation.

pub mod cli;
pub mod kaggle;
