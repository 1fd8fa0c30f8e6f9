//! The `fairness` canary check: labeled rows keep their sensitive group (a model input named in
//! the config, or the request's group), and a candidate that selects one group more than
//! stable does fails; an A/A passes; too few rows or no groups are inconclusive, never a pass.

use std::sync::Arc;

use mlops_core::fairness::{Disparity, DisparitySpec};
use mlops_core::model::{Activation, LayerSpec, ModelArtifact, ModelSpec, Predictor};
use mlops_serve::analysis::{Check, Outcome};
use mlops_serve::router::{Request, Router, RouterConfig, RouterOptions, Routes, Variant};
use mlops_serve::step_stats::{StatsConfig, NO_GROUP};
use mlops_serve::{CompiledModel, NonFinitePolicy};
use ndarray::Array2;

/// Inputs `x` and `region` (0 or 1), scored `sigmoid(4x + bias_region * region)`.
fn model(bias_region: f32) -> Arc<dyn Predictor> {
    let spec = ModelSpec::new(
        vec!["x".into(), "region".into()],
        vec![LayerSpec::new(1, Activation::Sigmoid)],
    );
    let a = ModelArtifact::new(
        spec,
        vec![(
            ndarray::array![[4.0_f32, bias_region]],
            ndarray::array![0.0_f32],
        )],
    )
    .unwrap();
    Arc::new(CompiledModel::compile(&a, NonFinitePolicy::Reject).unwrap())
}

fn router(candidate_bias: f32, stats: StatsConfig) -> Router {
    let routes = Routes {
        variants: vec![
            Variant::new("canary", Some(2), model(candidate_bias)),
            Variant::new("stable", Some(1), model(0.0)),
        ],
        weights: vec![("canary".into(), 50.0), ("stable".into(), 50.0)],
        shadow: None,
    };
    let config = RouterConfig {
        stats,
        ..RouterConfig::default()
    }
    .check()
    .unwrap();
    Router::new(
        "fraud",
        routes,
        RouterOptions {
            config,
            ..RouterOptions::default()
        },
    )
    .unwrap()
}

fn by_feature() -> StatsConfig {
    StatsConfig {
        group_feature: Some("region".into()),
        ..StatsConfig::default()
    }
}

/// `n` one-row requests to each variant, then their labels: x spread over [-1, 1], the label
/// `x > 0` (a tenth flipped), region alternating; `group` given per request when asked.
fn serve(router: &Router, n: usize, group_parameter: bool) {
    serve_each(router, [n, n], group_parameter);
}

/// `n[0]` requests to the canary and `n[1]` to stable, each variant's x spread on its own
/// grid.
fn serve_each(router: &Router, n: [usize; 2], group_parameter: bool) {
    for (variant, n) in ["canary", "stable"].into_iter().zip(n) {
        for i in 0..n {
            let x = -1.0 + 2.0 * ((i * 7919) % n) as f32 / n as f32;
            let region = (i % 2) as f32;
            let id = format!("{variant}-{i}");
            let group = if region == 0.0 { "north" } else { "south" };
            let request = Request {
                key: None,
                force: Some(variant),
                request_id: Some(&id),
                group: group_parameter.then_some(group),
            };
            let mut out = [0.0_f32];
            let row = Array2::from_shape_vec((1, 2), vec![x, region]).unwrap();
            router.route(&request, row.view(), &mut out).unwrap();
            let label = f64::from(u8::from((x > 0.0) != (i % 10 == 3)));
            assert!(router.feedback(&id, &[label]).unwrap());
        }
    }
}

fn check(measure: Disparity) -> Check {
    let c = Check::Fairness {
        disparity: DisparitySpec::new(measure),
        // 2,000 rows a group and variant: the A/A's difference band is about ±0.025.
        max_increase: 0.05,
        confidence: 0.95,
        min_group_size: 30,
        resamples: 500,
    };
    c.validate("checks[0]").unwrap();
    c
}

fn evaluate(router: &Router, check: &Check) -> mlops_serve::analysis::CheckResult {
    let snap = router.snapshot();
    check.evaluate(snap.get("canary").unwrap(), snap.get("stable").unwrap(), 1)
}

