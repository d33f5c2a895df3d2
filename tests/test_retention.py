"""Retention: hand-worked cases (one per rule), a brute-force reference in plain Python,
property tests against it (ties, a DST zone, both week starts, every mode and filter),
portability of every query shape, and the CLI."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from productlens.config import load_project
from productlens.engines import DuckDBEngine
from productlens.metrics.retention import (
    Mode,
    RetentionSpec,
    cohort_query,
    last_event_query,
    retention,
)
from productlens.metrics.scope import Filter, Grain, MetricsInputError, Scope
from tests.conftest import q, run_cli, warehouse_engine


@dataclass(frozen=True)
class Ev:
    user: str
    type: str
    ts: datetime  # naive UTC
    device: str = "ios"
    props: dict[str, str] = field(default_factory=dict)


def ev(user: str, type_: str, ts: str, device: str = "ios", **props: str) -> Ev:
    return Ev(user, type_, datetime.fromisoformat(ts), device, props)


def load(
    engine: DuckDBEngine,
    events: list[Ev],
    users: dict[str, datetime | None],
    devices: dict[str, str | None] | None = None,
) -> None:
    """The events, and the users table: signup time and device (`devices`, else none)."""
    engine.execute(q("DROP TABLE IF EXISTS core.fct_events"))
    engine.execute(
        q(
            "CREATE TABLE core.fct_events (user_id VARCHAR, event_type VARCHAR, "
            "event_ts TIMESTAMP, device VARCHAR, properties VARCHAR)"
        )
    )
    engine.append_arrow(
        "core",
        "fct_events",
        pa.table(
            {
                "user_id": pa.array([e.user for e in events], pa.string()),
                "event_type": pa.array([e.type for e in events], pa.string()),
                "event_ts": pa.array([e.ts for e in events], pa.timestamp("us")),
                "device": pa.array([e.device for e in events], pa.string()),
                "properties": pa.array([json.dumps(e.props) for e in events], pa.string()),
            }
        ),
    )
    engine.execute(q("DROP TABLE IF EXISTS staging.stg_users"))
    engine.execute(
        q("CREATE TABLE staging.stg_users (user_id VARCHAR, signup_ts TIMESTAMP, device VARCHAR)")
    )
    device = devices or {}
    engine.append_arrow(
        "staging",
        "stg_users",
        pa.table(
            {
                "user_id": pa.array(list(users), pa.string()),
                "signup_ts": pa.array(list(users.values()), pa.timestamp("us")),
                "device": pa.array([device.get(u) for u in users], pa.string()),
            }
        ),
    )


# --- the brute-force reference: the module docstring of metrics/retention.py, in Python --


def _value(e: Ev, key: str) -> str | None:
    columns = {"user_id": e.user, "event_type": e.type, "device": e.device}
    return columns[key] if key in columns else e.props.get(key)


def _matches(e: Ev, filters: tuple[Filter, ...]) -> bool:
    return all(_value(e, f.key) in f.values for f in filters)


def _floor(day: date, grain: str, week_start: str) -> date:
    if grain == "day":
        return day
    if grain == "month":
        return day.replace(day=1)
    offset = day.weekday() if week_start == "monday" else (day.weekday() + 1) % 7
    return day - timedelta(days=offset)


def _next(start: date, grain: str) -> date:
    if grain == "day":
        return start + timedelta(days=1)
    if grain == "week":
        return start + timedelta(days=7)
    return (start + timedelta(days=32)).replace(day=1)


def reference(
    events: list[Ev],
    users: dict[str, datetime | None],
    *,
    start: str,
    return_event: str | None,
    zone: str = "UTC",
    week_start: str = "monday",
    date_from: date | None = None,
    date_to: date | None = None,
    where: tuple[Filter, ...] = (),
    period: str = "week",
    periods: int = 8,
    mode: str = "recurring",
    cumulative: bool = False,
    start_where: tuple[Filter, ...] = (),
    return_where: tuple[Filter, ...] = (),
    devices: dict[str, str | None] | None = None,
) -> list[dict[str, Any]]:
    tz = ZoneInfo(zone)

    def local_day(ts: datetime) -> date:
        return ts.replace(tzinfo=UTC).astimezone(tz).date()

    def period_of(ts: datetime) -> date:
        return _floor(local_day(ts), period, week_start)

    def in_range(e: Ev) -> bool:
        day = local_day(e.ts)
        return (date_from is None or day >= date_from) and (date_to is None or day <= date_to)

    scoped = [e for e in events if in_range(e) and _matches(e, where)]
    if date_to is not None:
        last = _floor(date_to, period, week_start)
    elif scoped:
        last = period_of(max(e.ts for e in scoped))
    else:
        return []
    starts = [last]
    while len(starts) < periods:  # walk back one period at a time
        day = starts[0] - timedelta(days=1)
        starts.insert(0, _floor(day, period, week_start))

    members: dict[date, set[str]] = {c: set() for c in starts}
    cohort_times = _cohort_times(events, scoped, users, start, mode, where, start_where)
    if start == "signup":
        # A --where on a users-table column (device) filters the person by their
        # users-table value; a user without a signup time has none and is left out.
        person = [f for f in where if f.key == "device"]
        device = devices or {}
        cohort_times = [
            (u, ts)
            for u, ts in cohort_times
            if not person
            or (users.get(u) is not None and all(device.get(u) in f.values for f in person))
        ]
    for user, ts in cohort_times:
        members.get(period_of(ts), set()).add(user)

    returned: dict[str, set[date]] = {}
    for e in scoped:
        if (return_event is None or e.type == return_event) and _matches(e, return_where):
            returned.setdefault(e.user, set()).add(period_of(e.ts))

    out = []
    for cohort in starts:
        counts: list[int | None] = [len(members[cohort])]
        p = cohort
        for _ in range(1, periods):
            p = _next(p, period)
            if p > last:
                counts.append(None)
                continue
            n = 0
            for user in members[cohort]:
                later = {r for r in returned.get(user, set()) if cohort < r <= last}
                n += (bool(later) and max(later) >= p) if cumulative else (p in later)
            counts.append(n)
        out.append({"start": cohort.isoformat(), "size": len(members[cohort]), "counts": counts})
    return out


def _cohort_times(
    events: list[Ev],
    scoped: list[Ev],
    users: dict[str, datetime | None],
    start: str,
    mode: str,
    where: tuple[Filter, ...],
    start_where: tuple[Filter, ...],
) -> list[tuple[str, datetime]]:
    """(user, time) pairs that put the user in the cohort of that time's period."""
    if start == "signup":
        first_seen: dict[str, datetime] = {}
        for e in events:  # all history, unfiltered
            first_seen[e.user] = min(e.ts, first_seen.get(e.user, e.ts))
        first_seen.update({u: ts for u, ts in users.items() if ts is not None})
        return list(first_seen.items())
    if mode == "first_time":
        first: dict[str, datetime] = {}
        for e in events:  # all history: no range
            if e.type == start and _matches(e, where) and _matches(e, start_where):
                first[e.user] = min(e.ts, first.get(e.user, e.ts))
        return list(first.items())
    return [(e.user, e.ts) for e in scoped if e.type == start and _matches(e, start_where)]


