"""Two-sample drift statistics with scipy's names, arguments and result objects.

Each function computes in Rust (mlops-drift's ``stats``, checked against scipy 1.17 there:
statistics to 1e-9, p-values to 1e-6) with the GIL released. Results unpack like scipy's:
``statistic, pvalue = ks_2samp(x, y)``.

Integer samples holding values float64 cannot (beyond 2**53) are compared exactly: the rank
statistics on their dense ranks in the pooled samples, the distances after subtracting the
pooled minimum in integer arithmetic (a pooled range wider than 2**53 is a ``ValueError``).
scipy's ``ks_2samp`` is exact on them too; its ``mannwhitneyu``, ``wasserstein_distance`` and
``energy_distance`` cast to float64 first and merge neighbours.

Where scipy offers more than is implemented here the difference is stated in the function's
docstring and asking for it raises ``ValueError``; nothing is silently ignored.
"""

import warnings
from typing import NamedTuple, Optional, Sequence

import numpy as np

from . import _native
from ._arrays import as_1d, as_2d, as_count, as_table, exact_ranks, exact_shifted

__all__ = [
    "ks_2samp",
    "cramervonmises_2samp",
    "anderson_ksamp",
    "mannwhitneyu",
    "wasserstein_distance",
    "energy_distance",
    "chi2_contingency",
    "psi",
    "jensenshannon",
    "KstestResult",
    "CramerVonMisesResult",
    "Anderson_ksampResult",
    "MannwhitneyuResult",
    "Chi2ContingencyResult",
    "ReferenceProfile",
    "ProfileSketch",
    "DEFAULT_SKETCH_K",
    "MAX_BINS",
    "MAX_REPRESENTATIVES",
    "SmallSampleWarning",
    "profile_dask",
]

DEFAULT_SKETCH_K = _native.DEFAULT_SKETCH_K
#: The most bins :func:`psi` (and a profile's ``bins``) takes.
MAX_BINS = _native.MAX_BINS
#: The most values a sketch's profile stands a numeric column for by.
MAX_REPRESENTATIVES = _native.MAX_REPRESENTATIVES


class SmallSampleWarning(RuntimeWarning):
    """A sample too small for the statistic: the result is NaN (scipy's
    ``SmallSampleWarning``, a ``RuntimeWarning``)."""


def _too_small(omitted):
    prefix = "After omitting NaNs, one or more" if omitted else "One or more"
    warnings.warn(
        f"{prefix} sample arguments is too small; all returned values will be NaN. "
        "See documentation for sample size requirements.",
        SmallSampleWarning,
        stacklevel=3,
    )


class KstestResult(NamedTuple):
    """Result of :func:`ks_2samp`: the statistic (the largest ECDF gap, D) and its p-value."""

    statistic: float
    pvalue: float


class CramerVonMisesResult(NamedTuple):
    """Result of :func:`cramervonmises_2samp`: the statistic (T) and its p-value."""

    statistic: float
    pvalue: float


class Anderson_ksampResult(NamedTuple):  # noqa: N801 (scipy's name)
    """Result of :func:`anderson_ksamp`, in scipy's order so that ``statistic,
    critical_values, pvalue = anderson_ksamp(...)`` reads the same: the normalized statistic,
    ``critical_values`` (``None``: not computed here) and scipy's p-value (the interpolated
    significance level, clamped to [0.001, 0.25])."""

    statistic: float
    critical_values: None
    pvalue: float


class MannwhitneyuResult(NamedTuple):
    """Result of :func:`mannwhitneyu`: U of the first sample and the p-value."""

    statistic: float
    pvalue: float


class Chi2ContingencyResult(NamedTuple):
    """Result of :func:`chi2_contingency`: the statistic, its p-value, the degrees of freedom
    and the expected frequencies (scipy's ``expected_freq``)."""

    statistic: float
    pvalue: float
    dof: int
    expected_freq: np.ndarray


