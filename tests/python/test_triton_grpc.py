"""Triton's gRPC client (`tritonclient[grpc]`) against `examples/serve --grpc-addr`, beside the
REST port: health, metadata, inference equal to REST's to the bit, errors as gRPC status
codes (with the REST answer's message), the same tokens, a message past the body limit
refused, and the server healthy after garbage on its gRPC port. The server is stopped by PID."""
import os
import socket
import subprocess
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from serving import EXAMPLES, free_port, start_serve


def wait_grpc(url, proc, seconds=60):
    deadline = time.time() + seconds
    while True:
        try:
            if grpcclient.InferenceServerClient(url=url).is_server_live():
                return
        except InferenceServerException:
            pass
        if proc.poll() is not None or time.time() > deadline:
            out, err = proc.communicate(timeout=5)
            pytest.fail(f"the gRPC server did not start: {out.decode()} {err.decode()}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    d = tmp_path_factory.mktemp("grpc")
    port = free_port()
    proc, rest = start_serve(d, "--poll-seconds", "0.2", "--grpc-addr", f"127.0.0.1:{port}", "--body-limit", "65536")
    grpc = f"127.0.0.1:{port}"
    wait_grpc(grpc, proc)
    yield rest, grpc, d
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out.decode()
    assert b"stopped" in out


def rows(n, seed=7):
    return np.random.default_rng(seed).normal(size=(n, 30)).astype(np.float32)


def grpc_infer(client, x, datatype="FP32", outputs=("probability", "label"), **kw):
    tensor = grpcclient.InferInput("input", list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    asked = [grpcclient.InferRequestedOutput(name) for name in outputs]
    return client.infer("fraud", [tensor], outputs=asked, **kw)


def test_health_metadata_and_inference_agree_with_rest(servers):
    rest, grpc, _ = servers
    client = grpcclient.InferenceServerClient(url=grpc)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("fraud") and client.is_model_ready("fraud", model_version="1")
    assert client.get_server_metadata().name == "mlops"
    meta = client.get_model_metadata("fraud", as_json=True)
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "30"]}]
    assert [o["name"] for o in meta["outputs"]] == ["probability", "label"] and meta["versions"] == ["1"]
    x = rows(64)
    answer = grpc_infer(client, x, request_id="grpc-1")
    p, labels = answer.as_numpy("probability"), answer.as_numpy("label")
    assert p.shape == (64,) and p.dtype == np.float32 and labels.dtype == np.int64
    assert answer.get_response().id == "grpc-1" and answer.get_response().model_version == "1"
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    expected = httpclient.InferenceServerClient(url=rest).infer("fraud", [tensor]).as_numpy("probability")
    np.testing.assert_array_equal(p, expected)
    np.testing.assert_array_equal(labels, (p >= 0.5).astype(np.int64))
    # FP64 and FP16 inputs score as REST scores them; one output alone when asked.
    np.testing.assert_allclose(grpc_infer(client, x.astype(np.float64), "FP64").as_numpy("probability"), p, atol=1e-6)
    only = grpc_infer(client, x, outputs=("label",))
    assert only.as_numpy("probability") is None and (only.as_numpy("label") == labels).all()
    np.testing.assert_allclose(grpc_infer(client, x.astype(np.float16), "FP16").as_numpy("probability"), p, atol=5e-3)
    # A version in the call forces it.
    assert grpc_infer(client, x[:1], model_version="1").get_response().model_version == "1"


def error_of(call):
    with pytest.raises(InferenceServerException) as e:
        call()
    return e.value.status(), e.value.message()


def test_errors_are_status_codes_with_the_rest_message(servers):
    _, grpc, _ = servers
    client = grpcclient.InferenceServerClient(url=grpc)
    code, message = error_of(lambda: grpc_infer(client, rows(2)[:, :29]))
    assert code == "StatusCode.INVALID_ARGUMENT" and "expected [batch, 30]" in message, message
    code, message = error_of(lambda: client.infer("nope", [grpcclient.InferInput("input", [1, 30], "FP32").set_data_from_numpy(rows(1))]))
    assert code == "StatusCode.NOT_FOUND" and "unknown model" in message, message
    code, message = error_of(lambda: grpc_infer(client, rows(1), model_version="9"))
    assert code == "StatusCode.NOT_FOUND" and "unknown version" in message, message
    code, message = error_of(lambda: grpc_infer(client, rows(1), outputs=("probability", "probability")))
    assert code == "StatusCode.INVALID_ARGUMENT" and "asked for twice" in message, message
    nan = rows(1)
    nan[0, 3] = np.nan
    code, message = error_of(lambda: grpc_infer(client, nan))
    assert code == "StatusCode.INVALID_ARGUMENT" and "NaN" in message, message
    code, message = error_of(lambda: grpc_infer(client, rows(1), request_id="x" * 10_000))
    assert code == "StatusCode.INVALID_ARGUMENT" and "request id" in message, message
    # A message past --body-limit (64 KiB) is refused before it is decoded.
    code, message = error_of(lambda: grpc_infer(client, rows(1000)))
    assert code == "StatusCode.OUT_OF_RANGE" and "65536 bytes" in message, (code, message)
    # Garbage on the gRPC port is dropped; the server keeps serving.
    for junk in [b"GET / HTTP/1.1\r\n\r\n", os.urandom(4096), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(512)]:
        host, port = grpc.split(":")
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(junk)
            s.settimeout(2)
            try:
                s.recv(1024)
            except (socket.timeout, ConnectionResetError):
                pass
    assert client.is_server_ready() and grpc_infer(client, rows(1)).as_numpy("probability").shape == (1,)


def test_tokens_guard_every_call_but_health(servers, tmp_path):
    _, _, d = servers
    port = free_port()
    env = dict(os.environ, MLOPS_TOKENS="s3cret-0123456789abcdef,other-0123456789abcdef")
    rest_port = free_port()
    proc = subprocess.Popen([str(EXAMPLES / "serve"), "--registry", str(d / "reg"), "--model", "fraud",
                             "--addr", f"127.0.0.1:{rest_port}", "--grpc-addr", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        url = f"127.0.0.1:{port}"
        wait_grpc(url, proc)
        client = grpcclient.InferenceServerClient(url=url)
        assert client.is_server_live() and client.is_server_ready()
        for headers in [None, {"authorization": "Bearer wrong"}, {"authorization": "s3cret-0123456789abcdef"}]:
            code, message = error_of(lambda: grpc_infer(client, rows(1), headers=headers))
            assert code == "StatusCode.UNAUTHENTICATED" and message == "unauthorized", (code, message)
            code, _ = error_of(lambda: client.get_model_metadata("fraud", headers=headers))
            assert code == "StatusCode.UNAUTHENTICATED"
        ok = grpc_infer(client, rows(2), headers={"authorization": "bearer other-0123456789abcdef"})
        assert ok.as_numpy("probability").shape == (2,)
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
