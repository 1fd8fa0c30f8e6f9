"""Shapley values of a model, shaped like shap's (`mlops.explain`).

Interventional Shapley values (shap's definition, with an independent masker): exact over
every coalition when ``2^features x background`` rows fit the budget, antithetic permutation
sampling with a standard error per value otherwise; additive exactly on the chosen output
(``base_values + values.sum(axis=1)`` is the model's output for each row). ``output="logit"``
explains the log-odds of each scored row (shap's ``link=logit`` takes the logit of the mean
probability instead, which does not add up). Computed in Rust through the compiled engine, with the GIL
released.
"""

import json

import numpy as np

from ._arrays import as_2d, as_count, by_name

__all__ = ["explain", "Explanation", "permutation_importance", "Importance"]


class Explanation:
    """As ``shap.Explanation``: ``values`` (rows × features), ``base_values`` (rows),
    ``data`` (the rows), ``feature_names``; and ``std_errors`` (zeros when exact),
    ``method`` and ``evaluations`` (rows scored)."""

    def __init__(self, values, base_values, data, feature_names, std_errors, method, evaluations, output):
        self.values = values
        self.base_values = base_values
        self.data = data
        self.feature_names = feature_names
        self.std_errors = std_errors
        self.method = method
        self.evaluations = evaluations
        self.output = output

    def __repr__(self):
        return f"Explanation({self.values.shape[0]} rows x {self.values.shape[1]} features, {self.method}, {self.output})"


def explain(model, x, background, *, method="auto", output="probability", tolerance=1e-3,
            max_evaluations=2_000_000, seed=0):
    """Shapley values of ``model`` (a :class:`mlops.train.Model`) for each row of ``x``
    against the rows of ``background`` (at most 10,000). ``method``: ``"auto"``, ``"exact"``
    (at most 16 features), ``"permutation"``, or ``"deep"`` (DeepSHAP: approximate, additive,
    the cost of two forward passes over the background whatever the features); ``output``: ``"probability"`` or ``"logit"``.
    Sampling stops when every standard error is below ``tolerance`` or after
    ``max_evaluations`` rows scored per explained row."""
    if method not in ("auto", "exact", "permutation", "deep"):
        raise ValueError(f"method = {method!r}: expected 'auto', 'exact', 'permutation' or 'deep'")
    if output not in ("probability", "logit"):
        raise ValueError(f"output = {output!r}: expected 'probability' or 'logit'")
    config = {
        "method": {"kind": method},
        "scale": output,
        "tolerance": float(tolerance),
        "max_evaluations": as_count("max_evaluations", max_evaluations, 1, 2**40),
        "seed": as_count("seed", seed, 0, 2**64 - 1),
    }
    native = getattr(model, "_m", model)
    names = list(native.feature_names())
    if isinstance(x, np.ndarray) and x.ndim == 1:
        x = x.reshape(1, -1)
    # Columns by name for a DataFrame or a dict (as predict_proba takes them), by position
    # for an array; any numeric dtype.
    x, _ = as_2d("x", by_name("x", x, names))
    background, _ = as_2d("background", by_name("background", background, names))
    as_count("rows of x", x.shape[0], 1, 1_000_000)
    if method == "deep":
        # DeepSHAP: DeepLIFT's rescale rule averaged over the background (shap's
        # DeepExplainer); approximate, additive, one forward and backward pass per
        # background row.
        values, base = native.explain_deep(x, background, output)
        return Explanation(values, base, x, list(native.feature_names()), np.full_like(values, np.nan), "deep",
                           2 * background.shape[0] * x.shape[0], output)
    values, base, errors, used, evaluations = native.explain(x, background, json.dumps(config))
    return Explanation(values, base, x, list(native.feature_names()), errors, used, evaluations, output)


class Importance:
    """As scikit-learn's ``Bunch``: ``importances_mean``, ``importances_std`` (features),
    ``importances`` (features × repeats), and ``baseline`` (the metric unshuffled)."""

    def __init__(self, importances_mean, importances_std, importances, baseline, feature_names):
        self.importances_mean = importances_mean
        self.importances_std = importances_std
        self.importances = importances
        self.baseline = baseline
        self.feature_names = feature_names

    def __getitem__(self, key):
        return getattr(self, key)

    def top(self, k):
        """The ``k`` most important features, most important first (ties in column order)."""
        order = sorted(range(len(self.feature_names)), key=lambda j: (-self.importances_mean[j], j))
        return [self.feature_names[j] for j in order[:k]]


def permutation_importance(model, X, y, *, scoring="roc_auc", n_repeats=5, random_state=0, max_samples=None):
    """``sklearn.inspection.permutation_importance`` for a :class:`mlops.train.Model`: how much
    ``scoring`` (``"roc_auc"``, ``"accuracy"``, ``"f1"``, ... at the model's threshold) drops
    when each feature's column is shuffled, ``n_repeats`` times, on all rows or on
    ``max_samples`` of them (an int: rows; a float in (0, 1]: a share). One difference: with
    ``max_samples`` the baseline is scored on the same sample (scikit-learn scores it on every
    row, which shifts every importance alike)."""
    native = getattr(model, "_m", model)
    names = list(native.feature_names())
    if isinstance(X, np.ndarray) and X.ndim == 1:
        raise ValueError("X: expected a 2-d array (rows x features)")
    X, _ = as_2d("X", by_name("X", X, names))
    if max_samples is not None and isinstance(max_samples, float):
        if not 0.0 < max_samples <= 1.0:
            raise ValueError(f"max_samples = {max_samples!r}: expected a share in (0, 1] or a row count")
        max_samples = max(2, int(max_samples * X.shape[0]))
    config = {
        "metric": scoring,
        "n_repeats": as_count("n_repeats", n_repeats, 1, 1000),
        "max_samples": None if max_samples is None else as_count("max_samples", max_samples, 2, X.shape[0]),
        "seed": as_count("random_state", random_state, 0, 2**64 - 1),
    }
    mean, std, all_, baseline = native.permutation_importance(X, np.asarray(y, dtype=float), json.dumps(config))
    return Importance(mean, std, all_, baseline, names)
