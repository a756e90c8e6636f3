//! Reports: every chart is written as a valid PNG and SVG, with one polyline per series,
//! events marked, from metrics files and checkpoints.

use std::path::{Path, PathBuf};

use emergence_lab::config::AnalysisConfig;
use emergence_lab::metrics::Metrics;
use emergence_lab::report::{
    chart_specs, display_block, load_run, write_charts, write_display_blocks, write_run_charts,
    ReportError,
};
use emergence_lab::sinks::MetricsJsonl;
use emergence_lab::trackers::{TrackerEvent, TrackerKind, Trackers};

const PER_ITER: u64 = 131_072;

/// A plausible synthetic run of `n` iterations (all metrics the charts use).
fn run(n: u64) -> Vec<Metrics> {
    (1..=n)
        .map(|i| {
            let t = i as f64 / n as f64;
            let wobble = ((i * 7919) % 13) as f64 / 13.0 - 0.5;
            let mut m = Metrics::new(i * PER_ITER, i);
            m.set("losses/policy_loss", -0.02 + 0.01 * wobble);
            m.set(
                "losses/value_loss",
                2.0 * (-3.0 * t).exp() + 0.1 * wobble.abs(),
            );
            m.set("losses/entropy", 1.6 - 0.5 * t);
            m.set("charts/mean_reward", 0.01 + 0.04 * t + 0.005 * wobble);
            m.set(
                "charts/learning_rate",
                3e-4 * (1.0 - (i - 1) as f64 / n as f64),
            );
            m.set("world/population", 8.0 + 10.0 * t + wobble);
            m.set("world/births", (40.0 + 30.0 * t + 10.0 * wobble).round());
            m.set("world/deaths", (35.0 + 25.0 * t - 10.0 * wobble).round());
            m.set(
                "world/foods_eaten",
                (300.0 + 400.0 * t + 50.0 * wobble).round(),
            );
            m.set("emergence/entropy", 5.9 - 1.0 * t + 0.05 * wobble);
            m.set("emergence/structure", 0.2 + 0.6 * t + 0.02 * wobble);
            m.set("specialization/weight_divergence", 0.001 + 0.02 * t);
            m.set("specialization/max_divergence", 0.003 + 0.05 * t);
            m
        })
        .collect()
}

fn events() -> Vec<TrackerEvent> {
    let ev = |kind, iter: u64, metric: &str, value| TrackerEvent {
        kind,
        step: iter * PER_ITER,
        metric: metric.into(),
        value,
        mean: 0.0,
        std: 1.0,
        z: 3.5,
    };
    vec![
        ev(TrackerKind::Emergence, 60, "entropy", 5.2),
        ev(TrackerKind::Emergence, 90, "structure", 0.75),
        ev(TrackerKind::Specialization, 75, "weight_divergence", 0.02),
    ]
}

/// The polylines drawn as data series (axes and ticks are 1 px polylines, series 2 px).
fn svg_polylines(svg: &str) -> Vec<&str> {
    svg.match_indices("<polyline")
        .map(|(i, _)| &svg[i..i + svg[i..].find("/>").unwrap()])
        .filter(|l| l.contains("stroke-width=\"2\""))
        .collect()
}

fn check_png(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("decodable PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    // Not blank: the picture has many distinct colours (lines, text, legend).
    let px: std::collections::HashSet<&[u8]> = buf.chunks(3).collect();
    assert!(px.len() > 20, "{} looks blank", path.display());
    (info.width, info.height)
}

#[test]
fn every_chart_is_written_with_one_polyline_per_series() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = run(120);
    let files = write_charts(&metrics, &events(), dir.path()).unwrap();
    let specs = chart_specs();
    assert_eq!(files.len(), 2 * specs.len());
    for spec in &specs {
        let png = dir.path().join(format!("{}.png", spec.file));
        let svg = dir.path().join(format!("{}.svg", spec.file));
        assert!(files.contains(&png) && files.contains(&svg));
        let (w, h) = check_png(&png);
        assert!(w >= 800 && h >= 400);
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.trim_start().starts_with("<svg") && text.trim_end().ends_with("</svg>"));
        assert!(text.contains(spec.title), "{} lacks its title", spec.file);
        assert!(
            text.contains("steps"),
            "{} lacks the x axis label",
            spec.file
        );
        let lines = svg_polylines(&text);
        let series: Vec<_> = spec.panels.iter().flat_map(|p| &p.series).collect();
        assert_eq!(
            lines.len(),
            series.len(),
            "{}: one polyline per series",
            spec.file
        );
        for s in &series {
            let c = s.color;
            let rgb = format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2);
            assert!(
                lines.iter().any(|l| l.to_uppercase().contains(&rgb)),
                "{}: no line for {}",
                spec.file,
                s.metric
            );
            assert!(
                text.contains(s.label),
                "{}: legend lacks {}",
                spec.file,
                s.label
            );
            // Every iteration is a vertex of its line.
            let line = lines
                .iter()
                .find(|l| l.to_uppercase().contains(&rgb))
                .unwrap();
            let pts = line
                .split("points=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            assert_eq!(pts.split_whitespace().count(), metrics.len());
        }
    }
    let emergence = std::fs::read_to_string(dir.path().join("emergence.svg")).unwrap();
    assert!(emergence.contains("emergence event"));
    let spec = std::fs::read_to_string(dir.path().join("specialization.svg")).unwrap();
    assert!(spec.contains("specialization event"));
    let reward = std::fs::read_to_string(dir.path().join("reward.svg")).unwrap();
    assert!(
        !reward.contains("event"),
        "no events on charts without trackers"
    );
}

