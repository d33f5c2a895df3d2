"""Property tests of ingestion in both directions: generated valid rows all load, with
exactly the values they were written with; generated faults are quarantined with exactly
the reason planted, and every other row still loads."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from productlens.ingest import ingest_paths
from tests.conftest import open_lake

NOW = datetime(2026, 11, 22, tzinfo=UTC)
COLUMNS = ["event_id", "user_id", "event_type", "event_ts", "device", "amount", "properties"]
FORMATS = ["csv", "jsonl", "parquet"]

# Text a user's export may hold: any printable character, quotes and separators included,
# not blank and without surrounding blanks (blank is "missing"; readers keep the rest).
text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs", "Cc", "Zl", "Zp"]), min_size=1, max_size=8
).filter(lambda s: s.strip() == s and s != "")
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2026, 11, 1), timezones=st.just(UTC)
)
offsets = st.integers(min_value=-12 * 4, max_value=14 * 4).map(lambda q: timedelta(minutes=15 * q))
amounts = st.one_of(
    st.none(),
    st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False),
)
properties = st.one_of(
    st.none(),
    st.dictionaries(
        st.text(min_size=1, max_size=5),
        st.one_of(st.integers(-1000, 1000), st.text(max_size=5), st.booleans()),
        max_size=3,
    ),
)


def time_text(instant: datetime, offset: timedelta, style: int) -> str:
    """One instant written the ways exports write it; all name the same instant."""
    local = instant.astimezone(timezone(offset))
    if style == 0:  # naive, which means UTC here
        return instant.replace(tzinfo=None).isoformat(sep=" ")
    if style == 1:
        return instant.replace(tzinfo=None).isoformat() + "Z"
    return local.isoformat()  # with an explicit offset, e.g. +05:30


@dataclass
class Row:
    values: dict[str, str | None]  # as written to the file
    expected: tuple[Any, ...] | None  # the loaded row, or None if quarantined
    reason: str | None = None


@st.composite
def valid_rows(draw: st.DrawFn) -> list[Row]:
    n = draw(st.integers(min_value=1, max_value=15))
    ids = draw(st.lists(text, min_size=n, max_size=n, unique=True))
    rows = []
    for event_id in ids:
        instant = draw(instants)
        written_time = time_text(instant, draw(offsets), draw(st.integers(0, 2)))
        amount = draw(amounts)
        props = draw(properties)
        user, event_type = draw(text), draw(text)
        device = draw(st.one_of(st.none(), text))
        values = {
            "event_id": event_id,
            "user_id": user,
            "event_type": event_type,
            "event_ts": written_time,
            "device": device,
            "amount": None if amount is None else repr(amount),
            "properties": None if props is None else json.dumps(props),
        }
        expected = (
            event_id, user, event_type, instant.replace(tzinfo=None), device, amount,
            None if props is None else props,
        )  # fmt: skip
        rows.append(Row(values, expected))
    return rows


# How to plant each fault in a valid row: the reason it must get, and the change.
FAULTS: dict[str, Any] = {
    "null_key": lambda v, _: {**v, "event_id": None},
    "missing_value": lambda v, _: {**v, "event_type": None},
    "bad_timestamp": lambda v, d: {**v, "event_ts": d(st.sampled_from(
        ["2026-13-45 10:00:00", "yesterday", "epoch", "infinity", "2026-01-05 10:00 Mars/X"]))},
    "future_timestamp": lambda v, _: {**v, "event_ts": "2031-01-01T00:00:00+01:00"},
    "negative_amount": lambda v, d: {**v, "amount": d(st.sampled_from(["-1.5", "-1e-9"]))},
    "bad_type": lambda v, d: {**v, "amount": d(st.sampled_from(
        ["NaN", "inf", "-Infinity", "1e400", "12abc", "0x1F", "1,5"]))},
}  # fmt: skip


@st.composite
def rows_with_faults(draw: st.DrawFn) -> list[Row]:
    rows = draw(valid_rows())
    faulty = draw(st.sets(st.integers(0, len(rows) - 1), max_size=len(rows)))
    for i in sorted(faulty):
        reason = draw(st.sampled_from([*FAULTS, "duplicate"]))
        earlier = [j for j in range(i) if j not in faulty]
        if reason == "duplicate":
            if not earlier:
                continue
            # The key of an earlier row that loads; the row's other values may differ.
            values = {
                **rows[i].values,
                "event_id": rows[draw(st.sampled_from(earlier))].values["event_id"],
            }
        else:
            values = FAULTS[reason](rows[i].values, draw)
        rows[i] = Row(values, None, reason)
    return rows


def write(folder: Path, rows: list[Row], fmt: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"events.{fmt}"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(["" if row.values[c] is None else row.values[c] for c in COLUMNS])
        path.write_text(buffer.getvalue(), encoding="utf-8")
    elif fmt == "jsonl":
        lines = [json.dumps({c: row.values[c] for c in COLUMNS}) + "\n" for row in rows]
        path.write_text("".join(lines), encoding="utf-8")
    else:
        table = pa.table({c: pa.array([r.values[c] for r in rows], pa.string()) for c in COLUMNS})
        pq.write_table(table, path)
    return path


def check(tmp: Path, rows: list[Row], fmt: str) -> None:
    path = write(tmp / "events", rows, fmt)
    lake = open_lake(tmp / "w.duckdb", memory_limit="512MB", threads=1)
    try:
        result = ingest_paths(lake, [path], now=NOW)
        loaded = lake.fetch_all(
            f"SELECT {', '.join(COLUMNS)}, _row_number FROM raw.events ORDER BY _row_number"
        )
        held = lake.fetch_all("SELECT row_number, reasons FROM raw.quarantine ORDER BY 1")
    finally:
        lake.close()
    got = [(*r[:6], None if r[6] is None else json.loads(r[6]), r[7]) for r in loaded]
    first = 2 if fmt == "csv" else 1  # a row's line in the file: a CSV header is line 1
    want = [(*r.expected, i) for i, r in enumerate(rows, start=first) if r.expected is not None]
    assert got == want
    assert held == [(i, [r.reason]) for i, r in enumerate(rows, start=first) if r.reason]
    batch = result.batches[0]
    assert batch.rows_read == len(rows) == batch.rows_loaded + batch.rows_quarantined


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=25, deadline=None)
@given(rows=valid_rows())
def test_valid_rows_all_load_exactly(
    tmp_path_factory: pytest.TempPathFactory, fmt: str, rows: list[Row]
) -> None:
    check(tmp_path_factory.mktemp("valid"), rows, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=25, deadline=None)
@given(rows=rows_with_faults())
def test_planted_faults_get_their_reason_and_nothing_else_is_held(
    tmp_path_factory: pytest.TempPathFactory, fmt: str, rows: list[Row]
) -> None:
    check(tmp_path_factory.mktemp("faults"), rows, fmt)
