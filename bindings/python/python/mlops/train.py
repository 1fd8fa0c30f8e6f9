"""Training the MLP on numpy arrays, the compiled model, and hyperparameter search with a
Python objective.

>>> import numpy as np
>>> from mlops.train import fit
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(2000, 4)); y = (x[:, 0] + x[:, 1] > 0).astype(int)
>>> model = fit(x, y, hidden=(16,), epochs=20, seed=1)
>>> float((model.predict(x) == y).mean()) > 0.9
True
"""

import json

import numpy as np

from . import _native
from ._arrays import as_1d, as_2d, as_count, as_table, by_name

__all__ = ["Model", "fit", "Study"]


def _features(x, columns):
    return as_2d("x", x, columns)


class Model:
    """A model: its artifact (spec and body, mlops' model format) and the inference engine
    compiled from it. Trained here (:func:`fit`, an MLP) or read from another tool's model
    file (:meth:`from_file`: XGBoost's JSON, LightGBM's text). Pickles; ``save`` / ``load`` a
    folder the registry and the Rust crates read."""

    def __init__(self, native, history=None):
        self._m = native
        self.history = history or []

    def predict_proba(self, x):
        """Probabilities of class 1, one per row of ``x`` (rows x features, any layout: a
        Fortran-ordered or strided array is copied, a C-ordered float32 one too, into the
        engine's layout). A row with a missing (NaN) feature: an MLP scores it NaN unless the
        model was loaded with ``non_finite="reject"`` (``ValueError`` naming row and feature)
        or ``"impute"``; a tree model (XGBoost, LightGBM) routes it by its default directions
        and compares ±inf as numbers, as its library does, unless loaded with ``"reject"``.

        A pandas DataFrame's or a dict's columns are matched to :attr:`feature_names` by name
        (reordered as the model's): a missing, unknown or repeated name is a ``ValueError``
        naming it. A plain array's columns are taken by position."""
        a, _ = _features(by_name("x", x, self.feature_names), None)
        return self._m.predict_proba(a)

    @classmethod
    def from_file(cls, path, kind=None, *, features=None, threshold=None, non_finite="nan"):
        """A model file of another tool, read natively: ``kind`` ``"xgboost"`` (its JSON
        format: ``booster.save_model("model.json")``) or ``"lightgbm"`` (its text format:
        ``booster.save_model("model.txt")``), or None to tell from the contents. Input names
        come from the file (or ``features``); the threshold is 0.5 (or ``threshold``). A tree
        model routes missing values (NaN) by its default directions, as its library does
        (``non_finite="nan"``), or refuses them (``"reject"``; ``"impute"`` needs stored
        values, which a tree model has not); categorical features take the category's code. A
        file that does not read as its kind is a ``ValueError`` naming the problem.

        >>> import numpy as np, xgboost as xgb, tempfile, os
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(500, 3)); y = (x[:, 0] > 0).astype(int)
        >>> booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(x, label=y), 5)
        >>> path = os.path.join(tempfile.mkdtemp(), "model.json"); booster.save_model(path)
        >>> m = Model.from_file(path)
        >>> m.kind, m.feature_names
        ('xgboost', ['f0', 'f1', 'f2'])
        >>> bool(np.abs(m.predict_proba(x) - booster.predict(xgb.DMatrix(x))).max() < 1e-6)
        True
        """
        with open(path, "rb") as f:
            data = f.read()
        return cls(_native.Model.from_model_file(data, str(path), kind, None if features is None else list(features), threshold, non_finite))

    @property
    def kind(self):
        """``"mlp"``, ``"xgboost"`` or ``"lightgbm"``."""
        return self._m.kind()

    def predict(self, x):
        """Labels (0/1) at the model's threshold; NaN scores raise ``ValueError``."""
        p = self.predict_proba(x)
        if np.isnan(p).any():
            raise ValueError(f"x: row {int(np.argmax(np.isnan(p)))} scored NaN (a missing feature): no label")
        return (p >= self.threshold).astype(np.int64)

    @property
    def feature_names(self):
        return self._m.feature_names()

    @property
    def threshold(self):
        return self._m.threshold()

    def save(self, directory):
        """Writes ``model.json`` and the body (``model.safetensors``, or the tree model's own
        file) into ``directory``."""
        self._m.save(str(directory))

    @classmethod
    def load(cls, directory, non_finite="nan"):
        """A model saved by :meth:`save` (or by the Rust crates); ``non_finite`` is what a
        missing feature does: ``"nan"`` (an MLP scores NaN, a tree model routes it),
        ``"reject"`` or ``"impute"`` (an MLP with stored values)."""
        return cls(_native.Model.load(str(directory), non_finite))

    def __getstate__(self):
        spec, weights = self._m.to_parts()
        return {"spec": spec, "weights": weights, "history": self.history, "non_finite": self._m.non_finite()}

    def __setstate__(self, state):
        # Pickles from before the policy was kept load with the default.
        self._m = _native.Model.from_parts(state["spec"], state["weights"], state.get("non_finite", "nan"))
        self.history = state["history"]

    def __repr__(self):
        return f"Model(kind={self.kind}, features={len(self.feature_names)}, threshold={self.threshold:.3f})"


