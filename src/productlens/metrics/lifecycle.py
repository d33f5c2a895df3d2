"""User lifecycle per period (day, week or month in the scope's zone):

- new: the user's first-ever active period is this one. "First" is over all history,
  not only the range, and is the first activity, not the signup in the users table
  (PostHog uses the person's creation, which for us would call a user who signs up and
  comes back weeks later "resurrecting" without ever having been active).
- returning: active this period and the previous one.
- resurrecting: active this period, not the previous one, but at some time before.
- dormant: active the previous period, not this one. A count of users, positive (PostHog
  draws it below the axis as a negative number; the sign is the chart's business).

Active means at least one event that passes `--where`, so with a filter "new" is the
first matching event. `--from` / `--to` choose the periods reported (those the range
touches; an instant bound selects its whole local day); the statuses of the first one
still look at all the history before it. The
`user_lifecycle` mart reads `lifecycle_query` (weekly, UTC).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from productlens.metrics.calendar import add_days, report_days, shift_date, with_spine
from productlens.metrics.scope import (
    EventsSpec,
    Grain,
    Scope,
    date_literal,
    local_ts,
    period_floor,
    period_start,
    scoped_events,
)

if TYPE_CHECKING:
    from productlens.engines import Engine

STATUSES = ("new", "returning", "resurrecting", "dormant")


@dataclass(frozen=True)
class LifecyclePeriod:
    """Users by lifecycle status in one period."""

    start: str  # the period's first local day
    new: int
    returning: int
    resurrecting: int
    dormant: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class LifecycleResult:
    period: Grain
    periods: tuple[LifecyclePeriod, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"period": self.period, "periods": [p.to_dict() for p in self.periods]}


def lifecycle(
    engine: Engine, scope: Scope | None = None, period: Grain = "week"
) -> LifecycleResult:
    """New, returning, resurrecting and dormant users per period (module docstring)."""
    scope = scope or Scope()
    rows = engine.fetch_arrow(lifecycle_query(scope, period))
    counts: dict[date, dict[str, int]] = {}
    for row in rows.to_pylist():
        slots = counts.setdefault(row["period_start"], dict.fromkeys(STATUSES, 0))
        if row["status"] is not None:
            slots[row["status"]] = int(row["n_users"])
    return LifecycleResult(
        period,
        tuple(
            LifecyclePeriod(start.isoformat(), **slots) for start, slots in sorted(counts.items())
        ),
    )


def add_periods(grain: Grain, start: exp.Expression, n: int) -> exp.Expression:
    """The first day of the period `n` periods after the one starting at `start`."""
    if grain == "month":
        return shift_date(start, n, "MONTH")
    return add_days(start, n * (7 if grain == "week" else 1))


def lifecycle_query(
    scope: Scope, grain: Grain = "week", days_table: str | None = None
) -> exp.Select:
    """One row per reported period and status: period_start, status, n_users (> 0); a
    period without any status has one row with a null status. `days_table` (a dim_date
    with `date_day`) gives the calendar reported instead of the range."""
    scope = scope.whole_days()  # an instant bound selects its whole local day
    period = exp.column("period_start")
    history = dataclasses.replace(scope, start=None)  # "new" and "before" need it all
    events = scoped_events(
        history,
        EventsSpec(
            columns=("user_id",),
            extra={"period_start": period_start(scope, grain, local_ts(scope))},
        ),
    )
    query = (
        exp.select("*")
        .from_("final")
        .with_(
            "active",
            as_=exp.select("user_id", "period_start").from_(events.subquery("e")).distinct(),
        )
    )
    if days_table is None:
        first, last = report_days(scope)
        lo = (
            date_literal(period_floor(scope, grain, first))
            if first is not None
            else exp.Min(this=period.copy())
        )
        hi = date_literal(last) if last is not None else exp.Max(this=period.copy())
        # The count makes this an aggregate: one row even when no one is active and
        # both bounds are literals (a range of empty periods).
        bounds = exp.select(
            lo.as_("report_lo"),
            hi.as_("report_hi"),
            lo.copy().as_("spine_lo"),
            exp.Count(this=exp.Star()).as_("n_active"),
        ).from_("active")
    else:
        lo, hi = exp.Min(this=exp.column("date_day")), exp.Max(this=exp.column("date_day"))
        bounds = exp.select(
            lo.as_("report_lo"), hi.as_("report_hi"), lo.copy().as_("spine_lo")
        ).from_(days_table)
    query = with_spine(query.with_("bounds", as_=bounds), "bounds")
    query = query.with_(
        "periods",
        as_=exp.select(period_start(scope, grain, exp.column("day")).as_("period_start"))
        .from_("days")
        .distinct(),
    )
    by_user = exp.Order(expressions=[period.copy()])
    sequenced = exp.select(
        "period_start",
        exp.Window(
            this=exp.func("lag", period.copy()), partition_by=[exp.column("user_id")], order=by_user
        ).as_("previous_period"),
        exp.Window(
            this=exp.func("lead", period.copy()),
            partition_by=[exp.column("user_id")],
            order=by_user.copy(),
        ).as_("next_period"),
    ).from_("active")
    query = query.with_("sequenced", as_=sequenced)
    previous = exp.column("previous_period")
    status = exp.Case(
        ifs=[
            exp.If(this=previous.is_(exp.null()), true=exp.Literal.string("new")),
            exp.If(
                this=previous.copy().eq(add_periods(grain, period.copy(), -1)),
                true=exp.Literal.string("returning"),
            ),
        ],
        default=exp.Literal.string("resurrecting"),
    )
    following = add_periods(grain, period.copy(), 1)
    nxt = exp.column("next_period")
    statuses = exp.union(
        exp.select("period_start", status.as_("status")).from_("sequenced"),
        exp.select(following.as_("period_start"), exp.Literal.string("dormant").as_("status"))
        .from_("sequenced")
        .where(nxt.is_(exp.null()).or_(nxt.copy() > following.copy())),
        distinct=False,
    )
    query = query.with_("statuses", as_=statuses)
    counts = (
        exp.select("period_start", "status", exp.Count(this=exp.Star()).as_("n_users"))
        .from_("statuses")
        .group_by("period_start", "status")
    )
    query = query.with_("counts", as_=counts)
    final = (
        exp.select(
            exp.column("period_start", "p"),
            exp.column("status", "c"),
            exp.column("n_users", "c"),
        )
        .from_(exp.to_table("periods").as_("p"))
        .join(
            exp.to_table("counts").as_("c"),
            on=exp.column("period_start", "c").eq(exp.column("period_start", "p")),
            join_type="left",
        )
    )
    return query.with_("final", as_=final)
