//! Reading Arrow record batches and Parquet files into a [`Dataset`] (feature `parquet`), with
//! the same [`CsvOptions`] roles as CSV (label, weight, order, ignored and categorical
//! columns) and errors that name the input, the row and the column.
//!
//! **Types.** A feature column may be any float (16, 32, 64 bit), integer or boolean column,
//! or a dictionary column; a null is a missing value (`NaN`), as an empty CSV cell is. Values
//! go to `f32` with CSV's rules: a float beyond `f32`'s range, or an integer `f32` would round
//! (an id, a Unix time beyond ±2^24), is an error naming the row, never a silently changed
//! number. A **dictionary column with text values** (a pandas `Categorical`, polars `Categorical`
//! / `Enum`, Arrow `dictionary<values=string>`) is categorical, coded **by value** through
//! the list [`CsvOptions::categories`] gives for it: a category's code is its position in the
//! list (pandas' `cat.categories` of the training frame, so the codes equal the `cat.codes` an
//! XGBoost or LightGBM model trained on that frame reads), the same in every batch and file
//! whatever order each row group's dictionary page has, and a value not listed is an error
//! naming the row. Without a list such a column is refused: codes taken from the data itself
//! would change with the file, its row groups and even the batch size. A dictionary of
//! numbers reads as its values. A text column that is not a dictionary, a nested column
//! (list, struct, map) or a binary column is refused, naming the column, unless it is ignored.
//! The order column may also be a timestamp or a date (read as seconds since the epoch).
//!
//! **Parquet** is read a row group at a time with only the needed columns decoded
//! (projection): [`Dataset::from_parquet_path`] for a whole file, [`ParquetChunks`] to stream
//! one in bounded memory (a drift profile of a file larger than memory,
//! `ProfileSketch::from_chunks` in mlops-drift), and, with the `object-store` feature, the same
//! on any URL the registry accepts (`s3://bucket/data.parquet`), fetched by byte range.
//!
//! ```
//! use std::sync::Arc;
//! use mlops_core::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
//! use mlops_core::{CsvOptions, Dataset};
//!
//! let batch = RecordBatch::try_from_iter([
//!     ("amount", Arc::new(Float64Array::from(vec![Some(10.5), None, Some(3.0)])) as ArrayRef),
//!     ("label", Arc::new(Int64Array::from(vec![1, 0, 0])) as ArrayRef),
//! ])?;
//! let data = Dataset::from_record_batches(&[batch], &CsvOptions::with_label("label"))?;
//! assert_eq!(data.n_rows(), 3);
//! assert!(data.features()[[1, 0]].is_nan());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Int8Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Schema as ArrowSchema, TimeUnit};
use ndarray::{Array1, Array2};
use parquet::arrow::arrow_reader::{
    ArrowReaderBuilder, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;

use crate::csv_io::CsvOptions;
use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::schema::ColumnKind;

/// Rows decoded per Arrow batch when reading Parquet (a row group is read in batches of this
/// many rows; a chunk of [`ParquetChunks`] is one batch).
pub const DEFAULT_BATCH_ROWS: usize = 65_536;

/// Largest integer every smaller one of which an `f32` holds exactly.
const F32_EXACT_INT: f64 = 16_777_216.0;

/// What a column of the input is for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Feature(ColumnKind),
    Label,
    Weight,
    Order,
    /// A plain number column read in full precision (`read_parquet_columns`).
    Value,
}

/// The columns to read and what each is for, checked against the input's schema before any
/// value is read.
#[derive(Debug, Clone)]
struct Plan {
    /// Names of the input columns (all of them), for errors.
    available: String,
    /// (index in the input schema, name, role), in input order.
    columns: Vec<(usize, String, Role)>,
}

impl Plan {
    fn new(schema: &ArrowSchema, options: &CsvOptions, input: &str) -> Result<Plan> {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let available = names.join(", ");
        let find = |name: &str| {
            names
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| Error::MissingColumn {
                    name: name.to_string(),
                    available: available.clone(),
                })
        };
        let mut seen = std::collections::HashSet::new();
        for name in &names {
            if !seen.insert(*name) {
                return Err(data_error(
                    input,
                    format!("column `{name}`"),
                    "appears twice; expected unique column names",
                ));
            }
        }
        let label = options.label.as_deref().map(find).transpose()?;
        let weight = options.weight.as_deref().map(find).transpose()?;
        let order = options.order.as_deref().map(find).transpose()?;
        for name in options.ignore.iter().chain(&options.categorical) {
            find(name)?;
        }
        // One role a column: the label, weight and order are never ignored or shared.
        let roles = [
            ("label", &options.label),
            ("weight", &options.weight),
            ("order", &options.order),
        ];
        for (k, (role, name)) in roles.iter().enumerate() {
            let Some(name) = name else { continue };
            let clash = options.ignore.iter().any(|n| n == name).then_some("ignore");
            let clash = clash.or_else(|| {
                roles[k + 1..]
                    .iter()
                    .find(|(_, other)| other.as_deref() == Some(name.as_str()))
                    .map(|(other, _)| *other)
            });
            if let Some(other) = clash {
                return Err(Error::invalid(
                    format!("CsvOptions.{role}"),
                    name,
                    format!("a column with one role (`{name}` is also in CsvOptions.{other})"),
                ));
            }
        }
        let mut columns = Vec::new();
        for (j, field) in schema.fields().iter().enumerate() {
            let name = field.name().as_str();
            if options.ignore.iter().any(|n| n == name) {
                continue;
            }
            let role = if Some(j) == label {
                Role::Label
            } else if Some(j) == weight {
                Role::Weight
            } else if Some(j) == order {
                Role::Order
            } else if options.categorical.iter().any(|n| n == name)
                || text_dictionary(field.data_type())
            {
                Role::Feature(ColumnKind::Categorical)
            } else {
                Role::Feature(ColumnKind::Numeric)
            };
            check_type(input, name, field.data_type(), role)?;
            columns.push((j, name.to_string(), role));
        }
        for name in options.categories.keys() {
            let j = find(name)?;
            let t = schema.field(j).data_type();
            if !text_dictionary(t) {
                return Err(Error::invalid(
                    "CsvOptions.categories",
                    name,
                    format!("a dictionary column with text values (it holds {t})"),
                ));
            }
            if !columns
                .iter()
                .any(|(i, _, r)| *i == j && matches!(r, Role::Feature(_)))
            {
                return Err(Error::invalid(
                    "CsvOptions.categories",
                    name,
                    "a feature column (it is ignored, or the label, weight or order)",
                ));
            }
        }
        for (_, name, role) in &columns {
            let j = find(name)?;
            let t = schema.field(j).data_type();
            if matches!(role, Role::Feature(_))
                && text_dictionary(t)
                && !options.categories.contains_key(name)
            {
                return Err(data_error(
                    input,
                    format!("column `{name}`"),
                    format!(
                        "holds text categories ({t}); expected their list in code order \
                         (CsvOptions.categories, --categories {name}=a,b,c, categories= in \
                         Python): codes taken from the data would differ between files, row \
                         groups and batches"
                    ),
                ));
            }
        }
        for name in &options.categorical {
            if !columns
                .iter()
                .any(|(_, n, r)| n == name && matches!(r, Role::Feature(_)))
            {
                return Err(Error::invalid(
                    "CsvOptions.categorical",
                    name,
                    "a feature column (not the label, weight, order or an ignored column)",
                ));
            }
        }
        Ok(Plan { available, columns })
    }

    fn features(&self) -> impl Iterator<Item = (&str, ColumnKind)> {
        self.columns.iter().filter_map(|(_, n, r)| match r {
            Role::Feature(k) => Some((n.as_str(), *k)),
            _ => None,
        })
    }

    fn n_features(&self) -> usize {
        self.features().count()
    }
}

