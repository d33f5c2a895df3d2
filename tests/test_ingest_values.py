"""Values are loaded exactly as the source wrote them, or quarantined with a reason:
time zones, epochs, dates, integers and amounts, in every file format; and mappings
(renames, expressions, a row filter, columns the contract does not name)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from productlens.config import IngestConfig, ProjectConfig, TableIngestConfig
from productlens.errors import IngestError
from productlens.ingest import ingest_paths
from productlens.ingest.processor import LakeProcessor

NOW = datetime(2026, 11, 22, tzinfo=UTC)
FORMATS = ["csv", "jsonl", "parquet"]


def write_rows(folder: Path, table: str, rows: list[dict[str, Any]], fmt: str) -> Path:
    """Rows as a file of `table` in one format, every value written as text (Parquet:
    a string column), so the same text reaches every reader."""
    folder = folder / table
    folder.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0])
    path = folder / f"part.{fmt}"
    if fmt == "csv":
        lines = [",".join(columns)]
        lines += [",".join("" if r[c] is None else str(r[c]) for c in columns) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        data = {c: pa.array([r[c] for r in rows], pa.string()) for c in columns}
        pq.write_table(pa.table(data), path)
    return path


def load(
    lake: LakeProcessor, path: Path, **settings: Any
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Ingest one file with settings for its table; (loaded rows, quarantined rows), each
    row numbered by its data row (a CSV file's line, less the header's)."""
    table = path.parent.name
    config = IngestConfig(tables={table: TableIngestConfig(**settings)}) if settings else None
    ingest_paths(lake, [path], config=config, now=NOW)
    header = 1 if path.suffix == ".csv" else 0
    quarantined = lake.fetch_all(
        "SELECT row_number - ?, reasons FROM raw.quarantine ORDER BY row_number", [header]
    )
    loaded = lake.fetch_all(
        f"SELECT * EXCLUDE (_batch_id, _source_file, _ingested_at) REPLACE (_row_number - ? "
        f"AS _row_number) FROM raw.{table} ORDER BY _row_number",
        [header],
    )
    return loaded, quarantined


# Text -> the UTC instant it names, with no zone configured (UTC) and with Berlin.
TIMES = [
    ("2026-01-05T10:00:00+05:30", "2026-01-05 04:30:00", "2026-01-05 04:30:00"),
    ("2026-01-05T10:00:00-08:00", "2026-01-05 18:00:00", "2026-01-05 18:00:00"),
    ("2026-01-05T10:00:00.250+0530", "2026-01-05 04:30:00.25", "2026-01-05 04:30:00.25"),
    ("2026-01-05 10:00:00 America/New_York", "2026-01-05 15:00:00", "2026-01-05 15:00:00"),
    ("2026-01-05T10:00:00Z", "2026-01-05 10:00:00", "2026-01-05 10:00:00"),
    ("2026-01-05 10:00:00 UTC", "2026-01-05 10:00:00", "2026-01-05 10:00:00"),
    ("2026-01-05 10:00:00", "2026-01-05 10:00:00", "2026-01-05 09:00:00"),  # naive
    ("2026-07-05 10:00:00", "2026-07-05 10:00:00", "2026-07-05 08:00:00"),  # summer time
    ("2026-01-05", "2026-01-05 00:00:00", "2026-01-04 23:00:00"),  # a date: local midnight
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
def test_an_explicit_offset_wins_and_the_zone_applies_to_naive_times_only(
    lake: LakeProcessor, tmp_path: Path, fmt: str, zone: str
) -> None:
    rows = [{"user_id": f"u{i}", "signup_ts": t} for i, (t, _, _) in enumerate(TIMES)]
    loaded, held = load(lake, write_rows(tmp_path, "users", rows, fmt), timezone=zone)
    assert held == []
    got = {r[0]: str(r[1]) for r in loaded}
    want = {f"u{i}": (utc if zone == "UTC" else berlin) for i, (_, utc, berlin) in enumerate(TIMES)}
    assert got == {k: v.replace(".25", ".250000") for k, v in want.items()}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "text",
    [
        "epoch",
        "infinity",
        "-infinity",
        "2026-01-05 10:00:00 Mars/Olympus",
        "now",
        "2026-01-05T10:00:00+25:00",
        "2026-01-05T10:00:00-1500",
        "2026-01-05T10:00:00+05:75",
        "2026-01-05T10:00:00.5+99",
    ],
)
def test_words_and_unknown_zones_are_not_times(
    lake: LakeProcessor, tmp_path: Path, fmt: str, text: str
) -> None:
    rows = [{"user_id": "a", "signup_ts": "2026-01-05"}, {"user_id": "b", "signup_ts": text}]
    loaded, held = load(lake, write_rows(tmp_path, "users", rows, fmt))
    assert [r[0] for r in loaded] == ["a"]
    assert held == [(2, ["bad_timestamp"])]


