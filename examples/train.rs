//! Trains the Candle MLP on a CSV, evaluates it on a held-out test split, applies the seed's
//! gate, and writes the model, its test metrics and its training curves.
//!
//! ```text
//! cargo run --release --example train -- --data data/breast_cancer_wdbc.csv --label-col target --out /tmp/wdbc
//! cargo run --release --example train -- --data creditcard_fraud_sample.csv --label-col Class \
//!     --order-col Time --train-until 86400 --out /tmp/fraud [--config train.toml]
//! ```
//!
//! Without `--order-col` the rows are split 70/15/15, stratified and seeded; with it, rows with
//! `order < --train-until` train (10% of them, stratified, validate) and the rest test, and the
//! order column is not a feature. `--config` is TOML with optional `[mlp]` and `[train]` tables
//! (`MlpConfig`, `TrainConfig`: the seed's Keras model by default). Writes `model/`
//! (model.json + model.safetensors), `test_metrics.json`, `history.json`,
//! `training_curves.svg` and `gate.json` under `--out`; the exit code is 0 when the gate
//! passes, 3 when it fails, 2 on an error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use mlops::core::gate::{MetricGate, MetricValues};
use mlops::core::metrics::{MetricReport, ScoredSamples};
use mlops::core::{CsvOptions, Dataset, SplitFractions};
use mlops::train::{
    training_curves_svg, Callback, Control, EpochLog, MlpConfig, ProgressBar, TrainConfig, Trainer,
};
use serde::Deserialize;

/// Trains the MLP on a CSV or Parquet file, evaluates it on a held-out split (or the rows after
/// --train-until), applies the seed's gate and writes model, metrics and curves under --out.
#[derive(Parser)]
#[command(
    version,
    after_help = "Exit codes: 0 the model passed the gate, 3 it failed the gate, 2 bad input, a training error or usage."
)]
struct Args {
    /// The CSV or Parquet file (`.parquet`, or a store URL such as s3://b/k.parquet).
    #[arg(long)]
    data: PathBuf,
    /// The label column (0/1).
    #[arg(long)]
    label_col: String,
    /// A column that orders rows in time; with `--train-until`, a time split.
    #[arg(long, requires = "train_until")]
    order_col: Option<String>,
    /// Rows with `order < V` train, the rest test.
    #[arg(long, requires = "order_col")]
    train_until: Option<f64>,
    /// TOML with `[mlp]` and `[train]` tables.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output folder (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Categories of a Parquet text dictionary column in code order, COLUMN=a,b,c
    /// (repeatable; pandas' cat.categories): codes by value, the same in every file.
    #[arg(long = "categories", value_name = "COLUMN=a,b,c")]
    categories: Vec<String>,
}

/// The `--config` file.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    mlp: MlpConfig,
    train: TrainConfig,
}

/// Prints each epoch's metrics.
struct PrintEpochs;

impl Callback for PrintEpochs {
    fn on_epoch_end(&mut self, l: &EpochLog) -> Control {
        println!(
            "epoch {:>3}  loss {:.4}  val_loss {:.4}  val_roc_auc {:.4}  val_ap {:.4}  val_accuracy {:.4}  lr {:.0e}  {:.2}s",
            l.epoch, l.loss, l.val_loss, l.val_roc_auc, l.val_average_precision, l.val_accuracy, l.learning_rate, l.seconds
        );
        Control::Continue
    }
}

fn run(args: &Args) -> anyhow::Result<bool> {
    let config: FileConfig = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        None => FileConfig::default(),
    };
    // The order column is read in full f64 precision beside the features (never a feature):
    // Unix times in f32 would fall on a 128 s grid and move rows across the split.
    let mut options = CsvOptions {
        order: args.order_col.clone(),
        ..CsvOptions::with_label(&args.label_col)
    };
    for spec in &args.categories {
        options.add_categories(spec)?;
    }
    let data = Dataset::from_path(&args.data, &options)
        .with_context(|| format!("loading {}", args.data.display()))?;
    let (train, validation, test) = match (&args.order_col, args.train_until) {
        (Some(col), Some(until)) => {
            let (past, future) = data.split_at_value(col, until)?;
            let f = config.train.validation_fraction;
            let split = past.stratified_split(
                SplitFractions {
                    train: 1.0 - f,
                    validation: f,
                    test: 0.0,
                },
                config.train.seed,
            )?;
            (split.train, split.validation, future)
        }
        _ => {
            let split = data.stratified_split(SplitFractions::default(), config.train.seed)?;
            (split.train, split.validation, split.test)
        }
    };
    // Every split is checked before training: a test row the model cannot score (NaN in, NaN
    // out) must not be counted in the test metrics, nor found only after the training.
    for (role, part) in [
        ("train", &train),
        ("validation", &validation),
        ("test", &test),
    ] {
        part.check_finite(
            &format!("{role} split of {}", args.data.display()),
            "a finite number (impute missing values first: the model scores a row with a missing value as NaN)",
        )?;
    }
    println!(
        "data: {} train, {} validation, {} test rows; {} features",
        train.n_rows(),
        validation.n_rows(),
        test.n_rows(),
        train.n_features()
    );
    let trainer = Trainer::new(config.mlp, config.train)?;
    let trained = trainer.fit(
        &train,
        Some(&validation),
        &mut [&mut PrintEpochs, &mut ProgressBar::new()],
    )?;
    println!(
        "exported epoch {} of {}{}",
        trained.exported_epoch,
        trained.history.len(),
        if trained.stopped_early {
            " (early stopping)"
        } else {
            ""
        }
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let model_dir = args.out.join("model");
    trained.artifact.save(&model_dir)?;
    let model = trained.predictor()?;
    let scores = ScoredSamples::of(&model, &test)?;
    let report: MetricReport = scores.report(f64::from(model.spec().threshold))?;
    println!(
        "test: roc_auc {:.4}  average_precision {:.4}  accuracy {:.4}  precision {:.4}  recall {:.4}  f1 {:.4}",
        report.roc_auc, report.average_precision, report.accuracy, report.precision, report.recall, report.f1
    );
    let write = |name: &str, text: String| -> anyhow::Result<()> {
        let path = args.out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("test_metrics.json", serde_json::to_string_pretty(&report)?)?;
    write(
        "history.json",
        serde_json::to_string_pretty(&trained.history)?,
    )?;
    write(
        "training_curves.svg",
        training_curves_svg(&trained.history)?,
    )?;
    let decision = MetricGate::default().evaluate(&MetricValues::from(&report), None);
    for r in &decision.results {
        println!(
            "gate: {} {}",
            if r.passed { "pass" } else { "FAIL" },
            r.reason
        );
    }
    write("gate.json", serde_json::to_string_pretty(&decision)?)?;
    println!("wrote {}", args.out.display());
    Ok(decision.passed)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
