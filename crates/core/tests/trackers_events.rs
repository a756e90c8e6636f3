//! Tracker events (z-score rule over the previous window) and exact JSON save/restore.

use emergence_lab_core::config::AnalysisConfig;
use emergence_lab_core::trackers::{zscore_event, TrackerKind, Trackers};

const G: usize = 10;
const C: usize = 2;

/// A field whose channel 0 has `k` equal non-zero cells (entropy ln(k) / 2) and channel 1
/// is zero.
fn spread_field(k: usize) -> Vec<f32> {
    let mut f = vec![0.0f32; G * G * C];
    for cell in 0..k {
        f[cell * C] = 1.0;
    }
    f
}

#[test]
fn zscore_rule() {
    let prev: Vec<f64> = (0..20)
        .map(|i| if i % 2 == 0 { 1.0 } else { 3.0 })
        .collect();
    // mean 2, population std 1
    assert!(zscore_event(&prev, 4.9, 20, 3.0).is_none());
    let (mean, std, z) = zscore_event(&prev, 5.5, 20, 3.0).expect("z = 3.5");
    assert_eq!((mean, std), (2.0, 1.0));
    assert!((z - 3.5).abs() < 1e-12);
    let (_, _, z) = zscore_event(&prev, -1.5, 20, 3.0).expect("negative jumps count");
    assert!(z < -3.0);
    // Needs `window` values first; only the last `window` count.
    assert!(zscore_event(&prev[..19], 100.0, 20, 3.0).is_none());
    let mut longer = vec![1000.0; 5];
    longer.extend(&prev);
    assert_eq!(zscore_event(&longer, 5.5, 20, 3.0).map(|e| e.0), Some(2.0));
    // Constant history: std floored at 1e-8, so any real change is an event.
    let flat = vec![0.25; 20];
    assert!(zscore_event(&flat, 0.25, 20, 3.0).is_none());
    assert!(zscore_event(&flat, 0.2500001, 20, 3.0).is_some());
}

#[test]
fn emergence_events_after_window_only() {
    let mut t = Trackers::new(&AnalysisConfig::default());
    // A jump before 20 values exist is not an event.
    for i in 0..10u64 {
        let ev = t
            .update_emergence(i * 100, &spread_field(50 + (i as usize % 2)), G, C)
            .unwrap();
        assert!(ev.is_empty());
    }
    assert!(t
        .update_emergence(1000, &spread_field(1), G, C)
        .unwrap()
        .is_empty());
    for i in 11..21u64 {
        let ev = t
            .update_emergence(i * 100, &spread_field(50 + (i as usize % 2)), G, C)
            .unwrap();
        assert!(ev.is_empty(), "step {}: {ev:?}", i * 100);
    }
    // 21 values now; the collapse to one cell is far outside the last 20.
    let ev = t.update_emergence(2100, &spread_field(1), G, C).unwrap();
    // The block of cells also loses its structure, so both may fire; entropy must.
    let e = ev
        .iter()
        .find(|e| e.metric == "entropy")
        .expect("entropy event");
    assert_eq!(
        (e.kind, e.step, e.metric.as_str()),
        (TrackerKind::Emergence, 2100, "entropy")
    );
    assert_eq!(e.value, 0.0);
    assert!(e.z < -3.0);
    assert_eq!(t.emergence.events(), ev);
    assert_eq!(t.emergence.history().len(), 22);
    assert_eq!(t.events(), ev);
}

#[test]
fn specialization_events_on_divergence() {
    let mut t = Trackers::new(&AnalysisConfig::default());
    let a = [1.0f32, 0.0, 0.0, 0.0, 0.0];
    let b = [1.0f32, 0.1, 0.0, 0.0, 0.0];
    let c = [0.0f32, 1.0, 0.0, 0.0, 0.0];
    for i in 0..20u64 {
        let rows: Vec<&[f32]> = if i % 2 == 0 {
            vec![&a, &b]
        } else {
            vec![&a, &a, &b]
        };
        assert!(t.update_specialization(i, &rows).unwrap().is_empty());
    }
    let ev = t.update_specialization(20, &[&a, &c]).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, TrackerKind::Specialization);
    assert_eq!(ev[0].metric, "weight_divergence");
    assert_eq!(ev[0].value, 1.0);
    let last = t.specialization.last().unwrap();
    assert_eq!((last.num_alive, last.max_divergence), (2, 1.0));
}

