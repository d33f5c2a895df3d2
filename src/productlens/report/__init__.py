"""The HTML report: one self-contained file (charts inline as SVG) plus a PNG per chart.

The numbers come from `productlens.report.sections` (read through the engine only, never
raw files), the sentences from `productlens.report.insights`; each chart is shown beside
the insights it supports. A section the warehouse has no data for is left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from productlens import __version__, layers
from productlens.engines import Engine
from productlens.errors import ReportError
from productlens.report import charts
from productlens.report import insights as ins
from productlens.report.insights import Insight
from productlens.report.sections import (
    SECTIONS,
    Filters,
    RevenueSection,
    Sections,
    Settings,
    read_all,
    run_time,
)

REPORT_FILE = "report.html"

# Every chart the report can draw, by name (`NAME.png` in the report's folder). A chart of
# these that a report does not draw is removed from the folder it writes: a second report
# into the same folder (another world, a section gone) left the first one's charts beside
# it, as if they were its own. Files of any other name are never touched.
CHART_NAMES = (
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
    "probability_alive",
    "margin_by_category",
    "top_products",
    "campaign_roi",
    "usage_events",
    "new_vs_returning",
    "experiments",
    "quarantine",
    "rows_per_layer",
)


@dataclass(frozen=True)
class ReportResult:
    html: Path
    pngs: list[Path]
    sections: Sections | None = None
    blocks: dict[str, list[Block]] = field(default_factory=dict)

    def insights(self) -> dict[str, Insight]:
        """Every insight the report states, by key."""
        return {i.key: i for bs in self.blocks.values() for b in bs for i in b.insights}


@dataclass(frozen=True)
class Block:
    """A chart (or a table) with the insights beside it."""

    title: str
    chart: charts.Chart | None = None
    insights: tuple[Insight, ...] = ()
    table: tuple[tuple[str, ...], tuple[tuple[str, ...], ...]] | None = None  # head, rows
    note: str | None = None  # under the chart: its last day is partial (`DataEnd.note`)


def _partial(s: Sections, days: Sequence[date]) -> date | None:
    """The last of a daily chart's `days` when the data end before it does."""
    return None if s.end is None else s.end.partial_day(days)


def _note(s: Sections, day: date | None) -> str | None:
    return None if s.end is None or day is None else s.end.note(day)


def _some(*items: Insight | None) -> tuple[Insight, ...]:
    return tuple(i for i in items if i is not None)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _num(x: float | None, unit: str = "count") -> str:
    if x is None:
        return "-"
    formats: dict[str, Callable[[float], str]] = {"rate": _pct, "money": "{:,.2f}".format}
    return formats.get(unit, "{:,.0f}".format)(x)


# --- one function per section: its blocks ------------------------------------------------------


def _overview(s: Sections, out: Path) -> list[Block]:
    o = s.overview
    assert o is not None
    rows = tuple(
        (
            k.label,
            _num(k.current, k.unit),
            _num(k.previous, k.unit),
            "-" if k.change is None else ins.signed(k.change),
        )
        for k in o.kpis
    )
    head = ("", o.period, o.previous_period, "change")
    return [Block(f"Key figures against the previous period ({o.days})", table=(head, rows))]


def _funnel(s: Sections, out: Path) -> list[Block]:
    f = s.funnel
    assert f is not None
    names = [st.event for st in f.steps]
    days = f.daily.column("day").to_pylist()
    partial = _partial(s, days)
    blocks = [
        Block(
            "Funnel",
            charts.funnel_bars(names, [st.count for st in f.steps], out),
            _some(
                None if f.note is None else Insight("funnel_steps_missing", f.note),
                ins.funnel_conversion(f),
                ins.biggest_dropoff(f),
            ),
        ),
        Block(
            "Daily conversion",
            charts.conversion_trend(
                days, f.daily.column("conversion").to_pylist(), out, partial=partial
            ),
            note=_note(s, partial),
        ),
    ]
    if f.by_device:
        devices = sorted(f.by_device)
        blocks.append(
            Block(
                "Conversion by device",
                charts.bars(
                    "conversion_by_device",
                    "Conversion by device, first step to last",
                    devices,
                    [f.by_device[d][-1].conversion_from_start or 0.0 for d in devices],
                    out,
                    percent=True,
                ),
                _some(ins.device_gap(f)),
            )
        )
    timed = [st for st in f.steps[1:] if st.median_time_s is not None]
    if timed:
        blocks.append(
            Block(
                "Time to convert",
                charts.bars(
                    "time_to_convert",
                    "Median minutes from the previous step",
                    [st.event for st in timed],
                    [(st.median_time_s or 0.0) / 60 for st in timed],
                    out,
                    xlabel="minutes",
                ),
                _some(ins.slowest_step(f)),
            )
        )
    return blocks


