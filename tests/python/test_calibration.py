"""mlops.calibration against scikit-learn on seeded scores: isotonic predictions to 1e-12,
Platt's probabilities to 1e-6 of scikit-learn's sigmoid calibration (its L-BFGS stops near
there; mlops goes to the optimum), the reliability curve to 1e-12, and errors named."""
import numpy as np
import pytest
from sklearn.calibration import _sigmoid_calibration, calibration_curve
from sklearn.isotonic import IsotonicRegression

from mlops import calibration as mc


def scores(seed, n=4000):
    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 6.0, n)
    y = (rng.random(n) < p).astype(float)
    return np.round(np.sqrt(p), 3), y, rng.uniform(0.2, 2.0, n)


@pytest.mark.parametrize("weighted", [False, True])
def test_isotonic_matches_scikit_learn(weighted):
    s, y, w = scores(1)
    w = w if weighted else None
    ours = mc.fit(s, y, "isotonic", sample_weight=w)
    theirs = IsotonicRegression(out_of_bounds="clip").fit(s, y, sample_weight=w)
    probe = np.linspace(-0.5, 1.5, 401)
    np.testing.assert_allclose(ours.predict(probe), theirs.predict(probe), rtol=1e-12, atol=1e-12)
    again = mc.Calibration.from_json(ours.to_json())
    np.testing.assert_array_equal(again.predict(probe), ours.predict(probe))


def test_platt_matches_scikit_learn_to_its_tolerance():
    s, y, w = scores(2)
    a, b = _sigmoid_calibration(s, y, sample_weight=w)
    probe = np.linspace(0, 1, 101)
    np.testing.assert_allclose(mc.fit(s, y, "platt", sample_weight=w).predict(probe),
                               1 / (1 + np.exp(a * probe + b)), rtol=1e-6)


def test_the_curve_and_the_error():
    s, y, _ = scores(3)
    p = mc.fit(s, y).predict(s)
    for strategy, n_bins in [("uniform", 10), ("quantile", 5)]:
        ours = mc.calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
        theirs = calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
        np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
        np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-12)
    # The raw scores (too high) are far worse calibrated than the calibrated ones.
    assert mc.expected_calibration_error(y, p) < mc.expected_calibration_error(y, s) / 3


def test_bad_input_is_named_and_nan_stays_nan():
    with pytest.raises(ValueError, match=r"scores\[1\]"):
        mc.fit([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="both classes"):
        mc.fit([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="method"):
        mc.fit([0.1, 0.2], [0, 1], "beta")
    with pytest.raises(ValueError, match=r"calibration.x\[1\]"):
        mc.Calibration.from_json('{"method": "isotonic", "x": [0.5, 0.1], "y": [0.1, 0.2]}')
    assert np.isnan(mc.fit([0.1, 0.9], [0, 1]).predict([np.nan])[0])
