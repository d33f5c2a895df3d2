"""The funnel bench's exact reference and its DuckDB self-join agree with a literal
brute force (every attempt, every chain) on hand-made and random tie-heavy events."""

from __future__ import annotations

import itertools
from datetime import timedelta

import bench.funnel
import pyarrow as pa
from bench.funnel import reference_counts, reference_query, self_join_sql
from bench.isolated import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from productlens.engines import DuckDBEngine
from tests.conftest import q

STEPS = ("a", "b", "c")
WINDOW_S = 10

# (user, step name, second); worked out by hand for steps a, b, c and a 10 s window.
HAND = [
    ("u1", "a", 0), ("u1", "b", 0), ("u1", "c", 0),  # ties count in step order: 3 steps
    ("u2", "a", 0), ("u2", "b", 5), ("u2", "c", 11),  # c falls outside the window: 2
    ("u3", "a", 0), ("u3", "a", 8), ("u3", "b", 9), ("u3", "c", 18),  # the later a: 3
    ("u4", "b", 1), ("u4", "c", 2), ("u4", "a", 3),  # b and c before any a: 1
    ("u5", "c", 0), ("u5", "b", 0),  # never starts: 0
    ("u6", "a", 5), ("u6", "c", 5), ("u6", "b", 5),  # all at one instant, any row order: 3
]  # fmt: skip
HAND_COUNTS = [5, 4, 3]  # a: u1 u2 u3 u4 u6; b: u1 u2 u3 u6; c: u1 u3 u6


def brute_force(rows: list[tuple[str, str, int]]) -> list[int]:
    """Every choice of one event per step, in step order and within the window."""
    counts = [0] * len(STEPS)
    users = sorted({r[0] for r in rows})
    for user in users:
        times = [[t for u, s, t in rows if u == user and s == name] for name in STEPS]
        best = 0
        for depth in range(1, len(STEPS) + 1):
            for chain in itertools.product(*times[:depth]):
                ordered = all(x <= y for x, y in itertools.pairwise(chain))
                if ordered and chain[-1] - chain[0] <= WINDOW_S:
                    best = depth
                    break
        for i in range(best):
            counts[i] += 1
    return counts


def load(engine: DuckDBEngine, rows: list[tuple[str, str, int]]) -> None:
    engine.execute(
        q(
            "CREATE OR REPLACE TABLE core.fct_events "
            "(user_id VARCHAR, event_type VARCHAR, event_ts TIMESTAMP)"
        )
    )
    engine.append_arrow(
        "core",
        "fct_events",
        pa.table(
            {
                "user_id": [r[0] for r in rows],
                "event_type": [r[1] for r in rows],
                "event_ts": pa.array([r[2] * 10**6 for r in rows], pa.timestamp("us")),
            }
        ),
    )


def bench_counts(engine: DuckDBEngine, rows: list[tuple[str, str, int]]) -> list[list[int]]:
    """The plain-Python reference and the self-join, on `rows` loaded as core.fct_events."""
    load(engine, rows)
    table = engine.fetch_arrow(q(reference_query("core.fct_events", STEPS)))
    reference = reference_counts(
        table["user_id"].to_pylist(),
        table["step"].to_pylist(),
        table["us"].to_pylist(),
        WINDOW_S * 10**6,
        len(STEPS),
    )
    joined = engine.fetch_all(
        q(self_join_sql("core.fct_events", STEPS, timedelta(seconds=WINDOW_S)))
    )[0]
    return [reference, [int(v) for v in joined]]


def test_hand_made_events(engine: DuckDBEngine) -> None:
    assert brute_force(HAND) == HAND_COUNTS
    assert bench_counts(engine, HAND) == [HAND_COUNTS, HAND_COUNTS]


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3"]),
        st.sampled_from([*STEPS, "x"]),
        st.integers(0, 25),  # few instants: many ties
    ),
    max_size=25,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=EVENTS)
def test_random_tie_heavy_events(engine: DuckDBEngine, rows: list[tuple[str, str, int]]) -> None:
    expected = brute_force(rows)
    assert bench_counts(engine, rows) == [expected, expected]


def test_another_revisions_funnel_query_counts_as_funnel_does(engine: DuckDBEngine) -> None:
    """`--variants @REF`: the SQL a checkout's funnel() sends (here this tree's) gives, on the
    same table, the counts funnel() gives. HAND on the bench's steps, its seconds
    stretched so that 10 s become the bench's 7-day window."""
    from productlens.metrics.funnel import funnel

    stretch = bench.funnel.WINDOW.total_seconds() / WINDOW_S
    names = dict(zip(STEPS, bench.funnel.STEPS, strict=False))
    engine.execute(
        q(
            "CREATE OR REPLACE TABLE core.fct_events "
            "(event_id VARCHAR, user_id VARCHAR, event_type VARCHAR, event_ts TIMESTAMP)"
        )
    )
    engine.append_arrow(
        "core",
        "fct_events",
        pa.table(
            {
                "event_id": [f"e{i}" for i in range(len(HAND))],
                "user_id": [r[0] for r in HAND],
                "event_type": [names[r[1]] for r in HAND],
                "event_ts": pa.array(
                    [round(r[2] * stretch) * 10**6 for r in HAND], pa.timestamp("us")
                ),
            }
        ),
    )
    # The working tree holds src/ and bench/ as a checkout does (bench.pipeline.checkout).
    sql = bench.funnel.other_funnel_sql(ROOT)
    expected = [*HAND_COUNTS, 0]  # nobody purchases
    assert [
        s.count for s in funnel(engine, bench.funnel.STEPS, window=bench.funnel.WINDOW).steps
    ] == expected
    assert bench.funnel._counts_of(engine, sql) == expected