def _heat(name: str, title: str, cohorts: Any, out: Path, xlabel: str) -> charts.Chart:
    matrix = [[None if n is None or not c.size else n / c.size for n in c.counts] for c in cohorts]
    return charts.heatmap(name, title, [c.start for c in cohorts], matrix, out, xlabel=xlabel)


def _retention(s: Sections, out: Path) -> list[Block]:
    r = s.retention
    assert r is not None
    a = r.activity
    days = a.column("day").to_pylist()
    partial = _partial(s, days)
    blocks = []
    if r.day_cohorts:
        blocks.append(
            Block(
                "Retention by day",
                _heat(
                    "retention_day",
                    "Signup cohorts by day",
                    r.day_cohorts,
                    out,
                    "days since signup",
                ),
                _some(ins.retention_after(r, "day", 1)),
            )
        )
    if r.week_cohorts:
        blocks.append(
            Block(
                "Retention by week",
                _heat(
                    "retention_week",
                    "Signup cohorts by week",
                    r.week_cohorts,
                    out,
                    "weeks since signup",
                ),
                _some(ins.retention_after(r, "week", 1), ins.retention_after(r, "week", 4)),
            )
        )
    blocks.append(
        Block(
            "Active users",
            charts.lines(
                "active_users",
                "DAU, WAU and MAU",
                days,
                {k.upper(): a.column(k).to_pylist() for k in ("dau", "wau", "mau")},
                out,
                partial=partial,
            ),
            _some(ins.stickiness(r)),
            note=_note(s, partial),
        )
    )
    if r.lifecycle:
        blocks.append(
            Block(
                "Lifecycle",
                charts.stacked(
                    "lifecycle",
                    "Users by lifecycle status per week",
                    [w.start for w in r.lifecycle],
                    {
                        "new": [w.new for w in r.lifecycle],
                        "returning": [w.returning for w in r.lifecycle],
                        "resurrecting": [w.resurrecting for w in r.lifecycle],
                        "dormant": [-w.dormant for w in r.lifecycle],
                    },
                    out,
                ),
                _some(ins.lifecycle_totals(r)),
            )
        )
    return blocks


def _revenue(s: Sections, out: Path) -> list[Block]:
    r = s.revenue
    assert r is not None
    blocks = []
    if r.daily is not None and r.by_weekday is not None:
        days = r.daily.column("day").to_pylist()
        partial = _partial(s, days)
        blocks.append(
            Block(
                "Revenue over time",
                charts.lines(
                    "revenue_daily",
                    "Net revenue per day",
                    days,
                    {"net revenue": r.daily.column("net_revenue").to_pylist()},
                    out,
                    partial=partial,
                ),
                note=_note(s, partial),
            )
        )
        blocks.append(
            Block(
                "Seasonality",
                charts.bars(
                    "revenue_by_weekday",
                    "Average net revenue per day, by weekday",
                    [ins.WEEKDAYS[w] for w in r.by_weekday.column("weekday").to_pylist()],
                    r.by_weekday.column("per_day").to_pylist(),
                    out,
                ),
                _some(ins.seasonality(r)),
            )
        )
    if r.arr:
        blocks.append(
            Block(
                "ARR bridge",
                charts.stacked(
                    "arr_bridge",
                    "ARR movements per month",
                    [m.month[:7] for m in r.arr],
                    {
                        "new": [m.new_arr for m in r.arr],
                        "reactivation": [m.reactivation_arr for m in r.arr],
                        "expansion": [m.expansion_arr for m in r.arr],
                        "contraction": [m.contraction_arr for m in r.arr],
                        "cancelled": [m.churned_arr for m in r.arr],
                    },
                    out,
                ),
                _some(ins.arr_latest(r)),
            )
        )
    if r.pareto is not None and r.pareto.num_rows:
        blocks.append(
            Block(
                "Revenue concentration",
                charts.pareto(
                    "revenue_pareto",
                    "Pareto of buyers",
                    r.pareto.column("buyer_share").to_pylist(),
                    r.pareto.column("revenue_share").to_pylist(),
                    out,
                ),
                _some(ins.top_decile_share(r)),
            )
        )
    return blocks + _customer_value(r, out)


