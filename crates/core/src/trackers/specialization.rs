//! The specialization tracker: how far apart the alive agents' effective evolved weights
//! are (mean and max pairwise cosine distance), with z-score events on the mean.

use serde::{Deserialize, Serialize};

use super::{Tracker, TrackerError, TrackerEvent, TrackerKind};

/// One measurement of the population's weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpecializationRecord {
    /// Step counter at the measurement.
    pub step: u64,
    /// Mean pairwise cosine distance (`1 - cos`) of the alive agents' weights.
    #[serde(with = "super::num")]
    pub weight_divergence: f64,
    /// Largest pairwise cosine distance.
    #[serde(with = "super::num")]
    pub max_divergence: f64,
    /// Alive agents measured.
    pub num_alive: usize,
}

/// Weight divergence over time (model.md section 7). Events are raised on
/// `weight_divergence` only (`max_divergence` and `num_alive` are recorded).
pub type SpecializationTracker = Tracker<SpecializationRecord>;

impl Tracker<SpecializationRecord> {
    /// Measures `rows` (one flattened row of effective evolved weights per alive agent, all
    /// the same length) at `step`, records it and returns the events it raised.
    pub fn update(
        &mut self,
        step: u64,
        rows: &[&[f32]],
    ) -> Result<Vec<TrackerEvent>, TrackerError> {
        if let Some(first) = rows.first() {
            if let Some((index, row)) = rows
                .iter()
                .enumerate()
                .find(|(_, r)| r.len() != first.len())
            {
                return Err(TrackerError::RowLength {
                    index,
                    got: row.len(),
                    expected: first.len(),
                });
            }
        }
        let (mean, max) = weight_divergence(rows);
        let record = SpecializationRecord {
            step,
            weight_divergence: mean,
            max_divergence: max,
            num_alive: rows.len(),
        };
        Ok(self.record(
            TrackerKind::Specialization,
            record,
            &[("weight_divergence", |r| r.weight_divergence)],
            step,
        ))
    }
}

/// `(mean, max)` pairwise cosine distance `1 - a.b / (|a| |b|)` over all pairs of `rows`,
/// norms floored at 1e-8; `(0, 0)` with fewer than two rows. Rows must have equal length.
pub fn weight_divergence(rows: &[&[f32]]) -> (f64, f64) {
    let n = rows.len();
    if n < 2 {
        return (0.0, 0.0);
    }
    let norms: Vec<f64> = rows.iter().map(|r| dot(r, r).sqrt().max(1e-8)).collect();
    let (mut sum, mut max, mut pairs) = (0.0, 0.0f64, 0usize);
    for i in 0..n {
        for j in i + 1..n {
            let d = 1.0 - dot(rows[i], rows[j]) / (norms[i] * norms[j]);
            sum += d;
            max = max.max(d);
            pairs += 1;
        }
    }
    (sum / pairs as f64, max)
}

/// Dot product: 8 f32 lanes (vectorisable) over blocks of 256 elements, each block's sum
/// added in f64; fixed order, so deterministic.
fn dot(a: &[f32], b: &[f32]) -> f64 {
    const BLOCK: usize = 256;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut total = 0.0f64;
    for (ab, bb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let mut acc = [0.0f32; 8];
        let mut ac = ab.chunks_exact(8);
        let mut bc = bb.chunks_exact(8);
        for (x, y) in (&mut ac).zip(&mut bc) {
            for l in 0..8 {
                acc[l] += x[l] * y[l];
            }
        }
        let mut block: f64 = acc.iter().map(|&v| v as f64).sum();
        for (x, y) in ac.remainder().iter().zip(bc.remainder()) {
            block += (*x as f64) * (*y as f64);
        }
        total += block;
    }
    total
}
