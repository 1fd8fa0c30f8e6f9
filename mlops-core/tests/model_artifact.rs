//! The artifact format: round trips, and every mismatch named on load.

use std::collections::HashMap;

use mlops_core::model::{
    Activation, LayerSpec, MlpModel, ModelArtifact, ModelSpec, Predictor, Standardization,
    SPEC_FILE, WEIGHTS_FILE,
};
use ndarray::{array, Array1, Array2};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

fn spec() -> ModelSpec {
    let mut s = ModelSpec::new(
        vec!["a".into(), "b".into(), "c".into()],
        vec![
            LayerSpec::new(2, Activation::Relu),
            LayerSpec::new(1, Activation::Sigmoid),
        ],
    );
    s.standardization = Some(Standardization {
        mean: vec![1.0, 0.0, -1.0],
        std: vec![2.0, 1.0, 0.5],
    });
    s.threshold = 0.4;
    s
}

fn artifact() -> ModelArtifact {
    ModelArtifact::new(
        spec(),
        vec![
            (
                array![[1.0_f32, -1.0, 0.5], [0.25, 0.5, -0.75]],
                array![0.1_f32, -0.2],
            ),
            (array![[1.5_f32, -2.0]], array![0.3_f32]),
        ],
    )
    .unwrap()
}

/// The forward pass by hand, in f64.
fn reference(x: [f32; 3]) -> f64 {
    let z: Vec<f64> = [(x[0] - 1.0) / 2.0, x[1], (x[2] + 1.0) / 0.5]
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let h0 = (1.0 * z[0] - 1.0 * z[1] + 0.5 * z[2] + 0.1).max(0.0);
    let h1 = (0.25 * z[0] + 0.5 * z[1] - 0.75 * z[2] - 0.2).max(0.0);
    let logit = 1.5 * h0 - 2.0 * h1 + 0.3;
    1.0 / (1.0 + (-logit).exp())
}

#[test]
fn save_load_predict_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let a = artifact();
    a.save(dir.path()).unwrap();
    let back = ModelArtifact::load(dir.path()).unwrap();
    assert_eq!(back, a);
    let model = MlpModel::new(&back).unwrap();
    assert_eq!(model.n_features(), 3);
    let rows = [[1.0_f32, 2.0, 3.0], [-4.0, 0.5, -1.0], [0.0, 0.0, 0.0]];
    let x = Array2::from_shape_fn((3, 3), |(i, j)| rows[i][j]);
    let p = model.predict_proba(x.view()).unwrap();
    for (i, r) in rows.iter().enumerate() {
        assert!(
            (f64::from(p[i]) - reference(*r)).abs() < 1e-6,
            "row {i}: {} vs {}",
            p[i],
            reference(*r)
        );
    }
    let err = model
        .predict_proba(Array2::zeros((2, 4)).view())
        .unwrap_err();
    assert!(
        err.to_string().contains("4") && err.to_string().contains("3 features"),
        "{err}"
    );
    let mut out = vec![0.0; 2];
    assert!(model.predict_proba_into(x.view(), &mut out).is_err());
}

