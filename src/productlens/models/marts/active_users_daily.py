"""active_users_daily: one row per calendar day of dim_date: daily, weekly and monthly
active users (distinct users active on the day, in the trailing 7 and 30 days) and
stickiness (DAU / MAU).

The same query as `productlens activity` (`productlens.metrics.activity`, interval
coverage), over every event, in UTC days like dim_date and the other marts.
"""

from __future__ import annotations

from sqlglot import exp

from productlens.metrics.activity import activity_query
from productlens.metrics.scope import Scope
from productlens.modeling import ModelContext


def model(ctx: ModelContext) -> exp.Query:
    daily = activity_query(Scope(source="fct_events"), days_table="dim_date")
    return exp.select("activity_date", "dau", "wau", "mau", "stickiness").from_(
        daily.subquery("daily")
    )
