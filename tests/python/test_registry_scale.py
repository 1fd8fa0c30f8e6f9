"""The registry across processes and at size, through `examples/registry` as an operator runs
it: 16 processes registering one model at once get versions 1..16 on local disk and on a real
moto S3 server; a model of 3,000 bulk-written versions (no hint past version 1) gets 3,001
next, and its hint follows; `list --after/--limit` pages through every version once;
`list --latest` finds the highest live version."""
import json
import subprocess

import pytest

from serving import EXAMPLES, moto_s3

REGISTRY = EXAMPLES / "registry"


def cli(registry, *args, check=True):
    out = subprocess.run([str(REGISTRY), "--registry", str(registry), *[str(a) for a in args]],
                         capture_output=True, text=True, timeout=300)
    if check:
        assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}"
    return out


@pytest.fixture()
def model(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "model.bin").write_bytes(b"\x07" * 64)
    return d


def sixteen_at_once(registry, model):
    procs = [subprocess.Popen([str(REGISTRY), "--registry", str(registry), "--json", "register", "fraud", str(model),
                               "--metric", f"roc_auc=0.{i:02}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(16)]
    versions = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        versions.append(json.loads(out)["version"])
    assert sorted(versions) == list(range(1, 17))


def pages(registry, limit):
    seen, after = [], 0
    while True:
        out = cli(registry, "--json", "list", "fraud", "--after", after, "--limit", limit)
        seen += [v["version"] for v in json.loads(out.stdout)]
        if "next page with --after" not in out.stderr:
            return seen
        after = int(out.stderr.rsplit("--after", 1)[1])


def test_sixteen_processes_get_versions_1_to_16_on_disk_and_s3(tmp_path, model, monkeypatch):
    sixteen_at_once(tmp_path / "reg", model)
    assert pages(tmp_path / "reg", 5) == list(range(1, 17))
    with moto_s3(monkeypatch, "scale"):
        sixteen_at_once("s3://scale/reg", model)
        assert pages("s3://scale/reg", 7) == list(range(1, 17))
        cli("s3://scale/reg", "delete", "fraud", 16, "--why", "bad")
        latest = json.loads(cli("s3://scale/reg", "--json", "list", "fraud", "--latest").stdout)
        assert [v["version"] for v in latest] == [15]


def test_bulk_written_versions_are_found_and_the_hint_follows(tmp_path, model):
    reg = tmp_path / "reg"
    cli(reg, "register", "fraud", model)
    versions = reg / "models" / "fraud" / "versions"
    record = json.loads((versions / "0000000001.json").read_text())
    for v in range(2, 3001):
        record["version"] = v
        (versions / f"{v:010}.json").write_text(json.dumps(record))
    assert json.loads((versions / "head.json").read_text()) == {"last": 1}
    out = cli(reg, "--json", "register", "fraud", model)
    assert json.loads(out.stdout)["version"] == 3001
    assert json.loads((versions / "head.json").read_text()) == {"last": 3001}
    # A hint naming a version that does not exist is passed over, and repaired.
    (versions / "head.json").write_text('{"last": 99999}')
    assert json.loads(cli(reg, "--json", "register", "fraud", model).stdout)["version"] == 3002
    assert json.loads((versions / "head.json").read_text()) == {"last": 3002}
    last = json.loads(cli(reg, "--json", "list", "fraud", "--after", 2995, "--limit", 1000).stdout)
    assert [v["version"] for v in last] == list(range(2996, 3003))
    out = cli(reg, "list", "fraud", "--limit", 1001, check=False)
    assert out.returncode == 1 and "page limit" in out.stderr
    out = cli(reg, "list", "fraud", "--latest", "--after", 3, check=False)
    assert out.returncode == 2
