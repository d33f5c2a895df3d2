"""The funnel rules of issue 11 and docs/funnels.md, one hand-worked case per rule.

Each case is a few events and the result worked out by hand in its comment. The
brute-force reference (tests/funnel_reference.py) and `funnel()` (run on a tiny
`core.fct_events`) must both give exactly that result. Times are minutes after
T0 = Monday 2026-03-02 00:00 UTC unless a case says otherwise; event_ids follow the
order the events are listed in (e000, e001, ...), which decides ties at one instant.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from productlens.engines import DuckDBEngine
from productlens.metrics.funnel import Exclusion, funnel
from productlens.metrics.funnel_sql import _buckets
from productlens.metrics.scope import MAX_WINDOW_DAYS, MetricsInputError, Scope, parse_duration
from tests.conftest import q
from tests.funnel_reference import reference_funnel

T0 = datetime(2026, 3, 2)
MIN = 60.0  # seconds in a minute, for the expected times
DAY = 24 * 60  # minutes in a day


# ---------------------------------------------------------------- harness (shared)


def make_events(rows: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """(user, event_type, minutes after T0 or a datetime[, {column or property: value}])
    -> fct_events rows; event_id e000.. in list order unless given as "event_id"."""
    events = []
    for i, row in enumerate(rows):
        user, kind, when = row[:3]
        extra = dict(row[3]) if len(row) > 3 else {}
        ts = when if isinstance(when, datetime) else T0 + timedelta(minutes=when)
        event: dict[str, Any] = {
            "event_id": extra.pop("event_id", f"e{i:03d}"),
            "user_id": user,
            "session_id": extra.pop("session_id", "s1"),
            "event_type": kind,
            "event_ts": ts,
            "device": extra.pop("device", None),
            "country": extra.pop("country", None),
            "product_id": extra.pop("product_id", None),
            "amount": extra.pop("amount", None),
        }
        event["properties"] = extra or None
        events.append(event)
    return events


def load_fct_events(engine: DuckDBEngine, events: Sequence[dict[str, Any]]) -> None:
    """A core.fct_events with the real table's columns (properties as JSON text)."""
    engine.execute(q("DROP TABLE IF EXISTS core.fct_events"))
    engine.execute(
        q(
            "CREATE TABLE core.fct_events (event_id VARCHAR, user_id VARCHAR, session_id VARCHAR, "
            "event_type VARCHAR, event_ts TIMESTAMP, event_date DATE, device VARCHAR, "
            "country VARCHAR, product_id VARCHAR, amount DOUBLE, properties VARCHAR)"
        )
    )
    if not events:
        return
    columns = ["event_id", "user_id", "session_id", "event_type", "device", "country"]
    data: dict[str, Any] = {c: pa.array([e[c] for e in events], pa.string()) for c in columns}
    data["product_id"] = pa.array([e["product_id"] for e in events], pa.string())
    data["event_ts"] = pa.array([e["event_ts"] for e in events], pa.timestamp("us"))
    data["event_date"] = pa.array([e["event_ts"].date() for e in events], pa.date32())
    data["amount"] = pa.array([e["amount"] for e in events], pa.float64())
    data["properties"] = pa.array(
        [json.dumps(e["properties"]) if e["properties"] is not None else None for e in events],
        pa.string(),
    )
    engine.append_arrow("core", "fct_events", pa.table(data))


def sql_funnel(
    engine: DuckDBEngine,
    events: Sequence[dict[str, Any]],
    steps: Sequence[str],
    *,
    timezone: str = "UTC",
    week_start: str = "monday",
    exclude: Sequence[tuple[str, int, int]] = (),
    **options: Any,
) -> dict[str, Any]:
    load_fct_events(engine, events)
    scope = Scope(timezone=timezone, week_start=week_start)  # type: ignore[arg-type]
    result = funnel(engine, steps, scope=scope, exclude=[Exclusion(*e) for e in exclude], **options)
    return result.to_dict()


