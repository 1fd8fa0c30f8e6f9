"""Through the wheel: permutation importance beside scikit-learn's own
(sklearn.inspection.permutation_importance on the same model, rows and repeats: the baseline
equal, the means within the shuffles' noise, the ranking of the clear features the same), and
sampled Shapley values on a 30-feature model (the credit-card table) beside shap's
KernelExplainer without regularization: within 3 standard errors of both estimates."""
import pathlib

import numpy as np
import pytest
import shap
from sklearn.inspection import permutation_importance as sk_permutation_importance
from sklearn.metrics import roc_auc_score

import mlops
from mlops import train

DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="module")
def weather():
    path = DATA / "nebraska_weather.csv"
    if not path.exists():
        pytest.skip(f"{path} is missing (the shared datasets)")
    table = np.genfromtxt(path, delimiter=",", names=True)
    names = [n for n in table.dtype.names if n not in ("day", "rain")]
    x = np.column_stack([table[n] for n in names]).astype(np.float32)
    y = table["rain"].astype(float)
    model = train.fit(x[:4000], y[:4000], columns=names, hidden=[8], epochs=3, batch_size=256, seed=1)
    return model, x, y, names


class Wrapped:
    """The mlops model as a fitted scikit-learn classifier."""

    _estimator_type = "classifier"
    classes_ = np.array([0.0, 1.0])

    def __init__(self, model):
        self.model = model

    def fit(self, x, y):
        return self

    def predict_proba(self, x):
        p = self.model.predict_proba(np.asarray(x, dtype=np.float32)).astype(np.float64)
        return np.column_stack([1 - p, p])

    def __sklearn_tags__(self):
        from sklearn.utils import Tags, ClassifierTags, InputTags, TargetTags
        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags(), input_tags=InputTags())


def test_permutation_importance_beside_scikit_learn(weather):
    model, x, y, names = weather
    rows = slice(8000, 10000)
    ours = mlops.permutation_importance(model, x[rows], y[rows], n_repeats=20, random_state=3)
    theirs = sk_permutation_importance(Wrapped(model), x[rows].astype(np.float64), y[rows],
                                       scoring="roc_auc", n_repeats=20, random_state=3)
    assert ours.importances.shape == theirs.importances.shape == (8, 20)
    assert ours.baseline == pytest.approx(roc_auc_score(y[rows], model.predict_proba(x[rows])), abs=1e-12)
    # Other shuffles, the same quantity: each mean within 4 standard errors of the other's.
    se = np.sqrt((ours.importances_std**2 + theirs.importances_std**2) / 20)
    assert (np.abs(ours.importances_mean - theirs.importances_mean) <= 4 * se + 1e-4).all(), (
        ours.importances_mean, theirs.importances_mean)
    clear = np.argsort(-theirs.importances_mean)[:2]
    assert set(ours.top(2)) == {names[j] for j in clear}
    assert ours["importances_mean"] is ours.importances_mean


def test_permutation_importance_bad_input_is_named(weather):
    model, x, y, _ = weather
    with pytest.raises(ValueError, match="n_repeats"):
        mlops.permutation_importance(model, x[:100], y[:100], n_repeats=0)
    with pytest.raises(ValueError, match="y: 99 labels for 100 rows"):
        mlops.permutation_importance(model, x[:100], y[:99])
    with pytest.raises(ValueError, match="max_samples"):
        mlops.permutation_importance(model, x[:100], y[:100], max_samples=1)
    with pytest.raises(ValueError, match="max_samples"):
        mlops.permutation_importance(model, x[:100], y[:100], max_samples=1.5)
    with pytest.raises(ValueError, match="scoring|metric|unknown variant"):
        mlops.permutation_importance(model, x[:100], y[:100], scoring="magic")
    half = mlops.permutation_importance(model, x[:100], y[:100], max_samples=0.5)
    assert half.importances.shape == (8, 5)


@pytest.fixture(scope="module")
def cards():
    path = DATA / "creditcard_fraud_sample.csv"
    if not path.exists():
        pytest.skip(f"{path} is missing (the shared datasets)")
    table = np.genfromtxt(path, delimiter=",", names=True)
    names = [n for n in table.dtype.names if n != "Class"]
    x = np.column_stack([table[n] for n in names]).astype(np.float32)
    x[:, 0] /= 3600.0  # Time in hours
    y = table["Class"].astype(float)
    model = train.fit(x[:20000], y[:20000], columns=names, hidden=[16], epochs=3, batch_size=256, seed=1)
    return model, x, names


def test_sampled_values_agree_with_kernel_shap_on_30_features(cards):
    model, x, names = cards
    assert len(names) == 30
    background, rows = x[30000:30020], x[[25000, 26001]]
    ours = mlops.explain(model, rows, background, method="permutation", tolerance=5e-4)
    assert ours.method == "permutation" and ours.values.shape == (2, 30)
    f = lambda z: model.predict_proba(z.astype(np.float32)).astype(np.float64)
    explainer = shap.KernelExplainer(f, background.astype(np.float64))
    runs = []
    for seed in range(3):
        np.random.seed(seed)
        runs.append(np.asarray(explainer.shap_values(rows.astype(np.float64), nsamples=20000,
                                                      l1_reg=False, silent=True)))
    runs = np.stack(runs)
    kernel, kernel_se = runs.mean(axis=0), runs.std(axis=0, ddof=1) / np.sqrt(len(runs))
    se = np.sqrt(ours.std_errors**2 + kernel_se**2)
    gap = np.abs(ours.values - kernel)
    assert (gap <= 3 * se + 1e-9).all(), (gap / se).max()
    # Both add up to the model's output minus the background's mean.
    np.testing.assert_allclose(ours.values.sum(axis=1), kernel.sum(axis=1), atol=1e-6)
