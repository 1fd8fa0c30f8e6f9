"""Arrow and Parquet tables in the wheel: pyarrow, polars and pandas (Arrow dtypes) through the
Arrow PyCapsule interface, Parquet files written by pyarrow (row groups, zstd, pandas
categoricals), the numbers equal to what pandas and pyarrow read, and bad input named."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mlops
from mlops.data import read_arrow, read_parquet

polars = pytest.importorskip("polars")


def frame(n=500, seed=3):
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3, 1, n)
    amount[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "amount": amount,
            "count": rng.integers(-5, 50, n).astype(np.int32),
            "online": rng.random(n) < 0.3,
            "merchant": pd.Categorical(rng.choice(["shop", "fuel", "travel", "food"], n), categories=["food", "fuel", "shop", "travel"]),
            "label": (rng.random(n) < 0.2).astype(np.int64),
        }
    )


def expected_features(df):
    """What mlops must read: float32 values, NaN for missing, pandas' codes for categories."""
    out = np.column_stack(
        [
            df["amount"].to_numpy(np.float64),
            df["count"].to_numpy(np.float64),
            df["online"].to_numpy(np.float64),
            np.where(df["merchant"].cat.codes < 0, np.nan, df["merchant"].cat.codes).astype(np.float64),
        ]
    )
    return out.astype(np.float32)


def test_pyarrow_polars_and_pandas_arrow_tables_read_the_same():
    df = frame()
    want = expected_features(df)
    tables = {
        "pyarrow": pa.Table.from_pandas(df, preserve_index=False),
        "polars": polars.from_pandas(df),
        "pandas-arrow": df.convert_dtypes(dtype_backend="pyarrow").assign(merchant=df["merchant"]),
        "record batch": pa.RecordBatch.from_pandas(df, preserve_index=False),
    }
    for kind, table in tables.items():
        t = read_arrow(table, label="label", categories={"merchant": ["food", "fuel", "shop", "travel"]})
        assert t.columns == ["amount", "count", "online", "merchant"], kind
        assert t.categorical == ["merchant"], kind
        assert t.features.dtype == np.float32 and t.features.shape == (len(df), 4), kind
        np.testing.assert_array_equal(t.features, want, err_msg=kind)
        np.testing.assert_array_equal(t.labels, df["label"].to_numpy(np.float32), err_msg=kind)
    # Without the categories a text dictionary is refused: codes from the data would differ
    # between tables (polars orders its dictionary by first appearance, pandas by category).
    for kind, table in tables.items():
        with pytest.raises(ValueError, match=r"column `merchant`: holds text categories"):
            read_arrow(table)


def test_parquet_written_by_pyarrow_reads_as_pandas_reads_it(tmp_path):
    df = frame(20_000)
    path = tmp_path / "tx.parquet"
    df.to_parquet(path, compression="zstd", row_group_size=3000)
    assert pq.ParquetFile(path).num_row_groups == 7
    back = pd.read_parquet(path)
    t = read_parquet(path, label="label", categories={"merchant": list(back["merchant"].cat.categories)})
    np.testing.assert_array_equal(t.features, expected_features(back))
    np.testing.assert_array_equal(t.labels, back["label"].to_numpy(np.float32))
    # A projection: ignored columns are never decoded.
    t = read_parquet(path, ignore=["amount", "merchant", "label"])
    assert t.columns == ["count", "online"]


