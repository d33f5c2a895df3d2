"""`productlens retention`: cohort retention as a table of counts and % of cohort size."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.table import Table

from productlens.metrics.cli import (
    FromOpt,
    JsonOpt,
    ToOpt,
    WhereOpt,
    console,
    emit,
    fmt,
    note_lookalikes,
    project_of,
    scope_of,
    stored_event_names,
    warehouse,
    where_keys,
)

if TYPE_CHECKING:
    from productlens.metrics.retention import Mode
    from productlens.metrics.scope import Grain


def command(
    ctx: typer.Context,
    start: Annotated[
        str,
        typer.Option(
            "--start",
            help="The event that puts a user in a cohort, or 'signup' for the signup time "
            "(users the users table does not know: their first event). With 'signup', "
            "--where device=/country= also picks users by the users table's values at "
            "signup (users without a signup time are then left out); other --where keys "
            "filter returns only.",
        ),
    ],
    return_event: Annotated[
        str | None,
        typer.Option("--return", help="The event that counts as a return; omit for any event."),
    ] = None,
    period: Annotated[
        str, typer.Option("--period", help="Cohort and column period: day, week or month.")
    ] = "week",
    periods: Annotated[
        # No Typer `min`: its error is a usage box; `retention` refuses with one line.
        int,
        typer.Option("--periods", help="N (1 to 32): cohorts shown, and columns 0..N-1."),
    ] = 8,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="recurring: a cohort for every period with a start event; first_time: the "
            "period of the first start event ever.",
        ),
    ] = "recurring",
    cumulative: Annotated[
        bool,
        typer.Option("--cumulative", help="Count a user in every period up to their last return."),
    ] = False,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    start_where: Annotated[
        list[str] | None,
        typer.Option("--start-where", help="KEY=VALUE[,VALUE...] on start events only."),
    ] = None,
    return_where: Annotated[
        list[str] | None,
        typer.Option("--return-where", help="KEY=VALUE[,VALUE...] on return events only."),
    ] = None,
    where: WhereOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cohort retention: column 0 is the cohort's size, column k the members who returned
    k periods later (- for periods not yet observed)."""
    from productlens.metrics.retention import SIGNUP, retention
    from productlens.metrics.scope import parse_where

    project = project_of(ctx)
    for flag, texts in (("--start-where", start_where), ("--return-where", return_where)):
        note_lookalikes(flag, where_keys(texts))
    scope = scope_of(project, date_from, date_to, where)
    with warehouse(project) as engine:
        if start != SIGNUP:  # the word itself, not an event name
            (start,) = stored_event_names(engine, "--start", [start])
        if return_event is not None:
            (return_event,) = stored_event_names(engine, "--return", [return_event])
        result = retention(
            engine,
            start=start,
            return_event=return_event,
            scope=scope,
            period=cast("Grain", period),  # RetentionSpec refuses other values
            periods=periods,
            mode=cast("Mode", mode),
            cumulative=cumulative,
            start_where=parse_where(start_where or (), flag="--start-where"),
            return_where=parse_where(return_where or (), flag="--return-where"),
        )
    title = f"{period} cohorts: {start} -> {return_event or 'any event'}"
    emit(result.to_dict(), as_json, lambda data: _render(title, data))


def _render(title: str, data: dict[str, Any]) -> None:
    cohorts = data["cohorts"]
    if not cohorts:
        console.print("No events in scope.")
        return
    out = Table(title=title, show_edge=False, title_justify="left")
    out.add_column("cohort")
    out.add_column("size", justify="right")
    for k in range(len(cohorts[0]["counts"])):
        out.add_column(str(k), justify="right")
    for cohort in cohorts:
        cells = [_cell(n, cohort["size"]) for n in cohort["counts"]]
        out.add_row(cohort["start"], fmt(cohort["size"]), *cells)
    console.print(out)


def _cell(count: int | None, size: int) -> str:
    """`count (share of size)`; `-` for a period not yet observed."""
    if count is None:
        return "-"
    if size == 0:
        return fmt(count)
    return f"{fmt(count)} ({count / size:.0%})"
