"""One meaning of "a day" in the report and the dashboard: a calendar day in the project's
`[metrics] timezone`, the days the metrics count. Hand-built warehouses in
America/Los_Angeles whose events sit where a UTC day and a local day disagree (the
evening in Los Angeles is the next UTC day): the overview's KPIs, its default period, the
daily tables and the dashboard's figures equal the metrics API's (activity, funnel,
revenue) and a brute force over the same local days; a last day cut short says how far
the data go ("data until"), a last day that ran to its end says nothing."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from productlens.dashboard import ENTRY
from productlens.engines import DuckDBEngine
from productlens.metrics import revenue as revenue_metrics
from productlens.metrics.activity import activity
from productlens.metrics.funnel import funnel
from productlens.report import write_report
from productlens.report.sections import (
    DataEnd,
    Filters,
    Settings,
    read_overview,
    read_retention,
    read_revenue,
    read_usage,
)
from tests.conftest import q
from tests.metrics_events import Event, load, local_date

LA = "America/Los_Angeles"
STEPS = ("page_view", "purchase")
SETTINGS = Settings(
    funnel_steps=STEPS, timezone=LA, usage_events=("page_view",), retention_start="page_view"
)
# June: Los Angeles is UTC-7; a local day runs from 07:00 UTC to 07:00 UTC the next day.
D1, D2, D3 = date(2026, 6, 8), date(2026, 6, 9), date(2026, 6, 10)


def utc(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 6, day, hour, minute, second)


# (user, event type, UTC time); the comment is the local day and time.
EVENTS = [
    ("u1", "page_view", utc(8, 15)),  # D1 08:00
    ("u1", "purchase", utc(8, 16)),  # D1 09:00
    ("u2", "page_view", utc(9, 3)),  # D1 20:00, UTC day D2
    ("u2", "purchase", utc(9, 4)),  # D1 21:00, UTC day D2
    ("u3", "page_view", utc(9, 18)),  # D2 11:00
    ("u4", "page_view", utc(10, 5)),  # D2 22:00, UTC day D3
    ("u4", "purchase", utc(10, 5, 30)),  # D2 22:30, UTC day D3
    ("u5", "page_view", utc(10, 6, 30)),  # D2 23:30, UTC day D3
    ("u1", "page_view", utc(10, 16)),  # D3 09:00
    ("u6", "page_view", utc(10, 23, 10)),  # D3 16:10
    ("u6", "purchase", utc(10, 23, 40)),  # D3 16:40
]
CUT = utc(11, 1)  # D3 18:00 local, UTC day 2026-06-11: the export stops here
WHOLE = utc(11, 6, 59, 30)  # D3 23:59:30 local: the day ran to its end
# (order, user, UTC time, status, amount)
ORDERS = [
    ("o1", "u1", utc(8, 16), "completed", 10.0),  # D1
    ("o2", "u2", utc(9, 4), "completed", 25.0),  # D1, UTC day D2
    ("o3", "u4", utc(10, 5, 30), "completed", 40.0),  # D2, UTC day D3
    ("o4", "u4", utc(10, 6), "cancelled", 99.0),  # D2, UTC day D3
    ("o5", "u6", utc(10, 23, 40), "completed", 7.5),  # D3
]
SIGNUPS = [("u1", utc(8, 14)), ("u2", utc(9, 2)), ("u4", utc(10, 4)), ("u6", utc(10, 23))]


def build(path: Path, last: datetime) -> None:
    """A warehouse of the events above plus one at `last` (u3, a page view), the users'
    signups, the orders (`core.int_order_revenue`) and the UTC `marts.daily_sales`."""
    engine = DuckDBEngine(path)
    try:
        events = [Event(u, t, ts, device="web") for u, t, ts in EVENTS]
        load(engine, [*events, Event("u3", "page_view", last, device="web")])
        engine.execute(q("CREATE SCHEMA IF NOT EXISTS marts"))
        engine.execute(
            q(
                "CREATE TABLE core.dim_users (user_id VARCHAR, signup_ts TIMESTAMP, "
                "is_current BOOLEAN, device VARCHAR, country VARCHAR)"
            )
        )
        for user, at in SIGNUPS:
            engine.execute(
                q("INSERT INTO core.dim_users VALUES (?, ?, true, 'web', 'US')", user, at)
            )
        engine.execute(
            q(
                "CREATE TABLE core.int_order_revenue (order_id VARCHAR, user_id VARCHAR, "
                "order_ts TIMESTAMP, order_date DATE, status VARCHAR, is_kept BOOLEAN, "
                "is_recognized BOOLEAN, net_revenue DOUBLE)"
            )
        )
        for order, user, at, status, amount in ORDERS:
            engine.execute(
                q(
                    "INSERT INTO core.int_order_revenue VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    order,
                    user,
                    at,
                    at.date(),
                    status,
                    status != "cancelled",
                    status == "completed",
                    amount if status == "completed" else 0.0,
                )
            )
        # The mart as the model builds it: one row per UTC day of the calendar.
        engine.execute(
            q(
                "CREATE TABLE marts.daily_sales AS "
                "SELECT d::DATE AS sales_date, "
                "coalesce(sum(net_revenue), 0) AS net_revenue, "
                "count(CASE WHEN is_kept THEN 1 END) AS n_orders "
                "FROM range(DATE '2026-06-08', DATE '2026-06-12', INTERVAL 1 DAY) AS t (d) "
                "LEFT JOIN core.int_order_revenue ON order_date = d::DATE "
                "GROUP BY d ORDER BY d"
            )
        )
    finally:
        engine.close()


@pytest.fixture(scope="module")
def cut(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBEngine]:
    path = tmp_path_factory.mktemp("cut") / "warehouse.duckdb"
    build(path, CUT)
    engine = DuckDBEngine(path, read_only=True)
    yield engine
    engine.close()


def all_events(last: datetime) -> list[tuple[str, str, datetime]]:
    return [*EVENTS, ("u3", "page_view", last)]


def on(day: date, last: datetime = CUT) -> list[tuple[str, str, datetime]]:
    """The events of a local day, by brute force."""
    return [e for e in all_events(last) if local_date(e[2], LA) == day]


def dau(engine: DuckDBEngine, day: date) -> int:
    """The metrics API's daily active users of a local day."""
    (got,) = activity(engine, Filters(day, day).scope(SETTINGS)).total.days
    assert got.date == day.isoformat()
    return got.dau


