from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from productlens.engines import DuckDBEngine
from productlens.errors import IngestError
from productlens.ingest import ingest_paths
from productlens.simulate import generate, preset


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate(preset(users=500, days=10, seed=5, users_per_block=200), out)
    return out


def test_loads_every_table_once(engine: DuckDBEngine, world: Path) -> None:
    files = sorted(world.rglob("*.parquet"))
    truth = json.loads((world / "truth.json").read_text())
    first = ingest_paths(engine, [world])
    assert len(first.loaded_files) == len(files)
    assert first.rows == {t: n for t, n in truth["rows"].items() if n}
    for table, n in truth["rows"].items():
        assert engine.fetch_all(f"SELECT count(*) FROM raw.{table}") == [(n,)], table
    again = ingest_paths(engine, [world])
    assert again.rows == {}
    assert len(again.skipped_files) == len(files)
    total = sum(truth["rows"].values())
    logged = engine.fetch_all("SELECT sum(rows_read), sum(rows_loaded) FROM raw.ingest_log")
    assert logged == [(total, total)]


def test_lineage_points_at_file_and_row(engine: DuckDBEngine, world: Path) -> None:
    ingest_paths(engine, [world / "users"])
    rows = engine.fetch_all(
        "SELECT _source_file, min(_row_number), max(_row_number), count(*) FROM raw.users "
        "GROUP BY 1 ORDER BY 1"
    )
    assert [r[1:] for r in rows] == [(1, 200, 200), (1, 200, 200), (1, 100, 100)]


def test_table_is_inferred_from_file_name(engine: DuckDBEngine, tmp_path: Path) -> None:
    pacsv.write_csv(
        pa.table(
            {"user_id": ["a", "b"], "signup_ts": ["2026-01-01 10:00:00", "2026-01-02 11:00:00"]}
        ),
        tmp_path / "users.csv",
    )
    result = ingest_paths(engine, [tmp_path / "users.csv"])
    assert result.rows == {"users": 2}
    assert engine.fetch_all("SELECT count(*) FROM raw.users WHERE segment IS NULL") == [(2,)]


def test_missing_required_columns_are_named(engine: DuckDBEngine, tmp_path: Path) -> None:
    pacsv.write_csv(pa.table({"customer": ["a"], "ts": ["2026-01-01"]}), tmp_path / "users.csv")
    with pytest.raises(IngestError) as info:
        ingest_paths(engine, [tmp_path / "users.csv"])
    message = str(info.value)
    assert "user_id, signup_ts" in message
    assert "--map" in message
    assert "users.csv" in message
    assert engine.fetch_all("SELECT count(*) FROM raw.users") == [(0,)]


@pytest.mark.parametrize(
    ("name", "message"),
    [("nothing/here.parquet", "no such file"), ("mystery.csv", "cannot tell which table")],
)
def test_unusable_paths(engine: DuckDBEngine, tmp_path: Path, name: str, message: str) -> None:
    if name.endswith(".csv"):
        (tmp_path / name).write_text("a\n1\n")
    with pytest.raises(IngestError, match=message):
        ingest_paths(engine, [tmp_path / name])


def test_bad_value_rolls_back_the_whole_file(engine: DuckDBEngine, tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("user_id,signup_ts\na,2026-01-01\nb,not-a-time\n")
    with pytest.raises(IngestError, match=r"users\.csv"):
        ingest_paths(engine, [tmp_path / "users.csv"])
    assert engine.fetch_all("SELECT count(*) FROM raw.users") == [(0,)]
    assert engine.fetch_all("SELECT count(*) FROM raw.ingest_log") == [(0,)]
