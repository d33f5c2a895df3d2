"""The report on the demo warehouses of both worlds: every section where the world has the
data, and every number an insight states recomputed from the warehouse independently."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from productlens.app import open_engine
from productlens.config import load_project
from productlens.engines.duckdb import DuckDBEngine
from productlens.errors import ReportError
from productlens.experiments.analysis import Settings as ExperimentSettings
from productlens.experiments.analysis import analyze_experiment
from productlens.metrics.retention import MAX_PERIODS
from productlens.report import ReportResult, write_report
from productlens.report.sections import Settings
from tests.conftest import q
from tests.funnel_reference import reference_funnel

CLOSE = 1e-9


@dataclass
class World:
    name: str
    engine: DuckDBEngine
    settings: Settings
    result: ReportResult
    html: str

    def rows(self, sql: str, *params: object) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self.engine.fetch_arrow(q(sql, *params)).to_pylist()
        return out

    def insight(self, key: str) -> dict[str, Any]:
        found = self.result.insights()
        assert key in found, f"{self.name}: no insight {key}; have {sorted(found)}"
        return found[key].values


def _world(name: str, root: Path, out: Path) -> World:
    project = load_project(root)
    engine = open_engine(project, read_only=True)  # settles the demo's world (no project file)
    assert isinstance(engine, DuckDBEngine)
    assert project.config.simulate.scenario == name
    settings = Settings.from_config(project.config)
    result = write_report(engine, out, settings=settings, warehouse="warehouse.duckdb")
    return World(name, engine, settings, result, result.html.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def eco(demo_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    world = _world("ecommerce", demo_project, tmp_path_factory.mktemp("report_eco"))
    yield world
    world.engine.close()


@pytest.fixture(scope="module")
def saas(saas_demo_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    world = _world("saas", saas_demo_project, tmp_path_factory.mktemp("report_saas"))
    yield world
    world.engine.close()


@pytest.fixture(params=["eco", "saas"])
def world(request: pytest.FixtureRequest) -> World:
    got: World = request.getfixturevalue(request.param)
    return got


# One row per world: the sections, charts and insights it must have, and those it must not.
EXPECTED = {
    "ecommerce": {
        "sections": {
            "overview",
            "funnel",
            "retention",
            "revenue",
            "products",
            "experiments",
            "health",
        },
        "charts": {
            "funnel",
            "conversion_trend",
            "conversion_by_device",
            "time_to_convert",
            "retention_day",
            "retention_week",
            "active_users",
            "lifecycle",
            "revenue_daily",
            "revenue_by_weekday",
            "arr_bridge",
            "revenue_pareto",
            "clv_by_segment",
            "churn_risk",
            "margin_by_category",
            "top_products",
            "campaign_roi",
            "experiments",
            "rows_per_layer",
        },
        "insights": {
            "funnel_conversion",
            "biggest_dropoff",
            "device_gap",
            "slowest_step",
            "retention_day_1",
            "stickiness",
            "lifecycle",
            "seasonality",
            "arr",
            "top_decile_share",
            "top_clv_segment",
            "customer_value_fit",
            "churn_bands",
            "first_purchase",
            "top_category",
            "top_products",
            "inventory_turnover",
            "campaign_roi",
            "quarantine",
            "data_tests",
        },
        # Two weeks of orders: no customer seen dropping out, so no fitted figure.
        "absent_insights": {
            "usage_totals",
            "returning_share",
            "top_predicted_clv_segment",
            "probability_alive",
        },
    },
    "saas": {
        "sections": {
            "overview",
            "funnel",
            "retention",
            "revenue",
            "products",
            "usage",
            "experiments",
            "health",
        },
        "charts": {
            "funnel",
            "conversion_trend",
            "conversion_by_device",
            "time_to_convert",
            "retention_day",
            "retention_week",
            "active_users",
            "lifecycle",
            "arr_bridge",
            # campaign_roi: no campaign brought revenue, so no ROI chart (the table stays)
            "usage_events",
            "new_vs_returning",
            "experiments",
            "rows_per_layer",
        },
        "insights": {
            "funnel_conversion",
            "biggest_dropoff",
            "device_gap",
            "slowest_step",
            "retention_day_1",
            "retention_week_4",
            "stickiness",
            "lifecycle",
            "arr",
            "usage_totals",
            "returning_share",
            "quarantine",
            "data_tests",
        },
        # No orders in a SaaS world: no sales, concentration, CLV, products or campaign ROI.
        "absent_insights": {
            "seasonality",
            "top_decile_share",
            "top_clv_segment",
            "customer_value_fit",
            "churn_bands",
            "first_purchase",
            "top_products",
            "top_category",
            "campaign_roi",
        },
    },
}


def test_sections_charts_and_insights_where_the_world_has_the_data(world: World) -> None:
    want = EXPECTED[world.name]
    assert set(world.result.blocks) == want["sections"]
    charts = {b.chart.name for bs in world.result.blocks.values() for b in bs if b.chart}
    assert charts == want["charts"]
    assert {p.name for p in world.result.pngs} == {f"{c}.png" for c in charts}
    assert all(p.stat().st_size > 1000 for p in world.result.pngs)
    have = set(world.result.insights())
    assert want["insights"] <= have
    assert not want["absent_insights"] & have
    for key in have:  # every insight is in the page, beside its chart
        assert f'data-insight="{key}"' in world.html
    for name in charts:
        assert f'id="chart-{name}"><svg' in world.html


def test_the_html_fetches_nothing_and_names_no_path(world: World) -> None:
    html = world.html
    # XML namespaces (and RDF terms of SVG metadata) are names, never fetched.
    names = r'(xmlns(:\w+)?|rdf:resource)="https?://[^"]*"'
    assert not re.search(r"https?://", re.sub(names, "", html))
    # References only to the page itself (#id) or inline data (an image in a heatmap).
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#|data:)""", html)
    assert not re.search(r"url\((?!#)", html)
    assert "@import" not in html
    assert not re.search(r"(?<![\w.])/(tmp|home|root|work|usr|var|Users)/", html)
    assert "file:" not in html


