//! Checkpoints: the format, store and resume rule live in `emergence_lab_core::checkpoint`
//! (re-exported here); this module adds what needs tch: `tensor` (fast tensor -> array
//! copies). The run that uses them (resume, saves, signals) is `train::CheckpointedRun`: this
//! module never imports `train`.

pub use emergence_lab_core::checkpoint::*;

pub(crate) mod tensor;
