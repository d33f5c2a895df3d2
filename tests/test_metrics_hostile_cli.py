"""A demanding user's odd options on the metrics commands: every mistake is a one-line
error naming the option, never a traceback (issue 11, break-it pass)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli


def _error_line(result_stderr: str, result_stdout: str) -> str:
    text = (result_stderr + result_stdout).strip()
    assert "Traceback" not in text, text
    return text


@pytest.mark.parametrize(
    ("args", "option"),
    [
        # A date far in the future: the bound's next midnight does not exist in Python.
        (("activity", "--to", "9999-12-31"), "--to"),
        (("funnel", "--steps", "a,b", "--to", "9999-12-31"), "--to"),
        # The 29 days of lookback before year 1.
        (("activity", "--from", "0001-01-01", "--to", "0001-01-02"), "--from"),
        # The first of 30,000 monthly cohorts would start before year 1.
        (
            ("retention", "--start", "signup", "--period", "month", "--periods", "30000"),
            "--periods",
        ),
        (
            ("retention", "--start", "signup", "--period", "day", "--periods", "999999999"),
            "--periods",
        ),
    ],
)
def test_out_of_range_dates_are_one_line_errors(
    demo_project: Path, args: tuple[str, ...], option: str
) -> None:
    result = run_cli("--project", str(demo_project), *args)
    text = _error_line(result.stderr, result.stdout)
    assert result.returncode != 0
    assert len(text.splitlines()) == 1, text
    assert text.startswith("error [metrics]:"), text
    assert option in text, text


def test_paths_range_error_names_since_and_until(demo_project: Path) -> None:
    # In paths, --from/--to name the event; the range options are --since/--until.
    result = run_cli(
        "--project",
        str(demo_project),
        "paths",
        "--from",
        "purchase",
        "--since",
        "2026-02-01",
        "--until",
        "2026-01-01",
    )
    text = _error_line(result.stderr, result.stdout)
    assert result.returncode != 0
    assert "--until" in text, text
    assert "--since" in text, text
