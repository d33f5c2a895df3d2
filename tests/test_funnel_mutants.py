"""The ordered funnel's fast path (`_ordered_fast_ctes`, `_start_ctes`,
`_first_step_ctes` and DuckDB's `arg_min` pick in productlens.metrics.funnel_sql) against
cases a mutation pass found no test for: each fails when one small wrong change is made
to that SQL (a bound, a join key, the f rule, a period's previous step 1, the pick).

- The portable pick (`funnel_query` without `duckdb=True`: the marts, PostgreSQL and
  Spark) over the fast path's attempts, run here on DuckDB (`funnel()` on DuckDB uses
  DuckDB's own pick): against the brute-force reference on random data, and on every
  hand-worked fast-path case of this file and of tests/test_funnel_rules.py.
- Hand-worked cases in the style of tests/test_funnel_rules.py (times are minutes after
  T0 = Monday 2026-03-02 00:00 UTC; event ids follow the listed order): the reference
  and `funnel()` both give the result worked out in each case's comment.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import assume, given, settings
from sqlglot import exp

from productlens.engines import DuckDBEngine
from productlens.metrics import funnel as funnel_module
from productlens.metrics.funnel_sql import FunnelSpec, _buckets, funnel_query
from productlens.metrics.scope import Scope
from tests.funnel_reference import reference_funnel
from tests.test_funnel_properties import funnel_inputs, to_events
from tests.test_funnel_rules import ABC, MIN, T0, Case, make_events, rounded, rows, sql_funnel
from tests.test_funnel_rules import CASES as RULE_CASES


def _portable(scope: Scope, spec: FunnelSpec, day_index: bool = False) -> exp.Query:
    """What funnel() asks `_duckdb_query` for on DuckDB, with the portable pick (and
    without the day index, which only DuckDB's query reads)."""
    return funnel_query(scope, spec)


@settings(max_examples=15, deadline=None)
@given(inputs=funnel_inputs())
def test_portable_pick_over_the_fast_path_equals_reference(
    shared_engine: DuckDBEngine, inputs: tuple[list[Any], list[str], dict[str, Any]]
) -> None:
    """Ordered funnels without exclusions whose first two steps differ (the fast path),
    counted by the portable pick (`best`/`cand`/`ranked`/`picked`) instead of DuckDB's
    `arg_min`, with periods, sessions and breakdowns."""
    rows_, steps, options = inputs
    assume(steps[0] != steps[1])
    options = {**options, "exclude": []}
    events = to_events(rows_)
    expected = reference_funnel(events, steps, **options)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(funnel_module, "_duckdb_query", _portable)
        got = sql_funnel(shared_engine, events, steps, **options)
    assert rounded(got) == rounded(expected)


US = timedelta(microseconds=1)
MINUTE = timedelta(minutes=1)
T0_10M = T0 + 10 * MINUTE


def _bucket_start(window: timedelta) -> datetime:
    """The first instant of the fast path's first time bucket after T0 (buckets of
    `_buckets(window)` microseconds counted from 2000-01-01)."""
    width, _ = _buckets(int(window.total_seconds()))
    epoch = datetime(2000, 1, 1)
    return epoch + ((T0 - epoch) // US // width + 1) * width * US


B_1H = _bucket_start(timedelta(hours=1))

CASES = [
    # The window bounds every later step, boundary inclusive, not only step 1. Steps a, b,
    # c, window 10m. u1 a0 b5 c10: c exactly one window after a: 2 (5 min, 5 min).
    # u2 a0 b5, c 1 us past the window: 1 (5 min).
    Case(
        "a_later_step_exactly_one_window_after_the_start_converts",
        [
            ("u1", "a", 0), ("u1", "b", 5), ("u1", "c", 10),
            ("u2", "a", 0), ("u2", "b", 5), ("u2", "c", T0_10M + US),
        ],
        ["a", "b", "c"],
        {"steps": rows(["a", "b", "c"], [2, 2, 1], {1: [5 * MIN, 5 * MIN], 2: [5 * MIN]})},
        {"window": timedelta(minutes=10)},
    ),
    # step:0 of a unit that stops at step 0 is the value on its earliest start (the
    # reporting attempt of step 0 is the one with the earliest t_0). Steps a, b.
    # u1 a0 (ios), a5 (web), no b: 0, bucket ios. u2 a0 (web) b1: 1 (1 min), bucket web.
    Case(
        "step_0_of_a_unit_stopping_at_step_0_is_its_earliest_start",
        [
            ("u1", "a", 0, {"device": "ios"}), ("u1", "a", 5, {"device": "web"}),
            ("u2", "a", 0, {"device": "web"}), ("u2", "b", 1),
        ],
        ["a", "b"],
        {
            "steps": rows(["a", "b"], [2, 1], {1: [MIN]}),
            "breakdown": {
                "ios": {"steps": rows(["a", "b"], [1, 0])},
                "web": {"steps": rows(["a", "b"], [1, 1], {1: [MIN]})},
            },
        },
        {"by": "device", "attribution": "step:0"},
    ),
    # Several occurrences of a later step's name at one instant each fill a step. Steps
    # a, b, b. u1 a0 b1 b1: both b at minute 1: 2 (1 min, 0 s). u2 a0 b1: 1 (1 min).
    Case(
        "two_occurrences_at_one_instant_fill_two_later_steps",
        [("u1", "a", 0), ("u1", "b", 1), ("u1", "b", 1), ("u2", "a", 0), ("u2", "b", 1)],
        ["a", "b", "b"],
        {"steps": rows(["a", "b", "b"], [2, 2, 1], {1: [MIN, MIN], 2: [0.0]})},
    ),
    # Which occurrences a step used at an instant carries through a step of another name
    # at that instant, and not past a later instant. Steps a, b, c, b.
    # u1 a0 b1 c1: c at b's instant; the only b is used by step 1: 2 (1 min, 0 s).
    # u2 a0 b1 c2 b2: c at a later instant, where nothing is used yet: the b at 2 fills
    # step 3: 3 (1 min, 1 min, 0 s).
    Case(
        "used_occurrences_follow_the_chain_through_another_name",
        [
            ("u1", "a", 0), ("u1", "b", 1), ("u1", "c", 1),
            ("u2", "a", 0), ("u2", "b", 1), ("u2", "c", 2), ("u2", "b", 2),
        ],
        ["a", "b", "c", "b"],
        {
            "steps": rows(
                ["a", "b", "c", "b"], [2, 2, 2, 1], {1: [MIN, MIN], 2: [0.0, MIN], 3: [0.0]}
            )
        },
    ),
    # A trend's attempts: each start has one attempt, whose step 1 is the earliest after
    # it; a later step-1 instant does not start a second attempt from the same start.
    # Steps a, b, c, window 1h, per day (UTC). u1 a0 b0 b5 c6: b0 (0 s), c6 (6 min).
    # u2 a0 b1 b5 c6: b1 (1 min), c6 (5 min). (From a0 with b5 as step 1, c6 would be as
    # early: times 5 and 1 min, but that chain is not the attempt.) One period, 03-02,
    # not complete (00:00 next day + 1h is after the last event).
    Case(
        "trend_a_start_keeps_its_earliest_step_1",
        [
            ("u1", "a", 0), ("u1", "b", 0), ("u1", "b", 5), ("u1", "c", 6),
            ("u2", "a", 0), ("u2", "b", 1), ("u2", "b", 5), ("u2", "c", 6),
        ],
        ABC,
        {
            "steps": rows(ABC, [2, 2, 2], {1: [0.0, MIN], 2: [6 * MIN, 5 * MIN]}),
            "trend": [
                {
                    "period": "2026-03-02",
                    "complete": False,
                    "steps": rows(ABC, [2, 2, 2], {1: [0.0, MIN], 2: [6 * MIN, 5 * MIN]}),
                }
            ],
        },
        {"per": "day", "window": timedelta(hours=1)},
    ),
    # A trend's attempt whose start comes before its step 1 has used no occurrence at
    # step 1's instant but step 1's. Steps a, b, a, window 1h, per day (UTC).
    # u1 a0 a1 b1: from a0, b1 (1 min), then the a at 1, unused (0 s): 2. One period,
    # 03-02, not complete.
    Case(
        "trend_a_start_before_step_1_leaves_the_instants_other_names_unused",
        [("u1", "a", 0), ("u1", "a", 1), ("u1", "b", 1)],
        ["a", "b", "a"],
        {
            "steps": rows(["a", "b", "a"], [1, 1, 1], {1: [MIN], 2: [0.0]}),
            "trend": [
                {
                    "period": "2026-03-02",
                    "complete": False,
                    "steps": rows(["a", "b", "a"], [1, 1, 1], {1: [MIN], 2: [0.0]}),
                }
            ],
        },
        {"per": "day", "window": timedelta(hours=1)},
    ),
    # Per session, every step is looked up in the unit's own session. Steps a, b, c,
    # window 1h, per session, per day (UTC). u1 s1: a0 b1: 1 (1 min); the c3 of s2 is
    # not s1's. u1 s2: b2 c3, no a: not in the funnel. One period, 03-02, not complete.
    Case(
        "per_session_later_steps_come_from_the_same_session",
        [
            ("u1", "a", 0, {"session_id": "s1"}), ("u1", "b", 1, {"session_id": "s1"}),
            ("u1", "b", 2, {"session_id": "s2"}), ("u1", "c", 3, {"session_id": "s2"}),
        ],
        ABC,
        {
            "steps": rows(ABC, [1, 1, 0], {1: [MIN]}),
            "trend": [
                {
                    "period": "2026-03-02",
                    "complete": False,
                    "steps": rows(ABC, [1, 1, 0], {1: [MIN]}),
                }
            ],
        },
        {"count_by": "session", "per": "day", "window": timedelta(hours=1)},
    ),
    # Per session, a step-1 instant with no start before it in its own time bucket looks
    # further back even when another session of the user has one there. Window 1h (time
    # buckets of about 8.6 min on the fast path); B is the first instant of a bucket.
    # u1 s1: a B+1m, b B+2m: 1 (1 min). u1 s2: a B-1m (the bucket before), b B+2m:
    # 1 (3 min).
    Case(
        "per_session_a_start_in_an_earlier_bucket_is_found_beside_another_sessions",
        [
            ("u1", "a", B_1H + MINUTE, {"session_id": "s1"}),
            ("u1", "b", B_1H + 2 * MINUTE, {"session_id": "s1"}),
            ("u1", "a", B_1H - MINUTE, {"session_id": "s2"}),
            ("u1", "b", B_1H + 2 * MINUTE, {"session_id": "s2"}),
        ],
        ["a", "b"],
        {"steps": rows(["a", "b"], [2, 2], {1: [MIN, 3 * MIN]})},
        {"count_by": "session", "window": timedelta(hours=1)},
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hand_worked_fast_path_case(case: Case, shared_engine: DuckDBEngine) -> None:
    """The reference and `funnel()` (DuckDB's pick) give the hand-worked result."""
    events = make_events(case.events)
    expected = rounded(case.expected)
    assert rounded(reference_funnel(events, case.steps, **case.options)) == expected
    assert rounded(sql_funnel(shared_engine, events, case.steps, **case.options)) == expected


def _fast(case: Case) -> bool:
    """Whether the case's funnel takes the ordered fast path."""
    ordered = case.options.get("order", "ordered") == "ordered"
    return ordered and not case.options.get("exclude") and case.steps[0] != case.steps[1]


FAST_CASES = [c for c in [*RULE_CASES, *CASES] if _fast(c)]


@pytest.mark.parametrize("case", FAST_CASES, ids=lambda c: c.name)
def test_portable_pick_gives_the_hand_worked_result(
    case: Case, shared_engine: DuckDBEngine
) -> None:
    """Every hand-worked case on the fast path (these and tests/test_funnel_rules.py's),
    counted by the portable pick."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(funnel_module, "_duckdb_query", _portable)
        got = sql_funnel(shared_engine, make_events(case.events), case.steps, **case.options)
    assert rounded(got) == rounded(case.expected)


def test_the_table_holds_fast_path_cases_of_every_kind() -> None:
    """The portable pick meets trends, breakdowns, sessions and later repeated names."""
    assert len(FAST_CASES) >= 20
    for option in ("per", "by", "count_by"):
        assert any(option in c.options for c in FAST_CASES), option
    assert any(len(set(c.steps)) < len(c.steps) for c in FAST_CASES)
