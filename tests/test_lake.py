"""Publishing the raw lake to a warehouse engine: the warehouse's raw.<table> holds exactly
the lake's rows, lineage included, whether it reads the files (views) or loads them."""

from __future__ import annotations

import ast
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset
import pyarrow.parquet as pq
import pytest
from sqlglot import exp

from productlens.engines import Engine
from productlens.engines.base import table
from productlens.engines.duckdb import DuckDBEngine
from productlens.errors import EngineError
from productlens.ingest import held, ingest_paths
from productlens.ingest.contracts import CONTRACTS
from productlens.ingest.processor import LakeProcessor
from productlens.lake import CATALOG, LOADED, publish_raw
from productlens.simulate import generate, preset
from tests.conftest import open_lake

NOW = datetime(2026, 11, 22, tzinfo=UTC)
LATER = datetime(2026, 11, 23, tzinfo=UTC)
LINEAGE = ["_batch_id", "_source_file", "_row_number"]
USERS_CSV = "user_id,signup_ts,country\nu1,2026-01-01 10:00:00,DE\nu2,2026-01-02 11:00:00,FR\n"
EVENTS_A = (
    "event_id,user_id,event_type,event_ts\n"
    "a1,u1,page_view,2026-01-03 10:00:00\n"
    "a2,u2,page_view,2026-01-03 10:00:01.123456\n"
    "a3,u9,bogus,not a time\n"
)
EVENTS_B = "event_id,user_id,event_type,event_ts\nb1,u1,page_view,2026-01-04 09:00:00\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate(preset(users=200, days=6, seed=13, users_per_block=100, dirty=True), out)
    return out


def fill(lake: LakeProcessor, world: Path, folder: Path) -> None:
    """A lake with every kind of file: copied Parquet files, rewritten rows (CSV, and
    dirty Parquet files with quarantined rows), a forced reload of a copied file, and a
    forced reload of one source file of a rewritten file that holds two."""
    ingest_paths(lake, [world], now=NOW)
    folder.mkdir()
    (folder / "users.csv").write_text(USERS_CSV)
    (folder / "a.csv").write_text(EVENTS_A)
    (folder / "b.csv").write_text(EVENTS_B)
    ingest_paths(lake, [folder / "users.csv"], now=NOW)
    ingest_paths(lake, [folder / "a.csv", folder / "b.csv"], table="events", now=NOW)
    copied = lake.fetch_all("SELECT source_file FROM ops.raw_files WHERE copied LIMIT 1")
    assert copied, "the world should give copied files"
    ingest_paths(lake, [Path(copied[0][0])], force=True, now=LATER)
    ingest_paths(lake, [folder / "b.csv"], table="events", force=True, now=LATER)
    pairs = lake.fetch_all("SELECT count(*) FROM ops.superseded_files")[0][0]
    assert pairs == 2
    # Files no batch lists (what a crash between writing and committing leaves), named as
    # the lake names its files, beside the listed ones: never seen.
    for kind in ("TRUE", "FALSE"):
        path = lake.fetch_all(
            f"SELECT path FROM ops.raw_files WHERE copied = {kind} ORDER BY path LIMIT 1"
        )[0][0]
        listed = lake.raw_root.parent / path
        stray = listed.with_name("0000000000000000-" + listed.name.split("-", 1)[1])
        stray.write_bytes(listed.read_bytes())


def lake_rows(lake: LakeProcessor, name: str) -> list[dict[str, Any]]:
    data = lake.fetch_arrow(f"SELECT * FROM raw.{name}")
    return _sorted(data)


def warehouse_rows(engine: Engine, name: str) -> list[dict[str, Any]]:
    return _sorted(engine.fetch_arrow(exp.select("*").from_(table("raw", name))))


def _sorted(data: pa.Table) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = data.to_pylist()
    return sorted(rows, key=lambda r: tuple(str(r[c]) for c in LINEAGE))


