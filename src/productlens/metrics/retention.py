"""Cohort retention with PostHog's semantics, as set-based SQL.

A cohort is a local calendar period (day, week, month in the scope's zone, weeks from its
week start). Column 0 is the cohort's size; column k counts cohort members who did the
return event in period cohort + k.

- Start: an event name, or the word `signup` (`SIGNUP`): the user's `signup_ts` from the
  users table; a user the users table does not know (or knows without a signup time)
  joins the cohort of the period of its first event over all history.
- Return: an event name, or `None` for any event (on the command line: `--return`
  omitted). No name is reserved, so an event called `any` or `*` is just that event.
- `recurring`: a user is in a cohort for every period they did the start event (in
  range). `first_time`: the cohort is the period of the user's first matching start event
  over all history (the range does not apply; `--where` and `--start-where` do). Signup
  cohorts are one per user in both modes and, being a user attribute, ignore the range.
- Filters: `scope.where` applies to start and return events, `start_where` to start
  events, `return_where` to return events (column 0 is unaffected by it). A signup is not
  an event: `start_where` is refused with `signup`. With `signup`, a `scope.where` key the
  users table has (`USER_COLUMNS`: device, country) also filters the person, as PostHog
  does: a user is in a cohort only if their users-table row (the attributes at signup;
  later country changes live in `stg_user_changes`, not there) matches, and a user
  without a signup time then has no signup attributes and is left out. A key the users
  table lacks (an event property) filters returns only, as for any return.
- `cumulative`: a user counts in every column from 1 up to their last return.
- Cohorts: the `periods` (N) periods ending with the period containing the scope's end
  (`--to`), or else the period of the last event in scope; columns 0..N-1. The range
  limits the events read, so in recurring mode a cohort before `--from` is empty. An
  instant bound selects its whole local day (`Scope.whole_days`), as a date would.
- N is 1 to `MAX_PERIODS` (32: a cohort and the 31 periods after it, PostHog's own
  maximum); more is refused before any query runs, since the table grows as N x N.
- Columns for periods after the last period are `None` (not yet observed), so every
  cohort's counts list has N entries; a cohort nobody started in has size 0.

`cohort_query` is the one implementation: the `retention_cohorts` mart is its output for
the configured events over all cohorts (long form, one row per cohort and period with a
return, period 0 holding the size), and `retention` shapes it into the N x N triangle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlglot import exp

from productlens.metrics.calendar import event_span
from productlens.metrics.scope import (
    GRAINS,
    EventsSpec,
    Filter,
    Grain,
    MetricsInputError,
    Scope,
    Span,
    date_literal,
    local_ts,
    period_add,
    period_floor,
    period_start,
    range_condition,
    scoped_events,
    timestamp_literal,
    where_condition,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from productlens.engines import Engine

Mode = Literal["recurring", "first_time"]
MODES: tuple[Mode, ...] = ("recurring", "first_time")
SIGNUP = "signup"  # the start that means "the user's signup", not an event
MAX_PERIODS = 32  # PostHog: "during the next" at most 31 periods, plus the cohort's own
USERS_TABLE = "staging.stg_users"
# Columns of the users table (its values at signup) a `--where` on the same key filters
# signup cohorts by; other keys are event-only (see the module docstring).
USER_COLUMNS = ("device", "country")


@dataclass(frozen=True)
class RetentionSpec:
    """What a retention table counts (see the module docstring)."""

    start: str
    return_event: str | None = None  # None: any event
    period: Grain = "week"
    mode: Mode = "recurring"
    cumulative: bool = False
    start_where: tuple[Filter, ...] = ()
    return_where: tuple[Filter, ...] = ()

    def __post_init__(self) -> None:
        if not self.start:
            raise MetricsInputError("--start needs an event name or 'signup'")
        if self.return_event == "":
            raise MetricsInputError("--return needs an event name (omit it for any event)")
        if self.period not in GRAINS:
            raise MetricsInputError(f"--period {self.period!r}: use day, week or month")
        if self.mode not in MODES:
            raise MetricsInputError(f"--mode {self.mode!r}: use recurring or first_time")
        if self.is_signup and self.start_where:
            raise MetricsInputError("--start-where filters start events; signup is not an event")

    @property
    def is_signup(self) -> bool:
        return self.start == SIGNUP


@dataclass(frozen=True)
class Cohort:
    """One row of the table: the cohort's first local day, size and columns 0..N-1."""

    start: str  # YYYY-MM-DD
    size: int
    counts: tuple[int | None, ...]  # None: a period after the last one observed

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "size": self.size, "counts": list(self.counts)}


@dataclass(frozen=True)
class RetentionResult:
    cohorts: tuple[Cohort, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"cohorts": [c.to_dict() for c in self.cohorts]}


