//! The dense layer: `out = activation(x · Wᵀ + bias)` over a contiguous batch.

use super::Layer;
use crate::{Error, Result};

/// One layer over `rows` rows of `x` (`rows × layer.inputs`, contiguous) into `out`
/// (`rows × layer.units`): the product, then bias and activation in one pass per row.
pub(super) fn dense(x: &[f32], rows: usize, layer: &Layer, out: &mut [f32]) -> Result<()> {
    let (inputs, units) = (layer.inputs, layer.units);
    product(x, &layer.weight_t, out, rows, inputs, units)?;
    for or in out.chunks_exact_mut(units) {
        for (o, &b) in or.iter_mut().zip(&layer.bias) {
            *o += b;
        }
        activate(or, layer);
    }
    Ok(())
}

/// `out = x · w` for row-major `x` (`rows × inputs`), `w` (`inputs × units`) and `out`
/// (`rows × units`), by the `gemm` crate (SIMD micro-kernels picked at run time, small-matrix
/// paths, one thread).
#[allow(unsafe_code)]
fn product(
    x: &[f32],
    w: &[f32],
    out: &mut [f32],
    rows: usize,
    inputs: usize,
    units: usize,
) -> Result<()> {
    for (what, len, want) in [
        ("input", x.len(), rows * inputs),
        ("weights", w.len(), inputs * units),
        ("output", out.len(), rows * units),
    ] {
        if len != want {
            return Err(Error::invalid(
                format!("engine buffer for the {what}"),
                len,
                format!("{want} values"),
            ));
        }
    }
    // SAFETY: the three slices hold exactly rows×inputs, inputs×units and rows×units `f32`s
    // (checked above), each row-major with the strides passed (column stride 1, row stride =
    // its width), so every element gemm reads or writes is inside its slice; `out` is a unique
    // borrow and cannot alias `x` or `w`; `read_dst = false`, so `out`'s old values are never
    // read; `Parallelism::None` runs on this thread only.
    unsafe {
        gemm::gemm(
            rows,
            units,
            inputs,
            out.as_mut_ptr(),
            1,
            units as isize,
            false,
            x.as_ptr(),
            1,
            inputs as isize,
            w.as_ptr(),
            1,
            units as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    Ok(())
}

/// The layer's activation over one output row, in place.
#[inline]
fn activate(row: &mut [f32], layer: &Layer) {
    use mlops_core::model::Activation;
    match layer.activation {
        Activation::Identity => {}
        Activation::Relu => row
            .iter_mut()
            .for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v }),
        other => row.iter_mut().for_each(|v| *v = other.apply(*v)),
    }
}
