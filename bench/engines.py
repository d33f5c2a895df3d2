"""Ingest + publish + full build + checks on each warehouse engine, side by side: DuckDB,
PostgreSQL (a throwaway server, started the way the tests start one) and Spark local[*],
each through the real pipeline with the engine chosen as a user chooses it (`--engine`,
the DSN from PRODUCTLENS_POSTGRES_DSN), in a fresh interpreter and a fresh project.

Peak memory is the proportional set size (PSS, from /proc) of the whole process tree:
the run's interpreter and its children (Spark's JVM), plus the PostgreSQL server's
processes, which are not its descendants. PSS counts PostgreSQL's shared buffers once,
where summed RSS would count them once per backend.

The reference line is a plain PostgreSQL COPY of the same tables publish loads: every
contract table's source rows with lineage columns like the raw layer's (batch, source
file, row number, ingestion time), typed as the raw tables are, as CSV on one connection
into tables with no constraints. Publish's ratio to it is what loading costs beyond the
database's own bulk load.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.isolated import run_isolated
from bench.procmem import PeakMemory, tree_cpu

ENGINES = ("duckdb", "postgres", "spark")
STAGES = (
    "ingest",
    "publish",
    "build",
    "check",
)  # publish: only where the lake is not the warehouse

# Runs one engine on a world's folder; (engine, data, dsn, server pid) -> figures.
Measure = Callable[[str, Path, str, int], dict[str, Any]]


def run_stages(project: Any, engine: Any, data: Path, also: Sequence[int] = ()) -> dict[str, Any]:
    """ingest (and publish) -> build -> check on `engine` in this process; seconds per
    stage (the run log's), wall seconds, peak PSS of this process tree and `also`'s."""
    from rich.console import Console

    from productlens.pipeline import Runner

    runner = Runner(project, engine, Console(quiet=True))
    try:
        with PeakMemory(also=also, proportional=True, interval=0.1) as memory:
            started = time.perf_counter()
            marks = [process_cpu(also)]
            runner.ingest([data])
            marks.append(process_cpu(also))
            built = runner.build()  # publishes first
            marks.append(process_cpu(also))
            runner.check()
            marks.append(process_cpu(also))
            seconds = time.perf_counter() - started
    finally:
        finishing = time.perf_counter()
        summary = runner.finish()
        finish_seconds = time.perf_counter() - finishing
    from sqlglot import exp

    from productlens.engines.base import table

    count = exp.select(exp.Count(this=exp.Star())).from_(table("raw", "events"))
    return {
        "seconds": seconds,
        "events": int(engine.fetch_all(count)[0][0]),
        "stages": {s.name: s.seconds for s in summary.stages},
        "models": len(built.built),
        "peak_memory": memory.peak,
        # CPU seconds per stage; "build" includes publishing the raw layer.
        "cpu": {
            stage: marks[i + 1] - marks[i] for i, stage in enumerate(("ingest", "build", "check"))
        },
        "rows": summary.layer_rows,
        # Outside the stages: the closing rows per layer, and each model's build (the
        # run log's), for where a stage's time went.
        "finish": finish_seconds,
        "model_seconds": {
            r.object: r.seconds for r in runner.runlog.records if r.stage == "build" and r.object
        },
    }


def process_cpu(also: Sequence[int] = ()) -> float:
    """CPU seconds used so far by this process tree (Spark's JVM included) and `also`'s
    (PostgreSQL's server)."""
    return sum(tree_cpu(pid) for pid in [os.getpid(), *also])


def run_one(engine: str, data: str, project: str, dsn: str, server_pid: int) -> dict[str, Any]:
    """One engine's run in this (fresh) interpreter, opened as `--engine ENGINE` opens it."""
    from productlens.app import POSTGRES_DSN_ENV, open_engine
    from productlens.config import load_project

    project_obj = load_project(Path(project), engine=engine)  # type: ignore[arg-type]
    warehouse = open_engine(project_obj, environ={POSTGRES_DSN_ENV: dsn} if dsn else {})
    try:
        return run_stages(project_obj, warehouse, Path(data), [server_pid] if server_pid else [])
    finally:
        warehouse.close()


def measure(engine: str, data: Path, dsn: str, server_pid: int) -> dict[str, Any]:
    """One engine's run in a fresh interpreter and a fresh project folder."""
    scratch = Path(tempfile.mkdtemp(prefix="productlens-bench-engine-"))
    try:
        return run_isolated(
            "bench.engines.run_one",
            engine=engine,
            data=str(data),
            project=str(scratch),
            dsn=dsn,
            server_pid=server_pid,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --- PostgreSQL: the throwaway server and the plain COPY ----------------------------------


@contextmanager
def postgres() -> Iterator[Any]:
    """A throwaway PostgreSQL server, started by the tests' own code (tests/servers.py),
    which reports a missing part with pytest's failure: turned into a plain error here."""
    import pytest
    from tests import servers

    try:
        with servers.postgres_server() as server:
            yield server
    except pytest.fail.Exception as exc:
        raise RuntimeError(f"bench engines: PostgreSQL could not start: {exc.msg}") from None


def server_pid(server: Any) -> int:
    """The postmaster's pid (the first line of its data folder's postmaster.pid)."""
    return int((Path(server.folder) / "data" / "postmaster.pid").read_text().split()[0])


# Lineage values of the reference rows: like the raw layer's in size (a 16-digit batch
# id, the source file's path, its row number, a time).
REFERENCE_BATCH = "0123456789abcdef"
REFERENCE_TIME = "2026-01-01 00:00:00"


def write_csv(data: Path, name: str, out: Path) -> int:
    """One contract table's source files as one CSV, typed as the raw table (contract
    columns, then lineage: each file's path and row numbers); its rows."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds

    from productlens.ingest.contracts import CONTRACTS

    contract = CONTRACTS[name]
    schema = pa.schema(
        [
            *(pa.field(c.name, _arrow(c.type)) for c in contract.columns),
            pa.field("_batch_id", pa.string()),
            pa.field("_source_file", pa.string()),
            pa.field("_row_number", pa.int64()),
            pa.field("_ingested_at", pa.timestamp("us")),
        ]
    )
    folder = ds.dataset(data / name, format="parquet", partitioning="hive")
    present = set(folder.schema.names)
    rows = 0
    with pacsv.CSVWriter(out, schema) as writer:
        for fragment in folder.get_fragments():
            part = fragment.to_table(
                columns=[c.name for c in contract.columns if c.name in present]
            )
            n = part.num_rows
            columns = [
                part.column(c.name).cast(_arrow(c.type))
                if c.name in present
                else pa.nulls(n, _arrow(c.type))
                for c in contract.columns
            ]
            columns += [
                pa.array([REFERENCE_BATCH] * n, pa.string()),
                pa.array([fragment.path] * n, pa.string()),
                pc.add(pa.array(range(n), pa.int64()), 1),
                pc.cast(pa.array([REFERENCE_TIME] * n), pa.timestamp("us")),
            ]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
            rows += n
    return rows


def _arrow(contract_type: str) -> Any:
    """The Arrow type a contract column (DuckDB's type name) is written as."""
    import pyarrow as pa

    return {
        "VARCHAR": pa.string(),
        "TIMESTAMP": pa.timestamp("us"),
        "DOUBLE": pa.float64(),
        "INTEGER": pa.int32(),
        "BIGINT": pa.int64(),
        "DATE": pa.date32(),
    }[contract_type]


def reference_table(name: str) -> tuple[str, str]:
    """CREATE TABLE for a raw table's plain copy (no constraints) and its COPY, as
    PostgreSQL text built with SQLGlot."""
    from sqlglot import exp

    from productlens.ingest.contracts import CONTRACTS, LINEAGE_COLUMNS

    columns = [(c.name, c.type) for c in CONTRACTS[name].columns] + list(LINEAGE_COLUMNS)
    target = exp.table_(name, db="plain", quoted=True)
    create = exp.Create(
        this=exp.Schema(
            this=target,
            expressions=[
                exp.ColumnDef(
                    this=exp.to_identifier(column, quoted=True),
                    kind=exp.DataType.build(kind, dialect="duckdb"),
                )
                for column, kind in columns
            ],
        ),
        kind="TABLE",
    )
    copy = exp.Copy(
        this=target.copy(),
        kind=True,
        files=[exp.Var(this="STDIN")],
        params=[
            exp.CopyParameter(this=exp.Var(this="FORMAT"), expression=exp.Var(this="csv")),
            exp.CopyParameter(this=exp.Var(this="HEADER")),
        ],
    )
    return create.sql(dialect="postgres"), copy.sql(dialect="postgres")


def copy_one(data: str, dsn: str, server_pid: int) -> dict[str, Any]:
    """Plain COPY of every contract table into fresh tables, on one connection (the CSVs
    written first, not timed): rows in total and of events."""
    import psycopg

    from productlens.ingest.contracts import CONTRACTS

    scratch = Path(tempfile.mkdtemp(prefix="productlens-bench-copy-"))
    try:
        csvs = {name: scratch / f"{name}.csv" for name in CONTRACTS}
        rows = {name: write_csv(Path(data), name, csv) for name, csv in csvs.items()}
        statements = {name: reference_table(name) for name in CONTRACTS}
        with psycopg.connect(dsn, autocommit=True) as con:
            con.execute("CREATE SCHEMA plain")
            for create, _ in statements.values():
                con.execute(create)
            with PeakMemory(also=[server_pid], proportional=True, interval=0.1) as memory:
                started = time.perf_counter()
                with con.transaction():
                    for name, (_, copy) in statements.items():
                        with csvs[name].open("rb") as source, con.cursor().copy(copy) as sink:
                            while block := source.read(1 << 23):
                                sink.write(block)
                seconds = time.perf_counter() - started
            counted = {
                name: int(con.execute(count).fetchone()[0])  # type: ignore[index]
                for name, count in _counts(CONTRACTS).items()
            }
        if counted != rows:
            raise RuntimeError(f"plain COPY loaded {counted} rows of {rows}")
        return {
            "seconds": seconds,
            "rows": sum(rows.values()),
            "events": rows["events"],
            "peak_memory": memory.peak,
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _counts(names: Any) -> dict[str, str]:
    from sqlglot import exp

    return {
        name: exp.select(exp.Count(this=exp.Star()))
        .from_(exp.table_(name, db="plain", quoted=True))
        .sql(dialect="postgres")
        for name in names
    }


def plain_copy(server: Any, data: Path, database: str) -> dict[str, Any]:
    dsn = server.create_database(database)
    return run_isolated(
        "bench.engines.copy_one",
        data=str(data),
        dsn=dsn,
        server_pid=server_pid(server),
    )


# --- one size, every engine ------------------------------------------------------------


def compare(
    data: Path,
    engines: Sequence[str],
    server: Any | None,
    *,
    repeats: int = 1,
    run: Measure = measure,
    tag: str = "",
) -> dict[str, Any]:
    """Each engine `repeats` times on one world, alternating so that the machine's drift
    hits them alike; with PostgreSQL, the plain COPY once. A fresh database per run. An
    engine whose run fails is reported with its error and left out of later attempts."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
    errors: dict[str, str] = {}
    for attempt in range(repeats):
        for name in engines:
            if name in errors:
                continue
            dsn, pid = "", 0
            if name == "postgres":
                assert server is not None, "the postgres engine needs a server"
                dsn = server.create_database(f"bench_{tag}_{attempt}")
                pid = server_pid(server)
            try:
                runs[name].append(run(name, data, dsn, pid))
            except RuntimeError as exc:  # run_isolated's: the run's last lines
                errors[name] = str(exc).strip().splitlines()[-1]
    copied = plain_copy(server, data, f"bench_{tag}_copy") if "postgres" in engines else None
    return {"runs": runs, "errors": errors, "plain_copy": copied}


# --- the table -------------------------------------------------------------------------

# The reference's row in the table: the same tables' rows, loaded by PostgreSQL's COPY.
COPY_ROW = "plain COPY (same tables)"

COLUMNS = (
    "engine",
    *STAGES,
    "total",
    "cpu s",
    "vs duckdb",
    "vs plain COPY",
    "peak memory",
)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda r: sum(r["stages"].values()))[len(runs) // 2]


def total(result: dict[str, Any]) -> float:
    """A run's total: the sum of its stages' seconds (as the table shows them)."""
    return float(sum(result["stages"].get(s, 0.0) for s in STAGES))


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """The printed cells, one row per engine, then the plain COPY's."""
    chosen = {name: median_run(runs) for name, runs in result["runs"].items() if runs}
    duck = total(chosen["duckdb"]) if "duckdb" in chosen else None
    copied = result["plain_copy"]
    rows = []
    for name, run in chosen.items():
        stages = run["stages"]
        seconds = total(run)
        versus_copy = ""
        if name == "postgres" and copied:
            publish = stages.get("publish", 0.0)
            versus_copy = (
                f"{seconds / copied['seconds']:.2f}x (publish {publish / copied['seconds']:.2f}x)"
            )
        rows.append(
            [
                name,
                *(f"{stages[s]:.2f}" if s in stages else "-" for s in STAGES),
                f"{seconds:.2f}",
                f"{sum(run['cpu'].values()):.2f}" if "cpu" in run else "-",
                f"{seconds / duck:.2f}x" if duck else "-",
                versus_copy,
                f"{run['peak_memory'] / 2**30:.2f} GiB",
            ]
        )
    for name in result.get("errors", {}):
        rows.append([name, "failed", "-", "-", "-", "-", "-", "-", "", "(error below)"])
    if copied:
        rows.append(
            [
                COPY_ROW,
                "-",
                f"{copied['seconds']:.2f}",  # what publish does, by COPY alone
                "-",
                "-",
                f"{copied['seconds']:.2f}",
                "-",
                f"{copied['seconds'] / duck:.2f}x" if duck else "-",
                "1.00x",
                f"{copied['peak_memory'] / 2**30:.2f} GiB",
            ]
        )
    return rows
