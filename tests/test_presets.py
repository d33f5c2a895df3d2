"""Presets load other tools' exports with configuration alone: each shipped preset on a
sample written from the vendor's public export schema (tests/exports/VENDOR), through the
real CLI, with every loaded value written out here; then the warehouse builds on it."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from productlens.config import IngestConfig, TableIngestConfig, load_project
from productlens.errors import IngestError
from productlens.ingest import ingest_paths, presets
from productlens.ingest.processor import LakeProcessor
from tests.conftest import open_project_lake, run_cli

EXPORTS = Path(__file__).parent / "exports"
VENDORS = ["segment", "ga4", "amplitude", "mixpanel", "posthog"]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _ga4_id(pseudo: str, micros: str, name: str, bundle: str, index: str) -> str:
    return _md5("|".join((pseudo, micros, name, bundle, index)))


SEG_ANON, SEG_USER = "507f191e810c19729de860ea", "97980cfea0067"
GA4_WEB = "1197596843.1767603600"
AMP_IOS = "C8F9E604-F01A-4BD9-95C6-8E5357DF265D"
AMP_ANDROID = "e2b7c7f1-2a44-4d6f-9c39-5d3e1a9b0c11"
PH_ANON = "018d5f1e-99ff-7d3c-a0b1-c2d3e4f5a6b7"

# (row in the file, event_id, user_id, session_id, event_type, event_ts (UTC), device,
#  country, amount), in file order.
EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    "segment": [
        # anonymous: userId null, the anonymousId stands in
        (1, "ajs-next-1a2b3c", SEG_ANON, None, "Product Viewed", "2026-01-05 09:00:00",
         "ios", "Germany", None),
        # row 2 is an identify call: filtered. +01:00 wins over UTC
        (3, "ajs-next-3c4d5e", SEG_USER, None, "Order Completed", "2026-01-05 09:05:00.25",
         "ios", "Germany", 25.0),
        (4, "ajs-next-4d5e6f", "a8f0-anon-web", None, "page", "2026-01-05 11:30:00",
         None, "France", None),
        (5, "ios-5e6f70", SEG_USER, None, "screen", "2026-01-05 12:00:00", "ios", None, None),
        # no anonymousId on a server call; -05:00
        (6, "srv-6f7081", SEG_USER, None, "Product Added", "2026-01-05 13:15:00",
         None, None, None),
        # row 7 is a group call: filtered
        (8, "and-8192a3", "c0ffee-android", None, "Signed Up", "2026-01-06 07:45:10.5",
         "android", "Brazil", None),
    ],
    "ga4": [
        # session_start and page_view at the same microsecond: distinct ids by name
        (1, _ga4_id(GA4_WEB, "1767603600000123", "session_start", "1", "0"), GA4_WEB, None,
         "session_start", "2026-01-05 09:00:00.000123", "desktop", "Germany", None),
        (2, _ga4_id(GA4_WEB, "1767603600000123", "page_view", "1", "1"), GA4_WEB, None,
         "page_view", "2026-01-05 09:00:00.000123", "desktop", "Germany", None),
        (3, _ga4_id(GA4_WEB, "1767603750500000", "view_item", "2", "0"), GA4_WEB, None,
         "view_item", "2026-01-05 09:02:30.5", "desktop", "Germany", None),
        # signed in: user_id wins over the pseudo id; revenue from ecommerce
        (4, _ga4_id(GA4_WEB, "1767604200000000", "purchase", "3", "0"), "u-42", None,
         "purchase", "2026-01-05 09:10:00", "desktop", "Germany", 59.98),
        # an app stream: no batch_event_index
        (5, _ga4_id("8f14e45fceea167a5a36dedd4bea2543", "1767621600000000", "screen_view",
                    "57", ""),
         "8f14e45fceea167a5a36dedd4bea2543", None, "screen_view", "2026-01-05 14:00:00",
         "mobile", "Brazil", None),
        (6, _ga4_id("2090567742.1767731000", "1767731400250000", "scroll", "4", "2"),
         "2090567742.1767731000", None, "scroll", "2026-01-06 20:30:00.25", "tablet",
         "United States", None),
    ],
    "amplitude": [
        (1, "0bd8a1a4-c9a2-11f0-8de9-0242ac120002", AMP_IOS, f"{AMP_IOS}#1767603600000",
         "Viewed Product", "2026-01-05 09:00:00.123", "iOS", "Germany", None),
        (2, "1c2e3f40-c9a2-11f0-8de9-0242ac120002", "user-00042", f"{AMP_IOS}#1767603600000",
         "Purchased", "2026-01-05 09:05:00", "iOS", "Germany", 12.5),
        # session_id -1: outside any session
        (3, "2d3e4f50-c9a2-11f0-8de9-0242ac120002", "9f5d8a1e-web-4c1b", None,
         "[Amplitude] Page Viewed", "2026-01-05 14:30:00", "Web", "United States", None),
        (4, "3e4f5061-c9a2-11f0-8de9-0242ac120002", "user-00077",
         f"{AMP_ANDROID}#1767733900000", "Viewed Cart", "2026-01-06 21:15:42.5", "Android",
         "Brazil", None),
        (5, "4f506172-c9a2-11f0-8de9-0242ac120002", "user-00077",
         f"{AMP_ANDROID}#1767733900000", "session_end", "2026-01-06 21:16:00", "Android",
         "Brazil", None),
    ],
    "mixpanel": [
        (1, "hpuDqcvpltpCjBsebtxwadtEBDnFAdyc", "$device:18c4d0e0a4f1-0a9b", None, "Sign Up",
         "2026-01-05 09:00:00", "Mac OS X", "DE", None),
        (2, "935d87b1-00cd-41b7-be34-b9d98dd08b42", "u-42", None, "Purchase",
         "2026-01-05 09:10:00", "iOS", "DE", None),
        # no $insert_id: the id is derived from event, distinct_id and time
        (3, _md5("Plan Upgraded|u-42|1767621600"), "u-42", None, "Plan Upgraded",
         "2026-01-05 14:00:00", None, "US", None),
        (4, "jajcebutltmvhbbgpnadm", "u-77", None, "Viewed Cart", "2026-01-06 20:30:00",
         "Android", "BR", None),
        (5, "ksl2mfa0bb71cc", "u-77", None, "Search", "2026-01-06 20:31:00", "Android", "BR",
         None),
    ],
    "posthog": [
        (1, "018d5f1e-9b3a-7c1e-8a55-1f0e2d3c4b5a", PH_ANON,
         "018d5f1e-9a00-7aaa-b111-000000000001", "$pageview", "2026-01-05 09:00:00.123",
         "Desktop", "DE", None),
        (2, "018d5f1f-0000-7c1e-8a55-1f0e2d3c4b5b", "u-42",
         "018d5f1e-9a00-7aaa-b111-000000000001", "$identify", "2026-01-05 09:01:00",
         "Desktop", "DE", None),
        (3, "018d5f25-1111-7c1e-8a55-1f0e2d3c4b5c", "u-42",
         "018d5f25-0f00-7aaa-b111-000000000002", "purchase", "2026-01-05 10:30:00",
         "Mobile", "GB", None),
        (4, "018d6a00-2222-7c1e-8a55-1f0e2d3c4b5d", "u-77",
         "018d6a00-1f00-7aaa-b111-000000000003", "$autocapture", "2026-01-06 20:30:00.25",
         "Tablet", "US", None),
        (5, "018d6a01-3333-7c1e-8a55-1f0e2d3c4b5e", "u-77", None, "server event",
         "2026-01-06 21:00:00", None, None, None),
    ],
}  # fmt: skip
# The source object each preset keeps as `properties`.
PROPERTIES_KEY = {
    "segment": "properties",
    "ga4": "event_params",
    "amplitude": "event_properties",
    "mixpanel": "properties",
    "posthog": "properties",
}
ROWS = (
    "SELECT _row_number, event_id, user_id, session_id, event_type, CAST(event_ts AS VARCHAR), "
    "device, country, amount FROM raw.events ORDER BY _row_number"
)


def sample(vendor: str) -> Path:
    (path,) = (EXPORTS / vendor).iterdir()
    return path


def vendor_properties(vendor: str, rows: list[int]) -> list[Any]:
    """The properties object of the given lines (1-based) of the vendor's sample."""
    lines = sample(vendor).read_text(encoding="utf-8").splitlines()
    return [json.loads(lines[n - 1]).get(PROPERTIES_KEY[vendor]) for n in rows]


