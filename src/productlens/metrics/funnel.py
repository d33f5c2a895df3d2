"""Funnels with PostHog's semantics, exact on ties, as set-based SQL.

The rules (ordered, strict and unordered funnels, attempts, windows, exclusions,
breakdown attribution, trends) are written out in `docs/funnels.md`; the brute-force
reference in `tests/funnel_reference.py` implements the same text in plain Python and
the tests hold the SQL to it.

`daily_funnel_query` and `funnel_totals_query` are the per-day funnels the marts used
before `funnel()`; they go once the marts read `funnel()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlglot import exp

from productlens.metrics.funnel_sql import ExclusionSpec, FunnelSpec, funnel_query
from productlens.metrics.scope import (
    EventsSpec,
    MetricsInputError,
    Scope,
    period_add,
    scoped_events,
)

if TYPE_CHECKING:
    from productlens.engines import Engine

Order = Literal["ordered", "strict", "unordered"]
CountBy = Literal["user", "session"]
Per = Literal["day", "week"]
DEFAULT_WINDOW = timedelta(days=14)


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
) -> FunnelResult:
    """The funnel through `steps` over the scope's events (see the module docstring)."""
    scope = scope or Scope()
    spec = FunnelSpec(
        steps=tuple(_check_steps(steps)),
        window_s=_check_window(window),
        order=order,
        exclusions=tuple(
            ExclusionSpec(e.event, e.from_step, e.to_step)
            for e in _check_exclusions(exclude, steps)
        ),
        per=per,
        count_by=count_by,
        by=by,
        attribution=attribution,
    )
    if order == "unordered" and exclude:
        raise MetricsInputError("exclusions are not supported for unordered funnels yet")
    if attribution not in ("first_touch", "last_touch"):
        _check_attribution(attribution, len(spec.steps))
    rows = _run(engine, scope, replace(spec, per=None))
    breakdown: dict[str, tuple[StepResult, ...]] = {}
    trend: tuple[TrendPeriod, ...] = ()
    if by is not None:
        buckets = sorted({r["bucket"] for r in rows if r["bucket"] is not None})
        breakdown = {b: _steps(spec.steps, [r for r in rows if r["bucket"] == b]) for b in buckets}
        rows = [r for r in rows if r["bucket"] is None]
    if per is not None:
        # Per period of entry a user counts once per period they entered in; the totals
        # above count each user once.
        period_rows = _run(engine, scope, replace(spec, by=None))
        trend = _trend(engine, scope, spec.steps, per, window, period_rows)
    return FunnelResult(steps=_steps(spec.steps, rows), breakdown=breakdown, trend=trend)


def _run(engine: Engine, scope: Scope, spec: FunnelSpec) -> list[dict[str, Any]]:
    query = funnel_query(scope, spec)
    rows: list[dict[str, Any]] = engine.fetch_arrow(query.sql(dialect=engine.dialect)).to_pylist()
    return rows


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
        scoped_events(scope, EventsSpec(columns=()))
        .select(exp.Max(this=exp.column("event_ts")), append=False)
        .sql(dialect=engine.dialect)
    )[0][0]
    out = []
    for start in sorted({r["period"] for r in rows}):
        end_local = datetime.combine(period_add(per, start, 1), datetime.min.time())
        end_utc = end_local.replace(tzinfo=scope.zone).astimezone(UTC).replace(tzinfo=None)
        complete = last is not None and end_utc + window <= last
        period_rows = [r for r in rows if r["period"] == start]
        out.append(TrendPeriod(start.isoformat(), complete, _steps(steps, period_rows)))
    return tuple(out)


def _check_steps(steps: Sequence[str]) -> Sequence[str]:
    if len(steps) < 2:
        raise MetricsInputError("a funnel needs at least two steps")
    if any(not s for s in steps):
        raise MetricsInputError("a funnel step needs an event name")
    return steps


def _check_window(window: timedelta) -> int:
    seconds = window.total_seconds()
    if seconds <= 0 or seconds != int(seconds):
        raise MetricsInputError(
            f"the window must be a positive whole number of seconds, not {window}"
        )
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


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _step_cte(k: int, step: str, keys: Sequence[str]) -> exp.Select:
    """Users' earliest time at step k per day (and per extra key), chained to step k-1."""
    col = exp.column  # every column here is qualified by e or p
    query = exp.select(
        col("user_id", "e"),
        *[col(key, "e") for key in keys],
        exp.Min(this=col("event_ts", "e")).as_("reached_ts"),
    ).from_(exp.to_table("funnel_events").as_("e"))
    if k > 1:
        query = query.join(
            exp.to_table(f"step_{k - 1}").as_("p"),
            on=exp.and_(
                col("user_id", "e").eq(col("user_id", "p")),
                *[col(key, "e").eq(col(key, "p")) for key in keys],
                col("event_ts", "e") >= col("reached_ts", "p"),
            ),
        )
    return query.where(col("event_type", "e").eq(exp.convert(step))).group_by(
        col("user_id", "e"), *[col(key, "e") for key in keys]
    )


