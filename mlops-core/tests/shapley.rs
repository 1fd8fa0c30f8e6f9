//! Shapley values: the closed form of a one-layer model on the logit, exact additivity for
//! both methods on a two-layer network, sampling converging to the exact values within 3
//! standard errors, the same values whatever the block size, 1 and 200 features, a
//! background of one row, and bad input named.

use mlops_core::model::{Activation, LayerSpec, MlpModel, ModelArtifact, ModelSpec};
use mlops_core::shapley::{shapley, OutputScale, ShapleyConfig, ShapleyMethod};
use ndarray::{Array1, Array2};

/// A deterministic value in [-1, 1).
fn u(i: usize, salt: usize) -> f32 {
    (((i * 2_654_435_761 + salt * 40_503) >> 7) % 2000) as f32 / 1000.0 - 1.0
}

fn names(d: usize) -> Vec<String> {
    (0..d).map(|j| format!("f{j}")).collect()
}

/// One layer: `sigmoid(w·x + 0.2)`, w from `u`, scaled to keep the logit small.
fn linear(d: usize) -> (MlpModel, Vec<f32>) {
    let w: Vec<f32> = (0..d).map(|j| u(j, 1) * 2.0 / (d as f32).sqrt()).collect();
    let spec = ModelSpec::new(names(d), vec![LayerSpec::new(1, Activation::Sigmoid)]);
    let a = ModelArtifact::new(
        spec,
        vec![(
            Array2::from_shape_vec((1, d), w.clone()).unwrap(),
            Array1::from(vec![0.2]),
        )],
    )
    .unwrap();
    (MlpModel::new(&a).unwrap(), w)
}

/// Two layers: 8 ReLU units, then a sigmoid.
fn network(d: usize) -> MlpModel {
    network_of(d, Activation::Relu, None)
}

/// Two layers: 8 units of `act`, then a sigmoid, with an optional standardization.
fn network_of(
    d: usize,
    act: Activation,
    standardization: Option<mlops_core::model::Standardization>,
) -> MlpModel {
    let spec = ModelSpec {
        standardization,
        ..ModelSpec::new(
            names(d),
            vec![
                LayerSpec::new(8, act),
                LayerSpec::new(1, Activation::Sigmoid),
            ],
        )
    };
    let w1 = Array2::from_shape_fn((8, d), |(i, j)| u(i * 31 + j, 2));
    let b1 = Array1::from_shape_fn(8, |i| u(i, 3) * 0.1);
    let w2 = Array2::from_shape_fn((1, 8), |(_, i)| u(i, 4) * 1.5);
    MlpModel::new(
        &ModelArtifact::new(spec, vec![(w1, b1), (w2, Array1::from(vec![-0.1]))]).unwrap(),
    )
    .unwrap()
}

fn background(n: usize, d: usize) -> Array2<f32> {
    Array2::from_shape_fn((n, d), |(i, j)| u(i * 97 + j, 5))
}

fn row(d: usize) -> Vec<f32> {
    (0..d).map(|j| u(j, 6) * 1.5).collect()
}

fn config(method: ShapleyMethod, scale: OutputScale) -> ShapleyConfig {
    ShapleyConfig {
        method,
        scale,
        ..ShapleyConfig::default()
    }
}

#[test]
fn a_one_layer_model_on_the_logit_has_the_closed_form() {
    let d = 6;
    let (model, w) = linear(d);
    let bg = background(40, d);
    let x = row(d);
    for method in [ShapleyMethod::Exact, ShapleyMethod::Permutation] {
        let e = shapley(&model, &x, bg.view(), &config(method, OutputScale::Logit)).unwrap();
        for j in 0..d {
            let mean_b: f64 = bg.column(j).iter().map(|&v| f64::from(v)).sum::<f64>() / 40.0;
            let want = f64::from(w[j]) * (f64::from(x[j]) - mean_b);
            assert!(
                (e.values[j] - want).abs() < 2e-5,
                "{method:?} feature {j}: {} vs {want}",
                e.values[j]
            );
        }
        if method == ShapleyMethod::Permutation {
            // Every order gives the same contributions: the sampling stops at its minimum.
            assert_eq!(e.permutations, 2 * mlops_core::shapley::MIN_PAIRS);
        }
    }
}

#[test]
fn both_methods_are_additive_on_both_scales() {
    let d = 6;
    let model = network(d);
    let bg = background(30, d);
    let x = row(d);
    for scale in [OutputScale::Probability, OutputScale::Logit] {
        for method in [ShapleyMethod::Exact, ShapleyMethod::Permutation] {
            let e = shapley(&model, &x, bg.view(), &config(method, scale)).unwrap();
            let sum: f64 = e.values.iter().sum();
            assert!(
                (sum - (e.output - e.base_value)).abs() < 1e-9,
                "{method:?} {scale:?}: {sum} vs {}",
                e.output - e.base_value
            );
        }
    }
}

