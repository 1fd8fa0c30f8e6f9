#!/usr/bin/env python3
"""The seed's traffic on one replica, open-loop; and adaptive batching, closed-loop.

    apt-get install nghttp2-client wrk     # Debian's h2load (HTTP/1.1, HTTP/2, gRPC) and wrk
    .venv/bin/python benches/open_loop.py [--hold-seconds 300] [--rate 3200] [--p99-ms 23]
        [--search-seconds 20] [--batch-seconds 10] [--rounds 3] [--skip-hold] [--skip-search]
        [--skip-batching] [--protocols rest-json,rest-binary,grpc] [--wide 1024,1024]
        [--alternate 0 [--alternate-seconds 20]]

The seed peaked at 3,200 predictions/s with p99 23 ms on a KServe cluster. This serves the MLP
of `examples/engine_bench` (30 -> 128 -> 64 -> 32 -> 1) from a registry with `examples/serve`
(release build) on 127.0.0.1, REST and gRPC, with the prediction log (`--log-predictions`, to a
folder) and the live monitor (`--monitor`) on, and loads it with h2load at a constant rate
(`--rps` per client, one request at a time each, `rate x seconds` requests waited for to the
last: open-loop, so a slow answer does not slow the schedule). h2load times a request from
when it is sent, and a client sends late while its previous request is out; so each run has
enough clients (64 to 2,000) that a client's interval is at least twice the run's p99 bound,
created a few a millisecond so that their schedules spread over that interval (started at
once, they would send in bursts), and a run that falls behind its schedule (achieved < 98% of
the rate) is reported. Single-row
FP32 `[1, 30]` requests:

1. hold: `--rate` requests/s for `--hold-seconds` for REST JSON, REST binary (the V2 binary
   extension) and gRPC (`ModelInfer`, encoded with tritonclient's protobuf classes), each with
   its p50, p99, p99.9 and max (from h2load's per-request log), the achieved rate and the
   errors (h2load's failed requests, the model's errors and refusals, and for gRPC, whose
   errors are HTTP 200 with a grpc-status, the succeeded requests the server's
   `mlops_serve_requests_total` did not count), and
   whether it met the target (p99 <= 2 ms, no error). Beside each: the share of CPU time the
   hypervisor stole from this virtual machine during the run (`/proc/stat`), and the p99 of
   the requests whose every second had under 1% stolen; and a control row, the HTTP floor
   (`mlops-serve/examples/http_floor`: the same axum stack answering a fixed response, no
   model, log or monitor; REST JSON) held at the same rate right after, the server stopped;
   with `--alternate N`, N rounds of `--alternate-seconds` runs alternating the floor, a
   server without the log and monitor and one with both, so that all three meet the same
   minutes of a shared machine;
2. search: the highest constant rate whose p99 stays <= `--p99-ms` with no error and the
   schedule kept (achieved >= 98% of the rate), per protocol: doubling from `--rate`, then
   bisecting (`--search-seconds` per step);
3. batching: closed-loop load where batching may help (64 concurrent requests) and where it
   costs (one at a time), with batching off and on (`--batch-max-rows 64 --batch-max-delay-us
   1000`): REST JSON with wrk, gRPC with h2load (8 connections x 8 streams); requests/s, p50,
   p99 and the on/off ratios, medians of `--rounds` rounds (the two servers back to back in
   each round); the mean batch size from `mlops_serve_batch_rows`. Twice: on the seed's MLP,
   whose call costs about a microsecond a row, and on a wide network of the same form
   (`--wide` hidden widths, 30 -> 1024 -> 1024 -> 1 by default), where one row's call reads
   every weight (4 MiB) and a batch of rows shares that read.

h2load shares the two cores with the server: the rates are what one 2-core machine holds with
its own load generator on it. Servers are started here on free ports and stopped by PID.
Exit codes: 0 done (the table printed; a missed target is reported, not an error), 1 a
server or a load generator failed, 2 bad arguments.
"""
import argparse
import contextlib
import json
import os
import pathlib
import random
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from server_vs_mlserver import RELEASE, ROOT, free_port, start, stop, wait_ready, wrk

