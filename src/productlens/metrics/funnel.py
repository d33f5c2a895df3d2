"""Funnels with PostHog's semantics, exact on ties, as set-based SQL.

The rules (ordered, strict and unordered funnels, attempts, windows, exclusions,
breakdown attribution, trends) are written out in `docs/funnels.md`; the brute-force
reference in `tests/funnel_reference.py` implements the same text in plain Python and
the tests hold the SQL to it.

`funnel_mart_query` is the same query shaped as a table, for the marts
`funnel_daily_metrics` and `device_metrics`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlglot import exp

from productlens import ops
from productlens.engines.base import freeze
from productlens.metrics.funnel_sql import (
    DAY_INDEX,
    Exclusion,
    FunnelSpec,
    Order,
    day_index_fits,
    funnel_query,
    units_counts_query,
    units_query,
)
from productlens.metrics.scope import (
    EVENTS_TABLE,
    MAX_WINDOW_DAYS,
    EventsSpec,
    MetricsInputError,
    Scope,
    period_add,
    scoped_events,
    too_long,
)

if TYPE_CHECKING:
    from productlens.engines import Engine

__all__ = [
    "Exclusion",
    "FunnelResult",
    "StepResult",
    "TrendPeriod",
    "counted_steps",
    "funnel",
    "funnel_entries_mart_query",
    "funnel_entries_query",
    "funnel_mart_query",
]

CountBy = Literal["user", "session"]
Per = Literal["day", "week"]
DEFAULT_WINDOW = timedelta(days=14)
PIECE = "piece"  # the breakdown of a split funnel: the piece's index


@dataclass(frozen=True)
class StepResult:
    """One row of a funnel: units that reached the step, and how long they took."""

    event: str
    count: int
    conversion_from_previous: float | None
    conversion_from_start: float | None
    drop_off: int
    avg_time_s: float | None
    median_time_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TrendPeriod:
    """The funnel of the units that entered in one period (local calendar)."""

    period: str  # the period's first local day, YYYY-MM-DD
    complete: bool  # False while the conversion window of the period has not closed
    steps: tuple[StepResult, ...]


@dataclass(frozen=True)
class FunnelResult:
    """A funnel's steps, per breakdown value (when asked) and per period (when asked)."""

    steps: tuple[StepResult, ...]
    breakdown: dict[str, tuple[StepResult, ...]] = field(default_factory=dict)
    trend: tuple[TrendPeriod, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"steps": [s.to_dict() for s in self.steps]}
        if self.breakdown:
            out["breakdown"] = {
                value: {"steps": [s.to_dict() for s in steps]}
                for value, steps in self.breakdown.items()
            }
        if self.trend:
            out["trend"] = [
                {
                    "period": p.period,
                    "complete": p.complete,
                    "steps": [s.to_dict() for s in p.steps],
                }
                for p in self.trend
            ]
        return out


def funnel(
    engine: Engine,
    steps: Sequence[str],
    *,
    scope: Scope | None = None,
    window: timedelta = DEFAULT_WINDOW,
    order: Order = "ordered",
    by: str | None = None,
    attribution: str = "first_touch",
    exclude: Sequence[Exclusion] = (),
    per: Per | None = None,
    count_by: CountBy = "user",
    split_at: Sequence[datetime] = (),
) -> FunnelResult:
    """The funnel through `steps` over the scope's events (see the module docstring).

    `split_at` (naive UTC instants, increasing) cuts each user's events into pieces and
    counts each piece as a user of its own, in one query: `breakdown["0"]` is the funnel
    of the events before the first cut alone, `breakdown["1"]` of those from it to the
    next, and so on (a piece no user entered is not listed); the totals count a user once
    per piece entered. Not with `by`, `per` or sessions."""
    scope = scope or Scope()
    if split_at and (by is not None or per is not None or count_by != "user"):
        raise MetricsInputError("split_at counts users per piece: not with by, per or sessions")
    if list(split_at) != sorted(set(split_at)):
        raise MetricsInputError("split_at: the instants must increase")
    spec = FunnelSpec(
        steps=tuple(_check_steps(steps)),
        window_s=_check_window(window),
        order=order,
        exclusions=tuple(_check_exclusions(exclude, steps)),
        per=per,
        count_by=count_by,
        by=PIECE if split_at else by,
        attribution=attribution,
        cuts=tuple(split_at),
    )
    if order == "unordered":
        for e in exclude:
            for step in (e.from_step, e.to_step):
                if steps[:step].count(steps[step]):
                    raise MetricsInputError(
                        f"--exclude {e.event}:{e.from_step}:{e.to_step}: in an unordered funnel "
                        f"FROM and TO must be the first step with their event name"
                    )
    if attribution not in ("first_touch", "last_touch"):
        _check_attribution(attribution, len(spec.steps))
    rows = _run(engine, scope, replace(spec, per=None))
    breakdown: dict[str, tuple[StepResult, ...]] = {}
    trend: tuple[TrendPeriod, ...] = ()
    if spec.by is not None:
        # A bucket holding only users removed by exclusions is not listed.
        buckets = sorted(
            {
                r["bucket"]
                for r in rows
                if r["bucket"] is not None and r["step"] == 0 and r["n_units"]
            }
        )
        breakdown = {b: _steps(spec.steps, [r for r in rows if r["bucket"] == b]) for b in buckets}
        rows = [r for r in rows if r["bucket"] is None]
    if per is not None:
        # Per period of entry a user counts once per period they entered in; the totals
        # above count each user once.
        period_rows = _run(engine, scope, replace(spec, by=None))
        trend = _trend(engine, scope, spec.steps, per, window, period_rows)
    return FunnelResult(steps=_steps(spec.steps, rows), breakdown=breakdown, trend=trend)