# Berlin's clocks go forward on 2026-03-29 at 02:00 and back on 2026-10-25 at 03:00.
DST_TIMES = [
    ("2026-03-29 01:59:59", "2026-03-29 00:59:59"),
    ("2026-03-29 02:30:00", None),  # skipped: no such local time
    ("2026-03-29 03:00:00", "2026-03-29 01:00:00"),
    ("2026-10-25 01:59:59", "2026-10-24 23:59:59"),
    ("2026-10-25 02:30:00", None),  # repeated: two instants, no way to tell which
    ("2026-10-25 02:30:00+02:00", "2026-10-25 00:30:00"),  # the offset says which
    ("2026-10-25 02:30:00+01:00", "2026-10-25 01:30:00"),
    ("2026-10-25 03:00:00", "2026-10-25 02:00:00"),
]


@pytest.mark.parametrize("source", ["csv", "parquet", "strptime", "typed"])
def test_local_times_that_do_not_exist_or_exist_twice_are_bad_timestamps(
    lake: LakeProcessor, tmp_path: Path, source: str
) -> None:
    """With a zone configured, a naive time skipped or repeated at a change of summer
    time names no single instant: quarantined, not moved by an hour."""
    cases = (
        DST_TIMES
        if source in ("csv", "parquet")
        else [(t, want) for t, want in DST_TIMES if "+" not in t]
    )
    rows = [{"user_id": f"u{i}", "signup_ts": t} for i, (t, _) in enumerate(cases)]
    settings: dict[str, Any] = {"timezone": "Europe/Berlin"}
    if source == "typed":  # a Parquet TIMESTAMP column holding naive local times
        folder = tmp_path / "users"
        folder.mkdir()
        times = [datetime.fromisoformat(t) for t, _ in cases]
        pq.write_table(
            pa.table({"user_id": [r["user_id"] for r in rows], "signup_ts": times}),
            folder / "u.parquet",
        )
        path = folder / "u.parquet"
    else:
        path = write_rows(tmp_path, "users", rows, "csv" if source == "strptime" else source)
        if source == "strptime":
            settings["timestamp_format"] = "%Y-%m-%d %H:%M:%S"
    loaded, held = load(lake, path, **settings)
    assert [(r[0], str(r[1])) for r in loaded] == [
        (f"u{i}", want) for i, (_, want) in enumerate(cases) if want is not None
    ]
    assert held == [(i + 1, ["bad_timestamp"]) for i, (_, want) in enumerate(cases) if want is None]


@pytest.mark.parametrize(
    ("formats", "text", "expected"),
    [
        ("epoch_s", "1767607200", "2026-01-05 10:00:00"),
        ("epoch_s", "1767607200.25", "2026-01-05 10:00:00.25"),
        ("epoch_ms", "1767607200250", "2026-01-05 10:00:00.25"),
        ("epoch_us", "1767607200250001", "2026-01-05 10:00:00.250001"),
        ("epoch_ns", "1767607200250001000", "2026-01-05 10:00:00.250001"),
        ("epoch_ns", "1767607200250001001", None),  # finer than the warehouse keeps
        ("epoch_us", "1767607200.5", None),
        ("epoch_ms", "12abc", None),
        (["%d/%m/%Y %H:%M", "epoch_s"], "05/01/2026 10:00", "2026-01-05 10:00:00"),
        (["%d/%m/%Y %H:%M", "epoch_s"], "1767607200", "2026-01-05 10:00:00"),
        (["%d/%m/%Y %H:%M", "epoch_s"], "2026-01-05 10:00", None),  # iso not listed
        (["%d/%m/%Y %H:%M %z"], "05/01/2026 10:00 +0100", "2026-01-05 09:00:00"),
        (["iso", "epoch_ms"], "2026-01-05T10:00:00+01:00", "2026-01-05 09:00:00"),
        (["iso", "epoch_ms"], "1767607200000", "2026-01-05 10:00:00"),
        ("epoch_s", "1767607200.2500001", None),  # a tenth of a microsecond: not rounded
        (["%d/%m/%Y", "%m/%d/%Y"], "05/01/2026", "2026-01-05 00:00:00"),  # the first wins
        (["%m/%d/%Y", "%d/%m/%Y"], "05/01/2026", "2026-05-01 00:00:00"),
        (["%m/%d/%Y", "%d/%m/%Y"], "13/01/2026", "2026-01-13 00:00:00"),
    ],
)
def test_epochs_and_several_formats(
    lake: LakeProcessor, tmp_path: Path, formats: str | list[str], text: str, expected: str | None
) -> None:
    rows = [{"user_id": "a", "signup_ts": text}]
    loaded, held = load(lake, write_rows(tmp_path, "users", rows, "csv"), timestamp_format=formats)
    if expected is None:
        assert (loaded, held) == ([], [(1, ["bad_timestamp"])])
    else:
        assert [str(r[1]).rstrip("0") for r in loaded] == [expected.rstrip("0")]


