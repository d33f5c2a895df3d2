"""The dashboard's pages: each reads through `dashboard.data` (cached) and draws Plotly
charts, tables and headline numbers. A page whose data the warehouse lacks says so.

Pages are a dispatch table (`PAGES`, slug -> title and renderer): adding a page is adding
a row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import plotly.graph_objects as go
import pyarrow as pa
import pyarrow.compute as pc
import streamlit as st

from productlens import layers, modeling
from productlens.arrays import array
from productlens.config import Project
from productlens.dashboard import data
from productlens.dashboard.warehouse import FilterOptions
from productlens.errors import ProductLensError
from productlens.experiments.power import sample_size
from productlens.lineage import model_graph_dot
from productlens.metrics.funnel import StepResult
from productlens.metrics.funnel_sql import Order
from productlens.metrics.retention import Cohort
from productlens.metrics.scope import Grain, MetricsInputError, parse_duration
from productlens.report import insights
from productlens.report.insights import Insight
from productlens.report.sections import (
    ExperimentsSection,
    Filters,
    FunnelSection,
    HealthSection,
    Overview,
    ProductsSection,
    RetentionSection,
    RevenueSection,
    Settings,
    UsageSection,
    run_time,
)


@dataclass(frozen=True)
class View:
    """What a page is given: the project, the open warehouse, the filters."""

    project: Project
    source: data.Source
    settings: Settings
    filters: Filters
    options: FilterOptions | None

    def section(self, name: str) -> Any:
        return data.section(self.source, name, self.filters, self.settings)

    def partial_day(self, days: Sequence[date]) -> date | None:
        """The last of a daily chart's `days` when the data end before it does
        (`report.sections.DataEnd`)."""
        end = None if self.options is None else self.options.end
        return None if end is None else end.partial_day(days)


@dataclass(frozen=True)
class Page:
    """A page: its title, its renderer, and the cached reads its render makes first (made
    for the first page while the server starts: `app.warm`)."""

    title: str
    render: Callable[[View], None]
    reads: Callable[[View], object] | None = None


# --- formatting ---------------------------------------------------------------------------


def fmt_count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


FORMATS: dict[str, Callable[[float | None], str]] = {
    "count": fmt_count,
    "money": fmt_money,
    "rate": fmt_rate,
}


def _chart(fig: go.Figure, key: str) -> None:
    fig.update_layout(margin={"l": 10, "r": 10, "t": 40, "b": 10}, height=360)
    st.plotly_chart(fig, key=key, config={"displaylogo": False})


def _day_lines(
    days: Sequence[date], series: dict[str, Sequence[Any]], partial: date | None, **line: Any
) -> list[go.Scatter]:
    """One line per series over days; with a `partial` last day, that day's segment is a
    dashed trace of its own (named "... (partial day)"), the rest solid."""
    traces = []
    cut = 1 if partial is not None and days and days[-1] == partial else 0
    for name, values in series.items():
        whole = len(days) - cut
        traces.append(go.Scatter(x=days[:whole], y=values[:whole], name=name, **line))
        if cut:
            traces.append(
                go.Scatter(
                    x=days[-2:],
                    y=values[-2:],
                    name=f"{name} (partial day)",
                    line={"dash": "dash"},
                    showlegend=False,
                    **line,
                )
            )
    return traces


def _day_bars(
    days: Sequence[date], values: Sequence[Any], partial: date | None, **bar: Any
) -> go.Bar:
    """Bars over days; a `partial` last day's bar hatched."""
    cut = partial is not None and bool(days) and days[-1] == partial
    shapes = [""] * (len(days) - 1) + ["/"] if cut else None
    return go.Bar(x=days, y=values, marker_pattern_shape=shapes, **bar)


def _partial_note(view: View, day: date | None) -> None:
    """Under a daily chart whose last day is partial: how far the data go into it."""
    end = None if view.options is None else view.options.end
    if end is not None and day is not None:
        st.caption(end.note(day))


