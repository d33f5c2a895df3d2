"""One ingest command is one unit: all of its batches commit together or not at all; a
file loaded before can be loaded again with --force, replacing its rows; replayed rows
get today's reasons; rows loaded with warnings are listed. Through the CLI where a user
would meet it."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from productlens import layers
from productlens.config import IngestConfig, TableIngestConfig
from productlens.errors import EngineError, IngestError
from productlens.ingest import BatchResult, ingest_paths, replay
from productlens.ingest.contracts import CONTRACTS
from productlens.ingest.processor import LakeProcessor
from tests.conftest import open_lake, run_cli

NOW = datetime(2026, 11, 22, tzinfo=UTC)
USERS = "user_id,signup_ts,segment\nu1,2026-01-05 10:00:00,Budget\nu2,2026-01-06 11:00:00,Premium\n"
EVENTS = "event_id,user_id,event_type,event_ts\ne1,u1,login,2026-01-05 12:00:00\n"


def raw_counts(lake: LakeProcessor) -> dict[str, int]:
    return {t: lake.fetch_all(f"SELECT count(*) FROM raw.{t}")[0][0] for t in CONTRACTS}


def nothing_committed(warehouse: Path) -> None:
    """No row in any raw table, the quarantine or the ingest logs."""
    lake = open_lake(warehouse)
    try:
        assert set(raw_counts(lake).values()) == {0}
        for table in ("raw.quarantine", "ops.ingest_log", "ops.ingested_files", "ops.raw_files"):
            assert lake.fetch_all(f"SELECT count(*) FROM {table}") == [(0,)], table
    finally:
        lake.close()


def raw_files_on_disk(root: Path) -> list[Path]:
    raw = root / "warehouse.raw"
    return sorted(p for p in raw.rglob("*") if p.is_file()) if raw.exists() else []


def assert_conserved(lake: LakeProcessor) -> None:
    broken = lake.fetch_all(
        "SELECT count(*) FROM ops.ingest_log WHERE kind = 'files' AND "
        "rows_read <> rows_loaded + rows_quarantined + rows_duplicate"
    )
    assert broken == [(0,)]


# --- item 9: one command, one unit ----------------------------------------------------------


def test_a_bad_json_lines_file_beside_a_good_csv_commits_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "users.csv").write_text(USERS)
    # Readable, but without the required event_ts: the command cannot load this file.
    (data / "events.jsonl").write_text('{"event_id": "e1", "user_id": "u1", "event_type": "x"}\n')
    result = run_cli("--project", str(tmp_path), "ingest", str(data))
    assert result.returncode == 1
    assert "events.jsonl" in result.stderr
    assert "Traceback" not in result.stderr
    nothing_committed(tmp_path / "warehouse.duckdb")
    assert raw_files_on_disk(tmp_path) == []


def corrupt_parquet(path: Path) -> None:
    """A Parquet file whose footer reads well but whose data pages do not."""
    n = 5000
    table = pa.table(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "user_id": ["u1"] * n,
            "event_type": ["login"] * n,
            "event_ts": pa.array([datetime(2026, 1, 5)] * n, pa.timestamp("us")),
        }
    )
    pq.write_table(table, path, use_dictionary=False)
    data = bytearray(path.read_bytes())
    start = pq.read_metadata(path).row_group(0).column(0).data_page_offset + 30
    data[start : start + 500] = b"\xff" * 500
    path.write_bytes(bytes(data))


def test_a_file_failing_while_it_is_checked_commits_nothing(tmp_path: Path) -> None:
    """The users batch is checked and written; the events file fails only when its rows
    are read, inside the command's transaction: the error names it, nothing commits."""
    data = tmp_path / "data"
    (data / "events").mkdir(parents=True)
    (data / "users.csv").write_text(USERS)
    corrupt_parquet(data / "events" / "part-0.parquet")
    result = run_cli("--project", str(tmp_path), "ingest", str(data))
    assert result.returncode == 1
    assert "part-0.parquet" in result.stderr
    assert "aborted" not in result.stderr  # the first error, not a follow-up
    assert "Traceback" not in result.stderr
    nothing_committed(tmp_path / "warehouse.duckdb")
    assert raw_files_on_disk(tmp_path) == []