def run(
    engine: DuckDBEngine,
    *,
    zone: str = "UTC",
    week_start: str = "monday",
    date_from: date | None = None,
    date_to: date | None = None,
    where: tuple[Filter, ...] = (),
    **kwargs: Any,
) -> list[dict[str, Any]]:
    scope = Scope.parse(
        timezone=zone,
        week_start=week_start,  # type: ignore[arg-type]
        date_from=date_from.isoformat() if date_from else None,
        date_to=date_to.isoformat() if date_to else None,
    )
    scope = Scope(scope.timezone, scope.week_start, scope.start, scope.end, where)
    result: list[dict[str, Any]] = retention(engine, scope=scope, **kwargs).to_dict()["cohorts"]
    return result


# --- hand-worked cases: one per rule ------------------------------------------------------
# Monday weeks of June 2020: W1 = 06-01, W2 = 06-08, W3 = 06-15, W4 = 06-22.
BASE = [
    ev("u1", "s", "2020-06-01 10:00", plan="free"),  # W1
    ev("u1", "r", "2020-06-09 10:00"),  # W2
    ev("u1", "r", "2020-06-24 10:00", "android", plan="late"),  # W4
    ev("u2", "s", "2020-06-03 10:00", plan="pro"),  # W1
    ev("u2", "s", "2020-06-10 10:00", "android", plan="free"),  # W2
    ev("u2", "r", "2020-06-16 10:00"),  # W3
    ev("u3", "s", "2020-06-15 10:00", plan="pro"),  # W3
    ev("u3", "r", "2020-06-22 10:00"),  # W4
    ev("u4", "r", "2020-06-02 10:00"),  # W1, never starts
]
# u1 signs up on Sunday 31 May (week of 25 May), u2 and u5 (never active) in W1; u3 and
# u4 are unknown to the users table: first seen in W3 and W1.
BASE_USERS: dict[str, datetime | None] = {
    "u1": datetime(2020, 5, 31, 23, 30),
    "u2": datetime(2020, 6, 2, 8),
    "u5": datetime(2020, 6, 3),
}
# The users table's devices (at signup): u2 signed up on iOS though it starts once on Android.
BASE_DEVICES: dict[str, str | None] = {"u1": "android", "u2": "ios", "u5": "android"}
# LA is UTC-7 in June: 06-08 03:00 UTC is Sunday 06-07 20:00 there, 06-15 05:00 UTC is
# Sunday 06-14 22:00.
ZONE = [ev("u6", "s", "2020-06-08 03:00"), ev("u6", "r", "2020-06-15 05:00")]
# Months; in LA (UTC-7) m1's first return (05-31 18:00) and m2's return (06-30 17:00)
# fall in their start month.
MONTHS = [
    ev("m1", "s", "2020-05-31 23:00"),
    ev("m1", "r", "2020-06-01 01:00"),
    ev("m1", "r", "2020-07-15 12:00"),
    ev("m2", "s", "2020-06-30 00:00"),
    ev("m2", "r", "2020-07-01 00:00"),
]
ODD_START, ODD_RETURN, ODD_KEY, ODD_VALUE = "it's; DROP TABLE x; --", "select $1", "pl'an", "a'b;$"
ODD = [
    ev("w'1", ODD_START, "2020-06-01 10:00", **{ODD_KEY: ODD_VALUE}),
    ev("w'1", ODD_RETURN, "2020-06-08 10:00"),
    ev("w2", ODD_START, "2020-06-01 10:00", **{ODD_KEY: "other"}),
    ev("w2", ODD_RETURN, "2020-06-08 10:00"),
]
TO = date(2020, 6, 28)
SR: dict[str, Any] = {"start": "s", "return_event": "r"}


