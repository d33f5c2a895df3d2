"""Activity (DAU/WAU/MAU and active days per week and month) and retention (signup ->
any event, the README's defaults, in day and week periods) speed on one simulated world,
side by side in one run with:

- productlens: `productlens.metrics.activity.activity` and `.retention.retention` on the
  warehouse's `core.fct_events` (UTC, and Los Angeles days to show what a zone costs);
- plain SQL on DuckDB, the straightforward way: the distinct (user, day) set, DAU per
  day, WAU and MAU as count(distinct user) over a range join of each day with its
  trailing 7 / 30 days, active days as count per (user, period); retention as distinct
  (user, period) returns joined to signup cohorts;
- for activity, the old `active_users_daily` mart SQL (interval coverage over the
  distinct (user, day) set, one lead() sort; DAU/WAU/MAU only, no active days).

Every tool's figures are compared with productlens's (the same UTC days and cohorts);
a difference is printed, never hidden. Each query runs REPEATS times, alternating, and
the median is reported with the spread. The floor is a bare scan of every event's
user_id and event_ts.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPEATS = 3
RETENTION_PERIODS = 8  # the CLI's default --periods
ZONE = "America/Los_Angeles"

# A bare scan of what every query reads: the least any of them can take.
FLOOR_SQL = "select sum(hash(user_id)), max(epoch_us(event_ts)) from core.fct_events"


def activity_sql(table: str = "core.fct_events") -> str:
    """Plain SQL: DAU, WAU, MAU per UTC day from the first to the last active day."""
    return f"""
with active as (
    select distinct user_id, cast(event_ts as date) as day from {table}
),
days as (
    select cast(unnest(generate_series(min(day), max(day), interval 1 day)) as date) as day
    from active
),
dau as (select day, count(*) as n from active group by day),
windowed as (
    select d.day,
        count(distinct case when a.day > d.day - 7 then a.user_id end) as wau,
        count(distinct a.user_id) as mau
    from days as d
    join active as a on a.day between d.day - 29 and d.day
    group by d.day
)
select d.day, coalesce(u.n, 0) as dau, coalesce(t.wau, 0) as wau, coalesce(t.mau, 0) as mau
from days as d
left join dau as u on u.day = d.day
left join windowed as t on t.day = d.day
order by d.day
"""


def active_days_sql(table: str = "core.fct_events") -> str:
    """Plain SQL: users active on exactly n days of each Monday week and month."""
    return f"""
with active as (
    select distinct user_id, cast(event_ts as date) as day from {table}
),
per_user as (
    select 'week' as grain, cast(date_trunc('week', day) as date) as start, user_id,
        count(*) as n_days
    from active group by all
    union all
    select 'month', cast(date_trunc('month', day) as date), user_id, count(*)
    from active group by all
)
select grain, start, n_days, count(*) as n_users from per_user group by all
"""


# The active_users_daily mart before it read the metrics query (git log -S
# active_users_daily, a1f79a5), with its two import CTEs pointed at the warehouse.
OLD_MART_SQL = """
with days as (select * from core.dim_date),
events as (select * from core.fct_events),
activity as (select distinct user_id, event_date as activity_date from events),
spans as (
    select activity_date,
        lead(activity_date) over (partition by user_id order by activity_date)
            as next_activity_date
    from activity
),
edges as (
    select activity_date as edge_date, 1 as weekly_delta, 1 as monthly_delta from spans
    union all
    select least(coalesce(next_activity_date, activity_date + 7), activity_date + 7),
        -1, 0
    from spans
    union all
    select least(coalesce(next_activity_date, activity_date + 30), activity_date + 30),
        0, -1
    from spans
),
daily_edges as (
    select edge_date, sum(weekly_delta) as weekly_delta, sum(monthly_delta) as monthly_delta
    from edges group by edge_date
),
daily_active as (
    select activity_date, count(*) as dau from activity group by activity_date
),
running as (
    select days.date_day as activity_date,
        coalesce(daily_active.dau, 0) as dau,
        sum(coalesce(daily_edges.weekly_delta, 0)) over (
            order by days.date_day rows between unbounded preceding and current row
        ) as wau,
        sum(coalesce(daily_edges.monthly_delta, 0)) over (
            order by days.date_day rows between unbounded preceding and current row
        ) as mau
    from days
    left join daily_edges on days.date_day = daily_edges.edge_date
    left join daily_active on days.date_day = daily_active.activity_date
)
select activity_date, dau, cast(wau as bigint) as wau, cast(mau as bigint) as mau
from running order by activity_date
"""


def retention_sql(period: str, periods: int) -> str:
    """Plain SQL: signup cohorts (first event for users without a signup time) and the
    members returning (any event) in each later UTC period, for the `periods` cohorts
    ending with the period of the last event."""
    unit = {"day": 1, "week": 7}[period]
    return f"""
