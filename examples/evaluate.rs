//! Evaluate any model's scores: reads a CSV with a label column and a score column and prints
//! the metrics as one JSON object (scikit-learn's definitions, to 1e-9).
//!
//! ```text
//! cargo run --release --example evaluate -- --input scores.csv --label-col y --score-col p \
//!     [--weight-col w] [--threshold 0.5]
//! ```

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use mlops::core::arrow_io::{is_parquet_name, read_parquet_columns};
use mlops::core::metrics::ScoredSamples;
use mlops::core::{read_csv_columns_path, CsvOptions};

/// Prints ROC AUC, average precision, log loss, Brier score and the confusion-matrix rates of
/// a scores file as JSON (scikit-learn's definitions; an undefined metric is null with its
/// reason under "undefined").
#[derive(Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 metrics printed, 2 bad input or usage."
)]
struct Args {
    /// CSV file with a header row, or a Parquet file (`.parquet`).
    #[arg(long)]
    input: String,
    /// Column holding the 0/1 labels.
    #[arg(long)]
    label_col: String,
    /// Column holding the scores (probabilities for log loss and Brier).
    #[arg(long)]
    score_col: String,
    /// Column holding sample weights.
    #[arg(long)]
    weight_col: Option<String>,
    /// Decision threshold for accuracy, precision, recall, F1 (positive when score >= T).
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
}

fn run(args: &Args) -> anyhow::Result<String> {
    let mut names = vec![args.label_col.as_str(), args.score_col.as_str()];
    names.extend(args.weight_col.as_deref());
    let cols = if is_parquet_name(&args.input) {
        read_parquet_columns(&args.input, &names)
    } else {
        read_csv_columns_path(&args.input, &names, &CsvOptions::default())
    }
    .with_context(|| format!("loading {}", args.input))?;
    let samples = ScoredSamples::new(&cols[0], &cols[1], cols.get(2).map(Vec::as_slice))
        .context("checking labels, scores and weights (index i is data row i, file line i + 2)")?;
    let report = samples.report(args.threshold)?;
    Ok(serde_json::to_string_pretty(&report)?)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
