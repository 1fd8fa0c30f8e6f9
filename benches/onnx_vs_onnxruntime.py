#!/usr/bin/env python3
"""tract (mlops' ONNX path) against onnxruntime on the same ONNX graphs, in one run, with ratios.

    .venv/bin/python benches/onnx_vs_onnxruntime.py [--seconds 2]

Graphs, all on 30 float32 features:
- `mlp`: the seed's network shape (30 -> 128 -> 64 -> 32 -> 1, ReLU, sigmoid), seeded
  weights, written as torch.onnx writes an nn.Sequential (Gemm, Relu, Sigmoid; dynamic batch);
- `sklearn`: StandardScaler + LogisticRegression through skl2onnx (the scaler as Sub and Div,
  no ZipMap; output `probabilities`);
- `xgboost`: `--trees` trees (default 100) of depth 6 through onnxmltools
  (TreeEnsembleClassifier), beside the same booster's JSON through mlops' native tree engine.
  tract's tree ensemble finds each leaf's values by walking its leaf table from the start (a
  cost that grows with the square of the leaves), so at 300 trees a batch of 1,024 takes tens
  of seconds: register the booster's own file for serving (the native engine).

`examples/model_bench` (release) times `CompiledModel` in process (tract for ONNX, the native
engine for the JSON): batch-1 p50 and batch-1,024 rows/s on one thread. onnxruntime runs with
one intra-op and one inter-op thread, called from Python as a Python service calls it. Every
engine's probabilities are checked against onnxruntime's first (1e-5). Ratios are
onnxruntime's time over ours: > 1 means mlops is faster.
"""
import argparse
import json
import os
import pathlib
import subprocess
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
D = 30
TREES = 100


def p50(seconds, min_iters, fn):
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < min_iters:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def mlp_graph(rng):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    sizes = [D, 128, 64, 32, 1]
    nodes, inits, prev = [], [], "input"
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        w = (rng.normal(size=(b, a)) * np.sqrt(2 / a)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"h{i}"], transB=1))
        prev = f"h{i}"
        if b != 1:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Sigmoid", [prev], ["probability"]))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", D])],
                              [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString(), "probability"


def data(rng, n):
    x = rng.normal(size=(n, D)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] + x[:, 2] * x[:, 3] + rng.normal(size=n) > 0.5).astype(int)
    return x, y


def sklearn_graph(rng):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = data(rng, 20_000)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x * 10 + 3, y)
    onx = to_onnx(pipe, x[:1], options={StandardScaler: {"div": "div"}, LogisticRegression: {"zipmap": False}},
                  target_opset={"": 17, "ai.onnx.ml": 3})
    return onx.SerializeToString(), "probabilities"


def xgb_graphs(rng, tmp):
    import onnxmltools
    import xgboost as xgb
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y = data(rng, 50_000)
    clf = xgb.XGBClassifier(n_estimators=TREES, max_depth=6, n_jobs=1, random_state=1).fit(x, y)
    clf.get_booster().save_model(tmp / "xgb.json")
    onx = onnxmltools.convert_xgboost(clf, initial_types=[("input", FloatTensorType([None, D]))], target_opset=15)
    return onx.SerializeToString(), "probabilities"


def ort_engine(model_bytes, output):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def predict(x):
        out = sess.run([output], {name: x})[0]
        return out[:, 1] if out.ndim == 2 and out.shape[1] == 2 else out.reshape(-1)
    return predict


def time_ort(predict, x, seconds):
    one = [np.ascontiguousarray(x[i:i + 1]) for i in range(256)]
    k = [0]

    def single():
        predict(one[k[0] % 256])
        k[0] += 1
    b1 = p50(seconds, 50, single)
    block = np.ascontiguousarray(x[:1024])
    b1024 = p50(seconds, 3, lambda: predict(block))
    return b1 * 1e6, 1024 / b1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--trees", type=int, default=100)
    args = ap.parse_args()
    global TREES
    TREES = args.trees
    import onnxruntime as ort

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"CPU: {cpu}; {os.cpu_count()} cores; onnxruntime {ort.__version__}")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "model_bench"], cwd=ROOT, check=True)
    bench = ROOT / "target" / "release" / "examples" / "model_bench"
    rng = np.random.default_rng(2027)
    tmp = pathlib.Path(tempfile.mkdtemp())
    x, _ = data(rng, 4096)
    (tmp / "rows.f32").write_bytes(x.astype("<f4").tobytes())
    cases = [("mlp",) + mlp_graph(rng), ("sklearn",) + sklearn_graph(rng), ("xgboost",) + xgb_graphs(rng, tmp)]
    rows = []
    for name, model_bytes, output in cases:
        path = tmp / f"{name}.onnx"
        path.write_bytes(model_bytes)
        ort_predict = ort_engine(model_bytes, output)
        want = ort_predict(x)
        runs = [("mlops tract", path, ["--onnx-output", output])]
        if name == "xgboost":
            runs.append(("mlops native trees", tmp / "xgb.json", []))
        ours = []
        for label, model, extra in runs:
            r = subprocess.run([str(bench), "--model", str(model), *extra, "--rows", str(tmp / "rows.f32"),
                                "--out", str(tmp / "p.f32"), "--seconds", str(args.seconds)],
                               check=True, capture_output=True, text=True)
            result = json.loads(r.stdout)
            got = np.frombuffer((tmp / "p.f32").read_bytes(), dtype="<f4")
            err = float(np.abs(got - want).max())
            assert err <= 1e-5, f"{name} {label}: {err} from onnxruntime"
            ours.append((label, result["batch1_p50_ns"] / 1e3, result["batch_rows_per_s"], result["load_ms"]))
        b1, rps = time_ort(ort_predict, x, args.seconds)
        for label, ob1, orps, load in ours:
            rows.append((name, label, ob1, orps, b1 / ob1, orps / rps, load))
        rows.append((name, "onnxruntime", b1, rps, 1.0, 1.0, None))
    print(f"\n| graph | engine | batch-1 p50 | batch 1,024 | batch-1 ratio | batch-1,024 ratio | load |")
    print("|---|---|---|---|---|---|---|")
    for name, label, b1, rps, r1, rb, load in rows:
        load_s = f"{load:.1f} ms" if load is not None else ""
        print(f"| {name} | {label} | {b1:.1f} µs | {rps:,.0f} rows/s | {r1:.2f}× | {rb:.2f}× | {load_s} |")


if __name__ == "__main__":
    main()