def test_overview_kpis_and_their_change(world: World) -> None:
    o = world.result.sections.overview if world.result.sections else None
    assert o is not None
    assert (o.end - o.start).days == (o.previous_end - o.previous_start).days
    assert o.previous_end == o.start - timedelta(days=1)
    for first, last, k in ((o.start, o.end, 0), (o.previous_start, o.previous_end, 1)):
        users = world.rows(
            "SELECT count(DISTINCT user_id) AS n, count(*) AS e FROM core.fct_events "
            "WHERE event_date BETWEEN ? AND ?",
            first,
            last,
        )[0]
        kpis = {x.key: (x.current, x.previous)[k] for x in o.kpis}
        assert kpis["active_users"] == users["n"]
        assert kpis["events"] == users["e"]
    active = next(x for x in o.kpis if x.key == "active_users")
    assert active.change == pytest.approx((active.current - active.previous) / active.previous)


def _events(world: World) -> list[dict[str, Any]]:
    return world.rows("SELECT * FROM core.fct_events")


def test_funnel_insights_match_a_brute_force_funnel(world: World) -> None:
    f = world.result.sections.funnel if world.result.sections else None
    assert f is not None
    steps = [s.event for s in f.steps]
    events = _events(world)
    ref = reference_funnel(events, steps, window=f.window, by="device")
    counts = [s["count"] for s in ref["steps"]]
    assert [s.count for s in f.steps] == counts
    # The biggest drop-off: brute force over the reference's counts.
    rates = [(1 - counts[i] / counts[i - 1], i) for i in range(1, len(counts)) if counts[i - 1]]
    rate, i = max(rates, key=lambda r: (r[0], -r[1]))
    drop = world.insight("biggest_dropoff")
    assert (drop["from_step"], drop["to_step"]) == (steps[i - 1], steps[i])
    assert drop["rate"] == pytest.approx(rate, abs=CLOSE)
    assert drop["n_lost"] == counts[i - 1] - counts[i]
    conv = world.insight("funnel_conversion")
    assert conv["rate"] == pytest.approx(counts[-1] / counts[0], abs=CLOSE)
    # The device gap: each device's conversion from the reference's breakdown.
    by_device = {
        d: b["steps"][-1]["count"] / b["steps"][0]["count"]
        for d, b in ref["breakdown"].items()
        if b["steps"][0]["count"]
    }
    gap = world.insight("device_gap")
    assert gap["best_rate"] == pytest.approx(max(by_device.values()), abs=CLOSE)
    assert gap["worst_rate"] == pytest.approx(min(by_device.values()), abs=CLOSE)
    assert by_device[str(gap["best_device"])] == pytest.approx(gap["best_rate"])
    assert by_device[str(gap["worst_device"])] == pytest.approx(gap["worst_rate"])


