//! Metrics agree with scikit-learn to 1e-9 on the fixture written by
//! `scripts/fixtures/sklearn_metrics.py` (WDBC scored by a fixed scorer, and seeded random
//! cases with ties, weights, zero weights and clipped probabilities).

use mlops_core::metrics::{
    bootstrap_ci, BootstrapConfig, Metric, ScoredSamples, ThresholdCriterion,
};
use mlops_core::{read_csv_columns_path, CsvOptions};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    sklearn: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    labels: Vec<f64>,
    scores: Vec<f64>,
    weights: Option<Vec<f64>>,
    threshold: f64,
    expected: Expected,
}

#[derive(Deserialize)]
struct Expected {
    roc_auc: Option<f64>,
    average_precision: Option<f64>,
    log_loss: Option<f64>,
    brier: Option<f64>,
    accuracy: f64,
    precision: f64,
    recall: f64,
    f1: f64,
    f2: f64,
    specificity: f64,
    confusion: Confusion,
    best_f1: Option<Best>,
    best_youden: Option<Best>,
}

#[derive(Deserialize)]
struct Confusion {
    tp: f64,
    fp: f64,
    tn: f64,
    #[serde(rename = "fn")]
    fn_: f64,
}

#[derive(Deserialize)]
struct Best {
    threshold: Option<f64>,
    value: f64,
}

const TOL: f64 = 1e-9;

fn close(case: &str, what: &str, ours: f64, theirs: f64) {
    let scale = theirs.abs().max(1.0);
    assert!(
        (ours - theirs).abs() <= TOL * scale,
        "{case}: {what} = {ours:.17} but scikit-learn gives {theirs:.17}"
    );
}

fn fixture() -> Fixture {
    let text = include_str!("fixtures/sklearn_metrics.json");
    serde_json::from_str(text).expect("fixture parses")
}

/// Whether `e` is the undefined-metric error (not any other failure).
fn undefined(e: &mlops_core::Error) -> bool {
    matches!(e, mlops_core::Error::UndefinedMetric { .. })
}

fn check_optional(case: &str, what: &str, ours: mlops_core::Result<f64>, theirs: Option<f64>) {
    match (ours, theirs) {
        (Ok(a), Some(b)) => close(case, what, a, b),
        (Err(e), None) if undefined(&e) => {}
        (Err(e), None) => panic!("{case}: {what} failed with {e:?}, not as an undefined metric"),
        (Ok(a), None) => panic!("{case}: {what} = {a} but scikit-learn finds it undefined"),
        (Err(e), Some(b)) => panic!("{case}: {what} failed ({e}) but scikit-learn gives {b}"),
    }
}

