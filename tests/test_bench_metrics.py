"""The metrics bench's plain-SQL baselines and the old mart SQL compute what productlens
computes (so the bench compares like with like), on hand-made and random events."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa
from bench import metrics
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from productlens.engines import DuckDBEngine
from tests.conftest import q

START = datetime(2026, 2, 2)  # a Monday


def load(
    engine: DuckDBEngine, events: list[tuple[str, int]], signups: dict[str, int | None]
) -> None:
    """Events as (user, hour after START); signups as user -> hour (None: no time)."""
    engine.execute(q("CREATE SCHEMA IF NOT EXISTS core"))
    engine.execute(q("CREATE SCHEMA IF NOT EXISTS staging"))
    engine.execute(
        q(
            "CREATE OR REPLACE TABLE core.fct_events "
            "(user_id VARCHAR, event_type VARCHAR, event_ts TIMESTAMP, event_date DATE, "
            "properties VARCHAR)"
        )
    )
    engine.execute(
        q("CREATE OR REPLACE TABLE staging.stg_users (user_id VARCHAR, signup_ts TIMESTAMP)")
    )
    times = [START + timedelta(hours=h) for _, h in events]
    engine.append_arrow(
        "core",
        "fct_events",
        pa.table(
            {
                "user_id": [u for u, _ in events],
                "event_type": ["view"] * len(events),
                "event_ts": pa.array(times, pa.timestamp("us")),
                "event_date": [t.date() for t in times],
                "properties": pa.array([None] * len(events), pa.string()),
            }
        ),
    )
    engine.append_arrow(
        "staging",
        "stg_users",
        pa.table(
            {
                "user_id": list(signups),
                "signup_ts": pa.array(
                    [
                        START + timedelta(hours=h) if h is not None else None
                        for h in signups.values()
                    ],
                    pa.timestamp("us"),
                ),
            }
        ),
    )
    # The old mart's calendar: every day from the first to the last event.
    days = sorted({t.date() for t in times})
    span = [days[0] + timedelta(n) for n in range((days[-1] - days[0]).days + 1)] if days else []
    engine.execute(q("CREATE OR REPLACE TABLE core.dim_date (date_day DATE)"))
    engine.append_arrow("core", "dim_date", pa.table({"date_day": pa.array(span, pa.date32())}))


def check(engine: DuckDBEngine) -> None:
    ours = metrics.run_productlens_activity(engine)
    assert metrics.run_plain_activity(engine) == ours
    assert metrics.run_old_mart(engine)["daily"] == ours["daily"]
    for period in ("week", "day"):
        assert metrics.run_plain_retention(engine, period) == metrics.run_productlens_retention(
            engine, period
        )


def test_hand_made_world(engine: DuckDBEngine) -> None:
    # u1 signed up before its first event, u2 has no signup time, u3 is unknown to the
    # users table (both join the cohort of their first event), u4 signed up and never
    # came; gaps of exactly 7 and 30 days.
    events = [("u1", 0), ("u1", 24 * 7), ("u1", 24 * 37), ("u2", 30), ("u2", 31),
              ("u3", 24 * 10 + 5), ("u3", 24 * 40), ("u1", 24 * 40 + 1)]  # fmt: skip
    load(engine, events, {"u1": -5, "u2": None, "u4": 24 * 3})
    check(engine)
    week = metrics.run_productlens_retention(engine, "week")
    # u1 signed up on Sunday 1 Feb (the week of 26 Jan) and returns on 2 Feb (week 1),
    # 9 Feb (week 2), 11 and 14 March (both week 6); u2 (first event 3 Feb) and u4
    # (signup 5 Feb) never come back; u3 (first event 12 Feb) returns on 14 March.
    assert week["2026-01-26"] == {0: 1, 1: 1, 2: 1, 6: 1}
    assert week["2026-02-02"] == {0: 2}  # u2 and u4
    assert week["2026-02-09"] == {0: 1, 4: 1}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["u1", "u2", "u3", "u4"]), st.integers(0, 24 * 80)),
        min_size=1,
        max_size=40,
    ),
    signups=st.dictionaries(
        st.sampled_from(["u1", "u2", "u3", "u5"]), st.one_of(st.none(), st.integers(-200, 24 * 80))
    ),
)
def test_random_worlds(
    engine: DuckDBEngine, events: list[tuple[str, int]], signups: dict[str, int | None]
) -> None:
    load(engine, events, signups)
    check(engine)
