"""An experiment run by the V2 server (`examples/serve.rs --experiment`), driven with Triton's
Python client: three versions of the seed's network in a registry folder, split 50/30/20,
sticky by `mlops-request-key`, forced by `mlops-variant`; labels posted back; two replicas
hand in their windows to one state document in the registry (`experiment_NAME`); the
experiment's series on `/metrics`; a bad experiment file, a missing version and a changed
configuration under the same name are refused at start (exit 2) with the field named.

Servers listen on 127.0.0.1 on ports picked here and are stopped by PID (SIGTERM)."""
import json
import pathlib
import subprocess
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient

from serving import EXAMPLES, free_port, start_serve

EXPERIMENT = """
name = "ab"
analysis_seconds = 1
[[arms]]
name = "control"
version = 1
percent = 50
[[arms]]
name = "b"
version = 2
percent = 30
[[arms]]
name = "c"
version = 3
percent = 20
"""


def stop(proc):
    proc.terminate()
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, (out.decode(), err.decode())
    return out.decode()


def start_replica(d, experiment):
    """A second server on `d`'s registry (already holding the versions)."""
    port = free_port()
    proc = subprocess.Popen(
        [str(EXAMPLES / "serve"), "--registry", str(d / "reg"), "--model", "fraud", "--addr", f"127.0.0.1:{port}",
         "--experiment", str(experiment), "--poll-seconds", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1)
            return proc, f"127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                out, err = proc.communicate(timeout=5)
                pytest.fail(f"the replica did not start: {out.decode()} {err.decode()}")
            time.sleep(0.1)


def records(d):
    """The experiment's state log, oldest first (its numbered entries; `head.json` beside them
    is the log's hint)."""
    folder = d / "reg" / "models" / "fraud" / "state" / "experiment_ab"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("[0-9]*.json"))]


def infer(client, x, key=None, force=None, request_id=""):
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=False)
    headers = {}
    if key is not None:
        headers["mlops-request-key"] = key
    if force is not None:
        headers["mlops-variant"] = force
    result = client.infer("fraud", [tensor], request_id=request_id, headers=headers)
    return result.get_response()


def post_label(url, request_id, y):
    body = json.dumps({"id": request_id, "labels": [y]}).encode()
    request = urllib.request.Request(f"http://{url}/v2/models/fraud/labels", data=body,
                                     headers={"content-type": "application/json"})
    return json.loads(urllib.request.urlopen(request, timeout=10).read())


def send(url, n, prefix, rng):
    """`n` keyed requests (60 users) with their labels; the version each user got."""
    client = httpclient.InferenceServerClient(url=url)
    seen = {}
    for i in range(n):
        x = rng.normal(size=(1, 30)).astype(np.float32)
        key = f"user{i % 60}"
        r = infer(client, x, key=key, request_id=f"{prefix}{i}")
        seen.setdefault(key, set()).add(r["model_version"])
        assert post_label(url, f"{prefix}{i}", float(rng.random() < 0.5))["joined"]
    return seen


def test_an_experiment_served_across_two_replicas(tmp_path):
    experiment = tmp_path / "experiment.toml"
    experiment.write_text(EXPERIMENT)
    proc, url = start_serve(tmp_path, "--experiment", experiment, "--poll-seconds", "0.1", versions=3)
    replica = None
    try:
        rng = np.random.default_rng(11)
        seen = send(url, 600, "a", rng)
        # Sticky: a user's requests all went to one arm; every arm got users.
        assert all(len(v) == 1 for v in seen.values()), seen
        versions = [next(iter(v)) for v in seen.values()]
        assert set(versions) == {"1", "2", "3"}, versions
        # The header forces an arm by name.
        client = httpclient.InferenceServerClient(url=url)
        forced = infer(client, np.zeros((1, 30), np.float32), force="c")
        assert forced["model_version"] == "3" and forced["parameters"]["variant"] == "c"
        # A second replica joins the same experiment and hands in its own windows.
        replica, url2 = start_replica(tmp_path, experiment)
        send(url2, 300, "b", rng)
        deadline = time.time() + 30
        while True:
            log = records(tmp_path)
            last = log[-1]["value"]
            replicas = {w.split("-")[0] for w in last["windows"]}
            requests = sum(a["requests"] for a in last["state"]["arms"])
            if len(replicas) == 2 and requests >= 851:
                break
            assert time.time() < deadline, (replicas, requests, log[-1])
            time.sleep(0.2)
        state = last["state"]
        # Every request (600 + the forced one + 300) is counted at most once (the few answered
        # between a window's snapshot and its new routes are not counted), and the record keeps
        # the configuration it runs.
        labeled = sum(a["labeled"] for a in state["arms"])
        assert requests <= 901 and 0 < labeled <= 900, (requests, labeled)
        assert last["config"]["name"] == "ab" and len(last["config"]["arms"]) == 3
        assert state["decisions"][-1]["outcome"] == "continue"
        assert log[0]["why"] == "experiment started"
        metrics = urllib.request.urlopen(f"http://{url}/metrics", timeout=10).read().decode()
        assert 'mlops_serve_experiment_traffic_percent{experiment="ab",arm="b",version="2"} 30' in metrics, metrics
        assert 'mlops_serve_experiment_decisions_total{experiment="ab",outcome="continue"}' in metrics
        # A changed experiment under the same name is refused at start, naming both digests.
        changed = tmp_path / "changed.toml"
        changed.write_text(EXPERIMENT.replace("analysis_seconds = 1", "analysis_seconds = 2"))
        run = subprocess.run(
            [str(EXAMPLES / "serve"), "--registry", str(tmp_path / "reg"), "--model", "fraud",
             "--addr", f"127.0.0.1:{free_port()}", "--experiment", str(changed)],
            capture_output=True, timeout=60)
        assert run.returncode == 2, run
        assert b"digest" in run.stderr and b"another name" in run.stderr, run.stderr
    finally:
        if replica is not None:
            stop(replica)
        stop(proc)


@pytest.mark.parametrize("text, named", [
    (EXPERIMENT.split("[[arms]]\nname = \"b\"")[0].replace("percent = 50", "percent = 100"), b"arms"),
    (EXPERIMENT.replace("percent = 20", "percent = 25"), b"percent"),
    (EXPERIMENT.replace("version = 3", "version = 2"), b"arms[2].version"),
    (EXPERIMENT.replace("version = 3", "version = 7"), b"version 7 of model `fraud` not found"),
    (EXPERIMENT + "\nbogus = 1\n", b"bogus"),
])
def test_a_bad_experiment_is_refused_at_start(tmp_path, text, named):
    # The registry holds versions 1 to 3: start (and stop) a server once to make it.
    proc, _ = start_serve(tmp_path, "--poll-seconds", "0.2", versions=3)
    stop(proc)
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    run = subprocess.run(
        [str(EXAMPLES / "serve"), "--registry", str(tmp_path / "reg"), "--model", "fraud",
         "--addr", f"127.0.0.1:{free_port()}", "--experiment", str(bad)],
        capture_output=True, timeout=60)
    assert run.returncode == 2, run
    assert named in run.stderr, run.stderr
    assert not (tmp_path / "reg" / "models" / "fraud" / "state" / "experiment_ab").exists()
