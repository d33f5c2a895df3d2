"""The Engine protocol, held to the same contract on DuckDB, PostgreSQL and Spark.

Each test runs against a real engine: a DuckDB file, a throwaway PostgreSQL server, the
run's local Spark session. What an engine cannot do (PostgreSQL reading Parquet files,
Spark rolling back) is asserted as an error or left to the engines that promise it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

from productlens.engines import Engine
from productlens.engines.base import table
from productlens.errors import EngineError

ENGINES = ["duckdb", "postgres", pytest.param("spark", marks=pytest.mark.xdist_group("spark"))]
_counter = itertools.count()


@pytest.fixture(params=ENGINES)
def eng(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh engine of each kind."""
    kind = request.param
    if kind == "duckdb":
        from productlens.engines.duckdb import DuckDBEngine

        engine: Engine = DuckDBEngine(tmp_path / "w.duckdb", memory_limit="1GB", threads=1)
    elif kind == "postgres":
        from productlens.engines.postgres import PostgresEngine

        engine = PostgresEngine(request.getfixturevalue("pg_dsn"))
    else:
        from productlens.engines.spark import SparkEngine

        engine = SparkEngine(request.getfixturevalue("spark"))
    yield engine
    engine.close()


@pytest.fixture
def schema(eng: Engine) -> str:
    """A schema of this test's own (Spark's session is shared by the whole run)."""
    name = f"contract_{next(_counter)}_{id(eng) % 10**6}"
    eng.ensure_schema(name)
    return name


def q(sql: str) -> exp.Expression:
    """A statement in the source dialect (DuckDB's)."""
    parsed = sqlglot.parse_one(sql, read="duckdb")
    assert parsed is not None
    return parsed


def test_values_round_trip_exactly(eng: Engine) -> None:
    rows = eng.fetch_all(
        q(
            "SELECT CAST(1 AS INTEGER) AS i, CAST(9007199254740993 AS BIGINT) AS b, "
            "CAST(0.1 AS DOUBLE) AS d, CAST('12.34' AS DECIMAL(12, 2)) AS m, "
            "'it''s \"quoted\" é' AS s, true AS t, CAST('2024-02-29' AS DATE) AS dt, "
            "CAST('2024-03-10 02:30:00.123456' AS TIMESTAMP) AS ts, "
            "CAST(NULL AS VARCHAR) AS n"
        )
    )
    assert rows == [
        (
            1,
            9007199254740993,
            0.1,
            Decimal("12.34"),
            'it\'s "quoted" é',
            True,
            date(2024, 2, 29),
            datetime(2024, 3, 10, 2, 30, 0, 123456),
            None,
        )
    ]


def test_fetch_arrow_keeps_names_and_types(eng: Engine) -> None:
    got = eng.fetch_arrow(
        q(
            "SELECT CAST(x AS BIGINT) AS n, CAST(x AS DOUBLE) / 4 AS quarter, "
            "CAST('2024-01-01' AS DATE) + CAST(x AS INTEGER) AS day "
            "FROM (VALUES (1), (2), (3)) AS v(x) ORDER BY n"
        )
    )
    assert got.column_names == ["n", "quarter", "day"]
    assert got.column("n").to_pylist() == [1, 2, 3]
    assert got.column("quarter").to_pylist() == [0.25, 0.5, 0.75]
    assert got.column("day").to_pylist() == [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)]
    assert pa.types.is_integer(got.schema.field("n").type)
    assert pa.types.is_date(got.schema.field("day").type)


def test_render_is_the_engines_dialect(eng: Engine) -> None:
    text = eng.render(table("marts", "order"))
    assert "order" in text
    assert text != "marts.order"  # a keyword is quoted


