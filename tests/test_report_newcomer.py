"""The report as a new user first runs it: in a folder with no warehouse (a mistyped
`--project`), into a folder an earlier report wrote, and with the report's own run in
the run log. Each case was found by running the commands by hand."""

from __future__ import annotations

from pathlib import Path

import duckdb

from tests.conftest import run_cli


def test_a_folder_without_a_warehouse_is_told_and_left_untouched(tmp_path: Path) -> None:
    """`productlens -p typo report` made the folder, an empty warehouse.duckdb, reports/
    and run_results.json, then said the marts were not built: a mistyped project path
    became a project. It now names the missing warehouse and writes nothing."""
    typo = tmp_path / "typo"
    result = run_cli("--project", str(typo), "report")
    assert result.returncode == 1
    assert "error [report]: there is no warehouse at" in result.stderr
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
