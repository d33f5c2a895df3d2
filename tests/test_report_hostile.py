"""The report and the warehouse's vocabulary as a new user meets them: a later command on a
demo warehouse reads the demo's world, whatever names the data holds is escaped, and an
interrupted or refused write leaves no half report behind."""

from __future__ import annotations

import html
import re
import shutil
import warnings
from pathlib import Path

import duckdb
import pytest
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font
from playwright.sync_api import sync_playwright
from rich.console import Console

from productlens.app import open_engine
from productlens.config import DEFAULT_FUNNELS, load_project
from productlens.engines.duckdb import DuckDBEngine
from productlens.errors import ReportError
from productlens.experiments.metric_defs import DEFAULT_METRICS
from productlens.pipeline import Runner
from productlens.report import charts, write_report
from productlens.report.sections import Filters, Settings, read_funnel
from tests.conftest import q, run_cli
from tests.test_dashboard_browser import CHROMIUM, CHROMIUM_FLAGS


def test_a_later_command_on_a_saas_demo_reads_the_saas_world(saas_demo_project: Path) -> None:
    """`demo --scenario saas` leaves the project file silent: the warehouse's demo world
    decides the funnel steps and experiment metrics of a later report or dashboard."""
    project = load_project(saas_demo_project)
    engine = open_engine(project, read_only=True)
    try:
        assert project.config.funnel_steps() == DEFAULT_FUNNELS["saas"]
        assert project.config.experiment_metrics() == DEFAULT_METRICS["saas"]
        section = read_funnel(engine, Filters(), Settings.from_config(project.config))
        assert section is not None
        mart = [
            r[1]
            for r in engine.fetch_all(
                q("select distinct step_no, step_name from marts.funnel_daily_metrics order by 1")
            )
        ]
        assert [s.event for s in section.steps] == mart == list(DEFAULT_FUNNELS["saas"])
    finally:
        engine.close()


def test_a_project_file_that_names_the_world_wins(saas_demo_project: Path, tmp_path: Path) -> None:
    warehouse = (saas_demo_project / "warehouse.duckdb").as_posix()
    (tmp_path / "productlens.toml").write_text(
        f'[warehouse]\npath = "{warehouse}"\n\n[simulate]\nscenario = "ecommerce"\n'
    )
    project = load_project(tmp_path)
    open_engine(project, read_only=True).close()
    assert project.config.funnel_steps() == DEFAULT_FUNNELS["ecommerce"]


def test_a_rebuild_of_a_saas_demo_keeps_the_saas_funnel(
    saas_demo_project: Path, tmp_path: Path
) -> None:
    """`productlens build` after `demo --scenario saas` rebuilt the funnel marts with the
    e-commerce steps: empty marts."""
    root = tmp_path / "copy"
    shutil.copytree(saas_demo_project, root, ignore=shutil.ignore_patterns("data", "reports"))
    project = load_project(root)
    engine = open_engine(project)
    try:
        runner = Runner(project, engine, Console(quiet=True))
        runner.build(["funnel_daily_metrics", "device_metrics"])
        for sql in (
            "select distinct step_no, step_name from marts.funnel_daily_metrics order by 1",
            "select distinct step_no, step_name from marts.device_metrics order by 1",
        ):
            steps = [s for _, s in engine.fetch_all(q(sql))]
            assert steps == list(DEFAULT_FUNNELS["saas"]), sql
        runner.close()
    finally:
        engine.close()


@pytest.mark.parametrize("where", ["a_file", "a_file/below"])
def test_an_output_folder_that_cannot_be_made_is_a_clear_error_before_any_work(
    engine: DuckDBEngine, tmp_path: Path, where: str
) -> None:
    """`--out` naming a file (or a folder below one) was a FileExistsError traceback after
    the whole report had been read; now a ReportError naming the folder, at once (the
    empty warehouse would otherwise be the error)."""
    (tmp_path / "a_file").write_text("mine")
    with pytest.raises(ReportError, match=rf"cannot write the report into .*{where}: "):
        write_report(engine, tmp_path / where)
    assert (tmp_path / "a_file").read_text() == "mine"


def test_the_cli_says_so_in_one_line(tmp_path: Path) -> None:
    # A warehouse file (empty) so that the bad --out, not the missing warehouse, is told.
    duckdb.connect(str(tmp_path / "warehouse.duckdb")).close()
    (tmp_path / "a_file").write_text("mine")
    result = run_cli("--project", str(tmp_path), "report", "--out", str(tmp_path / "a_file"))
    assert result.returncode == 1
    assert "error [report]: cannot write the report into" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


LONG = "<script>alert(1)</script> & \"q\" 'x' 🚀 " + "L" * 300


