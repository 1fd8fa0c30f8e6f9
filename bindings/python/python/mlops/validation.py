"""Data validation on numpy arrays: a schema inferred from a reference (TFDV-style), and a
report of every finding (missing values, label balance, ranges, categories, constants,
duplicates, unknown or absent columns) with its severity."""

import json

from . import _native
from ._arrays import as_1d
from .train import _features

__all__ = ["infer_schema", "validate"]


def infer_schema(x, y=None, *, columns=None, categorical=()):
    """The schema of ``x`` (rows x columns; a DataFrame, 2-d array) and its labels ``y``, as a
    dict (what :func:`validate` checks against)."""
    a, names = _features(x, columns)
    labels = None if y is None else as_1d("y", y)
    return json.loads(_native.infer_schema(a, names, [str(c) for c in categorical], labels))


def validate(x, y=None, *, schema=None, config=None, columns=None, categorical=()):
    """The validation report of ``x`` (and labels ``y``), against ``schema`` (a dict from
    :func:`infer_schema`) when given, as a dict: ``findings`` (severity, check, column,
    observed, expected, message) and whether it ``passed`` (no error-severity finding).
    ``config`` is a ``ValidationConfig`` as a dict (``{"min_rows": 100}``; the default asks
    for the seed's 10,000 rows)."""
    a, names = _features(x, columns)
    labels = None if y is None else as_1d("y", y)
    report = json.loads(
        _native.validate(
            a,
            names,
            [str(c) for c in categorical],
            labels,
            None if schema is None else json.dumps(schema),
            None if config is None else json.dumps(config),
        )
    )
    report["passed"] = not any(f.get("severity") == "error" for f in report.get("findings", []))
    return report
