"""The file readers of ingestion: every line of a CSV, TSV or JSON Lines file (plain, .gz or
.zst, in a declared encoding) is read as the file says or quarantined as `malformed_line`
with its text; row numbers are physical lines; reader internals never meet source data."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from productlens.config import IngestConfig, TableIngestConfig
from productlens.errors import IngestError
from productlens.ingest import ingest_paths, replay
from productlens.ingest.processor import LakeProcessor
from tests.conftest import run_cli

NOW = datetime(2026, 11, 22, tzinfo=UTC)
USERS = "user_id,signup_ts,segment\n"


def held(lake: LakeProcessor) -> list[tuple[int, list[str], object]]:
    """(row_number, reasons, raw_values read as JSON) of every quarantined row."""
    return [
        (r[0], list(r[1]), json.loads(r[2]))
        for r in lake.fetch_all(
            "SELECT row_number, reasons, raw_values FROM raw.quarantine ORDER BY row_number"
        )
    ]


def loaded(lake: LakeProcessor, table: str, columns: str) -> list[tuple[object, ...]]:
    return lake.fetch_all(f"SELECT {columns} FROM raw.{table} ORDER BY _row_number")


# --- CSV: broken quoting, ragged lines -----------------------------------------------------


def test_an_unterminated_quote_quarantines_its_line_only(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    lines = [f"u{i},2026-01-05 10:00:00,s{i}" for i in range(1, 10_001)]
    lines[1] = 'u2,2026-01-05 10:00:00,"s2'  # the quote never closes
    (tmp_path / "users.csv").write_text(USERS + "\n".join(lines) + "\n")
    result = ingest_paths(lake, [tmp_path / "users.csv"], now=NOW)
    assert (result.total_rows, result.quarantined) == (9_999, 1)
    assert held(lake) == [(3, ["malformed_line"], lines[1])]
    rows = loaded(lake, "users", "user_id, segment, _row_number")
    expected = [(f"u{i}", f"s{i}", i + 1) for i in range(1, 10_001) if i != 2]
    assert rows == expected


@pytest.mark.parametrize(
    "line",
    [
        'u2,2026-01-05,"abc"defgh',
        'u2,2026-01-05,"Größe "XL" Hemd"',
        'u2,2026-01-05,ab"c',
        "u2,2026-01-05,a,b",  # a surplus field
        "u2,2026-01-05",  # a field short
        "u2,2026-01-05,a" + ",x" * 12,  # many surplus fields: all of them kept
    ],
)
def test_a_line_that_does_not_parse_is_held_with_its_text(
    lake: LakeProcessor, tmp_path: Path, line: str
) -> None:
    text = USERS + "u1,2026-01-05,a\n" + line + "\nu3,2026-01-05,c\n"
    (tmp_path / "users.csv").write_text(text)
    ingest_paths(lake, [tmp_path / "users.csv"], now=NOW)
    assert held(lake) == [(3, ["malformed_line"], line)]
    assert loaded(lake, "users", "user_id, segment, _row_number") == [
        ("u1", "a", 2),
        ("u3", "c", 4),
    ]


def test_quoted_newlines_and_doubled_quotes_load_and_lines_stay_exact(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    text = (
        USERS
        + 'u1,2026-01-05,"two\nlines ""quoted"", and a comma"\r\n'
        + 'u2,2026-01-05,"crlf\r\ninside"\r\n'
        + "\r\n"  # a blank line holds no row
        + 'u3,2026-01-05,""\r\n'
        + "u4,2026-01-05,\r\n"
        + 'u5,2026-01-05,"x"y\r\n'
        + "u6,2026-01-05, spaced \r\n"
    )
    (tmp_path / "users.csv").write_bytes(text.encode())
    ingest_paths(lake, [tmp_path / "users.csv"], now=NOW)
    assert loaded(lake, "users", "user_id, segment, _row_number") == [
        ("u1", 'two\nlines "quoted", and a comma', 2),
        ("u2", "crlf\r\ninside", 4),
        ("u3", "", 7),
        ("u4", None, 8),
        ("u6", " spaced ", 10),
    ]
    assert held(lake) == [(9, ["malformed_line"], 'u5,2026-01-05,"x"y')]


def test_a_quote_opened_and_closed_lines_later_holds_only_the_broken_lines(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    text = USERS + 'u1,2026-01-05,"a\nu2,2026-01-05,b\nu3,2026-01-05,c"d\nu4,2026-01-05,e\n'
    (tmp_path / "users.csv").write_text(text)
    ingest_paths(lake, [tmp_path / "users.csv"], now=NOW)
    assert [r[:2] for r in held(lake)] == [(2, ["malformed_line"]), (4, ["malformed_line"])]
    assert loaded(lake, "users", "user_id, _row_number") == [("u2", 3), ("u4", 5)]


# --- JSON Lines: exact values, exact lines, one bad line held ------------------------------


def test_json_values_keep_their_text_and_nested_values_stay_json(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    (tmp_path / "users.jsonl").write_text(
        '{"user_id": "u0", "signup_ts": "2026-01-05 10:00:00"}\n'
        '{"user_id": "u1", "signup_ts": "2026-01-05 10:00:00"}\n'
    )
    ingest_paths(lake, [tmp_path / "users.jsonl"], now=NOW)
    events = [
        {"event_id": 1, "properties": {"price": 9.99, "tags": ["x", "y"]}},
        {"event_id": "x2", "properties": [1, {"a": None}]},
        {"event_id": 123456789012345678901234567890, "properties": True},
        {"event_id": 7, "properties": None},
        {"event_id": -5, "properties": "plain text"},
    ]
    lines = [
        json.dumps({**e, "user_id": "u1", "event_type": "login", "event_ts": "2026-01-05"})
        for e in events
    ]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    result = ingest_paths(lake, [tmp_path / "events.jsonl"], now=NOW)
    assert result.quarantined == 0
    rows = loaded(lake, "events", "event_id, properties")
    assert [r[0] for r in rows] == ["1", "x2", "123456789012345678901234567890", "7", "-5"]
    stored = [r[1] for r in rows]
    assert stored[3] is None
    assert stored[4] == "plain text"
    assert stored[2] == "true"
    for text, event in zip(stored[:2], events[:2], strict=True):
        assert lake.fetch_all("SELECT json_valid(?)", [text]) == [(True,)]
        assert json.loads(text) == event["properties"]


def test_a_bad_json_line_is_held_with_its_text_and_lines_are_exact(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    lines = [
        '\ufeff{"user_id": "u1", "signup_ts": "2026-01-05"}',  # a byte order mark
        "",  # blank lines hold no row but count as lines
        '{"user_id": "u3", "signup_ts": "2026-01-05"',  # cut short
        '["u4", "2026-01-05"]',  # not an object
        '{"user_id": "u5", "signup_ts": "2026-01-05"}',
        '{"user_id": "u6", "signup_ts": "never"}',
    ]
    (tmp_path / "users.jsonl").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    result = ingest_paths(lake, [tmp_path / "users.jsonl"], now=NOW)
    assert (result.total_rows, result.quarantined) == (2, 3)
    assert loaded(lake, "users", "user_id, _row_number") == [("u1", 1), ("u5", 5)]
    rows = held(lake)
    assert [r[:2] for r in rows] == [
        (3, ["malformed_line"]),
        (4, ["malformed_line"]),
        (6, ["bad_timestamp"]),
    ]
    assert [r[2] for r in rows[:2]] == [lines[2], lines[3]]


# --- files: suffixes, compression, encodings ----------------------------------------------


def test_a_folder_loads_every_supported_file(lake: LakeProcessor, tmp_path: Path) -> None:
    folder = tmp_path / "users"
    folder.mkdir()
    (folder / "A.CSV").write_text(USERS + "a1,2026-01-05,x\n")
    (folder / "b.csv.gz").write_bytes(gzip.compress((USERS + "b1,2026-01-05,x\n").encode()))
    (folder / "c.tsv").write_text("user_id\tsignup_ts\tsegment\nc1\t2026-01-05\tx,y\n")
    zst = pa.BufferOutputStream()
    with pa.CompressedOutputStream(zst, "zstd") as out:
        out.write(b'{"user_id": "d1", "signup_ts": "2026-01-05"}\n')
    (folder / "d.JSONL.zst").write_bytes(zst.getvalue().to_pybytes())
    (folder / "_SUCCESS").write_text("")
    (folder / ".DS_Store").write_bytes(b"\0\1")
    result = ingest_paths(lake, [folder], now=NOW)
    assert result.quarantined == 0
    assert sorted(r[0] for r in loaded(lake, "users", "user_id")) == ["a1", "b1", "c1", "d1"]
    assert loaded(lake, "users", "segment").count(("x,y",)) == 1
    assert sorted(p.name for p in result.ignored_files) == [".DS_Store", "_SUCCESS"]  # listed


def test_other_files_in_a_folder_are_listed_and_a_named_one_is_refused(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    (tmp_path / "data" / "users").mkdir(parents=True)
    (tmp_path / "data" / "users" / "a.csv").write_text(USERS + "a1,2026-01-05,x\n")
    (tmp_path / "data" / "users" / "notes.xlsx").write_bytes(b"PK")
    result = ingest_paths(lake, [tmp_path / "data"], now=NOW)
    assert [p.name for p in result.ignored_files] == ["notes.xlsx"]
    assert result.total_rows == 1
    with pytest.raises(IngestError, match=r"unsupported file type.*notes\.xlsx"):
        ingest_paths(lake, [tmp_path / "data" / "users" / "notes.xlsx"], now=NOW)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("users.csv.gz", b"not gzip at all", "gzip"),
        ("users.csv", (USERS + "a1,2026-01-05,Gr\xf6\xdfe\n").encode("latin-1"), "as utf-8"),
    ],
)
def test_a_file_that_cannot_be_read_is_named_before_anything_commits(
    lake: LakeProcessor, tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    (tmp_path / "products.csv").write_text("product_id,price,updated_at\np1,2.5,2026-01-01\n")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / name).write_bytes(content)
    with pytest.raises(IngestError, match=reason) as info:
        ingest_paths(lake, [tmp_path / "products.csv", tmp_path / "bad" / name], now=NOW)
    assert name in str(info.value)
    # products load before users in one run, yet nothing was committed
    assert lake.fetch_all("SELECT count(*) FROM raw.products") == [(0,)]


@pytest.mark.parametrize(
    ("encoding", "suffix"), [("latin-1", "csv"), ("utf-16", "csv"), ("utf-16", "jsonl")]
)
def test_a_declared_encoding_is_read(
    lake: LakeProcessor, tmp_path: Path, encoding: str, suffix: str
) -> None:
    if suffix == "csv":
        text = USERS + "a1,2026-01-05,Größe\n"
    else:
        text = json.dumps({"user_id": "a1", "signup_ts": "2026-01-05", "segment": "Größe"})
    (tmp_path / f"users.{suffix}").write_bytes(text.encode(encoding))
    config = IngestConfig(tables={"users": TableIngestConfig(encoding=encoding)})
    ingest_paths(lake, [tmp_path / f"users.{suffix}"], config=config, now=NOW)
    assert loaded(lake, "users", "segment") == [("Größe",)]


def test_an_unknown_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown encoding"):
        TableIngestConfig(encoding="klingon-8")


# --- reader internals never meet source data ----------------------------------------------


@pytest.mark.parametrize("column", ["filename", "file_row_number", "__line", "_pl_file"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_source_columns_named_like_reader_internals_are_data(
    lake: LakeProcessor, tmp_path: Path, column: str, fmt: str
) -> None:
    table = pa.table(
        {"user_id": ["a", "b"], "signup_ts": ["2026-01-05", "never"], column: ["s1", "s2"]}
    )
    path = tmp_path / f"users.{fmt}"
    if fmt == "csv":
        path.write_text(f"user_id,signup_ts,{column}\na,2026-01-05,s1\nb,never,s2\n")
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in table.to_pylist()) + "\n")
    else:
        pq.write_table(table, path)
    ingest_paths(lake, [path], mapping={column: "segment"}, now=NOW)
    first = 2 if fmt == "csv" else 1
    assert loaded(lake, "users", "user_id, segment, _row_number") == [("a", "s1", first)]
    assert [(r[0], r[2]) for r in held(lake)] == [
        (first + 1, {"user_id": "b", "signup_ts": "never", column: "s2"})
    ]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_hints_name_only_source_columns(lake: LakeProcessor, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"users.{fmt}"
    if fmt == "csv":
        path.write_text("customer,ts\na,2026-01-05\n")
    elif fmt == "jsonl":
        path.write_text('{"customer": "a", "ts": "2026-01-05"}\n')
    else:
        pq.write_table(pa.table({"customer": ["a"], "ts": ["2026-01-05"]}), path)
    with pytest.raises(IngestError) as info:
        ingest_paths(lake, [path], now=NOW)
    assert "the files have customer, ts (map" in str(info.value)


def test_nested_parquet_values_become_json_text(lake: LakeProcessor, tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text(USERS + "u1,2026-01-05,x\n")
    ingest_paths(lake, [tmp_path / "users.csv"], now=NOW)
    props = [{"price": 9.99, "tags": ["x", "y"]}, {"price": None, "tags": []}]
    table = pa.table(
        {
            "event_id": ["e1", "e2"],
            "user_id": ["u1", "u1"],
            "event_type": ["login", "login"],
            "event_ts": ["2026-01-05 10:00:00"] * 2,
            "properties": props,
        }
    )
    pq.write_table(table, tmp_path / "events.parquet")
    ingest_paths(lake, [tmp_path / "events.parquet"], now=NOW)
    stored = [r[0] for r in loaded(lake, "events", "properties")]
    assert [json.loads(s) for s in stored] == props


def test_a_replayed_malformed_line_stays_held_as_it_was(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    (tmp_path / "users.csv").write_text(USERS + 'u1,2026-01-05,"a"b\nu2,never,x\n')
    ingest_paths(lake, [tmp_path / "users.csv"], now=NOW)
    before = held(lake)
    result = replay(lake, now=NOW)
    assert result.total_rows == 0
    assert (
        held(lake)
        == before
        == [
            (2, ["malformed_line"], 'u1,2026-01-05,"a"b'),
            (3, ["bad_timestamp"], {"user_id": "u2", "signup_ts": "never", "segment": "x"}),
        ]
    )


@pytest.mark.parametrize(
    ("number", "properties"),
    [
        ("1.50", '{"price":9.90,"tags":["x",1.0E+2,"1.5"]}'),
        ("0.1000000000000000000001", "[1e-400,-0.0]"),
        ("12345678901234567890.5", '{"a":{"b":[2.50]}}'),
    ],
)
def test_json_numbers_keep_their_text(
    lake: LakeProcessor, tmp_path: Path, number: str, properties: str
) -> None:
    (tmp_path / "users.csv").write_text(USERS + "u1,2026-01-05,x\n")
    ingest_paths(lake, [tmp_path / "users.csv"], now=NOW)
    line = (
        f'{{"event_id": {number}, "user_id": "u1", "event_type": "login", '
        f'"event_ts": "2026-01-05 10:00:00.5", "properties": {properties}, "amount": {number}}}'
    )
    (tmp_path / "events.jsonl").write_text(line + "\n")
    ingest_paths(lake, [tmp_path / "events.jsonl"], now=NOW)
    assert loaded(lake, "events", "event_id, properties, event_ts") == [
        (number, properties, datetime(2026, 1, 5, 10, 0, 0, 500000))
    ]


def test_reader_names_stay_apart_in_nested_parquet_files(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    """Nested columns make the reader describe the files itself; the files' own
    `filename` and `file_row_number` columns still load as data."""
    table = pa.table(
        {
            "user_id": ["a", "b"],
            "signup_ts": ["2026-01-05", "2026-01-06"],
            "filename": ["f1", "f2"],
            "file_row_number": [7, 8],
            "extra": [{"k": 1}, {"k": 2}],
        }
    )
    pq.write_table(table, tmp_path / "users.parquet")
    ingest_paths(lake, [tmp_path / "users.parquet"], mapping={"filename": "segment"}, now=NOW)
    assert loaded(lake, "users", "user_id, segment, _row_number") == [
        ("a", "f1", 1),
        ("b", "f2", 2),
    ]


def test_an_empty_json_key_is_named(lake: LakeProcessor, tmp_path: Path) -> None:
    (tmp_path / "users.jsonl").write_text('{"user_id": "a", "signup_ts": "2026-01-05", "": 1}\n')
    with pytest.raises(IngestError, match="a key is empty") as info:
        ingest_paths(lake, [tmp_path / "users.jsonl"], now=NOW)
    assert "users.jsonl" in str(info.value)


def test_the_cli_lists_what_it_passed_over(tmp_path: Path) -> None:
    data = tmp_path / "data" / "users"
    data.mkdir(parents=True)
    (data / "a.csv").write_text(USERS + "a1,2026-01-05,x\n")
    (data / "README.md").write_text("about these files\n")
    result = run_cli("--project", str(tmp_path), "ingest", str(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    assert "README.md" in result.stdout


def test_a_row_filter_never_hides_a_malformed_line(lake: LakeProcessor, tmp_path: Path) -> None:
    lines = [
        '{"user_id": "a", "signup_ts": "2026-01-05", "kind": "keep"}',
        '{"user_id": "b", "signup_ts": "2026-01-05", "kind": "drop"}',
        '{"user_id": "c", "signup_ts": ',
    ]
    (tmp_path / "users.jsonl").write_text("\n".join(lines) + "\n")
    config = IngestConfig(tables={"users": TableIngestConfig(where="kind = 'keep'")})
    result = ingest_paths(lake, [tmp_path / "users.jsonl"], config=config, now=NOW)
    batch = result.batches[0]
    assert (batch.rows_loaded, batch.rows_quarantined, batch.rows_filtered) == (1, 1, 1)
    assert held(lake) == [(3, ["malformed_line"], lines[2])]


@pytest.mark.parametrize(
    ("name", "decoy"), [("a[1].csv", "a1.csv"), ("a*.csv", "ab.csv"), ("it's?.csv", "it'sx.csv")]
)
def test_file_names_are_names_not_patterns(
    lake: LakeProcessor, tmp_path: Path, name: str, decoy: str
) -> None:
    folder = tmp_path / "users"
    folder.mkdir()
    (folder / name).write_text(USERS + "a1,2026-01-05,x\n")
    (folder / decoy).write_text(USERS + "other,2026-01-05,x\n")  # what a pattern would match
    ingest_paths(lake, [folder / name], now=NOW)
    assert loaded(lake, "users", "user_id") == [("a1",)]
