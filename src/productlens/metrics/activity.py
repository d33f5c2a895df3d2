"""Active users: DAU, WAU, MAU, stickiness, and how many days a week or month users are
active.

- A user is active on a local day (in the scope's zone) when they have at least one event
  that day that passes `--where`.
- DAU counts users active on the day; WAU and MAU count distinct users active in the
  trailing 7 and 30 calendar days ending with it (the day included). Stickiness is
  DAU / MAU (None when MAU is 0).
- `--from` / `--to` choose the days reported (an instant picks the whole local day it
  falls in: `Scope.whole_days`); the trailing windows of the first days read the 29 days
  before, so WAU and MAU are complete from the first day on. Events after the last
  reported day are not read.
- Active days per week and per month: for each period the reported days touch, the number
  of users active on exactly 1, 2, ... 7 (31) of its days within the range
  (`days_in_range` says how many of its days are in it).
- `--by KEY` (an event column or a property): a user counts in each value they had on a
  day (a user-day may fall in several values); a missing value is `""`, a number its text.

WAU and MAU use interval coverage: each active (user, day) covers the days up to the
user's next active day, capped at 7 (30) days; a +1 where a covered stretch starts and a
-1 where it ends, summed in day order, give the count. Exact, and one sort instead of a
range join. The `active_users_daily` mart reads `activity_query`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from productlens.metrics.calendar import (
    add_days,
    bounds_select,
    local_day,
    with_lookback,
    with_spine,
)
from productlens.metrics.scope import (
    EventsSpec,
    Grain,
    Scope,
    event_value,
    period_floor,
    period_start,
    scoped_events,
)

if TYPE_CHECKING:
    from productlens.engines import Engine

WINDOWS = {"wau": 7, "mau": 30}
PERIOD_DAYS: dict[Grain, int] = {"week": 7, "month": 31}
LOOKBACK_DAYS = max(WINDOWS.values()) - 1
NO_SEGMENT = ""


@dataclass(frozen=True)
class ActivityDay:
    """Active users on one local day."""

    date: str
    dau: int
    wau: int
    mau: int
    stickiness: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ActiveDays:
    """How many users were active on exactly k days of one week or month (k = 1..)."""

    start: str  # the period's first local day
    days_in_range: int  # how many of the period's days the range covers
    users: int  # users active at least once in the period (within the range)
    counts: tuple[int, ...]  # counts[k - 1]: users active on exactly k days

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "counts": list(self.counts)}


@dataclass(frozen=True)
class ActivitySeries:
    """Days, weeks and months of one population (everyone, or one breakdown value)."""

    days: tuple[ActivityDay, ...]
    weeks: tuple[ActiveDays, ...]
    months: tuple[ActiveDays, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "days": [d.to_dict() for d in self.days],
            "weeks": [w.to_dict() for w in self.weeks],
            "months": [m.to_dict() for m in self.months],
        }


@dataclass(frozen=True)
class ActivityResult:
    """Activity of everyone in scope and, with `by`, of each value."""

    total: ActivitySeries
    breakdown: dict[str, ActivitySeries] | None = None  # None without `by`

    def to_dict(self) -> dict[str, Any]:
        out = self.total.to_dict()
        if self.breakdown is not None:
            out["breakdown"] = {k: v.to_dict() for k, v in self.breakdown.items()}
        return out


def activity(engine: Engine, scope: Scope | None = None, by: str | None = None) -> ActivityResult:
    """DAU/WAU/MAU per day and active days per week and month (module docstring)."""
    scope = scope or Scope()
    total = _series(engine, scope, None)[NO_SEGMENT]
    breakdown = _series(engine, scope, by) if by is not None else None
    return ActivityResult(total, breakdown)


def _series(engine: Engine, scope: Scope, by: str | None) -> dict[str, ActivitySeries]:
    daily = engine.fetch_arrow(activity_query(scope, by).sql(dialect=engine.dialect)).to_pylist()
    spread = engine.fetch_arrow(
        active_days_query(scope, by).sql(dialect=engine.dialect)
    ).to_pylist()
    days: dict[str, list[ActivityDay]] = defaultdict(list)
    for row in sorted(daily, key=lambda r: (r["segment"], r["activity_date"])):
        days[row["segment"]].append(
            ActivityDay(
                row["activity_date"].isoformat(),
                int(row["dau"]),
                int(row["wau"]),
                int(row["mau"]),
                row["stickiness"],
            )
        )
    counts: dict[tuple[str, str, date], list[int]] = {}
    for row in spread:
        key = (row["segment"], row["grain"], row["period_start"])
        slots = counts.setdefault(key, [0] * PERIOD_DAYS[row["grain"]])
        slots[int(row["n_days"]) - 1] = int(row["n_users"])
    if by is None:
        days.setdefault(NO_SEGMENT, [])
    return {
        segment: ActivitySeries(
            tuple(series),
            _periods(scope, "week", segment, series, counts),
            _periods(scope, "month", segment, series, counts),
        )
        for segment, series in days.items()
    }


def _periods(
    scope: Scope,
    grain: Grain,
    segment: str,
    days: list[ActivityDay],
    counts: dict[tuple[str, str, date], list[int]],
) -> tuple[ActiveDays, ...]:
    """The periods the reported days touch, in order, with their active-day counts."""
    in_range: dict[date, int] = defaultdict(int)
    for day in days:
        in_range[period_floor(scope, grain, date.fromisoformat(day.date))] += 1
    out = []
    for start, n_days in sorted(in_range.items()):
        slots = counts.get((segment, grain, start), [0] * PERIOD_DAYS[grain])
        out.append(ActiveDays(start.isoformat(), n_days, sum(slots), tuple(slots)))
    return tuple(out)


def _activity_ctes(
    query: exp.Select, scope: Scope, by: str | None, days_table: str | None
) -> exp.Select:
    """`activity` (distinct segment, user, local day; the scope's events plus the trailing
    windows' lookback), `bounds` and `days` (the spine) on `query`."""
    scope = scope.whole_days()  # a day is reported whole, whatever instant bounds it
    segment: exp.Expression = (
        exp.Coalesce(this=event_value(by), expressions=[exp.Literal.string(NO_SEGMENT)])
        if by is not None
        else exp.Literal.string(NO_SEGMENT)
    )
    events = scoped_events(
        with_lookback(scope, LOOKBACK_DAYS),
        EventsSpec(
            columns=("user_id",), extra={"segment": segment, "activity_date": local_day(scope)}
        ),
    )
    query = query.with_(
        "activity",
        as_=exp.select("segment", "user_id", "activity_date")
        .from_(events.subquery("e"))
        .distinct(),
    )
    if days_table is None:
        bounds = bounds_select(scope, "activity", "activity_date")
    else:
        first, last = exp.Min(this=exp.column("date_day")), exp.Max(this=exp.column("date_day"))
        bounds = exp.select(
            first.as_("report_lo"), last.as_("report_hi"), first.copy().as_("spine_lo")
        ).from_(days_table)
    return query.with_("bounds", as_=bounds)


def activity_query(
    scope: Scope, by: str | None = None, days_table: str | None = None
) -> exp.Select:
    """One row per segment (`""` without `by`) per reported local day: activity_date,
    dau, wau, mau, stickiness. `days_table` (a dim_date with `date_day`) replaces the range
    and the active days as the calendar reported (the mart's spine)."""
    query = _activity_ctes(exp.select("*").from_("final"), scope, by, days_table)
    query = with_spine(query, "bounds")
    user = [exp.column("segment"), exp.column("user_id")]
    order = [exp.column("activity_date")]
    day = exp.column("activity_date")
    spans = exp.select(
        "segment",
        "activity_date",
        exp.Window(
            this=exp.func("lag", day.copy()), partition_by=user, order=exp.Order(expressions=order)
        ).as_("previous_date"),
        exp.Window(
            this=exp.func("lead", day.copy()), partition_by=user, order=exp.Order(expressions=order)
        ).as_("next_date"),
    ).from_("activity")
    query = query.with_("spans", as_=spans)

    # A stretch covered by a user starts at an active day the previous one's coverage does
    # not reach, and ends `window` days after an active day the next one is not within.
    def starts(window: int) -> exp.Expression:
        previous = exp.column("previous_date")
        fresh = previous.is_(exp.null()).or_(add_days(previous.copy(), window) < day.copy())
        return exp.Case(ifs=[exp.If(this=fresh, true=exp.convert(1))], default=exp.convert(0))

    edge_parts = [
        exp.select(
            "segment",
            day.copy().as_("day"),
            exp.convert(1).as_("dau"),
            *[starts(window).as_(name) for name, window in WINDOWS.items()],
        ).from_("spans")
    ]
    for name, window in WINDOWS.items():
        nxt = exp.column("next_date")
        ends = nxt.is_(exp.null()).or_(nxt.copy() > add_days(day.copy(), window))
        edge_parts.append(
            exp.select(
                "segment",
                add_days(day.copy(), window).as_("day"),
                exp.convert(0).as_("dau"),
                *[exp.convert(-1 if other == name else 0).as_(other) for other in WINDOWS],
            )
            .from_("spans")
            .where(ends)
        )
    query = query.with_("edges", as_=exp.union(*edge_parts, distinct=False))
    measures = ["dau", *WINDOWS]
    query = query.with_(
        "daily_edges",
        as_=exp.select("segment", "day", *[exp.Sum(this=exp.column(m)).as_(m) for m in measures])
        .from_("edges")
        .group_by("segment", "day"),
    )
    # Without `by`, the one segment exists even when no one is active (a range of zeros).
    segments = (
        exp.select("segment").from_("activity").distinct()
        if by is not None
        else exp.select(exp.Literal.string(NO_SEGMENT).as_("segment"))
    )
    query = query.with_("segments", as_=segments)

    def running(measure: str) -> exp.Expression:
        return exp.Window(
            this=exp.Sum(this=_zero_if_null(exp.column(measure, "e"))),
            partition_by=[exp.column("segment", "g")],
            order=exp.Order(expressions=[exp.column("day", "d")]),
            spec=exp.WindowSpec(
                kind="ROWS", start="UNBOUNDED", start_side="PRECEDING", end="CURRENT ROW"
            ),
        )

    grid = (
        exp.select(
            exp.column("segment", "g"),
            exp.column("day", "d").as_("activity_date"),
            _zero_if_null(exp.column("dau", "e")).as_("dau"),
            *[running(name).as_(name) for name in WINDOWS],
        )
        .from_(exp.to_table("segments").as_("g"))
        .join(exp.to_table("days").as_("d"), join_type="cross")
        .join(
            exp.to_table("daily_edges").as_("e"),
            on=exp.and_(
                exp.column("segment", "e").eq(exp.column("segment", "g")),
                exp.column("day", "e").eq(exp.column("day", "d")),
            ),
            join_type="left",
        )
    )
    query = query.with_("running", as_=grid)
    final = (
        exp.select(
            exp.column("segment", "r"),
            exp.column("activity_date", "r"),
            exp.cast(exp.column("dau", "r"), "bigint").as_("dau"),
            *[exp.cast(exp.column(name, "r"), "bigint").as_(name) for name in WINDOWS],
            exp.Div(
                this=exp.cast(exp.column("dau", "r"), "double"),
                expression=exp.func("nullif", exp.column("mau", "r"), exp.convert(0)),
            ).as_("stickiness"),
        )
        .from_(exp.to_table("running").as_("r"))
        .join(exp.to_table("bounds").as_("b"), join_type="cross")
        .where(exp.column("activity_date", "r") >= exp.column("report_lo", "b"))
    )
    return query.with_("final", as_=final)


def active_days_query(scope: Scope, by: str | None = None) -> exp.Select:
    """One row per segment, grain (week, month), period and number of active days:
    n_users, the users active on exactly that many days of the period within the range."""
    query = _activity_ctes(exp.select("*").from_("final"), scope, by, None)
    in_range = (
        exp.select(
            exp.column("segment", "a"), exp.column("user_id", "a"), exp.column("activity_date", "a")
        )
        .from_(exp.to_table("activity").as_("a"))
        .join(exp.to_table("bounds").as_("b"), join_type="cross")
        .where(
            exp.column("activity_date", "a").between(
                exp.column("report_lo", "b"), exp.column("report_hi", "b")
            )
        )
    )
    query = query.with_("in_range", as_=in_range)
    per_user = exp.union(
        *[
            exp.select(
                exp.Literal.string(grain).as_("grain"),
                "segment",
                "user_id",
                period_start(scope, grain, exp.column("activity_date")).as_("period_start"),
                exp.Count(this=exp.Star()).as_("n_days"),
            )
            .from_("in_range")
            .group_by("segment", "user_id", period_start(scope, grain, exp.column("activity_date")))
            for grain in PERIOD_DAYS
        ],
        distinct=False,
    )
    query = query.with_("per_user", as_=per_user)
    final = (
        exp.select(
            "grain",
            "segment",
            "period_start",
            "n_days",
            exp.Count(this=exp.Star()).as_("n_users"),
        )
        .from_("per_user")
        .group_by("grain", "segment", "period_start", "n_days")
    )
    return query.with_("final", as_=final)


def _zero_if_null(value: exp.Expression) -> exp.Expression:
    return exp.Coalesce(this=value, expressions=[exp.convert(0)])