def test_a_later_batch_failing_discards_the_earlier_batches(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    """A failure after the users batch was checked and written (here raised between
    batches) leaves no row and no raw file of the whole command."""
    (tmp_path / "users.csv").write_text(USERS)
    (tmp_path / "events.csv").write_text(EVENTS)
    seen: list[str] = []

    def fail_after_first(batch: BatchResult) -> None:
        seen.append(batch.table)
        raise IngestError("stop here")

    with pytest.raises(IngestError, match="stop here"):
        ingest_paths(
            lake,
            [tmp_path / "users.csv", tmp_path / "events.csv"],
            on_batch=fail_after_first,
            now=NOW,
        )
    assert seen == ["users"]
    assert set(raw_counts(lake).values()) == {0}
    assert lake.fetch_all("SELECT count(*) FROM ops.raw_files") == [(0,)]
    assert lake.fetch_all("SELECT count(*) FROM ops.ingested_files") == [(0,)]
    assert raw_files_on_disk(tmp_path) == []
    # The same command then loads everything.
    again = ingest_paths(lake, [tmp_path / "users.csv", tmp_path / "events.csv"], now=NOW)
    assert again.rows == {"users": 2, "events": 1}


def test_later_tables_see_rows_of_earlier_tables_of_the_same_command(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    """Orders and events check their users against users loaded by the same command,
    inside its one transaction (the raw.users view refreshed there)."""
    (tmp_path / "users.csv").write_text(USERS)
    (tmp_path / "orders.csv").write_text(
        "order_id,user_id,order_ts,status,total_amount\n"
        "o1,u1,2026-01-07 10:00:00,completed,5\no2,ghost,2026-01-07 11:00:00,completed,6\n"
    )
    (tmp_path / "events.csv").write_text(EVENTS)
    strict = IngestConfig(unknown_references={"users": "quarantine"})
    result = ingest_paths(lake, [tmp_path], config=strict, now=NOW)
    assert result.rows == {"users": 2, "orders": 1, "events": 1}
    held = lake.fetch_all("SELECT target_table, row_number, reasons FROM raw.quarantine")
    assert held == [("orders", 3, ["unknown_user"])]  # the file's line 3
    assert_conserved(lake)


KILL_BETWEEN_BATCHES = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from productlens.ingest.processor import LakeProcessor
    from productlens.ingest import ingest_paths

    def die(batch):
        if batch.table == "users":  # users checked and written; events not yet
            os.kill(os.getpid(), signal.SIGKILL)

    lake = LakeProcessor.open(Path(sys.argv[1]), Path(sys.argv[1]).with_suffix(".raw"))
    ingest_paths(lake, [Path(p) for p in sys.argv[2:]], on_batch=die)
    """
)


def test_a_crash_between_batches_leaves_nothing_visible(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text(USERS)
    (tmp_path / "events.csv").write_text(EVENTS)
    warehouse = tmp_path / "warehouse.duckdb"
    files = [str(tmp_path / "users.csv"), str(tmp_path / "events.csv")]
    proc = subprocess.run(
        [sys.executable, "-c", KILL_BETWEEN_BATCHES, str(warehouse), *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = raw_files_on_disk(tmp_path)
    assert left  # the users batch had written its file ...
    nothing_committed(warehouse)  # ... but nothing of the command was committed
    rerun = run_cli("--project", str(tmp_path), "ingest", *files)
    assert rerun.returncode == 0, rerun.stderr
    lake = open_lake(warehouse)
    try:
        assert raw_counts(lake)["users"] == 2
        assert raw_counts(lake)["events"] == 1
        listed = {r[0] for r in lake.fetch_all("SELECT path FROM ops.raw_files")}
    finally:
        lake.close()
    assert {p.relative_to(tmp_path).as_posix() for p in raw_files_on_disk(tmp_path)} == listed
    assert not set(left) & set(raw_files_on_disk(tmp_path))  # the crash's files were swept


# --- item 5: --force ------------------------------------------------------------------------


def superseded(lake: LakeProcessor) -> list[tuple[object, ...]]:
    return lake.fetch_all(
        "SELECT batch_id, source_file, rows_loaded, rows_quarantined, superseded_by "
        "FROM ops.superseded_files ORDER BY batch_id, source_file"
    )


def batch_of(lake: LakeProcessor, path: Path) -> list[str]:
    rows = lake.fetch_all(
        "SELECT batch_id FROM ops.ingested_files WHERE source_file = ? ORDER BY ingested_at",
        [str(path.resolve())],
    )
    return [r[0] for r in rows]


def layer_rows(stdout: str) -> dict[str, int]:
    """The run summary's rows per layer, as printed."""
    lines = stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == layers.TITLE)
    names = lines[at + 1].replace("┃", " ").split()
    values = lines[at + 3].replace("│", " ").replace(",", "").split()
    return dict(zip(names, map(int, values), strict=True))


def test_force_reloads_a_file_after_its_mapping_is_fixed(tmp_path: Path) -> None:
    export = tmp_path / "customers.csv"
    export.write_text(
        "customer,joined,plan\nc1,2026-01-05 10:00:00,Budget\nc2,2026-01-06 11:00:00,Premium\n"
        "c3,never,Budget\n"
    )
    base = ["--project", str(tmp_path), "ingest", str(export), "--table", "users"]
    first = run_cli(*base, "--map", "customer=user_id", "--map", "joined=signup_ts")
    assert first.returncode == 0, first.stderr
    fixed = [
        *base,
        "--map",
        "customer=user_id",
        "--map",
        "joined=signup_ts",
        "--map",
        "plan=segment",
    ]
    skipped = run_cli(*fixed)  # without --force the file counts as loaded
    assert skipped.returncode == 0, skipped.stderr
    lake = open_lake(tmp_path / "warehouse.duckdb")
    try:
        assert lake.fetch_all("SELECT user_id, segment FROM raw.users ORDER BY 1") == [
            ("c1", None),
            ("c2", None),
        ]
    finally:
        lake.close()

    forced = run_cli(*fixed, "--force")
    assert forced.returncode == 0, forced.stderr
    assert layer_rows(forced.stdout)["raw"] == 2  # the replaced rows are not counted
    lake = open_lake(tmp_path / "warehouse.duckdb")
    try:
        old, new = batch_of(lake, export)
        assert lake.fetch_all("SELECT user_id, segment, _batch_id FROM raw.users ORDER BY 1") == [
            ("c1", "Budget", new),
            ("c2", "Premium", new),
        ]
        # The quarantine keeps the old row, marked as superseded by the new batch, and
        # holds the new one.
        assert lake.fetch_all(
            "SELECT batch_id, row_number, reasons, superseded_batch_id IS NOT NULL, "
            "superseded_batch_id FROM raw.quarantine ORDER BY ingested_at, batch_id"
        ) == [(old, 4, ["bad_timestamp"], True, new), (new, 4, ["bad_timestamp"], False, None)]
        assert superseded(lake) == [(old, str(export.resolve()), 2, 1, new)]
        assert_conserved(lake)
        log = lake.fetch_all(
            "SELECT rows_read, rows_loaded, rows_quarantined FROM ops.ingest_log "
            "WHERE batch_id = ?",
            [new],
        )
        assert log == [(3, 2, 1)]
    finally:
        lake.close()
    quarantine = run_cli("--project", str(tmp_path), "quarantine", "--json")
    assert quarantine.returncode == 0, quarantine.stderr
    assert json.loads(quarantine.stdout)["counts"] == [
        {"table": "users", "reason": "bad_timestamp", "rows": 1}
    ]


def test_force_of_a_file_never_loaded_just_loads_it(lake: LakeProcessor, tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text(USERS)
    result = ingest_paths(lake, [tmp_path / "users.csv"], force=True, now=NOW)
    assert result.rows == {"users": 2}
    assert superseded(lake) == []


def write_users(path: Path, fmt: str) -> None:
    table = pa.table(
        {
            "user_id": ["u1", "u2", "u3"],
            "signup_ts": pa.array([datetime(2026, 1, d) for d in (5, 6, 7)], pa.timestamp("us")),
            "country": ["DE", "FR", "US"],
            "device": ["ios", "web", "android"],
            "acquisition_channel": ["ads", "seo", "ads"],
            "campaign_id": [None, "c1", None],
            "segment": ["Budget", "Premium", "Budget"],
        }
    )
    if fmt == "parquet":
        pq.write_table(table, path)  # the contract's columns: copied byte for byte
    else:
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_force_of_an_identical_file_replaces_it_with_identical_rows(
    lake: LakeProcessor, tmp_path: Path, fmt: str
) -> None:
    path = tmp_path / f"users.{fmt}"
    write_users(path, fmt)
    ingest_paths(lake, [path], now=NOW)
    cols = ", ".join(CONTRACTS["users"].column_names)
    before = lake.fetch_all(f"SELECT {cols}, _source_file, _row_number FROM raw.users ORDER BY 1")
    result = ingest_paths(lake, [path], force=True, now=NOW)
    assert result.rows == {"users": 3}
    assert result.batches[0].notes == [
        "replaces 1 earlier load(s) of these files: 3 rows left raw.users, 0 quarantined rows "
        "marked superseded (see ops.superseded_files)"
    ]
    after = lake.fetch_all(f"SELECT {cols}, _source_file, _row_number FROM raw.users ORDER BY 1")
    assert after == before
    old, new = batch_of(lake, path)
    assert lake.fetch_all("SELECT DISTINCT _batch_id FROM raw.users") == [(new,)]
    assert superseded(lake) == [(old, str(path.resolve()), 3, 0, new)]
    assert lake.fetch_all(
        "SELECT rows_duplicate FROM ops.ingest_log WHERE batch_id = ?", [new]
    ) == [(0,)]
    assert_conserved(lake)
    # And a third time: the second load is superseded in turn; still three rows.
    ingest_paths(lake, [path], force=True, now=NOW)
    assert lake.fetch_all("SELECT count(*) FROM raw.users") == [(3,)]


def test_force_replaces_one_source_file_of_a_rewritten_batch_file(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    """Two CSV files share one rewritten raw file; forcing one of them leaves the other's
    rows where they are (the raw file itself is never edited)."""
    folder = tmp_path / "users"
    folder.mkdir()
    (folder / "a.csv").write_text("user_id,signup_ts,plan\na1,2026-01-05 10:00:00,Budget\n")
    (folder / "b.csv").write_text("user_id,signup_ts,plan\nb1,2026-01-06 10:00:00,Premium\n")
    ingest_paths(lake, [folder], now=NOW)
    [(raw_file,)] = lake.fetch_all("SELECT path FROM ops.raw_files")
    sealed = (lake.raw_root.parent / raw_file).read_bytes()
    fixed = IngestConfig(tables={"users": TableIngestConfig(columns={"plan": "segment"})})
    ingest_paths(lake, [folder / "a.csv"], config=fixed, force=True, now=NOW)
    assert lake.fetch_all("SELECT user_id, segment FROM raw.users ORDER BY 1") == [
        ("a1", "Budget"),
        ("b1", None),  # b.csv was not forced: as it was loaded
    ]
    assert (lake.raw_root.parent / raw_file).read_bytes() == sealed
    assert [(r[1], r[2]) for r in superseded(lake)] == [(str((folder / "a.csv").resolve()), 1)]


def test_force_also_replaces_rows_a_replay_released(lake: LakeProcessor, tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text(
        "user_id,signup_ts\nu1,2026-01-05 10:00:00\nu2,05/01/2026 11:00\n"
    )
    ingest_paths(lake, [tmp_path / "users.csv"], now=NOW)
    fixed = IngestConfig(tables={"users": TableIngestConfig(timestamp_format="%d/%m/%Y %H:%M")})
    released = replay(lake, config=fixed, now=NOW)
    assert released.rows == {"users": 1}
    # A loader's fix for both formats is not possible in one setting; the forced load
    # with the ISO default quarantines u2 again, and the replayed u2 leaves raw.users.
    result = ingest_paths(lake, [tmp_path / "users.csv"], force=True, now=NOW)
    assert (result.batches[0].rows_loaded, result.batches[0].rows_quarantined) == (1, 1)
    assert lake.fetch_all("SELECT user_id FROM raw.users") == [("u1",)]
    replay_batch = released.batches[0].batch_id
    fates = {
        r[0]: r[1] for r in lake.fetch_all("SELECT batch_id, rows_loaded FROM ops.superseded_files")
    }
    assert fates[replay_batch] == 1
    assert sum(fates.values()) == 2


# --- item 11: replayed reasons and warned rows -------------------------------------------


def test_a_replayed_row_gets_its_new_reasons_through_the_cli(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(
        "order_id,user_id,order_ts,status,total_amount\n"
        "o1,u1,05/01/2026 10:00,completed,5\no2,u1,05/01/2099 10:00,completed,6\n"
    )
    first = run_cli("--project", str(tmp_path), "ingest", str(tmp_path / "orders.csv"))
    assert first.returncode == 0, first.stderr
    (tmp_path / "productlens.toml").write_text(
        '[ingest.tables.orders]\ntimestamp_format = "%d/%m/%Y %H:%M"\n'
    )
    again = run_cli("--project", str(tmp_path), "ingest", "--replay")
    assert again.returncode == 0, again.stderr
    lake = open_lake(tmp_path / "warehouse.duckdb")
    try:
        assert lake.fetch_all("SELECT order_id FROM raw.orders") == [("o1",)]
        replay_batch = lake.fetch_all("SELECT batch_id FROM ops.ingest_log WHERE kind = 'replay'")
        held = lake.fetch_all(
            "SELECT row_number, reasons, released_at IS NULL, "
            "[(h.reasons, h.replaced_batch_id) FOR h IN reason_history] "
            "FROM raw.quarantine ORDER BY row_number"
        )
        assert held == [
            (2, ["bad_timestamp"], False, []),  # lines of the file: the header is line 1
            (3, ["future_timestamp"], True, [(["bad_timestamp"], replay_batch[0][0])]),
        ]
    finally:
        lake.close()
    shown = run_cli("--project", str(tmp_path), "quarantine", "--json")
    assert json.loads(shown.stdout)["sample"][0]["reasons"] == ["future_timestamp"]


def test_rows_loaded_with_warnings_are_recorded_and_listed(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_text(
        "event_id,user_id,event_type,event_ts\ne1,ghost,login,2026-01-05 10:00:00\n"
        "e2,u1,login,2026-01-05 10:01:00\ne3,phantom,login,2026-01-05 10:02:00\n"
    )
    (tmp_path / "users.csv").write_text("user_id,signup_ts\nu1,2026-01-01 00:00:00\n")
    loaded = run_cli("--project", str(tmp_path), "ingest", str(tmp_path))
    assert loaded.returncode == 0, loaded.stderr
    lake = open_lake(tmp_path / "warehouse.duckdb")
    try:
        batch = lake.fetch_all("SELECT batch_id FROM ops.ingest_log WHERE target_table = 'events'")
        recorded = lake.fetch_all(
            "SELECT target_table, source_file, row_number, warnings, batch_id "
            "FROM ops.warned_rows ORDER BY row_number"
        )
    finally:
        lake.close()
    source = str((tmp_path / "events.csv").resolve())
    assert recorded == [
        ("events", source, 2, ["unknown_user"], batch[0][0]),  # lines 2 and 4 of the file
        ("events", source, 4, ["unknown_user"], batch[0][0]),
    ]
    shown = run_cli("--project", str(tmp_path), "quarantine", "--warnings", "--json")
    assert shown.returncode == 0, shown.stderr
    listing = json.loads(shown.stdout)
    assert listing["counts"] == [{"table": "events", "warning": "unknown_user", "rows": 2}]
    assert [(r["file"], r["row"], r["warnings"], r["batch"]) for r in listing["sample"]] == [
        (source, 2, ["unknown_user"], batch[0][0]),
        (source, 4, ["unknown_user"], batch[0][0]),
    ]
    table = run_cli("--project", str(tmp_path), "quarantine", "--warnings")
    assert table.returncode == 0, table.stderr
    lines = [line.replace("│", " ").split() for line in table.stdout.splitlines()]
    assert ["events", "unknown_user", "2"] in [line[:3] for line in lines]
    assert ["events", "events.csv", "4", "unknown_user"] in [line[:4] for line in lines]


# --- acceptance gaps ----------------------------------------------------------------------


ORDERS = (
    "order_id,user_id,order_ts,status,total_amount\n"
    "o1,u1,2026-01-05 10:00:00,completed,5\n"
    "o2,u1,2026-01-05 10:00:00,done,5\n"
    "o3,u1,2026-01-05 10:00:00,completed,-2\n"
    "o4,u1,2026-01-05 10:00:00,pending,-1\n"
    "o5,u1,2026-01-05 10:00:00,done,-3\n"  # held for two reasons
)


def test_quarantine_command_shows_counts_rows_and_filters(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(ORDERS)
    assert (
        run_cli("--project", str(tmp_path), "ingest", str(tmp_path / "orders.csv")).returncode == 0
    )
    source = str((tmp_path / "orders.csv").resolve())
    everything = run_cli("--project", str(tmp_path), "quarantine", "--json")
    assert everything.returncode == 0, everything.stderr
    listing = json.loads(everything.stdout)
    assert listing["counts"] == [
        {"table": "orders", "reason": "negative_amount", "rows": 3},
        {"table": "orders", "reason": "bad_value", "rows": 2},
    ]
    assert [(r["file"], r["row"], r["reasons"]) for r in listing["sample"]] == [
        (source, 3, ["bad_value"]),  # lines of the file: the header is line 1
        (source, 4, ["negative_amount"]),
        (source, 5, ["negative_amount"]),
        (source, 6, ["bad_value", "negative_amount"]),
    ]
    # The source's values as they were (the reader may add keys of its own; see issue 10).
    assert (
        listing["sample"][0]["raw"].items()
        >= {
            "order_id": "o2",
            "user_id": "u1",
            "order_ts": "2026-01-05 10:00:00",
            "status": "done",
            "total_amount": "5",
        }.items()
    )
    bad_value = run_cli("--project", str(tmp_path), "quarantine", "--json", "--reason", "bad_value")
    narrowed = json.loads(bad_value.stdout)
    assert narrowed["counts"] == [{"table": "orders", "reason": "bad_value", "rows": 2}]
    assert [r["row"] for r in narrowed["sample"]] == [3, 6]
    other = run_cli("--project", str(tmp_path), "quarantine", "--json", "--table", "users")
    assert json.loads(other.stdout) == {"counts": [], "sample": []}
    table = run_cli("--project", str(tmp_path), "quarantine")
    assert table.returncode == 0, table.stderr
    lines = [line.replace("│", " ").split() for line in table.stdout.splitlines()]
    assert ["orders", "negative_amount", "3"] in [line[:3] for line in lines]
    assert ["orders", "orders.csv", "3", "bad_value"] in [line[:4] for line in lines]


def test_replay_through_the_cli_releases_the_fixed_rows(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text(
        "user_id,signup_ts\nu1,2026-01-05 10:00:00\nu2,05/01/2026 11:00\nu3,never\n"
    )
    assert (
        run_cli("--project", str(tmp_path), "ingest", str(tmp_path / "users.csv")).returncode == 0
    )
    (tmp_path / "productlens.toml").write_text(
        '[ingest.tables.users]\ntimestamp_format = "%d/%m/%Y %H:%M"\n'
    )
    replayed = run_cli("--project", str(tmp_path), "ingest", "--replay")
    assert replayed.returncode == 0, replayed.stderr
    lake = open_lake(tmp_path / "warehouse.duckdb")
    try:
        assert lake.fetch_all("SELECT user_id, signup_ts FROM raw.users ORDER BY 1") == [
            ("u1", datetime(2026, 1, 5, 10)),
            ("u2", datetime(2026, 1, 5, 11)),
        ]
        assert lake.fetch_all(
            "SELECT row_number, released_at IS NOT NULL FROM raw.quarantine ORDER BY 1"
        ) == [(3, True), (4, False)]
    finally:
        lake.close()
    shown = json.loads(run_cli("--project", str(tmp_path), "quarantine", "--json").stdout)
    assert [r["row"] for r in shown["sample"]] == [4]


def test_future_tolerance_bounds_exactly(lake: LakeProcessor, tmp_path: Path) -> None:
    limit = (NOW + timedelta(hours=2)).replace(tzinfo=None)
    (tmp_path / "events.csv").write_text(
        "event_id,user_id,event_type,event_ts\n"
        f"e1,u1,login,{limit}\ne2,u1,login,{limit + timedelta(seconds=1)}\n"
    )
    ingest_paths(
        lake, [tmp_path / "events.csv"], config=IngestConfig(future_tolerance_hours=2), now=NOW
    )
    assert lake.fetch_all("SELECT event_id FROM raw.events") == [("e1",)]
    assert lake.fetch_all("SELECT row_number, reasons FROM raw.quarantine") == [
        (3, ["future_timestamp"])
    ]


def test_future_tolerance_through_the_cli(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    inside = now + timedelta(hours=3, minutes=-30)
    outside = now + timedelta(hours=3, minutes=30)
    (tmp_path / "productlens.toml").write_text("[ingest]\nfuture_tolerance_hours = 3\n")
    (tmp_path / "events.csv").write_text(
        f"event_id,user_id,event_type,event_ts\ne1,u1,login,{inside}\ne2,u1,login,{outside}\n"
    )
    result = run_cli("--project", str(tmp_path), "ingest", str(tmp_path / "events.csv"))
    assert result.returncode == 0, result.stderr
    shown = json.loads(run_cli("--project", str(tmp_path), "quarantine", "--json").stdout)
    assert [(r["row"], r["reasons"]) for r in shown["sample"]] == [(3, ["future_timestamp"])]


NOBODY = 65534


def as_other_user(script: str, path: Path) -> int:
    """Run a shell snippet on `path` as an unprivileged user (root may write anything)."""
    user = NOBODY if os.geteuid() == 0 else None
    proc = subprocess.run(["sh", "-c", script, "sh", str(path)], user=user, check=False)
    return proc.returncode


def test_rewritten_raw_files_are_sealed_read_only() -> None:
    root = Path(tempfile.mkdtemp(prefix="productlens-seal-"))
    os.chmod(root, 0o755)  # so that the unprivileged writer below can reach the file
    (root / "users.csv").write_text(USERS)
    assert run_cli("--project", str(root), "ingest", str(root / "users.csv")).returncode == 0
    lake = open_lake(root / "warehouse.duckdb")
    try:
        paths = lake.fetch_all("SELECT path, copied FROM ops.raw_files")
    finally:
        lake.close()
    [(relative, copied)] = paths
    raw = root / relative
    assert not copied
    assert raw.name.endswith("-rows.parquet")
    mode = raw.stat().st_mode
    assert mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) == 0
    before = raw.read_bytes()
    assert as_other_user('test -r "$1"', raw) == 0  # it can be read ...
    assert as_other_user('printf x >> "$1"', raw) != 0  # ... but not written
    assert raw.read_bytes() == before


# --- found breaking it: a forced load of a referenced table ------------------------------


def test_force_of_users_names_the_rows_of_other_tables_it_leaves_without_their_user(
    tmp_path: Path,
) -> None:
    """Forcing users.csv with a user fewer takes u2 out of raw.users; the events that
    passed their reference check against u2 stay loaded (raw files are never edited),
    so the forced load must say how many rows of which table now miss their user
    instead of leaving the warehouse inconsistent in silence."""
    users = tmp_path / "users.csv"
    users.write_text(USERS)
    events = tmp_path / "events.csv"
    events.write_text(
        "event_id,user_id,event_type,event_ts\n"
        "e1,u1,login,2026-01-05 12:00:00\ne2,u2,login,2026-01-06 12:00:00\n"
        "e3,u2,logout,2026-01-06 13:00:00\n"
    )
    first = run_cli("--project", str(tmp_path), "ingest", str(users), str(events))
    assert first.returncode == 0, first.stderr
    users.write_text("user_id,signup_ts,segment\nu1,2026-01-05 10:00:00,Budget\n")
    forced = run_cli("--project", str(tmp_path), "ingest", str(users), "--force")
    assert forced.returncode == 0, forced.stderr
    lake = open_lake(tmp_path / "warehouse.duckdb")
    try:
        orphans = lake.fetch_all(
            "SELECT count(*) FROM raw.events e WHERE NOT EXISTS "
            "(SELECT 1 FROM raw.users u WHERE u.user_id = e.user_id)"
        )
    finally:
        lake.close()
    assert orphans == [(2,)]
    said = " ".join(forced.stdout.split())
    assert "2 rows of raw.events reference users no longer in raw.users" in said


def test_force_of_an_unchanged_referenced_table_says_nothing_of_other_tables(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    (tmp_path / "users.csv").write_text(USERS)
    (tmp_path / "events.csv").write_text(EVENTS)
    ingest_paths(lake, [tmp_path], now=NOW)
    result = ingest_paths(lake, [tmp_path / "users.csv"], force=True, now=NOW)
    assert [n for n in result.batches[0].notes if "no longer" in n] == []


# --- tests that kill mutations that survived the suite ---------------------------------


def files_under(root: Path | None) -> list[Path]:
    assert root is not None
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize("error", [KeyboardInterrupt, EngineError])
def test_a_batch_failing_after_it_wrote_its_files_removes_them(
    lake: LakeProcessor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type
) -> None:
    """A Ctrl-C or an lake error when the batch's files (one copied, one rewritten)
    are written but not yet logged: the batch itself removes them, not only the next
    ingest's sweep."""
    folder = tmp_path / "users"
    folder.mkdir()
    write_users(folder / "a.parquet", "parquet")  # copied byte for byte
    (folder / "b.csv").write_text("user_id,signup_ts\nb1,2026-01-06 10:00:00\n")  # rewritten

    def fail(*args: object) -> None:
        raise error("struck") if error is EngineError else error()

    monkeypatch.setattr("productlens.ingest.batch._log", fail)
    with pytest.raises(IngestError if error is EngineError else KeyboardInterrupt):
        ingest_paths(lake, [folder], now=NOW)
    assert files_under(lake.raw_root) == []
    assert set(raw_counts(lake).values()) == {0}


def test_exact_copies_of_warned_rows_are_not_recorded_as_loaded_with_warnings(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    """A row that is an exact copy of one loaded before does not load, so it is not a
    row loaded with a warning either."""
    (tmp_path / "users.csv").write_text(USERS)
    first = tmp_path / "events.csv"
    first.write_text("event_id,user_id,event_type,event_ts\ne1,ghost,login,2026-01-05 10:00:00\n")
    ingest_paths(lake, [tmp_path / "users.csv", first], now=NOW)
    again = tmp_path / "events_again.csv"
    again.write_text(first.read_text() + "e2,phantom,login,2026-01-05 10:01:00\n")
    result = ingest_paths(lake, [again], table="events", now=NOW)
    assert (result.batches[0].rows_duplicate, result.batches[0].rows_warned) == (1, 1)
    assert lake.fetch_all(
        "SELECT source_file, row_number FROM ops.warned_rows ORDER BY ALL"
    ) == sorted([(str(first.resolve()), 2), (str(again.resolve()), 3)])


def test_a_replayed_row_failing_for_the_same_reason_keeps_no_history(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    (tmp_path / "users.csv").write_text("user_id,signup_ts\nu1,never\n")
    ingest_paths(lake, [tmp_path / "users.csv"], now=NOW)
    replay(lake, now=NOW)
    assert lake.fetch_all("SELECT reasons, reason_history FROM raw.quarantine") == [
        (["bad_timestamp"], [])
    ]


def two_formats_file(tmp_path: Path) -> Path:
    """users.csv: line 2 loads, lines 3 and 4 only with a day-first format, line 5 never."""
    path = tmp_path / "users.csv"
    path.write_text(
        "user_id,signup_ts\nu1,2026-01-05 10:00:00\nu2,05/01/2026 11:00\n"
        "u3,06/01/2026 11:00\nu4,never\n"
    )
    return path


DAY_FIRST = IngestConfig(tables={"users": TableIngestConfig(timestamp_format="%d/%m/%Y %H:%M")})


def test_a_replay_after_a_force_releases_only_the_forced_loads_rows(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    path = two_formats_file(tmp_path)
    ingest_paths(lake, [path], now=NOW)
    ingest_paths(lake, [path], force=True, now=NOW)
    old, new = batch_of(lake, path)
    released = replay(lake, config=DAY_FIRST, now=NOW)
    assert released.rows == {"users": 2}
    fates = lake.fetch_all(
        "SELECT batch_id, row_number, released_at IS NOT NULL, superseded_at IS NOT NULL "
        "FROM raw.quarantine ORDER BY batch_id = ?, row_number",
        [new],
    )
    assert fates == [
        (old, 3, False, True),  # superseded rows stay as they were: not released
        (old, 4, False, True),
        (old, 5, False, True),
        (new, 3, True, False),
        (new, 4, True, False),
        (new, 5, False, False),
    ]
    assert lake.fetch_all("SELECT count(*), count(DISTINCT user_id) FROM raw.users") == [(3, 3)]


def test_a_force_after_a_replay_counts_only_still_held_rows_as_quarantined(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    path = two_formats_file(tmp_path)
    ingest_paths(lake, [path], now=NOW)
    replayed = replay(lake, config=DAY_FIRST, now=NOW)
    forced = ingest_paths(lake, [path], force=True, now=NOW)
    first = batch_of(lake, path)[0]
    assert superseded(lake) == sorted(
        [
            (first, str(path.resolve()), 1, 1, forced.batches[0].batch_id),  # u4 still held
            (replayed.batches[0].batch_id, str(path.resolve()), 2, 0, forced.batches[0].batch_id),
        ]
    )
    assert lake.fetch_all("SELECT user_id FROM raw.users") == [("u1",)]


def test_force_of_a_changed_file_at_the_same_path_replaces_its_rows(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    path = tmp_path / "users.csv"
    path.write_text(USERS)
    ingest_paths(lake, [path], now=NOW)
    path.write_text("user_id,signup_ts,segment\nu1,2026-01-05 10:00:00,Premium\n")
    ingest_paths(lake, [path], force=True, now=NOW)
    assert lake.fetch_all("SELECT user_id, segment FROM raw.users") == [("u1", "Premium")]


def test_a_third_force_supersedes_each_earlier_load_once(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    path = tmp_path / "users.csv"
    path.write_text(USERS)
    for force in (False, True, True):
        ingest_paths(lake, [path], force=force, now=NOW)
    first, second, third = batch_of(lake, path)
    assert superseded(lake) == sorted(
        [(first, str(path.resolve()), 2, 0, second), (second, str(path.resolve()), 2, 0, third)]
    )


def test_a_force_loading_no_row_still_takes_the_earlier_rows_out(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    path = tmp_path / "users.csv"
    path.write_text(USERS)
    ingest_paths(lake, [path], now=NOW)
    result = ingest_paths(lake, [path], config=DAY_FIRST, force=True, now=NOW)
    assert (result.batches[0].rows_loaded, result.batches[0].rows_quarantined) == (0, 2)
    assert raw_counts(lake)["users"] == 0
