//! Arrow data in, through the Arrow PyCapsule interface (pyarrow Tables and RecordBatches,
//! polars DataFrames, pandas DataFrames, anything with `__arrow_c_stream__` or
//! `__arrow_c_array__`): the columns are imported without a copy (pyo3-arrow) and converted
//! batch by batch into the f32 feature matrix every computation reads; and Parquet files,
//! local or at a store URL.

use std::collections::BTreeMap;

use mlops_core::arrow_io::{ParquetChunks, DEFAULT_BATCH_ROWS};
use mlops_core::{ColumnKind, CsvOptions, Dataset};
use numpy::{IntoPyArray, PyArray1, PyArray2};
use pyo3::prelude::*;
use pyo3_arrow::input::AnyRecordBatch;

use crate::arrays::value_error;

/// What a table becomes: features (float32, rows × columns), column names, the categorical
/// ones, labels and weights (float32) when asked for, and the text categories given for
/// dictionary columns (code `i` is `categories[name][i]`).
type Table<'py> = (
    Bound<'py, PyArray2<f32>>,
    Vec<String>,
    Vec<String>,
    Option<Bound<'py, PyArray1<f32>>>,
    Option<Bound<'py, PyArray1<f32>>>,
    BTreeMap<String, Vec<String>>,
);

fn options(
    label: Option<String>,
    weight: Option<String>,
    ignore: Vec<String>,
    categorical: Vec<String>,
    categories: BTreeMap<String, Vec<String>>,
) -> CsvOptions {
    CsvOptions {
        label,
        weight,
        ignore,
        categorical,
        categories,
        ..CsvOptions::default()
    }
}

fn table<'py>(
    py: Python<'py>,
    data: Dataset,
    categories: BTreeMap<String, Vec<String>>,
) -> Table<'py> {
    let names: Vec<String> = data.feature_names().map(str::to_string).collect();
    let categorical: Vec<String> = data
        .feature_names()
        .zip(data.feature_kinds())
        .filter(|(_, k)| *k == ColumnKind::Categorical)
        .map(|(n, _)| n.to_string())
        .collect();
    let (x, labels, weights) = data.into_arrays();
    (
        x.into_pyarray(py),
        names,
        categorical,
        labels.map(|l| l.into_pyarray(py)),
        weights.map(|w| w.into_pyarray(py)),
        categories,
    )
}

/// An Arrow table or stream as a table (see [`Table`]).
#[pyfunction]
#[pyo3(signature = (data, label=None, weight=None, ignore=Vec::new(), categorical=Vec::new(), categories=BTreeMap::new()))]
fn arrow_table<'py>(
    py: Python<'py>,
    data: AnyRecordBatch,
    label: Option<String>,
    weight: Option<String>,
    ignore: Vec<String>,
    categorical: Vec<String>,
    categories: BTreeMap<String, Vec<String>>,
) -> PyResult<Table<'py>> {
    let given = categories.clone();
    let options = options(label, weight, ignore, categorical, categories);
    let reader = data.into_reader()?;
    let schema = reader.schema();
    let dataset = py
        .detach(|| Dataset::from_batch_iter(&schema, reader, &options))
        .map_err(value_error)?;
    Ok(table(py, dataset, given))
}

/// A Parquet file (a local path or a store URL) as a table (see [`Table`]).
#[pyfunction]
#[pyo3(signature = (location, label=None, weight=None, ignore=Vec::new(), categorical=Vec::new(), categories=BTreeMap::new(), storage_options=BTreeMap::new()))]
#[allow(clippy::too_many_arguments)]
fn read_parquet<'py>(
    py: Python<'py>,
    location: String,
    label: Option<String>,
    weight: Option<String>,
    ignore: Vec<String>,
    categorical: Vec<String>,
    categories: BTreeMap<String, Vec<String>>,
    storage_options: BTreeMap<String, String>,
) -> PyResult<Table<'py>> {
    let given = categories.clone();
    let options = options(label, weight, ignore, categorical, categories);
    let dataset = py
        .detach(|| {
            ParquetChunks::open_location(&location, &storage_options, &options, DEFAULT_BATCH_ROWS)?
                .read_all()
        })
        .map_err(value_error)?;
    Ok(table(py, dataset, given))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(arrow_table, m)?)?;
    m.add_function(wrap_pyfunction!(read_parquet, m)?)?;
    Ok(())
}
