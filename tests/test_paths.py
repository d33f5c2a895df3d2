"""Paths after and before an event against hand-worked cases and a brute-force reference."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from productlens.engines import DuckDBEngine
from productlens.metrics.paths import paths, paths_query
from productlens.metrics.scope import MetricsInputError, Scope
from tests.metrics_events import HOSTILE, Event, assert_portable, load

T0 = datetime(2026, 3, 2, 9)


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def reference(
    events: list[Event], event: str, direction: str, steps: int, top: int,
    device: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Per user: the events in (time, event id) order, the first anchor, its neighbours."""
    ids = {id(e): e.event_id or f"e{i:05d}" for i, e in enumerate(events)}
    by_user: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if device is None or e.device == device:
            by_user[e.user_id].append(e)
    taken: Counter[tuple[str, ...]] = Counter()
    for evs in by_user.values():
        names = [e.event_type for e in sorted(evs, key=lambda e: (e.ts, ids[id(e)]))]
        if event not in names:
            continue
        i = names.index(event)
        if direction == "from":
            taken[tuple(names[i : i + 1 + steps])] += 1
        else:
            taken[tuple(names[max(0, i - steps) : i + 1])] += 1
    users = sum(taken.values())

    def key(item: tuple[tuple[str, ...], int]) -> tuple[Any, ...]:
        path, n = item
        others = path[1:] if direction == "from" else path[:-1][::-1]  # nearest first
        padded = list(others) + [None] * (steps - len(others))
        return (-n, *[(0, "") if x is None else (1, x) for x in padded])

    rows = sorted(taken.items(), key=key)[:top]
    return {
        direction: event,
        "steps": steps,
        "users": users,
        "paths": [{"path": list(p), "count": n, "share": n / users} for p, n in rows],
    }


def run(engine: DuckDBEngine, event: str, direction: str, steps: int = 3, top: int = 10,
        device: str | None = None) -> dict[str, Any]:  # fmt: skip
    scope = Scope.parse(where=[f"device={device}"] if device else [])
    anchor = {"start": event} if direction == "from" else {"end": event}
    return paths(engine, scope=scope, steps=steps, top=top, **anchor).to_dict()


HAND = [
    # u1: view, cart, view, cart, buy; the first view starts its path.
    Event("u1", "view", at(0)), Event("u1", "cart", at(1)), Event("u1", "view", at(2)),
    Event("u1", "cart", at(3)), Event("u1", "buy", at(4)),
    # u2: view and cart at the same instant: event id e00006 < e00007 puts view first.
    Event("u2", "cart", at(0), event_id="e00007"), Event("u2", "view", at(0), event_id="e00006"),
    Event("u2", "buy", at(5)),
    # u3: only a view.
    Event("u3", "view", at(0)),
    # u4: never views.
    Event("u4", "cart", at(0)), Event("u4", "buy", at(1)),
]  # fmt: skip


def test_paths_from_an_event_by_hand(engine: DuckDBEngine) -> None:
    load(engine, HAND)
    got = run(engine, "view", "from", steps=2)
    assert got == {
        "from": "view",
        "steps": 2,
        "users": 3,  # u1, u2, u3
        "paths": [
            # Equal counts: names step by step from the anchor, a path that ends first.
            {"path": ["view"], "count": 1, "share": 1 / 3},  # u3 did nothing after
            # u2's view and cart tie at one instant: event id e00006 puts view first.
            {"path": ["view", "cart", "buy"], "count": 1, "share": 1 / 3},  # u2
            {"path": ["view", "cart", "view"], "count": 1, "share": 1 / 3},  # u1
        ],
    }
    # One step: the next events.
    got = run(engine, "view", "from", steps=1)
    assert [(p["path"], p["count"]) for p in got["paths"]] == [
        (["view", "cart"], 2),
        (["view"], 1),
    ]
    assert run(engine, "view", "from", steps=1, top=1)["paths"] == [
        {"path": ["view", "cart"], "count": 2, "share": 2 / 3}
    ]


def test_paths_into_an_event_by_hand(engine: DuckDBEngine) -> None:
    load(engine, HAND)
    got = run(engine, "buy", "to", steps=2)
    # u1's first buy follows view, cart (view, cart before them fall outside two steps);
    # u2 ties view and cart at one instant (view first by event id); u4: cart, buy.
    assert [(p["path"], p["count"]) for p in got["paths"]] == [
        (["view", "cart", "buy"], 2),
        (["cart", "buy"], 1),
    ]
    assert got["users"] == 3


def test_hostile_event_names_are_data(engine: DuckDBEngine) -> None:
    events = [Event("u1", name, at(i)) for i, name in enumerate(HOSTILE)]
    load(engine, events)
    for i, name in enumerate(HOSTILE[:-1]):
        got = run(engine, name, "from", steps=1)
        assert got["paths"] == [{"path": [name, HOSTILE[i + 1]], "count": 1, "share": 1.0}]


def test_one_anchor_and_positive_sizes_are_required(engine: DuckDBEngine) -> None:
    with pytest.raises(MetricsInputError, match="exactly one"):
        paths(engine, start="a", end="b")
    with pytest.raises(MetricsInputError, match="at least 1"):
        paths(engine, start="a", steps=0)


def test_every_query_shape_transpiles() -> None:
    for direction in ("from", "to"):
        for scope in (Scope(), Scope.parse(date_from="2026-03-01", where=["plan=$'; select"])):
            query = paths_query("it's; DROP", direction, scope, 3, 10)  # type: ignore[arg-type]
            assert_portable(query)


NAMES = ["a", "b", "c", "it's"]
events_strategy = st.lists(
    st.builds(
        Event,
        user_id=st.sampled_from(["u1", "u2", "u3", "u4", "u5"]),
        event_type=st.sampled_from(NAMES),
        ts=st.integers(0, 5).map(at),  # few instants: many ties
        device=st.sampled_from(["web", "ios"]),
    ),
    max_size=40,
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=events_strategy,
    event=st.sampled_from(NAMES),
    direction=st.sampled_from(["from", "to"]),
    steps=st.integers(1, 4),
    top=st.integers(1, 6),
    device=st.sampled_from([None, "web"]),
)
def test_matches_the_brute_force_reference(
    engine: DuckDBEngine,
    events: list[Event],
    event: str,
    direction: str,
    steps: int,
    top: int,
    device: str | None,
) -> None:
    # Event ids out of insertion order, so ties must follow them, not the load order.
    events = [replace(e, event_id=f"x{(i * 37) % 101:03d}") for i, e in enumerate(events)]
    load(engine, events)
    got = run(engine, event, direction, steps, top, device)
    assert got == reference(events, event, direction, steps, top, device)
