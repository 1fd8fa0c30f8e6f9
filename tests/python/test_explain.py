"""mlops.explain against shap 0.51 through the wheel: an mlops model trained on the Nebraska
weather table (8 features), shap's ExactExplainer with an independent masker over the same
background and rows, to 1e-6; permutation sampling within 3 standard errors of the exact
values; additivity on both outputs; bad input named."""
import pathlib

import numpy as np
import pytest
import shap

import mlops
from mlops import train

DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "nebraska_weather.csv"


@pytest.fixture(scope="module")
def weather():
    if not DATA.exists():
        pytest.skip(f"{DATA} is missing (the shared datasets)")
    table = np.genfromtxt(DATA, delimiter=",", names=True)
    names = [n for n in table.dtype.names if n not in ("day", "rain")]
    x = np.column_stack([table[n] for n in names]).astype(np.float32)
    y = table["rain"].astype(float)
    model = train.fit(x[:4000], y[:4000], columns=names, hidden=[8], epochs=3, batch_size=256, seed=1)
    return model, x, names


def test_exact_values_equal_shaps_exact_explainer(weather):
    model, x, names = weather
    background = x[5000:5040]
    rows = x[6000:6005]
    ours = mlops.explain(model, rows, background, method="exact")
    masker = shap.maskers.Independent(background.astype(np.float64), max_samples=len(background))
    theirs = shap.explainers.Exact(lambda z: model.predict_proba(z).astype(np.float64), masker)(rows.astype(np.float64))
    assert ours.values.shape == theirs.values.shape == (5, 8)
    np.testing.assert_allclose(ours.values, theirs.values, atol=1e-6)
    np.testing.assert_allclose(ours.base_values, theirs.base_values, atol=1e-6)
    assert ours.feature_names == names and ours.method == "exact"
    outputs = model.predict_proba(rows)
    np.testing.assert_allclose(ours.base_values + ours.values.sum(axis=1), outputs, atol=1e-9)


def test_sampling_is_within_three_standard_errors_and_logit_is_additive(weather):
    model, x, _ = weather
    background, rows = x[5000:5020], x[7000:7003]
    exact = mlops.explain(model, rows, background, method="exact")
    sampled = mlops.explain(model, rows, background, method="permutation", tolerance=2e-3)
    assert sampled.method == "permutation" and (sampled.std_errors < 2e-3).all()
    assert (np.abs(sampled.values - exact.values) <= 3 * sampled.std_errors + 1e-9).all()
    logit = mlops.explain(model, rows, background, output="logit")
    p = model.predict_proba(rows).astype(np.float64)
    np.testing.assert_allclose(logit.base_values + logit.values.sum(axis=1), np.log(p / (1 - p)), atol=1e-4)


def test_frames_are_matched_by_name(weather):
    pd = pytest.importorskip("pandas")
    model, x, names = weather
    background, rows = x[5000:5010], x[6000:6002]
    as_array = mlops.explain(model, rows, background, method="exact")
    shuffled = list(reversed(names))
    frame = mlops.explain(model, pd.DataFrame(rows, columns=names)[shuffled],
                          pd.DataFrame(background, columns=names)[shuffled], method="exact")
    np.testing.assert_array_equal(frame.values, as_array.values)
    as_float64 = mlops.explain(model, rows.astype(np.float64), background.astype(np.float64), method="exact")
    np.testing.assert_array_equal(as_float64.values, as_array.values)


def test_bad_input_is_named(weather):
    model, x, _ = weather
    with pytest.raises(ValueError, match="method"):
        mlops.explain(model, x[:1], x[:10], method="kernel")
    with pytest.raises(ValueError, match="background"):
        mlops.explain(model, x[:1], x[:10, :5])
    with pytest.raises(ValueError, match=r"row\[2\]"):
        bad = x[:1].copy()
        bad[0, 2] = np.nan
        mlops.explain(model, bad, x[:10])


def test_deep_is_additive_and_close_to_exact(weather):
    model, x, _ = weather
    background, rows = x[5000:5040], x[6000:6005]
    deep = mlops.explain(model, rows, background, method="deep")
    exact = mlops.explain(model, rows, background, method="exact")
    assert deep.method == "deep" and deep.values.shape == (5, 8)
    np.testing.assert_allclose(deep.base_values + deep.values.sum(axis=1), model.predict_proba(rows), atol=1e-6)
    np.testing.assert_allclose(deep.base_values, exact.base_values, atol=1e-6)
    # An approximation: here within a quarter of the values' spread, row by row.
    gap = np.abs(deep.values - exact.values).sum(axis=1)
    assert (gap <= 0.25 * np.abs(exact.values).sum(axis=1) + 1e-6).all(), gap
    logit = mlops.explain(model, rows, background, method="deep", output="logit")
    p = model.predict_proba(rows).astype(np.float64)
    np.testing.assert_allclose(logit.base_values + logit.values.sum(axis=1), np.log(p / (1 - p)), atol=1e-4)
    with pytest.raises(ValueError, match="background row 0 feature"):
        mlops.explain(model, rows, np.full((2, 8), np.nan, np.float32), method="deep")
