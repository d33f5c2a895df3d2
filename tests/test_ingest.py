"""Ingestion: every row loaded or quarantined with a reason, never lost, safe to repeat."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from productlens.config import IngestConfig, TableIngestConfig
from productlens.errors import IngestError
from productlens.ingest import BatchResult, ingest_paths, replay
from productlens.ingest.contracts import CONTRACTS
from productlens.ingest.processor import LakeProcessor
from productlens.simulate import generate, preset
from tests.conftest import open_lake, run_cli
from tests.holders import hold_duckdb

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def quarantine_counts(lake: LakeProcessor) -> dict[tuple[str, str], int]:
    rows = lake.fetch_all(
        "SELECT target_table, r, count(*) FROM (SELECT target_table, unnest(reasons) AS r "
        "FROM raw.quarantine WHERE released_at IS NULL) GROUP BY ALL"
    )
    return {(t, r): n for t, r, n in rows}


def assert_conserved(lake: LakeProcessor) -> None:
    broken = lake.fetch_all(
        "SELECT count(*) FROM ops.ingest_log WHERE kind = 'files' AND "
        "rows_read <> rows_loaded + rows_quarantined + rows_duplicate"
    )
    assert broken == [(0,)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate(preset(users=500, days=10, seed=5, users_per_block=200), out)
    return out


@pytest.fixture(scope="module")
def dirty_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dirty")
    generate(preset(users=4000, days=30, seed=8, dirty=True), out, workers=2)
    return out


def test_loads_every_table_once(lake: LakeProcessor, world: Path) -> None:
    files = sorted(world.rglob("*.parquet"))
    truth = json.loads((world / "truth.json").read_text())
    first = ingest_paths(lake, [world], now=NOW)
    assert len(first.loaded_files) == len(files)
    assert first.rows == {t: n for t, n in truth["rows"].items() if n}
    assert first.quarantined == 0
    for table, n in truth["rows"].items():
        assert lake.fetch_all(f"SELECT count(*) FROM raw.{table}") == [(n,)], table
    again = ingest_paths(lake, [world], now=NOW)
    assert again.rows == {}
    assert len(again.skipped_files) == len(files)
    total = sum(truth["rows"].values())
    logged = lake.fetch_all("SELECT sum(rows_read), sum(rows_loaded) FROM ops.ingest_log")
    assert logged == [(total, total)]
    assert_conserved(lake)


def test_lineage_points_at_file_and_row(lake: LakeProcessor, world: Path) -> None:
    ingest_paths(lake, [world / "users"], now=NOW)
    rows = lake.fetch_all(
        "SELECT _source_file, min(_row_number), max(_row_number), count(*) FROM raw.users "
        "GROUP BY 1 ORDER BY 1"
    )
    assert [r[1:] for r in rows] == [(1, 200, 200), (1, 200, 200), (1, 100, 100)]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_row_numbers_point_at_the_line_in_large_text_files(tmp_path: Path, fmt: str) -> None:
    """Every loaded and quarantined row names its line in the file (a CSV header is line
    1), even when the lake reads large files with several threads (two files in one
    batch)."""
    lake = open_lake(tmp_path / "w.duckdb", memory_limit="2GB", threads=2)
    bad = {17, 123_457, 199_999}
    n = 200_000
    for part in ("a", "b"):
        folder = tmp_path / part / "users"
        folder.mkdir(parents=True)
        values = [("never" if i in bad else "2026-01-05 10:00:00") for i in range(1, n + 1)]
        if fmt == "csv":
            lines = [f"{part}{i},{v}" for i, v in enumerate(values, start=1)]
            (folder / "users.csv").write_text("user_id,signup_ts\n" + "\n".join(lines) + "\n")
        else:
            lines = [
                json.dumps({"user_id": f"{part}{i}", "signup_ts": v})
                for i, v in enumerate(values, start=1)
            ]
            (folder / "users.jsonl").write_text("\n".join(lines) + "\n")
    ingest_paths(lake, [tmp_path / "a", tmp_path / "b"], now=NOW)
    header = 1 if fmt == "csv" else 0
    wrong = lake.fetch_all(
        "SELECT count(*) FROM raw.users "
        "WHERE CAST(substr(user_id, 2) AS INTEGER) + ? <> _row_number",
        [header],
    )
    assert wrong == [(0,)]
    held = lake.fetch_all(
        "SELECT json_extract_string(raw_values, '$.user_id'), row_number FROM raw.quarantine "
        "ORDER BY 1"
    )
    assert held == sorted((f"{p}{i}", i + header) for p in ("a", "b") for i in bad)
    lake.close()


def test_dirty_world_quarantine_equals_the_manifest(lake: LakeProcessor, dirty_world: Path) -> None:
    truth = json.loads((dirty_world / "truth.json").read_text())
    result = ingest_paths(lake, [dirty_world], now=NOW)
    expected = {
        (table, reason): n
        for table, faults in truth["dirty"]["faults"].items()
        for reason, n in faults.items()
        if n
    }
    assert quarantine_counts(lake) == expected
    # Clean rows all load: the rest of every table is there.
    for table, n in truth["rows"].items():
        held = sum(v for (t, _), v in expected.items() if t == table)
        assert lake.fetch_all(f"SELECT count(*) FROM raw.{table}") == [(n - held,)], table
    assert result.quarantined == sum(expected.values())
    assert_conserved(lake)
    # Each held row keeps where it came from and its original values.
    sample = lake.fetch_all(
        "SELECT source_file, row_number, raw_values FROM raw.quarantine "
        "WHERE list_contains(reasons, 'bad_timestamp') LIMIT 1"
    )[0]
    assert Path(sample[0]).exists()
    original = pq.read_table(sample[0]).slice(sample[1] - 1, 1).to_pylist()[0]
    assert json.loads(sample[2])["event_ts"] == original["event_ts"]


def test_reingest_adds_nothing_even_under_another_name(
    lake: LakeProcessor, world: Path, tmp_path: Path
) -> None:
    ingest_paths(lake, [world / "users"], now=NOW)
    copy = tmp_path / "users" / "renamed.csv"
    copy.parent.mkdir()
    pacsv.write_csv(pq.read_table(world / "users" / "part-00000.parquet"), copy)
    result = ingest_paths(lake, [copy], now=NOW)
    assert result.rows == {}
    assert result.batches[0].rows_duplicate == 200  # exact copies, counted as such
    assert lake.fetch_all("SELECT count(*) FROM raw.users") == [(500,)]
    assert_conserved(lake)


def test_changed_row_under_a_loaded_key_is_quarantined(lake: LakeProcessor, tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("user_id,signup_ts,segment\na,2026-01-01,Budget\n")
    ingest_paths(lake, [tmp_path / "users.csv"], now=NOW)
    (tmp_path / "more" / "users").mkdir(parents=True)
    (tmp_path / "more" / "users" / "b.csv").write_text(
        "user_id,signup_ts,segment\na,2026-01-01,Premium\nb,2026-01-02,Budget\n"
    )
    ingest_paths(lake, [tmp_path / "more"], now=NOW)
    assert quarantine_counts(lake) == {("users", "conflicting_duplicate"): 1}
    assert lake.fetch_all("SELECT user_id, segment FROM raw.users ORDER BY 1") == [
        ("a", "Budget"),
        ("b", "Budget"),
    ]


def test_a_user_export_loads_via_map_and_project_file(tmp_path: Path) -> None:
    """Another team's names, a day-first format and Berlin time, mapped on the way in."""
    export = tmp_path / "export"
    export.mkdir()
    (export / "customers.csv").write_text(
        "customer,joined,plan_tier\nc1,05/01/2026 09:30,Premium\nc2,06/01/2026 23:15,Budget\n"
    )
    (export / "clicks.csv").write_text(
        "id,customer,what,when\nk1,c1,page_view,05/01/2026 10:00\nk2,c2,purchase,07/07/2026 00:30\n"
    )
    (tmp_path / "productlens.toml").write_text(
        "[ingest.tables.users]\n"
        'columns = { customer = "user_id", joined = "signup_ts", plan_tier = "segment" }\n'
        'timestamp_format = "%d/%m/%Y %H:%M"\ntimezone = "Europe/Berlin"\n'
        "[ingest.tables.events]\n"
        'timestamp_format = "%d/%m/%Y %H:%M"\ntimezone = "Europe/Berlin"\n'
    )
    users = run_cli(
        "--project", str(tmp_path), "ingest", str(export / "customers.csv"), "--table", "users"
    )
    assert users.returncode == 0, users.stderr
    events = run_cli(
        "--project", str(tmp_path), "ingest", str(export / "clicks.csv"), "--table", "events",
        "--map", "id=event_id", "--map", "customer=user_id", "--map", "what=event_type",
        "--map", "when=event_ts",
    )  # fmt: skip
    assert events.returncode == 0, events.stderr
    lake = open_lake(tmp_path / "warehouse.duckdb")
    try:
        assert lake.fetch_all("SELECT user_id, signup_ts, segment FROM raw.users ORDER BY 1") == [
            ("c1", datetime(2026, 1, 5, 8, 30), "Premium"),  # CET is UTC+1
            ("c2", datetime(2026, 1, 6, 22, 15), "Budget"),
        ]
        assert lake.fetch_all("SELECT event_id, event_ts FROM raw.events ORDER BY 1") == [
            ("k1", datetime(2026, 1, 5, 9, 0)),
            ("k2", datetime(2026, 7, 6, 22, 30)),  # CEST is UTC+2: the day changes
        ]
    finally:
        lake.close()