def test_per_column_formats_and_typed_epoch_columns(lake: LakeProcessor, tmp_path: Path) -> None:
    """GA4 writes microseconds as an INT64 column; another time column of the same table
    keeps its own format."""
    folder = tmp_path / "subscriptions"
    folder.mkdir()
    pq.write_table(
        pa.table(
            {
                "subscription_id": ["s1", "s2"],
                "user_id": ["u1", "u1"],
                "plan": ["pro", "pro"],
                "billing_period": ["monthly", "monthly"],
                "amount": [10.0, 10.0],
                "started_at": pa.array([1767607200250001, 1767607200000000], pa.int64()),
                "cancelled_at": ["05/02/2026", "bad"],
            }
        ),
        folder / "s.parquet",
    )
    loaded, held = load(
        lake,
        folder / "s.parquet",
        formats={"started_at": "epoch_us", "cancelled_at": ["%d/%m/%Y"]},
    )
    assert [(r[0], str(r[5]), str(r[6])) for r in loaded] == [
        ("s1", "2026-01-05 10:00:00.250001", "2026-02-05 00:00:00")
    ]
    assert held == [(2, ["bad_timestamp"])]


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2026-01-05", True),
        ("2026-01-05T00:00:00Z", True),
        ("2026-01-05 10:00:00", False),  # a time of day is not a date
        ("2026-01-05T00:00:00+05:30", False),  # the previous day in UTC
        ("epoch", False),
    ],
)
def test_dates_are_dates(lake: LakeProcessor, tmp_path: Path, text: str, ok: bool) -> None:
    rows = [{"campaign_id": "c1", "start_date": text, "spend": "10"}]
    loaded, held = load(lake, write_rows(tmp_path, "campaigns", rows, "csv"))
    assert (len(loaded), held) == ((1, []) if ok else (0, [(1, ["bad_timestamp"])]))
    if ok:
        assert str(loaded[0][3]) == "2026-01-05"


@pytest.mark.parametrize("fmt", FORMATS)
def test_non_finite_amounts_are_bad_type(lake: LakeProcessor, tmp_path: Path, fmt: str) -> None:
    amounts = ["9.5", "NaN", "inf", "-inf", "Infinity", "1e309", "1e308", "0x10", "1_000", ".5"]
    rows = [
        {"order_id": f"o{i}", "user_id": "u", "order_ts": "2026-01-05", "status": "completed",
         "total_amount": a}
        for i, a in enumerate(amounts)
    ]  # fmt: skip
    loaded, held = load(lake, write_rows(tmp_path, "orders", rows, fmt))
    assert [(r[0], r[4]) for r in loaded] == [("o0", 9.5), ("o6", 1e308), ("o9", 0.5)]
    assert held == [(i, ["bad_type"]) for i in (2, 3, 4, 5, 6, 8, 9)]


def test_non_finite_amounts_in_a_contract_exact_parquet_file(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    """A file that would be copied byte for byte is checked all the same."""
    folder = tmp_path / "products"
    folder.mkdir()
    n = 4
    pq.write_table(
        pa.table(
            {
                "product_id": [f"p{i}" for i in range(n)],
                "name": ["x"] * n,
                "category": ["c"] * n,
                "brand": ["b"] * n,
                "price": [1.0, float("nan"), float("inf"), 2.0],
                "cost": [0.5, 0.5, 0.5, float("-inf")],
                "updated_at": pa.array([datetime(2026, 1, 5)] * n, pa.timestamp("us")),
            }
        ),
        folder / "p.parquet",
    )
    loaded, held = load(lake, folder / "p.parquet")
    assert [r[0] for r in loaded] == ["p0"]
    assert held == [(2, ["bad_type"]), (3, ["bad_type"]), (4, ["bad_type"])]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3", 3), (" 2 ", 2), ("+4", 4), ("1.5", None), ("2.0", None), ("0x10", None),
     ("1_000", None), ("1e2", None), ("99999999999", None)],
)  # fmt: skip
def test_integers_are_never_rounded(
    lake: LakeProcessor, tmp_path: Path, text: str, expected: int | None
) -> None:
    rows = [{"snapshot_date": "2026-01-05", "product_id": "p", "on_hand": text}]
    config = IngestConfig(unknown_references={"products": "warn"})
    path = write_rows(tmp_path, "inventory", rows, "csv")
    ingest_paths(lake, [path], config=config, now=NOW)
    loaded = lake.fetch_all("SELECT on_hand FROM raw.inventory")
    held = lake.fetch_all("SELECT reasons FROM raw.quarantine")
    assert (loaded, held) == (
        ([(expected,)], []) if expected is not None else ([], [(["bad_type"],)])
    )