def retention(
    engine: Engine,
    *,
    start: str,
    return_event: str | None,
    scope: Scope,
    period: Grain = "week",
    periods: int = 8,
    mode: Mode = "recurring",
    cumulative: bool = False,
    start_where: tuple[Filter, ...] = (),
    return_where: tuple[Filter, ...] = (),
    users: str = USERS_TABLE,
) -> RetentionResult:
    """The retention table of the `periods` cohorts ending with the scope's last period."""
    if not 1 <= periods <= MAX_PERIODS:
        raise MetricsInputError(
            f"--periods {periods}: use 1 to {MAX_PERIODS} (a cohort and up to "
            f"{MAX_PERIODS - 1} periods after it, as in PostHog)"
        )
    spec = RetentionSpec(
        start, return_event, period, mode, cumulative, tuple(start_where), tuple(return_where)
    )
    scope = scope.whole_days()  # an instant bound selects its whole local day
    last = last_period(engine, scope, period)
    if last is None:
        return RetentionResult(())
    try:
        first = period_add(period, last, -(periods - 1))
    except (ValueError, OverflowError):
        raise MetricsInputError(
            f"--periods {periods}: the first {period} would start before year 1"
        ) from None
    span = event_span(engine, scope)
    query = cohort_query(scope, spec, first_cohort=first, last_period=last, users=users, span=span)
    rows = engine.fetch_arrow(query).to_pylist()
    return shape(rows, spec, first=first, periods=periods)


def last_period(engine: Engine, scope: Scope, grain: Grain) -> date | None:
    """The first local day of the period containing `--to`, else of the last event in
    scope; None when the scope has no events and no end."""
    if scope.end is not None:
        moment = scope.local(scope.end - timedelta(microseconds=1))
    else:
        found = engine.fetch_arrow(last_event_query(scope))
        value = found.column(0)[0].as_py()
        if value is None:
            return None
        moment = scope.local(value)
    return period_floor(scope, grain, moment.date())


def last_event_query(scope: Scope) -> exp.Select:
    events = scoped_events(scope, EventsSpec(columns=("event_ts",))).subquery("e")
    return exp.select(exp.Max(this=exp.column("event_ts")).as_("last_ts")).from_(events)


def shape(
    rows: list[dict[str, Any]], spec: RetentionSpec, *, first: date, periods: int
) -> RetentionResult:
    """The long-form rows of `cohort_query` as N cohorts of N columns (a small result)."""
    sizes: dict[date, int] = {}
    cells: dict[tuple[date, int], int] = {}
    for row in rows:
        cohort, k = row["cohort_start_date"], row["period_number"]
        sizes[cohort] = row["cohort_size"]
        cells[(cohort, k)] = row["n_users"]
    cohorts = []
    for i in range(periods):
        cohort = period_add(spec.period, first, i)
        size = sizes.get(cohort, 0)
        observed = periods - i  # columns 0..N-1-i have happened
        counts: list[int | None] = [size]
        for k in range(1, periods):
            if k >= observed:
                counts.append(None)
            elif spec.cumulative:  # cells hold users by the period of their last return
                counts.append(sum(cells.get((cohort, j), 0) for j in range(k, observed)))
            else:
                counts.append(cells.get((cohort, k), 0))
        cohorts.append(Cohort(cohort.isoformat(), size, tuple(counts)))
    return RetentionResult(tuple(cohorts))


