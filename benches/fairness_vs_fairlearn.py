#!/usr/bin/env python3
"""mlops.fairness beside fairlearn in the same run, with ratios (> 1: mlops faster).

    .venv/bin/python benches/fairness_vs_fairlearn.py [--rows 1000000] [--groups 5] [--repeat 5]

(the test command builds the wheel into .venv and installs fairlearn). Same inputs to both:
--rows labels and decisions, float64 weights, one string sensitive column of --groups groups.
Medians of --repeat runs of: a MetricFrame of selection rate, TPR, FPR and accuracy (by group,
overall, difference); demographic_parity_difference; equalized_odds_difference; and the
bootstrap interval of demographic_parity_difference (fairlearn's MetricFrame(n_boot=...)
against mlops.fairness.assess, --boot resamples each, stratified within groups in both).
Every pair is checked to agree before it is timed (the bootstrap: intervals within 0.005).
"""
import argparse
import pathlib
import sys

import numpy as np
import fairlearn.metrics as flm
import sklearn.metrics as skm

from mlops import fairness as mf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from drift_vs_python import median_time  # noqa: E402  (one timing helper for the benches)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--boot", type=int, default=100)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = args.rows
    g = rng.choice([f"group_{k}" for k in range(args.groups)], size=n)
    y = (rng.random(n) < 0.3).astype(np.int64)
    p = (rng.random(n) < 0.25 + 0.2 * y).astype(np.int64)
    w = rng.uniform(0.5, 2.0, n)
    metrics = {"sel": flm.selection_rate, "tpr": flm.true_positive_rate, "fpr": flm.false_positive_rate, "acc": skm.accuracy_score}
    params = {k: {"sample_weight": w} for k in metrics}

    def frame(lib):
        f = lib.MetricFrame(metrics=metrics, y_true=y, y_pred=p, sensitive_features=g, sample_params=params)
        return f.by_group, f.overall, f.difference()

    ours, theirs = frame(mf), frame(flm)
    assert np.allclose(ours[0].to_numpy(), theirs[0].to_numpy(), rtol=1e-12, atol=1e-12)
    assert np.allclose(ours[2].to_numpy(), theirs[2].to_numpy(), rtol=1e-12, atol=1e-12)
    rows = [(f"MetricFrame (4 metrics) {n:,} rows, {args.groups} groups, weighted", median_time(args.repeat, lambda: frame(flm)), median_time(args.repeat, lambda: frame(mf)))]
    for name in ["demographic_parity_difference", "equalized_odds_difference"]:
        a = getattr(mf, name)(y, p, sensitive_features=g, sample_weight=w)
        b = getattr(flm, name)(y, p, sensitive_features=g, sample_weight=w)
        assert abs(a - b) < 1e-12, (name, a, b)
        rows.append((f"{name} {n:,} rows", median_time(args.repeat, lambda: getattr(flm, name)(y, p, sensitive_features=g, sample_weight=w)),
                     median_time(args.repeat, lambda: getattr(mf, name)(y, p, sensitive_features=g, sample_weight=w))))

    def boot_theirs():
        f = flm.MetricFrame(metrics=flm.selection_rate, y_true=y, y_pred=p, sensitive_features=g,
                            sample_params={"sample_weight": w}, n_boot=args.boot, ci_quantiles=[0.025, 0.975], random_state=0)
        return f.difference_ci()

    def boot_ours():
        return mf.assess(y, p, sensitive_features=g, measure="demographic_parity_difference", sample_weight=w,
                         n_boot=args.boot, min_group_size=1)["interval"]

    lo_hi_theirs = [float(v) for v in boot_theirs()]
    ci = boot_ours()
    assert abs(ci["lower"] - lo_hi_theirs[0]) < 0.005 and abs(ci["upper"] - lo_hi_theirs[1]) < 0.005, (ci, lo_hi_theirs)
    rows.append((f"bootstrap interval, {args.boot} resamples, {n:,} rows", median_time(max(1, args.repeat // 2), boot_theirs), median_time(max(1, args.repeat // 2), boot_ours)))

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "unknown CPU")
    print(f"{cpu}; medians of {args.repeat} runs (bootstrap: {max(1, args.repeat // 2)})")
    print(f"{'work':<66} {'fairlearn':>11} {'mlops':>10} {'ratio':>7}")
    for what, t_theirs, t_ours in rows:
        print(f"{what:<66} {t_theirs * 1e3:>9.1f}ms {t_ours * 1e3:>8.1f}ms {t_theirs / t_ours:>6.1f}x")


if __name__ == "__main__":
    main()