def test_whole_floats_read_as_integers_and_fractions_do_not(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    folder = tmp_path / "inventory"
    folder.mkdir()
    pq.write_table(
        pa.table(
            {
                "snapshot_date": ["2026-01-05"] * 3,
                "product_id": ["p1", "p2", "p3"],
                "on_hand": [2.0, 2.5, -0.0],
            }
        ),
        folder / "i.parquet",
    )
    config = IngestConfig(unknown_references={"products": "warn"})
    ingest_paths(lake, [folder / "i.parquet"], config=config, now=NOW)
    assert lake.fetch_all("SELECT product_id, on_hand FROM raw.inventory ORDER BY 1") == [
        ("p1", 2),
        ("p3", 0),
    ]
    assert lake.fetch_all("SELECT row_number, reasons FROM raw.quarantine") == [(2, ["bad_type"])]


# --- configuration ----------------------------------------------------------------------


def test_unknown_references_keys_are_checked_and_merged_with_the_defaults() -> None:
    with pytest.raises(ValueError, match="unknown referenced table 'user'"):
        ProjectConfig.model_validate({"ingest": {"unknown_references": {"user": "warn"}}})
    partial = ProjectConfig.model_validate({"ingest": {"unknown_references": {"products": "warn"}}})
    assert partial.ingest.unknown_references == {
        "users": "warn",
        "products": "warn",
        "orders": "quarantine",
        "experiments": "quarantine",
    }


@pytest.mark.parametrize("fmt", ["%Y", "iso", "epoch_ms", ["epoch_s", "%d.%m.%Y"]])
def test_time_formats_are_checked(fmt: str | list[str]) -> None:
    TableIngestConfig(timestamp_format=fmt)
    with pytest.raises(ValueError, match="unknown time format 'epoch_minutes'"):
        TableIngestConfig(timestamp_format="epoch_minutes")
    with pytest.raises(ValueError, match="unknown time format"):
        TableIngestConfig(formats={"event_ts": ["iso", "Y-m-d"]})
    with pytest.raises(ValueError, match="at least one format"):
        TableIngestConfig(timestamp_format=[])
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        TableIngestConfig(timezone="Mars/Olympus")


# --- mappings ---------------------------------------------------------------------------

SEGMENT_LINES = [
    {"type": "track", "messageId": "m1", "anonymousId": "anon-1", "userId": None,
     "event": "Order Completed", "timestamp": "2026-01-05T10:00:00.000Z",
     "context": {"device": {"type": "ios"}, "locale": "de-DE"},
     "properties": {"revenue": 19.99, "tags": ["x", "y"]}},
    {"type": "track", "messageId": "m2", "anonymousId": "anon-2", "userId": "u2",
     "event": "Product Viewed", "timestamp": "2026-01-05T11:00:00+01:00",
     "context": {"device": {"type": "android"}}, "properties": {}},
    {"type": "identify", "messageId": "m3", "anonymousId": "anon-2", "userId": "u2",
     "timestamp": "2026-01-05T11:00:00Z", "traits": {"plan": "pro"}},
]  # fmt: skip
SEGMENT_MAPPING: dict[str, Any] = {
    "expressions": {
        "event_id": "messageId",
        "user_id": "coalesce(userId, anonymousId)",
        "event_type": "event",
        "event_ts": "timestamp",
        "device": "context.device.type",
        "amount": "properties.revenue",
    },
    "where": "type = 'track'",
}


def test_expressions_filter_and_nested_paths_load_a_segment_export(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    path = tmp_path / "events" / "segment.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r) + "\n" for r in SEGMENT_LINES))
    config = IngestConfig(tables={"events": TableIngestConfig(**SEGMENT_MAPPING)})
    result = ingest_paths(lake, [path], config=config, now=NOW)
    assert lake.fetch_all(
        "SELECT event_id, user_id, event_type, CAST(event_ts AS VARCHAR), device, amount, "
        "_row_number FROM raw.events ORDER BY event_id"
    ) == [
        ("m1", "anon-1", "Order Completed", "2026-01-05 10:00:00", "ios", 19.99, 1),
        ("m2", "u2", "Product Viewed", "2026-01-05 10:00:00", "android", None, 2),
    ]
    batch = result.batches[0]
    assert (batch.rows_read, batch.rows_loaded, batch.rows_filtered) == (2, 2, 1)
    assert lake.fetch_all("SELECT rows_read, rows_loaded, rows_filtered FROM ops.ingest_log") == [
        (2, 2, 1)
    ]
    assert lake.fetch_all("SELECT count(*) FROM raw.quarantine") == [(0,)]
    # `properties` is mapped (same name), so the columns nothing maps are named, not lost
    # in silence.
    assert batch.notes == [
        "columns not in the contract and not mapped, not loaded into raw.events: traits "
        "(map them with expressions in [ingest.tables.events])"
    ]  # the columns the expressions and the filter read are used
    props = lake.fetch_all("SELECT properties FROM raw.events ORDER BY event_id")
    assert json.loads(props[0][0]) == {"revenue": 19.99, "tags": ["x", "y"]}


def test_one_source_column_feeds_several_targets(lake: LakeProcessor, tmp_path: Path) -> None:
    """GA4: no event id, epoch microseconds, the time feeding two targets."""
    folder = tmp_path / "events"
    folder.mkdir()
    pq.write_table(
        pa.table(
            {
                "event_name": ["page_view", "purchase"],
                "event_timestamp": pa.array([1767607200250001, 1767607260000000], pa.int64()),
                "user_pseudo_id": ["p1", "p1"],
                "device": pa.array(
                    [{"category": "mobile"}, {"category": "desktop"}],
                    pa.struct([("category", pa.string())]),
                ),
            }
        ),
        folder / "ga4.parquet",
    )
    settings = TableIngestConfig(
        expressions={
            "event_id": "md5(user_pseudo_id || event_timestamp || event_name)",
            "event_ts": "event_timestamp",
            "user_id": "user_pseudo_id",
            "event_type": "event_name",
            "device": "device.category",
        },
        formats={"event_ts": "epoch_us"},
    )
    ingest_paths(
        lake, [folder / "ga4.parquet"], config=IngestConfig(tables={"events": settings}), now=NOW
    )
    import hashlib

    expected_id = hashlib.md5(b"p11767607200250001page_view").hexdigest()
    assert lake.fetch_all(
        "SELECT event_id, CAST(event_ts AS VARCHAR), device FROM raw.events ORDER BY event_ts"
    ) == [
        (expected_id, "2026-01-05 10:00:00.250001", "mobile"),
        (hashlib.md5(b"p11767607260000000purchase").hexdigest(), "2026-01-05 10:01:00", "desktop"),
    ]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("(SELECT 1)", "not allowed"),
        ("a || (SELECT 'x')", "not allowed"),
        ("a IN (SELECT a FROM raw.users)", "not allowed"),
        ("read_csv('/etc/passwd')", "not allowed"),
        ("read_text('/etc/passwd')", "not allowed"),
        ("try(read_text('/etc/passwd'))", "not allowed"),
        ("getenv('HOME')", "not allowed"),
        ("lpad(a, 1000000000, 'x')", "not allowed"),  # one value asking for a gigabyte
        ("printf('%999999999d', 1)", "not allowed"),
        ("getvariable('x')", "not allowed"),
        ("current_setting('home_directory')", "not allowed"),
        ("list_transform([a], x -> x)", "not allowed"),
        ("COLUMNS(*)", "not allowed"),
        ("* EXCLUDE (t)", "not allowed"),
        ("row_number() OVER ()", "not allowed"),
        ("sum(a)", "not allowed"),  # an aggregate would collapse the rows
        ("max(a)", "not allowed"),
        ("string_agg(a, ',')", "not allowed"),
        ("unnest([a, a])", "not allowed"),  # would multiply them
        ("$1", "not allowed"),
        ("a; DROP TABLE raw.events", "one expression"),
        ("a; ATTACH 'x.db'", "one expression"),
        ("__extra_1", "no column '__extra_1' in the file \\(it has a, t\\)"),
        ("filename", "no column 'filename'"),
        ("nope", "no column 'nope'"),
        ('"A"', "no column 'A'"),  # a quoted name is matched as written
        ("coalesce(", "not a valid expression"),
    ],
)
def test_unsafe_or_wrong_expressions_are_refused_with_the_key_named(
    lake: LakeProcessor, tmp_path: Path, expression: str, message: str
) -> None:
    path = write_rows(tmp_path, "users", [{"a": "u1", "t": "2026-01-05"}], "csv")
    settings = TableIngestConfig(expressions={"user_id": expression, "signup_ts": "t"})
    with pytest.raises(IngestError, match=message) as info:
        ingest_paths(lake, [path], config=IngestConfig(tables={"users": settings}), now=NOW)
    assert "[ingest.tables.users.expressions] user_id" in str(info.value)
    assert lake.fetch_all("SELECT count(*) FROM raw.users") == [(0,)]