def test_replay_after_a_fix_releases_exactly_the_fixed_rows(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    (tmp_path / "users.csv").write_text(
        "user_id,signup_ts\nu1,2026-01-05 10:00:00\nu2,05/01/2026 11:00\nu3,06/01/2026 12:00\n"
        "u4,never\n"
    )
    ingest_paths(lake, [tmp_path / "users.csv"], now=NOW)
    assert quarantine_counts(lake) == {("users", "bad_timestamp"): 3}
    fixed = IngestConfig(tables={"users": TableIngestConfig(timestamp_format="%d/%m/%Y %H:%M")})
    result = replay(lake, config=fixed, now=NOW)
    assert result.rows == {"users": 2}
    assert quarantine_counts(lake) == {("users", "bad_timestamp"): 1}  # "never" stays
    assert lake.fetch_all("SELECT user_id FROM raw.users ORDER BY 1") == [
        ("u1",),
        ("u2",),
        ("u3",),
    ]
    released = lake.fetch_all("SELECT count(*) FROM raw.quarantine WHERE released_at IS NOT NULL")
    assert released == [(2,)]
    assert replay(lake, config=fixed, now=NOW).rows == {}  # nothing more to release


def test_unknown_user_warns_by_default_and_can_quarantine(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    (tmp_path / "events.csv").write_text(
        "event_id,user_id,event_type,event_ts\ne1,ghost,login,2026-01-05 10:00:00\n"
    )
    warned = ingest_paths(lake, [tmp_path / "events.csv"], now=NOW)
    assert warned.rows == {"events": 1}
    assert warned.batches[0].rows_warned == 1
    (tmp_path / "strict" / "events").mkdir(parents=True)
    (tmp_path / "strict" / "events" / "e.csv").write_text(
        "event_id,user_id,event_type,event_ts\ne2,ghost,login,2026-01-05 10:00:00\n"
    )
    strict = IngestConfig(unknown_references={"users": "quarantine"})
    ingest_paths(lake, [tmp_path / "strict"], config=strict, now=NOW)
    assert quarantine_counts(lake) == {("events", "unknown_user"): 1}


def test_unknown_references_are_found_among_loaded_rows(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    (tmp_path / "users.csv").write_text("user_id,signup_ts\nu1,2026-01-05 09:00:00\n")
    ingest_paths(lake, [tmp_path / "users.csv"], now=NOW)
    header = "event_id,user_id,event_type,event_ts\n"
    (tmp_path / "a" / "events").mkdir(parents=True)
    (tmp_path / "a" / "events" / "e.csv").write_text(
        header + "e1,u1,login,2026-01-05 10:00:00\ne2,ghost,login,2026-01-05 10:01:00\n"
        "e3,u1,login,2026-01-05 10:02:00\ne4,ghost,login,2026-01-05 10:03:00\n"
    )
    warned = ingest_paths(lake, [tmp_path / "a"], now=NOW)
    assert (warned.batches[0].rows_loaded, warned.batches[0].rows_warned) == (4, 2)
    (tmp_path / "b" / "events").mkdir(parents=True)
    (tmp_path / "b" / "events" / "e.csv").write_text(
        header + "e5,u1,login,2026-01-05 11:00:00\ne6,phantom,login,2026-01-05 11:01:00\n"
    )
    strict = IngestConfig(unknown_references={"users": "quarantine"})
    result = ingest_paths(lake, [tmp_path / "b"], config=strict, now=NOW)
    assert (result.batches[0].rows_loaded, result.batches[0].rows_quarantined) == (1, 1)
    held = lake.fetch_all("SELECT row_number, reasons FROM raw.quarantine")
    assert held == [(3, ["unknown_user"])]  # line 3 of the file
    (tmp_path / "c" / "events").mkdir(parents=True)
    (tmp_path / "c" / "events" / "e.csv").write_text(header + "e7,u1,login,2026-01-05 12:00:00\n")
    clean = ingest_paths(lake, [tmp_path / "c"], config=strict, now=NOW)
    assert (clean.batches[0].rows_loaded, clean.batches[0].rows_warned) == (1, 0)


ORDER_HEADER = "order_id,user_id,order_ts,status,total_amount\n"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("o1,u,2026-01-05,done,5", "bad_value"),
        ("o1,u,2026-01-05,completed,lots", "bad_type"),
        ("o1,u,2026-01-05,completed,-1", "negative_amount"),
        (",u,2026-01-05,completed,1", "null_key"),
        ("o1,u,2026-01-05,,1", "missing_value"),
        ("o1,u,2099-01-05,completed,1", "future_timestamp"),
        ("o1,u,2026-01-05,completed", "malformed_line"),  # a short line
        ("o1,u,5th of May,completed,1", "bad_timestamp"),
    ],
)
def test_each_reason(lake: LakeProcessor, tmp_path: Path, line: str, reason: str) -> None:
    (tmp_path / "orders.csv").write_text(ORDER_HEADER + line + "\n")
    result = ingest_paths(lake, [tmp_path / "orders.csv"], now=NOW)
    assert result.quarantined == 1
    held = lake.fetch_all("SELECT reasons, source_file, row_number FROM raw.quarantine")
    assert reason in held[0][0]
    assert held[0][1].endswith("orders.csv")
    assert held[0][2] == 2  # the line in the file: the header is line 1


def test_missing_required_columns_are_named(lake: LakeProcessor, tmp_path: Path) -> None:
    pacsv.write_csv(pa.table({"customer": ["a"], "ts": ["2026-01-01"]}), tmp_path / "users.csv")
    with pytest.raises(IngestError) as info:
        ingest_paths(lake, [tmp_path / "users.csv"], now=NOW)
    message = str(info.value)
    assert "user_id, signup_ts" in message
    assert "customer, ts" in message  # what the file has instead
    assert "--map" in message
    assert "users.csv" in message
    assert lake.fetch_all("SELECT count(*) FROM raw.users") == [(0,)]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("nothing/here.parquet", None, "no such file"),
        ("mystery.csv", "a\n1\n", "cannot tell which table"),
        ("users.parquet", "not parquet at all", "cannot read the file"),
        ("users.txt", "x", "unsupported file type"),
    ],
)
def test_unusable_files(
    lake: LakeProcessor, tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(IngestError, match=message) as info:
        ingest_paths(lake, [tmp_path / name], now=NOW)
    assert Path(name).name in str(info.value)


def test_mapping_onto_an_unknown_column_is_refused(lake: LakeProcessor, tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("user_id,signup_ts\na,2026-01-01\n")
    with pytest.raises(IngestError, match="cannot map onto 'signup'"):
        ingest_paths(lake, [tmp_path / "users.csv"], mapping={"x": "signup"}, now=NOW)


# --- fuzzing: malformed files never crash and never lose a row --------------------------

cell = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12),
    st.sampled_from(["2026-01-05 10:00:00", "-3", "1e9", "9999-99-99", "NaN", "u1", "\\N", '"']),
)
HEADER = ["event_id", "user_id", "event_type", "event_ts", "amount"]


