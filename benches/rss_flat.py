#!/usr/bin/env python3
"""Memory under constant load: the KServe V2 server (`examples/serve`, release) with the
prediction log and the live monitor on, fed a constant request rate for a long run, its
resident set size (VmRSS) sampled every few seconds.

    python3 benches/rss_flat.py [--seconds 600] [--rate 3200]

The model is the main job's first model (`examples/pipeline` on the built-in card
transactions, registered in a fresh folder registry); `examples/traffic` replays the same
stream at `--rate` single-row requests per second (the seed's peak is 3,200), with labels one
batch late, so the server scores, logs every row and label as Parquet, keeps its drift windows
and live metrics, and joins labels the whole time. Prints the RSS series, the medians of the first,
second and last minutes, and last over second (issue 24's target: flat once the first minute
has filled the bounded windows), the rate achieved, and the rows
the log wrote and dropped. Servers are started here and stopped by PID. Machine: whatever runs
it; the load generator shares the cores with the server.
"""
import argparse
import pathlib
import re
import statistics
import subprocess
import tempfile
import time

from server_vs_mlserver import RELEASE, ROOT, free_port


def rss_kib(pid):
    text = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--rate", type=float, default=3200.0)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between RSS samples")
    a = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--features", "http,predlog,monitor,prometheus",
                    "--example", "serve", "--example", "traffic", "--example", "pipeline"], cwd=ROOT, check=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="mlops-rss-"))
    subprocess.run([str(RELEASE / "pipeline"), "--workdir", str(work / "boot"), "--registry", str(work / "reg"),
                    "--batches", "7", "--batch-size", "4000", "--train-batches", "5", "--shift-batch", "6",
                    "--trials", "2", "--seed", "7"], check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen([str(RELEASE / "serve"), "--registry", str(work / "reg"), "--model", "fraud",
                               "--addr", f"127.0.0.1:{port}", "--monitor", "--log-predictions", str(work / "log")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    traffic = None
    samples = []
    try:
        time.sleep(2)
        # The stream never changes here (--shift-batch far away): steady production traffic.
        traffic = subprocess.Popen([str(RELEASE / "traffic"), "--server", f"127.0.0.1:{port}", "--seed", "7",
                                    "--batch-size", "4000", "--from-batch", "5", "--shift-batch", "1000000",
                                    "--request-rows", "1", "--concurrency", "32", "--requests-per-second", str(a.rate),
                                    "--summary", str(work / "traffic.json")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        start = time.time()
        while time.time() - start < a.seconds:
            time.sleep(a.every)
            samples.append((time.time() - start, rss_kib(server.pid)))
            print(f"{samples[-1][0]:7.0f} s  RSS {samples[-1][1] / 1024:8.1f} MiB", flush=True)
    finally:
        if traffic is not None:
            traffic.terminate()
            traffic.wait(timeout=120)
        server.terminate()
        out, _ = server.communicate(timeout=120)
    import json
    summary = json.loads((work / "traffic.json").read_text())
    elapsed = samples[-1][0] if samples else a.seconds
    first = [r for t, r in samples if t <= 60]
    # The first minute fills the bounded parts (drift windows, the label join, the log's
    # buffer): flat means after it.
    second = [r for t, r in samples if 60 < t <= 120] or first
    last = [r for t, r in samples if t >= elapsed - 60]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"CPU: {cpu}")
    print(f"requests: {summary['requests']} in {elapsed:.0f} s = {summary['requests'] / elapsed:.0f}/s "
          f"(asked {a.rate:.0f}/s), {summary['failed']} failed; label posts {summary['label_posts']}")
    print(f"RSS median first minute {statistics.median(first) / 1024:.1f} MiB, second minute "
          f"{statistics.median(second) / 1024:.1f} MiB, last minute {statistics.median(last) / 1024:.1f} MiB: "
          f"last / second {statistics.median(last) / statistics.median(second):.3f} (target: flat)")
    print(out.decode().strip().splitlines()[-2] if out else "")


if __name__ == "__main__":
    main()
