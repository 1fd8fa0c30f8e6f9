"""The `mlops` wheel (bindings/python, built into .venv by the test command) against scipy and
scikit-learn: every drift function and metric on random inputs with ties and edge sizes,
zero-copy for contiguous arrays, correct results for strided ones, TypeError / ValueError for
wrong dtypes and shapes, and the GIL released while Rust computes."""

import sys
import threading

import numpy as np
import pytest
import scipy.stats as ss
import sklearn.metrics as sm
from scipy.spatial.distance import jensenshannon as scipy_js

import mlops
from mlops import drift, metrics

STAT = dict(rtol=1e-9, atol=1e-12)
PVALUE = dict(rtol=1e-6, atol=1e-12)


def samples(seed, n, m, ties):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=n), rng.normal(0.3, 1.2, size=m)
    if ties:
        x, y = np.round(x, 1), np.round(y, 1)
    return x, y


CASES = [(seed, n, m, ties) for seed, (n, m) in enumerate([(1, 1), (2, 3), (5, 7), (8, 8), (20, 20), (21, 40), (300, 250), (2000, 1500)]) for ties in (False, True)]


@pytest.mark.parametrize("seed,n,m,ties", CASES)
def test_two_sample_tests_match_scipy(seed, n, m, ties):
    x, y = samples(seed, n, m, ties)
    for alternative in ("two-sided", "less", "greater"):
        for method in ("auto", "asymp") + (("exact",) if n * m <= 10_000 else ()):
            ours = drift.ks_2samp(x, y, alternative=alternative, method=method)
            theirs = ss.ks_2samp(x, y, alternative=alternative, method=method)
            np.testing.assert_allclose(ours.statistic, theirs.statistic, **STAT)
            np.testing.assert_allclose(ours.pvalue, theirs.pvalue, **PVALUE)
    if n >= 2 and m >= 2:
        ours, theirs = drift.cramervonmises_2samp(x, y), ss.cramervonmises_2samp(x, y)
        np.testing.assert_allclose(ours.statistic, theirs.statistic, **STAT)
        np.testing.assert_allclose(ours.pvalue, theirs.pvalue, **PVALUE)
    for alternative in ("two-sided", "less", "greater"):
        for method in ("auto", "asymptotic"):
            for cont in (True, False):
                ours = drift.mannwhitneyu(x, y, cont, alternative, method)
                theirs = ss.mannwhitneyu(x, y, cont, alternative, method=method)
                np.testing.assert_allclose(ours.statistic, theirs.statistic, **STAT)
                if np.isnan(theirs.pvalue):
                    # Every value tied: the normal approximation's variance is 0 and scipy
                    # divides 0 by 0 without the continuity correction; the samples cannot
                    # be told apart and ours says so with the exact p-value, 1.
                    assert np.unique(np.concatenate([x, y])).size == 1 and not cont
                    assert ours.pvalue == ss.mannwhitneyu(x, y, cont, alternative, method="exact").pvalue == 1.0
                else:
                    np.testing.assert_allclose(ours.pvalue, theirs.pvalue, **PVALUE)
    np.testing.assert_allclose(drift.wasserstein_distance(x, y), ss.wasserstein_distance(x, y), **STAT)
    np.testing.assert_allclose(drift.energy_distance(x, y), ss.energy_distance(x, y), **STAT)
    if n >= 5 and m >= 5:
        ours = drift.anderson_ksamp([x, y])
        theirs = ss.anderson_ksamp([x, y], variant="midrank")
        np.testing.assert_allclose(ours.statistic, theirs.statistic, **STAT)
        np.testing.assert_allclose(ours.pvalue, np.clip(theirs.pvalue, 0.001, 0.25), **PVALUE)
        statistic, critical_values, pvalue = ours  # scipy's unpacking order
        assert (statistic, critical_values, pvalue) == (ours.statistic, None, ours.pvalue)


@pytest.mark.parametrize(
    "table",
    [
        [[10, 20, 30], [15, 15, 40]],
        [[3, 7], [9, 1]],
        [[12, 5], [8, 9], [30, 2], [1, 1]],  # r x 2: the same test on the transpose
        [[1000, 2000, 1, 5, 90], [900, 2100, 3, 2, 100]],
        [[5], [9]],
    ],
)
def test_chi2_contingency_matches_scipy(table):
    for correction in (True, False):
        for lambda_ in (None, "log-likelihood"):
            ours = drift.chi2_contingency(table, correction=correction, lambda_=lambda_)
            theirs = ss.chi2_contingency(table, correction=correction, lambda_=lambda_)
            np.testing.assert_allclose(ours.statistic, theirs.statistic, **STAT)
            np.testing.assert_allclose(ours.pvalue, theirs.pvalue, **PVALUE)
            assert ours.dof == theirs.dof
            np.testing.assert_allclose(ours.expected_freq, theirs.expected_freq, **STAT)