def _insights(*found: Insight | None) -> None:
    """The report's insights (computed from the same section) as a bulleted list."""
    lines = [f"- {i.text}" for i in found if i is not None]
    if lines:
        st.markdown("\n".join(lines))


def _table(rows: Sequence[dict[str, Any]], kinds: dict[str, pa.DataType]) -> pa.Table:
    """Rows as an Arrow table of these columns (a key a row lacks: null), built without
    pyarrow's pandas import (`productlens.arrays`): a page's first table would pay it."""
    return pa.table({name: array([r.get(name) for r in rows], k) for name, k in kinds.items()})


FILTER_NAMES = ("dates", "device", "country")


def _none(view: View, what: str, honoured: Sequence[str] = FILTER_NAMES) -> None:
    """Say the page has nothing to show; "for these filters" only when a filter the page
    honours is set (the experiments page said so though it honours none)."""
    filtered = any(name in honoured for name in _set_filters(view))
    st.info(f"The warehouse has no {what}{' for these filters' if filtered else ''}.")


def _set_filters(view: View) -> list[str]:
    """The sidebar filters that are set, by name."""
    return [
        name
        for name, value in zip(
            FILTER_NAMES,
            (view.filters.start or view.filters.end, view.filters.devices, view.filters.countries),
            strict=True,
        )
        if value
    ]


def _filtered_by(view: View, honoured: Sequence[str]) -> None:
    """A caption naming the sidebar filters this page ignores (its data has no such key)."""
    ignored = [name for name in _set_filters(view) if name not in honoured]
    if ignored:
        st.caption(
            f"This page covers the whole warehouse: the {', '.join(ignored)} filter does not apply."
        )


# --- Overview -----------------------------------------------------------------------------


def overview_reads(view: View) -> tuple[Overview | None, FunnelSection | None]:
    """The overview's KPIs and its funnel counts (no step times: from the marts when
    unfiltered); no funnel without events."""
    overview: Overview | None = view.section("overview")
    if overview is None:
        return None, None
    return overview, data.funnel_counts(view.source, view.filters, view.settings)


def overview_page(view: View) -> None:
    overview, funnel = overview_reads(view)
    if overview is None:
        _none(view, "events")
        return
    st.caption(f"{overview.period}, against {overview.previous_period} ({overview.days})")
    per_row = 3
    columns = [
        column
        for first in range(0, len(overview.kpis), per_row)
        for column in st.columns(per_row)[: len(overview.kpis) - first]
    ]
    for column, kpi in zip(columns, overview.kpis, strict=True):
        delta = None if kpi.change is None else insights.signed(kpi.change)
        column.metric(
            kpi.label,
            FORMATS[kpi.unit](kpi.current),
            delta=delta,
            # A change that rounds to zero is neither up nor down: no arrow, no colour.
            delta_color="normal" if delta is None or delta[0] in "+-" else "off",
            delta_arrow="auto" if delta is None or delta[0] in "+-" else "off",
            help=None if kpi.filtered else "all devices and countries",
        )
    if funnel is not None:
        _insights(
            insights.funnel_conversion(funnel),
            insights.biggest_dropoff(funnel),
            insights.device_gap(funnel),
        )
    if funnel is not None and funnel.daily.num_rows:
        daily = funnel.daily
        days = daily.column("day").to_pylist()
        partial = view.partial_day(days)
        rates = {"conversion": daily.column("conversion").to_pylist()}
        fig = go.Figure(_day_lines(days, rates, partial, mode="lines+markers"))
        fig.update_layout(title="Daily conversion (by day of entry)", yaxis_tickformat=".0%")
        _chart(fig, "overview_conversion")
        _partial_note(view, partial)


# --- Funnel -------------------------------------------------------------------------------

ORDERS: tuple[Order, ...] = ("ordered", "strict", "unordered")
BREAKDOWNS = (None, "device", "country")


