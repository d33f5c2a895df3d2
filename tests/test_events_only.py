"""A project with events only (no users, products, orders ... files), through the CLI: every
event-based mart is built with the numbers a brute-force count of the raw events gives,
the marts that need other tables are built empty, and `check` passes."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from productlens.engines import DuckDBEngine
from productlens.report.sections import read_overview
from productlens.simulate import preset
from tests.conftest import open_readonly, q, run_cli
from tests.test_funnel import reference

# Events that name a product must load although no catalog is loaded: unknown products
# (like unknown users, the default) only warn.
PROJECT_FILE = """
[simulate]
users = 300
days = 21
seed = 5

[ingest.unknown_references]
users = "warn"
products = "warn"
orders = "quarantine"
experiments = "quarantine"
"""

EVENT_MARTS = (
    "funnel_daily_metrics",
    "device_metrics",
    "active_users_daily",
    "event_counts_daily",
    "retention_cohorts",
    "user_lifecycle",
)
# Marts over tables an events-only project does not have: built, and empty.
EMPTY_MARTS = (
    "user_revenue",
    "customer_metrics",
    "product_metrics",
    "campaign_attribution",
    "arr_monthly",
    "experiment_exposures",
    "experiment_outcomes",
)

Event = tuple[str, str, datetime, str]  # user, type, time, device


@pytest.fixture(scope="module")
def events_only(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Event]]:
    root = tmp_path_factory.mktemp("events_only")
    (root / "productlens.toml").write_text(PROJECT_FILE)
    steps = [
        ("generate",),
        ("ingest", str(root / "data" / "events")),
        ("build",),
        ("check",),
    ]
    for step in steps:
        result = run_cli("--project", str(root), *step)
        assert result.returncode == 0, (step, result.stdout, result.stderr)
    table = pq.read_table(
        root / "data" / "events", columns=["user_id", "event_type", "event_ts", "device"]
    )
    events = list(
        zip(
            *(table.column(c).to_pylist() for c in table.column_names),
            strict=True,
        )
    )
    return root, events


def test_every_raw_event_reaches_the_core(events_only: tuple[Path, list[Event]]) -> None:
    root, events = events_only
    engine = open_readonly(root)
    try:
        counts = engine.fetch_all(
            q(
                "SELECT (SELECT count(*) FROM raw.events), (SELECT count(*) FROM "
                "staging.stg_events), (SELECT count(*) FROM core.fct_events), (SELECT count(*) "
                "FROM raw.quarantine), (SELECT count(*) FROM core.fct_events WHERE user_sk IS "
                "NOT NULL)"
            )
        )
    finally:
        engine.close()
    assert counts == [(len(events), len(events), len(events), 0, 0)]
    assert len(events) > 1000


def marts(root: Path, sql: str, params: list[object] | None = None) -> list[tuple[Any, ...]]:
    engine: DuckDBEngine = open_readonly(root)
    try:
        return engine.fetch_all(q(sql, *(params or [])))
    finally:
        engine.close()


def test_event_counts_and_active_users_match_a_brute_force_count(
    events_only: tuple[Path, list[Event]],
) -> None:
    root, events = events_only
    n_events: Counter[tuple[date, str]] = Counter()
    users_by_type: dict[tuple[date, str], set[str]] = defaultdict(set)
    users_by_day: dict[date, set[str]] = defaultdict(set)
    for user, kind, ts, _ in events:
        n_events[(ts.date(), kind)] += 1
        users_by_type[(ts.date(), kind)].add(user)
        users_by_day[ts.date()].add(user)
    got = marts(
        root, "SELECT event_date, event_type, n_events, n_users FROM marts.event_counts_daily"
    )
    assert {(d, k): (n, u) for d, k, n, u in got} == {
        key: (n, len(users_by_type[key])) for key, n in n_events.items()
    }

    def active(day: date, window: int) -> int:
        days = [day - timedelta(days=k) for k in range(window)]
        return len(set().union(*(users_by_day.get(d, set()) for d in days)))

    got = marts(root, "SELECT activity_date, dau, wau, mau FROM marts.active_users_daily")
    assert len(got) == preset(days=21).days
    for day, dau, wau, mau in got:
        assert (dau, wau, mau) == (active(day, 1), active(day, 7), active(day, 30)), day
    assert sum(r[1] for r in got) > 0


def test_funnels_match_a_brute_force_count(events_only: tuple[Path, list[Event]]) -> None:
    root, events = events_only
    named = marts(root, "SELECT DISTINCT step_no, step_name FROM marts.funnel_daily_metrics")
    steps = [str(name) for _, name in sorted(named)]
    assert steps == list(preset().funnel_steps)
    expected = reference([(u, k, t) for u, k, t, _ in events], steps)
    # By day of entry, with the marts' one-day window.
    got = marts(root, "SELECT event_date, step_no, n_users FROM marts.funnel_daily_metrics")
    assert {(d, s): n for d, s, n in got if n} == dict(expected)
    assert {s for _, s in expected} == set(range(1, len(steps) + 1))  # every step reached
    # By device over the whole period: each user in the device of their first funnel event.
    first_device: dict[str, tuple[datetime, str]] = {}
    for user, kind, ts, device in events:
        if kind in steps and (user not in first_device or ts < first_device[user][0]):
            first_device[user] = (ts, device)
    for device in {e[3] for e in events}:
        rows = [(u, k, t) for u, k, t, _ in events if first_device.get(u, (t, ""))[1] == device]
        totals = reference(rows, steps, per_day=False)
        got = marts(
            root, "SELECT step_no, n_users FROM marts.device_metrics WHERE device = ?", [device]
        )
        assert {s: n for s, n in got if n} == {s: n for (_, s), n in totals.items()}, device


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())  # weeks start on Monday by default


def test_cohorts_and_lifecycle_use_the_day_a_user_was_first_seen(
    events_only: tuple[Path, list[Event]],
) -> None:
    root, events = events_only
    weeks: dict[str, set[date]] = defaultdict(set)
    for user, _, ts, _ in events:
        weeks[user].add(week_start(ts.date()))
    cohort_size = Counter(min(w) for w in weeks.values())
    active: Counter[tuple[date, int]] = Counter()
    for w in weeks.values():
        for week in w:
            active[(min(w), (week - min(w)).days // 7)] += 1
    got = marts(
        root,
        "SELECT cohort_start_date, period_number, cohort_size, n_active_users "
        "FROM marts.retention_cohorts WHERE cohort_grain = 'week'",
    )
    assert {(c, p): (size, n) for c, p, size, n in got} == {
        (c, p): (cohort_size[c], n) for (c, p), n in active.items()
    }

    all_weeks = sorted({week_start(ts.date()) for _, _, ts, _ in events})
    status: Counter[tuple[date, str]] = Counter()
    for w in weeks.values():
        for week in all_weeks:
            if week in w:
                if week == min(w):
                    status[(week, "new")] += 1
                elif week - timedelta(days=7) in w:
                    status[(week, "returning")] += 1
                else:
                    status[(week, "resurrecting")] += 1
            elif week - timedelta(days=7) in w:
                status[(week, "dormant")] += 1
    got = marts(root, "SELECT week_start_date, status, n_users FROM marts.user_lifecycle")
    assert {(w, s): n for w, s, n in got} == dict(status)


def test_marts_over_missing_tables_are_built_empty(events_only: tuple[Path, list[Event]]) -> None:
    root, _ = events_only
    for mart in EMPTY_MARTS:
        assert marts(root, f"SELECT count(*) FROM marts.{mart}") == [(0,)], mart
    # Sales per day exist for every day, all zero.
    assert marts(
        root, "SELECT count(*), sum(n_orders), sum(gross_revenue) FROM marts.daily_sales"
    ) == [(preset(days=21).days, 0, 0.0)]
    for mart in EVENT_MARTS:
        assert marts(root, f"SELECT count(*) > 0 FROM marts.{mart}") == [(True,)], mart


def test_the_overview_states_no_signups_without_a_users_table(
    events_only: tuple[Path, list[Event]],
) -> None:
    """With no users file the overview (report and dashboard) said "new signups 0" beside
    the retention section's new users (first seen): a count of a table that was never
    loaded. The figure is left out, as orders are without orders; the rest stays."""
    root, events = events_only
    engine = open_readonly(root)
    try:
        assert engine.fetch_all(q("select count(*) from core.dim_users")) == [(0,)]
        overview = read_overview(engine)
    finally:
        engine.close()
    assert overview is not None
    kpis = {k.key: k for k in overview.kpis}
    assert "signups" not in kpis
    assert "orders" not in kpis
    last = max(e[2] for e in events).date()
    assert overview.end == last
    in_period = {e[0] for e in events if overview.start <= e[2].date() <= overview.end}
    assert kpis["active_users"].current == len(in_period)
