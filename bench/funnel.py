"""Funnel, retention and activity speed on one simulated world, side by side in one run.

A 4-step ordered funnel (product_view, add_to_cart, checkout_start, purchase) with a 7-day
window, timed with:
- productlens: `productlens.metrics.funnel.funnel` on the warehouse's `core.fct_events`;
- ClickHouse's `windowFunnel` through chdb (installed by the bench only, pinned), on the
  same events exported to zstd Parquet;
- the best plain-SQL formulation on DuckDB: one self-join per step, each attempt (step-1
  event) taking the earliest next step within its window.

Counts are checked against an exact reference in plain Python (one pass over each user's
funnel events), never against ClickHouse: `windowFunnel` is wrong on equal timestamps.
Retention (weekly cohorts) and DAU/WAU/MAU are timed at the same time: through
`productlens.metrics.retention` / `.activity` once they exist, else the marts' own SQL
(`retention_cohorts`, `active_users_daily`) run against `core.fct_events`.

Each query runs REPEATS times, alternating, and the median is reported with the spread.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

STEPS = ("product_view", "add_to_cart", "checkout_start", "purchase")
WINDOW = timedelta(days=7)
CHDB_VERSION = "4.4.0"
REPEATS = 3


# --- the exact reference ---------------------------------------------------------------


def reference_counts(
    users: Sequence[Any], steps: Sequence[int], micros: Sequence[int], window_us: int, n: int
) -> list[int]:
    """Users reaching each step of an ordered funnel with distinct step names.

    Rows are one user's funnel events after another, in time order, ties in step order
    (events of different steps at the same instant count in step order). `latest[k]` is
    the latest step-1 time of an attempt that has reached step k so far: the latest start
    leaves the most window, so step k+1 at time t continues some attempt exactly when
    t - latest[k] <= window. The user's result is the furthest step any attempt reaches.
    """
    counts = [0] * n
    latest: list[int | None] = [None] * n
    furthest = -1
    current: Any = object()
    for user, k, t in zip(users, steps, micros, strict=True):
        if user != current:
            for i in range(furthest + 1):
                counts[i] += 1
            latest, furthest, current = [None] * n, -1, user
        if k == 0:
            latest[0] = t
            furthest = max(furthest, 0)
            continue
        start = latest[k - 1]
        if start is not None and t - start <= window_us:
            before = latest[k]
            latest[k] = start if before is None else max(before, start)
            furthest = max(furthest, k)
    for i in range(furthest + 1):
        counts[i] += 1
    return counts


def reference_query(table: str, steps: Sequence[str]) -> str:
    """The funnel events sorted for `reference_counts` (user, time, step)."""
    names = ", ".join(_quote(s) for s in steps)
    index = " ".join(f"when {_quote(s)} then {i}" for i, s in enumerate(steps))
    return (
        f"select user_id, case event_type {index} end as step, "
        f"epoch_us(event_ts) as us from {table} where event_type in ({names}) "
        "order by user_id, event_ts, step"
    )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --- the alternatives ------------------------------------------------------------------


def self_join_sql(table: str, steps: Sequence[str], window: timedelta) -> str:
    """The best plain-SQL ordered funnel on DuckDB: each step-1 event starts an attempt,
    each later step is the earliest event at or after the previous step within the
    attempt's window (greedy earliest is optimal for distinct step names), and a user
    counts at step k if any attempt reaches it. One range self-join per step."""
    names = ", ".join(_quote(s) for s in steps)
    seconds = int(window.total_seconds())
    ctes = [
        f"e as (select user_id, event_type, event_ts as ts from {table} "
        f"where event_type in ({names}))",
        f"s0 as (select distinct user_id, ts as t0 from e where event_type = {_quote(steps[0])})",
    ]
    prev_t = "t0"
    for k in range(1, len(steps)):
        keep = ", ".join(f"s.t{j}" for j in range(k))
        ctes.append(
            f"s{k} as (select s.user_id, {keep}, min(e.ts) as t{k} from s{k - 1} as s "
            f"join e on e.user_id = s.user_id and e.event_type = {_quote(steps[k])} "
            f"and e.ts >= s.{prev_t} and e.ts <= s.t0 + interval {seconds} second "
            f"group by s.user_id, {keep})"
        )
        prev_t = f"t{k}"
    counts = ", ".join(
        f"(select count(distinct user_id) from s{k}) as n{k}" for k in range(len(steps))
    )
    return "with " + ",\n".join(ctes) + f"\nselect {counts}"


def window_funnel_sql(parquet: Path, steps: Sequence[str], window: timedelta) -> str:
    """ClickHouse's windowFunnel: the furthest level per user, then users per level."""
    conds = ", ".join(f"event_type = {_quote(s)}" for s in steps)
    names = ", ".join(_quote(s) for s in steps)
    window_us = int(window.total_seconds()) * 10**6
    levels = ", ".join(f"countIf(level >= {k + 1})" for k in range(len(steps)))
    return (
        f"select {levels} from (select user_id, windowFunnel({window_us})("
        f"toUInt64(toUnixTimestamp64Micro(event_ts)), {conds}) as level "
        f"from file({_quote(str(parquet))}, Parquet) where event_type in ({names}) "
        "group by user_id)"
    )


