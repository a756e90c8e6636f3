//! Checkpoints: the format, store and resume rule live in `emergence_lab_core::checkpoint`
//! (re-exported here); this module adds what needs tch: `tensor` (fast tensor -> array copies)
//! and `session` (the glue to the `Trainer`: resume, saves, signals).

pub use emergence_lab_core::checkpoint::*;

mod session;
pub(crate) mod tensor;

pub use session::{train_with_checkpoints, CheckpointedRun, RunError, RunOutcome, SignalGuard};
