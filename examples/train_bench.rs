//! Times epochs of the seed's MLP for `benches/train_vs_pytorch.py` (same data, same
//! threads): reads raw little-endian f32 rows (`rows * cols` features, then `rows` labels),
//! trains `--epochs` epochs at `--batch` with early stopping off, validating on the first
//! 1,000 rows, and prints one JSON object with each epoch's seconds. `--device cuda:0` (in a
//! build with the `cuda` feature) runs the same epochs on a GPU through candle.
//!
//! ```text
//! cargo run --release --example train_bench -- --data /tmp/train.f32 --rows 200000 --cols 30
//! ```

use anyhow::Context;
use clap::Parser;
use mlops::core::Dataset;
use mlops::train::{DeviceConfig, MlpConfig, TrainConfig, Trainer};
use ndarray::{Array1, Array2};

/// Times MLP training epochs on a raw f32 file (the Rust side of benches/train_vs_pytorch.py).
#[derive(Parser)]
#[command(after_help = "Exit codes: 0 timings printed, 1 an error, 2 usage.")]
struct Args {
    /// Raw little-endian f32: features row-major, then labels.
    #[arg(long)]
    data: String,
    /// Rows.
    #[arg(long)]
    rows: usize,
    /// Feature columns.
    #[arg(long)]
    cols: usize,
    /// Epochs to time.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// `cpu`, or `cuda:N` (a build with the facade's `cuda` feature and a GPU).
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn device(text: &str) -> anyhow::Result<DeviceConfig> {
    if text == "cpu" {
        return Ok(DeviceConfig::Cpu);
    }
    match text.strip_prefix("cuda:").map(str::parse::<usize>) {
        Some(Ok(n)) => Ok(DeviceConfig::Cuda(n)),
        _ => anyhow::bail!("--device {text:?}: expected cpu or cuda:N"),
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let bytes = std::fs::read(&a.data).with_context(|| format!("reading {}", a.data))?;
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    anyhow::ensure!(
        v.len() == a.rows * (a.cols + 1),
        "{} values, expected rows * (cols + 1)",
        v.len()
    );
    let x = Array2::from_shape_vec((a.rows, a.cols), v[..a.rows * a.cols].to_vec())?;
    let y = Array1::from(v[a.rows * a.cols..].to_vec());
    let names: Vec<String> = (0..a.cols).map(|j| format!("f{j}")).collect();
    let data = Dataset::new(x, names)?.with_labels(y, "y")?;
    let validation = data.select_rows(&(0..1000.min(a.rows)).collect::<Vec<_>>())?;
    let trainer = Trainer::new(
        MlpConfig::default(),
        TrainConfig {
            epochs: a.epochs,
            batch_size: a.batch,
            threads: a.threads,
            device: device(&a.device)?,
            early_stopping: None,
            reduce_lr: None,
            ..TrainConfig::default()
        },
    )?;
    let trained = trainer.fit(&data, Some(&validation), &mut [])?;
    let secs: Vec<f64> = trained.history.iter().map(|l| l.seconds).collect();
    println!(
        "{}",
        serde_json::json!({ "epoch_seconds": secs, "last_loss": trained.history.last().map(|l| l.loss) })
    );
    Ok(())
}
