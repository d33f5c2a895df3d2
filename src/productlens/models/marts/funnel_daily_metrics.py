"""funnel_daily_metrics: users at each funnel step per day, and conversion rates.

The steps come from configuration (`[metrics] funnel_steps`, else the scenario's), so
the query is built in code; see `productlens.metrics.funnel`.
"""

from __future__ import annotations

from sqlglot import exp

from productlens.metrics.funnel import daily_funnel_query
from productlens.modeling import ModelContext


def model(ctx: ModelContext) -> exp.Query:
    return daily_funnel_query(ctx.funnel_steps, source="fct_events")
