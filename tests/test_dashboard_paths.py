"""Dashboard paths the demo worlds do not take: a shop's orders without events, filters
that select nothing, a sample-ratio mismatch, quarantined rows, and a PostgreSQL
warehouse. Every number is read back from the warehouse the app shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from productlens.dashboard.pages import PAGES
from tests.conftest import open_readonly, run_cli
from tests.test_dashboard import app_for, count, frame, metrics, one, open_page

NO_EVENTS = "The warehouse has no events for these filters."


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
