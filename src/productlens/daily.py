"""Daily runs from a landing folder (`productlens run`) and their history (`productlens runs`).

A run is: ingest the landing folder's files not loaded before (ingestion's own checksum
log skips the others) -> rebuild staging and core from the first date the new rows touch
(each incremental model rewrites from that date minus its lookback, the others rebuild
whole: `modeling.build(since=...)`) -> build the marts *aside* -> run every data test ->
publish the marts -> refresh the report (which computes the experiment readouts).

Publishing marts only after the checks pass, on any engine. The engines have no
cross-schema rename, so the marts are built into their own schema, `marts_next`
(`ASIDE`): each mart model's expression is rewritten so that it names
`marts_next.<model>` wherever it read `marts.<model>`, and incremental marts are first
seeded there with a copy of the live table so that only their date window is recomputed.
The data tests run against staging, core and `marts_next`. Only when no error-level test
fails are the marts swapped in, as one set (`Engine.replace_tables`): each is copied to
`marts.<name>__building`, then one transaction drops the live tables and renames the new
ones. On DuckDB and PostgreSQL readers therefore see all the previous marts or all the
new, and a run killed mid-swap leaves all the previous (the `__building` copies it left are
replaced by the next run). Spark's catalog has no transactions: there the marts are
swapped one after another (each one atomically, a partitioned mart by repointing its
view), so a reader between two swaps, or a run killed mid-way, sees some marts new and
the rest old, until the next run publishes them all again. A run that stops leaves
`marts_next` as it was built, for inspection; the next run rebuilds it. Staging and core
are rebuilt in place before the checks (each table swapped atomically, as `productlens
build` does).

Transient engine errors (a lock, a lost connection) are retried per stage, with the
engine opened again first (`reopen`): the error may have left the connection dead.

One run at a time: a run holds the project's run lock (`runs/.lock`, an OS file lock that
dies with its process) from before it opens the engine; a second run refuses at once
(`RunInProgress`, exit 75) and records nothing. So a history row that never finished,
with no run holding the lock, is a killed run: `runs` shows it `interrupted`.

A landing file that cannot be read is rejected, not the run's failure: it stays where it
is, is recorded in `ops.rejected_files` with its checksum and the fingerprint of the ingest
settings, and the run ends `completed_with_rejections` (exit 3, the hook told) once the
rest is published. Later runs do not read the same bytes with the same settings again.

Nothing is lost between runs: a run that fails after loading rows records the dates those
rows touch (`ops.run_history`), and the next run rebuilds from the earliest date of every
run since the last successful one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, cast

from rich.console import Console
from sqlglot import exp

from productlens import checks, modeling, ops
from productlens.config import Project
from productlens.engines import Engine
from productlens.engines.base import table
from productlens.errors import (
    ConfigError,
    DataTestFailure,
    FilesRejected,
    IngestError,
    ProductLensError,
    RunInProgress,
)
from productlens.ingest import CONTRACTS, IngestResult, Screening
from productlens.objects import FilePath, ObjectPath
from productlens.pipeline import Runner, RunSummary
from productlens.retry import RetryPolicy, retrying

ASIDE = "marts_next"
MARTS = "marts"
# A run that published its marts but left landing files it could not read (exit 3).
WITH_REJECTIONS = "completed_with_rejections"
SUCCEEDED = ("success", WITH_REJECTIONS)  # the marts were published
# Rows stamped with a UTC time may fall on the day before in the metrics time zone.
ZONE_MARGIN = timedelta(days=1)


# --- which dates new rows touch ----------------------------------------------------------


def _column(name: str, alias: str | None = None) -> exp.Column:
    return exp.column(name, table=alias, quoted=True)


def _as_date(column: exp.Expr) -> exp.Expr:
    return exp.cast(column, exp.DataType.Type.DATE)


def _in_batches(column: exp.Column, batches: Sequence[str]) -> exp.Expr:
    return column.isin(*(exp.Literal.string(b) for b in batches))


def _own_dates(column: str) -> Callable[[str, Sequence[str]], exp.Query]:
    """The dates of the new rows' own time column."""

    def query(name: str, batches: Sequence[str]) -> exp.Query:
        return (
            exp.select(_as_date(_column(column)).as_("touched"))
            .from_(table("raw", name))
            .where(_in_batches(_column("_batch_id"), batches))
        )

    return query


