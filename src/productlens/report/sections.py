"""The report's and the dashboard's sections: one reader per section, reading the warehouse
through the engine only.

Each reader takes an `Engine`, the `Filters` (a date range, devices, countries) and the
project's `Settings`, and returns a frozen dataclass of plain numbers and Arrow tables,
or None when the warehouse has no data for the section (a world without orders has no
products section; no experiments, no experiments section). Insights are computed from
these dataclasses in `productlens.report.insights`.

Where the data comes from, and which filters apply (`SECTIONS[name].filters`):
- live metrics on `core.fct_events` (productlens.metrics: funnel, retention, activity,
  lifecycle) take the date range, devices and countries;
- revenue (productlens.metrics.revenue and the `daily_sales` mart) takes the date range;
  its customer value (productlens.metrics.customer_value) is a snapshot of the whole data;
- products, campaigns and data health are snapshots of the whole warehouse;
- experiments are the readouts of productlens.experiments (their own dates).

One meaning of "a day" everywhere: a calendar day in `[metrics] timezone`, the days the
metrics count (`productlens.metrics.scope`). The reader's date range, the data's first and
last day, the overview's periods and every daily table are such local days. Where a table
holds UTC dates (`event_date`, `order_date`, the `daily_sales` and `event_counts_daily`
marts) it answers only in a UTC project; in another zone the reader counts from the UTC
instants (`event_ts`, `order_ts`, `signup_ts`) with the zone's midnights. The funnel,
activity and lifecycle marts count local days already. The data's end (`DataEnd`) says
whether a last day is partial.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import sqlglot
from sqlglot import exp

from productlens import layers
from productlens.arrays import array
from productlens.engines.base import SOURCE_DIALECT, Engine, table
from productlens.errors import ReportError
from productlens.experiments.analysis import ExperimentReadout, analyze_experiment
from productlens.experiments.analysis import Settings as ExperimentSettings
from productlens.experiments.data import list_experiments
from productlens.experiments.metric_defs import DEFAULT_METRICS, MetricDef
from productlens.metrics import revenue as revenue_metrics
from productlens.metrics.activity import activity
from productlens.metrics.customer_value import CustomerValue, customer_value
from productlens.metrics.funnel import StepResult, counted_steps, funnel
from productlens.metrics.lifecycle import STATUSES as LIFECYCLE_STATUSES
from productlens.metrics.lifecycle import LifecyclePeriod, lifecycle
from productlens.metrics.retention import MAX_PERIODS, Cohort, retention
from productlens.metrics.scope import (
    Filter,
    Grain,
    Scope,
    WeekStart,
    local_ts,
    parse_duration,
    period_floor,
    period_start,
    range_condition,
    timestamp_literal,
    where_condition,
    zone_info,
)

if TYPE_CHECKING:
    from productlens.config import ProjectConfig

FilterKind = Literal["date", "device", "country"]
EVENT_FILTERS: tuple[FilterKind, ...] = ("date", "device", "country")
DATE_ONLY: tuple[FilterKind, ...] = ("date",)
NO_FILTERS: tuple[FilterKind, ...] = ()

# Default period of the overview when no range is given: the data's last week against
# the week before it (half the data when it spans less than two weeks).
OVERVIEW_DAYS = 7
# Event types counted as SaaS usage when the project does not say.
USAGE_EVENTS = ("create_project", "export")
PARETO_POINTS = 200  # at most this many points of the Pareto curve


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What the reader is asked about: days `start`..`end` (inclusive; None: all the
    data), calendar days in the project's zone (`Settings.timezone`), and the devices and
    countries of events (empty: all)."""

    start: date | None = None
    end: date | None = None
    devices: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ReportError(f"the range ends ({self.end}) before it starts ({self.start})")

    @property
    def where(self) -> tuple[Filter, ...]:
        pairs = (("device", self.devices), ("country", self.countries))
        return tuple(Filter(key, tuple(values)) for key, values in pairs if values)

    def scope(self, settings: Settings) -> Scope:
        """The metrics scope: whole local days of the range, the filters on events."""
        return Scope(
            timezone=settings.timezone,
            week_start=settings.week_start,
            start=_midnight(self.start, settings.timezone),
            end=_midnight(
                None if self.end is None else self.end + timedelta(days=1), settings.timezone
            ),
            where=self.where,
        )


def _midnight(day: date | None, timezone: str) -> datetime | None:
    """The naive UTC instant at which a local day starts."""
    if day is None:
        return None
    local = datetime.combine(day, datetime.min.time()).replace(tzinfo=zone_info(timezone))
    return local.astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Settings:
    """The project's vocabulary the readers need (built from the project file by the
    caller: nothing here reads configuration)."""

    funnel_steps: tuple[str, ...] | None = None  # None: the steps the funnel mart holds
    funnel_window: timedelta = timedelta(days=1)
    timezone: str = "UTC"
    week_start: WeekStart = "monday"
    retention_start: str = "signup"
    retention_return: str | None = None
    experiment_metrics: tuple[MetricDef, ...] = DEFAULT_METRICS["ecommerce"]
    usage_events: tuple[str, ...] = USAGE_EVENTS

    @classmethod
    def from_config(cls, config: ProjectConfig) -> Settings:
        m = config.metrics
        return cls(
            funnel_steps=config.funnel_steps(),
            funnel_window=parse_duration(m.funnel_window),
            timezone=m.timezone,
            week_start=m.week_start,
            retention_start=m.retention_start,
            retention_return=m.retention_return,
            experiment_metrics=config.experiment_metrics(),
        )


# --- SQL helpers ------------------------------------------------------------------------------


