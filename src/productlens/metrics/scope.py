"""What every metrics query shares: the events it reads, in which zone, over which range.

A `Scope` is parsed once from the command line or the Python API and turned into SQLGlot
expressions; no value from outside is pasted into SQL text. Time rules:

- `event_ts` in the warehouse is UTC. Days, weeks and months are calendar periods in the
  scope's zone (`[metrics] timezone`), weeks starting on `week_start`.
- `--from` / `--to` are inclusive. A date means the whole local day; an ISO-8601 instant
  without an offset is local time in the scope's zone. Bounds are turned into UTC instants
  in Python (zoneinfo), so the range filter is a plain comparison on `event_ts`.
- An instant is exact for metrics over events or orders (funnel, paths, revenue). Metrics
  that report local days (activity, lifecycle, retention) never report part of a day:
  they read the scope through `whole_days`, which widens an instant bound to the whole
  local day it falls in, as if that date had been given.
- `--where KEY=VALUE[,VALUE...]` compares an event column or a key of `properties` as
  text (a number is its text: `0` is "0"); several values mean any of them; several
  filters must all hold. The key and every value must be non-empty.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlglot import exp

from productlens.errors import ConfigError
from productlens.ingest.mapping import json_path

Grain = Literal["day", "week", "month"]
WeekStart = Literal["monday", "sunday"]
GRAINS: tuple[Grain, ...] = ("day", "week", "month")

# Columns of core.fct_events a filter or a breakdown may name; any other key is looked up
# in the event's `properties` JSON.
EVENT_COLUMNS = (
    "event_id",
    "user_id",
    "session_id",
    "event_type",
    "device",
    "country",
    "product_id",
    "amount",
)
EVENTS_TABLE = "core.fct_events"

_DURATION = re.compile(r"^\s*(\d+)\s*(mo|s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "mo": 30 * 86400}
# The longest window (about 10,000 years): an event's time plus it stays a timestamp every
# engine holds (DuckDB's and Spark's 64-bit microseconds end in the year 294247; a window
# past about 106 million days is not even an interval there).
MAX_WINDOW_DAYS = 3_650_000


class MetricsInputError(ConfigError):
    """An option of a metrics query that cannot be understood."""

    stage = "metrics"


@dataclass(frozen=True)
class Filter:
    """Events whose `key` (a column or a property) equals one of `values`, as text."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Scope:
    """The events a metrics query reads: zone, week start, UTC range, filters."""

    timezone: str = "UTC"
    week_start: WeekStart = "monday"
    start: datetime | None = None  # inclusive, naive UTC
    end: datetime | None = None  # exclusive, naive UTC
    where: tuple[Filter, ...] = ()
    source: str = EVENTS_TABLE

    @classmethod
    def parse(
        cls,
        *,
        timezone: str = "UTC",
        week_start: WeekStart = "monday",
        date_from: str | None = None,
        date_to: str | None = None,
        where: Iterable[str] = (),
        source: str = EVENTS_TABLE,
        flags: tuple[str, str] = ("--from", "--to"),
    ) -> Scope:
        """A scope from command-line text: bounds as dates or ISO instants, filters as
        KEY=VALUE[,VALUE...]. `flags` names the two range options in errors."""
        zone = zone_info(timezone)
        start = parse_bound(date_from, zone, end=False, flag=flags[0]) if date_from else None
        end = parse_bound(date_to, zone, end=True, flag=flags[1]) if date_to else None
        if start is not None and end is not None and end <= start:
            raise MetricsInputError(f"{flags[1]} {date_to} is before {flags[0]} {date_from}")
        return cls(timezone, week_start, start, end, parse_where(where), source)

    @property
    def zone(self) -> ZoneInfo:
        return zone_info(self.timezone)

    def local(self, instant: datetime) -> datetime:
        """A naive UTC instant as naive local time in the scope's zone."""
        return instant.replace(tzinfo=UTC).astimezone(self.zone).replace(tzinfo=None)

    def whole_days(self) -> Scope:
        """The scope widened to whole local days: the start to the local midnight that
        begins its day, the end to the one after the last day it touches (a date bound
        is unchanged; an instant selects the day it falls in)."""
        start, end = self.start, self.end
        try:
            if start is not None:
                start = self._midnight(self.local(start).date())
            if end is not None:
                last = self.local(end - timedelta(microseconds=1)).date()
                end = self._midnight(last + timedelta(days=1))
        except OverflowError:
            raise MetricsInputError(
                "--from/--to: a whole day of the range is outside the dates this tool can handle"
            ) from None
        return replace(self, start=start, end=end)

    def _midnight(self, day: date) -> datetime:
        """The naive UTC instant at which a local day starts."""
        local = datetime.combine(day, datetime.min.time()).replace(tzinfo=self.zone)
        return local.astimezone(UTC).replace(tzinfo=None)


