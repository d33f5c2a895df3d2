"""The one definition of revenue (core.int_order_revenue) and the marts that read it, on the
hand-built world of test_warehouse plus buyers worked out by hand here: a pending order, a
$0 order, and enough buyers for RFM scores with ties."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from productlens import checks, modeling
from productlens.config import ProjectConfig
from productlens.engines import DuckDBEngine
from tests.test_warehouse import build_world, rows

# As of 20 May (the calendar's last day). Orders without items are valid (as in an
# orders-only project): they carry revenue but no units, cost or margin.
#   u2: a pending order on 1 May (40): gross, not net, until it completes.
#   u3, u4: bought on 20 May (recency 0, a tie); u5: one $0 order on 20 April (recency 30);
#   u6: two orders, 20 April (10) and 1 May (20): recency 19, 30 in all (ties u4's 30);
#   u7: one order on 10 March (200): recency 71. u1 (fixture): two orders, last 6 March
#   (recency 75), 132 in all.
EXTRA = {
    "users": """u3,2026-03-04 09:00:00,US,web,organic,,Regular
u4,2026-03-04 09:00:00,US,web,organic,,Premium
u5,2026-03-04 09:00:00,US,web,organic,,Budget
u6,2026-03-04 09:00:00,US,web,organic,,Regular
u7,2026-03-04 09:00:00,US,web,organic,,Premium
""",
    "orders": """o6,u2,2026-05-01 08:00:00,pending,40,
