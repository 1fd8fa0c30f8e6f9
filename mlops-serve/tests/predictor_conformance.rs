//! The public `Predictor` conformance suite (`mlops_core::testing::predictor`), run on the
//! reference `MlpModel` and on the compiled engine: outputs against the reference to 1e-5 for
//! every activation, with and without standardization, at batch sizes on both sides of the
//! engine's kernel switch; any strides; wrong width and wrong output length refused; the
//! empty batch; the NaN policy. Beside it, what only the engine has: its non-finite policies,
//! threads sharing one engine, batches larger than a block.

use mlops_core::model::{
    Activation, LayerSpec, MlpModel, ModelArtifact, ModelSpec, Predictor, Standardization,
};
use mlops_core::testing;
use mlops_serve::{CompiledModel, NonFinitePolicy};
use ndarray::{Array1, Array2, Axis, Slice};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const FEATURES: usize = 30;

/// A seeded `30 -> 45 -> 13 -> 1` network with `activation` in the hidden layers: 45 units
/// take every path of the small-batch kernel (a tile of four vectors, one of one vector, and a
/// scalar tail, at 8 lanes), 13 two of them.
fn artifact(activation: Activation, standardized: bool, seed: u64) -> ModelArtifact {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut spec = ModelSpec::new(
        (0..FEATURES).map(|i| format!("f{i}")).collect(),
        vec![
            LayerSpec::new(45, activation),
            LayerSpec::new(13, activation),
            LayerSpec::new(1, Activation::Sigmoid),
        ],
    );
    if standardized {
        spec.standardization = Some(Standardization {
            // Means far from 0 and spreads far from 1, as raw transaction amounts have.
            mean: (0..FEATURES).map(|i| i as f32 * 37.5 - 200.0).collect(),
            std: (0..FEATURES).map(|i| 0.05 + i as f32 * 3.0).collect(),
        });
    }
    spec.impute = Some((0..FEATURES).map(|i| i as f32 * 0.5).collect());
    let mut fan_in = FEATURES;
    let layers = [45, 13, 1]
        .iter()
        .map(|&units| {
            let limit = (6.0 / (fan_in + units) as f32).sqrt();
            let w = Array2::from_shape_fn((units, fan_in), |_| rng.random_range(-limit..limit));
            let b = Array1::from_shape_fn(units, |_| rng.random_range(-0.2..0.2));
            fan_in = units;
            (w, b)
        })
        .collect();
    ModelArtifact::new(spec, layers).unwrap()
}

/// Rows around each feature's standardization (or around 0), seeded.
fn batch(rows: usize, a: &ModelArtifact, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mean, std) = match &a.spec().standardization {
        Some(s) => (s.mean.clone(), s.std.clone()),
        None => (vec![0.0; FEATURES], vec![1.0; FEATURES]),
    };
    Array2::from_shape_fn((rows, FEATURES), |(_, j)| {
        mean[j] + std[j] * rng.random_range(-3.0f32..3.0)
    })
}

fn close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() {
            assert!(g.is_nan(), "{what}: row {i} is {g}, expected NaN");
        } else {
            assert!(
                (g - w).abs() <= 1e-5,
                "{what}: row {i} is {g}, expected {w}"
            );
        }
    }
}

/// The public suite (`mlops_core::testing::predictor`) on predictors made by `make`, against
/// the reference to 1e-5, for every activation, with and without standardization, at batch
/// sizes on both sides of the engine's kernel switch (and one row at a time, in the suite);
/// then what these two engines say beyond the contract.
fn conformance(name: &str, make: &dyn Fn(&ModelArtifact) -> Box<dyn Predictor>) {
    for activation in Activation::ALL {
        for standardized in [false, true] {
            let a = artifact(activation, standardized, 7);
            let (p, reference) = (make(&a), MlpModel::new(&a).unwrap());
            assert_eq!(p.n_features(), FEATURES);
            assert_eq!(p.threshold(), a.threshold());
            for rows in [2, 7, 8, 9, 64, 300] {
                let x = batch(rows, &a, rows as u64);
                testing::predictor(p.as_ref(), x.view(), 1e-5, Some(&reference));
            }
        }
    }
    let a = artifact(Activation::Relu, true, 3);
    let p = make(&a);
    // Wrong width, wrong output length: refused, naming what.
    let e = p
        .predict_proba(Array2::<f32>::zeros((2, FEATURES - 1)).view())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("batch columns") && e.contains("29"),
        "{name}: {e}"
    );
    let mut out = vec![0.0; 3];
    let e = p
        .predict_proba_into(batch(2, &a, 1).view(), &mut out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("output buffer"), "{name}: {e}");
    // The contract allows an error for a non-finite feature; these two answer NaN for exactly
    // those rows and score the rest as usual.
    let mut x = batch(6, &a, 5);
    let want = MlpModel::new(&a).unwrap().predict_proba(x.view()).unwrap();
    x[[1, 0]] = f32::NAN;
    x[[3, 29]] = f32::INFINITY;
    x[[4, 7]] = f32::NEG_INFINITY;
    let got = p.predict_proba(x.view()).unwrap();
    for r in 0..6 {
        if [1, 3, 4].contains(&r) {
            assert!(got[r].is_nan(), "{name}: row {r} = {}", got[r]);
        } else {
            assert!((got[r] - want[r]).abs() <= 1e-5, "{name}: row {r}");
        }
    }
}

