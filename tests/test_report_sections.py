"""The report's section readers under the filters the dashboard passes (a device, a date
range), the numbers the end-to-end report test does not read back (signups, orders,
conversion, the daily trend, the Pareto curve, the ARR month, CLV), and every insight's
text stating the numbers in its values. Each compared with the warehouse by brute force."""

from __future__ import annotations

import html
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from productlens.config import load_project
from productlens.engines.duckdb import DuckDBEngine
from productlens.report import RENDERERS, classic_questions
from productlens.report import insights as ins
from productlens.report.insights import Insight
from productlens.report.sections import (
    Filters,
    Sections,
    Settings,
    read_all,
    read_funnel,
    read_overview,
    read_retention,
    read_revenue,
    read_usage,
)
from tests.conftest import open_readonly, q
from tests.funnel_reference import reference_funnel

CLOSE = 1e-9


class Warehouse:
    def __init__(self, name: str, root: Path) -> None:
        project = load_project(root)
        project.config.simulate.scenario = name  # as the demo ran it
        self.engine: DuckDBEngine = open_readonly(root)
        self.settings = Settings.from_config(project.config)

    def rows(self, sql: str, *params: object) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self.engine.fetch_arrow(q(sql, *params)).to_pylist()
        return out

    def events(self, device: str | None = None) -> list[dict[str, Any]]:
        if device is None:
            return self.rows("SELECT * FROM core.fct_events")
        return self.rows("SELECT * FROM core.fct_events WHERE device = ?", device)

    def days(self) -> tuple[date, date]:
        row = self.rows("SELECT min(event_date) AS a, max(event_date) AS b FROM core.fct_events")
        return row[0]["a"], row[0]["b"]


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


def _funnel_counts(events: list[dict[str, Any]], steps: list[str], window: timedelta) -> list[int]:
    return [s["count"] for s in reference_funnel(events, steps, window=window)["steps"]]


# --- overview ---------------------------------------------------------------------------------


def test_overview_signups_orders_revenue_and_conversion(eco: Warehouse) -> None:
    o = read_overview(eco.engine, Filters(), eco.settings)
    assert o is not None
    signups = eco.rows("SELECT user_id, CAST(signup_ts AS DATE) AS day FROM staging.stg_users")
    orders = eco.rows("SELECT order_date, status, net_revenue FROM core.int_order_revenue")
    events = eco.events()
    for k, (first, last) in enumerate(((o.start, o.end), (o.previous_start, o.previous_end))):
        kpis = {x.key: (x.current, x.previous)[k] for x in o.kpis}
        assert kpis["signups"] == sum(first <= r["day"] <= last for r in signups)
        within = [r for r in orders if first <= r["order_date"] <= last]
        assert kpis["orders"] == sum(r["status"] != "cancelled" for r in within)  # kept orders
        assert kpis["net_revenue"] == pytest.approx(
            sum(r["net_revenue"] for r in within if r["status"] == "completed")
        )
        steps = list(eco.settings.funnel_steps or ())
        counts = _funnel_counts(
            [e for e in events if first <= e["event_date"] <= last],
            steps,
            eco.settings.funnel_window,
        )
        assert kpis["conversion"] == pytest.approx(counts[-1] / counts[0], abs=CLOSE)


def test_overview_of_a_chosen_range_against_the_days_just_before(eco: Warehouse) -> None:
    first, _ = eco.days()
    start, end = first + timedelta(days=5), first + timedelta(days=8)
    o = read_overview(eco.engine, Filters(start, end), eco.settings)
    assert o is not None
    assert (o.start, o.end) == (start, end)
    assert (o.previous_start, o.previous_end) == (first + timedelta(days=1), first + timedelta(4))
    for k, (a, b) in enumerate(((o.start, o.end), (o.previous_start, o.previous_end))):
        n = eco.rows(
            "SELECT count(DISTINCT user_id) AS n FROM core.fct_events "
            "WHERE event_date BETWEEN ? AND ?",
            a,
            b,
        )[0]["n"]
        assert {x.key: (x.current, x.previous)[k] for x in o.kpis}["active_users"] == n


