"""The scope every metrics query shares: bounds, filters, windows and calendar periods,
the SQL against Python's zoneinfo and calendar on every day of three years."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from productlens.engines import DuckDBEngine
from productlens.metrics.scope import (
    EventsSpec,
    Filter,
    MetricsInputError,
    Scope,
    local_ts,
    parse_bound,
    parse_duration,
    parse_where,
    period_floor,
    period_start,
    scoped_events,
)
from tests.conftest import q

LA = ZoneInfo("America/Los_Angeles")


def load(engine: DuckDBEngine, data: pa.Table) -> None:
    """A core.fct_events holding these columns only."""
    engine.execute(
        q(
            "CREATE OR REPLACE TABLE core.fct_events (event_ts TIMESTAMP, event_type VARCHAR, "
            "device VARCHAR, properties VARCHAR)"
        )
    )
    engine.append_arrow("core", "fct_events", data)


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2026-03-08", False, datetime(2026, 3, 8, 8)),  # PST midnight
        ("2026-03-08", True, datetime(2026, 3, 9, 7)),  # next midnight is PDT
        ("2026-11-01", True, datetime(2026, 11, 2, 8)),  # the 25-hour day
        ("2026-03-08T10:00", False, datetime(2026, 3, 8, 17)),  # naive: local
        ("2026-03-08T10:00", True, datetime(2026, 3, 8, 17, 0, 0, 1)),  # inclusive
        ("2026-03-08T10:00:00+02:00", False, datetime(2026, 3, 8, 8)),  # offset wins
        ("2026-03-08T10:00:00Z", False, datetime(2026, 3, 8, 10)),
    ],
)
def test_bounds_are_utc_instants(text: str, end: bool, expected: datetime) -> None:
    assert parse_bound(text, LA, end=end) == expected


def test_bad_options_are_refused_with_the_option_named() -> None:
    with pytest.raises(MetricsInputError, match="--from '3rd of May'"):
        Scope.parse(date_from="3rd of May")
    with pytest.raises(MetricsInputError, match="before --from"):
        Scope.parse(date_from="2026-03-02", date_to="2026-03-01")
    with pytest.raises(MetricsInputError, match="unknown time zone 'Mars/Olympus'"):
        Scope.parse(timezone="Mars/Olympus")
    with pytest.raises(MetricsInputError, match="--where 'device'"):
        parse_where(["device"])
    for window in ("0d", "7", "d", "7y", "-1d", "1.5h"):
        with pytest.raises(MetricsInputError, match="window"):
            parse_duration(window)


def test_windows_and_filters_parse() -> None:
    units = {"30s": 30, "5m": 300, "2h": 7200, "7d": 604800, "2w": 1209600, "1mo": 2592000}
    for text, seconds in units.items():
        assert parse_duration(text) == timedelta(seconds=seconds)
    # The first '=' splits; values keep their spaces, quotes and further '='.
    assert parse_where(["plan=pro,team", "q=a=b", "note= it's; $x "]) == (
        Filter("plan", ("pro", "team")),
        Filter("q", ("a=b",)),
        Filter("note", (" it's; $x ",)),
    )


@pytest.mark.parametrize("zone", ["UTC", "America/Los_Angeles", "Asia/Kathmandu"])
@pytest.mark.parametrize("week_start", ["monday", "sunday"])
def test_sql_periods_match_python_calendar(
    engine: DuckDBEngine, zone: str, week_start: str
) -> None:
    # An instant every 7 hours for three years crosses every DST change, month end and
    # year end, at every hour of the local day.
    instants = [datetime(2025, 1, 1) + timedelta(hours=7 * i) for i in range(3 * 365 * 24 // 7)]
    load(
        engine,
        pa.table(
            {
                "event_ts": pa.array(instants, pa.timestamp("us")),
                "event_type": ["x"] * len(instants),
            }
        ),
    )
    scope = Scope(timezone=zone, week_start=week_start)  # type: ignore[arg-type]
    extra = {g: period_start(scope, g, local_ts(scope)) for g in ("day", "week", "month")}
    query = scoped_events(scope, EventsSpec(columns=("event_ts",), extra=extra))
    rows = engine.fetch_all(query.order_by("event_ts"))
    assert len(rows) == len(instants)
    for ts, day, week, month in rows:
        local = ts.replace(tzinfo=UTC).astimezone(ZoneInfo(zone)).date()
        assert day == local, ts
        assert week == period_floor(scope, "week", local), ts
        assert month == period_floor(scope, "month", local), ts
        assert week.weekday() == (0 if week_start == "monday" else 6)


def test_range_and_filters_select_the_events(engine: DuckDBEngine) -> None:
    load(
        engine,
        pa.table(
            {
                "event_ts": pa.array(
                    [datetime(2026, 3, 8, 7, 59), datetime(2026, 3, 8, 8),
                     datetime(2026, 3, 9, 6, 59), datetime(2026, 3, 9, 7),
                     datetime(2026, 3, 8, 12)],
                    pa.timestamp("us"),
                ),
                "event_type": ["a", "b", "c", "d", "e"],
                "device": ["ios", "ios", "web", "ios", "ios"],
                "properties": ['{"plan": 0}', '{"plan": "0"}', '{"plan": 0}', None,
                               '{"plan": "it\'s; drop"}'],
            }
        ),
    )  # fmt: skip
    scope = Scope.parse(
        timezone="America/Los_Angeles", date_from="2026-03-08", date_to="2026-03-08",
        where=["plan=0,it's; drop"],
    )  # fmt: skip
    query = scoped_events(scope, EventsSpec(columns=("event_type",)))
    # a: 23:59 the day before; d: the next local day; c passes (a number is its text).
    assert sorted(r[0] for r in engine.fetch_all(query)) == ["b", "c", "e"]
    scope = Scope.parse(where=["device=web", "plan=0"])
    query = scoped_events(scope, EventsSpec(columns=("event_type",)))
    assert engine.fetch_all(query) == [("c",)]


@pytest.mark.parametrize(
    ("value", "pct", "shown"),
    [
        (None, False, "-"),
        (1234567, False, "1,234,567"),
        (12345.678, False, "12,346"),
        (-2500000.4, False, "-2,500,000"),
        (999.96, False, "1,000"),
        (41.3125, False, "41.31"),
        (0.000123456, False, "0.0001235"),
        (0.4903, True, "49.0%"),
        (True, False, "true"),
    ],
)
def test_table_cells_are_readable(value: object, pct: bool, shown: str) -> None:
    from productlens.metrics.cli import fmt

    assert fmt(value, pct=pct) == shown