def expected_count(lake: LakeProcessor, name: str) -> int:
    """Rows listed in ops.raw_files less the rows of superseded pairs."""
    listed, gone = lake.fetch_all(
        "SELECT (SELECT coalesce(sum(row_count), 0) FROM ops.raw_files WHERE target_table = ?), "
        "(SELECT coalesce(sum(rows_loaded), 0) FROM ops.superseded_files "
        "WHERE target_table = ?)",
        [name, name],
    )[0]
    return int(listed) - int(gone)


def assert_same_raw(lake: LakeProcessor, engine: Engine) -> None:
    for name in CONTRACTS:
        expected = lake_rows(lake, name)
        assert len(expected) == expected_count(lake, name), name
        got = warehouse_rows(engine, name)
        assert [list(r) for r in got[:1]] == [list(r) for r in expected[:1]], name  # columns
        assert got == expected, name


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[DuckDBEngine]:
    """A DuckDB warehouse in a file of its own: the lake is not its catalog."""
    engine = DuckDBEngine(tmp_path / "warehouse" / "w.duckdb", memory_limit="1GB", threads=1)
    yield engine
    engine.close()


def test_shared_catalog_publishes_nothing(tmp_path: Path) -> None:
    engine = DuckDBEngine(tmp_path / "w.duckdb", memory_limit="1GB", threads=1)
    try:
        lake = LakeProcessor.shared(engine.connection, tmp_path / "w.raw")
        (tmp_path / "users.csv").write_text(USERS_CSV)
        ingest_paths(lake, [tmp_path / "users.csv"], now=NOW)
        assert publish_raw(lake, engine).strategy == "shared"
        # The warehouse reads the lake's own views: ingestion made them in its file.
        assert engine.table_kind("raw", "users") == "view"
        assert len(warehouse_rows(engine, "users")) == 2
        assert engine.table_kind("ops", "raw_loaded") is None
    finally:
        engine.close()


def test_the_processor_reads_a_read_only_warehouse(tmp_path: Path) -> None:
    """`productlens quarantine` reads the lake through a read-only DuckDB warehouse."""
    (tmp_path / "a.csv").write_text(EVENTS_A)
    writer = DuckDBEngine(tmp_path / "w.duckdb", memory_limit="1GB", threads=1)
    ingest_paths(
        LakeProcessor.shared(writer.connection, tmp_path / "w.raw"),
        [tmp_path / "a.csv"],
        table="events",
        now=NOW,
    )
    writer.close()
    reader = DuckDBEngine(tmp_path / "w.duckdb", read_only=True)
    try:
        lake = LakeProcessor.shared(reader.connection, tmp_path / "w.raw")
        listing = held.quarantined(lake)
        assert [(t, n) for t, _, n in listing.counts] != []
        assert {row[2] for row in listing.sample} == {4}  # the bogus row: line 4 of a.csv
        assert len(lake_rows(lake, "events")) == 2
    finally:
        reader.close()


@pytest.mark.parametrize("strategy", ["views", "load"])
def test_the_warehouse_sees_exactly_the_lakes_rows(
    lake: LakeProcessor, world: Path, tmp_path: Path, warehouse: DuckDBEngine, strategy: str
) -> None:
    fill(lake, world, tmp_path / "more")
    # Small batches: a file goes to the warehouse in several appends.
    result = publish_raw(lake, warehouse, strategy=strategy, batch_rows=50)  # type: ignore[arg-type]
    assert result.strategy == strategy
    assert sorted(result.tables) == sorted(CONTRACTS)
    kind = "view" if strategy == "views" else "table"
    assert all(warehouse.table_kind("raw", name) == kind for name in CONTRACTS)
    assert_same_raw(lake, warehouse)
    if strategy == "load":
        listed = lake.fetch_all("SELECT count(*) FROM ops.raw_files")[0][0]
        assert result.files_loaded == listed
        biggest = lake.fetch_all("SELECT max(row_count) FROM ops.raw_files")[0][0]
        assert biggest > 50  # so some file was loaded in several batches
        assert result.rows_deleted > 0  # the forced reloads' earlier rows


