//! What the log writes: a partition's scored rows column by column, posted labels, their
//! Arrow schema, one Parquet file per batch of a partition, and the partition's key.

use std::sync::Arc;

use arrow_array::builder::{StringBuilder, UInt32Builder, UInt64Builder};
use arrow_array::{
    ArrayRef, Float32Array, RecordBatch, TimestampMicrosecondArray, UInt32Array, UInt8Array,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::tap::Entry;
use crate::{Error, ErrorKind, Result};

/// The two kinds of rows, each under its own top folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowKind {
    /// Scored rows: `predictions/model=…/hour=…/part-….parquet`.
    Predictions,
    /// Posted labels: `labels/model=…/hour=…/part-….parquet`.
    Labels,
}

impl RowKind {
    /// The top folder and the `kind` label of the log's metrics: `predictions`, `labels`.
    ///
    /// ```
    /// assert_eq!(mlops_serve::predlog::RowKind::Labels.as_str(), "labels");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Predictions => "predictions",
            RowKind::Labels => "labels",
        }
    }
}

/// One label post.
pub(crate) struct LabelRows {
    pub(crate) request_id: Box<str>,
    pub(crate) labels: Vec<u8>,
}

/// What one label post left, with its model and time (microseconds since the epoch, UTC).
pub(crate) struct Rows {
    pub(crate) model: Arc<str>,
    pub(crate) time_us: i64,
    pub(crate) labels: LabelRows,
}

impl Rows {
    pub(crate) fn len(&self) -> usize {
        self.labels.labels.len()
    }
}

/// The hour `time_us` (microseconds since the epoch) falls in, in hours since the epoch.
pub(crate) fn hour_of(time_us: i64) -> i64 {
    time_us.div_euclid(3_600_000_000)
}

/// The scored rows of one partition (model, hour, feature names), column by column as they
/// come off the tap: no allocation per request.
pub(crate) struct ScoredColumns {
    features: Arc<[String]>,
    ids: StringBuilder,
    row: Vec<u32>,
    time: Vec<i64>,
    version: UInt64Builder,
    variant: StringBuilder,
    /// Row-major, `features.len()` values a row (transposed when encoded).
    x: Vec<f32>,
    predictions: Vec<f32>,
}

impl ScoredColumns {
    pub(crate) fn new(features: Arc<[String]>) -> Self {
        ScoredColumns {
            features,
            ids: StringBuilder::new(),
            row: Vec::new(),
            time: Vec::new(),
            version: UInt64Builder::new(),
            variant: StringBuilder::new(),
            x: Vec::new(),
            predictions: Vec::new(),
        }
    }

    /// Whether rows with these feature names belong here (the same names, by pointer or
    /// by value).
    pub(crate) fn holds(&self, features: &Arc<[String]>) -> bool {
        Arc::ptr_eq(&self.features, features) || self.features == *features
    }

    /// Rows held.
    pub(crate) fn len(&self) -> usize {
        self.predictions.len()
    }

    /// Appends one request's rows; refused (an internal error) when `x` is not one row of
    /// this partition's width per prediction.
    pub(crate) fn push(&mut self, e: &Entry<'_>) -> Result<()> {
        let width = self.features.len();
        if e.x.len() != e.predictions.len() * width {
            return Err(internal("buffering", "rows of another width"));
        }
        let variant = e.run.variant.as_deref().unwrap_or("");
        for (i, &p) in e.predictions.iter().enumerate() {
            self.ids.append_option(e.request_id);
            self.row.push(u32::try_from(i).unwrap_or(u32::MAX));
            self.time.push(e.time_us);
            self.version.append_option(e.run.version);
            self.variant.append_value(variant);
            self.predictions.push(p);
        }
        self.x.extend_from_slice(e.x);
        Ok(())
    }

    /// The rows as one Parquet file.
    pub(crate) fn encode(mut self) -> Result<Vec<u8>> {
        let n = self.len();
        if n == 0 {
            return Err(internal("encoding", "an empty batch"));
        }
        let width = self.features.len();
        let mut fields = vec![
            Field::new("request_id", DataType::Utf8, true),
            Field::new("row", DataType::UInt32, false),
            time_field(),
            Field::new("version", DataType::UInt64, true),
            Field::new("variant", DataType::Utf8, false),
        ];
        for name in self.features.iter() {
            fields.push(Field::new(feature_column(name), DataType::Float32, true));
        }
        fields.push(Field::new(PREDICTION, DataType::Float32, true));
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.ids.finish()),
            Arc::new(UInt32Array::from(self.row)),
            Arc::new(TimestampMicrosecondArray::from(self.time).with_timezone("UTC")),
            Arc::new(self.version.finish()),
            Arc::new(self.variant.finish()),
        ];
        // Column-major, each feature's values one slice of one buffer (written by index: no
        // per-value capacity check; the columns share the buffer without a copy).
        let mut features = vec![0.0_f32; n * width];
        if width > 0 {
            for (at, values) in self.x.chunks_exact(width).enumerate() {
                for (j, &v) in values.iter().enumerate() {
                    features[j * n + at] = v;
                }
            }
        }
        let features = arrow_buffer::ScalarBuffer::from(features);
        for j in 0..width {
            columns.push(Arc::new(Float32Array::new(features.slice(j * n, n), None)));
        }
        columns.push(Arc::new(Float32Array::from(self.predictions)));
        write_file(fields, columns)
    }
}

