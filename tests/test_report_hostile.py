"""The report and the warehouse's vocabulary as a new user meets them: a later command on a
demo warehouse reads the demo's world, whatever names the data holds is escaped, and an
interrupted or refused write leaves no half report behind."""

from __future__ import annotations

import shutil
from pathlib import Path

from rich.console import Console

from productlens.app import open_engine
from productlens.config import DEFAULT_FUNNELS, load_project
from productlens.experiments.metric_defs import DEFAULT_METRICS
from productlens.pipeline import Runner
from productlens.report.sections import Filters, Settings, read_funnel
from tests.conftest import q


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