fn tensors_with(edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>, Dtype)>)) -> Vec<u8> {
    let a = artifact();
    let mut list: Vec<(String, Vec<usize>, Vec<f32>, Dtype)> = a
        .spec()
        .expected_tensors()
        .into_iter()
        .zip(a.layers().iter().flat_map(|l| {
            [
                l.weight.iter().copied().collect::<Vec<f32>>(),
                l.bias.to_vec(),
            ]
        }))
        .map(|((n, s), v)| (n, s, v, Dtype::F32))
        .collect();
    edit(&mut list);
    let bytes: Vec<Vec<u8>> = list
        .iter()
        .map(|(_, _, v, d)| match d {
            Dtype::F64 => v.iter().flat_map(|x| f64::from(*x).to_le_bytes()).collect(),
            _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        })
        .collect();
    let views: Vec<(String, TensorView)> = list
        .iter()
        .zip(&bytes)
        .map(|((n, s, _, d), b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None::<HashMap<String, String>>).unwrap()
}

fn load_err(weights: &[u8]) -> String {
    let spec_json = artifact().spec_json().unwrap();
    ModelArtifact::from_parts(spec_json.as_bytes(), weights)
        .unwrap_err()
        .to_string()
}

#[test]
fn missing_tensor_is_named() {
    let err = load_err(&tensors_with(|l| l.retain(|t| t.0 != "layers.1.bias")));
    assert!(
        err.contains("layers.1.bias") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn wrong_shape_is_named() {
    let err = load_err(&tensors_with(|l| {
        l[0].1 = vec![3, 2];
    }));
    assert!(
        err.contains("layers.0.weight") && err.contains("[3, 2]") && err.contains("[2, 3]"),
        "{err}"
    );
}

#[test]
fn wrong_dtype_is_named() {
    let err = load_err(&tensors_with(|l| l[1].3 = Dtype::F64));
    assert!(
        err.contains("layers.0.bias") && err.contains("F64") && err.contains("F32"),
        "{err}"
    );
}

#[test]
fn unexpected_tensor_is_named() {
    let err = load_err(&tensors_with(|l| {
        l.push(("extra".into(), vec![1], vec![0.0], Dtype::F32))
    }));
    assert!(
        err.contains("`extra`") && err.contains("unexpected"),
        "{err}"
    );
}

#[test]
fn non_finite_weight_is_named() {
    let err = load_err(&tensors_with(|l| l[2].2[1] = f32::NAN));
    assert!(
        err.contains("layers.1.weight") && err.contains("element 1"),
        "{err}"
    );
}

#[test]
fn garbage_weights_and_bad_specs_are_clear_errors() {
    let err = load_err(b"not safetensors");
    assert!(err.contains(WEIGHTS_FILE), "{err}");
    let good_weights = artifact().weights_to_safetensors().unwrap();
    let edit = |f: fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value =
            serde_json::from_str(&artifact().spec_json().unwrap()).unwrap();
        f(&mut v);
        ModelArtifact::from_parts(&serde_json::to_vec(&v).unwrap(), &good_weights)
            .unwrap_err()
            .to_string()
    };
    let err = edit(|v| v["format_version"] = 99.into());
    assert!(
        err.contains("format_version") && err.contains("99"),
        "{err}"
    );
    let err = edit(|v| v["layers"][1]["activation"] = "relu".into());
    assert!(
        err.contains("layers[1]") && err.contains("sigmoid"),
        "{err}"
    );
    let err = edit(|v| v["standardization"]["std"][2] = 0.0.into());
    assert!(err.contains("standardization.std[2]"), "{err}");
    let err = edit(|v| v["input_features"][1] = "a".into());
    assert!(err.contains("input_features[1]"), "{err}");
    let err = edit(|v| v["threshold"] = 1.5.into());
    assert!(err.contains("threshold"), "{err}");
    let err = edit(|v| v["unknown_field"] = 1.into());
    assert!(
        err.contains(SPEC_FILE) && err.contains("unknown_field"),
        "{err}"
    );
}

#[test]
fn constructor_checks_shapes() {
    let err =
        ModelArtifact::new(spec(), vec![(Array2::zeros((2, 3)), Array1::zeros(2))]).unwrap_err();
    assert!(
        err.to_string()
            .contains("1 layers of weights for a spec of 2"),
        "{err}"
    );
    let err = ModelArtifact::new(
        spec(),
        vec![
            (Array2::zeros((2, 3)), Array1::zeros(3)),
            (Array2::zeros((1, 2)), Array1::zeros(1)),
        ],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("layers.0.bias") && err.to_string().contains("[3]"),
        "{err}"
    );
}

#[test]
fn non_finite_features_give_nan_for_every_activation() {
    for act in Activation::ALL {
        assert!(
            act.apply(f32::NAN).is_nan(),
            "{act:?} turned NaN into a number"
        );
        let mut s = spec();
        s.layers[0] = LayerSpec::new(2, act);
        let artifact = ModelArtifact::new(
            s,
            vec![
                // Weights that send any input to a large negative pre-activation, where ReLU's
                // `max(0)` used to turn NaN into a confident 0.
                (
                    array![[1.0_f32, -1.0, 0.5], [0.25, 0.5, -0.75]],
                    array![0.1_f32, -0.2],
                ),
                (array![[1.5_f32, -2.0]], array![0.3_f32]),
            ],
        )
        .unwrap();
        let model = MlpModel::new(&artifact).unwrap();
        let x = array![
            [1.0_f32, 2.0, 3.0],
            [f32::NAN, 2.0, 3.0],
            [1.0, f32::INFINITY, 3.0],
            [1.0, 2.0, f32::NEG_INFINITY],
            [0.5, -1.0, 0.0],
        ];
        let p = model.predict_proba(x.view()).unwrap();
        assert!(p[0].is_finite() && p[4].is_finite(), "{act:?}: {p}");
        for i in 1..4 {
            assert!(
                p[i].is_nan(),
                "{act:?}: row {i} has a non-finite feature but scored {}",
                p[i]
            );
        }
    }
}

#[test]
fn labels_use_the_models_threshold_and_refuse_rows_without_a_probability() {
    let artifact = ModelArtifact::new(
        spec(),
        vec![
            (
                array![[1.0_f32, -1.0, 0.5], [0.25, 0.5, -0.75]],
                array![0.1_f32, -0.2],
            ),
            (array![[1.5_f32, -2.0]], array![0.3_f32]),
        ],
    )
    .unwrap();
    let x = array![[1.0_f32, 2.0, 3.0], [0.5, -1.0, 0.0], [-2.0, 1.0, 4.0]];
    let p = MlpModel::new(&artifact)
        .unwrap()
        .predict_proba(x.view())
        .unwrap();
    // Thresholds at each probability: `>=` is positive, exactly as the spec says.
    for &t in p.iter() {
        let model: Box<dyn Predictor> =
            Box::new(MlpModel::new(&artifact.clone().with_threshold(t).unwrap()).unwrap());
        assert_eq!(model.threshold(), t);
        let labels = model.predict_labels(x.view()).unwrap();
        let expected: Vec<u8> = p.iter().map(|v| u8::from(*v >= t)).collect();
        assert_eq!(labels.to_vec(), expected, "threshold {t}, p {p}");
    }
    // The threshold survives the artifact's files.
    let saved = artifact.clone().with_threshold(0.25).unwrap();
    let back = ModelArtifact::from_parts(
        saved.spec_json().unwrap().as_bytes(),
        &saved.weights_to_safetensors().unwrap(),
    )
    .unwrap();
    assert_eq!(MlpModel::new(&back).unwrap().threshold(), 0.25);
    // Out of [0, 1] or NaN: refused, naming the value.
    for bad in [-0.1_f32, 1.5, f32::NAN] {
        let e = artifact
            .clone()
            .with_threshold(bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("threshold") && e.contains("[0, 1]"), "{e}");
    }
    // A row with a missing feature has no label: an error naming the row, not a guess.
    let model = MlpModel::new(&artifact).unwrap();
    let e = model
        .predict_labels(array![[1.0_f32, 2.0, 3.0], [1.0, f32::NAN, 3.0]].view())
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 1"), "{e}");
}

#[test]
fn the_performance_estimator_is_stored_checked_and_optional() {
    use mlops_core::cbpe::{Cbpe, CbpeCalibration};
    let a = artifact();
    // A file written before the estimator existed (no `cbpe` key) loads, without one.
    let json = a.spec_json().unwrap();
    assert!(!json.contains("cbpe"), "{json}");
    let weights = a.weights_to_safetensors().unwrap();
    let old = ModelArtifact::from_parts(json.as_bytes(), &weights).unwrap();
    assert_eq!(old.spec().cbpe, None);
    // Fitted at the model's threshold, stored, saved and loaded back.
    let scores: Vec<f64> = (0..400).map(|i| (i as f64 + 0.5) / 400.0).collect();
    let labels: Vec<f64> = scores
        .iter()
        .enumerate()
        .map(|(i, p)| f64::from(((i * 7919) % 400) as f64 / 400.0 < *p))
        .collect();
    let fit = |t: f64| Cbpe::fit(&scores, &labels, None, t, CbpeCalibration::Isotonic).unwrap();
    let with = a.clone().with_cbpe(fit(f64::from(a.threshold()))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    with.save(dir.path()).unwrap();
    let back = ModelArtifact::load(dir.path()).unwrap();
    assert_eq!(back.spec().cbpe, with.spec().cbpe);
    assert!(back.spec().cbpe.is_some());
    // The same threshold written as an f64 (0.4 for the model's 0.4f32) is the same one.
    let same = a.clone().with_cbpe(fit(0.4)).unwrap();
    assert_eq!(
        same.spec().cbpe.as_ref().unwrap().threshold,
        f64::from(0.4f32)
    );
    // Fitted at another threshold: its components would be wrong, so it is refused.
    let e = a.clone().with_cbpe(fit(0.9)).unwrap_err().to_string();
    assert!(e.contains("cbpe.threshold"), "{e}");
    // Moving the threshold drops the estimator (refit it), keeping it is the same threshold.
    assert!(with
        .clone()
        .with_threshold(a.threshold())
        .unwrap()
        .spec()
        .cbpe
        .is_some());
    assert_eq!(with.with_threshold(0.7).unwrap().spec().cbpe, None);
    // A stored estimator that is not one is named on load.
    let mut bad: serde_json::Value = serde_json::from_str(&back.spec_json().unwrap()).unwrap();
    bad["cbpe"]["sampling_errors"]["roc_auc"]["fraction"] = serde_json::json!(-1.0);
    let e = ModelArtifact::from_parts(bad.to_string().as_bytes(), &weights)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cbpe") && e.contains("roc_auc"), "{e}");
}

#[test]
fn the_explanation_background_is_stored_bounded_and_checked() {
    use mlops_core::model::{Background, MAX_STORED_BACKGROUND_ROWS};
    let a = artifact();
    let x = Array2::from_shape_fn((500, 3), |(i, j)| {
        if i % 7 == 0 && j == 1 {
            f32::NAN
        } else {
            (i * 3 + j) as f32
        }
    });
    // Evenly spaced complete rows, at most the asked number.
    let b = Background::sample(x.view(), 50).unwrap();
    assert_eq!(b.rows, 50);
    assert!(b.values.iter().all(|v| v.is_finite()));
    let with = a.clone().with_background(b.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    with.save(dir.path()).unwrap();
    let back = ModelArtifact::load(dir.path()).unwrap();
    assert_eq!(back.spec().background.as_ref(), Some(&b));
    assert_eq!(MlpModel::new(&back).unwrap().background(), Some(&b));
    // Bounds and errors, named.
    for (rows, needle) in [
        (0, "max_rows"),
        (MAX_STORED_BACKGROUND_ROWS + 1, "max_rows"),
    ] {
        let e = Background::sample(x.view(), rows).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }
    let all_missing = Array2::from_elem((5, 3), f32::NAN);
    let e = Background::sample(all_missing.view(), 10)
        .unwrap_err()
        .to_string();
    assert!(e.contains("none without a missing value"), "{e}");
    let wrong = Background {
        rows: 2,
        values: vec![0.0; 5],
    };
    let e = a.clone().with_background(wrong).unwrap_err().to_string();
    assert!(e.contains("2 rows and 5 values"), "{e}");
    let mut bad: serde_json::Value = serde_json::from_str(&with.spec_json().unwrap()).unwrap();
    bad["background"]["rows"] = serde_json::json!(51);
    let weights = with.weights_to_safetensors().unwrap();
    let e = ModelArtifact::from_parts(bad.to_string().as_bytes(), &weights)
        .unwrap_err()
        .to_string();
    assert!(e.contains("background"), "{e}");
}
