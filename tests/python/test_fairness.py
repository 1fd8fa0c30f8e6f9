"""mlops.fairness is fairlearn with one import changed: the same names and signatures give the
same numbers (to 1e-12) on seeded data with weights, several groups and intersections; where
fairlearn silently reports 0 for an undefined rate, mlops names the group unless asked for
fairlearn's behaviour."""
import math

import numpy as np
import pandas as pd
import pytest

import fairlearn.metrics as flm
import sklearn.metrics as skm

from mlops import fairness as mf

TOL = 1e-12


def data(seed=0, n=2000, weighted=True):
    rng = np.random.default_rng(seed)
    sex = rng.choice(["F", "M"], size=n)
    band = rng.choice(["18-25", "26-40", "41+"], size=n, p=[0.2, 0.5, 0.3])
    y = (rng.random(n) < np.where(sex == "F", 0.35, 0.25)).astype(int)
    score = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    pred = (score >= 0.5).astype(int)
    w = rng.uniform(0.5, 2.0, n) if weighted else None
    return y, pred, score, pd.DataFrame({"sex": sex, "band": band}), w


@pytest.mark.parametrize("name", [
    "demographic_parity_difference", "demographic_parity_ratio",
    "equal_opportunity_difference", "equal_opportunity_ratio",
])
@pytest.mark.parametrize("method", ["between_groups", "to_overall"])
@pytest.mark.parametrize("columns", [["sex"], ["sex", "band"]])
def test_fairlearn_measures_match(name, method, columns):
    y, p, _, sf, w = data()
    ours = getattr(mf, name)(y, p, sensitive_features=sf[columns], method=method, sample_weight=w)
    theirs = getattr(flm, name)(y, p, sensitive_features=sf[columns], method=method, sample_weight=w)
    assert math.isclose(ours, theirs, rel_tol=TOL, abs_tol=TOL), (ours, theirs)


@pytest.mark.parametrize("name", ["equalized_odds_difference", "equalized_odds_ratio"])
@pytest.mark.parametrize("agg", ["worst_case", "mean"])
def test_equalized_odds_matches_with_both_aggregates(name, agg):
    y, p, _, sf, w = data(seed=1)
    for method in ["between_groups", "to_overall"]:
        ours = getattr(mf, name)(y, p, sensitive_features=sf, method=method, sample_weight=w, agg=agg)
        theirs = getattr(flm, name)(y, p, sensitive_features=sf, method=method, sample_weight=w, agg=agg)
        assert math.isclose(ours, theirs, rel_tol=TOL, abs_tol=TOL), (method, ours, theirs)


def test_metric_frame_matches_by_group_overall_and_spreads():
    y, p, _, sf, w = data(seed=2)
    metrics = {"sel": flm.selection_rate, "tpr": flm.true_positive_rate, "fpr": flm.false_positive_rate,
               "acc": skm.accuracy_score, "n": flm.count}
    params = {k: {"sample_weight": w} for k in metrics if k != "n"}
    ours = mf.MetricFrame(metrics=metrics, y_true=y, y_pred=p, sensitive_features=sf, sample_params=params)
    theirs = flm.MetricFrame(metrics=metrics, y_true=y, y_pred=p, sensitive_features=sf, sample_params=params)
    # fairlearn's count ignores weights; so does ours (rows).
    pd.testing.assert_frame_equal(ours.by_group, theirs.by_group, check_dtype=False, rtol=TOL, atol=TOL)
    pd.testing.assert_series_equal(ours.overall, theirs.overall, check_dtype=False, rtol=TOL, atol=TOL, check_names=False)
    for method in ["between_groups", "to_overall"]:
        pd.testing.assert_series_equal(ours.difference(method=method), theirs.difference(method=method), check_dtype=False, rtol=TOL, atol=TOL)
        pd.testing.assert_series_equal(ours.ratio(method=method), theirs.ratio(method=method), check_dtype=False, rtol=TOL, atol=TOL)
    pd.testing.assert_series_equal(ours.group_min(), theirs.group_min(), check_dtype=False, rtol=TOL, atol=TOL)
    pd.testing.assert_series_equal(ours.group_max(), theirs.group_max(), check_dtype=False, rtol=TOL, atol=TOL)


def test_metric_frame_single_metric_and_roc_auc_on_scores():
    y, _, s, sf, _ = data(seed=3, weighted=False)
    ours = mf.MetricFrame(metrics=skm.roc_auc_score, y_true=y, y_pred=s, sensitive_features=sf["band"])
    theirs = flm.MetricFrame(metrics=skm.roc_auc_score, y_true=y, y_pred=s, sensitive_features=sf["band"])
    pd.testing.assert_series_equal(ours.by_group, theirs.by_group, rtol=TOL, atol=TOL)
    assert math.isclose(ours.overall, theirs.overall, rel_tol=TOL)
    assert math.isclose(ours.difference(), theirs.difference(), rel_tol=TOL)
    with pytest.raises(ValueError, match="two MetricFrames"):
        mf.MetricFrame(metrics={"auc": skm.roc_auc_score, "sel": flm.selection_rate}, y_true=y, y_pred=s, sensitive_features=sf["band"])
    with pytest.raises(TypeError, match="computed metrics"):
        mf.MetricFrame(metrics=skm.log_loss, y_true=y, y_pred=s, sensitive_features=sf["band"])


