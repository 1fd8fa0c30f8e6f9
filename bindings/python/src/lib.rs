//! `mlops._native`: the Rust half of the `mlops` Python package (maturin builds it with the
//! `python` feature; without it this crate is empty, so `cargo test --workspace` never
//! compiles pyo3).
//!
//! The Python half (`python/mlops/`) gives the functions scipy's and scikit-learn's names,
//! arguments and result objects, turns lists and integer arrays into float64 and checks
//! shapes; this half takes 1-d float64 or float32 numpy arrays, reads contiguous ones in place
//! (no copy), copies strided ones, and releases the GIL while it computes.
#![cfg(feature = "python")]

mod arrays;
mod arrow;
mod calibration;
mod drift;
mod fairness;
mod metrics;
mod performance;
mod profile;
mod registry;
mod serve;
mod train;

use pyo3::prelude::*;

/// The module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(arrays::buffer_address, m)?)?;
    m.add_function(wrap_pyfunction!(arrays::last_input_addresses, m)?)?;
    arrow::register(m)?;
    calibration::register(m)?;
    drift::register(m)?;
    fairness::register(m)?;
    metrics::register(m)?;
    performance::register(m)?;
    profile::register(m)?;
    train::register(m)?;
    registry::register(m)?;
    serve::register(m)?;
    Ok(())
}