def test_publishing_again_loads_only_new_files(
    lake: LakeProcessor, world: Path, tmp_path: Path, warehouse: DuckDBEngine
) -> None:
    ingest_paths(lake, [world / "users"], now=NOW)
    first = publish_raw(lake, warehouse, strategy="load")
    assert first.files_loaded > 0
    again = publish_raw(lake, warehouse, strategy="load")
    assert (again.files_loaded, again.rows_loaded, again.rows_deleted) == (0, 0, 0)
    assert_same_raw(lake, warehouse)
    fill(lake, world, tmp_path / "more")  # new files, and forced reloads of loaded ones
    later = publish_raw(lake, warehouse, strategy="load")
    new_files = lake.fetch_all("SELECT count(*) FROM ops.raw_files")[0][0] - first.files_loaded
    assert later.files_loaded == new_files
    assert_same_raw(lake, warehouse)
    loaded = warehouse.fetch_all(
        exp.select(exp.func("sum", exp.column("row_count"))).from_(table("ops", "raw_loaded"))
    )
    listed = lake.fetch_all("SELECT sum(row_count) FROM ops.raw_files")
    assert loaded == listed  # every file once, with its rows


def test_a_failed_load_leaves_the_table_as_it_was(
    lake: LakeProcessor, tmp_path: Path, warehouse: DuckDBEngine
) -> None:
    (tmp_path / "a.csv").write_text(EVENTS_A)
    (tmp_path / "b.csv").write_text(EVENTS_B)
    ingest_paths(lake, [tmp_path / "a.csv"], table="events", now=NOW)
    ingest_paths(lake, [tmp_path / "b.csv"], table="events", now=LATER)
    newest = lake.fetch_all(
        "SELECT path FROM ops.raw_files WHERE target_table = 'events' ORDER BY ingested_at DESC"
    )[0][0]
    broken = lake.raw_root.parent / newest
    os.chmod(broken, stat.S_IWUSR | stat.S_IRUSR)
    broken.write_bytes(b"not parquet")  # the second file of the table cannot be read
    with pytest.raises(EngineError):
        publish_raw(lake, warehouse, strategy="load")
    assert warehouse_rows(warehouse, "events") == []  # not the first file's rows either
    assert warehouse.fetch_all(exp.select("*").from_(table("ops", "raw_loaded"))) == []


def test_a_file_changed_after_ingestion_stops_the_load(
    lake: LakeProcessor, tmp_path: Path, warehouse: DuckDBEngine
) -> None:
    """A raw file whose rows are not those the catalog lists (rewritten behind the lake's
    back) loads nothing, and the error names it."""
    (tmp_path / "a.csv").write_text(EVENTS_A)
    (tmp_path / "b.csv").write_text(EVENTS_B)
    ingest_paths(lake, [tmp_path / "b.csv"], table="events", now=NOW)
    ingest_paths(lake, [tmp_path / "a.csv"], table="events", now=LATER)
    path = lake.fetch_all(
        "SELECT path FROM ops.raw_files WHERE target_table = 'events' ORDER BY ingested_at DESC"
    )[0][0]
    changed = lake.raw_root.parent / path
    rows = pq.read_table(changed)
    assert rows.num_rows == 2  # a.csv's loaded rows
    os.chmod(changed, stat.S_IWUSR | stat.S_IRUSR)
    pq.write_table(rows.slice(0, 1), changed)
    with pytest.raises(EngineError, match="holds 1 rows where the lake lists 2") as info:
        publish_raw(lake, warehouse, strategy="load")
    assert info.value.context["file"] == str(changed)
    assert info.value.context["table"] == "raw.events"
    assert warehouse_rows(warehouse, "events") == []  # b.csv's file neither
    assert warehouse.fetch_all(exp.select("*").from_(table("ops", "raw_loaded"))) == []