FEATURES = ("--features", "http,grpc,predlog,monitor,prometheus")
# Clients of an open-loop run: each sends one request at a time, at rate/clients per second.
# h2load times a request from when it is sent, and a client whose previous request is still
# out sends late: so there are enough clients that each one's interval is at least
# INTERVAL_OVER_BOUND times the run's p99 bound. A request is then held back by its client only
# when the one before took longer than that, in a run that misses its bound anyway; and a run
# that falls behind its schedule (achieved < 98% of the rate) is reported as such.
MIN_CLIENTS = 64
MAX_CLIENTS = 2000
INTERVAL_OVER_BOUND = 2.0


def clients_for(rate, bound_ms):
    wanted = int(rate * INTERVAL_OVER_BOUND * bound_ms / 1000.0) + 1
    return max(MIN_CLIENTS, min(MAX_CLIENTS, wanted))


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--hold-seconds", type=int, default=300)
    p.add_argument("--rate", type=int, default=3200, help="the held rate, requests/s")
    p.add_argument("--hold-p99-ms", type=float, default=2.0, help="the held rate's p99 target")
    p.add_argument("--p99-ms", type=float, default=23.0, help="the search's p99 bound")
    p.add_argument("--search-seconds", type=int, default=20)
    p.add_argument("--batch-seconds", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--alternate", type=int, default=0,
                   help="rounds of short runs alternating the floor, a bare server and a logged one (0: none)")
    p.add_argument("--alternate-seconds", type=int, default=20)
    p.add_argument("--skip-hold", action="store_true")
    p.add_argument("--skip-search", action="store_true")
    p.add_argument("--skip-batching", action="store_true")
    p.add_argument("--wide", default="1024,1024",
                   help="hidden widths of the wide network of the batching runs ('' to skip it)")
    p.add_argument("--protocols", default="rest-json,rest-binary,grpc",
                   help="of the hold and the search, comma-separated")
    a = p.parse_args()
    if min(a.hold_seconds, a.rate, a.search_seconds, a.batch_seconds, a.rounds) < 1:
        p.error("every duration, the rate and the rounds must be at least 1")
    return a


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def bodies(work):
    """The three request bodies of one row, written to files: REST JSON, REST binary (its JSON
    header's length) and a gRPC message (length-prefixed protobuf)."""
    rng = random.Random(0)
    row = [round(rng.gauss(0.0, 1.0), 6) for _ in range(30)]
    json_body = json.dumps({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": row}]})
    (work / "rest.json").write_text(json_body)
    raw = struct.pack("<30f", *row)
    header = json.dumps({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(raw)}}],
                         "parameters": {"binary_data_output": True}}).encode()
    (work / "rest.bin").write_bytes(header + raw)
    try:
        from tritonclient.grpc import service_pb2
    except ImportError:
        fail("tritonclient[grpc] is needed for the gRPC body: run with .venv/bin/python "
             "(scripts/requirements-test.txt)")
    request = service_pb2.ModelInferRequest(model_name="fraud")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[1, 30])
    request.raw_input_contents.append(raw)
    assert tensor.name == "input"
    message = request.SerializeToString()
    (work / "grpc.bin").write_bytes(b"\x00" + struct.pack(">I", len(message)) + message)
    return {"rest-json": (work / "rest.json", ["-H", "content-type: application/json"]),
            "rest-binary": (work / "rest.bin", ["-H", "content-type: application/octet-stream",
                                                "-H", f"inference-header-content-length: {len(header)}"]),
            "grpc": (work / "grpc.bin", ["-H", "content-type: application/grpc", "-H", "te: trailers"])}


class Running:
    """A started server, stopped (by PID) when its `with` block ends, however it ends, or when
    it does not become ready."""

    def ready(self, url):
        try:
            wait_ready(url, self.proc)
        except BaseException:
            self.stop()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        stop(self.proc)


