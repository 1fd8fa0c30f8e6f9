//! Times the serving engine (`mlops::serve::CompiledModel`) on a model file of another tool,
//! on one thread: an XGBoost or LightGBM model through the native tree engine, an ONNX model
//! through tract. Batch-1 p50 latency and batch-1,024 throughput on rows read from a file; it
//! writes the engine's probabilities of those rows so a caller can check them against the
//! library's. `benches/trees_vs_libs.py` runs it beside xgboost, lightgbm and onnxruntime on
//! the same trees and rows, `benches/onnx_vs_onnxruntime.py` beside onnxruntime on the same
//! ONNX graphs.
//!
//! ```text
//! cargo run --release --example model_bench -- --model model.json --rows rows.f32 --out p.f32 [--seconds 2]
//! cargo run --release --example model_bench -- --model pipe.onnx --onnx-output probabilities --rows rows.f32 --out p.f32
//! ```
//!
//! `--rows` holds little-endian f32 values, row-major, as many columns as the model reads (NaN
//! for a missing value); `--out` receives one f32 probability per row. Prints one JSON object.
//!
//! Exit codes: 0 done; 2 an error (a model or rows that cannot be read).

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use mlops::core::model::{ModelArtifact, ModelKind, OnnxOptions, Predictor};
use mlops::serve::{CompiledModel, NonFinitePolicy};
use ndarray::{Array2, Axis, Slice};

#[path = "../benches/support/timing.rs"]
mod timing;
use timing::p50_ns;

/// Times the serving engine on a model file (XGBoost, LightGBM, ONNX) and rows from files.
#[derive(Parser)]
#[command(after_help = "Exit codes: 0 done; 2 an error (a model or rows that cannot be read).")]
struct Args {
    /// The model file: XGBoost JSON, LightGBM text or ONNX (the kind is told from the
    /// contents and name).
    #[arg(long)]
    model: std::path::PathBuf,
    /// The output of an ONNX graph holding the probabilities, when it has several.
    #[arg(long)]
    onnx_output: Option<String>,
    /// Rows: little-endian f32, row-major, one column per model input.
    #[arg(long)]
    rows: std::path::PathBuf,
    /// Where to write the probabilities (little-endian f32, one per row).
    #[arg(long)]
    out: std::path::PathBuf,
    /// Seconds per measurement (a millisecond to an hour).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

fn run(args: &Args) -> anyhow::Result<()> {
    use mlops::core::duration::{seconds, SecondsRange};
    let seconds = seconds("--seconds", args.seconds, SecondsRange::new(1e-3, 3_600.0))?;
    let bytes = std::fs::read(&args.model)?;
    let kind = ModelKind::guess(&args.model.display().to_string(), &bytes)?;
    let load = Instant::now();
    let artifact = if kind == ModelKind::Onnx {
        let options = OnnxOptions {
            output: args.onnx_output.clone(),
        };
        ModelArtifact::from_onnx(&bytes, &options)?
    } else {
        ModelArtifact::from_model_file(kind, &bytes)?
    };
    let engine = CompiledModel::compile(&artifact, NonFinitePolicy::Nan)?;
    let load_ms = load.elapsed().as_secs_f64() * 1e3;
    let d = engine.n_features();
    let raw = std::fs::read(&args.rows)?;
    if raw.len() % (4 * d) != 0 || raw.is_empty() {
        anyhow::bail!(
            "--rows: {} bytes, expected a whole number of rows of {d} f32 values",
            raw.len()
        );
    }
    let values: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let x = Array2::from_shape_vec((values.len() / d, d), values)?;
    let p = engine.predict_proba(x.view())?;
    std::fs::write(
        &args.out,
        p.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
    )?;
    let batch = x.nrows().min(1024);
    let block = x.slice_axis(Axis(0), Slice::from(0..batch));
    let mut out = vec![0.0_f32; batch];
    let mut out1 = [0.0_f32; 1];
    let mut i = 0usize;
    let b1 = p50_ns(seconds, 200, || {
        let row = x.slice_axis(Axis(0), Slice::from(i % x.nrows()..i % x.nrows() + 1));
        engine
            .predict_proba_into(row, &mut out1)
            .expect("a valid row");
        std::hint::black_box(&out1);
        i += 1;
    });
    let b1024 = p50_ns(seconds, 5, || {
        engine
            .predict_proba_into(block, &mut out)
            .expect("a valid batch");
        std::hint::black_box(&out);
    });
    let result = serde_json::json!({
        "kind": kind.as_str(),
        "trees": artifact.trees().map(|t| t.n_trees()),
        "splits": artifact.trees().map(|t| t.n_splits()),
        "load_ms": load_ms,
        "batch1_p50_ns": b1,
        "batch": batch,
        "batch_rows_per_s": batch as f64 / (b1024 * 1e-9),
    });
    println!("{result}");
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("model_bench: {e:#}");
            ExitCode::from(2)
        }
    }
}