def test_a_listed_file_the_pattern_misses_stops_the_publish(
    lake: LakeProcessor, tmp_path: Path, warehouse: DuckDBEngine
) -> None:
    """The views find a folder's files by name pattern: a listed file named otherwise
    would be silently absent, so the publish stops and names it."""
    (tmp_path / "a.csv").write_text(EVENTS_A)
    ingest_paths(lake, [tmp_path / "a.csv"], table="events", now=NOW)
    path = lake.fetch_all("SELECT path FROM ops.raw_files WHERE target_table = 'events'")[0][0]
    listed = lake.raw_root.parent / path
    renamed = listed.with_name("renamed.parquet")
    listed.rename(renamed)
    lake.execute(
        "UPDATE ops.raw_files SET file_name = 'renamed.parquet', path = ? WHERE path = ?",
        [str(Path(path).with_name("renamed.parquet")), path],
    )
    with pytest.raises(EngineError, match="not named as the lake names its files") as info:
        publish_raw(lake, warehouse, strategy="views")
    assert info.value.context["file"] == str(renamed)
    assert info.value.context["table"] == "raw.events"


def test_catalog_tables_are_copied(
    lake: LakeProcessor, world: Path, tmp_path: Path, warehouse: DuckDBEngine
) -> None:
    fill(lake, world, tmp_path / "more")
    result = publish_raw(lake, warehouse, strategy="views")
    assert sorted(result.catalog) == sorted(f"{s}.{n}" for s, n in CATALOG)
    for schema, name in CATALOG:
        got = warehouse.fetch_arrow(exp.select("*").from_(table(schema, name)))
        expected = lake.fetch_arrow(f"SELECT * FROM {schema}.{name}")
        assert got.column_names == expected.column_names, name
        assert got.num_rows == expected.num_rows, name
        nested = [c for c in expected.column_names if _is_nested(expected.schema.field(c).type)]
        flat = [c for c in expected.column_names if c not in nested]
        # Nested values go as JSON text: parsed back, they are the lake's values.
        parsed = got.to_pylist()
        for row in parsed:
            for c in nested:
                row[c] = json.loads(row[c]) if row[c] is not None else None
        assert _by(parsed, flat) == _by(_plain(expected.to_pylist()), flat), name
    held = warehouse.fetch_all(
        exp.select(exp.func("count", exp.Star())).from_(table("raw", "quarantine"))
    )
    assert held[0][0] > 0  # the dirty world and the bogus CSV row were quarantined
    # Publishing again replaces the copies: no row twice.
    publish_raw(lake, warehouse, strategy="views")
    again = warehouse.fetch_all(
        exp.select(exp.func("count", exp.Star())).from_(table("raw", "quarantine"))
    )
    assert again == held


def _is_nested(kind: pa.DataType) -> bool:
    return bool(pa.types.is_nested(kind))


