"""The wheel's training, model, tuning and validation: mlops.train and mlops.validation."""

import doctest
import pickle

import numpy as np
import pytest
import sklearn.metrics as sm

import mlops
from mlops import validation
from mlops.train import Model, Study, fit


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 5))
    y = (x[:, 0] - 0.7 * x[:, 2] + 0.5 * rng.normal(size=4000) > 0).astype(int)
    return x[:3000], y[:3000], x[3000:], y[3000:]


@pytest.fixture(scope="module")
def model(data):
    x, y, xv, yv = data
    return fit(x, y, hidden=(32, 16), epochs=25, seed=3, validation=(xv, yv))


def test_fit_learns_and_reports_each_epoch(data, model):
    x, y, xv, yv = data
    p = model.predict_proba(xv)
    assert p.dtype == np.float32 and p.shape == (1000,)
    assert sm.roc_auc_score(yv, p) > 0.9
    assert 1 <= len(model.history) <= 25
    assert model.history[-1]["val_roc_auc"] == pytest.approx(max(h["val_roc_auc"] for h in model.history), abs=0.05)
    assert (model.predict(xv) == (p >= model.threshold)).all()
    assert model.feature_names == [f"x{j}" for j in range(5)]


def test_every_layout_and_dtype_scores_the_same(data, model):
    x = data[2]
    want = model.predict_proba(np.ascontiguousarray(x))
    for variant in (np.asfortranarray(x), x.astype(np.float32), np.asfortranarray(x.astype(np.float32))):
        np.testing.assert_allclose(model.predict_proba(variant), want, rtol=1e-6, atol=1e-7)
    wide = np.concatenate([x, x], axis=1)[:, ::2]  # a strided view
    np.testing.assert_allclose(model.predict_proba(wide), model.predict_proba(np.ascontiguousarray(wide)), rtol=0, atol=0)


def test_models_pickle_save_load_and_say_nan(tmp_path, data, model):
    x = data[2]
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal(again.predict_proba(x), model.predict_proba(x))
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / "model.json").exists()
    loaded = Model.load(tmp_path / "m")
    assert np.array_equal(loaded.predict_proba(x), model.predict_proba(x))
    bad = x[:10].copy()
    bad[4, 3] = np.nan
    assert np.isnan(loaded.predict_proba(bad)[4]) and not np.isnan(loaded.predict_proba(bad)[3])
    with pytest.raises(ValueError, match="row 4: no label|row 4 scored NaN"):
        loaded.predict(bad)
    with pytest.raises(ValueError, match="`x3` of row 4 = NaN"):
        Model.load(tmp_path / "m", non_finite="reject").predict_proba(bad)
    with pytest.raises(ValueError, match="non_finite"):
        Model.load(tmp_path / "m", non_finite="zero")


def test_bad_training_input_is_named(data):
    x, y = data[0], data[1]
    with pytest.raises(ValueError, match="y: expected 3000 labels"):
        fit(x, y[:10])
    with pytest.raises(TypeError, match="dtype object"):
        fit(np.array([[None, 1.0]], dtype=object), [1])
    with pytest.raises(ValueError, match="unknown field `epoch`"):
        fit(x, y, epoch=3)
    with pytest.raises(ValueError, match="training label at row 1 = 2: expected 0 or 1"):
        fit(x, y + 1, epochs=1)
    with pytest.raises(ValueError, match="x: expected 5 features|columns|width"):
        fit(x, y, epochs=1, hidden=(4,)).predict_proba(x[:, :3])


def quadratic():
    return Study(
        "quadratic",
        {"x": {"type": "uniform", "low": -3, "high": 3}, "n": {"type": "int", "low": 1, "high": 8}},
        max_trials=30,
        parallel=2,
        seed=5,
    )


def test_a_study_runs_parallel_trials_keeps_failures_and_finds_the_optimum():
    def objective(trial):
        if trial.number in (3, 7):
            raise RuntimeError(f"trial {trial.number} broke")
        return -((trial.params["x"] - 1.0) ** 2) - (trial.params["n"] - 4) ** 2 * 0.01

    study = quadratic().optimize(objective)
    states = [t["state"] for t in study.trials]
    assert states.count("failed") == 2 and states.count("complete") == 30
    failed = [t for t in study.trials if t["state"] == "failed"]
    assert all("RuntimeError: trial" in t["error"] for t in failed)
    assert abs(study.best_trial["params"]["x"] - 1.0) < 0.4
    # Deterministic for a seed, whatever the finishing order of parallel trials.
    again = quadratic().optimize(objective)
    assert [t["params"] for t in again.trials] == [t["params"] for t in study.trials]


def test_a_study_stops_after_too_many_failures_and_refuses_bad_specs():
    def always(trial):
        raise ValueError("no")

    study = Study("broken", {"x": {"type": "uniform", "low": 0, "high": 1}}, max_trials=10, max_failed=2).optimize(always)
    assert study.stop_reason == "too_many_failures" and study.best_trial is None
    with pytest.raises(ValueError, match="space"):
        Study("s", {"x": {"type": "gaussian"}}).optimize(always)
    with pytest.raises(ValueError, match="direction"):
        Study("s", {}, direction="up")


def test_validation_infers_a_schema_and_names_every_finding(data):
    x, y = data[0], data[1]
    schema = validation.infer_schema(x, y)
    assert [c["name"] for c in schema["columns"]] == [f"x{j}" for j in range(5)] + ["label"]
    bad = x[:200].copy()
    bad[3, 1] = np.nan
    bad[:, 4] = 7.0
    report = validation.validate(bad, y[:200], schema=schema, config={"min_rows": 100})
    checks = {f["check"] for f in report["findings"]}
    assert {"missing_values", "constant_column"} <= checks, checks
    assert report["passed"] is False
    assert validation.validate(x, y, schema=schema, config={"min_rows": 100})["passed"] is True


def test_the_docstring_examples_run():
    for module in (mlops.drift, mlops.train):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module
