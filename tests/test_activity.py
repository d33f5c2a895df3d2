"""DAU/WAU/MAU, stickiness and active days per week/month against hand-worked cases and a
brute-force reference in plain Python."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from productlens.engines import DuckDBEngine
from productlens.metrics.activity import active_days_query, activity, activity_query
from productlens.metrics.scope import Scope
from tests.metrics_events import HOSTILE, Event, assert_portable, load, local_date, text, week_floor

LA = "America/Los_Angeles"


def day_events(user: str, *days: date, hour: int = 12) -> list[Event]:
    return [
        Event(user, "view", datetime.combine(d, datetime.min.time()).replace(hour=hour))
        for d in days
    ]


def reference(
    events: list[Event],
    *,
    timezone: str = "UTC",
    week_start: str = "monday",
    date_from: date | None = None,
    date_to: date | None = None,
    where: dict[str, set[str]] | None = None,
    by: str | None = None,
) -> dict[str, Any]:
    """The activity JSON by brute force: local days, trailing windows by set unions."""

    def value(e: Event, key: str) -> str:
        return text(
            getattr(e, key) if key in ("device", "event_type", "user_id") else e.properties.get(key)
        )

    active: dict[str, dict[str, set[date]]] = defaultdict(lambda: defaultdict(set))
    for e in events:
        day = local_date(e.ts, timezone)
        if date_from is not None and day < date_from - timedelta(days=29):
            continue
        if date_to is not None and day > date_to:
            continue
        if any(value(e, k) not in vs for k, vs in (where or {}).items()):
            continue
        active[value(e, by) if by else ""][e.user_id].add(day)
    every_day = {d for users in active.values() for days in users.values() for d in days}
    lo = date_from or (min(every_day) if every_day else None)
    hi = date_to or (max(every_day) if every_day else None)
    report = (
        [] if lo is None or hi is None else [lo + timedelta(n) for n in range((hi - lo).days + 1)]
    )

    def series(users: dict[str, set[date]]) -> dict[str, Any]:
        def n_active(day: date, window: int) -> int:
            return sum(
                any(day - timedelta(window - 1) <= d <= day for d in ds) for ds in users.values()
            )

        days = []
        for d in report:
            dau, wau, mau = n_active(d, 1), n_active(d, 7), n_active(d, 30)
            days.append(
                {"date": d.isoformat(), "dau": dau, "wau": wau, "mau": mau,
                 "stickiness": dau / mau if mau else None}
            )  # fmt: skip
        out: dict[str, Any] = {"days": days}
        floors = {
            "weeks": (lambda d: week_floor(d, week_start), 7),
            "months": (lambda d: d.replace(day=1), 31),
        }
        for name, (floor, size) in floors.items():
            periods: dict[date, int] = defaultdict(int)
            for d in report:
                periods[floor(d)] += 1
            rows = []
            for start, n_days in sorted(periods.items()):
                counts = [0] * size
                for ds in users.values():
                    k = sum(1 for d in ds if floor(d) == start and lo <= d <= hi)  # type: ignore[operator]
                    if k:
                        counts[k - 1] += 1
                rows.append(
                    {"start": start.isoformat(), "days_in_range": n_days, "users": sum(counts),
                     "counts": counts}
                )  # fmt: skip
            out[name] = rows
        return out

    everyone: dict[str, set[date]] = defaultdict(set)
    for users in active.values():
        for user, ds in users.items():
            everyone[user] |= ds
    result = series(everyone)
    if by is not None:
        # Every value seen in the events read (the lookback included), when any day is.
        result["breakdown"] = {seg: series(users) for seg, users in active.items() if report}
    return result


def run(engine: DuckDBEngine, *, date_from: date | None = None, date_to: date | None = None,
        where: dict[str, set[str]] | None = None, by: str | None = None,
        timezone: str = "UTC", week_start: str = "monday") -> dict[str, Any]:  # fmt: skip
    scope = Scope.parse(
        timezone=timezone,
        week_start=week_start,  # type: ignore[arg-type]
        date_from=date_from.isoformat() if date_from else None,
        date_to=date_to.isoformat() if date_to else None,
        where=[f"{k}={','.join(sorted(v))}" for k, v in (where or {}).items()],
    )
    return activity(engine, scope, by).to_dict()


D = date(2026, 3, 2)  # a Monday


def test_trailing_windows_by_hand(engine: DuckDBEngine) -> None:
    # u1 on 2, 3, 6 and 20 March; u2 on 3 and 12 March.
    load(engine, day_events("u1", D, D + timedelta(1), D + timedelta(4), D + timedelta(18))
         + day_events("u2", D + timedelta(1), D + timedelta(10)))  # fmt: skip
    days = {d["date"]: (d["dau"], d["wau"], d["mau"], d["stickiness"]) for d in run(engine)["days"]}
    assert len(days) == 19  # 2..20 March, idle days included
    assert days["2026-03-03"] == (2, 2, 2, 1.0)  # both users
    assert days["2026-03-09"] == (0, 2, 2, 0.0)  # 3..9 March holds u1 (3, 6) and u2 (3)
    assert days["2026-03-10"] == (0, 1, 2, 0.0)  # u2's 3 March has left the week
    assert days["2026-03-12"] == (1, 2, 2, 0.5)  # u2 back; u1's 6 March still in the week
    assert days["2026-03-13"] == (0, 1, 2, 0.0)  # u1's 6 March left on the 13th
    assert days["2026-03-20"] == (1, 1, 2, 0.5)  # u2 last seen on the 12th: not in 14..20


def test_a_range_reports_its_days_with_complete_windows(engine: DuckDBEngine) -> None:
    # u1 active 30 days before the range's first day, u2 29 days before: only u2 is in
    # the first day's MAU; the range reports exactly its days, even after the last event.
    first = date(2026, 4, 10)
    load(engine, day_events("u1", first - timedelta(30)) + day_events("u2", first - timedelta(29)))
    got = run(engine, date_from=first, date_to=first + timedelta(2))
    assert [(d["date"], d["dau"], d["wau"], d["mau"]) for d in got["days"]] == [
        ("2026-04-10", 0, 0, 1),
        ("2026-04-11", 0, 0, 0),
        ("2026-04-12", 0, 0, 0),
    ]
    assert got["weeks"] == [
        {"start": "2026-04-06", "days_in_range": 3, "users": 0, "counts": [0] * 7}
    ]


def test_local_days_in_a_zone_with_daylight_saving(engine: DuckDBEngine) -> None:
    # 9 March 2026 06:59 UTC is 23:59 on 8 March in Los Angeles (PDT since 8 March 02:00);
    # 07:00 UTC is midnight of 9 March.
    load(engine, [Event("a", "view", datetime(2026, 3, 9, 6, 59)),
                  Event("b", "view", datetime(2026, 3, 9, 7, 0))])  # fmt: skip
    utc = run(engine)["days"]
    assert [(d["date"], d["dau"]) for d in utc] == [("2026-03-09", 2)]
    local = run(engine, timezone=LA)["days"]
    assert [(d["date"], d["dau"], d["wau"]) for d in local] == [
        ("2026-03-08", 1, 1),
        ("2026-03-09", 1, 2),
    ]


@pytest.mark.parametrize(
    ("week_start", "expected"),
    [
        # Monday weeks: 2-8 March holds Sat 7 and Sun 8 (2 days), 9-15 March Mon 9 (1 day).
        ("monday", [("2026-03-02", 2, [0, 1, 0, 0, 0, 0, 0]), ("2026-03-09", 1, [1] + [0] * 6)]),
        # Sunday weeks: 1-7 March holds Sat 7 (1 day), 8-14 March Sun 8 and Mon 9 (2 days).
        ("sunday", [("2026-03-01", 1, [1] + [0] * 6), ("2026-03-08", 2, [0, 1, 0, 0, 0, 0, 0])]),
    ],
)
def test_active_days_per_week_follow_the_week_start(
    engine: DuckDBEngine, week_start: str, expected: list[tuple[str, int, list[int]]]
) -> None:
    load(engine, day_events("u1", date(2026, 3, 7), date(2026, 3, 8), date(2026, 3, 9)))
    got = run(engine, week_start=week_start)
    assert [(w["start"], w["days_in_range"], w["counts"]) for w in got["weeks"]] == expected
    # One month, three days in range, one user active on 3 of them.
    assert got["months"] == [
        {"start": "2026-03-01", "days_in_range": 3, "users": 1, "counts": [0, 0, 1] + [0] * 28}
    ]


def test_breakdown_counts_a_user_in_each_value_of_the_day(engine: DuckDBEngine) -> None:
    # u1 uses web and ios on 2 March; u2 only ios; a quote-and-keyword device is a value.
    load(engine, [
        Event("u1", "view", datetime(2026, 3, 2, 9), device="web"),
        Event("u1", "view", datetime(2026, 3, 2, 10), device="ios"),
        Event("u2", "view", datetime(2026, 3, 2, 11), device="ios"),
        Event("u3", "view", datetime(2026, 3, 2, 12), device="it's; DROP"),
        Event("u4", "view", datetime(2026, 3, 2, 12), device=None),
    ])  # fmt: skip
    got = run(engine, by="device")
    assert got["days"][0]["dau"] == 4
    assert {k: v["days"][0]["dau"] for k, v in got["breakdown"].items()} == {
        "web": 1,
        "ios": 2,
        "it's; DROP": 1,
        "": 1,
    }


def test_hostile_property_values_are_data(engine: DuckDBEngine) -> None:
    load(engine, [Event(f"u{i}", "view", datetime(2026, 3, 2, 9), properties={"plan": v})
                  for i, v in enumerate(HOSTILE)])  # fmt: skip
    for value in HOSTILE:
        if value == "" or "," in value:
            continue  # "" is no value to filter on; a comma separates values
        got = run(engine, where={"plan": {value}}, by="plan")
        assert got["days"][0]["dau"] == 1, value
        assert list(got["breakdown"]) == [value]


def test_every_query_shape_transpiles() -> None:
    scopes = [
        Scope(),
        Scope.parse(timezone=LA, week_start="sunday", date_from="2026-03-01",
                    date_to="2026-03-31", where=["plan=it's;$x"]),
    ]  # fmt: skip
    for scope in scopes:
        for by in (None, "device", "plan"):
            for query in (activity_query(scope, by), active_days_query(scope, by)):
                assert_portable(query)
    assert_portable(activity_query(Scope(), days_table="dim_date"))


DAYS = date(2026, 2, 20)  # the generated events span 20 Feb .. 20 April (DST on 8 March)
events_strategy = st.lists(
    st.builds(
        Event,
        user_id=st.sampled_from(["u1", "u2", "u3", "u4"]),
        event_type=st.just("view"),
        ts=st.integers(0, 60 * 24 * 4 - 1).map(
            lambda q: datetime.combine(DAYS, datetime.min.time()) + timedelta(minutes=15 * q)
        ),
        device=st.sampled_from(["web", "ios", None, "it's"]),
        properties=st.fixed_dictionaries(
            {}, optional={"plan": st.sampled_from(["a", "b;c", "$x"])}
        ),
    ),
    max_size=40,
)
optional_day = st.one_of(st.none(), st.integers(0, 60).map(lambda n: DAYS + timedelta(n)))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=events_strategy,
    timezone=st.sampled_from(["UTC", LA]),
    week_start=st.sampled_from(["monday", "sunday"]),
    bounds=st.tuples(optional_day, optional_day),
    by=st.sampled_from([None, "device", "plan"]),
    where=st.sampled_from([None, {"device": {"web", "it's"}}, {"plan": {"$x"}}]),
)
def test_matches_the_brute_force_reference(
    engine: DuckDBEngine,
    events: list[Event],
    timezone: str,
    week_start: str,
    bounds: tuple[date | None, date | None],
    by: str | None,
    where: dict[str, set[str]] | None,
) -> None:
    date_from, date_to = bounds
    if date_from is not None and date_to is not None and date_to < date_from:
        date_from, date_to = date_to, date_from
    load(engine, events)
    options: dict[str, Any] = {
        "timezone": timezone, "week_start": week_start, "date_from": date_from,
        "date_to": date_to, "where": where, "by": by,
    }  # fmt: skip
    expected = reference(events, **options)
    got = run(engine, **options)
    assert got == expected