def test_catalog_sees_tables_and_views(eng: Engine, schema: str) -> None:
    assert eng.table_kind(schema, "t") is None
    eng.replace_table(schema, "t", q("SELECT 1 AS a, 'x' AS b"))
    eng.replace_view(schema, "v", exp.select("a").from_(table(schema, "t")))
    assert eng.table_kind(schema, "t") == "table"
    assert eng.table_kind(schema, "v") == "view"
    assert eng.list_tables(schema) == ["t", "v"]
    names = [name for name, _ in eng.columns(schema, "t")]
    assert names == ["a", "b"]
    kinds = [dtype for _, dtype in eng.columns(schema, "t")]
    assert kinds[0].is_type(*exp.DataType.INTEGER_TYPES)
    assert kinds[1].is_type(*exp.DataType.TEXT_TYPES)
    eng.drop(schema, "v")
    eng.drop(schema, "t")
    eng.drop(schema, "never_there")  # absent is fine
    assert eng.list_tables(schema) == []


def test_replace_table_swaps_and_counts(eng: Engine, schema: str) -> None:
    assert eng.replace_table(schema, "t", q("SELECT * FROM (VALUES (1), (2)) AS v(x)")) == 2
    eng.replace_view(schema, "w", q("SELECT 1 AS x"))
    # A view of the name is replaced by the table.
    assert eng.replace_table(schema, "w", q("SELECT 5 AS x")) == 1
    assert eng.table_kind(schema, "w") == "table"
    # A table of the name is replaced by a view.
    eng.replace_view(schema, "t", q("SELECT 7 AS x"))
    assert eng.table_kind(schema, "t") == "view"
    assert eng.fetch_all(exp.select("x").from_(table(schema, "t"))) == [(7,)]


def test_failed_build_leaves_the_previous_table(eng: Engine, schema: str) -> None:
    eng.replace_table(schema, "t", q("SELECT 1 AS x"))
    broken = exp.select("no_such_column").from_(table(schema, "t"))
    with pytest.raises(EngineError):
        eng.replace_table(schema, "t", broken)
    assert eng.fetch_all(exp.select("x").from_(table(schema, "t"))) == [(1,)]
    assert eng.list_tables(schema) == ["t"]  # no half-built table left behind


def test_replace_tables_swaps_a_set(eng: Engine, schema: str) -> None:
    """Several tables replaced together; one that fails to build leaves every previous
    table where the engine has transactions (Spark swaps them in turn: those before it
    are new), and no building copy behind."""
    eng.replace_table(schema, "a", q("SELECT 1 AS x"))
    eng.replace_view(schema, "b", q("SELECT 1 AS x"))  # a view of the name is replaced too
    fresh = {"a": q("SELECT 2 AS x"), "b": q("SELECT * FROM (VALUES (3), (4)) AS v(x)")}
    assert eng.replace_tables(schema, fresh) == 3
    assert eng.fetch_all(exp.select("x").from_(table(schema, "a"))) == [(2,)]
    assert eng.table_kind(schema, "b") == "table"
    assert sorted(eng.fetch_all(exp.select("x").from_(table(schema, "b")))) == [(3,), (4,)]
    broken = exp.select("no_such_column").from_(table(schema, "a"))
    with pytest.raises(EngineError):
        eng.replace_tables(schema, {"a": q("SELECT 9 AS x"), "b": broken})
    kept = eng.fetch_all(exp.select("x").from_(table(schema, "a")))
    assert kept == ([(9,)] if eng.name == "spark" else [(2,)])
    assert sorted(eng.fetch_all(exp.select("x").from_(table(schema, "b")))) == [(3,), (4,)]
    assert eng.list_tables(schema) == ["a", "b"]


