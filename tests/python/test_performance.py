"""mlops.performance (CBPE) through the wheel: the committed nannyml 0.13 fixture
(mlops-core/tests/fixtures/cbpe.json, written by scripts/fixtures/cbpe_refs.py on nannyml's
own synthetic data with the calibrator forced on) reproduced to 1e-9, errors named, undefined
metrics None, and the estimator's JSON round trip."""
import json
import math
import pathlib

import numpy as np
import pytest

import mlops
from mlops.performance import CBPE, METRICS

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = json.loads((ROOT / "mlops-core" / "tests" / "fixtures" / "cbpe.json").read_text())


def decode(codes):
    codes = np.asarray(codes)
    return (codes // 4) / 100.0, (codes // 2) % 2, codes % 2


def close(got, want, what):
    assert got is not None, f"{what}: None, nannyml says {want}"
    assert abs(got - want) <= 1e-9 * max(1.0, abs(want)), f"{what}: {got} vs {want}"


def test_estimates_match_nannyml_on_the_distinct_case():
    # The case with every score distinct: every number is nannyml's own.
    base = FIXTURE["cases"]["nannyml"]
    case = FIXTURE["cases"]["distinct"]
    ref_p, ref_pred, ref_y = decode(base["reference_codes"])
    ana_p, ana_pred, _ = decode(base["analysis_codes"])
    total = case["rows"]
    i = np.arange(total, dtype=float)
    ref_p = ref_p * 0.996 + 0.002 + (i[: len(ref_p)] / total - 0.5) * 0.002
    ana_p = ana_p * 0.996 + 0.002 + (i[len(ref_p):] / total - 0.5) * 0.002
    cbpe = CBPE(threshold=0.5).fit(ref_p, ref_y, y_pred=ref_pred)
    assert len(case["chunks"]) == 10
    for chunk in case["chunks"]:
        s, e = chunk["start"], chunk["end"]
        got = cbpe.estimate(ana_p[s:e], y_pred=ana_pred[s:e])
        assert got["rows"] == e - s
        for metric in METRICS:
            for part in ("value", "sampling_error", "lower", "upper"):
                close(got[metric][part], chunk[metric][part], f"rows {s}..{e} {metric} {part}")


def test_the_estimator_round_trips_and_checks_what_it_loads():
    p = np.linspace(0.01, 0.99, 500)
    y = (np.random.default_rng(3).random(500) < p).astype(float)
    cbpe = CBPE().fit(p, y)
    back = CBPE.from_json(cbpe.to_json())
    assert back.estimate(p[:100]) == cbpe.estimate(p[:100])
    bad = json.loads(cbpe.to_json())
    bad["threshold"] = 1.5
    with pytest.raises(ValueError, match="cbpe.threshold"):
        CBPE.from_json(json.dumps(bad))


def test_bad_input_is_a_named_error_and_undefined_is_none():
    p = np.array([0.1, 0.4, 0.6, 0.9])
    y = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"scores\[1\]"):
        CBPE().fit([0.1, float("nan")], [0, 1])
    with pytest.raises(ValueError, match=r"labels\[1\]"):
        CBPE().fit(p, [0, 2, 1, 1])
    with pytest.raises(ValueError, match="one class|class"):
        CBPE().fit(p, [1, 1, 1, 1])
    with pytest.raises(ValueError, match="calibration"):
        CBPE(calibration="magic").fit(p, y)
    with pytest.raises(ValueError, match="not fitted"):
        CBPE().estimate(p)
    cbpe = CBPE(threshold=0.99, calibration="none").fit(p, y)
    with pytest.raises(ValueError, match="window"):
        cbpe.estimate([])
    with pytest.raises(ValueError, match=r"scores\[0\]"):
        cbpe.estimate([float("nan")])
    # Nothing predicted positive at 0.99: precision has no value (nannyml says 0).
    e = cbpe.estimate(p)
    assert e["precision"]["value"] is None
    assert math.isclose(e["accuracy"]["value"], np.mean(1 - p))
    assert mlops.performance is not None
