//! Checkpoints: one safetensors file per saved `TrainState`, written atomically, verified
//! on load, rotated by step, with `latest.safetensors` pointing at the newest good one.
//!
//! The file format is documented in `format.rs`; this module knows nothing of tch or Kaggle.

pub mod format;

pub use format::{Checkpoint, CheckpointKind, CheckpointMeta, DType, NamedArray};
