//! Drift report between two CSV or Parquet files (or two row ranges of one file): per column and test the
//! statistic and p-value, and the dataset decision, as a table and as JSON.
//!
//! ```text
//! cargo run --release --example drift_report -- --reference A.csv --current B.csv \
//!     [--columns a,b] [--tests ks,cvm,ad,mwu,wasserstein,energy,psi,js,chi2] \
//!     [--ks-method auto|exact|asymp] [--ignore id,label] [--categorical c] \
//!     [--reference-rows 0..5000] [--current-rows 5000..9000] [--json OUT] [--html OUT]
//!     [--sketch-reference]
//! ```
//!
//! Either file may be Parquet (`.parquet`, or a store URL such as `s3://bucket/ref.parquet`).
//! `--sketch-reference` streams a Parquet reference a row group at a time through a mergeable
//! sketch, so a reference larger than memory is profiled in bounded memory.
//!
//! Without `--tests` each column gets Evidently's preset (KS up to 1,000 reference rows,
//! normalized Wasserstein above; chi-square / Z, then Jensen–Shannon, for categorical codes).
//! The first test listed decides; the others are reported beside it. A column that cannot be
//! tested (absent from the current data, all missing, fewer than `--min-samples` values) is
//! reported as such and the verdict is `incomplete`, never `no drift`.
//!
//! Exit codes: 0 no drift, 1 drift, 2 incomplete (some columns not tested, none drifted),
//! 3 bad input or usage.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use mlops::core::arrow_io::{is_parquet_name, ParquetChunks, DEFAULT_BATCH_ROWS};
use mlops::core::{CsvOptions, Dataset};
use mlops::drift::stats::KsMethod;
use mlops::drift::{
    html_report, CheckedDriftConfig, DriftConfig, DriftReport, DriftTest, ProfileConfig,
    ProfileSketch, ProfileStorage, ReferenceProfile, Verdict, DEFAULT_SKETCH_K,
};

/// Compares a current CSV or Parquet file with a reference one column by column (two-sample tests or
/// distances, multiple-testing correction) and decides whether the dataset drifted.
#[derive(Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 no drift, 1 drift, 2 incomplete (some columns could not be tested and none drifted), 3 bad input or usage."
)]
struct Args {
    /// Reference CSV or Parquet file (the training data; `.parquet` or a store URL).
    #[arg(long)]
    reference: String,
    /// Current CSV or Parquet file (new data); may be the same file with other --current-rows.
    #[arg(long)]
    current: String,
    /// Only these columns, comma-separated.
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
    /// Tests to run on every column, comma-separated; the first decides.
    #[arg(long, value_delimiter = ',')]
    tests: Vec<String>,
    /// How KS p-values are computed.
    #[arg(long, default_value = "auto")]
    ks_method: String,
    /// Columns to skip (ids, labels), comma-separated.
    #[arg(long, value_delimiter = ',')]
    ignore: Vec<String>,
    /// Columns holding integer category codes, comma-separated.
    #[arg(long, value_delimiter = ',')]
    categorical: Vec<String>,
    /// Categories of a Parquet text dictionary column in code order, COLUMN=a,b,c
    /// (repeatable; pandas' cat.categories): codes by value, the same in every file.
    #[arg(long = "categories", value_name = "COLUMN=a,b,c")]
    categories: Vec<String>,
    /// Rows START..END (0-based, end exclusive) of the reference file.
    #[arg(long)]
    reference_rows: Option<String>,
    /// Rows START..END of the current file.
    #[arg(long)]
    current_rows: Option<String>,
    /// Write the JSON report here (default: print it after the table).
    #[arg(long)]
    json: Option<String>,
    /// Write an HTML page (summary table, per-column ECDFs) here.
    #[arg(long)]
    html: Option<String>,
    /// Stream the reference (a Parquet file or URL) a row group at a time through a
    /// mergeable sketch instead of loading it: memory stays bounded for a reference larger
    /// than memory; KS statistics are within the printed error bound of the exact ones.
    #[arg(long)]
    sketch_reference: bool,
    /// Fewest non-missing values per side for a column to be tested.
    #[arg(long, default_value_t = CheckedDriftConfig::default().min_samples)]
    min_samples: usize,
}

fn load(path: &str, rows: Option<&str>, options: &CsvOptions) -> anyhow::Result<Dataset> {
    let data = Dataset::from_path(path, options).with_context(|| format!("loading {path}"))?;
    let Some(range) = rows else { return Ok(data) };
    let (a, b) = range
        .split_once("..")
        .with_context(|| format!("row range `{range}`: expected START..END"))?;
    let start: usize = a
        .parse()
        .with_context(|| format!("row range `{range}`: START `{a}` is not a row number"))?;
    let end: usize = if b.is_empty() {
        data.n_rows()
    } else {
        b.parse()
            .with_context(|| format!("row range `{range}`: END `{b}` is not a row number"))?
    };
    anyhow::ensure!(
        start < end && end <= data.n_rows(),
        "row range `{range}`: expected START < END <= {} rows of {path}",
        data.n_rows()
    );
    Ok(data.select_rows(&(start..end).collect::<Vec<_>>())?)
}

