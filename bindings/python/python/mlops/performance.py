"""Performance estimated before labels arrive: confidence-based performance estimation
(CBPE) with NannyML's definitions, computed in Rust.

``CBPE().fit(y_pred_proba, y_true, y_pred=None)`` fits on a labeled reference (rows the model
did not train on):
the calibration of the scores (isotonic by default, NannyML's calibrator forced on) and the
sampling-error components; ``estimate(y_pred_proba, y_pred=None)`` gives, for a window of
unlabeled scores, the estimated ROC AUC, accuracy, precision, recall and F1 and the expected
confusion counts, each as ``{"value", "sampling_error", "lower", "upper", "reference"}``
(the band is the value ∓ 3 sampling errors, as NannyML's; ``reference`` is the same estimate
on the reference). A metric with no defined value is ``None`` where NannyML reports 0.
"""

import json

from . import _native
from ._arrays import as_1d

__all__ = ["CBPE", "METRICS"]

METRICS = ("roc_auc", "accuracy", "precision", "recall", "f1",
           "true_positive", "false_positive", "false_negative", "true_negative")


class CBPE:
    """An estimator: ``threshold`` (a row is predicted positive when its score is ``>=`` it,
    unless ``y_pred`` is given) and ``calibration`` (``"isotonic"``, ``"platt"`` or
    ``"none"`` when the scores are calibrated already)."""

    def __init__(self, threshold=0.5, calibration="isotonic"):
        self.threshold = float(threshold)
        self.calibration = calibration
        self._native = None

    def fit(self, y_pred_proba, y_true, y_pred=None):
        """Fits on the labeled reference; returns ``self``."""
        p = None if y_pred is None else as_1d("y_pred", y_pred)
        self._native = _native.Cbpe.fit(as_1d("y_pred_proba", y_pred_proba), as_1d("y_true", y_true),
                                        p, self.threshold, self.calibration)
        return self

    def estimate(self, y_pred_proba, y_pred=None):
        """The window's estimate: ``{"rows": n, metric: {"value", "sampling_error", "lower",
        "upper", "reference"}, ...}`` for each of :data:`METRICS`."""
        if self._native is None:
            raise ValueError("CBPE is not fitted: call fit(y_pred_proba, y_true) first")
        p = None if y_pred is None else as_1d("y_pred", y_pred)
        return json.loads(self._native.estimate(as_1d("y_pred_proba", y_pred_proba), p))

    def to_json(self):
        """The fitted estimator as JSON (what a model stores as ``cbpe``)."""
        if self._native is None:
            raise ValueError("CBPE is not fitted")
        return self._native.to_json()

    @staticmethod
    def from_json(text):
        """A fitted estimator from JSON, checked (``ValueError`` naming the bad field)."""
        native = _native.Cbpe.from_json(text)
        data = json.loads(text)
        out = CBPE(threshold=data["threshold"], calibration="stored")
        out._native = native
        return out
