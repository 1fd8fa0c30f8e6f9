//! CBPE agrees with nannyml 0.13 on its own synthetic binary data, calibrator forced on, on
//! the fixture written by `scripts/fixtures/cbpe_refs.py`: every estimate, sampling error and
//! band of 10 chunks of 5,000 rows, for ROC AUC, accuracy, precision, recall, F1 and the four
//! expected counts, to 1e-9. Bad input is a named error, and what has no value says `None`.

use mlops_core::calibration::Calibration;
use mlops_core::cbpe::{estimate_roc_auc, Cbpe, CbpeCalibration, Estimated, PerformanceEstimate};
use mlops_core::metrics::ScoredSamples;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct Fixture {
    nannyml: String,
    chunk: usize,
    cases: BTreeMap<String, Case>,
    components: Vec<Components>,
}

/// nannyml's `*_sampling_error_components` on a small set: `[std, fraction]` pairs, a
/// count's std alone; `null` where nannyml says NaN.
#[derive(Deserialize)]
struct Components {
    scores: Vec<f64>,
    labels: Vec<f64>,
    predictions: Vec<f64>,
    roc_auc: (Option<f64>, f64),
    accuracy: f64,
    precision: (Option<f64>, f64),
    recall: (Option<f64>, f64),
    f1: (Option<f64>, f64),
    true_positive: f64,
    false_positive: f64,
    false_negative: f64,
    true_negative: f64,
}

#[derive(Deserialize)]
struct Case {
    chunks: Vec<Chunk>,
    auroc_component_stable: (f64, f64),
    auroc_component_nannyml: (f64, f64),
    #[serde(default)]
    reference_codes: Vec<u32>,
    #[serde(default)]
    analysis_codes: Vec<u32>,
    #[serde(default)]
    rows: usize,
}

#[derive(Deserialize, Clone, Copy, Debug)]
struct Expected {
    value: f64,
    sampling_error: f64,
    lower: f64,
    upper: f64,
}

#[derive(Deserialize)]
struct Chunk {
    start: usize,
    end: usize,
    #[serde(flatten)]
    metrics: BTreeMap<String, Expected>,
}

struct Rows {
    scores: Vec<f64>,
    predictions: Vec<f64>,
    labels: Vec<f64>,
}

fn decode(codes: &[u32]) -> Rows {
    Rows {
        scores: codes.iter().map(|c| f64::from(c / 4) / 100.0).collect(),
        predictions: codes.iter().map(|c| f64::from((c / 2) % 2)).collect(),
        labels: codes.iter().map(|c| f64::from(c % 2)).collect(),
    }
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cbpe.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn close(what: &str, got: Option<f64>, want: f64, tol: f64) {
    let got = got.unwrap_or_else(|| panic!("{what}: None, nannyml says {want}"));
    assert!(
        (got - want).abs() <= tol * want.abs().max(1.0),
        "{what}: {got} vs nannyml {want} (difference {:e})",
        (got - want).abs()
    );
}

fn metric<'a>(e: &'a PerformanceEstimate, name: &str) -> &'a Estimated {
    match name {
        "roc_auc" => &e.roc_auc,
        "accuracy" => &e.accuracy,
        "precision" => &e.precision,
        "recall" => &e.recall,
        "f1" => &e.f1,
        "true_positive" => &e.true_positive,
        "false_positive" => &e.false_positive,
        "false_negative" => &e.false_negative,
        "true_negative" => &e.true_negative,
        other => panic!("unknown metric {other} in the fixture"),
    }
}

fn check_case(name: &str, case: &Case, reference: &Rows, analysis: &Rows, chunk: usize) {
    let cbpe = Cbpe::fit(
        &reference.scores,
        &reference.labels,
        Some(&reference.predictions),
        0.5,
        CbpeCalibration::Isotonic,
    )
    .unwrap();
    let auc = cbpe.sampling_errors.roc_auc.unwrap();
    close(
        &format!("{name} auroc std"),
        Some(auc.std),
        case.auroc_component_stable.0,
        1e-12,
    );
    close(
        &format!("{name} auroc fraction"),
        Some(auc.fraction),
        case.auroc_component_stable.1,
        1e-12,
    );
    // nannyml's own AUROC error, where ties are ordered by numpy's unstable sort, is the same
    // formula over another order of tied rows: rescaled by the ratio of the two stds it is
    // the stable one's.
    let tie_ratio = case.auroc_component_stable.0 / case.auroc_component_nannyml.0;
    assert_eq!(case.chunks.len(), analysis.scores.len() / chunk);
    for c in &case.chunks {
        let estimate = cbpe
            .estimate(
                &analysis.scores[c.start..c.end],
                Some(&analysis.predictions[c.start..c.end]),
            )
            .unwrap();
        assert_eq!(estimate.rows, c.end - c.start);
        assert_eq!(c.metrics.len(), 9);
        for (m, want) in &c.metrics {
            let got = metric(&estimate, m);
            let at = format!("{name} rows {}..{} {m}", c.start, c.end);
            let mut want = *want;
            if m == "roc_auc" {
                want.sampling_error *= tie_ratio;
                want.lower = (want.value - 3.0 * want.sampling_error).max(0.0);
                want.upper = (want.value + 3.0 * want.sampling_error).min(1.0);
            }
            close(&format!("{at} value"), got.value, want.value, 1e-9);
            close(
                &format!("{at} sampling_error"),
                got.sampling_error,
                want.sampling_error,
                1e-9,
            );
            close(&format!("{at} lower"), got.lower, want.lower, 1e-9);
            close(&format!("{at} upper"), got.upper, want.upper, 1e-9);
        }
    }
}