def _customer_value(r: RevenueSection, out: Path) -> list[Block]:
    """CLV by segment (predicted beside historical when the fit is usable, else historical
    with the reason there is no prediction), churn-risk bands and, fitted, P(alive)."""
    v = r.customer_value
    blocks = []
    if v is not None and v.fitted and v.segments:
        blocks.append(
            Block(
                "Customer lifetime value by segment",
                charts.grouped_bars(
                    "clv_by_segment",
                    "Per customer: net revenue to date and predicted next 52 weeks",
                    [s.segment or "(none)" for s in v.segments],
                    {
                        "to date": [s.historical_clv_per_customer for s in v.segments],
                        "predicted, next 52 weeks": [
                            s.predicted_clv_per_customer or 0.0 for s in v.segments
                        ],
                    },
                    out,
                ),
                _some(
                    ins.customer_value_fit(r),
                    ins.top_predicted_clv_segment(r),
                    ins.first_purchase(r),
                ),
            )
        )
    elif r.clv:
        blocks.append(
            Block(
                "Customer lifetime value by segment",
                charts.bars(
                    "clv_by_segment",
                    "Net revenue per user to date, by segment",
                    [str(s.segment) for s in r.clv],
                    [s.clv_per_user for s in r.clv],
                    out,
                ),
                _some(ins.customer_value_fit(r), ins.top_clv_segment(r), ins.first_purchase(r)),
            )
        )
    churn = ins.churn_bands(r)
    if v is not None and churn is not None:
        bands = v.buyer_bands()
        blocks.append(
            Block(
                "Churn risk",
                charts.bars(
                    "churn_risk",
                    "Customers by churn risk"
                    + (" (probability alive)" if v.fitted else " (days since last order)"),
                    [band.replace("_", " ") for band in bands],
                    [float(n) for n in bands.values()],
                    out,
                    counts=True,
                ),
                (churn,),
            )
        )
    if v is not None and v.alive_bins is not None and v.n_customers:
        edges = [k / len(v.alive_bins) for k in range(len(v.alive_bins) + 1)]
        blocks.append(
            Block(
                "Probability alive",
                charts.histogram(
                    "probability_alive",
                    "Customers by fitted probability of being still active",
                    edges,
                    list(v.alive_bins),
                    out,
                    xlabel="probability alive",
                    percent=True,
                ),
                _some(ins.probability_alive(r)),
            )
        )
    return blocks


def _products(s: Sections, out: Path) -> list[Block]:
    p = s.products
    assert p is not None
    blocks = []
    if p.categories is not None and p.products is not None:
        blocks.append(
            Block(
                "Margin by category",
                charts.bars(
                    "margin_by_category",
                    "Margin by category",
                    p.categories.column("category").to_pylist(),
                    p.categories.column("margin").to_pylist(),
                    out,
                ),
                _some(ins.top_category(p), ins.fastest_turnover(p)),
            )
        )
        top = p.products.slice(0, 10)
        blocks.append(
            Block(
                "Top products by margin",
                charts.bars(
                    "top_products",
                    "Top 10 products by margin",
                    top.column("product_name").to_pylist(),
                    top.column("margin").to_pylist(),
                    out,
                ),
                _some(ins.top_products(p)),
            )
        )
    if p.campaigns is not None:
        c = p.campaigns.filter(p.campaigns.column("roi").is_valid())
        # No campaign brought revenue (the SaaS world's bring subscribers, no orders): every
        # bar would say -100%, which says nothing; the table keeps spend and signups.
        brought = any(p.campaigns.column("first_touch_revenue").to_pylist())
        blocks.append(
            Block(
                "Campaign ROI",
                charts.bars(
                    "campaign_roi",
                    "Return on investment by campaign (first touch margin)",
                    c.column("campaign_name").to_pylist(),
                    c.column("roi").to_pylist(),
                    out,
                    percent=True,
                )
                if brought
                else None,
                _some(ins.campaign_roi(p)),
                (
                    (
                        "campaign",
                        "channel",
                        "spend",
                        "signups",
                        "first-touch revenue",
                        "last-touch revenue",
                        "ROAS",
                    ),
                    tuple(
                        (
                            row["campaign_name"],
                            row["channel"],
                            _num(row["spend"], "money"),
                            _num(row["signups"]),
                            _num(row["first_touch_revenue"], "money"),
                            _num(row["last_touch_revenue"], "money"),
                            "-" if row["roas"] is None else f"{row['roas']:.2f}",
                        )
                        for row in p.campaigns.to_pylist()
                    ),
                ),
            )
        )
    return blocks