def _nan_policy(nan_policy, **samples):
    """scipy's ``nan_policy``: 'propagate' (a NaN result), 'omit' (drop NaN), 'raise'."""
    if nan_policy not in ("propagate", "omit", "raise"):
        raise ValueError(f"nan_policy: expected 'propagate', 'omit' or 'raise', got {nan_policy!r}")
    out = {}
    has_nan = False
    for name, a in samples.items():
        nan = np.isnan(a)
        if nan.any():
            if nan_policy == "raise":
                raise ValueError(f"{name}: contains NaN (nan_policy='raise')")
            if nan_policy == "omit":
                a = a[~nan]
            else:
                has_nan = True
        out[name] = a
    return out, has_nan


def ks_2samp(data1, data2, alternative="two-sided", method="auto", *, nan_policy="propagate"):
    """Two-sample Kolmogorov–Smirnov test for goodness of fit.

    Tests the null hypothesis that the two independent samples are drawn from the same
    continuous distribution, as ``scipy.stats.ks_2samp``.

    Parameters
    ----------
    data1, data2 : array_like, 1-D
        The two samples (float64 read in place when contiguous).
    alternative : {'two-sided', 'less', 'greater'}
        The alternative hypothesis, as scipy's.
    method : {'auto', 'exact', 'asymp'}
        How the p-value is computed: 'auto' is exact for small samples, as scipy's rule.
    nan_policy : {'propagate', 'omit', 'raise'}
        What NaN input does: a NaN result, dropped values, or ``ValueError``.

    Returns
    -------
    KstestResult
        ``statistic`` and ``pvalue``. (scipy also reports ``statistic_location`` and
        ``statistic_sign``; they are not computed here.)

    Examples
    --------
    >>> import numpy as np
    >>> from mlops.drift import ks_2samp
    >>> rng = np.random.default_rng(0)
    >>> res = ks_2samp(rng.normal(size=500), rng.normal(0.5, size=500))
    >>> res.pvalue < 1e-6
    True
    """
    data1, data2 = exact_ranks(("data1", "data2"), (data1, data2))
    s, nan = _nan_policy(nan_policy, data1=as_1d("data1", data1), data2=as_1d("data2", data2))
    if nan:
        return KstestResult(float("nan"), float("nan"))
    return KstestResult(*_native.ks_2samp(s["data1"], s["data2"], alternative, method))


def cramervonmises_2samp(x, y, method="auto", *, nan_policy="propagate"):
    """Two-sample Cramér–von Mises test, as ``scipy.stats.cramervonmises_2samp``.

    Parameters
    ----------
    x, y : array_like, 1-D
        The two samples.
    method : {'auto', 'exact', 'asymptotic'}
        'auto' is exact when both samples have at most 20 values, as scipy's.
    nan_policy : {'propagate', 'omit', 'raise'}

    Returns
    -------
    CramerVonMisesResult
        ``statistic`` and ``pvalue``; both NaN, with a :class:`SmallSampleWarning`, when a
        sample has fewer than two values (after ``nan_policy='omit'``), as scipy.
    """
    x, y = exact_ranks(("x", "y"), (x, y))
    x, y = as_1d("x", x), as_1d("y", y)
    s, nan = _nan_policy(nan_policy, x=x, y=y)
    if nan:
        return CramerVonMisesResult(float("nan"), float("nan"))
    if len(s["x"]) < 2 or len(s["y"]) < 2:
        # scipy: NaN, NaN with a SmallSampleWarning (the statistic needs two values a sample).
        _too_small(omitted=len(x) >= 2 and len(y) >= 2)
        return CramerVonMisesResult(float("nan"), float("nan"))
    return CramerVonMisesResult(*_native.cramervonmises_2samp(s["x"], s["y"], method))


def anderson_ksamp(samples: Sequence, midrank: bool = True):
    """The Anderson–Darling k-sample test, as ``scipy.stats.anderson_ksamp`` (midrank).

    Parameters
    ----------
    samples : sequence of 1-D array_like
        Two or more samples.
    midrank : bool
        Only the midrank variant (scipy's default) is implemented; ``False`` raises
        ``ValueError``.

    Returns
    -------
    Anderson_ksampResult
        ``statistic``, ``critical_values`` (``None``: not computed here) and ``pvalue``
        (scipy's interpolation, clamped to [0.001, 0.25]), unpacking in scipy's order.
    """
    if not midrank:
        raise ValueError("midrank: only the midrank variant (midrank=True) is implemented")
    samples = exact_ranks([f"samples[{i}]" for i in range(len(samples))], list(samples))
    arrays = [as_1d(f"samples[{i}]", s) for i, s in enumerate(samples)]
    statistic, pvalue, _unclamped = _native.anderson_ksamp(arrays)
    return Anderson_ksampResult(statistic, None, pvalue)


