//! ADWIN, Page–Hinkley (increases) and DDM against river 0.26's detectors with their default
//! parameters: the same drift indices on the fixed streams of
//! `scripts/fixtures/river_streams.py` (a mean shift, a variance shift, a step, a 0/1 error
//! stream whose rate triples).

use mlops_drift::stream::{Adwin, ConceptDriftDetector, Ddm, DriftSignal, PageHinkley};
use serde_json::Value;

fn hits(detector: &mut dyn ConceptDriftDetector, values: &[f64]) -> Vec<u64> {
    values
        .iter()
        .enumerate()
        .filter(|(_, v)| detector.update(**v) == DriftSignal::Drift)
        .map(|(i, _)| i as u64)
        .collect()
}

fn indices(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect()
}

#[test]
fn drift_indices_match_river() {
    let fx: Value = serde_json::from_str(include_str!("fixtures/river_streams.json")).unwrap();
    for c in fx["cases"].as_array().unwrap() {
        let name = c["stream"].as_str().unwrap();
        let values: Vec<f64> = c["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(
            hits(&mut Adwin::new(0.002).unwrap(), &values),
            indices(&c["adwin"]),
            "{name}: ADWIN"
        );
        assert_eq!(
            hits(&mut PageHinkley::default(), &values),
            indices(&c["page_hinkley_up"]),
            "{name}: Page-Hinkley"
        );
        if let Some(ddm) = c.get("ddm") {
            assert_eq!(
                hits(&mut Ddm::default(), &values),
                indices(ddm),
                "{name}: DDM"
            );
        }
    }
}