#[test]
fn sampling_converges_to_the_exact_values_within_three_standard_errors() {
    let d = 10;
    let model = network(d);
    let bg = background(20, d);
    let x = row(d);
    let exact = shapley(
        &model,
        &x,
        bg.view(),
        &config(ShapleyMethod::Exact, OutputScale::Probability),
    )
    .unwrap();
    let sampled = shapley(
        &model,
        &x,
        bg.view(),
        &ShapleyConfig {
            tolerance: 2e-3,
            ..config(ShapleyMethod::Permutation, OutputScale::Probability)
        },
    )
    .unwrap();
    assert!(
        sampled.std_errors.iter().all(|&s| s < 2e-3),
        "{:?}",
        sampled.std_errors
    );
    for j in 0..d {
        let gap = (sampled.values[j] - exact.values[j]).abs();
        assert!(
            gap <= 3.0 * sampled.std_errors[j] + 1e-9,
            "feature {j}: {gap} > 3 × {}",
            sampled.std_errors[j]
        );
    }
    assert!(sampled.evaluations <= ShapleyConfig::default().max_evaluations);
    assert_eq!(exact.evaluations, (1 << d) * 20);
}

#[test]
fn the_block_size_changes_nothing() {
    let d = 5;
    let model = network(d);
    let bg = background(9, d);
    let x = row(d);
    let mut last: [Option<Vec<f64>>; 2] = [None, None];
    for block_rows in [1, 7, 64, 8192] {
        for (k, method) in [ShapleyMethod::Exact, ShapleyMethod::Permutation]
            .into_iter()
            .enumerate()
        {
            let c = ShapleyConfig {
                block_rows,
                ..config(method, OutputScale::Probability)
            };
            let e = shapley(&model, &x, bg.view(), &c).unwrap();
            if let Some(prev) = &last[k] {
                assert_eq!(&e.values, prev, "{method:?} block {block_rows}");
            }
            last[k] = Some(e.values.clone());
        }
    }
}

#[test]
fn sampling_on_few_features_never_stops_on_two_equal_draws() {
    // Three features have three antithetic pairs of orders: two draws are often the same,
    // with a standard error of 0. The sampling takes at least MIN_PAIRS before it stops.
    let d = 3;
    let model = network(d);
    let bg = background(10, d);
    let x = row(d);
    let exact = shapley(
        &model,
        &x,
        bg.view(),
        &config(ShapleyMethod::Exact, OutputScale::Probability),
    )
    .unwrap();
    let mut outside = 0;
    for seed in 0..30 {
        let c = ShapleyConfig {
            seed,
            tolerance: 1e-9,
            max_evaluations: 4_000,
            ..config(ShapleyMethod::Permutation, OutputScale::Probability)
        };
        let e = shapley(&model, &x, bg.view(), &c).unwrap();
        assert!(
            e.permutations >= 2 * mlops_core::shapley::MIN_PAIRS,
            "seed {seed}: {}",
            e.permutations
        );
        for j in 0..d {
            outside +=
                usize::from((e.values[j] - exact.values[j]).abs() > 3.0 * e.std_errors[j] + 1e-12);
        }
    }
    assert!(
        outside <= 3,
        "{outside} of 90 values outside 3 standard errors"
    );
}

#[test]
fn exact_stays_within_the_budget_and_auto_samples_beyond_it() {
    let d = 12;
    let model = network(d);
    let bg = background(600, d); // 2^12 × 600 = 2,457,600 rows: over the default budget
    let x = row(d);
    let err = shapley(
        &model,
        &x,
        bg.view(),
        &config(ShapleyMethod::Exact, OutputScale::Probability),
    )
    .unwrap_err();
    assert!(err.to_string().contains("max_evaluations"), "{err}");
    let small = ShapleyConfig {
        tolerance: 1e-2,
        ..ShapleyConfig::default()
    };
    let e = shapley(&model, &x, bg.view(), &small).unwrap();
    assert_eq!(e.method, "permutation");
    assert!(e.evaluations <= small.max_evaluations);
}

#[test]
fn one_feature_two_hundred_features_and_a_background_of_one_row() {
    let (one, _) = linear(1);
    let e = shapley(
        &one,
        &[0.7],
        Array2::from_elem((3, 1), 0.1_f32).view(),
        &ShapleyConfig::default(),
    )
    .unwrap();
    assert!((e.values[0] - (e.output - e.base_value)).abs() < 1e-12);
    let d = 200;
    let (wide, _) = linear(d);
    let x = row(d);
    let bg = background(1, d);
    let e = shapley(&wide, &x, bg.view(), &ShapleyConfig::default()).unwrap();
    assert_eq!(e.method, "permutation");
    assert!((e.values.iter().sum::<f64>() - (e.output - e.base_value)).abs() < 1e-9);
    let small = ShapleyConfig {
        max_evaluations: 100,
        ..ShapleyConfig::default()
    };
    assert!(shapley(&wide, &x, bg.view(), &small)
        .unwrap_err()
        .to_string()
        .contains("max_evaluations"));
}

