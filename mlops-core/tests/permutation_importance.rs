//! Permutation importance agrees with scikit-learn 1.9's `permutation_importance` on the
//! fixture of `scripts/fixtures/permutation_refs.py`, fed scikit-learn's own rows and shuffles:
//! ROC AUC to 1e-12, log loss to 1e-6 (float32 scores summed in another order). With
//! `max_samples`, scikit-learn scores its baseline on every row and the shuffles on the
//! sample, which shifts every importance by the same amount (a feature the model ignores gets
//! a nonzero importance); mlops scores both on the sample, and the test checks that shift.

use mlops_core::importance::{
    permutation_importance, permutation_importance_with, ImportanceConfig,
};
use mlops_core::metrics::{Metric, ScoredSamples};
use mlops_core::model::{Activation, LayerSpec, MlpModel, ModelArtifact, ModelSpec, Predictor};
use mlops_core::Dataset;
use ndarray::{Array1, Array2};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    sklearn: String,
    weights: Vec<f32>,
    bias: f32,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    metric: Metric,
    x: Vec<Vec<f32>>,
    y: Vec<f32>,
    weights: Option<Vec<f32>>,
    rows: Option<Vec<usize>>,
    permutations: Vec<Vec<usize>>,
    importances: Vec<Vec<f64>>,
    importances_mean: Vec<f64>,
    importances_std: Vec<f64>,
}

fn fixture() -> Fixture {
    let f: Fixture =
        serde_json::from_str(include_str!("fixtures/permutation_importance.json")).unwrap();
    assert!(f.sklearn.starts_with("1.9"), "{}", f.sklearn);
    f
}

fn model(f: &Fixture) -> MlpModel {
    let names: Vec<String> = (0..f.weights.len()).map(|j| format!("x{j}")).collect();
    let spec = ModelSpec::new(names, vec![LayerSpec::new(1, Activation::Sigmoid)]);
    let w = Array2::from_shape_vec((1, f.weights.len()), f.weights.clone()).unwrap();
    MlpModel::new(&ModelArtifact::new(spec, vec![(w, ndarray::array![f.bias])]).unwrap()).unwrap()
}

fn data(c: &Case) -> Dataset {
    let cols = c.x[0].len();
    let x = Array2::from_shape_vec((c.x.len(), cols), c.x.concat()).unwrap();
    let d = Dataset::new(x, (0..cols).map(|j| format!("x{j}")).collect())
        .unwrap()
        .with_labels(Array1::from(c.y.clone()), "y")
        .unwrap();
    match &c.weights {
        Some(w) => d.with_weights(Array1::from(w.clone())).unwrap(),
        None => d,
    }
}

fn metric_on(m: &MlpModel, d: &Dataset, metric: Metric) -> f64 {
    metric
        .compute(&ScoredSamples::of(m, d).unwrap(), f64::from(m.threshold()))
        .unwrap()
}

#[test]
fn importances_match_scikit_learn_fed_its_own_draws() {
    let f = fixture();
    let m = model(&f);
    for c in &f.cases {
        let d = data(c);
        let ours =
            permutation_importance_with(&m, &d, c.metric, c.rows.as_deref(), &c.permutations)
                .unwrap();
        let tol = if c.metric == Metric::RocAuc {
            1e-12
        } else {
            1e-6
        };
        // scikit-learn's baseline is on every row; ours on the rows scored.
        let shift = match &c.rows {
            None => 0.0,
            Some(rows) => {
                let sign = if c.metric.higher_is_better() {
                    1.0
                } else {
                    -1.0
                };
                sign * (metric_on(&m, &d, c.metric)
                    - metric_on(&m, &d.select_rows(rows).unwrap(), c.metric))
            }
        };
        for j in 0..c.importances.len() {
            for (r, want) in c.importances[j].iter().enumerate() {
                let got = ours.importances[j][r] + shift;
                assert!(
                    (got - want).abs() <= tol * want.abs().max(1.0),
                    "{} feature {j} repeat {r}: {got} vs {want}",
                    c.name
                );
            }
            let mean = ours.importances_mean[j] + shift;
            assert!(
                (mean - c.importances_mean[j]).abs() <= tol,
                "{} mean {j}",
                c.name
            );
            assert!(
                (ours.importances_std[j] - c.importances_std[j]).abs() <= tol,
                "{} std {j}",
                c.name
            );
        }
        // The feature the model ignores: exactly 0 here, whatever the sample.
        assert!(
            ours.importances[2].iter().all(|&v| v == 0.0),
            "{}: {:?}",
            c.name,
            ours.importances[2]
        );
        if c.rows.is_some() {
            assert!(
                shift.abs() > 1e-3,
                "{}: the fixture shows scikit-learn's shift ({shift})",
                c.name
            );
        }
        assert_eq!(ours.top(1), vec!["x0"]);
    }
}

