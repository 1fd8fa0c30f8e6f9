//! One Katib trial: hyperparameters as `--name=value` flags, training of the MLP, and each
//! epoch's metrics printed as `name=value` lines for Katib's StdOut metrics collector (names
//! without dots), so a Katib Experiment can run mlops trials on a cluster.
//!
//! ```text
//! cargo run --release --example trial -- --lr=0.001 --dropout=0.3 --hidden=128,64,32 --batch_size=256 --epochs=30
//! cargo run --release --example trial -- --data=creditcard_fraud_sample.csv --label_col=Class --lr=0.003
//! ```
//!
//! Flags (all optional): `lr`, `dropout`, `hidden` (comma-separated widths), `batch_size`,
//! `epochs`, `weight_decay`, `pos_weight`, `seed`, `data` (CSV; default the built-in WDBC
//! table), `label_col`. Each epoch prints `epoch=N` then one line per metric (`loss`,
//! `val_loss`, `val_roc_auc`, `val_average_precision`, `val_accuracy`, `val_precision`,
//! `val_recall`, `learning_rate`); the last lines are the exported epoch's metrics. In the
//! Katib Experiment: `metricsCollectorSpec: {collector: {kind: StdOut}}`,
//! `objectiveMetricName: val_roc_auc`, and the trial template's command
//! `trial --lr=${trialParameters.lr} ...`.

use std::process::ExitCode;

use mlops::core::{CsvOptions, Dataset};
use mlops::train::{Callback, Control, EpochLog, MlpConfig, TrainConfig, Trainer};

/// Prints each epoch in Katib's StdOut format.
struct KatibStdout;

/// Writes the lines; a closed stdout (Katib's collector gone, `| head`) is not an error here.
fn print_metrics(log: &EpochLog) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "epoch={}", log.epoch);
    for (name, value) in log.metrics() {
        let _ = writeln!(out, "{name}={value}");
    }
}

impl Callback for KatibStdout {
    fn on_epoch_end(&mut self, log: &EpochLog) -> Control {
        print_metrics(log);
        Control::Continue
    }
}

/// `--name=value` flags.
fn parse(args: &[String]) -> Result<Vec<(String, String)>, String> {
    args.iter()
        .map(|a| {
            let body = a
                .strip_prefix("--")
                .ok_or_else(|| format!("{a:?}: expected --name=value"))?;
            let (k, v) = body
                .split_once('=')
                .ok_or_else(|| format!("{a:?}: expected --name=value"))?;
            Ok((k.replace('-', "_"), v.to_string()))
        })
        .collect()
}

fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("--{name}={v}: not a number of the expected kind"))
}

const HELP: &str = "\
One Katib trial: trains the MLP with --name=value hyperparameters and prints each epoch's
metrics as name=value lines (Katib's StdOut collector), the exported epoch's last.

Usage: trial [--name=value ...]

Hyperparameters (all optional): --lr, --dropout, --hidden=128,64,32, --batch_size, --epochs,
--weight_decay, --pos_weight, --seed; data: --data=FILE.csv (default: the built-in WDBC
table) and --label_col=NAME.

Exit codes: 0 trained, 2 bad input, a training error or usage.";

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return Ok(());
    }
    let mut mlp = MlpConfig::default();
    let mut train = TrainConfig::default();
    let mut data_path = None;
    let mut label = "target".to_string();
    for (k, v) in parse(&args)? {
        match k.as_str() {
            "lr" | "learning_rate" => train.learning_rate = number(&k, &v)?,
            "dropout" => mlp.dropout = number(&k, &v)?,
            "hidden" => {
                mlp.hidden =
                    MlpConfig::parse_hidden_sizes(&v).map_err(|e| format!("--{k}={v}: {e}"))?
            }
            "batch_size" => train.batch_size = number(&k, &v)?,
            "epochs" => train.epochs = number(&k, &v)?,
            "weight_decay" => train.weight_decay = number(&k, &v)?,
            "pos_weight" => train.pos_weight = Some(number(&k, &v)?),
            "seed" => train.seed = number(&k, &v)?,
            "data" => data_path = Some(v),
            "label_col" => label = v,
            other => {
                return Err(format!(
                    "--{other}: unknown hyperparameter (see the example's docs)"
                ))
            }
        }
    }
    let data = match &data_path {
        Some(p) => Dataset::from_path(p, &CsvOptions::with_label(&label)),
        None => Dataset::from_csv_reader(
            include_str!("../data/breast_cancer_wdbc.csv").as_bytes(),
            &CsvOptions::with_label("target"),
        ),
    }
    .map_err(|e| e.to_string())?;
    let trainer = Trainer::new(mlp, train).map_err(|e| e.to_string())?;
    let trained = trainer
        .fit(&data, None, &mut [&mut KatibStdout])
        .map_err(|e| e.to_string())?;
    // The exported (best) epoch last, so Katib's "latest" value is the model's.
    if let Some(best) = trained
        .history
        .iter()
        .find(|l| l.epoch == trained.exported_epoch)
    {
        print_metrics(best);
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