fn data_error(input: &str, location: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Data {
        input: input.to_string(),
        location: location.into(),
        message: message.into(),
    }
}

fn text_dictionary(t: &DataType) -> bool {
    matches!(t, DataType::Dictionary(_, v) if is_text(v))
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Numbers read as they are (decimals are not: cast them to floats first).
fn is_number(t: &DataType) -> bool {
    t.is_integer() || t.is_floating() || matches!(t, DataType::Boolean | DataType::Null)
}

fn check_type(input: &str, name: &str, t: &DataType, role: Role) -> Result<()> {
    let ok = match role {
        Role::Feature(ColumnKind::Categorical) => {
            is_number(t) || matches!(t, DataType::Dictionary(_, v) if is_text(v) || is_number(v))
        }
        Role::Feature(_) => is_number(t) || matches!(t, DataType::Dictionary(_, v) if is_number(v)),
        Role::Label | Role::Weight | Role::Value => is_number(t),
        Role::Order => {
            is_number(t)
                || matches!(
                    t,
                    DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
                )
        }
    };
    if ok {
        return Ok(());
    }
    let what = match role {
        Role::Feature(ColumnKind::Categorical) => {
            "integer category codes or a dictionary (categorical) column"
        }
        Role::Feature(_) => "numbers (a float, integer or boolean column)",
        Role::Label => "numbers (the label: 0/1 integers, floats or booleans)",
        Role::Weight => "numbers (the sample weight)",
        Role::Order => "numbers, a timestamp or a date (the order column)",
        Role::Value => "numbers (a float, integer or boolean column)",
    };
    let hint = if t.is_nested() {
        "a nested column cannot be a feature: ignore it (CsvOptions.ignore, --ignore) or flatten it"
    } else if is_text(t) {
        "text is not a number: ignore it, or write it as a dictionary (a pandas or polars Categorical) to read it as categorical"
    } else {
        "ignore it (CsvOptions.ignore, --ignore) or cast it"
    };
    Err(data_error(
        input,
        format!("column `{name}`"),
        format!("holds {t}; expected {what}; {hint}"),
    ))
}

/// A value narrowed to the `f32` of a feature, with CSV's rules (see the module docs).
fn narrow(v: f64, integer_source: bool) -> std::result::Result<f32, String> {
    let f = v as f32;
    if v.is_nan() || f64::from(f) == v {
        return Ok(f);
    }
    if f.is_infinite() && v.is_finite() {
        return Err(format!(
            "{v} is outside the range of a 32-bit float feature (about ±3.4e38); expected a \
             smaller value (rescale the column)"
        ));
    }
    if integer_source && v.abs() > F32_EXACT_INT {
        return Err(format!(
            "{v} cannot be held exactly by a 32-bit float feature (it would read {f}); expected \
             an integer within ±16,777,216: read a time or sequence column as the order column \
             (CsvOptions.order, --order-col) and ignore id columns"
        ));
    }
    Ok(f)
}

/// Calls `put(row, value)` for each row of a numeric, boolean or null column (`None` = null),
/// in `f64`; `integer` says whether the column holds integers (exactness rules), `seconds`
/// reads timestamps and dates as seconds since the epoch.
fn for_each_number(
    col: &dyn Array,
    mut put: impl FnMut(usize, Option<f64>) -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    macro_rules! prim {
        ($t:ty, $conv:expr) => {{
            let a = col.as_primitive::<$t>();
            if a.null_count() == 0 {
                for (i, v) in a.values().iter().enumerate() {
                    put(i, Some($conv(*v)))?;
                }
            } else {
                for (i, v) in a.iter().enumerate() {
                    put(i, v.map($conv))?;
                }
            }
            Ok(())
        }};
    }
    match col.data_type() {
        DataType::Float16 => prim!(
            Float16Type,
            |v: <Float16Type as arrow_array::ArrowPrimitiveType>::Native| v.to_f64()
        ),
        DataType::Float32 => prim!(Float32Type, f64::from),
        DataType::Float64 => prim!(Float64Type, |v: f64| v),
        DataType::Int8 => prim!(Int8Type, f64::from),
        DataType::Int16 => prim!(Int16Type, f64::from),
        DataType::Int32 => prim!(Int32Type, f64::from),
        DataType::Int64 => prim!(Int64Type, |v: i64| v as f64),
        DataType::UInt8 => prim!(UInt8Type, f64::from),
        DataType::UInt16 => prim!(UInt16Type, f64::from),
        DataType::UInt32 => prim!(UInt32Type, f64::from),
        DataType::UInt64 => prim!(UInt64Type, |v: u64| v as f64),
        DataType::Timestamp(TimeUnit::Second, _) => prim!(TimestampSecondType, |v: i64| v as f64),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            prim!(TimestampMillisecondType, |v: i64| v as f64 / 1e3)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            prim!(TimestampMicrosecondType, |v: i64| v as f64 / 1e6)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            prim!(TimestampNanosecondType, |v: i64| v as f64 / 1e9)
        }
        DataType::Date32 => prim!(Date32Type, |v: i32| f64::from(v) * 86_400.0),
        DataType::Date64 => prim!(Date64Type, |v: i64| v as f64 / 1e3),
        DataType::Boolean => {
            let a = col.as_boolean();
            for (i, v) in a.iter().enumerate() {
                put(i, v.map(|b| if b { 1.0 } else { 0.0 }))?;
            }
            Ok(())
        }
        DataType::Null => {
            for i in 0..col.len() {
                put(i, None)?;
            }
            Ok(())
        }
        t => Err(format!("holds {t}; expected numbers")),
    }
}