def test_every_table_function_takes_arrow_data():
    df = frame(600)
    df["amount"] = df["amount"].fillna(0.0)  # training needs every value
    x = expected_features(df)
    # The category as its pandas code: a table of numbers.
    numbers = df.drop(columns="label").assign(merchant=df["merchant"].cat.codes.astype(np.int16))
    table = pa.Table.from_pandas(numbers, preserve_index=False)
    y = df["label"].to_numpy(np.float64)
    a = mlops.train.fit(table, y, categorical=["merchant"], epochs=3, seed=1, hidden=(8,))
    b = mlops.train.fit(x, y, columns=["amount", "count", "online", "merchant"], categorical=["merchant"], epochs=3, seed=1, hidden=(8,))
    np.testing.assert_allclose(a.predict_proba(table), b.predict_proba(x), rtol=0, atol=1e-6)
    # By name: a table with its columns in another order is reordered.
    shuffled = table.select(["merchant", "online", "count", "amount"])
    np.testing.assert_allclose(a.predict_proba(shuffled), b.predict_proba(x), rtol=0, atol=1e-6)
    # A drift profile: the dictionary column is profiled as categorical, and the same data
    # as numpy (its codes marked categorical) gives the same profile. (pyarrow keeps pandas'
    # category order in its dictionary, so the codes are pandas' codes.)
    profile = mlops.drift.ReferenceProfile.fit(table, categorical=["merchant"])
    same = mlops.drift.ReferenceProfile.fit(x, columns=profile.columns, categorical=["merchant"])
    assert profile.to_json() == same.to_json()
    assert '"categorical"' in profile.to_json()
    report = profile.compare(polars.from_arrow(table))
    assert not report["dataset"]["drifted"], report
    # Text categories without their list are refused by every table function, never coded
    # by whatever order the table's dictionary has.
    text = pa.Table.from_pandas(df.drop(columns="label"), preserve_index=False)
    with pytest.raises(ValueError, match=r"holds text categories"):
        mlops.train.fit(text, y, epochs=1)
    with pytest.raises(ValueError, match=r"holds text categories"):
        a.predict_proba(text)


def test_bad_arrow_input_is_named():
    with pytest.raises(ValueError, match=r"column `city`: holds Utf8"):
        read_arrow(pa.table({"x": [1.0], "city": ["Oslo"]}))
    with pytest.raises(ValueError, match=r"column `tags`.*nested"):
        read_arrow(pa.table({"x": [1.0], "tags": [[1, 2]]}))
    with pytest.raises(ValueError, match=r"row 1, column `id`.*cannot be held exactly"):
        read_arrow(pa.table({"id": pa.array([1, 2**40 + 1], pa.int64())}))
    with pytest.raises(ValueError, match=r"`yes` is not one of the 1 categories given"):
        read_arrow(pa.table({"c": pa.array(["no", "yes"]).dictionary_encode()}), categories={"c": ["no"]})
    # Dictionary keys out of range (the C interface does not check them): named, not clamped.
    bad_keys = pa.DictionaryArray.from_arrays(pa.array([0, 5], pa.int32()), pa.array([1.5, 2.5]), safe=False)
    with pytest.raises(ValueError, match=r"row 1, column `c`: dictionary key 5 is outside"):
        read_arrow(pa.table({"c": bad_keys}))
    all_null = pa.array([None, None], pa.dictionary(pa.int32(), pa.string()))
    t = read_arrow(pa.table({"c": all_null}), categories={"c": ["a"]})
    assert np.isnan(t.features).all()
    with pytest.raises(ValueError, match=r"column `nope` not found; available columns: x"):
        read_arrow(pa.table({"x": [1.0]}), label="nope")
    with pytest.raises(TypeError):
        read_arrow(np.zeros((2, 2)))


def test_bad_parquet_files_are_named(tmp_path):
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"x": pa.array([], pa.float64())}), empty)
    with pytest.raises(ValueError, match=r"has \d row groups and 0 rows"):
        read_parquet(empty)
    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.table({"x": np.arange(10_000, dtype=np.float64)}), whole)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"expected a whole Parquet file"):
        read_parquet(cut)
    text = tmp_path / "text.parquet"
    pq.write_table(pa.table({"x": [1.0], "note": ["hello"]}), text)
    with pytest.raises(ValueError, match=r"column `note`: holds Utf8"):
        read_parquet(text)
