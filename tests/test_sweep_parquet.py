"""SweepTable.to_parquet: a clear error without pyarrow; a round trip with it."""

import json
import sys

import numpy as np
import pytest

import ufm

SCHEMA = [("lambda_H", "float"), ("seed", "int"), ("status", "str"), ("loss", "float")]


def _table():
    cols = {
        "lambda_H": np.array([1e-3, 0.1]),
        "seed": np.array([0, 1]),
        "status": np.array(["successful", "saddle"]),
        "loss": np.array([0.25, np.nan]),
    }
    return ufm.SweepTable(cols, SCHEMA, {"thresholds": [{"label": "c", "value": 0.5}]})


def test_without_pyarrow_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match=r"ufm\[parquet\]"):
        _table().to_parquet(tmp_path / "t.parquet")
    assert not (tmp_path / "t.parquet").exists()


def test_parquet_round_trip(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "t.parquet"
    table = _table()
    table.to_parquet(path)
    back = pq.read_table(path)
    assert back.column_names == table.names
    for name, _ in SCHEMA:
        got = np.asarray(back.column(name).to_pylist(), dtype=table[name].dtype)
        np.testing.assert_array_equal(got, table[name])
    assert str(back.schema.field("seed").type) == "int64"
    assert json.loads(back.schema.metadata[b"ufm.meta"]) == table.meta
