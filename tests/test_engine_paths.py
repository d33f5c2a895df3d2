"""Project paths DuckDB or Spark cannot take are refused before anything is written, in
one line naming the path. (Paths with quotes, a space and glob characters work on every
engine: the parity tests run in such folders, see test_engine_parity; the lake's views
over such folders: test_lake.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("folder", "says"),
    [
        ("a?b", "DuckDB cannot keep a database in a path with '?'"),
        ("a,b", "DuckDB cannot read the lake from a folder whose path has a ','"),
    ],
)
def test_a_path_duckdb_cannot_take_is_refused(tmp_path: Path, folder: str, says: str) -> None:
    """DuckDB writes the log of a database under `a?b/` to `a.wal?b/` (the first commit
    fails after the work is done) and reads `a,b` as two folders to look in: both are
    refused before anything is written, in one line naming the path."""
    root = tmp_path / folder
    root.mkdir()
    (tmp_path / "users.csv").write_text("user_id,signup_ts,country\nu1,2026-01-01 10:00:00,DE\n")
    result = run_cli("--project", str(root), "ingest", str(tmp_path / "users.csv"))
    assert result.returncode == 1
    said = " ".join(result.stderr.split())  # as one line, however the console wrapped it
    assert says in said
    assert str(root) in said
    assert "Traceback" not in said
    assert list(root.iterdir()) == []  # nothing written


def test_spark_refuses_a_glob_warehouse(tmp_path: Path) -> None:
    """Spark globs a table's folder when it reads the table, so tables written under
    `[a-b]` are "not found" at once: such a warehouse folder (the default one, in the
    project folder) is refused before a JVM starts, in one line naming it."""
    root = tmp_path / "project [a-b]"
    root.mkdir()
    result = run_cli("--project", str(root), "--engine", "spark", "build")
    assert result.returncode == 1
    said = " ".join(result.stderr.split())  # as one line, however the console wrapped it
    assert "Spark cannot keep tables in a folder whose path has any of" in said
    assert "[warehouse.spark] warehouse_dir" in said
    assert str(root / "spark-warehouse") in said
    assert "Traceback" not in said