def ensure_chdb(say: Callable[[str], None]) -> Any:
    """chdb at the pinned version, installed into this interpreter's environment on
    first use (it is the bench's comparison, not a productlens dependency)."""
    try:
        if importlib.metadata.version("chdb") == CHDB_VERSION:
            return importlib.import_module("chdb")
    except importlib.metadata.PackageNotFoundError:
        pass
    say(
        f"installing chdb=={CHDB_VERSION} into {sys.prefix} for the ClickHouse comparison "
        "(bench only; not a productlens dependency)"
    )
    uv = Path(sys.executable).with_name("uv")
    command = (
        [str(uv), "pip", "install", "--python", sys.executable]
        if uv.exists()
        else [sys.executable, "-m", "pip", "install"]
    )
    subprocess.run([*command, f"chdb=={CHDB_VERSION}"], check=True)
    importlib.invalidate_caches()
    return importlib.import_module("chdb")


# --- one run ---------------------------------------------------------------------------


def events_warehouse(data: str, project: str) -> tuple[Any, Any, int]:
    """Ingest `data` into a warehouse in `project` and build the events fact and what the
    metrics read beside it; the open engine, the project and the number of events."""
    from rich.console import Console

    from productlens.app import open_engine
    from productlens.config import load_project
    from productlens.pipeline import Runner

    project_obj = load_project(Path(project))
    engine = open_engine(project_obj)
    runner = Runner(project_obj, engine, Console(quiet=True))
    runner.ingest([data])
    runner.build(["+fct_events", "+fct_user_event_days", "+dim_date", "+stg_users"])
    events = int(_rows(engine, "select count(*) from core.fct_events")[0][0])
    return engine, project_obj, events


def run_one(data: str, project: str, layouts: int = 0, against: str = "{}") -> dict[str, object]:
    """Build a warehouse from `data` in `project`, then time every query; return figures.
    With `layouts`, the funnels also run on a copy of fct_events stored sorted by
    (user_id, event_ts), swapped in under the same name. `against` (JSON: name -> a
    `bench.pipeline.checkout` folder) times each other version's funnel query on the same
    warehouse, in the same alternation."""
    chdb = importlib.import_module("chdb")  # installed by the parent (ensure_chdb)
    engine, project_obj, events = events_warehouse(data, project)
    parquet = Path(project) / "events.parquet"
    _run(
        engine,
        "COPY (select user_id, event_type, event_ts from core.fct_events) "
        f"TO {_quote(str(parquet))} (FORMAT parquet, COMPRESSION zstd)",
    )

    started = time.perf_counter()
    table = engine.connection.sql(reference_query("core.fct_events", STEPS)).to_arrow_table()
    reference = reference_counts(
        table["user_id"].to_pylist(),
        table["step"].to_pylist(),
        table["us"].to_pylist(),
        int(WINDOW.total_seconds()) * 10**6,
        len(STEPS),
    )
    reference_seconds = time.perf_counter() - started
    del table

    queries: dict[str, Callable[[], list[int]]] = {
        "productlens": lambda: _productlens_funnel(engine),
        "clickhouse": lambda: [
            int(v)
            for v in chdb.query(window_funnel_sql(parquet, STEPS, WINDOW), "CSV")
            .data()
            .strip()
            .split(",")
        ],
        "duckdb_self_join": lambda: [
            int(v) for v in _rows(engine, self_join_sql("core.fct_events", STEPS, WINDOW))[0]
        ],
    }
    for name, folder in json.loads(against).items():
        queries[f"productlens {name}"] = functools.partial(
            _counts_of, engine, other_funnel_sql(Path(folder))
        )
    extra: dict[str, float] = {}
    if layouts:
        began = time.perf_counter()
        _run(
            engine,
            "CREATE TABLE core.fct_events_by_user AS "
            "SELECT * FROM core.fct_events ORDER BY user_id, event_ts",
        )
        extra["sorted copy seconds"] = time.perf_counter() - began
        for name in ("productlens", "duckdb_self_join"):
            queries[f"{name} ({SORTED})"] = functools.partial(_on_sorted, engine, queries[name])
    queries.update(_other_metrics(engine, project_obj))
    times: dict[str, list[float]] = {name: [] for name in queries}
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for _ in range(REPEATS):  # alternating, so drift hits every tool alike
        for name, query in queries.items():
            if name in errors:
                continue
            began = time.perf_counter()
            try:
                results[name] = query()
            except NotImplementedError as exc:
                errors[name] = f"not implemented yet ({exc})"
                continue
            times[name].append(time.perf_counter() - began)
    engine.close()
    return {
        "events": events,
        "reference": reference,
        "reference_seconds": reference_seconds,
        "seconds": times,
        "counts": {k: v for k, v in results.items() if isinstance(v, list)},
        "errors": errors,
        **extra,
    }