class Server(Running):
    """`examples/serve` on free ports (REST and gRPC), with the given extra flags."""

    def __init__(self, work, flags, registry="reg"):
        self.http, self.grpc = free_port(), free_port()
        command = [str(RELEASE / "serve"), "--registry", str(work / registry), "--model", "fraud",
                   "--addr", f"127.0.0.1:{self.http}", "--grpc-addr", f"127.0.0.1:{self.grpc}",
                   "--max-in-flight", "1024", "--max-connections", "4096", *flags]
        self.proc = start(command)
        self.ready(f"http://127.0.0.1:{self.http}/v2/health/ready")

    def url(self, protocol):
        if protocol == "grpc":
            return f"http://127.0.0.1:{self.grpc}/inference.GRPCInferenceService/ModelInfer"
        return f"http://127.0.0.1:{self.http}/v2/models/fraud/infer"

    def metric(self, prefix):
        """The sum of the samples of `prefix` on /metrics."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=10).read().decode()
        return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(prefix))


class Steal:
    """The hypervisor's steal time (`/proc/stat`, every CPU together) sampled every 0.1 s while
    it runs: the share of CPU time the virtual machine was ready to run but not given a CPU.
    `quiet(start, end)` says whether every whole second the span touches had under 1% stolen."""

    QUIET = 0.01

    def __init__(self):
        self.samples, self.done = [], threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def read():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return sum(fields[:8]), fields[7]  # user nice system idle iowait irq softirq steal

    def _sample(self):
        while True:
            total, steal = self.read()
            self.samples.append((time.time(), total, steal))
            if self.done.wait(0.1):
                total, steal = self.read()
                self.samples.append((time.time(), total, steal))
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        per_second = {}
        for (t0, total0, steal0), (_, total1, steal1) in zip(self.samples, self.samples[1:]):
            s = per_second.setdefault(int(t0), [0, 0])
            s[0], s[1] = s[0] + total1 - total0, s[1] + steal1 - steal0
        self.share = {sec: (stolen / total if total else 0.0) for sec, (total, stolen) in per_second.items()}
        first, last = self.samples[0], self.samples[-1]
        self.overall = (last[2] - first[2]) / max(1, last[1] - first[1])

    def quiet(self, start, end):
        return all(self.share.get(sec, 1.0) < self.QUIET for sec in range(int(start), int(end) + 1))


class FloorServer(Running):
    """`mlops-serve/examples/http_floor` on a free port: the same HTTP stack answering a fixed
    V2 response, the control of the hold."""

    def __init__(self):
        self.http = free_port()
        self.proc = start([str(RELEASE / "http_floor"), "--addr", f"127.0.0.1:{self.http}"])
        self.ready(f"http://127.0.0.1:{self.http}/v2/health/ready")

    def url(self, protocol):
        return f"http://127.0.0.1:{self.http}/v2/models/fraud/infer"

    def metric(self, prefix):
        return 0.0


def h2load(url, body, headers, h1, clients, streams=1, rps=None, requests=None, seconds=None, spans=None,
           during=None):
    """One h2load run, `requests` in all (at `rps` in all, spread over the clients) or for
    `seconds`: (summary counts, latencies in ms of the requests answered 2xx, seconds it ran).
    `spans`, a list, also gets each such request's (start, end) in seconds since the epoch;
    `during`, a context manager, is entered while h2load runs (not while its log is read)."""
    log = tempfile.NamedTemporaryFile(suffix=".log", delete=False)
    log.close()
    command = ["h2load", "-t", "1", "-c", str(clients), "-m", str(streams), "-d", str(body),
               "--log-file", log.name, *headers]
    command += ["-n", str(requests)] if requests is not None else ["-D", str(seconds)]
    if h1:
        command.append("--h1")
    if rps is not None:
        # Clients created a few a millisecond over one client's interval, so that their
        # schedules are spread over it: started at once, every client would send at the same
        # instant, a burst of `clients` requests each interval instead of a steady rate.
        per_ms = -(-rps // 1000)
        command += ["--rps", f"{rps / clients:.3f}", "-r", str(per_ms), "--rate-period", "1ms"]
    with during if during is not None else contextlib.nullcontext():
        out = subprocess.run([*command, url], capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"h2load failed ({out.returncode}): {' '.join(command)}\n{out.stdout}\n{out.stderr}")
    text = out.stdout
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text)
    if not m:
        fail(f"h2load's summary not found:\n{text}")
    counts = dict(zip(("total", "started", "done", "succeeded", "failed", "errored", "timeout"),
                      map(int, m.groups())))
    took = re.search(r"finished in ([\d.]+)(ms|s),", text)
    seconds_ran = float(took.group(1)) / (1000.0 if took.group(2) == "ms" else 1.0)
    latencies = []
    with open(log.name) as f:
        # Each line: the request's start (µs since the epoch), its HTTP status (-1: no answer),
        # its duration in µs.
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and 200 <= int(parts[1]) < 300:
                latencies.append(int(parts[2]) / 1000.0)
                if spans is not None:
                    start = int(parts[0]) / 1e6
                    spans.append((start, start + int(parts[2]) / 1e6))
    os.unlink(log.name)
    return counts, latencies, seconds_ran


def percentile(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100.0 * len(s)))]


def open_loop(server, protocol, body, headers, rate, seconds, bound_ms):
    """`rate` requests/s for `seconds` (rate x seconds requests in all, waited for to the
    last): a dict of what happened."""
    metric = lambda: (server.metric("mlops_serve_requests_total{"),
                      server.metric("mlops_serve_errors_total{") + server.metric("mlops_serve_rejected_total{"))
    counted_before, bad_before = metric()
    clients = clients_for(rate, bound_ms)
    spans, steal = [], Steal()
    counts, lat, ran = h2load(server.url(protocol), body, headers, protocol != "grpc", clients, rps=rate,
                              requests=rate * seconds, spans=spans, during=steal)
    quiet = [l for l, (start, end) in zip(lat, spans) if steal.quiet(start, end)]
    counted, bad = metric()
    counted, bad = counted - counted_before, bad - bad_before
    # h2load's failed requests (no answer, or not 2xx; its errored and timed-out ones are among
    # them), and for gRPC, whose errors are HTTP 200 with a grpc-status, the requests the model
    # failed or refused and every succeeded request the router did not count.
    errors = counts["failed"]
    if protocol != "floor":  # the floor counts nothing
        errors += max(0, counts["succeeded"] - int(counted))
    if protocol == "grpc":
        # Over REST the model's failures and refusals are 4xx/5xx, among h2load's failed.
        errors += int(bad)
    achieved = counts["done"] / ran if ran > 0 else 0.0
    return {"rate": rate, "clients": clients, "achieved": achieved, "requests": counts["done"],
            "errors": errors, "p50": percentile(lat, 50), "p99": percentile(lat, 99),
            "p999": percentile(lat, 99.9), "max": max(lat) if lat else float("nan"),
            "kept": achieved >= 0.98 * rate, "steal": steal.overall,
            "quiet_share": len(quiet) / len(lat) if lat else float("nan"), "quiet_p99": percentile(quiet, 99)}


def search(server, protocol, body, headers, start_rate, bound_ms, seconds):
    """The highest rate with p99 <= bound_ms, no error, schedule kept: doubling, then
    bisecting to within 5%. Returns (best run, every run)."""
    ok = lambda r: r["errors"] == 0 and r["kept"] and r["p99"] <= bound_ms
    runs, good, bad = [], None, None
    rate = start_rate
    while bad is None and rate <= 1_000_000:
        r = open_loop(server, protocol, body, headers, rate, seconds, bound_ms)
        runs.append(r)
        if ok(r):
            good, rate = r, rate * 2
        else:
            bad = r
    while good is not None and bad is not None and bad["rate"] - good["rate"] > 0.05 * good["rate"]:
        r = open_loop(server, protocol, body, headers, (good["rate"] + bad["rate"]) // 2, seconds, bound_ms)
        runs.append(r)
        if ok(r):
            good = r
        else:
            bad = r
    return good, runs


def closed_loop(server, protocol, body, headers, concurrency, seconds):
    """(requests/s, p50 ms, p99 ms): REST JSON with wrk, gRPC with h2load."""
    if protocol == "rest-json":
        return wrk(server.url(protocol), json.loads(body.read_text()), concurrency, seconds)
    clients, streams = (1, 1) if concurrency == 1 else (8, concurrency // 8)
    counted = server.metric("mlops_serve_requests_total{")
    counts, lat, ran = h2load(server.url(protocol), body, headers, False, clients, streams, seconds=seconds)
    counted = server.metric("mlops_serve_requests_total{") - counted
    # Requests still out when h2load stops are counted by the server, not by h2load: fewer
    # counted than succeeded means gRPC errors (HTTP 200 with a grpc-status).
    if counts["failed"] or counted < counts["succeeded"]:
        fail(f"gRPC closed-loop run failed: {counts}, {counted:.0f} counted by the server")
    return counts["succeeded"] / ran, percentile(lat, 50), percentile(lat, 99)


def batching(a, work, requests, label, registry):
    """Closed-loop runs with batching off and on against the model in `registry`; prints the
    table of medians and the on/off ratios."""
    print(f"\nbatching, {label}: closed-loop, {a.batch_seconds} s a run, medians of {a.rounds} rounds; "
          "batching on = --batch-max-rows 64 --batch-max-delay-us 1000")
    cases = [("rest-json", 1), ("rest-json", 64), ("grpc", 1), ("grpc", 64)]
    runs, sizes = {}, []
    for _ in range(a.rounds):
        for name, flags in (("off", []), ("on", ["--batch-max-rows", "64", "--batch-max-delay-us", "1000"])):
            with Server(work, flags, registry) as server:
                for protocol, c in cases:
                    body, headers = requests[protocol]
                    runs.setdefault((protocol, c, name), []).append(
                        closed_loop(server, protocol, body, headers, c, a.batch_seconds))
                if name == "on":
                    calls = server.metric("mlops_serve_batch_rows_count{")
                    rows = server.metric("mlops_serve_batch_rows_sum{")
                    sizes.append(rows / calls if calls else float("nan"))
    print(f"{'':<22} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7}   on/off: req/s   p50    p99")
    for protocol, c in cases:
        med = {n: tuple(statistics.median(r[i] for r in runs[(protocol, c, n)]) for i in range(3))
               for n in ("off", "on")}
        for n in ("off", "on"):
            rps, p50, p99 = med[n]
            ratio = ""
            if n == "on":
                off = med["off"]
                ratio = f"   {rps / off[0]:>12.2f}x {p50 / off[1]:>5.2f}x {p99 / off[2]:>5.2f}x"
            print(f"{protocol + ' c=' + str(c) + ' ' + n:<22} {rps:>9.0f} {p50:>7.2f} {p99:>7.2f}{ratio}")
    print(f"mean rows per model call with batching on (each round's server, every case): "
          f"{', '.join(f'{s:.1f}' for s in sizes)}", flush=True)


def main():
    a = parse()
    if a.wide and not (re.fullmatch(r"[1-9][0-9]{0,3}(,[1-9][0-9]{0,3}){0,7}", a.wide)
                       and all(int(w) <= 8192 for w in a.wide.split(","))):
        print(f"--wide: got {a.wide!r}; expected 1 to 8 comma-separated widths of 1 to 8192 units",
              file=sys.stderr)
        sys.exit(2)
    if a.alternate < 0 or a.alternate_seconds < 1 or a.hold_seconds < 1 or a.rate < 1:
        print("--alternate must be >= 0; --alternate-seconds, --hold-seconds and --rate >= 1", file=sys.stderr)
        sys.exit(2)
    for tool in ("h2load", "wrk"):
        if shutil.which(tool) is None:
            fail(f"{tool} not found: apt-get install nghttp2-client wrk")
    subprocess.run(["cargo", "build", "--release", "--quiet", *FEATURES, "--example", "serve",
                    "--example", "registry", "--example", "engine_bench"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "mlops-serve", "--features", "http",
                    "--example", "http_floor"], cwd=ROOT, check=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="mlops-open-loop-"))
    run = lambda *args: subprocess.run([str(x) for x in args], check=True, capture_output=True)
    models = [("seed MLP 30-128-64-32-1", "reg", "128,64,32")]
    if a.wide:
        models.append((f"wide MLP 30-{a.wide.replace(',', '-')}-1", "reg-wide", a.wide))
    for _, registry, hidden in models:
        model = work / f"model-{registry}"
        run(RELEASE / "engine_bench", "--out", model, "--profiles", "--hidden", hidden, "--write-only")
        run(RELEASE / "registry", "--registry", work / registry, "register", "fraud", model)
        run(RELEASE / "registry", "--registry", work / registry, "alias", "fraud", "production", "1")
    requests = bodies(work)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"examples/serve (release) on 127.0.0.1, {os.cpu_count()} cores ({cpu}); single-row FP32 [1, 30] "
          f"requests; h2load on the same cores", flush=True)

    protocols = [p for p in a.protocols.split(",") if p]
    unknown = [p for p in protocols if p not in requests]
    if unknown:
        print(f"--protocols: unknown {unknown}; expected some of {sorted(requests)}", file=sys.stderr)
        sys.exit(2)
    logged = ["--log-predictions", str(work / "log"), "--monitor"]

    def hold(target, protocol, seconds):
        """Warm-up, then `a.rate`/s for `seconds` against `target`, printed as a row."""
        body, headers = requests["rest-json" if protocol == "floor" else protocol]
        open_loop(target, protocol, body, headers, a.rate, 2, a.hold_p99_ms)  # warm-up
        r = open_loop(target, protocol, body, headers, a.rate, seconds, a.hold_p99_ms)
        met = r["errors"] == 0 and r["kept"] and r["p99"] <= a.hold_p99_ms
        print(f"{protocol:<12} {r['achieved']:>10.0f} {r['requests']:>9} {r['errors']:>6} "
              f"{r['p50']:>7.2f} {r['p99']:>7.2f} {r['p999']:>8.2f} {r['max']:>7.2f} "
              f"{r['steal'] * 100:>5.1f}% {r['quiet_share'] * 100:>5.0f}% {r['quiet_p99']:>9.2f}  "
              f"{'met' if met else 'MISSED'}{'' if r['kept'] else ' (fell behind the schedule)'}", flush=True)

    columns = (f"{'protocol':<12} {'achieved/s':>10} {'requests':>9} {'errors':>6} {'p50 ms':>7} "
               f"{'p99 ms':>7} {'p99.9 ms':>8} {'max ms':>7} {'steal':>6} {'quiet':>6} {'quiet p99':>9}"
               f"  target (p99 <= {a.hold_p99_ms} ms, no error)")
    legend = ("steal: the share of CPU time the hypervisor took from this virtual machine while h2load ran "
              "(/proc/stat); quiet: the requests whose every second had under 1% stolen, and their p99; "
              "floor: mlops-serve/examples/http_floor (axum, parses the JSON body, fixed answer; no model, "
              "log or monitor), REST JSON")
    if not a.skip_hold:
        print(f"\nhold: {a.rate} requests/s for {a.hold_seconds} s, open-loop "
              f"({clients_for(a.rate, a.hold_p99_ms)} clients), prediction log and live monitor on; "
              "then the floor alone, the server stopped")
        print(columns)
        with Server(work, logged) as server:
            for protocol in protocols:
                hold(server, protocol, a.hold_seconds)
        if "rest-json" in protocols:
            with FloorServer() as floor:
                hold(floor, "floor", a.hold_seconds)
        print(legend)
    if a.alternate:
        print(f"\nalternating: {a.alternate} rounds of {a.alternate_seconds} s runs at {a.rate}/s, each round "
              "the floor, then a server without the log and monitor, then one with both (a fresh server "
              "each), so that all three meet the same minutes of this machine")
        print(columns)
        for _ in range(a.alternate):
            with FloorServer() as floor:
                hold(floor, "floor", a.alternate_seconds)
            for name, flags in (("bare", []), ("log+monitor", logged)):
                print(f"-- server, {name}")
                with Server(work, flags) as server:
                    for protocol in protocols:
                        hold(server, protocol, a.alternate_seconds)
        print(legend)
    if not a.skip_search:
        print(f"\nsearch: the highest constant rate with p99 <= {a.p99_ms} ms, no error, schedule kept "
              f"({a.search_seconds} s a step), prediction log and live monitor on")
        print(f"{'protocol':<12} {'rate/s':>8} {'clients':>7} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8}  "
              "first rate past it (p99 ms, errors, achieved/s)")
        with Server(work, logged) as server:
            for protocol in protocols:
                body, headers = requests[protocol]
                open_loop(server, protocol, body, headers, a.rate, 2, a.p99_ms)  # warm-up
                good, runs = search(server, protocol, body, headers, a.rate, a.p99_ms, a.search_seconds)
                past = [r for r in runs if good is None or r["rate"] > good["rate"]]
                past = min(past, key=lambda r: r["rate"]) if past else None
                beyond = (f"{past['rate']} ({past['p99']:.2f}, {past['errors']}, {past['achieved']:.0f})"
                          if past else "-")
                if good is None:
                    print(f"{protocol:<12} {'none':>8}  {beyond}", flush=True)
                else:
                    print(f"{protocol:<12} {good['rate']:>8} {good['clients']:>7} {good['p50']:>7.2f} {good['p99']:>7.2f} "
                          f"{good['p999']:>8.2f}  {beyond}", flush=True)
    if (work / "log").exists():
        files = list((work / "log").rglob("*.parquet"))
        print(f"prediction log: {len(files)} Parquet files under {work / 'log'}")

    if not a.skip_batching:
        for label, registry, _ in models:
            batching(a, work, requests, label, registry)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
