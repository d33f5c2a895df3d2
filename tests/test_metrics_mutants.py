"""Hand-worked cases that pin behaviour the other metrics tests left loose (each was
found by breaking the code on purpose and seeing every other test still pass). Times are
minutes after T0 = Monday 2026-03-02 00:00 UTC, as in tests/test_funnel_rules.py."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from productlens.engines import DuckDBEngine
from productlens.metrics.retention import RetentionSpec, cohort_query
from productlens.metrics.scope import EventsSpec, MetricsInputError, Scope, scoped_events
from tests.funnel_reference import reference_funnel
from tests.metrics_events import load as load_activity
from tests.test_activity import day_events
from tests.test_activity import run as run_activity
from tests.test_funnel_rules import MIN, T0, make_events, rounded, rows, sql_funnel
from tests.test_metrics_scope import load
from tests.test_retention import ev
from tests.test_retention import load as load_retention

ABC = ["a", "b", "c"]


def test_a_start_at_a_step1_instant_does_not_reach_for_the_next_one(engine: DuckDBEngine) -> None:
    # Steps a, b, c. u1 a0 b0 b5 c6: from a0, b is the b at the same instant (0 s), then
    # c at 6 (6 min); the b at 5 is not step 1 of a0's attempt. u2 the same with the rows
    # listed backwards, u3 with the c at the b's instant 5 (still 0 s, then 5 min).
    events = make_events(
        [
            ("u1", "a", 0),
            ("u1", "b", 0),
            ("u1", "b", 5),
            ("u1", "c", 6),
            ("u2", "c", 6),
            ("u2", "b", 5),
            ("u2", "b", 0),
            ("u2", "a", 0),
            ("u3", "a", 0),
            ("u3", "b", 0),
            ("u3", "b", 5),
            ("u3", "c", 5),
        ]
    )
    expected = {"steps": rows(ABC, [3, 3, 3], {1: [0.0, 0.0, 0.0], 2: [6 * MIN, 6 * MIN, 5 * MIN]})}
    assert rounded(reference_funnel(events, ABC)) == rounded(expected)
    assert rounded(sql_funnel(engine, events, ABC)) == rounded(expected)
    # The same start also reaches c through the b at 5, with the same times after step 1:
    # a tie in the ranking of attempts that only a wrong attempt would create. 300 users
    # of u1's shape, so that no arbitrary order of ties can pass by chance.
    many = make_events(
        [
            (f"v{i:03d}", kind, when)
            for i in range(300)
            for kind, when in (("a", 0), ("b", 0), ("b", 5), ("c", 6))
        ]
    )
    expected = {"steps": rows(ABC, [300] * 3, {1: [0.0] * 300, 2: [6 * MIN] * 300})}
    assert rounded(sql_funnel(engine, many, ABC)) == rounded(expected)


def test_a_later_step_exactly_at_the_window_end_converts(engine: DuckDBEngine) -> None:
    # Steps a, b, c, window 10 min (inclusive). u1 a0 b5 c10: c at exactly 0 + 10: step
    # 2, 5 min after b. u2 a0 b5 c at 10 min + 1 µs: past the window, step 1 (5 min).
    # The same for ordered (the fast path), ordered with a never-seen exclusion (the
    # general path) and strict funnels.
    past = T0 + timedelta(minutes=10, microseconds=1)
    events = make_events(
        [
            ("u1", "a", 0),
            ("u1", "b", 5),
            ("u1", "c", 10),
            ("u2", "a", 0),
            ("u2", "b", 5),
            ("u2", "c", past),
        ]
    )
    expected = {"steps": rows(ABC, [2, 2, 1], {1: [5 * MIN, 5 * MIN], 2: [5 * MIN]})}
    window = timedelta(minutes=10)
    cases: list[dict[str, Any]] = [{}, {"exclude": [("zzz", 0, 2)]}, {"order": "strict"}]
    for options in cases:
        assert rounded(sql_funnel(engine, events, ABC, window=window, **options)) == rounded(
            expected
        ), options


def test_a_repeated_later_step_needs_its_own_occurrence(engine: DuckDBEngine) -> None:
    # Steps a, b, a (first two differ: the fast ordered path). u1 a0 b0 a5: the a at 0 is
    # step 0, so step 2 is the a at 5 (b after 0 s, a 5 min later). u2 a0 b0: one a only:
    # step 1. u3 a0 a0 b0: two a at 0, step 2 is the other one (0 s, 0 s).
    aba = ["a", "b", "a"]
    events = make_events(
        [
            ("u1", "a", 0),
            ("u1", "b", 0),
            ("u1", "a", 5),
            ("u2", "a", 0),
            ("u2", "b", 0),
            ("u3", "a", 0),
            ("u3", "a", 0),
            ("u3", "b", 0),
        ]
    )
    expected = {"steps": rows(aba, [3, 3, 2], {1: [0.0] * 3, 2: [5 * MIN, 0.0]})}
    assert rounded(reference_funnel(events, aba)) == rounded(expected)
    assert rounded(sql_funnel(engine, events, aba)) == rounded(expected)


def test_the_range_ends_are_exact_to_the_microsecond(engine: DuckDBEngine) -> None:
    # --from/--to 2026-03-08 in Los Angeles (the day DST starts): [08:00 UTC, 07:00 UTC
    # next day). a is the first instant (in), b the last microsecond (in), c the next
    # local midnight (out), z a microsecond before the start (out). No filters, so only
    # the range decides.
    us = timedelta(microseconds=1)
    start, end = datetime(2026, 3, 8, 8), datetime(2026, 3, 9, 7)
    load(
        engine,
        pa.table(
            {
                "event_ts": pa.array([start, end - us, end, start - us], pa.timestamp("us")),
                "event_type": ["a", "b", "c", "z"],
                "device": [None] * 4,
                "properties": [None] * 4,
            }
        ),
    )
    spec = EventsSpec(columns=("event_type",))

    def kinds(scope: Scope) -> list[str]:
        return sorted(r[0] for r in engine.fetch_all(scoped_events(scope, spec)))

    zone = "America/Los_Angeles"
    assert kinds(Scope.parse(timezone=zone, date_from="2026-03-08", date_to="2026-03-08")) == [
        "a", "b",
    ]  # fmt: skip
    # An instant --to is inclusive: b, at exactly that instant, is in; c is out.
    last = (end - us).isoformat() + "+00:00"
    assert kinds(Scope.parse(timezone=zone, date_to=last)) == ["a", "b", "z"]


def test_attempts_sharing_a_step1_instant_keep_their_own_chain(engine: DuckDBEngine) -> None:
    # Steps a, b, a. u1 a0 a5 b5: the attempt from a5 takes b5 at its own instant, so its
    # step 2 needs another a after 5: none, step 1. The attempt from a0 reaches b5 later
    # and may use a5 as step 2: 5 min, then 0 s. Reported: a0's attempt. The same with a
    # never-seen exclusion (the general ordered path, which shares chains by (t1, f1)).
    aba = ["a", "b", "a"]
    events = make_events([("u1", "a", 0), ("u1", "a", 5), ("u1", "b", 5)])
    expected = {"steps": rows(aba, [1, 1, 1], {1: [5 * MIN], 2: [0.0]})}
    assert rounded(reference_funnel(events, aba)) == rounded(expected)
    cases: list[dict[str, Any]] = [{}, {"exclude": [("zzz", 0, 2)]}]
    for options in cases:
        got = sql_funnel(engine, events, aba, **options)
        assert rounded(got) == rounded(expected), options


def test_cohort_query_has_one_period_0_row_per_cohort(engine: DuckDBEngine) -> None:
    # Daily retention, start "a", return any event. u1 a and b on 03-02, b on 03-03;
    # u2 a on 03-02 only. Cohort 03-02 has 2 users; period 0 holds that size (a return
    # in the start's own period is not a return), period 1 has u1. The long form (what
    # the retention_cohorts mart stores) has exactly these two rows.
    load_retention(
        engine,
        [
            ev("u1", "a", "2026-03-02T10:00"), ev("u1", "b", "2026-03-02T11:00"),
            ev("u1", "b", "2026-03-03T10:00"), ev("u2", "a", "2026-03-02T09:00"),
        ],
        {"u1": None, "u2": None},
    )  # fmt: skip
    query = cohort_query(Scope(), RetentionSpec(start="a", period="day"))
    got = sorted(engine.fetch_all(query))
    day = date(2026, 3, 2)
    assert got == [(day, 0, 2, 2), (day, 1, 2, 1)]


def test_touch_attribution_breaks_ties_by_event_id(engine: DuckDBEngine) -> None:
    # Steps a, b; u1 a and b both at minute 0 with devices "ios" (id e2) and "web" (id
    # e1): first touch is the smallest id at the earliest instant, "web"; last touch the
    # largest id at the latest instant, "ios". One unit, 2 steps, 0 s.
    ab = ["a", "b"]
    events = make_events(
        [
            ("u1", "a", 0, {"device": "ios", "event_id": "e2"}),
            ("u1", "b", 0, {"device": "web", "event_id": "e1"}),
        ]
    )
    steps = rows(ab, [1, 1], {1: [0.0]})
    for attribution, bucket in (("first_touch", "web"), ("last_touch", "ios")):
        expected = {"steps": steps, "breakdown": {bucket: {"steps": steps}}}
        options: dict[str, Any] = {"by": "device", "attribution": attribution}
        assert rounded(reference_funnel(events, ab, **options)) == rounded(expected)
        assert rounded(sql_funnel(engine, events, ab, **options)) == rounded(expected)


def test_unordered_step_0_attribution_of_a_unit_at_step_0(engine: DuckDBEngine) -> None:
    # Unordered a, b by device, step:0. u1 a0 "ios" alone: reaches step 0 only, and its
    # step-0 occurrence is that a: bucket "ios". u2 a0 "tv" b1: 2 steps (1 min), "tv".
    ab = ["a", "b"]
    events = make_events(
        [("u1", "a", 0, {"device": "ios"}), ("u2", "a", 0, {"device": "tv"}), ("u2", "b", 1)]
    )
    options: dict[str, Any] = {"order": "unordered", "by": "device", "attribution": "step:0"}
    expected = {
        "steps": rows(ab, [2, 1], {1: [MIN]}),
        "breakdown": {
            "ios": {"steps": rows(ab, [1, 0])},
            "tv": {"steps": rows(ab, [1, 1], {1: [MIN]})},
        },
    }
    assert rounded(reference_funnel(events, ab, **options)) == rounded(expected)
    assert rounded(sql_funnel(engine, events, ab, **options)) == rounded(expected)


def test_strict_chains_in_one_state_keep_the_earliest_times(engine: DuckDBEngine) -> None:
    # Strict a, x, x, b. u1 a0 x0 x1 x1 b2: two chains reach b2 from a0, (x0, x1) and
    # (x1, x1); the earliest times are kept: step 1 after 0 s, step 2 after 1 min, step 3
    # after 1 min.
    axxb = ["a", "x", "x", "b"]
    events = make_events(
        [("u1", "a", 0), ("u1", "x", 0), ("u1", "x", 1), ("u1", "x", 1), ("u1", "b", 2)]
    )
    expected = {"steps": rows(axxb, [1, 1, 1, 1], {1: [0.0], 2: [MIN], 3: [MIN]})}
    assert rounded(reference_funnel(events, axxb, order="strict")) == rounded(expected)
    assert rounded(sql_funnel(engine, events, axxb, order="strict")) == rounded(expected)


def test_activity_windows_continue_across_a_gap_of_exactly_their_length(
    engine: DuckDBEngine,
) -> None:
    # u1 active on D (Monday 2 March), D + 7 and D + 37. On D + 7 the week D+1..D+7 holds
    # only D + 7: WAU 1 (not 2: D's week ended the day before, and not 0). On D + 37 the
    # 30 days D+8..D+37 hold only D + 37: MAU 1; on D + 36 they hold D + 7: MAU 1.
    d = date(2026, 3, 2)
    load_activity(engine, day_events("u1", d, d + timedelta(7), d + timedelta(37)))
    days = {x["date"]: (x["dau"], x["wau"], x["mau"]) for x in run_activity(engine)["days"]}
    assert days[(d + timedelta(6)).isoformat()] == (0, 1, 1)
    assert days[(d + timedelta(7)).isoformat()] == (1, 1, 1)
    assert days[(d + timedelta(8)).isoformat()] == (0, 1, 1)
    assert days[(d + timedelta(36)).isoformat()] == (0, 0, 1)
    assert days[(d + timedelta(37)).isoformat()] == (1, 1, 1)
    assert len(days) == 38


def test_unordered_times_use_each_names_earliest_occurrences(engine: DuckDBEngine) -> None:
    # Unordered a, b, window 10 min. u1 a0 b1 b2: the window from 0 holds a0 and b's
    # earliest occurrence b1: step 1 after 1 min (not b2's 2 min). u2 b0 a3 a5: b0 then
    # a3: 3 min.
    ab = ["a", "b"]
    events = make_events(
        [
            ("u1", "a", 0), ("u1", "b", 1), ("u1", "b", 2),
            ("u2", "b", 0), ("u2", "a", 3), ("u2", "a", 5),
        ]
    )  # fmt: skip
    options: dict[str, Any] = {"order": "unordered", "window": timedelta(minutes=10)}
    expected = {"steps": rows(ab, [2, 2], {1: [MIN, 3 * MIN]})}
    assert rounded(reference_funnel(events, ab, **options)) == rounded(expected)
    assert rounded(sql_funnel(engine, events, ab, **options)) == rounded(expected)


def test_a_zero_window_is_refused(engine: DuckDBEngine) -> None:
    # The window must be positive: 0 s would silently convert nobody past step 0.
    events = make_events([("u1", "a", 0), ("u1", "b", 0)])
    with pytest.raises(MetricsInputError, match="positive"):
        sql_funnel(engine, events, ["a", "b"], window=timedelta(0))
