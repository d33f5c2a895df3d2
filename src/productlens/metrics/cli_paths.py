"""`productlens paths`: the most common sequences of events after or before an event."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from productlens.metrics.cli import (
    JsonOpt,
    WhereOpt,
    console,
    emit,
    project_of,
    scope_of,
    stored_event_names,
    table,
    warehouse,
)

# In this command --from / --to name the event (as issue 11 spells it); the date range
# moves to --since / --until, which take the same forms as --from / --to elsewhere.
StartOpt = Annotated[
    str | None, typer.Option("--from", help="EVENT: paths after each user's first EVENT.")
]
EndOpt = Annotated[
    str | None, typer.Option("--to", help="EVENT: paths leading into each user's first EVENT.")
]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="First day (YYYY-MM-DD) or instant (ISO 8601), inclusive; local time in "
        "[metrics] timezone unless it has an offset.",
    ),
]
UntilOpt = Annotated[
    str | None,
    typer.Option("--until", help="Last day or instant, inclusive (same forms as --since)."),
]


def command(
    ctx: typer.Context,
    start: StartOpt = None,
    end: EndOpt = None,
    steps: Annotated[int, typer.Option("--steps", help="Events after (before) it: 1 to 20.")] = 3,
    top: Annotated[int, typer.Option("--top", help="How many paths to show.")] = 10,
    date_from: SinceOpt = None,
    date_to: UntilOpt = None,
    where: WhereOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The most common paths after (--from EVENT) or into (--to EVENT) an event: each
    user's first occurrence and the next (previous) --steps events."""
    from productlens.metrics.paths import paths

    project = project_of(ctx)
    scope = scope_of(project, date_from, date_to, where, flags=("--since", "--until"))
    with warehouse(project) as engine:
        if start is not None:
            (start,) = stored_event_names(engine, "--from", [start])
        if end is not None:
            (end,) = stored_event_names(engine, "--to", [end])
        result = paths(engine, start=start, end=end, scope=scope, steps=steps, top=top)
    emit(result.to_dict(), as_json, _render)


def _render(data: dict[str, Any]) -> None:
    anchor = f"after {data['from']}" if "from" in data else f"into {data['to']}"
    console.print(
        table(
            f"Paths {anchor} ({data['users']:,} users)",
            ["path", "users", "share %"],
            [(" > ".join(p["path"]), p["count"], p["share"]) for p in data["paths"]],
        )
    )
