"""Small truths of the report and the dashboard, each found by reading them as a user
would (issue 14): a change that rounds to zero, the arms of an experiment, the last run."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from productlens.report import _experiments, _overview
from productlens.report.insights import signed
from productlens.report.sections import (
    ExperimentsSection,
    ExperimentSummary,
    Kpi,
    Overview,
    Sections,
)


@pytest.mark.parametrize(
    ("value", "spec", "shown"),
    [
        (-0.0004, "+.1%", "0.0%"),  # rounds to zero from below: was "-0.0%"
        (0.0004, "+.1%", "0.0%"),  # and from above: no "+0.0%" either
        (0.0, "+.1%", "0.0%"),
        (-0.0, "+.1%", "0.0%"),
        (-0.0005, "+.1%", "-0.1%"),  # half a tenth rounds away: a real fall, signed
        (0.0123, "+.1%", "+1.2%"),
        (-0.0123, "+.1%", "-1.2%"),
        (-0.004, "+.0%", "0%"),
        (-0.04, "+,.1f", "0.0"),
        (-1234.56, "+,.1f", "-1,234.6"),
        (1234.56, "+,.1f", "+1,234.6"),
    ],
)
def test_a_signed_figure_that_rounds_to_zero_has_no_sign(
    value: float, spec: str, shown: str
) -> None:
    assert signed(value, spec) == shown


def test_the_report_s_key_figures_show_no_minus_zero(tmp_path: Path) -> None:
    """A KPI that fell by 0.04% showed "-0.0%" in the change column."""
    kpis = (
        Kpi("users", "active users", "count", 99_960, 100_000, True),  # -0.04%
        Kpi("events", "events", "count", 110, 100, True),  # +10%
    )
    overview = Overview(
        date(2026, 3, 8), date(2026, 3, 14), date(2026, 3, 1), date(2026, 3, 7), kpis
    )
    sections = Sections(overview, None, None, None, None, None, None, None)
    [block] = _overview(sections, tmp_path)
    assert block.table is not None
    changes = [row[3] for row in block.table[1]]
    assert changes == ["0.0%", "+10.0%"]


def test_the_experiment_table_names_the_arm_of_each_user_count(tmp_path: Path) -> None:
    """The users column said "1,204 / 1,190": which was the control? Each count now
    carries its arm's name."""
    summary = ExperimentSummary(
        "exp_1", "Checkout copy", "purchase", "control", "new_copy", 1_204, 1_190,
        0.05, -0.01, 0.11, 0.1, False, False, 0.7, "keep running", (), None, None, None,
    )  # fmt: skip
    sections = Sections(None, None, None, None, None, None, ExperimentsSection((summary,)), None)
    [block] = _experiments(sections, tmp_path)
    assert block.table is not None
    head, rows = block.table
    assert head[2] == "users per arm"
    assert rows[0][1:3] == ("new_copy", "control 1,204 / new_copy 1,190")
