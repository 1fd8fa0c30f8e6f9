//! Multiple-testing corrections and two-proportion z-tests against statsmodels, on the
//! fixture written by `scripts/fixtures/statsmodels_refs.py` (families with ties, zeros and
//! ones); the conventions no library defines are checked on hand-worked cases, and the MMD
//! permutation p-value against the exact permutation distribution of a tiny sample.

use mlops_drift::stats::{
    hellinger, kl_divergence, mmd_rbf, null_rate_test, proportion_confint_wilson,
    proportions_ztest, psi, total_variation,
};
use mlops_drift::Correction;
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/statsmodels.json")).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(what: &str, ours: f64, theirs: f64, rel: f64) {
    let ok = (ours - theirs).abs() <= rel * theirs.abs().max(1e-300) || ours == theirs;
    assert!(ok, "{what}: ours {ours:e}, statsmodels {theirs:e}");
}

#[test]
fn every_correction_matches_statsmodels_multipletests() {
    let fx = fixture();
    let cases = fx["multipletests"].as_array().unwrap();
    assert!(cases.len() >= 9);
    for (k, c) in cases.iter().enumerate() {
        let p = floats(&c["pvalues"]);
        for (method, key) in [
            (Correction::Bonferroni, "bonferroni"),
            (Correction::Holm, "holm"),
            (Correction::BenjaminiHochberg, "benjamini_hochberg"),
            (Correction::BenjaminiYekutieli, "benjamini_yekutieli"),
        ] {
            let ours = method.adjust(&p);
            let theirs = floats(&c[key]);
            assert_eq!(ours.len(), theirs.len());
            for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                close(&format!("case {k} {key}[{i}]"), *a, *b, 1e-12);
            }
        }
        assert_eq!(Correction::None.adjust(&p), p, "case {k}: none");
    }
}