/// Deterministic pseudo-random fields and rows.
struct Gen(u64);
impl Gen {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
    fn field(&mut self, sharpness: f32) -> Vec<f32> {
        (0..G * G * C)
            .map(|_| self.next().powf(sharpness))
            .collect()
    }
    fn rows(&mut self, n: usize) -> Vec<Vec<f32>> {
        (0..n)
            .map(|_| (0..37).map(|_| self.next() - 0.5).collect())
            .collect()
    }
}

fn step(t: &mut Trackers, g: &mut Gen, i: u64) {
    // Mostly calm, with occasional sharp fields and collapsed populations (events).
    let sharp = if i % 23 == 22 { 40.0 } else { 1.0 };
    t.update_emergence(i * 4096, &g.field(sharp), G, C).unwrap();
    let rows = g.rows(if i % 29 == 28 { 2 } else { 6 });
    let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
    t.update_specialization(i * 4096, &refs).unwrap();
}

#[test]
fn restored_trackers_continue_identically() {
    let cfg = AnalysisConfig {
        event_window: 5,
        event_threshold: 2.0,
        ..AnalysisConfig::default()
    };
    let mut original = Trackers::new(&cfg);
    let mut g = Gen(7);
    for i in 0..60 {
        step(&mut original, &mut g, i);
    }
    // A NaN measurement (a broken field) must not make the state unsaveable.
    original
        .update_emergence(60 * 4096, &vec![f32::NAN; G * G * C], G, C)
        .unwrap();
    assert!(!original.events().is_empty(), "the test needs some events");
    let json = original.to_json();
    let mut restored = Trackers::from_json(&json).expect("restores");
    assert_eq!(restored.to_json(), json, "JSON round trip is exact");
    assert!(restored.emergence.last().unwrap().entropy.is_nan());
    // Bit-exact values after the round trip.
    for (a, b) in original
        .emergence
        .history()
        .iter()
        .zip(restored.emergence.history())
    {
        assert_eq!(a.structure.to_bits(), b.structure.to_bits());
    }
    // Both continue with the same inputs and stay identical, events included.
    let mut g2 = Gen(g.0);
    for i in 61..140 {
        step(&mut original, &mut g, i);
        step(&mut restored, &mut g2, i);
    }
    assert_eq!(restored.to_json(), original.to_json());
    assert!(original.events().len() > 3);
    // The JSON is plain data a person or Python can read.
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["emergence"]["history"][0]["entropy"].is_f64());
    assert_eq!(v["emergence"]["history"][60]["entropy"], "NaN");
    assert_eq!(v["specialization"]["window"], 5);
}

#[test]
fn truncate_after_drops_later_history() {
    let mut t = Trackers::new(&AnalysisConfig {
        event_window: 3,
        ..AnalysisConfig::default()
    });
    let mut g = Gen(1);
    for i in 0..30 {
        step(&mut t, &mut g, i);
    }
    t.truncate_after(10 * 4096);
    assert_eq!(t.emergence.history().len(), 11);
    assert!(t.events().iter().all(|e| e.step <= 10 * 4096));
}

#[test]
fn kept_json_equals_serialising_the_whole_trackers_at_every_stage() {
    // `to_json` composes each tracker's kept history text; it must stay byte for byte the
    // derived serialisation through updates, events, a restore and a truncation.
    let whole = |t: &Trackers| serde_json::to_string(t).unwrap();
    let mut t = Trackers::new(&AnalysisConfig {
        event_window: 4,
        event_threshold: f64::INFINITY,
        ..AnalysisConfig::default()
    });
    assert_eq!(t.to_json(), whole(&t), "empty");
    t.emergence.threshold = 1.5;
    let mut g = Gen(3);
    for i in 0..40 {
        step(&mut t, &mut g, i);
        assert_eq!(t.to_json(), whole(&t), "after step {i}");
    }
    assert!(!t.events().is_empty(), "the test needs events in the text");
    let mut restored = Trackers::from_json(&t.to_json()).unwrap();
    assert_eq!(restored, t);
    step(&mut restored, &mut g, 40);
    assert_eq!(
        restored.to_json(),
        whole(&restored),
        "restored, then updated"
    );
    restored.truncate_after(20 * 4096);
    assert_eq!(restored.to_json(), whole(&restored), "truncated");
    assert_eq!(restored.emergence.history().len(), 21);
    step(&mut restored, &mut g, 41);
    assert_eq!(
        restored.to_json(),
        whole(&restored),
        "truncated, then updated"
    );
}
