"""The warehouse models against a small hand-built world with expected rows worked out by
hand, and the SCD Type 2 invariants on a simulated world."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from productlens import checks, modeling
from productlens.config import ProjectConfig
from productlens.engines import DuckDBEngine
from productlens.errors import DataTestFailure
from productlens.ingest import ingest_paths
from productlens.report.sections import read_health
from productlens.runlog import RunLog
from productlens.simulate import generate, preset
from tests.conftest import lake_of, q, warehouse_engine

NOW = datetime(2026, 11, 22, tzinfo=UTC)

# 2026-03-02 is a Monday. u9 is unknown to the users table (loaded with a warning, as by
# default): its event, order, subscription and assignment stay in the facts with a null
# user key, and it counts as a user first seen on 20 March.
FIXTURE = {
    "users": """user_id,signup_ts,country,device,acquisition_channel,campaign_id,segment
u1,2026-03-02 09:00:00,US,web,organic,,Regular
u2,2026-03-03 10:00:00,GB,mobile,paid_search,c1,Budget
""",
    "user_changes": """user_id,changed_at,segment,country
u1,2026-03-05 12:00:00,Premium,US
u9,2026-03-21 12:00:00,Premium,US
""",
    "products": """product_id,name,category,brand,price,cost,updated_at
p1,Widget,Home,B1,10,4,2026-01-01 00:00:00
p1,Widget,Home,B1,12,5,2026-03-04 00:00:00
p2,Gadget,Electronics,B2,100,80,2026-01-01 00:00:00
""",
    "campaigns": """campaign_id,name,channel,start_date,end_date,spend
c1,Search 1,paid_search,2026-03-01,2026-03-10,500
""",
    "orders": """order_id,user_id,order_ts,status,total_amount,campaign_id
o1,u1,2026-03-03 10:00:00,completed,20,
o2,u1,2026-03-06 11:00:00,completed,112,
o3,u2,2026-03-06 12:00:00,cancelled,100,c1
o4,u2,2026-03-07 09:00:00,refunded,24,c1
o5,u9,2026-03-20 21:05:00,completed,12,
""",
    "order_items": """order_id,line_no,product_id,quantity,unit_price
o1,1,p1,2,10
o2,1,p1,1,12
o2,2,p2,1,100
o3,1,p2,1,100
o4,1,p1,2,12
o5,1,p1,1,12
""",
    "events": """event_id,user_id,session_id,event_type,event_ts,device,country
e1,u1,s1,page_view,2026-03-02 09:00:00,web,US
e2,u1,s2,page_view,2026-03-03 09:59:00,web,US
e3,u1,s2,purchase,2026-03-03 10:00:00,web,US
e4,u2,s3,page_view,2026-03-03 10:00:00,mobile,GB
e5,u1,s4,page_view,2026-03-06 10:59:00,web,US
e6,u2,s5,page_view,2026-03-12 08:00:00,mobile,GB
e7,u1,s6,page_view,2026-03-20 20:00:00,web,US
e8,u2,s7,page_view,2026-05-20 10:00:00,mobile,GB
e9,u2,,page_view,2026-03-12 08:10:00,mobile,GB
e10,u2,,page_view,2026-03-12 08:50:00,mobile,GB
e11,u2,,product_view,2026-03-12 09:05:00,mobile,GB
e12,u9,s8,page_view,2026-03-20 21:00:00,web,US
""",
    "inventory": """snapshot_date,product_id,on_hand
2026-03-02,p1,50
2026-03-20,p1,40
2026-03-02,p2,10
2026-03-20,p2,8
""",
    # u1 upgrades in April then cancels (paid until 5 May); u2 downgrades in April.
    "subscriptions": """subscription_id,user_id,plan,billing_period,amount,started_at,cancelled_at,ended_at
s1,u1,starter,monthly,10,2026-03-03 10:00:00,,2026-04-05 00:00:00
s2,u1,pro,monthly,30,2026-04-05 00:00:00,2026-04-25 00:00:00,2026-05-05 00:00:00
s3,u2,pro,annual,240,2026-03-05 00:00:00,,2026-04-15 00:00:00
s4,u2,starter,annual,120,2026-04-15 00:00:00,,
s5,u9,starter,monthly,10,2026-05-01 00:00:00,,
""",
    "experiments": """experiment_id,name,hypothesis,variants,start_ts,end_ts,exposure_event,primary_metric,outcome_window_days
x1,Checkout,h,"{""control"": 0.5, ""treatment"": 0.5}",2026-03-01 00:00:00,2026-04-01 00:00:00,checkout_start,purchase,7
""",
    "assignments": """experiment_id,user_id,variant,assigned_ts
