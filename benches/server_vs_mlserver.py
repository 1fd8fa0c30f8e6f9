#!/usr/bin/env python3
"""Load on the KServe V2 server (`examples/serve`) beside MLServer, in one run, with `wrk`.

    sudo apt-get install wrk            # Debian's wrk
    python3 -m venv .venv-mlserver && .venv-mlserver/bin/pip install "mlserver==1.7.*" \
        "mlserver-sklearn==1.7.*" "uvloop<0.22" scikit-learn joblib
    .venv-mlserver/bin/python benches/server_vs_mlserver.py [--seconds 10]

Both serve an MLP of the seed's shape (30 -> 128 -> 64 -> 32 -> 1): ours the seed network of
`examples/engine_bench`, MLServer a scikit-learn `MLPClassifier` of the same layers through its
sklearn runtime. Single-row FP32 `[1, 30]` JSON requests on 127.0.0.1, concurrency 1 (one wrk
thread) and 32 (two threads); then ours again with a shadow at 100% of requests (a candidate
in the shadow phase of a rollout) to show what the shadow costs the primary's p99. Prints
requests/s, p50 and p99 and the ratios. Servers are started here on free ports and stopped by
PID. Machine: whatever runs it; wrk shares the cores with the server, for both servers alike.
"""
import argparse
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
RELEASE = ROOT / "target" / "release" / "examples"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, proc, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited: {proc.args}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception:
            time.sleep(0.2)
    sys.exit(f"server not ready: {url}")


def wrk(url, body, connections, seconds, prefix=()):
    lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    lua.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
    lua.write(f"wrk.body = {json.dumps(json.dumps(body))}\n")
    lua.close()
    threads = 1 if connections == 1 else 2
    out = subprocess.run(
        [*prefix, "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", lua.name, url],
        capture_output=True, text=True, check=True,
    ).stdout
    os.unlink(lua.name)
    if "Non-2xx" in out:
        sys.exit(f"non-2xx answers from {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def ms(pct):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)\b", out).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    return rps, ms(50), ms(99)


def start(args, **kw):
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def pin(pid, cpus):
    """Sets the CPUs of every thread of process `pid` (`taskset -a`; threads it starts later
    inherit them)."""
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=True, capture_output=True)


def load(command, port, ready, infer, body, seconds, connections=(1, 32), pin_one=False):
    """Starts `command` (a server on `port`), waits for `ready`, loads `infer` with wrk at each
    concurrency, stops it by PID: {concurrency: (requests/s, p50 ms, p99 ms)}.

    `pin_one`: at concurrency 1, wrk runs on CPU 0 and the server on the other CPUs, as a
    client across a network would (on two cores left to the scheduler, the two sometimes
    share one CPU and hand each request over without waking the other, and the same binary's
    median doubled or halved between runs); at higher concurrency both use every CPU."""
    proc = start(command)
    cpus = os.cpu_count() or 1
    try:
        wait_ready(f"http://127.0.0.1:{port}{ready}", proc)
        out = {}
        for c in connections:
            pinned = pin_one and c == 1 and cpus > 1
            pin(proc.pid, f"1-{cpus - 1}" if pinned else f"0-{cpus - 1}") if pin_one else None
            prefix = ("taskset", "-c", "0") if pinned else ()
            out[c] = wrk(f"http://127.0.0.1:{port}{infer}", body, c, seconds, prefix)
        return out
    finally:
        stop(proc)