def daily_funnel_query(
    steps: Sequence[str], source: str = "fct_events", by: Sequence[str] = ()
) -> exp.Query:
    """One row per day (and per value of each `by` column) per step: users reaching the
    step that day, and conversion rates.

    Columns: event_date, *by, step_no, step_name, n_users, n_users_first_step,
    conversion_from_start, conversion_from_previous.
    """
    if len(steps) < 2:
        raise ValueError("a funnel needs at least two steps")
    keys = ["event_date", *by]
    query = exp.select("*").from_("final")
    query = query.with_(
        "funnel_events",
        as_=exp.select("user_id", *keys, "event_ts", "event_type")
        .from_(source)
        .where(exp.column("event_type").isin(*[exp.convert(s) for s in steps])),
    )
    for k, step in enumerate(steps, start=1):
        query = query.with_(f"step_{k}", as_=_step_cte(k, step, keys))

    step_names = exp.select("*").from_(
        exp.Values(
            expressions=[
                exp.tuple_(exp.convert(k), exp.convert(s)) for k, s in enumerate(steps, 1)
            ],
            alias=exp.TableAlias(
                this=exp.to_identifier("step_names"),
                columns=[exp.to_identifier("step_no"), exp.to_identifier("step_name")],
            ),
        )
    )
    query = query.with_("steps", as_=step_names)
    reached = exp.union(
        *[
            exp.select(
                *keys,
                exp.convert(k).as_("step_no"),
                exp.Count(this=exp.Star()).as_("n_users"),
            )
            .from_(f"step_{k}")
            .group_by(*keys)
            for k in range(1, len(steps) + 1)
        ],
        distinct=False,
    )
    query = query.with_("reached", as_=reached)
    query = query.with_("groups", as_=exp.select(*keys).from_("step_1").distinct())

    n_users = exp.func("coalesce", exp.column("n_users", "r"), exp.convert(0))
    grid = (
        exp.select(
            *[exp.column(key, "g") for key in keys],
            exp.column("step_no", "s"),
            exp.column("step_name", "s"),
            n_users.as_("n_users"),
        )
        .from_(exp.to_table("groups").as_("g"))
        .join(exp.to_table("steps").as_("s"), join_type="cross")
        .join(
            exp.to_table("reached").as_("r"),
            on=exp.and_(
                *[exp.column(key, "r").eq(exp.column(key, "g")) for key in keys],
                exp.column("step_no", "r").eq(exp.column("step_no", "s")),
            ),
            join_type="left",
        )
    )
    query = query.with_("grid", as_=grid)
    final = exp.select(
        *keys,
        "step_no",
        "step_name",
        "n_users",
        _window("first_value", "n_users", keys).as_("n_users_first_step"),
        _ratio(exp.column("n_users"), _window("first_value", "n_users", keys)).as_(
            "conversion_from_start"
        ),
        _ratio(exp.column("n_users"), _window("lag", "n_users", keys)).as_(
            "conversion_from_previous"
        ),
    ).from_("grid")
    return query.with_("final", as_=final)


def funnel_totals_query(steps: Sequence[str], by: str, source: str = "fct_events") -> exp.Query:
    """User-days reaching each step over the whole period, per value of `by` (e.g.
    device), with conversion from the first step and from the previous one."""
    daily = daily_funnel_query(steps, source, by=(by,)).subquery("daily")
    totals = (
        exp.select(
            by,
            "step_no",
            exp.func("min", exp.column("step_name")).as_("step_name"),
            exp.Sum(this=exp.column("n_users")).as_("n_user_days"),
        )
        .from_(daily)
        .group_by(by, "step_no")
        .subquery("totals")
    )
    n = exp.column("n_user_days")
    return exp.select(
        by,
        "step_no",
        "step_name",
        "n_user_days",
        _ratio(n, _window("first_value", "n_user_days", [by])).as_("conversion_from_start"),
        _ratio(n, _window("lag", "n_user_days", [by])).as_("conversion_from_previous"),
    ).from_(totals)


def _window(func: str, column: str, keys: Sequence[str]) -> exp.Window:
    return exp.Window(
        this=exp.func(func, exp.column(column)),
        partition_by=[exp.column(key) for key in keys],
        order=exp.Order(expressions=[exp.Ordered(this=exp.column("step_no"))]),
    )


def _ratio(numerator: exp.Expression, denominator: exp.Expression) -> exp.Expression:
    """numerator / denominator as a double, NULL when the denominator is 0 or NULL."""
    return exp.Div(
        this=exp.cast(numerator, "double"),
        expression=exp.func("nullif", denominator, exp.convert(0)),
    )
