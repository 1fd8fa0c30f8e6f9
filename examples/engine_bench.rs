//! Times the serving engine (`mlops::serve::CompiledModel`) and the reference `MlpModel` on the
//! seed's network (30 → 128 → 64 → 32 → 1, ReLU, standardized inputs; seeded weights), and
//! writes the model where `benches/engine_vs_onnxruntime.py` reads the same weights for
//! onnxruntime. One thread. Prints one JSON object: batch-1 p50 latency (ns) and batch-1,024
//! throughput (rows/s) of each, and the batch-1 p50 through the router (90/10 sticky split,
//! Prometheus metrics registered, per-step statistics; with and without a request id for the
//! label join), whose difference from the engine's is the router's overhead.
//!
//! ```text
//! cargo run --release --example engine_bench -- --out DIR [--seconds 2] [--hidden 128,64,32] \
//!     [--profiles] [--write-only]
//! ```
//!
//! `--hidden` writes (and times) a network of the same form with other hidden widths, e.g.
//! `1024,1024` for `benches/open_loop.py`'s batching runs on a model whose call costs more
//! than its rows.
//!
//! Exit codes: 0 done; 2 an error.

use std::process::ExitCode;

use clap::Parser;
use mlops::core::model::{MlpModel, Predictor};
use mlops::serve::router::{Request, Router, RouterOptions, Routes, Variant};
use mlops::serve::{CompiledModel, NonFinitePolicy};
use ndarray::Array2;

#[path = "../benches/support/timing.rs"]
mod timing;
use timing::p50_ns;

#[path = "../benches/support/seed_network.rs"]
mod seed_network;

/// Times the serving engine against the reference forward pass on the seed's network.
#[derive(Parser)]
#[command(after_help = "Exit codes: 0 done; 2 an error.")]
struct Args {
    /// Folder to write the model to (model.json, model.safetensors).
    #[arg(long)]
    out: std::path::PathBuf,
    /// Seconds per measurement (a millisecond to an hour).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Also write the drift references a monitored server compares with:
    /// `reference_profile.json` and `prediction_profile.json`, fitted on 5,000 seeded rows of
    /// N(0, 1) (the rows `benches/server_vs_floor.py` sends).
    #[arg(long)]
    profiles: bool,
    /// Hidden layer widths, comma-separated (1 to 8 layers of 1 to 8,192 units); the seed's
    /// network by default.
    #[arg(long, value_delimiter = ',', default_value = "128,64,32")]
    hidden: Vec<usize>,
    /// Only write the model (and the profiles with `--profiles`); time nothing, print nothing.
    #[arg(long)]
    write_only: bool,
}

/// Writes the model's feature and prediction profiles on 5,000 N(0, 1) rows into `out`.
fn write_profiles(
    artifact: &mlops::core::model::ModelArtifact,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use mlops::drift::{ProfileConfig, ReferenceProfile};
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let names = artifact.spec().input_features.clone();
    let x = Array2::from_shape_fn((5_000, names.len()), |_| {
        rng.sample::<f32, _>(rand_distr::StandardNormal)
    });
    let mut scores = vec![0.0f32; x.nrows()];
    MlpModel::new(artifact)?.predict_proba_into(x.view(), &mut scores)?;
    let config = ProfileConfig::default();
    let features = ReferenceProfile::fit(&mlops::core::Dataset::new(x, names)?, &config)?;
    let predictions = ReferenceProfile::fit_predictions(&scores, &config)?;
    std::fs::write(
        out.join(mlops::registry::REFERENCE_PROFILE_FILE),
        features.to_json()?,
    )?;
    std::fs::write(
        out.join(mlops::registry::PREDICTION_PROFILE_FILE),
        predictions.to_json()?,
    )?;
    Ok(())
}

fn run(args: &Args) -> anyhow::Result<()> {
    use mlops::core::duration::{seconds, SecondsRange};
    let seconds = seconds("--seconds", args.seconds, SecondsRange::new(1e-3, 3_600.0))?;
    if args.hidden.is_empty()
        || args.hidden.len() > 8
        || args.hidden.iter().any(|&w| w == 0 || w > 8_192)
    {
        anyhow::bail!(
            "--hidden: got {:?}; expected 1 to 8 widths of 1 to 8,192 units",
            args.hidden
        );
    }
    let artifact = seed_network::network(&args.hidden)?;
    artifact.save(&args.out)?;
    if args.profiles {
        write_profiles(&artifact, &args.out)?;
    }
    if args.write_only {
        return Ok(());
    }
    let engine = CompiledModel::compile(&artifact, NonFinitePolicy::Nan)?;
    let reference = MlpModel::new(&artifact)?;
    let x = Array2::from_shape_fn((1024, 30), |(i, j)| ((i * 31 + j * 17) % 97) as f32 / 97.0);
    let one = x.slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..1));
    let mut out1 = [0.0f32; 1];
    let mut out = vec![0.0f32; 1024];
    let mut result = serde_json::Map::new();
    for (name, p) in [
        ("engine", &engine as &dyn Predictor),
        ("mlp_model", &reference),
    ] {
        let b1 = p50_ns(seconds, 1000, || {
            p.predict_proba_into(one, &mut out1).expect("a valid batch");
            std::hint::black_box(&out1);
        });
        let b1024 = p50_ns(seconds, 10, || {
            p.predict_proba_into(x.view(), &mut out)
                .expect("a valid batch");
            std::hint::black_box(&out);
        });
        result.insert(format!("{name}_batch1_p50_ns"), b1.into());
        result.insert(
            format!("{name}_batch1024_rows_per_s"),
            (1024.0 / (b1024 * 1e-9)).into(),
        );
    }
    // The router in front of the same engine: keyed requests, metrics in a registry.
    let mut registry = mlops::prometheus_client::registry::Registry::default();
    let metrics = mlops::serve::telemetry::ServeMetrics::register(&mut registry);
    let shared: std::sync::Arc<dyn Predictor> = std::sync::Arc::new(engine.clone());
    let routes = Routes {
        variants: vec![
            Variant::new("canary", Some(2), shared.clone()),
            Variant::new("stable", Some(1), shared),
        ],
        weights: vec![("canary".into(), 10.0), ("stable".into(), 90.0)],
        shadow: None,
    };
    let router = Router::new(
        "bench",
        routes,
        RouterOptions {
            metrics,
            ..RouterOptions::default()
        },
    )?;
    let keys: Vec<String> = (0..4096).map(|i| format!("user-{i}")).collect();
    for (name, with_id) in [("router", false), ("router_labeled", true)] {
        let mut i = 0usize;
        let b1 = p50_ns(seconds, 1000, || {
            let key = &keys[i % keys.len()];
            let request = Request {
                key: Some(key),
                force: None,
                request_id: with_id.then_some(key.as_str()),
                group: None,
            };
            router
                .route(&request, one, &mut out1)
                .expect("a valid batch");
            std::hint::black_box(&out1);
            i += 1;
        });
        result.insert(format!("{name}_batch1_p50_ns"), b1.into());
    }
    // The engine's answers are the reference's.
    let (a, b) = (
        engine.predict_proba(x.view())?,
        reference.predict_proba(x.view())?,
    );
    let worst = a
        .iter()
        .zip(&b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    result.insert("max_abs_difference".into(), f64::from(worst).into());
    println!("{}", serde_json::Value::Object(result));
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engine_bench: {e:#}");
            ExitCode::from(2)
        }
    }
}