def funnel_page(view: View) -> None:
    known = data.event_types(view.source)
    chosen = data.funnel_defaults(view.source, view.settings)
    if chosen.note():
        st.info(chosen.note())
    defaults = list(chosen.steps)
    left, middle, right, last = st.columns([3, 1, 1, 1])
    steps = left.multiselect("Steps, in order", known, default=defaults, key="funnel_steps")
    window_text = middle.text_input(
        "Window", value="1d", key="funnel_window", help="N s|m|h|d|w|mo"
    )
    order = right.selectbox("Order", ORDERS, key="funnel_order")
    by = last.selectbox("Breakdown", BREAKDOWNS, key="funnel_by", format_func=lambda b: b or "none")
    if len(steps) < 2:
        st.info("Choose at least two steps.")
        return
    try:
        window = parse_duration(window_text, flag="Window")
    except MetricsInputError as exc:
        st.error(str(exc))
        return
    ask = data.FunnelAsk(tuple(steps), int(window.total_seconds()), order, by)
    result = data.live_funnel(view.source, ask, view.filters, view.settings)
    top = result.steps
    a, b, c = st.columns(3)
    a.metric(f"entered ({top[0].event})", fmt_count(top[0].count))
    b.metric(f"reached {top[-1].event}", fmt_count(top[-1].count))
    c.metric("conversion", fmt_rate(top[-1].conversion_from_start))
    fig = go.Figure()
    fig.add_trace(_funnel_bars("all", top))
    for value, bucket in result.breakdown.items():
        fig.add_trace(_funnel_bars(value or "(none)", bucket))
    fig.update_layout(title="Users per step", barmode="group")
    _chart(fig, "funnel_steps_chart")
    st.dataframe(_steps_table(top), hide_index=True, key="funnel_table")
    if result.breakdown:
        rows = [
            {
                "value": value,
                "entered": s[0].count,
                "reached": s[-1].count,
                "conversion": s[-1].conversion_from_start,
            }
            for value, s in result.breakdown.items()
        ]
        kinds = {
            "value": pa.string(),
            "entered": pa.int64(),
            "reached": pa.int64(),
            "conversion": pa.float64(),
        }
        st.dataframe(_table(rows, kinds), hide_index=True, key="funnel_breakdown")


def _funnel_bars(name: str, steps: Sequence[StepResult]) -> go.Bar:
    return go.Bar(x=[s.event for s in steps], y=[s.count for s in steps], name=name)


STEP_COLUMNS = {
    "step": pa.string(),
    "users": pa.int64(),
    "of previous": pa.float64(),
    "of first": pa.float64(),
    "drop-off": pa.int64(),
    "median time (s)": pa.float64(),
}


def _steps_table(steps: Sequence[StepResult]) -> pa.Table:
    return _table(
        [
            {
                "step": s.event,
                "users": s.count,
                "of previous": s.conversion_from_previous,
                "of first": s.conversion_from_start,
                "drop-off": s.drop_off,
                "median time (s)": s.median_time_s,
            }
            for s in steps
        ],
        STEP_COLUMNS,
    )


# --- Retention ----------------------------------------------------------------------------


def retention_page(view: View) -> None:
    section: RetentionSection | None = view.section("retention")
    if section is None:
        _none(view, "events")
        return
    grain = st.radio("Cohorts by", ("week", "day"), horizontal=True, key="retention_grain")
    cohorts = section.week_cohorts if grain == "week" else section.day_cohorts
    if not cohorts:
        _none(view, "cohorts")
        return
    _insights(
        insights.retention_after(section, "day", 1), insights.retention_after(section, "week", 4)
    )
    _chart(_heatmap(cohorts, grain), "retention_heatmap")
    rows = [
        {"cohort": c.start, "size": c.size, **{f"{grain} {k}": n for k, n in enumerate(c.counts)}}
        for c in cohorts
    ]
    width = max(len(c.counts) for c in cohorts)
    kinds = {
        "cohort": pa.string(),
        "size": pa.int64(),
        **{f"{grain} {k}": pa.int64() for k in range(width)},
    }
    st.dataframe(_table(rows, kinds), hide_index=True, key="retention_table")


