#!/usr/bin/env python3
"""The `mlops` wheel from Python beside scipy in the same run, with ratios (> 1: mlops faster).

    .venv/bin/python benches/python_bindings.py [--rows 1000000] [--cols 30] [--repeat 5]

(the test command builds the wheel into .venv). Medians of --repeat runs of:
- KS: ``mlops.drift.ks_2samp`` against ``scipy.stats.ks_2samp`` on two columns of --rows
  float64 values (scipy's ``auto`` method, asymptotic at this size), and the same on float32
  input (mlops converts; scipy too);
- profile compare: ``mlops.drift.ReferenceProfile.compare`` of a --rows x --cols current table
  against a profile of a --rows x --cols reference, every column KS-tested with Holm's
  correction (``{"tests": ["ks"]}``), against the same work in Python: a loop of
  ``scipy.stats.ks_2samp`` over the columns plus Holm's step-down adjustment in numpy. The
  profile's fit is timed apart (it is done once
  per model, not per check).
"""
import argparse
import pathlib
import sys
import time

import numpy as np
from scipy import stats

from mlops.drift import ReferenceProfile, ks_2samp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from drift_vs_python import median_time  # noqa: E402  (one timing helper for the benches)


def holm(p):
    order = np.argsort(p)
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=args.rows), rng.normal(0.002, 1.0, size=args.rows)
    ours = ks_2samp(a, b)
    theirs = stats.ks_2samp(a, b)
    assert abs(ours.statistic - theirs.statistic) < 1e-12 and abs(ours.pvalue - theirs.pvalue) < 1e-6 * max(theirs.pvalue, 1e-300)
    rows = []
    t_ours = median_time(args.repeat, lambda: ks_2samp(a, b))
    t_theirs = median_time(args.repeat, lambda: stats.ks_2samp(a, b))
    rows.append((f"ks_2samp {args.rows:,} x 2 float64", t_theirs, t_ours))
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    t_ours = median_time(args.repeat, lambda: ks_2samp(a32, b32))
    t_theirs = median_time(args.repeat, lambda: stats.ks_2samp(a32, b32))
    rows.append((f"ks_2samp {args.rows:,} x 2 float32", t_theirs, t_ours))

    reference = rng.normal(size=(args.rows, args.cols))
    current = rng.normal(size=(args.rows, args.cols)) + np.linspace(0.0, 0.01, args.cols)
    t = time.perf_counter()
    profile = ReferenceProfile.fit(reference, config={"storage": "exact"})
    fit_seconds = time.perf_counter() - t
    config = {"tests": ["ks"]}
    report = profile.compare(current, config=config)

    def scipy_report():
        p = np.array([stats.ks_2samp(reference[:, j], current[:, j]).pvalue for j in range(args.cols)])
        return holm(p) < 0.05

    drifted_scipy = scipy_report()
    drifted_ours = np.array([c["drifted"] for c in report["columns"]])
    assert (drifted_scipy == drifted_ours).all(), (drifted_scipy, drifted_ours)
    t_ours = median_time(args.repeat, lambda: profile.compare(current, config=config))
    t_theirs = median_time(args.repeat, scipy_report)
    rows.append((f"profile compare {args.rows:,} x {args.cols} (KS + Holm)", t_theirs, t_ours))

    print(f"{'work':<46} {'scipy (s)':>10} {'mlops (s)':>10} {'ratio':>7}")
    for name, theirs_s, ours_s in rows:
        print(f"{name:<46} {theirs_s:>10.4f} {ours_s:>10.4f} {theirs_s / ours_s:>6.2f}x")
    print(f"(mlops profile fit, once per model: {fit_seconds:.2f} s; {int(drifted_ours.sum())} of {args.cols} columns drifted, as scipy's)")


if __name__ == "__main__":
    main()
