"""The raw layer's storage: Parquet files owned by the warehouse, views over exactly the
committed ones, lineage for copied and rewritten rows, and nothing left by a crash."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sqlglot import exp

from productlens.errors import IngestError
from productlens.ingest import ingest_paths, validate
from productlens.ingest.processor import LakeProcessor
from productlens.simulate import generate, preset
from tests.conftest import open_lake

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate(preset(users=300, days=8, seed=11, users_per_block=100), out)
    return out


def listed(lake: LakeProcessor, table: str) -> list[tuple[str, str | None, int, bool]]:
    return [
        (r[0], r[1], int(r[2]), bool(r[3]))
        for r in lake.fetch_all(
            "SELECT path, source_file, row_count, copied FROM ops.raw_files "
            "WHERE target_table = ? ORDER BY path",
            [table],
        )
    ]


def test_clean_parquet_files_are_copied_byte_for_byte_and_sealed(
    lake: LakeProcessor, world: Path
) -> None:
    sources = sorted((world / "events").rglob("*.parquet"))
    ingest_paths(lake, [world / "users", world / "products", world / "events"], now=NOW)
    files = listed(lake, "events")
    assert len(files) == len(sources)
    assert all(copied for *_, copied in files)
    base = lake.raw_root.parent
    for path, source, rows, _ in files:
        raw = base / path
        assert source is not None
        assert sha256(raw) == sha256(Path(source))
        assert pq.read_metadata(raw).num_rows == rows
        assert not raw.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert {Path(s) for _, s, _, _ in files} == {p.resolve() for p in sources}
    # Lineage of a copied row: the source file and its 1-based row there.
    one = sources[len(sources) // 2]
    expected = pq.read_table(one).column("event_id").to_pylist()
    got = lake.fetch_all(
        "SELECT event_id FROM raw.events WHERE _source_file = ? ORDER BY _row_number",
        [str(one.resolve())],
    )
    assert [r[0] for r in got] == expected


def test_a_file_with_a_held_row_is_rewritten_and_keeps_lineage(
    lake: LakeProcessor, world: Path, tmp_path: Path
) -> None:
    ingest_paths(lake, [world / "users", world / "products"], now=NOW)
    source = sorted((world / "events").rglob("*.parquet"))[0]
    table = pq.read_table(source)
    amounts = table.column("amount").to_pylist()
    amounts[6] = -5.0  # row 7 becomes a negative amount
    bad = tmp_path / "events" / "bad.parquet"
    bad.parent.mkdir()
    pq.write_table(table.set_column(8, "amount", pa.array(amounts, pa.float64())), bad)
    good = tmp_path / "events" / "good.parquet"
    shutil.copyfile(sorted((world / "events").rglob("*.parquet"))[1], good)

    result = ingest_paths(lake, [tmp_path / "events"], now=NOW)
    batch = result.batches[0]
    assert batch.rows_quarantined == 1
    assert batch.rows_loaded == table.num_rows - 1 + pq.read_metadata(good).num_rows
    files = listed(lake, "events")
    copied = [f for f in files if f[3]]
    rewritten = [f for f in files if not f[3]]
    assert [Path(c[1]) for c in copied] == [good.resolve()]  # type: ignore[arg-type]
    assert len(rewritten) == 1
    assert rewritten[0][1] is None
    assert rewritten[0][2] == table.num_rows - 1
    rows = lake.fetch_all(
        "SELECT _row_number, event_id FROM raw.events WHERE _source_file = ? ORDER BY 1",
        [str(bad.resolve())],
    )
    ids = table.column("event_id").to_pylist()
    assert rows == [(i + 1, ids[i]) for i in range(table.num_rows) if i != 6]
    held = lake.fetch_all("SELECT source_file, row_number, reasons FROM raw.quarantine")
    assert held == [(str(bad.resolve()), 7, ["negative_amount"])]


@pytest.mark.parametrize(
    ("column", "values", "why"),
    [
        ("amount", pa.array([1.5, 2.0], pa.float32()), "a float, not a double"),
        ("event_ts", pa.array([1_700_000_000_000_000] * 2, pa.timestamp("us", tz="UTC")), "tz"),
    ],
)
def test_a_file_of_other_types_is_cast_not_copied(
    lake: LakeProcessor, tmp_path: Path, column: str, values: pa.Array, why: str
) -> None:
    base = {
        "event_id": ["e1", "e2"],
        "user_id": ["u1", "u1"],
        "event_type": ["page_view", "page_view"],
        "event_ts": pa.array([1_700_000_000_000_000] * 2, pa.timestamp("us")),
        "amount": pa.array([1.5, 2.0], pa.float64()),
    }
    base[column] = values
    path = tmp_path / "events" / "part.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table(base), path)
    result = ingest_paths(lake, [path], now=NOW)
    assert result.batches[0].rows_loaded == 2, why
    assert [f[3] for f in listed(lake, "events")] == [False], why
    types = dict(
        lake.fetch_all(
            "SELECT column_name, data_type FROM duckdb_columns() "
            "WHERE schema_name = 'raw' AND table_name = 'events'"
        )
    )
    assert types["amount"] == "DOUBLE"
    assert types["event_ts"] == "TIMESTAMP"
    assert lake.fetch_all("SELECT sum(amount) FROM raw.events") == [(3.5,)]


def test_duplicates_are_found_exactly_when_hashes_collide(
    lake: LakeProcessor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deliberately weak key hash (4 values) makes most rows candidates: only the rows
    whose key really repeats, after the first in file and row order, are duplicates."""
    weak = validate.key_hash
    monkeypatch.setattr(
        validate,
        "key_hash",
        lambda keys: exp.Paren(this=exp.Mod(this=weak(keys), expression=exp.Literal.number(4))),
    )
    ids = [f"u{i}" for i in range(40)] + ["u3", "u17", "u3"]
    folder = tmp_path / "users"
    folder.mkdir()
    pq.write_table(
        pa.table({"user_id": ids, "signup_ts": pa.array([NOW.replace(tzinfo=None)] * len(ids))}),
        folder / "a.parquet",
    )
    result = ingest_paths(lake, [folder], now=NOW)
    assert result.batches[0].rows_quarantined == 3
    held = lake.fetch_all("SELECT row_number, reasons FROM raw.quarantine ORDER BY 1")
    assert held == [(41, ["duplicate"]), (42, ["duplicate"]), (43, ["duplicate"])]
    assert lake.fetch_all("SELECT count(DISTINCT user_id), count(*) FROM raw.users") == [(40, 40)]


