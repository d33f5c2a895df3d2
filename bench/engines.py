"""Ingest + publish + full build + checks on each warehouse engine, side by side: DuckDB,
PostgreSQL (a throwaway server, started the way the tests start one) and Spark local[*],
each through the real pipeline with the engine chosen as a user chooses it (`--engine`,
the DSN from PRODUCTLENS_POSTGRES_DSN), in a fresh interpreter and a fresh project.

Peak memory is the proportional set size (PSS, from /proc) of the whole process tree:
the run's interpreter and its children (Spark's JVM), plus the PostgreSQL server's
processes, which are not its descendants. PSS counts PostgreSQL's shared buffers once,
where summed RSS would count them once per backend.

The reference line is a plain PostgreSQL COPY of the same events (psql, CSV on stdin,
into a table with no constraints), as PERFORMANCE.md's "31 s for 10M events".
"""

from __future__ import annotations

import os
import shutil
import subprocess
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
        summary = runner.finish()
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


def psql(dsn: str) -> list[str]:
    """psql on `dsn`, quiet, stopping at the first error."""
    from tests import servers

    return [servers._pg_bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn]


EVENTS_TABLE = (
    "CREATE TABLE plain_events (event_id text, user_id text, session_id text, "
    "event_type text, event_ts timestamp, device text, country text, product_id text, "
    "amount double precision, properties text)"
)
COPY = "COPY plain_events FROM STDIN WITH (FORMAT csv, HEADER)"


def write_csv(data: Path, out: Path) -> int:
    """The world's event files as one CSV (dictionary columns as plain text); its rows."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds

    events = ds.dataset(data / "events", format="parquet", partitioning="hive")
    names = [n for n in events.schema.names if n != "event_date"]  # the folder's, not the file's
    schema = pa.schema(
        pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
        for f in (events.schema.field(n) for n in names)
    )
    rows = 0
    with pacsv.CSVWriter(out, schema) as writer:
        for batch in events.to_batches(columns=names):
            writer.write_batch(batch.cast(schema))
            rows += batch.num_rows
    return rows


def copy_one(data: str, dsn: str, server_pid: int) -> dict[str, Any]:
    """Plain COPY of the events into a fresh table (the CSV written first, not timed)."""
    psql_args = psql(dsn)
    scratch = Path(tempfile.mkdtemp(prefix="productlens-bench-copy-"))
    try:
        csv = scratch / "events.csv"
        rows = write_csv(Path(data), csv)
        subprocess.run([*psql_args, "-c", EVENTS_TABLE], check=True, capture_output=True)
        with PeakMemory(also=[server_pid], proportional=True, interval=0.1) as memory:
            started = time.perf_counter()
            with csv.open("rb") as source:
                subprocess.run([*psql_args, "-c", COPY], stdin=source, check=True)
            seconds = time.perf_counter() - started
        count = subprocess.run(
            [*psql_args, "-tA", "-c", "SELECT count(*) FROM plain_events"],
            check=True,
            capture_output=True,
            text=True,
        )
        loaded = int(count.stdout.strip())
        if loaded != rows:
            raise RuntimeError(f"plain COPY loaded {loaded:,} rows of {rows:,}")
        return {"seconds": seconds, "rows": rows, "peak_memory": memory.peak}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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
            load = stages.get("ingest", 0.0) + stages.get("publish", 0.0)
            versus_copy = (
                f"{seconds / copied['seconds']:.2f}x (load {load / copied['seconds']:.2f}x)"
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
                "plain COPY (psql, events only)",
                f"{copied['seconds']:.2f}",
                "-",
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
