"""Fairness metrics with Fairlearn's names and signatures, and AIF360's signed measures.

A Fairlearn user changes one import::

    from mlops.fairness import MetricFrame, demographic_parity_difference, selection_rate

Computed in Rust (mlops-core's ``fairness``, checked against fairlearn 0.15 and aif360 0.6
there, to 1e-12) with the GIL released. Labels and decisions are 0 and 1 (the positive class
is 1). ``sensitive_features`` is one column (a list, array or pandas Series) or several (a
DataFrame, a dict of columns, or a 2-d array): several columns mean their intersections, and
only intersections that occur are groups.

One difference, on purpose: a rate whose denominator is empty (the true positive rate of a
group without positive labels) is undefined. A disparity that needs it raises ``ValueError``
naming the group, and ``MetricFrame.by_group`` shows NaN with the reason in
``MetricFrame.undefined``. Fairlearn reports 0 there; pass ``zero_when_undefined=True`` to
reproduce its numbers exactly.

:func:`assess` adds what a gate needs: a minimum group size (smaller groups make the result
inconclusive) and a bootstrap interval resampled within groups.
"""

import json

import numpy as np

from . import _native
from ._arrays import as_1d, as_count

__all__ = [
    "MetricFrame",
    "selection_rate",
    "true_positive_rate",
    "false_positive_rate",
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equalized_odds_ratio",
    "equal_opportunity_difference",
    "equal_opportunity_ratio",
    "statistical_parity_difference",
    "disparate_impact",
    "average_odds_difference",
    "assess",
]

_METHODS = ("between_groups", "to_overall")
_AGGS = ("worst_case", "mean")


def _columns(sensitive_features, n):
    """The sensitive columns as ``(names, [1-d arrays])``."""
    sf = sensitive_features
    if sf is None:
        raise ValueError("sensitive_features: expected one or more columns, got None")
    if hasattr(sf, "columns") and hasattr(sf, "to_numpy"):  # pandas DataFrame
        names = [str(c) for c in sf.columns]
        cols = [np.asarray(sf[c].to_numpy()) for c in sf.columns]
    elif isinstance(sf, dict):
        names = [str(c) for c in sf]
        cols = [np.asarray(v) for v in sf.values()]
    else:
        a = np.asarray(sf)
        name = getattr(sf, "name", None)
        if a.ndim == 1:
            names, cols = [str(name) if name is not None else "sensitive_feature_0"], [a]
        elif a.ndim == 2:
            names = [f"sensitive_feature_{j}" for j in range(a.shape[1])]
            cols = [a[:, j] for j in range(a.shape[1])]
        else:
            raise ValueError(f"sensitive_features: expected 1 or 2 dimensions, got {a.ndim}")
    if not cols:
        raise ValueError("sensitive_features: expected at least one column")
    for name, c in zip(names, cols):
        if c.ndim != 1 or len(c) != n:
            raise ValueError(f"sensitive_features[{name!r}]: expected {n} values (one per y_true), got shape {c.shape}")
        if c.dtype.kind == "f" and np.isnan(c).any():
            i = int(np.flatnonzero(np.isnan(c))[0])
            raise ValueError(f"sensitive_features[{name!r}][{i}] = nan: expected a group value (fill missing groups first)")
        if c.dtype.kind == "O" and any(v is None for v in c):
            i = next(i for i, v in enumerate(c) if v is None)
            raise ValueError(f"sensitive_features[{name!r}][{i}] = None: expected a group value (fill missing groups first)")
    return names, cols


