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

How it is computed (one pass over the events, no per-(user, day) set and no sort): days
are numbered from 1970-01-01 and cut into blocks of 31; each (segment, user, block) gets a
31-bit mask of its active days (`bit_or`), and the previous block's mask rides along in
the upper bits of one 62-bit word. DAU, WAU and MAU on day k of a block count the words
with a bit set in the last 1, 7 or 30 positions up to k (a window of at most 30 days
reaches back one block at most), as `count(case when word & constant <> 0 ...)` per
block. Active days per period: a period (<= 31 days) lies inside the 62 days of the
word of its last day's block, so one popcount of `word & period mask` per user and
period gives its active days. Exact, set-based, portable (shifts, `&`, `bit_or`). The
`active_users_daily` mart reads `activity_query`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from productlens.metrics.calendar import (
    add_days,
    event_span,
    local_day,
    report_days,
    with_lookback,
)
from productlens.metrics.scope import (
    EventsSpec,
    Grain,
    Scope,
    Span,
    date_literal,
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
    # Whole days before the span too, so the offsets found cover every event read.
    scope = (scope or Scope()).whole_days()
    span = event_span(engine, with_lookback(scope, LOOKBACK_DAYS))
    total = _series(engine, scope, None, span)[NO_SEGMENT]
    breakdown = _series(engine, scope, by, span) if by is not None else None
    return ActivityResult(total, breakdown)


def _series(
    engine: Engine, scope: Scope, by: str | None, span: Span | None
) -> dict[str, ActivitySeries]:
    query = activity_and_active_days_query(scope, by, span)
    rows = engine.fetch_arrow(query).to_pylist()
    days: dict[str, list[ActivityDay]] = defaultdict(list)
    counts: dict[tuple[str, str, date], list[int]] = {}
    for row in sorted(rows, key=lambda r: (r["segment"], r["grain"], r["activity_date"])):
        if row["grain"] == "day":
            days[row["segment"]].append(
                ActivityDay(
                    row["activity_date"].isoformat(),
                    int(row["dau"]),
                    int(row["wau"]),
                    int(row["mau"]),
                    row["stickiness"],
                )
            )
            continue
        key = (row["segment"], row["grain"], row["activity_date"])
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


BLOCK = 31  # days per block: two blocks' masks fit a signed 64-bit integer
EPOCH = date(1970, 1, 1)  # day numbers count from here
# Added to every day number so that it is positive for any date an engine holds (DuckDB's
# span about 2^31 days either side of EPOCH): blocks are then plain integer division.
DAY_OFFSET = BLOCK * 2**27
EVENT_DATE = "event_date"  # fct_events's UTC day of event_ts
SPINE_DIGITS = 5  # up to 10^5 reported days
DAILY_COLUMNS = ("segment", "activity_date", "dau", "wau", "mau", "stickiness")
SPREAD_COLUMNS = ("grain", "segment", "period_start", "n_days", "n_users")
# How many trailing days (the day included) each daily measure looks at.
TRAILING = {"dau": 1, **WINDOWS}
# SWAR popcount of a non-negative 64-bit integer with shifts, `&` and `+` only (no
# bit_count on PostgreSQL integers, no overflowing multiply): (shift, mask, keep).
POPCOUNT_STEPS: tuple[tuple[int, int, bool], ...] = (
    (1, 0x5555555555555555, False),  # x - ((x >> 1) & m): 2-bit counts
    (2, 0x3333333333333333, True),  # (x & m) + ((x >> 2) & m): 4-bit counts
    (4, 0x0F0F0F0F0F0F0F0F, True),  # (x + (x >> 4)) & m: byte counts
)


def activity_query(
    scope: Scope, by: str | None = None, days_table: str | None = None, span: Span | None = None
) -> exp.Select:
    """One row per segment (`""` without `by`) per reported local day: activity_date,
    dau, wau, mau, stickiness. `days_table` (a dim_date with `date_day`) replaces the range
    and the active days as the calendar reported (the mart's spine). `span`: the events'
    UTC span, for a cheaper local day (`local_ts`; the result does not depend on it)."""
    final = exp.select(*DAILY_COLUMNS, copy=False).from_("daily", copy=False)
    return _activity_ctes(scope, by, days_table, span).with_("final", as_=final, copy=False)


def active_days_query(scope: Scope, by: str | None = None, span: Span | None = None) -> exp.Select:
    """One row per segment, grain (week, month), period and number of active days:
    n_users, the users active on exactly that many days of the period within the range."""
    final = exp.select(*SPREAD_COLUMNS, copy=False).from_("spread", copy=False)
    return _activity_ctes(scope, by, None, span).with_("final", as_=final, copy=False)


def activity_and_active_days_query(
    scope: Scope, by: str | None = None, span: Span | None = None
) -> exp.Select:
    """Both in one query, the events read once: `day` rows carry the daily measures,
    `week`/`month` rows the active-day counts (activity_date = the period's start)."""

    def null(kind: str) -> exp.Expression:
        return exp.cast(exp.null(), kind)

    daily = exp.select(
        exp.Literal.string("day").as_("grain"),
        *DAILY_COLUMNS,
        null("bigint").as_("n_days"),
        null("bigint").as_("n_users"),
        copy=False,
    ).from_("daily", copy=False)
    spread = exp.select(
        "grain",
        "segment",
        exp.column("period_start").as_("activity_date"),
        *[null("bigint").as_(m) for m in TRAILING],
        null("double").as_("stickiness"),
        "n_days",
        "n_users",
        copy=False,
    ).from_("spread", copy=False)
    final = exp.union(daily, spread, distinct=False)
    return _activity_ctes(scope, by, None, span).with_("final", as_=final, copy=False)


def _activity_ctes(
    scope: Scope, by: str | None, days_table: str | None, span: Span | None
) -> exp.Select:
    """`select * from final` with the CTEs both outputs read: `masks` and `words` (a
    user's active days as bits, see the module docstring), `bounds`, the `spine` of
    reported day numbers, `daily` and `spread`."""
    scope = scope.whole_days()  # a day is reported whole, whatever instant bounds it
    segment: exp.Expression = (
        exp.Coalesce(this=event_value(by), expressions=[exp.Literal.string(NO_SEGMENT)])
        if by is not None
        else exp.Literal.string(NO_SEGMENT)
    )
    # Without `by`, the segment joins after the aggregation: one key less per event.
    keys = ("segment", "user_id") if by is not None else ("user_id",)
    events = scoped_events(
        with_lookback(scope, LOOKBACK_DAYS),
        EventsSpec(
            columns=("user_id",),
            extra={
                **({"segment": segment} if by is not None else {}),
                "day_n": _day_number(_event_day(scope, span)),
            },
        ),
    )
    day_n = exp.column("day_n")
    bit = exp.BitwiseLeftShift(
        this=exp.cast(exp.convert(1), "bigint"),
        expression=exp.cast(exp.Mod(this=day_n, expression=exp.convert(BLOCK)), "int"),
    )
    masks = (
        exp.select(
            *keys,
            _block(day_n.copy()).as_("block"),
            exp.BitwiseOrAgg(this=bit).as_("bits"),
            copy=False,
        )
        .from_(events.subquery("e"), copy=False)
        .group_by(*keys, _block(day_n.copy()), copy=False)
    )
    if by is None:
        masks = exp.select(segment.as_("segment"), "user_id", "block", "bits", copy=False).from_(
            masks.subquery("g"), copy=False
        )
    # Each block's mask again as the next block's `prev`: a user idle in a block still
    # has a word there while the previous block's days are inside its windows.
    zero = exp.cast(exp.convert(0), "bigint")
    shifted = exp.union(
        exp.select(
            "segment",
            "user_id",
            "block",
            exp.column("bits").as_("cur"),
            zero.as_("prev"),
            copy=False,
        ).from_("masks", copy=False),
        exp.select(
            "segment",
            "user_id",
            (exp.column("block") + exp.convert(1)).as_("block"),
            zero.copy().as_("cur"),
            exp.column("bits").as_("prev"),
            copy=False,
        ).from_("masks", copy=False),
        distinct=False,
    )
    cur, prev = exp.Max(this=exp.column("cur")), exp.Max(this=exp.column("prev"))
    words = (
        exp.select(
            "segment",
            "user_id",
            "block",
            # The previous block's days in bits 0..30, this block's in bits 31..61.
            (prev + cur * exp.convert(2**BLOCK)).as_("word"),
            copy=False,
        )
        .from_(shifted.subquery("s"), copy=False)
        .group_by("segment", "user_id", "block", copy=False)
    )
    query = (
        exp.select("*", copy=False)
        .from_("final", copy=False)
        .with_("masks", as_=masks, copy=False)
        .with_("words", as_=words, copy=False)
        .with_("digits", as_=_digits(), copy=False)
        .with_("positions", as_=_numbers(2, "k").where(_offset(2) < exp.convert(BLOCK)), copy=False)
        .with_("bounds", as_=_bounds(scope, days_table), copy=False)
    )
    width = exp.column("report_hi", "b") - exp.column("report_lo", "b")
    spine = (
        _numbers(SPINE_DIGITS, "day_n", start=exp.column("report_lo", "b"))
        .join(exp.to_table("bounds").as_("b"), join_type="cross", copy=False)
        .where(_offset(SPINE_DIGITS) <= width, copy=False)
    )
    query = query.with_("spine", as_=spine, copy=False)
    return _with_spread(_with_daily(query, by), scope)


def _with_daily(query: exp.Select, by: str | None) -> exp.Select:
    """`daily`: DAU, WAU, MAU per segment and spine day (zeros where nobody counts)."""
    word = exp.column("word")

    def users_with_any(position: int, days: int) -> exp.Expression:
        # Words with a bit set among the `days` positions ending at `position`.
        mask = ((1 << days) - 1) << (position - days + 1)
        hit = exp.NEQ(
            this=exp.BitwiseAnd(this=word.copy(), expression=exp.convert(mask)),
            expression=exp.convert(0),
        )
        return exp.Count(this=exp.Case(ifs=[exp.If(this=hit, true=exp.convert(1))]))

    per_block = (
        exp.select(
            "segment",
            "block",
            *[
                users_with_any(BLOCK + k, days).as_(f"{name}_{k}")
                for name, days in TRAILING.items()
                for k in range(BLOCK)
            ],
            copy=False,
        )
        .from_("words", copy=False)
        .group_by("segment", "block", copy=False)
    )

    def of_position(name: str) -> exp.Expression:
        k = exp.column("k", "p")
        return exp.Case(
            ifs=[
                exp.If(this=k.copy().eq(exp.convert(i)), true=exp.column(f"{name}_{i}", "c"))
                for i in range(BLOCK)
            ]
        )

    per_day = (
        exp.select(
            exp.column("segment", "c"),
            (exp.column("block", "c") * exp.convert(BLOCK) + exp.column("k", "p")).as_("day_n"),
            *[of_position(name).as_(name) for name in TRAILING],
            copy=False,
        )
        .from_(exp.to_table("per_block").as_("c"), copy=False)
        .join(exp.to_table("positions").as_("p"), join_type="cross", copy=False)
    )
    # Without `by`, the one segment exists even when no one is active (a range of zeros).
    segments = (
        exp.select("segment", copy=False).from_("masks", copy=False).distinct(copy=False)
        if by is not None
        else exp.select(exp.Literal.string(NO_SEGMENT).as_("segment"), copy=False)
    )

    def measure(name: str) -> exp.Expression:
        value = exp.Coalesce(this=exp.column(name, "d"), expressions=[exp.convert(0)])
        return exp.cast(value, "bigint")

    daily = (
        exp.select(
            exp.column("segment", "g"),
            _date_of(exp.column("day_n", "s")).as_("activity_date"),
            *[measure(name).as_(name) for name in TRAILING],
            exp.Div(
                this=exp.cast(measure("dau"), "double"),
                expression=exp.func("nullif", measure("mau"), exp.convert(0)),
            ).as_("stickiness"),
            copy=False,
        )
        .from_(exp.to_table("segments").as_("g"), copy=False)
        .join(exp.to_table("spine").as_("s"), join_type="cross", copy=False)
        .join(
            exp.to_table("per_day").as_("d"),
            on=exp.and_(
                exp.column("segment", "d").eq(exp.column("segment", "g")),
                exp.column("day_n", "d").eq(exp.column("day_n", "s")),
            ),
            join_type="left",
            copy=False,
        )
    )
    return (
        query.with_("per_block", as_=per_block, copy=False)
        .with_("per_day", as_=per_day, copy=False)
        .with_("segments", as_=segments, copy=False)
        .with_("daily", as_=daily, copy=False)
    )


def _with_spread(query: exp.Select, scope: Scope) -> exp.Select:
    """`spread`: per segment, grain, period and n_days, the users active on exactly
    n_days of the period's reported days. A period (<= 31 days) lies within the 62 days
    of the word of the block holding its last reported day."""
    day = _date_of(exp.column("day_n"))
    period_days = exp.union(
        *[
            exp.select(
                exp.Literal.string(grain).as_("grain"),
                period_start(scope, grain, day.copy()).as_("period_start"),
                "day_n",
                copy=False,
            ).from_("spine", copy=False)
            for grain in PERIOD_DAYS
        ],
        distinct=False,
    )
    last_block = (
        exp.select(
            "grain",
            "period_start",
            _block(exp.Max(this=exp.column("day_n"))).as_("block"),
            copy=False,
        )
        .from_("period_days", copy=False)
        .group_by("grain", "period_start", copy=False)
    )
    first_block = exp.column("block", "l") - exp.convert(1)
    period_masks = (
        exp.select(
            exp.column("grain", "d"),
            exp.column("period_start", "d"),
            exp.column("block", "l"),
            exp.BitwiseOrAgg(this=_bit(exp.column("day_n", "d"), first_block)).as_("period_bits"),
            copy=False,
        )
        .from_(exp.to_table("period_days").as_("d"), copy=False)
        .join(
            exp.to_table("last_block").as_("l"),
            on=exp.and_(
                exp.column("grain", "l").eq(exp.column("grain", "d")),
                exp.column("period_start", "l").eq(exp.column("period_start", "d")),
            ),
            copy=False,
        )
        .group_by(
            exp.column("grain", "d"),
            exp.column("period_start", "d"),
            exp.column("block", "l"),
            copy=False,
        )
    )
    active = exp.BitwiseAnd(this=exp.column("word", "w"), expression=exp.column("period_bits", "m"))
    per_user = (
        exp.select(
            exp.column("segment", "w"),
            exp.column("grain", "m"),
            exp.column("period_start", "m"),
            active.as_("x"),
            copy=False,
        )
        .from_(exp.to_table("words").as_("w"), copy=False)
        .join(
            exp.to_table("period_masks").as_("m"),
            on=exp.column("block", "m").eq(exp.column("block", "w")),
            copy=False,
        )
        .where(exp.NEQ(this=active.copy(), expression=exp.convert(0)), copy=False)
    )
    counted = _popcount(per_user, ("segment", "grain", "period_start"), "x")
    spread = (
        exp.select(
            "grain",
            "segment",
            "period_start",
            exp.column("x").as_("n_days"),
            exp.Count(this=exp.Star()).as_("n_users"),
            copy=False,
        )
        .from_(counted.subquery("c"), copy=False)
        .group_by("grain", "segment", "period_start", "x", copy=False)
    )
    return (
        query.with_("period_days", as_=period_days, copy=False)
        .with_("last_block", as_=last_block, copy=False)
        .with_("period_masks", as_=period_masks, copy=False)
        .with_("spread", as_=spread, copy=False)
    )


def _popcount(source: exp.Select, keep: tuple[str, ...], column: str) -> exp.Select:
    """`source` with `column` (a non-negative bigint) replaced by its number of set bits,
    one subquery per SWAR step (each step reads its input twice)."""
    x = exp.column(column)

    def shr(bits: int) -> exp.Expression:
        return exp.paren(exp.BitwiseRightShift(this=x.copy(), expression=exp.convert(bits)))

    def band(value: exp.Expression, mask: int) -> exp.Expression:
        return exp.paren(exp.BitwiseAnd(this=value, expression=exp.convert(mask)))

    steps: list[exp.Expression] = [
        x.copy() - band(shr(1), 0x5555555555555555),
        band(x.copy(), 0x3333333333333333) + band(shr(2), 0x3333333333333333),
        band(exp.paren(x.copy() + shr(4)), 0x0F0F0F0F0F0F0F0F),
        x.copy() + shr(8),
        x.copy() + shr(16),
        band(exp.paren(x.copy() + shr(32)), 0x7F),
    ]
    query = source
    for k, step in enumerate(steps):
        query = exp.select(*keep, step.as_(column), copy=False).from_(
            query.subquery(f"p{k}"), copy=False
        )
    return query


def _event_day(scope: Scope, span: Span | None) -> exp.Expression:
    """The event's local day. In UTC, fct_events's `event_date` (its UTC day, stored):
    a date column scans several times faster than the timestamp it is cast from."""
    return exp.column(EVENT_DATE) if scope.timezone == "UTC" else local_day(scope, span)


def _day_number(day: exp.Expression) -> exp.Expression:
    """The day number of a date: days from EPOCH plus DAY_OFFSET."""
    days = exp.DateDiff(this=day, expression=date_literal(EPOCH), unit=exp.var("DAY"))
    return days + exp.convert(DAY_OFFSET)


def _date_of(day_n: exp.Expression) -> exp.Expression:
    return add_days(date_literal(EPOCH), exp.paren(day_n - exp.convert(DAY_OFFSET)))


def _block(day_n: exp.Expression) -> exp.Expression:
    """The block of a day number (day numbers are positive: integer division)."""
    return exp.IntDiv(this=day_n, expression=exp.convert(BLOCK))


def _bit(day_n: exp.Expression, block: exp.Expression) -> exp.Expression:
    """The bit of a day in a word whose bit 0 is the first day of `block`."""
    position = exp.Sub(this=day_n, expression=exp.paren(block * exp.convert(BLOCK)))
    return exp.BitwiseLeftShift(
        this=exp.cast(exp.convert(1), "bigint"), expression=exp.cast(position, "int")
    )


def _digits() -> exp.Select:
    return exp.select("*", copy=False).from_(
        exp.Values(
            expressions=[exp.tuple_(exp.convert(d)) for d in range(10)],
            alias=exp.TableAlias(this=exp.to_identifier("t"), columns=[exp.to_identifier("n")]),
        ),
        copy=False,
    )


def _offset(n_digits: int) -> exp.Expression:
    offset: exp.Expression = exp.column("n", "d0")
    for k in range(1, n_digits):
        offset = offset + exp.column("n", f"d{k}") * exp.convert(10**k)
    return offset


def _numbers(n_digits: int, name: str, start: exp.Expression | None = None) -> exp.Select:
    """`start` + 0 .. 10^n_digits - 1 as `name` (a digits cross join: Spark has no
    generate_series)."""
    value = _offset(n_digits) if start is None else start + _offset(n_digits)
    query = exp.select(value.as_(name), copy=False).from_(
        exp.to_table("digits").as_("d0"), copy=False
    )
    for k in range(1, n_digits):
        query = query.join(exp.to_table("digits").as_(f"d{k}"), join_type="cross", copy=False)
    return query


def _bounds(scope: Scope, days_table: str | None) -> exp.Select:
    """One row: report_lo and report_hi, the first and last day number reported: the
    days table's, the range's, or else the first and last active day."""
    if days_table is not None:
        day = exp.column("date_day")
        return exp.select(
            _day_number(exp.Min(this=day)).as_("report_lo"),
            _day_number(exp.Max(this=day.copy())).as_("report_hi"),
            copy=False,
        ).from_(days_table, copy=False)
    first, last = report_days(scope)
    ends = (("report_lo", first, exp.Min, "block_lo"), ("report_hi", last, exp.Max, "block_hi"))
    columns = []
    for name, known, pick, block in ends:
        if known is not None:
            columns.append(exp.convert((known - EPOCH).days + DAY_OFFSET).as_(name))
            continue
        # The lowest (highest) day of the first (last) block any user was active in.
        k = exp.column("k", "p")
        hit = exp.and_(
            exp.column("block", "m").eq(exp.column(block, "e")),
            exp.NEQ(
                this=exp.BitwiseAnd(
                    this=exp.column("bits", "m"),
                    expression=exp.BitwiseLeftShift(
                        this=exp.cast(exp.convert(1), "bigint"), expression=k.copy()
                    ),
                ),
                expression=exp.convert(0),
            ),
        )
        day_n = exp.column("block", "m") * exp.convert(BLOCK) + k
        columns.append(pick(this=exp.Case(ifs=[exp.If(this=hit, true=day_n)])).as_(name))
    if first is not None and last is not None:
        return exp.select(*columns, copy=False)
    blocks = exp.select(
        exp.Min(this=exp.column("block")).as_("block_lo"),
        exp.Max(this=exp.column("block")).as_("block_hi"),
        copy=False,
    ).from_("masks", copy=False)
    return (
        exp.select(*columns, copy=False)
        .from_(blocks.subquery("e"), copy=False)
        .join(exp.to_table("masks").as_("m"), join_type="cross", copy=False)
        .join(exp.to_table("positions").as_("p"), join_type="cross", copy=False)
        .where(
            exp.or_(
                exp.column("block", "m").eq(exp.column("block_lo", "e")),
                exp.column("block", "m").eq(exp.column("block_hi", "e")),
            ),
            copy=False,
        )
    )