with signups as (
    select user_id, signup_ts as ts from staging.stg_users where signup_ts is not null
),
starts as (
    select user_id, ts from signups
    union all
    select user_id, min(event_ts) from core.fct_events
    where user_id not in (select user_id from signups) group by user_id
),
last_period as (
    select cast(date_trunc('{period}', max(event_ts)) as date) as last from core.fct_events
),
cohorts as (
    select s.user_id, cast(date_trunc('{period}', s.ts) as date) as cohort
    from starts as s, last_period as l
    where cast(date_trunc('{period}', s.ts) as date)
        between l.last - {unit * (periods - 1)} and l.last
),
returns as (
    select distinct e.user_id, cast(date_trunc('{period}', e.event_ts) as date) as period
    from core.fct_events as e, last_period as l
    where e.event_ts >= cast(l.last - {unit * periods} as timestamp)
)
select c.cohort, (r.period - c.cohort) // {unit} as k, count(*) as n
from cohorts as c join returns as r on r.user_id = c.user_id and r.period > c.cohort
group by all
union all
select cohort, 0, count(*) from cohorts group by cohort
"""


# --- results in one comparable shape -------------------------------------------------


def _daily(rows: list[tuple[Any, ...]]) -> dict[str, tuple[int, int, int]]:
    return {day.isoformat(): (int(dau), int(wau), int(mau)) for day, dau, wau, mau in rows}


def _spread(rows: list[tuple[Any, ...]]) -> dict[str, int]:
    return {f"{grain} {start} {n}": int(users) for grain, start, n, users in rows}


def _cohorts(rows: list[tuple[Any, ...]]) -> dict[str, dict[int, int]]:
    out: dict[str, dict[int, int]] = {}
    for cohort, k, n in rows:
        out.setdefault(cohort.isoformat(), {})[int(k)] = int(n)
    return out


def run_productlens_activity(engine: Any, timezone: str = "UTC") -> dict[str, Any]:
    from productlens.metrics.activity import activity
    from productlens.metrics.scope import Scope

    result = activity(engine, Scope(timezone=timezone)).total
    return {
        "daily": {d.date: (d.dau, d.wau, d.mau) for d in result.days},
        "spread": {
            f"{grain} {p.start} {n + 1}": users
            for grain, series in (("week", result.weeks), ("month", result.months))
            for p in series
            for n, users in enumerate(p.counts)
            if users
        },
    }


def run_productlens_retention(engine: Any, period: str, timezone: str = "UTC") -> dict[str, Any]:
    from productlens.metrics.retention import retention
    from productlens.metrics.scope import Scope

    result = retention(
        engine,
        start="signup",
        return_event=None,
        scope=Scope(timezone=timezone),
        period=period,  # type: ignore[arg-type]
        periods=RETENTION_PERIODS,
    )
    return {c.start: {k: n for k, n in enumerate(c.counts) if n} for c in result.cohorts if c.size}


def _fetch(engine: Any, sql: str) -> list[tuple[Any, ...]]:
    """A baseline's DuckDB SQL, on the engine's connection."""
    rows: list[tuple[Any, ...]] = engine.connection.execute(sql).fetchall()
    return rows


def run_plain_activity(engine: Any) -> dict[str, Any]:
    return {
        "daily": _daily(_fetch(engine, activity_sql())),
        "spread": _spread(_fetch(engine, active_days_sql())),
    }


def run_old_mart(engine: Any) -> dict[str, Any]:
    return {"daily": _daily(_fetch(engine, OLD_MART_SQL))}


def run_plain_retention(engine: Any, period: str) -> dict[str, Any]:
    return _cohorts(_fetch(engine, retention_sql(period, RETENTION_PERIODS)))


def agreement(reference: Any, got: Any) -> str:
    """How `got` compares with productlens's figures (on the days both report)."""
    if isinstance(reference, dict) and "daily" in reference:
        days = sorted(set(reference["daily"]) & set(got["daily"]))
        off = [d for d in days if reference["daily"][d] != got["daily"][d]]
        parts = [f"{len(off)} of {len(days)} days differ" if off else f"= on {len(days)} days"]
        if "spread" in got:
            same = got["spread"] == reference["spread"]
            parts.append("active days =" if same else "active days DIFFER")
        return ", ".join(parts)
    if got == reference:
        return f"= on {len(reference)} cohorts"
    return "DIFFERS: " + ", ".join(
        c for c in sorted(set(reference) | set(got)) if reference.get(c) != got.get(c)
    )


