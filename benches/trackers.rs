//! Tracker cost per check: weight divergence of 32 agents with the default network's
//! evolved weights (`all`, ~37k each) and the field measures of a 20x20x4 field; and the
//! trackers' JSON after 40,000 checks (a 12-hour run at one check per second), as every
//! iteration's ready checkpoint takes it, beside serialising the whole history.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use emergence_lab::config::AnalysisConfig;
use emergence_lab::trackers::{field_entropy, field_structure, weight_divergence, Trackers};

fn rows(n: usize, len: usize) -> Vec<Vec<f32>> {
    let mut s = 1u64;
    (0..n)
        .map(|_| {
            (0..len)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let r = rows(32, 37_000);
    let refs: Vec<&[f32]> = r.iter().map(|v| v.as_slice()).collect();
    c.bench_function("weight_divergence 32 x 37k", |b| {
        b.iter(|| weight_divergence(black_box(&refs)))
    });
    let field = rows(1, 20 * 20 * 4).pop().unwrap();
    c.bench_function("field entropy+structure 20x20x4", |b| {
        b.iter(|| {
            (
                field_entropy(black_box(&field), 20, 4),
                field_structure(black_box(&field), 20, 4),
            )
        })
    });
}

fn json(c: &mut Criterion) {
    let mut t = Trackers::new(&AnalysisConfig::default());
    let field = rows(1, 4 * 4).pop().unwrap();
    let r = rows(3, 8);
    let refs: Vec<&[f32]> = r.iter().map(|v| v.as_slice()).collect();
    for i in 0..40_000u64 {
        t.update_emergence(i * 4096, &field, 4, 1).unwrap();
        t.update_specialization(i * 4096, &refs).unwrap();
    }
    let mut g = c.benchmark_group("trackers json after 40k checks");
    g.sample_size(20);
    g.bench_function("to_json (kept text)", |b| {
        b.iter(|| black_box(&t).to_json())
    });
    g.bench_function("serde_json whole", |b| {
        b.iter(|| serde_json::to_string(black_box(&t)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench, json);
criterion_main!(benches);
