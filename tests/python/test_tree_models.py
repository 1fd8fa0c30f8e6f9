"""XGBoost and LightGBM models trained here, saved in their own formats, read natively by the
wheel (`mlops.train.Model.from_file`) and by `examples/registry` + `examples/serve.rs`: the
probabilities equal the libraries' own to 1e-6, missing values and categories included, through
the wheel, a pickle, the registry, and Triton's client against the V2 server (binary tensors
carry NaN)."""
import pickle
import subprocess

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as httpclient
import xgboost as xgb

import mlops
from mlops.train import Model
from serving import EXAMPLES, serve_model

RNG = np.random.default_rng(27)


def data(n, missing=0.1):
    x = RNG.normal(size=(n, 6)).astype(np.float32)
    x[:, 4] = RNG.integers(0, 5, n)  # a category code
    x[RNG.random((n, 6)) < missing] = np.nan
    logit = np.nan_to_num(x[:, 0]) * 2 - np.nan_to_num(x[:, 1]) + (np.nan_to_num(x[:, 4]) == 3) * 1.5 - 1.0
    y = (RNG.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return x, y


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("trees")
    x, y = data(3000)
    names = ["amount", "hour", "age", "score", "channel", "device"]
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 6, "nthread": 1, "seed": 1},
                        xgb.DMatrix(x, label=y, feature_names=names), num_boost_round=60)
    xgb_path = d / "fraud.json"
    booster.save_model(str(xgb_path))
    frame = pd.DataFrame(x.astype(np.float64), columns=names)
    gbm = lgb.train({"objective": "binary", "num_leaves": 31, "verbose": -1, "num_threads": 1, "seed": 1},
                    lgb.Dataset(frame, y, categorical_feature=["channel"]), num_boost_round=60)
    lgb_path = d / "fraud.txt"
    gbm.save_model(str(lgb_path))
    return d, names, (booster, xgb_path), (gbm, lgb_path)


def test_the_wheel_scores_as_the_libraries(models):
    _, names, (booster, xgb_path), (gbm, lgb_path) = models
    x, _ = data(2000, missing=0.2)
    m = Model.from_file(xgb_path)
    assert (m.kind, m.feature_names) == ("xgboost", names)
    want = booster.predict(xgb.DMatrix(x, feature_names=names, missing=np.nan))
    assert np.abs(m.predict_proba(x) - want).max() <= 1e-6
    m = Model.from_file(lgb_path)
    assert (m.kind, m.feature_names) == ("lightgbm", names)
    want = gbm.predict(x.astype(np.float64))
    assert np.abs(m.predict_proba(x) - want).max() <= 1e-6
    # A DataFrame's columns are matched by name, whatever their order.
    shuffled = pd.DataFrame(x, columns=names)[names[::-1]]
    assert np.abs(m.predict_proba(shuffled) - want).max() <= 1e-6
    # Pickled and back: the same model.
    back = pickle.loads(pickle.dumps(m))
    assert back.kind == "lightgbm" and np.array_equal(back.predict_proba(x), m.predict_proba(x))


def test_bad_files_are_value_errors_naming_the_problem(models, tmp_path):
    _, _, (_, xgb_path), (_, lgb_path) = models
    with pytest.raises(ValueError, match="XGBoost"):
        Model.from_file(lgb_path, kind="xgboost")
    cut = tmp_path / "cut.txt"
    cut.write_bytes(lgb_path.read_bytes()[:5000])
    with pytest.raises(ValueError, match="end of trees"):
        Model.from_file(cut)
    junk = tmp_path / "notes.csv"
    junk.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="notes.csv"):
        Model.from_file(junk)
    with pytest.raises(ValueError, match="6, one per input"):
        Model.from_file(xgb_path, features=["a", "b"])
    regression = tmp_path / "reg.json"
    xgb.train({"objective": "reg:squarederror"}, xgb.DMatrix(np.ones((10, 2)), label=np.arange(10)), 2).save_model(str(regression))
    with pytest.raises(ValueError, match="reg:squarederror"):
        Model.from_file(regression)
    strict = Model.from_file(xgb_path, non_finite="reject")
    with pytest.raises(ValueError, match="reject"):
        strict.predict_proba(np.full((1, 6), np.nan))
    # The policy survives a pickle: a tree model must not start scoring what it refused.
    with pytest.raises(ValueError, match="reject"):
        pickle.loads(pickle.dumps(strict)).predict_proba(np.full((1, 6), np.nan))
    with pytest.raises(ValueError, match="impute"):
        Model.from_file(xgb_path, non_finite="impute")


def test_the_registry_keeps_a_tree_model_as_its_library_wrote_it(models, tmp_path):
    _, _, (booster, xgb_path), _ = models
    registry = mlops.registry.Registry(str(tmp_path / "reg"))
    m = Model.from_file(xgb_path, threshold=0.3)
    version = registry.register("fraud", m)
    back = registry.load("fraud", version)
    assert back.kind == "xgboost" and back.threshold == pytest.approx(0.3)
    x, _ = data(500)
    assert np.array_equal(back.predict_proba(x), m.predict_proba(x))
    stored = list((tmp_path / "reg").rglob("*"))
    assert any(p.is_file() and p.read_bytes() == xgb_path.read_bytes() for p in stored), "the file as xgboost wrote it"


def serve(d, path):
    reg = d / "reg"
    subprocess.run([str(EXAMPLES / "registry"), "--registry", str(reg), "register", "fraud", str(path)], check=True, capture_output=True)
    subprocess.run([str(EXAMPLES / "registry"), "--registry", str(reg), "alias", "fraud", "production", "1"], check=True, capture_output=True)
    return serve_model(reg, "fraud")


@pytest.mark.parametrize("which", ["xgboost", "lightgbm"])
def test_triton_client_against_the_served_tree_model(models, tmp_path, which):
    _, names, (booster, xgb_path), (gbm, lgb_path) = models
    path = xgb_path if which == "xgboost" else lgb_path
    proc, url = serve(tmp_path, path)
    try:
        client = httpclient.InferenceServerClient(url=url)
        meta = client.get_model_metadata("fraud")
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 6]}]
        assert meta["parameters"]["features"] == ",".join(names)
        x, _ = data(256, missing=0.2)
        tensor = httpclient.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)  # NaN travels in binary tensors
        out = client.infer("fraud", [tensor], outputs=[httpclient.InferRequestedOutput("probability", binary_data=True)])
        got = out.as_numpy("probability")
        want = (booster.predict(xgb.DMatrix(x, feature_names=names, missing=np.nan)) if which == "xgboost"
                else gbm.predict(x.astype(np.float64)))
        assert np.abs(got - want).max() <= 1e-6
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
