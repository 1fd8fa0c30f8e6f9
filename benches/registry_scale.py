#!/usr/bin/env python3
"""Registry cost against the number of versions, as an operator sees it: one more
`examples/registry register` and one `examples/registry download NAME @production` (each a
new process, start included; median of --runs) on a model with 100, 10,000 and 100,000
versions, on local disk and on a moto S3 server, in one run, with ratios to the smallest size.

    .venv/bin/python benches/registry_scale.py [--sizes 100,10000,100000] [--runs 15]
        [--binary target/debug/examples/registry] [--baseline OTHER_BINARY]
        [--backends local,s3]

The versions past the first are written by a bulk helper (copies of version 1's record with
the number changed, straight into the store: what an import leaves, no hint moved past them);
one registration through the CLI then follows before each build's timed runs (it finds the
head by probing and moves the hint). `--baseline` times a second build of the CLI (say, one
built from an earlier commit) on the same registries, side by side.

Needs `examples/registry` built with the `aws` feature (scripts/test.sh's test build leaves
one in target/debug/examples; `cargo build --release --example registry --features
mlops/aws` for release numbers) and moto_server in .venv for S3.
"""
import argparse
import concurrent.futures
import json
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL = "fraud"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """moto_server on 127.0.0.1 on a port picked here; stopped by PID."""

    def __init__(self):
        self.port = free_port()
        binary = os.environ.get("MLOPS_MOTO", str(ROOT / ".venv/bin/moto_server"))
        self.proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        self.env = {
            "AWS_ENDPOINT": f"http://127.0.0.1:{self.port}",
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
        }
        import boto3

        self.s3 = boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT"], region_name="us-east-1",
                               aws_access_key_id="testing", aws_secret_access_key="testing")

    def bucket(self, name):
        urllib.request.urlopen(urllib.request.Request(f"{self.env['AWS_ENDPOINT']}/{name}", method="PUT"))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Failed(Exception):
    """A CLI call that exited non-zero (a baseline past its store deadline, say)."""


def cli(binary, registry, env, *args):
    out = subprocess.run([binary, "--registry", registry, *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise Failed(f"{' '.join(args[:1])} exited {out.returncode}: {out.stderr.strip().splitlines()[-1:]}")
    return out.stdout


def timed(binary, registry, env, args, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        cli(binary, registry, env, *args)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bulk_local(root, n):
    versions = pathlib.Path(root) / "models" / MODEL / "versions"
    record = json.loads((versions / "0000000001.json").read_text())
    for v in range(2, n + 1):
        record["version"] = v
        (versions / f"{v:010}.json").write_text(json.dumps(record))


def bulk_s3(moto, bucket, prefix, n):
    key = f"{prefix}/models/{MODEL}/versions/0000000001.json"
    record = json.loads(moto.s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def put(v):
        r = dict(record, version=v)
        moto.s3.put_object(Bucket=bucket, Key=f"{prefix}/models/{MODEL}/versions/{v:010}.json",
                           Body=json.dumps(r).encode())

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(2, n + 1)))


def fill(binary, backend, size, moto, work):
    """A registry holding `size` versions of MODEL with `production` at 1: (URL, env, folder)."""
    env = dict(os.environ, MLOPS_ACTOR="bench")
    model_dir = work / "model"
    root = None
    if backend == "local":
        root = work / f"reg-{size}"
        registry = str(root)
    else:
        env.update(moto.env)
        bucket = f"bench-{size}"
        moto.bucket(bucket)
        registry = f"s3://{bucket}/reg"
    cli(binary, registry, env, "register", MODEL, str(model_dir))
    if backend == "local":
        bulk_local(root, size)
    else:
        bulk_s3(moto, bucket, "reg", size)
    cli(binary, registry, env, "alias", MODEL, "production", "1")
    return registry, env, root


def measure(binary, registry, env, runs, work):
    """Median seconds of one more registration and of a load of @production, each a process."""
    model_dir = work / "model"
    cli(binary, registry, env, "register", MODEL, str(model_dir))  # untimed: moves the hint
    register = timed(binary, registry, env, ["register", MODEL, str(model_dir)], runs)
    load = timed(binary, registry, env, ["download", MODEL, "@production", str(work / "download")], runs)
    return register, load


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,10000,100000")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--binary", default=str(ROOT / "target/debug/examples/registry"))
    ap.add_argument("--baseline", help="another build of examples/registry, timed beside --binary")
    ap.add_argument("--backends", default="local,s3")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    binaries = [("mlops", a.binary)] + ([("baseline", a.baseline)] if a.baseline else [])
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"CPU: {cpu}; {os.cpu_count()} cores; median of {a.runs} process runs each")
    moto = Moto() if "s3" in a.backends else None
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = pathlib.Path(tmp)
            (work / "model").mkdir()
            (work / "model" / "model.bin").write_bytes(os.urandom(4096))
            for backend in a.backends.split(","):
                for size in sizes:
                    t0 = time.perf_counter()
                    registry, env, root = fill(a.binary, backend, size, moto, work)
                    print(f"  {backend:5} {size:>7} versions written in {time.perf_counter() - t0:.0f} s", flush=True)
                    for name, binary in binaries:
                        try:
                            register, load = measure(binary, registry, env, a.runs, work)
                        except Failed as e:
                            print(f"  {backend:5} {name:8} {size:>7} versions: failed ({e})", flush=True)
                            rows.append((backend, name, size, None, None))
                            continue
                        rows.append((backend, name, size, register, load))
                        print(f"  {backend:5} {name:8} {size:>7} versions: register {register * 1e3:7.1f} ms, "
                              f"load @production {load * 1e3:7.1f} ms", flush=True)
                    if root is not None:
                        shutil.rmtree(root)
    finally:
        if moto:
            moto.stop()
    print("\n| store | build | versions | register (ms) | x smallest | load @production (ms) | x smallest |")
    print("|---|---|---|---|---|---|---|")
    for backend, name, size, register, load in rows:
        base = next(r for r in rows if r[0] == backend and r[1] == name)
        if register is None or base[3] is None:
            print(f"| {backend} | {name} | {size:,} | failed | | | |")
            continue
        print(f"| {backend} | {name} | {size:,} | {register * 1e3:.1f} | {register / base[3]:.2f} | "
              f"{load * 1e3:.1f} | {load / base[4]:.2f} |")


if __name__ == "__main__":
    main()
