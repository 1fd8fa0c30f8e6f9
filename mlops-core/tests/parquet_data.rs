//! Datasets from Arrow record batches and Parquet files (feature `parquet`): every column
//! type and role, row groups, chunks, projection, and each bad input named.

#[cfg(not(feature = "parquet"))]
#[test]
#[ignore = "left out: Parquet and Arrow datasets need --features parquet (mlops-core); the workspace test runs them (scripts/test.sh)"]
fn parquet_datasets() {}

#[cfg(feature = "parquet")]
mod parquet {
    use std::path::Path;
    use std::sync::Arc;

    use mlops_core::arrow::array::types::{Int16Type, Int8Type};
    use mlops_core::arrow::array::{
        ArrayRef, BooleanArray, DictionaryArray, Float32Array, Float64Array, Int32Array,
        Int64Array, ListArray, RecordBatch, StringArray, TimestampMillisecondArray, UInt8Array,
    };
    use mlops_core::arrow::parquet::arrow::ArrowWriter;
    use mlops_core::arrow::parquet::basic::{Compression, ZstdLevel};
    use mlops_core::arrow::parquet::file::properties::WriterProperties;
    use mlops_core::arrow_io::{is_parquet_name, read_parquet_columns, ParquetChunks};
    use mlops_core::{ColumnKind, CsvOptions, Dataset, Error};

    fn col(a: impl mlops_core::arrow::array::Array + 'static) -> ArrayRef {
        Arc::new(a)
    }