/// The first row of a 64-bit integer column whose value an `f32` does not hold exactly (an
/// `f64` would already have rounded it: 2^53 + 1).
fn first_inexact_integer(col: &dyn Array) -> Option<usize> {
    fn find<T: Copy + Into<i128>>(
        values: impl Iterator<Item = Option<T>>,
        to_f32: impl Fn(T) -> f32,
    ) -> Option<usize> {
        values.enumerate().find_map(|(i, v)| {
            let v = v?;
            let exact = to_f32(v);
            (!exact.is_finite() || exact as i128 != v.into()).then_some(i)
        })
    }
    match col.data_type() {
        DataType::Int64 => find(col.as_primitive::<Int64Type>().iter(), |v| v as f32),
        DataType::UInt64 => find(col.as_primitive::<UInt64Type>().iter(), |v| v as f32),
        _ => None,
    }
}

/// Row `i` of a 64-bit integer column as text.
fn arrow_cast_text(col: &dyn Array, i: usize) -> String {
    match col.data_type() {
        DataType::Int64 => col.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::UInt64 => col.as_primitive::<UInt64Type>().value(i).to_string(),
        _ => String::new(),
    }
}

fn is_integer_type(t: &DataType) -> bool {
    t.is_integer()
        || matches!(
            t,
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
        )
}

/// The codes of a text categorical column, given ([`CsvOptions::categories`]).
#[derive(Debug, Clone, Default)]
struct Vocabulary {
    codes: std::collections::HashMap<String, u32>,
    values: Vec<String>,
}

impl Vocabulary {
    fn given(column: &str, values: &[String]) -> Result<Vocabulary> {
        let mut v = Vocabulary::default();
        for text in values {
            let code = u32::try_from(v.values.len()).unwrap_or(u32::MAX);
            if v.codes.insert(text.clone(), code).is_some() {
                return Err(Error::invalid(
                    format!("CsvOptions.categories[{column}]"),
                    text,
                    "each category once",
                ));
            }
            v.values.push(text.clone());
        }
        if v.values.len() as f64 > F32_EXACT_INT {
            return Err(Error::invalid(
                format!("CsvOptions.categories[{column}]"),
                format!("{} categories", v.values.len()),
                "at most 16,777,216 categories (codes are 32-bit floats)",
            ));
        }
        Ok(v)
    }

    /// The code of `text`: `None` when the list lacks it.
    fn code(&self, text: &str) -> Option<u32> {
        self.codes.get(text).copied()
    }
}

/// The values accumulated from batches, and the category codes given so far (kept across
/// [`Sink::take`], so every chunk of one input codes categories the same way).
struct Sink {
    input: String,
    plan: Plan,
    /// Position of each plan column in the batches given (identity for record batches; the
    /// projected position for Parquet).
    positions: Vec<usize>,
    n_features: usize,
    values: Vec<f32>,
    labels: Vec<f32>,
    weights: Vec<f32>,
    order: Vec<f64>,
    rows: usize,
    /// Rows taken out by earlier [`Sink::take`] calls (row numbers in errors count them).
    rows_before: usize,
    /// Per plan column: the codes of its text categories (dictionary columns).
    vocabularies: Vec<Vocabulary>,
}

impl Sink {
    fn new(input: &str, plan: Plan, positions: Vec<usize>, options: &CsvOptions) -> Result<Sink> {
        let n_features = plan.n_features();
        let vocabularies = plan
            .columns
            .iter()
            .map(|(_, name, _)| match options.categories.get(name) {
                Some(values) => Vocabulary::given(name, values),
                None => Ok(Vocabulary::default()),
            })
            .collect::<Result<_>>()?;
        Ok(Sink {
            input: input.to_string(),
            plan,
            positions,
            n_features,
            values: Vec::new(),
            labels: Vec::new(),
            weights: Vec::new(),
            order: Vec::new(),
            rows: 0,
            rows_before: 0,
            vocabularies,
        })
    }

    fn row_error(&self, row: usize, column: &str, message: impl Into<String>) -> Error {
        data_error(
            &self.input,
            format!(
                "row {}, column `{column}`",
                self.rows_before + self.rows + row
            ),
            message,
        )
    }

    /// Appends a batch's rows, all or none: on an error every buffer is as it was.
    fn append(&mut self, batch: &RecordBatch) -> Result<()> {
        let lengths = (
            self.values.len(),
            self.labels.len(),
            self.weights.len(),
            self.order.len(),
        );
        let r = self.append_unchecked(batch);
        if r.is_err() {
            self.values.truncate(lengths.0);
            self.labels.truncate(lengths.1);
            self.weights.truncate(lengths.2);
            self.order.truncate(lengths.3);
        }
        r
    }