def _ingest_fuzzed(folder: Path, path: Path) -> tuple[BatchResult | None, LakeProcessor]:
    lake = open_lake(folder / "w.duckdb", memory_limit="512MB", threads=1)
    try:
        result = ingest_paths(lake, [path], now=NOW)
    except IngestError as exc:
        message = str(exc)  # a clear, one-line reason naming the file; nothing written
        assert "\n" not in message
        assert path.name in message
        assert lake.fetch_all("SELECT count(*) FROM raw.events") == [(0,)]
        return None, lake
    batch = result.batches[0]
    assert batch.rows_read == batch.rows_loaded + batch.rows_quarantined + batch.rows_duplicate
    stored = lake.fetch_all("SELECT count(*) FROM raw.events")[0][0]
    held = lake.fetch_all("SELECT count(*) FROM raw.quarantine")[0][0]
    assert (stored, held) == (batch.rows_loaded, batch.rows_quarantined)
    return batch, lake


@settings(max_examples=40, deadline=None)
@example(rows=[["0"], [None, None, None, "00", "00", None]], extra_columns=[], fmt="csv")
@example(rows=[['"'], [""]], extra_columns=[], fmt="csv")
@example(rows=[["0\r0"]], extra_columns=[], fmt="csv")
# A record quoted well over two lines, with too few fields: one malformed row, not two.
@example(rows=[["\n"]], extra_columns=[], fmt="csv")
@given(
    rows=st.lists(st.lists(cell, min_size=0, max_size=7), min_size=1, max_size=12),
    extra_columns=st.lists(st.sampled_from(["junk", "user_id", "event_ts"]), max_size=2),
    fmt=st.sampled_from(["csv", "jsonl"]),
)
def test_fuzzed_rows_are_all_accounted_for(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[list[str | None]],
    extra_columns: list[str],
    fmt: str,
) -> None:
    """Well-formed files with hostile contents and ragged rows: every row is loaded or
    quarantined, exactly."""
    folder = tmp_path_factory.mktemp("fuzz")
    header = list(dict.fromkeys([*HEADER, *extra_columns]))
    path = folder / f"events.{fmt}"
    if fmt == "csv":
        lines = []
        for row in rows:
            buffer = io.StringIO()
            # Every field quoted: a bare carriage return is a line break to a CSV reader
            # (old Mac files), so unquoted it would be a second row, not a wrong count.
            writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
            writer.writerow(["" if v is None else v for v in row])
            lines.append(buffer.getvalue().rstrip("\n"))
        path.write_text("\n".join([",".join(header), *lines]) + "\n")
        expected = sum(1 for line in lines if line)  # a blank line holds no row
    else:
        path.write_text(
            "\n".join(json.dumps(dict(zip(header, r, strict=False))) for r in rows) + "\n"
        )
        expected = len(rows)
    batch, lake = _ingest_fuzzed(folder, path)
    lake.close()
    if batch is not None:
        assert batch.rows_read == expected