def rounded(value: Any) -> Any:
    """Floats to 6 decimals (SQL and Python may differ in the last bits of a mean)."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


def rows(
    steps: Sequence[str], counts: Sequence[int], times: dict[int, list[float]] | None = None
) -> list[dict[str, Any]]:
    """Expected step rows from hand-worked counts and times to convert (seconds) into
    step k; the rates, drop-offs, means and medians are plain arithmetic on them."""
    times = times or {}
    out = []
    for k, name in enumerate(steps):
        t = sorted(times.get(k, []))
        assert len(t) == (counts[k] if k else 0), f"step {k}: one time per unit reaching it"
        mid = len(t) // 2
        out.append(
            {
                "event": name,
                "count": counts[k],
                "conversion_from_previous": (
                    (1.0 if counts[0] else None)
                    if k == 0
                    else (counts[k] / counts[k - 1] if counts[k - 1] else None)
                ),
                "conversion_from_start": counts[k] / counts[0] if counts[0] else None,
                "drop_off": counts[k - 1] - counts[k] if k else 0,
                "avg_time_s": sum(t) / len(t) if t else None,
                "median_time_s": (
                    None if not t else t[mid] if len(t) % 2 else (t[mid - 1] + t[mid]) / 2
                ),
            }
        )
    return out


# ---------------------------------------------------------------- the table of cases


@dataclass(frozen=True)
class Case:
    name: str
    events: list[tuple[Any, ...]]
    steps: list[str]
    expected: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)


ABC = ["a", "b", "c"]


# The two trend cases' events (see the first of them for the hand-worked periods).
TREND_EVENTS = [
    ("u1", "a", 10 * 60), ("u1", "b", 10 * 60 + 30),
    ("u2", "a", 23 * 60 + 50), ("u2", "b", DAY + 10), ("u2", "a", DAY + 12 * 60),
    ("u3", "a", DAY + 23 * 60 + 30), ("u3", "x", DAY + 23 * 60 + 45),
]  # fmt: skip

CASES = [
    # Ordered: other events may come between steps; a later step before an earlier one
    # does not count. u1 a0 x1 b2 y3 c5: 3 steps, b after 2 min, c 3 min after b.
    # u2 a0 c1: no b, reaches step 0. u3 b0 a1 c2: the b is before the a: step 0 only.
    # u4 a0 c1 b2: b at 2, no c at or after 2: step 1 (2 min).
    Case(
        "ordered_other_events_between",
        [
            ("u1", "a", 0), ("u1", "x", 1), ("u1", "b", 2), ("u1", "y", 3), ("u1", "c", 5),
            ("u2", "a", 0), ("u2", "c", 1),
            ("u3", "b", 0), ("u3", "a", 1), ("u3", "c", 2),
            ("u4", "a", 0), ("u4", "c", 1), ("u4", "b", 2),
        ],
        ABC,
        {"steps": rows(ABC, [4, 2, 1], {1: [2 * MIN, 2 * MIN], 2: [3 * MIN]})},
    ),
    # A repeated name needs its own occurrence. Steps a,a,b.
    # u1 a0 b1: the only a cannot fill step 1 too: step 0.
    # u2 a0 a1 b2: from a0: a1 (60 s), b2 (60 s). (From a1 there is no other a later.)
    # u3 two a and a b all at minute 0: step 1 takes the other a at the same instant, 0 s.
    # Step 1 times 60, 0: mean 30, median the midpoint 30.
    Case(
        "repeated_name_needs_own_occurrence",
        [
            ("u1", "a", 0), ("u1", "b", 1),
            ("u2", "a", 0), ("u2", "a", 1), ("u2", "b", 2),
            ("u3", "a", 0), ("u3", "a", 0), ("u3", "b", 0),
        ],
        ["a", "a", "b"],
        {"steps": rows(["a", "a", "b"], [3, 2, 2], {1: [MIN, 0.0], 2: [MIN, 0.0]})},
    ),
    # Events of different steps at one instant count in step order, whatever the order
    # of their rows or ids. u1 c5 b5 a5 (listed backwards): 3 steps, 0 s each.
    # u2 c4 a5 b5: the c is before a: step 1.
    Case(
        "same_instant_counts_in_step_order",
        [
            ("u1", "c", 5), ("u1", "b", 5), ("u1", "a", 5),
            ("u2", "c", 4), ("u2", "a", 5), ("u2", "b", 5),
        ],
        ABC,
        {"steps": rows(ABC, [2, 2, 1], {1: [0.0, 0.0], 2: [0.0]})},
    ),
    # Attempts, window 10m: the latest start continues and the window runs from it.
    # u1 a0 a20 b25 c28: from a0, b25 is past 0+10: step 0; from a20: b (5 min), c (3 min).
    # u2 a0 a3 b5: both attempts reach b5 (same t_1); the later start a3 reports: 2 min.
    Case(
        "latest_start_continues",
        [
            ("u1", "a", 0), ("u1", "a", 20), ("u1", "b", 25), ("u1", "c", 28),
            ("u2", "a", 0), ("u2", "a", 3), ("u2", "b", 5),
        ],
        ABC,
        {"steps": rows(ABC, [2, 2, 1], {1: [5 * MIN, 2 * MIN], 2: [3 * MIN]})},
        {"window": timedelta(minutes=10)},
    ),
    # The furthest step over all attempts, window 10m, times from the attempt reaching it.
    # u1 a0 b5 a30 b32 c35: first attempt b5 (c35 too late): 1; second a30 b32 c35: 2,
    # times 2 min, 3 min. u2 a0 b2 c4 a6 b7: the first attempt reaches 2 (2, 2 min); the
    # later one only b7: u2's furthest step is 2, from the first.
    Case(
        "furthest_step_over_attempts",
        [
            ("u1", "a", 0), ("u1", "b", 5), ("u1", "a", 30), ("u1", "b", 32), ("u1", "c", 35),
            ("u2", "a", 0), ("u2", "b", 2), ("u2", "c", 4), ("u2", "a", 6), ("u2", "b", 7),
        ],
        ABC,
        {"steps": rows(ABC, [2, 2, 2], {1: [2 * MIN, 2 * MIN], 2: [3 * MIN, 2 * MIN]})},
        {"window": timedelta(minutes=10)},
    ),
    # Times come from the first attempt to reach the furthest step (earliest t_m); a tie
    # on t_m goes to the latest start. Window 1h.
    # u1 a0 b10 a20 b30 c40: a0 -> b10, c40 and a20 -> b30, c40 both end at c40: the
    # later start a20 reports: 10 min, 10 min.
    # u2 a0 b10 c15 a20 b25 c30: a0's attempt ends at 15, a20's at 30: a0's: 10, 5 min.
    Case(
        "times_from_first_attempt_reaching_furthest",
        [
            ("u1", "a", 0), ("u1", "b", 10), ("u1", "a", 20), ("u1", "b", 30), ("u1", "c", 40),
            ("u2", "a", 0), ("u2", "b", 10), ("u2", "c", 15), ("u2", "a", 20), ("u2", "b", 25),
            ("u2", "c", 30),
        ],
        ABC,
        {"steps": rows(ABC, [2, 2, 2], {1: [10 * MIN, 10 * MIN], 2: [10 * MIN, 5 * MIN]})},
        {"window": timedelta(hours=1)},
    ),
    # Strict: the next step must be the unit's very next instant, any event type.
    # u1 a0 x1 b2: x breaks the chain: 0. u2 a0 b1 c2: 2 (1 min, 1 min).
    # u3 a0 x0 b1: x at a's instant does not break it: 1 (1 min).
    # u4 a0 b1 x1 c2: x at b's instant: 2 (1 min, 1 min).
    # u5 b0 a0 (listed backwards): same instant, in step order: 1 (0 s).
    Case(
        "strict_broken_by_any_event_not_by_same_instant",
        [
            ("u1", "a", 0), ("u1", "x", 1), ("u1", "b", 2),
            ("u2", "a", 0), ("u2", "b", 1), ("u2", "c", 2),
            ("u3", "a", 0), ("u3", "x", 0), ("u3", "b", 1),
            ("u4", "a", 0), ("u4", "b", 1), ("u4", "x", 1), ("u4", "c", 2),
            ("u5", "b", 0), ("u5", "a", 0),
        ],
        ABC,
        {"steps": rows(ABC, [5, 4, 2], {1: [MIN, MIN, MIN, 0.0], 2: [MIN, MIN]})},
        {"order": "strict"},
    ),
    # Strict: a broken chain restarts at a later step-0 event.
    # u1 a0 b1 x2 c3 a4 b5 c6: a0 b1 broken by x2; a4 b5 c6: 2 (1 min, 1 min).
    # u2 a0 a1 b2: from a0 the next instant holds an a, not b: broken; from a1: b2 (1 min).
    Case(
        "strict_restarts_at_later_start",
        [
            ("u1", "a", 0), ("u1", "b", 1), ("u1", "x", 2), ("u1", "c", 3), ("u1", "a", 4),
            ("u1", "b", 5), ("u1", "c", 6),
            ("u2", "a", 0), ("u2", "a", 1), ("u2", "b", 2),
        ],
        ABC,
        {"steps": rows(ABC, [2, 2, 1], {1: [MIN, MIN], 2: [MIN]})},
        {"order": "strict"},
    ),
    # Strict: two chains from one start reach the last step at the same instant; the
    # reporting chain is the one with the earliest times, compared step by step (found by a
    # fuzz run: the SQL took either, so the times differed from run to run).
    # Steps b,a,a,c,c,a; seconds: b0 a1 a1 c59 c59 c60 a60 (consecutive instants).
    # Chain 1: b0 a1 a1 c59 c59 a60; chain 2: b0 a1 a1 c59 c60 a60. Both end at 60 and
    # start at 0; chain 1's step 4 (59) is earlier: times 1, 0, 58, 0, 1 s.
    Case(
        "strict_reporting_chain_has_the_earliest_times",
        [
            ("u1", "b", T0), ("u1", "a", T0 + timedelta(seconds=1)),
            ("u1", "a", T0 + timedelta(seconds=1)), ("u1", "c", T0 + timedelta(seconds=59)),
            ("u1", "c", T0 + timedelta(seconds=59)), ("u1", "c", T0 + timedelta(seconds=60)),
            ("u1", "a", T0 + timedelta(seconds=60)),
        ],
        ["b", "a", "a", "c", "c", "a"],
        {
            "steps": rows(
                ["b", "a", "a", "c", "c", "a"],
                [1, 1, 1, 1, 1, 1],
                {1: [1.0], 2: [0.0], 3: [58.0], 4: [0.0], 5: [1.0]},
            )
        },
        {"order": "strict", "window": timedelta(seconds=60)},
    ),
    # Unordered, window 10m: row i = at least i+1 distinct steps within one window.
    # u1 c0 a1 b2: all three in [0, 10]: times from the sorted matched times 0,1,2: 1, 1 min.
    # u2 b0 b1: one distinct step twice: row 0 only.
    # u3 a0 c20: never two in one window: row 0.
    # u4 c0 b30 a35: the window from 30 holds b and a: 2 steps, 5 min.
    Case(
        "unordered_distinct_steps_in_one_window",
        [
            ("u1", "c", 0), ("u1", "a", 1), ("u1", "b", 2),
            ("u2", "b", 0), ("u2", "b", 1),
            ("u3", "a", 0), ("u3", "c", 20),
            ("u4", "c", 0), ("u4", "b", 30), ("u4", "a", 35),
        ],
        ABC,
        {"steps": rows(ABC, [4, 2, 1], {1: [MIN, 5 * MIN], 2: [MIN]})},
        {"order": "unordered", "window": timedelta(minutes=10)},
    ),
    # Unordered times come from the first full completion (earliest window start).
    # u1 a0 c3 b5 b20 a21 c22: windows from 0 and from 20 are both full; from 0: matched
    # 0, 3, 5: 3 min, 2 min.
    Case(
        "unordered_times_from_first_full_completion",
        [
            ("u1", "a", 0), ("u1", "c", 3), ("u1", "b", 5), ("u1", "b", 20), ("u1", "a", 21),
            ("u1", "c", 22),
        ],
        ABC,
        {"steps": rows(ABC, [1, 1, 1], {1: [3 * MIN], 2: [2 * MIN]})},
        {"order": "unordered", "window": timedelta(minutes=10)},
    ),
    # Unordered with a repeated name, steps a,b,a: a name used by 2 steps needs 2
    # occurrences. u1 a0 b1: 2 filled: 1 min. u2 b0 a1 a2: 3 filled: 1, 1 min.
    Case(
        "unordered_repeated_name",
        [("u1", "a", 0), ("u1", "b", 1), ("u2", "b", 0), ("u2", "a", 1), ("u2", "a", 2)],
        ["a", "b", "a"],
        {"steps": rows(["a", "b", "a"], [2, 2, 1], {1: [MIN, MIN], 2: [MIN]})},
        {"order": "unordered"},
    ),
    # Exclusion x:0:1 spoils an attempt with an x strictly between its a and its b.
    # u1 a0 x1 b2 c3: spoiled, its only attempt: removed from every row.
    # u2 a0 b1 x2 c3: x after b: kept, 2 (1, 2 min).
    # u3 a0 x0 b1: x at a's instant is not after it: kept, 1 (1 min).
    # u4 a0 x2 b2 c3: x at b's instant is not before it: kept, 2 (2, 1 min).
    Case(
        "exclusion_between_from_and_to",
        [
            ("u1", "a", 0), ("u1", "x", 1), ("u1", "b", 2), ("u1", "c", 3),
            ("u2", "a", 0), ("u2", "b", 1), ("u2", "x", 2), ("u2", "c", 3),
            ("u3", "a", 0), ("u3", "x", 0), ("u3", "b", 1),
            ("u4", "a", 0), ("u4", "x", 2), ("u4", "b", 2), ("u4", "c", 3),
        ],
        ABC,
        {"steps": rows(ABC, [3, 3, 2], {1: [MIN, MIN, 2 * MIN], 2: [2 * MIN, MIN]})},
        {"exclude": [("x", 0, 1)]},
    ),
    # Exclusion x:1:2 when the TO step never comes: any x after b up to t_0 + W (10m,
    # inclusive) spoils. u1 a0 b1 x5: removed. u2 a0 b1 x11: x after the window: kept, 1.
    # u3 a0 b1 x10: x exactly at the window's end: removed. u4 a0 x5: never reached
    # FROM (step 1), nothing to spoil: kept, 0.
    Case(
        "exclusion_when_to_never_comes",
        [
            ("u1", "a", 0), ("u1", "b", 1), ("u1", "x", 5),
            ("u2", "a", 0), ("u2", "b", 1), ("u2", "x", 11),
            ("u3", "a", 0), ("u3", "b", 1), ("u3", "x", 10),
            ("u4", "a", 0), ("u4", "x", 5),
        ],
        ABC,
        {"steps": rows(ABC, [2, 1, 0], {1: [MIN]})},
        {"exclude": [("x", 1, 2)], "window": timedelta(minutes=10)},
    ),
    # A unit goes only when every attempt reaching its furthest step is spoiled. x:0:1.
    # u1 a0 x1 a2 b3 c4: a0's attempt (b3, c4) is spoiled by x1, a2's is clean: kept, 2,
    # times from a2's: 1, 1 min. u2 a0 x1 b2 c3 a5: the only attempt reaching 2 is
    # spoiled; a5's clean attempt reaches only 0: removed. u3 a0 b1 c2 a3 x4 b5 c6: a3's
    # attempt is spoiled, a0's (earlier t_m anyway) is clean: kept, 1, 1 min.
    Case(
        "exclusion_removes_only_when_every_furthest_attempt_spoiled",
        [
            ("u1", "a", 0), ("u1", "x", 1), ("u1", "a", 2), ("u1", "b", 3), ("u1", "c", 4),
            ("u2", "a", 0), ("u2", "x", 1), ("u2", "b", 2), ("u2", "c", 3), ("u2", "a", 5),
            ("u3", "a", 0), ("u3", "b", 1), ("u3", "c", 2), ("u3", "a", 3), ("u3", "x", 4),
            ("u3", "b", 5), ("u3", "c", 6),
        ],
        ABC,
        {"steps": rows(ABC, [2, 2, 2], {1: [MIN, MIN], 2: [MIN, MIN]})},
        {"exclude": [("x", 0, 1)], "window": timedelta(hours=1)},
    ),
    # Strict with x:0:1 and the TO step never coming: u1 a0 x1 is removed (x inside the
    # window after a); u2 a0 b1: 1 (1 min).
    Case(
        "strict_exclusion_when_to_never_comes",
        [("u1", "a", 0), ("u1", "x", 1), ("u2", "a", 0), ("u2", "b", 1)],
        ["a", "b"],
        {"steps": rows(["a", "b"], [1, 1], {1: [MIN]})},
        {"order": "strict", "exclude": [("x", 0, 1)], "window": timedelta(minutes=10)},
    ),
    # Unordered with x:0:2, window 10m, on the window's matched times of steps 0 and 2.
    # u1 a0 x1 b2 c3: the only full window (from 0) has x between a0 and c3: removed.
    # u2 a0 b1 c2 x5: x after c: kept, 2 (1, 1 min).
    # u3 a0 b1 x3: the window from 0 fills a, b (not c): x in (0, 0+10]: spoiled; it is
    # the only window with 2 steps: removed.
    Case(
        "unordered_exclusion",
        [
            ("u1", "a", 0), ("u1", "x", 1), ("u1", "b", 2), ("u1", "c", 3),
            ("u2", "a", 0), ("u2", "b", 1), ("u2", "c", 2), ("u2", "x", 5),
            ("u3", "a", 0), ("u3", "b", 1), ("u3", "x", 3),
        ],
        ABC,
        {"steps": rows(ABC, [1, 1, 1], {1: [MIN], 2: [MIN]})},
        {"order": "unordered", "exclude": [("x", 0, 2)], "window": timedelta(minutes=10)},
    ),
    # Every unit excluded: the steps are still there with zero counts, rates and times null.
    Case(
        "all_excluded_gives_zero_counts",
        [("u1", "a", 0), ("u1", "x", 1), ("u1", "b", 2)],
        ["a", "b"],
        {
            "steps": [
                {
                    "event": "a",
                    "count": 0,
                    "conversion_from_previous": None,
                    "conversion_from_start": None,
                    "drop_off": 0,
                    "avg_time_s": None,
                    "median_time_s": None,
                },
                {
                    "event": "b",
                    "count": 0,
                    "conversion_from_previous": None,
                    "conversion_from_start": None,
                    "drop_off": 0,
                    "avg_time_s": None,
                    "median_time_s": None,
                },
            ]
        },
        {"exclude": [("x", 0, 1)]},
    ),
    # Nobody does step 0 (u1 only b): zero counts, like the all-excluded case.
    Case(
        "no_unit_enters_gives_zero_counts",
        [("u1", "b", 0), ("u1", "x", 1)],
        ["a", "b"],
        {"steps": rows(["a", "b"], [0, 0])},
    ),
    # Median of an even count is the midpoint; written out in full. Conversion times
    # 10, 20, 40, 100 s: mean 42.5, median (20 + 40) / 2 = 30. u5 never converts.
    Case(
        "median_of_even_count_is_midpoint",
        [
            ("u1", "a", 0), ("u1", "b", 10 / 60),
            ("u2", "a", 0), ("u2", "b", 20 / 60),
            ("u3", "a", 0), ("u3", "b", 40 / 60),
            ("u4", "a", 0), ("u4", "b", 100 / 60),
            ("u5", "a", 0),
        ],
        ["a", "b"],
        {
            "steps": [
                {
                    "event": "a",
                    "count": 5,
                    "conversion_from_previous": 1.0,
                    "conversion_from_start": 1.0,
                    "drop_off": 0,
                    "avg_time_s": None,
                    "median_time_s": None,
                },
                {
                    "event": "b",
                    "count": 4,
                    "conversion_from_previous": 0.8,
                    "conversion_from_start": 0.8,
                    "drop_off": 1,
                    "avg_time_s": 42.5,
                    "median_time_s": 30.0,
                },
            ]
        },
    ),
    # Breakdown first_touch by device: the earliest non-null value among the unit's
    # funnel-step events. u1 x0 "tv" (not a step), a1 null, b2 "ios", c3 "web": "ios",
    # 2 (1, 1 min). u2 a0 null, b1 null: "", 1 (1 min). u3 b0 "android" (a step event,
    # even before the a), a1 "web": "android", 0.
    Case(
        "breakdown_first_touch",
        [
            ("u1", "x", 0, {"device": "tv"}), ("u1", "a", 1), ("u1", "b", 2, {"device": "ios"}),
            ("u1", "c", 3, {"device": "web"}),
            ("u2", "a", 0), ("u2", "b", 1),
            ("u3", "b", 0, {"device": "android"}), ("u3", "a", 1, {"device": "web"}),
        ],
        ABC,
        {
            "steps": rows(ABC, [3, 2, 1], {1: [MIN, MIN], 2: [MIN]}),
            "breakdown": {
                "ios": {"steps": rows(ABC, [1, 1, 1], {1: [MIN], 2: [MIN]})},
                "": {"steps": rows(ABC, [1, 1, 0], {1: [MIN]})},
                "android": {"steps": rows(ABC, [1, 0, 0])},
            },
        },
        {"by": "device", "attribution": "first_touch"},
    ),
    # The same events with last_touch: u1 c3 "web"; u2 ""; u3 a1 "web".
    Case(
        "breakdown_last_touch",
        [
            ("u1", "x", 0, {"device": "tv"}), ("u1", "a", 1), ("u1", "b", 2, {"device": "ios"}),
            ("u1", "c", 3, {"device": "web"}),
            ("u2", "a", 0), ("u2", "b", 1),
            ("u3", "b", 0, {"device": "android"}), ("u3", "a", 1, {"device": "web"}),
        ],
        ABC,
        {
            "steps": rows(ABC, [3, 2, 1], {1: [MIN, MIN], 2: [MIN]}),
            "breakdown": {
                "web": {"steps": rows(ABC, [2, 1, 1], {1: [MIN], 2: [MIN]})},
                "": {"steps": rows(ABC, [1, 1, 0], {1: [MIN]})},
            },
        },
        {"by": "device", "attribution": "last_touch"},
    ),
    # step:1 on the property "plan", window 10m: the value on the event that filled step 1
    # in the reporting attempt. u1 b1 plan 0 (a number): "0", 2. u2 no b: "", 0.
    # u3 b1 plan null: "", 1. u4 two b at minute 1, ids e007 "x" < e008 "y": the smallest
    # id fills the step: "x", 1. u5 a0 b1 "p1" (c32 too late), a30 b31 "p2" c32: the
    # attempt reaching 2 reports: "p2", 2. Every time is 1 min.
    Case(
        "breakdown_step_n",
        [
            ("u1", "a", 0, {"plan": "free"}), ("u1", "b", 1, {"plan": 0}), ("u1", "c", 2),
            ("u2", "a", 0, {"plan": "pro"}),
            ("u3", "a", 0), ("u3", "b", 1, {"plan": None}),
            ("u4", "a", 0), ("u4", "b", 1, {"plan": "x"}), ("u4", "b", 1, {"plan": "y"}),
            ("u5", "a", 0), ("u5", "b", 1, {"plan": "p1"}), ("u5", "a", 30),
            ("u5", "b", 31, {"plan": "p2"}), ("u5", "c", 32),
        ],
        ABC,
        {
            "steps": rows(ABC, [5, 4, 2], {1: [MIN] * 4, 2: [MIN] * 2}),
            "breakdown": {
                "0": {"steps": rows(ABC, [1, 1, 1], {1: [MIN], 2: [MIN]})},
                "": {"steps": rows(ABC, [2, 1, 0], {1: [MIN]})},
                "x": {"steps": rows(ABC, [1, 1, 0], {1: [MIN]})},
                "p2": {"steps": rows(ABC, [1, 1, 1], {1: [MIN], 2: [MIN]})},
            },
        },
        {"by": "plan", "attribution": "step:1", "window": timedelta(minutes=10)},
    ),
    # step:0 on a column (product_id): u1's reporting attempt starts at a5 (the latest
    # start before b), so its value is "p5", not a0's "p0". u2 has none: "".
    Case(
        "breakdown_step_0_column",
        [
            ("u1", "a", 0, {"product_id": "p0"}), ("u1", "a", 5, {"product_id": "p5"}),
            ("u1", "b", 6),
            ("u2", "a", 0),
        ],
        ["a", "b"],
        {
            "steps": rows(["a", "b"], [2, 1], {1: [MIN]}),
            "breakdown": {
                "p5": {"steps": rows(["a", "b"], [1, 1], {1: [MIN]})},
                "": {"steps": rows(["a", "b"], [1, 0])},
            },
        },
        {"by": "product_id", "attribution": "step:0"},
    ),
    # step:0 when the unit reaches only step 0: it did reach step 0, so the value is on
    # its step-0 event. u1 b0 product "p": bucket "p", 0.
    Case(
        "breakdown_step_0_when_only_step_0_reached",
        [("u1", "b", 0, {"product_id": "p"})],
        ["b", "c"],
        {
            "steps": rows(["b", "c"], [1, 0]),
            "breakdown": {"p": {"steps": rows(["b", "c"], [1, 0])}},
        },
        {"by": "product_id", "attribution": "step:0"},
    ),
    # Unordered step:1 by device: the occurrence matched to step index 1 (b) in the
    # reporting window; "" when the unit did not reach row 1 or b is not in it.
    # u1 c0 "web" a1 "ios": a and c fill 2 steps (1 min) but not b: "". u2 b0 "tv" alone:
    # row 0 only, did not reach 1: "". u3 b0 "tv" a1: 2 steps, b filled: "tv" (1 min).
    # u4 a0 c1 b2 "ios": 3 steps: "ios" (1, 1 min).
    Case(
        "breakdown_step_n_unordered",
        [
            ("u1", "c", 0, {"device": "web"}), ("u1", "a", 1, {"device": "ios"}),
            ("u2", "b", 0, {"device": "tv"}),
            ("u3", "b", 0, {"device": "tv"}), ("u3", "a", 1),
            ("u4", "a", 0), ("u4", "c", 1), ("u4", "b", 2, {"device": "ios"}),
        ],
        ABC,
        {
            "steps": rows(ABC, [4, 3, 1], {1: [MIN] * 3, 2: [MIN]}),
            "breakdown": {
                "": {"steps": rows(ABC, [2, 1, 0], {1: [MIN]})},
                "tv": {"steps": rows(ABC, [1, 1, 0], {1: [MIN]})},
                "ios": {"steps": rows(ABC, [1, 1, 1], {1: [MIN], 2: [MIN]})},
            },
        },
        {"order": "unordered", "by": "device", "attribution": "step:1"},
    ),
    # Unordered step:2: u1 c0 "web" b1 fills 2 steps (row 1, 1 min): step 2's c is in
    # its window, but the unit did not reach row 2: "". u2 a0 b1 c2 "ios": "ios".
    Case(
        "breakdown_step_n_unordered_not_reached",
        [
            ("u1", "c", 0, {"device": "web"}), ("u1", "b", 1),
            ("u2", "a", 0), ("u2", "b", 1), ("u2", "c", 2, {"device": "ios"}),
        ],
        ABC,
        {
            "steps": rows(ABC, [2, 2, 1], {1: [MIN, MIN], 2: [MIN]}),
            "breakdown": {
                "": {"steps": rows(ABC, [1, 1, 0], {1: [MIN]})},
                "ios": {"steps": rows(ABC, [1, 1, 1], {1: [MIN], 2: [MIN]})},
            },
        },
        {"order": "unordered", "by": "device", "attribution": "step:2"},
    ),
    # Trend per day (UTC), window 1h, by the day of each attempt's start.
    # Day 1 (03-02): u1 a 10:00 b 10:30 (30 min); u2 a 23:50 b 00:10 next day: the b
    # after the period still counts for the period of entry (20 min).
    # Day 2 (03-03): u2 a 12:00 (no b after): 0; u3 a 23:30: 0; u3 x 23:45 is the last
    # event in scope. Day 1 closes at 03-03 00:00 + 1h <= 23:45: complete; day 2 at
    # 03-04 01:00 > 23:45: not complete. Total: u1 1 (30 min), u2 1 (20 min), u3 0.
    Case(
        "trend_per_day",
        TREND_EVENTS,
        ["a", "b"],
        {
            "steps": rows(["a", "b"], [3, 2], {1: [30 * MIN, 20 * MIN]}),
            "trend": [
                {
                    "period": "2026-03-02",
                    "complete": True,
                    "steps": rows(["a", "b"], [2, 2], {1: [30 * MIN, 20 * MIN]}),
                },
                {"period": "2026-03-03", "complete": False, "steps": rows(["a", "b"], [2, 0])},
            ],
        },
        {"per": "day", "window": timedelta(hours=1)},
    ),
    # The same with a window of 3,000,000 days: no period's window has closed (its end
    # would be past the year 9999; the check must not add it to a date).
    Case(
        "trend_window_past_year_9999",
        TREND_EVENTS,
        ["a", "b"],
        {
            "steps": rows(["a", "b"], [3, 2], {1: [30 * MIN, 20 * MIN]}),
            "trend": [
                {
                    "period": "2026-03-02",
                    "complete": False,
                    "steps": rows(["a", "b"], [2, 2], {1: [30 * MIN, 20 * MIN]}),
                },
                {"period": "2026-03-03", "complete": False, "steps": rows(["a", "b"], [2, 0])},
            ],
        },
        {"per": "day", "window": timedelta(days=3_000_000)},
    ),
    # Strict trend per day (UTC), window 1h. u1 a0 b1 on 03-02 (1 min), a on 03-03 00:00
    # alone; u2 a0: 0. The last event (u3 x) is 03-03 01:00: day 03-02 closes at exactly
    # 03-03 00:00 + 1h, not after it: complete; day 03-03 closes 03-04 01:00: not.
    Case(
        "strict_trend_per_day",
        [
            ("u1", "a", 0), ("u1", "b", 1), ("u1", "a", DAY), ("u2", "a", 0),
            ("u3", "x", DAY + 60),
        ],
        ["a", "b"],
        {
            "steps": rows(["a", "b"], [2, 1], {1: [MIN]}),
            "trend": [
                {
                    "period": "2026-03-02",
                    "complete": True,
                    "steps": rows(["a", "b"], [2, 1], {1: [MIN]}),
                },
                {"period": "2026-03-03", "complete": False, "steps": rows(["a", "b"], [1, 0])},
            ],
        },
        {"order": "strict", "per": "day", "window": timedelta(hours=1)},
    ),
    # Trend per day with x:0:1: u1 enters on 03-02 (a0 x1 b2) and is removed; u2 enters
    # on 03-03 (a b a minute apart). Reading (as "every user excluded gives zero counts"
    # for the total): 03-02 had an entry, so its row is there, with zero counts. Last
    # event 03-03 00:01: both windows (14d) still open.
    Case(
        "trend_period_whose_units_are_all_excluded",
        [
            ("u1", "a", 0), ("u1", "x", 1), ("u1", "b", 2),
            ("u2", "a", DAY), ("u2", "b", DAY + 1),
        ],
        ["a", "b"],
        {
            "steps": rows(["a", "b"], [1, 1], {1: [MIN]}),
            "trend": [
                {"period": "2026-03-02", "complete": False, "steps": rows(["a", "b"], [0, 0])},
                {
                    "period": "2026-03-03",
                    "complete": False,
                    "steps": rows(["a", "b"], [1, 1], {1: [MIN]}),
                },
            ],
        },
        {"per": "day", "exclude": [("x", 0, 1)]},
    ),
    # Unordered trend per day with x:0:1, window 1h: u1 x 03-02 23:50, a 03-03 00:10.
    # Only an instant holding a step event starts a window, so u1 enters on 03-03 (at the
    # a; the x before it spoils nothing) and 03-02 has no entry and no row. (A window
    # started at the x reached the a and put u1 on 03-02: found by hypothesis.) Last
    # event 03-03 00:10: the 03-03 window closes 03-04 01:00, not complete.
    Case(
        "unordered_trend_entry_is_a_step_event_not_an_excluded_one",
        [("u1", "x", 23 * 60 + 50), ("u1", "a", DAY + 10)],
        ["a", "b"],
        {
            "steps": rows(["a", "b"], [1, 0]),
            "trend": [
                {"period": "2026-03-03", "complete": False, "steps": rows(["a", "b"], [1, 0])},
            ],
        },
        {
            "order": "unordered",
            "per": "day",
            "exclude": [("x", 0, 1)],
            "window": timedelta(hours=1),
        },
    ),
    # Trend per week in America/Los_Angeles with Sunday weeks, across the DST change
    # (Sunday 2026-03-08 02:00). Window 1d. u1 a 03-08 07:30 UTC = Sat 03-07 23:30 PST:
    # week of Sun 03-01; b 30 min later. u2 a 03-08 08:30 UTC = Sun 03-08 00:30 PST: week
    # of 03-08, no b. Last event (u3 x) 03-16 06:30 UTC. Week 03-01 ends 03-08 00:00 PST
    # = 08:00 UTC, + 1d <= last: complete. Week 03-08 ends 03-15 00:00 PDT = 07:00 UTC,
    # + 1d = 03-16 07:00 > 06:30: not complete.
    Case(
        "trend_per_week_sunday_los_angeles",
        [
            ("u1", "a", datetime(2026, 3, 8, 7, 30)), ("u1", "b", datetime(2026, 3, 8, 8, 0)),
            ("u2", "a", datetime(2026, 3, 8, 8, 30)),
            ("u3", "x", datetime(2026, 3, 16, 6, 30)),
        ],
        ["a", "b"],
        {
            "steps": rows(["a", "b"], [2, 1], {1: [30 * MIN]}),
            "trend": [
                {
                    "period": "2026-03-01",
                    "complete": True,
                    "steps": rows(["a", "b"], [1, 1], {1: [30 * MIN]}),
                },
                {"period": "2026-03-08", "complete": False, "steps": rows(["a", "b"], [1, 0])},
            ],
        },
        {
            "per": "week",
            "timezone": "America/Los_Angeles",
            "week_start": "sunday",
            "window": timedelta(days=1),
        },
    ),
    # The same events with Monday weeks: both starts (Sat 03-07 and Sun 03-08 local) fall
    # in the week of Mon 03-02, which ends 03-09 00:00 PDT = 07:00 UTC; + 1d = 03-10
    # 07:00 <= 03-16 06:30: complete.
    Case(
        "trend_per_week_monday_los_angeles",
        [
            ("u1", "a", datetime(2026, 3, 8, 7, 30)), ("u1", "b", datetime(2026, 3, 8, 8, 0)),
            ("u2", "a", datetime(2026, 3, 8, 8, 30)),
            ("u3", "x", datetime(2026, 3, 16, 6, 30)),
        ],
        ["a", "b"],
        {
            "steps": rows(["a", "b"], [2, 1], {1: [30 * MIN]}),
            "trend": [
                {
                    "period": "2026-03-02",
                    "complete": True,
                    "steps": rows(["a", "b"], [2, 1], {1: [30 * MIN]}),
                },
            ],
        },
        {
            "per": "week",
            "timezone": "America/Los_Angeles",
            "week_start": "monday",
            "window": timedelta(days=1),
        },
    ),
    # count_by session: each (user, session) is a unit; a NULL session is one unit per user.
    # u1 s1 a0, s2 b1: (u1,s1) 0; (u1,s2) has no a: not in the funnel. u2 null session a0
    # b1: 1 (1 min). u3 s1 a0 b2: 1 (2 min); s2 a5: 0. Step 1 times 1, 2 min: mean 90 s.
    Case(
        "count_by_session",
        [
            ("u1", "a", 0, {"session_id": "s1"}), ("u1", "b", 1, {"session_id": "s2"}),
            ("u2", "a", 0, {"session_id": None}), ("u2", "b", 1, {"session_id": None}),
            ("u3", "a", 0, {"session_id": "s1"}), ("u3", "b", 2, {"session_id": "s1"}),
            ("u3", "a", 5, {"session_id": "s2"}),
        ],
        ["a", "b"],
        {"steps": rows(["a", "b"], [4, 2], {1: [MIN, 2 * MIN]})},
        {"count_by": "session"},
    ),
]  # fmt: skip

# Names and values that are SQL, quotes, `;` and `$`: only data.
HOSTILE = ["it's", 'a"b; DROP TABLE core.fct_events; --', "$1 $$x$$", "select"]
HOSTILE_KEY = 'we\'ird "key"; $k'
CASES.append(
    # u1 does the four steps a minute apart, u2 only the first. The breakdown property
    # (first_touch) is a hostile value on u1's first event; u2 has none. u3's hostile
    # excluded event comes after its step 0 and no step 1 comes: u3 is removed.
    Case(
        "hostile_names_and_values_are_data",
        [
            ("u1", HOSTILE[0], 0, {HOSTILE_KEY: 'O\'Reilly; $x "select"'}),
            ("u1", HOSTILE[1], 1),
            ("u1", HOSTILE[2], 2),
            ("u1", HOSTILE[3], 3),
            ("u2", HOSTILE[0], 0),
            ("u2", "x", 1),
            ("u3", HOSTILE[0], 0),
            ("u3", "x'; --", 1),
        ],
        HOSTILE,
        {
            "steps": rows(HOSTILE, [2, 1, 1, 1], {1: [MIN], 2: [MIN], 3: [MIN]}),
            "breakdown": {
                'O\'Reilly; $x "select"': {
                    "steps": rows(HOSTILE, [1, 1, 1, 1], {1: [MIN], 2: [MIN], 3: [MIN]})
                },
                "": {"steps": rows(HOSTILE, [1, 0, 0, 0])},
            },
        },
        {"by": HOSTILE_KEY, "exclude": [("x'; --", 0, 1)]},
    )
)


def _window_boundary_cases() -> list[Case]:
    """Each window unit, boundary inclusive: b exactly W after a converts, 1 µs later not."""
    cases = []
    for text, seconds in [
        ("3s", 3), ("3m", 180), ("3h", 3 * 3600), ("3d", 3 * 86400), ("3w", 21 * 86400),
        ("3mo", 90 * 86400),
    ]:  # fmt: skip
        w = timedelta(seconds=seconds)
        at_edge, past = T0 + w, T0 + w + timedelta(microseconds=1)
        cases.append(
            Case(
                f"window_boundary_inclusive_{text}",
                [("u1", "a", 0), ("u1", "b", at_edge), ("u2", "a", 0), ("u2", "b", past)],
                ["a", "b"],
                {"steps": rows(["a", "b"], [2, 1], {1: [float(seconds)]})},
                {"window": parse_duration(text)},
            )
        )
    return cases


CASES.extend(_window_boundary_cases())


def _run_reference(case: Case) -> dict[str, Any]:
    return reference_funnel(make_events(case.events), case.steps, **case.options)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_reference_gives_the_hand_worked_result(case: Case) -> None:
    assert rounded(_run_reference(case)) == rounded(case.expected)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_funnel_gives_the_hand_worked_result(case: Case, engine: DuckDBEngine) -> None:
    got = sql_funnel(engine, make_events(case.events), case.steps, **case.options)
    assert rounded(got) == rounded(case.expected)


@pytest.mark.parametrize("window", ["1m", "1h", "1d", "14d", "60d"])
def test_a_start_one_window_back_in_the_furthest_bucket_is_found(
    engine: DuckDBEngine, window: str
) -> None:
    """The ordered fast path finds a step 1's latest start through time buckets of
    `_buckets`' width (microseconds since 2000), looking a bounded number of buckets back.
    Step 1 here is at the first or the last instant of its bucket, and step 0 exactly one
    window before it (in the window), 1 us less (in) or 1 us more (out): a start exactly
    one window back is in the furthest bucket a window reaches. User "p"'s previous step 1
    is 1 us before its step 0, in the same bucket: that start still counts."""
    w = parse_duration(window)
    width, _ = _buckets(int(w.total_seconds()))
    epoch, us = datetime(2000, 1, 1), timedelta(microseconds=1)
    first = epoch + ((T0 - epoch) // us // width + 1) * width * us  # a bucket's first instant
    events: list[tuple[Any, ...]] = []
    for i, t1 in enumerate([first, first + (width - 1) * us]):
        for j, back in enumerate([w, w - us, w + us]):
            events += [(f"u{i}{j}", "a", t1 - back), (f"u{i}{j}", "b", t1)]
        events += [(f"p{i}", "b", t1 - w - us), (f"p{i}", "a", t1 - w), (f"p{i}", "b", t1)]
    seconds = w.total_seconds()
    times = [seconds, seconds - 1e-6] * 2 + [seconds] * 2
    expected = {"steps": rows(["a", "b"], [8, 6], {1: times})}
    made = make_events(events)
    assert rounded(reference_funnel(made, ["a", "b"], window=w)) == rounded(expected)
    assert rounded(sql_funnel(engine, made, ["a", "b"], window=w)) == rounded(expected)


def test_a_start_in_an_earlier_bucket_counts_beside_one_at_the_same_instant(
    engine: DuckDBEngine,
) -> None:
    """Steps a, b, a in a 1-minute window (time buckets of about 8.6 s on the fast path).
    u1: a at 0 s, then a and b both at 10 s. From the a at 0 s: b (10 s), then the a at
    10 s as step 2 (0 s after b): all three steps. From the a at 10 s: b, but no other a
    after it. The start in an earlier bucket is found though a start shares b's instant."""
    events = make_events(
        [
            ("u1", "a", T0),
            ("u1", "a", T0 + timedelta(seconds=10)),
            ("u1", "b", T0 + timedelta(seconds=10)),
        ]
    )
    steps, window = ["a", "b", "a"], timedelta(minutes=1)
    expected = {"steps": rows(steps, [1, 1, 1], {1: [10.0], 2: [0.0]})}
    assert rounded(reference_funnel(events, steps, window=window)) == rounded(expected)
    assert rounded(sql_funnel(engine, events, steps, window=window)) == rounded(expected)