def test_a_very_long_name_is_shortened_on_a_chart_only(tmp_path: Path) -> None:
    """A 300-character product name squeezed every bar into a sliver of the chart: chart
    labels are cut to LABEL_CHARS with an ellipsis (the insights and tables keep the
    whole name); the SVG text stays escaped."""
    names = [LONG, "short", LONG + "2"]
    chart = charts.bars("long", "Long names", names, [3.0, 2.0, 1.0], tmp_path)
    texts = [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", chart.svg)]
    cut = LONG.replace("🚀", charts.MISSING_GLYPH)[: charts.LABEL_CHARS - 1] + "…"
    assert texts.count(cut) == 2
    assert "short" in texts
    assert max(len(t) for t in texts) == charts.LABEL_CHARS
    assert "<script>" not in chart.svg
    forest = charts.forest("f", "F", [LONG], [0.1], [0.0], [0.2], tmp_path)
    assert cut in [html.unescape(t) for t in re.findall(r">([^<]*)</text>", forest.svg)]


def test_a_chart_draws_no_glyph_its_font_lacks(tmp_path: Path) -> None:
    """An emoji in a product name came out as a box in the PNG (DejaVu Sans has no glyph
    for it, and the warning saying so was silenced): chart labels now show `?` for a
    character the font lacks; what the font has (accents, ☕) is kept."""
    names = ["🚀 Rocket mug", "Café ☕", "日本茶"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chart = charts.bars("glyphs", "Glyphs", names, [3.0, 2.0, 1.0], tmp_path)
    assert not [w for w in caught if "missing from font" in str(w.message)]
    glyphs = FT2Font(font_manager.findfont(font_manager.FontProperties())).get_charmap()
    texts = [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", chart.svg)]
    assert {"? Rocket mug", "Café ☕", "???"} <= set(texts)
    assert [c for t in texts for c in t if ord(c) not in glyphs] == []


EVIL = "<script>alert(1)</script> & \"q\" 'x' 🚀 "


@pytest.mark.slow
def test_hostile_names_are_text_and_the_report_fetches_nothing_in_chromium(
    demo_project: Path, tmp_path: Path
) -> None:
    """Product, category and campaign names holding markup, quotes, `&` and emoji are shown
    as text (no script runs in Chromium), and the file opened from disk with the network
    off requests nothing but itself."""
    root = tmp_path / "copy"
    shutil.copytree(demo_project, root, ignore=shutil.ignore_patterns("data", "reports"))
    project = load_project(root)
    engine = open_engine(project)
    try:
        engine.execute(q("update marts.product_metrics set product_name = ? || product_name", EVIL))
        engine.execute(q("update marts.product_metrics set category = '<i>' || category || '&'"))
        engine.execute(
            q("update marts.campaign_attribution set campaign_name = ? || campaign_name", EVIL)
        )
        out = tmp_path / 'it\'s "a" report'
        result = write_report(engine, out, settings=Settings.from_config(project.config))
    finally:
        engine.close()
    text = result.html.read_text(encoding="utf-8")
    assert "<script" not in text
    assert "<i>" not in text
    shown = result.insights()
    assert shown["top_products"].text.startswith("Highest-margin products: " + EVIL)
    assert shown["campaign_roi"].text.count(EVIL) == 2

    requests: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            viewport = {"width": 1280, "height": 900}
            page = browser.new_context(offline=True, viewport=viewport).new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(result.html.as_uri())
            page.wait_for_load_state("networkidle")
            top = page.locator("li[data-insight=top_products]").inner_text()
            n_svg = page.locator(".chart svg").count()
            # The campaign and experiment tables (seven columns) stuck out of their section
            # on a laptop's screen: squeezed into the insights' column beside a chart.
            outside = page.evaluate(
                """() => [...document.querySelectorAll('section table')].filter(
                    t => t.getBoundingClientRect().right >
                        t.closest('section').getBoundingClientRect().right + 1
                ).map(t => t.closest('section').id)"""
            )
            sideways = page.evaluate(
                "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
        finally:
            browser.close()
    assert requests == [result.html.as_uri()]
    assert dialogs == []
    assert outside == []
    assert sideways <= 0
    assert top == shown["top_products"].text
    assert n_svg == len(result.pngs)


def test_a_warehouse_of_orders_without_events_gets_its_revenue_and_products(
    demo_project: Path, tmp_path: Path
) -> None:
    """A shop's order export alone (no events) was refused ("core.fct_events is empty");
    the sections that read orders, products and campaigns are reported, the event ones
    left out."""
    root = tmp_path / "copy"
    shutil.copytree(demo_project, root, ignore=shutil.ignore_patterns("data", "reports"))
    project = load_project(root)
    engine = open_engine(project)
    try:
        engine.execute(q("delete from core.fct_events"))
        result = write_report(
            engine, tmp_path / "out", settings=Settings.from_config(project.config)
        )
        margin = engine.fetch_all(
            q("select product_id, margin from marts.product_metrics order by margin desc limit 1")
        )[0]
    finally:
        engine.close()
    assert {"revenue", "products", "health"} <= set(result.blocks)
    assert not {"overview", "funnel", "retention", "usage"} & set(result.blocks)
    top = result.insights()["top_products"].values
    assert top["product_1"] == margin[0]
    assert top["margin_1"] == pytest.approx(margin[1])