@settings(max_examples=30, deadline=None)
@example(text='"0\n0', fmt="csv")  # a header with a quoted newline: a one-line error
@example(text="a,b\n1,2,3\n", fmt="csv")  # a surplus field
@given(
    text=st.text(alphabet=st.sampled_from(list('ab,;"\n\r\t {}:[]0-9')), max_size=200),
    fmt=st.sampled_from(["csv", "jsonl"]),
)
def test_arbitrary_text_never_crashes(
    tmp_path_factory: pytest.TempPathFactory, text: str, fmt: str
) -> None:
    folder = tmp_path_factory.mktemp("junk")
    path = folder / f"events.{fmt}"
    path.write_text(text)
    _, lake = _ingest_fuzzed(folder, path)
    lake.close()


# --- atomicity ----------------------------------------------------------------------------


def raw_fingerprint(warehouse: Path) -> dict[str, tuple[int, int]]:
    """Per raw table: rows and an order-independent hash of the contract columns."""
    lake = open_lake(warehouse)
    try:
        result = {}
        for table, contract in CONTRACTS.items():
            cols = ", ".join(contract.column_names)
            row = lake.fetch_all(
                f"SELECT count(*), coalesce(sum(hash({cols})), 0) FROM raw.{table}"
            )[0]
            result[table] = (int(row[0]), int(row[1]))
        return result
    finally:
        lake.close()