def _order_item_dates(name: str, batches: Sequence[str]) -> exp.Query:
    """An order line counts on its order's date."""
    # exp.alias_(table=True), not Table.as_: the latter's bare Identifier alias breaks
    # SQLGlot's qualify, which transpiling for PostgreSQL and Spark runs.
    orders = exp.alias_(table("raw", "orders"), "o", table=True)
    return (
        exp.select(_as_date(_column("order_ts", "o")).as_("touched"))
        .from_(exp.alias_(table("raw", name), "i", table=True))
        .join(orders, on=_column("order_id", "i").eq(_column("order_id", "o")))
        .where(_in_batches(_column("_batch_id", "i"), batches))
    )


def _user_dates(name: str, batches: Sequence[str]) -> exp.Query:
    """A new user's first version reaches back in time (dim_users), so its events and
    orders, whatever their dates, may change: their dates count as well as the signup."""
    new_users = (
        exp.select(_column("user_id"))
        .from_(table("raw", name))
        .where(_in_batches(_column("_batch_id"), batches))
    )
    signups = _own_dates("signup_ts")(name, batches)
    activity = [
        exp.select(_as_date(_column(ts)).as_("touched"))
        .from_(table("raw", source))
        .where(_column("user_id").isin(query=new_users.copy()))
        for source, ts in (("events", "event_ts"), ("orders", "order_ts"))
    ]
    return exp.union(signups, *activity, distinct=False)


# Per raw table: the dates its new rows touch, as a query over the batches that loaded
# them; None: any date may change (a product's first version reaches back in time), so a
# full rebuild. Tables no incremental model reads do not matter (they rebuild whole).
CHANGE_DATES: dict[str, Callable[[str, Sequence[str]], exp.Query] | None] = {
    "events": _own_dates("event_ts"),
    "users": _user_dates,
    "user_changes": _own_dates("changed_at"),
    "orders": _own_dates("order_ts"),
    "order_items": _order_item_dates,
    "inventory": _own_dates("snapshot_date"),
    "subscriptions": _own_dates("started_at"),
    "assignments": _own_dates("assigned_ts"),
    "products": None,
    "campaigns": None,
    "experiments": None,
}


@dataclass(frozen=True)
class Touched:
    """The dates the new rows touch: `full` when any date may have changed; `undated`
    when rows arrived that only models rebuilt whole read (a new campaign)."""

    first: date | None = None
    last: date | None = None
    full: bool = False
    undated: bool = False

    def merge(self, other: Touched) -> Touched:
        firsts = [d for d in (self.first, other.first) if d is not None]
        lasts = [d for d in (self.last, other.last) if d is not None]
        return Touched(
            min(firsts, default=None),
            max(lasts, default=None),
            self.full or other.full,
            self.undated or other.undated,
        )


def incremental_sources(graph: modeling.ModelGraph) -> set[str]:
    """The raw tables that incremental models (or the models they read) read."""
    found: set[str] = set()
    for model in graph:
        if model.spec is None or model.spec.incremental is None:
            continue
        for name in {model.name, *graph.ancestors(model.name)}:
            for upstream in graph[name].upstreams:
                schema, _, source = upstream.partition(".")
                if schema == "raw":
                    found.add(source)
    return found


def touched_dates(engine: Engine, graph: modeling.ModelGraph, result: IngestResult) -> Touched:
    """The dates the rows this ingest loaded touch, in the models that rebuild by date."""
    relevant = incremental_sources(graph)
    batches: dict[str, list[str]] = {}
    touched = Touched()
    for batch in result.batches:
        if batch.rows_loaded and batch.table in relevant:
            batches.setdefault(batch.table, []).append(batch.batch_id)
        elif batch.rows_loaded:  # read by models that rebuild whole: no window, but a build
            touched = touched.merge(Touched(undated=True))
    for name, ids in batches.items():
        rule = CHANGE_DATES.get(name)
        if rule is None:
            touched = touched.merge(Touched(full=True))
            continue
        dates = rule(name, ids).subquery("touched_dates")
        query = exp.select(
            exp.func("min", exp.column("touched")), exp.func("max", exp.column("touched"))
        ).from_(dates)
        first, last = engine.fetch_all(query)[0]
        if first is not None:
            touched = touched.merge(Touched(_day(first) - ZONE_MARGIN, _day(last)))
    return touched


def _day(value: date) -> date:
    return value.date() if isinstance(value, datetime) else value


# --- marts built aside ---------------------------------------------------------------------