x1,u1,treatment,2026-03-03 09:59:00
x1,u2,control,2026-03-03 10:00:00
x1,u9,control,2026-03-20 20:30:00
""",
}
N_DAYS = 80  # 2 March to 20 May


def build_world(
    engine: DuckDBEngine,
    folder: Path,
    config: ProjectConfig,
    *,
    extra_rows: dict[str, str] | None = None,
    model_dirs: tuple[Path, ...] = (),
) -> modeling.ModelGraph:
    for table, text in FIXTURE.items():
        (folder / f"{table}.csv").write_text(text + (extra_rows or {}).get(table, ""))
    result = ingest_paths(lake_of(engine), [folder], config=config.ingest, now=NOW)
    assert result.quarantined == 0
    graph = modeling.discover(config, model_dirs)
    built = modeling.build(engine, graph, RunLog(engine))
    assert built.ok, built.failed
    return graph


@pytest.fixture
def warehouse(engine: DuckDBEngine, tmp_path: Path) -> DuckDBEngine:
    build_world(engine, tmp_path, ProjectConfig())
    return engine


def rows(engine: DuckDBEngine, sql: str) -> list[tuple[object, ...]]:
    return engine.fetch_all(q(sql))


def test_every_data_test_passes_on_the_fixture(warehouse: DuckDBEngine) -> None:
    graph = modeling.discover(ProjectConfig())
    outcomes = checks.run_tests(warehouse, checks.compile_tests(graph), "r")
    assert len(outcomes) > 40
    assert [o.test.name for o in outcomes if o.status in ("fail", "error")] == []
    # The unknown user u9 is no failure, but each of its facts says so (one row each).
    warned = {o.test.name: o.n_failing for o in outcomes if o.status == "warn"}
    assert warned == {
        "events_of_unknown_users": 1,
        "orders_of_unknown_users": 1,
        "subscriptions_of_unknown_users": 1,
        "assignments_of_unknown_users": 1,
        "user_changes_of_unknown_users": 1,
    }


def test_reconciliation_catches_an_order_that_disagrees_with_its_items(
    warehouse: DuckDBEngine,
) -> None:
    warehouse.execute(q("UPDATE core.fct_orders SET total_amount = 21 WHERE order_id = 'o1'"))
    graph = modeling.discover(ProjectConfig())
    outcomes = checks.run_tests(warehouse, checks.compile_tests(graph), "r")
    failed = [o.test.name for o in outcomes if o.status == "fail"]
    # o1 no longer matches its items, nor int_order_revenue (built before the edit).
    assert failed == ["order_total_equals_its_items", "order_revenue_reconciles_with_orders"]


def test_dim_date_calendar(warehouse: DuckDBEngine) -> None:
    assert rows(warehouse, "SELECT min(date_day), max(date_day), count(*) FROM core.dim_date") == [
        (date(2026, 3, 2), date(2026, 5, 20), N_DAYS)
    ]
    assert rows(
        warehouse,
        "SELECT week_start_date, iso_year, iso_week, month_start_date, quarter_of_year, "
        "iso_day_of_week, is_weekend FROM core.dim_date WHERE date_day IN "
        "('2026-03-02', '2026-03-08') ORDER BY date_day",
    ) == [
        (date(2026, 3, 2), 2026, 10, date(2026, 3, 1), 1, 1, False),
        (date(2026, 3, 2), 2026, 10, date(2026, 3, 1), 1, 7, True),
    ]


def test_week_start_is_configurable(engine: DuckDBEngine, tmp_path: Path) -> None:
    config = ProjectConfig.model_validate({"metrics": {"week_start": "sunday"}})
    build_world(engine, tmp_path, config)
    assert rows(
        engine,
        "SELECT date_day, week_start_date FROM core.dim_date WHERE date_day IN "
        "('2026-03-07', '2026-03-08') ORDER BY 1",
    ) == [(date(2026, 3, 7), date(2026, 3, 1)), (date(2026, 3, 8), date(2026, 3, 8))]


def test_dim_users_is_scd_type_2(warehouse: DuckDBEngine) -> None:
    assert rows(
        warehouse,
        "SELECT user_id, version_no, valid_from, valid_to, is_current, segment FROM "
        "core.dim_users ORDER BY user_id, version_no",
    ) == [
        ("u1", 1, datetime(1900, 1, 1), datetime(2026, 3, 5, 12), False, "Regular"),
        ("u1", 2, datetime(2026, 3, 5, 12), datetime(9999, 12, 31), True, "Premium"),
        ("u2", 1, datetime(1900, 1, 1), datetime(9999, 12, 31), True, "Budget"),
    ]
    # Facts carry the version valid at their time.
    assert rows(warehouse, "SELECT order_id, segment FROM core.fct_orders ORDER BY 1") == [
        ("o1", "Regular"),
        ("o2", "Premium"),
        ("o3", "Budget"),
        ("o4", "Budget"),
        ("o5", None),  # u9 is unknown: no version, no segment
    ]


def test_margin_uses_the_cost_valid_at_order_time(warehouse: DuckDBEngine) -> None:
    assert rows(
        warehouse,
        "SELECT order_id, line_no, unit_cost, revenue, cost_amount, margin "
        "FROM core.fct_order_items ORDER BY 1, 2",
    ) == [
        ("o1", 1, 4.0, 20.0, 8.0, 12.0),  # before the 4 March cost change
        ("o2", 1, 5.0, 12.0, 5.0, 7.0),  # after it
        ("o2", 2, 80.0, 100.0, 80.0, 20.0),
        ("o3", 1, 80.0, 100.0, 80.0, 20.0),
        ("o4", 1, 5.0, 24.0, 10.0, 14.0),
        ("o5", 1, 5.0, 12.0, 5.0, 7.0),
    ]


def test_daily_sales(warehouse: DuckDBEngine) -> None:
    got = rows(
        warehouse,
        "SELECT sales_date, n_orders, n_cancelled, n_units, gross_revenue, refunded_revenue, "
        "pending_revenue, net_revenue, cost_amount, margin FROM marts.daily_sales "
        "WHERE n_orders + n_cancelled > 0 ORDER BY 1",
    )
    # Cost and margin are those of net revenue: o4, refunded, has none.
    assert got == [
        (date(2026, 3, 3), 1, 0, 2, 20.0, 0.0, 0.0, 20.0, 8.0, 12.0),
        (date(2026, 3, 6), 1, 1, 2, 112.0, 0.0, 0.0, 112.0, 85.0, 27.0),  # o3 was cancelled
        (date(2026, 3, 7), 1, 0, 2, 24.0, 24.0, 0.0, 0.0, 0.0, 0.0),  # o4 was refunded
        (date(2026, 3, 20), 1, 0, 1, 12.0, 0.0, 0.0, 12.0, 5.0, 7.0),  # u9's order counts
    ]
    assert rows(warehouse, "SELECT count(*) FROM marts.daily_sales") == [(N_DAYS,)]
    # Reconciliation: order revenue equals the sum of items equals daily sales.
    assert rows(
        warehouse,
        "SELECT (SELECT sum(total_amount) FROM core.fct_orders WHERE is_kept), "
        "(SELECT sum(revenue) FROM core.fct_order_items WHERE is_kept), "
        "(SELECT sum(gross_revenue) FROM marts.daily_sales)",
    ) == [(168.0, 168.0, 168.0)]


def brute_force_active(activity: dict[str, list[date]], day: date, window: int) -> int:
    start = day - timedelta(days=window - 1)
    return sum(any(start <= d <= day for d in days) for days in activity.values())


def test_active_users_daily(warehouse: DuckDBEngine) -> None:
    activity = {
        "u1": [date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 6), date(2026, 3, 20)],
        "u2": [date(2026, 3, 3), date(2026, 3, 12), date(2026, 5, 20)],
        "u9": [date(2026, 3, 20)],
    }
    got = {
        r[0]: r[1:]
        for r in rows(
            warehouse, "SELECT activity_date, dau, wau, mau FROM marts.active_users_daily"
        )
    }
    assert len(got) == N_DAYS
    for day, (dau, wau, mau) in got.items():
        assert dau == brute_force_active(activity, day, 1), day
        assert wau == brute_force_active(activity, day, 7), day
        assert mau == brute_force_active(activity, day, 30), day
    # A few by hand: both users on 3 March; u2 leaves the weekly window on 10 March.
    assert got[date(2026, 3, 3)] == (2, 2, 2)
    assert got[date(2026, 3, 10)] == (0, 1, 2)
    assert got[date(2026, 3, 19)] == (0, 0, 2)
    assert got[date(2026, 3, 20)] == (2, 2, 3)  # u1 and the unknown u9


def test_arr_monthly(warehouse: DuckDBEngine) -> None:
    # March: u1 starter 10/month (120 ARR), u2 pro annual 240: both new.
    # April: u1 upgrades to 30/month (+240), u2 downgrades to 120 (-120).
    # May: u1's cancellation takes effect on 5 May (-360); the unknown u9 starts (+120).
    assert rows(
        warehouse,
        "SELECT month_start_date, gross_arr, new_arr, reactivation_arr, expansion_arr, "
        "contraction_arr, cancelled_arr, net_new_arr, n_paying_users FROM marts.arr_monthly "
        "ORDER BY 1",
    ) == [
        (date(2026, 3, 1), 360.0, 360.0, 0.0, 0.0, 0.0, 0.0, 360.0, 2),
        (date(2026, 4, 1), 480.0, 0.0, 0.0, 240.0, -120.0, 0.0, 120.0, 2),
        (date(2026, 5, 1), 240.0, 120.0, 0.0, 0.0, 0.0, -360.0, -240.0, 2),
    ]


def test_user_revenue(warehouse: DuckDBEngine) -> None:
    # Kept orders: u1 o1 (20) and o2 (112); u9 o5 (12); u2 o4, refunded, so no net revenue.
    assert rows(
        warehouse,
        "SELECT user_id, n_orders, net_revenue, revenue_rank, revenue_share, "
        "cumulative_revenue_share FROM marts.user_revenue ORDER BY revenue_rank",
    ) == [
        ("u1", 2, 132.0, 1, pytest.approx(132 / 144), pytest.approx(132 / 144)),
        ("u9", 1, 12.0, 2, pytest.approx(12 / 144), pytest.approx(1.0)),
        ("u2", 1, 0.0, 3, 0.0, pytest.approx(1.0)),
    ]


def test_event_counts_daily(warehouse: DuckDBEngine) -> None:
    assert rows(
        warehouse,
        "SELECT event_type, n_events, n_users FROM marts.event_counts_daily "
        "WHERE event_date = '2026-03-03' ORDER BY 1",
    ) == [("page_view", 2, 2), ("purchase", 1, 1)]
    assert rows(
        warehouse,
        "SELECT event_type, n_events, n_users FROM marts.event_counts_daily "
        "WHERE event_date = '2026-03-20'",
    ) == [("page_view", 2, 2)]  # u1 and the unknown u9


def test_retention_cohorts(warehouse: DuckDBEngine) -> None:
    # Both signed up in the week of 2 March (and in March). u1 is back in the week of
    # 16 March; u2 in the week of 9 March and of 18 May (week 11, month 2). u9, unknown
    # to the users table, joins the cohort of the day it was first seen (20 March).
    assert rows(
        warehouse,
        "SELECT cohort_grain, cohort_start_date, period_number, cohort_size, n_active_users, "
        "retention_rate FROM marts.retention_cohorts ORDER BY 1 DESC, 2, 3",
    ) == [
        ("week", date(2026, 3, 2), 0, 2, 2, 1.0),
        ("week", date(2026, 3, 2), 1, 2, 1, 0.5),
        ("week", date(2026, 3, 2), 2, 2, 1, 0.5),
        ("week", date(2026, 3, 2), 11, 2, 1, 0.5),
        ("week", date(2026, 3, 16), 0, 1, 1, 1.0),
        ("month", date(2026, 3, 1), 0, 3, 3, 1.0),
        ("month", date(2026, 3, 1), 2, 3, 1, pytest.approx(1 / 3)),
    ]


def test_experiment_exposures(warehouse: DuckDBEngine) -> None:
    assert rows(
        warehouse,
        "SELECT experiment_id, user_id, variant, first_exposure_ts, has_multiple_variants, "
        "outcome_window_days FROM marts.experiment_exposures ORDER BY 2",
    ) == [
        ("x1", "u1", "treatment", datetime(2026, 3, 3, 9, 59), False, 7),
        ("x1", "u2", "control", datetime(2026, 3, 3, 10, 0), False, 7),
        ("x1", "u9", "control", datetime(2026, 3, 20, 20, 30), False, 7),
    ]


def test_sessions_follow_ids_or_the_inactivity_rule(warehouse: DuckDBEngine) -> None:
    assert rows(warehouse, "SELECT count(*) FROM core.fct_sessions WHERE NOT is_derived") == [(8,)]
    # u2's events without a session id: 08:10, then 40 minutes of quiet (a new session),
    # then 15 minutes (the same one).
    assert rows(
        warehouse,
        "SELECT session_id, session_start_ts, n_events, duration_seconds FROM core.fct_sessions "
        "WHERE is_derived ORDER BY 1",
    ) == [
        ("u2#1", datetime(2026, 3, 12, 8, 10), 1, 0.0),
        ("u2#2", datetime(2026, 3, 12, 8, 50), 2, 900.0),
    ]


def test_experiment_outcomes(warehouse: DuckDBEngine) -> None:
    # u1, exposed 3 March 09:59: e2 (at the exposure), e3 (purchase) and e5 fall in the
    # 7-day window, e1 in the pre-window; o1 and o2 are completed in the window.
    # u2, exposed 3 March 10:00: only e4; its orders were cancelled or refunded, so
    # they count neither as revenue nor as orders.
    assert rows(
        warehouse,
        "SELECT user_id, variant, is_converted, revenue, n_orders, n_events, pre_is_converted, "
        "pre_revenue, pre_n_events FROM marts.experiment_outcomes ORDER BY 1",
    ) == [
        ("u1", "treatment", True, 132.0, 2, 3, False, 0.0, 1),
        ("u2", "control", False, 0.0, 0, 1, False, 0.0, 0),
        ("u9", "control", False, 12.0, 1, 1, False, 0.0, 0),  # e12 and o5 in its window
    ]


def test_product_metrics(warehouse: DuckDBEngine) -> None:
    # p1: o1 (2 units), o2 (1), o4 (2, refunded but shipped), o5 (1, u9's, at cost 5);
    # p2: o2 only (o3 cancelled). Revenue, cost and margin are net: o4's refunded line
    # (24, cost 10) is shipped but earns nothing, so p1 has 20 + 12 + 12 = 44, cost
    # 8 + 5 + 5 = 18, margin 26.
    got = rows(
        warehouse,
        "SELECT product_id, current_price, n_units, revenue, cost_amount, margin, margin_pct, "
        "avg_on_hand, inventory_turnover, days_of_cover FROM marts.product_metrics ORDER BY 1",
    )
    assert got == [
        (
            "p1",
            12.0,
            6,
            44.0,
            18.0,
            26.0,
            pytest.approx(26 / 44),
            45.0,
            pytest.approx(6 / 45),
            pytest.approx(40 / (6 / 80)),
        ),
        ("p2", 100.0, 1, 100.0, 80.0, 20.0, 0.2, 9.0, pytest.approx(1 / 9), 640.0),
    ]


def test_campaign_attribution(warehouse: DuckDBEngine) -> None:
    # c1 acquired u2, whose orders were cancelled or refunded: nothing earned yet.
    assert rows(
        warehouse,
        "SELECT campaign_id, spend, first_touch_signups, first_touch_customers, "
        "first_touch_revenue, last_touch_orders, roas, roi, cost_per_signup, cac "
        "FROM marts.campaign_attribution",
    ) == [("c1", 500.0, 1, 0, 0.0, 0, 0.0, -1.0, 500.0, None)]


def test_customer_metrics(warehouse: DuckDBEngine) -> None:
    # As of 20 May. u1: o1 (20, margin 12) and o2 (112, margin 27); Regular at the first
    # order, Premium now. u2 never completed an order. u1 is the only buyer, so every
    # score is 5 (a share of 1 of buyers are no better).
    got = rows(
        warehouse,
        "SELECT user_id, segment, segment_at_first_order, n_orders, revenue, margin, aov, "
        "days_to_first_purchase, recency_days, historical_clv, predicted_clv_12m, "
        "recency_score, frequency_score, monetary_score, churn_risk "
        "FROM marts.customer_metrics ORDER BY 1",
    )
    predicted = 66 * 2 * 365 / 80 * math.exp(-75 / 90)
    assert got == [
        ("u1", "Premium", "Regular", 2, 132.0, 39.0, 66.0, 1, 75, 132.0,
         pytest.approx(predicted), 5, 5, 5, "at_risk"),
        ("u2", "Budget", None, 0, 0.0, 0.0, None, None, None, 0.0, 0.0,
         None, None, None, "never_bought"),
    ]  # fmt: skip


def test_user_lifecycle(warehouse: DuckDBEngine) -> None:
    # u1 active in the weeks of 2 and 16 March; u2 in those of 2 and 9 March and 18 May;
    # u9 (unknown, so new in the week it was first seen) in that of 16 March.
    assert rows(
        warehouse,
        "SELECT week_start_date, status, n_users FROM marts.user_lifecycle ORDER BY 1, 2",
    ) == [
        (date(2026, 3, 2), "new", 2),
        (date(2026, 3, 9), "dormant", 1),
        (date(2026, 3, 9), "returning", 1),
        (date(2026, 3, 16), "dormant", 1),
        (date(2026, 3, 16), "new", 1),
        (date(2026, 3, 16), "resurrecting", 1),
        (date(2026, 3, 23), "dormant", 2),
        (date(2026, 5, 18), "resurrecting", 1),
    ]


def test_funnel_daily_metrics(warehouse: DuckDBEngine) -> None:
    # 3 March: both users viewed a page, neither a product. 12 March: u2's page view at
    # 08:00 is followed by a product view at 09:05.
    assert rows(
        warehouse,
        "SELECT event_date, step_no, n_users, conversion_from_start FROM "
        "marts.funnel_daily_metrics WHERE event_date IN ('2026-03-03', '2026-03-12') "
        "AND step_no <= 3 ORDER BY 1, 2",
    ) == [
        (date(2026, 3, 3), 1, 2, 1.0),
        (date(2026, 3, 3), 2, 0, 0.0),
        (date(2026, 3, 3), 3, 0, 0.0),
        (date(2026, 3, 12), 1, 1, 1.0),
        (date(2026, 3, 12), 2, 1, 1.0),
        (date(2026, 3, 12), 3, 0, 0.0),
    ]


def test_device_metrics(warehouse: DuckDBEngine) -> None:
    # Each user counts once, in the device of their first funnel event. Web: u1 and u9,
    # page views only. Mobile: u2, whose page view on 12 March is followed by a product
    # view within the day.
    got = rows(
        warehouse,
        "SELECT device, step_no, n_users, conversion_from_start, conversion_from_previous "
        "FROM marts.device_metrics WHERE step_no <= 3 ORDER BY 1, 2",
    )
    assert got == [
        ("mobile", 1, 1, 1.0, None),
        ("mobile", 2, 1, 1.0, 1.0),
        ("mobile", 3, 0, 0.0, 0.0),
        ("web", 1, 2, 1.0, None),
        ("web", 2, 0, 0.0, 0.0),
        ("web", 3, 0, 0.0, None),
    ]


def test_core_facts_join_the_version_valid_at_their_time(warehouse: DuckDBEngine) -> None:
    assert rows(
        warehouse,
        "SELECT product_id, snapshot_date, on_hand, stock_value_at_cost "
        "FROM core.fct_inventory_daily ORDER BY 1, 2",
    ) == [
        ("p1", date(2026, 3, 2), 50, 200.0),  # cost 4 until 4 March
        ("p1", date(2026, 3, 20), 40, 200.0),  # cost 5 after
        ("p2", date(2026, 3, 2), 10, 800.0),
        ("p2", date(2026, 3, 20), 8, 640.0),
    ]
    assert rows(
        warehouse,
        "SELECT subscription_id, arr, is_cancelled FROM core.fct_subscriptions ORDER BY 1",
    ) == [
        ("s1", 120.0, False),
        ("s2", 360.0, True),
        ("s3", 240.0, False),
        ("s4", 120.0, False),
        ("s5", 120.0, False),
    ]
    assert rows(
        warehouse, "SELECT user_id, variant, segment FROM core.fct_assignments ORDER BY 1"
    ) == [("u1", "treatment", "Regular"), ("u2", "control", "Budget"), ("u9", "control", None)]


@pytest.mark.parametrize(
    ("fact", "staged"),
    [
        ("fct_events", "stg_events"),
        ("fct_orders", "stg_orders"),
        ("fct_subscriptions", "stg_subscriptions"),
        ("fct_assignments", "stg_assignments"),
    ],
)
def test_facts_keep_rows_of_unknown_users_with_a_null_user_key(
    warehouse: DuckDBEngine, fact: str, staged: str
) -> None:
    assert rows(warehouse, f"SELECT count(*) FROM core.{fact}") == rows(
        warehouse, f"SELECT count(*) FROM staging.{staged}"
    )
    assert rows(
        warehouse, f"SELECT user_id, count(*) FROM core.{fact} WHERE user_sk IS NULL GROUP BY 1"
    ) == [("u9", 1)]


# --- Reconciliation: a layer that drops rows fails the check ------------------------------

# Unknown products load with a warning here, so that the product facts have a row to lose:
# p9 has a line on the cancelled o3 (outside every revenue sum) and a stock count.
UNKNOWN_PRODUCTS_LOAD = ProjectConfig.model_validate(
    {
        "ingest": {
            "unknown_references": {
                "users": "warn",
                "products": "warn",
                "orders": "quarantine",
                "experiments": "quarantine",
            }
        }
    }
)
P9_ROWS = {"order_items": "o3,2,p9,1,3\n", "inventory": "2026-03-20,p9,5\n"}
DROP_ONE_ROW = ("select * from final", "select * from final qualify row_number() over () > 1")

# One row per case: the model, the edit that breaks it, and the test that must fail.
BROKEN_MODELS = [
    *[
        (f"stg_{table}", DROP_ONE_ROW, f"same_rows_as__stg_{table}__raw_{table}")
        for table in (
            "events", "orders", "order_items", "subscriptions", "assignments", "inventory",
            "users", "products",
        )
    ],
    ("fct_events", ("left join users", "inner join users"), "same_rows_as__fct_events__stg_events"),
    ("fct_orders", ("left join users", "inner join users"), "same_rows_as__fct_orders__stg_orders"),
    (
        "fct_subscriptions",
        ("left join users", "inner join users"),
        "same_rows_as__fct_subscriptions__stg_subscriptions",
    ),
    (
        "fct_assignments",
        ("left join users", "inner join users"),
        "same_rows_as__fct_assignments__stg_assignments",
    ),
    (
        "fct_order_items",
        ("left join products", "inner join products"),
        "same_rows_as__fct_order_items__stg_order_items",
    ),
    (
        "fct_inventory_daily",
        ("left join products", "inner join products"),
        "same_rows_as__fct_inventory_daily__stg_inventory",
    ),
    (
        "dim_users",
        ("on ordered.user_id = users.user_id", "on ordered.user_id = users.user_id and users.user_id <> 'u2'"),
        "dim_users_hold_every_user",
    ),
    ("dim_users", DROP_ONE_ROW, "dim_users_hold_every_version"),
    ("fct_sessions", ("where session_id is null", "where false"), "sessions_hold_every_event"),
    ("event_counts_daily", DROP_ONE_ROW, "event_counts_hold_every_event"),
]  # fmt: skip


def test_every_error_test_passes_with_unknown_products(
    engine: DuckDBEngine, tmp_path: Path
) -> None:
    graph = build_world(engine, tmp_path, UNKNOWN_PRODUCTS_LOAD, extra_rows=P9_ROWS)
    outcomes = checks.run_tests(engine, checks.compile_tests(graph), "r")
    assert [o.test.name for o in outcomes if o.status in ("fail", "error")] == []
    warned = {o.test.name: o.n_failing for o in outcomes if o.status == "warn"}
    assert warned["order_items_of_unknown_products"] == 1
    assert warned["inventory_of_unknown_products"] == 1
    assert rows(
        engine,
        "SELECT (SELECT count(*) FROM core.fct_order_items WHERE product_sk IS NULL), "
        "(SELECT count(*) FROM core.fct_inventory_daily WHERE product_sk IS NULL)",
    ) == [(1, 1)]


@pytest.mark.parametrize(
    ("name", "edit", "failing"), BROKEN_MODELS, ids=[c[0] for c in BROKEN_MODELS]
)
def test_a_model_that_drops_rows_fails_its_reconciliation(
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
        engine, data, UNKNOWN_PRODUCTS_LOAD, extra_rows=P9_ROWS, model_dirs=(tmp_path / "models",)
    )
    outcomes = checks.run_tests(engine, checks.compile_tests(graph), "r")
    assert failing in {o.test.name for o in outcomes if o.status == "fail"}
    with pytest.raises(DataTestFailure):
        checks.raise_for_failures(outcomes)


# --- SCD Type 2 on a simulated world ------------------------------------------------------


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> DuckDBEngine:
    folder = tmp_path_factory.mktemp("sim")
    generate(preset(users=3000, days=60, seed=21), folder / "data", workers=1)
    engine = warehouse_engine(folder / "w.duckdb", memory_limit="2GB")
    ingest_paths(lake_of(engine), [folder / "data"], now=NOW)
    built = modeling.build(engine, modeling.discover(ProjectConfig()), RunLog(engine))
    assert built.ok, built.failed
    return engine


@pytest.mark.parametrize(
    ("dimension", "key"), [("dim_users", "user_id"), ("dim_products", "product_id")]
)
def test_scd2_ranges_never_overlap_and_leave_no_gaps(
    simulated: DuckDBEngine, dimension: str, key: str
) -> None:
    broken = rows(
        simulated,
        f"SELECT count(*) FROM (SELECT {key}, valid_from, valid_to, is_current, "
        f"lag(valid_to) OVER w AS prev_to, row_number() OVER w AS k, count(*) OVER "
        f"(PARTITION BY {key}) AS n FROM core.{dimension} WINDOW w AS (PARTITION BY {key} "
        "ORDER BY valid_from)) WHERE (k = 1 AND valid_from <> TIMESTAMP '1900-01-01') OR "
        "(k > 1 AND valid_from <> prev_to) OR (k = n) <> is_current OR (k = n AND valid_to "
        "<> TIMESTAMP '9999-12-31') OR valid_from >= valid_to",
    )
    assert broken == [(0,)]
    versions = rows(simulated, f"SELECT count(*) > count(DISTINCT {key}) FROM core.{dimension}")
    assert versions == [(True,)]  # there is history to get right


@pytest.mark.parametrize(
    ("fact", "dimension", "key", "time"),
    [
        ("stg_events", "dim_users", "user_id", "event_ts"),
        ("stg_orders", "dim_users", "user_id", "order_ts"),
    ],
)
def test_each_fact_row_joins_exactly_one_version(
    simulated: DuckDBEngine, fact: str, dimension: str, key: str, time: str
) -> None:
    counts = rows(
        simulated,
        f"SELECT n, count(*) FROM (SELECT f.{key}, f.{time}, count(d.{key}) AS n FROM "
        f"staging.{fact} f LEFT JOIN core.{dimension} d ON d.{key} = f.{key} AND f.{time} >= "
        f"d.valid_from AND f.{time} < d.valid_to GROUP BY ALL) GROUP BY n",
    )
    assert [c[0] for c in counts] == [1]
    items = rows(
        simulated,
        "SELECT count(*) FROM staging.stg_order_items i JOIN staging.stg_orders o USING "
        "(order_id) WHERE (SELECT count(*) FROM core.dim_products p WHERE p.product_id = "
        "i.product_id AND o.order_ts >= p.valid_from AND o.order_ts < p.valid_to) <> 1",
    )
    assert items == [(0,)]
    assert rows(simulated, "SELECT count(*) FROM core.fct_events") == rows(
        simulated, "SELECT count(*) FROM staging.stg_events"
    )


def test_the_saas_scenario_builds_with_non_trivial_marts(tmp_path: Path) -> None:
    generate(preset("saas", users=2500, days=75, seed=13), tmp_path / "data", workers=1)
    engine = warehouse_engine(tmp_path / "w.duckdb", memory_limit="2GB")
    try:
        ingest_paths(lake_of(engine), [tmp_path / "data"], now=NOW)
        config = ProjectConfig.model_validate({"simulate": {"scenario": "saas"}})
        graph = modeling.discover(config)
        built = modeling.build(engine, graph, RunLog(engine))
        assert built.ok, built.failed
        outcomes = checks.run_tests(engine, checks.compile_tests(graph), "r")
        assert [o.test.name for o in outcomes if o.status in ("fail", "error")] == []
        dau, wau, mau = rows(
            engine, "SELECT avg(dau), avg(wau), avg(mau) FROM marts.active_users_daily"
        )[0]
        assert 0 < dau < wau < mau
        arr = rows(engine, "SELECT gross_arr, expansion_arr FROM marts.arr_monthly ORDER BY 1")
        assert arr[-1][0] > arr[0][0] > 0  # ARR grows as users upgrade
        assert sum(r[1] for r in arr) > 0
        counts = dict(
            rows(
                engine, "SELECT event_type, sum(n_events) FROM marts.event_counts_daily GROUP BY 1"
            )
        )
        assert counts["create_project"] > counts["export"] > 0
        steps = rows(engine, "SELECT DISTINCT step_name FROM marts.funnel_daily_metrics")
        assert {s[0] for s in steps} == {"login", "create_project", "export", "invite", "upgrade"}
    finally:
        engine.close()


def test_campaign_attribution_reconciles_on_a_simulated_world(simulated: DuckDBEngine) -> None:
    attributed, acquired = rows(
        simulated,
        "SELECT (SELECT sum(first_touch_signups) FROM marts.campaign_attribution), "
        "(SELECT count(*) FROM staging.stg_users WHERE campaign_id IS NOT NULL)",
    )[0]
    assert attributed == acquired > 0
    spread = rows(
        simulated, "SELECT max(roas) / min(roas) FROM marts.campaign_attribution WHERE roas > 0"
    )
    assert spread[0][0] > 1.5  # campaigns differ in return
    funnel_vs_active = rows(
        simulated,
        "SELECT count(*) FROM marts.funnel_daily_metrics f JOIN marts.active_users_daily a "
        "ON a.activity_date = f.event_date WHERE f.step_no = 1 AND f.n_users > a.dau",
    )
    assert funnel_vs_active == [(0,)]  # step-1 users never exceed active users


def test_a_first_purchase_before_signup_warns_and_shows_in_data_health(
    engine: DuckDBEngine, tmp_path: Path
) -> None:
    # u3 signs up on 10 March but its first completed order is dated 8 March: possible
    # data (a guest checkout), kept as the source says and flagged, like events before
    # signup.
    build_world(
        engine,
        tmp_path,
        ProjectConfig(),
        extra_rows={
            "users": "u3,2026-03-10 09:00:00,US,web,organic,,Regular\n",
            "orders": "o6,u3,2026-03-08 12:00:00,completed,12,\n",
            "order_items": "o6,1,p1,1,12\n",
        },
    )
    assert rows(
        engine,
        "SELECT user_id, days_to_first_purchase FROM marts.customer_metrics "
        "WHERE n_orders > 0 ORDER BY user_id",  # u2 has no completed order
    ) == [("u1", 1), ("u3", -2)]
    graph = modeling.discover(ProjectConfig())
    outcomes = checks.run_tests(engine, checks.compile_tests(graph), "r")
    assert [o.test.name for o in outcomes if o.status in ("fail", "error")] == []
    warned = {o.test.name: o.n_failing for o in outcomes if o.status == "warn"}
    assert warned["first_purchase_after_signup"] == 1
    health = read_health(engine)
    assert health is not None
    assert {
        "test_name": "first_purchase_after_signup",
        "model": "marts.customer_metrics",
        "severity": "warn",
        "status": "warn",
        "n_failing": 1,
    } in health.failing_tests.to_pylist()