#[test]
fn every_metric_matches_scikit_learn() {
    let fx = fixture();
    assert!(fx.cases.len() > 40, "fixture has {} cases", fx.cases.len());
    eprintln!("fixture generated with scikit-learn {}", fx.sklearn);
    for c in &fx.cases {
        let s = ScoredSamples::new(&c.labels, &c.scores, c.weights.as_deref()).unwrap();
        let e = &c.expected;
        let n = c.name.as_str();
        check_optional(n, "roc_auc", s.roc_auc(), e.roc_auc);
        check_optional(
            n,
            "average_precision",
            s.average_precision(),
            e.average_precision,
        );
        check_optional(n, "log_loss", s.log_loss(), e.log_loss);
        check_optional(n, "brier", s.brier(), e.brier);
        let cm = s.confusion(c.threshold);
        close(n, "accuracy", cm.accuracy(), e.accuracy);
        close(n, "precision", cm.precision(), e.precision);
        close(n, "recall", cm.recall(), e.recall);
        close(n, "f1", cm.f1(), e.f1);
        close(n, "f2", cm.f_beta(2.0), e.f2);
        close(n, "specificity", cm.specificity(), e.specificity);
        close(n, "tp", cm.tp, e.confusion.tp);
        close(n, "fp", cm.fp, e.confusion.fp);
        close(n, "tn", cm.tn, e.confusion.tn);
        close(n, "fn", cm.fn_, e.confusion.fn_);
        // The metrics by name (what gates and the bootstrap use) against scikit-learn too.
        for (m, theirs) in [
            (Metric::Accuracy, e.accuracy),
            (Metric::F1, e.f1),
            (Metric::Specificity, e.specificity),
            (Metric::Precision, e.precision),
            (Metric::Recall, e.recall),
        ] {
            close(n, m.name(), m.compute(&s, c.threshold).unwrap(), theirs);
        }
        check_optional(
            n,
            "Metric::RocAuc",
            Metric::RocAuc.compute(&s, c.threshold),
            e.roc_auc,
        );
        match (
            &e.best_f1,
            s.best_threshold(ThresholdCriterion::FBeta { beta: 1.0 }),
        ) {
            (Some(b), Ok(ours)) => {
                close(n, "best f1 value", ours.value, b.value);
                close(n, "best f1 threshold", ours.threshold, b.threshold.unwrap());
            }
            (None, Err(e)) if undefined(&e) => {}
            (b, ours) => panic!(
                "{n}: best f1 {:?} vs scikit-learn {:?}",
                ours.ok(),
                b.as_ref().map(|b| b.value)
            ),
        }
        match (
            &e.best_youden,
            s.best_threshold(ThresholdCriterion::YoudenJ),
        ) {
            (Some(b), Ok(ours)) => {
                close(n, "best Youden J", ours.value, b.value);
                // The threshold too: scikit-learn's roc_curve point with the first maximum J.
                if let Some(t) = b.threshold {
                    close(n, "best Youden threshold", ours.threshold, t);
                }
            }
            (None, Err(e)) if undefined(&e) => {}
            (b, ours) => panic!(
                "{n}: best Youden {:?} vs scikit-learn {:?}",
                ours.map(|o| o.value),
                b.as_ref().map(|b| b.value)
            ),
        }
        // The report: defined exactly when ROC AUC is (both classes), else the undefined error.
        match (s.report(c.threshold), e.roc_auc) {
            (Ok(report), Some(auc)) => {
                close(n, "report.roc_auc", report.roc_auc, auc);
                close(n, "report.f1", report.f1, e.f1);
                assert_eq!(
                    report.log_loss.is_some(),
                    e.log_loss.is_some(),
                    "{n}: report.log_loss"
                );
                if let (Some(ours), Some(theirs)) = (report.log_loss, e.log_loss) {
                    close(n, "report.log_loss", ours, theirs);
                }
            }
            (Err(err), None) if undefined(&err) => {}
            (ours, theirs) => panic!("{n}: report {ours:?} but scikit-learn roc_auc {theirs:?}"),
        }
    }
}

/// The WDBC scores in the fixture are the fixed scorer applied to the committed copy of the
/// data: recompute them in Rust from `data/breast_cancer_wdbc.csv`.
#[test]
fn wdbc_fixture_scores_come_from_the_committed_data() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/breast_cancer_wdbc.csv"
    );
    let cols = read_csv_columns_path(
        path,
        &[
            "target",
            "worst_radius",
            "worst_concave_points",
            "worst_texture",
        ],
        &CsvOptions::default(),
    )
    .unwrap();
    let scores: Vec<f64> = (0..cols[0].len())
        .map(|i| {
            let logit = 10.0 - 0.35 * cols[1][i] - 20.0 * cols[2][i] - 0.05 * cols[3][i];
            1.0 / (1.0 + (-logit).exp())
        })
        .collect();
    let fx = fixture();
    let wdbc = fx.cases.iter().find(|c| c.name == "wdbc").unwrap();
    assert_eq!(wdbc.labels, cols[0]);
    for (i, (a, b)) in scores.iter().zip(&wdbc.scores).enumerate() {
        assert!((a - b).abs() <= 1e-15, "row {i}: {a} vs {b}");
    }
    let s = ScoredSamples::new(&cols[0], &scores, None).unwrap();
    close(
        "wdbc (recomputed)",
        "roc_auc",
        s.roc_auc().unwrap(),
        wdbc.expected.roc_auc.unwrap(),
    );
}