/// Wilson intervals at 0 and `n` successes, a single trial, a large and a tiny share, and
/// confidences from 0.5 to 0.999; bad input refused by name.
#[test]
fn wilson_intervals_match_statsmodels_proportion_confint() {
    let fx = fixture();
    let cases = fx["proportion_confint_wilson"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for (k, c) in cases.iter().enumerate() {
        let f = |key: &str| c[key].as_f64().unwrap();
        let (low, high) =
            proportion_confint_wilson(f("successes"), f("n"), f("confidence")).unwrap();
        for (what, ours, theirs) in [("low", low, f("low")), ("high", high, f("high"))] {
            assert!(
                (ours - theirs).abs() <= 1e-12,
                "case {k} {what}: ours {ours:e}, statsmodels {theirs:e}"
            );
        }
    }
    for (s, n, conf, field) in [
        (1.0, 0.0, 0.95, "n"),
        (3.0, 2.0, 0.95, "successes"),
        (-1.0, 2.0, 0.95, "successes"),
        (f64::NAN, 2.0, 0.95, "successes"),
        (1.0, 2.0, 1.0, "confidence"),
        (1.0, 2.0, 0.0, "confidence"),
    ] {
        let e = proportion_confint_wilson(s, n, conf)
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{e}");
    }
}

#[test]
fn proportion_tests_match_statsmodels_proportions_ztest() {
    let fx = fixture();
    for (k, c) in fx["proportions_ztest"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let g = |key: &str| c[key].as_f64().unwrap();
        let (sa, na, sb, nb) = (g("sa"), g("na"), g("sb"), g("nb"));
        let r = proportions_ztest(sa, na, sb, nb).unwrap();
        close(
            &format!("case {k} statistic"),
            r.statistic,
            g("statistic"),
            1e-12,
        );
        close(&format!("case {k} p"), r.p_value, g("pvalue"), 1e-9);
        // The null-rate test: reference a, current b, one-sided "current larger".
        let nr = null_rate_test(sa, na, sb, nb).unwrap();
        close(
            &format!("case {k} larger z"),
            nr.statistic,
            g("larger_statistic"),
            1e-12,
        );
        close(
            &format!("case {k} larger p"),
            nr.p_value,
            g("larger_pvalue"),
            1e-9,
        );
    }
    // A convention statsmodels leaves undefined (0/0): both proportions 1 are equal, so the
    // statistic is 0 and the p-value 1.
    let r = proportions_ztest(7.0, 7.0, 3.0, 3.0).unwrap();
    assert_eq!((r.statistic, r.p_value), (0.0, 1.0));
}

#[test]
fn binned_divergences_on_a_hand_worked_case() {
    // Reference shares p = (1/2, 1/2), current q = (1/4, 3/4), worked by hand:
    //   TV = (|1/4 - 1/2| + |3/4 - 1/2|) / 2 = 1/4
    //   PSI = (1/4 - 1/2) ln(1/2) + (3/4 - 1/2) ln(3/2) = (ln 2 + ln 3 - ln 2) / 4 = ln(3) / 4
    //   Bhattacharyya BC = sqrt(1/8) + sqrt(3/8) = (1 + sqrt 3) / (2 sqrt 2) = cos 15°, and
    //   Hellinger = sqrt(sum (sqrt p - sqrt q)^2) / sqrt 2 = sqrt(1 - BC) = sqrt 2 sin 7.5°
    //   KL(current || reference) = 1/4 ln(1/2) + 3/4 ln(3/2) = (3 ln 3 - 4 ln 2) / 4
    let (p, q) = ([0.5, 0.5], [0.25, 0.75]);
    let exact = |what: &str, ours: f64, theirs: f64| {
        assert!((ours - theirs).abs() < 1e-15, "{what}: {ours} vs {theirs}");
    };
    exact("tv", total_variation(&p, &q).unwrap(), 0.25);
    exact("psi", psi(&p, &q, 1e-4).unwrap(), 3f64.ln() / 4.0);
    exact(
        "hellinger",
        hellinger(&p, &q).unwrap(),
        2f64.sqrt() * 7.5f64.to_radians().sin(),
    );
    exact(
        "kl",
        kl_divergence(&p, &q, 1e-4).unwrap(),
        (3.0 * 3f64.ln() - 4.0 * 2f64.ln()) / 4.0,
    );
    // An empty bin is clipped to eps = 1e-4 before the logarithm (Evidently's convention):
    // PSI((1, 0), (1/2, 1/2)) = (1/2 - 1) ln(1/2) + (1/2 - 1e-4) ln(0.5 / 1e-4).
    exact(
        "psi with an empty bin",
        psi(&[1.0, 0.0], &[0.5, 0.5], 1e-4).unwrap(),
        -0.5 * 0.5f64.ln() + (0.5 - 1e-4) * (0.5f64 / 1e-4).ln(),
    );
    // and so is an empty bin of the current batch:
    // PSI((1/2, 1/2), (1, 0)) = (1 - 1/2) ln(1 / (1/2)) + (1e-4 - 1/2) ln(1e-4 / (1/2)).
    exact(
        "psi with an empty current bin",
        psi(&[0.5, 0.5], &[1.0, 0.0], 1e-4).unwrap(),
        0.5 * 2f64.ln() + (1e-4 - 0.5) * (1e-4f64 / 0.5).ln(),
    );
}

#[test]
fn mmd_permutation_p_value_converges_to_the_exact_one() {
    // Four points, two per side: the 6 splits of the pooled sample into two pairs give 3
    // distinct MMD² values; the observed split {0, 1} | {10, 11} and its mirror are the
    // largest, so the exact permutation p-value is 2/6 = 1/3.
    let x = vec![vec![0.0], vec![1.0]];
    let y = vec![vec![10.0], vec![11.0]];
    let r = mmd_rbf(&x, &y, 60_000, 11).unwrap();
    // 60,000 relabellings: standard error sqrt(1/3 * 2/3 / 60000) = 0.0019.
    assert!((r.p_value - 1.0 / 3.0).abs() < 0.01, "p = {}", r.p_value);
    // Identical samples: every split is at least as extreme, p = 1.
    let same = mmd_rbf(&x, &x, 2_000, 11).unwrap();
    assert_eq!(same.p_value, 1.0);
}

fn alternative(v: &Value) -> mlops_drift::stats::Alternative {
    mlops_drift::stats::Alternative::ALL
        .into_iter()
        .find(|a| a.as_str() == v.as_str().unwrap())
        .unwrap()
}

/// Issue 25: the power and sample size of the two-sample z-test against statsmodels'
/// `NormalIndPower` (power to 1e-10; sample sizes to 1e-6, statsmodels' own root-finding
/// tolerance being the looser).
#[test]
fn power_and_sample_size_match_statsmodels_normal_ind_power() {
    use mlops_drift::stats::{normal_ind_nobs1, normal_ind_power};
    let fx = fixture();
    let cases = fx["normal_ind_power"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for c in cases {
        let f = |key: &str| c[key].as_f64().unwrap();
        let ours = normal_ind_power(
            f("effect_size"),
            f("nobs1"),
            f("alpha"),
            f("ratio"),
            alternative(&c["alternative"]),
        )
        .unwrap();
        close(&format!("power {c}"), ours, f("power"), 1e-10);
    }
    let cases = fx["normal_ind_solve_power"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for c in cases {
        let f = |key: &str| c[key].as_f64().unwrap();
        let ours = normal_ind_nobs1(
            f("effect_size"),
            f("alpha"),
            f("power"),
            f("ratio"),
            alternative(&c["alternative"]),
        )
        .unwrap();
        close(&format!("nobs1 {c}"), ours, f("nobs1"), 1e-6);
    }
    // Bad input is named; an effect the one-sided test does not look for never gets there.
    use mlops_drift::stats::Alternative;
    for (e, field) in [
        (
            normal_ind_power(0.5, -1.0, 0.05, 1.0, Alternative::TwoSided),
            "nobs1",
        ),
        (
            normal_ind_power(0.5, 10.0, 1.5, 1.0, Alternative::TwoSided),
            "alpha",
        ),
        (
            normal_ind_power(0.5, 10.0, 0.05, 0.0, Alternative::TwoSided),
            "ratio",
        ),
        (
            normal_ind_power(f64::NAN, 10.0, 0.05, 1.0, Alternative::TwoSided),
            "effect_size",
        ),
        (
            normal_ind_nobs1(0.5, 0.05, 1.0, 1.0, Alternative::TwoSided),
            "power",
        ),
        (
            normal_ind_nobs1(-0.5, 0.05, 0.8, 1.0, Alternative::Greater),
            "effect_size",
        ),
        // A power the test has at any size (at or below its level), and an effect so large
        // that no number of rows in range is small enough.
        (
            normal_ind_nobs1(0.5, 0.7, 0.6, 1.0, Alternative::Greater),
            "power",
        ),
        (
            normal_ind_nobs1(1e160, 0.05, 0.8, 1.0, Alternative::TwoSided),
            "effect_size",
        ),
    ] {
        let e = e.unwrap_err().to_string();
        assert!(e.contains(field), "{field}: {e}");
    }
    // A level below 1e-16 keeps its critical value (1 − α would round to 1).
    let p = normal_ind_power(1.0, 1e4, 1e-17, 1.0, Alternative::Greater).unwrap();
    assert!(p > 0.999, "{p}");
    // A large effect needs less than a row: the answer, not the search's bound.
    let n = normal_ind_nobs1(200.0, 0.05, 0.8, 1.0, Alternative::TwoSided).unwrap();
    let back = normal_ind_power(200.0, n, 0.05, 1.0, Alternative::TwoSided).unwrap();
    assert!((back - 0.8).abs() < 1e-9 && n < 1e-3, "{n}: {back}");
}
