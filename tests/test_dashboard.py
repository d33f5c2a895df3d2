"""The Streamlit dashboard under Streamlit's AppTest: every page of both demo worlds runs
without an exception, and the numbers it shows are the warehouse's (independent queries
here, or the brute-force funnel); a missing warehouse gets the guidance page."""

from __future__ import annotations

import json
import re
import socket
import sys
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from productlens import modeling
from productlens.config import load_project
from productlens.dashboard import ENTRY, check_address, exposure_note
from productlens.dashboard.pages import PAGES
from productlens.engines import DuckDBEngine, Engine
from productlens.errors import ConfigError
from productlens.lineage import model_graph_dot
from productlens.metrics.customer_value import REASONS
from productlens.report.sections import Settings, read_experiments
from tests.conftest import open_readonly, q, run_cli
from tests.funnel_reference import reference_funnel

TIMEOUT = 180  # seconds a page may take under AppTest on a loaded machine


def app_for(root: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The app as `productlens dashboard` starts it: entry.py with the project after `--`."""
    monkeypatch.setattr(sys, "argv", [str(ENTRY), "--project", str(root)])
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.run()
    return at


def open_page(at: AppTest, slug: str) -> AppTest:
    at.sidebar.radio(key="page").set_value(slug).run()
    assert not at.exception, f"{slug}: {[e.value for e in at.exception]}"
    assert not at.error, f"{slug}: {[e.value for e in at.error]}"
    assert at.title[0].value == PAGES[slug].title
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def frame(at: AppTest, *columns: str) -> Any:
    """The first table on the page with these columns (AppTest keeps no table keys)."""
    for df in at.dataframe:
        if set(columns) <= set(df.value.columns):
            return df.value
    raise AssertionError(f"no table with columns {columns}")


def plotly_charts(at: AppTest) -> dict[str, list[dict[str, Any]]]:
    """Each Plotly chart's traces (as Plotly's JSON gives them), by the chart's title."""
    found = {}
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        found[spec["layout"]["title"]["text"]] = spec["data"]
    return found


def count(n: int | float) -> str:
    return f"{n:,.0f}"


def one(engine: Engine, sql: str, *params: object) -> Any:
    return engine.fetch_all(q(sql, *params))[0][0]


@pytest.fixture
def warehouse(demo_project: Path) -> Iterator[DuckDBEngine]:
    engine = open_readonly(demo_project)
    yield engine
    engine.close()