/// The columns every scored row has, before its features.
pub const PREDICTION_COLUMNS: [&str; 5] = ["request_id", "row", "time", "version", "variant"];

/// The column of a scored row's probability, after its features.
pub const PREDICTION: &str = "prediction";

/// The columns of a label row.
pub const LABEL_COLUMNS: [&str; 4] = ["request_id", "row", "time", "label"];

/// The column name of feature `name`: the name itself, or `feature.{name}` where it would
/// clash with a fixed column or a partition column (`model`, `hour`), in any case (DuckDB's
/// names are case-insensitive).
pub(crate) fn feature_column(name: &str) -> String {
    let fixed = PREDICTION_COLUMNS
        .iter()
        .chain(&[PREDICTION, "model", "hour"])
        .any(|c| c.eq_ignore_ascii_case(name));
    if fixed {
        format!("feature.{name}")
    } else {
        name.to_owned()
    }
}

fn time_field() -> Field {
    Field::new(
        "time",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    )
}

fn internal(what: &str, e: impl std::fmt::Display) -> Error {
    Error::with_kind(ErrorKind::Internal, format!("prediction log: {what}: {e}"))
}

/// Rows encoded between two yields of the writer's thread.
const ENCODE_SLICE_ROWS: usize = 1024;

/// The label posts of one partition (model, hour) as one Parquet file.
pub(crate) fn encode_labels(rows: &[Rows]) -> Result<Vec<u8>> {
    let n: usize = rows.iter().map(Rows::len).sum();
    if n == 0 {
        return Err(internal("encoding", "an empty batch"));
    }
    let mut ids = StringBuilder::with_capacity(n, n * 16);
    let mut row = UInt32Builder::with_capacity(n);
    let mut time = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for r in rows {
        for (i, &label) in r.labels.labels.iter().enumerate() {
            ids.append_value(&*r.labels.request_id);
            row.append_value(u32::try_from(i).unwrap_or(u32::MAX));
            time.push(r.time_us);
            labels.push(label);
        }
    }
    let fields = vec![
        Field::new("request_id", DataType::Utf8, false),
        Field::new("row", DataType::UInt32, false),
        time_field(),
        Field::new("label", DataType::UInt8, false),
    ];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ids.finish()),
        Arc::new(row.finish()),
        Arc::new(TimestampMicrosecondArray::from(time).with_timezone("UTC")),
        Arc::new(UInt8Array::from(labels)),
    ];
    write_file(fields, columns)
}

/// `columns` under `fields` as one Parquet file.
fn write_file(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<Vec<u8>> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| internal("building the record batch", e))?;
    // Dictionaries only where values repeat (a variant, a version): a feature, a score, a
    // request id or a time is mostly distinct, and hashing each into a dictionary that is
    // then abandoned was a third of the writer's time.
    let properties = WriterProperties::builder()
        .set_dictionary_enabled(false)
        .set_column_dictionary_enabled(ColumnPath::from("variant"), true)
        .set_column_dictionary_enabled(ColumnPath::from("version"), true)
        .set_compression(Compression::SNAPPY)
        .set_created_by(format!("mlops-serve {}", env!("CARGO_PKG_VERSION")))
        .build();
    let total = batch.num_rows();
    let mut writer = ArrowWriter::try_new(Vec::with_capacity(total * 16), schema, Some(properties))
        .map_err(|e| internal("starting the Parquet file", e))?;
    // In slices, giving the CPU away between them: the writer's thread then holds a core for
    // about a millisecond at a time, not for a whole file (the request threads' p99).
    let mut offset = 0;
    while offset < total {
        let len = ENCODE_SLICE_ROWS.min(total - offset);
        writer
            .write(&batch.slice(offset, len))
            .map_err(|e| internal("writing the Parquet file", e))?;
        offset += len;
        std::thread::yield_now();
    }
    writer
        .into_inner()
        .map_err(|e| internal("closing the Parquet file", e))
}

