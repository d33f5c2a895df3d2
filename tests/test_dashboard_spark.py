"""The dashboard on a Spark warehouse, reading the run's one Spark build (`spark_warehouse`)
through Spark Connect (the service started inside the run's own session, as in
test_engine_spark_connect: no second JVM). End to end, `productlens dashboard` against that
service in Chromium: every page, its KPIs Spark's own counts, one session for all of them.
Under AppTest, on one page: the kept session, a lost server as the guidance page, and the
next run connecting again. (Every page under AppTest runs on DuckDB and PostgreSQL in
test_dashboard*.py; on Spark one pass over the pages is what the suite's budget allows.)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from productlens.app import SPARK_MASTER_ENV
from productlens.dashboard import ENTRY
from productlens.dashboard.pages import PAGES
from productlens.engines import Engine
from productlens.engines.spark import SparkEngine
from tests import servers
from tests.conftest import q
from tests.cross_engine import SparkWarehouse
from tests.test_dashboard import TIMEOUT, count, metrics, one, overview_period
from tests.test_dashboard_browser import chromium, dashboard, kpi, settled

pytestmark = pytest.mark.xdist_group("spark")
RETRY_SECONDS = 2  # how long the dashboard's client retries a server that went away
# A Spark page runs its queries through Spark Connect on the run's one JVM: under a loaded
# suite the overview's first load took over 120 s (the DuckDB browser test's bound).
SPARK_PAGE_TIMEOUT_MS = 600_000


@dataclass(frozen=True)
class Kpis:
    """What the pages show, as Spark counts it in the warehouse."""

    last: Any
    users: int
    events: int
    dau: int
    net_revenue: float
    entered: int
    held: int

    def check(self, slug: str, shown: dict[str, str]) -> None:
        expected = {
            "overview": {"active users": count(self.users), "events": count(self.events)},
            "funnel": {"entered (page_view)": count(self.entered)},
            "engagement": {f"DAU on {self.last}": count(self.dau)},
            "revenue": {"net revenue": f"{self.net_revenue:,.2f}"},
            "health": {"rows in quarantine": count(self.held)},
        }.get(slug, {})
        assert {k: shown.get(k) for k in expected} == expected, slug


def spark_kpis(engine: Engine) -> Kpis:
    """The overview's last week (half the data if shorter), the last day's DAU, the daily
    sales mart's net revenue, the funnel's first step and the rows held in quarantine."""
    start, last = overview_period(engine)
    users, events = engine.fetch_all(
        q(
            "select count(distinct user_id), count(*) from core.fct_events "
            "where event_date between ? and ?",
            start,
            last,
        )
    )[0]
    return Kpis(
        last=last,
        users=users,
        events=events,
        dau=one(
            engine, "select count(distinct user_id) from core.fct_events where event_date = ?", last
        ),
        net_revenue=one(engine, "select sum(net_revenue) from marts.daily_sales"),
        entered=one(
            engine,
            "select count(distinct user_id) from core.fct_events where event_type = 'page_view'",
        ),
        held=one(
            engine,
            "select count(*) from raw.quarantine "
            "where released_at is null and superseded_at is null",
        ),
    )


def dashboard_project(warehouse: SparkWarehouse, root: Path) -> Path:
    """A project on the Spark build: its project file, with a short Connect retry."""
    root.mkdir()
    text = (warehouse.project / "productlens.toml").read_text()
    retry = f"\n[warehouse.spark]\nconnect_retry_seconds = {RETRY_SECONDS}\n"
    (root / "productlens.toml").write_text(text + retry)
    return root


@pytest.fixture
def connect(spark: Any) -> Iterator[servers.ConnectService]:
    service = servers.connect_service_in_session(spark)
    yield service
    service.stop()


def test_one_kept_spark_session_a_lost_server_and_back(
    spark_warehouse: SparkWarehouse,
    spark: Any,
    connect: servers.ConnectService,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under AppTest, on the Data health page (every page's numbers are the Chromium test's
    below: one pass over the pages on Spark is enough for the suite's budget): reruns keep
    one Spark Connect session; a lost server becomes the guidance page; once it is back the
    next run connects again with a new session; clearing the cache releases it."""
    built = SparkEngine(spark)
    spark_warehouse.check_intact(built)
    kpis = spark_kpis(built)
    root = dashboard_project(spark_warehouse, tmp_path / "dashboard")
    monkeypatch.setenv(SPARK_MASTER_ENV, connect.url)
    monkeypatch.setattr(sys, "argv", [str(ENTRY), "--project", str(root), "--engine", "spark"])
    active_before, closed_before = servers.connect_sessions(spark)
    at = AppTest.from_file(str(ENTRY), default_timeout=TIMEOUT)
    at.query_params["page"] = "health"
    try:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.sidebar.caption[0].value.startswith("spark warehouse")
        assert at.title[0].value == PAGES["health"].title
        kpis.check("health", metrics(at))
        at.run()  # a rerun, as a filter change or a click makes
        kpis.check("health", metrics(at))
        # One Spark Connect session served both runs, kept from run to run.
        active, closed = servers.connect_sessions(spark)
        (session,) = active - active_before
        assert closed == closed_before

        # The server goes away: the next run says so instead of a traceback...
        connect.stop()
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert [w.value for w in at.warning] == ["The warehouse cannot be reached"]
        assert "lost the Spark Connect server" in at.markdown[0].value
        assert not at.metric  # the page is replaced, not left half-drawn
        # ...and once it is back, the next run connects again (a new session): the dead
        # engine was not kept.
        servers.connect_service_in_session(spark, port=connect.port)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        kpis.check("health", metrics(at))
        active, _ = servers.connect_sessions(spark)
        (again,) = active - active_before
        assert again != session
    finally:
        st.cache_resource.clear()  # closes the kept engine: its session is released
    active, closed = servers.connect_sessions(spark)
    assert again not in active
    assert again in closed


