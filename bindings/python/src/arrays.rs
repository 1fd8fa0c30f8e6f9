//! numpy arrays in: float64 read in place when contiguous, float32 read in place where the
//! computation takes f32 and converted otherwise, strided views copied; anything else a
//! `TypeError` naming the argument and what it got.

use std::borrow::Cow;

use mlops_core::Dataset;
use ndarray::Array2;
use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// A 1-d float array borrowed from numpy.
pub enum Values<'py> {
    /// float64.
    F64(PyReadonlyArray1<'py, f64>),
    /// float32.
    F32(PyReadonlyArray1<'py, f32>),
}

impl Values<'_> {
    /// The values as f64: the array's own buffer when it is contiguous float64, a copy
    /// otherwise.
    pub fn f64(&self) -> Cow<'_, [f64]> {
        match self {
            Values::F64(a) => match a.as_slice() {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => Cow::Owned(a.as_array().to_vec()),
            },
            Values::F32(a) => Cow::Owned(a.as_array().iter().map(|&v| f64::from(v)).collect()),
        }
    }

    /// The values as f32 when they are float32 (in place when contiguous), `None` for float64.
    pub fn f32(&self) -> Option<Cow<'_, [f32]>> {
        match self {
            Values::F64(_) => None,
            Values::F32(a) => Some(match a.as_slice() {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => Cow::Owned(a.as_array().to_vec()),
            }),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Values::F64(a) => a.len(),
            Values::F32(a) => a.len(),
        }
    }
}

/// `obj` as a 1-d float64 or float32 array, or a `TypeError` (another dtype, not an array)
/// or `ValueError` (another number of dimensions) naming `name`.
pub fn values<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Values<'py>> {
    let obj = &aligned(obj)?;
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'py, f64>>() {
        return Ok(Values::F64(a));
    }
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'py, f32>>() {
        return Ok(Values::F32(a));
    }
    match obj.cast::<PyUntypedArray>() {
        Ok(a) if a.ndim() != 1 => Err(PyValueError::new_err(format!(
            "{name}: expected a 1-d array, got {} dimensions (shape {:?})",
            a.ndim(),
            a.shape()
        ))),
        Ok(a) => Err(PyTypeError::new_err(format!(
            "{name}: expected float64 or float32 values, got dtype {}",
            a.dtype().str()?
        ))),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{name}: expected a numpy array, got {}",
            obj.get_type().name()?
        ))),
    }
}

/// `obj` itself, or a copy of it when it is a numpy array whose data are not aligned for its
/// dtype (a buffer at an odd offset, as `np.frombuffer` with an offset or a pickle-5 buffer
/// shipped between Dask workers can give): a slice or view of unaligned floats would be
/// undefined behaviour (ndarray's debug builds panic on it).
fn aligned<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if let Ok(a) = obj.cast::<PyUntypedArray>() {
        if !a.getattr("flags")?.getattr("aligned")?.extract::<bool>()? {
            return a.call_method0("copy");
        }
    }
    Ok(obj.clone())
}

/// The address of the buffer the functions read for `x` (as float64 when it is float64, as
/// float32 when float32): equal to `x.ctypes.data` exactly when no copy is made. For tests of
/// the zero-copy promise.
#[pyfunction]
pub fn buffer_address(x: &Bound<'_, PyAny>) -> PyResult<usize> {
    let v = values("x", x)?;
    Ok(match v.f32() {
        Some(s) => s.as_ptr() as usize,
        None => v.f64().as_ptr() as usize,
    })
}

thread_local! {
    /// The buffer addresses the last computation on this thread was handed.
    static LAST_INPUTS: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records the addresses of the buffers a computation is handed, where it is handed them (the
/// slices passed to the mlops function, on the thread that runs it): what
/// [`last_input_addresses`] reports.
pub fn record_inputs(addresses: &[usize]) {
    LAST_INPUTS.with(|l| {
        let mut l = l.borrow_mut();
        l.clear();
        l.extend_from_slice(addresses);
    });
}

/// The addresses of the buffers the last drift statistic or metric called on this thread
/// handed to mlops (one per array argument, in order): equal to each argument's
/// `ctypes.data` exactly when the call read it in place. For tests of the zero-copy promise on
/// the real calls.
#[pyfunction]
pub fn last_input_addresses() -> Vec<usize> {
    LAST_INPUTS.with(|l| l.borrow().clone())
}

/// A mlops error as a Python `ValueError` (every one the bindings can meet is about the
/// input: its message names the argument, the value and what was expected).
pub fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A table (rows × `columns`) as a `Dataset` of f32 features, `categorical` columns marked.
/// float64 values that float32 cannot hold are refused, naming the cell (never an infinity).
pub fn dataset(
    data: &Bound<'_, PyAny>,
    columns: Vec<String>,
    categorical: &[String],
) -> PyResult<Dataset> {
    let x = matrix(data)?;
    if x.ncols() != columns.len() {
        return Err(PyValueError::new_err(format!(
            "columns: expected {} names (one per column of data), got {}",
            x.ncols(),
            columns.len()
        )));
    }
    let names: Vec<&str> = categorical.iter().map(String::as_str).collect();
    Dataset::new(x, columns)
        .and_then(|d| d.with_categorical(&names))
        .map_err(value_error)
}

/// A 2-d float64 or float32 array (any layout) as an f32 matrix in standard layout; float64
/// values float32 cannot hold are refused, naming the cell.
pub fn matrix(data: &Bound<'_, PyAny>) -> PyResult<Array2<f32>> {
    let data = &aligned(data)?;
    let x: Array2<f32> = if let Ok(a) = data.extract::<PyReadonlyArray2<'_, f64>>() {
        let view = a.as_array();
        if let Some(((i, j), v)) = view
            .indexed_iter()
            .find(|(_, v)| v.is_finite() && !((**v as f32).is_finite()))
        {
            return Err(PyValueError::new_err(format!(
                "data[{i}, {j}] = {v:e}: expected a value float32 can hold (|v| < 3.4e38)"
            )));
        }
        view.mapv(|v| v as f32)
    } else if let Ok(a) = data.extract::<PyReadonlyArray2<'_, f32>>() {
        a.as_array().as_standard_layout().into_owned()
    } else {
        return Err(match data.cast::<PyUntypedArray>() {
            Ok(a) if a.ndim() != 2 => PyValueError::new_err(format!(
                "data: expected a 2-d array (rows x columns), got {} dimensions",
                a.ndim()
            )),
            Ok(a) => PyTypeError::new_err(format!(
                "data: expected float64 or float32 values, got dtype {}",
                a.dtype()
            )),
            Err(_) => PyTypeError::new_err(format!(
                "data: expected a numpy array, got {}",
                data.get_type().name()?
            )),
        });
    };
    Ok(x)
}
