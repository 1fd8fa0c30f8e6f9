"""Tables in: Parquet files (local or at a store URL) and Arrow data (pyarrow Tables and
RecordBatches, polars DataFrames, pandas DataFrames with Arrow dtypes: anything with
``__arrow_c_stream__`` or ``__arrow_c_array__``), read by the same Rust reader as the
command-line tools, with the same rules: nulls are NaN; a dictionary column of text (a pandas
or polars ``Categorical``) is categorical, coded by value through ``categories`` (its list in
code order, pandas' ``cat.categories``: the same codes in every batch and file), and refused
without it; a text column where numbers are due, a nested column, an integer float32 would
round: a ``ValueError`` naming the column and the row.

Every function taking a 2-d table (``mlops.train.fit``, ``Model.predict_proba``,
``mlops.drift``'s profiles, ``mlops.explain``) accepts Arrow data of numbers directly as well;
a table with text categories goes through :func:`read_arrow` with its ``categories`` first.

>>> import pyarrow as pa, mlops
>>> t = mlops.data.read_arrow(pa.table({"x": [1.0, None], "y": [0, 1]}), label="y")
>>> t.columns, t.features.dtype.name, t.labels.tolist()
(['x'], 'float32', [0.0, 1.0])
"""

from typing import NamedTuple, Optional

import numpy as np

from . import _native

__all__ = ["Table", "read_arrow", "read_parquet"]


class Table(NamedTuple):
    """A table read for mlops: ``features`` (float32, rows x columns), the feature
    ``columns``, the ``categorical`` ones, ``labels`` and ``weights`` (float32, when asked
    for) and the text ``categories`` given for dictionary columns (code ``i`` of column ``c``
    is ``categories[c][i]``)."""

    features: np.ndarray
    columns: list
    categorical: list
    labels: Optional[np.ndarray]
    weights: Optional[np.ndarray]
    categories: dict


def _names(name, value):
    if isinstance(value, str):
        raise TypeError(f"{name}: expected a list of column names, got the string {value!r}")
    return [str(v) for v in value]


def _categories(categories):
    return {str(k): [str(v) for v in vs] for k, vs in (categories or {}).items()}


def read_arrow(data, label=None, weight=None, ignore=(), categorical=(), categories=None):
    """``data`` (any Arrow table or stream) as a :class:`Table`. Columns are imported without
    a copy and converted a batch at a time. ``label`` and ``weight`` name those columns;
    ``ignore`` skips columns; ``categorical`` marks integer-coded categorical columns;
    ``categories`` gives each text dictionary column's categories in code order (required for
    such a column: they are categorical, coded by value)."""
    if isinstance(data, np.ndarray) or not (hasattr(data, "__arrow_c_stream__") or hasattr(data, "__arrow_c_array__")):
        raise TypeError(
            f"data: expected Arrow data (an object with __arrow_c_stream__ or __arrow_c_array__: "
            f"a pyarrow Table, a polars DataFrame, ...), got {type(data).__name__}"
        )
    return Table(*_native.arrow_table(
        data, label, weight, _names("ignore", ignore), _names("categorical", categorical),
        _categories(categories),
    ))


def read_parquet(location, label=None, weight=None, ignore=(), categorical=(), categories=None, storage_options=None):
    """A Parquet file (a path, or a store URL such as ``s3://bucket/data.parquet``, with the
    store's ``storage_options`` over the environment's) as a :class:`Table`: read a row group
    at a time, only the needed columns decoded. Arguments as :func:`read_arrow`."""
    return Table(*_native.read_parquet(
        str(location), label, weight, _names("ignore", ignore), _names("categorical", categorical),
        _categories(categories), {str(k): str(v) for k, v in (storage_options or {}).items()},
    ))
