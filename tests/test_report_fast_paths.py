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

from productlens.app import open_engine
from productlens.config import load_project
from productlens.engines.duckdb import DuckDBEngine
from productlens.metrics.funnel import StepResult, funnel
from productlens.metrics.lifecycle import lifecycle
from productlens.metrics.scope import MetricsInputError
from productlens.report.sections import (
    Filters,
    Settings,
    _activity,
    _activity_from_mart,
    _lifecycle_from_mart,
    _midnight,
    _span,
    read_funnel,
    read_funnel_counts,
    read_overview,
    read_retention,
)
from tests.conftest import q


@pytest.fixture(params=["demo_project", "saas_demo_project"])
def world(request: pytest.FixtureRequest) -> Iterator[tuple[DuckDBEngine, Settings]]:
    root: Path = request.getfixturevalue(request.param)
    project = load_project(root)
    engine = open_engine(project, read_only=True)
    assert isinstance(engine, DuckDBEngine)
    try:
        # Opening the warehouse adopted the demo's world (its funnel steps) into the project.
        yield engine, Settings.from_config(project.config)
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


def counts(steps: tuple[StepResult, ...]) -> list[tuple[str, int, float | None, float | None, int]]:
    """What a step shows besides its times."""
    return [
        (s.event, s.count, s.conversion_from_previous, s.conversion_from_start, s.drop_off)
        for s in steps
    ]


def test_funnel_counts_from_the_marts_are_the_live_funnel(
    world: tuple[DuckDBEngine, Settings],
) -> None:
    engine, settings = world
    live = read_funnel(engine, Filters(), settings)
    mart = read_funnel_counts(engine, Filters(), settings)
    assert live is not None
    assert mart is not None
    assert live.steps[-1].count > 0
    assert len(live.by_device) >= 2
    assert counts(mart.steps) == counts(live.steps)
    assert all(s.avg_time_s is None and s.median_time_s is None for s in mart.steps)
    assert mart.by_device.keys() == live.by_device.keys()
    for device, steps in live.by_device.items():
        assert counts(mart.by_device[device]) == counts(steps), device
    assert mart.daily.equals(live.daily)
    assert mart.window == live.window
    # Filters or other steps: the marts cannot answer, the caller runs the live funnel.
    device = str(engine.fetch_all(q("select min(device) from core.fct_events"))[0][0])
    span = _span(engine, Filters())
    assert span is not None
    assert read_funnel_counts(engine, Filters(devices=(device,)), settings) is None
    assert read_funnel_counts(engine, Filters(span[0] + timedelta(days=1)), settings) is None
    shorter = replace(settings, funnel_steps=(live.steps[0].event, live.steps[1].event))
    assert read_funnel_counts(engine, Filters(), shorter) is None


def test_a_split_funnel_is_one_funnel_per_piece(world: tuple[DuckDBEngine, Settings]) -> None:
    """`funnel(split_at=...)`: each piece's funnel (counts and times) is the funnel of
    its stretch of time alone; the overview's conversion KPIs are those of its periods."""
    engine, settings = world
    span = _span(engine, Filters())
    assert span is not None
    first, last = span
    steps = tuple(s.event for s in read_funnel(engine, Filters(), settings).steps)
    window = settings.funnel_window
    days = [first, first + timedelta(days=5), last - timedelta(days=3), last]
    cuts = days[1:3]
    whole = Filters(first, last).scope(settings)
    split = funnel(
        engine, steps, scope=whole, window=window, split_at=[_midnight(d, "UTC") for d in cuts]
    )
    pieces = [
        (days[0], days[1] - timedelta(days=1)),
        (days[1], days[2] - timedelta(days=1)),
        (days[2], days[3]),
    ]
    alone = [
        funnel(engine, steps, scope=Filters(a, b).scope(settings), window=window).steps
        for a, b in pieces
    ]
    assert all(s[-1].count > 0 for s in alone)
    assert [split.breakdown[str(i)] for i in range(3)] == alone
    assert [s.count for s in split.steps] == [
        sum(p[k].count for p in alone) for k in range(len(steps))
    ]
    with pytest.raises(MetricsInputError):
        funnel(engine, steps, by="device", split_at=[_midnight(cuts[0], "UTC")])
    # The overview's conversion, now and before, in one query.
    for filters in ranges(engine):
        overview = read_overview(engine, filters, settings)
        assert overview is not None
        kpi = overview.kpi("conversion")
        assert kpi is not None
        expected = [
            funnel(engine, steps, scope=Filters(a, b).scope(settings), window=window)
            .steps[-1]
            .conversion_from_start
            for a, b in (
                (overview.start, overview.end),
                (overview.previous_start, overview.previous_end),
            )
        ]
        assert [kpi.current, kpi.previous] == expected
