//! Bad CSV inputs: each gives a clear error or a report entry, never a panic.

use mlops_core::validation::{Severity, ValidationConfig, ValidationSuite};
use mlops_core::{CsvOptions, Dataset, Error, Schema};

fn load(text: &str) -> mlops_core::Result<Dataset> {
    Dataset::from_csv_reader(text.as_bytes(), &CsvOptions::with_label("label"))
}

fn config() -> ValidationConfig {
    ValidationConfig {
        min_rows: 3,
        min_positives: 1,
        ..ValidationConfig::default()
    }
}

#[test]
fn missing_label_column_names_it_and_lists_the_columns() {
    let err = load("a,b\n1,2\n").unwrap_err();
    assert!(matches!(err, Error::MissingColumn { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("`label`") && msg.contains("a, b"), "{msg}");
}

#[test]
fn missing_ignored_or_categorical_column_is_an_error() {
    let opts = CsvOptions::with_label("label").ignore(["id"]);
    let err = Dataset::from_csv_reader("a,label\n1,0\n".as_bytes(), &opts).unwrap_err();
    assert!(err.to_string().contains("`id`"), "{err}");
    let opts = CsvOptions::with_label("label").categorical(["zz"]);
    let err = Dataset::from_csv_reader("a,label\n1,0\n".as_bytes(), &opts).unwrap_err();
    assert!(
        err.to_string().contains("CsvOptions.categorical") && err.to_string().contains("zz"),
        "{err}"
    );
}

#[test]
fn non_numeric_cell_names_line_column_and_text() {
    let err = load("a,b,label\n1,2,0\n3,x7,1\n").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("line 3") && msg.contains("column `b`") && msg.contains("`x7`"),
        "{msg}"
    );
}

#[test]
fn non_integer_category_code_is_an_error() {
    let opts = CsvOptions::with_label("label").categorical(["c"]);
    let err = Dataset::from_csv_reader("c,label\n1,0\n2.5,1\n".as_bytes(), &opts).unwrap_err();
    assert!(
        err.to_string().contains("line 3") && err.to_string().contains("`2.5`"),
        "{err}"
    );
}

#[test]
fn empty_file_is_an_error() {
    for text in ["", "\n", "\n\n"] {
        let err = load(text).unwrap_err();
        assert!(err.to_string().contains("empty"), "{text:?}: {err}");
    }
}

#[test]
fn header_only_gives_an_empty_dataset_and_a_failed_report() {
    let data = load("a,b,label\n").unwrap();
    assert_eq!((data.n_rows(), data.n_features()), (0, 2));
    let report = ValidationSuite::from_config(&config())
        .unwrap()
        .run(&data, None);
    assert!(!report.passed());
    assert!(report.errors().any(|f| f.check == "min_rows"), "{report}");
    assert!(
        report.errors().any(|f| f.check == "min_positives"),
        "{report}"
    );
}

#[test]
fn ragged_rows_name_the_line_and_the_field_counts() {
    let err = load("a,b,label\n1,2,0\n1,2\n").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("line 3") && msg.contains("found 2 fields, expected 3"),
        "{msg}"
    );
    let err = load("a,b,label\n1,2,0,9\n").unwrap_err();
    assert!(err.to_string().contains("found 4 fields"), "{err}");
}

#[test]
fn duplicate_header_is_an_error() {
    let err = load("a,a,label\n1,2,0\n").unwrap_err();
    assert!(err.to_string().contains("`a` appears twice"), "{err}");
}

#[test]
fn nan_and_empty_cells_become_report_entries_per_column() {
    let data = load("a,b,c,label\n1,NaN,5,0\n2,,6,1\n3,4,inf,0\n4,5,7,1\n").unwrap();
    assert!(data.features()[[0, 1]].is_nan() && data.features()[[1, 1]].is_nan());
    let report = ValidationSuite::from_config(&config())
        .unwrap()
        .run(&data, None);
    let missing: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.check == "missing_values")
        .collect();
    assert_eq!(missing.len(), 2, "{report}");
    assert_eq!(missing[0].column.as_deref(), Some("b"));
    assert_eq!(missing[0].observed["missing"], 2);
    assert_eq!(missing[1].column.as_deref(), Some("c"));
    assert_eq!(missing[1].observed["infinite"], 1);
    // Column `a` is fine and the rest of the report is still produced.
    assert!(report
        .findings
        .iter()
        .all(|f| f.column.as_deref() != Some("a")));
    assert!(report.checks.len() >= 7);
    assert!(!report.passed());
    // A nullable column in the schema allows missing values.
    let reference = load("a,b,c,label\n1,,5,0\n2,3,6,1\n").unwrap();
    let schema = Schema::infer(&reference);
    assert!(schema.column("b").unwrap().nullable);
    let report = ValidationSuite::from_config(&config())
        .unwrap()
        .run(&data, Some(&schema));
    assert!(!report
        .findings
        .iter()
        .any(|f| f.check == "missing_values" && f.column.as_deref() == Some("b")));
}

