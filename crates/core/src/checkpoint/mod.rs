//! Checkpoints: one safetensors file per saved `TrainState`, written atomically, verified
//! on load, rotated by step, with `latest.safetensors` pointing at the newest good one.
//!
//! The in-memory form is in `format.rs`, the file format v1 in `header.rs`. Nothing here
//! touches tch: the training library adds the tensor copies and the glue to its trainer.

mod error;
mod format;
mod header;
mod inspect;
mod lock;
mod reader;
mod resume;
mod saver;
mod schema;
mod store;
mod writer;

pub use error::CheckpointError;
pub use format::{Checkpoint, CheckpointKind, CheckpointMeta, DType, NamedArray};
pub use header::{Header, TensorEntry, FORMAT_NAME, FORMAT_VERSION};
pub use inspect::{inspect, CheckpointReport, TensorSummary};
pub use lock::{FolderLock, LOCK_FILE_NAME};
pub use reader::{from_bytes, read_checkpoint, read_header, verify_checkpoint};
pub use resume::{
    auto_resume, find_checkpoint_files, find_resume, latest, list_checkpoints, pick_resume,
    verify_info, CheckpointInfo, CheckpointListing, ResumeChoice,
};
pub use saver::{AsyncSaver, SaverStats};
pub use schema::{
    copy_env_arrays, load_arrays, read_values, Element, SavedArray, SavedArrayMut, SchemaError,
    Values, ValuesMut,
};
pub use store::{
    checkpoint_file_name, parse_checkpoint_file_name, CheckpointStore, LatestMode, SaveReport,
    LATEST_NAME,
};
pub use writer::{to_bytes, write_checkpoint};