def _by(rows: list[dict[str, Any]], key: list[str]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: tuple(str(r[c]) for c in key))


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Values as JSON would give them back (timestamps in structs become text)."""
    loaded: list[dict[str, Any]] = json.loads(json.dumps(rows, default=_iso))
    for row, original in zip(loaded, rows, strict=True):  # flat columns keep their types
        for c, v in original.items():
            if not isinstance(v, list | dict):
                row[c] = v
    return loaded


def _iso(value: object) -> str:
    return value.isoformat(sep=" ") if isinstance(value, datetime) else str(value)


def test_an_empty_lake_publishes_empty_tables(lake: LakeProcessor, warehouse: DuckDBEngine) -> None:
    lineage = ["_batch_id", "_source_file", "_row_number", "_ingested_at"]
    for strategy in ("views", "load"):
        publish_raw(lake, warehouse, strategy=strategy)  # type: ignore[arg-type]
        for name in CONTRACTS:
            assert warehouse_rows(warehouse, name) == []
            columns = [c for c, _ in warehouse.columns("raw", name)]
            assert columns == [*CONTRACTS[name].column_names, *lineage]
            warehouse.drop("raw", name)  # the load strategy makes tables, not views


# A lake folder named with quotes, a space and every glob character of DuckDB and Hadoop:
# the views read the folder through a name pattern, so its name must stay literal. (The
# catalog is a DuckDB file elsewhere: DuckDB keeps no database under a `?`.)
ODD_FOLDER = 'it\'s a "lake" [a-b] *?{c}'


def odd_lake(tmp_path: Path, world: Path) -> LakeProcessor:
    """A lake in ODD_FOLDER holding users and events (copied and rewritten files), beside
    a decoy folder holding the same files that the name read as a pattern would also
    match (`*?` as `xy`): a view reading it would count every row twice."""
    root = tmp_path / ODD_FOLDER
    decoy = tmp_path / ODD_FOLDER.replace("*?", "xy")
    lake = LakeProcessor.open(
        tmp_path / "catalog" / "lake.duckdb", root / "lake.raw", memory_limit="1GB", threads=1
    )
    (tmp_path / "users.csv").write_text(USERS_CSV)
    (tmp_path / "a.csv").write_text(EVENTS_A)
    ingest_paths(lake, [tmp_path / "users.csv", world / "users"], now=NOW)
    ingest_paths(lake, [tmp_path / "a.csv"], table="events", now=NOW)
    decoy.mkdir()
    (decoy / "lake.raw").symlink_to(root / "lake.raw", target_is_directory=True)
    return lake


def test_paths_with_quotes_publish(tmp_path: Path, world: Path) -> None:
    lake = odd_lake(tmp_path, world)
    engine = DuckDBEngine(tmp_path / "w.duckdb", memory_limit="1GB", threads=1)
    try:
        publish_raw(lake, engine, strategy="views")
        assert_same_raw(lake, engine)
    finally:
        lake.close()
        engine.close()


# --- other warehouses: the engines of the pg and spark branches -------------------------


def test_postgres_loads_the_lake(
    lake: LakeProcessor, world: Path, tmp_path: Path, pg_dsn: str
) -> None:
    from productlens.engines.postgres import PostgresEngine

    engine = PostgresEngine(pg_dsn)
    try:
        fill(lake, world, tmp_path / "more")
        result = publish_raw(lake, engine)
        assert result.strategy == "load"
        assert_same_raw(lake, engine)
        assert publish_raw(lake, engine).files_loaded == 0
        assert_same_raw(lake, engine)
    finally:
        engine.close()


def pg_raw(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every raw table's rows and the loaded-file list of a warehouse, as they stand."""
    state = {name: warehouse_rows(engine, name) for name in CONTRACTS}
    loaded = engine.fetch_arrow(exp.select("*").from_(table(*LOADED))).to_pylist()
    state["ops.raw_loaded"] = sorted(loaded, key=lambda r: (r["target_table"], r["file_name"]))
    return state


def assert_loaded_once(lake: LakeProcessor, engine: Engine) -> None:
    """ops.raw_loaded lists every listed file once, with the rows the lake lists for it."""
    listed = lake.fetch_all(
        "SELECT target_table, file_name, row_count FROM ops.raw_files ORDER BY ALL"
    )
    loaded = engine.fetch_all(
        exp.select("target_table", "file_name", "row_count")
        .from_(table(*LOADED))
        .order_by("target_table", "file_name")
    )
    assert loaded == listed


def a_published_lake(lake: LakeProcessor, world: Path, tmp_path: Path, engine: Engine) -> None:
    """Users published, then every kind of new file (and reloads of loaded ones) waiting."""
    ingest_paths(lake, [world / "users"], now=NOW)
    assert publish_raw(lake, engine).files_loaded > 0
    fill(lake, world, tmp_path / "more")


