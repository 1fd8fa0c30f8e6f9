"""A reference profile of a Parquet dataset built on a Dask cluster, then a drift check.

Writes a partitioned Parquet reference (synthetic: four numeric columns and a category code)
into --out, reads it with ``dask.dataframe.read_parquet``, starts a ``LocalCluster`` of worker
processes on 127.0.0.1, profiles it partition by partition on the workers
(``mlops.drift.profile_dask``: each worker sketches its partitions, the sketches merge in a
tree, one sketch comes back), and compares a shifted current batch with the profile. Prints
the rows, the KS error bound and each column's decision; exit code 0.

    python bindings/python/examples/dask_parquet.py [--rows 2000000] [--partitions 16] [--out DIR]
"""

import argparse
import pathlib
import tempfile

import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.distributed import Client, LocalCluster

from mlops.drift import profile_dask


def frame(rng, rows, shift=0.0):
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3.4 + shift, 1.0, rows),
            "hour": (rng.normal(14 + 4 * shift, 4, rows)) % 24,
            "distance": rng.gamma(2.0, 1.5, rows),
            "velocity": rng.poisson(3, rows).astype(float),
            "category": rng.integers(0, 8, rows).astype(float),
        }
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--partitions", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=pathlib.Path, default=None, help="Parquet folder (default: a temporary one)")
    args = p.parse_args()
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or pathlib.Path(tmp) / "reference"
        dd.from_pandas(frame(rng, args.rows), npartitions=args.partitions).to_parquet(out, write_index=False)
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster, Client(cluster):
            reference = dd.read_parquet(out)
            profile = profile_dask(reference, categorical=["category"])
        current = frame(rng, 50_000, shift=0.3)
        report = profile.compare(current)
    print(f"profiled {profile.rows} rows in {reference.npartitions} Parquet partitions on {args.workers} workers; KS error bound {profile.ks_error_bound:.2e}")
    for c in report["columns"]:
        test = c["tests"][0] if c["tests"] else {"test": "-", "statistic": float("nan")}
        print(f"  {c['column']:<10} {test['test']:<12} {test['statistic']:.4f}  {'DRIFT' if c['drifted'] else 'ok'}")
    print(f"dataset: {report['dataset']['verdict']}")


if __name__ == "__main__":
    main()
