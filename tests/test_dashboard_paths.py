"""Dashboard paths the demo worlds do not take: a shop's orders without events, filters
that select nothing, a sample-ratio mismatch, quarantined rows, and a PostgreSQL
warehouse. Every number is read back from the warehouse the app shows."""

from __future__ import annotations

import html
import json
import re
import shutil
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import streamlit as st
from scipy import stats
from streamlit.testing.v1 import AppTest

from productlens.app import open_engine
from productlens.config import load_project
from productlens.dashboard.pages import PAGES
from productlens.experiments.analysis import Settings as ExperimentSettings
from productlens.experiments.analysis import analyze_experiment
from productlens.experiments.srm import DEFAULT_SRM_THRESHOLD
from productlens.metrics.lifecycle import lifecycle
from productlens.report import write_report
from productlens.report.sections import Filters, Settings
from tests import servers
from tests.conftest import SMALL_WORLD, open_readonly, q, run_cli
from tests.test_dashboard import (
    app_for,
    count,
    frame,
    metrics,
    one,
    open_page,
    overview_period,
)

NO_EVENTS = "The warehouse has no events."
NO_EVENTS_FILTERED = "The warehouse has no events for these filters."


def texts(at: AppTest) -> list[str]:
    """Every piece of text the page shows: markdown, captions, notes, metrics, tables."""
    found = [
        e.value
        for kind in ("markdown", "caption", "info", "warning", "error")
        for e in at.get(kind)
    ]
    found += [f"{m.label} {m.value}" for m in at.metric]
    found += [df.value.to_csv() for df in at.dataframe]
    return [str(t) for t in found]


@pytest.fixture(scope="module")
def orders_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shop that loads its orders and users alone: no events, products or items."""
    root = tmp_path_factory.mktemp("orders_only")
    data = root / "data"
    data.mkdir()
    (data / "orders.csv").write_text(
        "order_id,user_id,order_ts,status,total_amount,campaign_id\n"
        "o1,u1,2026-03-03 10:00:00,completed,20,\n"
        "o2,u1,2026-03-06 11:00:00,completed,7.5,\n"
        "o3,u2,2026-03-06 12:00:00,pending,100,\n"
        "o4,u3,2026-03-07 09:00:00,completed,12,\n"
    )
    (data / "users.csv").write_text(
        "user_id,signup_ts,country,device,acquisition_channel,campaign_id,segment\n"
        + "".join(f"u{i},2026-03-02 09:00:00,US,web,organic,,Regular\n" for i in (1, 2, 3))
    )
    for step in (("ingest", str(data)), ("build",), ("check",)):
        result = run_cli("--project", str(root), *step)
        assert result.returncode == 0, (step, result.stdout, result.stderr)
    return root


def test_an_orders_only_project_opens_the_pages_that_have_data(
    orders_only: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It got "The warehouse has no events" instead of every page, though the report
    covers its revenue; now the event pages say they have no events and the others show
    the warehouse's numbers."""
    engine = open_readonly(orders_only)
    try:
        net = one(engine, "select sum(net_revenue) from marts.daily_sales")
        orders = one(engine, "select sum(n_orders) from marts.daily_sales")
        runs = one(engine, "select count(*) from ops.run_log")
    finally:
        engine.close()
    at = app_for(orders_only, monkeypatch)
    assert not at.warning, [w.value for w in at.warning]
    for slug in PAGES:
        at = open_page(at, slug)
        shown = texts(at)
        assert not [t for t in shown if re.search(r"\bnan\b|\binf\b", t, re.I)], (slug, shown)
        if slug in ("overview", "retention", "engagement"):
            assert at.info[0].value == NO_EVENTS
        if slug == "revenue":
            assert metrics(at)["net revenue"] == f"{net:,.2f}"
            assert metrics(at)["orders"] == count(orders)
        if slug == "health":
            assert len(frame(at, "run_id", "stage")) == runs
        if slug == "experiments":
            # No filter is set and the page honours none: it said "for these filters".
            assert at.info[0].value == "The warehouse has no experiment with exposed users."


def test_a_warehouse_of_users_alone_gets_the_guidance_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No events, orders, subscriptions or assignments: nothing any page could show."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "users.csv").write_text(
        "user_id,signup_ts,country,device,acquisition_channel,campaign_id,segment\n"
        "u1,2026-03-02 09:00:00,US,web,organic,,Regular\n"
    )
    for step in (("ingest", str(data)), ("build",)):
        result = run_cli("--project", str(tmp_path), *step)
        assert result.returncode == 0, (step, result.stdout, result.stderr)
    at = app_for(tmp_path, monkeypatch)
    assert not at.exception
    assert [w.value for w in at.warning] == ["The warehouse has no data"]
    assert any(c.value.endswith(" demo") for c in at.code)


