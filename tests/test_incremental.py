"""`build --since` gives exactly the tables of a full rebuild, late-arriving events
included, and really is partial (a since-date past the late events misses them)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from sqlglot import exp

from productlens import modeling
from productlens.app import open_engine
from productlens.config import ProjectConfig, load_project
from productlens.engines import DuckDBEngine
from productlens.engines.base import table
from productlens.ingest import ingest_paths
from productlens.pipeline import Runner
from productlens.runlog import RunLog, StepRecord
from productlens.simulate import generate, preset
from tests.conftest import lake_of, q, warehouse_engine
from tests.cross_engine import differences

NOW = datetime(2026, 11, 22, tzinfo=UTC)
START = date(2026, 1, 5)
CUTOFF = START + timedelta(days=30)
LATE_DAY = CUTOFF - timedelta(days=3)  # within the 7-day lookback
RUN_COLUMNS = {"_batch_id", "_ingested_at"}  # differ between two runs' ingestion


def snapshot(engine: DuckDBEngine) -> dict[str, list[tuple[object, ...]]]:
    """Every model's rows, sorted, floats rounded (sums may differ in the last bit)."""
    tables = engine.fetch_all(
        q(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('staging', 'core', 'marts')"
        )
    )
    result = {}
    for schema, name in tables:
        rows = engine.fetch_all(q(f"SELECT * FROM {schema}.{name}"))
        rounded = [tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in rows]
        result[f"{schema}.{name}"] = sorted(rounded, key=repr)
    return result


@pytest.fixture(scope="module")
def batches(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[Path]]:
    root = tmp_path_factory.mktemp("incremental")
    generate(preset(users=1500, days=40, seed=17), root / "data", workers=1)
    data = root / "data"
    first = [p for p in data.iterdir() if p.is_dir() and p.name != "events"]
    later: list[Path] = []
    for partition in sorted((data / "events").iterdir()):
        day = date.fromisoformat(partition.name.split("=", 1)[1])
        (first if day < CUTOFF else later).append(partition)
    # Late arrivals: events dated three days before the cutoff, delivered with the rest.
    source = pq.read_table(next((data / "events" / f"event_date={LATE_DAY}").iterdir()))
    late = source.slice(0, 40)
    late = late.set_column(
        0, "event_id", pc.binary_join_element_wise("late_", late.column("event_id"), "")
    )
    (root / "late" / "events").mkdir(parents=True)
    pacsv.write_csv(late, root / "late" / "events" / "late.csv")
    later.append(root / "late")
    return first, later


def build(engine: DuckDBEngine, since: date | None = None) -> None:
    result = modeling.build(engine, modeling.discover(ProjectConfig()), RunLog(engine), since=since)
    assert result.ok, result.failed


