//! Our KLL sketches and Apache DataSketches' Python package read each other's bytes: a sketch
//! serialized here loads in `datasketches.kll_doubles_sketch` with the same count, extremes
//! and quantiles, and one serialized there loads here and merges with ours.
//!
//! Needs a Python with the `datasketches` package (the test venv has it): `MLOPS_PYTHON`,
//! which `scripts/test.sh` sets. Without it the test says so on stderr and passes nothing off
//! as checked.

use std::path::PathBuf;
use std::process::Command;

use mlops_drift::QuantileSketch;

/// `MLOPS_PYTHON`, else the test venv `scripts/test.sh` makes (`.venv` at the workspace root).
fn python() -> Option<PathBuf> {
    std::env::var_os("MLOPS_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let venv = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"));
            venv.exists().then_some(venv)
        })
}

const SCRIPT: &str = r#"
import sys, json
from datasketches import kll_doubles_sketch
ours = kll_doubles_sketch.deserialize(open(sys.argv[1], "rb").read())
theirs = kll_doubles_sketch(400)
for i in range(50000):
    theirs.update(1.7e9 + (i * 7919 % 50000))
open(sys.argv[2], "wb").write(theirs.serialize())
print(json.dumps({
    "n": ours.n, "min": ours.get_min_value(), "max": ours.get_max_value(),
    "k": ours.k, "estimation": ours.is_estimation_mode(),
    "median": ours.get_quantile(0.5, inclusive=True),
    "rank_of_median": ours.get_rank(ours.get_quantile(0.5, inclusive=True), inclusive=True),
    "theirs_median": theirs.get_quantile(0.5, inclusive=True),
    "theirs_rank_of_median": theirs.get_rank(theirs.get_quantile(0.5, inclusive=True), inclusive=True),
}))
"#;

#[test]
fn sketches_round_trip_through_apache_datasketches_python() {
    let Some(python) = python() else {
        eprintln!(
            "sketch_interop: no MLOPS_PYTHON and no .venv, so the DataSketches (Python) \
             interchange was NOT checked; run scripts/test.sh (or set MLOPS_PYTHON to a Python \
             with the `datasketches` package)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ours_path, theirs_path) = (dir.path().join("ours.bin"), dir.path().join("theirs.bin"));
    let values: Vec<f64> = (0..100_000_i64)
        .map(|i| 290.0 + ((i * 104_729) % 100_000) as f64 / 1e4)
        .collect();
    let ours = QuantileSketch::from_values(&values, 400).unwrap();
    std::fs::write(&ours_path, ours.to_bytes()).unwrap();
    let out = Command::new(&python)
        .args(["-c", SCRIPT])
        .arg(&ours_path)
        .arg(&theirs_path)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Python sees our sketch as we do.
    assert_eq!(seen["n"], 100_000);
    assert_eq!(seen["k"], 400);
    assert_eq!(seen["estimation"], true);
    assert_eq!(seen["min"].as_f64().unwrap(), 290.0);
    assert_eq!(seen["max"].as_f64().unwrap(), 290.0 + 99_999.0 / 1e4);
    assert_eq!(
        seen["median"].as_f64().unwrap(),
        ours.quantile(0.5).unwrap()
    );
    // We read theirs, and it merges with ours.
    let theirs = QuantileSketch::from_bytes(&std::fs::read(&theirs_path).unwrap(), 0).unwrap();
    assert_eq!(theirs.count(), 50_000);
    // We read their items and weights as they do: the rank of their median is the same
    // number on both sides (a deterministic function of the sketch's contents).
    let their_median = seen["theirs_median"].as_f64().unwrap();
    let their_rank = seen["theirs_rank_of_median"].as_f64().unwrap();
    assert!(
        (theirs.cdf(their_median) - their_rank).abs() < 1e-12,
        "rank of {their_median}: ours {} theirs {their_rank}",
        theirs.cdf(their_median)
    );
    // The same inclusive search gives the same median (Python's default search is the
    // exclusive one: it stops at a neighbouring item about 1 run in 40, their sketch being
    // randomized).
    assert_eq!(theirs.quantile(0.5).unwrap(), their_median);
    assert!((theirs.quantile(0.5).unwrap() - (1.7e9 + 25_000.0)).abs() <= 50_000.0 * 0.01);
    let mut merged = ours.clone();
    merged.merge(&theirs).unwrap();
    assert_eq!(merged.count(), 150_000);
}