class _Groups:
    """Sensitive columns encoded as group codes (sorted intersections) and keys."""

    def __init__(self, sensitive_features, n):
        self.names, cols = _columns(sensitive_features, n)
        uniques, inverses = [], []
        for name, c in zip(self.names, cols):
            try:
                u, inv = np.unique(c, return_inverse=True)
            except TypeError:
                raise TypeError(f"sensitive_features[{name!r}]: values of mixed types cannot be sorted into groups") from None
            uniques.append(u)
            inverses.append(inv.reshape(-1))
        if len(cols) == 1:
            combined = inverses[0]
        else:
            combined = np.ravel_multi_index(inverses, [len(u) for u in uniques])
        present, codes = np.unique(combined, return_inverse=True)
        parts = np.unravel_index(present, [len(u) for u in uniques]) if len(cols) > 1 else [present]
        self.values = [tuple(u[p[i]] for u, p in zip(uniques, parts)) for i in range(len(present))]
        self.keys = [[str(v) for v in key] for key in self.values]
        self.codes = codes.reshape(-1).astype(np.float64)

    def key_of(self, reference):
        """A reference group given as a value (one column) or a tuple (several)."""
        ref = reference if isinstance(reference, (tuple, list)) else (reference,)
        return [str(v) for v in ref]

    def label(self, i):
        v = self.values[i]
        return v[0] if len(v) == 1 else v


def _inputs(y_true, y_pred, sensitive_features, sample_weight, scores=False):
    """The native input, checked once, and the groups."""
    y_true = as_1d("y_true", y_true)
    y_pred = as_1d("y_pred", y_pred)
    if len(y_pred) != len(y_true):
        raise ValueError(f"y_pred: expected {len(y_true)} values (one per y_true), got {len(y_pred)}")
    w = None if sample_weight is None else as_1d("sample_weight", sample_weight)
    groups = _Groups(sensitive_features, len(y_true))
    return _native.FairnessInput(y_true, y_pred, groups.codes, groups.names, groups.keys, w, scores), groups


def _measure(name, y_true, y_pred, sensitive_features, sample_weight, zero_when_undefined, method=None, agg=None, reference=None):
    native, groups = _inputs(y_true, y_pred, sensitive_features, sample_weight)
    spec = {"measure": name}
    if method is not None:
        if method not in _METHODS:
            raise ValueError(f"method = {method!r}: expected 'between_groups' or 'to_overall'")
        spec["method"] = method
    if agg is not None:
        if agg not in _AGGS:
            raise ValueError(f"agg must be one of 'worst_case' or 'mean', got {agg}")
        spec["agg"] = agg
    if reference is not None:
        spec["reference"] = groups.key_of(reference)
    return json.loads(native.measure(json.dumps(spec), bool(zero_when_undefined)))


def _fairlearn_measure(name, doc):
    def f(y_true, y_pred, *, sensitive_features, method="between_groups", sample_weight=None, zero_when_undefined=False):
        return _measure(name, y_true, y_pred, sensitive_features, sample_weight, zero_when_undefined, method=method)["value"]

    f.__name__ = f.__qualname__ = name
    f.__doc__ = doc
    return f


demographic_parity_difference = _fairlearn_measure(
    "demographic_parity_difference",
    """Largest minus smallest selection rate over groups (``method="between_groups"``), or the
    largest distance of a group's from the overall one (``"to_overall"``), as
    ``fairlearn.metrics.demographic_parity_difference``.""")
demographic_parity_ratio = _fairlearn_measure(
    "demographic_parity_ratio",
    """Smallest over largest selection rate (or the smallest group-to-overall ratio written
    below 1), as ``fairlearn.metrics.demographic_parity_ratio``.""")
equal_opportunity_difference = _fairlearn_measure(
    "equal_opportunity_difference",
    """The true positive rate's difference, as ``fairlearn.metrics.equal_opportunity_difference``.
    A group without positive labels raises ``ValueError`` naming it (fairlearn: 0) unless
    ``zero_when_undefined``.""")
equal_opportunity_ratio = _fairlearn_measure(
    "equal_opportunity_ratio",
    """The true positive rate's ratio, as ``fairlearn.metrics.equal_opportunity_ratio``.""")


def equalized_odds_difference(y_true, y_pred, *, sensitive_features, method="between_groups", sample_weight=None, agg="worst_case", zero_when_undefined=False):
    """The larger (``agg="worst_case"``) or the mean (``"mean"``) of the true and false positive
    rate differences, as ``fairlearn.metrics.equalized_odds_difference``."""
    return _measure("equalized_odds_difference", y_true, y_pred, sensitive_features, sample_weight, zero_when_undefined, method=method, agg=agg)["value"]