    fn append_unchecked(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let width = self.n_features;
        let start = self.values.len();
        let grow = n
            .checked_mul(width)
            .ok_or_else(|| self.row_error(0, "*", "too many values for this machine"))?;
        self.values
            .try_reserve(grow)
            .map_err(|e| self.row_error(0, "*", format!("cannot hold {n} more rows: {e}")))?;
        self.values.resize(start + grow, f32::NAN);
        let mut feature = 0;
        for k in 0..self.plan.columns.len() {
            let (_, name, role) = self.plan.columns[k].clone();
            let col = batch.column(self.positions[k]).clone();
            match role {
                Role::Feature(kind) => {
                    self.feature(&col, k, feature, kind, start, &name)?;
                    feature += 1;
                }
                Role::Label | Role::Weight => {
                    let mut out = Vec::with_capacity(n);
                    let mut failure = 0;
                    let r = for_each_number(col.as_ref(), |i, v| {
                        let x = v.map_or(f32::NAN, |v| v as f32);
                        if x.is_infinite() && v.is_some_and(f64::is_finite) {
                            failure = i;
                            return Err(format!(
                                "{:e} is outside the range of a 32-bit float; expected a smaller value",
                                v.unwrap_or_default()
                            ));
                        }
                        out.push(x);
                        Ok(())
                    });
                    r.map_err(|m| self.row_error(failure, &name, m))?;
                    if role == Role::Label {
                        self.labels.extend(out);
                    } else {
                        self.weights.extend(out);
                    }
                }
                Role::Order | Role::Value => {
                    let mut out = Vec::with_capacity(n);
                    let r = for_each_number(col.as_ref(), |_, v| {
                        out.push(v.unwrap_or(f64::NAN));
                        Ok(())
                    });
                    r.map_err(|m| self.row_error(0, &name, m))?;
                    self.order.extend(out);
                }
            }
        }
        self.rows += n;
        Ok(())
    }

    /// Writes feature column `feature` of a batch into the row-major values from `start`.
    fn feature(
        &mut self,
        col: &arrow_array::ArrayRef,
        k: usize,
        feature: usize,
        kind: ColumnKind,
        start: usize,
        name: &str,
    ) -> Result<()> {
        let width = self.n_features;
        if let Some(dict) = col.as_any_dictionary_opt() {
            let values = dict.values().clone();
            // Each dictionary entry's value: a text's code in the given list (`Err` with the
            // text when the list lacks it), or a number; `None` for a null entry.
            let entries: Vec<std::result::Result<Option<f64>, String>> =
                if is_text(values.data_type()) {
                    let vocabulary = &self.vocabularies[k];
                    texts(values.as_ref())
                        .into_iter()
                        .map(|t| match t {
                            None => Ok(None),
                            Some(t) => vocabulary.code(&t).map(|c| Some(f64::from(c))).ok_or(t),
                        })
                        .collect()
                } else {
                    let mut numbers = Vec::with_capacity(values.len());
                    for_each_number(values.as_ref(), |_, v| {
                        numbers.push(Ok(v));
                        Ok(())
                    })
                    .map_err(|m| self.row_error(0, name, m))?;
                    numbers
                };
            let integer = is_text(values.data_type()) || is_integer_type(values.data_type());
            let listed = self.vocabularies[k].values.len();
            let nulls = col.logical_nulls();
            let mut keys = Vec::with_capacity(col.len());
            for_each_number(dict.keys(), |_, key| {
                keys.push(key);
                Ok(())
            })
            .map_err(|m| self.row_error(0, name, m))?;
            for (i, key) in keys.into_iter().enumerate() {
                if nulls.as_ref().is_some_and(|b| b.is_null(i)) {
                    self.values[start + i * width + feature] = f32::NAN;
                    continue;
                }
                let entry = key
                    .filter(|k| *k >= 0.0 && (*k as usize) < entries.len())
                    .map(|k| &entries[k as usize]);
                let v = match entry {
                    Some(Ok(v)) => *v,
                    Some(Err(text)) => {
                        return Err(self.row_error(
                            i,
                            name,
                            format!(
                                "`{text}` is not one of the {listed} categories given \
                                 (CsvOptions.categories); expected a listed category"
                            ),
                        ))
                    }
                    None => {
                        return Err(self.row_error(
                            i,
                            name,
                            format!(
                                "dictionary key {} is outside the dictionary's {} values",
                                key.unwrap_or(f64::NAN),
                                entries.len()
                            ),
                        ))
                    }
                };
                let x = self.cell(v, integer, kind, i, name)?;
                self.values[start + i * width + feature] = x;
            }
            return Ok(());
        }
        if let Some(i) = first_inexact_integer(col.as_ref()) {
            return Err(self.row_error(
                i,
                name,
                format!(
                    "{} cannot be held exactly by a 32-bit float feature; expected an integer \
                     within ±16,777,216: read a time or sequence column as the order column \
                     (CsvOptions.order, --order-col) and ignore id columns",
                    arrow_cast_text(col.as_ref(), i)
                ),
            ));
        }
        let integer = is_integer_type(col.data_type());
        let mut failure = None;
        let values = &mut self.values;
        let r = for_each_number(col.as_ref(), |i, v| {
            match cell(v, integer, kind) {
                Ok(x) => values[start + i * width + feature] = x,
                Err(m) => {
                    failure = Some(i);
                    return Err(m);
                }
            }
            Ok(())
        });
        r.map_err(|m| self.row_error(failure.unwrap_or(0), name, m))
    }

    fn cell(
        &self,
        v: Option<f64>,
        integer: bool,
        kind: ColumnKind,
        row: usize,
        name: &str,
    ) -> Result<f32> {
        cell(v, integer, kind).map_err(|m| self.row_error(row, name, m))
    }

