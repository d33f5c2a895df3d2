"""The SQL of `productlens.metrics.funnel`: one query per funnel, built from fixed text
whose identifiers this module chooses (c0, nx1, t2, ...) and whose values (event names,
the window, time bounds) are SQLGlot placeholders replaced by literals; nothing from
outside is pasted into SQL text.

How an ordered funnel is computed without a loop or a self-join (docs/funnels.md has the
rules):

- `inst`: one row per unit and instant with how many occurrences of each step (and
  exclusion) event it holds; `look` adds, per event name, the unit's next instant holding
  it (a window over the unit's instants, sorted once).
- Every instant holding a step-0 event starts an attempt (`att`). Greedy earliest is
  exact for ordered funnels: step k is at t(k-1)'s instant when it holds an occurrence of
  step k's name the chain has not used yet, else at the name's next instant. Which
  occurrences are used at an instant depends only on the first step `f` placed there, so
  the chain's state after a step is (instant, f).
- Attempts that share (t1, f1) share the rest of their chain, so the chain after step 1
  is computed once per distinct (unit, t1, f1) (`s1`, `s2`, ...: one join of `look` per
  step on a table the size of the step-1 instants), then joined back to the attempts,
  which are judged one by one against their own window and exclusions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlglot
from sqlglot import exp

from productlens.metrics.scope import (
    EVENTS_TABLE,
    EventsSpec,
    Grain,
    MetricsInputError,
    Scope,
    event_value,
    local_ts,
    period_start,
    range_condition,
    scoped_events,
    timestamp_literal,
)

Order = Literal["ordered", "strict", "unordered"]


@dataclass(frozen=True)
class Exclusion:
    """An event that spoils an attempt between step `from_step` and `to_step` (0-based)."""

    event: str
    from_step: int
    to_step: int

    @classmethod
    def parse(cls, text: str) -> Exclusion:
        """`EVENT:FROM:TO`; the event name may itself contain colons."""
        event, _, rest = text.rpartition(":")
        event, _, first = event.rpartition(":")
        if not event or not first.isdigit() or not rest.isdigit():
            raise MetricsInputError(f"--exclude {text!r}: expected EVENT:FROM:TO (step numbers)")
        return cls(event, int(first), int(rest))


@dataclass(frozen=True)
class FunnelSpec:
    """Everything the query depends on, validated by `productlens.metrics.funnel`."""

    steps: tuple[str, ...]
    window_s: int
    order: Order
    exclusions: tuple[Exclusion, ...]
    per: Grain | None
    count_by: Literal["user", "session"]
    by: str | None
    attribution: str  # first_touch, last_touch or step:N
    # Instants (naive UTC, increasing) cutting each user's events into pieces, each piece
    # a unit of its own whose bucket is its index ("0" before the first cut): one funnel
    # per stretch of time, all in one query.
    cuts: tuple[datetime, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Distinct step names, then exclusion names, each once."""
        return tuple(dict.fromkeys([*self.steps, *(e.event for e in self.exclusions)]))

    def name_index(self, name: str) -> int:
        return self.names.index(name)

    @property
    def units(self) -> tuple[str, ...]:
        return ("uid",) if self.count_by == "user" and not self.cuts else ("uid", "sid")


# fct_events rolled up per user, event type and day (core/fct_user_event_days.sql).
DAY_INDEX = "core.fct_user_event_days"


def funnel_query(
    scope: Scope, spec: FunnelSpec, *, duckdb: bool = False, day_index: bool = False
) -> exp.Query:
    """One row per (bucket, period, step): units reaching the step, and the mean and
    median seconds they took from the previous step. `duckdb`: the query runs on DuckDB
    as it is (some steps then use DuckDB's own functions; otherwise the query is portable
    and the engine transpiles it). `day_index` (DuckDB, when `day_index_fits`): the first
    two steps are read from `DAY_INDEX`, which the caller knows to hold the scope's events
    as they are now."""
    if day_index and not (duckdb and day_index_fits(scope, spec)):
        raise ValueError("the day index answers plain ordered funnels on DuckDB only")
    apart = duckdb and _starts_apart(spec)
    ctes = [
        *_attempt_ctes(spec, scope, day_index=day_index, starts_apart=apart),
        *_pick_ctes(spec, duckdb=duckdb),
        _final_cte(spec, starts="st" if apart else None),
    ]
    return _query(scope, spec, ctes, "final", inline=("r0",) if day_index else ())


def _starts_apart(spec: FunnelSpec) -> bool:
    """Whether the fast path counts the units that start apart from the pick: with
    neither breakdown nor periods, a unit that only starts needs no row of its own, only
    to be counted in step 0."""
    return _fast(spec) and spec.by is None and spec.per is None


def day_index_fits(scope: Scope, spec: FunnelSpec) -> bool:
    """Whether `DAY_INDEX` can stand for the scope's step-0 and step-1 events: the fast
    ordered path, counting users over `core.fct_events` without a filter (a time range
    is cut out of the index's days), without periods."""
    return (
        _fast(spec)
        and spec.per is None
        and spec.units == ("uid",)
        and scope.source == EVENTS_TABLE
        and not scope.where
    )


def _index_rows(scope: Scope, name: int) -> str:
    """`DAY_INDEX`'s rows of event name `name` as (uid, d, first_ts, last_ts,
    event_times), cut to the scope's time range: a day partly outside it keeps its
    instants inside (and their first), a day with none is left out.

    A cut day's `last_ts` stays the day's: a step-1 instant inside the range that lies
    before it searches the day's instants anyway, and one after it is after every
    instant kept."""
    table = _sql(exp.to_table(DAY_INDEX))
    rows = (
        f"select user_id as uid, event_date as d, first_ts, last_ts, event_times from {table} "
        f"where event_type = :name{name}"
    )
    inside = range_condition(scope, "x")
    if inside is None:
        return rows
    # A day overlaps the range when its span does, and is cut when its span leaves it.
    first, last = exp.column("first_ts"), exp.column("last_ts")
    overlap: list[exp.Expr] = []
    leaves: list[exp.Expr] = []
    if scope.start is not None:
        overlap.append(last >= timestamp_literal(scope.start))
        leaves.append(first < timestamp_literal(scope.start))
    if scope.end is not None:
        overlap.append(first < timestamp_literal(scope.end))
        leaves.append(last >= timestamp_literal(scope.end))
    partial = _sql(exp.or_(*leaves))
    cut = f"list_filter(event_times, lambda x: {_sql(inside)})"
    return (
        f"select uid, d, case when cut then list_min(ts) else first_ts end as first_ts, "
        f"last_ts, ts as event_times from (select *, {partial} as cut, case when {partial} "
        f"then {cut} else event_times end as ts from ({rows}) as r "
        f"where {_sql(exp.and_(*overlap))}) as c where len(ts) > 0"
    )