def test_quoted_names_are_only_names(lake: LakeProcessor, tmp_path: Path) -> None:
    """A source column named like SQL, or with quotes, is referenced by a quoted name."""
    folder = tmp_path / "users"
    folder.mkdir()
    (folder / "u.csv").write_text('"select","a""b",t\nu1,x,2026-01-05\n')
    settings = TableIngestConfig(
        expressions={"user_id": '"select"', "segment": '"a""b" || \'!\'', "signup_ts": "t"}
    )
    ingest_paths(lake, [folder], config=IngestConfig(tables={"users": settings}), now=NOW)
    assert lake.fetch_all("SELECT user_id, segment FROM raw.users") == [("u1", "x!")]


def test_unmapped_columns_are_kept_in_properties_or_named(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    events = tmp_path / "events"
    events.mkdir()
    (events / "e.csv").write_text(
        "event_id,user_id,event_type,event_ts,plan,utm_source\n"
        "e1,u1,login,2026-01-05 10:00:00,pro,\n"
        "e2,u1,login,2026-01-05 10:01:00,,news\n"
        "e3,u1,login,2026-01-05 10:02:00,,\n"
    )
    result = ingest_paths(lake, [events], now=NOW)
    props = lake.fetch_all("SELECT event_id, properties FROM raw.events ORDER BY 1")
    assert [(e, json.loads(p) if p else None) for e, p in props] == [
        ("e1", {"plan": "pro"}),
        ("e2", {"utm_source": "news"}),
        ("e3", None),
    ]
    assert result.batches[0].notes == [
        "columns not in the contract kept as keys of properties: plan, utm_source"
    ]
    users = tmp_path / "users"
    users.mkdir()
    (users / "u.csv").write_text("user_id,signup_ts,favourite_colour\nu1,2026-01-05,red\n")
    result = ingest_paths(lake, [users], now=NOW)
    assert "favourite_colour" in result.batches[0].notes[0]
    assert "not loaded" in result.batches[0].notes[0]


def test_nested_parquet_columns_are_stored_as_json(lake: LakeProcessor, tmp_path: Path) -> None:
    """Struct, list and map columns feeding a text column become JSON that round-trips,
    not DuckDB's struct notation."""
    folder = tmp_path / "events"
    folder.mkdir()
    props = [{"price": 9.99, "tags": ["x", "y"], "n": 3}, {"price": None, "tags": [], "n": 0}]
    pq.write_table(
        pa.table(
            {
                "event_id": ["e1", "e2"],
                "user_id": ["u1", "u1"],
                "event_type": ["view", "view"],
                "event_ts": pa.array([datetime(2026, 1, 5)] * 2, pa.timestamp("us")),
                "properties": props,
                "device": pa.array(
                    [[("os", "ios")], [("os", "android")]], pa.map_(pa.string(), pa.string())
                ),
                "country": pa.array([["de", "at"], None], pa.list_(pa.string())),
            }
        ),
        folder / "e.parquet",
    )
    ingest_paths(lake, [folder], now=NOW)
    rows = lake.fetch_all("SELECT properties, device, country FROM raw.events ORDER BY event_id")
    assert [json.loads(r[0]) for r in rows] == props
    assert [json.loads(r[1]) for r in rows] == [{"os": "ios"}, {"os": "android"}]
    assert [r[2] for r in rows] == ['["de","at"]', None]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("1", "where: a condition .* expected, got INTEGER"),
        ("'1'", "where: a condition .* expected, got VARCHAR"),
        ("b", "where: a condition .* expected, got VARCHAR"),
        ("nope = 'x'", "where: no column 'nope'"),
        ("count(*) > 0", "where: 'COUNT\\(\\*\\)' is not allowed"),
        ("a IN (SELECT user_id FROM raw.users)", "where: 'Subquery' is not allowed"),
        ("CAST(b AS INTEGER) = 1", "where: fails on these files .*'x'"),
    ],
)
def test_a_where_that_is_not_a_condition_is_refused_with_the_key_named(
    lake: LakeProcessor, tmp_path: Path, where: str, message: str
) -> None:
    """A filter must be a condition: `1` or a text column is not read as true or false
    by casting rules, and one failing on a value names itself."""
    rows = [{"a": "u1", "t": "2026-01-05", "b": "x"}, {"a": "u2", "t": "2026-01-05", "b": "1"}]
    path = write_rows(tmp_path, "users", rows, "csv")
    settings = TableIngestConfig(columns={"a": "user_id", "t": "signup_ts"}, where=where)
    with pytest.raises(IngestError, match=message) as info:
        ingest_paths(lake, [path], config=IngestConfig(tables={"users": settings}), now=NOW)
    assert "[ingest.tables.users] where" in str(info.value)
    assert lake.fetch_all("SELECT count(*) FROM raw.users") == [(0,)]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("a.k", "Malformed JSON"),  # a path into text that is not JSON
        ("CAST(CAST(a AS INTEGER) AS VARCHAR)", "Could not convert string 'x1'"),
    ],
)
def test_an_expression_that_fails_on_a_value_is_named(
    lake: LakeProcessor, tmp_path: Path, expression: str, message: str
) -> None:
    rows = [{"a": "7", "t": "2026-01-05"}, {"a": "x1", "t": "2026-01-05"}]
    path = write_rows(tmp_path, "users", rows, "csv")
    settings = TableIngestConfig(expressions={"user_id": expression, "signup_ts": "t"})
    with pytest.raises(IngestError, match=message) as info:
        ingest_paths(lake, [path], config=IngestConfig(tables={"users": settings}), now=NOW)
    assert str(info.value).startswith("[ingest.tables.users.expressions] user_id: fails")
    assert lake.fetch_all("SELECT count(*) FROM raw.users") == [(0,)]


