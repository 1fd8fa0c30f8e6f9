"""The README's "bring your own model" section as it is: examples/python/export_models.py writes a
scikit-learn pipeline as ONNX (skl2onnx) and an XGBoost model; `examples/registry register`
stores both; `examples/serve` serves each, and Triton's client gets the libraries' own
probabilities back (tract runs the ONNX graph; the native engine the trees). Graphs tract
cannot serve are refused at registration with the reason."""
import pathlib
import re
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
import xgboost as xgb

from serving import EXAMPLES, serve_model

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "python" / "export_models.py"
FEATURES = "amount,hour,distance,velocity"


def registry(*args):
    return subprocess.run([str(EXAMPLES / "registry"), *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("byom")
    subprocess.run([sys.executable, str(SCRIPT), str(d)], check=True)
    return d


def test_the_readme_shows_the_export_script_and_its_commands():
    readme = (ROOT / "README.md").read_text()
    assert "```python\n" + SCRIPT.read_text() + "```" in readme, "README.md's export script differs from examples/python/export_models.py"
    for line in (
        f"register fraud-pipeline models/pipeline.onnx --onnx-output probabilities --features {FEATURES}",
        f"register fraud-xgb models/fraud_xgb.json --features {FEATURES}",
    ):
        assert line in readme, line


@pytest.mark.parametrize("which", ["pipeline", "xgb"])
def test_both_models_are_registered_served_and_score_as_their_libraries(exported, tmp_path, which):
    d, reg = exported, tmp_path / "reg"
    name = f"fraud-{which}"
    file = d / ("pipeline.onnx" if which == "pipeline" else "fraud_xgb.json")
    extra = ["--onnx-output", "probabilities"] if which == "pipeline" else []
    r = registry("--registry", reg, "register", name, file, *extra, "--features", FEATURES)
    assert r.returncode == 0, r.stderr
    assert registry("--registry", reg, "alias", name, "production", "1").returncode == 0
    shown = registry("--registry", reg, "show", name, "@production", "--json")
    assert '"kind": "' + ("onnx" if which == "pipeline" else "xgboost") + '"' in shown.stdout, shown.stdout
    x = np.load(d / "rows.npy").astype(np.float32)
    if which == "pipeline":
        sess = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        want = sess.run(["probabilities"], {sess.get_inputs()[0].name: x})[0][:, 1]
    else:
        booster = xgb.Booster()
        booster.load_model(file)
        want = booster.predict(xgb.DMatrix(x))
    proc, url = serve_model(reg, name)
    try:
        client = httpclient.InferenceServerClient(url=url)
        meta = client.get_model_metadata(name)
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
        assert meta["parameters"]["features"] == FEATURES
        tensor = httpclient.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        out = client.infer(name, [tensor], outputs=[httpclient.InferRequestedOutput("probability", binary_data=True)])
        got = out.as_numpy("probability")
        assert np.abs(got - want).max() <= 1e-5
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_graphs_tract_cannot_serve_are_refused_at_registration(exported, tmp_path):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    reg = tmp_path / "reg"
    x = np.load(exported / "rows.npy").astype(np.float32)
    y = (x[:, 0] > np.median(x[:, 0])).astype(int)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    # skl2onnx's default scaler: the ai.onnx.ml Scaler op, which tract lacks.
    scaler = tmp_path / "scaler.onnx"
    scaler.write_bytes(to_onnx(pipe, x[:1], options={LogisticRegression: {"zipmap": False}}).SerializeToString())
    r = registry("--registry", reg, "register", "bad", scaler, "--onnx-output", "probabilities")
    assert r.returncode == 1 and "ai.onnx.ml.Scaler" in r.stderr, r.stderr
    # Two outputs (label, probabilities) and no choice: the error lists them.
    r = registry("--registry", reg, "register", "bad", exported / "pipeline.onnx")
    assert r.returncode == 1 and re.search(r"`label` int64.*`probabilities` float32", r.stderr), r.stderr
    # ZipMap (a sequence of maps) cannot be read as probabilities.
    zipmap = tmp_path / "zipmap.onnx"
    zipmap.write_bytes(to_onnx(pipe, x[:1], options={StandardScaler: {"div": "div"}}).SerializeToString())
    r = registry("--registry", reg, "register", "bad", zipmap, "--onnx-output", "output_probability")
    assert r.returncode == 1 and "ZipMap" in r.stderr, r.stderr
    # Nothing was registered.
    listed = registry("--registry", reg, "list", "bad")
    assert "1" not in listed.stdout.split(), listed.stdout


def test_the_wheel_names_the_feature_it_is_built_without(exported):
    from mlops.train import Model

    with pytest.raises(ValueError, match="feature `onnx`"):
        Model.from_file(str(exported / "pipeline.onnx"))