def seconds_and_build(doc, features=("--features", "http"), rounds=False):
    """The `--seconds` argument (a script's `--help` from its `doc`; with `rounds`, the pair
    (`--seconds`, `--rounds`)), once the release examples the servers need are built with
    `features`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    if rounds:
        parser.add_argument("--rounds", type=int, default=3,
                            help="rounds of every server in turn; medians are printed")
    a = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", *features,
                    "--example", "serve", "--example", "registry", "--example", "engine_bench"], cwd=ROOT, check=True)
    return (a.seconds, a.rounds) if rounds else a.seconds


def main():
    a = argparse.Namespace(seconds=seconds_and_build(__doc__))
    import numpy as np
    import joblib
    from sklearn.neural_network import MLPClassifier

    work = pathlib.Path(tempfile.mkdtemp(prefix="mlops-load-"))
    run = lambda *args: subprocess.run([str(x) for x in args], check=True, capture_output=True)
    run(RELEASE / "engine_bench", "--out", work / "model", "--seconds", "0.01")
    run(RELEASE / "registry", "--registry", work / "reg", "register", "fraud", work / "model")
    run(RELEASE / "registry", "--registry", work / "reg", "alias", "fraud", "production", "1")

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 30)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    mlp = MLPClassifier(hidden_layer_sizes=(128, 64, 32), max_iter=20, random_state=0).fit(x, y)
    model_dir = work / "mlserver" / "mlp"
    model_dir.mkdir(parents=True)
    joblib.dump(mlp, model_dir / "model.joblib")
    (model_dir / "model-settings.json").write_text(json.dumps(
        {"name": "mlp", "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib"}}))
    ms_http, ms_grpc, ms_metrics = free_port(), free_port(), free_port()
    (work / "mlserver" / "settings.json").write_text(json.dumps(
        {"http_port": ms_http, "grpc_port": ms_grpc, "metrics_port": ms_metrics, "host": "127.0.0.1",
         "parallel_workers": 0}))

    row = rng.normal(size=30).astype(np.float32).tolist()
    body = {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": row}]}
    results = {}

    mlserver = [str(pathlib.Path(sys.executable).parent / "mlserver"), "start", str(work / "mlserver")]
    for c, r in load(mlserver, ms_http, "/v2/models/mlp/ready", "/v2/models/mlp/infer", body, a.seconds).items():
        results[("mlserver", c)] = r

    port = free_port()
    ours = [str(RELEASE / "serve"), "--registry", str(work / "reg"), "--model", "fraud", "--addr", f"127.0.0.1:{port}"]
    for c, r in load(ours, port, "/v2/health/ready", "/v2/models/fraud/infer", body, a.seconds).items():
        results[("mlops", c)] = r

    # A candidate in the shadow phase at 100%: every request also scored off the request path.
    run(RELEASE / "registry", "--registry", work / "reg", "register", "fraud", work / "model")
    run(RELEASE / "registry", "--registry", work / "reg", "alias", "fraud", "canary", "2")
    policy = work / "shadow.toml"
    policy.write_text("steps = [10, 100]\nbake_time_seconds = 86400\n[[checks]]\nkind = \"error_rate\"\n"
                      "[shadow]\npercent = 100\nbake_time_seconds = 86400\nchecks = [{ kind = \"error_rate\" }]\n")
    port = free_port()
    shadowed = start([str(RELEASE / "serve"), "--registry", str(work / "reg"), "--model", "fraud",
                      "--addr", f"127.0.0.1:{port}", "--policy", str(policy), "--poll-seconds", "1"])
    try:
        wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", shadowed)
        time.sleep(3)  # the controller's first ticks: the rollout starts in its shadow phase
        results[("mlops+shadow", 32)] = wrk(f"http://127.0.0.1:{port}/v2/models/fraud/infer", body, 32, a.seconds)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        mirrored = sum(float(l.rsplit(" ", 1)[1]) for l in metrics.splitlines()
                       if l.startswith("mlops_serve_requests_total{") and 'variant="canary"' in l)
    finally:
        stop(shadowed)

    print(f"single-row FP32 [1, 30] JSON requests on 127.0.0.1, {a.seconds} s each, {os.cpu_count()} cores")
    print(f"{'':<22} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for key, (rps, p50, p99) in results.items():
        print(f"{key[0] + ' c=' + str(key[1]):<22} {rps:>10.0f} {p50:>8.2f} {p99:>8.2f}")
    for c in (1, 32):
        m, o = results[("mlserver", c)], results[("mlops", c)]
        print(f"c={c}: {o[0] / m[0]:.1f}x MLServer's requests/s; p99 {o[2]:.2f} ms vs {m[2]:.2f} ms ({m[2] / o[2]:.1f}x lower)")
    base, shadow = results[("mlops", 32)], results[("mlops+shadow", 32)]
    print(f"shadow at 100% (requests mirrored: {mirrored:.0f}): p99 {shadow[2]:.2f} ms vs {base[2]:.2f} ms "
          f"({(shadow[2] / base[2] - 1) * 100:+.1f}%), requests/s {shadow[0] / base[0]:.2f}x")


if __name__ == "__main__":
    main()