    /// The rows appended since the last take, as a dataset.
    fn take(&mut self) -> Result<Dataset> {
        let rows = self.rows;
        let values = std::mem::take(&mut self.values);
        let features = Array2::from_shape_vec((rows, self.n_features), values)
            .map_err(|e| Error::invalid("feature matrix", e, "rows × features values"))?;
        let names: Vec<String> = self.plan.features().map(|(n, _)| n.to_string()).collect();
        let categorical: Vec<&str> = self
            .plan
            .features()
            .filter(|(_, k)| *k == ColumnKind::Categorical)
            .map(|(n, _)| n)
            .collect();
        let mut data = Dataset::new(features, names)?.with_categorical(&categorical)?;
        for (_, name, role) in &self.plan.columns {
            match role {
                Role::Label => {
                    data = data
                        .with_labels(Array1::from(std::mem::take(&mut self.labels)), name.clone())?
                }
                Role::Weight => {
                    data = data.with_weights(Array1::from(std::mem::take(&mut self.weights)))?
                }
                Role::Order => {
                    data = data
                        .with_order(Array1::from(std::mem::take(&mut self.order)), name.clone())?
                }
                Role::Feature(_) | Role::Value => {}
            }
        }
        self.rows_before += rows;
        self.rows = 0;
        Ok(data)
    }
}

/// The texts of a Utf8, LargeUtf8 or Utf8View array (`None` = null).
fn texts(values: &dyn Array) -> Vec<Option<String>> {
    match values.data_type() {
        DataType::Utf8 => values
            .as_string::<i32>()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect(),
        DataType::LargeUtf8 => values
            .as_string::<i64>()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect(),
        _ => values
            .as_string_view()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect(),
    }
}

/// A feature value: a category must be an integer code.
fn cell(v: Option<f64>, integer: bool, kind: ColumnKind) -> std::result::Result<f32, String> {
    let Some(v) = v else { return Ok(f32::NAN) };
    let x = narrow(v, integer)?;
    if kind == ColumnKind::Categorical && x.is_finite() && x.fract() != 0.0 {
        return Err(format!(
            "{v} is not an integer category code; expected integer codes in a categorical column"
        ));
    }
    Ok(x)
}

impl Dataset {
    /// A dataset from Arrow record batches that share one schema; see the module docs for the
    /// types read and [`CsvOptions`] for the roles (`delimiter` and `missing_values` are CSV's:
    /// here a null is missing).
    pub fn from_record_batches(batches: &[RecordBatch], options: &CsvOptions) -> Result<Dataset> {
        let Some(first) = batches.first() else {
            return Err(Error::invalid(
                "record batches",
                "[]",
                "at least one batch (its schema names the columns)",
            ));
        };
        let schema = first.schema();
        let batches = batches
            .iter()
            .cloned()
            .map(Ok::<_, std::convert::Infallible>);
        Dataset::from_batch_iter(&schema, batches, options)
    }

    /// A dataset from a stream of Arrow record batches (an Arrow C stream imported from
    /// Python, a Flight stream), each converted as it arrives and then dropped: memory is the
    /// dataset plus one batch. Every batch must have `schema`'s columns; a stream error is
    /// returned as it is.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mlops_core::arrow::array::{ArrayRef, Int32Array, RecordBatch, RecordBatchIterator};
    /// use mlops_core::arrow::array::RecordBatchReader;
    /// use mlops_core::{CsvOptions, Dataset};
    ///
    /// let batch = RecordBatch::try_from_iter([("x", Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef)])?;
    /// let reader = RecordBatchIterator::new(vec![Ok(batch.clone()), Ok(batch.clone())], batch.schema());
    /// let schema = reader.schema();
    /// let data = Dataset::from_batch_iter(&schema, reader, &CsvOptions::default())?;
    /// assert_eq!(data.column("x")?.to_vec(), [1.0, 2.0, 1.0, 2.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_batch_iter<E: std::fmt::Display>(
        schema: &ArrowSchema,
        batches: impl IntoIterator<Item = std::result::Result<RecordBatch, E>>,
        options: &CsvOptions,
    ) -> Result<Dataset> {
        const INPUT: &str = "Arrow record batches";
        let plan = Plan::new(schema, options, INPUT)?;
        let positions = plan.columns.iter().map(|(j, _, _)| *j).collect();
        let mut sink = Sink::new(INPUT, plan, positions, options)?;
        for (b, batch) in batches.into_iter().enumerate() {
            let batch =
                batch.map_err(|e| data_error(INPUT, format!("batch {b}"), e.to_string()))?;
            // Names and types must agree; nullability may differ from batch to batch.
            let same = |a: &ArrowSchema, b: &ArrowSchema| {
                a.fields().len() == b.fields().len()
                    && a.fields()
                        .iter()
                        .zip(b.fields())
                        .all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type())
            };
            if !same(&batch.schema(), schema) {
                return Err(data_error(
                    INPUT,
                    format!("batch {b}"),
                    format!(
                        "its schema differs from the stream's; expected the columns {}",
                        sink.plan.available
                    ),
                ));
            }
            sink.append(&batch)?;
        }
        sink.take()
    }
}

