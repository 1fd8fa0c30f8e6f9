"""The loop in production, across processes (issue 24): two `serve` replicas on one registry
(a folder; the same script on moto S3), a real Prometheus scraping both (the rollout judged from
it), `traffic` replaying the card transactions with labels one batch late and a world change
mid-stream, and the retrain job (`examples/retrain`) started by the monitor's command hook.

Asserted: no retrain alarm before the change; exactly one retrain request after it, within the
first windows; a candidate registered from logged rows; shadow -> steps -> promoted with both
replicas serving the new version; zero failed requests. With the new world's labels corrupted in
the log (`traffic --corrupt-labels`: a stale rule's labels, which a model learns well, so the
retrain's gate on the same labels passes), the candidate is rolled back on live labels and
production stays. Every process is started here on ports picked here and stopped by PID.
"""
import json
import os
import pathlib
import signal
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from serving import EXAMPLES, ROOT, free_port, moto_s3

SEED, BATCH, FIRST, SHIFT = 7, 4_000, 5, 8
DEADLINE_SECONDS = 240

LOOP = ROOT / "examples" / "loop"

LOG = """
batch_rows = 4000
batch_age_seconds = 0.5
"""


def need(*names):
    for name in names:
        if not (EXAMPLES / name).exists():
            pytest.fail(f"{EXAMPLES / name} is missing: run scripts/test.sh (the examples of the test features)")


