"""user_lifecycle: one row per week per lifecycle status (new, returning, resurrecting,
dormant) with its users, for the weeks of dim_date (weeks start on the configured day).

The same query as `productlens lifecycle --period week` (`productlens.metrics.lifecycle`)
over every event, in UTC days like dim_date: a user is new in the week of their first
event.
"""

from __future__ import annotations

from sqlglot import exp

from productlens.metrics.lifecycle import lifecycle_query
from productlens.metrics.scope import Scope, WeekStart
from productlens.modeling import ModelContext


def model(ctx: ModelContext) -> exp.Query:
    week_start: WeekStart = "sunday" if ctx.week_start == "sunday" else "monday"
    weekly = lifecycle_query(Scope(week_start=week_start, source="fct_events"), "week", "dim_date")
    return (
        exp.select(
            exp.column("period_start").as_("week_start_date"),
            "status",
            exp.cast(exp.column("n_users"), "bigint").as_("n_users"),
        )
        .from_(weekly.subquery("weekly"))
        .where(exp.column("status").is_(exp.null()).not_())
    )