impl Dataset {
    /// Reads a Parquet file (every row group, only the needed columns); see the module docs.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use mlops_core::arrow::array::{ArrayRef, DictionaryArray, Float32Array, RecordBatch};
    /// use mlops_core::arrow::array::types::Int8Type;
    /// use mlops_core::{ColumnKind, CsvOptions, Dataset};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("tx.parquet");
    /// let merchant: DictionaryArray<Int8Type> = vec!["shop", "fuel", "shop"].into_iter().collect();
    /// let batch = RecordBatch::try_from_iter([
    ///     ("amount", Arc::new(Float32Array::from(vec![9.5, 40.0, 3.25])) as ArrayRef),
    ///     ("merchant", Arc::new(merchant) as ArrayRef),
    /// ])?;
    /// let mut writer = mlops_core::arrow::parquet::arrow::ArrowWriter::try_new(
    ///     std::fs::File::create(&path)?, batch.schema(), None)?;
    /// writer.write(&batch)?;
    /// writer.close()?;
    ///
    /// // Text categories are coded through their list (pandas' cat.categories).
    /// let mut options = CsvOptions::default();
    /// options.categories.insert("merchant".into(), vec!["fuel".into(), "shop".into()]);
    /// let data = Dataset::from_parquet_path(&path, &options)?;
    /// assert_eq!(data.feature_kinds().collect::<Vec<_>>(), [ColumnKind::Numeric, ColumnKind::Categorical]);
    /// assert_eq!(data.column("merchant")?.to_vec(), [1.0, 0.0, 1.0]);
    /// // Without the list the column is refused: codes from the data would vary by file.
    /// assert!(Dataset::from_parquet_path(&path, &CsvOptions::default()).is_err());
    /// # Ok(()) }
    /// ```
    pub fn from_parquet_path(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Dataset> {
        let mut chunks = ParquetChunks::open(path.as_ref(), options, DEFAULT_BATCH_ROWS)?;
        chunks.read_all()
    }

    /// Reads a CSV or a Parquet file by its name: `.parquet` / `.pq` / `.parq` is Parquet,
    /// anything else CSV; with the `object-store` feature a URL (`s3://…`, `file:///…`) is read
    /// as Parquet from its store. The one loader the examples' `--data` flags use.
    pub fn from_path(location: impl AsRef<Path>, options: &CsvOptions) -> Result<Dataset> {
        let path = location.as_ref();
        let location = path.to_string_lossy();
        if is_url(&location) {
            return ParquetChunks::open_location(
                &location,
                &Default::default(),
                options,
                DEFAULT_BATCH_ROWS,
            )?
            .read_all();
        }
        if is_parquet_name(&location) {
            Dataset::from_parquet_path(path, options)
        } else {
            Dataset::from_csv_path(path, options)
        }
    }
}

/// Whether a file name says Parquet (`.parquet`, `.pq`, `.parq`, any case).
pub fn is_parquet_name(location: &str) -> bool {
    let lower = location.to_ascii_lowercase();
    [".parquet", ".pq", ".parq"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

fn is_url(location: &str) -> bool {
    // Two letters at least: `C://x` is a Windows path, not a URL.
    location.split_once("://").is_some_and(|(scheme, _)| {
        scheme.len() >= 2
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    })
}

/// The local path a `file://` URL names (`None` for other URLs): read as a file, not
/// opened as a folder store (which would create the folder).
fn file_url_path(location: &str) -> Result<Option<std::path::PathBuf>> {
    let Some((scheme, rest)) = location.split_once("://") else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("file") {
        return Ok(None);
    }
    // `file:///abs` or `file://localhost/abs` (RFC 8089). With the URL parser percent-escapes
    // are decoded; without it only a plain absolute path is taken.
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    #[cfg(feature = "object-store")]
    let path = url::Url::parse(&format!("file://{rest}"))
        .ok()
        .and_then(|u| u.to_file_path().ok())
        .filter(|_| rest.starts_with('/'));
    #[cfg(not(feature = "object-store"))]
    let path =
        Some(std::path::PathBuf::from(rest)).filter(|p| p.is_absolute() && !rest.contains('%'));
    path.map(Some).ok_or_else(|| {
        Error::invalid(
            "data URL",
            location,
            "file:// with an absolute path (or give the path itself)",
        )
    })
}

/// Where batches come from.
enum Batches {
    Local(ParquetRecordBatchReader),
    #[cfg(feature = "object-store")]
    Remote(remote::Pump),
}

/// A Parquet input read in chunks of at most `batch_rows` rows (each chunk a [`Dataset`]
/// with the same columns), so a file larger than memory can be profiled or scored a chunk at
/// a time. Row numbers in errors count from the start of the file.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use mlops_core::arrow::array::{ArrayRef, Float64Array, RecordBatch};
/// use mlops_core::arrow_io::ParquetChunks;
/// use mlops_core::CsvOptions;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("x.parquet");
/// let batch = RecordBatch::try_from_iter([
///     ("x", Arc::new(Float64Array::from_iter_values((0..1000).map(f64::from))) as ArrayRef),
/// ])?;
/// let mut w = mlops_core::arrow::parquet::arrow::ArrowWriter::try_new(
///     std::fs::File::create(&path)?, batch.schema(), None)?;
/// w.write(&batch)?;
/// w.close()?;
///
/// let mut rows = 0;
/// for chunk in ParquetChunks::open(&path, &CsvOptions::default(), 300)? {
///     let chunk = chunk?;
///     assert!(chunk.n_rows() <= 300);
///     rows += chunk.n_rows();
/// }
/// assert_eq!(rows, 1000);
/// # Ok(()) }
/// ```
pub struct ParquetChunks {
    batches: Batches,
    sink: Sink,
    rows: u64,
    row_groups: usize,
    done: bool,
}

impl std::fmt::Debug for ParquetChunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetChunks")
            .field("input", &self.sink.input)
            .field("rows", &self.rows)
            .field("row_groups", &self.row_groups)
            .finish_non_exhaustive()
    }
}

/// A file's reader, set up: its metadata checked, only the planned columns projected.
struct Prepared<T> {
    builder: ArrowReaderBuilder<T>,
    plan: Plan,
    positions: Vec<usize>,
    rows: u64,
    row_groups: usize,
}

/// Checks a file's metadata, plans the columns and projects the reader onto them.
fn prepare<T>(
    input: &str,
    builder: ArrowReaderBuilder<T>,
    options: &CsvOptions,
    batch_rows: usize,
) -> Result<Prepared<T>> {
    let row_groups = builder.metadata().num_row_groups();
    let rows = builder.metadata().file_metadata().num_rows();
    if row_groups == 0 || rows <= 0 {
        return Err(data_error(
            input,
            "file",
            format!(
                "has {row_groups} row groups and {rows} rows; expected a file with data (a \
                 writer closed before any row was written leaves none)"
            ),
        ));
    }
    let schema = builder.schema().clone();
    let plan = Plan::new(&schema, options, input)?;
    if builder.parquet_schema().root_schema().get_fields().len() != schema.fields().len() {
        return Err(data_error(
            input,
            "schema",
            "its Arrow schema does not match its Parquet columns; expected a flat table",
        ));
    }
    let roots: Vec<usize> = plan.columns.iter().map(|(j, _, _)| *j).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
    tracing::debug!(input, row_groups, rows, "Parquet opened");
    Ok(Prepared {
        builder: builder.with_projection(mask).with_batch_size(batch_rows),
        // The projected batch holds the chosen columns in file order, as the plan lists them.
        positions: (0..roots.len()).collect(),
        plan,
        rows: rows as u64,
        row_groups,
    })
}

fn parquet_error(input: &str, location: impl Into<String>, e: impl std::fmt::Display) -> Error {
    let text = e.to_string();
    let message = if text.contains("Disabled feature at compile time") {
        format!(
            "{text}; expected Parquet compressed with snappy, zstd or lz4 (or uncompressed), \
             which this build reads"
        )
    } else {
        format!("{text}; expected a whole Parquet file")
    };
    data_error(input, location, message)
}

impl ParquetChunks {
    /// Opens a local Parquet file; nothing but its footer is read until the first chunk.
    pub fn open(path: &Path, options: &CsvOptions, batch_rows: usize) -> Result<ParquetChunks> {
        let input = format!("Parquet {}", path.display());
        if batch_rows == 0 {
            return Err(Error::invalid("batch_rows", 0, "at least 1 row per chunk"));
        }
        if path.is_dir() {
            return Err(Error::invalid(
                "Parquet path",
                path.display(),
                "a Parquet file, not a directory",
            ));
        }
        let file = File::open(path).map_err(|e| Error::io("reading", path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| parquet_error(&input, "footer", e))?;
        let p = prepare(&input, builder, options, batch_rows)?;
        let reader = p
            .builder
            .build()
            .map_err(|e| parquet_error(&input, "file", e))?;
        Ok(ParquetChunks {
            batches: Batches::Local(reader),
            sink: Sink::new(&input, p.plan, p.positions, options)?,
            rows: p.rows,
            row_groups: p.row_groups,
            done: false,
        })
    }

    /// Opens a local path, or (feature `object-store`) an object-store URL the registry
    /// accepts (`s3://bucket/key.parquet`, `file:///abs/x.parquet`, …; credentials from the
    /// environment), read by byte ranges a row group at a time.
    ///
    /// `store_options` are the store builder's options (`aws_endpoint`, …) over the
    /// environment's, as the registry's; an unknown key is refused.
    pub fn open_location(
        location: &str,
        store_options: &std::collections::BTreeMap<String, String>,
        options: &CsvOptions,
        batch_rows: usize,
    ) -> Result<ParquetChunks> {
        if !is_url(location) {
            return ParquetChunks::open(Path::new(location), options, batch_rows);
        }
        if let Some(path) = file_url_path(location)? {
            return ParquetChunks::open(&path, options, batch_rows);
        }
        #[cfg(feature = "object-store")]
        {
            remote::open(location, store_options, options, batch_rows)
        }
        #[cfg(not(feature = "object-store"))]
        {
            let _ = store_options;
            Err(Error::invalid(
                "data location",
                location,
                "a local path (this build reads URLs only with the `object-store` feature)",
            ))
        }
    }

    /// Rows in the file, from its footer.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Row groups in the file.
    pub fn row_groups(&self) -> usize {
        self.row_groups
    }

    fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        let input = &self.sink.input;
        let at = self.sink.rows_before + self.sink.rows;
        match &mut self.batches {
            Batches::Local(reader) => reader
                .next()
                .map(|b| b.map_err(|e| parquet_error(input, format!("rows from {at}"), e))),
            #[cfg(feature = "object-store")]
            Batches::Remote(pump) => pump
                .next()
                .map(|b| b.map_err(|e| parquet_error(input, format!("rows from {at}"), e))),
        }
    }

