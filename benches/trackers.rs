//! Tracker cost per check: weight divergence of 32 agents with the default network's
//! evolved weights (`all`, ~37k each) and the field measures of a 20x20x4 field.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use emergence_lab::trackers::{field_entropy, field_structure, weight_divergence};

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

criterion_group!(benches, bench);
criterion_main!(benches);
