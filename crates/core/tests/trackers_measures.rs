//! Tracker measurements on fields and weight rows with known answers, and the interval rule.

use emergence_lab_core::config::AnalysisConfig;
use emergence_lab_core::trackers::{
    field_entropy, field_structure, weight_divergence, TrackerError, Trackers,
};

const G: usize = 20;
const C: usize = 4;

/// Field `[G*G*C]`, channel innermost, from a function of (x, y, c).
fn field(mut f: impl FnMut(usize, usize, usize) -> f32) -> Vec<f32> {
    let mut v = vec![0.0; G * G * C];
    for y in 0..G {
        for x in 0..G {
            for c in 0..C {
                v[(y * G + x) * C + c] = f(x, y, c);
            }
        }
    }
    v
}

#[test]
fn uniform_field_has_maximal_entropy_and_no_structure() {
    let f = field(|_, _, c| 0.5 + c as f32);
    let h = field_entropy(&f, G, C);
    assert!((h - ((G * G) as f64).ln()).abs() < 1e-9, "entropy {h}");
    assert_eq!(field_structure(&f, G, C), 0.0);
}

#[test]
fn entropy_uses_absolute_values_and_zero_channels_count_zero() {
    // Channel 0 uniform negative, channel 1 a single spike, channels 2 and 3 all zero.
    let f = field(|x, y, c| match c {
        0 => -2.0,
        1 if x == 3 && y == 7 => 5.0,
        _ => 0.0,
    });
    let h = field_entropy(&f, G, C);
    let want = (((G * G) as f64).ln() + 0.0 + 0.0 + 0.0) / 4.0;
    assert!((h - want).abs() < 1e-9, "entropy {h}, want {want}");
    assert_eq!(field_entropy(&vec![0.0; G * G * C], G, C), 0.0);
    // Two equal cells: ln 2 in that channel.
    let mut two = vec![0.0f32; G * G * C];
    two[0] = 1.0; // cell (0,0), channel 0
    two[C] = 1.0; // cell (1,0), channel 0
    let h = field_entropy(&two, G, C);
    assert!((h - 2f64.ln() / 4.0).abs() < 1e-12, "entropy {h}");
}

#[test]
fn checkerboard_has_no_structure_and_smooth_waves_full_structure() {
    // Each cell's 4 neighbours have the opposite colour: correlation -1, clamped to 0.
    let board = field(|x, y, _| if (x + y) % 2 == 0 { 1.0 } else { 0.0 });
    assert_eq!(field_structure(&board, G, C), 0.0);
    // A sinusoid along x (period G, so it wraps): the neighbour mean is proportional to the
    // cell value, correlation 1.
    let wave =
        field(|x, _, c| (2.0 * std::f32::consts::PI * x as f32 / G as f32 + c as f32).sin() + 3.0);
    let s = field_structure(&wave, G, C);
    assert!((s - 1.0).abs() < 1e-6, "structure {s}");
    // Independent noise: correlation near 0.
    let mut state = 12345u64;
    let noise = field(|_, _, _| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    });
    let s = field_structure(&noise, G, C);
    assert!(s < 0.15, "noise structure {s}");
    // A blob is smooth but not a pure wave: strongly but not perfectly structured.
    let blob = field(|x, y, _| {
        let (dx, dy) = (x as f32 - 10.0, y as f32 - 10.0);
        (-(dx * dx + dy * dy) / 18.0).exp()
    });
    let s = field_structure(&blob, G, C);
    assert!(s > 0.8 && s < 1.0, "blob structure {s}");
}

#[test]
fn wrap_around_makes_structure_shift_invariant() {
    // With wrap-around neighbours a cyclic shift of the field only permutes the
    // (cell, neighbour-mean) pairs, so the structure is unchanged even when the shift splits
    // a blob across the borders (a padded or clamped border would not be).
    let blob = |cx: usize, cy: usize| {
        field(move |x, y, c| {
            let dx = ((x + G - cx) % G) as f32;
            let dy = ((y + G - cy) % G) as f32;
            let (dx, dy) = (dx.min(G as f32 - dx), dy.min(G as f32 - dy));
            (-(dx * dx + dy * dy) / (4.0 + c as f32)).exp()
        })
    };
    let centre = field_structure(&blob(10, 10), G, C);
    let corner = field_structure(&blob(0, 0), G, C);
    let edge = field_structure(&blob(19, 4), G, C);
    assert!(centre > 0.5, "structure {centre}");
    assert!(
        (centre - corner).abs() < 1e-9 && (centre - edge).abs() < 1e-9,
        "{centre} {corner} {edge}"
    );
}

#[test]
fn weight_divergence_of_known_rows() {
    let e1 = [1.0f32, 0.0, 0.0];
    let e2 = [0.0f32, 2.0, 0.0];
    let m1 = [-3.0f32, 0.0, 0.0];
    assert_eq!(weight_divergence(&[&e1, &e1]), (0.0, 0.0));
    let (mean, max) = weight_divergence(&[&e1, &e2, &m1]);
    assert!(
        (mean - 4.0 / 3.0).abs() < 1e-12 && (max - 2.0).abs() < 1e-12,
        "{mean} {max}"
    );
    assert_eq!(weight_divergence(&[&e1]), (0.0, 0.0));
    assert_eq!(weight_divergence(&[]), (0.0, 0.0));
    // Zero rows: norms floored at 1e-8, cosine 0, distance 1; no NaN.
    let z = [0.0f32; 3];
    assert_eq!(weight_divergence(&[&z, &e1]), (1.0, 1.0));
}

#[test]
fn bad_shapes_are_clear_errors() {
    let mut t = Trackers::new(&AnalysisConfig::default());
    let err = t.update_emergence(10, &[0.0; 7], G, C).unwrap_err();
    assert!(matches!(
        err,
        TrackerError::FieldShape {
            got: 7,
            expected: 1600,
            ..
        }
    ));
    assert!(err.to_string().contains("1600"), "{err}");
    let a = [1.0f32; 4];
    let b = [1.0f32; 5];
    let err = t.update_specialization(10, &[&a, &a, &b]).unwrap_err();
    assert!(
        matches!(
            err,
            TrackerError::RowLength {
                index: 2,
                got: 5,
                expected: 4
            }
        ),
        "{err}"
    );
    assert!(t.emergence.history().is_empty() && t.specialization.history().is_empty());
    assert!(Trackers::from_json("{\"emergence\": 3}").is_err());
}