def test_overwrite_range_keeps_older_rows(eng: Engine, schema: str) -> None:
    old = q(
        "SELECT CAST(d AS DATE) AS day, v FROM (VALUES ('2024-01-01', 1), ('2024-01-02', 2), "
        "('2024-01-03', 3)) AS t(d, v)"
    )
    eng.replace_table(schema, "facts", old, partition_by="day")
    new = q(
        "SELECT CAST(d AS DATE) AS day, v FROM (VALUES ('2024-01-01', 100), ('2024-01-02', 20), "
        "('2024-01-03', 30), ('2024-01-04', 40)) AS t(d, v)"
    )
    rows = eng.overwrite_range(schema, "facts", "day", date(2024, 1, 2), new)
    assert rows == 4
    got = eng.fetch_all(exp.select("day", "v").from_(table(schema, "facts")).order_by("day"))
    assert got == [
        (date(2024, 1, 1), 1),
        (date(2024, 1, 2), 20),
        (date(2024, 1, 3), 30),
        (date(2024, 1, 4), 40),
    ]


def test_create_table_and_append_by_name(eng: Engine, schema: str) -> None:
    columns = [
        ("id", exp.DataType.build("BIGINT")),
        ("label", exp.DataType.build("VARCHAR")),
        ("at", exp.DataType.build("TIMESTAMP")),
    ]
    eng.create_table(schema, "log", columns)
    eng.create_table(schema, "log", columns)  # already there: nothing happens
    data = pa.table(
        {
            "at": pa.array([datetime(2024, 1, 1, 12), None], pa.timestamp("us")),
            "label": ["it's", 'say "hi"'],
            "id": pa.array([1, 2], pa.int64()),
        }
    )
    assert eng.append_arrow(schema, "log", data) == 2
    got = eng.fetch_all(exp.select("id", "label", "at").from_(table(schema, "log")).order_by("id"))
    assert got == [(1, "it's", datetime(2024, 1, 1, 12)), (2, 'say "hi"', None)]


def test_append_streams_a_reader_and_a_broken_stream_appends_nothing(
    eng: Engine, schema: str
) -> None:
    columns = [("id", exp.DataType.build("BIGINT")), ("label", exp.DataType.build("VARCHAR"))]
    eng.create_table(schema, "log", columns)
    batches = [
        pa.record_batch({"label": ["a", "b"], "id": pa.array([1, 2], pa.int64())}),
        pa.record_batch({"label": ["c"], "id": pa.array([3], pa.int64())}),
    ]
    reader = pa.RecordBatchReader.from_batches(batches[0].schema, iter(batches))
    assert eng.append_arrow(schema, "log", reader) == 3

    def broken() -> Any:
        yield from batches
        raise OSError("the source went away")

    with pytest.raises((OSError, EngineError), match="went away"):
        eng.append_arrow(
            schema, "log", pa.RecordBatchReader.from_batches(batches[0].schema, broken())
        )
    got = eng.fetch_all(exp.select("id", "label").from_(table(schema, "log")).order_by("id"))
    assert got == [(1, "a"), (2, "b"), (3, "c")]


def test_temp_table_is_readable_in_the_block(eng: Engine) -> None:
    data = pa.table({"k": [3, 1, 2], "v": ["c", "a", "b"]})
    with eng.temp_table("input_rows", data) as relation:
        got = eng.fetch_all(exp.select("k", "v").from_(relation).order_by("k"))
    assert got == [(1, "a"), (2, "b"), (3, "c")]


def test_parquet_relation_reads_files_with_odd_paths(eng: Engine, tmp_path: Path) -> None:
    folder = tmp_path / 'it\'s a "folder"'
    folder.mkdir()
    pq.write_table(pa.table({"x": [1, 2]}), folder / "a.parquet")
    pq.write_table(pa.table({"x": [3]}), folder / "b b.parquet")
    paths = [str(folder / "a.parquet"), str(folder / "b b.parquet")]
    if eng.name == "postgres":
        with pytest.raises(EngineError):
            eng.parquet_relation(paths)
        return
    query = exp.select(exp.func("sum", exp.column("x"))).from_(eng.parquet_relation(paths))
    assert eng.fetch_all(query) == [(6,)]


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_transaction_rolls_back_on_error(kind: str, tmp_path: Path, request: Any) -> None:
    if kind == "duckdb":
        from productlens.engines.duckdb import DuckDBEngine

        engine: Engine = DuckDBEngine(tmp_path / "w.duckdb", memory_limit="1GB", threads=1)
    else:
        from productlens.engines.postgres import PostgresEngine

        engine = PostgresEngine(request.getfixturevalue("pg_dsn"))
    engine.ensure_schema("ops")
    engine.create_table("ops", "t", [("x", exp.DataType.build("INT"))])

    def insert_then_fail() -> None:
        with engine.transaction():
            engine.execute(exp.insert(q("SELECT 1"), table("ops", "t")))
            engine.execute(q("SELECT * FROM no_such_table"))

    with pytest.raises(EngineError):
        insert_then_fail()
    assert engine.fetch_all(exp.select("x").from_(table("ops", "t"))) == []
    engine.close()