@pytest.mark.slow
def test_kill_during_a_large_batch_then_rerun_equals_a_clean_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate(preset(users=30_000, days=60, seed=4), data, workers=2)
    clean = run_cli("--project", str(tmp_path / "clean"), "ingest", str(data))
    assert clean.returncode == 0, clean.stderr
    killed_project = tmp_path / "killed"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "productlens",
            "--project",
            str(killed_project),
            "ingest",
            str(data),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert proc.stdout is not None
    events_files = killed_project / "warehouse.raw" / "events"
    for line in proc.stdout:
        if "raw.assignments" in line:  # events, the largest batch, comes next
            # Kill it once it has started writing the raw layer's files, before it commits.
            deadline = time.monotonic() + 30
            while not (events_files.is_dir() and any(events_files.iterdir())):
                assert proc.poll() is None, "ingest finished before it could be killed"
                assert time.monotonic() < deadline, "the events batch never started writing"
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    partial = raw_fingerprint(killed_project / "warehouse.duckdb")
    # The interrupted command left nothing, not even the batches it had finished.
    assert partial == dict.fromkeys(CONTRACTS, (0, 0))
    assert any(events_files.iterdir())  # files written, never listed
    rerun = run_cli("--project", str(killed_project), "ingest", str(data))
    assert rerun.returncode == 0, rerun.stderr
    on_disk = {p.name for p in events_files.iterdir()}
    lake = open_lake(killed_project / "warehouse.duckdb")
    listed = {
        r[0]
        for r in lake.fetch_all("SELECT file_name FROM ops.raw_files WHERE target_table = 'events'")
    }
    lake.close()
    assert on_disk == listed  # what the crash left was swept
    assert raw_fingerprint(killed_project / "warehouse.duckdb") == raw_fingerprint(
        tmp_path / "clean" / "warehouse.duckdb"
    )


def test_a_second_run_on_a_busy_warehouse_is_refused(tmp_path: Path) -> None:
    # Held until the test lets go, not for a fixed time: a CLI slow to start on a loaded
    # machine found a 30-second hold over and loaded the file.
    holder = hold_duckdb(tmp_path / "warehouse.duckdb", read_only=False)
    try:
        (tmp_path / "users.csv").write_text("user_id,signup_ts\na,2026-01-01\n")
        result = run_cli("--project", str(tmp_path), "ingest", str(tmp_path / "users.csv"))
        assert result.returncode == 1
        assert "in use by another process" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        holder.kill()
        holder.wait()
