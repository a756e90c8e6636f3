//! PPO for the Emergence Lab population (model.md section 6): rollout buffers, masked GAE,
//! the clipped-surrogate update with a hand-written Adam, and specialization pressure.
//!
//! The pieces are plain functions over plain data so the update reads top to bottom like
//! CleanRL's `ppo.py`; [`crate::train::TrainState::iterate`] strings them together.

mod adam;
mod adam_native;
mod gae;
mod interrupt;
pub(crate) mod pair;
mod rollout;
pub mod specialization;
mod update;
pub mod update_native;
pub mod update_tch;

pub use adam::Adam;
pub use gae::{compute_gae, GaeInput};
pub use interrupt::Interrupt;
pub use rollout::{collect, collect_until, evaluate, Rollout, RolloutScratch, RolloutStats};
pub use update::{build_batch, update, update_until, Backend, UpdateProfile, UpdateStats};
