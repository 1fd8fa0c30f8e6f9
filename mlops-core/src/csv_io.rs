//! Reading CSV files into a [`Dataset`] (or into plain `f64` columns), with errors that name
//! the line, the column and the text.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::schema::{ColumnKind, ColumnSchema};

/// How to read a CSV file into a [`Dataset`]. serde with defaults, so it can come from a
/// config file.
///
/// Every column that is not the label, the weight or ignored becomes a feature, in file order.
/// Cells equal to one of `missing_values` (after trimming) become `NaN`; other cells must parse
/// as numbers (`inf`, `-inf` and `NaN` are accepted and left for validation to judge).
///
/// ```
/// use mlops_core::{CsvOptions, Dataset};
///
/// let csv = "id,x,y,label\n1,0.5,3,1\n2,,4,0\n";
/// let opts = CsvOptions::with_label("label").ignore(["id"]).categorical(["y"]);
/// let data = Dataset::from_csv_reader(csv.as_bytes(), &opts)?;
/// assert_eq!(data.feature_names().collect::<Vec<_>>(), ["x", "y"]);
/// assert!(data.features()[[1, 0]].is_nan());
///
/// let err = Dataset::from_csv_reader("x,label\nabc,1\n".as_bytes(), &opts.clone().ignore(Vec::<String>::new()).categorical(Vec::<String>::new()))
///     .unwrap_err();
/// assert!(err.to_string().contains("line 2"));
/// assert!(err.to_string().contains("`abc`"));
/// # Ok::<(), mlops_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CsvOptions {
    /// The label column, if any.
    pub label: Option<String>,
    /// The sample-weight column, if any.
    pub weight: Option<String>,
    /// Columns to skip.
    pub ignore: Vec<String>,
    /// Feature columns that hold integer category codes.
    pub categorical: Vec<String>,
    /// An ordering column (a time, a sequence number) read in full `f64` precision and kept
    /// beside the features, not as one ([`Dataset::with_order`]).
    pub order: Option<String>,
    /// Field delimiter (default `,`).
    pub delimiter: char,
    /// Cell texts read as missing (default: empty, `NA`, `N/A`, `null`, `NULL`, `None`).
    pub missing_values: Vec<String>,
    /// Text categories of dictionary columns (Parquet and Arrow; feature `parquet`), by
    /// column: a category's code is its position in the list (pandas' `cat.categories`), and a
    /// value not listed is an error. A text dictionary feature column needs its list (codes
    /// taken from the data would differ between files). CSV holds codes, not texts: there it
    /// must be empty.
    pub categories: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            label: None,
            weight: None,
            ignore: Vec::new(),
            categorical: Vec::new(),
            order: None,
            delimiter: ',',
            missing_values: ["", "NA", "N/A", "null", "NULL", "None"]
                .map(String::from)
                .to_vec(),
            categories: Default::default(),
        }
    }
}

impl CsvOptions {
    /// Default options with the label column `name`.
    pub fn with_label(name: impl Into<String>) -> Self {
        CsvOptions {
            label: Some(name.into()),
            ..Self::default()
        }
    }

    /// Sets the columns to skip.
    pub fn ignore<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.ignore = names.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the categorical feature columns.
    pub fn categorical<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.categorical = names.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the weight column.
    pub fn weight(mut self, name: impl Into<String>) -> Self {
        self.weight = Some(name.into());
        self
    }

    /// Adds the categories of a text dictionary column from `COLUMN=a,b,c` (a command-line
    /// flag's form; see [`CsvOptions::categories`]).
    ///
    /// ```
    /// let mut options = mlops_core::CsvOptions::default();
    /// options.add_categories("merchant=food,fuel,shop")?;
    /// assert_eq!(options.categories["merchant"], ["food", "fuel", "shop"]);
    /// assert!(options.add_categories("merchant").is_err());
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn add_categories(&mut self, spec: &str) -> Result<()> {
        let (column, list) = spec
            .split_once('=')
            .filter(|(c, l)| !c.is_empty() && !l.is_empty())
            .ok_or_else(|| {
                Error::invalid(
                    "categories",
                    spec,
                    "COLUMN=a,b,c: a column and its categories in code order",
                )
            })?;
        self.categories.insert(
            column.to_string(),
            list.split(',').map(str::to_string).collect(),
        );
        Ok(())
    }