def aside(graph: modeling.ModelGraph) -> modeling.ModelGraph:
    """The graph with every mart built into `marts_next` and reading its fellow marts
    there; staging and core models are unchanged."""

    def moved(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Table) and node.db == MARTS:
            node = node.copy()
            node.set("db", exp.to_identifier(ASIDE))
        return node

    models = {
        name: (
            dataclasses.replace(
                model, layer=ASIDE, expression=cast(exp.Query, model.expression.transform(moved))
            )
            if model.layer == MARTS
            else model
        )
        for name, model in graph.models.items()
    }
    return modeling.ModelGraph(models=models, order=list(graph.order))


def seed_aside(engine: Engine, graph: modeling.ModelGraph, since: date | None) -> None:
    """Make `marts_next` ready for a build: an incremental mart that will rewrite only its
    window starts as a copy of the live table; every other mart's old copy is dropped."""
    engine.ensure_schema(ASIDE)
    for model in graph:
        if model.layer != MARTS:
            continue
        incremental = model.spec.incremental if model.spec else None
        if since is not None and incremental and engine.table_kind(MARTS, model.name) == "table":
            live = exp.select("*").from_(table(MARTS, model.name))
            engine.replace_table(ASIDE, model.name, live, partition_by=incremental.date_column)
        else:
            engine.drop(ASIDE, model.name)


def aside_tests(built_aside: modeling.ModelGraph) -> list[checks.DataTest]:
    """Every data test of the graph `aside` made, the marts' run against `marts_next`
    (and named as the marts)."""

    def moved(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Table) and node.db == MARTS:
            node = node.copy()
            node.set("db", exp.to_identifier(ASIDE, quoted=True))
        return node

    # The probe's table and condition move with the query: a probe that scanned the live
    # marts would pass a test the aside table fails.
    return [
        dataclasses.replace(
            test,
            query=cast(exp.Query, test.query.transform(moved)),
            model=test.model.replace(f"{ASIDE}.", f"{MARTS}.", 1),
            probe_table=(
                None
                if test.probe_table is None
                else cast(exp.Table, test.probe_table.transform(moved))
            ),
            probe_condition=(
                None if test.probe_condition is None else test.probe_condition.transform(moved)
            ),
            probe_counts=tuple(
                cast(exp.Table, counted.transform(moved)) for counted in test.probe_counts
            ),
        )
        for test in checks.compile_tests(built_aside)
    ]


def promote(engine: Engine, graph: modeling.ModelGraph) -> int:
    """Swap the marts built aside in for the live ones as one set (`replace_tables`: one
    transaction on DuckDB and PostgreSQL), then the marts that are views; returns rows.
    Re-runnable: a mart no longer waiting aside was swapped in by an earlier attempt (an
    orchestrator's retried publish task) and is left as it is."""
    tables: dict[str, exp.Query] = {}
    partitions: dict[str, str] = {}
    views = []
    for model in graph:
        if model.layer != MARTS:
            continue
        if model.spec is not None and model.spec.materialized == "view":
            views.append(model)
            continue
        if engine.table_kind(ASIDE, model.name) != "table":
            continue
        tables[model.name] = exp.select("*").from_(table(ASIDE, model.name))
        if model.spec is not None and model.spec.incremental is not None:
            partitions[model.name] = model.spec.incremental.date_column
    rows = engine.replace_tables(MARTS, tables, partition_by=partitions)
    for model in views:
        engine.replace_view(MARTS, model.name, model.expression)
    for name in tables:
        engine.drop(ASIDE, name)
    return rows


# --- history -------------------------------------------------------------------------------


