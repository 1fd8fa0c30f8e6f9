#!/usr/bin/env python3
"""Loading a Parquet file into a feature matrix: mlops' reader (the Rust `arrow_io`, through
the wheel's `mlops.data.read_parquet`) beside pyarrow, on the same file, in one run, with
ratios (> 1: mlops faster).

    .venv/bin/python benches/parquet_vs_pyarrow.py [--rows 1000000] [--columns 30] [--repeats 5]

The file: --rows x --columns float64 (10% nulls in every third column), written by pyarrow with
snappy in row groups of 128k rows. Each loader produces the same thing, a rows x columns
float32 matrix with NaN for nulls (checked equal), timed as the median of --repeats runs:
- mlops: `read_parquet(path).features` (one thread: a row group's batches decoded and written
  into the row-major matrix as they arrive),
- pyarrow: `pq.read_table(path)` then each column's `to_numpy` into a float32 matrix, with
  pyarrow's thread pool (its default) and with `use_threads=False`; and `read_table` alone.
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import mlops


def median_seconds(repeats, fn):
    times = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def pyarrow_matrix(path, threads):
    table = pq.read_table(path, use_threads=threads)
    x = np.empty((table.num_rows, table.num_columns), dtype=np.float32)
    for j, col in enumerate(table.columns):
        x[:, j] = col.to_numpy(zero_copy_only=False)
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--columns", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    cols = {}
    for j in range(args.columns):
        v = rng.normal(size=args.rows)
        mask = (rng.random(args.rows) < 0.1) if j % 3 == 0 else None
        cols[f"x{j}"] = pa.array(v, mask=mask)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "data.parquet")
        pq.write_table(pa.table(cols), path, compression="snappy", row_group_size=131_072)
        size = os.path.getsize(path)
        ours, x = median_seconds(args.repeats, lambda: mlops.data.read_parquet(path).features)
        threaded, y = median_seconds(args.repeats, lambda: pyarrow_matrix(path, True))
        single, _ = median_seconds(args.repeats, lambda: pyarrow_matrix(path, False))
        table_only, _ = median_seconds(args.repeats, lambda: pq.read_table(path))
        np.testing.assert_array_equal(x, y)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"{args.rows:,} rows x {args.columns} float64 columns, {size / 2**20:.0f} MiB of Parquet; {os.cpu_count()} CPUs: {cpu}")
    print(f"{'loader':<52} {'median s':>9} {'rows/s':>12} {'mlops ratio':>12}")
    for name, s in [
        ("mlops read_parquet -> float32 matrix (1 thread)", ours),
        ("pyarrow read_table + to_numpy (threads)", threaded),
        ("pyarrow read_table + to_numpy (use_threads=False)", single),
        ("pyarrow read_table alone (threads, no matrix)", table_only),
    ]:
        print(f"{name:<52} {s:>9.3f} {args.rows / s:>12,.0f} {s / ours:>11.2f}x")


if __name__ == "__main__":
    main()
