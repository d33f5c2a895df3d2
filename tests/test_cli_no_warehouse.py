"""Commands that only read the warehouse, run in a folder that has none (a mistyped
`--project`): each says so at once, in one line, and writes nothing there. `check` had
opened the engine for writing, made an empty warehouse.duckdb and then failed with
179 "Catalog Error" tests; the metrics and quarantine commands said "run build" only."""

from __future__ import annotations

from pathlib import Path

import pytest

from productlens.cli import main

READERS = [
    ("check",),
    ("report",),
    ("quarantine",),
    ("funnel", "--steps", "page_view,purchase"),
    ("retention", "--start", "signup"),
    ("experiment", "list"),
    ("clv",),
]


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_a_reading_command_without_a_warehouse_is_told_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    (tmp_path / "mine.txt").write_text("mine")
    code = main(["--project", str(tmp_path), *command])
    said = capsys.readouterr()
    assert code == 1
    assert said.err.startswith("error [warehouse]: there is no warehouse at ")
    assert str(tmp_path / "warehouse.duckdb") in said.err
    assert "productlens demo" in said.err
    assert "productlens build" in said.err
    assert "Catalog Error" not in said.err + said.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
