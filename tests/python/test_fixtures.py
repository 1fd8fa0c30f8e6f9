"""The committed fixtures are exactly what the committed generators write with the pinned
packages (scripts/requirements-test.txt), so the numbers the Rust tests compare against are
scikit-learn's and scipy's own."""
import importlib.util
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Generators whose tool is too large for the test venv: checked where it is installed, and
# otherwise reported as skipped with the command that checks them (never silently).
# nannyml pins old pandas and pulls xgboost, lightgbm and gcsfs. On its own data the ROC AUC
# sampling error of the `nannyml` case follows numpy's unstable argsort over tied scores, so
# a machine with other SIMD sorting may differ there (the `distinct` case may not).
HEAVY = {
    "torch_training.py": ("torch", "python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy scikit-learn && /tmp/torchenv/bin/python scripts/fixtures/torch_training.py --check"),
    "cbpe_refs.py": ("nannyml", "python3 -m venv /tmp/nmvenv && /tmp/nmvenv/bin/pip install nannyml==0.13.0 statsmodels && /tmp/nmvenv/bin/python scripts/fixtures/cbpe_refs.py --check"),
}
GENERATORS = sorted(
    p for p in (ROOT / "scripts" / "fixtures").glob("*.py") if not p.name.startswith("_") and p.name not in HEAVY
)


def test_there_are_generators():
    assert GENERATORS, "no fixture generators found"


def test_fixtures_are_reproducible():
    for script in GENERATORS:
        result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
        assert result.returncode == 0, f"{script.name}: {result.stdout}{result.stderr}"


@pytest.mark.parametrize("name", sorted(HEAVY))
def test_heavy_fixtures_are_reproducible(name):
    module, command = HEAVY[name]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{name} needs {module}, not in the test venv; check it with: {command}")
    script = ROOT / "scripts" / "fixtures" / name
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


sys.path.insert(0, str(ROOT / "scripts" / "fixtures"))
from _fixture_io import differences  # noqa: E402


def test_last_bit_float_differences_are_tolerated():
    # The values seen on an AVX-512 machine against the committed (AVX2) file.
    assert differences({"sf": 0.022891810311717498}, {"sf": 0.022891810311718164}) == []


def test_real_differences_are_reported_with_their_path():
    old = {"kstwo_sf": [{"n": 3, "sf": 0.5}], "name": "ks"}
    assert differences(old, {"kstwo_sf": [{"n": 3, "sf": 0.5000001}], "name": "ks"}) == [
        "$.kstwo_sf[0].sf: 0.5 != 0.5000001 (relative difference 2e-07 > 1e-12)"
    ]
    assert differences(old, {"kstwo_sf": [], "name": "ks"}) == ["$.kstwo_sf: length 1 != 0"]
    assert differences(old, {"kstwo_sf": [{"n": 4, "sf": 0.5}], "name": "ks"}) == ["$.kstwo_sf[0].n: 3 != 4"]
    assert differences({"p": None}, {"p": 0.0}) != []
    assert differences({"a": 1}, {"b": 1}) != []
    assert differences({"x": True}, {"x": 1}) != []