def _run(engine: Engine, scope: Scope, spec: FunnelSpec) -> list[dict[str, Any]]:
    if engine.dialect == "duckdb":
        indexed = day_index_fits(scope, spec) and day_index_current(engine)
        query = _duckdb_query(scope, spec, indexed)
    else:
        query = funnel_query(scope, spec)
    rows: list[dict[str, Any]] = engine.fetch_arrow(query).to_pylist()
    return rows


@functools.lru_cache(maxsize=64)
def _duckdb_query(scope: Scope, spec: FunnelSpec, day_index: bool = False) -> exp.Query:
    """`funnel_query` for DuckDB, built once per scope and spec: SQLGlot parses the query's
    text in about 50 ms, a sixth of the whole funnel at 10M events. Shared by every call
    with the same arguments, so nothing may change it (DuckDB's engine only renders it;
    other engines rewrite theirs, and get a query of their own)."""
    return freeze(funnel_query(scope, spec, duckdb=True, day_index=day_index))


def day_index_current(engine: Engine) -> bool:
    """Whether `core.fct_user_event_days` holds `core.fct_events` as it is now, by the run
    log: its latest successful build started after every build of the events fact began
    (a build killed after its commit leaves no success row, so any start counts). A
    warehouse without that record (built by hand, or by dbt), or whose index is a
    project's own model of that name (without `ops.SHIPPED_MODEL`'s mark: its rows may
    mean something else), is read without the index."""
    index = tuple(DAY_INDEX.split("."))
    # The mark is only on a table productlens built from the shipped model (no such
    # table: no mark).
    if ops.table_comment(engine, *index) != ops.SHIPPED_MODEL:
        return False
    if engine.table_kind(*ops.RUN_EVENTS) != "table":
        return False
    rows = engine.fetch_all(ops.build_starts([EVENTS_TABLE, DAY_INDEX]))
    starts = {row[0]: row[1:] for row in rows}
    events, built = starts.get(EVENTS_TABLE), starts.get(DAY_INDEX)
    return (
        events is not None and built is not None and built[1] is not None and built[1] > events[0]
    )


def _check_attribution(attribution: str, n_steps: int) -> None:
    kind, _, number = attribution.partition(":")
    if kind != "step" or not number.isdigit() or int(number) >= n_steps:
        raise MetricsInputError(
            f"--attribution {attribution!r}: use first_touch, last_touch or step:N with N "
            f"from 0 to {n_steps - 1}"
        )


def _trend(
    engine: Engine,
    scope: Scope,
    steps: Sequence[str],
    per: Per,
    window: timedelta,
    rows: Sequence[dict[str, Any]],
) -> tuple[TrendPeriod, ...]:
    """Per period of entry; a period is complete once its last attempt's window has
    closed before the last event in scope."""
    last = engine.fetch_all(
        scoped_events(scope, EventsSpec(columns=())).select(
            exp.Max(this=exp.column("event_ts")), append=False
        )
    )[0][0]
    out = []
    for start in sorted({r["period"] for r in rows}):
        end_local = datetime.combine(period_add(per, start, 1), datetime.min.time())
        end_utc = end_local.replace(tzinfo=scope.zone).astimezone(UTC).replace(tzinfo=None)
        # `window <= last - end`, not `end + window <= last`: a window of millions of
        # days ends past the year 9999, which no datetime holds (it has not closed).
        complete = last is not None and window <= last - end_utc
        period_rows = [r for r in rows if r["period"] == start]
        out.append(TrendPeriod(start.isoformat(), complete, _steps(steps, period_rows)))
    return tuple(out)