def test_plain_rates_match():
    y, p, _, _, w = data(seed=4)
    assert math.isclose(mf.selection_rate(y, p, sample_weight=w), flm.selection_rate(y, p, sample_weight=w), rel_tol=TOL)
    assert math.isclose(mf.true_positive_rate(y, p, w), flm.true_positive_rate(y, p, w), rel_tol=TOL)
    assert math.isclose(mf.false_positive_rate(y, p, w), flm.false_positive_rate(y, p, w), rel_tol=TOL)
    with pytest.raises(ValueError, match="no positive labels"):
        mf.true_positive_rate(np.zeros(4), np.ones(4))
    assert mf.true_positive_rate(np.zeros(4), np.ones(4), zero_when_undefined=True) == 0.0


def test_an_undefined_rate_names_the_group_unless_fairlearn_compatibility_is_asked():
    y = np.array([1, 0, 1, 0, 0, 0])
    p = np.array([1, 0, 0, 0, 1, 0])
    g = np.array(["a", "a", "a", "b", "b", "b"])
    with pytest.raises(ValueError, match="group b.*no positive labels"):
        mf.equal_opportunity_difference(y, p, sensitive_features=g)
    theirs = flm.equal_opportunity_difference(y, p, sensitive_features=g)
    assert mf.equal_opportunity_difference(y, p, sensitive_features=g, zero_when_undefined=True) == theirs == 0.5
    frame = mf.MetricFrame(metrics=flm.true_positive_rate, y_true=y, y_pred=p, sensitive_features=g)
    assert math.isnan(frame.by_group["b"]) and frame.by_group["a"] == 0.5
    assert frame.undefined == {("b", "true_positive_rate"): "no positive labels"}
    with pytest.raises(ValueError, match="group b"):
        frame.difference()


def test_aif360_measures_against_a_reference_group():
    y, p, _, sf, w = data(seed=5)
    sel = flm.MetricFrame(metrics=flm.selection_rate, y_true=y, y_pred=p, sensitive_features=sf[["sex", "band"]],
                          sample_params={"sample_weight": w}).by_group
    ours = mf.MetricFrame(metrics=flm.selection_rate, y_true=y, y_pred=p, sensitive_features=sf[["sex", "band"]],
                          sample_params={"sample_weight": w}).by_group
    pd.testing.assert_series_equal(ours, sel, rtol=TOL, atol=TOL)
    ref = ("M", "26-40")
    value, per_group = mf.statistical_parity_difference(y, p, sensitive_features=sf[["sex", "band"]], reference=ref,
                                                         sample_weight=w, per_group=True)
    assert len(per_group) == len(sel) - 1
    for key, rate in sel.items():
        if key == ref:
            continue
        assert math.isclose(per_group[f"sex={key[0]}, band={key[1]}"], rate - sel[ref], rel_tol=TOL, abs_tol=TOL)
    assert abs(value) == max(abs(v) for v in per_group.values())
    di = mf.disparate_impact(y, p, sensitive_features=sf["sex"], reference="M", sample_weight=w)
    rates = flm.MetricFrame(metrics=flm.selection_rate, y_true=y, y_pred=p, sensitive_features=sf["sex"],
                            sample_params={"sample_weight": w}).by_group
    assert math.isclose(di, rates["F"] / rates["M"], rel_tol=TOL)
    with pytest.raises(ValueError, match=r"\[X\]"):
        mf.disparate_impact(y, p, sensitive_features=sf["sex"], reference="X")


def test_assess_gives_status_interval_and_worst_pair():
    y, p, _, sf, w = data(seed=6, n=4000)
    a = mf.assess(y, p, sensitive_features=sf["sex"], measure="demographic_parity_difference", sample_weight=w, n_boot=300)
    assert a["status"] == "measured"
    ci = a["interval"]
    assert ci["lower"] <= a["value"]["value"] <= ci["upper"]
    assert {a["value"]["worst"]["first"], a["value"]["worst"]["second"]} == {"F", "M"}
    small = mf.assess(y, p, sensitive_features=sf[["sex", "band"]], measure="equal_opportunity_difference", min_group_size=200, n_boot=None)
    assert small["status"] == "inconclusive" and small["interval"] is None
    assert all(g["metric"] == "true_positive_rate" and g["rows"] < 200 for g in small["small_groups"])
    with pytest.raises(ValueError, match="n_boot"):
        mf.assess(y, p, sensitive_features=sf["sex"], measure="demographic_parity_difference", n_boot=1)


def test_bad_input_is_named():
    y, p, _, sf, _ = data(seed=7, n=50)
    with pytest.raises(ValueError, match="y_pred"):
        mf.demographic_parity_difference(y, p[:10], sensitive_features=sf["sex"])
    with pytest.raises(ValueError, match=r"y_pred\[0\]"):
        mf.demographic_parity_difference(y, np.full(50, 0.7), sensitive_features=sf["sex"])
    with pytest.raises(ValueError, match="sensitive_features"):
        mf.demographic_parity_difference(y, p, sensitive_features=sf["sex"][:10])
    missing = sf["sex"].to_numpy().astype(object)
    missing[3] = None
    with pytest.raises(ValueError, match=r"\[3\] = None"):
        mf.demographic_parity_difference(y, p, sensitive_features=missing)
    with pytest.raises(ValueError, match=r"\[2\] = nan"):
        mf.demographic_parity_difference(y, p, sensitive_features=np.r_[0.0, 1.0, np.nan, np.zeros(47)])
    with pytest.raises(ValueError, match="method"):
        mf.demographic_parity_difference(y, p, sensitive_features=sf["sex"], method="pairwise")
    with pytest.raises(ValueError, match="agg"):
        mf.equalized_odds_difference(y, p, sensitive_features=sf["sex"], agg="max")
    with pytest.raises(ValueError, match="at most 10000 groups"):
        mf.demographic_parity_difference(np.zeros(20000), np.zeros(20000), sensitive_features=np.arange(20000))
    with pytest.raises(ValueError, match="at least one row"):
        mf.demographic_parity_difference([], [], sensitive_features=[])
