#!/usr/bin/env python3
"""The native tree engine beside xgboost, lightgbm and onnxruntime on the same models and rows,
in one run, with ratios (> 1: mlops faster).

    .venv/bin/python benches/trees_vs_libs.py [--trees 500] [--depth 7] [--seconds 2]
    # onnxruntime (optional): .venv/bin/pip install onnxruntime onnxmltools

Fraud-sized models: --trees trees of depth --depth on 30 features (50,000 training rows,
10% missing values, a 2% positive rate; --depth 0: each library's default shape, LightGBM's
31 leaves grown leaf-wise with no depth limit, so its trees are lopsided), trained with one thread by xgboost (`hist`) and by
lightgbm (num_leaves 2^depth - 1, max_depth depth), saved in their own formats. Each model is
scored on the same 4,096 rows (10% missing) by:
- mlops native: `examples/model_bench` (release; the Rust engine called in process, no Python),
- mlops wheel: `Model.from_file(...).predict_proba` (the same engine through Python),
- xgboost: `Booster.inplace_predict` (nthread 1); lightgbm: `Booster.predict` (num_threads 1),
- onnxruntime (if installed): the onnxmltools export, one intra-op thread,
after checking every engine's probabilities against the library's (max abs difference
printed; 1e-6 is the bar). Batch 1: p50 latency of one-row calls; batch 1,024: rows/s.
The library and onnxruntime numbers include their Python call overhead (as a Python service
pays it); the native mlops row does not, the wheel row does.
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


def p50(seconds, per_round, fn):
    rounds = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(rounds) < 5:
        t = time.perf_counter()
        for _ in range(per_round):
            fn()
        rounds.append((time.perf_counter() - t) / per_round)
    return float(np.median(rounds))


def data(rng, n, d=30):
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[rng.random((n, d)) < 0.1] = np.nan
    z = np.nan_to_num(x)
    logit = 1.5 * z[:, 0] - z[:, 1] + z[:, 2] * z[:, 3] + 0.8 * np.sin(3 * z[:, 4]) - 4.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return x, y


def timed(name, seconds, x, predict):
    one = [x[i:i + 1] for i in range(256)]
    k = [0]

    def single():
        predict(one[k[0] % 256])
        k[0] += 1

    b1 = p50(seconds, 50, single)
    block = np.ascontiguousarray(x[:1024])
    b1024 = p50(seconds, 3, lambda: predict(block))
    return {"engine": name, "batch1_p50_us": b1 * 1e6, "batch1024_rows_per_s": 1024 / b1024}


def onnx_session(kind, model, d):
    try:
        import onnxmltools
        import onnxruntime as ort
        from onnxmltools.convert.common.data_types import FloatTensorType
    except ImportError:
        return None
    if kind == "xgboost":
        onx = onnxmltools.convert_xgboost(model, initial_types=[("input", FloatTensorType([None, d]))], target_opset=15)
    else:
        onx = onnxmltools.convert_lightgbm(model, initial_types=[("input", FloatTensorType([None, d]))], target_opset=15, zipmap=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onx.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    outputs = [sess.get_outputs()[-1].name]  # the probabilities (not the labels)

    def predict(x):
        probs = sess.run(outputs, {"input": x})[0]
        return probs[:, 1] if probs.ndim == 2 else probs
    return predict


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", type=int, default=500)
    ap.add_argument("--depth", type=int, default=7,
                    help="tree depth; 0: the libraries' default shapes (xgboost depth 6, lightgbm 31 leaves grown leaf-wise with no depth limit)")
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    import lightgbm as lgb
    import xgboost as xgb

    from mlops.train import Model

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"CPU: {cpu}; {os.cpu_count()} cores; xgboost {xgb.__version__}, lightgbm {lgb.__version__}")
    rng = np.random.default_rng(2026)
    x_train, y_train = data(rng, 50_000)
    x, _ = data(rng, 4096)
    tmp = pathlib.Path(tempfile.mkdtemp())
    xgb_depth = args.depth if args.depth > 0 else 6
    lgb_shape = ({"num_leaves": 2 ** args.depth - 1, "max_depth": args.depth} if args.depth > 0
                 else {"num_leaves": 31, "max_depth": -1})
    booster = xgb.train({"objective": "binary:logistic", "max_depth": xgb_depth, "eta": 0.05, "nthread": 1,
                         "tree_method": "hist", "seed": 0}, xgb.DMatrix(x_train, label=y_train), num_boost_round=args.trees)
    gbm = lgb.train({"objective": "binary", **lgb_shape, "learning_rate": 0.05,
                     "num_threads": 1, "verbose": -1, "seed": 0, "min_data_in_leaf": 5},
                    lgb.Dataset(x_train.astype(np.float64), y_train), num_boost_round=args.trees)
    files = {"xgboost": tmp / "model.json", "lightgbm": tmp / "model.txt"}
    booster.save_model(str(files["xgboost"]))
    gbm.save_model(str(files["lightgbm"]))
    rows = tmp / "rows.f32"
    rows.write_bytes(x.astype("<f4").tobytes())
    cargo = ["cargo", "build", "--release", "--quiet", "--example", "model_bench"]
    subprocess.run(cargo, cwd=ROOT, check=True)
    library = {
        "xgboost": lambda a: booster.inplace_predict(a, missing=np.nan),
        "lightgbm": lambda a: gbm.predict(a, num_threads=1),
    }
    booster.set_param({"nthread": 1})
    table = []
    for kind in ["xgboost", "lightgbm"]:
        truth = np.asarray(library[kind](x), dtype=np.float64)
        out = tmp / f"{kind}.p"
        native = subprocess.run([str(ROOT / "target/release/examples/model_bench"), "--model", str(files[kind]),
                                 "--rows", str(rows), "--out", str(out), "--seconds", str(args.seconds)],
                                check=True, capture_output=True, text=True)
        n = json.loads(native.stdout)
        diff = float(np.abs(np.frombuffer(out.read_bytes(), "<f4") - truth).max())
        results = [{"engine": "mlops native (Rust)", "batch1_p50_us": n["batch1_p50_ns"] / 1e3,
                    "batch1024_rows_per_s": n["batch_rows_per_s"], "max_abs_diff": diff}]
        wheel = Model.from_file(files[kind])
        diff = float(np.abs(wheel.predict_proba(x) - truth).max())
        results.append({**timed("mlops wheel (Python)", args.seconds, x, wheel.predict_proba), "max_abs_diff": diff})
        results.append({**timed(f"{kind} (Python)", args.seconds, x, library[kind]), "max_abs_diff": 0.0})
        ort_predict = onnx_session(kind, booster if kind == "xgboost" else gbm, x.shape[1])
        if ort_predict is not None:
            diff = float(np.abs(np.asarray(ort_predict(x), dtype=np.float64) - truth).max())
            results.append({**timed("onnxruntime (Python)", args.seconds, x, ort_predict), "max_abs_diff": diff})
        table.append((kind, n, results))
    for kind, n, results in table:
        print(f"\n{kind}: {n['trees']} trees, {n['splits']} splits (read and compiled in {n['load_ms']:.0f} ms)")
        print(f"  {'engine':<24} {'batch 1 p50':>12} {'batch 1,024':>16} {'max |diff|':>11}")
        for r in results:
            print(f"  {r['engine']:<24} {r['batch1_p50_us']:>9.1f} us {r['batch1024_rows_per_s']:>12,.0f}/s {r['max_abs_diff']:>11.2e}")
        native, peers = results[0], results[2:]
        fastest1 = min(peers, key=lambda r: r["batch1_p50_us"])
        fastest_b = max(peers, key=lambda r: r["batch1024_rows_per_s"])
        print(f"  ratios: batch 1, mlops native vs the fastest peer ({fastest1['engine']}): "
              f"{fastest1['batch1_p50_us'] / native['batch1_p50_us']:.1f}x; mlops wheel vs it: "
              f"{fastest1['batch1_p50_us'] / results[1]['batch1_p50_us']:.1f}x")
        print(f"          batch 1,024, mlops native vs the fastest peer ({fastest_b['engine']}): "
              f"{native['batch1024_rows_per_s'] / fastest_b['batch1024_rows_per_s']:.2f}x; mlops wheel vs it: "
              f"{results[1]['batch1024_rows_per_s'] / fastest_b['batch1024_rows_per_s']:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