def _check_steps(steps: Sequence[str]) -> Sequence[str]:
    shown = ",".join(steps)
    if len(steps) < 2:
        raise MetricsInputError(
            f"--steps {shown!r}: a funnel needs at least two steps (event names, comma-separated)"
        )
    for k, name in enumerate(steps):
        if not name:
            raise MetricsInputError(f"--steps {shown!r}: step {k} has no event name")
    return steps


def _check_window(window: timedelta) -> int:
    seconds = window.total_seconds()
    if seconds <= 0 or seconds != int(seconds):
        raise MetricsInputError(
            f"the window must be a positive whole number of seconds, not {window}"
        )
    if window > timedelta(days=MAX_WINDOW_DAYS):
        raise MetricsInputError(f"the window {window}: {too_long()}")
    return int(seconds)


def _check_exclusions(exclude: Sequence[Exclusion], steps: Sequence[str]) -> Sequence[Exclusion]:
    for e in exclude:
        if not 0 <= e.from_step < e.to_step < len(steps):
            raise MetricsInputError(
                f"--exclude {e.event}:{e.from_step}:{e.to_step}: steps run from 0 to "
                f"{len(steps) - 1} and FROM must come before TO"
            )
        if e.event in steps:
            raise MetricsInputError(
                f"--exclude {e.event!r}: a funnel step cannot also be an excluded event"
            )
    return exclude


def _steps(names: Sequence[str], rows: Sequence[dict[str, Any]]) -> tuple[StepResult, ...]:
    """Step results from the query's rows (step, n_units, avg_time_s, median_time_s)."""
    by_step = {int(r["step"]): r for r in rows}
    counts = [int(by_step[k]["n_units"] or 0) if k in by_step else 0 for k in range(len(names))]
    # A breakdown bucket or period with no unit at some step has no row for it.
    out = []
    for k, name in enumerate(names):
        row = by_step.get(k, {})
        previous = counts[k - 1] if k else counts[0]
        out.append(
            StepResult(
                event=name,
                count=counts[k],
                conversion_from_previous=_share(counts[k], previous),
                conversion_from_start=_share(counts[k], counts[0]),
                drop_off=previous - counts[k],
                avg_time_s=_float(row.get("avg_time_s")),
                median_time_s=_float(row.get("median_time_s")),
            )
        )
    return tuple(out)


def counted_steps(names: Sequence[str], counts: Sequence[int]) -> tuple[StepResult, ...]:
    """Step results from the units reaching each step alone (no times: None), as
    `funnel()` derives them."""
    return _steps(names, [{"step": k, "n_units": n} for k, n in enumerate(counts)])


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def funnel_mart_query(
    steps: Sequence[str],
    *,
    window: timedelta,
    scope: Scope | None = None,
    per: Per | None = None,
    by: str | None = None,
) -> exp.Query:
    """The ordered funnel as a table for the marts: one row per (period of entry, when
    `per`) (value of `by`, first touch, when given) and step (1-based `step_no`), with
    users, conversion from the first and the previous step, and mean and median seconds
    from the previous step. The same query as `funnel()`."""
    query = funnel_query(scope or Scope(), _mart_spec(steps, window, per, by))
    if by is not None:  # the buckets only, not the totals
        query = exp.select("*").from_(query.subquery("q")).where("bucket IS NOT NULL")
    return _mart_table(query, steps, per=per, by=by)


def _mart_spec(
    steps: Sequence[str], window: timedelta, per: Per | None, by: str | None
) -> FunnelSpec:
    """The marts' funnel: ordered, per user, first-touch breakdown, no exclusions."""
    return FunnelSpec(
        steps=tuple(_check_steps(steps)),
        window_s=_check_window(window),
        order="ordered",
        exclusions=(),
        per=per,
        count_by="user",
        by=by,
        attribution="first_touch",
    )


def funnel_entries_query(
    steps: Sequence[str], *, window: timedelta, by: str, scope: Scope | None = None
) -> exp.Query:
    """Each user's ordered funnel per local day of entry, computed once for the marts:
    one row per user and day on which an attempt started, with `steps_reached` (1 to
    the number of steps) by the attempts starting that day, `step_1_ts`, ... the times
    of the reporting attempt's steps (null past `steps_reached`), and the user's value
    of `by` on their first funnel event ("" when missing), in a column named `by`.

    `funnel_entries_mart_query` turns these rows into `funnel_mart_query`'s, per day or
    per value of `by`: the same funnel (the furthest step over a user's days is the
    user's furthest step; the reporting attempt is the earliest to reach it, then the
    latest start, on any day)."""
    spec = _mart_spec(steps, window, "day", by)
    units = units_query(scope or Scope(), spec).subquery("units")
    return exp.select(
        exp.column("uid").as_("user_id"),
        exp.column("period").as_("entry_date"),
        exp.column("bucket").as_(by),
        (exp.column("m") + 1).as_("steps_reached"),
        *[exp.column(f"t{k}").as_(_step_ts(k)) for k in range(len(steps))],
    ).from_(units)


