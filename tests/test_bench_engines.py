"""`python -m bench engines` on a tiny world, in this process: one row per engine (DuckDB
and PostgreSQL; Spark is not run here) and the plain COPY's, the stages each engine has,
totals equal to the sum of the stages, ratios against DuckDB's total; the runs really
built the warehouse. Never timings."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from bench import engines
from bench.__main__ import bench_engines
from rich.console import Console

from productlens.app import POSTGRES_DSN_ENV, open_engine
from productlens.config import load_project
from tests import servers

TINY = 12_000  # events: about 90 users


# Spark is left out: its run is the same Runner code, its warehouse is proven equal to
# DuckDB's by tests/test_engine_parity.py, and a Spark build costs minutes of the suite.
TESTED = ("duckdb", "postgres")


def in_process(root: Path) -> engines.Measure:
    """The bench's run of one engine, in this process, opened as `--engine` opens it."""

    def run(name: str, data: Path, dsn: str, server_pid: int) -> dict[str, Any]:
        project = load_project(root / name, engine=name)  # type: ignore[arg-type]
        warehouse = open_engine(project, environ={POSTGRES_DSN_ENV: dsn})
        try:
            return engines.run_stages(project, warehouse, data, [server_pid] if server_pid else [])
        finally:
            warehouse.close()

    for name in TESTED:
        (root / name).mkdir()
    return run


def printed_rows(text: str) -> dict[str, list[str]]:
    """The table's body rows as printed, by their first cell."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if len(cells) == len(engines.COLUMNS) and cells[0] != "engine":
            rows[cells[0]] = cells
    return rows


def test_engines_bench_prints_one_row_per_engine(
    pg_server: servers.PostgresServer, tmp_path: Path
) -> None:
    out = io.StringIO()
    console = Console(file=out, width=220, color_system=None)
    results = bench_engines([TINY], console, TESTED, server=pg_server, run=in_process(tmp_path))
    rows = printed_rows(out.getvalue())
    copy_row = engines.COPY_ROW
    assert sorted(rows) == sorted([*TESTED, copy_row])

    (result,) = results
    runs = {name: result["runs"][name][0] for name in TESTED}
    copied = result["plain_copy"]
    column = {name: i for i, name in enumerate(engines.COLUMNS)}
    stages = {
        "duckdb": ("ingest", "build", "check"),  # its warehouse is the lake's catalog
        "postgres": ("ingest", "publish", "build", "check"),
    }
    duckdb_total = sum(runs["duckdb"]["stages"].values())
    for name, present in stages.items():
        cells = rows[name]
        shown = {s: cells[column[s]] for s in engines.STAGES}
        assert [s for s, v in shown.items() if v != "-"] == list(present), name
        assert sorted(runs[name]["stages"]) == sorted(present), name
        assert [shown[s] for s in present] == [f"{runs[name]['stages'][s]:.2f}" for s in present]
        # The total is the sum of the stages (each cell rounded to 0.01 s).
        total = float(cells[column["total"]])
        assert total == pytest.approx(sum(float(shown[s]) for s in present), abs=0.005 * 5)
        exact = sum(runs[name]["stages"].values())
        assert cells[column["total"]] == f"{exact:.2f}"
        assert cells[column["vs duckdb"]] == f"{exact / duckdb_total:.2f}x"
        assert re.fullmatch(r"\d+\.\d\d GiB", cells[column["peak memory"]]), cells
        # CPU seconds per stage (publish counted in build), summed in the table.
        assert sorted(runs[name]["cpu"]) == ["build", "check", "ingest"], name
        assert all(seconds > 0 for seconds in runs[name]["cpu"].values()), runs[name]["cpu"]
        assert cells[column["cpu s"]] == f"{sum(runs[name]['cpu'].values()):.2f}"
        assert runs[name]["peak_memory"] > 0
    assert rows["duckdb"][column["vs duckdb"]] == "1.00x"
    pg_stages = runs["postgres"]["stages"]
    assert rows["postgres"][column["vs plain COPY"]] == (
        f"{sum(pg_stages.values()) / copied['seconds']:.2f}x "
        f"(publish {pg_stages['publish'] / copied['seconds']:.2f}x)"
    )
    assert rows["duckdb"][column["vs plain COPY"]] == ""
    assert rows[copy_row][column["total"]] == f"{copied['seconds']:.2f}"
    assert rows[copy_row][column["publish"]] == f"{copied['seconds']:.2f}"

    # The runs behind the table did the work: every engine's raw layer holds every event
    # the plain COPY loaded, and every engine built the same models. The reference loads
    # every contract table (what publish loads), not the events alone.
    assert copied["rows"] > copied["events"] > 1000
    assert {r["events"] for r in runs.values()} == {copied["events"]}
    assert {r["rows"]["raw"] for r in runs.values()} == {copied["rows"]}
    assert len({r["models"] for r in runs.values()}) == 1
    assert runs["duckdb"]["models"] > 10
