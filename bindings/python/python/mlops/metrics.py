"""Binary-classification metrics with scikit-learn's names and arguments.

Computed in Rust (mlops-core's metrics, checked against scikit-learn 1.9 there, to 1e-9) with
the GIL released. Labels are 0 and 1 (the positive class is 1); float32 inputs are read as
float32 without a copy when contiguous. A metric that is undefined (one class for ROC AUC)
raises ``ValueError`` naming why, as scikit-learn does.
"""

from . import _native
from ._arrays import as_1d, exact_ranks

__all__ = [
    "roc_auc_score",
    "average_precision_score",
    "log_loss",
    "brier_score_loss",
    "accuracy_score",
    "precision_score",
    "recall_score",
    "f1_score",
]


def _args(y_true, y_score, sample_weight, score_name):
    y_true = as_1d("y_true", y_true, keep_float32=True)
    y_score = as_1d(score_name, y_score, keep_float32=True)
    if sample_weight is not None:
        sample_weight = as_1d("sample_weight", sample_weight, keep_float32=True)
    return y_true, y_score, sample_weight


def _ordered(y_score):
    """Integer scores beyond 2**53 as their dense ranks: the same order and ties, exactly
    (ROC AUC and average precision depend on nothing else), where a float64 cast would merge
    neighbours."""
    return exact_ranks(("y_score",), (y_score,))[0]


def roc_auc_score(y_true, y_score, *, sample_weight=None):
    """Area under the ROC curve of binary scores, as ``sklearn.metrics.roc_auc_score``.

    Parameters
    ----------
    y_true : array_like of shape (n_samples,)
        True labels, 0 or 1.
    y_score : array_like of shape (n_samples,)
        Scores: probabilities or any decision values (higher means more likely 1).
    sample_weight : array_like of shape (n_samples,), optional

    Returns
    -------
    float
    """
    return _native.roc_auc_score(*_args(y_true, _ordered(y_score), sample_weight, "y_score"))


def average_precision_score(y_true, y_score, *, sample_weight=None):
    """Average precision of binary scores, as ``sklearn.metrics.average_precision_score``
    (the step-wise sum over thresholds, no interpolation)."""
    return _native.average_precision_score(*_args(y_true, _ordered(y_score), sample_weight, "y_score"))


def log_loss(y_true, y_pred, *, sample_weight=None):
    """Log loss (binary cross-entropy) of predicted probabilities of class 1, as
    ``sklearn.metrics.log_loss``; probabilities outside [0, 1] raise ``ValueError``."""
    return _native.log_loss(*_args(y_true, y_pred, sample_weight, "y_pred"))


def brier_score_loss(y_true, y_proba, *, sample_weight=None):
    """Brier score (mean squared error of the probability of class 1), as
    ``sklearn.metrics.brier_score_loss``."""
    return _native.brier_score_loss(*_args(y_true, y_proba, sample_weight, "y_proba"))


def _labels(y_true, y_pred, sample_weight):
    return _native.label_metrics(*_args(y_true, y_pred, sample_weight, "y_pred"))


def accuracy_score(y_true, y_pred, *, sample_weight=None):
    """Share of correct predicted labels (weighted), as ``sklearn.metrics.accuracy_score``
    for binary 0/1 labels."""
    return _labels(y_true, y_pred, sample_weight)[0]


def precision_score(y_true, y_pred, *, sample_weight=None):
    """tp / (tp + fp) of predicted labels, as ``sklearn.metrics.precision_score`` (binary,
    ``pos_label=1``; 0.0 when nothing is predicted positive, scikit-learn's
    ``zero_division`` result, without its warning)."""
    return _labels(y_true, y_pred, sample_weight)[1]


def recall_score(y_true, y_pred, *, sample_weight=None):
    """tp / (tp + fn) of predicted labels, as ``sklearn.metrics.recall_score`` (binary,
    ``pos_label=1``; 0.0 without positives)."""
    return _labels(y_true, y_pred, sample_weight)[2]


def f1_score(y_true, y_pred, *, sample_weight=None):
    """F1 of predicted labels, as ``sklearn.metrics.f1_score`` (binary, ``pos_label=1``;
    0.0 when undefined)."""
    return _labels(y_true, y_pred, sample_weight)[3]