@dataclass
class RunRecord:
    """One `productlens run` as the history shows it."""

    run_id: str
    status: str = "running"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    date_from: date | None = None
    date_to: date | None = None
    rebuild_from: date | None = None
    full_rebuild: bool = False
    rows_in: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0  # exact copies of rows loaded before (a file landed again)
    files_rejected: int = 0  # landing files this run could not read (ops.rejected_files)
    tests_passed: int = 0
    tests_warned: int = 0
    tests_failed: int = 0
    failed_tests: list[str] = field(default_factory=list)
    error: str | None = None
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage
    # the files this run rejected, as ops.rejected_files lists them (not a history column)
    rejected_files: list[dict[str, Any]] = field(default_factory=list)

    def row(self) -> list[ops.Value]:
        """The record as a row of `ops.run_history`."""
        values: dict[str, ops.Value] = {
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
            "failed_tests": json.dumps(self.failed_tests),
        }
        return [values[name] for name, _ in ops.RUN_HISTORY_COLUMNS]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RunRecord:
        fields: dict[str, Any] = {name: row.get(name) for name, _ in ops.RUN_HISTORY_COLUMNS}
        fields["failed_tests"] = json.loads(row.get("failed_tests") or "[]")
        for count in (
            "rows_in",
            "rows_loaded",
            "rows_quarantined",
            "rows_duplicate",
            "files_rejected",
        ):
            fields[count] = int(fields[count] or 0)
        for count in ("tests_passed", "tests_warned", "tests_failed"):
            fields[count] = int(fields[count] or 0)
        fields["full_rebuild"] = bool(fields["full_rebuild"])
        return cls(**fields)

    def to_json(self) -> dict[str, Any]:
        def text(v: object) -> object:
            return v.isoformat() if isinstance(v, date) else v

        return {
            "run_id": self.run_id,
            "status": self.status,
            "started_at": text(self.started_at),
            "finished_at": text(self.finished_at),
            "dates": {"from": text(self.date_from), "to": text(self.date_to)},
            "rebuild_from": text(self.rebuild_from),
            "full_rebuild": self.full_rebuild,
            "rows": {
                "in": self.rows_in,
                "loaded": self.rows_loaded,
                "quarantined": self.rows_quarantined,
                "duplicate": self.rows_duplicate,
            },
            "tests": {
                "passed": self.tests_passed,
                "warned": self.tests_warned,
                "failed": self.tests_failed,
                "failed_tests": self.failed_tests,
            },
            "files_rejected": self.files_rejected,
            "rejected_files": self.rejected_files,
            "stages": {k: round(v, 4) for k, v in self.stages.items()},
            "error": self.error,
        }


def _record(engine: Engine, record: RunRecord) -> None:
    ops.ensure(engine, ops.RUN_HISTORY, ops.RUN_HISTORY_COLUMNS)
    have = {name for name, _ in engine.columns(*ops.RUN_HISTORY)}
    for name, kind in ops.RUN_HISTORY_COLUMNS:  # a history an earlier version began
        if name not in have:
            column = exp.ColumnDef(this=exp.to_identifier(name, quoted=True), kind=kind)
            engine.execute(exp.Alter(this=table(*ops.RUN_HISTORY), kind="TABLE", actions=[column]))
    engine.execute(ops.insert_rows(ops.RUN_HISTORY, ops.RUN_HISTORY_COLUMNS, [record.row()]))


def history(engine: Engine, *, live: bool = True) -> list[RunRecord]:
    """Every `productlens run` of this warehouse, newest first, with stage timings.
    `live=False` (no process holds the run lock): a run that never finished was killed."""
    if engine.table_kind(*ops.RUN_HISTORY) is None:
        return []
    rows = engine.fetch_arrow(exp.select("*").from_(table(*ops.RUN_HISTORY))).to_pylist()
    # A run's rows: its start, the dates its rows touch once loaded, its end.
    by_run: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_run.setdefault(row["run_id"], []).append(row)
    records = []
    for run_rows in by_run.values():
        # A run whose stages an orchestrator re-ran ends more than once: the latest counts.
        ended = sorted(
            (r for r in run_rows if r["finished_at"] is not None),
            key=lambda r: r["finished_at"],
            reverse=True,
        )
        informed = [r for r in run_rows if r["rebuild_from"] is not None or r["full_rebuild"]]
        records.append(RunRecord.from_row((ended or informed or run_rows)[0]))
    records.sort(key=lambda r: r.started_at or datetime.min, reverse=True)
    for newer, record in zip([None, *records], records, strict=False):
        if record.finished_at is None and (newer is not None or not live):
            record.status = "interrupted"  # a later run started, or none is live: killed
    _stage_times(engine, records)
    _rejections(engine, records)
    return records


REJECTION_FIELDS = ("path", "target_table", "size_bytes", "checksum", "reason")


