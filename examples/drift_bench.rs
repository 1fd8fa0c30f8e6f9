//! Times the drift work of `benches/drift_vs_python.py` on the same data, for ratios against
//! scipy, numpy and Evidently measured in the same run. Reads a raw little-endian f64 file of
//! `2 * rows * cols` values (reference columns, then current columns) and prints one JSON
//! object of median seconds.
//!
//! ```text
//! cargo run --release --example drift_bench -- --data /tmp/drift.f64 --rows 1000000 --cols 30
//! ```

use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use mlops::core::Dataset;
use mlops::drift::stats::{ks_2samp, psi_samples, wasserstein_distance, Alternative, KsMethod};
use mlops::drift::stream::{WindowConfig, WindowedDetector};
use mlops::drift::{DriftConfig, DriftTest, ProfileConfig, ReferenceProfile};
use ndarray::Array2;

/// Time drift computations on a raw f64 file.
#[derive(Parser)]
struct Args {
    /// Raw little-endian f64 values: reference columns then current columns.
    #[arg(long)]
    data: String,
    /// Rows per dataset.
    #[arg(long)]
    rows: usize,
    /// Columns.
    #[arg(long)]
    cols: usize,
    /// Repetitions (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

fn median_secs(repeat: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bytes = std::fs::read(&args.data).with_context(|| format!("reading {}", args.data))?;
    let values: Vec<f64> = bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    anyhow::ensure!(
        values.len() == 2 * args.rows * args.cols,
        "{} values, expected 2 * rows * cols",
        values.len()
    );
    let (n, k) = (args.rows, args.cols);
    let col = |side: usize, j: usize| &values[(side * k + j) * n..(side * k + j + 1) * n];
    let dataset = |side: usize| -> anyhow::Result<Dataset> {
        let x = Array2::from_shape_fn((n, k), |(i, j)| col(side, j)[i] as f32);
        Ok(Dataset::new(x, (0..k).map(|j| format!("f{j}")).collect())?)
    };
    let (reference, current) = (dataset(0)?, dataset(1)?);
    let mut out = serde_json::Map::new();
    let mut record = |name: &str, secs: f64| {
        out.insert(name.to_string(), secs.into());
    };

    record(
        "ks_all_columns",
        median_secs(args.repeat, || {
            for j in 0..k {
                ks_2samp(col(0, j), col(1, j), Alternative::TwoSided, KsMethod::Auto)?;
            }
            Ok(())
        })?,
    );
    let profile = ReferenceProfile::fit(&reference, &ProfileConfig::default())?;
    let ks_only = DriftConfig {
        tests: vec![DriftTest::Ks],
        ..DriftConfig::default()
    };
    record(
        "ks_with_profile",
        median_secs(args.repeat, || {
            profile.compare(&current, &ks_only)?;
            Ok(())
        })?,
    );
    for (name, test) in [
        ("psi_with_profile", DriftTest::Psi),
        ("wasserstein_with_profile", DriftTest::Wasserstein),
    ] {
        // Only the test itself: no KS effect size, so binned tests skip sorting.
        let only = DriftConfig {
            tests: vec![test],
            mean_effect_threshold: None,
            ..DriftConfig::default()
        };
        record(
            name,
            median_secs(args.repeat, || {
                profile.compare(&current, &only)?;
                Ok(())
            })?,
        );
    }
    record(
        "psi_all_columns",
        median_secs(args.repeat, || {
            for j in 0..k {
                psi_samples(col(0, j), col(1, j), 10)?;
            }
            Ok(())
        })?,
    );
    record(
        "wasserstein_all_columns",
        median_secs(args.repeat, || {
            for j in 0..k {
                wasserstein_distance(col(0, j), col(1, j))?;
            }
            Ok(())
        })?,
    );
    record(
        "default_report",
        median_secs(args.repeat, || {
            let p = ReferenceProfile::fit(&reference, &ProfileConfig::default())?;
            p.compare(&current, &DriftConfig::default())?;
            Ok(())
        })?,
    );
    // Streaming: one column's values through a sliding window (1,000 values), tested against
    // the profile every 1,000 (tumbling) or every 100 values; rows per second.
    for (name, step) in [
        ("window_rows_per_s_step_1000", 1000),
        ("window_rows_per_s_step_100", 100),
    ] {
        let config = WindowConfig {
            window: 1000,
            step,
            ..WindowConfig::default()
        };
        let secs = median_secs(args.repeat, || {
            let mut w = WindowedDetector::new(&profile.columns[0], config)?;
            for &v in col(1, 0) {
                std::hint::black_box(w.update(v));
            }
            Ok(())
        })?;
        record(name, n as f64 / secs);
    }
    record("threads", rayon::current_num_threads() as f64);
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
