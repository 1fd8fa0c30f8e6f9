//! The normal-mixture confidence sequence against the mixture SPRT computed from its
//! definition (numerical integration and root finding in scipy), on the fixture written by
//! `scripts/fixtures/msprt_refs.py`.

use mlops_serve::sequential::{mixture_half_width, mixture_likelihood_ratio};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/msprt.json")).unwrap()
}

fn close(what: &str, ours: f64, theirs: f64) {
    // The reference is a quadrature and a root: agreed to about 1e-14 when generated.
    assert!(
        (ours - theirs).abs() <= 1e-10 * theirs.abs(),
        "{what}: ours {ours:e}, scipy {theirs:e}"
    );
}

#[test]
fn half_widths_match_the_mixture_sprt_solved_in_scipy() {
    let fx = fixture();
    let cases = fx["half_widths"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for (k, c) in cases.iter().enumerate() {
        let f = |key: &str| c[key].as_f64().unwrap();
        let ours = mixture_half_width(f("variance"), f("mixing_variance"), f("alpha"));
        close(&format!("case {k}"), ours, f("half_width"));
    }
}

#[test]
fn likelihood_ratios_match_the_mixture_integrated_in_scipy() {
    let fx = fixture();
    for (k, c) in fx["likelihood_ratios"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let f = |key: &str| c[key].as_f64().unwrap();
        let ours = mixture_likelihood_ratio(
            f("estimate"),
            f("variance"),
            f("mixing_variance"),
            f("null"),
        )
        .unwrap();
        close(&format!("case {k}"), ours, f("ratio"));
    }
}
