//! `Activation::apply` and the reference `MlpModel` against values computed independently of
//! them: the closed forms and a network's forward pass in numpy float64
//! (`scripts/fixtures/activations.py`, fixture `tests/fixtures/activations.json`). The engine's
//! kernel test and the predictor conformance suite compare with `Activation::apply` itself, so
//! only this file (and mlops-serve's `engine_reference` test) can see a wrong activation.

#[path = "support/activations.rs"]
mod fixture;

use mlops_core::model::{Activation, MlpModel, Predictor};

/// Within a few f32 roundings of the float64 value (f32's smallest normal absolute, for the
/// tails that underflow).
fn close(got: f32, want: f64) -> bool {
    (f64::from(got) - want).abs() <= 8.0 * f64::from(f32::EPSILON) * want.abs() + 1e-38
}

#[test]
fn every_activation_matches_its_closed_form() {
    let f = fixture::load();
    for activation in Activation::ALL {
        for (&x, &want) in f.xs().iter().zip(f.values(activation)) {
            assert_eq!(x as f32 as f64, x, "the fixture's points are exact in f32");
            let got = activation.apply(x as f32);
            assert!(
                close(got, want),
                "{activation:?}({x}) = {got}, the closed form (numpy float64) gives {want}"
            );
        }
    }
}

#[test]
fn every_activation_keeps_nan() {
    for activation in Activation::ALL {
        assert!(activation.apply(f32::NAN).is_nan(), "{activation:?}");
    }
}

#[test]
fn reference_model_matches_numpy_forward_pass_for_every_hidden_activation() {
    let f = fixture::load();
    let x = f.network.x();
    for activation in Activation::ALL {
        let model = MlpModel::new(&f.network.artifact(activation)).unwrap();
        let got = model.predict_proba(x.view()).unwrap();
        for (row, (&g, &want)) in got
            .iter()
            .zip(f.network.probabilities(activation))
            .enumerate()
        {
            assert!(
                (f64::from(g) - want).abs() <= 1e-5,
                "{activation:?} row {row}: MlpModel {g}, numpy float64 {want}"
            );
        }
    }
}
