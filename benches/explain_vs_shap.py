#!/usr/bin/env python3
"""mlops.explain beside shap in the same run, with ratios (> 1: mlops faster).

    .venv/bin/python benches/explain_vs_shap.py [--rows 20] [--background 100] [--pairs 10]

The same mlops model (an MLP of 30 inputs, 16 hidden units, trained on the first 20,000 rows
of the synthetic card transactions' shape: here 30 standard-normal columns with a fraud-like
rare label), the same background rows and the same explained rows, through:
- sampled: shap's PermutationExplainer (independent masker over the background) and
  mlops.explain(method="permutation"), both walking --pairs antithetic pairs of orders
  (shap's max_evals = 2 x pairs x (features + 1)); accuracy is each one's mean absolute
  difference from a reference (mlops, 400 pairs), printed beside the time;
- exact, for a model of the first 12 inputs trained the same way: shap's ExactExplainer and
  mlops.explain(method="exact"), whose values must agree;
- deep: mlops.explain(method="deep") (DeepSHAP, DeepLIFT's rescale rule over the background:
  approximate) beside the same PermutationExplainer run, its accuracy against the same
  reference.
Medians of --repeat runs; explanations per second.
"""
import argparse
import pathlib
import sys

import numpy as np
import shap

import mlops
from mlops import train

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from drift_vs_python import median_time  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--background", type=int, default=100)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    d = 30
    x = rng.normal(size=(20_000, d)).astype(np.float32)
    logit = x[:, :5] @ np.array([1.5, -1.0, 0.8, 0.5, -0.4], np.float32) - 3.0
    y = (rng.random(20_000) < 1 / (1 + np.exp(-logit))).astype(float)
    model = train.fit(x, y, columns=[f"V{j}" for j in range(d)], hidden=[16], epochs=3, batch_size=512, seed=1)
    background = x[:args.background]
    rows = x[10_000:10_000 + args.rows]
    f = lambda z: model.predict_proba(z).astype(np.float64)
    masker = shap.maskers.Independent(background.astype(np.float64), max_samples=len(background))

    reference = mlops.explain(model, rows, background, method="permutation", tolerance=1e-9,
                              max_evaluations=400 * 2 * (d + 1) * len(background)).values
    budget = args.pairs * 2 * (d + 1) * len(background)
    ours = lambda: mlops.explain(model, rows, background, method="permutation", tolerance=1e-9, max_evaluations=budget)
    explainer = shap.explainers.Permutation(f, masker)
    theirs = lambda: explainer(rows.astype(np.float64), max_evals=args.pairs * 2 * (d + 1), silent=True)
    err_ours = float(np.mean(np.abs(ours().values - reference)))
    err_theirs = float(np.mean(np.abs(theirs().values - reference)))
    t_ours = median_time(args.repeat, ours)
    t_theirs = median_time(args.repeat, theirs)

    # Exact: a model of the first 12 inputs (2^12 coalitions; 2^30 would not finish).
    k = 12
    x12 = x[:, :k]
    model12 = train.fit(x12, y, columns=[f"V{j}" for j in range(k)], hidden=[16], epochs=3, batch_size=512, seed=1)
    f12 = lambda z: model12.predict_proba(z).astype(np.float64)
    bg12, rows12 = background[:, :k], rows[:, :k]
    exact_ours = lambda: mlops.explain(model12, rows12, bg12, method="exact")
    exact_explainer = shap.explainers.Exact(f12, shap.maskers.Independent(bg12.astype(np.float64), max_samples=len(bg12)))
    exact_theirs = lambda: exact_explainer(rows12.astype(np.float64))
    gap = float(np.max(np.abs(exact_ours().values - exact_theirs().values)))
    te_ours = median_time(args.repeat, exact_ours)
    te_theirs = median_time(args.repeat, exact_theirs)

    deep = lambda: mlops.explain(model, rows, background, method="deep")
    err_deep = float(np.mean(np.abs(deep().values - reference)))
    t_deep = median_time(args.repeat, deep)

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
    n = args.rows
    print(f"{cpu}; {n} rows explained, background {len(background)}; medians of {args.repeat} runs")
    print(f"{'work':<58} {'shap /s':>9} {'mlops /s':>9} {'ratio':>7}  accuracy (mean |error| vs reference)")
    print(f"{f'sampled, 30 features, {args.pairs} antithetic pairs':<58} {n / t_theirs:>9.1f} {n / t_ours:>9.1f} {t_theirs / t_ours:>6.1f}x  shap {err_theirs:.2e}, mlops {err_ours:.2e}")
    print(f"{'exact, 12 features (4,096 coalitions)':<58} {n / te_theirs:>9.1f} {n / te_ours:>9.1f} {te_theirs / te_ours:>6.1f}x  max |shap - mlops| {gap:.1e}")
    print(f"{'deep (mlops) vs shap permutation, 30 features':<58} {n / t_theirs:>9.1f} {n / t_deep:>9.1f} {t_theirs / t_deep:>6.1f}x  shap {err_theirs:.2e}, mlops deep {err_deep:.2e}")


if __name__ == "__main__":
    main()