def cohort_query(
    scope: Scope,
    spec: RetentionSpec,
    *,
    first_cohort: date | None = None,
    last_period: date | None = None,
    users: str = USERS_TABLE,
    span: Span | None = None,
) -> exp.Query:
    """Retention in long form: one row per cohort and period number with a return, and a
    row for period 0 (holding the size) per non-empty cohort.

    Columns: cohort_start_date, period_number, cohort_size, n_users. `n_users` counts
    members who returned in that period, or with `spec.cumulative` members whose last
    return is in that period (`shape` adds them up). Cohorts from `first_cohort` to
    `last_period` and returns up to `last_period` when given; all otherwise. `span`: the
    events' UTC span, for a cheaper local time (`local_ts`; the result does not depend on it).
    """
    grain = spec.period
    scope = scope.whole_days()  # as `retention` (idempotent)
    is_start = _start_condition(spec)
    is_return = _return_condition(spec)
    # Events that can start (recurring mode) or return, pre-filtered before any grouping,
    # reduced to one row per user and local period.
    wanted = is_return if spec.is_signup or spec.mode == "first_time" else _or(is_start, is_return)
    period = period_start(scope, grain, local_ts(scope, span=span))
    activity = (
        exp.select(
            exp.column("user_id"),
            period.as_("period"),
            _flag(is_start).as_("did_start"),
            _flag(is_return).as_("did_return"),
        )
        .from_(exp.to_table(scope.source))
        .where(
            _and(
                range_condition(scope),
                _since(scope, first_cohort),
                where_condition(scope.where),
                wanted,
            )
        )
        .group_by(exp.column("user_id"), period)
    )
    query = exp.select("*").from_("final").with_("activity", as_=activity)

    in_bounds = _between(exp.column("cohort_start"), first_cohort, last_period)
    if spec.is_signup:
        query = _signup_cohorts(query, scope, grain, users, in_bounds, span)
    elif spec.mode == "first_time":
        firsts = (
            exp.select(exp.column("user_id"), exp.Min(this=exp.column("event_ts")).as_("start_ts"))
            .from_(exp.to_table(scope.source))
            .where(_and(where_condition(scope.where), is_start))
            .group_by(exp.column("user_id"))
        )
        query = query.with_("starts", as_=firsts).with_(
            "cohorts", as_=_cohorts_of_starts(scope, grain, in_bounds, span)
        )
    else:
        cohorts = (
            exp.select(exp.column("user_id"), exp.column("period").as_("cohort_start"))
            .from_("activity")
            .where(
                _and(
                    exp.column("did_start").eq(1),
                    _between(exp.column("period"), first_cohort, last_period),
                )
            )
        )
        query = query.with_("cohorts", as_=cohorts)

    sizes = (
        exp.select(exp.column("cohort_start"), exp.Count(this=exp.Star()).as_("cohort_size"))
        .from_("cohorts")
        .group_by(exp.column("cohort_start"))
    )
    c, a = "c", "a"
    returns = (
        exp.select(exp.column("user_id", c), exp.column("cohort_start", c), exp.column("period", a))
        .from_(exp.to_table("cohorts").as_(c))
        .join(
            exp.to_table("activity").as_(a),
            on=exp.and_(
                exp.column("user_id", a).eq(exp.column("user_id", c)),
                exp.column("period", a) > exp.column("cohort_start", c),
            ),
        )
        .where(
            _and(
                exp.column("did_return", a).eq(1),
                _between(exp.column("period", a), None, last_period),
            )
        )
    )
    query = query.with_("sizes", as_=sizes).with_("returned", as_=returns)
    counted = "returned"
    if spec.cumulative:
        last_returns = (
            exp.select("user_id", "cohort_start", exp.Max(this=exp.column("period")).as_("period"))
            .from_("returned")
            .group_by("user_id", "cohort_start")
        )
        query = query.with_("last_returns", as_=last_returns)
        counted = "last_returns"
    counts = (
        exp.select("cohort_start", "period", exp.Count(this=exp.Star()).as_("n_users"))
        .from_(counted)
        .group_by("cohort_start", "period")
    )
    query = query.with_("counts", as_=counts)

    s, n = "s", "n"
    later = (
        exp.select(
            exp.column("cohort_start", s).as_("cohort_start_date"),
            PERIOD_NUMBER[grain](exp.column("cohort_start", s), exp.column("period", n)).as_(
                "period_number"
            ),
            exp.column("cohort_size", s),
            exp.column("n_users", n),
        )
        .from_(exp.to_table("sizes").as_(s))
        .join(
            exp.to_table("counts").as_(n),
            on=exp.column("cohort_start", n).eq(exp.column("cohort_start", s)),
        )
    )
    zero = exp.select(
        exp.column("cohort_start").as_("cohort_start_date"),
        exp.cast(exp.convert(0), "int").as_("period_number"),
        exp.column("cohort_size"),
        exp.column("cohort_size").as_("n_users"),
    ).from_("sizes")
    return query.with_("final", as_=exp.union(zero, later, distinct=False))


