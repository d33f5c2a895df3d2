"""Report readers and insights where the demo worlds alone do not tell right from wrong:
a later run in the log, a warned data test, a warehouse with campaigns but no product
mart, a revenue section without ARR, a chosen range's last day under a device filter,
numbers the insights state (category turnover, cancelled ARR, campaign ROI), each read
back from the warehouse, the dashboard's filter options where an event has no device, and
the experiments section listing the experiments once."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlglot import exp

from productlens.app import open_engine
from productlens.config import load_project
from productlens.dashboard.warehouse import filter_options
from productlens.engines.duckdb import DuckDBEngine
from productlens.experiments import data as experiment_data
from productlens.experiments.analysis import Settings as ExperimentSettings
from productlens.experiments.analysis import analyze_experiment
from productlens.experiments.data import list_experiments
from productlens.ops import (
    RUN_EVENTS,
    RUN_LOG_COLUMNS,
    TEST_RESULTS,
    TEST_RESULTS_COLUMNS,
    insert_rows,
)
from productlens.report import _health, _products, _revenue
from productlens.report import insights as ins
from productlens.report.sections import (
    Filters,
    Sections,
    Settings,
    read_experiments,
    read_health,
    read_products,
    read_retention,
    read_revenue,
)
from tests.conftest import q
from tests.test_dashboard import app_for, open_page, plotly_charts
from tests.test_report_sections import Warehouse


@pytest.fixture(scope="module")
def eco(demo_project: Path) -> Iterator[Warehouse]:
    w = Warehouse("ecommerce", demo_project)
    yield w
    w.engine.close()


@pytest.fixture(scope="module")
def saas(saas_demo_project: Path) -> Iterator[Warehouse]:
    w = Warehouse("saas", saas_demo_project)
    yield w
    w.engine.close()


@pytest.fixture(scope="module")
def changed(demo_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBEngine]:
    """A copy of the demo warehouse with a later run in the log, one warned data test in
    the last check, no product mart (campaigns stay) and an event of no device or country."""
    root = tmp_path_factory.mktemp("changed") / "project"
    shutil.copytree(demo_project, root, ignore=shutil.ignore_patterns("*.tmp"))
    engine = open_engine(load_project(root))
    assert isinstance(engine, DuckDBEngine)
    later = datetime(2099, 1, 1)
    read_end = later + timedelta(minutes=31)
    steps = [
        ("r_later", "check", "data tests", later, later + timedelta(minutes=1), 1, "success", None),
        ("r_later", "build", "marts", later, later + timedelta(minutes=2), 1, "failed", "x"),
        # Later, a report that ended: it read the warehouse and built nothing.
        ("r_read", "report", None, later + timedelta(minutes=30), read_end, None, "success", None),
        # Later still, a run whose one step has not ended: the report reading the log.
        ("r_reading", "report", None, later + timedelta(hours=1), None, None, "running", None),
    ]
    engine.execute(insert_rows(RUN_EVENTS, RUN_LOG_COLUMNS, steps))
    run = engine.fetch_all(
        q("select run_id from ops.test_results order by checked_at desc, run_id desc limit 1")
    )[0][0]
    warned = (run, "a_warned_test", "stg_events", "warn", "warn", 3, None, datetime(2000, 1, 1))
    engine.execute(insert_rows(TEST_RESULTS, TEST_RESULTS_COLUMNS, [warned]))
    engine.drop("marts", "product_metrics")
    engine.execute(
        q(
            "update core.fct_events set device = null, country = null "
            "where event_id = (select min(event_id) from core.fct_events)"
        )
    )
    yield engine
    engine.close()


def test_the_last_run_is_the_latest_that_built(changed: DuckDBEngine) -> None:
    """A report-only run after the last build was shown as the last run: a reader asks when
    the figures were last built. The last build is the latest run with a build step."""
    health = read_health(changed)
    assert health is not None
    assert health.last_run is not None
    assert health.last_run.run_id == "r_later"
    assert (health.last_run.n_steps, health.last_run.n_failed) == (2, 1)


def test_a_run_with_no_step_ended_is_not_the_last_run(
    changed: DuckDBEngine, tmp_path: Path
) -> None:
    """`productlens report` read its own run, whose one step (the report) was still
    running, as the last run: the report showed "finished None" and "1 step". The last
    run is the latest with a step that ended; its row shows no "None"."""
    health = read_health(changed)
    assert health is not None
    assert health.last_run is not None
    assert health.last_run.run_id == "r_later"
    assert health.last_run.finished_at == datetime(2099, 1, 1) + timedelta(minutes=2)
    sections = Sections(None, None, None, None, None, None, None, health)
    (block,) = [b for b in _health(sections, tmp_path) if b.title == "Last build"]
    assert block.table is not None
    assert block.table[1] == (("r_later", "2099-01-01 00:00:00", "2099-01-01 00:02:00", "2", "1"),)


def test_a_warned_data_test_is_counted_as_warned(changed: DuckDBEngine) -> None:
    health = read_health(changed)
    assert health is not None
    said = ins.tests_summary(health)
    assert said is not None
    status = dict(
        changed.fetch_all(
            q(
                "select status, count(*) from ops.test_results where run_id = "
                "(select run_id from ops.test_results order by checked_at desc, run_id desc "
                "limit 1) group by status"
            )
        )
    )
    assert status["warn"] == 1
    assert said.values["warned"] == 1
    assert said.values["passed"] == status["pass"]
    assert f"{status['pass']:,} passed, 1 warned, 0 failed" in said.text


def test_campaigns_without_the_product_mart(changed: DuckDBEngine) -> None:
    products = read_products(changed)
    assert products is not None
    assert products.products is None
    assert products.categories is None
    assert products.campaigns is not None
    assert (
        products.campaigns.num_rows
        == changed.fetch_all(q("select count(*) from marts.campaign_attribution"))[0][0]
    )


def test_category_turnover_is_units_over_summed_stock(eco: Warehouse) -> None:
    products = read_products(eco.engine)
    assert products is not None
    assert products.categories is not None
    expected = {
        r["category"]: r["turnover"]
        for r in eco.rows(
            "select category, sum(n_units) / sum(avg_on_hand) as turnover "
            "from marts.product_metrics group by category having sum(revenue) > 0"
        )
    }
    got = dict(
        zip(
            products.categories.column("category").to_pylist(),
            products.categories.column("inventory_turnover").to_pylist(),
            strict=True,
        )
    )
    assert got.keys() == expected.keys()
    for category, turnover in expected.items():
        assert got[category] == pytest.approx(turnover, rel=1e-12), category


def test_campaign_roi_states_the_mart_s_roi(eco: Warehouse) -> None:
    products = read_products(eco.engine)
    assert products is not None
    said = ins.campaign_roi(products)
    assert said is not None
    best = eco.rows(
        "select campaign_name, roi from marts.campaign_attribution where roi is not null "
        "order by roi desc, campaign_id desc limit 1"
    )[0]
    assert said.values["best_roi"] == best["roi"]
    assert f"Best campaign by ROI: {best['campaign_name']} ({best['roi']:+.0%} on" in said.text


def test_cancelled_arr_is_the_month_s_churned_arr(saas: Warehouse) -> None:
    revenue = read_revenue(saas.engine, Filters(), saas.settings)
    assert revenue is not None
    assert revenue.arr
    month = saas.rows("select * from marts.arr_monthly order by month_start_date desc limit 1")[0]
    said = ins.arr_latest(revenue)
    assert said is not None
    assert said.values["cancelled_arr"] == float(month["cancelled_arr"])
    assert said.values["contraction_arr"] == float(month["contraction_arr"])
    # The demo's last month lost nothing: a month that lost both ways tells them apart.
    lost = replace(revenue.arr[-1], churned_arr=-120.0, contraction_arr=-30.0)
    said = ins.arr_latest(replace(revenue, arr=(*revenue.arr[:-1], lost)))
    assert said is not None
    assert (said.values["cancelled_arr"], said.values["contraction_arr"]) == (-120.0, -30.0)


def test_revenue_over_time_needs_no_arr(eco: Warehouse, tmp_path: Path) -> None:
    revenue = read_revenue(eco.engine, Filters(), eco.settings)
    assert revenue is not None
    assert revenue.daily is not None
    no_arr = replace(revenue, arr=None)
    sections = Sections(None, None, None, no_arr, None, None, None, None)
    titles = [b.title for b in _revenue(sections, tmp_path)]
    assert "Revenue over time" in titles
    assert "Seasonality" in titles


def test_a_chosen_range_counts_its_last_day_under_a_device_filter(eco: Warehouse) -> None:
    first, last = eco.days()
    end = last - timedelta(days=2)
    device = eco.rows("select min(device) as d from core.fct_events")[0]["d"]
    got = read_retention(eco.engine, Filters(first, end, (device,)), eco.settings)
    assert got is not None
    dau = eco.rows(
        "select count(distinct user_id) as n from core.fct_events "
        "where device = ? and event_date = ?",
        device,
        end,
    )[0]["n"]
    assert dau > 0
    days = got.activity.column("day").to_pylist()
    assert days[-1] == end
    assert got.activity.column("dau").to_pylist()[-1] == dau


def test_settings_are_the_demo_s(eco: Warehouse) -> None:
    """The readers above count in UTC days, as the SQL comparisons do."""
    assert eco.settings.timezone == Settings().timezone == "UTC"


def test_the_filter_options_leave_out_a_missing_device_or_country(changed: DuckDBEngine) -> None:
    options = filter_options(changed)
    assert options is not None
    for column, offered in (("device", options.devices), ("country", options.countries)):
        missing = exp.column(column).is_(exp.null())
        values = exp.select(exp.column(column)).distinct().from_("core.fct_events")
        assert len(changed.fetch_all(values.where(missing))) == 1  # the event without one
        expected = sorted(str(r[0]) for r in changed.fetch_all(values.where(exp.not_(missing))))
        assert offered == tuple(expected), column


def test_campaigns_that_brought_no_revenue_get_their_table_and_no_roi_chart(
    saas: Warehouse, saas_demo_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SaaS world's campaigns bring subscribers, no orders: the report and the
    dashboard drew every campaign at -100% ROI (the insight already said nothing, ROI
    saying nothing there). The campaigns' table stays, without the chart."""
    attributed = saas.rows(
        "select count(*) as n, sum(first_touch_revenue) as revenue from marts.campaign_attribution"
    )[0]
    assert attributed["n"] > 0
    assert attributed["revenue"] == 0
    products = read_products(saas.engine)
    assert products is not None
    assert products.campaigns is not None
    sections = Sections(None, None, None, None, products, None, None, None)
    (block,) = [b for b in _products(sections, tmp_path) if b.title == "Campaign ROI"]
    assert block.chart is None
    assert block.insights == ()
    assert block.table is not None
    assert len(block.table[1]) == attributed["n"]
    assert not list(tmp_path.glob("*.png"))

    at = open_page(app_for(saas_demo_project, monkeypatch), "marketing")
    assert not [t for t in plotly_charts(at) if t.startswith("Campaign ROI")]
    assert [i.value for i in at.info] == [
        "No campaign brought revenue (first touch): there is no return on investment to show."
    ]
    assert len(at.dataframe[0].value) == attributed["n"]


def test_the_experiments_section_lists_the_experiments_once(
    demo_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each readout is given the experiment the list read (on Spark each list is a job of
    a second or more), and is the readout of the experiment named by its id."""
    engine = open_engine(load_project(demo_project), read_only=True)
    settings = Settings.from_config(load_project(demo_project).config)
    try:
        by_id = {
            e.experiment_id: analyze_experiment(
                engine,
                e.experiment_id,
                settings.experiment_metrics,
                ExperimentSettings(regression=False),
            )
            for e in list_experiments(engine)
        }
        listed: list[int] = []
        listing = experiment_data.list_experiments
        monkeypatch.setattr(
            experiment_data,
            "list_experiments",
            lambda e: listed.append(1) or listing(e),
        )
        section = read_experiments(engine, Filters(), settings)
    finally:
        engine.close()
    assert listed == []  # read_experiments' own list is the only one
    assert section is not None
    assert len(section.readouts) == len(by_id) >= 2
    for readout in section.readouts:
        assert readout == by_id[readout.experiment.experiment_id]