def funnel_entries_mart_query(
    steps: Sequence[str],
    entries: exp.Table,
    *,
    window: timedelta,
    per: Per | None = None,
    by: str | None = None,
) -> exp.Query:
    """`funnel_mart_query(steps, window=window, per=per, by=by)`'s rows counted from the
    stored `funnel_entries_query` rows in `entries` (with `per="day"` or with `by`, the
    column the entries were computed with)."""
    if (per is None) == (by is None) or per not in (None, "day"):
        raise MetricsInputError("the funnel entries give the funnel per day or per breakdown value")
    spec = _mart_spec(steps, window, per, by)
    n = len(steps)
    times = [exp.column(_step_ts(k)).as_(f"t{k}") for k in range(n)]
    m = (exp.column("steps_reached") - 1).as_("m")
    if per is not None:
        units: exp.Query = exp.select(
            exp.column("user_id").as_("uid"), exp.column("entry_date").as_("period"), m, *times
        ).from_(entries)
    else:
        # Per user over all days: the furthest step, and the attempt that reached it
        # first, then the latest start (a user at step 0: the earliest start).
        reached_at = exp.Case()
        for k in range(n):
            reached_at = reached_at.when(
                exp.column("steps_reached").eq(k + 1), exp.column(_step_ts(k))
            )
        rank = exp.Window(
            this=exp.func("row_number"),
            partition_by=[exp.column("user_id")],
            order=exp.Order(
                expressions=[
                    exp.Ordered(this=exp.column("steps_reached"), desc=True),
                    exp.Ordered(this=reached_at),
                    exp.Ordered(this=exp.column(_step_ts(0)), desc=True),
                ]
            ),
        )
        ranked = exp.select(
            exp.column("user_id").as_("uid"),
            exp.column(str(by)).as_("bucket"),
            m,
            *times,
            rank.as_("rn"),
        ).from_(entries)
        units = (
            exp.select("uid", "bucket", "m", *[f"t{k}" for k in range(n)])
            .from_(ranked.subquery("ranked"))
            .where(exp.column("rn").eq(1))
        )
    query = units_counts_query(spec, units, totals=False)
    return _mart_table(query, steps, per=per, by=by)


def _step_ts(k: int) -> str:
    """The entries' column of step k's time (0-based k, 1-based name)."""
    return f"step_{k + 1}_ts"


def _mart_table(
    query: exp.Query, steps: Sequence[str], *, per: Per | None, by: str | None
) -> exp.Query:
    """The funnel's rows (`funnel_query`'s columns) as the marts' table."""
    keys = [*(["period"] if per else []), *(["bucket"] if by else [])]
    rows = query.subquery("f")
    names = exp.select("*").from_(
        exp.Values(
            expressions=[exp.tuple_(exp.convert(k), exp.convert(s)) for k, s in enumerate(steps)],
            alias=exp.TableAlias(
                this=exp.to_identifier("step_names"),
                columns=[exp.to_identifier("step"), exp.to_identifier("step_name")],
            ),
        )
    )
    n = exp.column("n_units", "f")
    first = _window("first_value", "n_units", keys)
    previous = _window("lag", "n_units", keys)
    return (
        exp.select(
            *[exp.column(k, "f") for k in keys],
            (exp.column("step", "f") + 1).as_("step_no"),
            exp.column("step_name", "s"),
            n.as_("n_users"),
            first.as_("n_users_first_step"),
            _ratio(n, first).as_("conversion_from_start"),
            _ratio(n, previous).as_("conversion_from_previous"),
            exp.column("avg_time_s", "f"),
            exp.column("median_time_s", "f"),
        )
        .from_(rows)
        .join(names.subquery("s"), on=exp.column("step", "s").eq(exp.column("step", "f")))
    )


def _window(func: str, column: str, keys: Sequence[str]) -> exp.Window:
    return exp.Window(
        this=exp.func(func, exp.column(column, "f")),
        partition_by=[exp.column(key, "f") for key in keys],
        order=exp.Order(expressions=[exp.Ordered(this=exp.column("step", "f"))]),
    )


def _ratio(numerator: exp.Expression, denominator: exp.Expression) -> exp.Expression:
    """numerator / denominator as a double, NULL when the denominator is 0 or NULL."""
    return exp.Div(
        this=exp.cast(numerator, "double"),
        expression=exp.func("nullif", denominator, exp.convert(0)),
    )