#[test]
fn charts_without_data_are_skipped_and_empty_runs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let metrics: Vec<Metrics> = run(5)
        .into_iter()
        .map(|mut m| {
            m.values
                .retain(|k, _| k == "charts/mean_reward" || k == "world/births");
            m
        })
        .collect();
    let files = write_charts(&metrics, &[], dir.path()).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "reward.png",
            "reward.svg",
            "births_deaths.png",
            "births_deaths.svg"
        ]
    );
    // births_deaths has births only: one polyline.
    let text = std::fs::read_to_string(dir.path().join("births_deaths.svg")).unwrap();
    assert_eq!(svg_polylines(&text).len(), 1);
    assert!(matches!(
        write_charts(&[], &[], dir.path()),
        Err(ReportError::Empty(_))
    ));
    // A single iteration still gives a readable chart (no degenerate axis ranges).
    write_charts(&run(1), &[], dir.path().join("one")).unwrap();
    check_png(&dir.path().join("one/reward.png"));
}

/// A minimal safetensors file whose header carries the checkpoint metadata (no tensors).
fn fake_checkpoint(path: &Path, metrics: &[Metrics], trackers: &Trackers) {
    let meta = serde_json::json!({
        "__metadata__": {
            "format": "emergence-lab-checkpoint",
            "metrics": serde_json::to_string(metrics).unwrap(),
            "trackers": trackers.to_json(),
        }
    });
    let header = serde_json::to_vec(&meta).unwrap();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn report_from_jsonl_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("metrics.jsonl");
    let all = run(30);
    let mut sink = MetricsJsonl::open(&jsonl, None).unwrap();
    // The file has iterations 1..=30 without tracker values.
    for m in &all {
        let mut m = m.clone();
        m.values
            .retain(|k, _| !k.starts_with("emergence/") && !k.starts_with("specialization/"));
        sink.append(&m).unwrap();
    }
    // The checkpoint (at iteration 25) has the history and trackers with a real event.
    let mut trackers = Trackers::new(&AnalysisConfig {
        event_window: 5,
        ..Default::default()
    });
    let g = 6;
    for i in 1..=25u64 {
        let k = if i == 20 { 1 } else { 30 + (i as usize % 3) };
        let mut field = vec![0.0f32; g * g];
        field[..k].iter_mut().for_each(|v| *v = 1.0);
        trackers
            .update_emergence(i * PER_ITER, &field, g, 1)
            .unwrap();
    }
    assert!(!trackers.events().is_empty());
    let ckpt = dir.path().join("step_25.safetensors");
    fake_checkpoint(&ckpt, &all[..25], &trackers);

    let data = load_run(Some(&jsonl), Some(&ckpt)).unwrap();
    assert_eq!(data.metrics.len(), 30);
    assert_eq!(data.events, trackers.events());
    let with_entropy = data
        .metrics
        .iter()
        .filter(|m| m.get("emergence/entropy").is_some());
    assert_eq!(with_entropy.count(), 25);
    let files = write_charts(&data.metrics, &data.events, dir.path().join("out")).unwrap();
    assert!(files.iter().any(|f| f.ends_with("emergence.png")));
    let svg = std::fs::read_to_string(dir.path().join("out/emergence.svg")).unwrap();
    assert!(svg.contains("emergence event"));

    // From the file alone.
    let files = write_run_charts(&jsonl, dir.path().join("file_only")).unwrap();
    assert!(!files.iter().any(|f| f.ends_with("emergence.png")));
    // Bad inputs are clear errors.
    let err = load_run(None, None).unwrap_err();
    assert!(err.to_string().contains("--metrics"));
    std::fs::write(dir.path().join("junk.safetensors"), b"abc").unwrap();
    let err = load_run(None, Some(&dir.path().join("junk.safetensors"))).unwrap_err();
    assert!(err.to_string().contains("junk.safetensors"), "{err}");
}

#[test]
fn evcxr_display_blocks() {
    let block = display_block(b"\x89PNG");
    assert_eq!(
        block,
        "EVCXR_BEGIN_CONTENT image/png\niVBORw==\nEVCXR_END_CONTENT\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let files = write_charts(&run(3), &[], dir.path()).unwrap();
    let mut out = Vec::new();
    write_display_blocks(&files, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let pngs = files
        .iter()
        .filter(|f| f.extension().unwrap() == "png")
        .count();
    assert_eq!(
        text.matches("EVCXR_BEGIN_CONTENT image/png\n").count(),
        pngs
    );
    assert_eq!(text.matches("EVCXR_END_CONTENT\n").count(), pngs);
    // Each block decodes back to the PNG file's bytes.
    use base64::Engine;
    let first = text.lines().nth(1).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(first)
        .unwrap();
    assert_eq!(bytes, std::fs::read(&files[0]).unwrap());
}

#[test]
fn report_binary_writes_charts() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("m.jsonl");
    let mut sink = MetricsJsonl::open(&jsonl, None).unwrap();
    for m in run(10) {
        sink.append(&m).unwrap();
    }
    let out: PathBuf = dir.path().join("report");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_report"))
        .args([
            "--metrics",
            jsonl.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(out.join("learning.png").exists() && out.join("learning.svg").exists());
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_report"))
        .args(["--metrics", "/nonexistent/m.jsonl"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent/m.jsonl"));
}