#[test]
fn missing_labels_and_bad_label_values_are_errors() {
    let data = load("a,label\n1,0\n2,\n3,2\n4,1\n").unwrap();
    let report = ValidationSuite::from_config(&config())
        .unwrap()
        .run(&data, None);
    assert!(
        report
            .errors()
            .any(|f| f.check == "missing_values" && f.column.as_deref() == Some("label")),
        "{report}"
    );
    assert!(
        report
            .errors()
            .any(|f| f.check == "labels" && f.observed["invalid"] == 1),
        "{report}"
    );
}

#[test]
fn weights_and_semicolons_are_read() {
    let opts = CsvOptions {
        delimiter: ';',
        ..CsvOptions::with_label("label").weight("w")
    };
    let data =
        Dataset::from_csv_reader("a;w;label\n1.5;2;1\n2.5;0.5;0\n".as_bytes(), &opts).unwrap();
    assert_eq!(data.weights().unwrap().to_vec(), vec![2.0, 0.5]);
    assert_eq!(data.positive_weight(), Some(2.0));
    let bad = CsvOptions {
        delimiter: 'é',
        ..CsvOptions::default()
    };
    let err = Dataset::from_csv_reader("a\n1\n".as_bytes(), &bad).unwrap_err();
    assert!(err.to_string().contains("CsvOptions.delimiter"), "{err}");
}

#[test]
fn unreadable_file_names_the_path() {
    let err = Dataset::from_csv_path("/nonexistent/x.csv", &CsvOptions::default()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.csv"), "{err}");
}

#[test]
fn invalid_utf8_is_an_error() {
    let bytes: &[u8] = b"a,label\n\xff\xfe,1\n";
    let err = Dataset::from_csv_reader(bytes, &CsvOptions::with_label("label")).unwrap_err();
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

#[test]
fn schema_checks_find_missing_unknown_and_out_of_range_columns() {
    let reference = load("a,b,label\n0,10,0\n1,20,1\n0.5,15,1\n").unwrap();
    let schema = Schema::infer(&reference);
    let current = load("a,z,label\n-1,10,0\n2,20,1\n0.5,15,1\n").unwrap();
    let report = ValidationSuite::from_config(&config())
        .unwrap()
        .run(&current, Some(&schema));
    let find = |check: &str| {
        report
            .findings
            .iter()
            .find(|f| f.check == check)
            .unwrap_or_else(|| panic!("no {check}: {report}"))
    };
    assert_eq!(find("missing_column").column.as_deref(), Some("b"));
    assert_eq!(find("missing_column").severity, Severity::Error);
    assert_eq!(find("unknown_column").column.as_deref(), Some("z"));
    assert_eq!(find("unknown_column").severity, Severity::Warning);
    let range = find("value_range");
    assert_eq!(range.column.as_deref(), Some("a"));
    assert_eq!(
        (
            range.observed["below"].as_u64(),
            range.observed["above"].as_u64()
        ),
        (Some(1), Some(1))
    );
    // The report serializes and prints as a table.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["findings"].as_array().unwrap().len(),
        report.findings.len()
    );
    let table = report.to_string();
    assert!(
        table.contains("missing_column") && table.contains("FAILED"),
        "{table}"
    );
}

#[test]
fn categorical_codes_outside_the_schema_and_kind_mismatch() {
    let opts = CsvOptions::with_label("label").categorical(["c"]);
    let reference =
        Dataset::from_csv_reader("c,x,label\n1,0,0\n2,1,1\n".as_bytes(), &opts).unwrap();
    let schema = Schema::infer(&reference);
    assert_eq!(schema.column("c").unwrap().categories, Some(vec![1, 2]));
    let current =
        Dataset::from_csv_reader("c,x,label\n1,0,0\n3,1,1\n7,1,1\n".as_bytes(), &opts).unwrap();
    let report = ValidationSuite::from_config(&config())
        .unwrap()
        .run(&current, Some(&schema));
    let f = report
        .findings
        .iter()
        .find(|f| f.check == "value_range")
        .unwrap();
    assert_eq!(f.observed["unknown"], 2);
    let numeric = load("c,x,label\n1,0,0\n2,1,1\n1,1,1\n").unwrap();
    let report = ValidationSuite::from_config(&config())
        .unwrap()
        .run(&numeric, Some(&schema));
    assert!(
        report.errors().any(|f| f.check == "column_kind"),
        "{report}"
    );
}

#[test]
fn constant_columns_duplicates_and_imbalance_are_warnings() {
    let data = load(
        "a,k,label\n1,5,0\n2,5,0\n1,5,0\n3,5,0\n4,5,0\n6,5,0\n7,5,0\n8,5,0\n9,5,0\n10,5,0\n5,5,1\n",
    )
    .unwrap();
    let report = ValidationSuite::from_config(&config())
        .unwrap()
        .run(&data, None);
    let warn = |check: &str| {
        report
            .warnings()
            .find(|f| f.check == check)
            .unwrap_or_else(|| panic!("no {check}: {report}"))
    };
    assert_eq!(warn("constant_column").column.as_deref(), Some("k"));
    assert_eq!(warn("duplicate_rows").observed["duplicates"], 1);
    assert!(
        warn("label_balance").observed["imbalance"]
            .as_f64()
            .unwrap()
            > 0.4
    );
    assert!(report.passed(), "warnings only: {report}");
}

#[test]
fn bad_validation_config_is_refused() {
    let cfg = ValidationConfig {
        max_missing_fraction: 1.5,
        ..config()
    };
    let err = ValidationSuite::from_config(&cfg).unwrap_err();
    assert!(
        err.to_string().contains("max_missing_fraction") && err.to_string().contains("1.5"),
        "{err}"
    );
    let err = serde_json::from_str::<ValidationConfig>(r#"{"min_rowz": 3}"#).unwrap_err();
    assert!(err.to_string().contains("min_rowz"), "{err}");
}

#[test]
fn real_wdbc_copy_loads_and_validates() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/breast_cancer_wdbc.csv"
    );
    let data = Dataset::from_csv_path(path, &CsvOptions::with_label("target")).unwrap();
    assert_eq!((data.n_rows(), data.n_features()), (569, 30));
    assert_eq!(data.positive_weight(), Some(357.0));
    let cfg = ValidationConfig {
        min_rows: 500,
        ..ValidationConfig::default()
    };
    let report = ValidationSuite::from_config(&cfg)
        .unwrap()
        .run(&data, Some(&Schema::infer(&data)));
    assert!(report.passed(), "{report}");
}

