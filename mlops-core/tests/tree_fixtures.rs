//! XGBoost and LightGBM models read natively score exactly as the libraries do: the committed
//! models and the libraries' own predictions of rows that sit on every split's threshold,
//! missing values, zeros and odd category codes (`scripts/fixtures/tree_refs.py`, xgboost 3.2,
//! lightgbm 4.7), to 1e-6.

use std::path::PathBuf;

use mlops_core::model::{predictor, ModelArtifact, ModelKind};
use ndarray::Array2;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trees")
}

fn cases() -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(dir().join("cases.json")).unwrap();
    let index: Value = serde_json::from_str(&text).unwrap();
    index["cases"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn rows(case: &Value) -> Array2<f32> {
    let rows = case["rows"].as_array().unwrap();
    let d = rows[0].as_array().unwrap().len();
    let values: Vec<f32> = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter())
        .map(|v| v.as_f64().map_or(f32::NAN, |v| v as f32))
        .collect();
    Array2::from_shape_vec((rows.len(), d), values).unwrap()
}

fn numbers(case: &Value, key: &str) -> Vec<f64> {
    case[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn artifact(case: &Value) -> ModelArtifact {
    let kind: ModelKind = case["kind"].as_str().unwrap().parse().unwrap();
    let bytes = std::fs::read(dir().join(case["model"].as_str().unwrap())).unwrap();
    ModelArtifact::from_model_file(kind, &bytes).unwrap()
}

#[test]
fn every_case_scores_as_the_library_does() {
    let cases = cases();
    assert_eq!(cases.len(), 6);
    for (name, case) in &cases {
        let a = artifact(case);
        let x = rows(case);
        let p = predictor(&a).unwrap().predict_proba(x.view()).unwrap();
        let want = numbers(case, "proba");
        assert_eq!(p.len(), want.len(), "{name}");
        let mut worst = 0.0_f64;
        for (i, (&got, &want)) in p.iter().zip(&want).enumerate() {
            let diff = (f64::from(got) - want).abs();
            assert!(
                diff <= 1e-6,
                "{name} row {i}: {got} vs the library's {want}"
            );
            worst = worst.max(diff);
        }
        let mut margin = vec![0.0; x.nrows()];
        a.trees()
            .unwrap()
            .predict_margin_into(x.view(), &mut margin)
            .unwrap();
        // LightGBM's raw score of a random forest is the sum of its trees; the margin the link
        // reads (and this returns) is their average.
        let trees = a.trees().unwrap().n_trees() as f64;
        let scale = if name.ends_with("_rf") { trees } else { 1.0 };
        for (i, (&got, &want)) in margin.iter().zip(&numbers(case, "margin")).enumerate() {
            let got = got * scale;
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{name} row {i}: margin {got} vs the library's {want}"
            );
        }
        eprintln!(
            "{name}: {} rows, worst probability difference {worst:.2e}",
            x.nrows()
        );
    }
}

#[test]
fn the_fixtures_cover_what_they_claim() {
    // Guards the generator: missing values, categorical features, both flavors.
    let cases = cases();
    let mut kinds = std::collections::BTreeSet::new();
    for (name, case) in &cases {
        let a = artifact(case);
        kinds.insert(a.kind().as_str());
        let x = rows(case);
        assert!(x.iter().any(|v| v.is_nan()), "{name} has no missing value");
        let trees = a.trees().unwrap();
        if name.contains("categorical") {
            assert!(trees.categorical().iter().any(|&c| c), "{name}");
        }
        assert!(trees.n_trees() >= 25, "{name}");
    }
    assert_eq!(kinds.len(), 2);
}

#[test]
fn a_strided_or_single_row_batch_scores_the_same() {
    for (name, case) in cases() {
        let a = artifact(&case);
        let model = predictor(&a).unwrap();
        let x = rows(&case);
        let all = model.predict_proba(x.view()).unwrap();
        // Column-major copy: rows are not contiguous.
        use ndarray::ShapeBuilder;
        let mut f = Array2::<f32>::zeros(x.raw_dim().f());
        f.assign(&x);
        assert_eq!(model.predict_proba(f.view()).unwrap(), all, "{name}");
        // Fewer rows than the lanes (trees of one row together), the lanes exactly, more
        // (rows of one tree together), and blocks that split unevenly.
        for (start, len) in [(3, 15), (20, 16), (40, 17), (100, 63), (7, 65), (0, 130)] {
            let part = model
                .predict_proba(x.slice_axis(ndarray::Axis(0), (start..start + len).into()))
                .unwrap();
            assert_eq!(
                part.as_slice().unwrap(),
                &all.as_slice().unwrap()[start..start + len],
                "{name} rows {start}+{len}"
            );
        }
        for i in [0, 1, x.nrows() - 1] {
            let one = model
                .predict_proba(x.slice_axis(ndarray::Axis(0), (i..i + 1).into()))
                .unwrap();
            assert_eq!(one[0], all[i], "{name} row {i}");
        }
    }
}
