"""The `ops` schema's own tables (run log, data-test results, demo marker): their columns
and the statements that write and read them, as SQLGlot expressions.

Ingestion's bookkeeping tables (`ops.raw_files`, `ops.ingested_files`, ...) belong to
`productlens.ingest`, which defines them with its processor.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlglot import exp

from productlens.engines.base import Engine, table

SCHEMA = "ops"
Columns = tuple[tuple[str, exp.DataType], ...]


def _columns(*pairs: tuple[str, str]) -> Columns:
    return tuple((name, exp.DataType.build(kind)) for name, kind in pairs)


# Each table as (schema, name) and its columns. No NOT NULL: `Engine.create_table` takes
# names and types only; only productlens writes these tables.
RUN_LOG = (SCHEMA, "run_log")
RUN_LOG_COLUMNS = _columns(
    ("run_id", "VARCHAR"),
    ("stage", "VARCHAR"),
    ("object", "VARCHAR"),
    ("started_at", "TIMESTAMP"),
    ("finished_at", "TIMESTAMP"),
    ("n_rows", "BIGINT"),
    ("status", "VARCHAR"),
    ("error", "VARCHAR"),
)
TEST_RESULTS = (SCHEMA, "test_results")
TEST_RESULTS_COLUMNS = _columns(
    ("run_id", "VARCHAR"),
    ("test_name", "VARCHAR"),
    ("model", "VARCHAR"),
    ("severity", "VARCHAR"),
    ("status", "VARCHAR"),
    ("n_failing", "BIGINT"),
    ("sample_json", "VARCHAR"),
    ("checked_at", "TIMESTAMP"),
)
# Marks a warehouse the demo made (and may therefore delete).
DEMO_WORLD = (SCHEMA, "demo_world")
DEMO_WORLD_COLUMNS = _columns(("params", "VARCHAR"), ("created_at", "TIMESTAMP"))

Value = str | int | float | datetime | None


def value(v: Value) -> exp.Expr:
    """A Python value as a typed SQL literal (timestamps without a zone)."""
    if isinstance(v, datetime):
        return exp.cast(exp.Literal.string(v.isoformat(sep=" ")), exp.DataType.Type.TIMESTAMP)
    return exp.convert(v)


def ensure(engine: Engine, name: tuple[str, str], columns: Columns) -> None:
    """Create an ops table if it is not there."""
    engine.create_table(*name, columns)


def insert_rows(
    name: tuple[str, str], columns: Columns, rows: Sequence[Sequence[Value]]
) -> exp.Insert:
    """INSERT INTO the table (its columns, in order) VALUES the rows."""
    target = exp.Schema(
        this=table(*name), expressions=[exp.to_identifier(c, quoted=True) for c, _ in columns]
    )
    values = exp.values([exp.Tuple(expressions=[value(v) for v in row]) for row in rows])
    return exp.Insert(this=target, expression=values)


def same(column: str, v: Value) -> exp.Expr:
    """`column = v`, or `column IS NULL` for None (IS NOT DISTINCT FROM, portably)."""
    col = exp.column(column, quoted=True)
    return col.is_(exp.null()) if v is None else col.eq(value(v))


def update(name: tuple[str, str], changes: dict[str, Value], where: exp.Expr) -> exp.Update:
    """UPDATE the table SET the columns WHERE the condition."""
    sets = [exp.column(c, quoted=True).eq(value(v)) for c, v in changes.items()]
    return exp.Update(this=table(*name), expressions=sets, where=exp.Where(this=where))


def last_builds() -> exp.Query:
    """Per built object: rows and finish time of its last successful build."""
    latest = exp.Window(
        this=exp.RowNumber(),
        partition_by=[exp.column("object", quoted=True)],
        order=exp.Order(expressions=[exp.Ordered(this=exp.column("finished_at"), desc=True)]),
    )
    ranked = (
        exp.select("object", "n_rows", "finished_at", exp.alias_(latest, "latest"))
        .from_(table(*RUN_LOG))
        .where(same("stage", "build"))
        .where(same("status", "success"))
    )
    return (
        exp.select("object", "n_rows", "finished_at")
        .from_(ranked.subquery("ranked"))
        .where(exp.column("latest").eq(1))
    )