#[test]
fn bootstrap_is_seeded_and_brackets_the_estimate() {
    let fx = fixture();
    let wdbc = fx.cases.iter().find(|c| c.name == "wdbc").unwrap();
    let s = ScoredSamples::new(&wdbc.labels, &wdbc.scores, None).unwrap();
    let cfg = BootstrapConfig {
        n_resamples: 300,
        confidence: 0.9,
        seed: 7,
    };
    let a = bootstrap_ci(&s, &cfg, |r| r.roc_auc()).unwrap();
    let b = bootstrap_ci(&s, &cfg, |r| r.roc_auc()).unwrap();
    assert_eq!(a, b, "same seed, same interval");
    assert!(a.lower < a.estimate && a.estimate < a.upper, "{a:?}");
    assert!(a.upper <= 1.0 && a.lower > 0.95, "{a:?}");
    assert_eq!(a.resamples_used, 300);
    let c = bootstrap_ci(&s, &BootstrapConfig { seed: 8, ..cfg }, |r| r.roc_auc()).unwrap();
    assert_ne!(a, c, "another seed, another interval");
    let wider = bootstrap_ci(
        &s,
        &BootstrapConfig {
            confidence: 0.99,
            ..cfg
        },
        |r| r.roc_auc(),
    )
    .unwrap();
    assert!(wider.lower <= a.lower && wider.upper >= a.upper);
    // Any metric, through Metric::compute.
    let f1 = bootstrap_ci(&s, &cfg, |r| Metric::F1.compute(r, 0.5)).unwrap();
    close(
        "wdbc",
        "bootstrap f1 estimate",
        f1.estimate,
        wdbc.expected.f1,
    );
    // Bad configs are refused with the field named.
    let err = bootstrap_ci(
        &s,
        &BootstrapConfig {
            confidence: 1.5,
            ..cfg
        },
        |r| r.roc_auc(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("BootstrapConfig.confidence"),
        "{err}"
    );
}

#[test]
fn bootstrap_of_a_metric_undefined_on_most_resamples_is_an_error() {
    // One positive among 40 rows: a resample holds it twice or more only about a quarter of
    // the time, so a metric that needs two positives is undefined on most resamples.
    let mut labels = vec![0.0; 40];
    labels[3] = 1.0;
    let scores: Vec<f64> = (0..40).map(|i| i as f64 / 40.0).collect();
    let s = ScoredSamples::new(&labels, &scores, None).unwrap();
    let needs_two_positives = |r: &ScoredSamples| {
        if r.positive_weight() < 2.0 {
            Err(mlops_core::Error::UndefinedMetric {
                metric: "test metric".into(),
                reason: "fewer than two positives".into(),
            })
        } else {
            r.roc_auc()
        }
    };
    let err = bootstrap_ci(&s, &BootstrapConfig::default(), needs_two_positives);
    // The estimate on the full sample is itself undefined: the error says so.
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("fewer than two positives"));
    // Defined on the full sample, undefined on every resample: refused, with the count.
    let calls = std::cell::Cell::new(0);
    let err = bootstrap_ci(&s, &BootstrapConfig::default(), |r| {
        calls.set(calls.get() + 1);
        if calls.get() == 1 {
            r.roc_auc()
        } else {
            needs_two_positives(r).and(Err(mlops_core::Error::UndefinedMetric {
                metric: "m".into(),
                reason: "r".into(),
            }))
        }
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("only 0 of 1000 resamples"),
        "{err}"
    );
    // ROC AUC alone is defined on about 63% of resamples: an interval, with the count used.
    let ci = bootstrap_ci(&s, &BootstrapConfig::default(), |r| r.roc_auc()).unwrap();
    assert!(
        ci.resamples_used > 500 && ci.resamples_used < 1000,
        "{ci:?}"
    );
}
