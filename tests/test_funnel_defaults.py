"""Which steps the report's and the dashboard's funnel use when the configured steps are
not all in the events (an events-only project of another vocabulary showed "conversion to
purchase" with no number; the dashboard's funnel page started on one step)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from productlens.config import load_project
from productlens.report import _funnel
from productlens.report.sections import (
    FunnelSteps,
    Sections,
    Settings,
    choose_funnel_steps,
    event_types,
    read_funnel,
    read_overview,
)
from tests.conftest import open_readonly, q
from tests.test_dashboard import app_for, open_page

FREQUENT = ("page_view", "product_view", "add_to_cart", "purchase")  # most frequent first


@pytest.mark.parametrize(
    ("configured", "steps", "missing"),
    [
        # All there: the configured steps, as configured.
        (("page_view", "purchase"), ("page_view", "purchase"), ()),
        # Some missing: the configured ones that exist, in their order.
        (("page_view", "signup", "purchase"), ("page_view", "purchase"), ("signup",)),
        # Fewer than two exist: the three most frequent event types.
        (("login", "upgrade"), FREQUENT[:3], ("login", "upgrade")),
        (("page_view", "upgrade"), FREQUENT[:3], ("upgrade",)),
        # Nothing configured: the most frequent.
        ((), FREQUENT[:3], ()),
    ],
)
def test_the_funnel_steps_chosen(
    configured: tuple[str, ...], steps: tuple[str, ...], missing: tuple[str, ...]
) -> None:
    assert choose_funnel_steps(configured, FREQUENT) == FunnelSteps(steps, missing)


def test_events_of_one_type_make_no_funnel() -> None:
    chosen = choose_funnel_steps(("login", "upgrade"), ("login",))
    assert chosen == FunnelSteps((), ("upgrade",))
    assert chosen.note() == "The configured funnel steps upgrade are not in the events."


def test_missing_steps_fall_back_to_the_most_frequent_and_say_so(
    demo_project: Path, tmp_path: Path
) -> None:
    """Configured steps the demo's events never have: the funnel and the overview's
    conversion use the three most frequent event types (counted here independently), and
    the report's funnel block says the configured steps are missing."""
    settings = replace(
        Settings.from_config(load_project(demo_project).config), funnel_steps=("login", "upgrade")
    )
    engine = open_readonly(demo_project)
    try:
        counted = engine.fetch_all(
            q(
                "select event_type from core.fct_events group by event_type "
                "order by count(*) desc, event_type limit 3"
            )
        )
        assert event_types(engine)[:3] == tuple(r[0] for r in counted)
        expected = tuple(r[0] for r in counted)
        section = read_funnel(engine, settings=settings)
        overview = read_overview(engine, settings=settings)
    finally:
        engine.close()
    assert section is not None
    assert tuple(s.event for s in section.steps) == expected
    assert section.steps[-1].count > 0
    assert section.note == (
        "The configured funnel steps login, upgrade are not in the events: the funnel shows "
        f"{' > '.join(expected)} instead (set [metrics] funnel_steps in productlens.toml)."
    )
    assert overview is not None
    conversion = overview.kpi("conversion")
    assert conversion is not None
    assert conversion.label == f"conversion to {expected[-1]}"
    assert conversion.current is not None  # it showed "-" for a step nobody did
    blocks = _funnel(Sections(None, section, None, None, None, None, None, None), tmp_path)
    assert blocks[0].insights[0].text == section.note


def test_the_dashboard_funnel_starts_on_the_same_steps_and_says_why(
    demo_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The funnel page started on the configured steps the data has, else on the first
    three event types; one step left it at "choose at least two steps", and nothing said
    the configured steps were missing. It starts where the report does and says so."""
    copy = tmp_path / "copied"
    shutil.copytree(demo_project, copy, ignore=shutil.ignore_patterns("*.tmp"))
    assert not (copy / "productlens.toml").exists()
    (copy / "productlens.toml").write_text('[metrics]\nfunnel_steps = ["page_view", "upgrade"]\n')
    engine = open_readonly(copy)
    try:
        expected = event_types(engine)[:3]
    finally:
        engine.close()
    at = open_page(app_for(copy, monkeypatch), "funnel")
    assert at.multiselect(key="funnel_steps").value == list(expected)
    assert at.info[0].value == (
        "The configured funnel steps upgrade are not in the events: the funnel shows "
        f"{' > '.join(expected)} instead (set [metrics] funnel_steps in productlens.toml)."
    )