def _signup_cohorts(
    query: exp.Select,
    scope: Scope,
    grain: Grain,
    users: str,
    in_bounds: exp.Condition | None,
    span: Span | None,
) -> exp.Select:
    """Cohorts by signup time; a user without one joins the period it was first seen.

    `scope.where` filters on `USER_COLUMNS` select the signups by the users table's own
    values; users without a signup time have none, so such a filter leaves them out.
    """
    person = [f for f in scope.where if f.key in USER_COLUMNS]
    signups = (
        exp.select(exp.column("user_id"), exp.column("signup_ts").as_("start_ts"))
        .from_(exp.to_table(users))
        .where(_and(exp.column("signup_ts").is_(exp.null()).not_(), where_condition(person)))
    )
    if person:
        return (
            query.with_("signups", as_=signups)
            .with_("starts", as_=exp.select("user_id", "start_ts").from_("signups"))
            .with_("cohorts", as_=_cohorts_of_starts(scope, grain, in_bounds, span))
        )
    first_seen = (
        exp.select(exp.column("user_id"), exp.Min(this=exp.column("event_ts")).as_("start_ts"))
        .from_(exp.to_table(scope.source))
        .group_by(exp.column("user_id"))
    )
    unknown = (
        exp.select(exp.column("user_id", "f"), exp.column("start_ts", "f"))
        .from_(exp.to_table("first_seen").as_("f"))
        .join(
            exp.to_table("signups").as_("u"),
            on=exp.column("user_id", "u").eq(exp.column("user_id", "f")),
            join_type="left",
        )
        .where(exp.column("user_id", "u").is_(exp.null()))
    )
    starts = exp.union(exp.select("user_id", "start_ts").from_("signups"), unknown, distinct=False)
    return (
        query.with_("signups", as_=signups)
        .with_("first_seen", as_=first_seen)
        .with_("starts", as_=starts)
        .with_("cohorts", as_=_cohorts_of_starts(scope, grain, in_bounds, span))
    )


def _cohorts_of_starts(
    scope: Scope, grain: Grain, in_bounds: exp.Condition | None, span: Span | None
) -> exp.Select:
    period = period_start(scope, grain, local_ts(scope, exp.column("start_ts"), span))
    inner = exp.select(exp.column("user_id"), period.as_("cohort_start")).from_("starts")
    query = exp.select("user_id", "cohort_start").from_(inner.subquery("p"))
    return query.where(in_bounds) if in_bounds is not None else query


def _start_condition(spec: RetentionSpec) -> exp.Condition | None:
    if spec.is_signup:
        return None
    return _and(
        exp.column("event_type").eq(exp.Literal.string(spec.start)),
        where_condition(spec.start_where),
    )


def _return_condition(spec: RetentionSpec) -> exp.Condition | None:
    """None when every event is a return."""
    named = (
        exp.column("event_type").eq(exp.Literal.string(spec.return_event))
        if spec.return_event is not None
        else None
    )
    return _and(named, where_condition(spec.return_where))


def _flag(condition: exp.Condition | None) -> exp.Expr:
    """1 when some event of the group meets the condition (always, without one), else 0."""
    if condition is None:
        return exp.convert(1)
    case = exp.Case().when(condition, exp.convert(1)).else_(exp.convert(0))
    return exp.Max(this=case)


def _and(*conditions: exp.Expr | None) -> exp.Condition | None:
    present = [c for c in conditions if c is not None]
    return exp.and_(*present) if present else None


def _or(*conditions: exp.Condition | None) -> exp.Condition | None:
    """Any of the conditions; None (no restriction) when one of them is None."""
    if any(c is None for c in conditions):
        return None
    return exp.or_(*[exp.paren(c) for c in conditions if c is not None])


def _between(column: exp.Expression, low: date | None, high: date | None) -> exp.Condition | None:
    return _and(
        column >= date_literal(low) if low is not None else None,
        column <= date_literal(high) if high is not None else None,
    )


def _since(scope: Scope, first_cohort: date | None) -> exp.Condition | None:
    """A pre-filter on the UTC timestamp: nothing before the first cohort can count. A day
    early, so a local midnight moved by a DST change never cuts an event; the period
    bounds keep the result exact."""
    if first_cohort is None:
        return None
    local = datetime.combine(first_cohort - timedelta(days=1), datetime.min.time())
    instant = local.replace(tzinfo=scope.zone).astimezone(UTC).replace(tzinfo=None)
    return exp.column("event_ts") >= timestamp_literal(instant)


def _days_between(low: exp.Expression, high: exp.Expression) -> exp.Expression:
    return exp.DateDiff(this=high, expression=low, unit=exp.var("DAY"))


def _months_between(low: exp.Expression, high: exp.Expression) -> exp.Expression:
    def part(unit: str, value: exp.Expression) -> exp.Expression:
        return exp.Extract(this=exp.var(unit), expression=value)

    years = exp.Sub(this=part("YEAR", high), expression=part("YEAR", low))
    months = exp.Sub(this=part("MONTH", high), expression=part("MONTH", low))
    return exp.Add(
        this=exp.Mul(this=exp.paren(years), expression=exp.convert(12)), expression=months
    )


# Whole periods from one period start to a later one (both local first days).
PERIOD_NUMBER: dict[Grain, Callable[[exp.Expression, exp.Expression], exp.Expression]] = {
    "day": lambda low, high: exp.cast(_days_between(low, high), "int"),
    "week": lambda low, high: exp.cast(
        exp.Div(this=_days_between(low, high), expression=exp.convert(7)), "int"
    ),
    "month": lambda low, high: exp.cast(_months_between(low, high), "int"),
}