def test_the_expected_rows_are_plain_arithmetic() -> None:
    """The `rows` helper the table leans on, against a row written out by hand."""
    assert rows(["a", "b", "c"], [4, 2, 0], {1: [10.0, 30.0]}) == [
        {
            "event": "a",
            "count": 4,
            "conversion_from_previous": 1.0,
            "conversion_from_start": 1.0,
            "drop_off": 0,
            "avg_time_s": None,
            "median_time_s": None,
        },
        {
            "event": "b",
            "count": 2,
            "conversion_from_previous": 0.5,
            "conversion_from_start": 0.5,
            "drop_off": 2,
            "avg_time_s": 20.0,
            "median_time_s": 20.0,
        },
        {
            "event": "c",
            "count": 0,
            "conversion_from_previous": 0.0,
            "conversion_from_start": 0.0,
            "drop_off": 2,
            "avg_time_s": None,
            "median_time_s": None,
        },
    ]


# ---------------------------------------------------------------- input errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1s", timedelta(seconds=1)),
        ("90m", timedelta(minutes=90)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(days=14)),
        ("1mo", timedelta(days=30)),
        (" 3 mo ", timedelta(days=90)),
    ],
)
def test_parse_duration_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "7", "d", "0d", "-1d", "1.5h", "7x", "7 days", "7dd", "mo", "1M", "7d;"]
)
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(MetricsInputError, match="window"):
        parse_duration(text)