class Processes:
    """Started processes, stopped by PID (SIGTERM, then SIGKILL) in reverse order."""

    def __init__(self, d):
        self.d, self.procs = d, []

    def start(self, name, args, env=None, cwd=None):
        out = open(self.d / f"{name}.out", "wb")
        proc = subprocess.Popen([str(a) for a in args], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        self.procs.append((name, proc, out))
        return proc

    def stop(self, proc, timeout=60):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop_all(self):
        for _, proc, out in reversed(self.procs):
            self.stop(proc)
            out.close()

    def output(self, name):
        return (self.d / f"{name}.out").read_text(errors="replace")


def wait_until(what, predicate, procs, timeout=DEADLINE_SECONDS):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for name, proc, _ in procs.procs:
            if proc.poll() is not None and name != "traffic":
                pytest.fail(f"{name} exited ({proc.returncode}) while waiting for {what}:\n{procs.output(name)[-3000:]}")
        if time.time() > deadline:
            tails = "\n".join(f"--- {n}\n{procs.output(n)[-2000:]}" for n, _, _ in procs.procs)
            pytest.fail(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.25)


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def prom_query(base, query, at=None):
    params = {"query": query}
    if at is not None:
        params["time"] = f"{at:.3f}"
    answer = get_json(f"{base}/api/v1/query?{urllib.parse.urlencode(params)}")
    assert answer["status"] == "success", answer
    return [(r["metric"], float(r["value"][1])) for r in answer["data"]["result"]]


def prom_range(base, query, start, end):
    params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"}
    answer = get_json(f"{base}/api/v1/query_range?{urllib.parse.urlencode(params)}")
    assert answer["status"] == "success", answer
    return {r["metric"].get("version", ""): [(float(t), float(v)) for t, v in r["values"]]
            for r in answer["data"]["result"]}


def timeline(prom, start, end, marks, path):
    """The run as Prometheus saw it, drawn with matplotlib: requests/s by version, each
    version's drift verdict and live ROC AUC, with the world's change and the retrain
    request marked. Returns the series drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [
        ("requests/s", 'sum by (version) (rate(mlops_serve_requests_total{model="fraud"}[5s]))'),
        ("drift verdict (1 = drift)", 'max by (version) (mlops_monitor_verdict{model="fraud",verdict="drift"})'),
        ("live ROC AUC", 'min by (version) (mlops_monitor_live_metric{model="fraud",metric="roc_auc"})'),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 7), sharex=True)
    drawn = {}
    for ax, (title, query) in zip(axes, panels):
        series = prom_range(prom, query, start, end)
        drawn[title] = series
        for version, points in sorted(series.items()):
            ax.plot([t - start for t, _ in points], [v for _, v in points], label=f"v{version}")
        for label, at in marks.items():
            ax.axvline(at - start, color="grey", linestyle="--", linewidth=0.8)
            if ax is axes[0]:
                ax.text(at - start, ax.get_ylim()[1], f" {label}", fontsize=8, va="top")
        ax.set_ylabel(title, fontsize=8)
        ax.legend(fontsize=8, loc="lower left")
    axes[-1].set_xlabel("seconds since traffic started")
    fig.suptitle("The loop in production: two replicas, one registry, Prometheus, a retrain job")
    fig.tight_layout()
    fig.savefig(path, format="svg")
    plt.close(fig)
    return drawn


def alias(registry, name):
    from mlops.registry import Registry
    return Registry(registry).alias("fraud", name)


def run_loop(d, registry, log, corrupt):
    """Runs the loop once; returns what the assertions read."""
    need("pipeline", "serve", "traffic", "retrain")
    d.mkdir(parents=True, exist_ok=True)
    # The first model: the main job's history and gate, registered under production.
    boot = subprocess.run(
        [str(EXAMPLES / "pipeline"), "--workdir", str(d / "boot"), "--registry", registry, "--batches", "7",
         "--batch-size", str(BATCH), "--train-batches", str(FIRST), "--shift-batch", "6", "--trials", "2",
         "--seed", str(SEED)], capture_output=True, timeout=600)
    assert boot.returncode == 0, boot.stdout.decode()[-3000:] + boot.stderr.decode()[-3000:]
    assert alias(registry, "production") == 1

    # The README's files: the monitor (its hook runs examples/loop/retrain-hook.sh from the
    # repository root) and the policy; the hook's settings from the environment.
    (d / "log.toml").write_text(LOG)
    env = dict(os.environ, MLOPS_REGISTRY=registry, MLOPS_LOG=log, LOOP_DIR=str(d),
               RETRAIN=str(EXAMPLES / "retrain"), LABEL_WAIT="3")
    ports = {"a": free_port(), "b": free_port()}
    prom_port = free_port()
    (d / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: mlops\n"
        "    static_configs:\n      - targets: [" + ", ".join(f"'127.0.0.1:{p}'" for p in ports.values()) + "]\n")
    procs = Processes(d)
    prom = f"http://127.0.0.1:{prom_port}"
    try:
        procs.start("prometheus", [os.environ.get("PROMETHEUS", "prometheus"), f"--config.file={d / 'prometheus.yml'}",
                                   f"--web.listen-address=127.0.0.1:{prom_port}", f"--storage.tsdb.path={d / 'tsdb'}"])
        for name, port in ports.items():
            procs.start(name, [EXAMPLES / "serve", "--registry", registry, "--model", "fraud",
                               "--addr", f"127.0.0.1:{port}", "--policy", LOOP / "policy.toml", "--poll-seconds", "0.5",
                               "--monitor", "--monitor-config", LOOP / "monitor.toml", "--replica", name,
                               "--log-predictions", log, "--log-config", d / "log.toml", "--prometheus", prom],
                        env=env, cwd=ROOT)
        for port in ports.values():
            wait_until(f"the replica on {port}", lambda: ready(port), procs)
        wait_until("prometheus", lambda: ready_prom(prom), procs)
        # Prometheus has scraped both replicas before traffic starts.
        wait_until("both replicas scraped", lambda: len(prom_query(prom, 'up{job="mlops"} == 1')) == 2, procs)
        traffic = procs.start("traffic", [EXAMPLES / "traffic", *sum((["--server", f"127.0.0.1:{p}"] for p in ports.values()), []),
                                          "--seed", SEED, "--batch-size", BATCH, "--from-batch", FIRST,
                                          "--shift-batch", SHIFT, "--pause-seconds", "0.5", "--summary", d / "traffic.json",
                                          *(["--corrupt-labels"] if corrupt else [])])

        def settled():
            canary, production = alias(registry, "canary"), alias(registry, "production")
            if corrupt:
                # Rolled back: a candidate was registered, and canary is cleared again.
                return "rollback" in procs.output("a") + procs.output("b") and canary is None and production
            return production != 1 and canary is None and all(
                serving_versions(p) == [production] for p in ports.values()) and production
        final = wait_until("the rollout to end", settled, procs)
        # Every replica's monitor has caught up with the new production's traffic.
        assert procs.stop(traffic) == 0, procs.output("traffic")[-3000:]
        summary = json.loads((d / "traffic.json").read_text())
        before = prom_query(prom, 'sum(mlops_monitor_checks_total{action="retrain"})', at=summary["shift_started_unix"])
        requests = [json.loads(p.read_text()) for p in sorted(d.glob("request-*.json"))]
        marks = {"world changes": summary["shift_started_unix"]}
        if requests:
            marks["retrain requested"] = parse_time(requests[0]["at"])
        drawn = timeline(prom, summary["batch_started_unix"][str(FIRST)], time.time(), marks, d / "timeline.svg")
        if os.environ.get("MLOPS_TIMELINE_SVG") and not corrupt:
            (pathlib.Path(os.environ["MLOPS_TIMELINE_SVG"])).write_bytes((d / "timeline.svg").read_bytes())
        requested = prom_query(prom, 'sum(mlops_monitor_retrain_alarms_total{outcome="requested"})')
        served = {n: procs.output(n) for n in ports}
    finally:
        procs.stop_all()
    exits = (d / "retrain.exits").read_text().split() if (d / "retrain.exits").exists() else []
    return {"final": final, "summary": summary, "drawn": drawn, "before": before, "requested": requested, "served": served,
            "requests": requests, "exits": exits, "retrain": (d / "retrain.out").read_text() if exits else ""}


def ready(port):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1)
        return True
    except OSError:
        return False


def ready_prom(base):
    try:
        urllib.request.urlopen(f"{base}/-/ready", timeout=1)
        return True
    except OSError:
        return False


def serving_versions(port):
    """The versions a replica routes to now (its model metadata)."""
    try:
        meta = get_json(f"http://127.0.0.1:{port}/v2/models/fraud")
    except OSError:
        return None
    return sorted(int(v) for v in meta.get("versions", []))


def parse_time(text):
    """An RFC 3339 UTC time (`...Z`) as unix seconds."""
    import datetime
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def check_common(r):
    s = r["summary"]
    assert s["failed"] == 0 and s["labels_failed"] == 0, s["first_errors"]
    assert s["shift_started_unix"] is not None
    # No retrain alarm before the change (no replica had a retrain check by then).
    assert all(v == 0 for _, v in r["before"]), r["before"]
    # Exactly one retrain request, claimed once across both replicas, run once by the hook.
    assert len(r["requests"]) == 1, r["requests"]
    assert [v for _, v in r["requested"]] == [1.0], r["requested"]
    assert len(r["exits"]) == 1, r["exits"]
    request = r["requests"][0]
    assert request["model"] == "fraud" and request["version"] == 1 and request["sequence"] == 1
    at = parse_time(request["at"])
    # Within the first windows of the new world: before its fourth batch started.
    assert s["shift_started_unix"] - 1 <= at <= s["batch_started_unix"][str(SHIFT + 4)], (request["at"], s)
    return request


def check_promoted(r, registry):
    request = check_common(r)
    assert r["exits"] == ["0"], r["retrain"]
    assert r["final"] == 2
    from mlops.registry import Registry
    v2 = Registry(registry).versions("fraud")[1]
    # Registered from the logged rows of the request's window (the retrain job records it).
    assert v2["version"] == 2
    assert request["window"]["from"][:19] in json.dumps(v2), v2
    served = r["served"]["a"] + r["served"]["b"]
    for step in ["rollout: start", "rollout: advance", "rollout: promote"]:
        assert step in served, served[-3000:]
    # The timeline shows both versions serving, and the old one's drift.
    assert {"1", "2"} <= set(r["drawn"]["requests/s"]), r["drawn"]["requests/s"].keys()
    assert any(v == 1.0 for _, v in r["drawn"]["drift verdict (1 = drift)"].get("1", [])), r["drawn"]


def check_rolled_back(r, registry):
    check_common(r)
    assert r["exits"] == ["0"], r["retrain"]
    assert alias(registry, "production") == 1
    served = r["served"]["a"] + r["served"]["b"]
    assert "rollback" in served and "promote" not in served, served[-3000:]


def test_the_loop_closes_across_processes_on_a_folder(tmp_path):
    registry, log = str(tmp_path / "reg"), str(tmp_path / "log")
    check_promoted(run_loop(tmp_path / "run", registry, log, corrupt=False), registry)


def test_corrupt_labels_in_the_log_are_rolled_back_on_live_labels(tmp_path):
    registry, log = str(tmp_path / "reg"), str(tmp_path / "log")
    check_rolled_back(run_loop(tmp_path / "run", registry, log, corrupt=True), registry)


def test_the_loop_closes_across_processes_on_moto_s3(tmp_path, monkeypatch):
    with moto_s3(monkeypatch, "loop"):
        registry, log = "s3://loop/registry", "s3://loop/log"
        check_promoted(run_loop(tmp_path / "run", registry, log, corrupt=False), registry)