def test_postgres_publish_failing_mid_stream_leaves_raw_as_it_was(
    lake: LakeProcessor, world: Path, tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read of the lake that fails after the COPY has taken rows (a store gone away):
    the table keeps none of them, and the next publish loads every file exactly once."""
    from productlens.engines.postgres import PostgresEngine

    engine = PostgresEngine(pg_dsn)
    try:
        a_published_lake(lake, world, tmp_path, engine)
        before = pg_raw(engine)
        fetch = lake.fetch_batches
        sent: list[int] = []

        def failing(statement: Any, params: Any = None, *, rows: int = 1_000_000) -> Any:
            """The publish's second stream breaks after its first batch (the first went
            whole into its COPY, in the same transaction)."""
            reader = fetch(statement, params, rows=rows)
            sent.append(0)

            def batches() -> Iterator[pa.RecordBatch]:
                for batch in reader:
                    sent[-1] += batch.num_rows
                    yield batch
                    if len(sent) == 2:
                        raise OSError("the lake's store went away")

            return pa.RecordBatchReader.from_batches(reader.schema, batches())

        monkeypatch.setattr(lake, "fetch_batches", failing)
        with pytest.raises(OSError, match="went away"):
            publish_raw(lake, engine, batch_rows=100)
        assert len(sent) == 2  # one stream loaded, the next broken mid-COPY
        assert sent[0] > 100  # the first COPY took several batches
        assert sent[1] > 0  # the second had rows when the stream broke
        assert pg_raw(engine) == before
        monkeypatch.undo()
        publish_raw(lake, engine)
        assert_same_raw(lake, engine)
        assert_loaded_once(lake, engine)
    finally:
        engine.close()


# A publish whose read of the lake stops after a batch has gone into the COPY: the test
# kills this process there (kill -9), mid-COPY.
KILLED_PUBLISH = """
import sys
import time
from pathlib import Path

import pyarrow as pa

from productlens.engines.postgres import PostgresEngine
from productlens.ingest.processor import LakeProcessor
from productlens.lake import publish_raw

catalog, dsn, marker = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
lake = LakeProcessor.open(catalog, catalog.with_suffix(".raw"), memory_limit="1GB", threads=1)
engine = PostgresEngine(dsn, application_name="killed publish")
fetch = lake.fetch_batches


streams = 0


def stalled(statement, params=None, *, rows=1_000_000):
    # The publish's second stream (the first went whole into its COPY, in the same
    # transaction) stops after its first batch.
    global streams
    streams += 1
    reader = fetch(statement, params, rows=rows)
    second = streams == 2

    def batches():
        for batch in reader:
            yield batch
            if second:
                marker.write_text("mid-COPY")
                time.sleep(600)

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


lake.fetch_batches = stalled
publish_raw(lake, engine, batch_rows=100)
"""


def _copying(engine: Engine, active: bool = True) -> int:
    """The killed publish's server processes (those in its COPY, with `active`)."""
    query = (
        exp.select(exp.func("count", exp.Star()))
        .from_("pg_stat_activity")
        .where(exp.column("application_name").eq(exp.Literal.string("killed publish")))
    )
    if active:
        query = query.where("state = 'active'").where(
            exp.column("query").like(exp.Literal.string("COPY%"))
        )
    return int(engine.fetch_all(query)[0][0])


