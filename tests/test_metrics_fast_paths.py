"""The edges of the fast paths behind activity and retention: activity's 31-day bit
blocks (block boundaries, windows reaching back exactly one block, days before 1970) and
local time from a span's UTC offsets (half-hour and 45-minute zones, DST changes, instants
outside the span, offsets in seconds), each against plain Python."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from sqlglot import exp

from productlens.engines import DuckDBEngine
from productlens.metrics.activity import BLOCK, EPOCH, activity_query
from productlens.metrics.calendar import event_span
from productlens.metrics.scope import Scope, local_ts, offset_pieces
from tests.conftest import q
from tests.metrics_events import Event, assert_portable, load
from tests.test_activity import day_events, reference, run

# Day numbers count from 1970-01-01 in blocks of 31: 2026-02-07 is day 20491 = 661 * 31,
# the first day of a block; 2026-03-10 starts the next one.
BLOCK_START = EPOCH + timedelta(661 * BLOCK)


def test_block_start_is_what_the_comments_say() -> None:
    assert date(2026, 2, 7) == BLOCK_START
    assert BLOCK_START + timedelta(BLOCK) == date(2026, 3, 10)


def test_windows_reach_back_across_a_block_boundary(engine: DuckDBEngine) -> None:
    # u1 on the block's first day (7 Feb), u2 on its last (9 March), u3 on the next
    # block's first day (10 March).
    load(engine, day_events("u1", BLOCK_START) + day_events("u2", date(2026, 3, 9))
         + day_events("u3", date(2026, 3, 10)))  # fmt: skip
    got = run(engine, date_from=date(2026, 3, 8), date_to=date(2026, 4, 9))
    days = {d["date"]: (d["dau"], d["wau"], d["mau"]) for d in got["days"]}
    assert days["2026-03-08"] == (0, 0, 1)  # 7 Feb is the 30th day back: u1 still in MAU
    assert days["2026-03-09"] == (1, 1, 1)  # 7 Feb has left the 30 days; u2 arrives
    assert days["2026-03-10"] == (1, 2, 2)  # u2 from the previous block, u3 in this one
    assert days["2026-03-15"] == (0, 2, 2)  # 9 March is the 7th day back
    assert days["2026-03-16"] == (0, 1, 2)  # it has left the week
    assert days["2026-04-07"] == (0, 0, 2)  # 9 March is the 30th day back
    assert days["2026-04-08"] == (0, 0, 1)  # only u3 (10 March) is left
    assert days["2026-04-09"] == (0, 0, 0)


def test_a_user_active_only_two_blocks_back_is_not_counted(engine: DuckDBEngine) -> None:
    # u1 on 6 Feb (the last day of block 660) and u2 on 10 March: nothing of u1 reaches
    # block 662, which starts 32 days later.
    load(engine, day_events("u1", date(2026, 2, 6)) + day_events("u2", date(2026, 3, 10)))
    days = {d["date"]: (d["dau"], d["wau"], d["mau"]) for d in run(engine)["days"]}
    assert days["2026-03-07"] == (0, 0, 1)
    assert days["2026-03-08"] == (0, 0, 0)
    assert days["2026-03-10"] == (1, 1, 1)


def test_every_day_around_two_block_boundaries_matches_the_reference(
    engine: DuckDBEngine,
) -> None:
    # One user per day from 3 Feb to 14 March, plus one user on every other day:
    # windows, weeks and months that straddle the boundaries on 7 Feb and 10 March.
    first = date(2026, 2, 3)
    events = [e for n in range(40) for e in day_events(f"u{n:02d}", first + timedelta(n))]
    events += [e for n in range(0, 40, 2) for e in day_events("every-other", first + timedelta(n))]
    load(engine, events)
    for options in ({}, {"date_from": date(2026, 3, 1), "date_to": date(2026, 3, 31)}):
        assert run(engine, **options) == reference(events, **options)  # type: ignore[arg-type]


def test_days_before_1970_have_negative_day_numbers(engine: DuckDBEngine) -> None:
    # Block -1 holds 1 Dec 1969 .. 31 Dec 1969; block 0 starts on 1 Jan 1970.
    days = [date(1969, 11, 30), date(1969, 12, 1), date(1969, 12, 31), date(1970, 1, 1)]
    events = day_events("u1", *days) + day_events("u2", date(1970, 1, 5))
    load(engine, events)
    got = run(engine)
    assert got == reference(events)
    by_day = {d["date"]: (d["dau"], d["wau"], d["mau"]) for d in got["days"]}
    assert by_day["1970-01-01"] == (1, 1, 1)
    assert by_day["1970-01-05"] == (1, 2, 2)  # u1's 31 Dec is the 6th day back


def test_a_month_of_31_days_split_over_two_blocks(engine: DuckDBEngine) -> None:
    # March 2026 runs over blocks 661 (1-9 March) and 662 (10-31 March); u1 is active
    # on its first and last day, u2 on every day of it.
    march = [date(2026, 3, 1) + timedelta(n) for n in range(31)]
    load(engine, day_events("u1", march[0], march[-1]) + day_events("u2", *march))
    got = run(engine)
    assert got["months"] == [
        {"start": "2026-03-01", "days_in_range": 31, "users": 2,
         "counts": [0, 1] + [0] * 28 + [1]}
    ]  # fmt: skip


# --- local time from the span's offsets ---------------------------------------------

ZONES = [
    "America/Los_Angeles",  # DST, one hour
    "Australia/Lord_Howe",  # DST of 30 minutes, +10:30 / +11
    "America/St_Johns",  # -3:30 / -2:30
    "Asia/Kathmandu",  # +5:45, no DST
    "Europe/Amsterdam",  # in 1937: +00:19:32, an offset in seconds
]


def local_times(
    engine: DuckDBEngine, zone: str, instants: list[datetime], span: tuple[datetime, datetime]
) -> list[tuple[datetime, datetime]]:
    """Each instant's local time with the span and with a conversion per row."""
    engine.execute(q("CREATE SCHEMA IF NOT EXISTS core"))
    engine.execute(q("CREATE OR REPLACE TABLE core.t (i INTEGER, event_ts TIMESTAMP)"))
    engine.append_arrow(
        "core",
        "t",
        pa.table({"i": range(len(instants)), "event_ts": pa.array(instants, pa.timestamp("us"))}),
    )
    scope = Scope(timezone=zone)
    query = (
        exp.select(local_ts(scope, span=span).as_("fast"), local_ts(scope).as_("converted"))
        .from_("core.t")
        .order_by("i")
    )
    return [(row[0], row[1]) for row in engine.fetch_all(query)]