    /// Writes `batches` to `path`, `rows_per_group` rows a row group, with `compression`.
    fn write(
        path: &Path,
        batches: &[RecordBatch],
        rows_per_group: usize,
        compression: Compression,
    ) {
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(rows_per_group))
            .set_compression(compression)
            .build();
        let file = std::fs::File::create(path).unwrap();
        let mut w = ArrowWriter::try_new(file, batches[0].schema(), Some(props)).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
    }

    fn transactions(n: usize) -> RecordBatch {
        let amount: Float64Array = (0..n)
            .map(|i| (i % 7 != 3).then_some(i as f64 * 0.25 - 3.0))
            .collect();
        let count = Int32Array::from_iter_values((0..n).map(|i| (i % 11) as i32 - 5));
        let flag: BooleanArray = (0..n).map(|i| (i % 5 != 0).then_some(i % 2 == 0)).collect();
        let small = UInt8Array::from_iter_values((0..n).map(|i| (i % 200) as u8));
        let merchant: DictionaryArray<Int16Type> = (0..n)
            .map(|i| (i % 13 != 0).then_some(["shop", "fuel", "travel"][i % 3]))
            .collect();
        let label = Int64Array::from_iter_values((0..n).map(|i| (i % 4 == 0) as i64));
        let weight = Float32Array::from_iter_values((0..n).map(|i| 1.0 + (i % 3) as f32));
        let time = TimestampMillisecondArray::from_iter_values(
            (0..n).map(|i| 1_700_000_000_000 + i as i64 * 1500),
        );
        let id = Int64Array::from_iter_values((0..n).map(|i| 10_000_000_000 + i as i64));
        RecordBatch::try_from_iter([
            ("id", col(id)),
            ("amount", col(amount)),
            ("count", col(count)),
            ("flag", col(flag)),
            ("small", col(small)),
            ("merchant", col(merchant)),
            ("time", col(time)),
            ("weight", col(weight)),
            ("label", col(label)),
        ])
        .unwrap()
    }

    fn options() -> CsvOptions {
        let mut o = CsvOptions::with_label("label")
            .ignore(["id"])
            .weight("weight");
        o.order = Some("time".into());
        o.categories.insert(
            "merchant".into(),
            ["shop", "fuel", "travel"].map(String::from).to_vec(),
        );
        o
    }

    /// Checks every column of `data` against what `transactions(n)` wrote.
    fn check_transactions(data: &Dataset, n: usize) {
        assert_eq!(data.n_rows(), n);
        assert_eq!(
            data.feature_names().collect::<Vec<_>>(),
            ["amount", "count", "flag", "small", "merchant"]
        );
        assert_eq!(
            data.feature_kinds().collect::<Vec<_>>(),
            [
                ColumnKind::Numeric,
                ColumnKind::Numeric,
                ColumnKind::Numeric,
                ColumnKind::Numeric,
                ColumnKind::Categorical
            ]
        );
        let x = data.features();
        for i in 0..n {
            let amount = x[[i, 0]];
            if i % 7 == 3 {
                assert!(amount.is_nan(), "row {i}: a null is missing");
            } else {
                assert_eq!(amount, (i as f64 * 0.25 - 3.0) as f32, "row {i}");
            }
            assert_eq!(x[[i, 1]], (i % 11) as f32 - 5.0);
            if i % 5 == 0 {
                assert!(x[[i, 2]].is_nan());
            } else {
                assert_eq!(x[[i, 2]], if i % 2 == 0 { 1.0 } else { 0.0 });
            }
            assert_eq!(x[[i, 3]], (i % 200) as f32);
            if i % 13 == 0 {
                assert!(x[[i, 4]].is_nan());
            } else {
                assert_eq!(x[[i, 4]], (i % 3) as f32, "row {i}: the dictionary's code");
            }
        }
        let labels = data.labels().unwrap();
        assert_eq!(data.label_name(), Some("label"));
        assert!((0..n).all(|i| labels[i] == (i % 4 == 0) as i32 as f32));
        let w = data.weights().unwrap();
        assert!((0..n).all(|i| w[i] == 1.0 + (i % 3) as f32));
        let (name, order) = data.order_column().unwrap();
        assert_eq!(name, "time");
        assert!((0..n).all(|i| (order[i] - (1_700_000_000.0 + i as f64 * 1.5)).abs() < 1e-6));
    }

    #[test]
    fn every_type_and_role_reads_from_record_batches_and_parquet() {
        let n = 1000;
        let batch = transactions(n);
        check_transactions(
            &Dataset::from_record_batches(
                &[batch.slice(0, 400), batch.slice(400, 600)],
                &options(),
            )
            .unwrap(),
            n,
        );
        let dir = tempfile::tempdir().unwrap();
        for (k, compression) in [
            Compression::SNAPPY,
            Compression::ZSTD(ZstdLevel::default()),
            Compression::LZ4_RAW,
            Compression::UNCOMPRESSED,
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.path().join(format!("tx{k}.parquet"));
            write(&path, std::slice::from_ref(&batch), 128, compression);
            let data = Dataset::from_parquet_path(&path, &options()).unwrap();
            check_transactions(&data, n);
            assert_eq!(
                Dataset::from_path(path.to_str().unwrap(), &options())
                    .unwrap()
                    .fingerprint(),
                data.fingerprint()
            );
            let url = format!("file://{}", path.display());
            assert_eq!(
                Dataset::from_path(&url, &options()).unwrap().fingerprint(),
                data.fingerprint(),
                "a file:// URL reads the same file"
            );
        }
    }

    #[test]
    fn chunks_stream_row_groups_and_count_rows_from_the_start() {
        let n = 1000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tx.parquet");
        write(&path, &[transactions(n)], 300, Compression::SNAPPY);
        let chunks = ParquetChunks::open(&path, &options(), 128).unwrap();
        assert_eq!(chunks.rows(), n as u64);
        assert_eq!(chunks.row_groups(), 4);
        let parts: Vec<Dataset> = chunks.map(Result::unwrap).collect();
        assert!(parts.iter().all(|p| p.n_rows() <= 128 && p.n_rows() > 0));
        let whole = Dataset::concat(&parts.iter().collect::<Vec<_>>()).unwrap();
        check_transactions(&whole, n);
        // Row numbers in errors count from the start of the file, not of the chunk.
        let big = Int64Array::from_iter_values((0..n as i64).map(|i| {
            if i == 777 {
                (1 << 40) + 1
            } else {
                i
            }
        }));
        let path = dir.path().join("big.parquet");
        write(
            &path,
            &[RecordBatch::try_from_iter([("x", col(big))]).unwrap()],
            300,
            Compression::SNAPPY,
        );
        let err = ParquetChunks::open(&path, &CsvOptions::default(), 100)
            .unwrap()
            .find_map(Result::err)
            .unwrap()
            .to_string();
        assert!(err.contains("row 777, column `x`"), "{err}");
        assert!(err.contains("1099511627777"), "{err}");
        assert_eq!(
            ParquetChunks::open(&path, &CsvOptions::default(), 0)
                .unwrap_err()
                .to_string(),
            "invalid batch_rows = 0: expected at least 1 row per chunk"
        );
    }

    #[test]
    fn only_the_needed_columns_are_decoded() {
        // An ignored column the reader cannot read at all (nested) is never decoded.
        let list = ListArray::from_iter_primitive::<mlops_core::arrow::array::types::Int32Type, _, _>(
            vec![Some(vec![Some(1), Some(2)]), None, Some(vec![])],
        );
        let batch = RecordBatch::try_from_iter([
            ("x", col(Float64Array::from(vec![1.0, 2.0, 3.0]))),
            ("tags", col(list)),
        ])
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested.parquet");
        write(&path, &[batch], 1024, Compression::SNAPPY);
        let err = Dataset::from_parquet_path(&path, &CsvOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Data { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("column `tags`"), "{text}");
        assert!(text.contains("nested"), "{text}");
        let data =
            Dataset::from_parquet_path(&path, &CsvOptions::default().ignore(["tags"])).unwrap();
        assert_eq!(data.column("x").unwrap().to_vec(), [1.0, 2.0, 3.0]);
    }

    fn parquet_error(batch: RecordBatch, options: &CsvOptions) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.parquet");
        write(&path, &[batch], 1024, Compression::SNAPPY);
        Dataset::from_parquet_path(&path, options)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_columns_are_named_with_their_row() {
        let text = parquet_error(
            RecordBatch::try_from_iter([
                ("x", col(Float64Array::from(vec![1.0, 2.0]))),
                ("city", col(StringArray::from(vec!["Oslo", "Rome"]))),
            ])
            .unwrap(),
            &CsvOptions::default(),
        );
        assert!(text.contains("Parquet "), "{text}");
        assert!(text.contains("column `city`"), "{text}");
        assert!(text.contains("holds Utf8"), "{text}");
        assert!(text.contains("dictionary"), "{text}");

        let text = parquet_error(
            RecordBatch::try_from_iter([("x", col(Float64Array::from(vec![1.0, 1e300])))]).unwrap(),
            &CsvOptions::default(),
        );
        assert!(text.contains("row 1, column `x`"), "{text}");
        assert!(text.contains("outside the range"), "{text}");

        let text = parquet_error(
            RecordBatch::try_from_iter([("code", col(Float64Array::from(vec![1.0, 2.5])))])
                .unwrap(),
            &CsvOptions::default().categorical(["code"]),
        );
        assert!(text.contains("row 1, column `code`"), "{text}");
        assert!(text.contains("not an integer category code"), "{text}");

        let text = parquet_error(
            RecordBatch::try_from_iter([
                ("x", col(Float64Array::from(vec![1.0]))),
                ("label", col(StringArray::from(vec!["fraud"]))),
            ])
            .unwrap(),
            &CsvOptions::with_label("label"),
        );
        assert!(text.contains("column `label`"), "{text}");
        assert!(text.contains("the label"), "{text}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        write(
            &path,
            &[RecordBatch::try_from_iter([("x", col(Float64Array::from(vec![1.0])))]).unwrap()],
            1024,
            Compression::SNAPPY,
        );
        let err = Dataset::from_parquet_path(&path, &CsvOptions::with_label("y")).unwrap_err();
        assert!(
            matches!(&err, Error::MissingColumn { name, available } if name == "y" && available == "x"),
            "{err:?}"
        );
    }

    #[test]
    fn text_categories_are_coded_by_value_in_every_row_group() {
        let b = |texts: &[Option<&str>]| {
            let d: DictionaryArray<Int8Type> = texts.iter().copied().collect();
            RecordBatch::try_from_iter([("m", col(d))]).unwrap()
        };
        // Each batch's dictionary lists its categories in its own order (as a Parquet
        // writer's dictionary page per row group does); a category keeps its code throughout.
        // (The null sits in the first batch: a Parquet writer takes its schema, nullability
        // included, from there.)
        let batches = [
            b(&[Some("shop"), None, Some("fuel")]),
            b(&[Some("fuel"), Some("travel"), Some("shop")]),
        ];
        let mut given = CsvOptions::default();
        given.categories.insert(
            "m".into(),
            ["fuel", "shop", "travel"].map(String::from).to_vec(),
        );
        let want = [1.0, f32::NAN, 0.0, 0.0, 2.0, 1.0];
        let same = |got: Vec<f32>| {
            assert_eq!(got.len(), want.len());
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a == b || a.is_nan() && b.is_nan()),
                "{got:?}"
            );
        };
        same(
            Dataset::from_record_batches(&batches, &given)
                .unwrap()
                .column("m")
                .unwrap()
                .to_vec(),
        );
        // Through Parquet in row groups of 2 rows, read whole and in chunks of 1, 3 and 4.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.parquet");
        write(&path, &batches, 2, Compression::SNAPPY);
        same(
            Dataset::from_parquet_path(&path, &given)
                .unwrap()
                .column("m")
                .unwrap()
                .to_vec(),
        );
        for rows in [1, 3, 4] {
            let parts: Vec<Dataset> = ParquetChunks::open(&path, &given, rows)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let whole = Dataset::concat(&parts.iter().collect::<Vec<_>>()).unwrap();
            same(whole.column("m").unwrap().to_vec());
        }
        // Without the list: refused, naming the column (codes from the data would vary).
        let text = Dataset::from_parquet_path(&path, &CsvOptions::default())
            .unwrap_err()
            .to_string();
        assert!(text.contains("column `m`: holds text categories"), "{text}");
        // An unlisted value is named with its row; a repeated category is refused.
        given
            .categories
            .insert("m".into(), vec!["fuel".into(), "shop".into()]);
        let text = Dataset::from_parquet_path(&path, &given)
            .unwrap_err()
            .to_string();
        assert!(text.contains("row 4, column `m`"), "{text}");
        assert!(
            text.contains("`travel` is not one of the 2 categories given"),
            "{text}"
        );
        given
            .categories
            .insert("m".into(), vec!["fuel".into(), "fuel".into()]);
        assert!(Dataset::from_parquet_path(&path, &given)
            .unwrap_err()
            .to_string()
            .contains("each category once"));
        // A dictionary with no values (every row null) reads as missing, never a panic.
        let empty = DictionaryArray::<Int8Type>::try_new(
            mlops_core::arrow::array::Int8Array::from(vec![None, None]),
            col(StringArray::from(Vec::<&str>::new())),
        )
        .unwrap();
        let mut m = CsvOptions::default();
        m.categories.insert("m".into(), vec!["a".into()]);
        let data = Dataset::from_record_batches(
            &[RecordBatch::try_from_iter([("m", col(empty))]).unwrap()],
            &m,
        )
        .unwrap();
        assert!(data.column("m").unwrap().iter().all(|v| v.is_nan()));
        // Categories for a column that is not a text dictionary, or is ignored, and for CSV.
        let mut wrong = CsvOptions::default();
        wrong.categories.insert("x".into(), vec!["a".into()]);
        let batch =
            RecordBatch::try_from_iter([("x", col(Float64Array::from(vec![1.0])))]).unwrap();
        assert!(Dataset::from_record_batches(&[batch], &wrong)
            .unwrap_err()
            .to_string()
            .contains("a dictionary column with text values (it holds Float64)"));
        let text = Dataset::from_record_batches(&batches, &m.clone().ignore(["m"]))
            .unwrap_err()
            .to_string();
        assert!(text.contains("a feature column (it is ignored"), "{text}");
        assert!(Dataset::from_csv_reader("x\n1\n".as_bytes(), &wrong).is_err());
    }

    #[test]
    fn values_float32_or_f64_would_change_and_clashing_roles_are_refused() {
        // 2^53 + 1 rounds in f64 already: caught on the integer itself.
        for (name, array) in [
            ("i", col(Int64Array::from(vec![1, (1 << 53) + 1]))),
            (
                "u",
                col(mlops_core::arrow::array::UInt64Array::from(vec![
                    1,
                    u64::MAX,
                ])),
            ),
        ] {
            let text = Dataset::from_record_batches(
                &[RecordBatch::try_from_iter([(name, array)]).unwrap()],
                &CsvOptions::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(text.contains(&format!("row 1, column `{name}`")), "{text}");
            assert!(text.contains("cannot be held exactly"), "{text}");
        }
        let batch = RecordBatch::try_from_iter([
            ("x", col(Float64Array::from(vec![1.0, 2.0]))),
            ("w", col(Float64Array::from(vec![1.0, 1e39]))),
            ("y", col(Int64Array::from(vec![0, 1]))),
        ])
        .unwrap();
        let text = Dataset::from_record_batches(
            std::slice::from_ref(&batch),
            &CsvOptions::with_label("y").weight("w"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            text.contains("row 1, column `w`: 1e39 is outside"),
            "{text}"
        );
        for (options, says) in [
            (
                CsvOptions::with_label("y").ignore(["y"]),
                "CsvOptions.ignore",
            ),
            (CsvOptions::with_label("y").weight("y"), "CsvOptions.weight"),
        ] {
            let text = Dataset::from_record_batches(std::slice::from_ref(&batch), &options)
                .unwrap_err()
                .to_string();
            assert!(text.contains("one role") && text.contains(says), "{text}");
        }
    }

    #[test]
    fn a_reader_stopped_by_an_error_stays_stopped_and_paths_are_not_urls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.parquet");
        let x = Float64Array::from(vec![1.0, 1e300, 3.0]);
        write(
            &path,
            &[RecordBatch::try_from_iter([("x", col(x))]).unwrap()],
            1,
            Compression::SNAPPY,
        );
        let mut chunks = ParquetChunks::open(&path, &CsvOptions::default(), 1).unwrap();
        assert!(chunks.read_all().unwrap_err().to_string().contains("row 1"));
        assert!(chunks
            .read_all()
            .unwrap_err()
            .to_string()
            .contains("read to its end or past an error"));
        let mut chunks = ParquetChunks::open(&path, &CsvOptions::default(), 1).unwrap();
        assert!(chunks.next().unwrap().is_ok());
        assert!(chunks.next().unwrap().is_err());
        assert!(chunks.next().is_none());
        // A drive letter is a path, any case of file:// and file://localhost/ a file, an
        // unknown scheme an error; none of them creates a folder.
        let good = dir.path().join("good.parquet");
        write(
            &good,
            &[RecordBatch::try_from_iter([("x", col(Float64Array::from(vec![1.0])))]).unwrap()],
            1,
            Compression::SNAPPY,
        );
        for url in [
            format!("FILE://{}", good.display()),
            format!("file://localhost{}", good.display()),
        ] {
            assert_eq!(
                Dataset::from_path(&url, &CsvOptions::default())
                    .unwrap()
                    .n_rows(),
                1,
                "{url}"
            );
        }
        let cwd = std::env::current_dir().unwrap();
        for odd in ["C://no-such.parquet", "foo://bucket/no-such.parquet"] {
            assert!(
                Dataset::from_path(odd, &CsvOptions::default()).is_err(),
                "{odd}"
            );
        }
        assert!(!cwd.join("C:").exists() && !cwd.join("foo:").exists());
        let missing = dir.path().join("new.parquet");
        assert!(Dataset::from_path(
            format!("file://{}", missing.display()),
            &CsvOptions::default()
        )
        .is_err());
        assert!(!missing.exists(), "reading never creates what it reads");
    }

    #[test]
    fn files_that_are_not_whole_parquet_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        // No row groups: a writer closed before any row.
        let path = dir.path().join("empty.parquet");
        let schema = transactions(1).schema();
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None)
            .unwrap()
            .close()
            .unwrap();
        let text = Dataset::from_parquet_path(&path, &options())
            .unwrap_err()
            .to_string();
        assert!(text.contains("has 0 row groups and 0 rows"), "{text}");

        // Truncated anywhere: in the data, in the footer.
        let path = dir.path().join("whole.parquet");
        write(&path, &[transactions(5000)], 1000, Compression::SNAPPY);
        let bytes = std::fs::read(&path).unwrap();
        for cut in [bytes.len() / 2, bytes.len() - 3, 10, 0] {
            let cut_path = dir.path().join(format!("cut{cut}.parquet"));
            std::fs::write(&cut_path, &bytes[..cut]).unwrap();
            let err = Dataset::from_parquet_path(&cut_path, &options()).unwrap_err();
            assert!(matches!(err, Error::Data { .. }), "cut at {cut}: {err:?}");
            assert!(
                err.to_string().contains("expected a whole Parquet file"),
                "{err}"
            );
        }
        // Flipped bytes in the data pages, the footer intact: Parquet without page checksums
        // cannot always tell (a plain float page reads as other floats), but the reader never
        // panics, whatever the damage.
        for start in (4..bytes.len() - 8).step_by(bytes.len() / 40) {
            let mut corrupt = bytes.clone();
            for b in corrupt.iter_mut().skip(start).take(64) {
                *b ^= 0x5a;
            }
            let corrupt_path = dir.path().join("corrupt.parquet");
            std::fs::write(&corrupt_path, &corrupt).unwrap();
            let _ = Dataset::from_parquet_path(&corrupt_path, &options());
        }

        // A CSV file named .parquet; a directory.
        let csv_path = dir.path().join("data.parquet");
        std::fs::write(&csv_path, "x,label\n1,0\n").unwrap();
        let text = Dataset::from_path(csv_path.to_str().unwrap(), &options())
            .unwrap_err()
            .to_string();
        assert!(
            text.starts_with(&format!("Parquet {}", csv_path.display())),
            "{text}"
        );
        assert!(Dataset::from_parquet_path(dir.path(), &options())
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
        assert!(is_parquet_name("s3://b/DATA.PARQUET") && !is_parquet_name("data.csv"));
    }

    #[test]
    fn scores_are_read_in_full_precision() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scores.parquet");
        let batch = RecordBatch::try_from_iter([
            (
                "score",
                col(Float64Array::from(vec![Some(0.123456789012345), None])),
            ),
            ("label", col(BooleanArray::from(vec![true, false]))),
        ])
        .unwrap();
        write(&path, &[batch], 1024, Compression::SNAPPY);
        let cols = read_parquet_columns(path.to_str().unwrap(), &["label", "score"]).unwrap();
        assert_eq!(cols[0], [1.0, 0.0]);
        assert_eq!(cols[1][0], 0.123456789012345);
        assert!(cols[1][1].is_nan());
    }
}