@pytest.mark.slow
def test_every_page_in_chromium_on_spark_connect(
    spark_warehouse: SparkWarehouse,
    spark: Any,
    connect: servers.ConnectService,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """`productlens dashboard` as a Spark Connect client of the run's session, driven by
    Chromium: every page without an error, the KPIs Spark's, one Spark Connect session for
    all of them, and that session released when the dashboard stops."""
    built = SparkEngine(spark)
    spark_warehouse.check_intact(built)
    kpis = spark_kpis(built)
    shown_kpis = {
        "overview": ("active users", "events"),
        "funnel": ("entered (page_view)",),
        "engagement": (f"DAU on {kpis.last}",),
        "revenue": ("net revenue",),
        "health": ("rows in quarantine",),
    }
    root = dashboard_project(spark_warehouse, tmp_path / "dashboard")
    active_before, closed_before = servers.connect_sessions(spark)
    timings: dict[str, float] = {}
    log = tmp_path / "server.log"
    with dashboard(root, log, ["--engine", "spark"], {SPARK_MASTER_ENV: connect.url}) as (
        url,
        proc,
    ):
        with chromium(tmp_path / "profile") as page:
            began = time.monotonic()
            page.goto(f"{url}/?page=overview")
            settled(page, "Overview", SPARK_PAGE_TIMEOUT_MS)
            timings["overview (first load)"] = time.monotonic() - began
            sidebar = page.get_by_test_id("stSidebar")
            for slug, spec in PAGES.items():
                began = time.monotonic()
                sidebar.get_by_text(spec.title, exact=True).click()
                settled(page, spec.title, SPARK_PAGE_TIMEOUT_MS)
                timings[slug] = time.monotonic() - began
                assert page.get_by_test_id("stException").count() == 0, slug
                assert page.get_by_test_id("stAlertContentError").count() == 0 or (
                    slug == "experiments"  # a sample ratio mismatch banner is an error box
                ), slug
                kpis.check(slug, {label: kpi(page, label) for label in shown_kpis.get(slug, ())})
        # One Spark Connect session served every page of the browser's session.
        active, closed = servers.connect_sessions(spark)
        (session,) = active - active_before
        assert closed == closed_before
        proc.terminate()  # as the test's own `finally` would: the dashboard stops cleanly
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    active, closed = servers.connect_sessions(spark)
    assert session not in active
    assert session in closed  # released by the dashboard on its way out
    report = "\n".join(f"{name}: {seconds:.2f} s" for name, seconds in timings.items())
    record_property("measured", f"dashboard render times on Spark Connect:\n{report}")