def _rejections(engine: Engine, records: list[RunRecord]) -> None:
    """Each run's rejected landing files, from ops.rejected_files."""
    if not records or engine.table_kind(*ops.REJECTED_FILES) is None:
        return
    query = (
        exp.select(*(_column(c) for c in ("run_id", *REJECTION_FIELDS)))
        .from_(table(*ops.REJECTED_FILES))
        .where(_column("run_id").isin(*(exp.Literal.string(r.run_id) for r in records)))
        .order_by(_column("path"))
    )
    by_id = {r.run_id: r for r in records}
    for row in engine.fetch_arrow(query).to_pylist():
        by_id[row.pop("run_id")].rejected_files.append(row)


def rejected_before(engine: Engine) -> frozenset[tuple[str, str]]:
    """(checksum, settings fingerprint) of every landing file a run rejected: the same
    bytes with the same settings are not read again."""
    if engine.table_kind(*ops.REJECTED_FILES) is None:
        return frozenset()
    query = exp.select(_column("checksum"), _column("settings_fingerprint")).from_(
        table(*ops.REJECTED_FILES)
    )
    return frozenset((str(c), str(f)) for c, f in engine.fetch_all(query))


def _note_rejected(engine: Engine, result: IngestResult | None, record: RunRecord) -> None:
    """Record the landing files this ingest could not read (left in place) at once, so
    that the next run does not read the same bytes with the same settings again."""
    if result is None or not result.rejected:
        return
    now = _now()
    rows: list[list[ops.Value]] = [
        [str(r.path), r.table, r.checksum, r.size, r.reason, r.fingerprint, record.run_id, now]
        for r in result.rejected
    ]
    ops.ensure(engine, ops.REJECTED_FILES, ops.REJECTED_FILES_COLUMNS)
    engine.execute(ops.insert_rows(ops.REJECTED_FILES, ops.REJECTED_FILES_COLUMNS, rows))
    record.files_rejected = len(rows)
    record.rejected_files = [
        dict(zip(REJECTION_FIELDS, (row[0], row[1], row[3], row[2], row[4]), strict=True))
        for row in sorted(rows, key=lambda row: str(row[0]))
    ]


def _stage_times(engine: Engine, records: list[RunRecord]) -> None:
    if not records or engine.table_kind(*ops.RUN_LOG) is None:
        return
    query = (
        exp.select("run_id", "stage", "started_at", "finished_at")
        .from_(table(*ops.RUN_LOG))
        .where(_column("object").is_(exp.null()))
        .where(_column("run_id").isin(*(exp.Literal.string(r.run_id) for r in records)))
    )
    by_id = {r.run_id: r for r in records}
    for run_id, stage, started, finished in engine.fetch_all(query):
        if finished is not None:
            stages = by_id[run_id].stages
            stages[stage] = stages.get(stage, 0.0) + (finished - started).total_seconds()


def pending(records: Sequence[RunRecord]) -> Touched:
    """What the runs since the last successful one loaded and did not publish."""
    owed = Touched()
    for record in records:  # newest first
        if record.status in SUCCEEDED:
            break
        if record.status == "interrupted" and record.rebuild_from is None:
            return Touched(full=True)  # killed after loading, perhaps: rebuild whole
        owed = owed.merge(Touched(record.rebuild_from, None, record.full_rebuild))
    return owed


# --- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRequest:
    """The dates a run is for (`--date`, or `--from`/`--to`); none: what new rows touch."""

    date_from: date | None = None
    date_to: date | None = None
    report: bool = True

    def __post_init__(self) -> None:
        if self.date_to and not self.date_from:
            raise ConfigError("--to needs --from (or give one day with --date)")
        if self.date_from and self.date_to and self.date_to < self.date_from:
            raise ConfigError(f"--to {self.date_to} is before --from {self.date_from}")
        # A day ahead of UTC may already have begun in the metrics time zone; no later.
        latest = _now().date() + ZONE_MARGIN
        for day in (self.date_from, self.date_to):
            if day is not None and day > latest:
                raise ConfigError(
                    f"{day} is in the future (today is {_now().date()} UTC): a run is for "
                    "days whose files have landed"
                )


@dataclass
class DailyRun:
    """What `run_daily` did: the history record, the run's JSON and the stages."""

    record: RunRecord
    summary: RunSummary
    payload: dict[str, Any]
    error: BaseException | None = None
    engine: Engine | None = None  # the engine the run ended on (another after a reopen)


def landing_files(landing: FilePath) -> list[FilePath]:
    """The landing folder's table folders (one per contract table) that exist."""
    if not landing.is_dir():
        raise ConfigError("the landing folder does not exist", path=landing)
    return [sub for name in CONTRACTS if (sub := landing / name).is_dir()]


