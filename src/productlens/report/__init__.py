"""The HTML report: one self-contained file (charts inline as SVG) plus a PNG per chart.

It reads marts (and core counts) through the engine only, never raw files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlglot
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlglot import exp

from productlens import __version__
from productlens.engines import Engine
from productlens.engines.base import SOURCE_DIALECT
from productlens.errors import ReportError
from productlens.report import charts

REPORT_FILE = "report.html"


@dataclass(frozen=True)
class ReportResult:
    html: Path
    pngs: list[Path]


# The report's queries, fixed text (no values) in the source dialect, parsed once per run.
STEPS = """
SELECT step_no, step_name, sum(n_users) FROM marts.funnel_daily_metrics
GROUP BY step_no, step_name ORDER BY step_no
"""
DAILY = """
SELECT event_date,
    max(CASE WHEN step_no = (SELECT max(step_no) FROM marts.funnel_daily_metrics)
        THEN conversion_from_start END)
FROM marts.funnel_daily_metrics GROUP BY event_date ORDER BY event_date
"""
TOTALS = """
SELECT count(DISTINCT user_id), count(*), min(event_date), max(event_date) FROM core.fct_events
"""


def _query(sql: str) -> exp.Query:
    parsed = sqlglot.parse_one(sql, read=SOURCE_DIALECT)
    assert isinstance(parsed, exp.Query)
    return parsed


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def write_report(engine: Engine, out_dir: Path, *, warehouse: str = "") -> ReportResult:
    """Render the report from the marts into `out_dir`."""
    if engine.table_kind("marts", "funnel_daily_metrics") is None:
        raise ReportError("the marts are not built yet: run `productlens build` first")
    out_dir.mkdir(parents=True, exist_ok=True)

    steps = engine.fetch_all(_query(STEPS))
    if not steps:
        raise ReportError("marts.funnel_daily_metrics is empty: nothing to report")
    daily = engine.fetch_all(_query(DAILY))
    n_users, n_events, first_day, last_day = engine.fetch_all(_query(TOTALS))[0]

    names = [str(s[1]) for s in steps]
    users = [int(s[2]) for s in steps]
    funnel = []
    for i, (name, n) in enumerate(zip(names, users, strict=True)):
        previous = users[i - 1] if i else None
        funnel.append(
            {
                "step": name,
                "users": n,
                "from_previous": _pct(n / previous if previous else None),
                "from_start": _pct(n / users[0] if users[0] else None),
            }
        )
    drops = [
        (1 - users[i] / users[i - 1], names[i - 1], names[i])
        for i in range(1, len(users))
        if users[i - 1]
    ]
    insights = [
        f"{users[-1]:,} of {users[0]:,} user-days that began the funnel reached "
        f"{names[-1]} ({_pct(users[-1] / users[0] if users[0] else None)})."
    ]
    if drops:
        loss, src, dst = max(drops)
        insights.append(
            f"The biggest drop-off is from {src} to {dst}: {loss:.1%} of user-days stop there."
        )
    rates = [float(r) for _, r in daily if r is not None]
    if len(rates) >= 14:
        first_week, last_week = sum(rates[:7]) / 7, sum(rates[-7:]) / 7
        direction = "up" if last_week > first_week else "down"
        insights.append(
            f"Daily conversion went {direction} from {first_week:.1%} in the first week "
            f"to {last_week:.1%} in the last."
        )

    rendered = [
        charts.funnel_bars(names, users, out_dir),
        charts.conversion_trend([d for d, _ in daily], [r for _, r in daily], out_dir),
    ]
    env = Environment(
        loader=PackageLoader("productlens.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    html = env.get_template("report.html.j2").render(
        period=f"{first_day} to {last_day}",
        engine=engine.name,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        warehouse=warehouse,
        kpis=[
            {"label": "users", "value": f"{n_users:,}"},
            {"label": "events", "value": f"{n_events:,}"},
            {"label": f"reached {names[-1]}", "value": f"{users[-1]:,}"},
            {"label": "conversion", "value": _pct(users[-1] / users[0] if users[0] else None)},
        ],
        insights=insights,
        charts=rendered,
        funnel=funnel,
    )
    path = out_dir / REPORT_FILE
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return ReportResult(html=path, pngs=[c.png for c in rendered])
