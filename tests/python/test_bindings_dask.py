"""Reference profiles built on a real Dask cluster (worker processes on 127.0.0.1) make the
same decisions as a one-machine exact profile, with KS statistics within the stated bound."""

import pathlib
import pickle
import subprocess
import sys

import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.distributed import Client, LocalCluster

from mlops.drift import ProfileSketch, ReferenceProfile, profile_dask

ROOT = pathlib.Path(__file__).resolve().parents[2]


def table(rng, rows, shift):
    return pd.DataFrame(
        {
            "normal": rng.normal(shift, 1.0, rows),
            "skewed": rng.lognormal(0.0, 1.0, rows),
            "uniform": rng.random(rows) * (1.0 + shift),
            "heavy": rng.standard_cauchy(rows),
            "code": rng.integers(0, 5, rows).astype(float),
        }
    )


def test_a_dask_profile_of_three_million_rows_decides_like_the_exact_profile():
    rng = np.random.default_rng(11)
    reference = table(rng, 3_000_000, 0.0)
    current = table(rng, 20_000, 0.1)
    exact = ReferenceProfile.fit(reference, categorical=["code"], config={"storage": "exact"})
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster, Client(cluster) as client:
        assert all(w.startswith("tcp://127.0.0.1:") for w in client.scheduler_info()["workers"])
        merged = profile_dask(dd.from_pandas(reference, npartitions=12), categorical=["code"])
    assert merged.rows == exact.rows == 3_000_000
    config = {"tests": ["ks"], "column_tests": {"code": ["chi2"]}}
    a, b = exact.compare(current, config=config), merged.compare(current, config=config)
    decisions = {}
    for ca, cb in zip(a["columns"], b["columns"]):
        assert ca["column"] == cb["column"]
        assert ca["drifted"] == cb["drifted"], (ca, cb)
        decisions[ca["column"]] = ca["drifted"]
        if ca["column"] != "code":
            bound = cb["reference_ecdf_error"]
            assert 0 < bound < 0.01
            assert abs(ca["tests"][0]["statistic"] - cb["tests"][0]["statistic"]) <= bound + 1e-12
        else:
            assert ca["tests"][0]["statistic"] == cb["tests"][0]["statistic"]  # exact counts
    assert decisions == {"normal": True, "skewed": False, "uniform": True, "heavy": False, "code": False}


def test_sketches_merge_in_any_order_and_pickle():
    rng = np.random.default_rng(3)
    parts = [table(rng, 20_000, 0.0) for _ in range(4)]
    one = ProfileSketch.from_data(parts[0], categorical=["code"])
    for p in parts[1:]:
        one.merge(ProfileSketch.from_data(p, categorical=["code"]))
    other = pickle.loads(pickle.dumps(ProfileSketch.from_data(parts[3], categorical=["code"])))
    for p in reversed(parts[:3]):
        other.merge(pickle.loads(pickle.dumps(ProfileSketch.from_data(p, categorical=["code"]))))
    assert one.rows == other.rows == 80_000
    current = table(rng, 5_000, 0.0)
    config = {"tests": ["ks"], "column_tests": {"code": ["chi2"]}}
    ra = one.to_profile().compare(current, config=config)
    rb = other.to_profile().compare(current, config=config)
    for ca, cb in zip(ra["columns"], rb["columns"]):
        assert ca["drifted"] == cb["drifted"]
        assert abs(ca["tests"][0]["statistic"] - cb["tests"][0]["statistic"]) <= 2 * one.ks_error_bound() + 1e-12


def test_profiles_refuse_mismatched_columns_and_values_float32_cannot_hold():
    import pytest

    with pytest.raises(ValueError, match="columns: expected 2 names"):
        ReferenceProfile.fit(np.zeros((10, 2)), columns=["a"])
    with pytest.raises(ValueError, match=r"data\[1, 0\] = 1e300: expected a value float32 can hold"):
        ReferenceProfile.fit(np.array([[0.0], [1e300]]))
    with pytest.raises(TypeError, match="dtype <U1"):
        ReferenceProfile.fit(np.array([["a"]]))
    a = ProfileSketch.from_data(np.zeros((5, 2)), columns=["a", "b"])
    with pytest.raises(ValueError, match="the same columns"):
        a.merge(ProfileSketch.from_data(np.zeros((5, 2)), columns=["a", "c"]))


def test_the_parquet_example_runs():
    out = subprocess.run(
        [sys.executable, str(ROOT / "bindings/python/examples/dask_parquet.py"), "--rows", "200000", "--partitions", "4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "profiled 200000 rows in 4 Parquet partitions" in out.stdout, out.stdout
    assert "amount     wasserstein" in out.stdout and "DRIFT" in out.stdout, out.stdout