# --- a dirty world with a sample-ratio mismatch ---------------------------------------------

FAULTY_WORLD = ["--users", "800", "--days", "14", "--seed", "7", "--dirty", "--srm", "0.3"]


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The e-commerce world with planted export faults (rows quarantined) and the first
    experiment losing 30% of its treatment exposures (a sample-ratio mismatch)."""
    root = tmp_path_factory.mktemp("faulty")
    steps = (("generate", *FAULTY_WORLD), ("ingest", str(root / "data")), ("build",), ("check",))
    for step in steps:
        result = run_cli("--project", str(root), *step)
        assert result.returncode == 0, (step, result.stdout, result.stderr)
    return root


def srm_reference(root: Path) -> dict[str, float]:
    """Each experiment's SRM p-value: Pearson's chi-square (scipy) of its exposed users per
    variant against the weights it was configured with."""
    engine = open_readonly(root)
    try:
        users = engine.fetch_all(
            q(
                "select experiment_id, variant, count(distinct user_id) "
                "from marts.experiment_exposures group by 1, 2"
            )
        )
        weights = dict(engine.fetch_all(q("select experiment_id, variants from raw.experiments")))
    finally:
        engine.close()
    p_values = {}
    for experiment_id, raw in weights.items():
        split = json.loads(raw)
        seen = {v: n for e, v, n in users if e == experiment_id}
        observed = [seen.get(v, 0) for v in split]
        total = sum(observed)
        expected = [total * w / sum(split.values()) for w in split.values()]
        p_values[experiment_id] = float(stats.chisquare(observed, expected).pvalue)
    return p_values


def test_the_srm_banner_and_status_name_the_mismatched_experiment_only(
    faulty: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    p_values = srm_reference(faulty)
    broken = {e for e, p in p_values.items() if p < DEFAULT_SRM_THRESHOLD}
    assert broken, p_values
    assert broken != set(p_values), p_values  # and one healthy

    # Dashboard: one red banner per broken experiment, naming it and its p-value.
    at = app_for(faulty, monkeypatch)
    at.sidebar.radio(key="page").set_value("experiments").run()  # its banners are errors
    assert not at.exception, [e.value for e in at.exception]
    banners = [e.value for e in at.error]
    assert len(banners) == len(broken)
    for experiment_id in broken:
        said = f"Sample ratio mismatch in {experiment_id} (p = {p_values[experiment_id]:.2g})"
        assert any(b.startswith(said) for b in banners), banners
    table = frame(at, "experiment", "SRM")
    assert dict(zip(table["experiment"], table["SRM"], strict=True)) == {
        e: "mismatch" if e in broken else "ok" for e in p_values
    }

    # Report: the SRM column and the decision's sentence say the same.
    project = load_project(faulty)
    engine = open_engine(project, read_only=True)
    try:
        result = write_report(engine, tmp_path, settings=Settings.from_config(project.config))
        names = dict(engine.fetch_all(q("select experiment_id, name from raw.experiments")))
    finally:
        engine.close()
    head, rows = result.blocks["experiments"][0].table or ((), ())
    srm = {r[head.index("experiment")]: r[head.index("SRM")] for r in rows}
    assert srm == {
        names[e]: f"mismatch (p={p:.3g})" if e in broken else "ok" for e, p in p_values.items()
    }
    for e in p_values:
        verdict = result.insights()[f"experiment_{e}_treatment"].text
        assert ("Sample ratio mismatch" in verdict) == (e in broken), verdict


def test_the_quarantine_ranking_counts_the_rows_still_held(
    faulty: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Rows by table and reason, most first, of the rows still held: a released or a
    superseded row leaves the ranking (here some of each, marked by hand); and the data
    tests passed of all, with one marked as warned."""
    root = tmp_path / "copy"
    shutil.copytree(faulty, root, ignore=shutil.ignore_patterns("data", "reports"))
    project = load_project(root)
    engine = open_engine(project)
    try:
        gone = datetime(2026, 3, 1)
        engine.execute(
            q(
                "update raw.quarantine set released_at = ? "
                "where target_table = 'events' and list_contains(reasons, 'duplicate')",
                gone,
            )
        )
        engine.execute(
            q(
                "update raw.quarantine set superseded_at = ? "
                "where list_contains(reasons, 'null_key') and row_number % 2 = 0",
                gone,
            )
        )
        rows = engine.fetch_arrow(
            q("select target_table, reasons, released_at, superseded_at from raw.quarantine")
        ).to_pylist()
        # One data test of the last check warned: "passed" is then fewer than all.
        run = one(engine, "select run_id from ops.test_results order by checked_at desc limit 1")
        engine.execute(
            q(
                "update ops.test_results set status = 'warn' where run_id = ? and test_name = "
                "(select min(test_name) from ops.test_results where run_id = ?)",
                run,
                run,
            )
        )
        passed, total_tests = engine.fetch_all(
            q(
                "select count(case when status = 'pass' then 1 end), count(*) "
                "from ops.test_results where run_id = ?",
                run,
            )
        )[0]
        result = write_report(
            engine, tmp_path / "out", settings=Settings.from_config(project.config)
        )
    finally:
        engine.close()
    held = Counter(
        (r["target_table"], reason)
        for r in rows
        if r["released_at"] is None and r["superseded_at"] is None
        for reason in r["reasons"] or ["unknown"]
    )
    ranking = sorted(held.items(), key=lambda kv: (-kv[1], kv[0]))
    total = sum(1 for r in rows if r["released_at"] is None and r["superseded_at"] is None)
    assert len(ranking) >= 3
    assert total < len(rows)  # some rows did leave

    # Report: the section's table, its chart's labels and the sentence.
    health = result.sections.health
    assert health is not None
    assert (
        list(
            zip(
                zip(
                    health.quarantine["target_table"].to_pylist(),
                    health.quarantine["reason"].to_pylist(),
                    strict=True,
                ),
                health.quarantine["n_rows"].to_pylist(),
                strict=True,
            )
        )
        == ranking
    )
    (table, reason), n = ranking[0]
    said = result.insights()["quarantine"].text
    assert said.startswith(f"{total:,} rows are held in quarantine"), said
    assert f"the most common reason is {reason} ({n:,} rows of {table})" in said
    chart = result.blocks["health"][0].chart
    assert chart is not None
    drawn = set(re.findall(r"<text[^>]*>([^<]*)</text>", chart.svg))
    assert {f"{t}: {r}" for (t, r), _ in ranking} <= drawn

    # Dashboard: the rows held and the bars, in the same order.
    at = open_page(app_for(root, monkeypatch), "health")
    assert metrics(at)["rows in quarantine"] == count(total)
    assert passed < total_tests
    assert metrics(at)["data tests passed"] == f"{passed:,} of {total_tests:,}"
    bars = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    assert list(zip(bars["y"], bars["x"], strict=True)) == [
        (f"{t}: {r}", n) for (t, r), n in ranking
    ]