def plan(*values: str) -> tuple[Filter, ...]:
    return (Filter("plan", values),)


CASES: list[tuple[str, list[Ev], dict[str, Any], list[tuple[str, int, list[int | None]]]]] = [
    # W1 {u1,u2}: u1 back in W2 and W4, u2 in W3. W2 {u2}: back in W3. W3 {u3}: W4.
    # Columns past W4 (the week of --to) are not observed.
    (
        "recurring: a cohort per period with a start, column 0 the size",
        BASE,
        {**SR, "periods": 4, "date_to": TO},
        [
            ("2020-06-01", 2, [2, 1, 1, 1]),
            ("2020-06-08", 1, [1, 1, 0, None]),
            ("2020-06-15", 1, [1, 1, None, None]),
            ("2020-06-22", 0, [0, None, None, None]),
        ],
    ),
    # No --to: the last event (u1, 06-24) is in W4; the three cohorts W2..W4.
    (
        "without --to the cohorts end with the last event's period",
        BASE,
        {**SR, "periods": 3},
        [
            ("2020-06-08", 1, [1, 1, 0]),
            ("2020-06-15", 1, [1, 1, None]),
            ("2020-06-22", 0, [0, None, None]),
        ],
    ),
    # --to Tuesday 06-16: events up to then; W3 is the last period.
    (
        "--to inside a period ends the data there",
        BASE,
        {**SR, "periods": 3, "date_to": date(2020, 6, 16)},
        [
            ("2020-06-01", 2, [2, 1, 1]),
            ("2020-06-08", 1, [1, 1, None]),
            ("2020-06-15", 1, [1, None, None]),
        ],
    ),
    # u2's second start (W2) does not make a W2 cohort: its first start is in W1.
    (
        "first_time: the period of the first start event",
        BASE,
        {**SR, "periods": 4, "date_to": TO, "mode": "first_time"},
        [
            ("2020-06-01", 2, [2, 1, 1, 1]),
            ("2020-06-08", 0, [0, 0, 0, None]),
            ("2020-06-15", 1, [1, 1, None, None]),
            ("2020-06-22", 0, [0, None, None, None]),
        ],
    ),
    # --from 06-08: u1 and u2 started before it, so they are still W1's (all history).
    (
        "first_time looks at all history, not only the range",
        BASE,
        {**SR, "periods": 4, "date_to": TO, "date_from": date(2020, 6, 8), "mode": "first_time"},
        [
            ("2020-06-01", 2, [2, 1, 1, 1]),
            ("2020-06-08", 0, [0, 0, 0, None]),
            ("2020-06-15", 1, [1, 1, None, None]),
            ("2020-06-22", 0, [0, None, None, None]),
        ],
    ),
    # Recurring reads starts in range only: W1 is empty, u2's 06-10 start makes W2.
    (
        "recurring: --from limits the start events",
        BASE,
        {**SR, "periods": 4, "date_to": TO, "date_from": date(2020, 6, 8)},
        [
            ("2020-06-01", 0, [0, 0, 0, 0]),
            ("2020-06-08", 1, [1, 1, 0, None]),
            ("2020-06-15", 1, [1, 1, None, None]),
            ("2020-06-22", 0, [0, None, None, None]),
        ],
    ),
    # Any event returns: u2's W2 start counts as W1's return in column 1.
    (
        "no --return: any event is a return",
        BASE,
        {"start": "s", "return_event": None, "periods": 4, "date_to": TO},
        [
            ("2020-06-01", 2, [2, 2, 1, 1]),
            ("2020-06-08", 1, [1, 1, 0, None]),
            ("2020-06-15", 1, [1, 1, None, None]),
            ("2020-06-22", 0, [0, None, None, None]),
        ],
    ),
    # W1: u1's last return is W4 (columns 1-3), u2's W3 (columns 1-2).
    (
        "cumulative: counted in every period up to the last return",
        BASE,
        {**SR, "periods": 4, "date_to": TO, "cumulative": True},
        [
            ("2020-06-01", 2, [2, 2, 2, 1]),
            ("2020-06-08", 1, [1, 1, 0, None]),
            ("2020-06-15", 1, [1, 1, None, None]),
            ("2020-06-22", 0, [0, None, None, None]),
        ],
    ),
    # 05-25 {u1}: active W1, W2, W4. W1 {u2, u5, u4 (first seen 06-02)}: u2 in W2, W3.
    # W3 {u3 (first seen 06-15)}: active W4.
    (
        "signup cohorts; unknown users join the period they were first seen",
        BASE,
        {"start": "signup", "return_event": None, "periods": 5, "date_to": TO},
        [
            ("2020-05-25", 1, [1, 1, 1, 0, 1]),
            ("2020-06-01", 3, [3, 1, 1, 0, None]),
            ("2020-06-08", 0, [0, 0, 0, None, None]),
            ("2020-06-15", 1, [1, 1, None, None, None]),
            ("2020-06-22", 0, [0, None, None, None, None]),
        ],
    ),
    # device=android on signup cohorts filters the person by the users table's device:
    # u1 (05-25) and u5 (W1); not u2 (signed up on iOS, though with an Android event), nor
    # u3 and u4 (no signup, so no signup device). Returns are Android events: u1's in W4.
    (
        "signup cohorts: a users-table key filters the person, returns stay events",
        BASE,
        {
            "start": "signup",
            "return_event": None,
            "periods": 5,
            "date_to": TO,
            "where": (Filter("device", ("android",)),),
        },
        [
            ("2020-05-25", 1, [1, 0, 0, 0, 1]),
            ("2020-06-01", 1, [1, 0, 0, 0, None]),
            ("2020-06-08", 0, [0, 0, 0, None, None]),
            ("2020-06-15", 0, [0, 0, None, None, None]),
            ("2020-06-22", 0, [0, None, None, None, None]),
        ],
    ),
    # An event property key (plan) is not a users-table column: signup cohorts as without
    # it; returns only plan=late events: u1's W4 one.
    (
        "signup cohorts: an event property filters returns only",
        BASE,
        {
            "start": "signup",
            "return_event": None,
            "periods": 5,
            "date_to": TO,
            "where": plan("late"),
        },
        [
            ("2020-05-25", 1, [1, 0, 0, 0, 1]),
            ("2020-06-01", 3, [3, 0, 0, 0, None]),
            ("2020-06-08", 0, [0, 0, 0, None, None]),
            ("2020-06-15", 1, [1, 0, None, None, None]),
            ("2020-06-22", 0, [0, None, None, None, None]),
        ],
    ),
    # device=ios drops u2's W2 start and u1's W4 return.
    (
        "--where filters start and return events",
        BASE,
        {**SR, "periods": 4, "date_to": TO, "where": (Filter("device", ("ios",)),)},
        [
            ("2020-06-01", 2, [2, 1, 1, 0]),
            ("2020-06-08", 0, [0, 0, 0, None]),
            ("2020-06-15", 1, [1, 1, None, None]),
            ("2020-06-22", 0, [0, None, None, None]),
        ],
    ),
    # plan=pro starts: u2 in W1 (back in W3), u3 in W3 (back in W4).
    (
        "--start-where filters start events only",
        BASE,
        {**SR, "periods": 4, "date_to": TO, "start_where": plan("pro")},
        [
            ("2020-06-01", 1, [1, 0, 1, 0]),
            ("2020-06-08", 0, [0, 0, 0, None]),
            ("2020-06-15", 1, [1, 1, None, None]),
            ("2020-06-22", 0, [0, None, None, None]),
        ],
    ),
    # First plan=free start: u1 in W1; u2 in W2 (its earlier pro start is ignored).
    (
        "first_time ignores earlier start events that do not match",
        BASE,
        {**SR, "periods": 4, "date_to": TO, "start_where": plan("free"), "mode": "first_time"},
        [
            ("2020-06-01", 1, [1, 1, 0, 1]),
            ("2020-06-08", 1, [1, 1, 0, None]),
            ("2020-06-15", 0, [0, 0, None, None]),
            ("2020-06-22", 0, [0, None, None, None]),
        ],
    ),
    # Only u1's W4 return has plan=late; the sizes stay.
    (
        "--return-where filters return events only",
        BASE,
        {**SR, "periods": 4, "date_to": TO, "return_where": plan("late")},
        [
            ("2020-06-01", 2, [2, 0, 0, 1]),
            ("2020-06-08", 1, [1, 0, 0, None]),
            ("2020-06-15", 1, [1, 0, None, None]),
            ("2020-06-22", 0, [0, None, None, None]),
        ],
    ),
    (
        "weeks in the zone: LA Monday weeks",
        ZONE,
        {**SR, "periods": 2, "date_to": date(2020, 6, 14), "zone": "America/Los_Angeles"},
        [("2020-06-01", 1, [1, 1]), ("2020-06-08", 0, [0, None])],
    ),
    (
        "weeks in the zone: LA Sunday weeks",
        ZONE,
        {
            **SR,
            "periods": 2,
            "date_to": date(2020, 6, 14),
            "zone": "America/Los_Angeles",
            "week_start": "sunday",
        },
        [("2020-06-07", 1, [1, 1]), ("2020-06-14", 0, [0, None])],
    ),
    (
        "weeks in the zone: the same events in UTC",
        ZONE,
        {**SR, "periods": 2, "date_to": date(2020, 6, 15)},
        [("2020-06-08", 1, [1, 1]), ("2020-06-15", 0, [0, None])],
    ),
    (
        "months",
        MONTHS,
        {**SR, "periods": 3, "date_to": date(2020, 7, 31), "period": "month"},
        [
            ("2020-05-01", 1, [1, 1, 1]),
            ("2020-06-01", 1, [1, 1, None]),
            ("2020-07-01", 0, [0, None, None]),
        ],
    ),
    (
        "months in LA: a return in the start's local month is not a later period",
        MONTHS,
        {
            **SR,
            "periods": 3,
            "date_to": date(2020, 7, 31),
            "period": "month",
            "zone": "America/Los_Angeles",
        },
        [
            ("2020-05-01", 1, [1, 0, 1]),
            ("2020-06-01", 1, [1, 0, None]),
            ("2020-07-01", 0, [0, None, None]),
        ],
    ),
    # Days: m1 starts 05-31, returns 06-01 (column 1); m2 starts 06-30 and returns 07-01.
    (
        "days",
        MONTHS,
        {**SR, "periods": 2, "date_to": date(2020, 6, 1), "period": "day"},
        [("2020-05-31", 1, [1, 1]), ("2020-06-01", 0, [0, None])],
    ),
    # Names and values with quotes, semicolons, $ and SQL are data.
    (
        "odd names and values",
        ODD,
        {
            "start": ODD_START,
            "return_event": ODD_RETURN,
            "periods": 2,
            "date_to": date(2020, 6, 14),
            "start_where": (Filter(ODD_KEY, (ODD_VALUE,)),),
        },
        [("2020-06-01", 1, [1, 1]), ("2020-06-08", 0, [0, None])],
    ),
]