#[test]
fn estimates_match_nannyml_on_its_synthetic_data() {
    let f = fixture();
    assert_eq!(f.nannyml, "0.13.0");
    let case = &f.cases["nannyml"];
    let reference = decode(&case.reference_codes);
    let analysis = decode(&case.analysis_codes);
    assert_eq!(
        (reference.scores.len(), analysis.scores.len()),
        (25_000, 50_000)
    );
    check_case("nannyml", case, &reference, &analysis, f.chunk);
}

#[test]
fn estimates_match_nannyml_with_distinct_scores() {
    // The same rows, each probability moved to a distinct value by the script's formula:
    // no tie is left for numpy's sort to order, and every number is nannyml's own.
    let f = fixture();
    let base = &f.cases["nannyml"];
    let case = &f.cases["distinct"];
    let mut reference = decode(&base.reference_codes);
    let mut analysis = decode(&base.analysis_codes);
    let total = case.rows as f64;
    assert_eq!(case.rows, reference.scores.len() + analysis.scores.len());
    let mut i = 0usize;
    for rows in [&mut reference, &mut analysis] {
        for p in rows.scores.iter_mut() {
            *p = *p * 0.996 + 0.002 + (i as f64 / total - 0.5) * 0.002;
            i += 1;
        }
    }
    assert_eq!(
        case.auroc_component_stable, case.auroc_component_nannyml,
        "with distinct scores the order is fixed"
    );
    check_case("distinct", case, &reference, &analysis, f.chunk);
}

#[test]
fn sampling_error_components_match_nannyml() {
    // Small sets chosen for nannyml's corners: the classes swapped when positives are the
    // majority, a positive at the lowest score (nannyml reads positives from ranks above 0,
    // so it is skipped), too few positives left for a deviation (NaN there, None here).
    let f = fixture();
    assert_eq!(f.components.len(), 5);
    for (i, c) in f.components.iter().enumerate() {
        let cbpe = Cbpe::fit(
            &c.scores,
            &c.labels,
            Some(&c.predictions),
            0.5,
            CbpeCalibration::None,
        )
        .unwrap();
        let e = cbpe.sampling_errors;
        let pair = |name: &str,
                    got: Option<mlops_core::cbpe::ErrorComponent>,
                    want: (Option<f64>, f64)| {
            match (got, want.0) {
                (Some(g), Some(std)) => {
                    close(&format!("case {i} {name} std"), Some(g.std), std, 1e-12);
                    close(
                        &format!("case {i} {name} fraction"),
                        Some(g.fraction),
                        want.1,
                        1e-12,
                    );
                }
                (None, None) => {}
                (g, w) => panic!("case {i} {name}: {g:?} vs nannyml {w:?}"),
            }
        };
        pair("roc_auc", e.roc_auc, c.roc_auc);
        pair("precision", e.precision, c.precision);
        pair("recall", e.recall, c.recall);
        pair("f1", e.f1, c.f1);
        close(
            &format!("case {i} accuracy"),
            e.accuracy.map(|a| a.std),
            c.accuracy,
            1e-12,
        );
        close(
            &format!("case {i} tp"),
            e.true_positive,
            c.true_positive,
            1e-12,
        );
        close(
            &format!("case {i} fp"),
            e.false_positive,
            c.false_positive,
            1e-12,
        );
        close(
            &format!("case {i} fn"),
            e.false_negative,
            c.false_negative,
            1e-12,
        );
        close(
            &format!("case {i} tn"),
            e.true_negative,
            c.true_negative,
            1e-12,
        );
    }
}