def _heatmap(cohorts: Sequence[Cohort], grain: str) -> go.Figure:
    width = max(len(c.counts) for c in cohorts)
    share = [
        [None if n is None or not c.size else n / c.size for n in c.counts]
        + [None] * (width - len(c.counts))
        for c in cohorts
    ]
    fig = go.Figure(
        go.Heatmap(
            z=share,
            x=[f"{grain} {k}" for k in range(width)],
            y=[f"{c.start} ({c.size:,})" for c in cohorts],
            colorscale="Blues",
            zmin=0,
            zmax=1,
            texttemplate="%{z:.0%}",
        )
    )
    fig.update_layout(title=f"Share of each signup cohort active {grain}s later")
    fig.update_yaxes(autorange="reversed")
    return fig


# --- Engagement ---------------------------------------------------------------------------

LIFECYCLE_COLOURS = {
    "new": "#2ca02c",
    "returning": "#1f77b4",
    "resurrecting": "#9467bd",
    "dormant": "#d62728",
}


def engagement_page(view: View) -> None:
    section: RetentionSection | None = view.section("retention")
    if section is None:
        _none(view, "events")
        return
    _insights(insights.stickiness(section), insights.lifecycle_totals(section))
    activity = section.activity
    if activity.num_rows:
        last = activity.slice(activity.num_rows - 1).to_pylist()[0]
        a, b, c, d = st.columns(4)
        a.metric(f"DAU on {last['day']}", fmt_count(last["dau"]))
        b.metric("WAU", fmt_count(last["wau"]))
        c.metric("MAU", fmt_count(last["mau"]))
        d.metric("stickiness (DAU/MAU)", fmt_rate(last["stickiness"]))
        days = activity.column("day").to_pylist()
        partial = view.partial_day(days)
        series = {name.upper(): activity.column(name).to_pylist() for name in ("dau", "wau", "mau")}
        fig = go.Figure(_day_lines(days, series, partial))
        fig.update_layout(title="Active users")
        _chart(fig, "engagement_active")
        _partial_note(view, partial)
    periods: tuple[Grain, ...] = ("week", "day", "month")
    period: Grain = st.radio("Lifecycle per", periods, horizontal=True, key="lifecycle")
    result = data.live_lifecycle(view.source, period, view.filters, view.settings)
    starts = [p.start for p in result.periods]
    fig = go.Figure(
        [
            go.Bar(
                x=starts,
                y=[getattr(p, status) * (-1 if status == "dormant" else 1) for p in result.periods],
                name=status,
                marker_color=colour,
            )
            for status, colour in LIFECYCLE_COLOURS.items()
        ]
    )
    fig.update_layout(title=f"Lifecycle per {period}", barmode="relative")
    _chart(fig, "engagement_lifecycle")
    usage: UsageSection | None = view.section("usage")
    if usage is not None:
        st.subheader("Usage")
        _insights(insights.usage_totals(usage), insights.returning_share(usage))
        events = usage.events
        kinds = sorted(set(events.column("event_type").to_pylist()))  # a handful of types
        per_kind = {k: events.filter(pc.equal(events["event_type"], k)) for k in kinds}
        partial = view.partial_day(sorted(set(events["day"].to_pylist())))
        fig = go.Figure(
            [
                _day_bars(t["day"].to_pylist(), t["n_events"].to_pylist(), partial, name=kind)
                for kind, t in per_kind.items()
            ]
        )
        fig.update_layout(title="Usage events per day", barmode="group")
        _chart(fig, "engagement_usage")
        _partial_note(view, partial)
        nr = usage.new_vs_returning
        nr_days = nr["day"].to_pylist()
        partial = view.partial_day(nr_days)
        fig = go.Figure(
            [
                _day_bars(nr_days, nr[name].to_pylist(), partial, name=name.replace("_", " "))
                for name in ("new_users", "returning_users")
            ]
        )
        fig.update_layout(title="New and returning active users", barmode="stack")
        _chart(fig, "engagement_new_returning")
        _partial_note(view, partial)


