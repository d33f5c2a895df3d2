"""The funnel marts counted from `int_funnel_entries` (each user's funnel per day of entry,
computed once) give the rows of the one-query funnel they replaced
(`funnel_mart_query`, the same query as `productlens funnel`): on random small data with
many ties and repeated step names, and on the demo's warehouse."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from productlens.config import load_project
from productlens.engines import DuckDBEngine
from productlens.metrics.funnel import (
    funnel_entries_mart_query,
    funnel_entries_query,
    funnel_mart_query,
)
from productlens.metrics.scope import Scope, parse_duration
from tests.conftest import open_readonly, q
from tests.test_funnel_properties import WINDOWS, rows_strategy, steps_strategy, to_events
from tests.test_funnel_rules import load_fct_events

ENTRIES = exp.table_("int_funnel_entries", db="marts")


def rows_of(engine: DuckDBEngine, query: exp.Query) -> list[tuple[Any, ...]]:
    return sorted(engine.fetch_all(query), key=repr)


def one_query_and_entries(
    engine: DuckDBEngine, steps: list[str], window: timedelta, scope: Scope, **kind: Any
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The mart's rows by the one-query funnel and counted from the stored entries."""
    old = rows_of(engine, funnel_mart_query(steps, window=window, scope=scope, **kind))
    new = rows_of(engine, funnel_entries_mart_query(steps, ENTRIES, window=window, **kind))
    return old, new


S1 = {"session_id": "s1", "device": "ios"}


@settings(max_examples=25, deadline=None)
@given(
    rows=rows_strategy,
    steps=steps_strategy,
    window=st.sampled_from(WINDOWS),
    timezone=st.sampled_from(["UTC", "America/Los_Angeles"]),
)
# A user whose furthest step is reached by attempts of two days: the report comes from
# the attempt that reached it first (u1 enters on both local days; 7:30 UTC is the
# evening before in Los Angeles).
@example(
    rows=[
        ("u1", "a", 0, S1),
        ("u1", "a", 24 * 60 + 1, {**S1, "device": "web"}),
        ("u1", "b", 24 * 60 + 1, S1),
        ("u1", "b", 7 * 24 * 60, S1),
    ],
    steps=["a", "b"],
    window=timedelta(days=14),
    timezone="America/Los_Angeles",
)
def test_marts_from_entries_equal_the_one_query_funnel(
    shared_engine: DuckDBEngine,
    rows: list[Any],
    steps: list[str],
    window: timedelta,
    timezone: str,
) -> None:
    load_fct_events(shared_engine, to_events(rows))
    scope = Scope(timezone=timezone)
    shared_engine.replace_table(
        "marts",
        "int_funnel_entries",
        funnel_entries_query(steps, window=window, by="device", scope=scope),
    )
    for kind in ({"per": "day"}, {"by": "device"}):
        old, new = one_query_and_entries(shared_engine, steps, window, scope, **kind)
        assert new == old, kind


def test_demo_marts_equal_the_one_query_funnel(demo_project: Path) -> None:
    """The demo's funnel_daily_metrics and device_metrics (built from int_funnel_entries)
    hold exactly the one-query funnel's rows over the demo's events."""
    project = load_project(demo_project)
    steps = list(project.config.funnel_steps())
    window = parse_duration(project.config.metrics.funnel_window)
    scope = Scope(timezone=project.config.metrics.timezone)
    engine = open_readonly(demo_project)
    try:
        for mart, kind, key in (
            ("funnel_daily_metrics", {"per": "day"}, "event_date"),
            ("device_metrics", {"by": "device"}, "device"),
        ):
            old = funnel_mart_query(steps, window=window, scope=scope, **kind)
            columns = "step_no, step_name, n_users, conversion_from_start, "
            columns += "conversion_from_previous, avg_time_s, median_time_s"
            first = "period" if "per" in kind else "bucket"
            want = engine.fetch_all(
                q(f"SELECT {first}, {columns} FROM ({old.sql('duckdb')}) ORDER BY ALL")
            )
            got = engine.fetch_all(q(f"SELECT {key}, {columns} FROM marts.{mart} ORDER BY ALL"))
            assert got == want, mart
            assert len(got) > len(steps), mart  # several days / devices
    finally:
        engine.close()