def conversion(engine: DuckDBEngine, day: date) -> float | None:
    result = funnel(engine, STEPS, scope=Filters(day, day).scope(SETTINGS))
    return result.steps[-1].conversion_from_start


def net_revenue(engine: DuckDBEngine, first: date, last: date) -> float:
    """The metrics API's net revenue over local days (its concentration's total; none
    without a buyer)."""
    got = revenue_metrics.revenue(engine, Filters(first, last).scope(SETTINGS)).concentration
    return 0.0 if got is None else got.net_revenue


# --- the report's readers ---------------------------------------------------------------------


def test_the_overview_counts_the_project_s_days(cut: DuckDBEngine) -> None:
    """The default period is the data's last local day (three local days: the last one
    against the one before), though the events touch four UTC days; every KPI counts the
    same local days as the metrics API."""
    o = read_overview(cut, Filters(), SETTINGS)
    assert o is not None
    assert (o.previous_start, o.previous_end, o.start, o.end) == (D2, D2, D3, D3)
    # A chosen day whose evening is the next UTC day: u2 is active on D1 in Los Angeles.
    chosen = read_overview(cut, Filters(D1, D1), SETTINGS)
    assert chosen is not None
    for got in (o, chosen):
        periods = ((got.start, 0), (got.previous_start, 1))
        for day, k in periods:
            kpis = {x.key: (x.current, x.previous)[k] for x in got.kpis}
            assert kpis["active_users"] == dau(cut, day) == len({e[0] for e in on(day)}), day
            assert kpis["events"] == len(on(day)), day
            assert kpis["conversion"] == pytest.approx(conversion(cut, day)), day
            signed = sum(local_date(at, LA) == day for _, at in SIGNUPS)
            assert kpis["signups"] == signed, day
            assert kpis["net_revenue"] == pytest.approx(net_revenue(cut, day, day)), day
            kept = sum(local_date(o[2], LA) == day and o[3] != "cancelled" for o in ORDERS)
            assert kpis["orders"] == kept, day
    assert {x.key: x.current for x in chosen.kpis}["active_users"] == 2  # u1 and u2