def test_a_window_past_the_engines_range_is_refused_as_too_long(engine: DuckDBEngine) -> None:
    """A window must keep an event's time plus the window a timestamp every engine holds
    (DuckDB refused `interval 604799993952000 second`, beyond its 64-bit microseconds)."""
    assert parse_duration(f"{MAX_WINDOW_DAYS}d") == timedelta(days=MAX_WINDOW_DAYS)
    for text in (f"{MAX_WINDOW_DAYS + 1}d", "99999999w", "999999999999999999999d"):
        with pytest.raises(MetricsInputError, match=f"too long .at most {MAX_WINDOW_DAYS:,} days"):
            parse_duration(text)
    with pytest.raises(MetricsInputError, match="too long"):
        funnel(engine, ["a", "b"], window=timedelta(days=MAX_WINDOW_DAYS + 1))


@pytest.mark.parametrize(
    "options",
    [{"order": "ordered"}, {"order": "strict"}, {"order": "unordered"}, {"exclude": [("x", 0, 1)]}],
    ids=["ordered", "strict", "unordered", "exclusion"],
)
def test_the_longest_window_runs_on_the_engine(
    engine: DuckDBEngine, options: dict[str, Any]
) -> None:
    events = make_events([("u1", "a", 0), ("u1", "b", 10), ("u2", "a", 5), ("u2", "x", 6)])
    window = timedelta(days=MAX_WINDOW_DAYS)
    got = sql_funnel(engine, events, ["a", "b"], window=window, per="day", **options)
    expected = reference_funnel(events, ["a", "b"], window=window, per="day", **options)
    assert rounded(got) == rounded(expected)
    assert got["steps"][1]["count"] == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x:0:1", Exclusion("x", 0, 1)),
        ("a:b:1:2", Exclusion("a:b", 1, 2)),  # the event name may hold colons
        ("it's; $x:0:3", Exclusion("it's; $x", 0, 3)),
    ],
)
def test_exclusion_parse(text: str, expected: Exclusion) -> None:
    assert Exclusion.parse(text) == expected