def mannwhitneyu(x, y, use_continuity=True, alternative="two-sided", method="auto", *, nan_policy="propagate"):
    """The Mann–Whitney U rank test on two independent samples, as ``scipy.stats.mannwhitneyu``.

    Parameters
    ----------
    x, y : array_like, 1-D
        The two samples.
    use_continuity : bool
        Continuity correction of the normal approximation.
    alternative : {'two-sided', 'less', 'greater'}
    method : {'auto', 'exact', 'asymptotic'}
        'auto': exact when a sample has at most 8 values and there are no ties, as scipy's.
    nan_policy : {'propagate', 'omit', 'raise'}

    Returns
    -------
    MannwhitneyuResult
        ``statistic`` (U of ``x``) and ``pvalue``.
    """
    x, y = exact_ranks(("x", "y"), (x, y))
    s, nan = _nan_policy(nan_policy, x=as_1d("x", x), y=as_1d("y", y))
    if nan:
        return MannwhitneyuResult(float("nan"), float("nan"))
    return MannwhitneyuResult(
        *_native.mannwhitneyu(s["x"], s["y"], bool(use_continuity), alternative, method)
    )


def _no_weights(u_weights, v_weights):
    if u_weights is not None or v_weights is not None:
        raise ValueError("u_weights, v_weights: weighted samples are not implemented; pass None")


def wasserstein_distance(u_values, v_values, u_weights=None, v_weights=None):
    """The first Wasserstein distance between two 1-D samples, as
    ``scipy.stats.wasserstein_distance`` (unweighted: weights raise ``ValueError``)."""
    _no_weights(u_weights, v_weights)
    u_values, v_values = exact_shifted(("u_values", "v_values"), (u_values, v_values))
    return _native.wasserstein_distance(as_1d("u_values", u_values), as_1d("v_values", v_values))


def energy_distance(u_values, v_values, u_weights=None, v_weights=None):
    """The energy distance between two 1-D samples, as ``scipy.stats.energy_distance``
    (unweighted: weights raise ``ValueError``)."""
    _no_weights(u_weights, v_weights)
    u_values, v_values = exact_shifted(("u_values", "v_values"), (u_values, v_values))
    return _native.energy_distance(as_1d("u_values", u_values), as_1d("v_values", v_values))


def chi2_contingency(observed, correction=True, lambda_=None):
    """Chi-square test of independence of the variables of a contingency table, as
    ``scipy.stats.chi2_contingency``, for tables with two rows or two columns (reference
    against current counts: the drift case). Other shapes raise ``ValueError``.

    Parameters
    ----------
    observed : array_like, 2 x c or r x 2
        Counts (>= 0).
    correction : bool
        Yates' correction, applied as scipy does: only with one degree of freedom.
    lambda_ : None, 'pearson' or 'log-likelihood'
        Pearson's chi-square (default) or the G-test.

    Returns
    -------
    Chi2ContingencyResult
        ``statistic``, ``pvalue``, ``dof`` and ``expected_freq``, as scipy's. A zero expected
        frequency raises ``ValueError``, as scipy.
    """
    table = np.asarray(observed, dtype=np.float64)
    if table.ndim != 2 or 2 not in table.shape:
        raise ValueError(
            f"observed: expected a table with two rows or two columns, got shape {table.shape}"
        )
    if table.shape[0] != 2:
        table = table.T
    if not np.isfinite(table).all() or (table < 0).any():
        raise ValueError("observed: expected finite counts >= 0")
    if lambda_ in (None, "pearson"):
        g = False
    elif lambda_ == "log-likelihood":
        g = True
    else:
        raise ValueError(f"lambda_: expected None, 'pearson' or 'log-likelihood', got {lambda_!r}")
    total = table.sum()
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / total if total > 0 else np.zeros_like(table)
    if (expected == 0).any():
        zero = tuple(int(i) for i in np.argwhere(expected == 0)[0])
        raise ValueError(
            f"The internally computed table of expected frequencies has a zero element at {zero}."
        )
    dof = table.shape[1] - 1
    if dof == 0:
        stat, p = 0.0, 1.0
    else:
        stat, p = _native.chi2_two_rows(table[0].copy(), table[1].copy(), bool(correction), g)
    if np.asarray(observed).ndim == 2 and np.asarray(observed).shape[0] != 2:
        expected = expected.T
    return Chi2ContingencyResult(stat, p, dof, expected)