def _usage(s: Sections, out: Path) -> list[Block]:
    u = s.usage
    assert u is not None
    days = sorted(set(u.events.column("day").to_pylist()))
    series: dict[str, list[float | None]] = {}
    for row in u.events.to_pylist():
        series.setdefault(row["event_type"], [0.0] * len(days))[days.index(row["day"])] = float(
            row["n_events"]
        )
    nr = u.new_vs_returning
    partial = _partial(s, days)
    nr_days = nr.column("day").to_pylist()
    nr_partial = _partial(s, nr_days)
    return [
        Block(
            "Usage events",
            charts.lines(
                "usage_events", "Usage events per day", days, dict(series), out, partial=partial
            ),
            _some(ins.usage_totals(u)),
            note=_note(s, partial),
        ),
        Block(
            "New and returning users",
            charts.stacked(
                "new_vs_returning",
                "Active users per day: new and returning",
                [str(d) for d in nr_days],
                {
                    "new": nr.column("new_users").to_pylist(),
                    "returning": nr.column("returning_users").to_pylist(),
                },
                out,
                partial_last=nr_partial is not None,
            ),
            _some(ins.returning_share(u)),
            note=_note(s, nr_partial),
        ),
    ]


def _experiments(s: Sections, out: Path) -> list[Block]:
    e = s.experiments
    assert e is not None
    rows = e.summaries
    return [
        Block(
            "Experiment readouts",
            charts.forest(
                "experiments",
                "Lift on each experiment's first metric, with its interval",
                [f"{r.name or r.experiment_id}: {r.variant} ({r.metric})" for r in rows],
                [r.lift for r in rows],
                [r.ci_low for r in rows],
                [r.ci_high for r in rows],
                out,
            ),
            tuple(ins.experiment_verdict(r) for r in rows),
            (
                ("experiment", "variant", "users per arm", "lift", "interval", "SRM", "decision"),
                tuple(
                    (
                        r.name or r.experiment_id,
                        r.variant,
                        # Each count named by its arm: "a / b" did not say which was control.
                        f"{r.control} {r.n_control:,} / {r.variant} {r.n_variant:,}",
                        ins.signed(r.lift),
                        f"{ins.signed(r.ci_low)} to {ins.signed(r.ci_high)}",
                        f"mismatch (p={r.srm_p_value:.3g})" if r.srm_mismatch else "ok",
                        r.verdict,
                    )
                    for r in rows
                ),
            ),
        )
    ]


def _health(s: Sections, out: Path) -> list[Block]:
    h = s.health
    assert h is not None
    q = h.quarantine
    blocks = [
        Block(
            "Quarantine",
            charts.bars(
                "quarantine",
                "Rows held in quarantine, by reason",
                [
                    f"{t}: {r}"
                    for t, r in zip(
                        q.column("target_table").to_pylist(),
                        q.column("reason").to_pylist(),
                        strict=True,
                    )
                ],
                [float(n) for n in q.column("n_rows").to_pylist()],
                out,
            )
            if q.num_rows
            else None,
            _some(ins.quarantine_summary(h)),
        ),
        Block(
            "Data tests and layers",
            charts.bars(
                "rows_per_layer",
                layers.LABEL[0].upper() + layers.LABEL[1:],
                h.rows_per_layer.column("layer").to_pylist(),
                [float(n) for n in h.rows_per_layer.column("n_rows").to_pylist()],
                out,
            ),
            _some(ins.tests_summary(h)),
            (
                ("test", "model", "severity", "status", "failing rows"),
                tuple(
                    (r["test_name"], r["model"], r["severity"], r["status"], _num(r["n_failing"]))
                    for r in h.failing_tests.to_pylist()
                ),
            )
            if h.failing_tests.num_rows
            else None,
        ),
    ]
    if h.last_run is not None:
        lr = h.last_run
        blocks.append(
            Block(
                "Last build",
                table=(
                    ("run", "started", "finished", "steps", "failed"),
                    (
                        (
                            lr.run_id,
                            run_time(lr.started_at),
                            run_time(lr.finished_at),
                            str(lr.n_steps),
                            str(lr.n_failed),
                        ),
                    ),
                ),
            )
        )
    return blocks


