//! emergence_lab_core: the parts of emergence-lab that need no libtorch.
//!
//! Config (types, layers, validation), the world and `simulate`, the run's random generator,
//! checkpoint format v1 (schema, header, CRC-32C checks, reader, writer), the checkpoint store
//! (atomic writes, `latest`, rotation, async saver), checkpoint discovery and the one rule that
//! picks the checkpoint to resume from, the progress/event line (one writer, one tolerant
//! parser), the metrics record, trackers and metric sinks.
//!
//! The training library `emergence_lab` (tch) re-exports these modules; the Kaggle helpers
//! (`scripts/`) and the `simulate` and `checkpoint` binaries use this crate alone, so they build
//! and run without libtorch.

pub mod act;
pub mod checkpoint;
pub mod config;
pub mod json_array;
pub mod metrics;
pub mod progress;
pub mod rng;
pub mod simulate;
pub mod sinks;
pub mod trackers;
pub mod world;