def python_local(instant: datetime, zone: str) -> datetime:
    return instant.replace(tzinfo=UTC).astimezone(ZoneInfo(zone)).replace(tzinfo=None)


@pytest.mark.parametrize("zone", ZONES)
def test_local_time_from_offsets_is_exact_around_every_change(
    engine: DuckDBEngine, zone: str
) -> None:
    year = 1937 if zone == "Europe/Amsterdam" else 2026
    span = (datetime(year, 1, 1), datetime(year + 1, 1, 1))
    pieces = offset_pieces(zone, *span)
    assert pieces[0] == (span[0], pieces[0][1])
    # Every change, a microsecond and a minute either side, the span's edges, and a
    # sweep every 24 h 15 min: zoneinfo's local time (what the range bounds and the
    # tests' references use).
    inside = [span[0], span[1] - timedelta(microseconds=1)]
    for start, _ in pieces[1:]:
        for delta in (timedelta(0), timedelta(microseconds=1), timedelta(minutes=1)):
            inside += [start - delta, start + delta]
    inside += [span[0] + timedelta(minutes=15 * q) for q in range(0, 365 * 96, 97)]
    # Outside the span: the engine's conversion, exactly as without a span (DuckDB's
    # ICU and zoneinfo disagree on Amsterdam's +00:19:32 of 1936).
    outside = [span[0] - timedelta(days=40), span[1], span[1] + timedelta(days=200)]
    got = local_times(engine, zone, inside + outside, span)
    assert [fast for fast, _ in got[: len(inside)]] == [python_local(t, zone) for t in inside]
    assert all(fast == converted for fast, converted in got[len(inside) :])


def test_offset_pieces_of_a_dst_zone() -> None:
    pieces = offset_pieces("America/Los_Angeles", datetime(2026, 1, 1), datetime(2027, 1, 1))
    assert pieces == (
        (datetime(2026, 1, 1), -8 * 3600),
        (datetime(2026, 3, 8, 10), -7 * 3600),  # 2:00 PST is 10:00 UTC
        (datetime(2026, 11, 1, 9), -8 * 3600),  # 2:00 PDT is 9:00 UTC
    )
    assert offset_pieces("Asia/Kathmandu", datetime(2026, 1, 1), datetime(2027, 1, 1)) == (
        (datetime(2026, 1, 1), 5 * 3600 + 45 * 60),
    )


def test_a_span_with_too_many_changes_converts_every_row() -> None:
    # London over 40 years: 80 changes, more than the CASE takes; plain conversion.
    scope = Scope(timezone="Europe/London")
    assert offset_pieces("Europe/London", datetime(1990, 1, 1), datetime(2030, 1, 1)) == ()
    value = local_ts(scope, span=(datetime(1990, 1, 1), datetime(2030, 1, 1)))
    assert isinstance(value, exp.ConvertTimezone)


def test_event_span_is_the_range_or_the_events(engine: DuckDBEngine) -> None:
    load(engine, [Event("u1", "view", datetime(2026, 3, 2, 9)),
                  Event("u2", "view", datetime(2026, 3, 5, 17, 30))])  # fmt: skip
    zoned = Scope.parse(timezone="America/Los_Angeles")
    assert event_span(engine, zoned) == (
        datetime(2026, 3, 2, 9),
        datetime(2026, 3, 5, 17, 30, 0, 1),
    )
    ranged = Scope.parse(timezone="America/Los_Angeles", date_from="2026-03-01",
                         date_to="2026-03-31")  # fmt: skip
    assert event_span(engine, ranged) == (ranged.start, ranged.end)
    assert event_span(engine, Scope()) is None  # UTC: nothing to convert


def test_query_shapes_with_a_span_transpile() -> None:
    scope = Scope.parse(timezone="Australia/Lord_Howe", week_start="sunday")
    span = (datetime(2026, 1, 1), datetime(2026, 12, 31))
    for by in (None, "plan"):
        assert_portable(activity_query(scope, by, span=span))