o7,u3,2026-05-20 10:00:00,completed,50,
o8,u4,2026-05-20 11:00:00,completed,30,
o9,u5,2026-04-20 12:00:00,completed,0,
o10,u6,2026-04-20 12:00:00,completed,10,
o11,u6,2026-05-01 12:00:00,completed,20,
o12,u7,2026-03-10 12:00:00,completed,200,
""",
}


@pytest.fixture
def world(engine: DuckDBEngine, tmp_path: Path) -> DuckDBEngine:
    build_world(engine, tmp_path, ProjectConfig(), extra_rows=EXTRA)
    return engine


def test_order_revenue_is_defined_once(world: DuckDBEngine) -> None:
    # completed: net = gross; refunded and pending: gross only; cancelled: nothing.
    assert rows(
        world,
        "SELECT order_id, status, is_kept, is_recognized, gross_revenue, refunded_revenue, "
        "pending_revenue, net_revenue, n_units, net_margin FROM core.int_order_revenue "
        "WHERE order_id IN ('o1', 'o3', 'o4', 'o6', 'o9') ORDER BY order_id",
    ) == [
        ("o1", "completed", True, True, 20.0, 0.0, 0.0, 20.0, 2, 12.0),
        ("o3", "cancelled", False, False, 0.0, 0.0, 0.0, 0.0, 1, 0.0),
        ("o4", "refunded", True, False, 24.0, 24.0, 0.0, 0.0, 2, 0.0),
        ("o6", "pending", True, False, 40.0, 0.0, 40.0, 0.0, None, 0.0),
        ("o9", "completed", True, True, 0.0, 0.0, 0.0, 0.0, None, None),  # no items
    ]


def test_every_data_test_passes_with_pending_and_zero_orders(world: DuckDBEngine) -> None:
    tests = checks.compile_tests(modeling.discover(ProjectConfig()))
    outcomes = checks.run_tests(world, tests, "r")
    assert [o.test.name for o in outcomes if o.status in ("fail", "error")] == []


def test_every_mart_sums_to_the_same_net_revenue(world: DuckDBEngine) -> None:
    # Net: u1 132 + u3 50 + u4 30 + u5 0 + u6 30 + u7 200 + u9 12 = 454. Gross adds o4's
    # refunded 24 and o6's pending 40. customer_metrics knows every user but u9.
    assert rows(
        world,
        "SELECT (SELECT sum(net_revenue) FROM core.int_order_revenue), "
        "(SELECT sum(net_revenue) FROM marts.daily_sales), "
        "(SELECT sum(gross_revenue) FROM marts.daily_sales), "
        "(SELECT sum(net_revenue) FROM marts.user_revenue), "
        "(SELECT sum(revenue) FROM marts.customer_metrics)",
    ) == [(454.0, 454.0, 518.0, 454.0, 442.0)]


def test_daily_sales_keeps_pending_out_of_net_revenue(world: DuckDBEngine) -> None:
    # Before: net = gross - refunded, so o6 (pending) counted 40 of net revenue on 1 May.
    assert rows(
        world,
        "SELECT sales_date, n_orders, n_units, gross_revenue, refunded_revenue, "
        "pending_revenue, net_revenue FROM marts.daily_sales "
        "WHERE sales_date IN ('2026-04-20', '2026-05-01') ORDER BY 1",
    ) == [
        (date(2026, 4, 20), 2, 0, 10.0, 0.0, 0.0, 10.0),  # o9 ($0) and o10
        (date(2026, 5, 1), 2, 0, 60.0, 0.0, 40.0, 20.0),  # o6 (pending) and o11
    ]


def test_user_revenue_counts_kept_orders_and_net_revenue(world: DuckDBEngine) -> None:
    assert rows(
        world,
        "SELECT user_id, n_orders, net_revenue FROM marts.user_revenue ORDER BY revenue_rank",
    ) == [
        ("u7", 1, 200.0),
        ("u1", 2, 132.0),
        ("u3", 1, 50.0),
        ("u4", 1, 30.0),  # ties u6 at 30: user_id breaks the tie
        ("u6", 2, 30.0),
        ("u9", 1, 12.0),
        ("u2", 2, 0.0),  # o4 refunded, o6 pending
        ("u5", 1, 0.0),  # a $0 order
    ]


def test_rfm_scores_are_tie_stable_and_point_the_right_way(world: DuckDBEngine) -> None:
    # Six buyers; score = ceil(5 x k / 6), k = buyers no better (ties included).
    # Recency, worst first: u1 75 (k=1 -> 1), u7 71 (k=2 -> 2), u5 30 (k=3 -> 3),
    #   u6 19 (k=4 -> 4), u3 and u4 0 (k=6 -> 5, both).
    # Frequency: one order u3 u4 u5 u7 (k=4 -> 4); two orders u1 u6 (k=6 -> 5).
    # Monetary: u5 0 (k=1 -> 1); u4 and u6 30 (k=3 -> 3); u3 50 (k=4 -> 4); u1 132
    #   (k=5 -> 5); u7 200 (k=6 -> 5).
    # ntile(5) over recency split the tie of u3 and u4 (4 and 5) and gave u7 a 1.
    assert rows(
        world,
        "SELECT user_id, n_orders, revenue, aov, recency_days, recency_score, "
        "frequency_score, monetary_score, churn_risk FROM marts.customer_metrics "
        "WHERE n_orders > 0 ORDER BY user_id",
    ) == [
        ("u1", 2, 132.0, 66.0, 75, 1, 5, 5, "at_risk"),
        ("u3", 1, 50.0, 50.0, 0, 5, 4, 4, "active"),
        ("u4", 1, 30.0, 30.0, 0, 5, 4, 3, "active"),
        ("u5", 1, 0.0, 0.0, 30, 3, 4, 1, "active"),
        ("u6", 2, 30.0, 15.0, 19, 4, 5, 3, "active"),
        ("u7", 1, 200.0, 200.0, 71, 2, 4, 5, "at_risk"),
    ]


# One row per case: a mart edited to use another revenue definition, and the data test
# that must catch it.
ALTERED = [
    (
        "daily_sales",  # the old definition: gross - refunded (pending counted as net)
        ("sum(net_revenue) as net_revenue", "sum(gross_revenue - refunded_revenue) as net_revenue"),
        "daily_sales_reconciles_with_order_revenue",
    ),
    (
        "user_revenue",
        ("sum(net_revenue) as net_revenue", "sum(gross_revenue) as net_revenue"),
        "user_revenue_reconciles_with_order_revenue",
    ),
    (
        "customer_metrics",  # a horizon one day short loses u3's and u4's orders
        ("where is_recognized", "where is_recognized and order_date < date '2026-05-20'"),
        "customer_revenue_reconciles_with_order_revenue",
    ),
    (
        "customer_metrics",  # the old, arbitrary tie split
        (
            "cast(ceil(cast(5 * n_recency_at_or_below as double) / n_buyers) as integer)",
            "ntile(5) over (partition by n_orders > 0 order by recency_days desc)",
        ),
        "recency_score_follows_recency",
    ),
    (
        "int_order_revenue",
        ("orders.status = 'completed' as is_recognized", "orders.is_kept as is_recognized"),
        "gross_revenue_is_net_plus_refunded_plus_pending",
    ),
]


@pytest.mark.parametrize(("name", "edit", "failing"), ALTERED, ids=[c[2] for c in ALTERED])
def test_a_mart_with_another_revenue_definition_fails_its_check(
    engine: DuckDBEngine, tmp_path: Path, name: str, edit: tuple[str, str], failing: str
) -> None:
    shipped = modeling.discover(ProjectConfig())[name]
    source = Path(shipped.path).read_text()
    assert source.count(edit[0]) == 1, "the edit must hit the model's text exactly once"
    override = tmp_path / "models" / shipped.layer / Path(shipped.path).name
    override.parent.mkdir(parents=True)
    override.write_text(source.replace(*edit))
    data = tmp_path / "data"
    data.mkdir()
    graph = build_world(
        engine, data, ProjectConfig(), extra_rows=EXTRA, model_dirs=(tmp_path / "models",)
    )
    outcomes = checks.run_tests(engine, checks.compile_tests(graph), "r")
    assert failing in {o.test.name for o in outcomes if o.status == "fail"}