def without_nulls(value: Any) -> Any:
    """JSON with null object members removed: today's JSON Lines reader gives every
    object the keys other lines have, as null; the values themselves must match."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def ingest(project: Path, vendor: str, *extra: str) -> None:
    result = run_cli("--project", str(project), "ingest", str(sample(vendor)), *extra)
    assert result.returncode == 0, result.stderr + result.stdout


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_preset_loads_its_vendors_export_exactly(project_dir: Path, vendor: str) -> None:
    ingest(project_dir, vendor, "--preset", vendor)
    lake = open_project_lake(project_dir)
    try:
        rows = lake.fetch_all(ROWS)
        props = lake.fetch_all(
            "SELECT json_valid(properties), properties FROM raw.events ORDER BY _row_number"
        )
        quarantined = lake.fetch_all("SELECT count(*) FROM raw.quarantine")
        logged = lake.fetch_all(
            "SELECT rows_read, rows_loaded, rows_quarantined FROM ops.ingest_log"
        )
    finally:
        lake.close()
    assert rows == EXPECTED[vendor]
    assert quarantined == [(0,)]
    assert logged == [(len(rows), len(rows), 0)]
    assert all(valid for valid, _ in props)
    expected = vendor_properties(vendor, [r[0] for r in rows])
    assert [without_nulls(json.loads(p)) for _, p in props] == expected


@pytest.mark.slow
@pytest.mark.parametrize("vendor", VENDORS)
def test_the_warehouse_builds_and_checks_on_a_preset_export(project_dir: Path, vendor: str) -> None:
    ingest(project_dir, vendor, "--preset", vendor)
    for command in ("build", "check"):
        result = run_cli("--project", str(project_dir), command)
        assert result.returncode == 0, result.stderr + result.stdout
    lake = open_project_lake(project_dir)
    try:
        counts = lake.fetch_all(
            "SELECT (SELECT count(*) FROM raw.events), "
            "(SELECT count(*) FROM staging.stg_events), (SELECT count(*) FROM core.fct_events)"
        )
    finally:
        lake.close()
    n = len(EXPECTED[vendor])
    # Every loaded event reaches the core facts (events-only: no user is known).
    assert counts == [(n, n, n)]


def test_the_project_default_preset_and_its_overrides(project_dir: Path) -> None:
    """`[ingest] preset` applies without --preset; one expression and the timezone set in
    the project override the preset's, the rest of the preset stays."""
    (project_dir / "productlens.toml").write_text(
        '[ingest]\npreset = "amplitude"\n\n'
        "[ingest.tables.events]\n"
        'timezone = "Europe/Berlin"\n\n'
        "[ingest.tables.events.expressions]\n"
        'device = "device_type"\n'
    )
    ingest(project_dir, "amplitude")
    lake = open_project_lake(project_dir)
    try:
        rows = lake.fetch_all(
            "SELECT event_id, user_id, CAST(event_ts AS VARCHAR), device FROM raw.events "
            "ORDER BY _row_number LIMIT 2"
        )
    finally:
        lake.close()
    # Amplitude's naive times now read as Berlin time (UTC+1 in January).
    assert rows == [
        ("0bd8a1a4-c9a2-11f0-8de9-0242ac120002", AMP_IOS, "2026-01-05 08:00:00.123",
         "Apple iPhone 13"),
        ("1c2e3f40-c9a2-11f0-8de9-0242ac120002", "user-00042", "2026-01-05 08:05:00",
         "Apple iPhone 13"),
    ]  # fmt: skip


