from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from productlens.engines import LAYERS, DuckDBEngine, Engine
from productlens.errors import EngineError


def test_is_an_engine_with_every_layer(engine: DuckDBEngine) -> None:
    assert isinstance(engine, Engine)
    schemas = {
        r[0] for r in engine.fetch_all("SELECT schema_name FROM information_schema.schemata")
    }
    assert set(LAYERS) <= schemas


def test_load_arrow_and_fetch(engine: DuckDBEngine) -> None:
    engine.execute("CREATE TABLE raw.t (a INTEGER, b VARCHAR)")
    assert engine.load_arrow("raw.t", pa.table({"b": ["x", "y"], "a": [1, 2]})) == 2
    assert engine.fetch_all("SELECT a, b FROM raw.t ORDER BY a") == [(1, "x"), (2, "y")]
    assert engine.fetch_arrow("SELECT sum(a) AS s FROM raw.t").to_pylist() == [{"s": 3}]
    assert engine.table_exists("raw.t")
    assert not engine.table_exists("raw.nope")
    assert engine.list_tables("raw") == ["t"]


def test_load_files(engine: DuckDBEngine, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1, 2, 3]}), tmp_path / "f.parquet")
    engine.execute("CREATE TABLE raw.f (a INTEGER)")
    assert engine.load_files("raw.f", [tmp_path / "f.parquet"]) == 3


def test_transaction_rolls_back_on_error(engine: DuckDBEngine) -> None:
    engine.execute("CREATE TABLE ops.t (a INTEGER)")

    def insert_twice() -> None:
        with engine.transaction():
            engine.execute("INSERT INTO ops.t VALUES (1)")
            engine.execute("INSERT INTO ops.t VALUES ('not a number')")

    with pytest.raises(EngineError):
        insert_twice()
    assert engine.fetch_all("SELECT count(*) FROM ops.t") == [(0,)]


def test_errors_carry_the_engine(engine: DuckDBEngine) -> None:
    with pytest.raises(EngineError, match="engine=duckdb"):
        engine.execute("SELECT * FROM no_such_table")


def test_second_writer_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "locked.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('ready', flush=True);"
            " time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(EngineError, match="in use by another process"):
            DuckDBEngine(path)
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    DuckDBEngine(path).close()  # usable again once the other process is gone


def test_read_only_needs_an_existing_warehouse(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="no warehouse yet"):
        DuckDBEngine(tmp_path / "missing.duckdb", read_only=True)