#[test]
fn a_candidate_that_favours_one_group_fails_and_an_aa_passes() {
    let unfair = router(1.5, by_feature());
    serve(&unfair, 4000, false);
    let snap = unfair.snapshot();
    let canary = snap.get("canary").unwrap();
    assert_eq!(canary.label_groups.len(), canary.labels.len());
    assert_eq!(canary.group_names.len(), 2);
    let r = evaluate(&unfair, &check(Disparity::DemographicParityDifference));
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.reason);
    assert!(r.reason.contains("worst pair"), "{}", r.reason);
    let (lo, _) = r.interval.unwrap();
    assert!(lo > 0.05, "{r:?}");
    // The same models on equalized odds: the candidate's bias moves TPR and FPR apart too.
    let eo = evaluate(&unfair, &check(Disparity::EqualizedOddsDifference));
    assert_eq!(eo.outcome, Outcome::Fail, "{}", eo.reason);

    // An A/A on unequal traffic (a quarter of stable's on the canary, other rows): a spread
    // over groups reads higher on fewer rows, which the check must not take for unfairness.
    let same = router(0.0, by_feature());
    serve_each(&same, [1500, 6000], false);
    for measure in [
        Disparity::DemographicParityDifference,
        Disparity::EqualizedOddsDifference,
    ] {
        let r = evaluate(&same, &check(measure));
        assert_eq!(r.outcome, Outcome::Pass, "{measure}: {}", r.reason);
        assert!(r.statistic.unwrap().abs() < 0.02, "{r:?}");
    }
}

#[test]
fn the_request_group_works_where_no_feature_is_named() {
    let unfair = router(1.5, StatsConfig::default());
    serve(&unfair, 4000, true);
    let snap = unfair.snapshot();
    assert_eq!(
        snap.get("stable").unwrap().group_names,
        vec!["north", "south"]
    );
    let r = evaluate(&unfair, &check(Disparity::DemographicParityDifference));
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.reason);
}

#[test]
fn few_rows_or_no_groups_are_inconclusive() {
    let small = router(1.5, by_feature());
    serve(&small, 40, false);
    let r = evaluate(&small, &check(Disparity::EqualOpportunityDifference));
    assert_eq!(r.outcome, Outcome::Inconclusive, "{}", r.reason);
    assert!(r.reason.contains("below the minimum"), "{}", r.reason);
    let none = router(1.5, StatsConfig::default());
    serve(&none, 400, false);
    let r = evaluate(&none, &check(Disparity::DemographicParityDifference));
    assert_eq!(r.outcome, Outcome::Inconclusive);
    assert!(r.reason.contains("group_feature"), "{}", r.reason);
}