def test_errors_are_engine_errors(eng: Engine) -> None:
    with pytest.raises(EngineError):
        eng.fetch_all(q("SELECT * FROM no_schema.no_table"))


# The writes a read-only engine must refuse, one row per method (or statement) that writes.
READ_ONLY_WRITES: dict[str, Any] = {
    "create_table": lambda e, s: e.create_table(s, "new", [("x", exp.DataType.build("INT"))]),
    "replace_table": lambda e, s: e.replace_table(s, "t", q("SELECT 2 AS a")),
    "replace_view": lambda e, s: e.replace_view(s, "v", exp.select("a").from_(table(s, "t"))),
    "append_arrow": lambda e, s: e.append_arrow(s, "t", pa.table({"a": pa.array([9], pa.int32())})),
    "drop": lambda e, s: e.drop(s, "t"),
    "ensure_schema": lambda e, s: e.ensure_schema(f"{s}_more"),
    "execute (insert)": lambda e, s: e.execute(exp.insert(q("SELECT 3"), table(s, "t"))),
}


def read_only_twin(eng: Engine, request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    """The same warehouse as `eng`, opened read-only as the dashboard opens it."""
    if eng.name == "duckdb":
        from productlens.engines.duckdb import DuckDBEngine

        eng.close()  # one process holds a DuckDB file in one mode at a time
        return DuckDBEngine(tmp_path / "w.duckdb", read_only=True)
    if eng.name == "postgres":
        from productlens.engines.postgres import PostgresEngine

        return PostgresEngine(request.getfixturevalue("pg_dsn"), read_only=True)
    from productlens.engines.spark import SparkEngine

    return SparkEngine(request.getfixturevalue("spark"), read_only=True)


def test_a_read_only_engine_refuses_every_write(
    eng: Engine, schema: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """What the dashboard opens: each write is refused with an EngineError saying the
    warehouse is read-only (DuckDB's read-only file, PostgreSQL's read-only session,
    Spark's engine refusing any statement but a query), and nothing changed."""
    eng.create_table(schema, "t", [("a", exp.DataType.build("INT"))])
    eng.append_arrow(schema, "t", pa.table({"a": pa.array([1], pa.int32())}))
    reader = read_only_twin(eng, request, tmp_path)
    try:
        refused = {}
        for name, write in READ_ONLY_WRITES.items():
            with pytest.raises(EngineError) as caught:
                write(reader, schema)
            refused[name] = str(caught.value)
        assert {n: "read-only" in m for n, m in refused.items()} == dict.fromkeys(refused, True)
        assert reader.fetch_all(exp.select("a").from_(table(schema, "t"))) == [(1,)]
        assert reader.list_tables(schema) == ["t"]
        assert reader.table_kind(schema, "new") is None
    finally:
        reader.close()
    if eng.name == "spark":
        assert refused["drop"].startswith("the warehouse is open read-only: DROP TABLE refused")
    if eng.name == "postgres":
        # The server's own words ("... in a read-only transaction") after the engine's.
        prefix = "the warehouse is open read-only: "
        assert {n: m.startswith(prefix) for n, m in refused.items()} == dict.fromkeys(refused, True)
