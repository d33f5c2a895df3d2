"""`productlens.metrics.revenue` and `productlens revenue`: hand-worked results on the
warehouse of test_order_revenue, brute-force references (plain Python, statistics) on
random data with ties and $0 buyers, portability of every query shape, and the CLI."""

from __future__ import annotations

import json
import math
import statistics
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlglot import ErrorLevel

from productlens.config import ProjectConfig, load_project
from productlens.engines import DuckDBEngine
from productlens.metrics.revenue import QUERIES, revenue
from productlens.metrics.scope import Scope
from tests.conftest import q, run_cli, warehouse_engine
from tests.test_order_revenue import EXTRA
from tests.test_warehouse import build_world

# --- hand-worked, on the built warehouse ---------------------------------------------------
#
# Net revenue per buyer (completed orders): u1 132, u3 50, u4 30, u5 0 (a $0 order), u6 30,
# u7 200, u9 12 (unknown to the users table); u2's orders are cancelled, refunded, pending.
# n = 7, total 454. Top 1% = ceil(7/100) = 1 buyer, top 10% = ceil(7/10) = 1: u7, 200/454.
# Gini over 0, 12, 30, 30, 50, 132, 200: sum(i x_i) = 24 + 90 + 120 + 250 + 792 + 1400
# = 2676, G = 2 x 2676 / (7 x 454) - 8/7.
GINI = float(Fraction(2 * 2676, 7 * 454) - Fraction(8, 7))
# Signup (u1 2 March, the others 4 March) to first completed order, in days: u1 1, u3 77,
# u4 77, u5 47, u6 47, u7 6: mean 255/6 = 42.5, median (47 + 47) / 2. From 1 April on:
# u3, u4, u5, u6: mean and median 62.
# CLV by current segment: Premium u1 132, u4 30, u7 200 (362 / 3); Regular u3 50, u6 30
# (80 / 2); Budget u2 (never bought) and u5 ($0): 0.
# ARR (test_warehouse.test_arr_monthly): March new 360; April expansion 240 and
# contraction -120; May u1 churns (-360) and the unknown u9 is new (120).


def predicted(aov: float, n: int, signup_day: int, recency: int) -> float:
    """customer_metrics' heuristic: AOV x orders per year of tenure x exp(-recency/90), as
    of 20 May; `signup_day` is the day of March the user signed up."""
    tenure = (31 - signup_day) + 30 + 20 + 1
    return aov * n * 365 / tenure * math.exp(-recency / 90)


PREDICTED = {
    "Premium": (predicted(66, 2, 2, 75) + predicted(30, 1, 4, 0) + predicted(200, 1, 4, 71)) / 3,
    "Regular": (predicted(50, 1, 4, 0) + predicted(15, 2, 4, 19)) / 2,
    "Budget": predicted(0, 1, 4, 30) / 2,
}

ARR = [
    ("2026-03-01", 0.0, 360.0, 0.0, 0.0, 0.0, 0.0, 360.0, 360.0, 2),
    ("2026-04-01", 360.0, 0.0, 240.0, -120.0, 0.0, 0.0, 120.0, 480.0, 2),
    ("2026-05-01", 480.0, 120.0, 0.0, 0.0, -360.0, 0.0, -240.0, 240.0, 2),
]
ARR_KEYS = (
    "month", "opening_arr", "new_arr", "expansion_arr", "contraction_arr", "churned_arr",
    "reactivation_arr", "net_new_arr", "closing_arr", "n_paying_users",
)  # fmt: skip


