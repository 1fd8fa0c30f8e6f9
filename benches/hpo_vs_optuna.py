#!/usr/bin/env python3
"""mlops' samplers next to Optuna's TPE on Branin and Hartmann6, in one run.

    .venv-bench/bin/python benches/hpo_vs_optuna.py [--trials 50] [--seeds 20]

Optuna: TPESampler(multivariate=True, constant_liar=True, seed=s), its other defaults
(10 startup trials, 24 EI candidates). mlops: `cargo run --release --example hpo` with the
same trial and seed counts, TPE, Gaussian-process BO and random. Prints the median over seeds of each study's best value (lower is
better; optima: Branin 0.397887, Hartmann6 -3.32237) and the sampler's time per trial.
"""
import argparse
import json
import math
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def branin(x1, x2):
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886], [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
     [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650], [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]
ALPHA = [1.0, 1.2, 3.0, 3.2]


def hartmann6(x):
    return -sum(ALPHA[i] * math.exp(-sum(A[i][j] * (x[j] - P[i][j]) ** 2 for j in range(6))) for i in range(4))


def optuna_runs(name, trials, seeds):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bests, secs = [], 0.0
    for s in range(seeds):
        sampler = optuna.samplers.TPESampler(multivariate=True, constant_liar=True, seed=s)
        study = optuna.create_study(sampler=sampler)
        if name == "branin":
            f = lambda t: branin(t.suggest_float("x1", -5, 10), t.suggest_float("x2", 0, 15))
        else:
            f = lambda t: hartmann6([t.suggest_float(f"x{i}", 0, 1) for i in range(6)])
        t0 = time.perf_counter()
        study.optimize(f, n_trials=trials)
        secs += time.perf_counter() - t0
        bests.append(study.best_value)
    return statistics.median(bests), secs * 1e3 / (trials * seeds), optuna.__version__


def ours(name, sampler, trials, seeds):
    cmd = ["cargo", "run", "--release", "-q", "--example", "hpo", "--", "--objective", name,
           "--sampler", sampler, "--trials", str(trials), "--seeds", str(seeds)]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    d = json.loads(out.strip().splitlines()[-1])
    return d["median_best"], d["sampler_ms_per_trial"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    print(f"{args.trials} trials, median best over {args.seeds} seeds (lower is better)")
    print(f"{'objective':<10} {'sampler':<22} {'median best':>12} {'ms/trial':>9}")
    for name in ["branin", "hartmann6"]:
        best, ms, version = optuna_runs(name, args.trials, args.seeds)
        print(f"{name:<10} {'optuna ' + version + ' TPE':<22} {best:>12.4f} {ms:>9.3f}")
        for sampler in ["tpe", "gp", "random"]:
            b, m = ours(name, sampler, args.trials, args.seeds)
            print(f"{name:<10} {'mlops ' + sampler:<22} {b:>12.4f} {m:>9.3f}")


if __name__ == "__main__":
    sys.exit(main())