#[test]
fn the_estimate_follows_covariate_shift() {
    // nannyml's analysis set shifts in its second half: the estimated AUC drops there, and
    // the realized AUC on the labels drops with it.
    let f = fixture();
    let case = &f.cases["nannyml"];
    let reference = decode(&case.reference_codes);
    let analysis = decode(&case.analysis_codes);
    let cbpe = Cbpe::fit(
        &reference.scores,
        &reference.labels,
        Some(&reference.predictions),
        0.5,
        CbpeCalibration::Isotonic,
    )
    .unwrap();
    let window = |r: std::ops::Range<usize>| {
        cbpe.estimate(&analysis.scores[r.clone()], Some(&analysis.predictions[r]))
            .unwrap()
            .roc_auc
    };
    let first = window(0..25_000);
    let second = window(25_000..50_000);
    assert!(
        second.upper.unwrap() < first.lower.unwrap(),
        "{second:?} vs {first:?}"
    );
    let realized = |r: std::ops::Range<usize>| {
        ScoredSamples::new(&analysis.labels[r.clone()], &analysis.scores[r], None)
            .unwrap()
            .roc_auc()
            .unwrap()
    };
    assert!(realized(25_000..50_000) < realized(0..25_000));
}

#[test]
fn bad_input_is_a_named_error() {
    let scores = [0.1, 0.4, 0.6, 0.9];
    let labels = [0.0, 0.0, 1.0, 1.0];
    let fit = |s: &[f64], l: &[f64], p: Option<&[f64]>, t: f64| {
        Cbpe::fit(s, l, p, t, CbpeCalibration::Isotonic)
            .unwrap_err()
            .to_string()
    };
    assert!(fit(&[], &[], None, 0.5).contains("reference"), "empty");
    assert!(fit(&[0.1, f64::NAN], &[0.0, 1.0], None, 0.5).contains("scores[1]"));
    assert!(fit(&[0.1, 1.5], &[0.0, 1.0], None, 0.5).contains("scores[1]"));
    assert!(fit(&scores, &[0.0, 2.0, 1.0, 1.0], None, 0.5).contains("labels[1]"));
    assert!(fit(&scores, &labels[..3], None, 0.5).contains("labels"));
    assert!(fit(&scores, &labels, Some(&[0.0, 1.0, 0.5, 1.0]), 0.5).contains("predictions[2]"));
    assert!(fit(&scores, &labels, None, f64::NAN).contains("threshold"));
    // One class only: isotonic cannot be fitted, and says why.
    let one_class = fit(&scores, &[1.0; 4], None, 0.5);
    assert!(one_class.contains("class"), "{one_class}");

    let cbpe = Cbpe::fit(&scores, &labels, None, 0.5, CbpeCalibration::Isotonic).unwrap();
    let estimate = |s: &[f64]| cbpe.estimate(s, None).unwrap_err().to_string();
    assert!(estimate(&[]).contains("window"));
    assert!(estimate(&[0.2, f64::NAN]).contains("scores[1]"));
    assert!(estimate(&[0.2, -0.1]).contains("scores[1]"));
    assert!(cbpe
        .estimate(&[0.2, 0.3], Some(&[1.0]))
        .unwrap_err()
        .to_string()
        .contains("predictions"));
}

