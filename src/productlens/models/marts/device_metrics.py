"""device_metrics: the ordered funnel by device over the whole period.

Each user counts once, in the device of their first funnel event (first touch), with
the window `[metrics] funnel_window`. It is `productlens funnel --by device` over the
configured steps (`productlens.metrics.funnel`), counted from each user's funnel per
day in `int_funnel_entries`.
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
        by="device",
    )
    return exp.select(
        exp.column("bucket").as_("device"),
        exp.column("step_no"),
        exp.column("step_name"),
        exp.column("n_users"),
        exp.column("conversion_from_start"),
        exp.column("conversion_from_previous"),
        exp.column("avg_time_s"),
        exp.column("median_time_s"),
    ).from_(query.subquery("funnel"))