@pytest.mark.parametrize(("rule", "events", "kwargs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hand_worked(
    engine: DuckDBEngine,
    rule: str,
    events: list[Ev],
    kwargs: dict[str, Any],
    expected: list[tuple[str, int, list[int | None]]],
) -> None:
    users = BASE_USERS if events is BASE else {}
    devices = BASE_DEVICES if events is BASE else {}
    load(engine, events, users, devices)
    want = [{"start": s, "size": n, "counts": c} for s, n, c in expected]
    # the reference agrees by hand too
    assert reference(events, users, **kwargs, devices=devices) == want
    assert run(engine, **kwargs) == want


def test_signup_cohorts_filter_the_person_by_the_users_table_country(
    engine: DuckDBEngine,
) -> None:
    """country is a users-table column as device is: a `--where country=` on signup
    cohorts keeps the users who signed up there, whatever country their events say.
    Both sign up on 06-01; u2 signed up in the US and comes back from DE on 06-09."""
    engine.execute(
        q(
            "CREATE TABLE core.fct_events AS SELECT * FROM (VALUES "
            "('u1', 'r', TIMESTAMP '2020-06-09 10:00', 'ios', 'DE', '{}'), "
            "('u2', 'r', TIMESTAMP '2020-06-09 10:00', 'ios', 'DE', '{}')) "
            "t(user_id, event_type, event_ts, device, country, properties)"
        )
    )
    engine.execute(
        q(
            "CREATE TABLE staging.stg_users AS SELECT * FROM (VALUES "
            "('u1', TIMESTAMP '2020-06-01 08:00', 'ios', 'DE'), "
            "('u2', TIMESTAMP '2020-06-01 09:00', 'ios', 'US')) "
            "t(user_id, signup_ts, device, country)"
        )
    )
    kwargs: dict[str, Any] = {"start": "signup", "return_event": None, "periods": 2}
    by_country = {
        c: run(engine, date_to=date(2020, 6, 14), where=(Filter("country", (c,)),), **kwargs)
        for c in ("DE", "US")
    }
    assert by_country == {
        "DE": [
            {"start": "2020-06-01", "size": 1, "counts": [1, 1]},
            {"start": "2020-06-08", "size": 0, "counts": [0, None]},
        ],
        # u2 is in the US cohort; its return, a DE event, does not count under country=US.
        "US": [
            {"start": "2020-06-01", "size": 1, "counts": [1, 0]},
            {"start": "2020-06-08", "size": 0, "counts": [0, None]},
        ],
    }


def test_no_events_no_cohorts(engine: DuckDBEngine) -> None:
    load(engine, [], {})
    assert run(engine, **SR) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start": "signup", "return_event": None, "start_where": plan("pro")},
        {"start": "s", "return_event": "r", "period": "year"},
        {"start": "s", "return_event": "r", "mode": "always"},
        {"start": "s", "return_event": "r", "periods": 0},
        {"start": "", "return_event": "r"},
    ],
)
def test_bad_options_are_refused(engine: DuckDBEngine, kwargs: dict[str, Any]) -> None:
    load(engine, BASE, {})
    with pytest.raises(MetricsInputError):
        run(engine, **kwargs)