# --- Revenue and customers ----------------------------------------------------------------


def revenue_page(view: View) -> None:
    _filtered_by(view, ("dates",))
    section: RevenueSection | None = view.section("revenue")
    if section is None:
        _none(view, "orders or subscriptions", ("dates",))
        return
    _insights(
        insights.top_decile_share(section),
        insights.seasonality(section),
        insights.arr_latest(section),
        insights.first_purchase(section),
    )
    if section.daily is not None:
        daily = section.daily
        total = sum(daily.column("net_revenue").to_pylist())
        orders = sum(daily.column("n_orders").to_pylist())
        a, b, c = st.columns(3)
        a.metric("net revenue", fmt_money(total))
        b.metric("orders", fmt_count(orders))
        first = section.first_purchase
        c.metric(
            "days from signup to first purchase (mean)",
            "-" if first is None or first.mean_days is None else f"{first.mean_days:.1f}",
        )
        days = daily["day"].to_pylist()
        partial = view.partial_day(days)
        revenue = {"net revenue": daily["net_revenue"].to_pylist()}
        fig = go.Figure(_day_lines(days, revenue, partial))
        fig.update_layout(title="Net revenue per day")
        _chart(fig, "revenue_daily")
        _partial_note(view, partial)
    if section.by_weekday is not None:
        names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
        week = section.by_weekday
        fig = go.Figure(
            go.Bar(x=[names[d] for d in week["weekday"].to_pylist()], y=week["per_day"].to_pylist())
        )
        fig.update_layout(title="Seasonality: mean net revenue per weekday")
        _chart(fig, "revenue_weekday")
    if section.arr:
        months = [m.month for m in section.arr]
        parts = ("new_arr", "expansion_arr", "reactivation_arr", "contraction_arr", "churned_arr")
        fig = go.Figure(
            [go.Bar(x=months, y=[getattr(m, p) for m in section.arr], name=p) for p in parts]
            + [go.Scatter(x=months, y=[m.closing_arr for m in section.arr], name="closing ARR")]
        )
        fig.update_layout(title="ARR bridge", barmode="relative")
        _chart(fig, "revenue_arr")
    if section.concentration is not None and section.pareto is not None:
        share = section.concentration.top_10pct_share
        st.metric("share of revenue from the top 10% of buyers", fmt_rate(share))
        fig = go.Figure(
            go.Scatter(
                x=section.pareto["buyer_share"].to_pylist(),
                y=section.pareto["revenue_share"].to_pylist(),
                fill="tozeroy",
            )
        )
        fig.update_layout(
            title="Pareto: cumulative revenue share by share of buyers",
            xaxis_tickformat=".0%",
            yaxis_tickformat=".0%",
        )
        _chart(fig, "revenue_pareto")
    customer_value(section)


