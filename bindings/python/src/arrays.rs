//! numpy arrays in: float64 read in place when contiguous, float32 read in place where the
//! computation takes f32 and converted otherwise, strided views copied; anything else a
//! `TypeError` naming the argument and what it got.

use std::borrow::Cow;

use numpy::{PyReadonlyArray1, PyUntypedArray, PyUntypedArrayMethods};
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

/// A mlops error as a Python `ValueError` (every one the bindings can meet is about the
/// input: its message names the argument, the value and what was expected).
pub fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}