def test_the_daily_tables_are_local_days(cut: DuckDBEngine) -> None:
    """Usage per day, new and returning users, DAU and net revenue per day: one row per
    local day, the metrics API's numbers (a brute force where it has none)."""
    usage = read_usage(cut, Filters(), SETTINGS)
    assert usage is not None
    views = Counter(local_date(ts, LA) for _, t, ts in all_events(CUT) if t == "page_view")
    assert {r["day"]: r["n_events"] for r in usage.events.to_pylist()} == views
    firsts: dict[str, date] = {}
    for user, _, ts in sorted(all_events(CUT), key=lambda e: e[2]):
        firsts.setdefault(user, local_date(ts, LA))
    expected = {
        day: (
            sum(firsts[u] == day for u in {e[0] for e in on(day)}),
            sum(firsts[u] < day for u in {e[0] for e in on(day)}),
        )
        for day in (D1, D2, D3)
    }
    got = {
        r["day"]: (r["new_users"], r["returning_users"]) for r in usage.new_vs_returning.to_pylist()
    }
    assert got == expected
    retention = read_retention(cut, Filters(), SETTINGS)
    assert retention is not None
    days = retention.activity.to_pylist()
    assert [(r["day"], r["dau"]) for r in days] == [(d, dau(cut, d)) for d in (D1, D2, D3)]
    revenue = read_revenue(cut, Filters(), SETTINGS)
    assert revenue is not None
    assert revenue.daily is not None
    daily = {r["day"]: (r["net_revenue"], r["n_orders"]) for r in revenue.daily.to_pylist()}
    # The data's local days (the mart lists the UTC days 2026-06-08 to 2026-06-11).
    assert list(daily) == [D1, D2, D3]
    for day in (D1, D2, D3):
        kept = sum(local_date(o[2], LA) == day and o[3] != "cancelled" for o in ORDERS)
        assert daily[day] == (pytest.approx(net_revenue(cut, day, day)), kept), day
    assert daily[D1][0] == 35.0  # o1 and o2: o2 is on the next UTC day
    one = read_revenue(cut, Filters(D2, D2), SETTINGS)
    assert one is not None
    assert one.daily is not None
    assert one.daily.to_pylist() == [
        {"day": D2, "net_revenue": 40.0, "n_orders": 1}
    ]  # o4 cancelled


# --- where the data end -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "day", "partial"),
    [
        (CUT, D3, True),  # 18:00: the day is cut short
        (WHOLE, D3, False),  # 23:59:30: its last minute
        (utc(11, 6, 58, 59), D3, True),  # 23:58:59: a minute and more before its end
        (CUT, D2, False),  # the data run past D2
        (CUT, D3 + timedelta(days=1), True),  # a day after the data: empty
    ],
)
def test_a_day_is_partial_when_the_data_end_before_it(
    last: datetime, day: date, partial: bool
) -> None:
    assert DataEnd(last, LA).cuts(day) is partial
    assert DataEnd(last, LA).partial_day([D1, day]) == (day if partial else None)


def test_data_until_only_when_the_last_day_is_partial(cut: DuckDBEngine, tmp_path: Path) -> None:
    o = read_overview(cut, Filters(), SETTINGS)
    assert o is not None
    assert o.data_until == CUT
    assert o.period == f"{D3} to {D3} (data until 18:00 {LA})"
    assert o.days == f"{LA} days"
    # The period ends before the data do: whole days, nothing to say.
    earlier = read_overview(cut, Filters(D1, D2), SETTINGS)
    assert earlier is not None
    assert (earlier.data_until, earlier.period) == (None, f"{D1} to {D2}")
    whole = tmp_path / "whole.duckdb"
    build(whole, WHOLE)
    engine = DuckDBEngine(whole, read_only=True)
    try:
        o = read_overview(engine, Filters(), SETTINGS)
        assert o is not None
        assert (o.end, o.data_until, o.period) == (D3, None, f"{D3} to {D3}")
    finally:
        engine.close()