def customer_value(section: RevenueSection) -> None:
    """Predicted CLV by segment beside historical, churn-risk bands and P(alive) when the
    fit is usable; otherwise the historical view and why there is no prediction."""
    v = section.customer_value
    if not section.clv and (v is None or not v.n_customers):
        return  # no customer at all (a SaaS world sells no orders)
    st.subheader("Customer value")
    st.caption("A snapshot of the whole warehouse: the date filter does not apply.")
    fit = insights.customer_value_fit(section)
    if v is not None and v.fitted:
        assert v.expected_purchases is not None
        assert v.predicted_clv is not None
        a, b, c, d = st.columns(4)
        a.metric("customers", fmt_count(v.n_customers))
        b.metric("predicted value, next 52 weeks", fmt_money(v.predicted_clv))
        c.metric("expected purchases, next 52 weeks", f"{v.expected_purchases:,.1f}")
        d.metric("mean probability alive", fmt_rate(v.mean_probability_alive))
        _insights(fit, insights.top_predicted_clv_segment(section))
        labels = [s.segment or "(none)" for s in v.segments]
        fig = go.Figure(
            [
                go.Bar(
                    x=labels,
                    y=[s.historical_clv_per_customer for s in v.segments],
                    name="to date",
                ),
                go.Bar(
                    x=labels,
                    y=[s.predicted_clv_per_customer for s in v.segments],
                    name="predicted, next 52 weeks",
                ),
            ]
        )
        fig.update_layout(title="Customer value per customer, by segment", barmode="group")
        _chart(fig, "revenue_clv")
        st.dataframe(
            _table([asdict(s) for s in v.segments], SEGMENT_COLUMNS),
            hide_index=True,
            key="revenue_segments",
        )
    else:
        if fit is not None:
            st.info(fit.text, icon=":material/info:")
        _insights(insights.top_clv_segment(section))
        if section.clv:
            fig = go.Figure(
                go.Bar(
                    x=[s.segment or "(none)" for s in section.clv],
                    y=[s.clv_per_user for s in section.clv],
                )
            )
            fig.update_layout(title="Net revenue per user to date, by segment")
            _chart(fig, "revenue_clv")
    if v is None:
        return
    churn = insights.churn_bands(section)
    if churn is not None:
        _insights(churn)
        bands = v.buyer_bands()
        fig = go.Figure(
            go.Bar(x=[band.replace("_", " ") for band in bands], y=list(bands.values()))
        )
        basis = "probability alive" if v.fitted else "days since the last order"
        fig.update_layout(title=f"Customers by churn risk ({basis})")
        _chart(fig, "revenue_churn")
    if v.alive_bins is not None:
        _insights(insights.probability_alive(section))
        width = 1 / len(v.alive_bins)
        fig = go.Figure(
            go.Bar(
                x=[(k + 0.5) * width for k in range(len(v.alive_bins))],
                y=list(v.alive_bins),
                width=width * 0.95,
            )
        )
        fig.update_layout(
            title="Customers by probability of being still active", xaxis_tickformat=".0%"
        )
        _chart(fig, "revenue_alive")


SEGMENT_COLUMNS = {
    "segment": pa.string(),
    "n_customers": pa.int64(),
    "historical_clv_per_customer": pa.float64(),
    "predicted_clv_per_customer": pa.float64(),
    "expected_purchases_per_customer": pa.float64(),
    "mean_probability_alive": pa.float64(),
}


# --- Products and Marketing ---------------------------------------------------------------


def products_page(view: View) -> None:
    _filtered_by(view, ())
    section: ProductsSection | None = view.section("products")
    if section is None or section.products is None:
        _none(view, "product sales", ())
        return
    _insights(
        insights.top_products(section),
        insights.top_category(section),
        insights.fastest_turnover(section),
    )
    categories = section.categories
    if categories is not None:
        fig = go.Figure(
            go.Bar(x=categories["category"].to_pylist(), y=categories["margin"].to_pylist())
        )
        fig.update_layout(title="Margin by category")
        _chart(fig, "products_categories")
        st.dataframe(categories, hide_index=True, key="products_categories_table")
    top = section.products.slice(0, 15)
    fig = go.Figure(
        go.Bar(
            x=top["margin"].to_pylist(),
            y=top["product_name"].to_pylist(),
            orientation="h",
        )
    )
    fig.update_layout(title="Top products by margin")
    fig.update_yaxes(autorange="reversed")
    _chart(fig, "products_top")
    st.dataframe(section.products, hide_index=True, key="products_table")


