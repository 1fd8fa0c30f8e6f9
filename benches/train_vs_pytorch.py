#!/usr/bin/env python3
"""One epoch of the seed's MLP through mlops (its CPU engine) and through PyTorch, same data, same
threads, in one run; prints medians and the ratio.

    .venv-bench/bin/python benches/train_vs_pytorch.py [--rows 200000] [--cols 30] [--batch 512] [--threads 1]

The model: Dense 128-64-32 with ReLU and dropout 0.3, one logit, BCE with logits, Adam 1e-3
(PyTorch's Adam with eps 1e-7 like mlops' default), Glorot-uniform weights. Each epoch: a
seeded shuffle, mini-batches gathered by index, forward, backward, step; then validation on
1,000 rows (as the mlops trainer does every epoch). Data: seeded normal features and labels
from a logistic model, written once as raw f32 for the Rust side
(`cargo run --release --example train_bench`).
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

ROOT = pathlib.Path(__file__).resolve().parents[1]


def make_data(rows, cols, seed=11):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, cols)).astype(np.float32)
    w = rng.normal(size=cols) / np.sqrt(cols)
    p = 1.0 / (1.0 + np.exp(-(x @ w * 3.0 - 2.0)))
    y = (rng.random(rows) < p).astype(np.float32)
    return x, y


def torch_epochs(x, y, epochs, batch, threads):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers, sizes = [], [x.shape[1], 128, 64, 32]
    for a, b in zip(sizes, sizes[1:]):
        lin = torch.nn.Linear(a, b)
        torch.nn.init.xavier_uniform_(lin.weight)
        torch.nn.init.zeros_(lin.bias)
        layers += [lin, torch.nn.ReLU(), torch.nn.Dropout(0.3)]
    out = torch.nn.Linear(32, 1)
    torch.nn.init.xavier_uniform_(out.weight)
    torch.nn.init.zeros_(out.bias)
    model = torch.nn.Sequential(*layers, out)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    # Standardize as mlops does (fitted on the training rows).
    mean, std = x.mean(axis=0), x.std(axis=0)
    xt = torch.from_numpy((x - mean) / std)
    yt = torch.from_numpy(y)
    xv, yv = xt[:1000], yt[:1000]
    g = torch.Generator().manual_seed(0)
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        model.train()
        order = torch.randperm(len(xt), generator=g)
        for start in range(0, len(xt), batch):
            idx = order[start:start + batch]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]).squeeze(1), yt[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            torch.sigmoid(model(xv).squeeze(1))
        times.append(time.perf_counter() - t)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--cols", type=int, default=30)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    x, y = make_data(args.rows, args.cols)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "train.f32")
        np.concatenate([x.ravel(), y]).astype("<f4").tofile(path)
        cmd = ["cargo", "run", "--release", "-q", "--example", "train_bench", "--", "--data", path,
               "--rows", str(args.rows), "--cols", str(args.cols), "--epochs", str(args.epochs),
               "--batch", str(args.batch), "--threads", str(args.threads)]
        env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
        ours = json.loads(subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True,
                                         env=env).stdout.strip().splitlines()[-1])
    theirs = torch_epochs(x, y, args.epochs, args.batch, args.threads)
    import torch
    m, t = float(np.median(ours["epoch_seconds"])), float(np.median(theirs))
    print(f"{args.rows} rows x {args.cols} features, batch {args.batch}, {args.threads} thread(s); torch {torch.__version__}")
    print(f"mlops epoch:          median {m:.3f} s  {ours['epoch_seconds']}")
    print(f"PyTorch epoch:        median {t:.3f} s  {[round(v, 3) for v in theirs]}")
    print(f"mlops / PyTorch time: {m / t:.2f}")


if __name__ == "__main__":
    sys.exit(main())
