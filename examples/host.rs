//! A host program embedding the whole loop through the `mlops` facade: validate → train →
//! track → evaluate → gate → profile → register → alias → load → score (only `mlops::…` and
//! tokio; built-in data). `cargo run --example host [-- WORKDIR]`; see HELP.
use std::collections::BTreeMap;

use mlops::core::gate::{MetricGate, MetricValues};
use mlops::core::metrics::ScoredSamples;
use mlops::core::model::Predictor;
use mlops::core::validation::{ValidationConfig, ValidationSuite};
use mlops::core::{CsvOptions, Dataset, Schema, SplitFractions};
use mlops::drift::{ProfileConfig, ReferenceProfile};
use mlops::registry::{NewVersion, Registry, RegistryConfig, VersionRef};
use mlops::train::tracking::{log_training_to, ObjectStoreTracker, Run, RunStatus};
use mlops::train::{MlpConfig, TrainConfig, Trainer};

/// Wisconsin Diagnostic Breast Cancer (569 rows, 30 features; label `target`, 1 = benign).
const DATA: &str = include_str!("../data/breast_cancer_wdbc.csv");
const HELP: &str =
    "usage: host [WORKDIR]  (default .mlops/host: the tracker's runs and the registry)
Trains, tracks, gates, registers and promotes a model of the built-in WDBC data, then scores
rows with what serves as `production`. Exit codes: 0 promoted and scored; 1 an error or a
failed gate.";

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let arg = std::env::args().nth(1).unwrap_or(".mlops/host".into());
    if arg == "--help" || arg == "-h" {
        println!("{HELP}");
        return Ok(());
    }
    let workdir = std::path::PathBuf::from(arg);
    let folder = |name: &str| workdir.join(name).display().to_string();

    // Validate: a schema inferred on the training split, every split checked against it.
    let data = Dataset::from_csv_reader(DATA.as_bytes(), &CsvOptions::with_label("target"))?;
    let split = data.stratified_split(SplitFractions::default(), 42)?;
    let schema = Schema::infer(&split.train);
    let suite = ValidationSuite::from_config(&ValidationConfig {
        min_rows: 50, // the default (10,000) is the seed's, for production-sized data
        ..ValidationConfig::default()
    })?;
    for (name, part) in [("train", &split.train), ("test", &split.test)] {
        let report = suite.run(part, Some(&schema));
        if !report.passed() {
            return Err(format!("the {name} split failed validation:\n{report}").into());
        }
    }

    // Train, tracked: one run holds the training and the test metrics.
    let trainer = Trainer::new(
        MlpConfig {
            hidden: vec![32, 16],
            ..MlpConfig::default()
        },
        TrainConfig {
            epochs: 40,
            ..TrainConfig::default()
        },
    )?;
    let tracker = ObjectStoreTracker::open(&folder("mlruns"), &Default::default())?;
    let run = Run::start(&tracker, "wdbc", "host-mlp", &BTreeMap::new()).await?;
    let trained = trainer.fit(&split.train, Some(&split.validation), &mut [])?;
    log_training_to(&run, &trainer, &trained).await?;

    // Evaluate on the test split at the model's threshold, and gate (accuracy >= 0.85,
    // ROC AUC >= 0.90).
    let model = trained.predictor()?;
    let report = ScoredSamples::of(&model, &split.test)?.report(f64::from(model.threshold()))?;
    let values = MetricValues::from(&report);
    for (name, value) in values.to_named() {
        run.log_metric(&format!("test_{name}"), value, 0).await?;
    }
    let decision = MetricGate::default().evaluate(&values, None);
    println!("{report}\n{decision}");
    let status = if decision.passed {
        RunStatus::Finished
    } else {
        RunStatus::Failed
    };
    let run_id = run.end(status).await?;

    // Register with the drift profile of its training data, then move `production` by
    // compare-and-swap from where it points now.
    let profile = ReferenceProfile::fit(&split.train, &ProfileConfig::default())?;
    let registry = Registry::open(&folder("registry"), &RegistryConfig::default()).await?;
    let new = NewVersion::new()
        .artifact(&trained.artifact)?
        .reference_profile(profile.to_json()?)
        .metrics(&values)
        .tag("run", run_id.to_string());
    let version = registry.register("wdbc", new).await?.version;
    if !decision.passed {
        return Err(format!("v{version} registered but not promoted:\n{decision}").into());
    }
    let now = registry.alias("wdbc", "production").await?;
    let expected = now.and_then(|entry| entry.target);
    registry
        .set_alias("wdbc", "production", version, expected, "passed the gate")
        .await?;

    // Load what serves as `production` and score rows: labels at the model's own threshold.
    let production = VersionRef::Alias("production".into());
    let (record, predictor) = registry.load_predictor("wdbc", &production).await?;
    let rows = split.test.select_rows(&[0, 1, 2, 3, 4])?;
    let labels = predictor.predict_labels(rows.features())?;
    let (v, dir) = (record.version, workdir.display());
    println!("production = v{v}: labels {labels} of 5 test rows; everything is under {dir}");
    Ok(())
}