def test_the_report_says_how_far_a_partial_last_day_goes(cut: DuckDBEngine, tmp_path: Path) -> None:
    """The header names the period, how far its last day goes and whose days they are;
    the daily charts ending on the partial day say so under themselves. A complete last
    day: neither."""
    only = ("overview", "funnel", "retention", "usage", "revenue")
    result = write_report(cut, tmp_path / "cut", settings=SETTINGS, only=only)
    html = result.html.read_text()
    until = f"data until 18:00 {LA}"
    assert f"{D3} to {D3} ({until}) · {LA} days · engine" in html
    note = f"{D3} is a partial day ({until})."
    titles = [b.title for bs in result.blocks.values() for b in bs if b.note == note]
    assert titles == [
        "Daily conversion",
        "Active users",
        "Revenue over time",
        "Usage events",
        "New and returning users",
    ]
    assert html.count(note) == len(titles)
    whole = tmp_path / "whole.duckdb"
    build(whole, WHOLE)
    engine = DuckDBEngine(whole, read_only=True)
    try:
        html = write_report(
            engine, tmp_path / "whole", settings=SETTINGS, only=("overview", "usage")
        ).html
        text = html.read_text()
    finally:
        engine.close()
    assert f"{D3} to {D3} · {LA} days · engine" in text
    assert "data until" not in text
    assert "partial day" not in text


# --- the dashboard ----------------------------------------------------------------------------


def project(root: Path, last: datetime) -> Path:
    root.mkdir()
    (root / "productlens.toml").write_text(
        f'[metrics]\ntimezone = "{LA}"\nfunnel_steps = {json.dumps(list(STEPS))}\n'
        'retention_start = "page_view"\n'  # the warehouse has no staging.stg_users
    )
    build(root / "warehouse.duckdb", last)
    return root


def overview(root: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setattr(sys, "argv", [str(ENTRY), "--project", str(root)])
    at = AppTest.from_file(str(ENTRY), default_timeout=180)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def traces(at: AppTest, title: str) -> list[dict[str, Any]]:
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if spec["layout"]["title"]["text"] == title:
            found: list[dict[str, Any]] = spec["data"]
            return found
    raise AssertionError(f"no chart {title!r}")


def test_the_dashboard_overview_uses_the_project_s_days(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut: DuckDBEngine
) -> None:
    at = overview(project(tmp_path / "cut", CUT), monkeypatch)
    dates = at.sidebar.date_input(key="dates")
    assert dates.label == f"Dates ({LA} days)"
    assert dates.value == (D1, D3)
    assert at.caption[0].value == (
        f"{D3} to {D3} (data until 18:00 {LA}), against {D2} to {D2} ({LA} days)"
    )
    shown = {m.label: m.value for m in at.metric}
    assert shown["active users"] == f"{dau(cut, D3):,}"
    assert shown["events"] == f"{len(on(D3)):,}"
    assert shown["conversion to purchase"] == f"{conversion(cut, D3):.1%}"
    assert shown["net revenue"] == f"{net_revenue(cut, D3, D3):,.2f}"
    lines = traces(at, "Daily conversion (by day of entry)")
    assert [t["name"] for t in lines] == ["conversion", "conversion (partial day)"]
    assert lines[1]["line"]["dash"] == "dash"
    assert f"{D3} is a partial day (data until 18:00 {LA})." in [c.value for c in at.caption]
    # A chosen day: its KPIs are the local day's.
    dates.set_value((D1, D1)).run()
    shown = {m.label: m.value for m in at.metric}
    assert shown["active users"] == f"{dau(cut, D1):,}" == "2"
    assert shown["net revenue"] == f"{net_revenue(cut, D1, D1):,.2f}" == "35.00"
    # All the days again: the engagement and revenue pages' daily lines end dashed.
    dates.set_value((D1, D3)).run()
    note = f"{D3} is a partial day (data until 18:00 {LA})."
    for slug, title, names in (
        ("engagement", "Active users", ["DAU", "WAU", "MAU"]),
        ("revenue", "Net revenue per day", ["net revenue"]),
    ):
        at.sidebar.radio(key="page").set_value(slug).run()
        assert not at.exception, [e.value for e in at.exception]
        got = traces(at, title)
        assert [t["name"] for t in got] == [
            n for name in names for n in (name, f"{name} (partial day)")
        ]
        assert [t["x"][-1] for t in got] == [str(D2), str(D3)] * len(names), slug
        assert note in [c.value for c in at.caption], slug


def test_the_dashboard_says_nothing_of_a_complete_last_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = overview(project(tmp_path / "whole", WHOLE), monkeypatch)
    assert at.caption[0].value == f"{D3} to {D3}, against {D2} to {D2} ({LA} days)"
    lines = traces(at, "Daily conversion (by day of entry)")
    assert [t["name"] for t in lines] == ["conversion"]
    assert not [c.value for c in at.caption if "partial" in c.value]
