"""Starting `examples/serve.rs` for a test: the seed's network (written by
`examples/engine_bench`) registered as `fraud` v1 under `production` in a registry folder made
with `examples/registry`, served on a port picked on 127.0.0.1. The examples come from the test
command's build (`scripts/test.sh`)."""
import contextlib
import os
import pathlib
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "target" / "debug" / "examples"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(d, *extra, versions=1):
    """Registers the seed's network under `d` (as versions 1 to `versions`) and starts `serve`
    with `extra` arguments; returns the process (stdout and stderr piped) and its `host:port`
    once it answers."""
    for name in ["serve", "registry", "engine_bench"]:
        if not (EXAMPLES / name).exists():
            pytest.fail(f"{EXAMPLES / name} is missing: run scripts/test.sh, or `cargo build --examples --features http`")
    run = lambda *args: subprocess.run([str(a) for a in args], check=True, capture_output=True, timeout=120)
    run(EXAMPLES / "engine_bench", "--out", d / "model", "--seconds", "0.01")
    for _ in range(versions):
        run(EXAMPLES / "registry", "--registry", d / "reg", "register", "fraud", d / "model")
    run(EXAMPLES / "registry", "--registry", d / "reg", "alias", "fraud", "production", "1")
    port = free_port()
    proc = subprocess.Popen(
        [str(EXAMPLES / "serve"), "--registry", str(d / "reg"), "--model", "fraud", "--addr", f"127.0.0.1:{port}",
         *[str(a) for a in extra]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://{url}/v2/health/live", timeout=1)
            return proc, url
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None or time.time() > deadline:
                out, err = proc.communicate(timeout=5)
                pytest.fail(f"the server did not start: {out.decode()} {err.decode()}")
            time.sleep(0.1)


def serve_model(reg, name):
    """Starts `serve` on the `production` alias of `name` in the registry folder `reg`; returns
    the process (stdout and stderr piped) and its `host:port` once it is ready."""
    port = free_port()
    proc = subprocess.Popen([str(EXAMPLES / "serve"), "--registry", str(reg), "--model", name, "--addr", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1)
            return proc, f"127.0.0.1:{port}"
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None or time.time() > deadline:
                out, err = proc.communicate(timeout=5)
                pytest.fail(f"the server did not start: {out.decode()} {err.decode()}")
            time.sleep(0.1)


def wait_for_port(port, what, seconds=60):
    """Waits until something listens on 127.0.0.1:`port` (`what`, named if it never does)."""
    deadline = time.time() + seconds
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            assert time.time() < deadline, f"{what} did not start"
            time.sleep(0.2)


@contextlib.contextmanager
def moto_s3(monkeypatch, bucket):
    """A real moto S3 server on 127.0.0.1 (a port picked here) with `bucket` made, the AWS_*
    variables pointing there for this test (its children inherit them); stopped by PID."""
    port = free_port()
    binary = os.environ.get("MLOPS_MOTO", str(ROOT / ".venv/bin/moto_server"))
    server = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, "moto_server")
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/{bucket}", method="PUT"))
        for k, v in {
            "AWS_ENDPOINT": f"http://127.0.0.1:{port}",
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
        }.items():
            monkeypatch.setenv(k, v)
        yield port
    finally:
        server.terminate()  # stopped by PID
        server.wait(timeout=30)