def test_columns_whose_names_differ_only_in_case_are_refused(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    """DuckDB names are not case sensitive: `Event_Type` would have been read from
    `event_type` and stored in properties as its value."""
    folder = tmp_path / "events"
    folder.mkdir()
    pq.write_table(
        pa.table(
            {"event_id": ["e1"], "user_id": ["u1"], "event_type": ["view"],
             "event_ts": ["2026-01-05 10:00:00"], "Event_Type": ["CLICK"]}
        ),
        folder / "e.parquet",
    )  # fmt: skip
    with pytest.raises(IngestError, match="'event_type' and 'Event_Type' differ only in case"):
        ingest_paths(lake, [folder], now=NOW)
    assert lake.fetch_all("SELECT count(*) FROM raw.events") == [(0,)]


# One row per table, every value text; a case replaces one column with a typed one.
BASE_ROWS: dict[str, dict[str, Any]] = {
    "users": {"user_id": "u1", "signup_ts": "2026-01-05"},
    "orders": {"order_id": "o1", "user_id": "u1", "order_ts": "2026-01-05",
               "status": "completed", "total_amount": "1"},
    "inventory": {"snapshot_date": "2026-01-05", "product_id": "p1", "on_hand": "1"},
    "campaigns": {"campaign_id": "c1", "start_date": "2026-01-05", "spend": "1"},
}  # fmt: skip
BERLIN = {"timezone": "Europe/Berlin"}


@pytest.mark.parametrize(
    ("table", "column", "values", "settings", "expected"),
    [
        ("inventory", "on_hand", pa.array([3], pa.int64()), {}, "3"),
        ("inventory", "on_hand", pa.array([True]), {}, "bad_type"),  # a flag is not a count
        ("orders", "total_amount", pa.array([5], pa.int64()), {}, "5.0"),
        ("orders", "total_amount", pa.array([Decimal("2.50")], pa.decimal128(5, 2)), {}, "2.5"),
        ("orders", "total_amount", pa.array([True]), {}, "bad_type"),
        ("users", "signup_ts", pa.array([1767607200], pa.int64()), {}, "bad_timestamp"),
        ("users", "signup_ts", pa.array([1767607200], pa.int64()), {"timestamp_format": "epoch_s"},
         "2026-01-05 10:00:00"),
        ("users", "signup_ts", pa.array([1767607200.1]), {"timestamp_format": "epoch_s"},
         "2026-01-05 10:00:00.1"),
        ("users", "signup_ts", pa.array([1767607200.1234567]), {"timestamp_format": "epoch_s"},
         "2026-01-05 10:00:00.123457"),  # a float, coarser than that, is rounded
        ("users", "signup_ts", pa.array([1767607200250.5]), {"timestamp_format": "epoch_ms"},
         "2026-01-05 10:00:00.2505"),
        ("users", "signup_ts", pa.array([float("nan")]), {"timestamp_format": "epoch_s"},
         "bad_timestamp"),
        ("users", "signup_ts", pa.array([1767607200_000_001_000], pa.timestamp("ns")), {},
         "2026-01-05 10:00:00.000001"),
        ("users", "signup_ts", pa.array([1767607200_000_000_001], pa.timestamp("ns")), {},
         "bad_timestamp"),  # finer than the warehouse keeps
        ("users", "signup_ts", pa.array([datetime(2026, 1, 5, 10)], pa.timestamp("us", "UTC")),
         BERLIN, "2026-01-05 10:00:00"),  # an instant: no zone applies
        ("users", "signup_ts", pa.array([datetime(2026, 1, 5, 10)], pa.timestamp("us")),
         BERLIN, "2026-01-05 09:00:00"),  # naive: in the configured zone
        ("users", "signup_ts", pa.array([datetime(2026, 1, 5, 10)], pa.timestamp("ms")),
         BERLIN, "2026-01-05 09:00:00"),
        ("users", "signup_ts", pa.array(["05/01/2026 10:00 +0100"]),
         {"timestamp_format": "%d/%m/%Y %H:%M %z", **BERLIN}, "2026-01-05 09:00:00"),
        ("users", "signup_ts", pa.array(["05/01/2026 10:00 -0100"]),
         {"timestamp_format": "%d/%m/%Y %H:%M %z", **BERLIN}, "2026-01-05 11:00:00"),
        ("users", "signup_ts", pa.array(["05/01/2026 10:00"]),
         {"timestamp_format": "%d/%m/%Y %H:%M", **BERLIN}, "2026-01-05 09:00:00"),
        ("campaigns", "start_date", pa.array(["05/01/2026"]),
         {"formats": {"start_date": "%d/%m/%Y"}}, "2026-01-05"),
        ("campaigns", "start_date", pa.array([datetime(2026, 1, 5)], pa.timestamp("us")), {},
         "2026-01-05"),
        ("campaigns", "start_date", pa.array([datetime(2026, 1, 5, 10)], pa.timestamp("us")), {},
         "bad_timestamp"),
    ],
)  # fmt: skip
def test_typed_and_formatted_source_values(
    lake: LakeProcessor,
    tmp_path: Path,
    table: str,
    column: str,
    values: pa.Array,
    settings: dict[str, Any],
    expected: str,
) -> None:
    """Each source type reads as its value, or is quarantined with the expected reason."""
    folder = tmp_path / table
    folder.mkdir()
    data = {k: pa.array([v]) for k, v in BASE_ROWS[table].items()} | {column: values}
    pq.write_table(pa.table(data), folder / "t.parquet")
    config = IngestConfig(
        unknown_references={"products": "warn"},
        tables={table: TableIngestConfig(**settings)} if settings else {},
    )
    ingest_paths(lake, [folder], config=config, now=NOW)
    loaded = lake.fetch_all(f"SELECT CAST({column} AS VARCHAR) FROM raw.{table}")
    held = lake.fetch_all("SELECT reasons FROM raw.quarantine")
    if expected.startswith("bad_"):
        assert (loaded, held) == ([], [([expected],)])
    else:
        assert (loaded, held) == ([(expected,)], [])


def test_a_flattened_column_wins_over_a_path_and_json_keys_are_quoted(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    """`ctx.d` names the column `ctx.d` when there is one (the longest name wins); JSON
    keys with quotes or dots are keys, not paths."""
    folder = tmp_path / "users"
    folder.mkdir()
    pq.write_table(
        pa.table(
            {
                "ctx": pa.array([{"d": "nested"}], pa.struct([("d", pa.string())])),
                "ctx.d": ["flat"],
                "j": ['{"x\\"y": "quoted", "k.j": "dotted", "k": {"j": "path"}}'],
                "t": ["2026-01-05"],
            }
        ),
        folder / "u.parquet",
    )
    settings = TableIngestConfig(
        expressions={
            "user_id": "ctx.d",
            "country": '"ctx".d',
            "device": 'j."x""y"',
            "segment": 'j."k.j"',
            "campaign_id": "j.k.j",
            "signup_ts": "t",
        }
    )
    ingest_paths(lake, [folder], config=IngestConfig(tables={"users": settings}), now=NOW)
    assert lake.fetch_all(
        "SELECT user_id, country, device, segment, campaign_id FROM raw.users"
    ) == [("flat", "flat", "quoted", "dotted", "path")]


def test_an_expression_wins_over_a_rename_and_names_a_contract_column(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    path = write_rows(tmp_path, "users", [{"a": "u1", "t": "2026-01-05"}], "csv")
    settings = TableIngestConfig(
        columns={"a": "user_id", "t": "signup_ts"}, expressions={"user_id": "upper(a)"}
    )
    ingest_paths(lake, [path], config=IngestConfig(tables={"users": settings}), now=NOW)
    assert lake.fetch_all("SELECT user_id FROM raw.users") == [("U1",)]
    path = write_rows(tmp_path / "other", "users", [{"a": "u2", "t": "2026-01-05"}], "csv")
    wrong = TableIngestConfig(expressions={"user_ID": "a", "signup_ts": "t"})
    with pytest.raises(IngestError, match=r"expressions\] user_ID: raw\.users has no column"):
        ingest_paths(lake, [path], config=IngestConfig(tables={"users": wrong}), now=NOW)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"where": "category = 'c'"}, [("p0", "2026-01-05 10:00:00")]),
        ({"timezone": "Europe/Berlin"},
         [("p0", "2026-01-05 09:00:00"), ("p1", "2026-01-05 09:00:00")]),
        ({"expressions": {"name": "upper(name)"}},
         [("p0", "2026-01-05 10:00:00"), ("p1", "2026-01-05 10:00:00")]),
    ],
)  # fmt: skip
def test_a_contract_exact_parquet_file_is_not_copied_past_its_settings(
    lake: LakeProcessor, tmp_path: Path, settings: dict[str, Any], expected: list[Any]
) -> None:
    """A file that could be copied byte for byte is read row by row when a filter, a
    zone or an expression applies to it."""
    folder = tmp_path / "products"
    folder.mkdir()
    pq.write_table(
        pa.table(
            {
                "product_id": ["p0", "p1"],
                "name": ["x", "y"],
                "category": ["c", "d"],
                "brand": ["b", "b"],
                "price": [1.0, 2.0],
                "cost": [0.5, 0.5],
                "updated_at": pa.array([datetime(2026, 1, 5, 10)] * 2, pa.timestamp("us")),
            }
        ),
        folder / "p.parquet",
    )
    loaded, held = load(lake, folder / "p.parquet", **settings)
    assert ([(r[0], str(r[6])) for r in loaded], held) == (expected, [])
    if "expressions" in settings:
        assert [r[1] for r in loaded] == ["X", "Y"]


def test_json_lines_keys_folded_into_properties_keep_their_json_types(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    """Unmapped JSON Lines keys are kept as the line held them: numbers as numbers,
    objects as objects, not as their text."""
    folder = tmp_path / "events"
    folder.mkdir()
    line = {
        "event_id": "e1", "user_id": "u1", "event_type": "view",
        "event_ts": "2026-01-05T10:00:00Z", "ctx": {"a": 1, "b": [True, None]}, "n": 1.5,
        "flag": False, "label": "1", "gone": None,
    }  # fmt: skip
    (folder / "e.jsonl").write_text(json.dumps(line) + "\n")
    ingest_paths(lake, [folder], now=NOW)
    (props,) = lake.fetch_all("SELECT properties FROM raw.events")[0]
    assert json.loads(props) == {"ctx": {"a": 1, "b": [True, None]}, "n": 1.5, "flag": False,
                                 "label": "1"}  # fmt: skip
