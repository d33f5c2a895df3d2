"""Funnel properties on random small data: few users and few instants (many ties),
repeated step names, non-step events between steps, exclusions.

- `funnel()` equals the brute-force reference (tests/funnel_reference.py) for every order
  and attribution, with and without exclusions, per day/week, per session, in UTC and
  in America/Los_Angeles (the instants straddle a local midnight, a week start and the
  2026-03-08 DST change there).
- Counts never rise along the steps; strict <= ordered <= unordered on every step.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from productlens.engines import DuckDBEngine
from tests.funnel_reference import reference_funnel
from tests.test_funnel_rules import make_events, rounded, sql_funnel

# 2026-03-08 07:30 UTC is Saturday 23:30 PST in Los Angeles; an hour later is Sunday
# (a Sunday week starts), and DST begins at 02:00 local. Offsets in minutes.
BASE = datetime(2026, 3, 8, 7, 30)
INSTANTS = [0, 1, 2, 3, 10, 60, 60 + 11 * 60, 24 * 60 + 1, 7 * 24 * 60]
WINDOWS = [timedelta(minutes=m) for m in (1, 2, 10, 60, 24 * 60)] + [timedelta(days=14)]
STEP_NAMES = ["a", "b", "c"]
OTHER_NAMES = ["x", "y"]  # x may be excluded; both break strict chains

event = st.tuples(
    st.sampled_from(["u1", "u2", "u3"]),
    st.sampled_from(STEP_NAMES + STEP_NAMES + OTHER_NAMES),  # steps twice as likely
    st.sampled_from(INSTANTS),
    st.fixed_dictionaries(
        {
            "session_id": st.sampled_from(["s1", "s2", None]),
            "device": st.sampled_from([None, "ios", "web"]),
        },
        optional={"plan": st.sampled_from([None, "free", "pro", 0, 1])},
    ),
)
events_strategy = st.lists(event, min_size=1, max_size=18).map(
    lambda rows: make_events(
        [(u, k, BASE + timedelta(minutes=m), extra) for u, k, m, extra in rows]
    )
)
steps_strategy = st.lists(st.sampled_from(STEP_NAMES), min_size=2, max_size=4)


@st.composite
def exclusions(draw: st.DrawFn, n_steps: int) -> list[tuple[str, int, int]]:
    if not draw(st.booleans()):
        return []
    first = draw(st.integers(0, n_steps - 2))
    return [("x", first, draw(st.integers(first + 1, n_steps - 1)))]


@st.composite
def breakdowns(draw: st.DrawFn, n_steps: int) -> dict[str, Any]:
    attribution = draw(
        st.sampled_from([None, "first_touch", "last_touch", *[f"step:{k}" for k in range(n_steps)]])
    )
    if attribution is None:
        return {}
    return {"by": draw(st.sampled_from(["device", "plan"])), "attribution": attribution}


@pytest.fixture(scope="module")
def shared_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBEngine]:
    """One engine for every example (hypothesis runs many inside one test)."""
    path = Path(tmp_path_factory.mktemp("funnel_properties")) / "w.duckdb"
    eng = DuckDBEngine(path, memory_limit="1GB", threads=1)
    yield eng
    eng.close()


@pytest.mark.parametrize("order", ["ordered", "strict", "unordered"])
@settings(max_examples=60, deadline=None)
@given(data=st.data(), events=events_strategy, steps=steps_strategy)
def test_funnel_equals_reference(
    shared_engine: DuckDBEngine,
    order: str,
    data: st.DataObject,
    events: list[dict[str, Any]],
    steps: list[str],
) -> None:
    options: dict[str, Any] = {
        "order": order,
        "window": data.draw(st.sampled_from(WINDOWS), label="window"),
        "exclude": data.draw(exclusions(len(steps)), label="exclude"),
        "per": data.draw(st.sampled_from([None, "day", "week"]), label="per"),
        "count_by": data.draw(st.sampled_from(["user", "session"]), label="count_by"),
        "timezone": data.draw(st.sampled_from(["UTC", "America/Los_Angeles"]), label="zone"),
        "week_start": data.draw(st.sampled_from(["monday", "sunday"]), label="week_start"),
        **data.draw(breakdowns(len(steps)), label="breakdown"),
    }
    expected = reference_funnel(events, steps, **options)
    assert rounded(sql_funnel(shared_engine, events, steps, **options)) == rounded(expected)


ORDERS = ("strict", "ordered", "unordered")


def assert_counts_ordered(counts: dict[str, list[int]]) -> None:
    """Counts never rise along the steps; strict <= ordered <= unordered on each step.
    (Without exclusions: a strict chain is an ordered match, and an ordered attempt's
    steps all lie in the unordered window starting at its t_0.)"""
    for order, row in counts.items():
        assert all(a >= b for a, b in pairwise(row)), (order, row)
    for k in range(len(counts["ordered"])):
        assert counts["strict"][k] <= counts["ordered"][k] <= counts["unordered"][k], (k, counts)


@settings(max_examples=60, deadline=None)
@given(
    events=events_strategy,
    steps=steps_strategy,
    window=st.sampled_from(WINDOWS),
    count_by=st.sampled_from(["user", "session"]),
)
def test_counts_fall_along_steps_and_strict_le_ordered_le_unordered(
    shared_engine: DuckDBEngine,
    events: list[dict[str, Any]],
    steps: list[str],
    window: timedelta,
    count_by: str,
) -> None:
    options: dict[str, Any] = {"window": window, "count_by": count_by}
    assert_counts_ordered(
        {
            order: [
                s["count"]
                for s in sql_funnel(shared_engine, events, steps, order=order, **options)["steps"]
            ]
            for order in ORDERS
        }
    )


@settings(max_examples=100, deadline=None)
@given(
    events=events_strategy,
    steps=steps_strategy,
    window=st.sampled_from(WINDOWS),
    count_by=st.sampled_from(["user", "session"]),
)
def test_reference_counts_fall_along_steps_and_strict_le_ordered_le_unordered(
    events: list[dict[str, Any]], steps: list[str], window: timedelta, count_by: str
) -> None:
    """The same properties of the reference alone (they hold before any SQL exists)."""
    options: dict[str, Any] = {"window": window, "count_by": count_by}
    assert_counts_ordered(
        {
            order: [
                s["count"] for s in reference_funnel(events, steps, order=order, **options)["steps"]
            ]
            for order in ORDERS
        }
    )
