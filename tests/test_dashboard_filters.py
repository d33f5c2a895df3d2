"""The dashboard's global filters reach every page that honours them, through its caches:
a device chosen after a page was read unfiltered changes that page's numbers to the
warehouse's for the device (the cache key holds the filters), and the caches' version
moves with the run log."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from productlens.app import open_engine
from productlens.config import load_project
from productlens.dashboard import data
from productlens.dashboard.app import _range
from productlens.dashboard.warehouse import FilterOptions
from productlens.engines import DuckDBEngine
from productlens.metrics.funnel import funnel
from productlens.ops import RUN_EVENTS, RUN_LOG, RUN_LOG_COLUMNS, ensure_run_log, insert_rows
from productlens.report.sections import Filters, Settings
from tests.conftest import open_readonly, q
from tests.funnel_reference import reference_funnel
from tests.test_dashboard import app_for, count, metrics, one, open_page

DEVICE = "mobile"
STEPS = ["page_view", "product_view", "add_to_cart", "checkout_start", "purchase"]


@pytest.fixture
def warehouse(demo_project: Path) -> Iterator[DuckDBEngine]:
    engine = open_readonly(demo_project)
    yield engine
    engine.close()


def test_a_device_chosen_later_reaches_every_event_page(
    demo_project: Path, warehouse: DuckDBEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = warehouse.fetch_arrow(
        q("select * from core.fct_events where device = ?", DEVICE)
    ).to_pylist()
    expected = [
        s["count"] for s in reference_funnel(rows, STEPS, window=timedelta(days=1))["steps"]
    ]
    at = app_for(demo_project, monkeypatch)
    # Every page read once without a filter: their results are in the caches.
    for slug in ("funnel", "overview", "engagement"):
        open_page(at, slug)
    at.sidebar.multiselect(key="devices").set_value([DEVICE]).run()

    # Funnel page: the live funnel over the device's events only.
    shown = metrics(open_page(at, "funnel"))
    assert shown["entered (page_view)"] == count(expected[0])
    assert shown["reached purchase"] == count(expected[-1])

    # Overview: the funnel insight is the device's funnel.
    at = open_page(at, "overview")
    said = f"{expected[-1]:,} of {expected[0]:,} users who did page_view reached purchase"
    assert any(said in m.value for m in at.markdown), [m.value for m in at.markdown]

    # Engagement: DAU of the device's last day.
    last = one(warehouse, "select max(event_date) from core.fct_events where device = ?", DEVICE)
    dau = one(
        warehouse,
        "select count(distinct user_id) from core.fct_events where device = ? and event_date = ?",
        DEVICE,
        last,
    )
    assert metrics(open_page(at, "engagement"))[f"DAU on {last}"] == count(dau)


def test_the_caches_version_moves_with_the_run_log(engine: DuckDBEngine) -> None:
    ensure_run_log(engine)
    before = data.version(engine)
    step = ("r1", "build", "core.fct_events", datetime(2026, 1, 1), None, None, "running", None)
    engine.execute(insert_rows(RUN_EVENTS, RUN_LOG_COLUMNS, [step]))
    after_start = data.version(engine)
    done = (*step[:4], datetime(2026, 1, 1, 0, 1), 10, "success", None)
    engine.execute(insert_rows(RUN_EVENTS, RUN_LOG_COLUMNS, [done]))
    after_end = data.version(engine)
    assert len({before, after_start, after_end}) == 3


def test_a_warehouse_without_a_run_log_still_opens(
    demo_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built by another tool (or its ops schema cleaned): no run log, no traceback; the
    sidebar says the last build is unknown."""
    copy = tmp_path / "copied"
    shutil.copytree(demo_project, copy, ignore=shutil.ignore_patterns("*.tmp"))
    engine = open_engine(load_project(copy))
    engine.drop(*RUN_LOG)
    engine.drop(*RUN_EVENTS)
    engine.close()
    at = open_page(app_for(copy, monkeypatch), "overview")
    assert any("last build unknown" in c.value for c in at.sidebar.caption)


@pytest.mark.parametrize("by", [None, "device"])
def test_the_funnel_page_reads_the_funnel_section_only_where_it_is_the_same_query(
    demo_project: Path, warehouse: DuckDBEngine, by: str | None
) -> None:
    """The project's funnel on the funnel page is the funnel section's (read once with the
    overview): step by step and device by device the live query's numbers; any other
    question (another order or window, a device filter) is not sent there."""
    settings = Settings.from_config(load_project(demo_project).config)
    assert settings.funnel_steps == tuple(STEPS)
    window_s = int(settings.funnel_window.total_seconds())
    ask = data.FunnelAsk(tuple(STEPS), window_s, "ordered", by)
    assert data.section_funnel(ask, Filters(), settings)
    source = data.Source(warehouse, f"test:{demo_project}", "shared funnel")
    shared = data.live_funnel(source, ask, Filters(), settings)
    live = funnel(
        warehouse, STEPS, scope=Filters().scope(settings), window=settings.funnel_window, by=by
    )
    assert shared.steps == live.steps
    assert shared.breakdown == live.breakdown
    assert bool(shared.breakdown) == (by is not None)
    assert not data.section_funnel(ask, Filters(devices=(DEVICE,)), settings)
    assert not data.section_funnel(replace(ask, order="strict"), Filters(), settings)
    assert not data.section_funnel(replace(ask, window_s=window_s + 1), Filters(), settings)
    assert not data.section_funnel(replace(ask, by="country"), Filters(), settings)


def test_a_chosen_range_keeps_the_data_s_own_first_and_last_day() -> None:
    """Left open, the first day would be closed by a device's own first day (the reader
    closes open ends by the filtered events), not the day the reader chose."""
    first, last = date(2026, 1, 1), date(2026, 1, 14)
    options = FilterOptions(first, last, ("mobile", "web"), ("DE",))
    middle = date(2026, 1, 9)
    cases = [
        ((first, last), (None, None)),  # all the data: the readers' defaults
        ((first, middle), (first, middle)),
        ((middle, last), (middle, last)),
        ((middle,), (middle, middle)),  # one day picked so far
        ((), (None, None)),
        (middle, (middle, middle)),
    ]
    for chosen, expected in cases:
        assert _range(chosen, options) == expected, chosen
