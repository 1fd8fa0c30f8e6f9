"""Serving from Python: the compiled engine is :class:`mlops.train.Model`
(``predict_proba`` on numpy); :func:`simulate_rollout` tries a promotion policy on labeled
data before it meets traffic; :func:`operating_characteristics` measures how often a policy
promotes and rolls back candidates whose truth is known."""

import json

from . import _native
from ._arrays import as_1d, as_2d, as_count, by_name

__all__ = ["operating_characteristics", "simulate_rollout"]


def simulate_rollout(stable, candidate, x, y, *, policy=None, requests_per_second=50.0, max_hours=12.0, label_delay=500, users=5000, reuse_rows=False):
    """Replays ``x``, ``y`` (each row once, one request each, sticky by one of ``users`` keys)
    through the router serving ``stable`` while the rollout controller moves ``candidate``
    through ``policy`` (a ``PromotionConfig`` as a dict: steps, bake time, checks...; default
    the seed's 10/25/50/75/100 with error rate, p99 latency and ROC AUC checks), on simulated
    time, labels arriving ``label_delay`` requests late. Returns a dict: ``requests``,
    ``failed``, ``simulated_seconds``, ``rows_ran_out`` (the replay stopped because every row
    had been sent: a row sent twice would be counted as new evidence), ``row_passes`` and
    ``rollout`` (``phase``: ``promoted`` or ``rolled_back`` or where it stopped, and every
    decision with its checks). ``reuse_rows=True`` sends the rows again once they run out, for
    exercising the mechanics only: the checks then count each row more than once.

    ``x``'s columns are matched to ``stable``'s features by name when it names them (a
    DataFrame, a dict). ``requests_per_second`` is from 1/86,400 (one a day) to 1e5,
    ``max_hours`` above 0 and at most 87,600 (ten years), with at most 1e8 simulated requests
    (the rate times the longer of ``max_hours`` and the controller's 30-second tick);
    ``label_delay`` is an integer from 0 to 10,000,000 and ``users`` from 1 to 2**32: anything
    else is a ``ValueError`` (``TypeError`` for a non-integer count), never a panic or a
    simulation that cannot advance."""
    label_delay = as_count("label_delay", label_delay, 0, 10_000_000)
    users = as_count("users", users, 1, 1 << 32)
    a, _ = as_2d("x", by_name("x", x, stable.feature_names))
    labels = as_1d("y", y)
    if len(labels) != a.shape[0]:
        raise ValueError(f"y: expected {a.shape[0]} labels (one per row of x), got {len(labels)}")
    return json.loads(
        _native.simulate_rollout(
            stable._m,
            candidate._m,
            a,
            labels,
            None if policy is None else json.dumps(policy),
            float(requests_per_second),
            float(max_hours),
            label_delay,
            users,
            bool(reuse_rows),
        )
    )


def operating_characteristics(*, scenario=None, policy=None, stats=None, runs=1000, seed=1):
    """Runs ``runs`` simulated rollouts of ``scenario`` under ``policy`` and returns how often
    the candidate was promoted and rolled back (``promoted_share`` and ``rolled_back_share``,
    each with a 95% Wilson interval), the median simulated seconds to a decision and why runs
    ended. Every rollout is decided by the library's rollout state machine on statistics drawn
    from a model of the traffic (mlops-serve's ``rollout_sim``).

    ``scenario`` is a dict of ``Scenario`` fields (``requests_per_second``, ``positive_rate``,
    ``label_delay_seconds``, ``stable_auc``, ``auc_delta``, ``stable_error_rate``,
    ``error_rate_delta``, ``latency_factor``, ``max_seconds``...; default an identical candidate
    at 547 requests/s with labels an hour late); ``policy`` a ``PromotionConfig`` dict (the
    always-valid analysis by default; ``{"sequential": False}`` for the per-window one); ``stats`` the router's
    ``StatsConfig``. ``runs`` is from 1 to 1,000,000 and ``seed`` any 64-bit integer: the same
    report for a seed. A field out of range or unknown is a ``ValueError`` naming it."""
    runs = as_count("runs", runs, 1, 1_000_000)
    seed = as_count("seed", seed, 0, (1 << 64) - 1)
    as_json = lambda v: None if v is None else json.dumps(v)  # noqa: E731
    return json.loads(
        _native.operating_characteristics(as_json(scenario), as_json(policy), as_json(stats), runs, seed)
    )