#[test]
fn the_group_table_is_bounded_and_a_bad_feature_is_refused() {
    let r = router(
        0.0,
        StatsConfig {
            max_groups: 2,
            ..StatsConfig::default()
        },
    );
    for (i, g) in ["a", "b", "c", "d", "a"].iter().enumerate() {
        let id = format!("r{i}");
        let request = Request {
            key: None,
            force: Some("stable"),
            request_id: Some(&id),
            group: Some(g),
        };
        let mut out = [0.0_f32];
        r.route(&request, Array2::zeros((1, 2)).view(), &mut out)
            .unwrap();
        r.feedback(&id, &[1.0]).unwrap();
    }
    assert_eq!(r.group_overflow(), 2);
    let snap = r.snapshot();
    let stable = snap.get("stable").unwrap();
    assert_eq!(stable.label_groups, vec![0, 1, NO_GROUP, NO_GROUP, 0]);
    assert_eq!(stable.group_names, vec!["a", "b"]);
    // A feature the model does not have, a table too large, a check out of range.
    let routes = Routes {
        variants: vec![Variant::new("stable", Some(1), model(0.0))],
        weights: vec![("stable".into(), 100.0)],
        shadow: None,
    };
    let config = RouterConfig {
        stats: StatsConfig {
            group_feature: Some("zip".into()),
            ..StatsConfig::default()
        },
        ..RouterConfig::default()
    }
    .check()
    .unwrap();
    let e = Router::new(
        "fraud",
        routes,
        RouterOptions {
            config,
            ..RouterOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("group_feature") && e.to_string().contains("region"),
        "{e}"
    );
    assert!(RouterConfig {
        stats: StatsConfig {
            max_groups: 5000,
            ..StatsConfig::default()
        },
        ..RouterConfig::default()
    }
    .check()
    .is_err());
    let bad = Check::Fairness {
        disparity: DisparitySpec::new(Disparity::DisparateImpact),
        max_increase: 0.02,
        confidence: 0.95,
        min_group_size: 30,
        resamples: 500,
    };
    assert!(bad
        .validate("checks[0]")
        .unwrap_err()
        .to_string()
        .contains("checks[0].disparity.reference"));
    let json: Check = serde_json::from_str(
        r#"{"kind": "fairness", "disparity": {"measure": "equalized_odds_difference", "agg": "mean"}}"#,
    )
    .unwrap();
    json.validate("checks[0]").unwrap();
    assert!(serde_json::from_str::<Check>(r#"{"kind": "fairness", "disparity": {"measure": "equalized_odds_difference"}, "resamples": 10}"#)
        .unwrap()
        .validate("c")
        .is_err());
}

#[cfg(feature = "http")]
#[test]
fn the_v2_request_group_is_a_checked_string_parameter() {
    use mlops_serve::http::protocol::decode_request;
    let body = |group: &str| {
        format!(
            r#"{{"id": "r1", "parameters": {{"group": {group}}}, "inputs": [{{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 1]}}]}}"#
        )
    };
    let ok = decode_request(body(r#""south""#).as_bytes(), None).unwrap();
    assert_eq!(ok.group.as_deref(), Some("south"));
    let none = decode_request(body("null").as_bytes(), None).unwrap();
    assert_eq!(none.group, None);
    for (bad, says) in [
        ("3", "expected a string"),
        (r#""a\"b""#, "quote"),
        (r#""a\nb""#, "control"),
        (r#"" north""#, "spaces around"),
        (r#""a\u2028b""#, "formatting"),
        (r#""""#, "empty"),
    ] {
        let e = decode_request(body(bad).as_bytes(), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("parameters.group") && e.contains(says),
            "{bad}: {e}"
        );
    }
    let long = format!("\"{}\"", "x".repeat(300));
    let e = decode_request(body(&long).as_bytes(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("300 bytes"), "{e}");
}

#[cfg(not(feature = "http"))]
#[test]
#[ignore = "left out: the V2 request's group needs --features http (mlops-serve) or mlops/http"]
fn the_v2_request_group_is_a_checked_string_parameter() {}

#[test]
fn rows_without_a_group_make_the_check_inconclusive_never_a_pass() {
    // Three groups through a table of two: the third group's rows have none. Judged on the
    // other two, the candidate (which favours the third) would pass.
    let r = router(
        3.0,
        StatsConfig {
            max_groups: 2,
            ..StatsConfig::default()
        },
    );
    for variant in ["canary", "stable"] {
        for i in 0..3000 {
            let id = format!("{variant}-{i}");
            let group = ["a", "b", "c"][i % 3];
            let request = Request {
                key: None,
                force: Some(variant),
                request_id: Some(&id),
                group: Some(group),
            };
            let x = -1.0 + 2.0 * ((i * 7919) % 3000) as f32 / 3000.0;
            let row =
                Array2::from_shape_vec((1, 2), vec![x, f32::from(u8::from(group == "c"))]).unwrap();
            r.route(&request, row.view(), &mut [0.0]).unwrap();
            r.feedback(&id, &[f64::from(u8::from(x > 0.0))]).unwrap();
        }
    }
    let out = evaluate(&r, &check(Disparity::DemographicParityDifference));
    assert_eq!(out.outcome, Outcome::Inconclusive, "{}", out.reason);
    assert!(
        out.reason.contains("have no sensitive group"),
        "{}",
        out.reason
    );
}

#[test]
fn requests_never_labeled_take_no_place_and_a_new_step_starts_a_new_table() {
    let r = router(
        0.0,
        StatsConfig {
            max_groups: 2,
            ..StatsConfig::default()
        },
    );
    // A flood of distinct groups whose labels never come: no place taken.
    for i in 0..100 {
        let (id, group) = (format!("junk-{i}"), format!("junk{i}"));
        let request = Request {
            key: None,
            force: Some("stable"),
            request_id: Some(&id),
            group: Some(&group),
        };
        r.route(&request, Array2::zeros((1, 2)).view(), &mut [0.0])
            .unwrap();
    }
    let label = |id: &str, group: &str| {
        let request = Request {
            key: None,
            force: Some("stable"),
            request_id: Some(id),
            group: Some(group),
        };
        r.route(&request, Array2::zeros((1, 2)).view(), &mut [0.0])
            .unwrap();
        r.feedback(id, &[1.0]).unwrap();
    };
    label("r1", "north");
    label("r2", "south");
    assert_eq!(r.group_overflow(), 0);
    assert_eq!(
        r.snapshot().get("stable").unwrap().group_names,
        vec!["north", "south"]
    );
    label("r3", "east");
    assert_eq!(r.group_overflow(), 1);
    // The next step's table is empty again: east gets a place.
    r.install(r.routes()).unwrap();
    label("r4", "east");
    assert_eq!(
        r.snapshot().get("stable").unwrap().group_names,
        vec!["east"]
    );
}

#[test]
fn a_group_feature_of_minus_zero_is_the_group_zero() {
    let r = router(0.0, by_feature());
    for (i, region) in [0.0_f32, -0.0, 1.0, f32::NAN].into_iter().enumerate() {
        let id = format!("z{i}");
        let request = Request {
            key: None,
            force: Some("stable"),
            request_id: Some(&id),
            group: None,
        };
        let row = Array2::from_shape_vec((1, 2), vec![0.5, region]).unwrap();
        // NaN input: the model refuses it (NonFinitePolicy::Reject), so no labels join.
        if r.route(&request, row.view(), &mut [0.0]).is_ok() {
            r.feedback(&id, &[1.0]).unwrap();
        }
    }
    let snap = r.snapshot();
    let stable = snap.get("stable").unwrap();
    assert_eq!(stable.group_names, vec!["0", "1"]);
    assert_eq!(stable.label_groups, vec![0, 0, 1]);
}
