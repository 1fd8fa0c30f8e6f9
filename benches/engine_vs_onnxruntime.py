#!/usr/bin/env python3
"""The serving engine against onnxruntime on the same weights, in one run, with ratios.

    python3 -m venv .venv-bench && .venv-bench/bin/pip install numpy onnx onnxruntime
    .venv-bench/bin/python benches/engine_vs_onnxruntime.py [--seconds 2]

`cargo run --release --example engine_bench` writes the seed's network (30 -> 128 -> 64 -> 32
-> 1, ReLU, standardized inputs; seeded weights) as model.json + model.safetensors and times
mlops' CompiledModel and the reference MlpModel. This script reads the same files, exports
them to ONNX with the `onnx` package (Sub, Mul, MatMul, Add, Relu, Sigmoid), checks the ONNX
graph against a numpy forward pass, and times onnxruntime with one intra-op thread: batch-1
p50 latency and batch-1,024 rows/s. Ratios > 1 mean mlops is faster.
"""
import argparse
import json
import pathlib
import struct
import subprocess
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def read_safetensors(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32", meta
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(meta["shape"])
    return out


def model_to_onnx(spec, tensors):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    cur = "x"
    std = spec.get("standardization")
    if std:
        inits += [numpy_helper.from_array(np.array(std["mean"], dtype=np.float32), "mean"),
                  numpy_helper.from_array((1.0 / np.array(std["std"], dtype=np.float32)).astype(np.float32), "inv_std")]
        nodes += [helper.make_node("Sub", [cur, "mean"], ["centred"]),
                  helper.make_node("Mul", ["centred", "inv_std"], ["scaled"])]
        cur = "scaled"
    for i, layer in enumerate(spec["layers"]):
        w, b = tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"]
        inits += [numpy_helper.from_array(np.ascontiguousarray(w.T), f"w{i}"), numpy_helper.from_array(b.copy(), f"b{i}")]
        nodes += [helper.make_node("MatMul", [cur, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"z{i}"])]
        op = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}[layer["activation"]]
        out = "y" if i == len(spec["layers"]) - 1 else f"a{i}"
        nodes.append(helper.make_node(op, [f"z{i}"], [out]))
        cur = out
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", len(spec["input_features"])])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def numpy_forward(spec, tensors, x):
    std = spec.get("standardization")
    h = (x - np.array(std["mean"], np.float32)) / np.array(std["std"], np.float32) if std else x
    for i, layer in enumerate(spec["layers"]):
        h = h @ tensors[f"layers.{i}.weight"].T + tensors[f"layers.{i}.bias"]
        h = {"relu": lambda v: np.maximum(v, 0), "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh}[layer["activation"]](h)
    return h


def p50_ns(seconds, per_round, fn):
    rounds, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(rounds) < 5:
        t = time.perf_counter()
        for _ in range(per_round):
            fn()
        rounds.append((time.perf_counter() - t) / per_round * 1e9)
    return float(np.median(rounds))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run(
            ["cargo", "run", "--release", "-q", "--example", "engine_bench", "--",
             "--out", d, "--seconds", str(args.seconds)],
            cwd=ROOT, check=True, capture_output=True, text=True).stdout
        ours = json.loads(out.strip().splitlines()[-1])
        spec = json.loads((pathlib.Path(d) / "model.json").read_text())
        tensors = read_safetensors(pathlib.Path(d) / "model.safetensors")
    onnx_bytes = model_to_onnx(spec, tensors)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    # The same inputs as engine_bench.
    x = np.array([[((i * 31 + j * 17) % 97) / 97.0 for j in range(30)] for i in range(1024)], dtype=np.float32)
    got = sess.run(None, {"x": x})[0][:, 0]
    want = numpy_forward(spec, tensors, x)[:, 0]
    assert np.max(np.abs(got - want)) < 1e-5, np.max(np.abs(got - want))
    one = x[:1]
    b1 = p50_ns(args.seconds, 1000, lambda: sess.run(None, {"x": one}))
    b1024 = p50_ns(args.seconds, 10, lambda: sess.run(None, {"x": x}))
    ort_rows = 1024 / (b1024 * 1e-9)
    print(f"onnxruntime {ort.__version__} (1 intra-op thread) vs mlops, the seed's network (28 kFLOP a row)")
    print(f"{'':<34} {'onnxruntime':>14} {'mlops engine':>14} {'mlops MlpModel':>15} {'ratio':>7}")
    print(f"{'batch 1 p50 latency (us)':<34} {b1 / 1e3:>14.3f} {ours['engine_batch1_p50_ns'] / 1e3:>14.3f} "
          f"{ours['mlp_model_batch1_p50_ns'] / 1e3:>15.3f} {b1 / ours['engine_batch1_p50_ns']:>6.2f}x")
    print(f"{'batch 1,024 throughput (M rows/s)':<34} {ort_rows / 1e6:>14.3f} "
          f"{ours['engine_batch1024_rows_per_s'] / 1e6:>14.3f} {ours['mlp_model_batch1024_rows_per_s'] / 1e6:>15.3f} "
          f"{ours['engine_batch1024_rows_per_s'] / ort_rows:>6.2f}x")
    print(f"engine vs reference: max |difference| {ours['max_abs_difference']:.2e}")
    engine = ours["engine_batch1_p50_ns"]
    for name, what in [("router", "keyed"), ("router_labeled", "keyed, with a request id for labels")]:
        routed = ours[f"{name}_batch1_p50_ns"]
        print(f"router ({what}) batch 1 p50 {routed / 1e3:.3f} us: {(routed - engine) / 1e3:+.3f} us over the engine, "
              f"{b1 / routed:.2f}x onnxruntime's latency")


if __name__ == "__main__":
    main()