#[test]
fn an_estimator_read_without_checks_is_an_error_never_a_panic() {
    let scores = [0.1, 0.4, 0.6, 0.9];
    let good = Cbpe::fit(
        &scores,
        &[0.0, 0.0, 1.0, 1.0],
        None,
        0.5,
        CbpeCalibration::Isotonic,
    )
    .unwrap();
    let mut json: serde_json::Value = serde_json::to_value(&good).unwrap();
    let broken = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut j = json.clone();
        edit(&mut j);
        let c: Cbpe = serde_json::from_value(j).unwrap();
        (
            c.validate().unwrap_err().to_string(),
            c.estimate(&scores, None).unwrap_err().to_string(),
        )
    };
    for (edit, field) in [
        (
            Box::new(|j: &mut serde_json::Value| {
                j["calibration"] = serde_json::json!({"method": "isotonic", "x": [], "y": []})
            }) as Box<dyn Fn(&mut serde_json::Value)>,
            "calibration.x",
        ),
        (
            Box::new(|j: &mut serde_json::Value| {
                j["calibration"] =
                    serde_json::json!({"method": "isotonic", "x": [0.0, 0.5, 1.0], "y": [0.5]})
            }),
            "calibration.x",
        ),
        (
            Box::new(|j: &mut serde_json::Value| j["threshold"] = serde_json::json!(1.5)),
            "cbpe.threshold",
        ),
        (
            Box::new(|j: &mut serde_json::Value| {
                j["sampling_errors"]["roc_auc"]["std"] = serde_json::json!(1e6)
            }),
            "cbpe.sampling_errors.roc_auc",
        ),
        (
            Box::new(|j: &mut serde_json::Value| {
                j["sampling_errors"]["accuracy"]["fraction"] = serde_json::json!(0.5)
            }),
            "cbpe.sampling_errors.accuracy",
        ),
        (
            Box::new(|j: &mut serde_json::Value| {
                j["sampling_errors"]["true_positive"] = serde_json::json!(0.7)
            }),
            "cbpe.sampling_errors.true_positive",
        ),
        (
            Box::new(|j: &mut serde_json::Value| {
                j["reference"]["roc_auc"] = serde_json::json!(2.0)
            }),
            "cbpe.reference.roc_auc",
        ),
    ] {
        let (validated, estimated) = broken(&*edit);
        assert!(validated.contains(field), "{field}: {validated}");
        assert!(estimated.contains(field), "{field}: {estimated}");
    }
    // A NaN threshold cannot come from JSON, but can be set: also an error, not "all negative".
    let mut nan = good.clone();
    nan.threshold = f64::NAN;
    assert!(nan
        .estimate(&scores, None)
        .unwrap_err()
        .to_string()
        .contains("threshold"));
    // A malformed map built by hand calibrates to NaN, never panics.
    let by_hand = Calibration::Isotonic {
        x: vec![],
        y: vec![],
    };
    assert!(by_hand.apply(0.5).is_nan());
    json["threshold"] = serde_json::json!(0.5);
    assert!(serde_json::from_value::<Cbpe>(json).is_ok());
    // The public estimate_roc_auc checks its input.
    let e = estimate_roc_auc(&[0.9, 0.1], &[2.0, -1.0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("probabilities[0]"), "{e}");
    let e = estimate_roc_auc(&[0.9, 0.1, 0.5], &[0.2, 0.1])
        .unwrap_err()
        .to_string();
    assert!(e.contains("probabilities"), "{e}");
    assert_eq!(estimate_roc_auc(&[], &[]).unwrap(), None);
}

#[test]
fn what_has_no_value_says_none() {
    // A calibrated map that says 0 for every score: no expected positive, so no precision,
    // recall, F1 or AUC, never nannyml's 0.
    let scores = [0.1, 0.2, 0.3, 0.4];
    let cbpe = Cbpe::fit(
        &scores,
        &[0.0, 1.0, 0.0, 1.0],
        None,
        0.5,
        CbpeCalibration::Given(Calibration::Isotonic {
            x: vec![0.0, 1.0],
            y: vec![0.0, 0.0],
        }),
    )
    .unwrap();
    let e = cbpe.estimate(&scores, None).unwrap();
    assert_eq!(e.roc_auc.value, None);
    assert_eq!(e.recall.value, None);
    // Nothing predicted positive: precision has no value either.
    assert_eq!(e.precision.value, None);
    assert_eq!(e.f1.value, None);
    assert_eq!(e.accuracy.value, Some(1.0));
    // The reference had no predicted positive: precision's sampling error is unknown.
    assert_eq!(cbpe.sampling_errors.precision, None);
    assert_eq!(e.precision.lower, None);
    // One row: an estimate, with its error.
    let one = cbpe.estimate(&[0.2], None).unwrap();
    assert_eq!(one.rows, 1);
    assert_eq!(one.true_negative.value, Some(1.0));
    // A stored estimator round-trips and is checked.
    let text = serde_json::to_string(&cbpe).unwrap();
    let back: Cbpe = serde_json::from_str(&text).unwrap();
    assert_eq!(back, cbpe);
    back.validate().unwrap();
    let mut bad = back.clone();
    bad.threshold = 2.0;
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("cbpe.threshold"));
}

#[test]
fn estimated_auc_of_calibrated_scores_is_the_expected_auc() {
    // When the calibrated probabilities are the truth, the expected AUC over many labelings
    // is close to the estimate: draw labels from the probabilities and average the realized
    // AUC.
    let n = 4000;
    let scores: Vec<f64> = (0..n).map(|i| (i as f64 + 0.5) / n as f64).collect();
    let estimated = estimate_roc_auc(&scores, &scores).unwrap().unwrap();
    let mut state = 7u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut total = 0.0;
    let draws = 50;
    for _ in 0..draws {
        let labels: Vec<f64> = scores.iter().map(|p| f64::from(next() < *p)).collect();
        total += ScoredSamples::new(&labels, &scores, None)
            .unwrap()
            .roc_auc()
            .unwrap();
    }
    let realized = total / draws as f64;
    assert!(
        (estimated - realized).abs() < 0.005,
        "{estimated} vs {realized}"
    );
}