# --- property tests against the reference --------------------------------------------------
USERS = ["u1", "o'brien", "select", "$u"]
TYPES = ["s", "r", "x; --", "$r"]
DEVICES = ["ios", "and'roid"]
PLANS = ["free", "pro;$", 'd"q']
# Around the spring and autumn DST changes in Los Angeles (14 March, 7 November 2021).
BASES = [datetime(2021, 2, 20), datetime(2021, 10, 20)]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[Ev], dict[str, datetime | None], dict[str, Any]]:
    base = draw(st.sampled_from(BASES))
    # A few instants shared by many events: ties in time, and events either side of
    # local midnights.
    instants = draw(
        st.lists(st.integers(0, 50 * 24 * 4), min_size=1, max_size=8).map(
            lambda qs: [base + timedelta(minutes=15 * q) for q in qs]
        )
    )
    event = st.builds(
        lambda u, t, ts, d, p: Ev(u, t, ts, d, {} if p is None else {"plan": p}),
        st.sampled_from(USERS),
        st.sampled_from(TYPES),
        st.sampled_from(instants),
        st.sampled_from(DEVICES),
        st.none() | st.sampled_from(PLANS),
    )
    events = draw(st.lists(event, max_size=25))
    users = draw(
        st.dictionaries(
            st.sampled_from(USERS), st.none() | st.sampled_from(instants), max_size=len(USERS)
        )
    )
    # The users table's own device, which may differ from the events' devices.
    devices = {u: draw(st.none() | st.sampled_from(DEVICES)) for u in users}
    start = draw(st.sampled_from([*TYPES, "signup"]))
    day = st.none() | st.integers(0, 50).map(lambda d: (base + timedelta(days=d)).date())
    date_from, date_to = draw(day), draw(day)
    if date_from is not None and date_to is not None and date_to < date_from:
        date_from, date_to = date_to, date_from
    kwargs: dict[str, Any] = {
        "start": start,
        "return_event": draw(st.none() | st.sampled_from(TYPES)),
        "zone": draw(st.sampled_from(["UTC", "America/Los_Angeles"])),
        "week_start": draw(st.sampled_from(["monday", "sunday"])),
        "period": draw(st.sampled_from(["day", "week", "month"])),
        "periods": draw(st.integers(1, 6)),
        "mode": draw(st.sampled_from(["recurring", "first_time"])),
        "cumulative": draw(st.booleans()),
        "date_from": date_from,
        "date_to": date_to,
        "where": draw(
            st.sampled_from(
                [
                    (),
                    (Filter("device", ("ios",)),),
                    (Filter("device", ("and'roid",)), *plan("free")),
                ]
            )
        ),
        "devices": devices,
        "start_where": () if start == "signup" else draw(st.sampled_from([(), plan("pro;$")])),
        "return_where": draw(st.sampled_from([(), plan("free", 'd"q')])),
    }
    return events, users, kwargs


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(worlds())
def test_agrees_with_the_reference(
    engine: DuckDBEngine, world: tuple[list[Ev], dict[str, datetime | None], dict[str, Any]]
) -> None:
    events, users, kwargs = world
    load(engine, events, users, kwargs["devices"])
    expected = reference(events, users, **kwargs)
    del kwargs["devices"]
    assert run(engine, **kwargs) == expected