def marketing_page(view: View) -> None:
    _filtered_by(view, ())
    section: ProductsSection | None = view.section("products")
    if section is None or section.campaigns is None:
        _none(view, "campaigns", ())
        return
    _insights(insights.campaign_roi(section))
    campaigns = section.campaigns
    if not any(campaigns["first_touch_revenue"].to_pylist()):
        # Every bar would be -100% (the SaaS world's campaigns bring subscribers, no orders).
        st.info(
            "No campaign brought revenue (first touch): there is no return on investment to show."
        )
    else:
        fig = go.Figure(
            go.Bar(
                x=campaigns["campaign_name"].to_pylist(),
                y=campaigns["roi"].to_pylist(),
                marker_color=[
                    "#2ca02c" if (r or 0) >= 0 else "#d62728" for r in campaigns["roi"].to_pylist()
                ],
            )
        )
        fig.update_layout(
            title="Campaign ROI (first-touch revenue over spend)", yaxis_tickformat=".0%"
        )
        _chart(fig, "marketing_roi")
    st.dataframe(campaigns, hide_index=True, key="marketing_table")


# --- Experiments --------------------------------------------------------------------------


def experiments_page(view: View) -> None:
    _filtered_by(view, ())
    section: ExperimentsSection | None = view.section("experiments")
    if section is None:
        _none(view, "experiment with exposed users", ())
    else:
        mismatched = sorted({s.experiment_id for s in section.summaries if s.srm_mismatch})
        for s in section.summaries:
            if s.experiment_id in mismatched:
                st.error(
                    f"Sample ratio mismatch in {s.experiment_id} (p = {s.srm_p_value:.2g}): "
                    "its assignment is broken; do not trust its readout.",
                    icon=":material/warning:",
                )
                mismatched.remove(s.experiment_id)
        labels = [f"{s.experiment_id}: {s.variant} vs {s.control}" for s in section.summaries]
        fig = go.Figure(
            go.Scatter(
                x=[s.lift for s in section.summaries],
                y=labels,
                mode="markers",
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [s.ci_high - s.lift for s in section.summaries],
                    "arrayminus": [s.lift - s.ci_low for s in section.summaries],
                },
            )
        )
        fig.add_vline(x=0, line_dash="dash")
        fig.update_layout(
            title="Lift on the primary metric, with its interval", xaxis_tickformat=".0%"
        )
        _chart(fig, "experiments_forest")
        rows = [
            {
                "experiment": s.experiment_id,
                "metric": s.metric,
                "variant": s.variant,
                "users in variant": s.n_variant,
                "control": s.control,
                "users in control": s.n_control,
                "lift": s.lift,
                "low": s.ci_low,
                "high": s.ci_high,
                "p": s.p_value,
                "SRM": "mismatch" if s.srm_mismatch else "ok",
                "decision": s.verdict,
                "monthly impact": s.monthly_impact,
            }
            for s in section.summaries
        ]
        st.dataframe(_table(rows, EXPERIMENT_COLUMNS), hide_index=True, key="experiments_table")
        for s in section.summaries:
            with st.expander(f"{s.experiment_id} ({s.name or ''}): {s.verdict}"):
                st.write(insights.experiment_verdict(s).text)
                for reason in s.reasons:
                    st.write(f"- {reason}")
    plan_calculator()


EXPERIMENT_COLUMNS = {
    "experiment": pa.string(),
    "metric": pa.string(),
    "variant": pa.string(),
    "users in variant": pa.int64(),
    "control": pa.string(),
    "users in control": pa.int64(),
    "lift": pa.float64(),
    "low": pa.float64(),
    "high": pa.float64(),
    "p": pa.float64(),
    "SRM": pa.string(),
    "decision": pa.string(),
    "monthly impact": pa.float64(),
}


