#!/usr/bin/env python3
"""Drift work through mlops (Rust) and through the Python peers in the same run, with ratios.

    .venv/bin/python benches/drift_vs_python.py [--rows 1000000] [--cols 30] [--evidently-rows 100000]

Same data on both sides: seeded normal reference columns and current columns with small
per-column shifts, written once as raw f64 for the Rust side
(`cargo run --release --example drift_bench`). Python timings are medians of `--repeat` runs:
- KS: scipy.stats.ks_2samp per column (scipy's `auto` method: asymptotic at these sizes);
- PSI: numpy, 10 reference-quantile bins (np.quantile edges, searchsorted, bincount), the
  definition mlops uses;
- Wasserstein: scipy.stats.wasserstein_distance per column;
- default report: Evidently's DataDriftPreset (if installed) on --evidently-rows rows, against
  mlops' default report (profile fit + compare) on the same rows.
Prints a table; ratios > 1 mean mlops is faster. Evidently is slow at 1M rows (minutes), so it
runs on fewer rows unless asked.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy import stats

ROOT = pathlib.Path(__file__).resolve().parents[1]


def median_time(repeat, fn):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def make_data(rows, cols, seed=7):
    rng = np.random.default_rng(seed)
    ref = rng.normal(0.0, 1.0, (cols, rows))
    shifts = np.linspace(0.0, 0.05, cols)[:, None]
    cur = rng.normal(0.0, 1.0, (cols, rows)) * 1.01 + shifts
    return ref, cur


def psi_numpy(r, c, bins=10, eps=1e-4):
    edges = np.unique(np.quantile(r, np.arange(1, bins) / bins))
    p = np.bincount(np.searchsorted(edges, r, side="right"), minlength=len(edges) + 1) / len(r)
    q = np.bincount(np.searchsorted(edges, c, side="right"), minlength=len(edges) + 1) / len(c)
    p, q = np.maximum(p, eps), np.maximum(q, eps)
    return np.sum((q - p) * np.log(q / p))


def rust_times(ref, cur, repeat):
    rows, cols = ref.shape[1], ref.shape[0]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "drift.f64")
        np.concatenate([ref.ravel(), cur.ravel()]).astype("<f8").tofile(path)
        cmd = ["cargo", "run", "--release", "-q", "--example", "drift_bench", "--",
               "--data", path, "--rows", str(rows), "--cols", str(cols), "--repeat", str(repeat)]
        out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def evidently_time(ref, cur, repeat):
    try:
        import pandas as pd
        from evidently import Report
        from evidently.presets import DataDriftPreset
    except Exception as e:  # not installed, or an older API
        return None, f"Evidently unavailable: {e}"
    names = [f"f{j}" for j in range(ref.shape[0])]
    rdf = pd.DataFrame(ref.T, columns=names)
    cdf = pd.DataFrame(cur.T, columns=names)

    def run():
        Report([DataDriftPreset()]).run(cdf, rdf)

    import evidently
    return median_time(repeat, run), f"evidently {evidently.__version__}"


def datasketches_time(ref, repeat):
    """Apache DataSketches' KLL (k = 400) over every reference column, and its bytes."""
    try:
        import datasketches
    except Exception as e:
        return None, None, None, f"datasketches unavailable: {e}"
    size = [0]

    def run():
        size[0] = 0
        for j in range(ref.shape[0]):
            s = datasketches.kll_doubles_sketch(400)
            s.update(ref[j])
            size[0] += len(s.serialize())

    t = median_time(repeat, run)
    # Observed rank error of column 0's sketch at every 1/1000 quantile (as drift_bench does).
    s = datasketches.kll_doubles_sketch(400)
    s.update(ref[0])
    xs = np.sort(ref[0])
    points = xs[(np.arange(1001) * (len(xs) - 1)) // 1000]
    exact = np.searchsorted(xs, points, side="right") / len(xs)
    worst = max(abs(s.get_rank(float(x), True) - e) for x, e in zip(points, exact))
    from importlib.metadata import version
    bound = s.normalized_rank_error(False)
    return t, size[0] // ref.shape[0], (worst, bound), f"datasketches {version('datasketches')}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=30)
    ap.add_argument("--evidently-rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sketch-only", action="store_true",
                    help="only the KLL sketch against Apache DataSketches (Python)")
    args = ap.parse_args()
    if args.sketch_only:
        ref, _ = make_data(args.rows, args.cols)
        ours = rust_times(ref, ref, args.repeat)
        t, size, worst, note = datasketches_time(ref, args.repeat)
        print(f"{args.cols} columns x {args.rows} rows; {note}")
        print(f"{'work':<58} {'python s':>10} {'mlops s':>10} {'ratio':>8}")
        if t is not None:
            r = ours["kll_sketch_all_columns"]
            print(f"{'KLL k=400, every column (datasketches.kll_doubles_sketch)':<58} {t:>10.4f} {r:>10.4f} {t / r:>7.1f}x")
            print(f"serialized bytes per column: datasketches {size}, mlops {int(ours['kll_bytes_per_column'])}")
            ours_err, (theirs, bound) = ours["kll_rank_error_column0"], worst
            print(f"observed rank error, column 0: datasketches {theirs:.5f}, mlops {ours_err:.5f} "
                  f"(ratio {ours_err / theirs:.2f}; a-priori bound {bound:.5f} at k = 400)")
        return 0

    ref, cur = make_data(args.rows, args.cols)
    ours = rust_times(ref, cur, args.repeat)
    py = {
        "ks_all_columns": median_time(args.repeat, lambda: [stats.ks_2samp(ref[j], cur[j]) for j in range(args.cols)]),
        "psi_all_columns": median_time(args.repeat, lambda: [psi_numpy(ref[j], cur[j]) for j in range(args.cols)]),
        "wasserstein_all_columns": median_time(args.repeat, lambda: [stats.wasserstein_distance(ref[j], cur[j]) for j in range(args.cols)]),
    }
    rows = [
        ("KS, all columns (scipy.stats.ks_2samp)", py["ks_all_columns"], ours["ks_all_columns"]),
        ("KS with a fitted profile (vs scipy)", py["ks_all_columns"], ours["ks_with_profile"]),
        ("PSI, all columns (numpy)", py["psi_all_columns"], ours["psi_all_columns"]),
        ("PSI with a fitted profile (vs numpy)", py["psi_all_columns"], ours["psi_with_profile"]),
        ("Wasserstein, all columns (scipy)", py["wasserstein_all_columns"], ours["wasserstein_all_columns"]),
        ("Wasserstein with a fitted profile (vs scipy)", py["wasserstein_all_columns"], ours["wasserstein_with_profile"]),
    ]
    ev_rows = min(args.evidently_rows, args.rows)
    ev_time, ev_note = evidently_time(ref[:, :ev_rows], cur[:, :ev_rows], 1)
    if ev_time is not None:
        small = rust_times(ref[:, :ev_rows], cur[:, :ev_rows], args.repeat)
        rows.append((f"default report at {ev_rows} rows (Evidently DataDriftPreset)", ev_time, small["default_report"]))
    print(f"{args.cols} columns x {args.rows} rows (reference and current); mlops threads: {int(ours['threads'])}; {ev_note}")
    print(f"{'work':<58} {'python s':>10} {'mlops s':>10} {'ratio':>8}")
    for name, p, r in rows:
        print(f"{name:<58} {p:>10.4f} {r:>10.4f} {p / r:>7.1f}x")
    print(f"{'mlops default report (profile fit + compare)':<58} {'':>10} {ours['default_report']:>10.4f}")
    for key in ["window_rows_per_s_step_1000", "window_rows_per_s_step_100"]:
        print(f"streaming window of 1000, {key.rsplit('_', 1)[-1]}-value step: {ours[key] / 1e6:.2f} M rows/s per column")


if __name__ == "__main__":
    sys.exit(main())