def test_an_override_adds_what_the_preset_leaves_out_and_a_rename_beats_its_expression(
    project_dir: Path,
) -> None:
    """Mixpanel has no standard revenue property: a project maps its own; a `--map`
    rename onto a column the preset computes replaces the preset's expression."""
    (project_dir / "productlens.toml").write_text(
        "[ingest.tables.events.expressions]\namount = 'properties.\"Amount\"'\n"
    )
    ingest(project_dir, "mixpanel", "--preset", "mixpanel", "--map", "event=session_id")
    lake = open_project_lake(project_dir)
    try:
        rows = lake.fetch_all(
            "SELECT user_id, session_id, amount FROM raw.events ORDER BY _row_number LIMIT 2"
        )
    finally:
        lake.close()
    assert rows == [("$device:18c4d0e0a4f1-0a9b", "Sign Up", None), ("u-42", "Purchase", 5.0)]


def test_an_unknown_preset_is_a_clear_error_naming_the_presets(project_dir: Path) -> None:
    result = run_cli(
        "--project", str(project_dir), "ingest", str(sample("segment")), "--preset", "heap"
    )
    assert result.returncode == 1
    assert "unknown preset 'heap'; the presets are amplitude, ga4, mixpanel, posthog, segment" in (
        result.stderr + result.stdout
    )
    assert not (project_dir / "warehouse.duckdb").exists() or _no_events(project_dir)
    with pytest.raises(IngestError, match="unknown preset 'heap'"):
        presets.apply(IngestConfig(preset="heap"))


