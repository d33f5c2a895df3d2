"""user_lifecycle: one row per week per lifecycle status (new, returning, resurrecting,
dormant) with its users, for the weeks of dim_date (weeks start on the configured day).

The same query as `productlens lifecycle --period week` (`productlens.metrics.lifecycle`)
over every event, with days and weeks counted in `[metrics] timezone` like the other event
marts: a user is new in the (local) week of their first event.
"""

from __future__ import annotations

from dataclasses import replace

from sqlglot import exp

from productlens.metrics.lifecycle import lifecycle_query
from productlens.modeling import ModelContext


def model(ctx: ModelContext) -> exp.Query:
    weekly = lifecycle_query(replace(ctx.scope(), source="fct_events"), "week", "dim_date")
    return (
        exp.select(
            exp.column("period_start").as_("week_start_date"),
            "status",
            exp.cast(exp.column("n_users"), "bigint").as_("n_users"),
        )
        .from_(weekly.subquery("weekly"))
        .where(exp.column("status").is_(exp.null()).not_())
    )