#[test]
fn bad_input_is_named() {
    let model = network(4);
    let bg = background(5, 4);
    let e = |x: &[f32], bg: ndarray::ArrayView2<'_, f32>, c: &ShapleyConfig| {
        shapley(&model, x, bg, c).unwrap_err().to_string()
    };
    let d = ShapleyConfig::default();
    assert!(e(&[0.0; 3], bg.view(), &d).contains("row"));
    assert!(e(&[0.0, f32::NAN, 0.0, 0.0], bg.view(), &d).contains("row[1]"));
    assert!(e(&[0.0; 4], background(5, 3).view(), &d).contains("background"));
    assert!(e(&[0.0; 4], Array2::<f32>::zeros((0, 4)).view(), &d).contains("background"));
    let mut nan = bg.clone();
    nan[[2, 3]] = f32::INFINITY;
    assert!(e(&[0.0; 4], nan.view(), &d).contains("background[2][3]"));
    assert!(e(&[0.0; 4], bg.view(), &ShapleyConfig { block_rows: 0, ..d }).contains("block_rows"));
    assert!(e(
        &[0.0; 4],
        bg.view(),
        &ShapleyConfig {
            tolerance: 0.0,
            ..d
        }
    )
    .contains("tolerance"));
    let (wide, _) = linear(17);
    let exact = config(ShapleyMethod::Exact, OutputScale::Probability);
    let err = shapley(&wide, &row(17), background(2, 17).view(), &exact)
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 16"), "{err}");
}

#[test]
fn deep_shap_is_exact_where_the_model_is_linear_and_always_additive() {
    // One layer on the logit: DeepLIFT's rescale rule is the closed form.
    let d = 6;
    let (model, w) = linear(d);
    let bg = background(40, d);
    let x = row(d);
    let e = model.deep_shap(&x, bg.view(), OutputScale::Logit).unwrap();
    assert_eq!((e.method.as_str(), e.evaluations), ("deep", 80));
    for j in 0..d {
        let mean_b: f64 = bg.column(j).iter().map(|&v| f64::from(v)).sum::<f64>() / 40.0;
        let want = f64::from(w[j]) * (f64::from(x[j]) - mean_b);
        assert!(
            (e.values[j] - want).abs() < 1e-5,
            "feature {j}: {} vs {want}",
            e.values[j]
        );
    }
    // Two layers with identity hidden units and standardization: still linear on the logit,
    // so the chain of multipliers (through the standardization and both layers) must give the
    // exact values there.
    let weights = |act: Activation| {
        network_of(
            d,
            act,
            Some(mlops_core::model::Standardization {
                mean: vec![0.1; d],
                std: vec![0.7; d],
            }),
        )
    };
    let linear2 = weights(Activation::Identity);
    let deep = linear2
        .deep_shap(&x, bg.view(), OutputScale::Logit)
        .unwrap();
    let exact = shapley(
        &linear2,
        &x,
        bg.view(),
        &config(ShapleyMethod::Exact, OutputScale::Logit),
    )
    .unwrap();
    for j in 0..d {
        assert!(
            (deep.values[j] - exact.values[j]).abs() < 1e-4,
            "feature {j}: {} vs {}",
            deep.values[j],
            exact.values[j]
        );
    }
    // ReLU and tanh networks, both scales: additive exactly; an approximation of the exact
    // values (DeepLIFT's rescale rule, shap's DeepExplainer), measured here within half the
    // values' spread.
    for model in [
        network(d),
        weights(Activation::Relu),
        weights(Activation::Tanh),
    ] {
        for scale in [OutputScale::Probability, OutputScale::Logit] {
            let deep = model.deep_shap(&x, bg.view(), scale).unwrap();
            let exact =
                shapley(&model, &x, bg.view(), &config(ShapleyMethod::Exact, scale)).unwrap();
            let total = deep.base_value + deep.values.iter().sum::<f64>();
            assert!(
                (total - deep.output).abs() < 1e-6,
                "{scale:?}: {total} vs {}",
                deep.output
            );
            assert!((deep.output - exact.output).abs() < 1e-5, "{scale:?}");
            assert!(
                (deep.base_value - exact.base_value).abs() < 1e-5,
                "{scale:?}"
            );
            let spread = exact.values.iter().map(|v| v.abs()).sum::<f64>();
            let gap = deep
                .values
                .iter()
                .zip(&exact.values)
                .map(|(a, b)| (a - b).abs())
                .sum::<f64>();
            assert!(gap < 0.5 * spread, "{scale:?}: gap {gap} of {spread}");
        }
    }
    let plain = network(d);
    // Bad input named.
    let e = plain
        .deep_shap(&[f32::NAN; 6], bg.view(), OutputScale::Logit)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"f0\""), "{e}");
    let mut bad = bg.clone();
    bad[[3, 2]] = f32::INFINITY;
    let e = plain
        .deep_shap(&x, bad.view(), OutputScale::Logit)
        .unwrap_err()
        .to_string();
    assert!(e.contains("background row 3 feature \"f2\""), "{e}");
    let e = plain
        .deep_shap(
            &x,
            bg.slice_axis(ndarray::Axis(0), (0..0).into()),
            OutputScale::Logit,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("background rows"), "{e}");
    let e = plain
        .deep_shap(&x[..3], bg.view(), OutputScale::Logit)
        .unwrap_err()
        .to_string();
    assert!(e.contains("widths"), "{e}");
}
