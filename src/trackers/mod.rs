//! Emergence and specialization trackers (model.md section 7): periodic measurements of
//! the field and of the agents' evolved weights, with full history and z-score events.
//!
//! Both trackers serialise to plain JSON and restore exactly, so a resumed run keeps
//! judging new values against the same history.

use serde::{Deserialize, Serialize};

/// Which tracker raised an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackerKind {
    /// The field tracker (entropy, structure).
    Emergence,
    /// The evolved-weights tracker (weight divergence).
    Specialization,
}

impl TrackerKind {
    /// `emergence` or `specialization`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackerKind::Emergence => "emergence",
            TrackerKind::Specialization => "specialization",
        }
    }
}

/// A value that jumped: `|value - mean| / std > threshold` over the previous window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerEvent {
    /// Tracker that raised it.
    pub kind: TrackerKind,
    /// Step counter at the measurement.
    pub step: u64,
    /// Name of the value, e.g. `entropy`.
    pub metric: String,
    /// The value measured.
    pub value: f64,
    /// Mean of the previous window.
    pub mean: f64,
    /// Population std of the previous window (floored at 1e-8).
    pub std: f64,
    /// `(value - mean) / std` (signed).
    pub z: f64,
}
