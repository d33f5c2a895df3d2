"""active_users_daily: one row per calendar day of dim_date: daily, weekly and monthly
active users (distinct users active on the day, in the trailing 7 and 30 days) and
stickiness (DAU / MAU).

The same query as `productlens activity` (`productlens.metrics.activity`, interval
coverage), over every event, with days counted in `[metrics] timezone` like the funnel and
retention marts (a day's funnel entrants are among that day's active users), on
dim_date's calendar.
"""

from __future__ import annotations

from dataclasses import replace

from sqlglot import exp

from productlens.metrics.activity import activity_query
from productlens.modeling import ModelContext


def model(ctx: ModelContext) -> exp.Query:
    daily = activity_query(replace(ctx.scope(), source="fct_events"), days_table="dim_date")
    return exp.select("activity_date", "dau", "wau", "mau", "stickiness").from_(
        daily.subquery("daily")
    )
