"""Train a scikit-learn pipeline and an XGBoost model on the same table and save each in the
format mlops registers: the pipeline as ONNX (skl2onnx), the booster as XGBoost's JSON.

    python examples/python/export_models.py OUT_DIR
"""
import pathlib
import sys

import numpy as np
import xgboost as xgb
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(7)
x = (rng.normal(size=(5000, 4)) * [50, 4, 10, 1] + [80, 12, 40, 0]).astype(np.float32)
y = (x[:, 0] / 50 - x[:, 2] / 10 + rng.normal(size=5000) > 1.2).astype(int)

pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
# tract runs standard ONNX ops and ai.onnx.ml's classifiers: the scaler as Sub and Div (not
# ai.onnx.ml.Scaler), and probabilities as a tensor (no ZipMap).
options = {StandardScaler: {"div": "div"}, LogisticRegression: {"zipmap": False}}
onx = to_onnx(pipe, x[:1], options=options, target_opset={"": 17, "ai.onnx.ml": 3})
(out / "pipeline.onnx").write_bytes(onx.SerializeToString())

booster = xgb.XGBClassifier(n_estimators=200, max_depth=6, n_jobs=1).fit(x, y)
booster.get_booster().save_model(out / "fraud_xgb.json")
np.save(out / "rows.npy", x[:256])
