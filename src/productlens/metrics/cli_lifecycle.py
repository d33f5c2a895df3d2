"""`productlens lifecycle`: new, returning, resurrecting and dormant users per period."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from productlens.metrics.cli import (
    FromOpt,
    JsonOpt,
    ToOpt,
    WhereOpt,
    console,
    emit,
    project_of,
    scope_of,
    table,
    warehouse,
)

PeriodOpt = Annotated[
    str, typer.Option("--period", help="day, week or month (calendar, in [metrics] timezone).")
]


def command(
    ctx: typer.Context,
    period: PeriodOpt = "week",
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    where: WhereOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """New (first-ever active period), returning, resurrecting and dormant users."""
    from productlens.metrics.lifecycle import lifecycle
    from productlens.metrics.scope import GRAINS, MetricsInputError

    grain = next((g for g in GRAINS if g == period), None)
    if grain is None:
        raise MetricsInputError(f"--period {period!r}: expected day, week or month")
    project = project_of(ctx)
    scope = scope_of(project, date_from, date_to, where)
    with warehouse(project) as engine:
        result = lifecycle(engine, scope, grain)
    emit(result.to_dict(), as_json, _render)


def _render(data: dict[str, Any]) -> None:
    columns = ["starting", "new", "returning", "resurrecting", "dormant"]
    rows = [tuple(p[c if c != "starting" else "start"] for c in columns) for p in data["periods"]]
    console.print(table(f"Lifecycle per {data['period']}", columns, rows))
