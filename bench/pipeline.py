"""Ingest + build + checks on a simulated world: seconds per stage, the slowest models,
and the peak memory of the run. Targets (PERFORMANCE.md): under 30 s at 10M events;
under 6 minutes at 100M with peak memory under 8 GB (DuckDB's memory limit is set, and
it spills to disk beyond it).

`--variants` compares layouts of the events fact (`core.fct_events`) in one run: each
variant is written into the bench project's own models folder, where a model of the same
name replaces the shipped one (SQL and YAML), and the runs alternate. A variant `@REF`
(`@main`) runs git revision REF's code as shipped there, to measure a change of the
code against the code before it in the same run.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench.isolated import ROOT, run_isolated
from bench.procmem import PeakMemory


def _table_sql() -> str:
    """The shipped events fact: the baseline every variant is measured against."""
    from productlens.modeling import shipped_models_dir

    return (shipped_models_dir() / "core" / "fct_events.sql").read_text()


Spec = dict[str, Any]
Variant = Callable[[Spec], tuple[str, Spec]]


def _table(spec: Spec) -> tuple[str, Spec]:
    return _table_sql(), spec


def _view(spec: Spec) -> tuple[str, Spec]:
    """Not copied at all: every reader joins staging to dim_users again."""
    spec = {k: v for k, v in spec.items() if k != "incremental"}
    return _table_sql(), {**spec, "materialized": "view"}


def _sorted(spec: Spec) -> tuple[str, Spec]:
    """Stored in (user_id, event_ts) order, for per-user window functions."""
    return _table_sql().replace(
        "select * from final", "select * from final order by user_id, event_ts"
    ), spec


def _by_date(spec: Spec) -> tuple[str, Spec]:
    """Stored in event_date order (DuckDB has no partitions; zone maps prune by date)."""
    return _table_sql().replace(
        "select * from final", "select * from final order by event_date"
    ), spec


def _shipped(spec: Spec) -> tuple[str, Spec]:
    from productlens.modeling import shipped_models_dir

    return (shipped_models_dir() / "core" / "fct_events.sql").read_text(), spec


VARIANTS: dict[str, Variant] = {
    "table": _table,
    "view": _view,
    "sorted": _sorted,
    "by_date": _by_date,
    "shipped": _shipped,
}


def write_variant(name: str, project: Path) -> None:
    """Put variant `name` of fct_events into `project`'s models folder."""
    from productlens.modeling import shipped_models_dir

    core = yaml.safe_load((shipped_models_dir() / "core" / "_core.yml").read_text())
    spec = next(m for m in core["models"] if m["name"] == "fct_events")
    sql, spec = VARIANTS[name](spec)
    folder = project / "models" / "core"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fct_events.sql").write_text(sql)
    (folder / "_bench_variant.yml").write_text(yaml.safe_dump({"models": [spec]}))


def run_one(data: str, project: str) -> dict[str, object]:
    """Run the three stages in this process on `data`; return their figures."""
    from rich.console import Console

    from productlens.app import open_engine
    from productlens.config import load_project
    from productlens.pipeline import Runner

    project_obj = load_project(Path(project))
    engine = open_engine(project_obj)
    runner = Runner(project_obj, engine, Console(quiet=True))
    cpu: dict[str, float] = {}
    with PeakMemory() as memory:
        started = time.perf_counter()
        for stage, run in (
            ("ingest", lambda: runner.ingest([data])),
            ("build", runner.build),
            ("check", runner.check),
        ):
            before = _cpu_seconds()
            run()
            cpu[stage] = _cpu_seconds() - before
        seconds = time.perf_counter() - started
    summary = runner.finish()
    models = sorted(
        ((r.object, r.seconds) for r in runner.runlog.records if r.stage == "build" and r.object),
        key=lambda item: -item[1],
    )
    engine.close()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "stages": {s.name: s.seconds for s in summary.stages},
        "slowest_models": models[:8],
        "peak_rss": memory.peak,
        "rows": summary.layer_rows,
    }


def _cpu_seconds() -> float:
    """CPU seconds this process (and DuckDB's threads in it) has used: on a machine
    shared with other work they vary far less than wall-clock seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


AGAINST = "@"  # a variant name `@REF`: the code of git revision REF, as shipped there


def checkout(ref: str) -> Path:
    """The code of git revision `ref` of this repository, in a new temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="productlens-bench-code-"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "src", "bench"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def measure(
    data: Path, variant: str | None = None, source: Path | None = None
) -> dict[str, object]:
    """One run of ingest + build + checks on `data`: with a fct_events `variant`, or (with
    `source`, a `checkout`) another version's code as shipped."""
    scratch = Path(tempfile.mkdtemp(prefix="productlens-bench-"))
    try:
        if variant is not None and source is None:
            write_variant(variant, scratch)
        return run_isolated(
            "bench.pipeline.run_one", source=source, data=str(data), project=str(scratch)
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