def test_chi2_contingency_refuses_what_it_does_not_implement_and_zero_expected_frequencies():
    with pytest.raises(ValueError, match="two rows or two columns"):
        drift.chi2_contingency([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    with pytest.raises(ValueError, match="expected frequencies has a zero element"):
        ss.chi2_contingency([[1, 0], [2, 0]])
    with pytest.raises(ValueError, match="expected frequencies has a zero element"):
        drift.chi2_contingency([[1, 0], [2, 0]])
    with pytest.raises(ValueError, match="lambda_"):
        drift.chi2_contingency([[1, 2], [3, 4]], lambda_="cressie-read")


def test_jensenshannon_matches_scipy_in_every_base():
    rng = np.random.default_rng(5)
    for _ in range(20):
        p, q = rng.random(7), rng.random(7)
        p[rng.integers(0, 7)] = 0.0
        for base in (None, 2, 10, np.e):
            np.testing.assert_allclose(drift.jensenshannon(p, q, base=base), scipy_js(p, q, base=base), **STAT)


def test_psi_is_zero_on_the_same_sample_and_grows_with_the_shift():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=5000)
    assert drift.psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    shifts = [drift.psi(ref, rng.normal(s, size=5000)) for s in (0.0, 0.25, 1.0)]
    assert shifts[0] < 0.02 < shifts[1] < shifts[2], shifts


def test_nan_policy_is_scipys():
    x, y = samples(3, 50, 60, False)
    x[4] = np.nan
    assert np.isnan(drift.ks_2samp(x, y).statistic) and np.isnan(ss.ks_2samp(x, y).statistic)
    ours, theirs = drift.ks_2samp(x, y, nan_policy="omit"), ss.ks_2samp(x, y, nan_policy="omit")
    np.testing.assert_allclose(ours.pvalue, theirs.pvalue, **PVALUE)
    with pytest.raises(ValueError, match="data1: contains NaN"):
        drift.ks_2samp(x, y, nan_policy="raise")


def labels_scores(seed, n, ties, weights):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1
    s = rng.random(n)
    if ties:
        s = np.round(s, 1)
    w = rng.random(n) * 3 if weights else None
    return y, s, w


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [2, 3, 17, 1000])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("weights", [False, True])
def test_metrics_match_scikit_learn(seed, n, ties, weights):
    y, s, w = labels_scores(seed, n, ties, weights)
    for dtype in (np.float64, np.float32):
        sd = s.astype(dtype)
        for ours, theirs in [
            (metrics.roc_auc_score, sm.roc_auc_score),
            (metrics.average_precision_score, sm.average_precision_score),
            (metrics.log_loss, sm.log_loss),
            (metrics.brier_score_loss, sm.brier_score_loss),
        ]:
            want = theirs(y, sd.astype(np.float64), sample_weight=w)
            np.testing.assert_allclose(ours(y, sd, sample_weight=w), want, rtol=1e-7 if dtype == np.float32 else 1e-9, err_msg=ours.__name__)
        pred = (s >= 0.5).astype(int)
        for ours, theirs in [
            (metrics.accuracy_score, sm.accuracy_score),
            (metrics.precision_score, lambda a, b, sample_weight: sm.precision_score(a, b, sample_weight=sample_weight, zero_division=0.0)),
            (metrics.recall_score, lambda a, b, sample_weight: sm.recall_score(a, b, sample_weight=sample_weight, zero_division=0.0)),
            (metrics.f1_score, lambda a, b, sample_weight: sm.f1_score(a, b, sample_weight=sample_weight, zero_division=0.0)),
        ]:
            np.testing.assert_allclose(ours(y, pred, sample_weight=w), theirs(y, pred, sample_weight=w), rtol=1e-12)