def classic_questions(s: Sections) -> list[tuple[str, Insight | None]]:
    """The five classic questions and the insight that answers each (None: no data)."""
    p, r = s.products, s.revenue
    return [
        ("Which categories have the highest margins?", None if p is None else ins.top_category(p)),
        ("Which products have the highest margins?", None if p is None else ins.top_products(p)),
        (
            "Which segments have the highest lifetime value?",
            None if r is None else ins.top_predicted_clv_segment(r) or ins.top_clv_segment(r),
        ),
        ("How do sales move with the days of the week?", None if r is None else ins.seasonality(r)),
        ("Which campaigns return the most?", None if p is None else ins.campaign_roi(p)),
        ("How long do customers take to first buy?", None if r is None else ins.first_purchase(r)),
    ]


RENDERERS: dict[str, Callable[[Sections, Path], list[Block]]] = {
    "overview": _overview,
    "funnel": _funnel,
    "retention": _retention,
    "revenue": _revenue,
    "products": _products,
    "usage": _usage,
    "experiments": _experiments,
    "health": _health,
}


def write_report(
    engine: Engine,
    out_dir: Path,
    *,
    settings: Settings | None = None,
    filters: Filters | None = None,
    warehouse: str = "",
    only: Sequence[str] | None = None,
) -> ReportResult:
    """Read every section (or those named in `only`) and render the report into `out_dir`
    (`ReportError` when the warehouse has nothing to report)."""
    _make_folder(out_dir)  # before the reading: a wrong --out is told at once
    sections = read_all(engine, filters or Filters(), settings or Settings(), only)
    try:
        return _render(engine, out_dir, sections, warehouse)
    except OSError as exc:  # a full disk, a folder removed or locked meanwhile
        raise ReportError(f"cannot write the report into {out_dir}: {exc.strerror or exc}") from exc


def _make_folder(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file of that name, a file above it, no permission
        reason = "a file of that name is in the way" if out_dir.is_file() else exc.strerror
        raise ReportError(f"cannot write the report into {out_dir}: {reason}") from None
    # An existing folder may still refuse files (read-only, no permission): try the report's
    # working file now rather than after reading every section.
    probe = out_dir / f".{REPORT_FILE}.partial"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ReportError(
            f"cannot write the report into {out_dir}: {exc.strerror or exc}"
        ) from None


def _render(engine: Engine, out_dir: Path, sections: Sections, warehouse: str) -> ReportResult:
    blocks = {
        name: RENDERERS[name](sections, out_dir)
        for name in SECTIONS
        if getattr(sections, name) is not None
    }
    classic = [(q, a) for q, a in classic_questions(sections) if a is not None]
    o = sections.overview
    env = Environment(
        loader=PackageLoader("productlens.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    html = env.get_template("report.html.j2").render(
        # The overview's period, how far its last day goes when partial, whose days.
        period="" if o is None else f"{o.period} · {o.days}",
        engine=engine.name,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        warehouse=warehouse,
        titles={name: spec.title for name, spec in SECTIONS.items()},
        sections=blocks,
        classic=classic,
    )
    path = out_dir / REPORT_FILE
    # Written beside and renamed: a report stopped midway leaves the last whole one.
    tmp = path.with_name(f".{REPORT_FILE}.partial")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    pngs = [b.chart.png for bs in blocks.values() for b in bs if b.chart is not None]
    drawn = {png.name for png in pngs}
    for name in CHART_NAMES:  # an earlier report's chart this one does not have
        if f"{name}.png" not in drawn:
            (out_dir / f"{name}.png").unlink(missing_ok=True)
    return ReportResult(html=path, pngs=pngs, sections=sections, blocks=blocks)
