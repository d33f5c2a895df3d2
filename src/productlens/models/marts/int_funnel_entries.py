"""int_funnel_entries: each user's ordered funnel per day of entry, computed once.

One row per user per local day (in `[metrics] timezone`) on which they started the
configured funnel (`funnel_steps`, window `[metrics] funnel_window`): the furthest step
the attempts starting that day reached, the reporting attempt's step times, and the
device of the user's first funnel event. `funnel_daily_metrics` and `device_metrics`
count these rows (`productlens.metrics.funnel`: one funnel definition in the project).
"""

from __future__ import annotations

from sqlglot import exp

from productlens.metrics.funnel import funnel_entries_query
from productlens.metrics.scope import parse_duration
from productlens.modeling import ModelContext


def model(ctx: ModelContext) -> exp.Query:
    return funnel_entries_query(
        ctx.funnel_steps, window=parse_duration(ctx.funnel_window), by="device", scope=ctx.scope()
    )