@pytest.mark.parametrize("text", ["x", "x:1", ":0:1", "x:a:1", "x:0:b", "x:-1:2", "x::1", "x:0:"])
def test_exclusion_parse_refuses(text: str) -> None:
    with pytest.raises(MetricsInputError, match="--exclude"):
        Exclusion.parse(text)


@pytest.mark.parametrize("exclusion", [("x", 1, 1), ("x", 2, 1), ("x", 0, 3)])
def test_funnel_refuses_exclusion_steps_out_of_range(
    exclusion: tuple[str, int, int], engine: DuckDBEngine
) -> None:
    """docs/funnels.md: 0 <= FROM < TO <= n-1 (here n = 3)."""
    with pytest.raises(MetricsInputError):
        sql_funnel(engine, make_events([("u1", "a", 0)]), ABC, exclude=[exclusion])


def test_unordered_exclusion_to_a_repeated_step_name_is_refused(engine: DuckDBEngine) -> None:
    """docs/funnels.md: in an unordered funnel FROM and TO must each be the first step
    with their event name (the SQL matches first occurrences only); the reference knows
    the general rule, so this case stays worked out for when the SQL learns it.
    Steps a,b,a with x:1:2, window 10m: step 2 is the second "a" matched in the window.
    u1 a0 b1 x2 a3: FROM b1, TO a3, x2 between: removed. u2 a0 b1 a3 x4: kept, sorted
    times 0, 1, 3: 1 min, 2 min."""
    events = make_events(
        [
            ("u1", "a", 0), ("u1", "b", 1), ("u1", "x", 2), ("u1", "a", 3),
            ("u2", "a", 0), ("u2", "b", 1), ("u2", "a", 3), ("u2", "x", 4),
        ]
    )  # fmt: skip
    options: dict[str, Any] = {
        "order": "unordered", "exclude": [("x", 1, 2)], "window": timedelta(minutes=10)
    }  # fmt: skip
    expected = {"steps": rows(["a", "b", "a"], [1, 1, 1], {1: [MIN], 2: [2 * MIN]})}
    assert rounded(reference_funnel(events, ["a", "b", "a"], **options)) == rounded(expected)
    with pytest.raises(MetricsInputError, match="first step with their event name"):
        sql_funnel(engine, events, ["a", "b", "a"], **options)