def landing_strays(landing: FilePath) -> dict[str, int]:
    """What a run cannot load: the landing folder's entries that are not a contract
    table's folder (a misspelt `event/`, a file dropped at the top), with their files."""
    strays: dict[str, int] = {}
    for path in landing.rglob("*"):
        top = PurePosixPath(path.as_posix()).relative_to(landing.as_posix()).parts[0]
        if top in CONTRACTS or top.startswith(".") or not path.is_file():
            continue
        strays[top] = strays.get(top, 0) + 1
    return strays


def _warn_strays(console: Console, landing: FilePath) -> None:
    strays = landing_strays(landing)
    if strays:
        listed = ", ".join(f"{name} ({n} files)" for name, n in sorted(strays.items()))
        console.print(
            f"[yellow]warning:[/] not loaded, not a table's folder in {landing}: {listed}; "
            f"files go in a folder named for their table ({', '.join(CONTRACTS)})",
            highlight=False,
        )


_HELD: set[Path] = set()  # the run locks this process holds


@contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold the project's run lock for the block, or refuse at once naming the holder.
    An OS lock (flock): a killed run's lock goes with its process, so none is stale.
    Re-entrant within a process (the CLI takes it before opening the engine)."""
    key = path.resolve()
    if key in _HELD:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunInProgress(
                f"another productlens run is in progress ({holder}): wait for it to finish "
                "and run again",
                path=path,
            ) from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}, started {_now():%Y-%m-%d %H:%M:%S} UTC\n")
        handle.flush()
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_in_progress(path: Path) -> bool:
    """Whether a live `productlens run` holds the run lock."""
    if not path.exists():
        return False
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def run_daily(
    project: Project,
    engine: Engine,
    console: Console,
    landing: FilePath,
    request: RunRequest,
    *,
    reopen: Callable[[], Engine] | None = None,
) -> DailyRun:
    """One daily run under the project's run lock (`RunInProgress` if another holds it);
    never raises for a failed stage (the result carries the error). `reopen` opens the
    engine again: a retry after a transient error carries on with a new connection (the
    engine the result's `engine` names; the caller closes it and the one it gave)."""
    with run_lock(project.run_lock_path):
        return _run_daily(project, engine, console, landing, request, reopen)


def _run_daily(
    project: Project,
    engine: Engine,
    console: Console,
    landing: FilePath,
    request: RunRequest,
    reopen: Callable[[], Engine] | None,
) -> DailyRun:
    folders = landing_files(landing)
    _warn_strays(console, landing)
    runner = Runner(project, engine, console)
    policy = RetryPolicy(project.config.run.retries, project.config.run.backoff_seconds)
    attempt = _Attempts(policy, runner, console, reopen)
    record = RunRecord(
        runner.runlog.run_id,
        started_at=_now(),
        date_from=request.date_from,
        date_to=request.date_to or request.date_from,
    )
    # Under the run lock no other run is live: an unfinished record was killed.
    owed = pending(attempt(lambda: history(runner.engine, live=False)))
    attempt(lambda: _record(runner.engine, record))

    loaded: IngestResult | None = None
    error: BaseException | None = None
    try:
        # Inside: a model or YAML error is this run's failure (recorded, the hook told).
        graph = modeling.discover(project.config, project.model_dirs)
        with runner.progress():
            loaded = ingest_landing(runner, folders, record, attempt) if folders else None
            touched = attempt(lambda: _note_loaded(runner.engine, graph, loaded, record))
            owed = owed.merge(touched)
            starts = _starts(request, owed)
            current = _marts_exist(runner.engine, graph)
            if not current and not _raw_exists(runner):
                _nothing_to_build(landing, loaded)
            if not starts and not owed.full and current:
                console.print("nothing new in the landing folder: the warehouse is current")
            else:
                since = None if owed.full or not starts else min(starts)
                record.rebuild_from, record.full_rebuild = since, since is None
                _build_and_publish(runner, graph, since, attempt)
                if request.report:
                    attempt(runner.report)
        record.status = WITH_REJECTIONS if record.files_rejected else "success"
    except KeyboardInterrupt as exc:
        record.status, record.error, error = "interrupted", "interrupted", exc
    except Exception as exc:  # noqa: BLE001 - recorded, reported and re-raised by the caller
        record.status, record.error, error = "failed", str(exc), exc
        if loaded is not None and record.rebuild_from is None and not record.full_rebuild:
            record.full_rebuild = loaded.total_rows > 0  # dates unknown: owed a full rebuild
    outcomes = runner.summary.outcomes
    _tally_tests(record, outcomes)
    record.finished_at = _now()
    try:
        attempt(lambda: _record(runner.engine, record))
    finally:
        summary = runner.finish()
    record.stages = {s.name: s.seconds for s in summary.stages}
    payload = {"run": record.to_json(), "tests": [_outcome(o) for o in outcomes]}
    # dbt-style results: the project's latest, and one per run under runs/<id>/.
    runner.runlog.extra = payload
    runner.runlog.write_json(project.run_results_path)
    runner.runlog.write_json(project.runs_dir / record.run_id / "run_results.json")
    return DailyRun(record, summary, payload, error, runner.engine)


def ingest_landing(
    runner: Runner,
    folders: list[FilePath],
    record: RunRecord,
    attempt: Callable[[Callable[[], Any]], Any] = lambda action: action(),
) -> IngestResult:
    """Ingest the landing folders' new files. A file that cannot be read is rejected (left
    in place, recorded at once in ops.rejected_files and in `record`), not the run's
    failure; one rejected before is not read again unless its bytes or the ingest settings
    changed. `productlens run` and the orchestrators' ingest (Airflow's stages, Dagster's
    asset) all load through here; `attempt` runs each step (`run`'s retries; by default
    once: an orchestrator retries the task)."""
    screening = Screening(attempt(lambda: rejected_before(runner.engine)))
    landed = [_arg(f) for f in folders]
    loaded: IngestResult = attempt(lambda: runner.ingest(landed, screening=screening))
    attempt(lambda: _note_rejected(runner.engine, loaded, record))
    return loaded


@dataclass
class _Attempts:
    """A stage's action, attempted again after a transient error as the policy allows;
    the attempt after one carries on with the engine opened again (`reopen`), since the
    error may have left the connection dead."""

    policy: RetryPolicy
    runner: Runner
    console: Console
    reopen: Callable[[], Engine] | None
    stale: bool = False

    def __call__(self, action: Callable[[], Any]) -> Any:
        return retrying(self.policy, lambda: self._once(action), on_retry=self._told)

    def _once(self, action: Callable[[], Any]) -> Any:
        if self.stale and self.reopen is not None:
            fresh = self.reopen()
            with contextlib.suppress(Exception):  # a dead connection may fail to close
                self.runner.engine.close()
            self.runner.use_engine(fresh)
        self.stale = False
        return action()

    def _told(self, n: int, exc: BaseException, delay: float) -> None:
        self.stale = True
        self.console.print(f"  [yellow]retry[/] {n}: {exc} (again in {delay:g}s)", highlight=False)


def _build_and_publish(
    runner: Runner,
    graph: modeling.ModelGraph,
    since: date | None,
    attempt: Callable[[Callable[[], Any]], Any],
) -> None:
    """Staging and core in place, the marts aside; checks; the marts swapped in."""
    upstream = [m.name for m in graph if m.layer != MARTS]
    marts = [m.name for m in graph if m.layer == MARTS]
    attempt(lambda: runner.build(upstream, since=since, graph=graph))
    built_aside = aside(graph)

    def build_marts() -> None:
        seed_aside(runner.engine, graph, since)
        runner.build(marts, since=since, graph=built_aside, stage="build marts")

    attempt(build_marts)
    attempt(lambda: runner.check(tests=aside_tests(built_aside)))
    with runner.stage("publish marts", len(marts)):
        rows = attempt(lambda: promote(runner.engine, graph))
        runner.stage_meta(rows=rows, detail=f"{len(marts)} marts swapped in after the checks")


def _starts(request: RunRequest, owed: Touched) -> list[date]:
    """The dates a rebuild could start from (the earliest wins); none: nothing to do."""
    starts = [d for d in (request.date_from, owed.first) if d is not None]
    if owed.undated and not starts:
        # Only models rebuilt whole read the new rows: the incremental ones get an empty
        # window, after today (the latest a row may be: ingestion holds back the future).
        starts = [_now().date() + ZONE_MARGIN]
    return starts


def _nothing_to_build(landing: FilePath, loaded: IngestResult | None) -> None:
    """Refuse a first run that has nothing loaded to build from, saying why."""
    if loaded is not None and (loaded.rejected or loaded.held_back):
        raise IngestError(
            f"none of the landing files could be read: {len(loaded.rejected)} rejected now, "
            f"{len(loaded.held_back)} rejected before; they are left in place (see "
            "`productlens runs` and ops.rejected_files)",
            path=landing,
        )
    raise ConfigError(
        "no files in the landing folder and none loaded before: put each table's files in "
        f"its own folder ({', '.join(CONTRACTS)})",
        path=landing,
    )


def _raw_exists(runner: Runner) -> bool:
    """Whether anything was ever loaded (the lake's catalog has a raw table)."""
    return any(runner.lake.table_exists(f"raw.{name}") for name in CONTRACTS)


def _marts_exist(engine: Engine, graph: modeling.ModelGraph) -> bool:
    return all(engine.table_kind(MARTS, m.name) is not None for m in graph if m.layer == MARTS)


def _note_loaded(
    engine: Engine, graph: modeling.ModelGraph, result: IngestResult | None, record: RunRecord
) -> Touched:
    """Count what the ingest did and record the dates its rows touch at once, so that a
    run stopped from here on is owed their rebuild (`pending`)."""
    if result is None:
        return Touched()
    record.rows_in = sum(b.rows_read for b in result.batches)
    record.rows_loaded = result.total_rows
    record.rows_quarantined = result.quarantined
    record.rows_duplicate = sum(b.rows_duplicate for b in result.batches)
    touched = touched_dates(engine, graph, result)
    record.date_from = record.date_from or touched.first
    record.date_to = record.date_to or touched.last or record.date_from
    if touched.first or touched.full:
        record.rebuild_from, record.full_rebuild = touched.first, touched.full
        _record(engine, record)
    return touched


def _tally_tests(record: RunRecord, outcomes: Sequence[checks.TestOutcome]) -> None:
    failed = [o for o in outcomes if o.status in ("fail", "error")]
    record.tests_passed = sum(o.status == "pass" for o in outcomes)
    record.tests_warned = sum(o.status == "warn" for o in outcomes)
    record.tests_failed = len(failed)
    record.failed_tests = [o.test.name for o in failed]


def _outcome(outcome: checks.TestOutcome) -> dict[str, Any]:
    return {
        "name": outcome.test.name,
        "model": outcome.test.model,
        "severity": outcome.test.severity,
        "status": outcome.status,
        "n_failing": outcome.n_failing,
        "error": outcome.error,
    }


def _arg(path: FilePath) -> Path | str:
    return str(path) if isinstance(path, ObjectPath) else path


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# --- alerting ------------------------------------------------------------------------------


def run_hook(command: str, payload: dict[str, Any], cwd: Path, timeout: float) -> str | None:
    """Run the `on_failure` shell command with the run's JSON on stdin; a problem with
    the hook is returned as text (the run's own failure is what the caller reports). A
    hook that outlives `timeout` is killed with everything it started (its own session),
    so no `curl` of it is left hanging."""
    try:
        hook = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        return f"the on_failure command could not start: {exc}"
    try:
        _out, err = hook.communicate(json.dumps(payload, default=str), timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(hook.pid, signal.SIGKILL)
        hook.communicate()
        return f"the on_failure command did not finish within {timeout:g}s"
    if hook.returncode != 0:
        return f"the on_failure command exited with {hook.returncode}: {err.strip()}"
    return None


def failure_message(run: DailyRun) -> ProductLensError | BaseException:
    """The error the command reports for a failed run (naming the failed tests), or for a
    run that completed with landing files rejected (`FilesRejected`, exit 3)."""
    error = run.error
    if isinstance(error, DataTestFailure):
        return DataTestFailure(
            f"run {run.record.run_id} stopped before publishing the marts (the previous "
            f"marts stay live): {error.message}"
        )
    if error is None and run.record.files_rejected:
        return files_rejected(run.record)
    return error if error is not None else ProductLensError("run failed")


def files_rejected(record: RunRecord) -> FilesRejected:
    """The error (exit 3) of a run that published the marts but rejected landing files."""
    listed = "; ".join(f"{r['reason']}" for r in record.rejected_files[:3])
    more = record.files_rejected - 3
    return FilesRejected(
        f"run {record.run_id} published the marts, but {record.files_rejected} "
        f"landing file(s) could not be read and were left in place (not read again "
        f"until their bytes or the ingest settings change): {listed}"
        + (f"; and {more} more (see `productlens runs`)" if more > 0 else "")
    )
