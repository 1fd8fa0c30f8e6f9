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


def as_2d(name, data, columns=None):
    """``data`` (a 2-d array, a pandas DataFrame, or a dict of equal-length columns) as a
    float64 or float32 2-d array (other numeric dtypes converted; no copy when it already is
    one) and its column names (``columns``, the frame's, the dict's keys, or ``x0``, ``x1``...).
    ``TypeError`` for non-numeric data, ``ValueError`` for another number of dimensions."""
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):  # pandas
        names = [str(c) for c in data.columns]
        a = data.to_numpy(dtype=np.float64, na_value=np.nan)
    elif isinstance(data, dict):
        names = [str(c) for c in data]
        a = np.column_stack([as_1d(f"{name}[{c!r}]", v) for c, v in data.items()]) if data else np.empty((0, 0))
    else:
        a = np.asarray(data)
        if a.dtype.kind in "iub":
            a = a.astype(np.float64)
        elif a.dtype.kind != "f":
            raise TypeError(f"{name}: expected numeric values, got dtype {a.dtype}")
        elif a.dtype not in (np.float64, np.float32):
            a = a.astype(np.float64)
        if a.ndim != 2:
            raise ValueError(f"{name}: expected a 2-d array (rows x columns), got {a.ndim} dimensions")
        names = [f"x{j}" for j in range(a.shape[1])]
    if columns is not None:
        names = [str(c) for c in columns]
    return a, names