def test_since_equals_a_full_rebuild_with_late_events(
    tmp_path: Path, batches: tuple[list[Path], list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`build --since` gives the tables of a full rebuild, late events included, and
    fct_events is stored in its sorted_by order: the re-sort limit is lowered so that the
    table (one row group here) is written in order again, every row kept."""
    monkeypatch.setattr(modeling, "RESORT_ABOVE", 1.0)
    first, later = batches
    incremental = warehouse_engine(tmp_path / "incremental.duckdb", memory_limit="2GB")
    full = warehouse_engine(tmp_path / "full.duckdb", memory_limit="2GB")
    try:
        ingest_paths(lake_of(incremental), first, now=NOW)
        build(incremental)
        before = incremental.fetch_all(q("SELECT count(*) FROM core.fct_events"))[0][0]
        ingest_paths(lake_of(incremental), later, now=NOW)
        build(incremental, since=CUTOFF)
        assert incremental.fetch_all(q("SELECT count(*) FROM core.fct_events"))[0][0] > before

        stored = incremental.fetch_arrow(
            q("SELECT event_type, user_id, event_ts FROM core.fct_events ORDER BY rowid")
        )
        keys = [(column, "ascending") for column in stored.column_names]
        assert stored.equals(stored.sort_by(keys))  # written in order again

        ingest_paths(lake_of(full), [*first, *later], now=NOW)
        build(full)
        assert full.fetch_all(
            q("SELECT count(*) FROM core.fct_events WHERE event_id LIKE 'late_%'")
        ) == [(40,)]
        assert snapshot(incremental) == snapshot(full)
    finally:
        incremental.close()
        full.close()


def test_since_past_the_late_events_misses_them(
    tmp_path: Path, batches: tuple[list[Path], list[Path]]
) -> None:
    first, later = batches
    engine = warehouse_engine(tmp_path / "w.duckdb", memory_limit="2GB")
    try:
        ingest_paths(lake_of(engine), first, now=NOW)
        build(engine)
        ingest_paths(lake_of(engine), later, now=NOW)
        build(engine, since=CUTOFF + timedelta(days=10))  # rewrites from CUTOFF + 3 only
        late = engine.fetch_all(
            q("SELECT count(*) FROM core.fct_events WHERE event_id LIKE 'late_%'")
        )
        assert late == [(0,)]
        full_days = engine.fetch_all(
            q(
                "SELECT count(*) FROM core.fct_events WHERE event_date >= ?",
                CUTOFF + timedelta(days=3),
            ),
        )
        assert full_days[0][0] > 0  # the rewritten window did load the new events
    finally:
        engine.close()


def test_since_on_postgres_equals_a_full_build(
    tmp_path: Path, batches: tuple[list[Path], list[Path]], pg_dsn: str
) -> None:
    """PostgreSQL's incremental refresh (delete + insert of the date window in one
    transaction) gives the tables of DuckDB's full build, late events included."""
    from productlens.engines.postgres import PostgresEngine

    first, later = batches
    full_project = load_project(tmp_path / "full", engine="duckdb")
    full = open_engine(full_project)
    pg = PostgresEngine(pg_dsn)
    try:
        run = Runner(full_project, full, Console(quiet=True))
        run.ingest([*first, *later])
        assert run.build().ok
        run.finish()

        runner = Runner(load_project(tmp_path / "pg", engine="postgres"), pg, Console(quiet=True))
        runner.ingest(first)
        assert runner.build().ok
        runner.ingest(later)
        assert runner.build(since=CUTOFF).ok
        runner.finish()

        late = exp.select(exp.func("count", exp.Star())).from_(table("core", "fct_events"))
        late = late.where(exp.column("event_id").like(exp.Literal.string("late_%")))
        assert pg.fetch_all(late) == [(40,)]
        found = {}
        for layer in ("staging", "core", "marts"):
            names = full.list_tables(layer)
            assert pg.list_tables(layer) == names
            for name in names:
                columns = [c for c, _ in full.columns(layer, name) if c not in RUN_COLUMNS]
                query = exp.select(*(exp.column(c, quoted=True) for c in columns)).from_(
                    table(layer, name)
                )
                if diff := differences(full.fetch_arrow(query), pg.fetch_arrow(query)):
                    found[f"{layer}.{name}"] = diff[:2]
        assert found == {}
    finally:
        full.close()
        pg.close()


def test_rows_per_layer_are_the_builds_counts_and_exact(
    tmp_path: Path, batches: tuple[list[Path], list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run summary's rows per layer take each table the run built from its build's
    record (a range refresh's too) and count the rest, and equal a count of every table
    of the layer."""
    first, later = batches
    project = load_project(tmp_path / "p", engine="duckdb")
    engine = open_engine(project)
    try:
        assert isinstance(engine, DuckDBEngine)
        runner = Runner(project, engine, Console(quiet=True))
        runner.ingest(first)
        assert runner.build().ok
        runner.finish()
        # A second run refreshes one mart only (its record: the table's rows after the
        # overwrite): the other tables are counted.
        counted: list[str] = []
        fetch_all = engine.fetch_all

        def spy(query: exp.Expr) -> list[tuple[object, ...]]:
            if isinstance(query, exp.Select) and query.find(exp.Count):
                counted.extend(f"{t.db}.{t.name}" for t in query.find_all(exp.Table))
            return fetch_all(query)

        again = Runner(project, engine, Console(quiet=True))
        again.ingest(later)
        assert again.build(["daily_sales"], since=CUTOFF).ok
        monkeypatch.setattr(engine, "fetch_all", spy)  # what finish() counts
        summary = again.finish()
        monkeypatch.undo()
        assert ("marts", "daily_sales") in again.built_rows()
        assert "marts.daily_sales" not in counted
        assert "marts.funnel_daily_metrics" in counted  # built by the first run only
        for layer in ("staging", "core", "marts"):
            names = [n for n in engine.list_tables(layer) if engine.table_kind(layer, n) == "table"]
            counts = [exp.select(exp.Count(this=exp.Star())).from_(table(layer, n)) for n in names]
            expected = sum(int(engine.fetch_all(count)[0][0]) for count in counts)
            assert summary.layer_rows[layer] == expected, layer
    finally:
        engine.close()


def test_built_rows_take_each_tables_latest_successful_build() -> None:
    """A table built twice in a run counts its last build's rows; a last build that
    recorded none (a view now, or a count the engine did not give) leaves the table to be
    counted; failed builds and other stages give nothing."""
    at = datetime(2020, 1, 1, tzinfo=UTC)

    def step(stage: str, obj: str | None, rows: int | None, status: str = "success") -> StepRecord:
        return StepRecord(stage, obj, at, at, rows, status)

    records = [
        step("build", "staging.stg_a", 5),
        step("build", "staging.stg_a", 7),
        step("build", "marts.m", 3),
        step("build", "marts.m", None),
        step("build", "core.f", 9, status="error"),
        step("ingest", "raw.events", 11),
        step("build", None, 13),
        step("build", "core.g", 2),
    ]
    runner = SimpleNamespace(runlog=SimpleNamespace(records=records))
    built = Runner.built_rows(runner)  # type: ignore[arg-type]
    assert built == {("staging", "stg_a"): 7, ("core", "g"): 2}
