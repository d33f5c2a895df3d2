"""The `ops` schema's own tables (run log, data-test results, run history, rejected
landing files, demo marker): their columns and the statements that write and read them, as
SQLGlot expressions.

Ingestion's bookkeeping tables (`ops.raw_files`, `ops.ingested_files`, ...) belong to
`productlens.ingest`, which defines them with its processor.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlglot import exp

from productlens.engines.base import Engine, table

SCHEMA = "ops"
Columns = tuple[tuple[str, exp.DataType], ...]


def _columns(*pairs: tuple[str, str]) -> Columns:
    return tuple((name, exp.DataType.build(kind)) for name, kind in pairs)


# Each table as (schema, name) and its columns. No NOT NULL: `Engine.create_table` takes
# names and types only; only productlens writes these tables.
# The run log is append-only (Spark's tables take no UPDATE): `run_events` gets a row when a
# step starts (`running`) and one when it ends; `run_log` is a view of each step's latest.
RUN_EVENTS = (SCHEMA, "run_events")
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
# One row when a `productlens run` starts (`running`) and one when it ends: append-only,
# like the run log; a run's latest row is its state (`productlens.daily.history`).
RUN_HISTORY = (SCHEMA, "run_history")
RUN_HISTORY_COLUMNS = _columns(
    ("run_id", "VARCHAR"),
    ("status", "VARCHAR"),
    ("started_at", "TIMESTAMP"),
    ("finished_at", "TIMESTAMP"),
    ("date_from", "DATE"),
    ("date_to", "DATE"),
    ("rebuild_from", "DATE"),
    ("full_rebuild", "BOOLEAN"),
    ("rows_in", "BIGINT"),
    ("rows_loaded", "BIGINT"),
    ("rows_quarantined", "BIGINT"),
    ("tests_passed", "BIGINT"),
    ("tests_warned", "BIGINT"),
    ("tests_failed", "BIGINT"),
    ("failed_tests", "VARCHAR"),
    ("error", "VARCHAR"),
    ("rows_duplicate", "BIGINT"),  # added after the first release of run_history
    ("files_rejected", "BIGINT"),  # added later still: see REJECTED_FILES
)
# Landing files `productlens run` could not read and left in place (append-only): one row
# per file per rejection. A file whose (checksum, settings_fingerprint) is here is not read
# again; new bytes or other ingest settings (another fingerprint) are.
REJECTED_FILES = (SCHEMA, "rejected_files")
REJECTED_FILES_COLUMNS = _columns(
    ("path", "VARCHAR"),
    ("target_table", "VARCHAR"),
    ("checksum", "VARCHAR"),  # SHA-256 of the file's bytes
    ("size_bytes", "BIGINT"),
    ("reason", "VARCHAR"),  # names the file and what is wrong with it
    ("settings_fingerprint", "VARCHAR"),  # productlens.ingest.settings_fingerprint
    ("run_id", "VARCHAR"),
    ("rejected_at", "TIMESTAMP"),
)
# Marks a warehouse the demo made (and may therefore delete).
DEMO_WORLD = (SCHEMA, "demo_world")
DEMO_WORLD_COLUMNS = _columns(("params", "VARCHAR"), ("created_at", "TIMESTAMP"))

Value = str | int | float | bool | datetime | date | None


def value(v: Value) -> exp.Expr:
    """A Python value as a typed SQL literal (timestamps without a zone)."""
    if isinstance(v, datetime):
        return exp.cast(exp.Literal.string(v.isoformat(sep=" ")), exp.DataType.Type.TIMESTAMP)
    if isinstance(v, date):
        return exp.cast(exp.Literal.string(v.isoformat()), exp.DataType.Type.DATE)
    return exp.convert(v)


def ensure(engine: Engine, name: tuple[str, str], columns: Columns) -> None:
    """Create an ops table (and its schema) if it is not there."""
    engine.ensure_schema(name[0])
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


STEP = ("run_id", "stage", "object", "started_at")


def run_log_view() -> exp.Query:
    """Each step's latest state: its end row if it has one, else its start row."""
    still_running = (
        exp.Case()
        .when(same("status", "running"), exp.Literal.number(1))
        .else_(exp.Literal.number(0))
    )
    latest = exp.Window(
        this=exp.RowNumber(),
        partition_by=[exp.column(c, quoted=True) for c in STEP],
        order=exp.Order(expressions=[exp.Ordered(this=still_running)]),
    )
    names = [exp.column(c, quoted=True) for c, _ in RUN_LOG_COLUMNS]
    events = exp.select(*names, latest.as_("step_rank")).from_(table(*RUN_EVENTS))
    return (
        exp.select(*(exp.column(c, quoted=True) for c, _ in RUN_LOG_COLUMNS))
        .from_(events.subquery("events"))
        .where(exp.column("step_rank").eq(1))
    )