def test_unlisted_files_left_by_a_crash_are_swept(
    lake: LakeProcessor, world: Path, tmp_path: Path
) -> None:
    ingest_paths(lake, [world / "users"], now=NOW)
    before = lake.fetch_all("SELECT count(*), sum(hash(user_id)) FROM raw.users")
    folder = lake.raw_root / "users"
    orphan = folder / "0123456789abcdef-00000.parquet"
    shutil.copyfile(next(folder.iterdir()), orphan)
    (tmp_path / "products.csv").write_text("product_id,price,updated_at\np1,2.5,2026-01-01\n")
    ingest_paths(lake, [tmp_path / "products.csv"], now=NOW)
    assert not orphan.exists()
    assert lake.fetch_all("SELECT count(*), sum(hash(user_id)) FROM raw.users") == before
    on_disk = sorted(p.name for p in lake.raw_root.rglob("*.parquet"))
    assert on_disk == sorted(
        Path(r[0]).name for r in lake.fetch_all("SELECT path FROM ops.raw_files")
    )


def test_a_project_folder_can_be_moved(world: Path, tmp_path: Path) -> None:
    first = tmp_path / "a"
    lake = open_lake(first / "w.duckdb", memory_limit="1GB", threads=1)
    ingest_paths(lake, [world / "users"], now=NOW)
    lake.close()
    moved = tmp_path / "elsewhere" / "b"
    moved.parent.mkdir()
    shutil.move(first, moved)
    # Read from another working directory, in another process.
    script = (
        "from pathlib import Path; from productlens.ingest.processor import LakeProcessor; "
        f"c = Path({str(moved / 'w.duckdb')!r}); e = LakeProcessor.open(c, c.with_suffix('.raw')); "
        "print(e.fetch_all('SELECT count(*) FROM raw.users')[0][0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd="/",
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "300"


def test_raw_tables_from_an_earlier_version_are_refused(tmp_path: Path) -> None:
    lake = open_lake(tmp_path / "w.duckdb", memory_limit="1GB", threads=1)
    lake.execute("CREATE SCHEMA IF NOT EXISTS raw")
    lake.execute("CREATE TABLE raw.users (user_id VARCHAR)")
    (tmp_path / "users.csv").write_text("user_id,signup_ts\na,2026-01-01\n")
    with pytest.raises(IngestError, match="earlier productlens"):
        ingest_paths(lake, [tmp_path / "users.csv"], now=NOW)
    lake.close()


def test_only_committed_files_are_in_the_views(lake: LakeProcessor, world: Path) -> None:
    ingest_paths(lake, [world / "users"], now=NOW)
    folder = lake.raw_root / "users"
    stray = folder / "ffffffffffffffff-00000.parquet"
    shutil.copyfile(next(folder.iterdir()), stray)  # as a crash would leave it
    users = lake.fetch_all("SELECT count(*) FROM raw.users")[0][0]
    assert users == 300
    ids = pc.count_distinct(pq.read_table(stray).column("user_id")).as_py()
    assert ids > 0  # the stray file holds rows, and the view ignores them


def test_a_file_named_twice_loads_once(lake: LakeProcessor, world: Path) -> None:
    one = sorted((world / "users").glob("*.parquet"))[0]
    result = ingest_paths(lake, [world / "users", one], now=NOW)
    assert result.quarantined == 0
    assert lake.fetch_all("SELECT count(*), count(DISTINCT user_id) FROM raw.users") == [(300, 300)]