def psi(reference, current, n_bins: int = 10):
    """Population stability index of ``current`` against ``reference``: both binned on the
    reference's ``n_bins`` quantiles, ``sum((c - r) * ln(c / r))`` over bin shares (floored at
    1e-4). Above 0.2 is the usual "significant shift". ``n_bins`` is an integer from 2 to
    :data:`MAX_BINS` (``TypeError`` for a float, ``ValueError`` outside)."""
    n_bins = as_count("n_bins", n_bins, 2, MAX_BINS)
    reference, current = exact_shifted(("reference", "current"), (reference, current))
    return _native.psi_samples(as_1d("reference", reference), as_1d("current", current), n_bins)


def jensenshannon(p, q, base: Optional[float] = None):
    """The Jensen–Shannon distance of two probability vectors, as
    ``scipy.spatial.distance.jensenshannon`` (1-D; the vectors are normalized to sum to 1;
    natural log unless ``base``)."""
    d = _native.jensenshannon(as_1d("p", p), as_1d("q", q))
    if base is not None:
        if not base > 0 or base == 1:
            raise ValueError(f"base: expected a logarithm base > 0 and != 1, got {base}")
        d /= np.sqrt(np.log(base))
    return d


# ---------------------------------------------------------------------------------------------
# Reference profiles, sketches, Dask.


def _table(data, columns=None):
    return as_2d("data", data, columns)


def _json(config):
    import json

    return None if config is None else json.dumps(config)


class ReferenceProfile:
    """Reference statistics of a table, fitted once and compared with current data, as
    mlops-drift's ``ReferenceProfile`` (the profile the registry stores beside a model).

    >>> import numpy as np
    >>> from mlops.drift import ReferenceProfile
    >>> rng = np.random.default_rng(0)
    >>> profile = ReferenceProfile.fit(rng.normal(size=(5000, 3)), columns=["a", "b", "c"])
    >>> report = profile.compare(rng.normal(size=(2000, 3)) + [0.0, 0.0, 1.0], columns=["a", "b", "c"])
    >>> [c["column"] for c in report["columns"] if c["drifted"]]
    ['c']
    """

    def __init__(self, native):
        self._p = native

    @classmethod
    def fit(cls, data, columns=None, categorical=(), config=None):
        """Fits a profile of ``data`` (rows x columns: a 2-d array, a DataFrame or a dict of
        columns); ``categorical`` names the columns holding integer category codes;
        ``config`` is a ``ProfileConfig`` as a dict (``{"bins": 10, "storage": "exact"}``).
        ``data`` may be an Arrow table of numbers (pyarrow, polars)."""
        x, names, categorical = as_table("data", data, columns, categorical)
        return cls(_native.Profile.fit(x, names, categorical, _json(config)))

    def compare(self, current, columns=None, config=None):
        """The drift report of ``current`` against the profile, as a dict (per-column tests,
        statistics, p-values, the dataset decision); ``config`` is a ``DriftConfig`` as a dict
        (``{"tests": ["ks"], "drift_share": 0.3}``)."""
        import json

        x, names = _table(current, columns)
        return json.loads(self._p.compare(x, names, _json(config)))

    def html(self, current, columns=None, config=None):
        """The drift report of ``current`` as an HTML page (summary table, per-column ECDFs)."""
        x, names = _table(current, columns)
        return self._p.html(x, names, _json(config))

    @property
    def columns(self):
        """Column names, in order."""
        return self._p.columns()

    @property
    def rows(self):
        """Rows of the reference."""
        return self._p.rows()

    @property
    def ks_error_bound(self):
        """A KS statistic against this profile is within this of the exact one (0 for an
        exact profile)."""
        return self._p.ks_error_bound()

    def to_json(self):
        """The profile as JSON."""
        return self._p.to_json()

    @classmethod
    def from_json(cls, text):
        """A profile from its JSON."""
        return cls(_native.Profile.from_json(text))

    def __getstate__(self):
        return self.to_json()

    def __setstate__(self, state):
        self._p = _native.Profile.from_json(state)

    def __repr__(self):
        return f"ReferenceProfile(columns={self.columns}, rows={self.rows})"


