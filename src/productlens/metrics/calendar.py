"""Local days as SQL: the events' local day, a portable spine of days, and the days a
query reports.

Shared by activity and lifecycle. The spine is a digits cross join (no `generate_series`,
which Spark lacks), bounded by the range the user asked for or, without one, by the
first and last active day.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from sqlglot import exp

from productlens.metrics.scope import (
    MetricsInputError,
    Scope,
    Span,
    date_literal,
    local_ts,
    period_start,
    range_condition,
)

if TYPE_CHECKING:
    from productlens.engines import Engine

# 10^5 days (273 years) is more than any calendar a query reports.
SPINE_DIGITS = 5


def add_days(day: exp.Expression, days: int | exp.Expression) -> exp.Expression:
    """`day` plus `days` days, as a date."""
    return shift_date(day, days, "DAY")


def shift_date(day: exp.Expression, n: int | exp.Expression, unit: str) -> exp.Expression:
    """`day` moved by `n` units (DAY, MONTH), as a date. A negative count is written as
    a subtraction (SQLGlot mangles a negative interval for PostgreSQL)."""
    if isinstance(n, exp.Expression):
        return exp.cast(exp.DateAdd(this=day, expression=n, unit=exp.var(unit)), "date")
    shift = exp.DateAdd if n >= 0 else exp.DateSub
    return exp.cast(shift(this=day, expression=exp.convert(abs(n)), unit=exp.var(unit)), "date")


def local_day(scope: Scope, span: Span | None = None) -> exp.Expression:
    """The event's calendar day in the scope's zone (`span`: see `local_ts`)."""
    return period_start(scope, "day", local_ts(scope, span=span))


def event_span(engine: Engine, scope: Scope) -> Span | None:
    """The UTC instants [first, last + 1 µs) of the scope's range, the events' where the
    range is open; None in UTC (nothing to convert) or without events. For `local_ts`."""
    if scope.timezone == "UTC":
        return None
    start, end = scope.start, scope.end
    if start is None or end is None:
        ts = exp.column("event_ts")
        query = exp.select(exp.Min(this=ts).as_("lo"), exp.Max(this=ts.copy()).as_("hi")).from_(
            exp.to_table(scope.source)
        )
        condition = range_condition(scope)
        query = query.where(condition) if condition is not None else query
        row = engine.fetch_arrow(query).to_pylist()[0]
        if row["lo"] is None:
            return None
        start = start if start is not None else row["lo"]
        end = end if end is not None else row["hi"] + timedelta(microseconds=1)
    return (start, end)


def report_days(scope: Scope) -> tuple[date | None, date | None]:
    """The first and last local day the scope's range touches (None: not bounded)."""
    first = scope.local(scope.start).date() if scope.start is not None else None
    last = (
        scope.local(scope.end - timedelta(microseconds=1)).date() if scope.end is not None else None
    )
    return first, last


def local_midnight_utc(scope: Scope, day: date) -> datetime:
    """The naive UTC instant at which a local day starts in the scope's zone."""
    return (
        datetime.combine(day, time())
        .replace(tzinfo=scope.zone)
        .astimezone(UTC)
        .replace(tzinfo=None)
    )


def with_lookback(scope: Scope, days: int) -> Scope:
    """The scope reading `days` more whole local days before its first day (trailing
    windows of the first reported days need them); unbounded scopes stay unbounded."""
    first, _ = report_days(scope)
    if first is None:
        return scope
    try:
        lookback = local_midnight_utc(scope, first - timedelta(days))
    except OverflowError:
        raise MetricsInputError(
            f"--from {first}: the {days} days before it are outside the dates this tool can handle"
        ) from None
    return dataclasses.replace(scope, start=lookback)


def bounds_select(scope: Scope, activity: str, day_column: str) -> exp.Select:
    """One row: `report_lo`/`report_hi`, the first and last day reported (the range's, or
    else the first and last active day in `activity`), and `spine_lo`, where the spine
    starts (the earliest active day when a lookback reads earlier)."""
    first, last = report_days(scope)
    lo_min = exp.Min(this=exp.column(day_column))
    lo_max = exp.Max(this=exp.column(day_column))
    report_lo = date_literal(first) if first is not None else lo_min
    report_hi = date_literal(last) if last is not None else lo_max
    earliest = exp.func("coalesce", lo_min, report_lo)
    spine_lo = exp.Case(
        ifs=[exp.If(this=earliest < report_lo, true=earliest)], default=report_lo.copy()
    )
    return exp.select(
        report_lo.as_("report_lo"), report_hi.as_("report_hi"), spine_lo.as_("spine_lo")
    ).from_(activity)


def with_spine(query: exp.Select, bounds: str) -> exp.Select:
    """Add `digits` and `days`: every day from `spine_lo` to `report_hi` of the `bounds`
    CTE, as `day` (a cross join of digit tables, 0 .. 10^SPINE_DIGITS - 1 days)."""
    digits = exp.select("*").from_(
        exp.Values(
            expressions=[exp.tuple_(exp.convert(d)) for d in range(10)],
            alias=exp.TableAlias(this=exp.to_identifier("t"), columns=[exp.to_identifier("n")]),
        )
    )
    aliases = [f"d{k}" for k in range(SPINE_DIGITS)]
    offset: exp.Expression = exp.column("n", aliases[0])
    for k, alias in enumerate(aliases[1:], start=1):
        offset = offset + exp.column("n", alias) * exp.convert(10**k)
    span = exp.DateDiff(
        this=exp.column("report_hi", "b"),
        expression=exp.column("spine_lo", "b"),
        unit=exp.var("DAY"),
    )
    days = exp.select(add_days(exp.column("spine_lo", "b"), offset).as_("day")).from_(
        exp.to_table(bounds).as_("b")
    )
    for alias in aliases:
        days = days.join(exp.to_table("digits").as_(alias), join_type="cross")
    return query.with_("digits", as_=digits).with_("days", as_=days.where(offset.copy() <= span))