    /// Every remaining row as one dataset.
    pub fn read_all(&mut self) -> Result<Dataset> {
        if self.done {
            return Err(Error::invalid(
                "ParquetChunks::read_all",
                "a reader read to its end or past an error",
                "a reader with rows left (open the input again)",
            ));
        }
        self.done = true;
        while let Some(batch) = self.next_batch() {
            self.sink.append(&batch?)?;
        }
        let data = self.sink.take()?;
        tracing::debug!(input = %self.sink.input, rows = data.n_rows(), "Parquet dataset loaded");
        Ok(data)
    }
}

impl Iterator for ParquetChunks {
    type Item = Result<Dataset>;

    fn next(&mut self) -> Option<Result<Dataset>> {
        if self.done {
            return None;
        }
        loop {
            match self.next_batch() {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Some(Ok(batch)) if batch.num_rows() == 0 => continue,
                Some(Ok(batch)) => {
                    let r = self.sink.append(&batch).and_then(|()| self.sink.take());
                    if r.is_err() {
                        self.done = true;
                    }
                    return Some(r);
                }
            }
        }
    }
}

/// Reads the named columns of a Parquet file as `f64` (scores written by another tool, read
/// in full precision); nulls are `NaN`.
pub fn read_parquet_columns(path: impl AsRef<Path>, names: &[&str]) -> Result<Vec<Vec<f64>>> {
    let path = path.as_ref();
    let input = format!("Parquet {}", path.display());
    let file = File::open(path).map_err(|e| Error::io("reading", path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| parquet_error(&input, "footer", e))?;
    let schema = builder.schema().clone();
    let available = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut idx = Vec::new();
    for name in names {
        let j = schema
            .fields()
            .iter()
            .position(|f| f.name() == name)
            .ok_or_else(|| Error::MissingColumn {
                name: name.to_string(),
                available: available.clone(),
            })?;
        check_type(&input, name, schema.field(j).data_type(), Role::Value)?;
        idx.push(j);
    }
    // Only the named columns are decoded; the batch holds them in file order.
    let mut roots = idx.clone();
    roots.sort_unstable();
    roots.dedup();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
    let idx: Vec<usize> = idx
        .iter()
        .map(|j| roots.iter().position(|r| r == j).unwrap_or(0))
        .collect();
    let reader = builder
        .with_projection(mask)
        .with_batch_size(DEFAULT_BATCH_ROWS)
        .build()
        .map_err(|e| parquet_error(&input, "file", e))?;
    let mut out: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut at = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(&input, format!("rows from {at}"), e))?;
        for (k, &j) in idx.iter().enumerate() {
            for_each_number(batch.column(j).as_ref(), |_, v| {
                out[k].push(v.unwrap_or(f64::NAN));
                Ok(())
            })
            .map_err(|m| data_error(&input, format!("column `{}`", names[k]), m))?;
        }
        at += batch.num_rows();
    }
    Ok(out)
}

