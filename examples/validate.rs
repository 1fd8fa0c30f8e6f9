//! Validate a CSV against the schema of another: infers a schema from `--reference` (the way
//! TFDV's `infer_schema` does), validates `--current` against it, prints the report as a table
//! and as JSON, and exits with 1 when an error-severity check fails.
//!
//! ```text
//! cargo run --release --example validate -- --reference train.csv --current new.csv \
//!     --label-col y [--ignore id,time] [--categorical country] [--min-rows 10000] \
//!     [--config validation.json] [--schema-out schema.json] [--json report.json]
//! ```

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use mlops::core::validation::{Severity, ValidationConfig, ValidationSuite};
use mlops::core::{CsvOptions, Dataset, Schema};

/// Infers a schema from one CSV or Parquet file (or reads one) and validates another against it; prints every
/// finding as a table and as JSON.
#[derive(Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 no error-severity finding, 1 an error-severity finding, 2 bad input or usage."
)]
struct Args {
    /// CSV or Parquet file the schema is inferred from (ignored when --schema is given).
    #[arg(long, required_unless_present = "schema")]
    reference: Option<String>,
    /// A schema JSON written earlier with --schema-out.
    #[arg(long)]
    schema: Option<String>,
    /// CSV or Parquet file to validate (`.parquet`; a store URL such as s3://b/k.parquet).
    #[arg(long)]
    current: String,
    /// The label column.
    #[arg(long)]
    label_col: Option<String>,
    /// Columns to skip, comma-separated.
    #[arg(long, value_delimiter = ',')]
    ignore: Vec<String>,
    /// Columns holding integer category codes, comma-separated.
    #[arg(long, value_delimiter = ',')]
    categorical: Vec<String>,
    /// Categories of a Parquet text dictionary column in code order, COLUMN=a,b,c
    /// (repeatable; pandas' cat.categories): codes by value, the same in every file.
    #[arg(long = "categories", value_name = "COLUMN=a,b,c")]
    categories: Vec<String>,
    /// A ValidationConfig as JSON (defaults are the seed's checks).
    #[arg(long)]
    config: Option<String>,
    /// Override the config's minimum row count.
    #[arg(long)]
    min_rows: Option<usize>,
    /// Override the config's minimum number of positive labels.
    #[arg(long)]
    min_positives: Option<usize>,
    /// Write the inferred schema here.
    #[arg(long)]
    schema_out: Option<String>,
    /// Write the report JSON here instead of printing it.
    #[arg(long)]
    json: Option<String>,
}

fn run(args: &Args) -> anyhow::Result<bool> {
    let mut options = CsvOptions {
        label: args.label_col.clone(),
        ignore: args.ignore.clone(),
        categorical: args.categorical.clone(),
        ..CsvOptions::default()
    };
    for spec in &args.categories {
        options.add_categories(spec)?;
    }
    let schema = match (&args.schema, &args.reference) {
        (Some(path), _) => Schema::from_json(
            &std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        )
        .with_context(|| format!("parsing {path}"))?,
        (None, Some(path)) => Schema::infer(
            &Dataset::from_path(path, &options).with_context(|| format!("loading {path}"))?,
        ),
        (None, None) => anyhow::bail!("give --reference or --schema"),
    };
    if let Some(path) = &args.schema_out {
        std::fs::write(path, serde_json::to_string_pretty(&schema)?)
            .with_context(|| format!("writing {path}"))?;
    }
    let mut config: ValidationConfig = match &args.config {
        Some(path) => serde_json::from_str(
            &std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        )
        .with_context(|| format!("parsing {path}"))?,
        None => ValidationConfig::default(),
    };
    if let Some(n) = args.min_rows {
        config.min_rows = n;
    }
    if let Some(n) = args.min_positives {
        config.min_positives = n;
    }
    let current = Dataset::from_path(&args.current, &options)
        .with_context(|| format!("loading {}", args.current))?;
    let report = ValidationSuite::from_config(&config)?.run(&current, Some(&schema));
    println!("{report}");
    if report
        .findings
        .iter()
        .any(|f| f.check == "min_rows" && f.severity == Severity::Error)
    {
        eprintln!(
            "hint: {} has fewer rows than min_rows = {} (the production default is 10,000); \
             pass --min-rows N to validate a smaller file",
            args.current, config.min_rows
        );
    }
    let json = serde_json::to_string_pretty(&report)?;
    match &args.json {
        Some(path) => std::fs::write(path, json).with_context(|| format!("writing {path}"))?,
        None => println!("{json}"),
    }
    Ok(report.passed())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