def test_the_overview_table_shows_current_then_previous(eco: Warehouse, tmp_path: Path) -> None:
    o = read_overview(eco.engine, Filters(), eco.settings)
    assert o is not None
    sections = Sections(o, None, None, None, None, None, None, None)
    (block,) = RENDERERS["overview"](sections, tmp_path)
    assert block.table is not None
    head, rows = block.table
    # The period reaches the data's end, a whole day (the simulated world ends with its
    # last day): the head names the days only.
    latest = eco.rows("SELECT max(event_ts) AS t FROM core.fct_events")[0]["t"]
    assert latest.date() == o.end
    assert latest >= datetime.combine(o.end, time(23, 59))
    assert head[1:3] == (f"{o.start} to {o.end}", f"{o.previous_start} to {o.previous_end}")
    users = next(r for r in rows if r[0] == "active users")
    active = o.kpi("active_users")
    assert active is not None
    assert active.current is not None
    assert active.previous is not None
    assert users[1:3] == (f"{active.current:,.0f}", f"{active.previous:,.0f}")


def test_the_overview_says_how_far_the_data_goes_into_its_last_day(eco: Warehouse) -> None:
    """A partial last day (the data end before it does) gets the latest event in the
    period; a whole one does not. The data's end is the latest event of all, whatever the
    device filter: a device quiet late in the day is not an export cut short."""
    first, last = eco.days()
    latest = eco.rows("SELECT max(event_ts) AS t FROM core.fct_events")[0]["t"]
    quiet = eco.rows(
        "SELECT country, max(event_ts) AS t FROM core.fct_events "
        "WHERE country IS NOT NULL GROUP BY country ORDER BY t, country LIMIT 1"
    )[0]
    assert quiet["t"] < latest  # a country whose last event comes earlier
    o = read_overview(eco.engine, Filters(countries=(quiet["country"],)), eco.settings)
    assert o is not None
    assert o.data_until is None  # the demo's last day runs to its last minute
    # A range past the data: the latest event is on an earlier day, given in full.
    later = last + timedelta(days=2)
    for countries in ((), (quiet["country"],)):
        o = read_overview(
            eco.engine, Filters(last - timedelta(days=3), later, countries=countries), eco.settings
        )
        assert o is not None
        assert o.data_until == latest
        assert o.period == f"{o.start} to {later} (data until {latest:%Y-%m-%d %H:%M} UTC)"
    # A range ending before the data's last day holds whole days only.
    o = read_overview(eco.engine, Filters(first, last - timedelta(days=1)), eco.settings)
    assert o is not None
    assert (o.data_until, o.period) == (None, f"{first} to {last - timedelta(days=1)}")


# --- the funnel and the event sections under a device filter -----------------------------------


def _trend(events: list[dict[str, Any]], steps: list[str], window: timedelta) -> dict[date, Any]:
    ref = reference_funnel(events, steps, window=window, per="day")
    return {
        date.fromisoformat(p["period"]): (p["steps"][0]["count"], p["steps"][-1]["count"])
        for p in ref["trend"]
    }


@pytest.mark.parametrize("device", [None, "mobile"])
def test_funnel_daily_trend_matches_a_brute_force(eco: Warehouse, device: str | None) -> None:
    filters = Filters(devices=(device,) if device else ())
    f = read_funnel(eco.engine, filters, eco.settings)
    assert f is not None
    steps = [s.event for s in f.steps]
    events = eco.events(device)
    assert [s.count for s in f.steps] == _funnel_counts(events, steps, f.window)
    want = _trend(events, steps, f.window)
    got = {
        r["day"]: (r["entered"], r["converted"])
        for r in f.daily.to_pylist()
        if r["entered"]  # the mart lists every day; the brute force the days with entries
    }
    assert got == want
    for r in f.daily.to_pylist():
        if r["entered"]:
            assert r["conversion"] == pytest.approx(r["converted"] / r["entered"], abs=CLOSE)


