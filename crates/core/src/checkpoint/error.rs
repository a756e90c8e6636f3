//! Typed errors of checkpoint writing, reading, verification and discovery.
//!
//! Every variant names the file and the check that failed, so a message alone tells the
//! user which file is bad and why; nothing in this module panics.

use std::path::PathBuf;

/// Everything that can go wrong with a checkpoint file or folder.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// An operating-system error while reading or writing.
    #[error("checkpoint I/O error on {path}: {action} failed: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The file ends before its header or data section does.
    #[error("checkpoint {path} is truncated: {detail} (partial write or interrupted copy; use an older checkpoint)")]
    Truncated { path: PathBuf, detail: String },
    /// The 8-byte header length points past the end of the file.
    #[error("checkpoint {path}: header length {header_len} exceeds the {file_len}-byte file (garbage or truncated header)")]
    HeaderLengthBeyondFile {
        path: PathBuf,
        header_len: u64,
        file_len: u64,
    },
    /// The JSON header is not valid UTF-8 / JSON / safetensors structure.
    #[error("checkpoint {path}: invalid header: {detail}")]
    BadHeader { path: PathBuf, detail: String },
    /// A safetensors file, but not one of ours.
    #[error("{path} is not an emergence-lab checkpoint (metadata `format` is {found:?}, expected \"emergence-lab-checkpoint\")")]
    NotACheckpoint {
        path: PathBuf,
        found: Option<String>,
    },
    /// Written by a newer (or unknown) format version.
    #[error("checkpoint {path} has format_version {found:?}; this build reads version 1 (update emergence_lab to read it)")]
    UnsupportedVersion { path: PathBuf, found: String },
    /// A required `__metadata__` key is absent.
    #[error("checkpoint {path}: metadata key `{key}` is missing")]
    MissingMetadata { path: PathBuf, key: &'static str },
    /// A `__metadata__` value does not parse.
    #[error("checkpoint {path}: metadata key `{key}` is invalid: {detail}")]
    BadMetadata {
        path: PathBuf,
        key: &'static str,
        detail: String,
    },
    /// A tensor entry's dtype, shape or offsets are inconsistent.
    #[error("checkpoint {path}: tensor `{name}`: {detail}")]
    BadTensor {
        path: PathBuf,
        name: String,
        detail: String,
    },
    /// The data section is longer than the tensors say.
    #[error("checkpoint {path}: data section has {actual} bytes but the tensors end at {expected} (trailing bytes)")]
    TrailingData {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    /// The data section's CRC-32C differs from the header's `data_crc32c`.
    #[error("checkpoint {path}: data checksum mismatch (header says {expected:08x}, data gives {actual:08x}): the data section is corrupt")]
    CrcMismatch {
        path: PathBuf,
        expected: u32,
        actual: u32,
    },
    /// The header's CRC-32C differs from its `header_crc32c` (a changed name, number or config).
    #[error("checkpoint {path}: header checksum mismatch (header_crc32c says {expected:08x}, header gives {actual:08x}): the header is corrupt")]
    HeaderCrcMismatch {
        path: PathBuf,
        expected: u32,
        actual: u32,
    },
    /// A checkpoint to be written is inconsistent (a bug in the caller's conversion).
    #[error("cannot write checkpoint {path}: array `{name}`: {detail}")]
    InvalidArray {
        path: PathBuf,
        name: String,
        detail: String,
    },
    /// A state to be saved holds NaN/Inf; it was kept as a nonfinite debug file, not `latest`.
    #[error("the state at step {step} holds NaN/Inf (first in array `{array}`); saved for debugging as {path}, latest.safetensors unchanged")]
    NonFiniteState {
        path: PathBuf,
        array: String,
        step: u64,
    },
    /// `latest.safetensors` does not exist in the folder.
    #[error("no latest.safetensors in {dir} (no checkpoint saved there yet; use resume_from = \"auto\" or a path)")]
    NoLatest { dir: PathBuf },
    /// `latest.safetensors` is a symlink to a file that does not exist.
    #[error("{link} points to {target}, which does not exist (deleted or not copied); use resume_from = \"auto\" to fall back to the newest good checkpoint")]
    DanglingLatest { link: PathBuf, target: PathBuf },
    /// `resume_from` names a path that is not a checkpoint file.
    #[error("resume_from = {path:?}: {detail}")]
    BadResumePath { path: PathBuf, detail: String },
    /// The background saver's thread is gone (it panicked).
    #[error("the background checkpoint writer stopped unexpectedly: {detail}")]
    SaverGone { detail: String },
    /// Another run holds the checkpoint folder's lock.
    #[error("checkpoint folder {} is already in use by {holder}: two runs in one folder would overwrite each other's checkpoints. Wait for that run to finish (or stop it), or use another folder (--log.checkpoint-dir DIR)", .dir.display())]
    Locked { dir: PathBuf, holder: String },
}

impl CheckpointError {
    /// Short stable name of the failed check (`crc`, `truncated`, ...), for tests and logs.
    pub fn check(&self) -> &'static str {
        match self {
            CheckpointError::Io { .. } => "io",
            CheckpointError::Truncated { .. } => "truncated",
            CheckpointError::HeaderLengthBeyondFile { .. } => "header_length",
            CheckpointError::BadHeader { .. } => "header",
            CheckpointError::NotACheckpoint { .. } => "format",
            CheckpointError::UnsupportedVersion { .. } => "format_version",
            CheckpointError::MissingMetadata { .. } => "metadata_missing",
            CheckpointError::BadMetadata { .. } => "metadata_invalid",
            CheckpointError::BadTensor { .. } => "tensor",
            CheckpointError::TrailingData { .. } => "trailing_data",
            CheckpointError::CrcMismatch { .. } => "crc",
            CheckpointError::HeaderCrcMismatch { .. } => "header_crc",
            CheckpointError::InvalidArray { .. } => "invalid_array",
            CheckpointError::NonFiniteState { .. } => "nonfinite_state",
            CheckpointError::NoLatest { .. } => "no_latest",
            CheckpointError::DanglingLatest { .. } => "dangling_latest",
            CheckpointError::BadResumePath { .. } => "resume_path",
            CheckpointError::SaverGone { .. } => "saver_gone",
            CheckpointError::Locked { .. } => "locked",
        }
    }

    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        CheckpointError::Io {
            path: path.into(),
            action,
            source,
        }
    }
}

/// Result alias of this module.
pub(crate) type Result<T, E = CheckpointError> = std::result::Result<T, E>;