    fn delimiter_byte(&self) -> Result<u8> {
        u8::try_from(self.delimiter)
            .ok()
            .filter(|b| b.is_ascii() && *b != b'"' && *b != b'\n' && *b != b'\r')
            .ok_or_else(|| {
                Error::invalid(
                    "CsvOptions.delimiter",
                    format!("{:?}", self.delimiter),
                    "a single ASCII character other than a quote or a newline",
                )
            })
    }
}

/// An open CSV reader with its header checked.
struct CsvTable<R: Read> {
    reader: csv::Reader<R>,
    cells: CellParser,
}

/// Parses cells with errors naming the line, the column and the text.
struct CellParser {
    header: Vec<String>,
    missing: Vec<String>,
}

impl CellParser {
    fn parse<T: FromStr + Missing>(
        &self,
        text: &str,
        line: u64,
        col: usize,
        what: &str,
    ) -> Result<T> {
        if self.missing.iter().any(|m| m == text) {
            return Ok(T::MISSING);
        }
        text.parse::<T>().map_err(|_| Error::Csv {
            location: format!("line {line}, column `{}`", self.header[col]),
            message: format!("cannot parse `{text}` as {what}"),
        })
    }
}

impl<R: Read> CsvTable<R> {
    fn open(input: R, delimiter: u8, missing: &[String]) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(true)
            .flexible(false)
            .trim(csv::Trim::All)
            .from_reader(input);
        let header = reader
            .headers()
            .map_err(|e| csv_error(e, &[]))?
            .iter()
            .map(str::to_string)
            .collect::<Vec<_>>();
        if header.is_empty() || header.iter().all(String::is_empty) {
            return Err(Error::Csv {
                location: "line 1".into(),
                message: "the input is empty; expected a header row naming the columns".into(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for (j, name) in header.iter().enumerate() {
            if name.is_empty() {
                return Err(Error::Csv {
                    location: format!("line 1, field {}", j + 1),
                    message: "empty column name; expected every header field to name its column"
                        .into(),
                });
            }
            if !seen.insert(name.as_str()) {
                return Err(Error::Csv {
                    location: format!("line 1, field {}", j + 1),
                    message: format!("column `{name}` appears twice; expected unique names"),
                });
            }
        }
        Ok(CsvTable {
            reader,
            cells: CellParser {
                header,
                missing: missing.to_vec(),
            },
        })
    }

    fn header(&self) -> &[String] {
        &self.cells.header
    }

    fn index_of(&self, name: &str) -> Result<usize> {
        self.header()
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Error::MissingColumn {
                name: name.to_string(),
                available: self.header().join(", "),
            })
    }

    /// Calls `row` with the cell parser, each record and its 1-based line number; returns the
    /// number of records.
    fn for_each_record(
        &mut self,
        mut row: impl FnMut(&CellParser, &csv::StringRecord, u64) -> Result<()>,
    ) -> Result<usize> {
        let mut record = csv::StringRecord::new();
        let mut count = 0;
        loop {
            match self.reader.read_record(&mut record) {
                Ok(false) => return Ok(count),
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line());
                    row(&self.cells, &record, line)?;
                    count += 1;
                }
                Err(e) => return Err(csv_error(e, &self.cells.header)),
            }
        }
    }
}

/// Numbers that have a missing-value marker.
trait Missing {
    const MISSING: Self;
}
impl Missing for f32 {
    const MISSING: Self = f32::NAN;
}
impl Missing for f64 {
    const MISSING: Self = f64::NAN;
}

fn csv_error(e: csv::Error, header: &[String]) -> Error {
    let line = e.position().map_or(0, |p| p.line());
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => Error::Csv {
            location: format!("line {line}"),
            message: format!(
                "found {len} fields, expected {expected_len} as in the header ({})",
                header.join(",")
            ),
        },
        csv::ErrorKind::Utf8 { err, .. } => Error::Csv {
            location: format!("line {line}, field {}", err.field() + 1),
            message: "the text is not valid UTF-8".into(),
        },
        _ => Error::Csv {
            location: format!("line {line}"),
            message: e.to_string(),
        },
    }
}