def equalized_odds_ratio(y_true, y_pred, *, sensitive_features, method="between_groups", sample_weight=None, agg="worst_case", zero_when_undefined=False):
    """The smaller (``agg="worst_case"``) or the mean of the true and false positive rate
    ratios, as ``fairlearn.metrics.equalized_odds_ratio``."""
    return _measure("equalized_odds_ratio", y_true, y_pred, sensitive_features, sample_weight, zero_when_undefined, method=method, agg=agg)["value"]


def _aif360_measure(name, doc):
    def f(y_true, y_pred, *, sensitive_features, reference, sample_weight=None, zero_when_undefined=False, per_group=False):
        out = _measure(name, y_true, y_pred, sensitive_features, sample_weight, zero_when_undefined, reference=reference)
        if per_group:
            return out["value"], {name: v for name, v in out["per_group"]}
        return out["value"]

    f.__name__ = f.__qualname__ = name
    f.__doc__ = doc + """

    ``reference`` is AIF360's privileged group: a value, or a tuple with several sensitive
    columns. Every other group is compared with it, and the one farthest from fair is
    returned with its sign; ``per_group=True`` also returns each group's value by name."""
    return f


statistical_parity_difference = _aif360_measure(
    "statistical_parity_difference",
    "Selection rate of a group minus the reference group's, as AIF360's ``ClassificationMetric.statistical_parity_difference``.")
disparate_impact = _aif360_measure(
    "disparate_impact",
    "Selection rate of a group over the reference group's (the four-fifths rule asks >= 0.8), as AIF360's ``disparate_impact``.")
average_odds_difference = _aif360_measure(
    "average_odds_difference",
    "Mean of the false and true positive rate differences against the reference group, as AIF360's ``average_odds_difference``.")


def _one_group(name, y_true, y_pred, sample_weight, zero_when_undefined):
    y_true = as_1d("y_true", y_true)
    frame = MetricFrame(metrics=name, y_true=y_true, y_pred=y_pred, sensitive_features=np.zeros(len(y_true)),
                        sample_weight=sample_weight, zero_when_undefined=zero_when_undefined)
    value = frame.overall
    if isinstance(value, float) and np.isnan(value):
        raise ValueError(f"{name} is undefined: {frame.undefined[('overall', name)]}")
    return value


def selection_rate(y_true, y_pred, *, pos_label=1, sample_weight=None):
    """Weighted share of decisions equal to 1, as ``fairlearn.metrics.selection_rate``."""
    if pos_label != 1:
        raise ValueError(f"pos_label = {pos_label!r}: expected 1 (labels and decisions are 0 and 1)")
    return _one_group("selection_rate", y_true, y_pred, sample_weight, False)


def true_positive_rate(y_true, y_pred, sample_weight=None, pos_label=None, *, zero_when_undefined=False):
    """tp / (tp + fn), as ``fairlearn.metrics.true_positive_rate``; without positive labels it
    raises ``ValueError`` (fairlearn: 0) unless ``zero_when_undefined``."""
    if pos_label not in (None, 1):
        raise ValueError(f"pos_label = {pos_label!r}: expected 1")
    return _one_group("true_positive_rate", y_true, y_pred, sample_weight, zero_when_undefined)


def false_positive_rate(y_true, y_pred, sample_weight=None, pos_label=None, *, zero_when_undefined=False):
    """fp / (fp + tn), as ``fairlearn.metrics.false_positive_rate``."""
    if pos_label not in (None, 1):
        raise ValueError(f"pos_label = {pos_label!r}: expected 1")
    return _one_group("false_positive_rate", y_true, y_pred, sample_weight, zero_when_undefined)


