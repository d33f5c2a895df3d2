"""funnel_daily_metrics: the ordered funnel by day of entry.

Users who started the funnel on a day (in `[metrics] timezone`) and how many of them
reached each step within `[metrics] funnel_window` of the step-1 event, with conversion
and time to convert. It is `productlens funnel --per day` over the configured steps: one
funnel definition in the project (`productlens.metrics.funnel`), counted from each
user's funnel per day in `int_funnel_entries`.
"""

from __future__ import annotations

from sqlglot import exp

from productlens.metrics.funnel import funnel_entries_mart_query
from productlens.metrics.scope import parse_duration
from productlens.modeling import ModelContext


def model(ctx: ModelContext) -> exp.Query:
    query = funnel_entries_mart_query(
        ctx.funnel_steps,
        exp.table_("int_funnel_entries", db="marts"),
        window=parse_duration(ctx.funnel_window),
        per="day",
    )
    return exp.select(
        exp.column("period").as_("event_date"),
        *[exp.column(c) for c in COLUMNS],
    ).from_(query.subquery("funnel"))


COLUMNS = (
    "step_no",
    "step_name",
    "n_users",
    "n_users_first_step",
    "conversion_from_start",
    "conversion_from_previous",
    "avg_time_s",
    "median_time_s",
)
