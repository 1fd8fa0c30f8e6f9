#![allow(missing_docs)] // criterion_group! generates undocumented functions.

//! criterion benches of the fairness measures on 1M rows in 5 groups. For ratios against
//! fairlearn on the same data in the same run, see `fairness_vs_fairlearn.py`.

use criterion::{criterion_group, criterion_main, Criterion};
use mlops::core::fairness::{
    assess, measure, Disparity, DisparitySpec, FairnessConfig, FairnessData, MetricFrame,
    SensitiveGroups,
};
use mlops::core::metrics::BootstrapConfig;

const ROWS: usize = 1_000_000;

/// Deterministic rows: 5 groups, labels at 30%, decisions depending on label and group.
fn data(weighted: bool) -> FairnessData {
    let names = ["g0", "g1", "g2", "g3", "g4"];
    let g: Vec<&str> = (0..ROWS).map(|i| names[(i * 7919) % 5]).collect();
    let mix = |i: usize, salt: usize| ((i ^ salt).wrapping_mul(2_654_435_761) >> 11) % 100;
    let y: Vec<f64> = (0..ROWS).map(|i| f64::from(mix(i, 1) < 30)).collect();
    let p: Vec<f64> = (0..ROWS)
        .map(|i| f64::from(mix(i, 2) < 25 + 40 * (y[i] as usize) + (i * 7919) % 5))
        .collect();
    let w: Vec<f64> = (0..ROWS).map(|i| 0.5 + (i % 7) as f64 / 4.0).collect();
    let groups = SensitiveGroups::new(&[("group", &g[..])]).unwrap();
    FairnessData::from_predictions(&y, &p, weighted.then_some(&w[..]), groups).unwrap()
}

fn fairness(c: &mut Criterion) {
    let weighted = data(true);
    let unweighted = data(false);
    let mut group = c.benchmark_group("fairness_1m_rows_5_groups");
    group.sample_size(10);
    group.bench_function("metric_frame_weighted", |b| {
        b.iter(|| MetricFrame::new(&weighted, false))
    });
    let eo = DisparitySpec::new(Disparity::EqualizedOddsDifference);
    group.bench_function("equalized_odds_difference_weighted", |b| {
        b.iter(|| measure(&weighted, &eo, false).unwrap())
    });
    let dp = DisparitySpec::new(Disparity::DemographicParityDifference);
    let config = |n_resamples| FairnessConfig {
        bootstrap: Some(BootstrapConfig {
            n_resamples,
            ..BootstrapConfig::default()
        }),
        ..FairnessConfig::default()
    };
    group.bench_function("bootstrap_1000_unweighted", |b| {
        b.iter(|| assess(&unweighted, &dp, &config(1000)).unwrap())
    });
    group.bench_function("bootstrap_20_weighted", |b| {
        b.iter(|| assess(&weighted, &dp, &config(20)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, fairness);
criterion_main!(benches);
