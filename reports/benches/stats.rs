//! The statistics run once per metric per target per run set, and `compare` will run them
//! over merged series; this keeps an eye on their cost at a large sample count.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use isolab_reports::stats::summarize;

fn bench_summarize(c: &mut Criterion) {
    // A deterministic, slightly skewed series with a few far values, like start-up times.
    let samples: Vec<(u32, f64)> = (0..10_000u32)
        .map(|i| {
            let jitter = f64::from(i.wrapping_mul(2_654_435_761) % 1000);
            let spike = if i % 997 == 0 { 50_000.0 } else { 0.0 };
            (i, 1_000_000.0 + jitter * jitter / 10.0 + spike)
        })
        .collect();
    c.bench_function("summarize 10k samples", |b| {
        b.iter(|| summarize(black_box(&samples)))
    });
}

criterion_group!(benches, bench_summarize);
criterion_main!(benches);
