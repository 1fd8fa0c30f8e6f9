"""The prediction log as its readers see it: `examples/serve.rs --log-predictions DIR` (built
by the test command with the `predlog` feature) serves requests with ids and gets their labels
back; after a graceful stop (SIGTERM by its PID) pyarrow reads `DIR/predictions` and
`DIR/labels` as Hive-partitioned Parquet datasets, as they are, and the labels join the
predictions by request id and row. The same traffic logged to `az://` on a real Azurite (Azure
Blob's emulator) reads back the same from its downloaded blobs."""
import json
import os
import pathlib
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from serving import ROOT, free_port, start_serve, wait_for_port


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def serve_and_label(d, log):
    """Serves 40 requests (1 to 3 rows each) with ids under a server logging to `log` (a
    folder or a store URL), posts the labels of 30 of them, stops the server by SIGTERM;
    returns what was sent, the labels and serve's output."""
    proc, url = start_serve(d, "--log-predictions", log)
    base = f"http://{url}"
    rng = np.random.default_rng(11)
    sent = {}
    labels = {}
    for i in range(40):
        x = rng.normal(size=(1 + i % 3, 30)).astype(np.float32)
        x[0, 0] = np.nan if i == 5 else x[0, 0]  # a NaN feature: refused (400), never logged
        answer = None
        try:
            answer = post(f"{base}/v2/models/fraud/infer", {
                "id": f"req-{i}",
                "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
            })
        except urllib.error.HTTPError as e:
            assert i == 5 and e.code == 400, e.read()
            continue
        p = next(o for o in answer["outputs"] if o["name"] == "probability")["data"]
        sent[f"req-{i}"] = (x, np.array(p, dtype=np.float32))
        if i % 4 != 0:
            y = [int((i + r) % 2) for r in range(x.shape[0])]
            assert post(f"{base}/v2/models/fraud/labels", {"id": f"req-{i}", "labels": y})["joined"]
            labels[f"req-{i}"] = y
    proc.terminate()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out.decode(), err.decode())
    return sent, labels, out.decode()


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """The log of `serve_and_label` in a folder: the folder, what was sent, the labels and
    serve's output."""
    d = tmp_path_factory.mktemp("predlog")
    sent, labels, out = serve_and_label(d, d / "log")
    return d / "log", sent, labels, out


def check_log(log, sent, labels):
    """pyarrow reads the log folder `log` as it is: every row as scored, labels joined by
    request id and row."""
    predictions = ds.dataset(log / "predictions", format="parquet", partitioning="hive").to_table()
    label_rows = ds.dataset(log / "labels", format="parquet", partitioning="hive").to_table()
    n_rows = sum(x.shape[0] for x, _ in sent.values())
    assert predictions.num_rows == n_rows
    assert label_rows.num_rows == sum(len(y) for y in labels.values())
    assert set(predictions.column("model").to_pylist()) == {"fraud"}
    assert pa.types.is_timestamp(predictions.schema.field("time").type)
    assert predictions.schema.field("time").type.tz == "UTC"
    features = [f for f in predictions.column_names if f not in
                ("request_id", "row", "time", "version", "variant", "prediction", "model", "hour")]
    assert len(features) == 30
    assert set(predictions.column("version").to_pylist()) == {1}
    # Every row as it was scored: features and the probability the client got back.
    by_id = predictions.to_pandas().sort_values(["request_id", "row"]).groupby("request_id")
    for request_id, rows in by_id:
        x, p = sent[request_id]
        np.testing.assert_allclose(rows[features].to_numpy(np.float32), x, rtol=0, atol=0)
        np.testing.assert_allclose(rows["prediction"].to_numpy(np.float32), p, atol=1e-7)
    # Labels join predictions by request id and row, one label per labeled row.
    joined = predictions.join(label_rows.select(["request_id", "row", "label"]), keys=["request_id", "row"],
                              join_type="inner")
    assert joined.num_rows == label_rows.num_rows
    for request_id, y in labels.items():
        got = joined.filter(pc.equal(joined["request_id"], request_id)).sort_by("row")
        assert got.column("label").to_pylist() == y
    unlabeled = set(sent) - set(labels)
    assert unlabeled and not (set(joined.column("request_id").to_pylist()) & unlabeled)


def test_pyarrow_reads_the_log_as_it_is_and_labels_join_predictions(logged):
    log, sent, labels, out = logged
    assert "prediction log:" in out, out
    check_log(log, sent, labels)


def test_pandas_reads_the_predictions_folder_directly(logged):
    pd = pytest.importorskip("pandas")
    log, sent, _, _ = logged
    frame = pd.read_parquet(log / "predictions")
    assert len(frame) == sum(x.shape[0] for x, _ in sent.values())
    assert set(frame["request_id"]) == set(sent)


# Azurite's well-known development account and key.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def test_the_log_on_azure_blob_is_read_back_as_written(tmp_path, monkeypatch):
    """The same traffic logged to `az://` on a real Azurite (Azure Blob's emulator, on a port
    picked here, stopped by PID): every blob is a whole Parquet file under the same
    partitioned keys, and the downloaded tree reads back exactly as the folder's does."""
    from azure.storage.blob import BlobServiceClient

    azurite = os.environ.get("MLOPS_AZURITE", str(ROOT / ".tools/node_modules/.bin/azurite-blob"))
    if not pathlib.Path(azurite).exists():
        pytest.fail(f"azurite-blob not found at {azurite}: run scripts/test.sh (it installs it from npm) "
                    "or set MLOPS_AZURITE")
    port = free_port()
    server = subprocess.Popen(
        [azurite, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(tmp_path / "azurite"),
         "--skipApiVersionCheck", "--silent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
        connection = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                      f"BlobEndpoint={endpoint};")
        wait_for_port(port, "azurite-blob")
        client = BlobServiceClient.from_connection_string(connection)
        container = client.create_container("predlog")
        for k, v in {
            "AZURE_STORAGE_ACCOUNT_NAME": AZURITE_ACCOUNT,
            "AZURE_STORAGE_ACCOUNT_KEY": AZURITE_KEY,
            "AZURE_STORAGE_ENDPOINT": endpoint,
            "AZURE_ALLOW_HTTP": "true",
        }.items():
            monkeypatch.setenv(k, v)
        sent, labels, out = serve_and_label(tmp_path, "az://predlog/log")
        assert "prediction log:" in out, out
        mirror = tmp_path / "mirror"
        names = [b.name for b in container.list_blobs(name_starts_with="log/")]
        assert names and all(n.endswith(".parquet") for n in names), names
        assert {n.split("/")[1] for n in names} == {"predictions", "labels"}, names
        for name in names:
            target = mirror / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(container.download_blob(name).readall())
        check_log(mirror / "log", sent, labels)
    finally:
        # Stopped by PID. Azurite ignores SIGTERM and takes ~20 s over SIGINT; its data is
        # this test's temporary folder, so SIGKILL loses nothing.
        server.kill()
        server.wait(timeout=30)