def units_query(scope: Scope, spec: FunnelSpec) -> exp.Query:
    """One row per unit (and period of entry, with `per`): `m`, the furthest step
    (0-based) the unit reached, and `t0`..`t(n-1)`, the times of the reporting attempt's
    steps (null past `m`); with `by`, the unit's `bucket`. `funnel_query` counts these
    rows; `units_counts_query` counts them when they are stored."""
    ctes = [*_attempt_ctes(spec, scope), *_pick_ctes(spec)]
    return _query(scope, spec, ctes, "units")


def units_counts_query(spec: FunnelSpec, units: exp.Query, *, totals: bool = True) -> exp.Query:
    """`funnel_query`'s rows from `units` (a query with `units_query`'s columns), counted
    by the same SQL; with `by`, `totals=False` leaves out the rows of all buckets
    together."""
    query = sqlglot.parse_one(
        f"with {_final_cte(spec, totals=totals)} select * from final", read="duckdb"
    )
    assert isinstance(query, exp.Query)
    return _with_first(query, "units", units)


def _attempt_ctes(
    spec: FunnelSpec, scope: Scope, *, day_index: bool = False, starts_apart: bool = False
) -> list[str]:
    """The CTEs ending in `ax`: one row per attempt."""
    attempts = {"ordered": _ordered_ctes, "strict": _strict_ctes, "unordered": _unordered_ctes}
    if _fast(spec):
        return _ordered_fast_ctes(spec, scope, day_index=day_index, starts_apart=starts_apart)
    return attempts[spec.order](spec, scope)


def _fast(spec: FunnelSpec) -> bool:
    """Whether `_ordered_fast_ctes` computes the funnel."""
    return spec.order == "ordered" and not spec.exclusions and spec.steps[0] != spec.steps[1]


def _query(
    scope: Scope, spec: FunnelSpec, ctes: list[str], last: str, inline: tuple[str, ...] = ()
) -> exp.Query:
    """The CTEs as one query selecting `last`, the events (`ev`) first, values filled in;
    the CTEs named in `inline` are not materialized either."""
    text = "with " + ",\n".join(ctes) + f"\nselect * from {last}"
    query = sqlglot.parse_one(text, read="duckdb")
    values: dict[str, Any] = {f"name{i}": name for i, name in enumerate(spec.names)}
    values["window"] = spec.window_s
    query = exp.replace_placeholders(query, **values)
    assert isinstance(query, exp.Query)
    query = _with_first(query, "ev", _events(scope, spec))
    # DuckDB would copy the funnel's events once for all the parts that read them;
    # scanning the table again is faster (each part reads its event names' row groups).
    # Other engines choose for themselves (`productlens.dialects`).
    query.args["with_"].expressions[0].set("materialized", False)
    for cte in query.args["with_"].expressions:
        if cte.alias in inline:
            cte.set("materialized", False)
    return query


def _events(scope: Scope, spec: FunnelSpec) -> exp.Select:
    extra: dict[str, exp.Expression] = {"uid": exp.column("user_id")}
    if spec.cuts:
        extra["sid"] = _piece(spec.cuts)
    elif spec.count_by == "session":
        extra["sid"] = exp.Coalesce(
            this=exp.column("session_id"), expressions=[exp.Literal.string("")]
        )
    if spec.by is not None:
        extra["bv"] = _piece(spec.cuts) if spec.cuts else event_value(spec.by)
    return scoped_events(
        scope,
        EventsSpec(
            # Strict funnels are broken by any event, so they read every event. The fast
            # path's every reader picks its own event name: a filter on all the names
            # here would only be evaluated again on each of its rows.
            event_types=None if spec.order == "strict" or _fast(spec) else spec.names,
            columns=("event_id", "event_ts", "event_type"),
            extra=extra,
        ),
    )


def _piece(cuts: tuple[datetime, ...]) -> exp.Expression:
    """The index of the piece an event falls in, as text: "0" before the first cut."""
    case = exp.Case()
    for index, cut in enumerate(cuts):
        case = case.when(exp.column("event_ts") < timestamp_literal(cut), exp.convert(str(index)))
    return case.else_(exp.convert(str(len(cuts))))


def _with_first(query: exp.Query, name: str, cte: exp.Query) -> exp.Query:
    """`query` with `cte` as its first common table expression."""
    with_ = query.args["with_"]
    with_.set(
        "expressions", [exp.CTE(this=cte, alias=exp.TableAlias(this=name)), *with_.expressions]
    )
    return query


def _sql(expression: exp.Expr) -> str:
    """An expression SQLGlot built (values quoted by it) as DuckDB text for a template."""
    return expression.sql(dialect="duckdb")


def _period(spec: FunnelSpec, scope: Scope, column: str) -> str:
    """`, <period of column> as period` for trends, else nothing."""
    if spec.per is None:
        return ""
    value = period_start(scope, spec.per, local_ts(scope, exp.column(column)))
    return f", {_sql(value)} as period"


DAY_US = 86_400 * 10**6


