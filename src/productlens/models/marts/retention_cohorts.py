"""retention_cohorts: the `productlens retention` query over every cohort, for the events
`[metrics]` names (`retention_start`, default signup; `retention_return`, default any
event; `retention_mode`), once per grain in `retention_grains` (default week and month),
in the `[metrics]` zone and week start. One implementation: see
`productlens.metrics.retention.cohort_query`.

One row per grain, cohort and period number with a return; period 0 holds the cohort's
size (column 0 of the command's table). Periods nobody returned in have no row.
"""

from __future__ import annotations

from typing import cast

from sqlglot import exp

from productlens.metrics.retention import Mode, RetentionSpec, cohort_query
from productlens.metrics.scope import Grain
from productlens.modeling import ModelContext


def model(ctx: ModelContext) -> exp.Query:
    scope = ctx.scope()
    parts = []
    for grain in ctx.retention_grains:
        spec = RetentionSpec(
            start=ctx.retention_start,
            return_event=ctx.retention_return,
            period=cast(Grain, grain),
            mode=cast(Mode, ctx.retention_mode),
        )
        cohorts = cohort_query(scope, spec).subquery(f"{grain}_cohorts")
        parts.append(
            exp.select(
                exp.Literal.string(grain).as_("cohort_grain"),
                "cohort_start_date",
                "period_number",
                "cohort_size",
                exp.column("n_users").as_("n_active_users"),
                exp.Div(
                    this=exp.cast(exp.column("n_users"), "double"),
                    expression=exp.column("cohort_size"),
                ).as_("retention_rate"),
            ).from_(cohorts)
        )
    return parts[0] if len(parts) == 1 else exp.union(*parts, distinct=False)