def overview_period(engine: Engine) -> tuple[date, date]:
    """The overview's default period: the data's last week (half the data if shorter),
    whatever the device and country filters."""
    first = one(engine, "select min(event_date) from core.fct_events")
    last = one(engine, "select max(event_date) from core.fct_events")
    length = max(1, min(7, ((last - first).days + 1) // 2))
    return last - timedelta(days=length - 1), last


def test_every_page_shows_the_warehouse_numbers(
    demo_project: Path, warehouse: DuckDBEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app_for(demo_project, monkeypatch)
    assert at.sidebar.radio(key="page").options == [p.title for p in PAGES.values()]

    # Overview: active users and events over the last week, as the warehouse counts them.
    start, end = overview_period(warehouse)
    shown = metrics(open_page(at, "overview"))
    users = one(
        warehouse,
        "select count(distinct user_id) from core.fct_events where event_date between ? and ?",
        start,
        end,
    )
    events = one(
        warehouse,
        "select count(*) from core.fct_events where event_date between ? and ?",
        start,
        end,
    )
    assert shown["active users"] == count(users)
    assert shown["events"] == count(events)
    revenue = one(
        warehouse,
        "select sum(net_revenue) from core.int_order_revenue where order_date between ? and ?",
        start,
        end,
    )
    assert shown["net revenue"] == f"{revenue:,.2f}"
    # The caption names both periods' days and whose they are; the simulated world ends
    # with its last day, so nothing is said of how far the data go into it.
    latest = one(warehouse, "select max(event_ts) from core.fct_events")
    assert latest >= datetime.combine(end, time(23, 59))
    length = end - start
    assert at.caption[0].value == (
        f"{start} to {end}, against "
        f"{start - length - timedelta(days=1)} to {start - timedelta(days=1)} (UTC days)"
    )
    assert at.get("plotly_chart"), "the daily conversion chart"

    # Funnel: the default steps over every event, against the brute-force reference.
    steps = ["page_view", "product_view", "add_to_cart", "checkout_start", "purchase"]
    at = open_page(at, "funnel")
    assert at.multiselect(key="funnel_steps").value == steps
    rows = warehouse.fetch_arrow(q("select * from core.fct_events")).to_pylist()
    expected = reference_funnel(rows, steps, window=timedelta(days=1))["steps"]
    shown = metrics(at)
    assert shown["entered (page_view)"] == count(expected[0]["count"])
    assert shown["reached purchase"] == count(expected[-1]["count"])
    table = frame(at, "step", "users")
    assert table["users"].tolist() == [s["count"] for s in expected]
    # A breakdown by device: one bucket per device, each against the reference.
    at.selectbox(key="funnel_by").set_value("device").run()
    buckets = reference_funnel(rows, steps, window=timedelta(days=1), by="device")["breakdown"]
    by_device = frame(at, "value", "entered")
    assert dict(zip(by_device["value"], by_device["entered"], strict=True)) == {
        k: v["steps"][0]["count"] for k, v in buckets.items()
    }
    at.selectbox(key="funnel_by").set_value(None).run()

    # Retention: one row per signup week, sizes from the users table.
    at = open_page(at, "retention")
    cohorts = frame(at, "cohort", "size")
    assert len(cohorts) > 0
    signed = warehouse.fetch_all(
        q(
            "select cast(date_trunc('week', signup_ts) as date) as week, count(*) from "
            "core.dim_users where is_current group by week"
        )
    )
    sizes = {w.isoformat(): n for w, n in signed}
    for cohort, size in zip(cohorts["cohort"], cohorts["size"], strict=True):
        # Users first seen without a signup join the cohort of their first event.
        assert size >= sizes.get(cohort, 0)

    # Engagement: DAU and MAU of the last day.
    at = open_page(at, "engagement")
    last = one(warehouse, "select max(event_date) from core.fct_events")
    dau = one(
        warehouse, "select count(distinct user_id) from core.fct_events where event_date = ?", last
    )
    mau = one(
        warehouse,
        "select count(distinct user_id) from core.fct_events where event_date between ? and ?",
        last - timedelta(days=29),
        last,
    )
    shown = metrics(at)
    assert shown[f"DAU on {last}"] == count(dau)
    assert shown["MAU"] == count(mau)

    # Revenue: net revenue and orders of every day, from the daily sales mart.
    shown = metrics(open_page(at, "revenue"))
    assert (
        shown["net revenue"]
        == f"{one(warehouse, 'select sum(net_revenue) from marts.daily_sales'):,.2f}"
    )
    assert shown["orders"] == count(one(warehouse, "select sum(n_orders) from marts.daily_sales"))
    # Customer value: two weeks of orders fit nothing; the page says why and shows history.
    status = one(warehouse, "select min(fit_status) from marts.customer_value")
    assert status == one(warehouse, "select max(fit_status) from marts.customer_value")
    assert status == "no_dropout_seen"
    (note,) = [i.value for i in at.info]
    assert REASONS[status]() in note
    assert "mean probability alive" not in shown
    charts = plotly_charts(at)
    assert "Customers by probability of being still active" not in charts
    (bars,) = charts["Net revenue per user to date, by segment"]
    clv = warehouse.fetch_all(
        q("select segment, avg(historical_clv) from marts.customer_metrics group by segment")
    )
    assert dict(zip(bars["x"], bars["y"], strict=True)) == pytest.approx(dict(clv))
    (bands,) = charts["Customers by churn risk (days since the last order)"]
    churn = dict(
        warehouse.fetch_all(
            q(
                "select churn_risk, count(*) from marts.customer_metrics "
                "where churn_risk_basis = 'recency' group by churn_risk"
            )
        )
    )
    assert bands["x"] == ["active", "at risk", "churned"]
    assert bands["y"] == [churn.get(b, 0) for b in ("active", "at_risk", "churned")]

    # Products and marketing: every product that sold, every campaign.
    at = open_page(at, "products")
    sold = one(warehouse, "select count(*) from marts.product_metrics where revenue > 0")
    assert len(frame(at, "product_id", "margin")) == sold
    at = open_page(at, "marketing")
    campaigns = one(warehouse, "select count(*) from marts.campaign_attribution")
    assert len(frame(at, "campaign_id", "roi")) == campaigns

    # Experiments: one row per treatment of every exposed experiment; the plan calculator.
    at = open_page(at, "experiments")
    arms = one(
        warehouse,
        "select count(distinct (experiment_id, variant)) - count(distinct experiment_id) "
        "from marts.experiment_exposures",
    )
    table = frame(at, "experiment", "lift")
    assert len(table) == arms
    # Each user count is named by its arm (one "users" column did not say which was control).
    settings = Settings.from_config(load_project(demo_project).config)
    section = read_experiments(warehouse, settings=settings)
    assert section is not None
    expected = [(s.variant, s.n_variant, s.control, s.n_control) for s in section.summaries]
    shown_arms = table[["variant", "users in variant", "control", "users in control"]]
    assert [tuple(r) for r in shown_arms.itertuples(index=False)] == expected
    at.number_input(key="plan_baseline").set_value(0.2).run()
    at.number_input(key="plan_mde").set_value(0.1).run()
    from productlens.experiments.power import sample_size

    plan = sample_size(0.2, 0.1, daily_users=1000.0)
    assert metrics(at)["users per arm"] == count(plan.n_per_arm)

    # Data health: rows still held in quarantine, and the last check's tests.
    shown = metrics(open_page(at, "health"))
    held = one(
        warehouse,
        "select count(*) from raw.quarantine where released_at is null and superseded_at is null",
    )
    assert shown["rows in quarantine"] == count(held)
    run = one(warehouse, "select run_id from ops.test_results order by checked_at desc limit 1")
    passed = one(
        warehouse,
        "select count(*) from ops.test_results where run_id = ? and status = 'pass'",
        run,
    )
    total = one(warehouse, "select count(*) from ops.test_results where run_id = ?", run)
    assert shown["data tests passed"] == f"{passed:,} of {total:,}"
    # The last build's time, to the second on the page and in the sidebar (the sidebar
    # showed microseconds), the same in both: the end of the latest run with a build step.
    built = one(
        warehouse,
        "select max(finished_at) from ops.run_log where run_id = (select run_id from "
        "ops.run_log where stage = 'build' order by started_at desc limit 1)",
    )
    assert shown["last build"] == built.strftime("%Y-%m-%d %H:%M:%S")
    (caption,) = [c.value for c in at.sidebar.caption if "last build" in c.value]
    assert caption == f"duckdb warehouse · last build {shown['last build']}"
    assert len(frame(at, "run_id", "stage")) == min(
        200, one(warehouse, "select count(*) from ops.run_log")
    )
    # The model graph, drawn from DOT: an edge for each table a model reads.
    (chart,) = at.get("graphviz_chart")
    project = load_project(demo_project)
    graph = modeling.discover(project.config, project.model_dirs)
    assert chart.proto.spec == model_graph_dot(graph)
    assert '"staging.stg_events" -> "core.fct_events";' in chart.proto.spec


def test_the_revenue_page_shows_the_fitted_customer_value(
    fitted_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = open_readonly(fitted_project)
    try:
        fit = engine.fetch_arrow(q("select * from marts.customer_value")).to_pylist()
        segments = dict(
            engine.fetch_all(q("select user_id, segment from core.dim_users where is_current"))
        )
        spent = dict(
            engine.fetch_all(
                q(
                    "select user_id, sum(net_revenue) from core.int_order_revenue "
                    "where is_recognized group by user_id"
                )
            )
        )
    finally:
        engine.close()
    assert {r["fit_status"] for r in fit} == {"fitted"}
    monkeypatch.setattr(sys, "argv", [str(ENTRY), "--project", str(fitted_project)])
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.query_params["page"] = "revenue"  # straight to the page, as a shared link opens it
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == PAGES["revenue"].title
    assert not at.info  # no why-not note: the fit is usable
    shown = metrics(at)
    alive = [r["probability_alive"] for r in fit]
    assert shown["customers"] == count(len(fit))
    assert shown["predicted value, next 52 weeks"] == f"{sum(r['clv_52w'] for r in fit):,.2f}"
    purchases = sum(r["expected_purchases_52w"] for r in fit)
    assert shown["expected purchases, next 52 weeks"] == f"{purchases:,.1f}"
    assert shown["mean probability alive"] == f"{sum(alive) / len(alive):.1%}"
    # Per segment, per customer: net revenue to date beside the predicted 52 weeks.
    to_date: dict[str, list[float]] = {}
    predicted: dict[str, list[float]] = {}
    for r in fit:
        segment = segments[r["user_id"]]
        to_date.setdefault(segment, []).append(spent[r["user_id"]])
        predicted.setdefault(segment, []).append(r["clv_52w"])
    charts = plotly_charts(at)
    history, prediction = charts["Customer value per customer, by segment"]
    assert (history["name"], prediction["name"]) == ("to date", "predicted, next 52 weeks")
    mean = {s: sum(v) / len(v) for s, v in to_date.items()}
    assert dict(zip(history["x"], history["y"], strict=True)) == pytest.approx(mean)
    mean = {s: sum(v) / len(v) for s, v in predicted.items()}
    assert dict(zip(prediction["x"], prediction["y"], strict=True)) == pytest.approx(mean)
    table = frame(at, "segment", "predicted_clv_per_customer")
    assert dict(zip(table["segment"], table["n_customers"], strict=True)) == {
        s: len(v) for s, v in to_date.items()
    }
    # Churn bands from the probability alive at 0.7 and 0.3; its histogram in tenths.
    (bands,) = charts["Customers by churn risk (probability alive)"]
    assert bands["y"] == [
        sum(p >= 0.7 for p in alive),
        sum(0.3 <= p < 0.7 for p in alive),
        sum(p < 0.3 for p in alive),
    ]
    (histogram,) = charts["Customers by probability of being still active"]
    assert histogram["y"] == [sum(min(int(p * 10), 9) == k for p in alive) for k in range(10)]


def test_a_filter_changes_the_numbers_as_the_warehouse_says(
    demo_project: Path, warehouse: DuckDBEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(app_for(demo_project, monkeypatch), "overview")
    devices = [
        r[0]
        for r in warehouse.fetch_all(
            q("select distinct device from core.fct_events where device is not null order by 1")
        )
    ]
    assert at.sidebar.multiselect(key="devices").options == devices
    device = devices[0]
    at.sidebar.multiselect(key="devices").set_value([device]).run()
    start, end = overview_period(warehouse)
    users = one(
        warehouse,
        "select count(distinct user_id) from core.fct_events "
        "where device = ? and event_date between ? and ?",
        device,
        start,
        end,
    )
    assert metrics(at)["active users"] == count(users)
    # A narrower date range: the overview compares it with the days just before it.
    last = one(warehouse, "select max(event_date) from core.fct_events")
    at.sidebar.multiselect(key="devices").set_value([]).run()
    at.sidebar.date_input(key="dates").set_value((last - timedelta(days=2), last)).run()
    users = one(
        warehouse,
        "select count(distinct user_id) from core.fct_events where event_date between ? and ?",
        last - timedelta(days=2),
        last,
    )
    assert metrics(at)["active users"] == count(users)


def test_the_saas_world_runs_every_page(
    saas_demo_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = open_readonly(saas_demo_project)
    try:
        mau_last = one(engine, "select max(event_date) from core.fct_events")
        mau = one(
            engine,
            "select count(distinct user_id) from core.fct_events where event_date between ? and ?",
            mau_last - timedelta(days=29),
            mau_last,
        )
        campaigns = one(engine, "select count(*) from marts.campaign_attribution")
        steps = ["login", "create_project", "export", "invite", "upgrade"]
        first = one(
            engine,
            "select count(distinct user_id) from core.fct_events where event_type = 'login'",
        )
    finally:
        engine.close()
    at = app_for(saas_demo_project, monkeypatch)
    for slug in PAGES:
        open_page(at, slug)
        if slug == "funnel":
            assert at.multiselect(key="funnel_steps").value == steps
            assert metrics(at)["entered (login)"] == count(first)
        if slug == "engagement":
            assert metrics(at)["MAU"] == count(mau)
            assert at.get("plotly_chart"), "usage charts"
        if slug == "products":
            # The SaaS world sells no products: said, not drawn.
            assert at.info[0].value == "The warehouse has no product sales."
            assert not at.get("plotly_chart")
        if slug == "marketing":
            assert len(frame(at, "campaign_id", "roi")) == campaigns
        if slug == "revenue":
            # No orders, no customers: no customer-value part, no note about a fit.
            assert not at.info
            assert "Customer value" not in [h.value for h in at.subheader]


def test_a_missing_warehouse_gets_the_guidance_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app_for(tmp_path, monkeypatch)
    assert not at.exception
    assert at.warning[0].value == "No warehouse yet"
    commands = [c.value for c in at.code]
    assert any(c.endswith(" demo") for c in commands)
    assert str(tmp_path / "warehouse.duckdb") in at.markdown[0].value


def test_a_taken_port_or_a_bad_host_is_told_before_streamlit_starts(tmp_path: Path) -> None:
    """A taken port printed "dashboard on http://..." and then Streamlit's own line; now the
    command says it cannot listen there, with the reason, and starts nothing."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--project", str(tmp_path), "dashboard", "--port", str(port))
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"error [config]: cannot listen on 127.0.0.1:{port}" in result.stderr
        assert "http://" not in result.stdout
        with pytest.raises(ConfigError, match=re.escape(f"cannot listen on 127.0.0.1:{port}")):
            check_address("127.0.0.1", port)
    with pytest.raises(ConfigError, match=re.escape("cannot listen on 999.1.1.1:8501")):
        check_address("999.1.1.1", 8501)


@pytest.mark.parametrize(
    ("host", "exposed"),
    [("127.0.0.1", False), ("localhost", False), ("::1", False), ("0.0.0.0", True), ("::", True)],
)
def test_listening_beyond_loopback_is_warned(host: str, *, exposed: bool) -> None:
    note = exposure_note(host, 8501)
    assert (note is not None) == exposed
    if note is not None:
        assert "no login" in note
        assert host in note