def _buckets(window_s: int) -> tuple[int, int]:
    """The width in microseconds of the time buckets the fast path cuts time into, and
    how many buckets before its own a window can reach into: a seventh of the window up
    to a day, a day up to 28 days, then a 28th of the window (at most 29 earlier
    buckets, so the step-1 instants' copies stay few)."""
    window_us = window_s * 10**6
    width = max(-(-window_us // 28), min(DAY_US, -(-window_us // 7)), 1)
    return width, -(-window_us // width) + 1


def _bucket(column: str, width: int) -> str:
    """The bucket of a timestamp: whole microseconds since 2000 divided by `width`
    (towards zero on some engines: bucket 0 is then twice as wide, which only makes a
    window reach fewer buckets)."""
    return f"date_diff('microsecond', timestamp '2000-01-01 00:00:00', {column}) // {width}"


def _lookup_ctes(spec: FunnelSpec) -> list[str]:
    """`inst` and `look`: per unit and instant, occurrences of each name and each name's
    next instant after it."""
    ulist = ", ".join(spec.units)
    names = range(len(spec.names))
    counts = ", ".join(
        f"sum(case when event_type = :name{i} then 1 else 0 end) as c{i}" for i in names
    )
    nexts = ", ".join(
        f"min(case when c{i} > 0 then ts end) over (partition by {ulist} order by ts "
        f"rows between 1 following and unbounded following) as nx{i}"
        for i in names
    )
    return [
        f"inst as (select {ulist}, event_ts as ts, {counts} from ev group by {ulist}, event_ts)",
        f"look as (select *, {nexts} from inst)",
    ]


def _ordered_fast_ctes(
    spec: FunnelSpec, scope: Scope, *, day_index: bool = False, starts_apart: bool = False
) -> list[str]:
    """`ax` for ordered funnels without exclusions whose first two steps differ: only the
    attempts that can matter, found without sorting the step-0 events.

    Attempts sharing a step-1 instant share the rest of their chain, and the latest start
    among them has the most time left, so it reaches furthest and reports the times. For
    each step-1 instant p those starts are: a step-0 event at the same instant (f1 = 0),
    and the latest step-0 event before p inside the window (f1 = 1), found through time
    buckets (below) with equality joins only. Later steps are looked up among their own
    (few) instants.

    That latest start may come before the previous step-1 instant p', so its attempt has
    t1 = p', not p. Telling such rows apart directly would need each unit's step-1
    instants sorted; instead each start keeps its earliest step-1 instant, which is its
    attempt's (that attempt's row is always there: no start lies between the start and p,
    so none between it and p' either).

    With `day_index`, the step-0 events and the step-1 instants come from `DAY_INDEX`
    (`_day_start_ctes`), whose days are the buckets. `st` holds one row per unit that
    starts (its earliest start); `ax` has a row of reach 0 for each, unless
    `starts_apart` (`_starts_apart`: step 0 then counts `st`)."""
    u = list(spec.units)
    ulist = ", ".join(u)
    n = len(spec.steps)
    ni = [spec.name_index(s) for s in spec.steps]
    window = "interval (:window) second"
    keys = [*u, *(["period"] if spec.per else [])]
    klist = ", ".join(keys)
    width, back = _buckets(spec.window_s)
    if day_index:
        ctes = [f"r0 as ({_index_rows(scope, ni[0])})"]
        # The units that start the funnel, from the same rows.
        first, starts_from = "min(first_ts)", "r0"
    else:
        ctes = [
            f"s0 as (select {ulist}, event_ts as t0, {_bucket('event_ts', width)} as d"
            f"{_period(spec, scope, 'event_ts')} from ev where event_type = :name{ni[0]})",
        ]
        first, starts_from = "min(t0)", "s0"
    for i in sorted(set(ni[1:])):
        ctes.append(
            f"i{i} as (select {ulist}, event_ts as ts, count(*) as c from ev "
            f"where event_type = :name{i} group by {ulist}, event_ts)"
        )
    if day_index:
        ctes += _day_start_ctes(spec, scope)
    elif spec.per:
        ctes += _first_step_ctes(spec, width, back)
    else:
        ctes += _start_ctes(spec, width)
    for k in range(2, n):
        used = " + ".join(
            [
                f"case when g.f{k - 1} <= {j} then 1 else 0 end"
                for j in range(k)
                if spec.steps[j] == spec.steps[k]
            ]
            or ["0"]
        )
        # A row of g(k-1) is one attempt: (keys, t0, t1) is unique, the other columns
        # follow from it (min() carries them through the group).
        carried = [*(f"t{j}" for j in range(2, k)), *(f"f{j}" for j in range(1, k))]
        group = ", ".join(f"g.{c}" for c in [*keys, "t0", "t1"])
        carry = "".join(f", min(g.{c}) as {c}" for c in carried)
        on = " and ".join(f"x.{c} = g.{c}" for c in u)
        # An instant holds at least one occurrence: with no earlier step of the same name,
        # step k may always share step k-1's instant.
        unused = "" if used == "0" else f" and (x.ts > g.t{k - 1} or x.c > {used})"
        ctes += [
            f"h{k} as (select {group}{carry}, min(x.ts) as t{k} from g{k - 1} as g left join "
            f"i{ni[k]} as x on {on} and x.ts >= g.t{k - 1} and x.ts <= g.t0 + {window}"
            f"{unused} group by {group})",
            f"g{k} as (select *, case when t{k} = t{k - 1} then f{k - 1} else {k} end as f{k} "
            f"from h{k})",
        ]
    times = ", ".join(f"t{k}" for k in range(1, n))
    reach = " ".join(f"when t{k} is not null then {k}" for k in range(n - 1, 0, -1))
    nulls = ", ".join(["cast(null as timestamp)"] * (n - 1))
    # Units that start the funnel whether or not any attempt goes further.
    starts = (
        ""
        if starts_apart
        else f" union all select {klist}, t0, {nulls}, 0 as reach, false as spoiled from st"
    )
    ctes += [
        f"st as (select {klist}, {first} as t0 from {starts_from} group by {klist})",
        f"ax as (select {klist}, t0, {times}, case {reach} else 0 end as reach, "
        f"false as spoiled from g{n - 1}{starts})",
    ]
    return ctes


def _start_ctes(spec: FunnelSpec, width: int) -> list[str]:
    """`g1` without periods: per step-1 instant, the attempts starting at the latest
    step-0 event before it in the window (f1 = 1) and at the instant itself (f1 = 0).

    Time is cut into buckets of `width` microseconds. The latest start in p's own bucket
    comes from an equality join on the bucket (`ja`: each step-0 event meets only the
    step-1 instants of its bucket). Only the few instants with no earlier start in their
    own bucket look further back (`lb`), joined to their units' step-0 events by time
    (`jb`).
    """
    u = list(spec.units)
    ulist = ", ".join(u)
    ni = [spec.name_index(s) for s in spec.steps]
    window = "interval (:window) second"
    kp = ", ".join(f"p.{c}" for c in u)
    su = " and ".join(f"s.{c} = p.{c}" for c in u)
    return [
        # `c > 0` holds for every row: it tells DuckDB's planner that this side is the
        # smaller one, so the join below hashes the step-1 instants, not the step-0 events.
        f"p1 as (select {ulist}, ts, {_bucket('ts', width)} as d from i{ni[1]} where c > 0)",
        f"ja as (select {kp}, p.ts as t1, max(case when s.t0 < p.ts then s.t0 end) as below, "
        f"max(case when s.t0 = p.ts then 1 else 0 end) as same from p1 as p "
        f"inner join s0 as s on {su} and s.d = p.d and s.t0 <= p.ts group by {kp}, p.ts)",
        "lb as (select p.* from p1 as p where not exists (select 1 from ja as a where "
        + " and ".join(f"a.{c} = p.{c}" for c in u)
        + " and a.t1 = p.ts and a.below is not null))",
        # Their own bucket holds no start before them, so the latest start before them is
        # the latest in the window at all.
        f"jb as (select {kp}, p.ts as t1, max(s.t0) as mx from lb as p inner join s0 as s "
        f"on {su} and s.t0 < p.ts and s.t0 >= p.ts - {window} group by {kp}, p.ts)",
        # Per start, its earliest step-1 instant: the rows of later instants that found
        # the same start are not attempts (see `_ordered_fast_ctes`).
        f"g1 as (select {ulist}, t0, min(t1) as t1, case when min(t1) = t0 then 0 else 1 end "
        f"as f1 from (select {ulist}, t1, max(t0) as t0 from (select {ulist}, t1, below as "
        f"t0 from ja union all select {ulist}, t1, mx from jb) as x group by {ulist}, t1 "
        f"having max(t0) >= t1 - {window} union all select {ulist}, t1 as t0, t1 from ja "
        f"where same = 1) as y group by {ulist}, t0)",
    ]


def _day_start_ctes(spec: FunnelSpec, scope: Scope) -> list[str]:
    """`g1` from `DAY_INDEX` (users, no periods): as `_start_ctes`, with the index's days
    as the buckets. A step-1 instant meets one row of its own day (`r0`: that day's
    step-0 events), whose first and last instants settle most cases; only an instant
    inside the span of its day's starts searches the day's instants. An instant with no
    earlier start that day takes the latest of the earlier days inside the window: their
    last instants (`jb`). A day is the index's `event_date`, whatever day fct_events gives
    an event (a project's may use a local day), as long as no later instant has an
    earlier day."""
    ni = [spec.name_index(s) for s in spec.steps]
    window = "interval (:window) second"
    return [
        # Each step-1 event's instant with its day. Events at one instant give equal
        # rows, which `jb` and `g1` group together (cheaper than list_distinct: 0.8x).
        f"p1 as (select uid, d, unnest(event_times) as ts from ({_index_rows(scope, ni[1])}) as x)",
        "ja as (select p.uid, p.ts as t1, case when r.last_ts < p.ts then r.last_ts "
        "when r.first_ts >= p.ts then null "
        "else list_max(list_filter(r.event_times, lambda x: x < p.ts)) end as below, "
        "case when r.first_ts = p.ts or r.last_ts = p.ts or (r.first_ts < p.ts and "
        "r.last_ts > p.ts and list_contains(r.event_times, p.ts)) then 1 else 0 end as same "
        "from p1 as p left join r0 as r on r.uid = p.uid and r.d = p.d)",
        # With no start before it on its own day, an instant's latest earlier start is the
        # latest last instant of the unit's days that end before it: all earlier days (by
        # whatever day a project's fct_events dates its events in), never its own. Found
        # by time (carrying the day here costs a tenth more of the funnel's CPU); the
        # bounds on `d`, a day wider than the UTC days the window spans (a local day is
        # within a day of the UTC one), let DuckDB skip the other days' rows.
        f"jb as (select p.uid, p.t1, max(r.last_ts) as mx from ja as p inner join r0 as r "
        f"on r.uid = p.uid and r.d <= cast(p.t1 as date) + 1 "
        f"and r.d >= cast(p.t1 - {window} as date) - 1 "
        f"and r.last_ts < p.t1 and r.last_ts >= p.t1 - {window} "
        f"where p.below is null group by p.uid, p.t1)",
        # As in `_start_ctes`.
        f"g1 as (select uid, t0, min(t1) as t1, case when min(t1) = t0 then 0 else 1 end "
        f"as f1 from (select uid, t1, max(t0) as t0 from (select uid, t1, below as t0 "
        f"from ja union all select uid, t1, mx from jb) as x group by uid, t1 "
        f"having max(t0) >= t1 - {window} union all select uid, t1 as t0, t1 from ja "
        f"where same = 1) as y group by uid, t0)",
    ]


def _first_step_ctes(spec: FunnelSpec, width: int, back: int) -> list[str]:
    """`g1` with periods: per step-1 instant p and period, the attempts starting at the
    latest step-0 event of the period after the previous step-1 instant and before p in
    the window (f1 = 1) and at p itself (f1 = 0).

    As in `_start_ctes`, through time buckets; with periods every instant looks back (each
    period's latest start counts), and `jb` joins the buckets' maxima per period (`bm`,
    one row per unit, period and bucket), so a copy meets one row, not a bucket's every
    event."""
    u = list(spec.units)
    ulist = ", ".join(u)
    ni = [spec.name_index(s) for s in spec.steps]
    window = "interval (:window) second"
    keys = [*u, "period"]
    su = " and ".join(f"s.{c} = p.{c}" for c in u)
    offsets = ", ".join(f"({k})" for k in range(1, back + 1))
    kp = ", ".join(f"p.{c}" for c in u)
    ks = ", ".join([*(f"s.{c}" for c in u), "s.period"])
    klist = ", ".join(keys)
    return [
        f"bm as (select {ks}, s.d, max(s.t0) as mx from s0 as s group by {ks}, s.d)",
        # `lo`: the earliest bucket a start may lie in (the window's, or the previous
        # step-1 instant's), once per instant rather than once per copy below.
        f"p1 as (select x.*, {_bucket('ts', width)} as d, case when prev is null or "
        f"{_bucket(f'ts - {window}', width)} > {_bucket('prev', width)} then "
        f"{_bucket(f'ts - {window}', width)} else {_bucket('prev', width)} end as lo from "
        f"(select *, lag(ts) over (partition by {ulist} order by ts) as prev from i{ni[1]} "
        f"where c > 0) as x)",
        f"ja as (select {kp}, s.period, p.ts as t1, p.prev, "
        f"max(case when s.t0 < p.ts then s.t0 end) as below, "
        f"max(case when s.t0 = p.ts then 1 else 0 end) as same from p1 as p "
        f"inner join s0 as s on {su} and s.d = p.d and s.t0 <= p.ts "
        f"group by {kp}, s.period, p.ts, p.prev)",
        f"pk as (select {kp}, p.ts, p.prev, p.d - o.k as d from p1 as p cross join "
        f"(values {offsets}) as o(k) where p.d - o.k >= p.lo)",
        f"jb as (select {kp}, s.period, p.ts as t1, p.prev, max(s.mx) as mx from pk as p "
        f"inner join bm as s on {su} and s.d = p.d group by {kp}, s.period, p.ts, p.prev)",
        f"jl as (select {klist}, t1, prev, coalesce(max(below), max(mx)) as latest, "
        f"max(same) as same from (select {klist}, t1, prev, below, "
        f"cast(null as timestamp) as mx, same from ja union all select {klist}, "
        f"t1, prev, cast(null as timestamp) as below, mx, 0 as same from jb) as x "
        f"group by {klist}, t1, prev)",
        f"j1 as (select {klist}, t1, case when latest >= t1 - {window} and "
        f"(prev is null or latest > prev) then latest end as before, same from jl)",
        f"g1 as (select {klist}, before as t0, t1, 1 as f1 from j1 "
        f"where before is not null union all select {klist}, t1 as t0, t1, 0 as f1 "
        f"from j1 where same = 1)",
    ]


def _ordered_ctes(spec: FunnelSpec, scope: Scope) -> list[str]:
    """`ax`: one row per attempt (keys, t0..t(n-1), reach, spoiled), ordered funnels."""
    u = list(spec.units)
    ulist = ", ".join(u)
    n = len(spec.steps)
    ni = [spec.name_index(s) for s in spec.steps]

    def step_time(k: int, row: str, prev_t: str, prev_f: str) -> str:
        """t_k from the `look` row `row` at t_{k-1}: this instant if it holds an occurrence
        the chain has not used, else the name's next instant."""
        used = " + ".join(
            f"case when {prev_f} <= {j} then 1 else 0 end"
            for j in range(k)
            if spec.steps[j] == spec.steps[k]
        )
        return f"case when {row}.c{ni[k]} > {used or '0'} then {prev_t} else {row}.nx{ni[k]} end"

    def step_first(k: int, t_k: str, prev_t: str, prev_f: str) -> str:
        return f"case when {t_k} = {prev_t} then {prev_f} else {k} end"

    # Exclusions: the excluded event's next instant after the FROM step, looked up at
    # t_FROM (on the attempt's own row for FROM = 0, along the chain otherwise).
    excl = list(enumerate(spec.exclusions))
    att_excl = "".join(
        f", nx{spec.name_index(e.event)} as xf{j}" for j, e in excl if e.from_step == 0
    )
    t1 = step_time(1, "look", "ts", "0")
    ctes = [
        *_lookup_ctes(spec),
        f"att as (select {ulist}, ts as t0, {t1} as t1, "
        f"{step_first(1, t1, 'ts', '0')} as f1{att_excl}{_period(spec, scope, 'ts')} "
        f"from look where c{ni[0]} > 0)",
        f"s1 as (select distinct {ulist}, t1, f1 from att where t1 is not null)",
    ]
    on = " and ".join(f"l.{c} = s.{c}" for c in u)
    for k in range(2, n):
        t_k = step_time(k, "l", f"s.t{k - 1}", f"s.f{k - 1}")
        chain_excl = "".join(
            f", l.nx{spec.name_index(e.event)} as xf{j}" for j, e in excl if e.from_step == k - 1
        )
        ctes.append(
            f"s{k} as (select s.*, {t_k} as t{k}, "
            f"{step_first(k, t_k, f's.t{k - 1}', f's.f{k - 1}')} as f{k}{chain_excl} "
            f"from s{k - 1} as s left join look as l on {on} and l.ts = s.t{k - 1})"
        )
    cols = [f"a.{c}" for c in u] + ["a.t0", "a.t1"] + [f"c.t{k}" for k in range(2, n)]
    cols += [f"{'a' if e.from_step == 0 else 'c'}.xf{j}" for j, e in excl]
    if spec.per is not None:
        cols.append("a.period")
    source = "att as a"
    if n > 2:
        join_on = " and ".join(f"c.{col} = a.{col}" for col in u)
        source += f" left join s{n - 1} as c on {join_on} and c.t1 = a.t1 and c.f1 = a.f1"
    ctes.append(f"ax0 as (select {', '.join(cols)} from {source})")
    return ctes + _judge_ctes(spec)


def _judge_ctes(spec: FunnelSpec) -> list[str]:
    """`ax` from `ax0` (keys, t0..t(n-1) of the greedy chain, xf*: each exclusion's next
    instant after its FROM step): reach within the window, and spoiled."""
    n = len(spec.steps)
    deadline = "t0 + interval (:window) second"
    reach = " ".join(f"when t{k} <= {deadline} then {k}" for k in range(n - 1, 0, -1))
    spoils = [
        f"coalesce(case when reach >= {e.to_step} then xf{j} < t{e.to_step} "
        f"when reach >= {e.from_step} then xf{j} <= {deadline} end, false)"
        for j, e in enumerate(spec.exclusions)
    ]
    return [
        f"ax1 as (select *, case {reach} else 0 end as reach from ax0)",
        f"ax as (select *, {' or '.join(spoils) or 'false'} as spoiled from ax1)",
    ]


def _strict_ctes(spec: FunnelSpec, scope: Scope) -> list[str]:
    """`ax0` for strict funnels: every valid chain, step by step. A chain's next step is
    at its instant (an occurrence not used yet) or at the unit's very next instant (rank
    + 1 among all the unit's events). Chains in the same state (start, instant, first step
    at the instant) share their future; only the one with the earliest times is kept."""
    u = list(spec.units)
    ulist = ", ".join(u)
    n = len(spec.steps)
    ni = [spec.name_index(s) for s in spec.steps]
    names = range(len(spec.names))
    excl = list(enumerate(spec.exclusions))
    counts = ", ".join(
        f"sum(case when event_type = :name{i} then 1 else 0 end) as c{i}" for i in names
    )
    nexts = "".join(
        f", min(case when c{spec.name_index(e.event)} > 0 then ts end) over (partition by "
        f"{ulist} order by ts rows between 1 following and unbounded following) as nx{j}"
        for j, e in excl
    )
    ctes = [
        f"inst as (select {ulist}, event_ts as ts, {counts} from ev group by {ulist}, event_ts)",
        f"look as (select *, row_number() over (partition by {ulist} order by ts) as rk{nexts} "
        f"from inst)",
    ]

    def columns(k: int, prev: str, row: str, first: str) -> str:
        """The state's columns after step k, from the previous state `prev` and the
        `look` row `row` of step k's instant."""
        times = [f"{prev}.t{j}" for j in range(k)] + [f"{row}.ts"]
        times += ["cast(null as timestamp)"] * (n - k - 1)
        xfs = [
            f"{row}.nx{j}"
            if e.from_step == k
            else f"{prev}.xf{j}"
            if e.from_step < k
            else "cast(null as timestamp)"
            for j, e in excl
        ]
        return ", ".join(
            [*(f"{prev}.{c}" for c in u), f"{row}.rk as r", f"{first} as f"]
            + [f"{t} as t{j}" for j, t in enumerate(times)]
            + [f"{x} as xf{j}" for j, x in enumerate(xfs)]
            + [f"{prev}.{c}" for c in period]
        )

    period = ["period"] if spec.per else []
    start_cols = ", ".join(
        [*u, "rk as r", "0 as f", "ts as t0"]
        + [f"cast(null as timestamp) as t{j}" for j in range(1, n)]
        + [
            f"nx{j} as xf{j}" if e.from_step == 0 else f"cast(null as timestamp) as xf{j}"
            for j, e in excl
        ]
    )
    ctes.append(
        f"st0 as (select {start_cols}{_period(spec, scope, 'ts')} from look where c{ni[0]} > 0)"
    )
    on = " and ".join(f"l.{c} = p.{c}" for c in u)
    for k in range(1, n):
        used = " + ".join(
            [
                f"case when p.f <= {j} then 1 else 0 end"
                for j in range(k)
                if spec.steps[j] == spec.steps[k]
            ]
            or ["0"]
        )
        deadline = "l.ts <= p.t0 + interval (:window) second"
        same = (
            f"select {columns(k, 'p', 'l', 'p.f')} from st{k - 1} as p inner join look as l "
            f"on {on} and l.rk = p.r where l.c{ni[k]} > {used} and {deadline}"
        )
        after = (
            f"select {columns(k, 'p', 'l', str(k))} from st{k - 1} as p inner join look as l "
            f"on {on} and l.rk = p.r + 1 where l.c{ni[k]} > 0 and {deadline}"
        )
        order = ", ".join(f"t{j}" for j in range(1, k + 1))
        ctes += [
            f"raw{k} as ({same} union all {after})",
            f"st{k} as (select * from (select *, row_number() over (partition by {ulist}, t0, r, f "
            f"order by {order}) as dn from raw{k}) as d where dn = 1)",
        ]
    out = ", ".join([*u, *(f"t{j}" for j in range(n)), *(f"xf{j}" for j, _ in excl), *period])
    union = " union all ".join(f"select {out} from st{k}" for k in range(n))
    ctes.append(f"ax0 as ({union})")
    return ctes + _judge_ctes(spec)


def _unordered_ctes(spec: FunnelSpec, scope: Scope) -> list[str]:
    """`ax` for unordered funnels: one row per window [t, t + W] starting at an instant
    holding a step event; a name that r steps share fills up to r of them."""
    u = list(spec.units)
    ulist = ", ".join(u)
    repeats = {name: spec.steps.count(name) for name in spec.steps}
    counts = ", ".join(
        f"sum(case when event_type = :name{spec.name_index(name)} then 1 else 0 end) as c{i}"
        for i, name in enumerate(repeats)
    )
    sums = ", ".join(
        f"sum(c{i}) over (partition by {ulist} order by ts range between current row and "
        f"interval (:window) second following) as w{i}"
        for i in range(len(repeats))
    )
    filled = " + ".join(f"least(w{i}, {r})" for i, r in enumerate(repeats.values()))
    nulls = "".join(f", cast(null as timestamp) as t{k}" for k in range(1, len(spec.steps)))
    ctes = [
        f"inst as (select {ulist}, event_ts as ts, {counts} from ev group by {ulist}, event_ts)",
    ]
    spoiled = "false"
    if spec.exclusions:
        # A window is spoiled by an excluded event after the first occurrence of the FROM
        # step's name in it and before that of the TO step's name (or, without one, up to
        # the window's end).
        index = {name: i for i, name in enumerate(repeats)}
        exclusion_counts = "".join(
            f", sum(case when event_type = :name{spec.name_index(e.event)} then 1 else 0 end)"
            f" as x{j}"
            for j, e in enumerate(spec.exclusions)
        )
        ctes[0] = ctes[0].replace(" from ev group by", f"{exclusion_counts} from ev group by")
        nexts = ", ".join(
            f"min(case when {col} > 0 then ts end) over (partition by {ulist} order by ts "
            f"rows between 1 following and unbounded following) as n{col}"
            for col in [
                *(f"c{i}" for i in range(len(repeats))),
                *(f"x{j}" for j in range(len(spec.exclusions))),
            ]
        )
        ctes.append(f"look as (select *, {nexts} from inst)")
        source = "look"
        firsts = []
        for j, e in enumerate(spec.exclusions):
            for end, step in (("from", e.from_step), ("to", e.to_step)):
                col = f"c{index[spec.steps[step]]}"
                firsts.append(f"case when w.{col} > 0 then w.ts else w.n{col} end as {end}{j}")
        ctes.append(f"bounds as (select w.*, {', '.join(firsts)} from {source} as w)")
        joins = []
        checks = []
        deadline = "b.ts + interval (:window) second"
        for j, _ in enumerate(spec.exclusions):
            on = " and ".join(f"l{j}.{c} = b.{c}" for c in u)
            joins.append(f" left join look as l{j} on {on} and l{j}.ts = b.from{j}")
            checks.append(
                f"coalesce(b.from{j} <= {deadline} and case when b.to{j} <= {deadline} "
                f"then l{j}.nx{j} < b.to{j} else l{j}.nx{j} <= {deadline} end, false)"
            )
        cols = ", ".join(
            [
                *(f"b.{c}" for c in u),
                "b.ts",
                *(f"b.c{i}" for i in range(len(repeats))),
                f"{' or '.join(checks)} as spoiled",
            ]
        )
        ctes.append(f"judged as (select {cols} from bounds as b{''.join(joins)})")
        spoiled = "spoiled"
        base = "judged"
    else:
        base = "inst"
    # Only an instant holding a step event starts a window: with exclusions, `inst` also
    # has instants holding only excluded events (whose step counts are 0, so leaving them
    # out changes no window's sums), and a window starting there would be an entry at the
    # excluded event's time (in the wrong period of a trend).
    holds_step = " or ".join(f"c{i} > 0" for i in range(len(repeats)))
    ctes += [
        f"win as (select {ulist}, ts as t0, {spoiled} as spoiled, {sums} from {base} "
        f"where {holds_step})",
        f"ax as (select {ulist}, t0{nulls}, {filled} - 1 as reach, spoiled"
        f"{_period(spec, scope, 't0')} from win where {filled} > 0)",
    ]
    return ctes


def _unordered_times(spec: FunnelSpec) -> list[str]:
    """`units0` for unordered funnels: in each unit's reporting window, each name's
    earliest occurrences (as many as the steps it fills), their times sorted."""
    n = len(spec.steps)
    keys = [*spec.units, *(["period"] if spec.per else [])]
    klist = ", ".join(keys)
    on = " and ".join(f"e.{c} = p.{c}" for c in spec.units)
    names = ", ".join(f":name{spec.name_index(s)}" for s in dict.fromkeys(spec.steps))
    limit = " ".join(
        f"when :name{spec.name_index(name)} then {spec.steps.count(name)}"
        for name in dict.fromkeys(spec.steps)
    )
    bv = ", e.bv" if spec.by is not None else ""
    pivot = ", ".join(f"max(case when k = {k} then event_ts end) as t{k}" for k in range(n))
    return [
        f"occ as (select {', '.join('p.' + c for c in keys)}, e.event_type, e.event_ts, "
        f"e.event_id{bv}, row_number() over (partition by {', '.join('p.' + c for c in keys)}, "
        f"e.event_type order by e.event_ts, e.event_id) as nr from picked as p inner join ev "
        f"as e on {on} and e.event_ts >= p.t0 and e.event_ts <= p.t0 + interval (:window) "
        f"second where p.m >= 0 and e.event_type in ({names}))",
        f"occm as (select * from occ where nr <= case event_type {limit} end)",
        f"sorted as (select {klist}, event_ts, row_number() over (partition by {klist} "
        f"order by event_ts, event_id) - 1 as k from occm)",
        f"timed as (select {klist}, {pivot} from sorted group by {klist})",
        f"units0 as (select p.{', p.'.join(keys)}, p.m, "
        + ", ".join(f"t.t{k}" for k in range(n))
        + f" from picked as p left join timed as t using ({klist}) where p.m > 0 "
        f"union all select * from picked where m <= 0)",
    ]


def _pick_ctes(spec: FunnelSpec, *, duckdb: bool = False) -> list[str]:
    """From `ax` (one row per attempt) to `units`: per unit (and period) the furthest step
    and the reporting attempt's times, and the unit's bucket."""
    n = len(spec.steps)
    keys = [*spec.units, *(["period"] if spec.per else [])]
    klist = ", ".join(keys)
    tm = " ".join(f"when {k} then t{k}" for k in range(n))
    all_t = ", ".join(f"t{k}" for k in range(n))
    # The reporting attempt: the earliest to reach the furthest step, then the latest
    # start (unordered: the earliest window); strict chains from one start may still tie
    # there (other instants in between): then the earliest times, step by step.
    order = {
        "ordered": "tm, t0 desc",
        "strict": ", ".join(["tm", "t0 desc", *(f"t{k}" for k in range(1, n))]),
        "unordered": "t0",
    }[spec.order]
    if duckdb and _fast(spec):
        # No attempt is spoiled here: each unit's reporting attempt is one aggregate
        # (the furthest, then the earliest there, then the latest start; a unit's
        # attempts have distinct starts) instead of a sort of the attempts.
        rank = f"{{'a': -reach, 'b': case reach {tm} end, 'c': -epoch_us(t0)}}"
        fields = ", ".join(["m := reach", *(f"t{k} := t{k}" for k in range(n))])
        return [
            f"chosen as (select {klist}, arg_min(struct_pack({fields}), {rank}) as r "
            f"from ax group by {klist})",
            f"units0 as (select {klist}, r.m as m, "
            + ", ".join(f"r.t{k} as t{k}" for k in range(n))
            + " from chosen)",
            *_bucket_ctes(spec),
        ]
    ctes = [
        f"best as (select {klist}, max(reach) as m from ax group by {klist})",
        f"cand as (select ax.*, b.m, case b.m {tm} end as tm from ax inner join best as b "
        f"using ({klist}) where ax.reach = b.m and not ax.spoiled)",
        f"ranked as (select *, row_number() over (partition by {klist} order by {order}) "
        f"as rn from cand where m > 0)",
        # A unit that stops at step 0 reports its earliest start; a unit whose every
        # attempt to its furthest step is spoiled stays with m = -1: in no step, but its
        # period and bucket are still listed.
        f"picked as (select {klist}, m, {all_t} from ranked where rn = 1 "
        f"union all select {klist}, 0 as m, min(t0) as t0"
        + "".join(f", cast(null as timestamp) as t{k}" for k in range(1, n))
        + f" from cand where m = 0 group by {klist}"
        # Without exclusions no attempt is spoiled: every unit has a candidate.
        + (
            f" union all select {klist}, -1 as m, "
            + ", ".join(["cast(null as timestamp)"] * n)
            + " from best as b where not exists (select 1 from cand as c where "
            + " and ".join(f"c.{k} = b.{k}" for k in keys)
            + ")"
            if spec.exclusions
            else ""
        )
        + ")",
    ]
    if spec.order == "unordered":
        ctes += _unordered_times(spec)
    else:
        ctes.append("units0 as (select * from picked)")
    return ctes + _bucket_ctes(spec)


def _final_cte(spec: FunnelSpec, *, totals: bool = True, starts: str | None = None) -> str:
    """`final` from `units`: counts, mean and median times per bucket, period and step;
    with `starts` (neither breakdown nor periods), step 0 counts that CTE's rows."""
    n = len(spec.steps)
    # With a breakdown, the totals come too (bucket null): times do not add up.
    groupings = ([["bucket"], []] if totals else [["bucket"]]) if spec.by is not None else [[]]
    parts = []
    for grouping in groupings:
        group = [*grouping, *(["period"] if spec.per else [])]
        bucket = "" if spec.by is None else "bucket, " if grouping else "null as bucket, "
        period = "period, " if spec.per else ""
        group_by = f" group by {', '.join(group)}" if group else ""
        for k in range(n):
            # Whole microseconds: their sum is exact, so the mean does not depend on the
            # order in which parallel threads add up (a sum of doubles would).
            micros = (
                f"case when m >= {k} then date_diff('microsecond', t{k - 1}, t{k}) end"
                if k
                else "cast(null as bigint)"
            )
            count = (
                f"(select count(*) from {starts})"
                if starts is not None and k == 0
                else f"sum(case when m >= {k} then 1 else 0 end)"
            )
            parts.append(
                f"select {bucket}{period}{k} as step, {count} as n_units, "
                f"avg({micros}) / 1000000.0 as avg_time_s, "
                f"median({micros}) / 1000000.0 as median_time_s from units{group_by}"
            )
    return "final as (" + " union all ".join(parts) + ")"


def _bucket_ctes(spec: FunnelSpec) -> list[str]:
    """`units`: `units0` with the unit's breakdown bucket ("" when missing)."""
    if spec.by is None:
        return ["units as (select * from units0)"]
    u = list(spec.units)
    ulist = ", ".join(u)
    on = " and ".join(f"b.{c} = x.{c}" for c in u)
    if spec.attribution in ("first_touch", "last_touch"):
        # The earliest (latest) event with a value, by time then event id: found with
        # aggregates and equality joins rather than a sort of the unit's events.
        pick = "min" if spec.attribution == "first_touch" else "max"
        steps = ", ".join(f":name{spec.name_index(s)}" for s in dict.fromkeys(spec.steps))
        valued = f"bv is not null and event_type in ({steps})"
        on_e = " and ".join(f"e.{c} = t.{c}" for c in u)
        eu = ", ".join("e." + c for c in u)
        return [
            f"touched as (select {ulist}, event_ts, event_id, bv from ev where {valued})",
            f"touch_ts as (select {ulist}, {pick}(event_ts) as event_ts from touched "
            f"group by {ulist})",
            # The unit's events at that instant (one pass over the events; few rows).
            f"tie as (select {eu}, e.event_ts, e.event_id, e.bv from touched as e "
            f"inner join touch_ts as t on {on_e} and e.event_ts = t.event_ts)",
            f"touch_id as (select {ulist}, {pick}(event_id) as event_id from tie group by {ulist})",
            # An event id is unique after ingestion; min() keeps one row per unit anyway.
            f"touch as (select {eu}, min(e.bv) as bv from tie as e inner join touch_id as t "
            f"on {on_e} and e.event_id = t.event_id group by {eu})",
            f"units as (select x.*, coalesce(b.bv, '') as bucket from units0 as x "
            f"left join touch as b on {on})",
        ]
    step = int(spec.attribution.split(":", 1)[1])
    name = spec.steps[step]
    if spec.order == "unordered":
        # The step's occurrence: its name's r-th earliest in the window, r = which repeat
        # of the name the step is.
        nth = spec.steps[: step + 1].count(name)
        keys = [*u, *(["period"] if spec.per else [])]
        on_k = " and ".join(f"b.{c} = x.{c}" for c in keys)
        return [
            f"units as (select x.*, coalesce(b.bv, '') as bucket from units0 as x "
            f"left join occm as b on {on_k} and x.m >= {step} "
            f"and b.event_type = :name{spec.name_index(name)} and b.nr = {nth})"
        ]
    # The occurrence that filled step N: at t_N, after those the chain used there before.
    used = " + ".join(
        [
            f"case when x.t{j} = x.t{step} then 1 else 0 end"
            for j in range(step)
            if spec.steps[j] == name
        ]
        or ["0"]
    )
    return [
        f"occ as (select {ulist}, event_ts, bv, row_number() over (partition by {ulist}, "
        f"event_ts order by event_id) as rn from ev "
        f"where event_type = :name{spec.name_index(name)})",
        f"units as (select x.*, coalesce(b.bv, '') as bucket from units0 as x "
        f"left join occ as b on {on} and x.m >= {step} and b.event_ts = x.t{step} "
        f"and b.rn = {used} + 1)",
    ]