def test_retention_and_activity_honour_a_device_filter(eco: Warehouse) -> None:
    r = read_retention(eco.engine, Filters(devices=("mobile",)), eco.settings)
    assert r is not None
    dau = {
        row["event_date"]: row["n"]
        for row in eco.rows(
            "SELECT event_date, count(DISTINCT user_id) AS n FROM core.fct_events "
            "WHERE device = 'mobile' GROUP BY 1"
        )
    }
    got = {row["day"]: row["dau"] for row in r.activity.to_pylist()}
    assert {d: n for d, n in got.items() if n} == dau
    # Signup cohorts pick the users by their own device (the users table's, at signup):
    # each day cohort's size is the number of mobile users who signed up that local day.
    assert eco.settings.retention_start == "signup"
    zone = ZoneInfo(eco.settings.timezone)
    signups: Counter[str] = Counter(
        row["signup_ts"].replace(tzinfo=UTC).astimezone(zone).date().isoformat()
        for row in eco.rows(
            "SELECT signup_ts FROM staging.stg_users "
            "WHERE device = 'mobile' AND signup_ts IS NOT NULL"
        )
    )
    sizes = {c.start: c.size for c in r.day_cohorts}
    assert sizes == {day: signups[day] for day in sizes}
    assert sum(sizes.values()) > 0


def test_usage_honours_a_device_filter_and_a_date_range(saas: Warehouse) -> None:
    first, _last = saas.days()
    start = first + timedelta(days=10)
    u = read_usage(saas.engine, Filters(start=start, devices=("web",)), saas.settings)
    assert u is not None
    counts = {
        (r["day"], r["event_type"]): r["n"]
        for r in saas.rows(
            "SELECT event_date AS day, event_type, count(*) AS n FROM core.fct_events "
            "WHERE device = 'web' AND event_date >= ? "
            "AND event_type IN ('create_project', 'export') GROUP BY 1, 2",
            start,
        )
    }
    assert {(r["day"], r["event_type"]): r["n_events"] for r in u.events.to_pylist()} == counts
    # New: the user's first event ever (any device, any day) is on that day.
    first_day: dict[str, date] = {}
    for r in saas.rows("SELECT user_id, min(event_date) AS d FROM core.fct_events GROUP BY 1"):
        first_day[r["user_id"]] = r["d"]
    user_days = saas.rows(
        "SELECT DISTINCT user_id, event_date FROM core.fct_events "
        "WHERE device = 'web' AND event_date >= ?",
        start,
    )
    new: dict[date, int] = defaultdict(int)
    returning: dict[date, int] = defaultdict(int)
    for r in user_days:
        bucket = new if first_day[r["user_id"]] == r["event_date"] else returning
        bucket[r["event_date"]] += 1
    got = u.new_vs_returning.to_pylist()
    assert {r["day"]: r["new_users"] for r in got if r["new_users"]} == dict(new)
    assert {r["day"]: r["returning_users"] for r in got if r["returning_users"]} == dict(returning)
    share = ins.returning_share(u)
    assert share is not None
    total_new, total_returning = sum(new.values()), sum(returning.values())
    assert share.values["share"] == pytest.approx(
        total_returning / (total_new + total_returning), abs=CLOSE
    )


# --- revenue ----------------------------------------------------------------------------------


