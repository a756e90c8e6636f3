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
    #[serde(with = "num")]
    pub value: f64,
    /// Mean of the previous window.
    #[serde(with = "num")]
    pub mean: f64,
    /// Population std of the previous window (floored at 1e-8).
    #[serde(with = "num")]
    pub std: f64,
    /// `(value - mean) / std` (signed).
    #[serde(with = "num")]
    pub z: f64,
}

mod emergence;
mod num;
mod specialization;

pub use emergence::{field_entropy, field_structure, EmergenceRecord, EmergenceTracker};
pub use specialization::{weight_divergence, SpecializationRecord, SpecializationTracker};

use crate::config::{AnalysisConfig, StepInterval};
use crate::json_array::JsonArray;

/// Errors of the trackers: inputs of the wrong shape, or JSON that is not a tracker state.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// The field slice does not have `grid * grid * channels` values.
    #[error("emergence tracker: field has {got} values, expected grid {grid} x grid {grid} x {channels} channels = {expected}; pass env 0's field only, laid out [G*G*C] with the channel innermost")]
    FieldShape {
        got: usize,
        grid: usize,
        channels: usize,
        expected: usize,
    },
    /// The weight rows of the alive agents do not all have the same length.
    #[error("specialization tracker: agent row {index} has {got} weights but row 0 has {expected}; pass every alive agent's flattened effective evolved weights")]
    RowLength {
        index: usize,
        got: usize,
        expected: usize,
    },
    /// The tracker JSON could not be read.
    #[error("tracker state is not valid JSON of the expected shape ({0}); the checkpoint's trackers entry is corrupt or from an incompatible version")]
    Json(#[from] serde_json::Error),
}

/// One tracker: its schedule, the full history of its measurements (`R`, one record per
/// check) and every event raised. [`EmergenceTracker`] and [`SpecializationTracker`] are its
/// two kinds; they differ only in what they measure.
///
/// History and events only grow through the tracker's own methods, so it keeps their JSON
/// text beside them ([`JsonArray`]): [`Trackers::to_json`], called for every iteration's
/// ready checkpoint, then serialises nothing but the records added since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    try_from = "TrackerData<R>",
    bound(deserialize = "R: Deserialize<'de> + Serialize")
)]
pub struct Tracker<R> {
    /// Steps between measurements (`<= 0` disables).
    pub interval: StepInterval,
    /// Previous values an event is judged against.
    pub window: usize,
    /// Z-score above which a value is an event.
    #[serde(with = "num")]
    pub threshold: f64,
    /// Every measurement, in order.
    history: Vec<R>,
    /// Every event raised, in order.
    events: Vec<TrackerEvent>,
    /// `history` and `events` as JSON text (always in step with them).
    #[serde(skip)]
    json: [JsonArray; 2],
}

/// What a [`Tracker`] is read from: its serialised fields (the JSON text is rebuilt).
#[derive(Deserialize)]
struct TrackerData<R> {
    interval: StepInterval,
    window: usize,
    #[serde(with = "num")]
    threshold: f64,
    history: Vec<R>,
    events: Vec<TrackerEvent>,
}

impl<R: Serialize> TryFrom<TrackerData<R>> for Tracker<R> {
    type Error = serde_json::Error;

    fn try_from(d: TrackerData<R>) -> Result<Self, Self::Error> {
        Ok(Tracker {
            json: [JsonArray::of(&d.history)?, JsonArray::of(&d.events)?],
            interval: d.interval,
            window: d.window,
            threshold: d.threshold,
            history: d.history,
            events: d.events,
        })
    }
}

/// The settings of a [`Tracker`] as its JSON starts (field names and order of the derive).
#[derive(Serialize)]
struct TrackerHead<'a> {
    interval: &'a StepInterval,
    window: usize,
    #[serde(with = "num")]
    threshold: f64,
}