def ensure_run_log(engine: Engine) -> None:
    """The run log's table and view (a run log kept as a table by earlier versions moves
    into the event table first)."""
    ensure(engine, RUN_EVENTS, RUN_LOG_COLUMNS)
    kind = engine.table_kind(*RUN_LOG)
    if kind == "table":
        names = [exp.column(c, quoted=True) for c, _ in RUN_LOG_COLUMNS]
        with engine.transaction():
            engine.execute(
                exp.insert(exp.select(*names).from_(table(*RUN_LOG)), table(*RUN_EVENTS))
            )
            engine.drop(*RUN_LOG)
    if kind != "view":
        engine.replace_view(*RUN_LOG, run_log_view())


def interrupted_steps(run_id: str, now: datetime) -> exp.Insert:
    """End rows (`interrupted`) for the steps of other runs that never ended: a run holds
    the warehouse alone, so such steps belong to runs that were killed."""
    ends = (
        exp.select(
            *(exp.column(c, quoted=True) for c in STEP),
            value(now).as_("finished_at"),
            exp.cast(exp.null(), exp.DataType.Type.BIGINT).as_("n_rows"),
            exp.Literal.string("interrupted").as_("status"),
            exp.cast(exp.null(), exp.DataType.Type.VARCHAR).as_("error"),
        )
        .from_(table(*RUN_LOG))
        .where(same("status", "running"))
        .where(same("run_id", run_id).not_())
    )
    return exp.insert(ends, table(*RUN_EVENTS))


def build_starts(objects: Sequence[str], *, other_than: str | None = None) -> exp.Query:
    """Per object among `objects` that has build steps: when its latest build step of any
    outcome started (`any_start`: a step killed mid-way may have committed), and when its
    latest successful one did (`success_start`, null if none); with `other_than`, among
    the steps of the other runs only."""
    started = exp.column("started_at", quoted=True)
    succeeded = exp.Case().when(same("status", "success"), started)
    query = (
        exp.select(
            exp.column("object", quoted=True),
            exp.Max(this=started).as_("any_start"),
            exp.Max(this=succeeded).as_("success_start"),
        )
        .from_(table(*RUN_EVENTS))
        .where(same("stage", "build"))
        .where(exp.column("object", quoted=True).isin(*(value(o) for o in objects)))
        .group_by(exp.column("object", quoted=True))
    )
    return query if other_than is None else query.where(same("run_id", other_than).not_())


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


# The comment a DuckDB table built from a shipped model carries (a project's model of the
# same name gets `project model <path>`): metrics that trust a shipped model's meaning
# (the funnel's day index) read it only with this mark.
SHIPPED_MODEL = "productlens shipped model"


def table_comment(engine: Engine, schema: str, name: str) -> str | None:
    """The DuckDB table's comment (None if there is none, or no such table)."""
    query = (
        exp.select("comment")
        .from_(exp.func("duckdb_tables"))
        .where(exp.column("schema_name").eq(value(schema)))
        .where(exp.column("table_name").eq(value(name)))
    )
    rows = engine.fetch_all(query)
    return rows[0][0] if rows else None