/// `value` as a Hive partition value: bytes other than `A-Z a-z 0-9 - _ .` percent-encoded
/// (pyarrow decodes them; `/` and `=` cannot break the layout).
pub(crate) fn partition_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The civil date (year, month, day) of `days` since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Hour `hour` (since the epoch) as `YYYY-MM-DDTHH`, UTC.
///
/// ```
/// // 2026-12-05 08:00 UTC
/// assert_eq!(mlops_serve::predlog::hour_name(1_796_457_600 / 3600), "2026-12-05T08");
/// assert_eq!(mlops_serve::predlog::hour_name(0), "1970-01-01T00");
/// ```
pub fn hour_name(hour: i64) -> String {
    let (year, month, day) = civil_from_days(hour.div_euclid(24));
    format!("{year:04}-{month:02}-{day:02}T{:02}", hour.rem_euclid(24))
}

/// Days since 1970-01-01 of the civil date (year, month, day) (Howard Hinnant's algorithm,
/// the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The hour (since the epoch) an [`hour_name`] names; `None` for any other text. A reader
/// compares hours by number: past year 9999 the names are longer and no longer sort as text.
pub(crate) fn parse_hour_name(name: &str) -> Option<i64> {
    let (date, hour) = name.split_once('T')?;
    let mut parts = date.rsplitn(3, '-');
    let (day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
    let (year, month, day, hour): (i64, u32, u32, i64) = (
        year.parse().ok()?,
        month.parse().ok()?,
        day.parse().ok()?,
        hour.parse().ok()?,
    );
    // Past ±1.1e15 years no hour of an i64 microsecond clock is named (and the day count
    // would overflow).
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..24).contains(&hour)
        || year.unsigned_abs() > 1_100_000_000_000_000
    {
        return None;
    }
    let hours = days_from_civil(year, month, day)
        .checked_mul(24)?
        .checked_add(hour)?;
    // Only the canonical spelling (no `2026-1-5T8`, no day 31 of a 30-day month).
    (hour_name(hours) == name).then_some(hours)
}

/// The key of a file under the log's root: `{kind}/model={model}/hour={hour}/{file}`.
pub(crate) fn partition_key(kind: RowKind, model: &str, hour: i64, file: &str) -> String {
    format!(
        "{}/model={}/hour={}/{file}",
        kind.as_str(),
        partition_value(model),
        hour_name(hour)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_names_parse_back_and_compare_by_number_past_year_9999() {
        for hour in [
            0_i64,
            -1,
            1_796_457_600 / 3600,
            // 9999-12-31T23 and the hour after it, 10000-01-01T00.
            days_from_civil(9_999, 12, 31) * 24 + 23,
            days_from_civil(10_000, 1, 1) * 24,
            -days_from_civil(2_000, 2, 29) * 24 - 5,
        ] {
            assert_eq!(
                parse_hour_name(&hour_name(hour)),
                Some(hour),
                "{}",
                hour_name(hour)
            );
        }
        let (late, later) = (
            days_from_civil(9_999, 12, 31) * 24 + 23,
            days_from_civil(10_000, 1, 1) * 24,
        );
        assert_eq!(later, late + 1);
        // As text the later hour sorts first; as numbers it does not.
        assert!(hour_name(later) < hour_name(late));
        assert!(parse_hour_name(&hour_name(later)) > parse_hour_name(&hour_name(late)));
        for bad in [
            "",
            "x",
            "2026-12-05",
            "2026-13-01T00",
            "2026-02-30T00",
            "2026-1-5T8",
            "2026-12-05T24",
            "100000000000000000-01-01T00",
            "-9223372036854775808-01-01T00",
        ] {
            assert_eq!(parse_hour_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2000-02-29 and 2026-12-05.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_792), (2026, 12, 5));
    }

    #[test]
    fn partition_values_cannot_break_the_layout() {
        assert_eq!(partition_value("fraud-v2_a.b"), "fraud-v2_a.b");
        assert_eq!(partition_value("a/b=c d"), "a%2Fb%3Dc%20d");
        assert_eq!(
            partition_key(RowKind::Labels, "m", 0, "part-1.parquet"),
            "labels/model=m/hour=1970-01-01T00/part-1.parquet"
        );
    }

    #[test]
    fn a_feature_named_like_a_fixed_column_is_prefixed() {
        assert_eq!(feature_column("prediction"), "feature.prediction");
        assert_eq!(feature_column("model"), "feature.model");
        assert_eq!(feature_column("Time"), "feature.Time");
        assert_eq!(feature_column("amount"), "amount");
    }
}