def test_revenue_of_a_date_range(eco: Warehouse) -> None:
    first, last = eco.days()
    start, end = first + timedelta(days=3), last - timedelta(days=3)
    r = read_revenue(eco.engine, Filters(start, end), eco.settings)
    assert r is not None
    assert r.daily is not None
    days = r.daily.column("day").to_pylist()
    assert days == [start + timedelta(days=i) for i in range((end - start).days + 1)]
    revenue = eco.rows(
        "SELECT coalesce(sum(net_revenue), 0) AS v, count(*) FILTER (WHERE status <> 'cancelled') "
        "AS n FROM core.int_order_revenue WHERE order_date BETWEEN ? AND ?",
        start,
        end,
    )[0]
    assert sum(r.daily.column("net_revenue").to_pylist()) == pytest.approx(revenue["v"])
    assert sum(r.daily.column("n_orders").to_pylist()) == revenue["n"]


def test_the_pareto_curve_matches_the_completed_orders(eco: Warehouse) -> None:
    r = read_revenue(eco.engine, Filters(), eco.settings)
    assert r is not None
    assert r.pareto is not None
    assert r.pareto.num_rows
    per_user: dict[str, float] = defaultdict(float)
    for row in eco.rows(
        "SELECT user_id, net_revenue FROM core.int_order_revenue WHERE status = 'completed'"
    ):
        per_user[row["user_id"]] += row["net_revenue"]
    amounts = sorted(per_user.values(), reverse=True)
    n, total = len(amounts), sum(amounts)
    cumulative = [sum(amounts[: k + 1]) for k in range(n)]
    points = r.pareto.to_pylist()
    assert points[-1]["buyer_share"] == pytest.approx(1.0)
    for p in points:
        k = round(p["buyer_share"] * n)
        assert p["buyer_share"] == pytest.approx(k / n, abs=CLOSE)
        assert p["revenue_share"] == pytest.approx(cumulative[k - 1] / total, abs=CLOSE)


def test_clv_and_arr_insights_read_the_right_rows(eco: Warehouse, saas: Warehouse) -> None:
    r = read_revenue(eco.engine, Filters(), eco.settings)
    assert r is not None
    users = eco.rows("SELECT user_id, segment FROM core.dim_users WHERE is_current")
    spent: dict[str, float] = defaultdict(float)
    for row in eco.rows(
        "SELECT user_id, net_revenue FROM core.int_order_revenue WHERE status = 'completed'"
    ):
        spent[row["user_id"]] += row["net_revenue"]
    per_segment: dict[str, list[float]] = defaultdict(list)
    for u in users:
        per_segment[u["segment"]].append(spent.get(u["user_id"], 0.0))
    clv = {s: sum(v) / len(v) for s, v in per_segment.items()}
    best = ins.top_clv_segment(r)
    assert best is not None
    assert best.values["segment"] == max(clv, key=lambda s: clv[s])
    assert best.values["clv_per_user"] == pytest.approx(max(clv.values()))
    # ARR: the latest month of the mart, not the first.
    s = read_revenue(saas.engine, Filters(), saas.settings)
    assert s is not None
    arr = ins.arr_latest(s)
    assert arr is not None
    last = saas.rows(
        "SELECT month_start_date AS m, gross_arr, cancelled_arr, n_paying_users "
        "FROM marts.arr_monthly ORDER BY m DESC LIMIT 1"
    )[0]
    assert arr.values["month"] == last["m"].isoformat()
    assert arr.values["closing_arr"] == pytest.approx(last["gross_arr"])
    assert arr.values["cancelled_arr"] == pytest.approx(last["cancelled_arr"])
    assert arr.values["n_paying"] == last["n_paying_users"]


# --- every insight says the numbers it holds ------------------------------------------------------


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _money(x: float) -> str:
    return f"{x:,.2f}"


