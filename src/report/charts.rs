//! Chart specifications (which metrics go on which chart) and their drawing with plotters,
//! identical for the SVG and the PNG backend.
//!
//! Each series is one polyline; tracker events are drawn as thin vertical bands plus a
//! triangle at the event's value, so a chart's SVG holds exactly one `<polyline>` per series.

use crate::metrics::names;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::metrics::Metrics;
use crate::trackers::{TrackerEvent, TrackerKind};

/// One line on a panel.
#[derive(Debug, Clone)]
pub struct SeriesSpec {
    /// Metric name in [`Metrics::values`], e.g. `charts/mean_reward`.
    pub metric: &'static str,
    /// Legend label.
    pub label: &'static str,
    /// Line colour.
    pub color: RGBColor,
}

/// One plot area of a chart.
#[derive(Debug, Clone)]
pub struct PanelSpec {
    /// Panel title.
    pub title: &'static str,
    /// Y axis description, with units.
    pub y_desc: &'static str,
    /// The lines.
    pub series: Vec<SeriesSpec>,
    /// Events of this kind whose `metric` is the suffix of one of the series are marked.
    pub events: Option<TrackerKind>,
}

/// One output image (`<file>.png` and `<file>.svg`).
#[derive(Debug, Clone)]
pub struct ChartSpec {
    /// File stem.
    pub file: &'static str,
    /// Image title.
    pub title: &'static str,
    /// Panels, laid out in a grid of `cols` columns.
    pub panels: Vec<PanelSpec>,
    /// Columns of the panel grid.
    pub cols: usize,
}

const BLUE_: RGBColor = RGBColor(31, 119, 180);
const ORANGE_: RGBColor = RGBColor(255, 127, 14);
const GREEN_: RGBColor = RGBColor(44, 160, 44);
const RED_: RGBColor = RGBColor(214, 39, 40);
const PURPLE_: RGBColor = RGBColor(148, 103, 189);
const BROWN_: RGBColor = RGBColor(140, 86, 75);
const GREY_: RGBColor = RGBColor(127, 127, 127);
const EVENT: RGBColor = RGBColor(220, 20, 60);

fn s(metric: &'static str, label: &'static str, color: RGBColor) -> SeriesSpec {
    SeriesSpec {
        metric,
        label,
        color,
    }
}

fn panel(title: &'static str, y_desc: &'static str, series: Vec<SeriesSpec>) -> PanelSpec {
    PanelSpec {
        title,
        y_desc,
        series,
        events: None,
    }
}

fn single(file: &'static str, title: &'static str, p: PanelSpec) -> ChartSpec {
    ChartSpec {
        file,
        title,
        panels: vec![p],
        cols: 1,
    }
}

/// The charts of a run report (model.md sections 6 and 7 metrics).
pub fn chart_specs() -> Vec<ChartSpec> {
    vec![
        single(
            "reward",
            "Mean reward",
            panel(
                "Mean reward per alive agent-tick (pressure bonuses excluded)",
                "reward per agent-tick",
                vec![s(names::MEAN_REWARD, "mean reward", BLUE_)],
            ),
        ),
        single(
            "population",
            "Population",
            panel(
                "Alive agents per env (mean over envs)",
                "agents per env",
                vec![s(names::POPULATION, "population", GREEN_)],
            ),
        ),
        single(
            "births_deaths",
            "Births and deaths",
            panel(
                "Births and deaths per iteration (all envs)",
                "count per iteration",
                vec![
                    s(names::WORLD_BIRTHS, "births", GREEN_),
                    s(names::WORLD_DEATHS, "deaths", RED_),
                ],
            ),
        ),
        single(
            "foods_eaten",
            "Foods eaten",
            panel(
                "Foods eaten per iteration (all envs)",
                "foods per iteration",
                vec![s(names::WORLD_FOODS_EATEN, "foods eaten", BROWN_)],
            ),
        ),
        ChartSpec {
            file: "emergence",
            title: "Field emergence (env 0)",
            cols: 1,
            panels: vec![
                PanelSpec {
                    events: Some(TrackerKind::Emergence),
                    ..panel(
                        "Field entropy (mean over channels)",
                        "entropy (nats)",
                        vec![s(names::EMERGENCE_ENTROPY, "entropy", PURPLE_)],
                    )
                },
                PanelSpec {
                    events: Some(TrackerKind::Emergence),
                    ..panel(
                        "Field structure (cell vs neighbour-mean correlation)",
                        "structure (0-1)",
                        vec![s(names::EMERGENCE_STRUCTURE, "structure", BLUE_)],
                    )
                },
            ],
        },
        single(
            "specialization",
            "Specialization (env 0)",
            PanelSpec {
                events: Some(TrackerKind::Specialization),
                ..panel(
                    "Pairwise cosine distance of evolved weights",
                    "cosine distance",
                    vec![
                        s(
                            names::SPECIALIZATION_WEIGHT_DIVERGENCE,
                            "mean divergence",
                            ORANGE_,
                        ),
                        s(
                            names::SPECIALIZATION_MAX_DIVERGENCE,
                            "max divergence",
                            GREY_,
                        ),
                    ],
                )
            },
        ),
        ChartSpec {
            file: "learning",
            title: "Learning rate and losses",
            cols: 2,
            panels: vec![
                panel(
                    "Learning rate",
                    "learning rate",
                    vec![s(names::CHARTS_LEARNING_RATE, "learning rate", BLUE_)],
                ),
                panel(
                    "Policy loss",
                    "loss",
                    vec![s(names::LOSSES_POLICY_LOSS, "policy loss", ORANGE_)],
                ),
                panel(
                    "Value loss",
                    "loss",
                    vec![s(names::LOSSES_VALUE_LOSS, "value loss", GREEN_)],
                ),
                panel(
                    "Policy entropy",
                    "entropy (nats)",
                    vec![s(names::LOSSES_ENTROPY, "entropy", PURPLE_)],
                ),
            ],
        },
    ]
}