# --- one run -----------------------------------------------------------------------


def run_one(data: str, project: str) -> dict[str, object]:
    """Build a warehouse from `data` in `project`, then time every query; return figures."""
    from bench.funnel import events_warehouse

    engine, _, events = events_warehouse(data, project)

    # (metric, tool) -> the query; the first tool of each metric is productlens, the
    # one every other tool's figures are compared with.
    queries: dict[tuple[str, str], Callable[[], Any]] = {
        ("floor", "bare scan of user_id, event_ts"): lambda: engine.connection.execute(
            FLOOR_SQL
        ).fetchall(),
        ("activity", "productlens"): functools.partial(run_productlens_activity, engine),
        ("activity", "plain SQL (distinct days, range join)"): functools.partial(
            run_plain_activity, engine
        ),
        ("activity", "old active_users_daily mart SQL"): functools.partial(run_old_mart, engine),
        ("activity", f"productlens, {ZONE} days"): functools.partial(
            run_productlens_activity, engine, ZONE
        ),
    }
    for period in ("week", "day"):
        metric = f"retention {period}"
        queries[(metric, "productlens")] = functools.partial(
            run_productlens_retention, engine, period
        )
        queries[(metric, "plain SQL (distinct returns joined to cohorts)")] = functools.partial(
            run_plain_retention, engine, period
        )
        queries[(metric, f"productlens, {ZONE} {period}s")] = functools.partial(
            run_productlens_retention, engine, period, ZONE
        )
    times: dict[tuple[str, str], list[float]] = {key: [] for key in queries}
    results: dict[tuple[str, str], Any] = {}
    for _ in range(REPEATS):  # alternating, so drift hits every tool alike
        for key, query in queries.items():
            began = time.perf_counter()
            results[key] = query()
            times[key].append(time.perf_counter() - began)
    engine.close()
    rows = []
    for (metric, tool), seconds in times.items():
        reference = results.get((metric, "productlens"))
        # productlens is the reference; its zoned runs count other days; the floor
        # computes nothing to compare.
        comparable = reference is not None and tool != "productlens" and ZONE not in tool
        rows.append(
            {
                "metric": metric,
                "tool": tool,
                "seconds": seconds,
                "agreement": agreement(reference, results[(metric, tool)]) if comparable else "",
            }
        )
    return {"events": events, "rows": rows}


def measure(data: Path) -> dict[str, object]:
    """One run in a fresh process and warehouse."""
    from bench.isolated import run_isolated

    scratch = Path(tempfile.mkdtemp(prefix="productlens-bench-"))
    try:
        return run_isolated("bench.metrics.run_one", data=str(data), project=str(scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
