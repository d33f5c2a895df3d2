from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from sqlglot import exp

from productlens.app import open_engine
from productlens.config import load_project
from productlens.engines import LAYERS, DuckDBEngine, Engine
from productlens.engines.base import table
from productlens.errors import EngineError
from tests.conftest import q
from tests.holders import hold_duckdb

SCHEMAS = "SELECT schema_name FROM information_schema.schemata"


def test_is_an_engine_and_creates_no_schema_of_its_own(tmp_path: Path) -> None:
    engine = DuckDBEngine(tmp_path / "w.duckdb", memory_limit="1GB", threads=1)
    try:
        assert isinstance(engine, Engine)
        schemas = {r[0] for r in engine.fetch_all(q(SCHEMAS))}
        assert not set(LAYERS) & schemas  # layers are the app's business, not the engine's
    finally:
        engine.close()


def test_the_app_opens_every_layer(tmp_path: Path) -> None:
    engine = open_engine(load_project(tmp_path))
    try:
        assert set(LAYERS) <= {r[0] for r in engine.fetch_all(q(SCHEMAS))}
    finally:
        engine.close()


def test_settings_are_applied(tmp_path: Path) -> None:
    engine = DuckDBEngine(
        tmp_path / "w.duckdb", memory_limit="1GB", threads=3, search_path=tmp_path / "it's"
    )
    try:
        got = dict(
            engine.fetch_all(
                q(
                    "SELECT name, value FROM duckdb_settings() WHERE name IN ('TimeZone', "
                    "'threads', 'preserve_insertion_order', 'temp_directory', "
                    "'file_search_path', 'memory_limit')"
                )
            )
        )
        assert got["TimeZone"] == "UTC"
        assert got["threads"] == "3"
        assert got["preserve_insertion_order"] == "false"
        assert got["temp_directory"] == str(tmp_path / "w.tmp")
        assert got["file_search_path"] == str((tmp_path / "it's").resolve())
        assert got["memory_limit"].startswith(("953", "1.0", "1000"))  # 1GB as DuckDB shows it
    finally:
        engine.close()


def test_relative_files_are_read_from_the_search_path(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1, 2, 3]}), tmp_path / "f.parquet")
    engine = DuckDBEngine(tmp_path / "sub" / "w.duckdb", search_path=tmp_path)
    try:
        query = exp.select(exp.func("sum", exp.column("a"))).from_(
            engine.parquet_relation(["f.parquet"])
        )
        assert engine.fetch_all(query) == [(6,)]
    finally:
        engine.close()


def test_connection_is_the_engines_own(engine: DuckDBEngine) -> None:
    """The ingestion processor shares the warehouse's connection: what it writes, the
    engine reads (same transaction state, same settings)."""
    engine.connection.execute("CREATE TABLE raw.shared AS SELECT 42 AS x")
    assert engine.fetch_all(exp.select("x").from_(table("raw", "shared"))) == [(42,)]


def test_transaction_rolls_back_on_error(engine: DuckDBEngine) -> None:
    engine.create_table("ops", "t", [("a", exp.DataType.build("INTEGER"))])

    def insert_twice() -> None:
        with engine.transaction():
            engine.execute(q("INSERT INTO ops.t VALUES (1)"))
            engine.execute(q("INSERT INTO ops.t VALUES ('not a number')"))

    with pytest.raises(EngineError):
        insert_twice()
    assert engine.fetch_all(q("SELECT count(*) FROM ops.t")) == [(0,)]


def test_errors_carry_the_engine(engine: DuckDBEngine) -> None:
    with pytest.raises(EngineError, match="engine=duckdb"):
        engine.execute(q("SELECT * FROM no_such_table"))


def test_second_writer_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "locked.duckdb"
    holder = hold_duckdb(path, read_only=False)  # until the test lets go, not for 30 s
    try:
        with pytest.raises(EngineError, match="in use by another process"):
            DuckDBEngine(path, lock_wait=0.5)
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    DuckDBEngine(path).close()  # usable again once the other process is gone


def test_a_writer_waits_for_a_reader_to_let_go(tmp_path: Path) -> None:
    """`productlens build` while the dashboard rendered a page was refused at once; the
    writer now tries again until the reader has closed the file."""
    path = tmp_path / "w.duckdb"
    DuckDBEngine(path).close()
    holder = hold_duckdb(path, read_only=True)
    try:
        with pytest.raises(EngineError, match="in use by another process"):
            DuckDBEngine(path, lock_wait=0)  # the reader does hold the file
        assert holder.stdin is not None
        release = threading.Timer(1.0, holder.stdin.close)
        release.start()
        engine = DuckDBEngine(path, lock_wait=120)
        release.join()
        assert holder.wait(timeout=60) == 0  # the reader finished: the writer came after it
        engine.execute(q("create table t as select 1 as x"))
        assert engine.fetch_all(q("select x from t")) == [(1,)]
        engine.close()
    finally:
        holder.kill()
        holder.wait()


def test_a_writer_is_refused_clearly_when_its_wait_runs_out(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    DuckDBEngine(path).close()
    holder = hold_duckdb(path, read_only=True)
    try:
        with pytest.raises(EngineError) as caught:
            DuckDBEngine(path, lock_wait=0.3)
        said = str(caught.value)
        assert "in use by another process after waiting 0.3 s" in said
        assert str(path) in said
    finally:
        holder.kill()
        holder.wait()


def test_read_only_needs_an_existing_warehouse(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="no warehouse yet"):
        DuckDBEngine(tmp_path / "missing.duckdb", read_only=True)


def test_a_second_engine_on_the_same_file_shares_its_file_systems(tmp_path: Path) -> None:
    """DuckDB keeps one database instance per file in a process: the second engine (the
    dashboard opens one per page) must not fail re-registering the lake's file system."""
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.pipe("/lake/one.csv", b"a\n1\n")
    first = DuckDBEngine(tmp_path / "w.duckdb", filesystems=[memory])
    second = DuckDBEngine(tmp_path / "w.duckdb", filesystems=[fsspec.filesystem("memory")])
    try:
        query = exp.select("a").from_(
            exp.func("read_csv", exp.Literal.string("memory:///lake/one.csv"))
        )
        assert second.fetch_all(query) == [(1,)]
    finally:
        second.close()
        first.close()