#[test]
fn seeded_draws_are_reproducible_and_bad_input_is_named() {
    let f = fixture();
    let m = model(&f);
    let d = data(&f.cases[0]);
    let cfg = ImportanceConfig {
        n_repeats: 4,
        max_samples: Some(200),
        seed: 3,
        metric: Metric::RocAuc,
    };
    let a = permutation_importance(&m, &d, &cfg).unwrap();
    assert_eq!(a, permutation_importance(&m, &d, &cfg).unwrap());
    assert_eq!(a.importances[0].len(), 4);
    let bad = |cfg: ImportanceConfig| {
        permutation_importance(&m, &d, &cfg)
            .unwrap_err()
            .to_string()
    };
    assert!(bad(ImportanceConfig {
        n_repeats: 0,
        ..cfg
    })
    .contains("n_repeats"));
    assert!(bad(ImportanceConfig {
        max_samples: Some(1),
        ..cfg
    })
    .contains("max_samples"));
    assert!(bad(ImportanceConfig {
        max_samples: Some(10_000),
        ..cfg
    })
    .contains("max_samples"));
    let with = |rows: Option<&[usize]>, p: &[Vec<usize>]| {
        permutation_importance_with(&m, &d, Metric::RocAuc, rows, p)
            .unwrap_err()
            .to_string()
    };
    assert!(with(Some(&[0, 1, 400]), &[vec![0, 1, 2]]).contains("rows"));
    assert!(with(Some(&[0, 1, 2]), &[vec![0, 1, 1]]).contains("permutations[0]"));
    assert!(with(Some(&[0, 1, 2]), &[vec![0, 1]]).contains("permutations[0]"));
    assert!(with(Some(&[0, 1, 2]), &[]).contains("permutations"));
    // Unlabeled data; a model of another width; a NaN feature (the model says NaN: refused).
    let unlabeled = Dataset::new(
        Array2::zeros((5, 4)),
        (0..4).map(|j| format!("x{j}")).collect(),
    )
    .unwrap();
    assert!(
        permutation_importance(&m, &unlabeled, &ImportanceConfig::default())
            .unwrap_err()
            .to_string()
            .contains("labels")
    );
    let narrow = Dataset::new(
        Array2::zeros((5, 3)),
        (0..3).map(|j| format!("x{j}")).collect(),
    )
    .unwrap()
    .with_labels(Array1::from(vec![0.0, 1.0, 0.0, 1.0, 0.0]), "y")
    .unwrap();
    assert!(permutation_importance(&m, &narrow, &ImportanceConfig::default()).is_err());
    let mut x = Array2::<f32>::zeros((6, 4));
    x[[2, 1]] = f32::NAN;
    let nan = Dataset::new(x, (0..4).map(|j| format!("x{j}")).collect())
        .unwrap()
        .with_labels(Array1::from(vec![0.0, 1.0, 0.0, 1.0, 0.0, 1.0]), "y")
        .unwrap();
    assert!(permutation_importance(&m, &nan, &ImportanceConfig::default()).is_err());
}
