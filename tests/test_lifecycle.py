"""Lifecycle (new, returning, resurrecting, dormant) against hand-worked cases and a
brute-force reference in plain Python."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from productlens.engines import DuckDBEngine
from productlens.metrics.lifecycle import lifecycle, lifecycle_query
from productlens.metrics.scope import Grain, Scope
from tests.metrics_events import HOSTILE, Event, assert_portable, load, local_date, text, week_floor

LA = "America/Los_Angeles"


def floor(day: date, grain: str, week_start: str) -> date:
    if grain == "day":
        return day
    if grain == "week":
        return week_floor(day, week_start)
    return day.replace(day=1)


def step(start: date, grain: str, n: int) -> date:
    if grain == "day":
        return start + timedelta(n)
    if grain == "week":
        return start + timedelta(7 * n)
    months = start.year * 12 + start.month - 1 + n
    return date(months // 12, months % 12 + 1, 1)


def reference(
    events: list[Event],
    *,
    period: str = "week",
    timezone: str = "UTC",
    week_start: str = "monday",
    date_from: date | None = None,
    date_to: date | None = None,
    where: dict[str, set[str]] | None = None,
) -> dict[str, Any]:
    active: dict[str, set[date]] = defaultdict(set)
    for e in events:
        day = local_date(e.ts, timezone)
        if date_to is not None and day > date_to:
            continue
        if any(text(e.properties.get(k)) not in vs for k, vs in (where or {}).items()):
            continue
        active[e.user_id].add(floor(day, period, week_start))
    every = {p for ps in active.values() for p in ps}
    lo = floor(date_from, period, week_start) if date_from else (min(every) if every else None)
    hi = floor(date_to, period, week_start) if date_to else (max(every) if every else None)
    periods = []
    current = lo
    while current is not None and hi is not None and current <= hi:
        counts = dict.fromkeys(("new", "returning", "resurrecting", "dormant"), 0)
        previous = step(current, period, -1)
        for ps in active.values():
            if current in ps:
                if min(ps) == current:
                    counts["new"] += 1
                elif previous in ps:
                    counts["returning"] += 1
                else:
                    counts["resurrecting"] += 1
            elif previous in ps:
                counts["dormant"] += 1
        periods.append({"start": current.isoformat(), **counts})
        current = step(current, period, 1)
    return {"period": period, "periods": periods}


def run(
    engine: DuckDBEngine,
    *,
    period: str = "week",
    timezone: str = "UTC",
    week_start: str = "monday",
    date_from: date | None = None,
    date_to: date | None = None,
    where: dict[str, set[str]] | None = None,
) -> dict[str, Any]:
    scope = Scope.parse(
        timezone=timezone,
        week_start=week_start,  # type: ignore[arg-type]
        date_from=date_from.isoformat() if date_from else None,
        date_to=date_to.isoformat() if date_to else None,
        where=[f"{k}={','.join(sorted(v))}" for k, v in (where or {}).items()],
    )
    grain: Grain = period  # type: ignore[assignment]
    return lifecycle(engine, scope, grain).to_dict()


def on(user: str, *days: date, **props: Any) -> list[Event]:
    return [Event(user, "view", datetime.combine(d, datetime.min.time()).replace(hour=12),
                  properties=props) for d in days]  # fmt: skip


W1 = date(2026, 3, 2)  # a Monday; weeks W1 .. W1 + 4 weeks
W = [W1 + timedelta(7 * k) for k in range(5)]


def test_weekly_statuses_by_hand(engine: DuckDBEngine) -> None:
    # a: weeks 0, 1, 3  b: weeks 0, 2  c: week 2 only
    load(engine, on("a", W[0], W[1] + timedelta(3), W[3]) + on("b", W[0], W[2]) + on("c", W[2]))
    assert [tuple(p.values()) for p in run(engine)["periods"]] == [
        # start, new, returning, resurrecting, dormant
        ("2026-03-02", 2, 0, 0, 0),  # a and b appear
        ("2026-03-09", 0, 1, 0, 1),  # a returns, b goes quiet
        ("2026-03-16", 1, 0, 1, 1),  # c is new, b resurrects, a goes quiet
        ("2026-03-23", 0, 0, 1, 2),  # a resurrects; b and c go quiet
    ]
    # The range reports its weeks; week 1's statuses still know week 0.
    got = run(engine, date_from=W[1], date_to=W[1] + timedelta(6))["periods"]
    assert got == [
        {"start": "2026-03-09", "new": 0, "returning": 1, "resurrecting": 0, "dormant": 1}
    ]


def test_monthly_and_daily_periods(engine: DuckDBEngine) -> None:
    # a: 31 Jan, 1 Feb, 2 Apr. Months: Jan new, Feb returning, Mar dormant, Apr resurrecting.
    load(engine, on("a", date(2026, 1, 31), date(2026, 2, 1), date(2026, 4, 2)))
    months = run(engine, period="month")["periods"]
    assert [(p["start"], p["new"], p["returning"], p["resurrecting"], p["dormant"])
            for p in months] == [
        ("2026-01-01", 1, 0, 0, 0), ("2026-02-01", 0, 1, 0, 0),
        ("2026-03-01", 0, 0, 0, 1), ("2026-04-01", 0, 0, 1, 0),
    ]  # fmt: skip
    days = run(engine, period="day", date_to=date(2026, 2, 3))["periods"]
    assert [(p["start"], p["returning"], p["dormant"]) for p in days] == [
        ("2026-01-31", 0, 0), ("2026-02-01", 1, 0), ("2026-02-02", 0, 1), ("2026-02-03", 0, 0),
    ]  # fmt: skip


def test_a_week_in_a_zone_with_daylight_saving(engine: DuckDBEngine) -> None:
    # 9 March 2026 06:30 UTC is Sunday 8 March 23:30 in Los Angeles; 16 March 07:30 UTC
    # is Monday 16 March 00:30 there. Monday weeks in LA: 2 March (new), 9 March
    # (dormant), 16 March (resurrecting); in UTC: 9 March (new), 16 March (returning).
    load(engine, [Event("a", "view", datetime(2026, 3, 9, 6, 30)),
                  Event("a", "view", datetime(2026, 3, 16, 7, 30))])  # fmt: skip
    la = [
        (p["start"], p["new"], p["resurrecting"], p["dormant"])
        for p in run(engine, timezone=LA)["periods"]
    ]
    assert la == [("2026-03-02", 1, 0, 0), ("2026-03-09", 0, 0, 1), ("2026-03-16", 0, 1, 0)]
    utc = [(p["start"], p["new"], p["returning"]) for p in run(engine)["periods"]]
    assert utc == [("2026-03-09", 1, 0), ("2026-03-16", 0, 1)]
    # Sunday weeks in LA: 8 March holds both (Sun 8, and Mon 16 is in the 15 March week).
    sunday = run(engine, timezone=LA, week_start="sunday")["periods"]
    assert [(p["start"], p["new"], p["returning"]) for p in sunday] == [
        ("2026-03-08", 1, 0), ("2026-03-15", 0, 1),
    ]  # fmt: skip


def test_a_range_without_activity_reports_empty_periods(engine: DuckDBEngine) -> None:
    load(engine, [])
    got = run(engine, date_from=W[0], date_to=W[1])  # Monday to Monday: two weeks
    assert got["periods"] == [
        {"start": start, "new": 0, "returning": 0, "resurrecting": 0, "dormant": 0}
        for start in ("2026-03-02", "2026-03-09")
    ]


def test_hostile_filter_values_are_data(engine: DuckDBEngine) -> None:
    load(engine, [e for i, v in enumerate(HOSTILE) for e in on(f"u{i}", W[0], plan=v)])
    for value in HOSTILE:
        if value and "," not in value:
            got = run(engine, where={"plan": {value}})["periods"]
            assert [p["new"] for p in got] == [1], value


def test_every_query_shape_transpiles() -> None:
    scope = Scope.parse(timezone=LA, week_start="sunday", date_from="2026-03-01", where=["p=$'"])
    for grain in ("day", "week", "month"):
        for s in (Scope(), scope):
            for query in (lifecycle_query(s, grain), lifecycle_query(s, grain, "dim_date")):  # type: ignore[arg-type]
                assert_portable(query)


START = date(2026, 1, 20)
events_strategy = st.lists(
    st.builds(
        Event,
        user_id=st.sampled_from(["u1", "u2", "u3", "u4", "u5"]),
        event_type=st.just("view"),
        ts=st.integers(0, 100 * 6).map(
            lambda q: datetime.combine(START, datetime.min.time()) + timedelta(hours=4 * q)
        ),
        properties=st.fixed_dictionaries({}, optional={"plan": st.sampled_from(["a", "it's"])}),
    ),
    max_size=30,
)
optional_day = st.one_of(st.none(), st.integers(0, 100).map(lambda n: START + timedelta(n)))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=events_strategy,
    period=st.sampled_from(["day", "week", "month"]),
    timezone=st.sampled_from(["UTC", LA]),
    week_start=st.sampled_from(["monday", "sunday"]),
    bounds=st.tuples(optional_day, optional_day),
    where=st.sampled_from([None, {"plan": {"it's"}}]),
)
def test_matches_the_brute_force_reference(
    engine: DuckDBEngine,
    events: list[Event],
    period: str,
    timezone: str,
    week_start: str,
    bounds: tuple[date | None, date | None],
    where: dict[str, set[str]] | None,
) -> None:
    date_from, date_to = bounds
    if date_from is not None and date_to is not None and date_to < date_from:
        date_from, date_to = date_to, date_from
    load(engine, events)
    options: dict[str, Any] = {
        "period": period, "timezone": timezone, "week_start": week_start,
        "date_from": date_from, "date_to": date_to, "where": where,
    }  # fmt: skip
    assert run(engine, **options) == reference(events, **options)