# --- portability: every query shape compiles for PostgreSQL and Spark ---------------------
# Each start kind and mode in each grain, with and without cumulative; the return and
# filter variants rotate through them (the SQL differs only by the presence of each).
RETURNS: list[tuple[str | None, tuple[Filter, ...]]] = [
    (None, ()),
    ("r", ()),
    (None, plan("free")),
    ("r", plan("a")),
]
GRAINS: tuple[Grain, ...] = ("day", "week", "month")
STARTS: tuple[tuple[str, Mode, tuple[Filter, ...]], ...] = (
    ("s", "recurring", plan("pro")),
    ("s", "first_time", plan("pro")),
    ("s", "recurring", ()),
    ("signup", "recurring", ()),
)
SHAPES = [
    RetentionSpec(start, ret, grain, mode, cumulative, start_where, return_where)
    for i, ((start, mode, start_where), grain, cumulative) in enumerate(
        itertools.product(STARTS, GRAINS, (False, True))
    )
    for ret, return_where in [RETURNS[i % len(RETURNS)]]
]
SCOPES = [
    Scope(),
    Scope.parse(
        timezone="America/Los_Angeles",
        week_start="sunday",
        date_from="2020-06-01",
        date_to="2020-06-30",
        where=["device=ios", "plan=x'y"],
    ),
]


