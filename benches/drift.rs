#![allow(missing_docs)] // criterion_group! generates undocumented functions.

//! criterion benches of the drift statistics and the profile-based report. For ratios against
//! scipy, numpy and Evidently on the same data in the same run, see `drift_vs_python.py`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mlops::core::Dataset;
use mlops::drift::stats::{ks_2samp, psi_samples, wasserstein_distance, Alternative, KsMethod};
use mlops::drift::stream::{WindowConfig, WindowedDetector};
use mlops::drift::{
    CheckedDriftConfig, DriftConfig, DriftTest, ProfileConfig, ProfileSketch, ReferenceProfile,
};
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
        b.iter(|| {
            profile
                .compare(&current, &CheckedDriftConfig::default())
                .unwrap()
        })
    });
    let ks = DriftConfig {
        tests: vec![DriftTest::Ks],
        ..DriftConfig::default()
    }
    .check()
    .unwrap();
    group.bench_function("compare_ks", |b| {
        b.iter(|| profile.compare(&current, &ks).unwrap())
    });
    group.finish();
}

/// A sliding window of 1,000 values over 100,000 arriving values, tested against a profile of
/// 1,000,000 reference values every 1,000 (tumbling) or 100 values.
fn streaming(c: &mut Criterion) {
    let reference = Dataset::new(
        Array2::from_shape_vec(
            (1_000_000, 1),
            sample(1_000_000, 7919, 0.0)
                .iter()
                .map(|v| *v as f32)
                .collect(),
        )
        .unwrap(),
        vec!["x".into()],
    )
    .unwrap();
    let profile = ReferenceProfile::fit(&reference, &ProfileConfig::default()).unwrap();
    let stream = sample(100_000, 104_729, 0.01);
    let mut group = c.benchmark_group("window_1000_over_100k_values");
    group.sample_size(10);
    for step in [1000usize, 100] {
        group.bench_with_input(BenchmarkId::new("step", step), &step, |bench, &step| {
            let config = WindowConfig {
                window: 1000,
                step,
                ..WindowConfig::default()
            };
            let mut w = WindowedDetector::new(&profile.columns[0], config).unwrap();
            bench.iter(|| stream.iter().filter_map(|v| w.update(*v)).count())
        });
    }
    group.finish();
}

/// Sketching 8 partitions of 30 x 12,500 rows, merging them, and making the profile.
fn sketched_profile(c: &mut Criterion) {
    let (rows, cols) = (12_500, 30);
    let parts: Vec<Dataset> = (0..8)
        .map(|p| {
            let x = Array2::from_shape_fn((rows, cols), |(i, j)| {
                ((((p * rows + i) * (7919 + 2 * j) + 13) % 100_003) as f64 / 100_003.0) as f32
            });
            Dataset::new(x, (0..cols).map(|j| format!("f{j}")).collect()).unwrap()
        })
        .collect();
    let mut group = c.benchmark_group("sketched_profile_30x100k");
    group.sample_size(10);
    group.bench_function("sketch_merge_to_profile", |b| {
        b.iter(|| {
            let mut acc = ProfileSketch::from_dataset(&parts[0], 400).unwrap();
            for p in &parts[1..] {
                acc.merge(&ProfileSketch::from_dataset(p, 400).unwrap())
                    .unwrap();
            }
            acc.to_profile(&ProfileConfig::default(), 20_000).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, two_sample, report, streaming, sketched_profile);
criterion_main!(benches);
