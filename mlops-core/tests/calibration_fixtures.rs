//! Calibration agrees with scikit-learn 1.9 on the fixture written by
//! `scripts/fixtures/calibration_refs.py`: isotonic thresholds and predictions to 1e-12,
//! Platt's calibrated probabilities to 1e-9 of the objective's exact optimum (scipy and
//! Newton's steps to a gradient of 1e-12) and to 1e-6 of scikit-learn's L-BFGS, the reliability curve to 1e-12; and
//! bad input is a named error.

use mlops_core::calibration::{BinStrategy, Calibration, CalibrationMethod, ReliabilityCurve};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    sklearn: String,
    cases: Vec<Case>,
    curve_cases: Vec<CurveCase>,
}

#[derive(Deserialize)]
struct CurveCase {
    p: Vec<f64>,
    y: Vec<f64>,
    n_bins: usize,
    strategy: BinStrategy,
    prob_true: Vec<f64>,
    prob_pred: Vec<f64>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    scores: Vec<f64>,
    labels: Vec<f64>,
    weights: Option<Vec<f64>>,
    isotonic: Isotonic,
    platt: Platt,
    curves: Curves,
}

#[derive(Deserialize)]
struct Isotonic {
    x: Vec<f64>,
    y: Vec<f64>,
    probes: Vec<f64>,
    predictions: Vec<f64>,
}

#[derive(Deserialize)]
struct Platt {
    a_sklearn: f64,
    b_sklearn: f64,
    a: f64,
    b: f64,
}

#[derive(Deserialize)]
struct Curves {
    uniform: Curve,
    quantile: Curve,
}

#[derive(Deserialize)]
struct Curve {
    n_bins: usize,
    prob_true: Vec<f64>,
    prob_pred: Vec<f64>,
}

fn fixture() -> Fixture {
    let f: Fixture = serde_json::from_str(include_str!("fixtures/calibration.json")).unwrap();
    assert!(f.sklearn.starts_with("1.9"), "{}", f.sklearn);
    f
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!(
        (a - b).abs() <= tol * b.abs().max(1.0),
        "{what}: ours {a} vs reference {b}"
    );
}

impl Case {
    fn fit(&self, method: CalibrationMethod) -> Calibration {
        Calibration::fit(method, &self.scores, &self.labels, self.weights.as_deref()).unwrap()
    }
}

fn sigmoid(a: f64, b: f64, s: f64) -> f64 {
    1.0 / (1.0 + (a * s + b).exp())
}

#[test]
fn isotonic_matches_scikit_learn_thresholds_and_predictions() {
    for c in fixture().cases {
        let fit = c.fit(CalibrationMethod::Isotonic);
        let Calibration::Isotonic { x, y } = &fit else {
            panic!("{}: not isotonic", c.name)
        };
        assert_eq!(x.len(), c.isotonic.x.len(), "{}: thresholds", c.name);
        for i in 0..x.len() {
            close(x[i], c.isotonic.x[i], 1e-12, &format!("{} x[{i}]", c.name));
            close(y[i], c.isotonic.y[i], 1e-12, &format!("{} y[{i}]", c.name));
        }
        for (p, want) in c.isotonic.probes.iter().zip(&c.isotonic.predictions) {
            close(fit.apply(*p), *want, 1e-12, &format!("{} at {p}", c.name));
        }
        fit.validate().unwrap();
    }
}

#[test]
fn platt_reaches_the_optimum_scikit_learn_approaches() {
    for c in fixture().cases {
        let fit = c.fit(CalibrationMethod::Platt);
        let Calibration::Platt { a, b } = fit else {
            panic!("{}: not Platt", c.name)
        };
        // Probabilities, not (a, b): with a constant score only a·s + b is determined, so only
        // the probability at that score is.
        let constant = c.scores.iter().all(|&s| s == c.scores[0]);
        for &s in c
            .isotonic
            .probes
            .iter()
            .filter(|&&s| !constant || s == c.scores[0])
        {
            let ours = sigmoid(a, b, s);
            close(
                ours,
                sigmoid(c.platt.a, c.platt.b, s),
                1e-9,
                &format!("{} at {s} (exact)", c.name),
            );
            close(
                ours,
                sigmoid(c.platt.a_sklearn, c.platt.b_sklearn, s),
                1e-6,
                &format!("{} at {s} (sklearn)", c.name),
            );
            close(
                fit.apply(s),
                ours,
                1e-15,
                &format!("{} apply at {s}", c.name),
            );
        }
    }
}

#[test]
fn the_reliability_curve_matches_calibration_curve() {
    for c in fixture().cases {
        let fit = c.fit(CalibrationMethod::Isotonic);
        let p: Vec<f64> = c.scores.iter().map(|&s| fit.apply(s)).collect();
        for (strategy, want) in [
            (BinStrategy::Uniform, &c.curves.uniform),
            (BinStrategy::Quantile, &c.curves.quantile),
        ] {
            let curve = ReliabilityCurve::new(&p, &c.labels, want.n_bins, strategy).unwrap();
            let what = format!("{} {strategy:?}", c.name);
            assert_eq!(curve.prob_true.len(), want.prob_true.len(), "{what}: bins");
            for i in 0..curve.prob_true.len() {
                close(curve.prob_true[i], want.prob_true[i], 1e-12, &what);
                close(curve.prob_pred[i], want.prob_pred[i], 1e-12, &what);
            }
            let ece = curve.expected_calibration_error();
            assert!((0.0..=1.0).contains(&ece), "{what}: {ece}");
        }
    }
}