def _brute_retention(world: World, grain: str, period: int) -> tuple[int, int]:
    """(returned, users) of the signup cohorts whose `period` is observed, from raw rows."""
    signups = {
        r["user_id"]: r["signup_date"]
        for r in world.rows(
            "SELECT user_id, CAST(signup_ts AS DATE) AS signup_date FROM staging.stg_users"
        )
    }
    active: dict[str, set[date]] = defaultdict(set)
    last = date.min
    for r in world.rows("SELECT DISTINCT user_id, event_date FROM core.fct_events"):
        active[r["user_id"]].add(r["event_date"])
        last = max(last, r["event_date"])

    def floor(d: date) -> date:
        return d if grain == "day" else d - timedelta(days=d.weekday())

    size = 7 if grain == "week" else 1
    # The report's table holds the last MAX_PERIODS cohorts (PostHog's limit).
    first_cohort = floor(last) - timedelta(days=size * (MAX_PERIODS - 1))
    returned = users = 0
    for user, signup in signups.items():
        target = floor(signup) + timedelta(days=size * period)
        if target > floor(last) or floor(signup) < first_cohort:
            continue  # not observed yet, or before the first cohort of the table
        users += 1
        returned += any(floor(d) == target for d in active[user])
    return returned, users


@pytest.mark.parametrize(("grain", "period"), [("day", 1), ("week", 4)])
def test_retention_insights_match_a_brute_force(world: World, grain: str, period: int) -> None:
    returned, users = _brute_retention(world, grain, period)
    key = f"retention_{grain}_{period}"
    if users == 0:  # the world is too short to observe it
        assert key not in world.result.insights()
        return
    got = world.insight(key)
    assert (got["n_returned"], got["n_users"]) == (returned, users)
    assert got["rate"] == pytest.approx(returned / users, abs=CLOSE)


def test_stickiness_matches_the_active_users_mart(world: World) -> None:
    mart = world.rows("SELECT avg(dau) AS dau, avg(mau) AS mau FROM marts.active_users_daily")[0]
    got = world.insight("stickiness")
    assert got["dau"] == pytest.approx(mart["dau"])
    assert got["stickiness"] == pytest.approx(mart["dau"] / mart["mau"])