def _fill(template: str, **values: Any) -> exp.Query:
    """Parse fixed text (DuckDB dialect) and put values in its `__NAME` slots: a value as
    a literal, an expression as itself (no value is pasted into text)."""

    def put(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and node.name.startswith("__"):
            value = values[node.name[2:]]
            # A copy each time: a slot may appear more than once.
            return value.copy() if isinstance(value, exp.Expr) else exp.convert(value)
        return node

    tree = sqlglot.parse_one(template, read=SOURCE_DIALECT).transform(put)
    assert isinstance(tree, exp.Query)
    return tree


def _true() -> exp.Condition:
    return exp.true()


def _day_range(column: str, filters: Filters) -> exp.Condition:
    """`column` (a date) within the filters' days."""
    conditions: list[exp.Expression] = []
    if filters.start is not None:
        conditions.append(
            exp.column(column) >= exp.cast(exp.Literal.string(filters.start.isoformat()), "date")
        )
    if filters.end is not None:
        conditions.append(
            exp.column(column) <= exp.cast(exp.Literal.string(filters.end.isoformat()), "date")
        )
    return exp.and_(*conditions) if conditions else _true()


def _has(engine: Engine, name: str) -> bool:
    schema, _, table_name = name.partition(".")
    return engine.table_kind(schema, table_name) is not None


def _rows(engine: Engine, query: exp.Query) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = engine.fetch_arrow(query).to_pylist()
    return rows


def _event_filter(filters: Filters) -> exp.Condition:
    return where_condition(filters.where) or _true()


def local_day(instant: datetime, timezone: str) -> date:
    """The calendar day in `timezone` of a naive UTC instant."""
    return instant.replace(tzinfo=UTC).astimezone(zone_info(timezone)).date()


def zone_days(timezone: str) -> str:
    """How a caption names the days shown: "UTC days", "America/Los_Angeles days"."""
    return f"{timezone} days"


# A last day whose latest event is in its last minute (23:59 local or later) ran to its
# end as far as a note to the minute can tell.
LAST_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class DataEnd:
    """Where the data stop: the latest event of all (naive UTC; the export's cut, whatever
    the device and country filters: a device without events late in the day is not cut
    short), and the zone the days are counted in.

    A day is partial when the data end before it does: the latest event is on or before
    that day and more than a minute before its end (the next local midnight). The day of
    an export cut at 16:59 is partial; a day whose latest event is at 23:59 is whole; a
    day after the latest event's day is partial (empty: the range runs past the data);
    a day before it is whole."""

    at: datetime
    timezone: str = "UTC"

    @property
    def day(self) -> date:
        """The local day of the latest event."""
        return local_day(self.at, self.timezone)

    def cuts(self, day: date) -> bool:
        """Whether the local `day` is partial (see the class)."""
        ends = _midnight(day + timedelta(days=1), self.timezone)
        assert ends is not None  # a day's midnight
        return self.at < ends - LAST_MINUTE

    def until(self, day: date) -> str:
        """ "data until 16:59 America/Los_Angeles": the latest event in local time, with its
        date when it is not on `day`."""
        local = self.at.replace(tzinfo=UTC).astimezone(zone_info(self.timezone))
        at = f"{local:%H:%M}" if local.date() == day else f"{local:%Y-%m-%d %H:%M}"
        return f"data until {at} {self.timezone}"

    def partial_day(self, days: Sequence[date]) -> date | None:
        """The last of `days` (a daily series, in order) when it is partial, else None."""
        if not days or not self.cuts(days[-1]):
            return None
        return days[-1]

    def note(self, day: date) -> str:
        """What a daily chart says under itself when its last day is partial."""
        return f"{day} is a partial day ({self.until(day)})."


def event_bounds(engine: Engine, filters: Filters) -> tuple[datetime, datetime] | None:
    """The first and last event's time (naive UTC) of the filtered devices and countries."""
    row = _rows(
        engine,
        _fill(
            "select min(event_ts) as first_at, max(event_ts) as last_at "
            "from core.fct_events where __cond",
            cond=_event_filter(filters),
        ),
    )[0]
    if row["first_at"] is None:
        return None
    return row["first_at"], row["last_at"]


def data_days(
    engine: Engine, filters: Filters = Filters(), timezone: str = "UTC"
) -> tuple[date, date] | None:
    """The local days (in `timezone`) of the first and last event of the filtered devices
    and countries; None without events."""
    bounds = event_bounds(engine, filters)
    if bounds is None:
        return None
    return local_day(bounds[0], timezone), local_day(bounds[1], timezone)


def data_end(engine: Engine, settings: Settings) -> DataEnd | None:
    """Where the data stop (`DataEnd`): the latest of all events; None without events."""
    bounds = event_bounds(engine, Filters())
    return None if bounds is None else DataEnd(bounds[1], settings.timezone)


def _span(engine: Engine, filters: Filters, timezone: str = "UTC") -> tuple[date, date] | None:
    """The filters' range, its open ends closed by the data's first and last day."""
    days = data_days(engine, filters, timezone)
    if days is None:
        return None
    first = filters.start or days[0]
    last = filters.end or days[1]
    return (first, last) if first <= last else None


# --- overview ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kpi:
    """One headline number over the period and over the previous period of equal length."""

    key: str
    label: str
    unit: Literal["count", "money", "rate"]
    current: float | None
    previous: float | None
    filtered: bool  # whether device/country filters apply to it

    @property
    def change(self) -> float | None:
        """Relative change from the previous period (None when it was 0 or unknown)."""
        if self.current is None or self.previous is None or self.previous == 0:
            return None
        return (self.current - self.previous) / abs(self.previous)


@dataclass(frozen=True)
class Overview:
    start: date
    end: date
    previous_start: date
    previous_end: date
    kpis: tuple[Kpi, ...]
    # The latest event (naive UTC) when the period's last day is partial (`DataEnd`),
    # else None: an export cut mid-day leaves that day partial, and a reader must see how
    # far it goes.
    data_until: datetime | None = None
    timezone: str = "UTC"  # the zone whose calendar days these are

    def kpi(self, key: str) -> Kpi | None:
        return next((k for k in self.kpis if k.key == key), None)

    @property
    def period(self) -> str:
        """The period's days, and when its last day is partial, the time of the latest
        event in the days' zone: "2026-03-30 to 2026-04-05 (data until 16:14 UTC)"."""
        days = f"{self.start} to {self.end}"
        if self.data_until is None:
            return days
        return f"{days} ({DataEnd(self.data_until, self.timezone).until(self.end)})"

    @property
    def days(self) -> str:
        """Whose days the periods are: "UTC days", "America/Los_Angeles days"."""
        return zone_days(self.timezone)

    @property
    def previous_period(self) -> str:
        return f"{self.previous_start} to {self.previous_end}"


_EVENT_KPIS = """
select
    count(distinct case when __now then user_id end) as users_now,
    count(distinct case when __before then user_id end) as users_before,
    count(case when __now then 1 end) as events_now,
    count(case when __before then 1 end) as events_before
from core.fct_events
where __both and __cond
"""

_SIGNUP_KPIS = """
select
    count(case when __now then 1 end) as now,
    count(case when __before then 1 end) as before
from core.dim_users
where is_current and __cond
"""

_ANY_USER = "select 1 as found from core.dim_users limit 1"

_ORDER_KPIS = """
select
    count(case when is_kept and __now then 1 end) as orders_now,
    count(case when is_kept and __before then 1 end) as orders_before,
    coalesce(sum(case when __now then net_revenue end), 0) as revenue_now,
    coalesce(sum(case when __before then net_revenue end), 0) as revenue_before
from core.int_order_revenue
"""


def _dates(**days: date) -> dict[str, exp.Expression]:
    return {k: exp.cast(exp.Literal.string(v.isoformat()), "date") for k, v in days.items()}


def _on_days(
    first: date | None, last: date | None, timezone: str, ts: str, day: str | None = None
) -> exp.Condition:
    """Rows of the local days `first`..`last` (inclusive; None: open) in `timezone`: by
    the UTC date column `day` in a UTC project (the same days; a partitioned table prunes
    on it), else by the UTC instant `ts` between the zone's midnights, with `day` (when
    the table has one) within a day of the range as well: every zone is less than a day
    from UTC, and the date lets a partitioned table prune."""
    conditions: list[exp.Expression] = []
    if day is not None and timezone == "UTC":
        if first is not None:
            conditions.append(exp.column(day) >= _dates(d=first)["d"])
        if last is not None:
            conditions.append(exp.column(day) <= _dates(d=last)["d"])
        return exp.and_(*conditions) if conditions else _true()
    if first is not None:
        start = _midnight(first, timezone)
        assert start is not None
        conditions.append(exp.column(ts) >= timestamp_literal(start))
        if day is not None:
            conditions.append(exp.column(day) >= _dates(d=first - timedelta(days=1))["d"])
    if last is not None:
        end = _midnight(last + timedelta(days=1), timezone)
        assert end is not None
        conditions.append(exp.column(ts) < timestamp_literal(end))
        if day is not None:
            conditions.append(exp.column(day) <= _dates(d=last + timedelta(days=1))["d"])
    return exp.and_(*conditions) if conditions else _true()


def _local_date(
    timezone: str,
    ts: str,
    day: str | None = None,
    span: tuple[datetime, datetime] | None = None,
) -> exp.Expression:
    """The local day (in `timezone`) of each row: the UTC date column `day` in a UTC
    project, else the date of `ts` in the zone (with `span`, the first and last instant
    the rows hold, by the zone's offsets over it: `metrics.scope.local_ts`)."""
    if day is not None and timezone == "UTC":
        return exp.column(day)
    scope = Scope(timezone=timezone)
    within = None if span is None else (span[0], span[1] + timedelta(microseconds=1))
    return period_start(scope, "day", local_ts(scope, exp.column(ts), within))


def _periods(
    previous: tuple[date, date], current: tuple[date, date], timezone: str, ts: str, day: str | None
) -> dict[str, exp.Condition]:
    """The overview queries' slots: the period (`now`), the one before (`before`), both."""
    return {
        "now": _on_days(*current, timezone, ts, day),
        "before": _on_days(*previous, timezone, ts, day),
        "both": _on_days(previous[0], current[1], timezone, ts, day),
    }


def read_overview(
    engine: Engine, filters: Filters = Filters(), settings: Settings = Settings()
) -> Overview | None:
    """Headline numbers of the range (default: the data's last week) against the period
    of equal length before it, in local days (`Settings.timezone`) for every figure. The
    calendar is the data's whatever the device and country filters (orders and revenue,
    which they do not filter, share the period): a country whose last event is days
    before the data's last day is not shown another week. When the period's last day is
    partial (`DataEnd`), `data_until` is the latest event."""
    tz = settings.timezone
    bounds = event_bounds(engine, filters)
    if bounds is None:
        return None
    if filters.where:
        bounds = event_bounds(engine, Filters())
        assert bounds is not None  # the filtered events are events
    days = local_day(bounds[0], tz), local_day(bounds[1], tz)
    if filters.start is None and filters.end is None:
        length = max(1, min(OVERVIEW_DAYS, ((days[1] - days[0]).days + 1) // 2))
        end = days[1]
        start = end - timedelta(days=length - 1)
    else:
        start, end = filters.start or days[0], filters.end or days[1]
        if start > end:  # an open end closed by data of these filters beyond the other end
            return None
        length = (end - start).days + 1
    previous_end = start - timedelta(days=1)
    previous_start = start - timedelta(days=length)
    previous, current = (previous_start, previous_end), (start, end)
    kpis: list[Kpi] = []
    slots = _periods(previous, current, tz, "event_ts", "event_date")
    ev = _rows(engine, _fill(_EVENT_KPIS, cond=_event_filter(filters), **slots))[0]
    kpis.append(
        Kpi("active_users", "active users", "count", ev["users_now"], ev["users_before"], True)
    )
    kpis.append(Kpi("events", "events", "count", ev["events_now"], ev["events_before"], True))
    # Without a users table (an events-only project: dim_users built empty) there are no
    # signups to count: "0" would contradict the new users the retention section counts.
    if _has(engine, "core.dim_users") and _rows(engine, _fill(_ANY_USER)):
        users_cond = where_condition(filters.where) or _true()
        slots = _periods(previous, current, tz, "signup_ts", None)
        su = _rows(engine, _fill(_SIGNUP_KPIS, cond=users_cond, **slots))[0]
        kpis.append(Kpi("signups", "new signups", "count", su["now"], su["before"], True))
    steps = _funnel_steps(engine, settings)
    if steps:
        # Both periods in one query: each period's events a funnel of their own.
        both = Filters(previous_start, end, filters.devices, filters.countries).scope(settings)
        cut = _midnight(start, settings.timezone)
        assert cut is not None  # a day's midnight
        result = funnel(engine, steps, scope=both, window=settings.funnel_window, split_at=[cut])
        rates = [
            None
            if piece not in result.breakdown
            else result.breakdown[piece][-1].conversion_from_start
            for piece in ("1", "0")  # the period, then the one before it
        ]
        kpis.append(
            Kpi("conversion", f"conversion to {steps[-1]}", "rate", rates[0], rates[1], True)
        )
    if _has(engine, "core.int_order_revenue"):
        slots = _periods(previous, current, tz, "order_ts", "order_date")
        orders = _rows(engine, _fill(_ORDER_KPIS, **slots))[0]
        if orders["orders_now"] or orders["orders_before"]:
            kpis.append(
                Kpi(
                    "orders",
                    "orders",
                    "count",
                    orders["orders_now"],
                    orders["orders_before"],
                    False,
                )
            )
            kpis.append(
                Kpi(
                    "net_revenue",
                    "net revenue",
                    "money",
                    float(orders["revenue_now"]),
                    float(orders["revenue_before"]),
                    False,
                )
            )
    last = DataEnd(bounds[1], tz)
    until = last.at if last.cuts(end) else None
    return Overview(start, end, previous_start, previous_end, tuple(kpis), until, tz)


# --- funnel -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunnelSection:
    """The ordered funnel over the range (each user once), by device (the device of the
    user's first funnel event), and per day of entry."""

    window: timedelta
    steps: tuple[StepResult, ...]
    by_device: dict[str, tuple[StepResult, ...]]
    daily: pa.Table  # day (date), entered, converted, conversion (first step to last)
    note: str | None = None  # the configured steps the events lack (`FunnelSteps.note`)


def _configured_steps(engine: Engine, settings: Settings) -> tuple[str, ...]:
    """The steps asked for: the settings', else the ones the funnel mart was built for."""
    if settings.funnel_steps:
        return settings.funnel_steps
    if not _has(engine, "marts.funnel_daily_metrics"):
        return ()
    rows = _rows(
        engine,
        _fill(
            "select distinct step_no, step_name from marts.funnel_daily_metrics order by step_no"
        ),
    )
    return tuple(str(r["step_name"]) for r in rows)


FALLBACK_STEPS = 3  # the most frequent event types a funnel falls back on


@dataclass(frozen=True)
class FunnelSteps:
    """The funnel's steps and the configured steps the data does not have."""

    steps: tuple[str, ...]
    missing: tuple[str, ...]

    def note(self) -> str | None:
        """What to tell the reader when the configured steps are not all in the data."""
        if not self.missing:
            return None
        said = ", ".join(self.missing)
        if not self.steps:
            return f"The configured funnel steps {said} are not in the events."
        return (
            f"The configured funnel steps {said} are not in the events: the funnel shows "
            f"{' > '.join(self.steps)} instead (set [metrics] funnel_steps in productlens.toml)."
        )


def choose_funnel_steps(configured: Sequence[str], frequent: Sequence[str]) -> FunnelSteps:
    """The configured steps the events have (at least two), else the most frequent event
    types (`frequent`: most frequent first, the order a funnel narrows in); no steps when
    the events have fewer than two types. An events-only project without the configured
    steps showed "conversion to purchase" with no number."""
    known = set(frequent)
    present = tuple(s for s in configured if s in known)
    missing = tuple(s for s in configured if s not in known)
    if len(present) >= 2:
        return FunnelSteps(present, missing)
    fallback = tuple(frequent[:FALLBACK_STEPS]) if len(frequent) >= 2 else ()
    return FunnelSteps(fallback, missing)


def event_types(engine: Engine) -> tuple[str, ...]:
    """Every event type, most frequent first (ties by name): from the event counts mart
    when it is built (a day per type, small), else from core.fct_events."""
    n: exp.Expr
    if _has(engine, "marts.event_counts_daily"):
        source, n = "marts.event_counts_daily", exp.Sum(this=exp.column("n_events"))
    elif _has(engine, "core.fct_events"):
        source, n = "core.fct_events", exp.Count(this=exp.Star())
    else:
        return ()
    schema, name = source.split(".")
    query = (
        exp.select("event_type")
        .from_(table(schema, name))
        .where(exp.column("event_type").is_(exp.null()).not_())
        .group_by("event_type")
        .order_by(exp.Ordered(this=n, desc=True), "event_type")
    )
    return tuple(str(r[0]) for r in engine.fetch_all(query))


def funnel_steps(engine: Engine, settings: Settings) -> FunnelSteps:
    """The steps the report and the dashboard's funnel use (`choose_funnel_steps`)."""
    return choose_funnel_steps(_configured_steps(engine, settings), event_types(engine))


def _funnel_steps(engine: Engine, settings: Settings) -> tuple[str, ...]:
    return funnel_steps(engine, settings).steps


_FUNNEL_DAILY = """
with days as (
    select
        event_date,
        cast(max(case when step_no = 1 then n_users end) as bigint) as entered,
        cast(max(case when step_no = __last then n_users end) as bigint) as converted
    from marts.funnel_daily_metrics
    where __range
    group by event_date
)
select
    event_date as day,
    entered,
    converted,
    cast(converted as double) / nullif(entered, 0) as conversion
from days
order by event_date
"""
DAILY_SCHEMA = pa.schema(
    [
        ("day", pa.date32()),
        ("entered", pa.int64()),
        ("converted", pa.int64()),
        ("conversion", pa.float64()),
    ]
)


def _daily_from_mart(engine: Engine, filters: Filters, n_steps: int) -> pa.Table:
    """Entered and converted per day of entry from `funnel_daily_metrics`: the same query
    (`productlens funnel --per day`, the project's steps and window) built once."""
    query = _fill(_FUNNEL_DAILY, last=n_steps, range=_day_range("event_date", filters))
    return engine.fetch_arrow(query).cast(DAILY_SCHEMA)


def read_funnel(
    engine: Engine, filters: Filters = Filters(), settings: Settings = Settings()
) -> FunnelSection | None:
    chosen = funnel_steps(engine, settings)
    steps = chosen.steps
    if len(steps) < 2:
        return None
    # Unfiltered by device or country, in the project's steps, the daily trend is the
    # funnel mart's (one live funnel query fewer: the slowest part of the report).
    from_mart = (
        not filters.where
        and _has(engine, "marts.funnel_daily_metrics")
        and _configured_steps(engine, Settings()) == steps
    )
    result = funnel(
        engine,
        steps,
        scope=filters.scope(settings),
        window=settings.funnel_window,
        by="device",
        per=None if from_mart else "day",
    )
    if not result.steps[0].count:
        return None
    if from_mart:
        daily = _daily_from_mart(engine, filters, len(steps))
    else:
        trend = result.trend
        daily = pa.table(
            {
                "day": array([date.fromisoformat(p.period) for p in trend], pa.date32()),
                "entered": array([p.steps[0].count for p in trend], pa.int64()),
                "converted": array([p.steps[-1].count for p in trend], pa.int64()),
                "conversion": array(
                    [p.steps[-1].conversion_from_start for p in trend], pa.float64()
                ),
            }
        )
    return FunnelSection(
        settings.funnel_window, result.steps, dict(result.breakdown), daily, chosen.note()
    )


_DEVICE_FUNNEL = """
select device, step_no, step_name, n_users from marts.device_metrics order by device, step_no
"""


def read_funnel_counts(
    engine: Engine, filters: Filters = Filters(), settings: Settings = Settings()
) -> FunnelSection | None:
    """The funnel section's counts over all the data, unfiltered, from the marts (no live
    funnel): `device_metrics` by device, the totals their sums (each user counts once,
    in one device, "" when unknown), the daily trend from `funnel_daily_metrics`. Steps
    carry no times (None): for pages that show counts only. None when the marts cannot
    answer these filters or steps (the caller reads `read_funnel`)."""
    steps = _funnel_steps(engine, settings)
    if (
        filters != Filters()
        or len(steps) < 2
        or not _has(engine, "marts.device_metrics")
        or _configured_steps(engine, Settings()) != steps
    ):
        return None
    rows = engine.fetch_arrow(_fill(_DEVICE_FUNNEL))
    names = rows.column("step_name").to_pylist()
    # One row per device and step, in step order: the mart's grain.
    if not rows.num_rows or names != list(steps) * (rows.num_rows // len(steps)):
        return None
    counts = rows.column("n_users").to_pylist()
    # One row a device, one column a step: the totals are the columns' sums. (NumPy, not
    # Arrow's group_by: that imports pandas, most of a second on the first page.)
    per_device = np.array(counts, dtype=np.int64).reshape(-1, len(steps))
    steps_total = counted_steps(steps, per_device.sum(axis=0).tolist())
    if not steps_total[0].count:
        return None
    devices = rows.column("device").to_pylist()
    by_device = {
        str(devices[i]): counted_steps(steps, counts[i : i + len(steps)])
        for i in range(0, rows.num_rows, len(steps))  # one device per len(steps) rows
        if counts[i]  # as funnel(): a device no user entered from is not listed
    }
    daily = _daily_from_mart(engine, filters, len(steps))
    return FunnelSection(settings.funnel_window, steps_total, by_device, daily)


# --- retention and engagement -----------------------------------------------------------------


@dataclass(frozen=True)
class RetentionSection:
    """Signup cohorts by day and by week (counts[k]: users active k periods after; None:
    not observed yet), daily DAU/WAU/MAU and stickiness, weekly lifecycle."""

    day_cohorts: tuple[Cohort, ...]
    week_cohorts: tuple[Cohort, ...]
    activity: pa.Table  # day, dau, wau, mau, stickiness
    lifecycle: tuple[LifecyclePeriod, ...]


def read_retention(
    engine: Engine, filters: Filters = Filters(), settings: Settings = Settings()
) -> RetentionSection | None:
    span = _span(engine, filters, settings.timezone)
    if span is None:
        return None
    n_days = (span[1] - span[0]).days + 1
    scope = Filters(span[0], span[1], filters.devices, filters.countries).scope(settings)
    # The weeks the range's days touch (days // 7 + 1 was one too many for whole weeks:
    # an empty cohort before the range began).
    n_weeks = (period_floor(scope, "week", span[1]) - period_floor(scope, "week", span[0])).days
    grains: tuple[tuple[Grain, int], ...] = (("day", n_days), ("week", n_weeks // 7 + 1))
    cohorts = {
        grain: retention(
            engine,
            start=settings.retention_start,
            return_event=settings.retention_return,
            scope=scope,
            period=grain,
            periods=min(MAX_PERIODS, periods),
        ).cohorts
        for grain, periods in grains
    }
    # Without device or country filters the marts hold the answer; read in a UTC project
    # only (elsewhere the live query counts the local days: a mart built before the zone
    # was set would hold other days).
    fast = not filters.where and settings.timezone == "UTC"
    daily = _activity_from_mart(engine, span) if fast else None
    # A week the range cuts counts only the range's days: the mart's weeks are whole.
    whole = fast and filters.start is None and filters.end is None
    weeks = _lifecycle_from_mart(engine, span, settings.week_start) if whole else None
    return RetentionSection(
        cohorts["day"],
        cohorts["week"],
        _activity(engine, scope) if daily is None else daily,
        lifecycle(engine, scope, "week").periods if weeks is None else weeks,
    )


ACTIVITY_SCHEMA = pa.schema(
    [
        ("day", pa.date32()),
        ("dau", pa.int64()),
        ("wau", pa.int64()),
        ("mau", pa.int64()),
        ("stickiness", pa.float64()),
    ]
)


def _activity(engine: Engine, scope: Scope) -> pa.Table:
    """DAU, WAU, MAU and stickiness per day of the scope, live (productlens.metrics)."""
    days = activity(engine, scope).total.days
    return pa.table(
        {
            "day": array([date.fromisoformat(d.date) for d in days], pa.date32()),
            "dau": array([d.dau for d in days], pa.int64()),
            "wau": array([d.wau for d in days], pa.int64()),
            "mau": array([d.mau for d in days], pa.int64()),
            "stickiness": array([d.stickiness for d in days], pa.float64()),
        }
    )


_ACTIVITY_MART = """
select activity_date as day, dau, wau, mau, stickiness from marts.active_users_daily
where activity_date between __first and __last order by activity_date
"""


def _activity_from_mart(engine: Engine, span: tuple[date, date]) -> pa.Table | None:
    """The same days from `active_users_daily` (the live query over every event, in UTC
    days: equal to it without device or country filters, whatever the range, since the
    trailing windows read the days before it), None when the mart lacks a day."""
    if not _has(engine, "marts.active_users_daily"):
        return None
    got = engine.fetch_arrow(_fill(_ACTIVITY_MART, **_dates(first=span[0], last=span[1])))
    if got.num_rows != (span[1] - span[0]).days + 1:
        return None
    return got.cast(ACTIVITY_SCHEMA)


_LIFECYCLE_MART = """
select week_start_date, status, n_users from marts.user_lifecycle
where week_start_date between __first and __last
"""
FIRST_WEEKDAY: dict[WeekStart, int] = {"monday": 0, "sunday": 6}


def _lifecycle_from_mart(
    engine: Engine, span: tuple[date, date], week_start: WeekStart
) -> tuple[LifecyclePeriod, ...] | None:
    """The weeks of all the data (`span`) from `user_lifecycle` (the live weekly query
    over every event, UTC), None when the mart's weeks start on another day or it has
    none of them."""
    if not _has(engine, "marts.user_lifecycle"):
        return None
    weekday = FIRST_WEEKDAY[week_start]
    first = span[0] - timedelta(days=(span[0].weekday() - weekday) % 7)
    weeks = [first + timedelta(days=7 * k) for k in range((span[1] - first).days // 7 + 1)]
    bounds = _dates(first=weeks[0], last=weeks[-1])
    rows = _rows(engine, _fill(_LIFECYCLE_MART, **bounds))
    if not rows or any(r["week_start_date"].weekday() != weekday for r in rows):
        return None
    counts: dict[date, dict[str, int]] = {w: dict.fromkeys(LIFECYCLE_STATUSES, 0) for w in weeks}
    for r in rows:  # at most four rows a week
        counts[r["week_start_date"]][str(r["status"])] = int(r["n_users"])
    return tuple(LifecyclePeriod(w.isoformat(), **counts[w]) for w in weeks)


# --- revenue and customers --------------------------------------------------------------------


@dataclass(frozen=True)
class RevenueSection:
    """Net revenue (completed orders) per day, by weekday and by month; the ARR bridge;
    concentration and its Pareto curve; CLV by segment; time to first purchase; customer
    value (the fitted `marts.customer_value`, or why it did not fit, with churn risk)."""

    daily: pa.Table | None  # day, net_revenue, n_orders (None: no orders at all)
    by_weekday: pa.Table | None  # weekday (0 = Monday), n_days, net_revenue, per_day
    by_month: pa.Table | None  # month (first day), n_days, net_revenue, per_day
    arr: tuple[revenue_metrics.ArrMonth, ...] | None
    concentration: revenue_metrics.Concentration | None
    pareto: pa.Table | None  # buyer_share, revenue_share (cumulative, buyers by revenue)
    clv: tuple[revenue_metrics.SegmentValue, ...] | None
    first_purchase: revenue_metrics.FirstPurchase | None
    customer_value: CustomerValue | None = None  # a snapshot: the range does not apply


_DAILY_SALES = """
select sales_date as day, net_revenue, n_orders from marts.daily_sales
where __cond order by sales_date
"""

# The same per local day (a project in another zone than UTC): from the orders, each on
# its local day; the days without orders are filled in Python (`_local_daily_sales`).
_DAILY_ORDERS = """
with orders as (
    select __day as day, net_revenue, is_kept from core.int_order_revenue where __range
)
select day, coalesce(sum(net_revenue), 0) as net_revenue,
    count(case when is_kept then 1 end) as n_orders
from orders
group by day
"""

_ORDER_SPAN = """
select min(order_ts) as first_at, max(order_ts) as last_at from core.int_order_revenue
"""
DAILY_SALES_SCHEMA = pa.schema(
    [("day", pa.date32()), ("net_revenue", pa.float64()), ("n_orders", pa.int64())]
)


def _local_daily_sales(engine: Engine, filters: Filters, timezone: str) -> pa.Table:
    """Net revenue and kept orders per local day, every day from the first to the last
    local day of the orders and events (the data's days, as dim_date's calendar lists
    them for the mart) within the filters' range; a day without orders 0, as the mart
    lists it."""
    orders = _rows(engine, _fill(_ORDER_SPAN))[0]
    instants = [t for t in (orders["first_at"], orders["last_at"]) if t is not None]
    instants += event_bounds(engine, Filters()) or ()
    if not instants:
        return DAILY_SALES_SCHEMA.empty_table()
    first = max(local_day(min(instants), timezone), filters.start or date.min)
    last = min(local_day(max(instants), timezone), filters.end or date.max)
    days = [first + timedelta(days=k) for k in range(max(0, (last - first).days + 1))]
    if not days:
        return DAILY_SALES_SCHEMA.empty_table()
    query = _fill(
        _DAILY_ORDERS,
        day=_local_date(timezone, "order_ts", span=(min(instants), max(instants))),
        range=_on_days(first, last, timezone, "order_ts", "order_date"),
    )
    # One row per day with orders: few rows, put on the calendar in Python.
    found = {r["day"]: r for r in _rows(engine, query)}
    return pa.table(
        {
            "day": array(days, pa.date32()),
            "net_revenue": array(
                [float(found[d]["net_revenue"]) if d in found else 0.0 for d in days],
                pa.float64(),
            ),
            "n_orders": array(
                [int(found[d]["n_orders"]) if d in found else 0 for d in days], pa.int64()
            ),
        }
    )


# The Pareto curve: buyers ranked by net revenue (completed orders in range), the
# cumulative share of buyers and of revenue, thinned to about PARETO_POINTS points.
_PARETO = """
with per_user as (
    select user_id, sum(net_revenue) as revenue
    from core.int_order_revenue
    where is_recognized and __cond
    group by user_id
),
ranked as (
    select
        row_number() over (order by revenue desc, user_id) as revenue_rank,
        count(*) over () as n,
        sum(revenue) over (order by revenue desc, user_id
            rows between unbounded preceding and current row) as cumulative,
        sum(revenue) over () as total
    from per_user
)
select
    cast(revenue_rank as double) / n as buyer_share,
    cumulative / total as revenue_share
from ranked
where total > 0 and (revenue_rank = n or revenue_rank % greatest(1, n // __points) = 0)
order by revenue_rank
"""


def _seasonality(daily: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Revenue per weekday and per month (sums and per-day means), from the daily table."""
    days = daily.column("day").to_pylist()
    revenue = daily.column("net_revenue").to_pylist()
    # Few rows (one per day): grouping them in Python is cheaper than two more queries.
    weekday: dict[int, list[float]] = {}
    month: dict[date, list[float]] = {}
    for day, value in zip(days, revenue, strict=True):
        weekday.setdefault(day.weekday(), []).append(float(value))
        month.setdefault(day.replace(day=1), []).append(float(value))

    def shape(groups: dict[Any, list[float]], key: str, kind: pa.DataType) -> pa.Table:
        keys = sorted(groups)
        return pa.table(
            {
                key: array(keys, kind),
                "n_days": array([len(groups[k]) for k in keys], pa.int64()),
                "net_revenue": array([sum(groups[k]) for k in keys], pa.float64()),
                "per_day": array([sum(groups[k]) / len(groups[k]) for k in keys], pa.float64()),
            }
        )

    return shape(weekday, "weekday", pa.int64()), shape(month, "month", pa.date32())


def read_revenue(
    engine: Engine, filters: Filters = Filters(), settings: Settings = Settings()
) -> RevenueSection | None:
    if not _has(engine, "marts.daily_sales"):
        return None
    scope = Filters(filters.start, filters.end).scope(settings)
    metrics = revenue_metrics.revenue(engine, scope)
    daily: pa.Table | None
    if settings.timezone == "UTC":  # the mart's days are the project's
        query = _fill(_DAILY_SALES, cond=_day_range("sales_date", filters))
        daily = engine.fetch_arrow(query).cast(DAILY_SALES_SCHEMA)
    else:
        daily = _local_daily_sales(engine, filters, settings.timezone)
    assert daily is not None
    weekday = month = None
    if sum(daily.column("n_orders").to_pylist()) == 0:
        daily = None
    else:
        weekday, month = _seasonality(daily)
    pareto = None
    if metrics.concentration is not None:
        pareto = engine.fetch_arrow(
            _fill(
                _PARETO,
                cond=range_condition(scope, "order_ts") or _true(),
                points=PARETO_POINTS,
            )
        )
    if daily is None and metrics.arr_bridge is None:
        return None
    return RevenueSection(
        daily,
        weekday,
        month,
        metrics.arr_bridge,
        metrics.concentration,
        pareto,
        metrics.clv_by_segment,
        metrics.time_to_first_purchase,
        customer_value(engine),
    )


# --- products and marketing -------------------------------------------------------------------


@dataclass(frozen=True)
class ProductsSection:
    """Products and categories by margin, inventory turnover, campaigns (whole period)."""

    products: pa.Table | None  # product_id, product_name, category, n_units, revenue,
    # margin, margin_pct, inventory_turnover: products that sold, by margin descending
    categories: pa.Table | None  # category, n_products, n_units, revenue, margin,
    # margin_pct, inventory_turnover (units / summed average stock), by margin descending
    campaigns: pa.Table | None  # campaign_id, campaign_name, channel, spend, signups,
    # customers, first_touch_revenue, last_touch_revenue, roas, roi; by roi descending


_PRODUCTS = """
select product_id, product_name, category, cast(n_units as bigint) as n_units, revenue,
    margin, margin_pct, inventory_turnover
from marts.product_metrics
where revenue > 0
order by margin desc, product_id
"""

_CATEGORIES = """
select category, count(*) as n_products, cast(sum(n_units) as bigint) as n_units,
    sum(revenue) as revenue, sum(margin) as margin,
    sum(margin) / nullif(sum(revenue), 0) as margin_pct,
    sum(n_units) / nullif(sum(avg_on_hand), 0) as inventory_turnover
from marts.product_metrics
group by category
having sum(revenue) > 0
order by margin desc, category
"""

_CAMPAIGNS = """
select campaign_id, campaign_name, channel, spend, first_touch_signups as signups,
    first_touch_customers as customers, first_touch_revenue, last_touch_revenue, roas, roi
from marts.campaign_attribution
order by roi desc nulls last, campaign_id
"""


def read_products(
    engine: Engine, filters: Filters = Filters(), settings: Settings = Settings()
) -> ProductsSection | None:
    products = categories = campaigns = None
    if _has(engine, "marts.product_metrics"):
        products = engine.fetch_arrow(_fill(_PRODUCTS))
        categories = engine.fetch_arrow(_fill(_CATEGORIES))
        if products.num_rows == 0:
            products = categories = None
    if _has(engine, "marts.campaign_attribution"):
        campaigns = engine.fetch_arrow(_fill(_CAMPAIGNS))
        if campaigns.num_rows == 0:
            campaigns = None
    if products is None and campaigns is None:
        return None
    return ProductsSection(products, categories, campaigns)


# --- SaaS usage -------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageSection:
    """Daily counts of the usage events (projects created, exports) and active users that
    are new (first event ever on the day) or returning."""

    events: pa.Table  # day, event_type, n_events, n_users
    new_vs_returning: pa.Table  # day, new_users, returning_users


_USAGE = """
with events as (
    select __day as day, event_type, user_id
    from core.fct_events
    where __types and __range and __cond
)
select day, event_type, count(*) as n_events, count(distinct user_id) as n_users
from events
group by day, event_type
order by day, event_type
"""

_NEW_RETURNING = """
with firsts as (
    select user_id, min(__day) as first_day from core.fct_events group by user_id
),
active as (
    select distinct __day as day, user_id from core.fct_events where __range and __cond
)
select
    active.day,
    count(case when firsts.first_day = active.day then 1 end) as new_users,
    count(case when firsts.first_day < active.day then 1 end) as returning_users
from active
inner join firsts on active.user_id = firsts.user_id
group by active.day
order by active.day
"""


def read_usage(
    engine: Engine, filters: Filters = Filters(), settings: Settings = Settings()
) -> UsageSection | None:
    if not settings.usage_events:
        return None
    tz = settings.timezone
    cond = _event_filter(filters)
    range_ = _on_days(filters.start, filters.end, tz, "event_ts", "event_date")
    span = None if tz == "UTC" else event_bounds(engine, Filters())
    day = _local_date(tz, "event_ts", "event_date", span)
    types = exp.column("event_type").isin(*[exp.Literal.string(t) for t in settings.usage_events])
    query = _fill(_USAGE, day=day, types=types, range=range_, cond=cond)
    events = engine.fetch_arrow(query)
    if events.num_rows == 0:
        return None
    new_returning = engine.fetch_arrow(_fill(_NEW_RETURNING, day=day, range=range_, cond=cond))
    return UsageSection(events, new_returning)


# --- experiments ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentSummary:
    """One experiment's readout on its first metric (the primary one), treatment by
    treatment, with the decision."""

    experiment_id: str
    name: str | None
    metric: str
    control: str
    variant: str
    n_control: int
    n_variant: int
    lift: float  # relative
    ci_low: float
    ci_high: float
    p_value: float | None
    significant: bool
    srm_mismatch: bool
    srm_p_value: float
    verdict: str
    reasons: tuple[str, ...]
    monthly_impact: float | None
    impact_low: float | None
    impact_high: float | None


@dataclass(frozen=True)
class ExperimentsSection:
    summaries: tuple[ExperimentSummary, ...]
    readouts: tuple[ExperimentReadout, ...] = field(default=(), repr=False)


def read_experiments(
    engine: Engine, filters: Filters = Filters(), settings: Settings = Settings()
) -> ExperimentsSection | None:
    if not _has(engine, "marts.experiment_outcomes") or not settings.experiment_metrics:
        return None
    experiments = [e for e in list_experiments(engine) if e.n_users > 0]
    if not experiments:
        return None
    how = ExperimentSettings(regression=False)  # the decision does not read the regression
    readouts = tuple(
        analyze_experiment(engine, e, settings.experiment_metrics, how) for e in experiments
    )
    summaries = []
    for r in readouts:
        first = r.metrics[0]
        for c in first.readout.comparisons:
            summaries.append(
                ExperimentSummary(
                    experiment_id=r.experiment.experiment_id,
                    name=r.experiment.name,
                    metric=first.metric.name,
                    control=first.readout.control,
                    variant=c.variant,
                    n_control=c.estimate.control_n,
                    n_variant=c.estimate.treatment_n,
                    lift=c.estimate.relative,
                    ci_low=c.inference.ci_relative[0],
                    ci_high=c.inference.ci_relative[1],
                    p_value=c.inference.p_value,
                    significant=c.inference.significant,
                    srm_mismatch=r.srm.mismatch,
                    srm_p_value=r.srm.p_value,
                    verdict=r.decision.verdict,
                    reasons=r.decision.reasons,
                    monthly_impact=None if c.impact is None else c.impact.incremental,
                    impact_low=None if c.impact is None else c.impact.lower,
                    impact_high=None if c.impact is None else c.impact.upper,
                )
            )
    return ExperimentsSection(tuple(summaries), readouts)


# --- data health ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LastRun:
    run_id: str
    started_at: datetime | None
    finished_at: datetime | None
    n_steps: int
    n_failed: int


def run_time(value: object) -> str:
    """A run's time as a reader wants it: to the second (the run log keeps microseconds),
    "-" when unknown."""
    return "-" if value is None else str(value)[:19]


@dataclass(frozen=True)
class HealthSection:
    """Rows held in quarantine by reason, the last data-test results, rows per layer and
    the last build (`read_last_build`)."""

    quarantine: pa.Table  # target_table, reason, n_rows (rows still held)
    tests: pa.Table  # status, n_tests (the latest run's results)
    failing_tests: pa.Table  # test_name, model, severity, status, n_failing
    rows_per_layer: pa.Table  # layer, n_tables, n_rows (`layers.stored_rows`)
    last_run: LastRun | None  # the last run that built


_QUARANTINE = """
select target_table, reasons, count(*) as n_rows
from raw.quarantine
where released_at is null and superseded_at is null
group by target_table, reasons
"""

_TEST_RUN = """
select run_id from ops.test_results order by checked_at desc, run_id desc limit 1
"""

_TESTS = """
select status, count(*) as n_tests from ops.test_results
where run_id = __run group by status order by status
"""

_FAILING = """
select test_name, model, severity, status, n_failing from ops.test_results
where run_id = __run and status <> 'pass' order by status, model, test_name
"""

# The last build: the latest run with a build step that ended, all its steps. A reader
# asks when the warehouse was last built; a run that only read it (`productlens report`,
# `check`) changed none of the figures shown, so it is not "the last run" here, and the
# report reading the log (its one step still going) is never it.
_LAST_RUN = """
select run_id, min(started_at) as started_at, max(finished_at) as finished_at,
    count(*) as n_steps, count(case when status = 'failed' then 1 end) as n_failed
from ops.run_log
where run_id = (
    select run_id from ops.run_log where stage = 'build' and finished_at is not null
    order by started_at desc, run_id desc limit 1
)
group by run_id
"""


def _quarantine(engine: Engine) -> pa.Table:
    counts: dict[tuple[str, str], int] = {}
    if _has(engine, "raw.quarantine"):
        # One row per (table, set of reasons): a handful of groups, never one per row.
        for row in _rows(engine, _fill(_QUARANTINE)):
            for reason in _listed(row["reasons"]) or ["unknown"]:
                key = (str(row["target_table"]), str(reason))
                counts[key] = counts.get(key, 0) + int(row["n_rows"])
    keys = sorted(counts, key=lambda k: (-counts[k], k))
    return pa.table(
        {
            "target_table": array([k[0] for k in keys], pa.string()),
            "reason": array([k[1] for k in keys], pa.string()),
            "n_rows": array([counts[k] for k in keys], pa.int64()),
        }
    )


def _listed(value: object) -> list[str]:
    """A quarantined row's reasons as a list, however the engine holds them: a list where
    the warehouse is the lake's own DuckDB file, JSON text where the lake's catalog was
    copied to another engine (`productlens.lake.CATALOG`)."""
    if value is None:
        return []
    if isinstance(value, str):
        decoded = json.loads(value)
        return [str(v) for v in decoded] if isinstance(decoded, list) else [str(decoded)]
    return [str(v) for v in value]  # type: ignore[attr-defined]


def _rows_per_layer(engine: Engine) -> pa.Table:
    """Rows stored per layer, as the run summary counts them (`layers.stored_rows`)."""
    stored = layers.stored_rows(engine)
    return pa.table(
        {
            "layer": array(list(stored), pa.string()),
            "n_tables": array([n.n_tables for n in stored.values()], pa.int64()),
            "n_rows": array([n.n_rows for n in stored.values()], pa.int64()),
        }
    )


def read_health(
    engine: Engine, filters: Filters = Filters(), settings: Settings = Settings()
) -> HealthSection | None:
    if not _has(engine, "ops.run_log"):
        return None
    empty_tests = pa.table({"status": array([], pa.string()), "n_tests": array([], pa.int64())})
    tests, failing = (
        empty_tests,
        pa.table(
            {
                "test_name": array([], pa.string()),
                "model": array([], pa.string()),
                "severity": array([], pa.string()),
                "status": array([], pa.string()),
                "n_failing": array([], pa.int64()),
            }
        ),
    )
    if _has(engine, "ops.test_results"):
        run = _rows(engine, _fill(_TEST_RUN))
        if run:
            tests = engine.fetch_arrow(_fill(_TESTS, run=run[0]["run_id"]))
            failing = engine.fetch_arrow(_fill(_FAILING, run=run[0]["run_id"]))
    last_run = read_last_build(engine)
    return HealthSection(_quarantine(engine), tests, failing, _rows_per_layer(engine), last_run)


def read_last_build(engine: Engine) -> LastRun | None:
    """The last run that built the warehouse (report and dashboard show this one as the
    last build); None without a run log or before the first build."""
    if not _has(engine, "ops.run_log"):
        return None
    last = _rows(engine, _fill(_LAST_RUN))
    if not last:
        return None
    return LastRun(
        str(last[0]["run_id"]),
        last[0]["started_at"],
        last[0]["finished_at"],
        int(last[0]["n_steps"]),
        int(last[0]["n_failed"]),
    )


# --- all of them ------------------------------------------------------------------------------

Reader = Callable[[Engine, Filters, Settings], Any]


@dataclass(frozen=True)
class SectionSpec:
    title: str
    read: Reader
    filters: tuple[FilterKind, ...]  # the filters the reader honours
    events: bool = False  # reads core.fct_events (left out when it is empty)


SECTIONS: dict[str, SectionSpec] = {
    "overview": SectionSpec("Overview", read_overview, EVENT_FILTERS, events=True),
    "funnel": SectionSpec("Funnel", read_funnel, EVENT_FILTERS, events=True),
    "retention": SectionSpec(
        "Retention and engagement", read_retention, EVENT_FILTERS, events=True
    ),
    "revenue": SectionSpec("Revenue and customers", read_revenue, DATE_ONLY),
    "products": SectionSpec("Products and marketing", read_products, NO_FILTERS),
    "usage": SectionSpec("SaaS usage", read_usage, EVENT_FILTERS, events=True),
    "experiments": SectionSpec("Experiments", read_experiments, NO_FILTERS),
    "health": SectionSpec("Data health", read_health, NO_FILTERS),
}


@dataclass(frozen=True)
class Sections:
    overview: Overview | None
    funnel: FunnelSection | None
    retention: RetentionSection | None
    revenue: RevenueSection | None
    products: ProductsSection | None
    usage: UsageSection | None
    experiments: ExperimentsSection | None
    health: HealthSection | None
    end: DataEnd | None = None  # where the events stop: a daily chart's last day may be partial


def check_warehouse(engine: Engine) -> None:
    """Raise `ReportError` saying what to run when the warehouse cannot be reported on."""
    if not _has(engine, "core.fct_events") or not engine.list_tables("marts"):
        raise ReportError("the marts are not built yet: run `productlens build` first")


def read_all(
    engine: Engine,
    filters: Filters = Filters(),
    settings: Settings = Settings(),
    only: Sequence[str] | None = None,
) -> Sections:
    """Every section (or those named in `only`); a section without data is None. Without
    events (a shop's orders alone) the event sections are None and the others are read."""
    check_warehouse(engine)
    end = data_end(engine, settings)
    has_events = end is not None
    wanted = {
        name
        for name, spec in SECTIONS.items()
        if (only is None or name in only) and (has_events or not spec.events)
    }
    values = {
        name: spec.read(engine, filters, settings) if name in wanted and name != "health" else None
        for name, spec in SECTIONS.items()
    }
    if not has_events and not any(values.values()):
        raise ReportError(
            "core.fct_events is empty and there are no orders, products, campaigns or "
            "experiments to report: ingest data and run `productlens build`"
        )
    if "health" in wanted:
        values["health"] = read_health(engine, filters, settings)
    return Sections(**values, end=end)
