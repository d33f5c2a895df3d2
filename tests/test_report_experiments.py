"""An experiment whose planted effect is significant yet not shipped: the decision the
report's table, its insight and the dashboard state is the readout's own, never "ship"
read off significance (a significant drop, or too little time, decides otherwise).

A tiny world (300 users, two weeks) whose checkout redesign loses 90% of conversions:
significant at this size, and the readout does not say ship."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from productlens.app import open_engine
from productlens.config import load_project
from productlens.pipeline import Runner
from productlens.report import _experiments
from productlens.report import insights as ins
from productlens.report.sections import ExperimentsSection, Filters, Sections, Settings
from productlens.report.sections import read_experiments as read
from productlens.simulate import generate, preset
from tests.test_dashboard import app_for, frame, open_page


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("planted_drop")
    params = preset(users=300, days=14, seed=11)
    checkout, pdp = params.experiments
    params = replace(params, experiments=(replace(checkout, relative_lift=-0.9), pdp))
    generate(params, root / "data", workers=1)
    project = load_project(root)
    engine = open_engine(project)
    try:
        runner = Runner(project, engine, Console(quiet=True))
        runner.ingest([str(root / "data")])
        runner.build([])
    finally:
        engine.close()
    return root


@pytest.fixture(scope="module")
def section(planted: Path) -> ExperimentsSection:
    project = load_project(planted)
    engine = open_engine(project, read_only=True)
    try:
        found = read(engine, Filters(), Settings.from_config(project.config))
    finally:
        engine.close()
    assert found is not None
    # The world holds what the test needs: a significant result the readout does not ship.
    decided = {r.experiment.experiment_id: r.decision.verdict for r in found.readouts}
    assert any(s.significant and decided[s.experiment_id] != "ship" for s in found.summaries)
    return found


def test_the_report_states_the_readout_s_own_decision(
    section: ExperimentsSection, tmp_path: Path
) -> None:
    decided = {r.experiment.experiment_id: r.decision.verdict for r in section.readouts}
    assert [s.verdict for s in section.summaries] == [
        decided[s.experiment_id] for s in section.summaries
    ]
    intervals = {
        (r.experiment.experiment_id, c.variant): c.inference.ci_relative
        for r in section.readouts
        for c in r.metrics[0].readout.comparisons
    }
    for s in section.summaries:
        assert (s.ci_low, s.ci_high) == intervals[s.experiment_id, s.variant]
        assert s.ci_low < s.lift < s.ci_high
        said = ins.experiment_verdict(s)
        assert said.text.startswith(f"{s.name or s.experiment_id}: {s.verdict}. "), said.text
        assert said.values["verdict"] == decided[s.experiment_id]
    sections = Sections(None, None, None, None, None, None, section, None)
    (block,) = _experiments(sections, tmp_path)
    assert block.table is not None
    head, rows = block.table
    assert [r[head.index("decision")] for r in rows] == [
        decided[s.experiment_id] for s in section.summaries
    ]


def test_the_dashboard_states_the_readout_s_own_decision(
    planted: Path, section: ExperimentsSection, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(app_for(planted, monkeypatch), "experiments")
    shown = frame(at, "experiment", "variant", "decision")
    decided = {r.experiment.experiment_id: r.decision.verdict for r in section.readouts}
    assert list(shown["decision"]) == [decided[e] for e in shown["experiment"]]
    assert sorted(shown["experiment"]) == sorted(s.experiment_id for s in section.summaries)
