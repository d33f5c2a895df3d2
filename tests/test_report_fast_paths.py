"""The report's reads from marts (DAU/WAU/MAU from `active_users_daily` over all the
data and over a range inside it, weekly lifecycle from `user_lifecycle` over all the
data) equal the live queries they replace, on both demo worlds; where the marts cannot
answer (device or country filters, a range cutting a week, another week start) the
reader runs the live query."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest

from productlens.config import load_project
from productlens.engines.duckdb import DuckDBEngine
from productlens.metrics.lifecycle import lifecycle
from productlens.report.sections import (
    Filters,
    Settings,
    _activity,
    _activity_from_mart,
    _lifecycle_from_mart,
    _span,
    read_retention,
)
from tests.conftest import open_readonly, q


@pytest.fixture(params=["demo_project", "saas_demo_project"])
def world(request: pytest.FixtureRequest) -> Iterator[tuple[DuckDBEngine, Settings]]:
    root: Path = request.getfixturevalue(request.param)
    engine = open_readonly(root)
    try:
        yield engine, Settings.from_config(load_project(root).config)
    finally:
        engine.close()


def ranges(engine: DuckDBEngine) -> list[Filters]:
    days = _span(engine, Filters())
    assert days is not None
    first, last = days
    # All the data; a range starting mid-week whose trailing windows reach before it.
    return [Filters(), Filters(first + timedelta(days=9), last - timedelta(days=2))]


def test_activity_from_the_mart_is_the_live_query(world: tuple[DuckDBEngine, Settings]) -> None:
    engine, settings = world
    assert settings.timezone == "UTC"
    for filters in ranges(engine):
        span = _span(engine, filters)
        assert span is not None
        live = _activity(engine, filters.scope(settings))
        mart = _activity_from_mart(engine, span)
        assert mart is not None
        assert live.num_rows == (span[1] - span[0]).days + 1
        assert mart.equals(live), filters
        assert read_retention(engine, filters, settings).activity.equals(live)


def test_lifecycle_from_the_mart_is_the_live_query(world: tuple[DuckDBEngine, Settings]) -> None:
    engine, settings = world
    span = _span(engine, Filters())
    assert span is not None
    live = lifecycle(engine, Filters().scope(settings), "week").periods
    assert sum(p.new for p in live) > 0
    assert _lifecycle_from_mart(engine, span, settings.week_start) == live
    assert read_retention(engine, Filters(), settings).lifecycle == live
    # A range cutting a week counts only its days there: the live query answers.
    part = ranges(engine)[1]
    cut = lifecycle(engine, part.scope(settings), "week").periods
    assert read_retention(engine, part, settings).lifecycle == cut


def test_where_the_marts_cannot_answer_the_live_query_runs(
    world: tuple[DuckDBEngine, Settings],
) -> None:
    engine, settings = world
    span = _span(engine, Filters())
    assert span is not None
    # The mart's weeks start on Monday: a Sunday week is not in it.
    assert _lifecycle_from_mart(engine, span, "sunday") is None
    sunday = replace(settings, week_start="sunday")
    got = read_retention(engine, Filters(), sunday)
    assert got.lifecycle == lifecycle(engine, Filters().scope(sunday), "week").periods
    assert all(date.fromisoformat(p.start).weekday() == 6 for p in got.lifecycle)
    # One device: the marts count every device; the live queries count that one.
    device = str(engine.fetch_all(q("select min(device) from core.fct_events"))[0][0])
    one = Filters(devices=(device,))
    got = read_retention(engine, one, settings)
    assert got.activity.equals(_activity(engine, one.scope(settings)))
    assert got.lifecycle == lifecycle(engine, one.scope(settings), "week").periods
    assert not got.activity.equals(read_retention(engine, Filters(), settings).activity)
