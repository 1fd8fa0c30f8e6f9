//! Fairness metrics agree with fairlearn 0.15 and aif360 0.6 to 1e-12 on the fixture written
//! by `scripts/fixtures/fairness_refs.py` (weights, 3 and 5 groups, intersections of two
//! columns, a group without positive labels, a one-row group). Fairlearn's numbers are matched
//! in `zero_when_undefined` mode; the default says "undefined" exactly where fairlearn
//! reports a 0 it had no rows for, and aif360 a NaN.

use mlops_core::fairness::{
    measure, Aggregate, Disparity, DisparitySpec, FairnessData, GroupMetric, Method, MetricFrame,
    SensitiveGroups,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    fairlearn: String,
    aif360: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    threshold: f64,
    y_true: Vec<f64>,
    y_score: Vec<f64>,
    y_pred: Vec<f64>,
    sample_weight: Option<Vec<f64>>,
    sensitive: Vec<Column>,
    reference: Vec<String>,
    by_group: Vec<Group>,
    overall: Rates,
    fairlearn: Vec<FairlearnValue>,
    aif360: Vec<AifValue>,
}

#[derive(Deserialize)]
struct Column {
    name: String,
    values: Vec<String>,
}

#[derive(Deserialize)]
struct Group {
    key: Vec<String>,
    count: usize,
    #[serde(flatten)]
    rates: Rates,
}

#[derive(Deserialize)]
struct Rates {
    selection_rate: f64,
    true_positive_rate: f64,
    false_positive_rate: f64,
    precision: f64,
    accuracy: f64,
    roc_auc: Option<f64>,
}

impl Rates {
    fn get(&self, m: GroupMetric) -> Option<f64> {
        match m {
            GroupMetric::SelectionRate => Some(self.selection_rate),
            GroupMetric::TruePositiveRate => Some(self.true_positive_rate),
            GroupMetric::FalsePositiveRate => Some(self.false_positive_rate),
            GroupMetric::Precision => Some(self.precision),
            GroupMetric::Accuracy => Some(self.accuracy),
            GroupMetric::RocAuc => self.roc_auc,
        }
    }
}

#[derive(Deserialize)]
struct FairlearnValue {
    measure: Disparity,
    method: Method,
    agg: Option<Aggregate>,
    value: Option<f64>,
}

#[derive(Deserialize)]
struct AifValue {
    key: Vec<String>,
    statistical_parity_difference: Option<f64>,
    disparate_impact: Option<f64>,
    average_odds_difference: Option<f64>,
}

const TOL: f64 = 1e-12;

fn fixture() -> Fixture {
    let text = include_str!("fixtures/fairness.json");
    let f: Fixture = serde_json::from_str(text).expect("fixture parses");
    assert_eq!(f.fairlearn, "0.15.0");
    assert!(f.aif360.starts_with("0.6"), "{}", f.aif360);
    f
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= TOL * b.abs().max(1.0),
        "{what}: ours {a} vs reference {b}"
    );
}

fn groups(case: &Case) -> SensitiveGroups {
    let cols: Vec<(&str, &[String])> = case
        .sensitive
        .iter()
        .map(|c| (c.name.as_str(), c.values.as_slice()))
        .collect();
    SensitiveGroups::new(&cols).expect("groups")
}

fn data(case: &Case) -> FairnessData {
    FairnessData::from_scores(
        &case.y_true,
        &case.y_score,
        case.threshold,
        case.sample_weight.as_deref(),
        groups(case),
    )
    .expect("data")
}

#[test]
fn metric_frame_matches_fairlearn_by_group_and_overall() {
    for case in fixture().cases {
        let d = data(&case);
        let compat = MetricFrame::new(&d, true);
        let strict = MetricFrame::new(&d, false);
        assert_eq!(compat.by_group.len(), case.by_group.len(), "{}", case.name);
        for ((ours, theirs), strict) in compat
            .by_group
            .iter()
            .zip(&case.by_group)
            .zip(&strict.by_group)
        {
            assert_eq!(ours.key, theirs.key, "{}: group order", case.name);
            assert_eq!(ours.rows, theirs.count, "{} {}", case.name, ours.group);
            for m in GroupMetric::ALL {
                let what = format!("{} group {} {m}", case.name, ours.group);
                match (ours.get(m), theirs.rates.get(m)) {
                    (Some(a), Some(b)) => close(a, b, &what),
                    (None, None) => {}
                    (a, b) => panic!("{what}: ours {a:?} vs reference {b:?}"),
                }
                // Strict mode: undefined exactly where the denominator has no rows.
                let empty = match m {
                    GroupMetric::TruePositiveRate => ours.positives == 0,
                    GroupMetric::FalsePositiveRate => ours.negatives == 0,
                    GroupMetric::Precision => ours.confusion.tp + ours.confusion.fp == 0.0,
                    _ => false,
                };
                if m != GroupMetric::RocAuc {
                    assert_eq!(strict.get_or_none(m).is_none(), empty, "{what} (strict)");
                    if empty {
                        assert_eq!(ours.get(m), Some(0.0), "{what}: fairlearn's 0");
                    }
                }
            }
        }
        for m in GroupMetric::ALL {
            let b = case.overall.get(m).expect("overall defined");
            close(
                compat.overall.get(m).expect("ours"),
                b,
                &format!("{} overall {m}", case.name),
            );
        }
    }
}

trait GetOrNone {
    fn get_or_none(&self, m: GroupMetric) -> Option<f64>;
}

