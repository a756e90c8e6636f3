//! In-memory form of a checkpoint: named little-endian arrays plus metadata.
//!
//! `TrainState` converts itself to and from [`Checkpoint`]; the writer/reader turn it into
//! a safetensors file (format v1, see the module docs of the reader/writer).

use serde::{Deserialize, Serialize};

/// Element type of a stored array (the safetensors dtypes we use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DType {
    F32,
    F64,
    I64,
    I32,
    U64,
    U32,
    U8,
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::U8 | DType::Bool => 1,
        }
    }
}

/// One named array: `data` holds `shape.product() * dtype.size()` little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedArray {
    /// Path-like stable name, e.g. `policy/hidden0/weight`, `adam/m/policy/hidden0/weight`,
    /// `world/field`, `rng/seed`.
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// Why a checkpoint was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointKind {
    /// Written when the step counter crossed a multiple of `log.save_interval`.
    Periodic,
    /// Written on a signal, an error or a panic; never rotated.
    Emergency,
    /// Written at the end of a run (completed or deadline).
    Final,
    /// A NaN/Inf state kept for debugging; never becomes `latest`.
    Nonfinite,
}

/// Checkpoint metadata (stored as strings in the safetensors header `__metadata__`).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointMeta {
    pub step: u64,
    pub iteration: u64,
    pub kind: CheckpointKind,
    /// The full run config as JSON (`Config::to_json`).
    pub config_json: String,
    /// Tracker histories and events as JSON.
    pub trackers_json: String,
    /// The metrics history (JSON array of `Metrics`).
    pub metrics_json: String,
    /// Seconds since the Unix epoch when it was written.
    pub created_unix: u64,
    /// Identity of the run that wrote it (also in the first record of its metrics file);
    /// `None` for checkpoints written before run ids existed ("unknown").
    pub run_id: Option<String>,
}

/// A whole checkpoint in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub arrays: Vec<NamedArray>,
}

impl Checkpoint {
    /// The array of that name.
    pub fn array(&self, name: &str) -> Option<&NamedArray> {
        self.arrays.iter().find(|a| a.name == name)
    }
}
