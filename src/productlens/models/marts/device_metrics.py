"""device_metrics: the funnel by device over the whole period: user-days reaching each
step (ordered, exact on ties) and conversion from the first and the previous step.
The steps come from configuration; see `productlens.metrics.funnel`."""

from __future__ import annotations

from sqlglot import exp

from productlens.metrics.funnel import funnel_totals_query
from productlens.modeling import ModelContext


def model(ctx: ModelContext) -> exp.Query:
    return funnel_totals_query(ctx.funnel_steps, by="device", source="fct_events")
