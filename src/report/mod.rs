//! Run reports: charts of a run's metrics and tracker events (PNG and SVG files, and
//! inline images for evcxr notebook cells), read from the metrics JSONL and/or a checkpoint.
//!
//! PNG text is rendered with the bundled DejaVu Sans (`assets/fonts`), so reports look the
//! same on a fresh machine without system fonts.

mod charts;
mod source;

use std::path::{Path, PathBuf};
use std::sync::Once;

use base64::Engine;
use plotters::prelude::*;

pub use charts::{chart_specs, format_steps, series_points, ChartSpec, PanelSpec, SeriesSpec};
pub use source::{load_checkpoint_history, load_run, RunData};

use crate::metrics::Metrics;
use crate::sinks::read_metrics_jsonl;
use crate::trackers::TrackerEvent;

/// Errors while building a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file or folder could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Plotting failed.
    #[error("drawing chart {chart}: {reason}")]
    Draw { chart: String, reason: String },
    /// The metrics file could not be read.
    #[error(transparent)]
    Metrics(#[from] crate::sinks::SinkError),
    /// The checkpoint could not be read.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    /// Nothing to plot.
    #[error("no metrics to plot: {0}")]
    Empty(String),
}

/// Chart image size in pixels for `cols` x `rows` panels.
fn image_size(spec: &ChartSpec) -> (u32, u32) {
    let cols = spec.cols.max(1) as u32;
    let rows = spec.panels.len().div_ceil(spec.cols.max(1)) as u32;
    (if cols == 1 { 1000 } else { 700 * cols }, 60 + 440 * rows)
}

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Registers the bundled font for plotters' `sans-serif` family (once per process).
fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled font is a valid TTF; failure would only mean blank PNG text.
        for style in [FontStyle::Normal, FontStyle::Bold] {
            let _ = plotters::style::register_font("sans-serif", style, FONT);
        }
    });
}

/// Writes `<name>.png` and `<name>.svg` into `out_dir` for every chart that has data (mean
/// reward, population, births & deaths, foods eaten, emergence with events, specialization
/// with events, learning rate & losses); returns the files written, PNG before SVG.
pub fn write_charts(
    metrics: &[Metrics],
    events: &[TrackerEvent],
    out_dir: impl AsRef<Path>,
) -> Result<Vec<PathBuf>, ReportError> {
    let out_dir = out_dir.as_ref();
    if metrics.is_empty() {
        return Err(ReportError::Empty(
            "the run has no completed iteration yet (empty metrics)".into(),
        ));
    }
    std::fs::create_dir_all(out_dir).map_err(|source| ReportError::Io {
        action: "create folder",
        path: out_dir.to_path_buf(),
        source,
    })?;
    register_fonts();
    let mut files = Vec::new();
    for spec in chart_specs() {
        if !charts::has_data(&spec, metrics) {
            continue;
        }
        let size = image_size(&spec);
        let draw_err = |reason: String| ReportError::Draw {
            chart: spec.file.into(),
            reason,
        };
        let png = out_dir.join(format!("{}.png", spec.file));
        {
            let root = BitMapBackend::new(&png, size).into_drawing_area();
            charts::draw_chart(&root, &spec, metrics, events).map_err(draw_err)?;
        }
        let svg = out_dir.join(format!("{}.svg", spec.file));
        {
            let root = SVGBackend::new(&svg, size).into_drawing_area();
            charts::draw_chart(&root, &spec, metrics, events).map_err(draw_err)?;
        }
        files.push(png);
        files.push(svg);
    }
    Ok(files)
}

/// Reads a metrics JSONL file and writes its charts (no tracker events; see [`load_run`]
/// to add a checkpoint's events).
pub fn write_run_charts(
    metrics_jsonl: impl AsRef<Path>,
    out_dir: impl AsRef<Path>,
) -> Result<Vec<PathBuf>, ReportError> {
    let metrics = read_metrics_jsonl(metrics_jsonl)?;
    write_charts(&metrics, &[], out_dir)
}

/// The evcxr display block of one PNG image:
/// `EVCXR_BEGIN_CONTENT image/png\n<base64>\nEVCXR_END_CONTENT\n`.
pub fn display_block(png: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(png);
    format!("EVCXR_BEGIN_CONTENT image/png\n{b64}\nEVCXR_END_CONTENT\n")
}

/// Writes the evcxr display blocks of the PNG files among `files` into `out`.
pub fn write_display_blocks(
    files: &[PathBuf],
    out: &mut dyn std::io::Write,
) -> Result<(), ReportError> {
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "png"))
    {
        let png = std::fs::read(f).map_err(|source| ReportError::Io {
            action: "read chart",
            path: f.clone(),
            source,
        })?;
        out.write_all(display_block(&png).as_bytes())
            .and_then(|_| out.flush())
            .map_err(|source| ReportError::Io {
                action: "write display block to",
                path: "output".into(),
                source,
            })?;
    }
    Ok(())
}

/// Prints the PNG files among `files` (e.g. from [`write_charts`]) as inline images of an
/// evcxr notebook cell.
pub fn display_charts(files: &[PathBuf]) -> Result<(), ReportError> {
    write_display_blocks(files, &mut std::io::stdout().lock())
}

/// Reads a metrics JSONL file, writes its charts into `report/` next to it and shows them
/// inline (one call for a notebook's results cell).
pub fn display_run_charts(metrics_jsonl: impl AsRef<Path>) -> Result<Vec<PathBuf>, ReportError> {
    let path = metrics_jsonl.as_ref();
    let out_dir = path.parent().unwrap_or(Path::new(".")).join("report");
    let files = write_run_charts(path, &out_dir)?;
    display_charts(&files)?;
    Ok(files)
}

/// Writes the charts into `out_dir` and shows them inline (the notebook's results cell).
pub fn show_charts(
    metrics: &[Metrics],
    events: &[TrackerEvent],
    out_dir: impl AsRef<Path>,
) -> Result<Vec<PathBuf>, ReportError> {
    let files = write_charts(metrics, events, out_dir)?;
    display_charts(&files)?;
    Ok(files)
}
