"""A tiny `core.fct_events` for metrics tests, and the Python side of scopes and zones."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from productlens.engines import DuckDBEngine
from tests.conftest import q

# Names and values that must stay data: quotes, semicolons, `$`, SQL keywords.
HOSTILE = ["it's", 'say "hi"', "a;b", "$set", "DROP TABLE x; --", "select", "", "0"]


@dataclass(frozen=True)
class Event:
    user_id: str
    event_type: str
    ts: datetime  # naive UTC
    event_id: str = ""
    device: str | None = "web"
    properties: dict[str, Any] = field(default_factory=dict)


def load(engine: DuckDBEngine, events: Sequence[Event]) -> None:
    """Replace core.fct_events with `events` (event ids default to their position)."""
    engine.execute(q("CREATE SCHEMA IF NOT EXISTS core"))
    engine.execute(
        q(
            "CREATE OR REPLACE TABLE core.fct_events (event_id VARCHAR, user_id VARCHAR, "
            "event_type VARCHAR, event_ts TIMESTAMP, event_date DATE, device VARCHAR, "
            "country VARCHAR, properties VARCHAR)"
        )
    )
    if not events:
        return
    engine.append_arrow(
        "core",
        "fct_events",
        pa.table(
            {
                "event_id": [e.event_id or f"e{i:05d}" for i, e in enumerate(events)],
                "user_id": [e.user_id for e in events],
                "event_type": [e.event_type for e in events],
                "event_ts": pa.array([e.ts for e in events], pa.timestamp("us")),
                "event_date": [e.ts.date() for e in events],
                "device": [e.device for e in events],
                "country": ["US" for _ in events],
                "properties": [json.dumps(e.properties) if e.properties else None for e in events],
            }
        ),
    )


def local_date(ts: datetime, zone: str) -> date:
    return ts.replace(tzinfo=UTC).astimezone(ZoneInfo(zone)).date()


def week_floor(day: date, week_start: str) -> date:
    offset = day.weekday() if week_start == "monday" else (day.weekday() + 1) % 7
    return day - timedelta(days=offset)


def text(value: Any) -> str:
    """A property or column value as the metrics compare it: missing is ""."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def assert_portable(query: exp.Query) -> None:
    """The query compiles for PostgreSQL and Spark (SQLGlot raises on what it cannot
    write) and leaves no function the target does not know (passed through as-is)."""
    for dialect in ("postgres", "spark"):
        text = query.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)
        reparsed = sqlglot.parse_one(text, read=dialect)
        unknown = sorted({node.name for node in reparsed.find_all(exp.Anonymous)})
        assert unknown == [], f"{dialect} does not know {unknown}"