#[test]
fn curves_bin_probabilities_on_an_edge_as_numpy_does() {
    for (k, c) in fixture().curve_cases.iter().enumerate() {
        let curve = ReliabilityCurve::new(&c.p, &c.y, c.n_bins, c.strategy).unwrap();
        assert_eq!(curve.prob_true.len(), c.prob_true.len(), "case {k}: bins");
        for i in 0..curve.prob_true.len() {
            close(
                curve.prob_true[i],
                c.prob_true[i],
                1e-12,
                &format!("case {k}"),
            );
            close(
                curve.prob_pred[i],
                c.prob_pred[i],
                1e-12,
                &format!("case {k}"),
            );
        }
        // ECE is the count-weighted mean gap, by its definition.
        let n: usize = curve.counts.iter().sum();
        let want: f64 = (0..curve.counts.len())
            .map(|i| curve.counts[i] as f64 * (curve.prob_true[i] - curve.prob_pred[i]).abs())
            .sum::<f64>()
            / n as f64;
        assert!((curve.expected_calibration_error() - want).abs() < 1e-15);
        assert_eq!(n, c.p.len());
    }
}

#[test]
fn platt_is_the_same_on_any_scale_of_scores_and_weights() {
    let c = fixture()
        .cases
        .into_iter()
        .find(|c| c.name == "overconfident")
        .unwrap();
    let base = c.fit(CalibrationMethod::Platt);
    for scale in [1e-8, 1e-3, 1e3, 1e8] {
        let s: Vec<f64> = c.scores.iter().map(|v| v * scale).collect();
        let fit = Calibration::fit(CalibrationMethod::Platt, &s, &c.labels, None).unwrap();
        for &v in &c.isotonic.probes {
            close(
                fit.apply(v * scale),
                base.apply(v),
                1e-9,
                &format!("scale {scale} at {v}"),
            );
        }
    }
    // Weights of 1e200: the targets' priors are weighted counts, but the fit converges.
    let w = vec![1e200; c.scores.len()];
    let heavy = Calibration::fit(CalibrationMethod::Platt, &c.scores, &c.labels, Some(&w)).unwrap();
    assert!(heavy.apply(0.5).is_finite());
}

#[test]
fn calibration_lowers_the_expected_calibration_error_of_an_overconfident_model() {
    let c = fixture()
        .cases
        .into_iter()
        .find(|c| c.name == "overconfident")
        .unwrap();
    let raw = ReliabilityCurve::new(&c.scores, &c.labels, 10, BinStrategy::Uniform).unwrap();
    for method in [CalibrationMethod::Isotonic, CalibrationMethod::Platt] {
        let fit = Calibration::fit(method, &c.scores, &c.labels, None).unwrap();
        let p: Vec<f64> = c.scores.iter().map(|&s| fit.apply(s)).collect();
        let after = ReliabilityCurve::new(&p, &c.labels, 10, BinStrategy::Uniform).unwrap();
        assert!(
            after.expected_calibration_error() < raw.expected_calibration_error() / 3.0,
            "{method:?}: {} vs raw {}",
            after.expected_calibration_error(),
            raw.expected_calibration_error()
        );
    }
}

#[test]
fn bad_input_is_a_named_error_and_nan_stays_nan() {
    let fit = |s: &[f64], y: &[f64], w: Option<&[f64]>| {
        Calibration::fit(CalibrationMethod::Isotonic, s, y, w)
            .unwrap_err()
            .to_string()
    };
    assert!(fit(&[0.1, f64::NAN], &[0.0, 1.0], None).contains("scores[1]"));
    assert!(fit(&[0.1, 0.2], &[0.0, 0.5], None).contains("labels[1]"));
    assert!(fit(&[0.1, 0.2], &[1.0, 1.0], None).contains("both classes"));
    assert!(fit(&[], &[], None).contains("both classes"));
    assert!(fit(&[0.1, 0.2], &[0.0, 1.0], Some(&[1.0, -1.0])).contains("sample_weight[1]"));
    assert!(fit(&[0.1, 0.2], &[0.0, 1.0], Some(&[1.0, 0.0])).contains("both classes"));
    assert!(fit(&[0.1], &[0.0, 1.0], None).contains("labels"));
    for method in [CalibrationMethod::Isotonic, CalibrationMethod::Platt] {
        let c = Calibration::fit(method, &[0.1, 0.9], &[0.0, 1.0], None).unwrap();
        assert!(c.apply(f64::NAN).is_nan());
        assert!((0.0..=1.0).contains(&c.apply(f64::INFINITY)));
        assert!((0.0..=1.0).contains(&c.apply(-1e308)));
    }
    assert!(ReliabilityCurve::new(&[0.5], &[1.0], 0, BinStrategy::Uniform).is_err());
    assert!(
        ReliabilityCurve::new(&[1.5], &[1.0], 5, BinStrategy::Uniform)
            .unwrap_err()
            .to_string()
            .contains("probabilities[0]")
    );
    assert!(ReliabilityCurve::new(&[], &[], 5, BinStrategy::Uniform).is_err());
    // A stored map that is not one is refused.
    let json = r#"{"method": "isotonic", "x": [0.0, 0.0], "y": [0.1, 0.2]}"#;
    let c: Calibration = serde_json::from_str(json).unwrap();
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("calibration.x[1]"));
    assert!(serde_json::from_str::<Calibration>(r#"{"method": "platt", "a": 1}"#).is_err());
}