NAN_OR_INF = re.compile(r"\b(nan|inf|infinity)\b", re.I)


def test_filters_that_select_nothing_get_a_clear_empty_state(
    demo_project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A day, a device and a country with no event together: every page renders, the
    event pages say there is nothing for these filters (the overview: zeros for the chosen
    day, as in the report), and no NaN or inf is shown. The overview page once said "the
    range ends before it starts": the dashboard left the first day open, and the device's
    own first day came after the chosen one; it now keeps the chosen day."""
    engine = open_readonly(demo_project)
    try:
        day, device, country = engine.fetch_all(
            q(
                "with days as (select distinct event_date as d from core.fct_events), "
                "devices as (select distinct device as v from core.fct_events "
                "where device is not null), "
                "countries as (select distinct country as c from core.fct_events "
                "where country is not null) "
                "select d, v, c from days, devices, countries where not exists ("
                "select 1 from core.fct_events "
                "where event_date = d and device = v and country = c) order by d, v, c limit 1"
            )
        )[0]
        settings = Settings.from_config(load_project(demo_project).config)
        result = write_report(
            engine, tmp_path, settings=settings, filters=Filters(day, day, (device,), (country,))
        )
    finally:
        engine.close()
    assert "funnel" not in result.blocks  # nobody entered it
    overview = result.sections.overview
    assert overview is not None  # the chosen day, explicitly: its numbers are zeros
    assert {k.key: k.current for k in overview.kpis}["active_users"] == 0
    assert not NAN_OR_INF.search(html.unescape(re.sub(r"<[^>]+>", " ", result.html.read_text())))

    at = app_for(demo_project, monkeypatch)
    at.sidebar.date_input(key="dates").set_value((day, day)).run()
    at.sidebar.multiselect(key="devices").set_value([device]).run()
    at.sidebar.multiselect(key="countries").set_value([country]).run()
    for slug in PAGES:
        at = open_page(at, slug)
        shown = texts(at)
        assert not [t for t in shown if NAN_OR_INF.search(t)], (slug, shown)
        if slug in ("retention", "engagement"):  # as the report reads the same filters
            said_none = [i.value for i in at.info][:1] == [NO_EVENTS_FILTERED]
            assert said_none == (result.sections.retention is None), slug
        if slug == "overview":  # the chosen day, explicitly, as the report reads it: zeros
            assert metrics(at)["active users"] == "0"
            assert metrics(at)["events"] == "0"
        if slug == "experiments":  # experiments ignore the filters, and say so
            assert (
                "This page covers the whole warehouse: the dates, device, country filter "
                "does not apply."
            ) in [c.value for c in at.main.caption]
        if slug == "funnel":
            assert metrics(at)["conversion"] == "-"
            assert all(v == "0" for k, v in metrics(at).items() if k != "conversion")


def test_every_page_on_a_postgresql_warehouse_shows_its_numbers(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard reads through the engine layer: the demo's small world built on the
    throwaway PostgreSQL server, every page under AppTest, its KPIs the server's."""
    root = tmp_path / "pg"
    root.mkdir()
    (root / "productlens.toml").write_text('[warehouse]\nengine = "postgres"\n')
    env = {"PRODUCTLENS_POSTGRES_DSN": pg_dsn}
    steps = (("generate", *SMALL_WORLD), ("ingest", str(root / "data")), ("build",), ("check",))
    for step in steps:
        result = run_cli("--project", str(root), *step, env=env)
        assert result.returncode == 0, (step, result.stdout, result.stderr)
    monkeypatch.setenv("PRODUCTLENS_POSTGRES_DSN", pg_dsn)
    engine = open_engine(load_project(root), read_only=True)
    try:
        assert engine.name == "postgres"
        start, last = overview_period(engine)
        users, events = engine.fetch_all(
            q(
                "select count(distinct user_id), count(*) from core.fct_events "
                "where event_date between ? and ?",
                start,
                last,
            )
        )[0]
        dau = one(
            engine, "select count(distinct user_id) from core.fct_events where event_date = ?", last
        )
        net = one(engine, "select sum(net_revenue) from marts.daily_sales")
        entered = one(
            engine,
            "select count(distinct user_id) from core.fct_events where event_type = 'page_view'",
        )
        held = one(
            engine,
            "select count(*) from raw.quarantine "
            "where released_at is null and superseded_at is null",
        )
    finally:
        engine.close()
    at = app_for(root, monkeypatch)
    assert at.sidebar.caption[0].value.startswith("postgres warehouse")
    for slug in PAGES:
        at = open_page(at, slug)
        shown = metrics(at)
        if slug == "overview":
            assert shown["active users"] == count(users)
            assert shown["events"] == count(events)
        if slug == "funnel":
            assert shown["entered (page_view)"] == count(entered)
        if slug == "engagement":
            assert shown[f"DAU on {last}"] == count(dau)
        if slug == "revenue":
            assert shown["net revenue"] == f"{net:,.2f}"
        if slug == "health":
            assert shown["rows in quarantine"] == count(held)
    # One connection served every page: kept from run to run, not opened per page.
    (backend,) = dashboard_backends(pg_dsn)
    try:
        # The server ends that connection: the next run says so (no traceback), and the
        # run after it connects again instead of reusing the dead connection.
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute("select pg_terminate_backend(%s)", (backend,))
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert [w.value for w in at.warning] == ["The warehouse cannot be reached"]
        assert "lost the PostgreSQL connection" in at.markdown[0].value
        assert not at.metric  # the page is replaced, not left half-drawn
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert metrics(at)["rows in quarantine"] == count(held)
        (again,) = dashboard_backends(pg_dsn)
        assert again != backend
    finally:
        st.cache_resource.clear()  # closes the kept connection (and any other test's)
    assert backends_gone(pg_dsn) == []


def test_a_postgresql_server_that_is_not_running_gets_the_cannot_be_reached_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opened while the server is down (or still down on the run after a lost
    connection): the page says to check the server, as for a connection lost mid-way, not
    that a run may be writing to the warehouse (DuckDB's file lock)."""
    root = tmp_path / "pg_down"
    root.mkdir()
    (root / "productlens.toml").write_text('[warehouse]\nengine = "postgres"\n')
    port = servers.free_port()  # nothing listens there
    monkeypatch.setenv("PRODUCTLENS_POSTGRES_DSN", f"host=127.0.0.1 port={port} dbname=x")
    try:
        at = app_for(root, monkeypatch)
        for _ in range(2):  # and again on the next run: nothing kept from the first
            assert not at.exception, [e.value for e in at.exception]
            assert [w.value for w in at.warning] == ["The warehouse cannot be reached"]
            assert "cannot connect to PostgreSQL" in at.markdown[0].value
            assert "Check that the server is running" in at.markdown[0].value
            at.run()
    finally:
        st.cache_resource.clear()


def backends_gone(dsn: str, wait: float = 10.0) -> list[int]:
    """`dashboard_backends` once they are gone, or as they are after `wait` seconds: a
    server process ends a moment after its client closes the connection (longer on a
    loaded machine), and is listed until then."""
    deadline = time.monotonic() + wait
    while (left := dashboard_backends(dsn)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def dashboard_backends(dsn: str) -> list[int]:
    """The server processes of the other sessions on the DSN's database (the dashboard's)."""
    with psycopg.connect(dsn, autocommit=True) as con:
        rows = con.execute(
            "select pid from pg_stat_activity "
            "where datname = current_database() and pid <> pg_backend_pid()"
        ).fetchall()
    return [int(r[0]) for r in rows]


def test_experiments_engagement_and_a_country_show_the_warehouse_numbers(
    demo_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Numbers the page-by-page test left unread: each experiment's decision, lift and
    interval in the table and the forest plot (the experiments API's readout), the
    stickiness of the last day and the lifecycle bars per period under a device filter
    (the lifecycle API on that device), the retention sentences, and a country filter."""
    project = load_project(demo_project)
    settings = Settings.from_config(project.config)
    engine = open_readonly(demo_project)
    try:
        readouts = {}
        for (experiment_id,) in engine.fetch_all(
            q("select distinct experiment_id from marts.experiment_exposures")
        ):
            r = analyze_experiment(
                engine, experiment_id, settings.experiment_metrics, ExperimentSettings()
            )
            c = r.metrics[0].readout.comparisons[0]
            readouts[experiment_id] = (
                r.decision.verdict,
                c.estimate.relative,
                *c.inference.ci_relative,
            )
        last = one(engine, "select max(event_date) from core.fct_events")
        dau, mau = engine.fetch_all(
            q(
                "select count(distinct case when event_date = ? then user_id end), "
                "count(distinct user_id) from core.fct_events where event_date between ? and ?",
                last,
                last - timedelta(days=29),
                last,
            )
        )[0]
        device = "mobile"
        scope = Filters(devices=(device,)).scope(settings)
        cycles = {period: lifecycle(engine, scope, period).periods for period in ("week", "day")}
        country = one(
            engine, "select country from core.fct_events group by 1 order by count(*) limit 1"
        )
        start, end = overview_period(engine)
        users = one(
            engine,
            "select count(distinct user_id) from core.fct_events "
            "where country = ? and event_date between ? and ?",
            country,
            start,
            end,
        )
    finally:
        engine.close()
    at = app_for(demo_project, monkeypatch)

    at = open_page(at, "experiments")
    table = frame(at, "experiment", "decision", "lift", "low", "high")
    shown = {
        r["experiment"]: (r["decision"], r["lift"], r["low"], r["high"])
        for r in table.to_dict("records")
    }
    assert shown.keys() == readouts.keys()
    for experiment_id, (verdict, *numbers) in readouts.items():
        assert shown[experiment_id][0] == verdict
        assert shown[experiment_id][1:] == pytest.approx(tuple(numbers))
    forest = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    lifts = [float(x) for x in table["lift"]]
    assert forest["x"] == pytest.approx(lifts)
    assert forest["error_x"]["array"] == pytest.approx(
        [h - x for h, x in zip(table["high"], lifts, strict=True)]
    )

    at = open_page(at, "retention")
    said = " ".join(m.value for m in at.markdown)
    assert "active again day 1 after signing up" in said

    at = open_page(at, "engagement")
    assert metrics(at)["stickiness (DAU/MAU)"] == f"{dau / mau:.1%}"
    at.sidebar.multiselect(key="devices").set_value([device]).run()
    for period in ("week", "day"):
        at.radio(key="lifecycle").set_value(period).run()
        assert not at.exception
        bars = {
            b["name"]: (b["x"], b["y"])
            for b in json.loads(at.get("plotly_chart")[1].proto.spec)["data"]
        }
        expected = cycles[period]
        assert bars["new"] == ([p.start for p in expected], [p.new for p in expected]), period
        assert bars["dormant"][1] == [-p.dormant for p in expected], period

    at.sidebar.multiselect(key="devices").set_value([]).run()
    at.sidebar.multiselect(key="countries").set_value([country]).run()
    at = open_page(at, "overview")
    assert metrics(at)["active users"] == count(users)