def plan_calculator() -> None:
    """Users per arm for an effect (productlens.experiments.power.sample_size)."""
    st.subheader("Plan an experiment")
    a, b, c, d, e = st.columns(5)
    baseline = a.number_input("baseline rate", 0.001, 0.999, 0.1, 0.01, key="plan_baseline")
    mde = b.number_input("relative MDE", 0.001, 10.0, 0.05, 0.01, key="plan_mde")
    alpha = c.number_input("alpha", 0.001, 0.5, 0.05, 0.01, key="plan_alpha")
    power = d.number_input("power", 0.5, 0.999, 0.8, 0.05, key="plan_power")
    daily = e.number_input("daily users", 1, 10_000_000, 1000, key="plan_daily")
    try:
        plan = sample_size(baseline, mde, alpha=alpha, power=power, daily_users=float(daily))
    except ValueError as exc:
        st.error(str(exc))
        return
    left, right = st.columns(2)
    left.metric("users per arm", fmt_count(plan.n_per_arm))
    right.metric("days at the daily traffic", fmt_count(plan.days))


# --- Data health --------------------------------------------------------------------------


def health_page(view: View) -> None:
    _filtered_by(view, ())
    section: HealthSection | None = view.section("health")
    if section is None:
        _none(view, "run log", ())
        return
    _insights(insights.quarantine_summary(section), insights.tests_summary(section))
    held = sum(section.quarantine["n_rows"].to_pylist())
    tests = dict(
        zip(section.tests["status"].to_pylist(), section.tests["n_tests"].to_pylist(), strict=True)
    )
    a, b, c = st.columns(3)
    a.metric("rows in quarantine", fmt_count(held))
    b.metric("data tests passed", f"{tests.get('pass', 0):,} of {sum(tests.values()):,}")
    last = section.last_run
    c.metric(
        "last build",
        "-" if last is None else run_time(last.finished_at or last.started_at),
        help="the last run that built the warehouse (runs that only read it are left out)",
    )
    if section.quarantine.num_rows:
        q = section.quarantine
        fig = go.Figure(
            go.Bar(
                x=q["n_rows"].to_pylist(),
                y=[
                    f"{t}: {r}"
                    for t, r in zip(
                        q["target_table"].to_pylist(), q["reason"].to_pylist(), strict=True
                    )
                ],
                orientation="h",
            )
        )
        fig.update_layout(title="Quarantined rows by table and reason")
        _chart(fig, "health_quarantine")
    st.subheader("Data tests not passing")
    st.dataframe(section.failing_tests, hide_index=True, key="health_failing")
    st.subheader(layers.LABEL[0].upper() + layers.LABEL[1:])
    st.dataframe(section.rows_per_layer, hide_index=True, key="health_layers")
    st.subheader("Run log")
    st.dataframe(data.run_log(view.source), hide_index=True, key="health_run_log")
    st.subheader("Model graph")
    try:
        dot = _model_graph_dot(view.project, view.source.key)
    except ProductLensError as exc:
        st.warning(f"the models could not be read: {exc}")
        return
    st.caption("Each table and the models that read it (productlens lineage MODEL.COLUMN)")
    st.graphviz_chart(dot, alt="The model graph: raw tables, staging, core and marts")


@st.cache_data(show_spinner=False, max_entries=4)
def _model_graph_dot(_project: Project, key: str) -> str:
    """The project's model graph as DOT (Streamlit draws it in the browser)."""
    return model_graph_dot(modeling.discover(_project.config, _project.model_dirs))


PAGES: dict[str, Page] = {
    "overview": Page("Overview", overview_page, overview_reads),
    "funnel": Page("Funnel", funnel_page),
    "retention": Page("Retention", retention_page),
    "engagement": Page("Engagement", engagement_page),
    "revenue": Page("Revenue and customers", revenue_page),
    "products": Page("Products", products_page),
    "marketing": Page("Marketing", marketing_page),
    "experiments": Page("Experiments", experiments_page),
    "health": Page("Data health", health_page),
}