#[cfg(feature = "object-store")]
mod remote {
    //! Parquet on an object store: the footer and then each row group's column chunks by
    //! byte range, on the library's runtime, handed to the caller's thread through a channel
    //! of two batches (so memory stays bounded however large the object).

    use std::ops::Range;
    use std::sync::Arc;

    use bytes::Bytes;
    use futures::future::BoxFuture;
    use futures::{FutureExt, StreamExt, TryFutureExt};
    use object_store::path::Path as StorePath;
    use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
    use parquet::arrow::arrow_reader::ArrowReaderOptions;
    use parquet::arrow::async_reader::{AsyncFileReader, MetadataSuffixFetch};
    use parquet::arrow::ParquetRecordBatchStreamBuilder;
    use parquet::errors::ParquetError;
    use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
    use tokio::sync::mpsc;

    use super::*;
    use crate::runtime;

    /// Byte ranges of one object (parquet's own object-store example, which its deprecated
    /// `ParquetObjectReader` points to).
    #[derive(Clone, Debug)]
    struct ObjectReader {
        store: Arc<dyn ObjectStore>,
        path: StorePath,
    }

    fn store_error(e: object_store::Error) -> ParquetError {
        ParquetError::External(Box::new(e))
    }

    impl AsyncFileReader for ObjectReader {
        fn get_bytes(
            &mut self,
            range: Range<u64>,
        ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
            self.store
                .get_range(&self.path, range)
                .map_err(store_error)
                .boxed()
        }

        fn get_byte_ranges(
            &mut self,
            ranges: Vec<Range<u64>>,
        ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
            async move {
                self.store
                    .get_ranges(&self.path, &ranges)
                    .await
                    .map_err(store_error)
            }
            .boxed()
        }

        fn get_metadata<'a>(
            &'a mut self,
            options: Option<&'a ArrowReaderOptions>,
        ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
            async move {
                let metadata = ParquetMetaDataReader::new()
                    .with_arrow_reader_options(options)
                    .load_via_suffix_and_finish(self)
                    .await?;
                Ok(Arc::new(metadata))
            }
            .boxed()
        }
    }

    impl MetadataSuffixFetch for &mut ObjectReader {
        fn fetch_suffix(&mut self, suffix: usize) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
            let options = GetOptions {
                range: Some(GetRange::Suffix(suffix as u64)),
                ..Default::default()
            };
            async move {
                let got = self
                    .store
                    .get_opts(&self.path, options)
                    .await
                    .map_err(store_error)?;
                got.bytes().await.map_err(store_error)
            }
            .boxed()
        }
    }

    /// The receiving end of the batches a task on the runtime reads.
    pub(super) struct Pump {
        rx: mpsc::Receiver<std::result::Result<RecordBatch, String>>,
    }

    impl Pump {
        pub(super) fn next(&mut self) -> Option<std::result::Result<RecordBatch, String>> {
            runtime::block_on(self.rx.recv())
        }
    }

    pub(super) fn open(
        location: &str,
        store_options: &std::collections::BTreeMap<String, String>,
        options: &CsvOptions,
        batch_rows: usize,
    ) -> Result<ParquetChunks> {
        if batch_rows == 0 {
            return Err(Error::invalid("batch_rows", 0, "at least 1 row per chunk"));
        }
        // Only object stores: open_url would make any other URL a local folder (and create it).
        let scheme = location.split_once("://").map_or("", |(s, _)| s);
        const STORES: [&str; 10] = [
            "s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss", "http", "https",
        ];
        if !STORES.iter().any(|s| scheme.eq_ignore_ascii_case(s)) {
            return Err(Error::invalid(
                "data URL",
                location,
                "a local path, file:///..., or an object-store URL (s3://, gs://, az://, \
                 abfs://, https://)",
            ));
        }
        let opened = crate::store_url::open_url("data URL", location, store_options)?;
        let input = format!("Parquet {}", opened.name);
        let store = opened.store.clone();
        let path = opened.prefix.clone();
        let builder = runtime::block_on(runtime::spawn(async move {
            let reader = ObjectReader { store, path };
            ParquetRecordBatchStreamBuilder::new(reader).await
        }))?
        .map_err(|e| parquet_error(&input, "footer", e))?;
        let p = prepare(&input, builder, options, batch_rows)?;
        let mut stream = p
            .builder
            .build()
            .map_err(|e| parquet_error(&input, "file", e))?;
        let (tx, rx) = mpsc::channel(2);
        runtime::handle()?.spawn(async move {
            while let Some(batch) = stream.next().await {
                let failed = batch.is_err();
                if tx.send(batch.map_err(|e| e.to_string())).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(ParquetChunks {
            batches: Batches::Remote(Pump { rx }),
            sink: Sink::new(&input, p.plan, p.positions, options)?,
            rows: p.rows,
            row_groups: p.row_groups,
            done: false,
        })
    }
}