fn print_table(report: &DriftReport) {
    println!(
        "{:<28} {:<12} {:>12} {:>12} {:>10}  drifted",
        "column", "test", "statistic", "p_value", "threshold"
    );
    for c in &report.columns {
        if let Some(e) = &c.error {
            println!("{:<28} not tested: {e}", c.column);
            if c.missing.is_none() {
                continue;
            }
        }
        for (k, t) in c.tests.iter().enumerate() {
            println!(
                "{:<28} {:<12} {:>12.6} {:>12} {:>10}  {}",
                if k == 0 { c.column.as_str() } else { "" },
                t.test.name(),
                t.statistic,
                t.adjusted_p_value
                    .or(t.p_value)
                    .map_or("-".into(), |p| format!("{p:.4e}")),
                t.threshold.map_or("-".into(), |v| v.to_string()),
                if t.drifted { "yes" } else { "no" }
            );
        }
        for note in &c.notes {
            println!("{:<28} note: {note}", "");
        }
        if let Some(m) = &c.missing {
            println!(
                "{:<28} {:<12} {:>12.6} {:>12.4e} {:>10}  {}",
                "",
                "null_rate",
                m.outcome.statistic,
                m.outcome.adjusted_p_value.unwrap_or(f64::NAN),
                "-",
                if m.outcome.drifted { "yes" } else { "no" }
            );
        }
    }
    let d = &report.dataset;
    println!(
        "dataset: {} of {} columns drifted (share {:.2}, rule >= {}), mean effect {} -> {}",
        d.columns_drifted,
        d.columns_tested,
        d.share_rule.observed,
        d.share_rule.threshold,
        d.mean_effect_rule.as_ref().map_or("-".into(), |r| format!(
            "{:.4} (rule > {})",
            r.observed, r.threshold
        )),
        match d.verdict {
            Verdict::Drift => "DRIFT",
            Verdict::Incomplete => "INCOMPLETE",
            Verdict::NoDrift => "no drift",
        }
    );
    if d.ks_error_bound > 0.0 {
        println!(
            "compact reference: KS statistics within {:.2e} of the full reference's",
            d.ks_error_bound
        );
    }
    if !d.columns_not_tested.is_empty() {
        println!(
            "not tested ({}): {}",
            d.columns_not_tested.len(),
            d.columns_not_tested.join(", ")
        );
    }
}

fn run(args: &Args) -> anyhow::Result<Verdict> {
    let mut options = CsvOptions {
        ignore: args.ignore.clone(),
        categorical: args.categorical.clone(),
        ..CsvOptions::default()
    };
    for spec in &args.categories {
        options.add_categories(spec)?;
    }
    let reference = if args.sketch_reference {
        anyhow::ensure!(
            args.reference_rows.is_none(),
            "--sketch-reference reads the whole reference: drop --reference-rows"
        );
        anyhow::ensure!(
            is_parquet_name(&args.reference),
            "--sketch-reference streams a Parquet reference (.parquet, or a store URL to one); \
             `{}` is not one",
            args.reference
        );
        None
    } else {
        Some(load(
            &args.reference,
            args.reference_rows.as_deref(),
            &options,
        )?)
    };
    let current = load(&args.current, args.current_rows.as_deref(), &options)?;
    let tests = args
        .tests
        .iter()
        .map(|t| t.parse::<DriftTest>())
        .collect::<Result<Vec<_>, _>>()?;
    let ks_method = match args.ks_method.as_str() {
        "auto" => KsMethod::Auto,
        "exact" => KsMethod::Exact,
        "asymp" => KsMethod::Asymp,
        other => anyhow::bail!("--ks-method `{other}`: expected auto, exact or asymp"),
    };
    let config = DriftConfig {
        tests,
        columns: args.columns.clone(),
        ks_method,
        min_samples: args.min_samples,
        ..DriftConfig::default()
    }
    .check()?;
    // Fitted, compared and dropped: nothing is stored, so keep every reference value (the
    // compact default is for profiles stored beside a model).
    let exact = ProfileConfig {
        storage: ProfileStorage::Exact,
        ..ProfileConfig::default()
    };
    let profile = match &reference {
        Some(reference) => ReferenceProfile::fit(reference, &exact)?,
        None => {
            let chunks = ParquetChunks::open_location(
                &args.reference,
                &Default::default(),
                &options,
                DEFAULT_BATCH_ROWS,
            )
            .with_context(|| format!("opening {}", args.reference))?;
            let rows = chunks.rows();
            let sketch = ProfileSketch::from_chunks(chunks, DEFAULT_SKETCH_K)
                .with_context(|| format!("sketching {}", args.reference))?;
            // Enough values per column that the profile's ECDF is within 1e-4 of the sketch's.
            let representatives = 10_000;
            println!(
                "reference: {rows} rows sketched (k = {DEFAULT_SKETCH_K}); KS statistics within {:.4} of the exact ones",
                sketch.ks_error_bound(representatives)
            );
            sketch.to_profile(&ProfileConfig::default(), representatives)?
        }
    };
    let report = profile.compare(&current, &config)?;
    print_table(&report);
    if let Some(path) = &args.html {
        let values: Vec<(String, Vec<f64>)> = current
            .feature_names()
            .enumerate()
            .map(|(j, n)| {
                (
                    n.to_string(),
                    current
                        .features()
                        .column(j)
                        .iter()
                        .map(|v| f64::from(*v))
                        .collect(),
                )
            })
            .collect();
        std::fs::write(path, html_report(&profile, &report, &values)?)
            .with_context(|| format!("writing {path}"))?;
    }
    let json = serde_json::to_string_pretty(&report)?;
    match &args.json {
        Some(path) => std::fs::write(path, json).with_context(|| format!("writing {path}"))?,
        None => println!("{json}"),
    }
    Ok(report.dataset.verdict)
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(&args) {
        Ok(Verdict::NoDrift) => ExitCode::SUCCESS,
        Ok(Verdict::Drift) => ExitCode::from(1),
        Ok(Verdict::Incomplete) => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}