@pytest.mark.parametrize("dialect", ["postgres", "spark"])
def test_every_query_shape_transpiles(dialect: str) -> None:
    for scope, bounds in zip(
        SCOPES, ({}, {"first_cohort": date(2020, 6, 1), "last_period": TO}), strict=True
    ):
        last_event_query(scope).sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)
        for spec in SHAPES:
            query = cohort_query(scope, spec, **bounds)  # type: ignore[arg-type]
            text = query.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)
            # SQLGlot passes a function it does not know through as-is: none may be left.
            reparsed = sqlglot.parse_one(text, read=dialect)
            assert not list(reparsed.find_all(exp.Anonymous)), (dialect, spec, text)


# --- the command ----------------------------------------------------------------------------
def test_cli_prints_the_table_and_exact_json(project_dir: Path) -> None:
    warehouse = warehouse_engine(load_project(project_dir).warehouse_path)
    load(warehouse, BASE, BASE_USERS)
    warehouse.close()
    args = ["--project", str(project_dir), "retention", "--start", "s", "--return", "r"]
    args += ["--periods", "4", "--to", "2020-06-28"]
    out = run_cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "cohorts": [
            {"start": "2020-06-01", "size": 2, "counts": [2, 1, 1, 1]},
            {"start": "2020-06-08", "size": 1, "counts": [1, 1, 0, None]},
            {"start": "2020-06-15", "size": 1, "counts": [1, 1, None, None]},
            {"start": "2020-06-22", "size": 0, "counts": [0, None, None, None]},
        ]
    }
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    rows = [line.replace("│", " ").split() for line in out.stdout.splitlines()]
    assert ["2020-06-01", "2", "2", "(100%)", "1", "(50%)", "1", "(50%)", "1", "(50%)"] in rows
    assert ["2020-06-08", "1", "1", "(100%)", "1", "(100%)", "0", "(0%)", "-"] in rows
    assert ["2020-06-22", "0", "0", "-", "-", "-"] in rows

    bad = run_cli(
        "--project", str(project_dir), "retention", "--start", "signup", "--start-where", "plan=pro"
    )
    assert bad.returncode != 0
    assert "signup is not an event" in bad.stderr + bad.stdout
