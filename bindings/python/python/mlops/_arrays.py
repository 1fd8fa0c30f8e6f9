"""Input normalization shared by the wrappers: what scipy and scikit-learn accept (lists,
integer and boolean arrays), as the 1-d float arrays the native functions read."""

import operator

import numpy as np

from . import _native

#: Integers float64 holds exactly: |v| <= 2**53.
FLOAT_EXACT = 2**53


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


def is_arrow(data):
    """Whether ``data`` is read through the Arrow PyCapsule interface: a pyarrow Table or
    RecordBatch, a polars DataFrame, anything with ``__arrow_c_stream__`` or
    ``__arrow_c_array__`` that is not a numpy array; a pandas DataFrame only when a column has
    an Arrow dtype (``int64[pyarrow]``, ``dictionary<...>[pyarrow]``), the others keep
    pandas' own ``to_numpy``."""
    if isinstance(data, (np.ndarray, dict)) or not (
        hasattr(data, "__arrow_c_stream__") or hasattr(data, "__arrow_c_array__")
    ):
        return False
    if type(data).__module__.startswith("pandas"):
        return any("pyarrow" in str(dt) for dt in getattr(data, "dtypes", ()))
    return True


def arrow_matrix(data):
    """An Arrow table of numbers (see :func:`is_arrow`) as a float32 2-d array, its column
    names and its categorical columns: nulls are NaN; a text column (a dictionary too: its
    codes need its categories, :func:`mlops.data.read_arrow`), a nested or a too-large value
    is a ``ValueError`` naming the column and the row."""
    x, names, categorical, _labels, _weights, _categories = _native.arrow_table(data)
    return x, names, categorical


def as_table(name, data, columns=None, categorical=()):
    """:func:`as_2d`, with the categorical column names (``categorical``)."""
    a, names = as_2d(name, data, columns)
    return a, names, [str(c) for c in categorical]


def as_2d(name, data, columns=None):
    """``data`` (a 2-d array, a pandas DataFrame, a dict of equal-length columns, or an Arrow
    table: see :func:`is_arrow`) as a float64 or float32 2-d array (other numeric dtypes
    converted; no copy when it already is one) and its column names (``columns``, the frame's,
    the dict's keys, or ``x0``, ``x1``...). ``TypeError`` for non-numeric data, ``ValueError``
    for another number of dimensions."""
    if is_arrow(data):
        a, names, _ = arrow_matrix(data)
    elif hasattr(data, "columns") and hasattr(data, "to_numpy"):  # pandas
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


def as_count(name, value, low, high):
    """``value`` as a Python int from ``low`` to ``high``: a size or count argument, checked
    before anything is allocated. ``TypeError`` for anything that is not an integer (``2.7``
    and ``3.0`` alike: never truncated; a bool), ``ValueError`` outside the range; both name
    ``name``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}") from None
    if not low <= v <= high:
        raise ValueError(f"{name}: expected an integer from {low} to {high}, got {v}")
    return v


def _beyond_float(a):
    """Whether integer array ``a`` holds a value float64 cannot (|v| > 2**53)."""
    return a.dtype.kind in "iu" and a.size > 0 and (int(a.max()) > FLOAT_EXACT or int(a.min()) < -FLOAT_EXACT)


def _pooled_integers(arrays):
    """The integer arrays pooled without loss (int64 with uint64 as Python ints)."""
    common = np.result_type(*arrays)
    if common.kind in "iub":
        return np.concatenate([a.astype(common) for a in arrays])
    return np.concatenate([a.astype(object) for a in arrays])


def exact_ranks(names, samples):
    """Rank statistics (KS, Cramér–von Mises, Mann–Whitney, Anderson–Darling) on integer
    samples holding values float64 cannot (|v| > 2**53, where a cast would merge neighbours):
    each sample's values replaced by their dense rank in the pooled samples (the same order and
    ties, exactly, so the same statistic as on the integers). Anything else is returned as it
    is (and cast to float64 by ``as_1d``), as scipy does on mixed float and integer input."""
    arrays = [np.asarray(s) for s in samples]
    if not all(a.dtype.kind in "iub" and a.ndim == 1 for a in arrays) or not any(map(_beyond_float, arrays)):
        return samples
    _, inverse = np.unique(_pooled_integers(arrays), return_inverse=True)
    ranks = inverse.reshape(-1).astype(np.float64)
    out, start = [], 0
    for a in arrays:
        out.append(ranks[start : start + a.size])
        start += a.size
    return out


def exact_shifted(names, samples):
    """Distances (Wasserstein, energy, PSI) on integer samples holding values float64 cannot
    (|v| > 2**53): every value less the pooled minimum, in exact integer arithmetic — the
    distances do not change with a common shift, and the shifted values are exact in float64
    when the pooled range is at most 2**53. A wider range is a ``ValueError`` naming the
    samples (float64 cannot hold the differences). Anything else is returned as it is."""
    arrays = [np.asarray(s) for s in samples]
    if not all(a.dtype.kind in "iub" and a.ndim == 1 for a in arrays) or not any(map(_beyond_float, arrays)):
        return samples
    pooled = _pooled_integers(arrays).astype(object)
    low, high = min(pooled), max(pooled)
    if high - low > FLOAT_EXACT:
        raise ValueError(
            f"{', '.join(names)}: integer values from {low} to {high} span more than 2**53, "
            "more than float64 holds exactly; pass floats to accept the rounding"
        )
    return [(a.astype(object) - low).astype(np.float64) for a in arrays]


def by_name(name, data, wanted):
    """``data`` with its columns in the order of ``wanted`` when it names them (a pandas
    DataFrame, a dict): a ``ValueError`` naming a missing, unknown or repeated column. A plain
    array is returned as it is (its columns are taken by position)."""
    arrow = is_arrow(data)
    if arrow:
        data, keys, _ = arrow_matrix(data)
    elif hasattr(data, "columns") and hasattr(data, "to_numpy"):
        keys = list(data.columns)
    elif isinstance(data, dict):
        keys = list(data)
    else:
        return data
    wanted = [str(w) for w in wanted]
    given = {}
    for k in keys:
        if str(k) in given:
            raise ValueError(f"{name}: column {str(k)!r} appears more than once")
        given[str(k)] = k
    missing = [w for w in wanted if w not in given]
    if missing:
        raise ValueError(f"{name}: missing column {missing[0]!r} (the model's features are {wanted})")
    unknown = [g for g in given if g not in set(wanted)]
    if unknown:
        raise ValueError(f"{name}: unknown column {unknown[0]!r} (the model's features are {wanted})")
    if isinstance(data, dict):
        return {w: data[given[w]] for w in wanted}
    if arrow:
        return data[:, [keys.index(given[w]) for w in wanted]]
    return data[[given[w] for w in wanted]]
