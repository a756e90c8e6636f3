//! Checkpoints: one safetensors file per saved `TrainState`, written atomically, verified
//! on load, rotated by step, with `latest.safetensors` pointing at the newest good one.
//!
//! The in-memory form is in `format.rs`, the file format v1 in `header.rs`; only
//! `tensor.rs` (fast tensor -> array copies) touches tch. The run that uses them (resume,
//! saves, signals) is `train::CheckpointedRun`: this module never imports `train`.

pub mod error;
pub mod format;
pub mod header;
pub mod inspect;
pub mod lock;
pub mod reader;
pub mod resume;
pub mod saver;
pub mod store;
pub mod tensor;
pub mod writer;

pub use error::CheckpointError;
pub use format::{Checkpoint, CheckpointKind, CheckpointMeta, DType, NamedArray};
pub use inspect::{inspect, CheckpointReport, TensorSummary};
pub use lock::{FolderLock, LOCK_FILE_NAME};
pub use reader::{from_bytes, read_checkpoint, read_header, verify_checkpoint};
pub use resume::{
    auto_resume, find_resume, latest, list_checkpoints, CheckpointInfo, CheckpointListing,
    ResumeChoice,
};
pub use saver::{AsyncSaver, SaverStats};
pub use store::{
    checkpoint_file_name, parse_checkpoint_file_name, CheckpointStore, LatestMode, SaveReport,
    LATEST_NAME,
};
pub use writer::{to_bytes, write_checkpoint};