#[test]
fn one_class_labels_all_out_of_range_and_all_unseen_categories_are_errors() {
    let opts = CsvOptions::with_label("label").categorical(["c"]);
    let reference =
        Dataset::from_csv_reader("a,c,label\n1,0,0\n2,1,1\n3,0,0\n4,1,1\n".as_bytes(), &opts)
            .unwrap();
    let schema = Schema::infer(&reference);
    let suite = ValidationSuite::from_config(&config()).unwrap();
    // Every label 1: no classifier can be trained or evaluated.
    let one_class =
        Dataset::from_csv_reader("a,c,label\n1,0,1\n2,1,1\n3,0,1\n".as_bytes(), &opts).unwrap();
    let report = suite.run(&one_class, Some(&schema));
    let f = report
        .errors()
        .find(|f| f.check == "label_classes")
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        f.message.contains("every one of 3 labels is 1"),
        "{}",
        f.message
    );
    // Some values out of range: the configured severity (a warning by default); all of them:
    // an error.
    let some =
        Dataset::from_csv_reader("a,c,label\n1,0,0\n9,1,1\n3,0,0\n".as_bytes(), &opts).unwrap();
    let report = suite.run(&some, Some(&schema));
    assert!(
        !report.errors().any(|f| f.check == "value_range"),
        "{report}"
    );
    let all =
        Dataset::from_csv_reader("a,c,label\n90,7,0\n91,8,1\n92,7,0\n".as_bytes(), &opts).unwrap();
    let report = suite.run(&all, Some(&schema));
    let columns: Vec<Option<&str>> = report
        .errors()
        .filter(|f| f.check == "value_range")
        .map(|f| f.column.as_deref())
        .collect();
    assert_eq!(columns, [Some("a"), Some("c")], "{report}");
}

#[test]
fn text_in_a_categorical_column_says_codes_are_expected() {
    let opts = CsvOptions::with_label("label").categorical(["color"]);
    let err = Dataset::from_csv_reader("color,label\nred,1\n".as_bytes(), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 2, column `color`") && err.contains("integer category code"),
        "{err}"
    );
}

#[test]
fn a_directory_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let err = Dataset::from_csv_path(dir.path(), &CsvOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("a CSV file, not a directory"), "{err}");
    assert!(!err.contains("line 0"), "{err}");
}