#[test]
fn the_reference_model_conforms() {
    conformance("MlpModel", &|a| Box::new(MlpModel::new(a).unwrap()));
}

#[test]
fn the_compiled_engine_conforms() {
    conformance("CompiledModel", &|a| {
        Box::new(CompiledModel::compile(a, NonFinitePolicy::Nan).unwrap())
    });
    // `reject` conforms too: a non-finite feature is an error, which the contract allows.
    let a = artifact(Activation::Silu, true, 5);
    let reject = CompiledModel::compile(&a, NonFinitePolicy::Reject).unwrap();
    let reference = MlpModel::new(&a).unwrap();
    testing::predictor(&reject, batch(33, &a, 4).view(), 1e-5, Some(&reference));
}

/// The suite fails a predictor that breaks the contract: the engine under `impute` gives a
/// finite number for a row with a NaN feature (a documented opt-out of the NaN rule).
#[test]
#[should_panic(expected = "expected NaN (or an error)")]
fn the_suite_fails_an_engine_that_imputes() {
    let a = artifact(Activation::Relu, true, 9);
    let impute = CompiledModel::compile(&a, NonFinitePolicy::Impute).unwrap();
    testing::predictor(&impute, batch(8, &a, 6).view(), 1e-5, None);
}

#[test]
fn reject_names_the_row_and_feature_and_impute_uses_the_stored_values() {
    let a = artifact(Activation::Tanh, true, 11);
    let mut x = batch(4, &a, 2);
    x[[2, 5]] = f32::NAN;
    let reject = CompiledModel::compile(&a, NonFinitePolicy::Reject).unwrap();
    let e = reject.predict_proba(x.view()).unwrap_err().to_string();
    assert!(
        e.contains("feature `f5` of row 2") && e.contains("NaN"),
        "{e}"
    );
    // Impute: the same as the reference on the row with the stored value put in.
    let impute = CompiledModel::compile(&a, NonFinitePolicy::Impute).unwrap();
    let got = impute.predict_proba(x.view()).unwrap();
    let mut filled = x.clone();
    filled[[2, 5]] = a.spec().impute.as_ref().unwrap()[5];
    let want = MlpModel::new(&a)
        .unwrap()
        .predict_proba(filled.view())
        .unwrap();
    close("impute", got.as_slice().unwrap(), want.as_slice().unwrap());
    // A model without imputation values cannot be compiled to impute.
    let mut bare = a.spec().clone();
    bare.impute = None;
    let layers = a
        .layers()
        .iter()
        .map(|l| (l.weight.clone(), l.bias.clone()))
        .collect();
    let bare = ModelArtifact::new(bare, layers).unwrap();
    let e = CompiledModel::compile(&bare, NonFinitePolicy::Impute)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("impute") && e.contains("ModelSpec.impute"),
        "{e}"
    );
    // The policy is plain config (serde).
    let p: NonFinitePolicy = serde_json::from_str("\"reject\"").unwrap();
    assert_eq!(p, NonFinitePolicy::Reject);
}

#[test]
fn threads_share_one_engine_and_get_the_same_answers() {
    let a = artifact(Activation::Silu, true, 13);
    let engine = CompiledModel::compile(&a, NonFinitePolicy::Nan).unwrap();
    let x = batch(257, &a, 3);
    let want = MlpModel::new(&a).unwrap().predict_proba(x.view()).unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let (engine, x, want) = (&engine, &x, &want);
            s.spawn(move || {
                for round in 0..50 {
                    // Alternate sizes so each thread's scratch grows and shrinks in use.
                    let rows = [1, 257, 9, 64][(t + round) % 4];
                    let part = x.slice_axis(Axis(0), Slice::from(0..rows));
                    let got = engine.predict_proba(part).unwrap();
                    close(
                        "threads",
                        got.as_slice().unwrap(),
                        &want.as_slice().unwrap()[..rows],
                    );
                }
            });
        }
    });
}

#[test]
fn batches_larger_than_a_block_keep_row_numbers_and_answers() {
    let a = artifact(Activation::Relu, true, 17);
    let mut x = batch(2500, &a, 8);
    let want = MlpModel::new(&a).unwrap().predict_proba(x.view()).unwrap();
    x[[2100, 3]] = f32::NAN;
    let engine = CompiledModel::compile(&a, NonFinitePolicy::Nan).unwrap();
    let got = engine.predict_proba(x.view()).unwrap();
    for (r, (g, w)) in got.iter().zip(&want).enumerate() {
        if r == 2100 {
            assert!(g.is_nan(), "row 2100 = {g}");
        } else {
            assert!((g - w).abs() <= 1e-5, "row {r}: {g} vs {w}");
        }
    }
    let reject = CompiledModel::compile(&a, NonFinitePolicy::Reject).unwrap();
    let e = reject.predict_proba(x.view()).unwrap_err().to_string();
    assert!(e.contains("feature `f3` of row 2100"), "{e}");
}
