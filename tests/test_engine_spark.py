"""What the Spark engine does beyond the shared contract: partitioned tables behind a view
that keeps the model's column order, range overwrites that drop emptied days, exact
types through Arrow, Parquet relations usable in permanent views, and session ownership.

All tests use the run's one local Spark session; `connect()`, which starts Spark itself,
is tested in test_engine_spark_session.py (processes of its own, off the session's worker).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

from productlens.engines.base import table
from productlens.engines.spark import SparkEngine, _create_as
from productlens.errors import EngineError

pytestmark = pytest.mark.xdist_group("spark")
_counter = itertools.count()


@pytest.fixture
def eng(spark: Any) -> Iterator[SparkEngine]:
    engine = SparkEngine(spark)
    yield engine
    engine.close()


@pytest.fixture
def schema(eng: SparkEngine) -> str:
    name = f"spark_{next(_counter)}"
    eng.ensure_schema(name)
    return name


def q(sql: str) -> exp.Query:
    parsed = sqlglot.parse_one(sql, read="duckdb")
    assert isinstance(parsed, exp.Query)
    return parsed


def days(*pairs: tuple[str, int]) -> exp.Query:
    """A query of (day, v) rows with the partition column first."""
    values = ", ".join(f"('{d}', {v})" for d, v in pairs)
    return q(f"SELECT CAST(d AS DATE) AS day, v FROM (VALUES {values}) AS t(d, v)")


def catalog(spark: Any, schema: str) -> list[str]:
    """Every table and view Spark holds in the schema, hidden ones included."""
    return sorted(t.name for t in spark.catalog.listTables(schema) if not t.isTemporary)


def rows(eng: SparkEngine, schema: str, name: str) -> list[tuple[object, ...]]:
    return eng.fetch_all(exp.select("day", "v").from_(table(schema, name)).order_by("day"))


def test_partitioned_table_keeps_the_models_column_order(
    eng: SparkEngine, schema: str, spark: Any
) -> None:
    assert eng.replace_table(schema, "facts", days(("2024-01-01", 1)), partition_by="day") == 1
    # Spark stores the partition column last; the model said day first.
    assert [name for name, _ in eng.columns(schema, "facts")] == ["day", "v"]
    assert eng.fetch_arrow(exp.select("*").from_(table(schema, "facts"))).column_names == [
        "day",
        "v",
    ]
    assert eng.table_kind(schema, "facts") == "table"
    assert eng.list_tables(schema) == ["facts"]
    # A rebuild writes the other storage table and drops the first.
    before = catalog(spark, schema)
    eng.replace_table(schema, "facts", days(("2024-01-02", 2)), partition_by="day")
    after = catalog(spark, schema)
    assert len(before) == len(after) == 2
    assert before != after
    assert rows(eng, schema, "facts") == [(date(2024, 1, 2), 2)]
    # ... and range overwrites follow the view to it.
    eng.overwrite_range(schema, "facts", "day", date(2024, 1, 3), days(("2024-01-03", 3)))
    assert rows(eng, schema, "facts") == [(date(2024, 1, 2), 2), (date(2024, 1, 3), 3)]
    eng.drop(schema, "facts")
    assert catalog(spark, schema) == []


def test_overwrite_range_drops_days_the_new_rows_no_longer_have(
    eng: SparkEngine, schema: str
) -> None:
    old = days(*((f"2024-01-0{d}", d) for d in range(1, 6)))
    eng.replace_table(schema, "facts", old, partition_by="day")
    new = days(("2024-01-01", 100), ("2024-01-03", 30))
    assert eng.overwrite_range(schema, "facts", "day", date(2024, 1, 2), new) == 2
    assert rows(eng, schema, "facts") == [(date(2024, 1, 1), 1), (date(2024, 1, 3), 30)]


def test_failed_overwrite_leaves_the_table_and_no_leftover(
    eng: SparkEngine, schema: str, spark: Any
) -> None:
    eng.replace_table(schema, "facts", days(("2024-01-01", 1)), partition_by="day")
    before = catalog(spark, schema)
    broken = exp.select("day", "no_such_column").from_(table(schema, "facts"))
    with pytest.raises(EngineError, match="no_such_column"):
        eng.overwrite_range(schema, "facts", "day", date(2024, 1, 1), broken)
    assert rows(eng, schema, "facts") == [(date(2024, 1, 1), 1)]
    assert catalog(spark, schema) == before


def test_overwrite_range_needs_a_partitioned_table(eng: SparkEngine, schema: str) -> None:
    eng.replace_table(schema, "plain", days(("2024-01-01", 1)))
    with pytest.raises(EngineError, match="partition_by='day'"):
        eng.overwrite_range(schema, "plain", "day", date(2024, 1, 1), days(("2024-01-01", 2)))
    assert rows(eng, schema, "plain") == [(date(2024, 1, 1), 1)]


def test_partitioned_and_plain_tables_replace_each_other(
    eng: SparkEngine, schema: str, spark: Any
) -> None:
    eng.replace_table(schema, "t", days(("2024-01-01", 1)))
    eng.replace_table(schema, "t", days(("2024-01-02", 2)), partition_by="day")
    assert rows(eng, schema, "t") == [(date(2024, 1, 2), 2)]
    eng.replace_table(schema, "t", days(("2024-01-03", 3)))
    assert rows(eng, schema, "t") == [(date(2024, 1, 3), 3)]
    assert catalog(spark, schema) == ["t"]  # the partitioned storage went with its view


def test_append_to_a_partitioned_table_by_name(eng: SparkEngine, schema: str) -> None:
    eng.replace_table(schema, "facts", days(("2024-01-01", 1)), partition_by="day")
    data = pa.table({"v": pa.array([2], pa.int32()), "day": pa.array([date(2024, 1, 2)])})
    assert eng.append_arrow(schema, "facts", data) == 1
    assert rows(eng, schema, "facts") == [(date(2024, 1, 1), 1), (date(2024, 1, 2), 2)]


def test_temp_table_keeps_types_and_values_exactly(eng: SparkEngine) -> None:
    data = pa.table(
        {
            "naive": pa.array([datetime(2024, 3, 10, 2, 30, 0, 123456), None], pa.timestamp("us")),
            "aware": pa.array(
                [datetime(2024, 3, 10, 2, 30, tzinfo=UTC), None], pa.timestamp("us", tz="UTC")
            ),
            "money": pa.array([Decimal("12345678901.23"), None], pa.decimal128(13, 2)),
            "day": pa.array([date(2024, 2, 29), None], pa.date32()),
            "n": pa.array([9007199254740993, None], pa.int64()),
        }
    )
    with eng.temp_table("typed_rows", data) as relation:
        # In the data's order (n ascending, its null last): Spark gives none without ORDER BY.
        got = eng.fetch_arrow(exp.select("*").from_(relation).order_by("n NULLS LAST"))
    # A naive time is a wall-clock time: it comes back naive and unshifted.
    assert got.schema == data.schema
    assert got.to_pylist() == data.to_pylist()


def test_parquet_relation_gives_lineage_and_serves_a_permanent_view(
    eng: SparkEngine, schema: str, tmp_path: Path
) -> None:
    folder = tmp_path / "lake `raw` it's"
    folder.mkdir()
    pq.write_table(pa.table({"x": [1, 2], "y": ["a", "b"]}), folder / "a.parquet")
    # Another column order: columns are taken by name, never by position.
    pq.write_table(pa.table({"y": ["c"], "x": [3]}), folder / "b b.parquet")
    relation = eng.parquet_relation([str(folder / "a.parquet"), str(folder / "b b.parquet")])
    lineage = exp.select(
        "x",
        "y",
        exp.column("file_name", table="_metadata").as_("file"),
        exp.column("row_index", table="_metadata").as_("line"),
    ).from_(relation)
    eng.replace_view(schema, "events", lineage)  # a temporary view could not be used here
    got = eng.fetch_all(exp.select("*").from_(table(schema, "events")).order_by("x"))
    # Spark URL-encodes the file name.
    assert got == [(1, "a", "a.parquet", 0), (2, "b", "a.parquet", 1), (3, "c", "b%20b.parquet", 0)]


def test_parquet_relation_errors_name_the_file(eng: SparkEngine, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="does not exist"):
        eng.parquet_relation([str(tmp_path / "missing.parquet")])
    with pytest.raises(EngineError):
        eng.parquet_relation([])


def test_errors_carry_sparks_first_line_only(eng: SparkEngine) -> None:
    with pytest.raises(EngineError) as caught:
        eng.fetch_all(q("SELECT * FROM no_schema.no_table"))
    assert "TABLE_OR_VIEW_NOT_FOUND" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_given_session_outlives_the_engine(spark: Any) -> None:
    SparkEngine(spark).close()
    assert spark.sql("SELECT 1 AS x").collect()[0].x == 1


def test_connect_refuses_a_second_session_in_one_process(spark: Any, tmp_path: Path) -> None:
    # getOrCreate would hand back the running session and ignore the warehouse directory.
    with pytest.raises(EngineError, match="already running"):
        SparkEngine.connect("local[1]", warehouse_dir=str(tmp_path))


class _CountingSession:
    """The real session, counting the statements sent to it (and nothing else changed)."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.sent: list[str] = []

    def sql(self, text: str) -> Any:
        self.sent.append(text)
        return self._session.sql(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def test_catalog_answers_follow_the_engines_own_changes(spark: Any) -> None:
    """Catalog look-ups are cached (each is a Spark command, asked for every table a
    statement reads) and forgotten when a statement of the engine changes the schema."""
    session = _CountingSession(spark)
    eng = SparkEngine(session)
    schema = f"spark_{next(_counter)}"
    eng.ensure_schema(schema)
    eng.replace_table(schema, "t", q("SELECT CAST('2024-01-02' AS DATE) AS d"))
    assert eng.table_kind(schema, "t") == "table"
    assert eng.columns(schema, "t") == [("d", exp.DataType.build("DATE"))]
    before = len(session.sent)
    assert eng.table_kind(schema, "t") == "table"
    assert eng.columns(schema, "t") == [("d", exp.DataType.build("DATE"))]
    assert len(session.sent) == before  # answered from the cache

    # Rebuilt with other columns and types, then as a view, a partitioned table, dropped.
    eng.replace_table(schema, "t", q("SELECT 1 AS d, 'x' AS e"))
    columns = [(c, t.sql("spark")) for c, t in eng.columns(schema, "t")]
    assert columns == [("d", "INT"), ("e", "STRING")]
    eng.replace_view(schema, "t", q("SELECT 2 AS v"))
    assert (eng.table_kind(schema, "t"), eng.list_tables(schema)) == ("view", ["t"])
    eng.replace_table(schema, "t", days(("2024-01-01", 1)), partition_by="day")
    eng.replace_table(schema, "t", days(("2024-01-05", 5)), partition_by="day")
    assert eng.table_kind(schema, "t") == "table"
    assert rows(eng, schema, "t") == [(date(2024, 1, 5), 5)]
    assert catalog(spark, schema) == sorted(["t", "t__parts_b"])
    eng.drop(schema, "t")
    assert (eng.table_kind(schema, "t"), eng.list_tables(schema)) == (None, [])
    assert catalog(spark, schema) == []


# Queries whose row counts a build must report exactly: none, a shuffle over several
# tasks (a group by), and a partitioned table (one file per day).
_WRITE_COUNTS = [
    ("empty", "SELECT 1 AS x WHERE 1 = 0", None),
    (
        "shuffled",
        "SELECT a % 7 AS k, count(*) AS n FROM (VALUES (1), (2), (3), (8), (9), (15)) AS v(a) "
        "GROUP BY 1",
        None,
    ),
    (  # two subqueries' CTEs of one name, as in retention_cohorts
        "nested_ctes",
        "SELECT * FROM (WITH a AS (SELECT 1 AS x) SELECT * FROM a) AS w "
        "UNION ALL SELECT * FROM (WITH a AS (SELECT 2 AS x) SELECT * FROM a) AS m",
        None,
    ),
    (
        "partitioned",
        "SELECT CAST(d AS DATE) AS day, v FROM (VALUES ('2024-01-01', 1), ('2024-01-01', 2), "
        "('2024-01-02', 3), ('2024-01-03', 4)) AS t(d, v)",
        "day",
    ),
]


@pytest.mark.parametrize(
    ("sql", "partition_by"), [c[1:] for c in _WRITE_COUNTS], ids=[c[0] for c in _WRITE_COUNTS]
)
def test_built_rows_are_the_writes_own_count(
    spark: Any, sql: str, partition_by: str | None
) -> None:
    """On a classic session, a build's rows come from its write (numOutputRows), not from
    a second pass over the table: they equal a count(*) of the table, and no count was
    sent while building."""
    session = _CountingSession(spark)
    eng = SparkEngine(session)
    schema = f"spark_{next(_counter)}"
    eng.ensure_schema(schema)
    query = q(sql)
    expected = len(eng.fetch_all(query))  # the query's own rows
    before = len(session.sent)
    built = eng.replace_table(schema, "t", query, partition_by=partition_by)
    # A count would read the table built (`t__building`, `t__parts_a`) back.
    reads = [t for t in session.sent[before:] if t.startswith("SELECT") and "`t__" in t]
    assert reads == []
    assert built == expected
    counted = eng.fetch_all(exp.select(exp.func("count", exp.Star())).from_(table(schema, "t")))
    assert built == counted[0][0]


def test_built_table_has_the_querys_columns_and_types(eng: SparkEngine, schema: str) -> None:
    """The table a build creates (empty, from the query's analysed columns, then filled)
    has the column names, order, types and nullability a CTAS of the query gives."""
    sql = (
        "SELECT 1 AS i, CAST(2 AS BIGINT) AS b, 1.5 AS dc, CAST(2.5 AS DOUBLE) AS d, "
        "'x' AS s, CAST('2024-01-02' AS DATE) AS dt, "
        "CAST('2024-01-02 03:04:05' AS TIMESTAMP) AS ts, true AS flag, [1, 2] AS arr"
    )
    query = q(sql)
    eng.replace_table(schema, "typed", query)
    # The table Spark's own CTAS makes of the same query (all columns nullable).
    eng.execute(_create_as(schema, "ctas", query, None))
    stored, made = (eng._session.table(f"`{schema}`.`{n}`").schema for n in ("typed", "ctas"))
    assert [(f.name, f.dataType, f.nullable) for f in stored] == [
        (f.name, f.dataType, f.nullable) for f in made
    ]
    values = eng.fetch_all(exp.select("i", "b", "dc", "s").from_(table(schema, "typed")))
    assert values == [(1, 2, Decimal("1.5"), "x")]


# CTEs read more than once (`a` by `b` and twice by the main query, `b` by `c` and twice
# by the main query), one read once by a staged one (`k` by `b`), aliases over the
# readers, and a CTE naming its columns (`a`).
STAGED = """
WITH k AS (SELECT 2 AS m),
a(x, y) AS (SELECT v, v * v FROM (VALUES (1), (2), (3), (4)) AS t(v)),
b AS (SELECT a.x, a.y + k.m AS z FROM a CROSS JOIN k WHERE a.x > 1),
c AS (SELECT max(z) AS top FROM b WHERE z > 2)
SELECT p.x, p.y, q.z, c.top, (SELECT count(*) FROM a AS s WHERE s.x <= p.x) AS le
FROM a AS p LEFT JOIN b AS q ON q.x = p.x CROSS JOIN c CROSS JOIN b AS r
WHERE r.x = 2 ORDER BY p.x
"""


def stage_views(spark: Any) -> list[str]:
    return [t.name for t in spark.catalog.listTables() if t.name.startswith("__productlens_stage")]


def test_ctes_read_more_than_once_run_once_each_with_the_same_answer(
    eng: SparkEngine, spark: Any
) -> None:
    query = q(STAGED)
    with eng._staged(eng._portable(query)) as last:
        # `a` and `b` are computed first, each under a temporary view of its own (`b`'s
        # with `k` as its CTE); `k` and `c`, read once each, stay CTEs.
        assert len(stage_views(spark)) == 2
        assert [cte.alias for cte in last.args["with_"].expressions] == ["k", "c"]
    assert stage_views(spark) == []
    expected = duckdb.sql(STAGED).fetchall()
    assert expected == [
        (1, 1, None, 18, 1),
        (2, 4, 6, 18, 2),
        (3, 9, 11, 18, 3),
        (4, 16, 18, 18, 4),
    ]
    assert eng.fetch_all(query) == expected
    assert stage_views(spark) == []


def test_a_failing_stage_leaves_no_view(eng: SparkEngine, spark: Any) -> None:
    query = q(
        "WITH a AS (SELECT 1 AS x), b AS (SELECT x FROM a UNION ALL SELECT x FROM a), "
        "c AS (SELECT raise_error('stage failed') AS y FROM b) "
        "SELECT * FROM c AS one CROSS JOIN c AS two"
    )
    with pytest.raises(EngineError, match="stage failed"):
        eng.fetch_all(query)
    assert stage_views(spark) == []