/// Largest integer every smaller one of which an `f32` holds exactly.
const F32_EXACT_INT: f64 = 16_777_216.0;

/// A feature cell as `f32`, refusing a value `f32` cannot hold: beyond its range (it would
/// become infinite) or an integer written as one (an id, a Unix time) that it would round.
/// Decimals round to the nearest `f32` as floating point always does.
fn to_feature(v: f64, text: &str, line: u64, column: &str) -> Result<f32> {
    let narrow = v as f32;
    if (v.is_finite() && f64::from(narrow) == v) || v.is_nan() {
        return Ok(narrow);
    }
    // Only an infinity or a value f32 changed is looked at again (this runs on every cell).
    let location = || format!("line {line}, column `{column}`");
    let digits = text.trim().trim_start_matches(['+', '-']);
    let spelled_infinite =
        digits.eq_ignore_ascii_case("inf") || digits.eq_ignore_ascii_case("infinity");
    if narrow.is_infinite() && !spelled_infinite {
        return Err(Error::Csv {
            location: location(),
            message: format!(
                "`{text}` is outside the range of a 32-bit float feature (about ±3.4e38); \
                 expected a smaller value (rescale the column)"
            ),
        });
    }
    let integer_text = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    if integer_text && v.abs() > F32_EXACT_INT {
        return Err(Error::Csv {
            location: location(),
            message: format!(
                "`{text}` cannot be held exactly by a 32-bit float feature (it would read {narrow}); \
                 expected an integer within ±16,777,216: read a time or sequence column as the \
                 order column (CsvOptions.order, `--order-col`) and ignore id columns"
            ),
        });
    }
    Ok(narrow)
}

fn open_file(path: &Path) -> Result<File> {
    if path.is_dir() {
        return Err(Error::invalid(
            "CSV path",
            path.display(),
            "a CSV file, not a directory",
        ));
    }
    File::open(path).map_err(|e| Error::io("reading", path, e))
}

