"""Hostile inputs found by breaking ingestion on purpose, as a new user would: each case is
a file that was loaded with a changed value, lost a value in silence, or failed with a
misleading message. One row of a table = one case."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from productlens.config import IngestConfig, TableIngestConfig
from productlens.errors import IngestError
from productlens.ingest import ingest_paths
from productlens.ingest.processor import LakeProcessor

NOW = datetime(2026, 11, 22, tzinfo=UTC)
EVENT = '"event_id":"{id}","user_id":"u1","event_type":"view","event_ts":"2026-01-05T10:00:00Z"'


def line(event_id: str, extra: str = "") -> str:
    return "{" + EVENT.format(id=event_id) + extra + "}"


def held(lake: LakeProcessor) -> list[tuple[int, list[str], object]]:
    return [
        (r[0], list(r[1]), json.loads(r[2]))
        for r in lake.fetch_all(
            "SELECT row_number, reasons, raw_values FROM raw.quarantine ORDER BY row_number"
        )
    ]


# --- JSON Lines: a line that is not one unambiguous object ---------------------------------

# (the middle line, what raw.events holds for it: None = quarantined as malformed_line)
JSON_LINES = [
    # two values for one key: keeping either would drop the other in silence
    pytest.param(line("e2", ',"device":"ios","device":"android"'), None, id="duplicate-key"),
    pytest.param(line("e2", ',"Device":"ios","device":"android"'), "error", id="keys-by-case"),
    # an id written as -0 keeps its sign, as every other number keeps its text
    pytest.param(line("e2").replace('"e2"', "-0"), ("-0", None), id="minus-zero-id"),
    pytest.param(line("e2", ',"device":-0'), ("e2", "-0"), id="minus-zero-value"),
    pytest.param(
        line("e2", ',"device":[-0, -0.0,-0 ]'), ("e2", "[-0,-0.0,-0]"), id="minus-zero-list"
    ),
]


@pytest.mark.parametrize(("middle", "expected"), JSON_LINES)
def test_json_lines_values_are_exact_or_held(
    lake: LakeProcessor, tmp_path: Path, middle: str, expected: object
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([line("e1"), middle, line("e3")]) + "\n")
    if expected == "error":
        with pytest.raises(IngestError, match="differ only in case"):
            ingest_paths(lake, [path], now=NOW)
        return
    ingest_paths(lake, [path], now=NOW)
    rows = lake.fetch_all("SELECT event_id, device FROM raw.events ORDER BY _row_number")
    if expected is None:
        assert held(lake) == [(2, ["malformed_line"], middle)]
        assert rows == [("e1", None), ("e3", None)]
    else:
        assert held(lake) == []
        assert rows == [("e1", None), expected, ("e3", None)]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            json.dumps([json.loads(line("e1")), json.loads(line("e2"))], indent=2), id="array"
        ),
        pytest.param(json.dumps(json.loads(line("e1")), indent=2), id="pretty-object"),
        pytest.param(line("e1") + " " + line("e2"), id="two-objects-one-line"),
    ],
)
def test_a_file_with_no_json_object_line_is_named_as_such(
    lake: LakeProcessor, tmp_path: Path, text: str
) -> None:
    """A JSON document saved as .jsonl is not reported as missing columns."""
    path = tmp_path / "events.jsonl"
    path.write_text(text)
    with pytest.raises(IngestError, match=r"no line is one JSON object \(line 1: ") as info:
        ingest_paths(lake, [path], now=NOW)
    assert str(path) in str(info.value)
    assert lake.fetch_all("SELECT count(*) FROM ops.ingest_log") == [(0,)]


# --- times ----------------------------------------------------------------------------------

# (text, timezone, the stored UTC time; None = bad_timestamp)
TIMES = [
    # the clocks jump from 02:00 to 03:00: 02:30 never happened in Berlin that night
    ("2026-03-29T02:30:00", "Europe/Berlin", None),
    # 02:30 happened twice (CEST, then CET): either instant would be a guess
    ("2026-10-25T02:30:00", "Europe/Berlin", None),
    ("2026-10-25 02:00:00", "Europe/Berlin", None),
    ("2026-10-25T03:00:00", "Europe/Berlin", "2026-10-25 02:00:00"),
    ("2026-10-25T01:59:59", "Europe/Berlin", "2026-10-24 23:59:59"),
    ("2026-03-29T03:00:00", "Europe/Berlin", "2026-03-29 01:00:00"),
    ("2026-03-29T01:59:59", "Europe/Berlin", "2026-03-29 00:59:59"),
    # an explicit offset settles it
    ("2026-10-25T02:30:00+02:00", "Europe/Berlin", "2026-10-25 00:30:00"),
    ("2026-10-25T02:30:00+01:00", "Europe/Berlin", "2026-10-25 01:30:00"),
    # Lord Howe Island moves its clocks by 30 minutes
    ("2026-04-05T01:45:00", "Australia/Lord_Howe", None),
    ("2026-10-04T02:15:00", "Australia/Lord_Howe", None),
    ("2026-01-05T10:00:00", "Europe/Berlin", "2026-01-05 09:00:00"),
    # more digits than a microsecond holds: refused, not cut
    ("2026-01-05T10:00:00.1234567", "UTC", None),
    ("2026-01-05T10:00:00.1234567Z", "UTC", None),
    ("2026-01-05T10:00:00.123456789", "Europe/Berlin", None),
    ("2026-01-05T10:00:00.1234560", "UTC", "2026-01-05 10:00:00.123456"),
    ("2026-01-05T10:00:00.123456000+01:00", "UTC", "2026-01-05 09:00:00.123456"),
]


@pytest.mark.parametrize(("text", "zone", "expected"), TIMES)
def test_times_that_do_not_exist_are_ambiguous_or_too_fine_are_held(
    lake: LakeProcessor, tmp_path: Path, text: str, zone: str, expected: str | None
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(f"event_id,user_id,event_type,event_ts\ne1,u1,view,{text}\n")
    config = IngestConfig(tables={"events": TableIngestConfig(timezone=zone)})
    ingest_paths(lake, [path], now=NOW, config=config)
    stored = lake.fetch_all("SELECT CAST(event_ts AS VARCHAR) FROM raw.events")
    if expected is None:
        assert stored == []
        assert [r[:2] for r in held(lake)] == [(2, ["bad_timestamp"])]
    else:
        assert stored == [(expected,)]


# --- --map ----------------------------------------------------------------------------------


def test_a_map_from_a_column_the_file_lacks_is_an_error(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    """`--map devise=device` (a typo) used to load every row with no device, exit 0."""
    path = tmp_path / "events.csv"
    path.write_text("event_id,user_id,event_type,event_ts,dev\ne1,u1,view,2026-01-05,ios\n")
    with pytest.raises(IngestError, match=r"--map devise=device: no column 'devise'") as info:
        ingest_paths(lake, [path], now=NOW, mapping={"devise": "device"})
    assert "dev" in str(info.value)
    assert lake.fetch_all("SELECT count(*) FROM ops.ingest_log") == [(0,)]


def test_a_map_applies_to_the_tables_that_have_its_target(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    """A folder of several tables with `--map uid=user_id` used to fail on the first table
    without a user_id column."""
    (tmp_path / "users.csv").write_text("uid,signup_ts\nu1,2026-01-01\n")
    (tmp_path / "events.csv").write_text(
        "event_id,uid,event_type,event_ts\ne1,u1,view,2026-01-05\n"
    )
    (tmp_path / "products.csv").write_text("product_id,price,updated_at\np1,2.5,2026-01-01\n")
    result = ingest_paths(lake, [tmp_path], now=NOW, mapping={"uid": "user_id"})
    assert result.rows == {"users": 1, "events": 1, "products": 1}
    assert lake.fetch_all("SELECT user_id FROM raw.events") == [("u1",)]
    with pytest.raises(IngestError, match="cannot map onto 'nosuch'"):
        ingest_paths(lake, [tmp_path], now=NOW, mapping={"uid": "nosuch"})


# --- files that cannot be read get a message that says why, naming the file ----------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"\n\n", "the file is empty"),
        (b"user_id,signup_ts\rA,2026-01-05\rB,2026-01-06\r", "bare carriage return"),
        ("user_id,signup_ts\nA,2026-01-05\n".encode("utf-16-le"), "UTF-16 or UTF-32"),
    ],
    ids=["empty", "blank-lines", "bare-cr", "utf16-without-bom"],
)
def test_unreadable_csv_files_say_why(
    lake: LakeProcessor, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(content)
    with pytest.raises(IngestError, match=message) as info:
        ingest_paths(lake, [path], now=NOW)
    assert "users.csv" in str(info.value)
    assert lake.fetch_all("SELECT count(*) FROM raw.users") == [(0,)]