/// A metric's name and how to read it from a record.
type NamedValue<R> = (&'static str, fn(&R) -> f64);

impl<R: Serialize> Tracker<R> {
    /// An empty tracker.
    pub fn new(interval: StepInterval, window: usize, threshold: f64) -> Self {
        Self {
            interval,
            window,
            threshold,
            history: Vec::new(),
            events: Vec::new(),
            json: Default::default(),
        }
    }

    /// Every measurement, in order.
    pub fn history(&self) -> &[R] {
        &self.history
    }

    /// Every event raised, in order.
    pub fn events(&self) -> &[TrackerEvent] {
        &self.events
    }

    /// Appends this tracker's JSON (`serde_json::to_string(self)`, byte for byte) to `out`.
    fn write_json(&self, out: &mut String) {
        let head = TrackerHead {
            interval: &self.interval,
            window: self.window,
            threshold: self.threshold,
        };
        // Plain numbers and strings: serialising cannot fail.
        let head = serde_json::to_string(&head).unwrap_or_default();
        out.push_str(head.strip_suffix('}').unwrap_or(&head));
        out.push_str(",\"history\":");
        out.push_str(self.json[0].as_str());
        out.push_str(",\"events\":");
        out.push_str(self.json[1].as_str());
        out.push('}');
    }

    /// Drops history and events after `step`.
    fn truncate_after(&mut self, step: u64, record_step: fn(&R) -> u64) {
        let (h, e) = (self.history.len(), self.events.len());
        self.history.retain(|r| record_step(r) <= step);
        self.events.retain(|e| e.step <= step);
        if (h, e) != (self.history.len(), self.events.len()) {
            self.json = [
                JsonArray::of(&self.history).unwrap_or_default(),
                JsonArray::of(&self.events).unwrap_or_default(),
            ];
        }
    }

    /// The latest measurement, if any.
    pub fn last(&self) -> Option<&R> {
        self.history.last()
    }

    /// Judges each named value of `record` against the history (before the record joins
    /// it), records it, and returns the events raised.
    fn record(
        &mut self,
        kind: TrackerKind,
        record: R,
        metrics: &[NamedValue<R>],
        step: u64,
    ) -> Vec<TrackerEvent> {
        let mut new_events = Vec::new();
        for &(name, get) in metrics {
            // Only the last `window` values are judged against.
            let tail = &self.history[self.history.len().saturating_sub(self.window)..];
            let previous: Vec<f64> = tail.iter().map(get).collect();
            let x = get(&record);
            if let Some((mean, std, z)) = zscore_event(&previous, x, self.window, self.threshold) {
                new_events.push(TrackerEvent {
                    kind,
                    step,
                    metric: name.to_string(),
                    value: x,
                    mean,
                    std,
                    z,
                });
            }
        }
        // Records are plain numbers (non-finite ones as strings): they always serialise.
        let _ = self.json[0].push(&record);
        self.history.push(record);
        for e in &new_events {
            let _ = self.json[1].push(e);
        }
        self.events.extend(new_events.iter().cloned());
        new_events
    }
}

/// The event rule: `Some((mean, std, z))` when `|x - mean| / std > threshold` over the last
/// `window` values of `previous` (population std floored at 1e-8); `None` while fewer than
/// `window` values exist (or `window == 0`), or when a value is not finite.
pub fn zscore_event(
    previous: &[f64],
    x: f64,
    window: usize,
    threshold: f64,
) -> Option<(f64, f64, f64)> {
    if window == 0 || previous.len() < window {
        return None;
    }
    let w = &previous[previous.len() - window..];
    let n = w.len() as f64;
    let mean = w.iter().sum::<f64>() / n;
    let var = w.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let std = var.sqrt().max(1e-8);
    let z = (x - mean) / std;
    (z.abs() > threshold).then_some((mean, std, z))
}

/// Both trackers of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trackers {
    /// Field entropy and structure.
    pub emergence: EmergenceTracker,
    /// Divergence of the evolved weights.
    pub specialization: SpecializationTracker,
}

impl Trackers {
    /// Fresh trackers with the intervals, window and threshold of `cfg`.
    pub fn new(cfg: &AnalysisConfig) -> Self {
        Self {
            emergence: EmergenceTracker::new(
                cfg.emergence_check_interval,
                cfg.event_window,
                cfg.event_threshold,
            ),
            specialization: SpecializationTracker::new(
                cfg.specialization_check_interval,
                cfg.event_window,
                cfg.event_threshold,
            ),
        }
    }

    /// Whether the emergence tracker is due after an iteration from `prev_step` to `step`.
    pub fn emergence_due(&self, prev_step: u64, step: u64) -> bool {
        self.emergence.interval.crossed(prev_step, step)
    }

    /// Whether the specialization tracker is due after an iteration from `prev_step` to `step`.
    pub fn specialization_due(&self, prev_step: u64, step: u64) -> bool {
        self.specialization.interval.crossed(prev_step, step)
    }