Says = Callable[[Any], str]
# For each insight (by key prefix): the text each value must appear as. Values a sentence
# does not state (ids of named things, the Gini beside a share) are listed as None.
SAYS: dict[str, dict[str, Says | None]] = {
    "funnel_conversion": {"rate": lambda x: f"({_pct(x)})"},
    "biggest_dropoff": {"rate": lambda x: f"{_pct(x)} of the users"},
    "device_gap": {
        "best_rate": _pct,
        "worst_rate": _pct,
        "gap": lambda x: f"{x * 100:.1f} percentage points",
    },
    "slowest_step": {"median_s": lambda x: f"a median of {ins._days(x)}", "avg_s": None},
    "retention_": {"rate": lambda x: f"{_pct(x)} of new users"},
    "stickiness": {
        "dau": lambda x: f"{x:,.1f} users were active",
        "wau": lambda x: f"{x:,.1f} in the trailing week",
        "mau": lambda x: f"{x:,.1f} in the trailing 30 days",
        "stickiness": lambda x: f"stickiness (DAU/MAU) {_pct(x)}",
        "n_days": None,
    },
    "top_decile_share": {"share": lambda x: f"bring {_pct(x)}", "gini": None},
    "seasonality": {"best_per_day": _money, "worst_per_day": _money},
    "arr": {
        "month": lambda x: f"closed {x[:7]}",
        **dict.fromkeys(("closing_arr", "new_arr", "expansion_arr", "contraction_arr"), _money),
        "cancelled_arr": lambda x: f"{_money(x)} cancelled",
    },
    "top_clv_segment": {"clv_per_user": _money},
    "customer_value_fit": {
        "fit_status": None,  # said in words: checked in test_report_customer_value
        "n_customers": lambda x: f"{x:,} customer",
        "n_repeat_buyers": lambda x: f"({x:,} repeat",
        "history_weeks": lambda x: f"{x:.1f} weeks of orders",
        "expected_purchases": lambda x: f"expect {x:,.1f} purchases",
        "predicted_clv": lambda x: f"worth {_money(x)}",
    },
    "top_predicted_clv_segment": {
        "predicted_clv_per_customer": lambda x: f"value: {_money(x)} per customer",
        "historical_clv_per_customer": lambda x: f"against {_money(x)} per customer",
    },
    "churn_bands": {
        "basis": None,  # said in words: checked in test_report_customer_value
        "n_customers": lambda x: f"Of {x:,} customer",
        "n_never_bought": lambda x: f"; {x:,} user",
        **{f"n_{b}": (lambda x: f"{x:,} (") for b in ("active", "at_risk", "churned")},
        **{f"share_{b}": (lambda x: f"({_pct(x)})") for b in ("active", "at_risk", "churned")},
    },
    "probability_alive": {
        "mean": lambda x: f"probability {_pct(x)} on average",
        "mean_repeat": lambda x: f"{_pct(x)} over the",
        "n_repeat_buyers": lambda x: f"the {x:,} repeat buyer",
        "n_one_time": lambda x: f"The {x:,} one-time buyer",
    },
    "first_purchase": {
        "mean_days": lambda x: f"{x:.1f} days on average",
        "median_days": lambda x: f"median {x:.1f}",
        "n_before_signup": lambda x: (
            f"{x:,} buyer{'' if x == 1 else 's'} with an order dated before signup left out"
        ),
    },
    "top_products": {
        **{f"product_{i}": None for i in (1, 2, 3)},
        **{f"margin_{i}": (lambda x: f"({_money(x)})") for i in (1, 2, 3)},
    },
    "top_category": {"margin": _money, "revenue": _money, "margin_pct": _pct},
    "inventory_turnover": {"turnover": lambda x: f"{x:.2f}"},
    "campaign_roi": {
        "best_campaign": None,
        "worst_campaign": None,
        "best_roi": lambda x: f"({x:+.0%} on",
        "worst_roi": lambda x: f"({x:+.0%} on",
    },
    "returning_share": {"share": lambda x: f"{_pct(x)} of daily active users"},
    "experiment_": {
        "verdict": lambda x: f": {x}.",
        "lift": lambda x: f": {x:+.1%} (interval",
        "ci_low": lambda x: f"interval {x:+.1%} to",
        "ci_high": lambda x: f"to {x:+.1%})",
        "monthly_impact": lambda x: f"full rollout {x:+,.1f}",
        "srm_mismatch": None,  # checked below
        "experiment_id": None,
    },
    "quarantine": {
        "n_rows": lambda x: (
            "No row is held" if not x else "1 row is held" if x == 1 else f"{x:,} rows are held"
        ),
        "top_n_rows": lambda x: f"({x:,} row of" if x == 1 else f"({x:,} rows of",
    },
    "data_tests": {k: (lambda x, k=k: f"{x:,} {k}") for k in ("passed", "warned", "failed")},
}


