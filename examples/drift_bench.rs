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
use mlops::drift::{
    CheckedDriftConfig, DriftConfig, DriftTest, ProfileConfig, QuantileSketch, ReferenceProfile,
};
use ndarray::Array2;

/// Times drift computations on a raw f64 file (the Rust side of benches/drift_vs_python.py).
#[derive(Parser)]
#[command(after_help = "Exit codes: 0 timings printed, 1 an error, 2 usage.")]
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
    /// Only the timings whose names start with one of these (comma-separated; default all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
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
    // Times `f` (median of `--repeat` runs) unless `--only` leaves `name` out.
    let mut timed = |name: &str, f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<()> {
        if args.only.is_empty() || args.only.iter().any(|o| name.starts_with(o.as_str())) {
            out.insert(name.to_string(), median_secs(args.repeat, f)?.into());
        }
        Ok(())
    };

    timed("ks_all_columns", &mut || {
        for j in 0..k {
            ks_2samp(col(0, j), col(1, j), Alternative::TwoSided, KsMethod::Auto)?;
        }
        Ok(())
    })?;
    let profile = ReferenceProfile::fit(&reference, &ProfileConfig::default())?;
    let only = |test: DriftTest| DriftConfig {
        tests: vec![test],
        // Only the test itself: no KS effect size, so binned tests skip sorting.
        mean_effect_threshold: None,
        ..DriftConfig::default()
    };
    let ks_only = DriftConfig {
        tests: vec![DriftTest::Ks],
        ..DriftConfig::default()
    }
    .check()?;
    timed("ks_with_profile", &mut || {
        profile.compare(&current, &ks_only)?;
        Ok(())
    })?;
    let psi_only = only(DriftTest::Psi).check()?;
    timed("psi_with_profile", &mut || {
        profile.compare(&current, &psi_only)?;
        Ok(())
    })?;
    let wasserstein_only = only(DriftTest::Wasserstein).check()?;
    timed("wasserstein_with_profile", &mut || {
        profile.compare(&current, &wasserstein_only)?;
        Ok(())
    })?;
    timed("psi_all_columns", &mut || {
        for j in 0..k {
            psi_samples(col(0, j), col(1, j), 10)?;
        }
        Ok(())
    })?;
    timed("wasserstein_all_columns", &mut || {
        for j in 0..k {
            wasserstein_distance(col(0, j), col(1, j))?;
        }
        Ok(())
    })?;
    timed("default_report", &mut || {
        let p = ReferenceProfile::fit(&reference, &ProfileConfig::default())?;
        p.compare(&current, &CheckedDriftConfig::default())?;
        Ok(())
    })?;
    // Mergeable sketches: every reference column into a KLL sketch (k = 400), the work of
    // Apache DataSketches' kll_doubles_sketch in the Python script.
    let mut bytes = 0usize;
    timed("kll_sketch_all_columns", &mut || {
        bytes = 0;
        for j in 0..k {
            let mut s = QuantileSketch::new(400)?;
            col(0, j).iter().for_each(|v| s.insert(*v));
            bytes += s.size_bytes();
        }
        Ok(())
    })?;
    // Streaming: one column's values through a sliding window (1,000 values), tested against
    // the profile every 1,000 (tumbling) or every 100 values. Recorded as seconds; the rows
    // per second are added below.
    for (name, step) in [("window_step_1000", 1000), ("window_step_100", 100)] {
        let config = WindowConfig {
            window: 1000,
            step,
            ..WindowConfig::default()
        };
        timed(name, &mut || {
            let mut w = WindowedDetector::new(&profile.columns[0], config)?;
            for &v in col(1, 0) {
                std::hint::black_box(w.update(v));
            }
            Ok(())
        })?;
    }
    if bytes > 0 {
        out.insert("kll_bytes_per_column".into(), ((bytes / k) as f64).into());
        // Observed rank error of column 0's sketch: the largest gap between its ECDF and the
        // exact one, at every 1/1000 quantile of the data (the Python script does the same).
        let mut s = QuantileSketch::new(400)?;
        col(0, 0).iter().for_each(|v| s.insert(*v));
        let mut sorted = col(0, 0).to_vec();
        sorted.sort_by(f64::total_cmp);
        let worst = (0..=1000)
            .map(|i| sorted[(i * (n - 1)) / 1000])
            .map(|x| {
                let exact = sorted.partition_point(|v| *v <= x) as f64 / n as f64;
                (s.cdf(x) - exact).abs()
            })
            .fold(0.0, f64::max);
        out.insert("kll_rank_error_column0".into(), worst.into());
    }
    for step in ["1000", "100"] {
        if let Some(secs) = out
            .get(&format!("window_step_{step}"))
            .and_then(|v| v.as_f64())
        {
            out.insert(
                format!("window_rows_per_s_step_{step}"),
                (n as f64 / secs).into(),
            );
        }
    }
    out.insert(
        "threads".into(),
        (rayon::current_num_threads() as f64).into(),
    );
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
