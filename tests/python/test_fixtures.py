"""The committed fixtures are exactly what the committed generators write with the pinned
packages (scripts/requirements-test.txt), so the numbers the Rust tests compare against are
scikit-learn's and scipy's own."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
GENERATORS = sorted(p for p in (ROOT / "scripts" / "fixtures").glob("*.py") if not p.name.startswith("_"))


def test_there_are_generators():
    assert GENERATORS, "no fixture generators found"


def test_fixtures_are_reproducible():
    for script in GENERATORS:
        result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
        assert result.returncode == 0, f"{script.name}: {result.stdout}{result.stderr}"