SORTED = "on fct_events sorted by user, time"


def _on_sorted(engine: Any, query: Callable[[], list[int]]) -> list[int]:
    """Run `query` with the sorted copy of fct_events under its name."""
    swap = [("fct_events", "fct_events_shipped"), ("fct_events_by_user", "fct_events")]
    for old, new in swap:
        _run(engine, f"ALTER TABLE core.{old} RENAME TO {new}")
    try:
        return query()
    finally:
        for new, old in reversed(swap):
            _run(engine, f"ALTER TABLE core.{old} RENAME TO {new}")


# Run with another version's code (`bench.pipeline.checkout`): the SQL its `funnel()`
# sends to a DuckDB engine for the bench's funnel, caught at `fetch_arrow`.
_CAPTURE = """
import sys
from bench.funnel import STEPS, WINDOW
from productlens.metrics.funnel import funnel


class Caught(Exception):
    pass


# An engine that hands back the funnel query. It has no tables and no run log, so a
# revision that reads the day index when the run log says it is current sends its query
# over the events.
class Capture:

    dialect = "duckdb"

    def table_kind(self, schema, name):
        return None

    def fetch_all(self, query):
        return []

    def fetch_arrow(self, query):
        raise Caught(query.sql(dialect="duckdb"))


try:
    funnel(Capture(), STEPS, window=WINDOW)
except Caught as caught:
    sys.stdout.write(caught.args[0])
"""


def other_funnel_sql(folder: Path) -> str:
    """The DuckDB SQL of the bench's funnel as the code in `folder` (a checkout of
    `src/` and `bench/`) builds it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder / "src"), str(folder)])}
    proc = subprocess.run(
        [sys.executable, "-c", _CAPTURE],
        capture_output=True,
        text=True,
        check=True,
        cwd=folder,
        env=env,
    )
    if not proc.stdout.strip():
        raise RuntimeError(f"the code in {folder} sent no funnel query: {proc.stderr[-2000:]}")
    return proc.stdout


def _counts_of(engine: Any, sql: str) -> list[int]:
    """Units per step from a funnel query's rows (step, n_units, ...)."""
    rows = engine.connection.execute(sql).fetchall()
    return [int(n) for _, n, *_ in sorted(rows)]


def _productlens_funnel(engine: Any) -> list[int]:
    from productlens.metrics.funnel import funnel

    return [s.count for s in funnel(engine, STEPS, window=WINDOW).steps]


def _other_metrics(engine: Any, project: Any) -> dict[str, Callable[[], Any]]:
    """Retention (weekly signup cohorts, any event) and DAU/WAU/MAU: through
    `productlens.metrics.retention` / `.activity` where they exist, else the marts' SQL
    on core.fct_events."""
    from productlens import modeling
    from productlens.metrics.scope import Scope

    graph = modeling.discover(project.config, project.model_dirs)
    out: dict[str, Callable[[], Any]] = {}
    retention = _metric("retention", "retention")
    if retention is not None:
        out["retention (metrics.retention, 26 weekly signup cohorts)"] = functools.partial(
            retention,
            engine,
            start="signup",
            return_event=None,
            scope=Scope(),
            period="week",
            periods=26,
        )
    else:
        sql = graph["retention_cohorts"].expression
        out["retention (retention_cohorts SQL)"] = functools.partial(_row_count, engine, sql)
    activity = _metric("activity", "activity")
    if activity is not None:
        out["dau_wau_mau (metrics.activity)"] = functools.partial(activity, engine, Scope())
    else:
        sql = graph["active_users_daily"].expression
        out["dau_wau_mau (active_users_daily SQL)"] = functools.partial(_row_count, engine, sql)
    return out


def _metric(module: str, name: str) -> Any:
    """`productlens.metrics.<module>.<name>`, or None while it has not landed."""
    try:
        return getattr(importlib.import_module(f"productlens.metrics.{module}"), name)
    except (ImportError, AttributeError):
        return None


def _row_count(engine: Any, query: Any) -> int:
    return int(engine.fetch_arrow(query).num_rows)


def _run(engine: Any, sql: str) -> None:
    """DuckDB SQL of the benchmark's own (baselines, set-up), on the engine's connection."""
    engine.connection.execute(sql)


def _rows(engine: Any, sql: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = engine.connection.execute(sql).fetchall()
    return rows


def measure(
    data: Path, layouts: bool = False, against: dict[str, Path] | None = None
) -> dict[str, object]:
    """One run in a fresh process and warehouse; `against`: other versions' code by
    name (`bench.pipeline.checkout` folders), timed beside this one."""
    from bench.isolated import run_isolated

    scratch = Path(tempfile.mkdtemp(prefix="productlens-bench-"))
    try:
        return run_isolated(
            "bench.funnel.run_one",
            data=str(data),
            project=str(scratch),
            layouts=int(layouts),
            against=json.dumps({k: str(v) for k, v in (against or {}).items()}),
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
