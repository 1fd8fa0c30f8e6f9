"""Probability calibration with scikit-learn's definitions, computed in Rust.

``fit(scores, labels, method="isotonic")`` is scikit-learn's
``IsotonicRegression(out_of_bounds="clip")`` (``method="platt"``: the sigmoid of
``CalibratedClassifierCV(method="sigmoid")``, fitted to its exact optimum); the returned map's
``predict`` calibrates new scores and ``to_json`` is what a model stores. ``calibration_curve``
is ``sklearn.calibration.calibration_curve``; ``expected_calibration_error`` the row-weighted
mean gap over its bins.
"""

import numpy as np

from . import _native
from ._arrays import as_1d, as_count

__all__ = ["fit", "Calibration", "calibration_curve", "expected_calibration_error"]

class Calibration:
    """A fitted calibration map: ``predict(scores)`` gives probabilities (NaN stays NaN)."""

    def __init__(self, native):
        self._native = native

    def predict(self, scores):
        """The calibrated probabilities of ``scores`` (any 1-d array-like)."""
        return self._native.predict(as_1d("scores", scores))

    def to_json(self):
        """The map as JSON, the form a model stores."""
        return self._native.to_json()

    @staticmethod
    def from_json(text):
        """A map from JSON, checked (``ValueError`` naming the bad field)."""
        return Calibration(_native.Calibration.from_json(text))


def fit(scores, labels, method="isotonic", sample_weight=None):
    """A calibration map fitted on held-out ``scores`` and 0/1 ``labels``: ``"isotonic"`` or
    ``"platt"`` (scikit-learn's ``"sigmoid"``)."""
    w = None if sample_weight is None else as_1d("sample_weight", sample_weight)
    return Calibration(_native.Calibration.fit(method, as_1d("scores", scores), as_1d("labels", labels), w))


def calibration_curve(y_true, y_prob, *, n_bins=5, strategy="uniform"):
    """``(prob_true, prob_pred)`` for each non-empty bin, as scikit-learn's."""
    t, p, _ = _native.calibration_curve(as_1d("y_true", y_true), as_1d("y_prob", y_prob),
                                        as_count("n_bins", n_bins, 1, 1000), strategy)
    return np.asarray(t), np.asarray(p)


def expected_calibration_error(y_true, y_prob, *, n_bins=10, strategy="uniform"):
    """The row-weighted mean of ``|share of positives − mean probability|`` over the bins."""
    t, p, counts = _native.calibration_curve(as_1d("y_true", y_true), as_1d("y_prob", y_prob),
                                             as_count("n_bins", n_bins, 1, 1000), strategy)
    counts = np.asarray(counts, dtype=float)
    return float(np.sum(counts * np.abs(np.asarray(t) - np.asarray(p))) / counts.sum())
