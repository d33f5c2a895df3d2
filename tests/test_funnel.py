"""The funnel marts' query (ordered funnel by day of entry, one-day window) against a
hand-checked edge set and a brute-force reference that enumerates attempts literally."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from productlens.engines import DuckDBEngine
from productlens.metrics.funnel import funnel_mart_query
from tests.conftest import q

D1, D2 = date(2026, 3, 2), date(2026, 3, 3)


def at(day: date, minute: int) -> datetime:
    return datetime.combine(day, datetime.min.time()) + timedelta(minutes=minute)


# (user, event_type, time). Ties count as in order; earlier steps after later ones don't.
EDGE_EVENTS = [
    ("u1", "a", at(D1, 10)), ("u1", "b", at(D1, 10)), ("u1", "c", at(D1, 10)),  # all tied: 3
    ("u2", "b", at(D1, 5)), ("u2", "a", at(D1, 10)), ("u2", "c", at(D1, 11)),  # b too early: 1
    ("u3", "a", at(D1, 10)), ("u3", "c", at(D1, 11)), ("u3", "b", at(D1, 12)),
    ("u3", "a", at(D1, 13)),  # c before b: 2
    ("u4", "c", at(D1, 1)),  # never started: 0
    ("u5", "a", at(D1, 10)), ("u5", "b", at(D1, 9)), ("u5", "b", at(D1, 20)),
    ("u5", "c", at(D1, 20)),  # a later b continues the chain: 3
    ("u6", "a", at(D2, 1)), ("u6", "b", at(D2, 2)), ("u6", "c", at(D2, 3)),
    ("u1", "a", at(D2, 5)), ("u1", "x", at(D2, 6)),  # other event types are ignored
]  # fmt: skip


def load_events(engine: DuckDBEngine, rows: list[tuple[str, str, datetime]]) -> None:
    engine.execute(
        q(
            "CREATE OR REPLACE TABLE core.fct_events "
            "(event_id VARCHAR, user_id VARCHAR, event_type VARCHAR, event_ts TIMESTAMP, "
            "event_date DATE)"
        )
    )
    engine.append_arrow(
        "core",
        "fct_events",
        pa.table(
            {
                "event_id": [f"e{i:06d}" for i in range(len(rows))],
                "user_id": [r[0] for r in rows],
                "event_type": [r[1] for r in rows],
                "event_ts": pa.array([r[2] for r in rows], pa.timestamp("us")),
                "event_date": [r[2].date() for r in rows],
            }
        ),
    )


def funnel(engine: DuckDBEngine, steps: list[str]) -> list[tuple[object, ...]]:
    sql = funnel_mart_query(steps, window=timedelta(days=1), per="day").sql("duckdb")
    return engine.fetch_all(
        q(
            "SELECT period, step_no, step_name, n_users, n_users_first_step, "
            "conversion_from_start, "
            f"conversion_from_previous FROM ({sql}) ORDER BY period, step_no"
        )
    )


def test_hand_checked_edge_cases(engine: DuckDBEngine) -> None:
    load_events(engine, EDGE_EVENTS)
    rows = funnel(engine, ["a", "b", "c"])
    assert rows == [
        (D1, 1, "a", 4, 4, 1.0, None),
        (D1, 2, "b", 3, 4, 0.75, 0.75),
        (D1, 3, "c", 2, 4, 0.5, pytest.approx(2 / 3)),
        (D2, 1, "a", 2, 2, 1.0, None),
        (D2, 2, "b", 1, 2, 0.5, 0.5),
        (D2, 3, "c", 1, 2, 0.5, 1.0),
    ]


def reference(
    rows: list[tuple[str, str, datetime]],
    steps: list[str],
    window: timedelta = timedelta(days=1),
    *,
    per_day: bool = True,
) -> dict[tuple[date | None, int], int]:
    """Users per (day of entry, 1-based step), by brute force: every step-0 event starts
    an attempt whose step k is the earliest unused occurrence at or after step k-1, within
    the window; per day, a user counts up to the furthest step of the attempts starting
    that day (over the whole period without `per_day`)."""
    by_user: dict[str, list[tuple[datetime, str, int]]] = defaultdict(list)
    for i, (user, kind, ts) in enumerate(rows):
        by_user[user].append((ts, kind, i))
    counts: dict[tuple[date | None, int], int] = defaultdict(int)
    for events in by_user.values():
        furthest: dict[date | None, int] = {}
        for start in (e for e in events if e[1] == steps[0]):
            used, reached = {start[2]}, [start[0]]
            for step in steps[1:]:
                later = [
                    e for e in events if e[1] == step and e[0] >= reached[-1] and e[2] not in used
                ]
                if not later or min(later)[0] > start[0] + window:
                    break
                used.add(min(later)[2])
                reached.append(min(later)[0])
            day = start[0].date() if per_day else None
            furthest[day] = max(furthest.get(day, 0), len(reached))
        for day, n in furthest.items():
            for k in range(1, n + 1):
                counts[(day, k)] += 1
    return counts


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_brute_force_reference(engine: DuckDBEngine, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 3000
    kinds = rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1])
    # Coarse minutes so that ties are common.
    times = [at(D1, int(m)) for m in rng.integers(0, 3 * 1440, n) // 7 * 7]
    users = [f"u{i}" for i in rng.integers(0, 150, n)]
    rows = list(zip(users, kinds.tolist(), times, strict=True))
    load_events(engine, rows)
    steps = ["a", "b", "c", "d"]
    got = {(r[0], r[1]): r[3] for r in funnel(engine, steps) if r[3]}
    assert got == dict(reference(rows, steps))
    assert len(got) > 6  # the data really exercises several days and steps