def test_revenue_insights_match_the_orders(eco: World) -> None:
    per_user: dict[str, float] = defaultdict(float)
    for r in eco.rows(
        "SELECT user_id, net_revenue FROM core.int_order_revenue WHERE status = 'completed'"
    ):
        per_user[r["user_id"]] += r["net_revenue"]
    amounts = sorted(per_user.values(), reverse=True)
    top = math.ceil(len(amounts) / 10)
    share = eco.insight("top_decile_share")
    assert (share["n_top"], share["n_buyers"]) == (top, len(amounts))
    assert share["share"] == pytest.approx(sum(amounts[:top]) / sum(amounts))
    # Seasonality: mean revenue per calendar day of each weekday (days without sales: 0).
    daily = {r["date_day"]: 0.0 for r in eco.rows("SELECT date_day FROM core.dim_date")}
    for r in eco.rows(
        "SELECT order_date, net_revenue FROM core.int_order_revenue WHERE status = 'completed'"
    ):
        daily[r["order_date"]] += r["net_revenue"]
    weekday: dict[int, list[float]] = defaultdict(list)
    for d, v in daily.items():
        weekday[d.weekday()].append(v)
    means = {w: sum(v) / len(v) for w, v in weekday.items()}
    season = eco.insight("seasonality")
    names = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    assert season["best_weekday"] == names[max(means, key=lambda w: means[w])]
    assert season["best_per_day"] == pytest.approx(max(means.values()))
    assert season["worst_per_day"] == pytest.approx(min(means.values()))
    # Time to first purchase: days from the signup date to the first completed order.
    first = eco.rows(
        "SELECT o.user_id, min(o.order_date) AS first_day, any_value(CAST(u.signup_ts AS DATE)) "
        "AS signup FROM core.int_order_revenue o JOIN core.dim_users u ON u.user_id = o.user_id "
        "AND u.is_current WHERE o.status = 'completed' GROUP BY o.user_id"
    )
    every = [(r["first_day"] - r["signup"]).days for r in first]
    days = sorted(d for d in every if d >= 0)
    got = eco.insight("first_purchase")
    # Buyers whose first order is dated before signup are counted apart, not averaged in.
    assert got["n_before_signup"] == len(every) - len(days)
    assert got["n_buyers"] == len(days)
    assert got["mean_days"] == pytest.approx(sum(days) / len(days))
    mid = len(days) // 2
    median = days[mid] if len(days) % 2 else (days[mid - 1] + days[mid]) / 2
    assert got["median_days"] == pytest.approx(median)


def test_products_and_campaign_insights_match_the_orders(eco: World) -> None:
    lines = eco.rows(
        "SELECT p.category, i.product_id, i.margin FROM core.fct_order_items i "
        "JOIN core.int_order_revenue o ON o.order_id = i.order_id "
        "JOIN core.dim_products p ON p.product_id = i.product_id AND p.is_current "
        "WHERE o.status = 'completed' AND i.is_kept"
    )
    category: dict[str, float] = defaultdict(float)
    product: dict[str, float] = defaultdict(float)
    for r in lines:
        category[r["category"]] += r["margin"] or 0.0
        product[r["product_id"]] += r["margin"] or 0.0
    best = max(category, key=lambda c: category[c])
    got = eco.insight("top_category")
    assert got["category"] == best
    assert got["margin"] == pytest.approx(category[best])
    top = eco.insight("top_products")
    ranked = sorted(product.values(), reverse=True)
    assert [top[f"margin_{i}"] for i in (1, 2, 3)] == pytest.approx(ranked[:3])
    assert top["margin_1"] == pytest.approx(product[str(top["product_1"])])
    # ROI = (first-touch margin of completed orders - spend) / spend.
    margin: dict[str, float] = defaultdict(float)
    for r in eco.rows(
        "SELECT u.campaign_id, o.net_margin FROM core.dim_users u "
        "JOIN core.int_order_revenue o ON o.user_id = u.user_id "
        "WHERE u.is_current AND u.campaign_id IS NOT NULL AND o.status = 'completed'"
    ):
        margin[r["campaign_id"]] += r["net_margin"] or 0.0
    roi = {
        r["campaign_id"]: (margin[r["campaign_id"]] - r["spend"]) / r["spend"]
        for r in eco.rows("SELECT campaign_id, spend FROM core.dim_campaigns WHERE spend > 0")
    }
    got = eco.insight("campaign_roi")
    assert got["best_roi"] == pytest.approx(max(roi.values()))
    assert got["worst_roi"] == pytest.approx(min(roi.values()))
    assert roi[str(got["best_campaign"])] == pytest.approx(got["best_roi"])
    assert roi[str(got["worst_campaign"])] == pytest.approx(got["worst_roi"])