/// The finite `(step, value)` points of `metric`.
pub fn series_points(metrics: &[Metrics], metric: &str) -> Vec<(f64, f64)> {
    metrics
        .iter()
        .filter_map(|m| m.get(metric).map(|v| (m.step as f64, v)))
        .filter(|(_, v)| v.is_finite())
        .collect()
}

/// Whether any series of the chart has data.
pub fn has_data(spec: &ChartSpec, metrics: &[Metrics]) -> bool {
    spec.panels
        .iter()
        .flat_map(|p| &p.series)
        .any(|s| !series_points(metrics, s.metric).is_empty())
}

/// `1.3M`, `250k`, `512`: compact step labels.
pub fn format_steps(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Formats axis values with as many decimals as the tick spacing of `lo..hi` needs
/// (scientific notation for very small or large magnitudes).
fn value_formatter(lo: f64, hi: f64) -> impl Fn(&f64) -> String {
    let mag = lo.abs().max(hi.abs());
    let tick = ((hi - lo) / 8.0).abs().max(f64::MIN_POSITIVE);
    let scientific = !(1e-3..1e5).contains(&mag);
    let decimals = (-tick.log10().floor()).clamp(0.0, 8.0) as usize;
    move |v: &f64| {
        if v.abs() < tick * 1e-6 {
            "0".to_string()
        } else if scientific {
            format!("{v:.1e}")
        } else {
            format!("{v:.decimals$}")
        }
    }
}

fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * lo.abs().max(1.0) {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - d, hi + d);
    }
    // Extra room at the top keeps the legend (upper right) off the data.
    let d = hi - lo;
    (lo - d * 0.06, hi + d * 0.22)
}

type DrawResult<T> = Result<T, String>;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// Draws `spec` onto `root` (already sized); `events` are all tracker events of the run.
pub fn draw_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    spec: &ChartSpec,
    metrics: &[Metrics],
    events: &[TrackerEvent],
) -> DrawResult<()> {
    root.fill(&WHITE).map_err(err)?;
    let body = root.titled(spec.title, ("sans-serif", 28)).map_err(err)?;
    let cols = spec.cols.max(1);
    let rows = spec.panels.len().div_ceil(cols);
    let areas = body.split_evenly((rows, cols));
    for (area, p) in areas.iter().zip(&spec.panels) {
        draw_panel(area, p, metrics, events)?;
    }
    root.present().map_err(err)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    p: &PanelSpec,
    metrics: &[Metrics],
    events: &[TrackerEvent],
) -> DrawResult<()> {
    let data: Vec<(&SeriesSpec, Vec<(f64, f64)>)> = p
        .series
        .iter()
        .map(|s| (s, series_points(metrics, s.metric)))
        .filter(|(_, pts)| !pts.is_empty())
        .collect();
    let marks: Vec<&TrackerEvent> = match p.events {
        Some(kind) => events
            .iter()
            .filter(|e| {
                e.kind == kind
                    && e.value.is_finite()
                    && p.series
                        .iter()
                        .any(|s| s.metric.rsplit('/').next() == Some(&*e.metric))
            })
            .collect(),
        None => Vec::new(),
    };
    let xs = data.iter().flat_map(|(_, pts)| pts.iter().map(|p| p.0));
    let ys = data.iter().flat_map(|(_, pts)| pts.iter().map(|p| p.1));
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    for x in xs.chain(marks.iter().map(|e| e.step as f64)) {
        x0 = x0.min(x);
        x1 = x1.max(x);
    }
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for y in ys.chain(marks.iter().map(|e| e.value)) {
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let (x0, x1) = if x0.is_finite() {
        (x0.min(x1), x1)
    } else {
        (0.0, 1.0)
    };
    let (x0, x1) = if x1 > x0 { (x0, x1) } else { padded(x0, x1) };
    let (y0, y1) = padded(y0, y1);

    let mut chart = ChartBuilder::on(area)
        .caption(p.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(78)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    let y_fmt = value_formatter(y0, y1);
    chart
        .configure_mesh()
        .x_desc("steps")
        .y_desc(p.y_desc)
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&|v| format_steps(*v))
        .y_label_formatter(&y_fmt)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(205, 205, 205))
        .draw()
        .map_err(err)?;

    if data.is_empty() {
        let centre = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
        chart
            .draw_series(std::iter::once(Text::new(
                "no data recorded",
                centre,
                ("sans-serif", 18).into_font().color(&GREY_),
            )))
            .map_err(err)?;
        return Ok(());
    }

    if !marks.is_empty() {
        // Thin bands (rectangles, not lines) so that every polyline is a series.
        let half = (x1 - x0) * 0.0015;
        chart
            .draw_series(marks.iter().map(|e| {
                let x = e.step as f64;
                Rectangle::new([(x - half, y0), (x + half, y1)], EVENT.mix(0.35).filled())
            }))
            .map_err(err)?;
    }
    for (spec, pts) in &data {
        let color = spec.color;
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(spec.label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 18, y + 4)], color.filled()));
        if pts.len() <= 40 {
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(err)?;
        }
    }
    if !marks.is_empty() {
        let label = match p.events {
            Some(TrackerKind::Specialization) => "specialization event",
            _ => "emergence event",
        };
        chart
            .draw_series(
                marks
                    .iter()
                    .map(|e| TriangleMarker::new((e.step as f64, e.value), 7, EVENT.filled())),
            )
            .map_err(err)?
            .label(label)
            .legend(|(x, y)| TriangleMarker::new((x + 9, y), 6, EVENT.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(err)
}