    /// Measures env 0's field (`[G*G*C]`, channel innermost) at `step`; returns new events.
    pub fn update_emergence(
        &mut self,
        step: u64,
        field_env0: &[f32],
        grid: usize,
        channels: usize,
    ) -> Result<Vec<TrackerEvent>, TrackerError> {
        self.emergence.update(step, field_env0, grid, channels)
    }

    /// Measures the alive agents' flattened effective evolved weights at `step`; returns new
    /// events.
    pub fn update_specialization(
        &mut self,
        step: u64,
        rows: &[&[f32]],
    ) -> Result<Vec<TrackerEvent>, TrackerError> {
        self.specialization.update(step, rows)
    }

    /// All events of both trackers, ordered by step (emergence first on ties).
    pub fn events(&self) -> Vec<TrackerEvent> {
        let mut all: Vec<TrackerEvent> = self.emergence.events.clone();
        all.extend(self.specialization.events.iter().cloned());
        all.sort_by_key(|e| e.step);
        all
    }

    /// Drops history and events after `step` (for a resume whose metrics were cut back).
    pub fn truncate_after(&mut self, step: u64) {
        self.emergence.truncate_after(step, |r| r.step);
        self.specialization.truncate_after(step, |r| r.step);
    }

    /// Plain JSON of both trackers (history, events, settings); non-finite numbers are
    /// written as the strings `"NaN"`, `"inf"`, `"-inf"`.
    ///
    /// Each tracker keeps its history's text, so this costs the settings and a copy, not a
    /// serialisation of the whole history (`serde_json::to_string(self)`, byte for byte).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(
            64 + self
                .emergence
                .json
                .iter()
                .chain(&self.specialization.json)
                .map(|j| j.as_str().len())
                .sum::<usize>(),
        );
        out.push_str("{\"emergence\":");
        self.emergence.write_json(&mut out);
        out.push_str(",\"specialization\":");
        self.specialization.write_json(&mut out);
        out.push('}');
        out
    }

    /// Trackers from [`Trackers::to_json`]; they continue exactly where they were.
    pub fn from_json(json: &str) -> Result<Self, TrackerError> {
        Ok(serde_json::from_str(json)?)
    }
}

/// Metric name of the emergence tracker's entropy.
pub const METRIC_ENTROPY: &str = crate::metrics::names::EMERGENCE_ENTROPY;
/// Metric name of the emergence tracker's structure.
pub const METRIC_STRUCTURE: &str = crate::metrics::names::EMERGENCE_STRUCTURE;
/// Metric name of the mean weight divergence.
pub const METRIC_DIVERGENCE: &str = crate::metrics::names::SPECIALIZATION_WEIGHT_DIVERGENCE;
/// Metric name of the max weight divergence.
pub const METRIC_MAX_DIVERGENCE: &str = crate::metrics::names::SPECIALIZATION_MAX_DIVERGENCE;
/// Metric name of the number of alive agents measured.
pub const METRIC_NUM_ALIVE: &str = crate::metrics::names::SPECIALIZATION_NUM_ALIVE;

impl Trackers {
    /// Every measurement as `(step, metric name, value)` under the `METRIC_*` names.
    pub fn metric_points(&self) -> Vec<(u64, &'static str, f64)> {
        let mut out = Vec::new();
        for r in &self.emergence.history {
            out.push((r.step, METRIC_ENTROPY, r.entropy));
            out.push((r.step, METRIC_STRUCTURE, r.structure));
        }
        for r in &self.specialization.history {
            out.push((r.step, METRIC_DIVERGENCE, r.weight_divergence));
            out.push((r.step, METRIC_MAX_DIVERGENCE, r.max_divergence));
            out.push((r.step, METRIC_NUM_ALIVE, r.num_alive as f64));
        }
        out
    }

    /// Copies the measurements taken at `m.step` into `m` under the `METRIC_*` names, so the
    /// metrics files and reports carry them (call after updating the trackers).
    pub fn record_into(&self, m: &mut crate::metrics::Metrics) {
        if let Some(r) = self.emergence.last().filter(|r| r.step == m.step) {
            m.set(METRIC_ENTROPY, r.entropy);
            m.set(METRIC_STRUCTURE, r.structure);
        }
        if let Some(r) = self.specialization.last().filter(|r| r.step == m.step) {
            m.set(METRIC_DIVERGENCE, r.weight_divergence);
            m.set(METRIC_MAX_DIVERGENCE, r.max_divergence);
            m.set(METRIC_NUM_ALIVE, r.num_alive as f64);
        }
    }
}