def test_usage_insights_match_the_events(saas: World) -> None:
    counts = {
        r["event_type"]: r["n"]
        for r in saas.rows(
            "SELECT event_type, count(*) AS n FROM core.fct_events "
            "WHERE event_type IN ('create_project', 'export') GROUP BY 1"
        )
    }
    assert saas.insight("usage_totals") == counts
    first: dict[str, date] = {}
    user_days = saas.rows("SELECT DISTINCT user_id, event_date FROM core.fct_events")
    for r in user_days:
        first[r["user_id"]] = min(first.get(r["user_id"], date.max), r["event_date"])
    new = sum(1 for r in user_days if first[r["user_id"]] == r["event_date"])
    got = saas.insight("returning_share")
    assert (got["new"], got["returning"]) == (new, len(user_days) - new)


def test_experiment_insights_match_the_experiments_api(world: World) -> None:
    section = world.result.sections.experiments if world.result.sections else None
    assert section is not None
    assert section.summaries
    ids = {
        r["experiment_id"] for r in world.rows("SELECT experiment_id FROM staging.stg_experiments")
    }
    assert {s.experiment_id for s in section.summaries} == ids
    for s in section.summaries:
        readout = analyze_experiment(
            world.engine,
            s.experiment_id,
            world.settings.experiment_metrics,
            ExperimentSettings(),  # the CLI's defaults, regression included
        )
        c = next(c for c in readout.metrics[0].readout.comparisons if c.variant == s.variant)
        got = world.insight(f"experiment_{s.experiment_id}_{s.variant}")
        assert got["verdict"] == readout.decision.verdict
        assert got["lift"] == pytest.approx(c.estimate.relative)
        assert (got["ci_low"], got["ci_high"]) == pytest.approx(c.inference.ci_relative)
        assert c.impact is not None
        assert got["monthly_impact"] == pytest.approx(c.impact.incremental)
        assert got["srm_mismatch"] == int(readout.srm.mismatch)


def test_health_insights_match_ops(world: World) -> None:
    held = world.rows(
        "SELECT count(*) AS n FROM raw.quarantine WHERE released_at IS NULL "
        "AND superseded_at IS NULL"
    )[0]["n"]
    assert world.insight("quarantine")["n_rows"] == held
    run = world.rows("SELECT run_id FROM ops.test_results ORDER BY checked_at DESC LIMIT 1")
    status = {
        r["status"]: r["n"]
        for r in world.rows(
            "SELECT status, count(*) AS n FROM ops.test_results WHERE run_id = ? GROUP BY 1",
            run[0]["run_id"],
        )
    }
    got = world.insight("data_tests")
    assert got["passed"] == status.get("pass", 0)
    assert got["failed"] == status.get("fail", 0) + status.get("error", 0)


def test_classic_questions_are_answered(eco: World) -> None:
    section = eco.html[eco.html.index('id="classic"') :]
    for key in (
        "top_category",
        "top_products",
        "top_clv_segment",
        "seasonality",
        "campaign_roi",
        "first_purchase",
    ):
        assert f'data-insight="{key}"' in section


def test_the_report_is_deterministic(eco: World, tmp_path: Path) -> None:
    again = write_report(eco.engine, tmp_path, settings=eco.settings, warehouse="warehouse.duckdb")
    text = again.html.read_text(encoding="utf-8")

    def stable(html: str) -> str:
        return re.sub(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", "", html)

    assert stable(text) == stable(eco.html)
    for png in again.pngs:
        assert png.read_bytes() == (eco.result.html.parent / png.name).read_bytes()


def test_an_empty_or_unbuilt_warehouse_is_a_clear_error(
    engine: DuckDBEngine, tmp_path: Path
) -> None:
    with pytest.raises(ReportError, match=r"run `productlens build`"):
        write_report(engine, tmp_path / "out")
    engine.execute(
        q("CREATE TABLE core.fct_events (user_id VARCHAR, event_ts TIMESTAMP, event_date DATE)")
    )
    engine.execute(q("CREATE TABLE marts.event_counts_daily (event_date DATE)"))
    with pytest.raises(ReportError, match=r"core\.fct_events is empty"):
        write_report(engine, tmp_path / "out")
