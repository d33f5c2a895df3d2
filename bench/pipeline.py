"""Ingest + build + checks on a simulated world: seconds per stage, the slowest models,
and the peak memory of the run. Targets (PERFORMANCE.md): under 30 s at 10M events;
under 6 minutes at 100M with peak memory under 8 GB (DuckDB's memory limit is set, and
it spills to disk beyond it)."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from bench.isolated import run_isolated
from bench.procmem import PeakMemory


def run_one(data: str, project: str) -> dict[str, object]:
    """Run the three stages in this process on `data`; return their figures."""
    from rich.console import Console

    from productlens.config import load_project
    from productlens.engines import open_engine
    from productlens.pipeline import Runner

    project_obj = load_project(Path(project))
    engine = open_engine(project_obj)
    runner = Runner(project_obj, engine, Console(quiet=True))
    with PeakMemory() as memory:
        started = time.perf_counter()
        runner.ingest([data])
        runner.build()
        runner.check()
        seconds = time.perf_counter() - started
    summary = runner.finish()
    models = sorted(
        ((r.object, r.seconds) for r in runner.runlog.records if r.stage == "build" and r.object),
        key=lambda item: -item[1],
    )
    engine.close()
    return {
        "seconds": seconds,
        "stages": {s.name: s.seconds for s in summary.stages},
        "slowest_models": models[:8],
        "peak_rss": memory.peak,
        "rows": summary.layer_rows,
    }


def measure(data: Path) -> dict[str, object]:
    scratch = Path(tempfile.mkdtemp(prefix="productlens-bench-"))
    try:
        return run_isolated("bench.pipeline.run_one", data=str(data), project=str(scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