def stated(insight: Insight) -> None:
    """Each value of the insight appears in its text, in the format SAYS gives."""
    says = next((v for k, v in SAYS.items() if insight.key.startswith(k)), {})
    for name, value in insight.values.items():
        if value is None:
            continue
        say = says.get(name, "default")
        if say is None:
            continue
        if say == "default":
            if isinstance(value, float):  # a float needs its format said above
                raise AssertionError(f"{insight.key}: no format for {name}")
            say = (lambda x: f"{x:,}") if isinstance(value, int) else str
        assert callable(say)
        assert say(value) in insight.text, f"{insight.key}: {name}={value!r}: {insight.text}"
    if insight.key.startswith("experiment_"):
        mismatch = "Sample ratio mismatch" in insight.text
        assert mismatch == bool(insight.values["srm_mismatch"]), insight.text


@pytest.mark.parametrize("name", ["eco", "saas"])
def test_every_insight_states_its_own_numbers(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    w: Warehouse = request.getfixturevalue(name)
    sections = read_all(w.engine, Filters(), w.settings)
    found = [
        i
        for section, render in RENDERERS.items()
        if getattr(sections, section) is not None
        for block in render(sections, tmp_path)
        for i in block.insights
    ]
    found += [a for _, a in classic_questions(sections) if a is not None]
    assert len({i.key for i in found}) >= 12
    for insight in found:
        stated(insight)
    # The concentration: the top 10% of buyers (not 1%), in the sentence and in the values.
    if sections.revenue is not None and sections.revenue.concentration is not None:
        share = ins.top_decile_share(sections.revenue)
        assert share is not None
        assert share.values["n_top"] == math.ceil(int(share.values["n_buyers"] or 0) / 10)


def _svg_texts(svg: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


def test_the_insights_and_charts_pick_the_right_rows(eco: Warehouse, tmp_path: Path) -> None:
    """Insights and charts the number-by-number tests left unread: the slowest step is the
    step of the longest median time (and the step before it), the lifecycle sums the
    weeks' statuses, the quietest weekday is the lowest mean day of the daily sales mart,
    the fastest turnover is the highest category's, the device chart draws each device's
    first-to-last conversion, and the heatmap cells are each cohort's share."""
    sections = read_all(eco.engine, Filters(), eco.settings)
    f, r, rev, p = sections.funnel, sections.retention, sections.revenue, sections.products
    assert f is not None
    assert r is not None
    assert rev is not None
    assert p is not None

    slow = ins.slowest_step(f)
    assert slow is not None
    timed = [(s.median_time_s, i) for i, s in enumerate(f.steps) if i and s.median_time_s]
    _, at = max(timed)
    assert slow.values["to_step"] == f.steps[at].event
    assert f"slowest step is {f.steps[at - 1].event} to {f.steps[at].event}:" in slow.text

    weeks = ins.lifecycle_totals(r)
    assert weeks is not None
    for status in ("new", "resurrecting", "dormant"):
        assert weeks.values[status] == sum(getattr(w, status) for w in r.lifecycle), status

    # Mean net revenue per weekday over every day of the mart's range (0 on a day
    # without sales), Monday = 0.
    sales = {
        row["d"]: row["v"]
        for row in eco.rows("SELECT sales_date AS d, net_revenue AS v FROM marts.daily_sales")
    }
    first, last = min(sales), max(sales)
    per_weekday: dict[int, list[float]] = defaultdict(list)
    for k in range((last - first).days + 1):
        day = first + timedelta(days=k)
        per_weekday[day.weekday()].append(float(sales.get(day, 0.0)))
    means = {w: sum(v) / len(v) for w, v in per_weekday.items()}
    season = ins.seasonality(rev)
    assert season is not None
    worst = min(means, key=lambda w: (means[w], w))
    assert season.values["worst_weekday"] == ins.WEEKDAYS[worst]
    assert season.values["worst_per_day"] == pytest.approx(means[worst])

    turnover = ins.fastest_turnover(p)
    assert turnover is not None
    assert p.categories is not None
    rates = {
        c["category"]: c["inventory_turnover"]
        for c in p.categories.to_pylist()
        if c["inventory_turnover"] is not None
    }
    assert turnover.values["category"] == max(rates, key=lambda c: (rates[c], c))

    funnel_blocks = RENDERERS["funnel"](sections, tmp_path)
    device_chart = next(
        b.chart
        for b in funnel_blocks
        if b.chart is not None and b.chart.name == "conversion_by_device"
    )
    drawn = _svg_texts(device_chart.svg)
    for device, steps in f.by_device.items():
        assert f"{steps[-1].count / steps[0].count:.1%}" in drawn, device

    retention_blocks = RENDERERS["retention"](sections, tmp_path)
    heat = next(
        b.chart for b in retention_blocks if b.chart is not None and b.chart.name == "retention_day"
    )
    cells = {
        f"{n / c.size:.0%}" for c in r.day_cohorts if c.size for n in c.counts if n is not None
    }
    assert cells <= set(_svg_texts(heat.svg))


def test_the_overview_period_is_the_data_s_whatever_the_filters(tmp_path: Path) -> None:
    """A country whose last event is days before the data's last day: its overview is the
    data's last week (as orders and revenue, which it does not filter, are), not a week of
    its own; its active users are counted in that week."""
    engine = DuckDBEngine(tmp_path / "w.duckdb")
    try:
        engine.execute(q("CREATE SCHEMA core"))
        engine.execute(
            q(
                "CREATE TABLE core.fct_events AS "
                "SELECT 'd' || i AS event_id, 'd' AS user_id, NULL::VARCHAR AS session_id, "
                "'view' AS event_type, 'web' AS device, 'DE' AS country, "
                "NULL::VARCHAR AS product_id, NULL::DOUBLE AS amount, "
                "'{}'::JSON AS properties, "
                "TIMESTAMP '2026-03-01 12:00' + INTERVAL (i) DAY AS event_ts, "
                "CAST(TIMESTAMP '2026-03-01 12:00' + INTERVAL (i) DAY AS DATE) AS event_date "
                "FROM range(0, 14) t(i) "
                "UNION ALL "
                "SELECT 'f' || i, CASE WHEN i = 5 THEN 'f2' ELSE 'f' END, NULL, 'view', 'web', "
                "'FR', NULL, NULL, '{}'::JSON, TIMESTAMP '2026-03-01 12:00' + INTERVAL (i) DAY, "
                "CAST(TIMESTAMP '2026-03-01 12:00' + INTERVAL (i) DAY AS DATE) "
                "FROM range(0, 10) t(i)"
            )
        )
        o = read_overview(engine, Filters(countries=("FR",)))
    finally:
        engine.close()
    assert o is not None
    # The data's last day is 03-14: its last week 03-08..03-14, the week before 03-01..03-07.
    assert (o.start, o.end) == (date(2026, 3, 8), date(2026, 3, 14))
    assert (o.previous_start, o.previous_end) == (date(2026, 3, 1), date(2026, 3, 7))
    users = {k.key: (k.current, k.previous) for k in o.kpis}["active_users"]
    assert users == (1, 2)  # f on 03-08..03-10; f and f2 (03-06) the week before
