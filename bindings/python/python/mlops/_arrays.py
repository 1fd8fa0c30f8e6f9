"""Input normalization shared by the wrappers: what scipy and scikit-learn accept (lists,
integer and boolean arrays), as the 1-d float arrays the native functions read."""

import numpy as np


def as_1d(name, x, keep_float32=False):
    """``x`` as a 1-d float64 array (float32 kept when ``keep_float32``), without a copy when
    it already is one. ``TypeError`` for non-numeric data, ``ValueError`` for another number
    of dimensions."""
    a = np.asarray(x)
    if a.dtype.kind == "f":
        if a.dtype == np.float32 and keep_float32:
            pass
        elif a.dtype != np.float64:
            a = a.astype(np.float64)
    elif a.dtype.kind in "iub":
        a = a.astype(np.float64)
    else:
        raise TypeError(f"{name}: expected numeric values, got dtype {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array, got {a.ndim} dimensions (shape {a.shape})")
    return a