impl GetOrNone for mlops_core::fairness::GroupMetrics {
    fn get_or_none(&self, m: GroupMetric) -> Option<f64> {
        let v = self.get(m);
        assert_eq!(
            v.is_none(),
            self.undefined.contains_key(m.name()),
            "{} {m}: reason",
            self.group
        );
        v
    }
}

#[test]
fn fairlearn_disparities_match_in_compatibility_mode_and_strict_mode_names_the_group() {
    let mut undefined_seen = 0;
    for case in fixture().cases {
        let d = data(&case);
        let by_decisions = FairnessData::from_predictions(
            &case.y_true,
            &case.y_pred,
            case.sample_weight.as_deref(),
            groups(&case),
        )
        .unwrap();
        for v in &case.fairlearn {
            let mut spec = DisparitySpec::new(v.measure).method(v.method);
            if let Some(agg) = v.agg {
                spec = spec.agg(agg);
            }
            let what = format!("{} {spec}", case.name);
            let expected = v
                .value
                .unwrap_or_else(|| panic!("{what}: fixture has a null"));
            let ours = measure(&d, &spec, true).unwrap_or_else(|e| panic!("{what}: {e}"));
            close(ours.value, expected, &what);
            let again = measure(&by_decisions, &spec, true).unwrap();
            assert_eq!(again.value, ours.value, "{what}: from decisions");
            // Strict: the same number unless a group lacks the rows of a rate the measure reads.
            let frame = MetricFrame::new(&d, false);
            let missing = frame
                .by_group
                .iter()
                .find(|g| v.measure.metrics().iter().any(|&m| g.get(m).is_none()));
            let no_fpr = frame
                .by_group
                .iter()
                .all(|g| g.false_positive_rate == Some(0.0));
            match (measure(&d, &spec, false), missing) {
                // Every group's false positive rate is 0: equal groups, a ratio of 1 here;
                // fairlearn leaves that part out (0 / 0), which changes only the mean.
                (Ok(s), None) if no_fpr && v.measure == Disparity::EqualizedOddsRatio => {
                    let tpr = measure(
                        &d,
                        &DisparitySpec::new(Disparity::EqualOpportunityRatio).method(v.method),
                        false,
                    )
                    .unwrap()
                    .value;
                    let want = if v.agg == Some(Aggregate::Mean) {
                        (tpr + 1.0) / 2.0
                    } else {
                        tpr
                    };
                    close(s.value, want, &format!("{what} (strict, every FPR 0)"));
                    undefined_seen += 1;
                }
                (Ok(s), None) => assert_eq!(s.value, ours.value, "{what}"),
                (Err(e), Some(g)) => {
                    undefined_seen += 1;
                    let msg = e.to_string();
                    assert!(msg.contains(&format!("group {}", g.group)), "{what}: {msg}");
                    assert!(
                        msg.contains("no positive labels") || msg.contains("no negative labels"),
                        "{what}: {msg}"
                    );
                }
                (s, g) => panic!(
                    "{what}: strict {s:?} with undefined group {:?}",
                    g.map(|g| &g.group)
                ),
            }
        }
    }
    assert!(
        undefined_seen >= 2,
        "the fixture exercises undefined rates ({undefined_seen})"
    );
}

#[test]
fn aif360_signed_measures_match_against_the_reference_group() {
    let mut compared = 0;
    let mut nan_seen = 0;
    for case in fixture().cases {
        let d = data(&case);
        for (measure_kind, pick) in [
            (Disparity::StatisticalParityDifference, 0),
            (Disparity::DisparateImpact, 1),
            (Disparity::AverageOddsDifference, 2),
        ] {
            let spec = DisparitySpec::new(measure_kind).reference(case.reference.clone());
            let what = format!("{} {spec}", case.name);
            let expected: Vec<(String, Option<f64>)> = case
                .aif360
                .iter()
                .map(|a| {
                    let name = d
                        .groups()
                        .name(d.groups().find(&a.key).expect("group in data"));
                    let v = [
                        a.statistical_parity_difference,
                        a.disparate_impact,
                        a.average_odds_difference,
                    ][pick];
                    (name, v)
                })
                .collect();
            match measure(&d, &spec, false) {
                Ok(ours) => {
                    assert_eq!(ours.per_group.len(), expected.len(), "{what}");
                    for ((g, v), (eg, ev)) in ours.per_group.iter().zip(&expected) {
                        assert_eq!(g, eg, "{what}");
                        close(
                            *v,
                            ev.unwrap_or_else(|| panic!("{what} {g}: aif360 NaN, ours {v}")),
                            &format!("{what} {g}"),
                        );
                        compared += 1;
                    }
                    // The reported value is the group farthest from fair, with its sign.
                    let worst = ours
                        .per_group
                        .iter()
                        .map(|(_, v)| measure_kind.unfairness(*v))
                        .fold(0.0, f64::max);
                    assert_eq!(measure_kind.unfairness(ours.value), worst, "{what}");
                    assert_eq!(
                        ours.worst.second,
                        d.groups().name(d.groups().find(&case.reference).unwrap())
                    );
                }
                Err(e) => {
                    // Only where aif360 gives NaN for some group.
                    let nan: Vec<&String> = expected
                        .iter()
                        .filter(|(_, v)| v.is_none())
                        .map(|(g, _)| g)
                        .collect();
                    assert!(
                        !nan.is_empty(),
                        "{what}: ours failed ({e}) where aif360 has numbers"
                    );
                    assert!(e.to_string().contains(nan[0].as_str()), "{what}: {e}");
                    nan_seen += 1;
                }
            }
        }
    }
    assert!(compared >= 30, "{compared} values compared");
    assert!(nan_seen >= 2, "the fixture has aif360 NaNs ({nan_seen})");
}