def _no_events(project: Path) -> bool:
    lake = open_project_lake(project)
    try:
        return not lake.table_exists("raw.events") or lake.fetch_all(
            "SELECT count(*) FROM raw.events"
        ) == [(0,)]
    finally:
        lake.close()


def test_presets_are_listed_and_printed_as_project_file_fragments(tmp_path: Path) -> None:
    listed = run_cli("presets")
    assert listed.returncode == 0, listed.stderr
    for vendor in VENDORS:
        assert vendor in listed.stdout
    printed = run_cli("presets", "ga4")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == presets.text("ga4")
    # What is printed can be pasted into productlens.toml as it is.
    (tmp_path / "productlens.toml").write_text(printed.stdout)
    config = load_project(tmp_path).config.ingest
    assert config.tables["events"] == presets.load("ga4")["events"]


def test_merge_is_key_by_key() -> None:
    preset = TableIngestConfig(
        expressions={"event_id": "uuid", "user_id": "distinct_id"},
        formats={"event_ts": "epoch_s"},
        where="a = 1",
        optional_columns=["x"],
    )
    own = TableIngestConfig(
        expressions={"user_id": "person_id"},
        columns={"sid": "session_id", "uid2": "event_id"},
        optional_columns=["y"],
        timezone="Asia/Kolkata",
    )
    merged = presets.merge(preset, own, frozenset(own.columns.values()))
    assert merged.expressions == {"user_id": "person_id"}  # event_id: renamed by the project
    assert merged.columns == {"sid": "session_id", "uid2": "event_id"}
    assert merged.formats == {"event_ts": "epoch_s"}
    assert (merged.where, merged.timezone) == ("a = 1", "Asia/Kolkata")
    assert merged.optional_columns == ["x", "y"]


def test_an_optional_column_a_file_lacks_reads_null_and_others_must_exist(
    lake: LakeProcessor, tmp_path: Path
) -> None:
    """A Segment file of identified server calls has no anonymousId key at all."""
    folder = tmp_path / "events"
    folder.mkdir()
    (folder / "e.csv").write_text("id,userId,t\ne1,u1,2026-01-05T10:00:00Z\n")
    settings = {
        "expressions": {
            "event_id": "id",
            "user_id": "coalesce(userId, anonymousId)",
            "event_type": "'track'",
            "event_ts": "t",
        },
    }
    plain = IngestConfig(tables={"events": TableIngestConfig(**settings)})
    with pytest.raises(IngestError, match="no column 'anonymousId'"):
        ingest_paths(lake, [folder], config=plain)
    config = IngestConfig(
        tables={"events": TableIngestConfig(**settings, optional_columns=["anonymousId"])}
    )
    ingest_paths(lake, [folder], config=config)
    assert lake.fetch_all("SELECT event_id, user_id FROM raw.events") == [("e1", "u1")]


def test_posthog_parquet_with_properties_as_json_text(project_dir: Path, tmp_path: Path) -> None:
    """PostHog's Parquet export stores `properties` as a JSON-encoded string and the time
    as a UTC timestamp: the same preset reads the nested paths out of the text, and the
    properties are kept as the exact text."""
    lines = [json.loads(line) for line in sample("posthog").read_text().splitlines()]
    texts = [json.dumps(line["properties"]) for line in lines]
    times = [datetime.fromisoformat(line["timestamp"]) for line in lines]
    table = pa.table(
        {
            "uuid": [line["uuid"] for line in lines],
            "event": [line["event"] for line in lines],
            "distinct_id": [line["distinct_id"] for line in lines],
            "person_id": [line["person_id"] for line in lines],
            "properties": pa.array(texts, pa.string()),
            "timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
        }
    )
    path = tmp_path / "posthog-export" / "part-0.parquet"
    path.parent.mkdir()
    pq.write_table(table, path)
    result = run_cli("--project", str(project_dir), "ingest", str(path), "--preset", "posthog")
    assert result.returncode == 0, result.stderr + result.stdout
    lake = open_project_lake(project_dir)
    try:
        rows = lake.fetch_all(ROWS)
        props = lake.fetch_all("SELECT properties FROM raw.events ORDER BY _row_number")
        quarantined = lake.fetch_all("SELECT count(*) FROM raw.quarantine")
    finally:
        lake.close()
    assert rows == EXPECTED["posthog"]
    assert props == [(t,) for t in texts]
    assert quarantined == [(0,)]
