//! Train → export → serve: models trained by mlops-train with tanh and with SiLU hidden
//! layers, saved as artifacts, loaded back and compiled by the serving engine, score every row
//! as the trainer's own forward passes do — candle's (`TrainedModel::candle_predict_proba`:
//! candle's matmul and activations) row by row, and the CPU training engine's through the
//! validation loss it logged for the exported epoch. Neither uses mlops-core's
//! `Activation::apply`, which the engine and the reference `MlpModel` share: a wrong
//! activation there fails here.

use mlops::core::metrics::ScoredSamples;
use mlops::core::model::{Activation, ModelArtifact, Predictor};
use mlops::core::Dataset;
use mlops::serve::{CompiledModel, NonFinitePolicy};
use mlops::train::{MlpConfig, TrainConfig, Trainer};
use ndarray::{Array1, Array2, Axis, Slice};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const FEATURES: usize = 5;

/// Rows with raw-scale features (means far from 0, spreads far from 1, so the exported
/// standardization matters) and a nonlinear label.
fn data(rows: usize, seed: u64) -> (Dataset, Array1<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let u = Array2::from_shape_fn((rows, FEATURES), |_| rng.random_range(-2.0f32..2.0));
    let x = Array2::from_shape_fn((rows, FEATURES), |(r, j)| {
        50.0 * j as f32 + (j as f32 + 0.5) * u[[r, j]]
    });
    let y = Array1::from_shape_fn(rows, |r| {
        let s = u[[r, 0]] * u[[r, 1]] + (2.0 * u[[r, 2]]).sin() - 0.3 * u[[r, 3]];
        f32::from(s > 0.1)
    });
    let names = (0..FEATURES).map(|j| format!("f{j}")).collect();
    let dataset = Dataset::new(x, names)
        .unwrap()
        .with_labels(y.clone(), "y")
        .unwrap();
    (dataset, y)
}

fn train_export_serve(activation: Activation) {
    let (train, _) = data(800, 1);
    let (validation, _) = data(300, 2);
    let trainer = Trainer::new(
        MlpConfig {
            hidden: vec![24, 12],
            activation,
            dropout: 0.0,
        },
        TrainConfig {
            epochs: 12,
            batch_size: 32,
            learning_rate: 0.01,
            early_stopping: None,
            reduce_lr: None,
            ..TrainConfig::default()
        },
    )
    .unwrap();
    let trained = trainer.fit(&train, Some(&validation), &mut []).unwrap();
    let logged = trained
        .history
        .iter()
        .find(|l| l.epoch == trained.exported_epoch)
        .unwrap();
    assert!(
        logged.val_roc_auc > 0.8,
        "{activation:?}: the model learned little (validation ROC AUC {}), so the test would show little",
        logged.val_roc_auc
    );

    // Export: the artifact's two files, read back.
    let dir = tempfile::tempdir().unwrap();
    trained.artifact.save(dir.path()).unwrap();
    let artifact = ModelArtifact::load(dir.path()).unwrap();
    assert!(artifact.spec().layers[..2]
        .iter()
        .all(|l| l.activation == activation));
    let served = CompiledModel::compile(&artifact, NonFinitePolicy::Nan).unwrap();

    for (what, rows) in [("training", &train), ("validation", &validation)] {
        let x = rows.features();
        let want = trained.candle_predict_proba(x.view()).unwrap();
        // The whole batch (the engine's large-batch path) and single rows (its register tiles).
        let whole = served.predict_proba(x.view()).unwrap();
        let single: Vec<f32> = (0..x.nrows())
            .map(|r| {
                let row = x.slice_axis(Axis(0), Slice::from(r..r + 1));
                served.predict_proba(row).unwrap()[0]
            })
            .collect();
        for (r, w) in want.iter().enumerate() {
            for (path, g) in [("batch", whole[r]), ("single row", single[r])] {
                assert!(
                    (g - w).abs() <= 1e-5,
                    "{activation:?}, {what} row {r} ({path}): served {g}, trainer (candle) {w}"
                );
            }
        }
    }

    // The CPU training engine's own validation loss for the exported weights.
    let served_loss = ScoredSamples::of(&served, &validation)
        .unwrap()
        .log_loss()
        .unwrap();
    assert!(
        (served_loss - logged.val_loss).abs() <= 1e-5 * logged.val_loss.max(1.0),
        "{activation:?}: served validation log loss {served_loss}, the trainer logged {}",
        logged.val_loss
    );
}

#[test]
fn a_tanh_model_is_served_as_it_was_trained() {
    train_export_serve(Activation::Tanh);
}

#[test]
fn a_silu_model_is_served_as_it_was_trained() {
    train_export_serve(Activation::Silu);
}