def expected_json(*, months: slice, first_purchase: dict[str, Any]) -> dict[str, Any]:
    return {
        "arr_bridge": [dict(zip(ARR_KEYS, m, strict=True)) for m in ARR[months]],
        "concentration": {
            "n_buyers": 7,
            "n_paying": 6,
            "net_revenue": 454.0,
            "top_1pct_buyers": 1,
            "top_1pct_share": 200 / 454,
            "top_10pct_buyers": 1,
            "top_10pct_share": 200 / 454,
            "gini": pytest.approx(GINI, abs=1e-12),
        },
        "clv_by_segment": {
            "segment_column": "segment",
            "segments": [
                {
                    "segment": "Premium",
                    "n_users": 3,
                    "n_buyers": 3,
                    "net_revenue": 362.0,
                    "clv_per_user": pytest.approx(362 / 3),
                    "clv_per_buyer": pytest.approx(362 / 3),
                    "predicted_clv_12m_per_user": pytest.approx(PREDICTED["Premium"]),
                },
                {
                    "segment": "Regular",
                    "n_users": 2,
                    "n_buyers": 2,
                    "net_revenue": 80.0,
                    "clv_per_user": 40.0,
                    "clv_per_buyer": 40.0,
                    "predicted_clv_12m_per_user": pytest.approx(PREDICTED["Regular"]),
                },
                {
                    "segment": "Budget",
                    "n_users": 2,
                    "n_buyers": 1,
                    "net_revenue": 0.0,
                    "clv_per_user": 0.0,
                    "clv_per_buyer": 0.0,
                    "predicted_clv_12m_per_user": 0.0,
                },
            ],
        },
        "time_to_first_purchase": first_purchase,
        "notes": [
            "CLV by segment: users' current segment, net revenue to the data's last day "
            "(the range does not apply)."
        ],
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose warehouse is the hand-built world of test_order_revenue."""
    root = tmp_path_factory.mktemp("revenue")
    data = root / "csv"
    data.mkdir()
    engine = warehouse_engine(load_project(root).warehouse_path)
    try:
        build_world(engine, data, ProjectConfig(), extra_rows=EXTRA)
    finally:
        engine.close()
    return root


def test_revenue_by_hand(project: Path) -> None:
    engine = warehouse_engine(load_project(project).warehouse_path, read_only=True)
    try:
        got = revenue(engine).to_dict()
    finally:
        engine.close()
    first = {"n_buyers": 6, "mean_days": 42.5, "median_days": 47.0, "n_before_signup": 0}
    assert got == expected_json(months=slice(None), first_purchase=first)


def test_cli_json_is_exact(project: Path) -> None:
    # April and May: the bridge starts at April's opening; the concentration counts the
    # orders placed in the range (the same buyers but u1 and u7, whose orders are in March).
    result = run_cli("--project", str(project), "revenue", "--from", "2026-04-01", "--json")
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    first = {"n_buyers": 4, "mean_days": 62.0, "median_days": 62.0, "n_before_signup": 0}
    want = expected_json(months=slice(1, None), first_purchase=first)
    # In range: u3 50, u4 30, u5 0, u6 30 (its 20 April and 1 May orders); u9's order is
    # on 20 March. n = 4, total 110; top 1% and 10%: 1 buyer (u3, 50). Gini over 0, 30,
    # 30, 50: sum(i x_i) = 60 + 90 + 200 = 350, G = 700 / 440 - 5/4.
    want["concentration"] = {
        "n_buyers": 4,
        "n_paying": 3,
        "net_revenue": 110.0,
        "top_1pct_buyers": 1,
        "top_1pct_share": 50 / 110,
        "top_10pct_buyers": 1,
        "top_10pct_share": 50 / 110,
        "gini": pytest.approx(700 / 440 - 5 / 4, abs=1e-12),
    }
    assert got == want


def test_cli_table(project: Path) -> None:
    result = run_cli("--project", str(project), "revenue", "--to", "2026-03-31")
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    # Only March in the bridge; the concentration of March's orders: u1 132, u7 200,
    # u9 12 (n = 3, 344; top share 200/344 = 58.1%).
    assert ["ARR", "┃", "2026-03-01"] in lines
    assert ["new", "│", "360"] in lines
    assert ["close", "│", "360"] in lines
    assert [*next(line for line in lines if line and line[0] == "3")[:14]] == [
        "3",
        "│",
        "3",
        "│",
        "344",
        "│",
        "1",
        "│",
        "58.1%",
        "│",
        "1",
        "│",
        "58.1%",
        "│",
    ]
    assert "note: CLV by segment: users' current segment" in result.stdout


# --- absent sections ----------------------------------------------------------------------


def test_sections_absent_without_their_tables(engine: DuckDBEngine) -> None:
    got = revenue(engine).to_dict()
    assert got == {
        "arr_bridge": None,
        "concentration": None,
        "clv_by_segment": None,
        "time_to_first_purchase": None,
        "notes": [
            "ARR bridge: no marts.arr_monthly in the warehouse (run build).",
            "Concentration: no core.int_order_revenue in the warehouse (run build).",
            "CLV and time to first purchase: no marts.customer_metrics (run build).",
        ],
    }


# --- brute-force references on random data ------------------------------------------------

T0 = datetime(2026, 3, 1)
STATUSES = ("completed", "completed", "refunded", "pending", "cancelled")


DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.timestamp("us"): "TIMESTAMP",
    pa.bool_(): "BOOLEAN",
    pa.float64(): "DOUBLE",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
}


def load(engine: DuckDBEngine, name: str, columns: dict[str, pa.Array]) -> None:
    """Replace table `name` (schema.table) with `columns`."""
    engine.execute(q(f"CREATE SCHEMA IF NOT EXISTS {name.split('.', maxsplit=1)[0]}"))
    body = ", ".join(f"{c} {DUCKDB_TYPES[a.type]}" for c, a in columns.items())
    engine.execute(q(f"CREATE OR REPLACE TABLE {name} ({body})"))
    schema, table = name.split(".")
    engine.append_arrow(schema, table, pa.table(columns))


def load_orders(engine: DuckDBEngine, orders: list[tuple[int, float, str, int]]) -> None:
    """int_order_revenue's columns the queries read: user, time, net revenue, flag."""
    load(
        engine,
        "core.int_order_revenue",
        {
            "user_id": pa.array([f"u{u}" for u, *_ in orders], pa.string()),
            "order_ts": pa.array([T0 + timedelta(hours=h) for *_, h in orders], pa.timestamp("us")),
            "is_recognized": pa.array([s == "completed" for _, _, s, _ in orders], pa.bool_()),
            "net_revenue": pa.array(
                [a if s == "completed" else 0.0 for _, a, s, _ in orders], pa.float64()
            ),
        },
    )


def reference_concentration(
    orders: list[tuple[int, float, str, int]], start: int | None, end: int | None
) -> dict[str, Any] | None:
    per_user: dict[int, float] = {}
    for user, amount, status, hour in orders:
        in_range = (start is None or hour >= start) and (end is None or hour < end)
        if status == "completed" and in_range:
            per_user[user] = per_user.get(user, 0.0) + amount
    values = sorted(per_user.values(), reverse=True)
    n, total = len(values), sum(values)
    if n == 0:
        return None
    top1, top10 = -(-n // 100), -(-n // 10)
    # Gini as the mean absolute difference over twice the mean: no ranks involved.
    diffs = sum(abs(a - b) for a in values for b in values)
    return {
        "n_buyers": n,
        "n_paying": sum(v > 0 for v in values),
        "net_revenue": total,
        "top_1pct_buyers": top1,
        "top_1pct_share": sum(values[:top1]) / total if total > 0 else None,
        "top_10pct_buyers": top10,
        "top_10pct_share": sum(values[:top10]) / total if total > 0 else None,
        "gini": diffs / (2 * n * n * (total / n)) if total > 0 else None,
    }


def approx(value: Any) -> Any:
    return value if value is None else pytest.approx(value, rel=1e-9, abs=1e-9)


# Amounts from a few values (many ties) including $0 and a large one.
ORDERS = st.lists(
    st.tuples(
        st.integers(0, 40),
        st.sampled_from([0.0, 0.0, 1.0, 9.99, 10.0, 25.5, 1000.0]),
        st.sampled_from(STATUSES),
        st.integers(0, 100),
    ),
    max_size=300,
)
BOUND = st.none() | st.integers(0, 100)
FIXTURE_HEALTH = HealthCheck.function_scoped_fixture  # the engine is emptied per example


@settings(max_examples=60, deadline=None, suppress_health_check=[FIXTURE_HEALTH])
@given(orders=ORDERS, start=BOUND, end=BOUND)
@example(orders=[(1, 0.0, "completed", 0)], start=None, end=None)  # one $0 buyer: no shares
@example(orders=[(u, 10.0, "completed", u) for u in range(20)], start=None, end=None)
@example(orders=[(u, float(u % 3), "completed", 1) for u in range(101)], start=None, end=None)
def test_concentration_matches_brute_force(
    engine: DuckDBEngine,
    orders: list[tuple[int, float, str, int]],
    start: int | None,
    end: int | None,
) -> None:
    load_orders(engine, orders)
    scope = Scope(
        start=None if start is None else T0 + timedelta(hours=start),
        end=None if end is None else T0 + timedelta(hours=end),
    )
    got = revenue(engine, scope).concentration
    want = reference_concentration(orders, start, end)
    if want is None:
        assert got is None
        return
    assert got is not None
    assert {k: approx(v) for k, v in got.__dict__.items()} == want
    if got.gini is not None:  # everyone equal: 0; one buyer holding everything: (n-1)/n
        assert -1e-12 <= got.gini <= (got.n_buyers - 1) / got.n_buyers + 1e-12


def load_customers(engine: DuckDBEngine, rows: list[tuple[int | None, int]]) -> None:
    """customer_metrics' columns the time-to-first-purchase query reads, from (days to the
    first purchase or None for a user who never bought, hour of the first purchase)."""
    days = [d for d, _ in rows]
    load(
        engine,
        "marts.customer_metrics",
        {
            "n_orders": pa.array([0 if d is None else 1 for d in days], pa.int64()),
            "days_to_first_purchase": pa.array(days, pa.int32()),
            "first_order_ts": pa.array(
                [None if d is None else T0 + timedelta(hours=h) for d, h in rows],
                pa.timestamp("us"),
            ),
            "segment": pa.array(["s"] * len(days), pa.string()),
            "revenue": pa.array([0.0] * len(days), pa.float64()),
            "historical_clv": pa.array([0.0] * len(days), pa.float64()),
            "predicted_clv_12m": pa.array([0.0] * len(days), pa.float64()),
        },
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[FIXTURE_HEALTH])
@given(
    rows=st.lists(st.tuples(st.none() | st.integers(-2, 30), st.integers(0, 100)), max_size=60),
    start=BOUND,
)
@example(rows=[(3, 0), (1, 0), (7, 0), (1, 0)], start=None)  # even count: (1 + 3) / 2
@example(rows=[(-2, 0), (4, 0), (-1, 0)], start=None)  # mean 4, not 1/3; 2 before signup
@example(rows=[(-2, 0)], start=None)  # only a buyer before signup: no mean
def test_time_to_first_purchase_matches_statistics(
    engine: DuckDBEngine, rows: list[tuple[int | None, int]], start: int | None
) -> None:
    load_customers(engine, rows)
    scope = Scope(start=None if start is None else T0 + timedelta(hours=start))
    got = revenue(engine, scope).time_to_first_purchase
    in_range = [d for d, h in rows if d is not None and (start is None or h >= start)]
    if not in_range:
        assert got is None
        return
    # Orders dated before signup (negative days) are counted apart, not averaged in.
    kept = [d for d in in_range if d >= 0]
    assert got is not None
    assert got.n_before_signup == len(in_range) - len(kept)
    assert got.n_buyers == len(kept)
    if not kept:
        assert (got.mean_days, got.median_days) == (None, None)
        return
    assert got.mean_days == pytest.approx(statistics.mean(kept))
    assert got.median_days == statistics.median(kept)


# --- portability --------------------------------------------------------------------------

SCOPES = [
    Scope(),
    Scope.parse(timezone="America/Los_Angeles", date_from="2026-03-08", date_to="2026-11-01"),
    Scope.parse(date_from="2026-03-01T10:00:00+02:00"),
]


@pytest.mark.parametrize("name", list(QUERIES))
@pytest.mark.parametrize("dialect", ["postgres", "spark"])
def test_every_query_transpiles(name: str, dialect: str) -> None:
    for scope in SCOPES:
        sql = QUERIES[name](scope).sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)
        assert "select" in sql.lower()


def test_arr_months_follow_local_dates() -> None:
    # --to 30 April in Los Angeles ends at 07:00 UTC on 1 May: still April's bridge.
    zone = "America/Los_Angeles"
    scope = Scope.parse(timezone=zone, date_from="2026-03-01", date_to="2026-04-30")
    sql = QUERIES["arr_bridge"](scope).sql(dialect="duckdb")
    assert "month_start_date >= CAST('2026-03-01' AS DATE)" in sql
    assert "month_start_date <= CAST('2026-04-30' AS DATE)" in sql


def test_an_orders_only_project_checks_clean_and_has_revenue(tmp_path: Path) -> None:
    # No items, products or events; a $0 order (u3's only one) and a pending one (u2's).
    # Buyers: u1 20 + 0, u3 0: n = 2, total 20, Gini over 0, 20 = 2 x 40 / (2 x 20) - 3/2.
    # Signup (2 March) to first purchase: u1 1 day, u3 5 days.
    data = tmp_path / "data"
    data.mkdir()
    (data / "orders.csv").write_text(
        "order_id,user_id,order_ts,status,total_amount,campaign_id\n"
        "o1,u1,2026-03-03 10:00:00,completed,20,\n"
        "o2,u1,2026-03-06 11:00:00,completed,0,\n"
        "o3,u2,2026-03-06 12:00:00,pending,100,\n"
        "o4,u3,2026-03-07 09:00:00,completed,0,\n"
    )
    (data / "users.csv").write_text(
        "user_id,signup_ts,country,device,acquisition_channel,campaign_id,segment\n"
        + "".join(f"u{i},2026-03-02 09:00:00,US,web,organic,,Regular\n" for i in (1, 2, 3))
    )
    for step in (("ingest", str(data)), ("build",), ("check",)):
        result = run_cli("--project", str(tmp_path), *step)
        assert result.returncode == 0, (step, result.stdout, result.stderr)
    result = run_cli("--project", str(tmp_path), "revenue", "--json")
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["arr_bridge"] is None
    assert got["concentration"] == {
        "n_buyers": 2,
        "n_paying": 1,
        "net_revenue": 20.0,
        "top_1pct_buyers": 1,
        "top_1pct_share": 1.0,
        "top_10pct_buyers": 1,
        "top_10pct_share": 1.0,
        "gini": 0.5,
    }
    segment = got["clv_by_segment"]["segments"][0]
    assert (segment["n_users"], segment["n_buyers"], segment["net_revenue"]) == (3, 2, 20.0)
    assert got["time_to_first_purchase"] == {
        "n_buyers": 2,
        "mean_days": 3.0,
        "median_days": 3.0,
        "n_before_signup": 0,
    }
    assert got["notes"][0] == "ARR bridge: no subscription months in the range (no subscriptions)."
