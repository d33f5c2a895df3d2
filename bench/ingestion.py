"""Ingest speed and memory: productlens's validated load of a simulated world's events
(Parquet) into a DuckDB warehouse, next to a plain DuckDB INSERT ... SELECT of the same
files into a native table with no validation at all. productlens's raw layer keeps the
files themselves (clean ones copied byte for byte, see productlens.ingest.store), which is
why it can beat the plain insert. PERFORMANCE.md's reference: PostgreSQL's COPY loaded
the same 10M events in about 31 s here.

This machine's speed drifts by a quarter or more over minutes, so each load runs several
times, alternating, each in a fresh process and warehouse; the median is reported.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from bench.isolated import run_isolated
from bench.procmem import PeakMemory

EVENTS_PER_USER = 137.0


def run_one(kind: str, data: str, warehouse: str) -> dict[str, float]:
    """Load `data`'s events into a new warehouse; return rows, seconds, peak RSS."""
    from productlens.ingest import ingest_paths
    from productlens.ingest.processor import LakeProcessor

    # Ingestion's processor on the warehouse file, as a DuckDB warehouse shares it.
    engine = LakeProcessor.open(Path(warehouse), Path(warehouse).with_suffix(".raw"))
    if kind == "productlens":
        ingest_paths(engine, [Path(data) / "users", Path(data) / "products"])
    with PeakMemory() as memory:
        started = time.perf_counter()
        if kind == "productlens":
            result = ingest_paths(engine, [Path(data) / "events"])
            rows = result.batches[0].rows_read
        else:
            source = f"read_parquet('{data}/events/*/*.parquet')"
            engine.execute("CREATE SCHEMA IF NOT EXISTS raw")
            engine.execute(f"CREATE TABLE raw.plain AS SELECT * FROM {source} LIMIT 0")
            engine.execute(f"INSERT INTO raw.plain SELECT * FROM {source}")
            rows = engine.fetch_all("SELECT count(*) FROM raw.plain")[0][0]
        seconds = time.perf_counter() - started
    engine.close()
    return {"rows": rows, "seconds": seconds, "peak_rss": memory.peak}


def measure(kind: str, data: Path) -> dict[str, float]:
    """One load in a fresh process and a fresh warehouse."""
    scratch = Path(tempfile.mkdtemp(prefix="productlens-bench-"))
    try:
        return run_isolated(
            "bench.ingestion.run_one",
            kind=kind,
            data=str(data),
            warehouse=str(scratch / "w.duckdb"),
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def world(n_events: int) -> Path:
    """A simulated world with about `n_events` events, in a temporary folder."""
    from productlens.simulate import generate, preset

    out = Path(tempfile.mkdtemp(prefix="productlens-bench-world-"))
    generate(preset(users=max(1, round(n_events / EVENTS_PER_USER))), out)
    return out