#: The integer ``TrainConfig`` fields and their ranges, checked before training.
_TRAIN_COUNTS = {"epochs": (1, 1_000_000), "batch_size": (1, 1 << 24), "threads": (1, 1024), "seed": (0, 2**64 - 1)}


def fit(
    x,
    y,
    *,
    columns=None,
    categorical=(),
    hidden=(128, 64, 32),
    activation="relu",
    dropout=0.3,
    validation=None,
    **train,
):
    """Trains mlops' MLP (standardization, weighted binary cross-entropy, Adam, early stopping
    on validation loss with the best weights restored) on ``x`` (rows x features) and 0/1
    labels ``y``; returns a :class:`Model` whose ``history`` lists each epoch's metrics.

    ``validation`` is ``(x_val, y_val)`` (default: the trainer holds out
    ``validation_fraction`` of ``x``); the other keyword arguments are ``TrainConfig`` fields:
    ``epochs``, ``batch_size``, ``learning_rate``, ``weight_decay``, ``seed``, ``pos_weight``,
    ``validation_fraction``, ``early_stopping``, ... (an unknown one is a ``ValueError``)."""
    for key, (low, high) in _TRAIN_COUNTS.items():
        if key in train:
            train[key] = as_count(key, train[key], low, high)
    a, names, categorical = as_table("x", x, columns, categorical)
    labels = as_1d("y", y)
    if len(labels) != a.shape[0]:
        raise ValueError(f"y: expected {a.shape[0]} labels (one per row of x), got {len(labels)}")
    val = None
    if validation is not None:
        vx, vy = validation
        va, _ = _features(vx, columns)
        val = (va, as_1d("validation y", vy))
    hidden = list(hidden)
    if len(hidden) > 64:
        raise ValueError(f"hidden: expected at most 64 layers, got {len(hidden)}")
    mlp = {"hidden": [as_count(f"hidden[{i}]", h, 1, 1 << 16) for i, h in enumerate(hidden)], "activation": activation, "dropout": float(dropout)}
    native, history = _native.fit(a, labels, names, categorical, json.dumps(mlp), json.dumps(train), val)
    return Model(native, json.loads(history))


class Study:
    """A hyperparameter study (Katib's Experiment, Optuna's study) with a Python objective.

    ``params`` maps each name to its distribution: ``{"type": "uniform", "low": 0, "high": 1}``,
    ``"log_uniform"``, ``"int"`` (``low``, ``high``), ``"categorical"`` (``choices``).
    ``optimize(objective)`` calls ``objective(trial)`` (``trial.number``, ``trial.params``)
    for each trial, ``parallel`` at a time on threads (the GIL is taken only to call the
    objective, so objectives that call mlops overlap); an exception fails its trial and is
    kept in its record; more than ``max_failed`` failures stop the study.

    >>> from mlops.train import Study
    >>> study = Study("quadratic", {"x": {"type": "uniform", "low": -3, "high": 3}}, direction="minimize", max_trials=30, seed=1)
    >>> best = study.optimize(lambda t: (t.params["x"] - 1.0) ** 2).best_trial
    >>> abs(best["params"]["x"] - 1.0) < 0.5
    True
    """

    def __init__(self, name, params, *, direction="maximize", max_trials=20, parallel=1, max_failed=3, seed=0, sampler="tpe", goal=None):
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction: expected 'maximize' or 'minimize', got {direction!r}")
        self.config = {
            "name": name,
            "objective": {"type": direction, "goal": goal, "objectiveMetricName": "value"},
            "parallelTrialCount": as_count("parallel", parallel, 1, 1024),
            "maxTrialCount": as_count("max_trials", max_trials, 1, 1_000_000),
            "maxFailedTrialCount": as_count("max_failed", max_failed, 0, 1_000_000),
            "seed": as_count("seed", seed, 0, 2**64 - 1),
            "sampler": sampler if isinstance(sampler, dict) else {"type": sampler},
        }
        self.space = [{"name": k, "distribution": v} for k, v in params.items()]
        self.direction = direction
        self.trials = []
        self.stop_reason = None

    def optimize(self, objective):
        """Runs the study; returns self (``trials``: every trial's record as a dict;
        ``best_trial``; ``stop_reason``)."""
        why, trials = _native.optimize(json.dumps(self.config), json.dumps(self.space), objective)
        self.stop_reason = json.loads(why)
        self.trials = json.loads(trials)
        return self

    @property
    def best_trial(self):
        """The completed trial with the best value (``None`` when none completed)."""
        done = [t for t in self.trials if t.get("state") == "complete" and t.get("value") is not None]
        if not done:
            return None
        pick = max if self.direction == "maximize" else min
        return pick(done, key=lambda t: t["value"])