impl Dataset {
    /// Reads a CSV file; see [`CsvOptions`].
    pub fn from_csv_path(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Dataset> {
        let path = path.as_ref();
        let data = Self::from_csv_reader(open_file(path)?, options)?;
        tracing::debug!(path = %path.display(), rows = data.n_rows(), "CSV dataset loaded");
        Ok(data)
    }

    /// Reads CSV text from any reader; see [`CsvOptions`].
    pub fn from_csv_reader(input: impl Read, options: &CsvOptions) -> Result<Dataset> {
        if let Some(name) = options.categories.keys().next() {
            return Err(Error::invalid(
                "CsvOptions.categories",
                name,
                "no text categories for CSV (its categorical columns hold integer codes; \
                 categories apply to Parquet and Arrow dictionary columns)",
            ));
        }
        let mut table = CsvTable::open(input, options.delimiter_byte()?, &options.missing_values)?;
        let label = options
            .label
            .as_deref()
            .map(|n| table.index_of(n))
            .transpose()?;
        let weight = options
            .weight
            .as_deref()
            .map(|n| table.index_of(n))
            .transpose()?;
        let order = options
            .order
            .as_deref()
            .map(|n| table.index_of(n))
            .transpose()?;
        for name in &options.ignore {
            table.index_of(name)?;
        }
        let ignored: std::collections::HashSet<&str> =
            options.ignore.iter().map(String::as_str).collect();
        let categorical: std::collections::HashSet<&str> =
            options.categorical.iter().map(String::as_str).collect();
        let mut columns = Vec::new();
        let mut feature_idx = Vec::new();
        for (j, name) in table.header().iter().enumerate() {
            if Some(j) == label
                || Some(j) == weight
                || Some(j) == order
                || ignored.contains(name.as_str())
            {
                continue;
            }
            let kind = if categorical.contains(name.as_str()) {
                ColumnKind::Categorical
            } else {
                ColumnKind::Numeric
            };
            columns.push(ColumnSchema::new(name.clone(), kind));
            feature_idx.push(j);
        }
        let feature_names: std::collections::HashSet<&str> =
            columns.iter().map(|c| c.name.as_str()).collect();
        for name in &options.categorical {
            if !feature_names.contains(name.as_str()) {
                return Err(Error::invalid(
                    "CsvOptions.categorical",
                    name,
                    format!(
                        "a feature column of the file (features: {})",
                        columns
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        let kinds: Vec<ColumnKind> = columns.iter().map(|c| c.kind).collect();
        let mut values: Vec<f32> = Vec::new();
        let mut labels: Vec<f32> = Vec::new();
        let mut weights: Vec<f32> = Vec::new();
        let mut order_values: Vec<f64> = Vec::new();
        let rows = table.for_each_record(|cells, rec, line| {
            for (&j, kind) in feature_idx.iter().zip(&kinds) {
                let what = if *kind == ColumnKind::Categorical {
                    "an integer category code (categorical columns hold integer codes: encode text categories as 0, 1, 2, ... first)"
                } else {
                    "a number"
                };
                let wide: f64 = cells.parse(&rec[j], line, j, what)?;
                let v = to_feature(wide, &rec[j], line, &cells.header[j])?;
                if *kind == ColumnKind::Categorical && v.is_finite() && v.fract() != 0.0 {
                    return Err(Error::Csv {
                        location: format!("line {line}, column `{}`", cells.header[j]),
                        message: format!("`{}` is not an integer category code", &rec[j]),
                    });
                }
                values.push(v);
            }
            if let Some(j) = label {
                labels.push(cells.parse(&rec[j], line, j, "a number (label)")?);
            }
            if let Some(j) = weight {
                weights.push(cells.parse(&rec[j], line, j, "a number (weight)")?);
            }
            if let Some(j) = order {
                order_values.push(cells.parse(&rec[j], line, j, "a number (order)")?);
            }
            Ok(())
        })?;
        let features = Array2::from_shape_vec((rows, columns.len()), values)
            .map_err(|e| Error::invalid("CSV feature matrix", e, "rows × features values"))?;
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let mut data = Dataset::new(features, names)?;
        let categorical: Vec<&str> = columns
            .iter()
            .filter(|c| c.kind == ColumnKind::Categorical)
            .map(|c| c.name.as_str())
            .collect();
        data = data.with_categorical(&categorical)?;
        if let (Some(name), Some(_)) = (&options.label, label) {
            data = data.with_labels(Array1::from(labels), name.clone())?;
        }
        if weight.is_some() {
            data = data.with_weights(Array1::from(weights))?;
        }
        if let (Some(name), Some(_)) = (&options.order, order) {
            data = data.with_order(Array1::from(order_values), name.clone())?;
        }
        Ok(data)
    }
}

/// Reads the named columns of a CSV file as `f64` (full precision, for evaluation of scores
/// written by another tool). Missing cells (see [`CsvOptions::missing_values`]) become `NaN`.
///
/// ```
/// let csv = "label,score,other\n1,0.9,x\n0,0.25,y\n";
/// let cols = mlops_core::read_csv_columns(csv.as_bytes(), &["score", "label"], &Default::default())?;
/// assert_eq!(cols, vec![vec![0.9, 0.25], vec![1.0, 0.0]]);
/// # Ok::<(), mlops_core::Error>(())
/// ```
pub fn read_csv_columns(
    input: impl Read,
    names: &[&str],
    options: &CsvOptions,
) -> Result<Vec<Vec<f64>>> {
    let mut table = CsvTable::open(input, options.delimiter_byte()?, &options.missing_values)?;
    let idx: Vec<usize> = names
        .iter()
        .map(|n| table.index_of(n))
        .collect::<Result<_>>()?;
    let mut out: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    table.for_each_record(|cells, rec, line| {
        for (k, &j) in idx.iter().enumerate() {
            out[k].push(cells.parse(&rec[j], line, j, "a number")?);
        }
        Ok(())
    })?;
    Ok(out)
}

/// [`read_csv_columns`] on a file.
pub fn read_csv_columns_path(
    path: impl AsRef<Path>,
    names: &[&str],
    options: &CsvOptions,
) -> Result<Vec<Vec<f64>>> {
    read_csv_columns(open_file(path.as_ref())?, names, options)
}