def zone_info(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MetricsInputError(f"unknown time zone {name!r} (use an IANA name)") from None


def parse_bound(text: str, zone: ZoneInfo, *, end: bool, flag: str | None = None) -> datetime:
    """An inclusive --from/--to bound as a naive UTC instant; for `end`, the first
    instant after the bound (a date's next local midnight, an instant plus 1 µs)."""
    value = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = date.fromisoformat(value)
            local = datetime.combine(day + timedelta(days=1) if end else day, datetime.min.time())
            moment = local.replace(tzinfo=zone)
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
            if end:
                moment += timedelta(microseconds=1)
        return moment.astimezone(UTC).replace(tzinfo=None)
    except ValueError:
        raise MetricsInputError(
            f"{_flag(flag, end)} {text!r} is neither a date (YYYY-MM-DD) nor an ISO-8601 instant"
        ) from None
    except OverflowError:
        raise MetricsInputError(
            f"{_flag(flag, end)} {text!r} is outside the dates this tool can handle"
        ) from None


def _flag(flag: str | None, end: bool) -> str:
    return flag or ("--to" if end else "--from")


def parse_where(texts: Iterable[str], flag: str = "--where") -> tuple[Filter, ...]:
    """`KEY=VALUE[,VALUE...]` filters; neither the key nor a value may be empty (`KEY=`
    would match nothing: a missing property is not ""). `flag` names the option in errors."""
    filters = []
    for text in texts:
        key, sep, joined = text.partition("=")
        values = tuple(joined.split(","))
        if not sep or not key.strip() or "" in values:
            raise MetricsInputError(
                f"{flag} {text!r}: expected KEY=VALUE[,VALUE...] with no empty value"
            )
        filters.append(Filter(key.strip(), values))
    return tuple(filters)


def column_lookalike(key: str) -> str | None:
    """The event column `key` differs from only in case (`Device` for `device`), if any:
    such a key is a property name like any other, which the user rarely means."""
    if key in EVENT_COLUMNS:
        return None
    return next((c for c in EVENT_COLUMNS if c == key.strip().lower()), None)


def parse_by(by: str | None) -> str | None:
    """A `--by` breakdown key (a column or a property name), or None without one."""
    if by is not None and not by.strip():
        raise MetricsInputError("--by '': expected a column or property name")
    return by


def parse_duration(text: str, flag: str = "--window") -> timedelta:
    """`N<unit>` with units s, m, h, d, w, mo (a month is 30 days). `flag` names the
    option (or field) in errors."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise MetricsInputError(
            f"{flag} {text!r}: expected a positive N followed by s, m, h, d, w or mo (e.g. 7d)"
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_WINDOW_DAYS * 86400:
        raise MetricsInputError(f"{flag} {text!r}: {too_long()}")
    return timedelta(seconds=seconds)


def too_long() -> str:
    """Why a window past `MAX_WINDOW_DAYS` is refused."""
    return f"too long (at most {MAX_WINDOW_DAYS:,} days)"


def event_value(key: str, table: str | None = None) -> exp.Expression:
    """An event column or, for any other key, the property of that name, as text."""
    if key in EVENT_COLUMNS:
        return exp.cast(exp.column(key, table), "varchar")
    # Built through DuckDB's function table so SQLGlot knows it as JSONExtractScalar and
    # can write it for PostgreSQL and Spark.
    value = exp.func(
        "json_extract_string",
        exp.column("properties", table),
        exp.Literal.string(json_path([key])),
        dialect="duckdb",
    )
    return cast(exp.Expression, value)


def where_condition(filters: Sequence[Filter], table: str | None = None) -> exp.Condition | None:
    """All filters as one condition, or None without filters."""
    conditions = [
        event_value(f.key, table).isin(*[exp.Literal.string(v) for v in f.values]) for f in filters
    ]
    return exp.and_(*conditions) if conditions else None


def range_condition(scope: Scope, column: str = "event_ts") -> exp.Condition | None:
    conditions: list[exp.Expression] = []
    if scope.start is not None:
        conditions.append(exp.column(column) >= timestamp_literal(scope.start))
    if scope.end is not None:
        conditions.append(exp.column(column) < timestamp_literal(scope.end))
    return exp.and_(*conditions) if conditions else None


def timestamp_literal(value: datetime) -> exp.Expression:
    return exp.cast(exp.Literal.string(value.isoformat(sep=" ")), "timestamp")


def date_literal(value: date) -> exp.Expression:
    return exp.cast(exp.Literal.string(value.isoformat()), "date")


def local_ts(
    scope: Scope, column: exp.Expression | None = None, span: Span | None = None
) -> exp.Expression:
    """The local wall-clock time of a UTC timestamp column in the scope's zone.

    With `span` (naive UTC instants, end exclusive), an instant inside it gets the zone's
    UTC offset from a CASE over the offset changes in the span (found with zoneinfo, the
    same rules the range bounds use): an addition instead of a time-zone conversion per
    row, several times faster on millions of events. Instants outside the span (or a
    span with too many changes) are converted as without it, so the result never
    depends on the span, only the speed does."""
    ts = column if column is not None else exp.column("event_ts")
    if scope.timezone == "UTC":
        return ts
    converted = exp.ConvertTimezone(
        source_tz=exp.Literal.string("UTC"),
        target_tz=exp.Literal.string(scope.timezone),
        timestamp=ts,
    )
    pieces = offset_pieces(scope.timezone, *span) if span is not None else None
    if not pieces:
        return converted
    assert span is not None
    ifs = [exp.If(this=ts.copy() < timestamp_literal(span[0]), true=converted.copy())]
    for (_, offset), (end, _) in zip(pieces, [*pieces[1:], (span[1], 0)], strict=True):
        shifted = exp.Add(
            this=ts.copy(),
            expression=exp.Interval(this=exp.Literal.string(str(offset)), unit=exp.var("SECOND")),
        )
        ifs.append(exp.If(this=ts.copy() < timestamp_literal(end), true=shifted))
    return exp.Case(ifs=ifs, default=converted)


Span = tuple[datetime, datetime]
MAX_OFFSET_PIECES = 64  # beyond this many offset changes in a span, convert per row
# Offsets are sampled daily: the closest two changes of any zone in tzdata since 1900
# are four days apart (Africa/Freetown, 1939), so no change hides between two samples.
_SCAN_STEP = timedelta(days=1)


@functools.lru_cache(maxsize=64)
def offset_pieces(
    timezone: str, start: datetime, end: datetime
) -> tuple[tuple[datetime, int], ...]:
    """The zone's UTC offset (seconds) over [start, end) as (first instant, offset)
    pieces, first piece at `start`; () when the span holds more than MAX_OFFSET_PIECES
    or cannot be handled. Offsets are sampled every _SCAN_STEP and each change is found
    to the microsecond by bisection."""
    zone = zone_info(timezone)

    def offset(instant: datetime) -> int:
        delta = instant.replace(tzinfo=UTC).astimezone(zone).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    if end <= start:
        return ()
    try:
        pieces = [(start, offset(start))]
        moment = start
        while moment < end:
            step = min(moment + _SCAN_STEP, end)
            current = pieces[-1][1]
            if offset(step) != current:
                lo, hi = moment, step  # the change is in (lo, hi]
                while hi - lo > timedelta(microseconds=1):
                    mid = lo + (hi - lo) / 2
                    lo, hi = (mid, hi) if offset(mid) == current else (lo, mid)
                if hi < end:
                    pieces.append((hi, offset(hi)))
                if len(pieces) > MAX_OFFSET_PIECES:
                    return ()
            moment = step
    except (OverflowError, ValueError):
        return ()
    return tuple(pieces)


def period_start(scope: Scope, grain: Grain, local: exp.Expression) -> exp.Expression:
    """The first local day of the period (day, week, month) a local time falls in."""
    day = exp.cast(local, "date")
    if grain == "day":
        return day
    if grain == "month":
        return exp.cast(exp.func("date_trunc", exp.Literal.string("month"), day), "date")
    if scope.week_start == "monday":
        return exp.cast(exp.func("date_trunc", exp.Literal.string("week"), day), "date")
    # Sunday weeks: the Monday-week of the next day, moved back one day.
    next_day = _add_days(day, 1)
    shifted = exp.cast(exp.func("date_trunc", exp.Literal.string("week"), next_day), "date")
    return _add_days(shifted, -1)


def _add_days(day: exp.Expression, days: int) -> exp.Expression:
    # A negative count is written as a subtraction: SQLGlot mangles a negative interval
    # for PostgreSQL.
    shift = exp.DateAdd if days >= 0 else exp.DateSub
    return exp.cast(shift(this=day, expression=exp.convert(abs(days)), unit=exp.var("DAY")), "date")


def period_floor(scope: Scope, grain: Grain, moment: date) -> date:
    """The same as `period_start`, in Python, for a local date."""
    if grain == "day":
        return moment
    if grain == "month":
        return moment.replace(day=1)
    offset = moment.weekday() if scope.week_start == "monday" else (moment.weekday() + 1) % 7
    return moment - timedelta(days=offset)


def period_add(grain: Grain, start: date, n: int) -> date:
    """The start of the period `n` periods after the one starting at `start`."""
    if grain == "day":
        return start + timedelta(days=n)
    if grain == "week":
        return start + timedelta(days=7 * n)
    months = start.year * 12 + start.month - 1 + n
    return date(months // 12, months % 12 + 1, 1)


@dataclass(frozen=True)
class EventsSpec:
    """Which events a query reads, and the extra columns it needs computed."""

    event_types: tuple[str, ...] | None = None  # None: every event
    columns: tuple[str, ...] = ("user_id", "event_ts", "event_type")
    extra: dict[str, exp.Expression] = field(default_factory=dict)


def scoped_events(scope: Scope, spec: EventsSpec) -> exp.Select:
    """SELECT the spec's columns from the scope's events: in range, filtered, and (when
    given) only the named event types."""
    query = exp.select(
        *[exp.column(c) for c in spec.columns],
        *[value.as_(name) for name, value in spec.extra.items()],
    ).from_(exp.to_table(scope.source))
    conditions = [
        c
        for c in (
            range_condition(scope),
            where_condition(scope.where),
            exp.column("event_type").isin(*[exp.Literal.string(t) for t in spec.event_types])
            if spec.event_types is not None
            else None,
        )
        if c is not None
    ]
    return query.where(exp.and_(*conditions)) if conditions else query
