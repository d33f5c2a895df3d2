"""The report as a new user first runs it: in a folder with no warehouse (a mistyped
`--project`), into a folder an earlier report wrote, and with the report's own run in
the run log. Each case was found by running the commands by hand."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from matplotlib.figure import Figure

from productlens.config import load_project
from productlens.engines.duckdb import DuckDBEngine
from productlens.errors import ReportError
from productlens.report import CHART_NAMES, REPORT_FILE, charts, write_report
from productlens.report.sections import Filters, Settings, read_retention
from tests.conftest import open_readonly, q, run_cli


def test_a_folder_without_a_warehouse_is_told_and_left_untouched(tmp_path: Path) -> None:
    """`productlens -p typo report` made the folder, an empty warehouse.duckdb, reports/
    and run_results.json, then said the marts were not built: a mistyped project path
    became a project. It now names the missing warehouse and writes nothing."""
    typo = tmp_path / "typo"
    result = run_cli("--project", str(typo), "report")
    assert result.returncode == 1
    assert "error [warehouse]: there is no warehouse at" in result.stderr
    assert "warehouse.duckdb" in result.stderr
    assert "productlens demo" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not typo.exists()
    # An existing folder without a warehouse: nothing is added to it either.
    (tmp_path / "mine.txt").write_text("mine")
    result = run_cli("--project", str(tmp_path), "report", "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "there is no warehouse at" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_an_empty_warehouse_file_still_gets_the_build_first_error(tmp_path: Path) -> None:
    """A warehouse that exists but has no models is not "missing": the error says to build."""
    duckdb.connect(str(tmp_path / "warehouse.duckdb")).close()
    result = run_cli("--project", str(tmp_path), "report")
    assert result.returncode == 1
    assert "run `productlens build` first" in result.stderr


def test_a_chart_the_report_no_longer_draws_leaves_the_folder(
    demo_project: Path, tmp_path: Path
) -> None:
    """A second report into the same folder (another world, or data that lost a section)
    left the first one's PNGs beside it: revenue and product charts of a shop beside a SaaS
    report. The report removes its own charts it did not draw this time, nothing else."""
    # The demo's own report (written by `productlens demo`) is the earlier one.
    earlier = sorted((demo_project / "reports").glob("*.png"))
    for png in earlier:
        shutil.copy(png, tmp_path / png.name)
    (tmp_path / "notes.png").write_bytes(b"mine")  # the user's, beside the report
    (tmp_path / "mine.txt").write_text("mine")
    engine = open_readonly(demo_project)
    settings = Settings.from_config(load_project(demo_project).config)
    try:
        part = write_report(engine, tmp_path, settings=settings, only=("overview", "health"))
    finally:
        engine.close()
    drawn_now = {p.name for p in part.pngs}
    assert {"funnel.png", "retention_week.png", "rows_per_layer.png"} <= {p.name for p in earlier}
    assert drawn_now == {"rows_per_layer.png"}
    assert {p.name for p in tmp_path.iterdir()} == drawn_now | {
        "report.html",
        "notes.png",
        "mine.txt",
    }
    # Every chart the demo's report drew is one the report knows to remove.
    assert {p.stem for p in earlier} <= set(CHART_NAMES)


def test_the_weekly_cohorts_are_the_weeks_the_range_touches(demo_project: Path) -> None:
    """The weekly heatmap (report and dashboard) began with an empty row, a week before
    the range: the reader asked for (days // 7 + 1) weeks, one too many for a range of
    whole weeks (the 90-day demo's 13 weeks drew 14, the first before the data began). It
    asks for the weeks the range's days touch."""
    engine = open_readonly(demo_project)
    try:
        first, last = engine.fetch_all(
            q("select min(event_date), max(event_date) from core.fct_events")
        )[0]
        settings = Settings.from_config(load_project(demo_project).config)
        monday = first + timedelta(days=-first.weekday() % 7)  # the first Monday with data
        sunday = monday + timedelta(days=13)  # two whole weeks
        assert sunday <= last
        section = read_retention(engine, Filters(monday, sunday), settings)
    finally:
        engine.close()
    assert settings.week_start == "monday"
    assert section is not None
    assert [c.start for c in section.week_cohorts] == [
        monday.isoformat(),
        (monday + timedelta(weeks=1)).isoformat(),
    ]
    assert all(c.size > 0 for c in section.week_cohorts)


def test_a_folder_the_report_cannot_write_into_is_told_before_any_reading(
    engine: DuckDBEngine, tmp_path: Path
) -> None:
    """An existing folder the report cannot write into (read-only, full, or, here, its
    working file's name taken by a folder) was found out at the first chart, after every
    section had been read: seconds on DuckDB, many minutes on Spark. It is told at once:
    the empty warehouse would otherwise be the error."""
    out = tmp_path / "out"
    (out / f".{REPORT_FILE}.partial").mkdir(parents=True)
    with pytest.raises(ReportError, match=r"cannot write the report into .*out: "):
        write_report(engine, out)
    assert [p.name for p in out.iterdir()] == [f".{REPORT_FILE}.partial"]


def test_a_negative_bar_s_label_does_not_cover_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's campaign ROI chart wrote "-88.3%" over "Display 017": a negative bar's
    label went left of the bar's end, onto the names when the positive bars set the scale.
    No value label overlaps a name on the axis."""
    drawn: list[Figure] = []
    save = charts._save

    def keep(fig: Figure, name: str, title: str, out_dir: Path) -> charts.Chart:
        fig.tight_layout(pad=0.4)  # as `_save` lays it out
        fig.canvas.draw()
        drawn.append(fig)
        labels = [t.get_window_extent() for t in fig.axes[0].texts]
        names = [t.get_window_extent() for t in fig.axes[0].get_yticklabels()]
        overlaps = [(a, b) for a in labels for b in names if a.overlaps(b)]
        assert overlaps == [], name
        inside = fig.axes[0].get_window_extent()
        assert all(inside.x0 <= a.x0 and a.x1 <= inside.x1 for a in labels), name
        return save(fig, name, title, out_dir)

    monkeypatch.setattr(charts, "_save", keep)
    names = [f"Campaign {i:03d}" for i in range(8)]
    rois = [9.41, 4.16, 1.8, 0.05, -0.14, -0.47, -0.87, -0.883]
    charts.bars("roi", "ROI", names, rois, tmp_path, percent=True)
    charts.bars("money", "margin", names, [v * 10_000 for v in rois], tmp_path)
    charts.bars("losses", "all lost", names[:3], [-5_000.0, -120.0, -0.5], tmp_path)
    assert len(drawn) == 3


def test_a_stacked_chart_s_legend_covers_no_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SaaS demo's ARR bridge drew its legend over the tallest month's bar (the
    legend sat in the plot, the bars reached its top). No legend entry covers a bar."""
    checked: list[str] = []
    save = charts._save

    def keep(fig: Figure, name: str, title: str, out_dir: Path) -> charts.Chart:
        fig.tight_layout(pad=0.4)  # as `_save` lays it out
        fig.canvas.draw()
        ax = fig.axes[0]
        legend = ax.get_legend().get_window_extent()
        bars = [p.get_window_extent() for p in ax.patches if p.get_height() != 0]
        assert bars
        assert [b for b in bars if legend.overlaps(b)] == [], name
        checked.append(name)
        return save(fig, name, title, out_dir)

    monkeypatch.setattr(charts, "_save", keep)
    months = ["2026-01", "2026-02", "2026-03", "2026-04"]
    charts.stacked(
        "arr",
        "ARR movements per month",
        months,
        {
            "new": [48_000.0, 118_000.0, 148_000.0, 9_500.0],
            "reactivation": [0.0, 2_000.0, 1_000.0, 0.0],
            "expansion": [0.0, 88_000.0, 155_000.0, 36_000.0],
            "contraction": [0.0, -1_500.0, -4_000.0, -1_100.0],
            "cancelled": [0.0, -3_000.0, -21_000.0, -3_700.0],
        },
        tmp_path,
    )
    assert checked == ["arr"]