# Metric names, and the functions fairlearn and scikit-learn users pass, by ``__name__``.
_NAMES = {
    "selection_rate": "selection_rate",
    "true_positive_rate": "true_positive_rate",
    "recall_score": "true_positive_rate",
    "false_positive_rate": "false_positive_rate",
    "precision_score": "precision",
    "precision": "precision",
    "accuracy_score": "accuracy",
    "accuracy": "accuracy",
    "roc_auc_score": "roc_auc",
    "roc_auc": "roc_auc",
    "count": "count",
}


def _metric_name(m):
    name = m if isinstance(m, str) else getattr(m, "__name__", None)
    if name not in _NAMES:
        raise TypeError(
            f"metric {m!r}: expected one of the computed metrics {sorted(set(_NAMES))} "
            "(as a name or as the fairlearn / scikit-learn function of that name)")
    return _NAMES[name]


class MetricFrame:
    """Metrics by group and overall, as ``fairlearn.metrics.MetricFrame`` for binary
    classifiers: ``metrics`` is one metric or a dict of them, each a name or the fairlearn /
    scikit-learn function (``selection_rate``, ``true_positive_rate``, ``recall_score``,
    ``false_positive_rate``, ``precision_score``, ``accuracy_score``, ``roc_auc_score``,
    ``count``). With ``roc_auc_score`` as the only kind of metric, ``y_pred`` holds scores.

    ``sample_params`` as fairlearn (``{"sample_weight": w}`` with one metric, by metric name
    with several, the same ``sample_weight`` for every metric), or
    ``sample_weight``. ``by_group`` and ``overall`` are pandas objects when pandas is
    installed (dicts otherwise); an undefined value is NaN, and ``undefined`` says why, by
    ``(group, metric)``.
    """

    def __init__(self, *, metrics, y_true, y_pred, sensitive_features, sample_params=None, sample_weight=None, zero_when_undefined=False):
        single = not isinstance(metrics, dict)
        named = {(_metric_name(metrics) if isinstance(metrics, str) else getattr(metrics, "__name__", str(metrics))): metrics} if single else dict(metrics)
        self._metrics = {str(k): _metric_name(v) for k, v in named.items()}
        self._single = single
        if sample_params is not None and single:
            # fairlearn: with one metric, sample_params holds its arguments directly.
            sample_params = {"metric": sample_params}
        if sample_params is not None:
            weights = []
            for k, params in sample_params.items():
                extra = set(params) - {"sample_weight"}
                if extra:
                    raise ValueError(f"sample_params[{k!r}]: only sample_weight is supported, got {sorted(extra)}")
                weights.append(params.get("sample_weight"))
            if sample_weight is not None:
                weights.append(sample_weight)
            first = weights[0] if weights else None
            if any((w is None) != (first is None) or (w is not None and not np.array_equal(np.asarray(w), np.asarray(first))) for w in weights):
                raise ValueError("sample_params: every metric must have the same sample_weight")
            sample_weight = first
        kinds = set(self._metrics.values()) - {"count"}
        self._scores = kinds == {"roc_auc"}
        if "roc_auc" in kinds and not self._scores:
            raise ValueError("metrics: roc_auc_score reads scores and the others read decisions; compute them in two MetricFrames")
        self._native, groups = _inputs(y_true, y_pred, sensitive_features, sample_weight, self._scores)
        self._zero = bool(zero_when_undefined)
        self._groups = groups
        raw = json.loads(self._native.frame(self._zero))
        self.undefined = {}
        self._by_group = []
        for i, g in enumerate(raw["by_group"]):
            self._by_group.append(self._row(g, groups.label(i)))
        self._overall = self._row(raw["overall"], "overall")
        self._raw = raw

    def _row(self, g, label):
        out = {}
        for name, m in self._metrics.items():
            if m == "count":
                out[name] = int(g["rows"])
                continue
            v = g[m]
            if v is None:
                self.undefined[(label, name)] = g["undefined"].get(m, "undefined")
                v = float("nan")
            out[name] = float(v)
        return out

    def _index(self):
        import pandas as pd

        labels = [self._groups.label(i) for i in range(len(self._by_group))]
        if len(self._groups.names) > 1:
            return pd.MultiIndex.from_tuples(labels, names=self._groups.names)
        return pd.Index(labels, name=self._groups.names[0])

    @property
    def by_group(self):
        """Each group's metrics: a pandas Series (one metric) or DataFrame, else a dict."""
        try:
            import pandas as pd
        except ImportError:
            labels = [self._groups.label(i) for i in range(len(self._by_group))]
            if self._single:
                (name,) = self._metrics
                return {k: row[name] for k, row in zip(labels, self._by_group)}
            return dict(zip(labels, self._by_group))
        frame = pd.DataFrame(self._by_group, index=self._index(), columns=list(self._metrics))
        if self._single:
            return frame.iloc[:, 0]
        return frame

    @property
    def overall(self):
        """The metrics on all rows: a float (one metric), else a pandas Series or dict."""
        if self._single:
            (name,) = self._metrics
            return self._overall[name]
        try:
            import pandas as pd
        except ImportError:
            return dict(self._overall)
        return pd.Series(self._overall)

    def _each(self, f):
        out = {name: f(name, m) for name, m in self._metrics.items()}
        if self._single:
            return next(iter(out.values()))
        try:
            import pandas as pd
        except ImportError:
            return out
        return pd.Series(out)

    def _spread(self, method, ratio):
        if method not in _METHODS:
            raise ValueError(f"Unrecognised method '{method}' in {'ratio' if ratio else 'difference'}() call")

        def f(name, m):
            if m == "count":
                values = [row[name] for row in self._by_group]
                if ratio:
                    return min(values) / max(values) if method == "between_groups" else min(min(v / self._overall[name], self._overall[name] / v) for v in values)
                return max(values) - min(values) if method == "between_groups" else max(abs(v - self._overall[name]) for v in values)
            return self._native.spread(self._zero, m, method, ratio)

        return self._each(f)

    def difference(self, method="between_groups"):
        """Largest difference between groups, or from overall, per metric (fairlearn's
        ``difference``); ``ValueError`` naming the group when a value is undefined."""
        return self._spread(method, False)

    def ratio(self, method="between_groups"):
        """Smallest ratio between groups, or to overall, per metric (fairlearn's ``ratio``)."""
        return self._spread(method, True)

    def group_min(self):
        """The smallest value over groups, per metric (NaN when one is undefined)."""
        return self._each(lambda name, m: min(row[name] for row in self._by_group) if not any(np.isnan(row[name]) for row in self._by_group) else float("nan"))

    def group_max(self):
        """The largest value over groups, per metric (NaN when one is undefined)."""
        return self._each(lambda name, m: max(row[name] for row in self._by_group) if not any(np.isnan(row[name]) for row in self._by_group) else float("nan"))