class ProfileSketch:
    """A mergeable sketch of one partition of a reference (Apache DataSketches' KLL sketch per
    numeric column, exact counts per categorical one): sketch partitions anywhere, merge them
    in any order, turn the result into a :class:`ReferenceProfile`. Pickles (as JSON bytes)."""

    def __init__(self, native):
        self._s = native

    @classmethod
    def from_data(cls, data, columns=None, categorical=(), k=None):
        """Sketches ``data`` (rows x columns) with KLL accuracy ``k`` (default
        ``DEFAULT_SKETCH_K``)."""
        x, names = _table(data, columns)
        k = DEFAULT_SKETCH_K if k is None else as_count("k", k, 8, 65535)
        return cls(_native.Sketch.from_array(x, names, [str(c) for c in categorical], k))

    def merge(self, other):
        """Adds ``other`` (a sketch of another partition of the same columns); returns self."""
        self._s.merge(other._s)
        return self

    def to_profile(self, config=None, representatives=10_000):
        """The reference profile the merged partitions make (each numeric column stood for by
        ``representatives`` values at evenly spaced ranks)."""
        representatives = as_count("representatives", representatives, 2, MAX_REPRESENTATIVES)
        return ReferenceProfile(self._s.to_profile(representatives, _json(config)))

    def ks_error_bound(self, representatives=10_000):
        """KS statistics against ``to_profile(representatives)`` are within this of the exact
        ones."""
        return self._s.ks_error_bound(as_count("representatives", representatives, 2, MAX_REPRESENTATIVES))

    @property
    def rows(self):
        """Rows sketched."""
        return self._s.rows()

    def to_bytes(self):
        """The sketch as bytes (JSON)."""
        return self._s.to_json().encode()

    @classmethod
    def from_bytes(cls, data):
        """A sketch from :meth:`to_bytes`."""
        return cls(_native.Sketch.from_json(bytes(data).decode()))

    def __getstate__(self):
        return self.to_bytes()

    def __setstate__(self, state):
        self._s = _native.Sketch.from_json(bytes(state).decode())


def _sketch_partition(frame, columns, categorical, k):
    return ProfileSketch.from_data(frame[columns], columns, categorical, k).to_bytes()


def _merge_sketches(*parts):
    merged = ProfileSketch.from_bytes(parts[0])
    for p in parts[1:]:
        merged.merge(ProfileSketch.from_bytes(p))
    return merged.to_bytes()


def profile_dask(frame, categorical=(), k=None, config=None, representatives=10_000, split_every=8):
    """A :class:`ReferenceProfile` of a ``dask.dataframe`` built on the cluster: each partition
    is sketched on the worker that holds it, the sketches are merged in a tree
    (``split_every`` at a time) on the workers, and only the final sketch comes back. Counts
    are exact; KS statistics against the result are within ``ProfileSketch.ks_error_bound``
    of a one-machine exact profile's.

    >>> import dask.dataframe as dd  # doctest: +SKIP
    >>> profile = profile_dask(dd.read_parquet("reference/*.parquet"))  # doctest: +SKIP
    """
    from dask import delayed

    split_every = as_count("split_every", split_every, 2, 1 << 20)
    representatives = as_count("representatives", representatives, 2, MAX_REPRESENTATIVES)
    columns = [str(c) for c in frame.columns]
    k = DEFAULT_SKETCH_K if k is None else as_count("k", k, 8, 65535)
    level = [delayed(_sketch_partition)(part, columns, list(categorical), k) for part in frame.to_delayed()]
    if not level:
        raise ValueError("frame: expected at least one partition")
    while len(level) > 1:
        level = [delayed(_merge_sketches)(*level[i : i + split_every]) for i in range(0, len(level), split_every)]
    sketch = ProfileSketch.from_bytes(level[0].compute())
    return sketch.to_profile(config, representatives)
