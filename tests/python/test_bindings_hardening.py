"""Issue 22's Python items: every size argument checked before anything is allocated (never
truncated, never an abort or a panic), the simulated rollout's rates and durations checked,
columns matched by name, and the drift statistics as scipy on the inputs that used to differ
(Mann-Whitney's exact p-value at 200 x 300, Cramér-von Mises on one value, int64 above 2**53)."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats as ss
import sklearn.metrics as sm

from mlops import _native, drift, metrics
from mlops.serve import simulate_rollout
from mlops.train import Study, fit

# ---------------------------------------------------------------------------------------------
# Item 3: sizes.


@pytest.mark.parametrize("n_bins", [10**12, 2**63, 2**64, 2**200, drift.MAX_BINS + 1, 1, 0, -1])
def test_psi_bins_outside_the_documented_range_are_value_errors(n_bins):
    a = np.arange(100.0)
    with pytest.raises(ValueError, match=f"n_bins: expected an integer from 2 to {drift.MAX_BINS}, got {n_bins}"):
        drift.psi(a, a, n_bins=n_bins)


@pytest.mark.parametrize("n_bins", [2.7, 3.0, np.float64(4.0), "10", None, True])
def test_psi_bins_that_are_not_integers_are_type_errors_never_truncated(n_bins):
    a = np.arange(100.0)
    with pytest.raises(TypeError, match="n_bins: expected an integer"):
        drift.psi(a, a, n_bins=n_bins)


def test_psi_takes_numpy_integers_and_the_library_bounds_bins_itself():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=2000), rng.normal(0.3, size=2000)
    assert drift.psi(a, b, n_bins=np.int64(7)) == drift.psi(a, b, n_bins=7)
    assert drift.psi(a, b, n_bins=drift.MAX_BINS) >= 0.0
    # Past the Python checks, the Rust library refuses before allocating (this was a 24 TB
    # allocation that aborted the interpreter, and a capacity-overflow panic at 2**63).
    for n in (10**12, 2**63, 2**64 - 1):
        with pytest.raises(ValueError, match=f"invalid n_bins = {n}: expected from 2 to {drift.MAX_BINS} bins"):
            _native.psi_samples(a, b, n)
    with pytest.raises(OverflowError):
        _native.psi_samples(a, b, 2**64)


def test_sketch_and_profile_sizes_are_checked():
    x = np.random.default_rng(1).normal(size=(300, 2))
    with pytest.raises(TypeError, match="k: expected an integer, got float 2.7"):
        drift.ProfileSketch.from_data(x, k=2.7)
    with pytest.raises(ValueError, match="k: expected an integer from 8 to 65535, got 1000000"):
        drift.ProfileSketch.from_data(x, k=10**6)
    sketch = drift.ProfileSketch.from_data(x, k=200)
    for r in (10**12, drift.MAX_REPRESENTATIVES + 1, 1):
        with pytest.raises(ValueError, match="representatives: expected an integer from 2"):
            sketch.to_profile(representatives=r)
    with pytest.raises(TypeError, match="representatives: expected an integer"):
        sketch.to_profile(representatives=100.5)
    with pytest.raises(ValueError, match="invalid ProfileSketch::to_profile representatives = 1000000000000"):
        sketch._s.to_profile(10**12, None)
    with pytest.raises(ValueError, match="invalid ProfileConfig.bins = 1000000000000"):
        drift.ReferenceProfile.fit(x, config={"bins": 10**12})
    assert sketch.to_profile(representatives=np.int32(50)).rows == 300


def test_training_and_study_sizes_are_checked():
    x = np.random.default_rng(2).normal(size=(200, 3))
    y = (x[:, 0] > 0).astype(int)
    with pytest.raises(TypeError, match=r"hidden\[1\]: expected an integer, got float 2.7"):
        fit(x, y, hidden=(8, 2.7), epochs=1)
    with pytest.raises(ValueError, match=r"hidden\[0\]: expected an integer from 1 to 65536, got 1000000000000"):
        fit(x, y, hidden=(10**12,), epochs=1)
    # The binding checks what reaches it without the Python wrapper too.
    with pytest.raises(ValueError, match=r"invalid hidden\[0\] = 1000000000000"):
        _native.fit(x, y.astype(float), ["a", "b", "c"], [], '{"hidden": [1000000000000]}', '{"epochs": 1}', None)
    with pytest.raises(TypeError, match="epochs: expected an integer, got float 2.7"):
        fit(x, y, hidden=(4,), epochs=2.7)
    with pytest.raises(ValueError, match="batch_size: expected an integer from 1 to 16777216"):
        fit(x, y, hidden=(4,), epochs=1, batch_size=10**12)
    space = {"x": {"type": "uniform", "low": 0, "high": 1}}
    with pytest.raises(TypeError, match="parallel: expected an integer, got float 2.5"):
        Study("s", space, parallel=2.5)
    with pytest.raises(ValueError, match="parallel: expected an integer from 1 to 1024"):
        Study("s", space, parallel=10**9)
    with pytest.raises(ValueError, match="max_trials: expected an integer from 1 to 1000000"):
        Study("s", space, max_trials=10**12)
    with pytest.raises(TypeError, match="max_failed"):
        Study("s", space, max_failed=1.5)
    config = '{"name": "s", "objective": {"type": "maximize", "objectiveMetricName": "value"}, "parallelTrialCount": 1000000000, "maxTrialCount": 5}'
    with pytest.raises(ValueError, match="invalid parallel = 1000000000"):
        _native.optimize(config, '[{"name": "x", "distribution": {"type": "uniform", "low": 0, "high": 1}}]', lambda t: 0.0)


# ---------------------------------------------------------------------------------------------
# Item 2 (Python part) and the rollout's counts.


@pytest.fixture(scope="module")
def models():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 4))
    y = (x[:, 0] - x[:, 1] > 0).astype(int)
    a = fit(x[:1000], y[:1000], hidden=(8,), epochs=3, seed=1)
    b = fit(x[:1000], y[:1000], hidden=(8,), epochs=3, seed=2)
    return x, y, a, b


@pytest.mark.parametrize(
    "rps,hours",
    [(1e-20, 12.0), (1e10, 1e-6), (1e10, 12.0), (1e6, 1e-6), (1e5, 1.0), (50.0, 1000.0), (float("nan"), 12.0), (0.0, 12.0), (-5.0, 12.0), (float("inf"), 1.0), (50.0, 1e300), (50.0, float("nan")), (50.0, 0.0), (50.0, -1.0)],
)
def test_a_rollout_rate_or_duration_out_of_range_is_a_value_error_not_a_panic(models, rps, hours):
    x, y, a, b = models
    with pytest.raises(ValueError, match="requests_per_second|max_hours"):
        simulate_rollout(a, b, x, y, requests_per_second=rps, max_hours=hours)
    # The binding itself, without the Python wrapper.
    with pytest.raises(ValueError, match="requests_per_second|max_hours"):
        _native.simulate_rollout(a._m, b._m, x, y.astype(float), None, rps, hours, 500, 5000)


def test_a_rollout_counts_are_integers_in_range(models):
    x, y, a, b = models
    with pytest.raises(TypeError, match="label_delay: expected an integer, got float 2.7"):
        simulate_rollout(a, b, x, y, label_delay=2.7)
    with pytest.raises(ValueError, match="users: expected an integer from 1"):
        simulate_rollout(a, b, x, y, users=0)
    with pytest.raises(ValueError, match="invalid label_delay = 1000000000000"):
        _native.simulate_rollout(a._m, b._m, x, y.astype(float), None, 50.0, 1.0, 10**12, 10)
    # In range, it runs: a short replay at the edge rates.
    for rps, hours in [(200.0, 0.05), (0.5, 0.01)]:
        report = simulate_rollout(a, b, x, y, requests_per_second=rps, max_hours=hours)
        assert report["requests"] >= 1
    # Each row once by default; sent again only when asked, and then the report says so.
    once = simulate_rollout(a, b, x, y, requests_per_second=200.0, max_hours=0.05)
    assert once["rows_ran_out"] and once["requests"] == len(x) and once["row_passes"] == 1.0
    again = simulate_rollout(a, b, x, y, requests_per_second=200.0, max_hours=0.05, reuse_rows=True)
    assert not again["rows_ran_out"] and again["row_passes"] > 1


# ---------------------------------------------------------------------------------------------
# Item 12: columns by name.


@pytest.fixture(scope="module")
def named_model():
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(1500, 4)), columns=["amount", "age", "hour", "score"])
    y = (frame["amount"] - 2 * frame["hour"] + 0.3 * rng.normal(size=1500) > 0).astype(int)
    return fit(frame, y, hidden=(8,), epochs=4, seed=1), frame


def test_a_dataframe_is_scored_by_column_name_in_any_order(named_model):
    model, frame = named_model
    assert model.feature_names == ["amount", "age", "hour", "score"]
    want = model.predict_proba(frame.to_numpy())
    reordered = frame[["score", "hour", "amount", "age"]]
    np.testing.assert_array_equal(model.predict_proba(reordered), want)
    np.testing.assert_array_equal(model.predict(reordered), model.predict(frame))
    # Positionally the reordered values score differently: the match by name is what helps.
    assert not np.allclose(model.predict_proba(reordered.to_numpy()), want)


def test_a_dict_is_scored_by_key_in_any_order(named_model):
    model, frame = named_model
    want = model.predict_proba(frame.to_numpy())
    columns = {c: frame[c].to_numpy() for c in ["hour", "score", "age", "amount"]}
    np.testing.assert_array_equal(model.predict_proba(columns), want)


def test_a_missing_or_unknown_column_name_is_a_value_error_naming_it(named_model):
    model, frame = named_model
    with pytest.raises(ValueError, match="x: missing column 'age'"):
        model.predict_proba(frame.drop(columns=["age"]))
    with pytest.raises(ValueError, match="x: unknown column 'extra'"):
        model.predict_proba(frame.assign(extra=1.0))
    with pytest.raises(ValueError, match="x: missing column 'hour'"):
        model.predict_proba(frame.rename(columns={"hour": "hours"}))
    with pytest.raises(ValueError, match="x: unknown column 'zzz'"):
        model.predict_proba({**{c: frame[c].to_numpy() for c in frame.columns}, "zzz": np.zeros(len(frame))})
    with pytest.raises(ValueError, match="x: missing column 'amount'"):
        model.predict_proba({c: frame[c].to_numpy() for c in ["age", "hour", "score"]})


# ---------------------------------------------------------------------------------------------
# Item 13: the statistics as scipy.


def test_mannwhitneyu_exact_at_200_by_300_matches_scipy_to_1e_9():
    rng = np.random.default_rng(22)
    x, y = rng.normal(size=200), rng.normal(size=300)
    for alternative in ("two-sided", "less", "greater"):
        ours = drift.mannwhitneyu(x, y, alternative=alternative, method="exact")
        theirs = ss.mannwhitneyu(x, y, alternative=alternative, method="exact")
        assert ours.statistic == theirs.statistic
        np.testing.assert_allclose(ours.pvalue, theirs.pvalue, rtol=1e-9, atol=0)
    with pytest.raises(ValueError, match="mannwhitneyu method exact for sample sizes = \\(3000, 4000\\)"):
        drift.mannwhitneyu(rng.normal(size=3000), rng.normal(size=4000), method="exact")


@pytest.mark.parametrize("x,y", [([1.0], [2.0]), ([1.0], [2.0, 3.0]), ([1.0, 2.0], [2.0]), ([], [1.0, 2.0])])
def test_cramervonmises_on_a_single_value_is_nan_with_scipys_warning(x, y):
    with pytest.warns(RuntimeWarning) as theirs_w:
        theirs = ss.cramervonmises_2samp(x, y)
    with pytest.warns(drift.SmallSampleWarning) as ours_w:
        ours = drift.cramervonmises_2samp(x, y)
    assert np.isnan(ours.statistic) and np.isnan(ours.pvalue)
    assert np.isnan(theirs.statistic) and np.isnan(theirs.pvalue)
    assert type(ours).__name__ == type(theirs).__name__ == "CramerVonMisesResult"
    assert str(ours_w[0].message) == str(theirs_w[0].message)
    # After omitting NaNs, the same.
    with pytest.warns(drift.SmallSampleWarning, match="After omitting NaNs"):
        r = drift.cramervonmises_2samp([1.0, np.nan], [2.0, 3.0], nan_policy="omit")
    assert np.isnan(r.statistic)


BIG = 2**53
CASES_BEYOND_2_53 = [
    ([0, 1, 2], [1, 2, 3]),
    ([1, 3, 5], [0, 2, 4]),
    ([1, 3, 5, 7], [0, 2, 4, 6, 8]),
    (list(range(0, 40, 3)), list(range(1, 60, 2))),
    ([0, 0, 1, 5, 9], [1, 1, 2, 3, 4, 9]),
]


@pytest.mark.parametrize("x,y", CASES_BEYOND_2_53)
def test_int64_beyond_2_53_is_compared_exactly(x, y):
    # float64 merges neighbours above 2**53. The exact answer is scipy's on the same samples
    # less 2**53 (every statistic here depends on differences or order only); scipy's
    # ks_2samp is exact on int64 itself, its mannwhitneyu, wasserstein and energy distances
    # cast to float64 first.
    small_x, small_y = np.array(x, dtype=np.int64), np.array(y, dtype=np.int64)
    big_x, big_y = small_x + BIG, small_y + BIG
    for alternative in ("two-sided", "less", "greater"):
        ours, theirs = drift.ks_2samp(big_x, big_y, alternative=alternative), ss.ks_2samp(small_x, small_y, alternative=alternative)
        np.testing.assert_allclose([ours.statistic, ours.pvalue], [theirs.statistic, theirs.pvalue], rtol=1e-12)
        on_big = ss.ks_2samp(big_x, big_y, alternative=alternative)
        np.testing.assert_allclose([ours.statistic, ours.pvalue], [on_big.statistic, on_big.pvalue], rtol=1e-12)
        for method in ("auto", "asymptotic", "exact"):
            ours = drift.mannwhitneyu(big_x, big_y, alternative=alternative, method=method)
            theirs = ss.mannwhitneyu(small_x, small_y, alternative=alternative, method=method)
            np.testing.assert_allclose([ours.statistic, ours.pvalue], [theirs.statistic, theirs.pvalue], rtol=1e-9)
    ours, theirs = drift.cramervonmises_2samp(big_x, big_y), ss.cramervonmises_2samp(small_x, small_y)
    np.testing.assert_allclose([ours.statistic, ours.pvalue], [theirs.statistic, theirs.pvalue], rtol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ss.anderson_ksamp([small_x, small_y], variant="midrank")
    ours = drift.anderson_ksamp([big_x, big_y])
    np.testing.assert_allclose([ours.statistic, ours.pvalue], [theirs.statistic, np.clip(theirs.pvalue, 0.001, 0.25)], rtol=1e-9)
    for ours, theirs in [(drift.wasserstein_distance, ss.wasserstein_distance), (drift.energy_distance, ss.energy_distance)]:
        np.testing.assert_allclose(ours(big_x, big_y), theirs(small_x, small_y), rtol=1e-12)
    yl = np.array([0, 1] * 5)
    scores = np.array([0, 1, 1, 2, 3, 3, 4, 6, 5, 7], dtype=np.int64)
    for ours, theirs in [(metrics.roc_auc_score, sm.roc_auc_score), (metrics.average_precision_score, sm.average_precision_score)]:
        np.testing.assert_allclose(ours(yl, scores + BIG), theirs(yl, scores), rtol=1e-12)


def test_ks_2samp_on_int64_beyond_2_53_is_not_zero():
    # The case: cast to float64 the two samples are equal and the statistic was 0.
    x = np.array([BIG, BIG + 1, BIG + 2], dtype=np.int64)
    y = np.array([BIG + 1, BIG + 2, BIG + 3], dtype=np.int64)
    assert drift.ks_2samp(x, y).statistic == pytest.approx(1 / 3, rel=1e-12) == ss.ks_2samp(x, y).statistic
    # uint64 above 2**63, and uint64 against int64, exactly too.
    u = np.array([2**64 - 1, 2**64 - 2, 2**64 - 3], dtype=np.uint64)
    v = np.array([2**64 - 2, 2**64 - 3, 2**64 - 4], dtype=np.uint64)
    assert drift.ks_2samp(u, v).statistic == pytest.approx(1 / 3, rel=1e-12)
    assert drift.ks_2samp(np.array([BIG + 1, BIG + 3], dtype=np.uint64), np.array([BIG, BIG + 2], dtype=np.int64)).statistic == pytest.approx(0.5)
    # Integers float64 holds are read as before (cast, no ranks).
    assert drift.ks_2samp(np.arange(10), np.arange(5, 15)) == ss.ks_2samp(np.arange(10.0), np.arange(5.0, 15.0))[:2]


def test_distances_on_integers_spanning_more_than_2_53_are_refused():
    wide = np.array([-(2**62), 2**62], dtype=np.int64)
    with pytest.raises(ValueError, match="u_values, v_values: integer values .* span more than 2\\*\\*53"):
        drift.wasserstein_distance(wide, wide)
    with pytest.raises(ValueError, match="reference, current: integer values"):
        drift.psi(wide, wide)
    rng = np.random.default_rng(9)
    ref = rng.integers(0, 1000, 5000)
    assert drift.psi(ref + BIG, ref + BIG + 300) == pytest.approx(drift.psi(ref, ref + 300), rel=1e-9)


# ---------------------------------------------------------------------------------------------
# Unaligned buffers: `np.frombuffer` at an odd offset, or a pickle-5 buffer a Dask worker
# receives, is a float array whose data are not aligned for its dtype. Read in place, it is
# undefined behaviour (a debug build of the wheel panicked in ndarray and hung the Dask test):
# the binding copies it first, aligned, and gives the same numbers.


def unaligned(values):
    values = np.asarray(values, dtype=np.float64)
    raw = bytearray(values.nbytes + 1)
    a = np.frombuffer(raw, dtype=np.float64, offset=1, count=values.size).reshape(values.shape)
    a[...] = values
    assert not a.flags.aligned
    return a


def test_unaligned_arrays_are_copied_aligned_and_give_the_same_numbers():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=1_000), rng.normal(0.2, size=800)
    ux, uy = unaligned(x), unaligned(y)
    for call in (drift.ks_2samp, drift.cramervonmises_2samp, drift.wasserstein_distance, drift.psi):
        assert call(ux, uy) == call(x, y), call.__name__
        handed = _native.last_input_addresses()
        assert len(handed) == 2 and all(address % 8 == 0 for address in handed), (call.__name__, handed)
        assert handed[0] != ux.ctypes.data and handed[1] != uy.ctypes.data
    table = rng.normal(size=(2_000, 3))
    current = rng.normal(0.1, size=(500, 3))
    names = ["a", "b", "c"]
    aligned_profile = drift.ReferenceProfile.fit(table, columns=names, config={"storage": "exact"})
    unaligned_profile = drift.ReferenceProfile.fit(unaligned(table), columns=names, config={"storage": "exact"})
    assert unaligned_profile.compare(current) == aligned_profile.compare(current)
    sketch = drift.ProfileSketch.from_data(unaligned(table), columns=names)
    assert sketch.to_profile().compare(current)["columns"][0]["column"] == "a"
