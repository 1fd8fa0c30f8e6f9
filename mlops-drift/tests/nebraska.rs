//! Real data with documented drift: NOAA daily weather at Bellevue, Nebraska, 1949–1999
//! (`nebraska_weather.csv` in the shared data folder; drift from row 12,000 on).
//!
//! - Drift: a profile fitted on rows 0..7305 (the first 20 years) flags the last 5,000 rows.
//! - No drift: rows 0..3652 (years 1–10) against rows 3652..7305 (years 11–20): two
//!   stretches of whole years, so both cover every season equally, both before row 12,000.
//!
//! The file is read from `$MLOPS_DATA_DIR` (default: `../shared/data` beside the workspace).

use mlops_core::{CsvOptions, Dataset};
use mlops_drift::{CheckedDriftConfig, ProfileConfig, ReferenceProfile};

fn weather() -> Dataset {
    let dir = std::env::var("MLOPS_DATA_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data").to_string());
    let path = format!("{dir}/nebraska_weather.csv");
    Dataset::from_csv_path(&path, &CsvOptions::with_label("rain").ignore(["day"])).unwrap_or_else(
        |e| panic!("{path}: {e} (set MLOPS_DATA_DIR to the folder holding nebraska_weather.csv)"),
    )
}

fn rows(data: &Dataset, range: std::ops::Range<usize>) -> Dataset {
    data.select_rows(&range.collect::<Vec<_>>()).unwrap()
}

#[test]
fn late_rows_drift_from_the_early_reference() {
    let data = weather();
    assert_eq!(data.n_rows(), 18_159);
    let profile = ReferenceProfile::fit(&rows(&data, 0..7305), &ProfileConfig::default()).unwrap();
    let report = profile
        .compare(&rows(&data, 13_159..18_159), &CheckedDriftConfig::default())
        .unwrap();
    for c in &report.columns {
        eprintln!(
            "{:<26} {:>8.4} drifted={}",
            c.column, c.tests[0].statistic, c.drifted
        );
    }
    eprintln!("{:?}", report.dataset);
    assert!(report.dataset.drifted, "{:#?}", report.dataset);
}

#[test]
fn season_matched_early_stretches_do_not_drift() {
    let data = weather();
    let profile = ReferenceProfile::fit(&rows(&data, 0..3652), &ProfileConfig::default()).unwrap();
    let report = profile
        .compare(&rows(&data, 3652..7305), &CheckedDriftConfig::default())
        .unwrap();
    for c in &report.columns {
        eprintln!(
            "{:<26} {:>8.4} drifted={}",
            c.column, c.tests[0].statistic, c.drifted
        );
    }
    eprintln!("{:?}", report.dataset);
    assert!(!report.dataset.drifted, "{:#?}", report.dataset);
}
