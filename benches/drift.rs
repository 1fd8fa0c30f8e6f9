#![allow(missing_docs)] // criterion_group! generates undocumented functions.

//! criterion benches of the drift statistics and the profile-based report. For ratios against
//! scipy, numpy and Evidently on the same data in the same run, see `drift_vs_python.py`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mlops::core::Dataset;
use mlops::drift::stats::{ks_2samp, psi_samples, wasserstein_distance, Alternative, KsMethod};
use mlops::drift::{DriftConfig, DriftTest, ProfileConfig, ReferenceProfile};
use ndarray::Array2;

/// Deterministic low-discrepancy samples (no RNG dependency), shifted by `shift`.
fn sample(n: usize, mult: usize, shift: f64) -> Vec<f64> {
    (0..n)
        .map(|i| ((i * mult + 13) % 100_003) as f64 / 100_003.0 + shift)
        .collect()
}

fn two_sample(c: &mut Criterion) {
    let mut group = c.benchmark_group("two_sample");
    group.sample_size(20);
    for n in [10_000usize, 100_000] {
        let (a, b) = (sample(n, 7919, 0.0), sample(n, 104_729, 0.01));
        group.bench_with_input(BenchmarkId::new("ks_2samp", n), &n, |bench, _| {
            bench.iter(|| ks_2samp(&a, &b, Alternative::TwoSided, KsMethod::Auto).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("wasserstein", n), &n, |bench, _| {
            bench.iter(|| wasserstein_distance(&a, &b).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("psi_10_bins", n), &n, |bench, _| {
            bench.iter(|| psi_samples(&a, &b, 10).unwrap())
        });
    }
    group.finish();
}

fn report(c: &mut Criterion) {
    let (rows, cols) = (100_000, 30);
    let data = |shift: f64, mult: usize| {
        let x = Array2::from_shape_fn((rows, cols), |(i, j)| {
            (((i * (mult + 2 * j) + 13) % 100_003) as f64 / 100_003.0 + shift * j as f64) as f32
        });
        Dataset::new(x, (0..cols).map(|j| format!("f{j}")).collect()).unwrap()
    };
    let (reference, current) = (data(0.0, 7919), data(0.001, 104_729));
    let profile = ReferenceProfile::fit(&reference, &ProfileConfig::default()).unwrap();
    let mut group = c.benchmark_group("report_30x100k");
    group.sample_size(10);
    group.bench_function("fit_profile", |b| {
        b.iter(|| ReferenceProfile::fit(&reference, &ProfileConfig::default()).unwrap())
    });
    group.bench_function("compare_default", |b| {
        b.iter(|| profile.compare(&current, &DriftConfig::default()).unwrap())
    });
    let ks = DriftConfig {
        tests: vec![DriftTest::Ks],
        ..DriftConfig::default()
    };
    group.bench_function("compare_ks", |b| {
        b.iter(|| profile.compare(&current, &ks).unwrap())
    });
    group.finish();
}

criterion_group!(benches, two_sample, report);
criterion_main!(benches);