def _until(condition: Any, what: str, seconds: float = 60) -> None:
    """Wait for `condition()` (a deadline for a process to act, not a timing claim)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_postgres_publish_killed_mid_copy_leaves_raw_as_it_was(
    world: Path, tmp_path: Path, pg_dsn: str
) -> None:
    from productlens.engines.postgres import PostgresEngine

    catalog = tmp_path / "k.duckdb"
    lake = open_lake(catalog)
    engine = PostgresEngine(pg_dsn)
    try:
        ingest_paths(lake, [world / "users"], now=NOW)
        publish_raw(lake, engine)
        # Two tables' new files: the kill comes in the second one's COPY.
        ingest_paths(lake, [world / "events", world / "orders"], now=NOW)
        before = pg_raw(engine)
        lake.close()  # the killed process opens the lake's catalog
        marker = tmp_path / "mid-copy"
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_PUBLISH, str(catalog), pg_dsn, str(marker)]
        )
        try:
            _until(lambda: marker.exists() and _copying(engine) == 1, "no publish mid-COPY")
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()  # a no-op once killed; never leave it sleeping
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        _until(lambda: _copying(engine, active=False) == 0, "the killed COPY's session lives on")
        assert pg_raw(engine) == before
        lake = open_lake(catalog)
        publish_raw(lake, engine)
        assert_same_raw(lake, engine)
        assert_loaded_once(lake, engine)
    finally:
        lake.close()
        engine.close()


def test_postgres_loads_files_whose_columns_come_in_other_orders(
    lake: LakeProcessor, world: Path, tmp_path: Path, pg_dsn: str
) -> None:
    """Copied files keep their source's column order; one stream reads several such files
    into the right columns."""
    from productlens.engines.postgres import PostgresEngine

    columns = CONTRACTS["users"].column_names
    schema = pa.schema(
        (c, pa.timestamp("us") if c == "signup_ts" else pa.string()) for c in columns
    )
    users = pa.Table.from_pylist(
        pa.dataset.dataset(world / "users").to_table().to_pylist()[:6], schema=schema
    )
    folder = tmp_path / "in"
    folder.mkdir()
    orders = [list(columns), list(reversed(columns)), [*columns[3:], *columns[:3]]]
    for i, order in enumerate(orders):
        pq.write_table(users.slice(2 * i, 2).select(order), folder / f"u{i}.parquet")
        ingest_paths(lake, [folder / f"u{i}.parquet"], table="users", now=NOW)
    raw = lake.fetch_all("SELECT path, copied FROM ops.raw_files WHERE target_table = 'users'")
    assert [copied for _, copied in raw] == [True] * 3  # each file copied as it came
    found = {tuple(pq.read_schema(lake.raw_root.parent / path).names) for path, _ in raw}
    assert found == {tuple(order) for order in orders}
    engine = PostgresEngine(pg_dsn)
    try:
        assert publish_raw(lake, engine).files_loaded == 3
        got = engine.fetch_arrow(
            exp.select(*(exp.column(c, quoted=True) for c in columns))
            .from_(table("raw", "users"))
            .order_by(exp.column("user_id", quoted=True))
        )
        assert got.to_pylist() == users.sort_by("user_id").to_pylist()
        assert_same_raw(lake, engine)
    finally:
        engine.close()


@pytest.mark.xdist_group("spark")
def test_spark_reads_the_lake(lake: LakeProcessor, world: Path, tmp_path: Path, spark: Any) -> None:
    from productlens.engines.spark import SparkEngine

    engine = SparkEngine(spark)
    try:
        fill(lake, world, tmp_path / "more")
        result = publish_raw(lake, engine)
        assert result.strategy == "views"
        assert_same_raw(lake, engine)
    finally:  # the session is the run's: leave no raw layer for other tests
        for name in CONTRACTS:
            engine.drop("raw", name)
        for schema, name in CATALOG:
            engine.drop(schema, name)
        engine.close()


@pytest.mark.xdist_group("spark")
def test_spark_reads_a_lake_in_an_odd_folder(tmp_path: Path, world: Path, spark: Any) -> None:
    from productlens.engines.spark import SparkEngine

    lake = odd_lake(tmp_path, world)
    engine = SparkEngine(spark)
    try:
        publish_raw(lake, engine)
        assert_same_raw(lake, engine)
    finally:  # the session is the run's: leave no raw layer for other tests
        for name in CONTRACTS:
            engine.drop("raw", name)
        for schema, name in CATALOG:
            engine.drop(schema, name)
        engine.close()
        lake.close()


def test_only_the_processor_imports_a_database_driver() -> None:
    """Ingestion and the lake reach DuckDB through ingest.processor alone, and never a
    warehouse's driver."""
    src = Path(__file__).resolve().parents[1] / "src" / "productlens"
    drivers = {"duckdb", "psycopg", "pyspark"}
    found = {}
    for path in [src / "lake.py", *sorted((src / "ingest").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            used = {n.split(".")[0] for n in names} & drivers
            if used:
                found[path.relative_to(src).as_posix()] = used
    assert found == {"ingest/processor.py": {"duckdb"}}
