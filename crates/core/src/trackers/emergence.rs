//! The emergence tracker: Shannon entropy and spatial structure of env 0's field, measured
//! every `analysis.emergence_check_interval` steps, with z-score events on both.

use serde::{Deserialize, Serialize};

use super::{Tracker, TrackerError, TrackerEvent, TrackerKind};

/// One measurement of the field.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EmergenceRecord {
    /// Step counter at the measurement.
    pub step: u64,
    /// Mean over channels of the Shannon entropy (nats) of `|v| / sum|v|` over cells.
    #[serde(with = "super::num")]
    pub entropy: f64,
    /// Mean over channels of the cell-vs-neighbour-mean correlation, clamped to [0, 1].
    #[serde(with = "super::num")]
    pub structure: f64,
}

/// Entropy and structure of a field over time (model.md section 7).
pub type EmergenceTracker = Tracker<EmergenceRecord>;

impl Tracker<EmergenceRecord> {
    /// Measures `field` (`[grid * grid * channels]`, channel innermost) at `step`, records
    /// it and returns the events it raised (judged before it joins the history).
    pub fn update(
        &mut self,
        step: u64,
        field: &[f32],
        grid: usize,
        channels: usize,
    ) -> Result<Vec<TrackerEvent>, TrackerError> {
        check_shape(field, grid, channels)?;
        let record = EmergenceRecord {
            step,
            entropy: field_entropy(field, grid, channels),
            structure: field_structure(field, grid, channels),
        };
        Ok(self.record(
            TrackerKind::Emergence,
            record,
            &[("entropy", |r| r.entropy), ("structure", |r| r.structure)],
            step,
        ))
    }
}

fn check_shape(field: &[f32], grid: usize, channels: usize) -> Result<(), TrackerError> {
    let expected = grid * grid * channels;
    if field.len() != expected || expected == 0 {
        return Err(TrackerError::FieldShape {
            got: field.len(),
            grid,
            channels,
            expected,
        });
    }
    Ok(())
}

/// Mean over channels of the Shannon entropy (natural log) of `|v| / sum|v|` over the
/// `grid * grid` cells; a channel that is all zero contributes 0. A uniform non-zero
/// channel gives `ln(grid^2)`; a non-finite value gives NaN. `field` is `[grid * grid * channels]`, channel innermost.
pub fn field_entropy(field: &[f32], grid: usize, channels: usize) -> f64 {
    if channels == 0 || field.len() != grid * grid * channels {
        return 0.0;
    }
    let mut total = 0.0;
    for c in 0..channels {
        let sum: f64 = field
            .iter()
            .skip(c)
            .step_by(channels)
            .map(|v| (*v as f64).abs())
            .sum();
        if !sum.is_finite() {
            return f64::NAN; // a broken field must show, not read as calm
        }
        if sum <= 0.0 {
            continue;
        }
        let mut h = 0.0;
        for v in field.iter().skip(c).step_by(channels) {
            let p = (*v as f64).abs() / sum;
            if p > 0.0 {
                h -= p * p.ln();
            }
        }
        total += h;
    }
    total / channels as f64
}

/// Clamp to [0, 1] of the mean over channels of the Pearson correlation between each
/// cell's value and the mean of its 4 neighbours (wrap-around). A channel without
/// variation (in the cells or in the neighbour means) contributes 0.
pub fn field_structure(field: &[f32], grid: usize, channels: usize) -> f64 {
    if channels == 0 || grid == 0 || field.len() != grid * grid * channels {
        return 0.0;
    }
    let cells = grid * grid;
    let n = cells as f64;
    let at = |x: usize, y: usize, c: usize| field[(y * grid + x) * channels + c] as f64;
    let mut values = vec![0.0f64; cells];
    let mut neighbours = vec![0.0f64; cells];
    let mut total = 0.0;
    for c in 0..channels {
        for y in 0..grid {
            let (up, down) = ((y + grid - 1) % grid, (y + 1) % grid);
            for x in 0..grid {
                let (left, right) = ((x + grid - 1) % grid, (x + 1) % grid);
                values[y * grid + x] = at(x, y, c);
                neighbours[y * grid + x] =
                    0.25 * (at(left, y, c) + at(right, y, c) + at(x, up, c) + at(x, down, c));
            }
        }
        let mx = values.iter().sum::<f64>() / n;
        let my = neighbours.iter().sum::<f64>() / n;
        let (mut cov, mut vx, mut vy) = (0.0, 0.0, 0.0);
        for (v, nb) in values.iter().zip(&neighbours) {
            let (dx, dy) = (v - mx, nb - my);
            cov += dx * dy;
            vx += dx * dx;
            vy += dy * dy;
        }
        if vx <= 0.0 || vy <= 0.0 {
            continue;
        }
        total += cov / (vx.sqrt() * vy.sqrt());
    }
    (total / channels as f64).clamp(0.0, 1.0)
}