def test_undefined_metrics_and_bad_labels_raise_value_error_naming_them():
    with pytest.raises(ValueError, match="ROC curve is undefined: needs both classes"):
        metrics.roc_auc_score([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="y_score: expected 3 values"):
        metrics.roc_auc_score([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="y_pred\\[1\\] = 0.7"):
        metrics.accuracy_score([0, 1], [0, 0.7])
    with pytest.raises(ValueError, match="labels"):
        metrics.roc_auc_score([0, 2, 1], [0.1, 0.2, 0.3])


def test_contiguous_arrays_are_read_in_place_and_strided_ones_give_the_same_numbers():
    # What the real calls hand to mlops (recorded where the slices are passed, on the thread
    # that computes), not a separate helper's view: a copy anywhere on the way is seen.
    rng = np.random.default_rng(2)
    x = rng.normal(size=10_001)
    y = rng.normal(0.1, size=4000)
    for call in (drift.ks_2samp, drift.cramervonmises_2samp, drift.mannwhitneyu, drift.wasserstein_distance, drift.energy_distance, drift.psi):
        call(x, y)
        assert mlops._native.last_input_addresses() == [x.ctypes.data, y.ctypes.data], call.__name__
    drift.anderson_ksamp([x, y, x])
    assert mlops._native.last_input_addresses() == [x.ctypes.data, y.ctypes.data, x.ctypes.data]
    f32 = x.astype(np.float32)
    yl = (rng.random(10_001) < 0.3).astype(np.float32)
    for call in (metrics.roc_auc_score, metrics.average_precision_score):
        call(yl, f32)
        assert mlops._native.last_input_addresses() == [yl.ctypes.data, f32.ctypes.data], call.__name__
    yd = yl.astype(np.float64)
    metrics.roc_auc_score(yd, x)
    assert mlops._native.last_input_addresses() == [yd.ctypes.data, x.ctypes.data]
    # The helper agrees with the real calls.
    assert mlops._native.buffer_address(x) == x.ctypes.data
    assert mlops._native.buffer_address(f32) == f32.ctypes.data
    # A strided view is copied (its address is not the one handed over), the other read in place.
    strided = x[::3]
    assert not strided.flags.c_contiguous
    drift.ks_2samp(strided, y)
    handed = mlops._native.last_input_addresses()
    assert handed[0] != strided.ctypes.data and handed[1] == y.ctypes.data
    assert mlops._native.buffer_address(strided) != strided.ctypes.data
    assert drift.ks_2samp(strided, y) == drift.ks_2samp(strided.copy(), y)
    # A Fortran-ordered 2-d array's column is a strided view too.
    table = np.asfortranarray(rng.normal(size=(500, 3)))
    row = table[7]
    assert drift.wasserstein_distance(row, y) == pytest.approx(ss.wasserstein_distance(row, y), rel=1e-12)
    yl = yl[:3334]
    assert metrics.roc_auc_score(yl, f32[::3]) == pytest.approx(sm.roc_auc_score(yl, f32[::3]), rel=1e-7)


def test_wrong_dtypes_are_type_errors_and_wrong_shapes_value_errors():
    x = np.arange(10.0)
    with pytest.raises(TypeError, match="data1: expected numeric values, got dtype <U1"):
        drift.ks_2samp(np.array(list("abcdefghij")), x)
    with pytest.raises(TypeError, match="y_score: expected numeric values, got dtype object"):
        metrics.roc_auc_score([0, 1], np.array([None, 1], dtype=object))
    with pytest.raises(ValueError, match="data2: expected a 1-d array, got 2 dimensions"):
        drift.ks_2samp(x, np.ones((3, 3)))
    with pytest.raises(TypeError, match="x: expected a numpy array, got list"):
        mlops._native.buffer_address([1.0, 2.0])
    with pytest.raises(ValueError, match="alternative"):
        drift.ks_2samp(x, x, alternative="bigger")
    with pytest.raises(ValueError, match="weighted samples are not implemented"):
        drift.wasserstein_distance(x, x, u_weights=x)
    with pytest.raises(ValueError, match="empty|at least"):
        drift.ks_2samp(np.array([]), x)
    # Integer and boolean inputs are numbers, as for scipy.
    assert drift.ks_2samp(np.arange(10), np.arange(10) > 4).statistic == ss.ks_2samp(np.arange(10), np.arange(10) > 4).statistic


def test_the_gil_is_released_while_rust_computes():
    # The worker thread's profile hook marks the real native call (mlops._native.ks_2samp, the
    # one drift.ks_2samp makes) from just before it starts to just after it returns; this
    # thread counts the Python loop iterations it runs while the mark is up. With the GIL held
    # through the computation this thread could run only in the instant between the mark and
    # the call: at most one switch interval, shortened here to 10 us (about 2,000 iterations
    # measured with the GIL held). Released, it runs for the whole computation (sorting 6
    # million values): about 7 million iterations measured.
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=3_000_000), rng.normal(size=3_000_000)
    inside, finished = threading.Event(), threading.Event()
    state = {"in": False}
    result = {}

    def hook(frame, event, arg):
        if arg is mlops._native.ks_2samp:
            if event == "c_call":
                state["in"] = True
                inside.set()
            elif event in ("c_return", "c_exception"):
                state["in"] = False

    def work():
        sys.setprofile(hook)
        try:
            result["r"] = drift.ks_2samp(a, b)
        finally:
            sys.setprofile(None)
            state["in"] = False
            finished.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        t = threading.Thread(target=work)
        t.start()
        assert inside.wait(60)
        spins = 0
        while state["in"]:
            spins += 1
        t.join()
    finally:
        sys.setswitchinterval(interval)
    assert finished.is_set() and result["r"].pvalue > 1e-4
    assert spins > 200_000, spins


def test_help_reads_like_scipys():
    doc = drift.ks_2samp.__doc__
    for section in ("Parameters", "Returns", "alternative : {'two-sided', 'less', 'greater'}", "KstestResult"):
        assert section in doc
    assert "sklearn.metrics.roc_auc_score" in metrics.roc_auc_score.__doc__
    assert mlops.__version__ == "0.1.0"
