//! Seeded stratified and ordered splits.

use mlops_core::{CsvOptions, Dataset, SplitFractions};
use ndarray::{Array1, Array2};

fn data(n: usize, positive_every: usize) -> Dataset {
    let x = Array2::from_shape_fn((n, 2), |(i, j)| (i * 2 + j) as f32);
    let y = Array1::from_shape_fn(n, |i| (i % positive_every == 0) as u8 as f32);
    Dataset::new(x, vec!["id".into(), "other".into()])
        .unwrap()
        .with_labels(y, "y")
        .unwrap()
}

fn ids(d: &Dataset) -> Vec<f32> {
    d.column("id").unwrap().to_vec()
}

#[test]
fn stratified_split_keeps_class_shares_and_is_seeded() {
    let d = data(1000, 10); // 100 positives
    let s = d
        .stratified_split(
            SplitFractions {
                train: 0.6,
                validation: 0.2,
                test: 0.2,
            },
            1,
        )
        .unwrap();
    assert_eq!(
        (s.train.n_rows(), s.validation.n_rows(), s.test.n_rows()),
        (600, 200, 200)
    );
    assert_eq!(s.train.positive_weight(), Some(60.0));
    assert_eq!(s.validation.positive_weight(), Some(20.0));
    assert_eq!(s.test.positive_weight(), Some(20.0));
    // Disjoint and complete.
    let mut all: Vec<f32> = [ids(&s.train), ids(&s.validation), ids(&s.test)].concat();
    all.sort_by(f32::total_cmp);
    assert_eq!(all, ids(&d));
    // Original order kept within a part.
    assert!(ids(&s.test).windows(2).all(|w| w[0] < w[1]));
    // Seeded.
    let again = d
        .stratified_split(
            SplitFractions {
                train: 0.6,
                validation: 0.2,
                test: 0.2,
            },
            1,
        )
        .unwrap();
    assert_eq!(ids(&again.test), ids(&s.test));
    let other = d
        .stratified_split(
            SplitFractions {
                train: 0.6,
                validation: 0.2,
                test: 0.2,
            },
            2,
        )
        .unwrap();
    assert_ne!(ids(&other.test), ids(&s.test));
}

#[test]
fn bad_fractions_and_unlabelled_data_are_refused() {
    let d = data(10, 2);
    let err = d
        .stratified_split(
            SplitFractions {
                train: 0.5,
                validation: 0.2,
                test: 0.2,
            },
            0,
        )
        .unwrap_err();
    assert!(err.to_string().contains("sum of 1"), "{err}");
    let err = d
        .stratified_split(
            SplitFractions {
                train: 0.0,
                validation: 0.5,
                test: 0.5,
            },
            0,
        )
        .unwrap_err();
    assert!(err.to_string().contains("SplitFractions.train"), "{err}");
    let unlabelled = Dataset::new(Array2::zeros((3, 1)), vec!["x".into()]).unwrap();
    let err = unlabelled
        .stratified_split(SplitFractions::default(), 0)
        .unwrap_err();
    assert!(err.to_string().contains("label"), "{err}");
    let nan_label = unlabelled
        .with_labels(Array1::from(vec![0.0, f32::NAN, 1.0]), "y")
        .unwrap();
    let err = nan_label
        .stratified_split(SplitFractions::default(), 0)
        .unwrap_err();
    assert!(err.to_string().contains("labels[1]"), "{err}");
}

#[test]
fn ordered_splits_follow_the_column() {
    let x = Array2::from_shape_vec((6, 1), vec![5.0, 1.0, 3.0, 0.0, 4.0, 2.0]).unwrap();
    let d = Dataset::new(x, vec!["t".into()]).unwrap();
    let s = d
        .ordered_split(
            "t",
            SplitFractions {
                train: 0.5,
                validation: 1.0 / 6.0,
                test: 1.0 / 3.0,
            },
        )
        .unwrap();
    assert_eq!(s.train.column("t").unwrap().to_vec(), vec![0.0, 1.0, 2.0]);
    assert_eq!(s.validation.column("t").unwrap().to_vec(), vec![3.0]);
    assert_eq!(s.test.column("t").unwrap().to_vec(), vec![4.0, 5.0]);
    let (before, after) = d.split_at_value("t", 3.0).unwrap();
    assert_eq!(before.column("t").unwrap().to_vec(), vec![1.0, 0.0, 2.0]);
    assert_eq!(after.column("t").unwrap().to_vec(), vec![5.0, 3.0, 4.0]);
    let err = d.split_at_value("time", 3.0).unwrap_err();
    assert!(
        err.to_string().contains("`time`") && err.to_string().contains("t"),
        "{err}"
    );
    let dropped = d.drop_features(&["t"]).unwrap();
    assert_eq!(dropped.n_features(), 0);
}

#[test]
fn unix_times_split_exactly_through_the_f64_order_column() {
    // 100 rows one second apart around 1_700_000_100: as f32 they fall on a 128 s grid, so a
    // split at ...100 used to move rows across it.
    let mut text = String::from("time,x,label\n");
    for i in 0..100 {
        text += &format!("{},{},{}\n", 1_700_000_050 + i, i % 7, i % 2);
    }
    let options = CsvOptions {
        order: Some("time".into()),
        ..CsvOptions::with_label("label")
    };
    let data = Dataset::from_csv_reader(text.as_bytes(), &options).unwrap();
    assert_eq!(
        data.feature_names().collect::<Vec<_>>(),
        ["x"],
        "the order column is no feature"
    );
    let (past, future) = data.split_at_value("time", 1_700_000_100.0).unwrap();
    assert_eq!((past.n_rows(), future.n_rows()), (50, 50));
    let (_, t) = past.order_column().unwrap();
    assert_eq!(t[49], 1_700_000_099.0);
    // The same file with time as a feature refuses the values f32 would round.
    let err = Dataset::from_csv_reader(text.as_bytes(), &CsvOptions::with_label("label"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 2, column `time`")
            && err.contains("`1700000050` cannot be held exactly")
            && err.contains("order column"),
        "{err}"
    );
}

#[test]
fn values_beyond_f32_and_large_ids_are_errors_not_silent_changes() {
    let load = |text: &str| Dataset::from_csv_reader(text.as_bytes(), &CsvOptions::default());
    let err = load("x\n1\n1e39\n").unwrap_err().to_string();
    assert!(
        err.contains("line 3") && err.contains("`1e39` is outside the range"),
        "{err}"
    );
    let err = load("id\n16777217\n").unwrap_err().to_string();
    assert!(err.contains("it would read 16777216"), "{err}");
    // Representable values load unchanged: 2^24, large even integers, decimals, inf.
    let d = load("x\n16777216\n33554432\n0.1\ninf\n-3.4e38\n").unwrap();
    assert_eq!(
        d.column("x").unwrap().to_vec(),
        vec![16_777_216.0, 33_554_432.0, 0.1, f32::INFINITY, -3.4e38]
    );
}