def assess(y_true, y_pred, *, sensitive_features, measure, method=None, agg=None, reference=None, sample_weight=None,
           min_group_size=30, n_boot=1000, confidence=0.95, random_state=0, zero_when_undefined=False):
    """A disparity as a gate judges it: ``status`` ("measured", "inconclusive" when a group has
    fewer than ``min_group_size`` rows behind a rate the measure reads, "undefined"), ``value``
    (with the ``worst`` pair of groups and their rows), ``interval`` (a percentile bootstrap of
    ``n_boot`` resamples drawn within each group; ``n_boot=None`` for none), ``small_groups``
    and a ``reason``. Returns a dict."""
    native, groups = _inputs(y_true, y_pred, sensitive_features, sample_weight)
    spec = {"measure": str(measure)}
    if method is not None:
        spec["method"] = method
    if agg is not None:
        spec["agg"] = agg
    if reference is not None:
        spec["reference"] = groups.key_of(reference)
    config = {
        "min_group_size": as_count("min_group_size", min_group_size, 1, 2**53),
        "bootstrap": None if n_boot is None else {
            "n_resamples": as_count("n_boot", n_boot, 10, 1_000_000),
            "confidence": float(confidence),
            "seed": as_count("random_state", random_state, 0, 2**64 - 1),
        },
        "zero_when_undefined": bool(zero_when_undefined),
    }
    return json.loads(native.assess(json.dumps(spec), json.dumps(config)))
