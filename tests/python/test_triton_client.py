"""Triton's Python client (`tritonclient[http]`) against the running server.

`examples/serve.rs` serves the seed's network (written by `examples/engine_bench`) from a
registry folder made with `examples/registry`, on a port this test picks on 127.0.0.1; the
server is stopped by its PID (SIGTERM, graceful). The examples come from the test command's
build (`scripts/test.sh` builds them with the `http` feature)."""
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from serving import EXAMPLES, free_port, start_serve


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("triton")
    proc, url = start_serve(d, "--poll-seconds", "0.2")
    yield url, d
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out.decode()
    assert b"stopped" in out


def rows(n):
    rng = np.random.default_rng(7)
    return rng.normal(size=(n, 30)).astype(np.float32)


def infer(client, x, binary, request_id=""):
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in ["probability", "label"]]
    return client.infer("fraud", [tensor], outputs=outputs, request_id=request_id)


def test_health_and_metadata(server):
    server, _ = server
    client = httpclient.InferenceServerClient(url=server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("fraud")
    assert client.is_model_ready("fraud", model_version="1")
    meta = client.get_server_metadata()
    assert "binary_tensor_data" in meta["extensions"]
    model = client.get_model_metadata("fraud")
    assert model["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 30]}]
    assert [o["name"] for o in model["outputs"]] == ["probability", "label"]
    assert model["versions"] == ["1"]


def test_json_and_binary_inference_agree_on_a_batch_of_4(server):
    server, _ = server
    client = httpclient.InferenceServerClient(url=server)
    x = rows(4)
    as_json = infer(client, x, binary=False, request_id="req-7")
    as_binary = infer(client, x, binary=True)
    p_json, p_bin = as_json.as_numpy("probability"), as_binary.as_numpy("probability")
    assert p_json.shape == (4,) and p_json.dtype == np.float32
    np.testing.assert_allclose(p_json, p_bin, rtol=0, atol=1e-7)
    assert ((p_bin > 0) & (p_bin < 1)).all()
    labels = as_binary.as_numpy("label")
    assert labels.dtype == np.int64 and (labels == (p_bin >= 0.5)).all()
    response = as_json.get_response()
    assert response["id"] == "req-7" and response["model_name"] == "fraud" and response["model_version"] == "1"
    assert "id" not in as_binary.get_response()
    # All outputs, binary by default (no outputs named).
    tensor = httpclient.InferInput("input", [4, 30], "FP32")
    tensor.set_data_from_numpy(x)
    everything = client.infer("fraud", [tensor])
    np.testing.assert_allclose(everything.as_numpy("probability"), p_bin, rtol=0, atol=0)


def test_errors_are_4xx_with_an_error_message(server):
    server, _ = server
    client = httpclient.InferenceServerClient(url=server)
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("nope")
    assert e.value.status() == "404" and "nope" in e.value.message()
    x = rows(2)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as e:
        client.infer("nope", [tensor])
    assert e.value.status() == "404"
    wrong = httpclient.InferInput("input", [2, 29], "FP32")
    wrong.set_data_from_numpy(x[:, :29].copy())
    with pytest.raises(InferenceServerException) as e:
        client.infer("fraud", [wrong])
    assert e.value.status() == "400" and "[batch, 30]" in e.value.message()
    for body in [b"{not json", b'{"inputs": 5}', b"\x00\xff" * 50]:
        request = urllib.request.Request(f"http://{server}/v2/models/fraud/infer", data=body, method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(request, timeout=5)
        assert e.value.code == 400
        assert "error" in json.loads(e.value.read())


def test_random_and_truncated_bodies_never_get_a_5xx_and_the_server_stays_healthy(server):
    server, _ = server
    rng = np.random.default_rng(11)
    good = json.dumps({"id": "x", "inputs": [{"name": "input", "shape": [2, 30], "datatype": "FP32", "data": rows(2).tolist()}]}).encode()
    bodies = [rng.bytes(int(rng.integers(0, 400))) for _ in range(100)]
    bodies += [good[: int(rng.integers(0, len(good)))] for _ in range(100)]
    for _ in range(100):
        mutated = bytearray(good)
        for _ in range(3):
            mutated[int(rng.integers(0, len(mutated)))] = int(rng.integers(0, 256))
        bodies.append(bytes(mutated))
    statuses = []
    for i, body in enumerate(bodies):
        headers = {"Inference-Header-Content-Length": str(int(rng.integers(0, 600)))} if i % 7 == 0 else {}
        request = urllib.request.Request(f"http://{server}/v2/models/fraud/infer", data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                statuses.append(r.status)
        except urllib.error.HTTPError as e:
            statuses.append(e.code)
            assert "error" in json.loads(e.read()), body
    assert all(s < 500 for s in statuses), sorted(set(statuses))
    assert statuses.count(400) > 250
    client = httpclient.InferenceServerClient(url=server)
    assert client.is_server_live() and client.is_model_ready("fraud")
    assert infer(client, rows(1), binary=True).as_numpy("probability").shape == (1,)


def test_moving_production_reloads_without_a_failed_request(server):
    import threading

    url, d = server
    client = httpclient.InferenceServerClient(url=url, concurrency=1)
    run = lambda *args: subprocess.run([str(a) for a in args], check=True, capture_output=True, timeout=120)
    run(EXAMPLES / "registry", "--registry", d / "reg", "register", "fraud", d / "model")
    versions, failures, stop = [], [], threading.Event()

    def hammer():
        c = httpclient.InferenceServerClient(url=url)
        while not stop.is_set():
            try:
                versions.append(infer(c, rows(1), binary=True).get_response()["model_version"])
            except Exception as e:  # noqa: BLE001 - any failure is what this test looks for
                failures.append(repr(e))

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        time.sleep(0.5)
        run(EXAMPLES / "registry", "--registry", d / "reg", "alias", "fraud", "production", "2", "--expect", "1")
        deadline = time.time() + 30
        while "2" not in versions[-20:] and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
    assert not failures, failures[:3]
    assert versions[0] == "1" and versions[-1] == "2", (versions[:3], versions[-3:])
    # Once switched, never back.
    first_two = versions.index("2")
    assert set(versions[first_two:]) == {"2"}
    assert client.get_model_metadata("fraud")["versions"] == ["2"]


def test_tokens_from_the_environment_guard_everything_but_health(server, tmp_path):
    _, d = server
    port = free_port()
    token = "env-token-0123456789abcdef"
    env = dict(os.environ, MLOPS_TOKENS=f"other-token-0123456789,{token}")
    proc = subprocess.Popen(
        [str(EXAMPLES / "serve"), "--registry", str(d / "reg"), "--model", "fraud", "--addr", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    try:
        url = f"127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=1)
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None and time.time() < deadline, "the server did not start"
                time.sleep(0.1)
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {token[:-1]}"}, {"Authorization": token}]:
            client = httpclient.InferenceServerClient(url=url)
            with pytest.raises(InferenceServerException) as e:
                client.get_model_metadata("fraud", headers=headers)
            assert e.value.status() == "401" and e.value.message() == "unauthorized"
        client = httpclient.InferenceServerClient(url=url)
        assert client.is_server_live() and client.is_server_ready()
        good = {"Authorization": f"Bearer {token}"}
        assert client.get_model_metadata("fraud", headers=good)["name"] == "fraud"
        tensor = httpclient.InferInput("input", [1, 30], "FP32")
        tensor.set_data_from_numpy(rows(1))
        assert client.infer("fraud", [tensor], headers=good).as_numpy("probability").shape == (1,)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_an_empty_token_list_is_refused_and_the_bearer_scheme_is_case_insensitive(server, tmp_path):
    _, d = server
    base = [str(EXAMPLES / "serve"), "--registry", str(d / "reg"), "--model", "fraud", "--addr", "127.0.0.1:0"]
    empty = tmp_path / "tokens.txt"
    empty.write_text("\n \n")
    for extra, env in [(["--tokens-file", str(empty)], {}), ([], {"MLOPS_TOKENS": ","})]:
        done = subprocess.run(base + extra, capture_output=True, timeout=60, env=dict(os.environ, **env))
        assert done.returncode == 2, done.stderr.decode()
        assert b"at least one bearer token" in done.stderr, done.stderr.decode()
    port = free_port()
    token = "env-token-0123456789abcdef"
    proc = subprocess.Popen(
        [str(EXAMPLES / "serve"), "--registry", str(d / "reg"), "--model", "fraud", "--addr", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, MLOPS_TOKENS=token),
    )
    try:
        url = f"127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=1)
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None and time.time() < deadline, "the server did not start"
                time.sleep(0.1)
        client = httpclient.InferenceServerClient(url=url)
        for scheme in ["Bearer", "bearer", "BEARER"]:
            assert client.get_model_metadata("fraud", headers={"Authorization": f"{scheme} {token}"})["name"] == "fraud"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
