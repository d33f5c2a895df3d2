"""`productlens funnel`: conversion through a sequence of events."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

import typer
from rich.markup import escape

from productlens.metrics.cli import (
    FromOpt,
    JsonOpt,
    ToOpt,
    WhereOpt,
    console,
    duration,
    emit,
    note_lookalikes,
    project_of,
    scope_of,
    stored_event_names,
    table,
    warehouse,
)


def command(
    ctx: typer.Context,
    steps: Annotated[
        str,
        typer.Option(help="Event names in order, comma-separated: product_view,add_to_cart,..."),
    ],
    window: Annotated[
        str, typer.Option(help="Conversion window from the first step: N s|m|h|d|w|mo.")
    ] = "14d",
    order: Annotated[
        str,
        typer.Option(help="ordered (others may come between), strict (next event) or unordered."),
    ] = "ordered",
    by: Annotated[
        str | None, typer.Option(help="Break down by an event column or property.")
    ] = None,
    attribution: Annotated[
        str | None,
        typer.Option(
            help="With --by, which value a user's breakdown takes: first_touch (default), "
            "last_touch, step:N."
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(help="EVENT:FROM:TO: drop attempts with EVENT between steps FROM and TO."),
    ] = None,
    per: Annotated[
        str | None, typer.Option(help="Conversion trend by period of entry: day or week.")
    ] = None,
    count_by: Annotated[str, typer.Option(help="Count users or sessions.")] = "user",
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    where: WhereOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Funnel: how many users reach each step, conversion, drop-off and time to convert."""
    from productlens.metrics.funnel import Exclusion, funnel
    from productlens.metrics.scope import MetricsInputError, parse_by, parse_duration

    choices = {
        "--order": (order, ("ordered", "strict", "unordered")),
        "--per": (per, ("day", "week", None)),
        "--count-by": (count_by, ("user", "session")),
    }
    for flag, (value, allowed) in choices.items():
        if value not in allowed:
            shown = ", ".join(a for a in allowed if a)
            raise MetricsInputError(f"{flag} {value!r}: use one of {shown}")
    if attribution is not None and by is None:
        raise MetricsInputError(
            f"--attribution {attribution!r}: needs --by (it picks the value of --by)"
        )
    by = parse_by(by)
    note_lookalikes("--by", [by])
    project = project_of(ctx)
    scope = scope_of(project, date_from, date_to, where)
    names = [s.strip() for s in steps.split(",")]
    # Parsed before the warehouse is opened: a typo is told as such, warehouse or not.
    span = parse_duration(window)
    exclusions = [Exclusion.parse(x) for x in exclude or ()]
    with warehouse(project) as engine:
        names = stored_event_names(engine, "--steps", names)
        events = stored_event_names(engine, "--exclude", [e.event for e in exclusions])
        exclusions = [replace(e, event=name) for e, name in zip(exclusions, events, strict=True)]
        result = funnel(
            engine,
            names,
            scope=scope,
            window=span,
            order=order,  # type: ignore[arg-type]
            by=by,
            attribution=attribution or "first_touch",
            exclude=exclusions,
            per=per,  # type: ignore[arg-type]
            count_by=count_by,  # type: ignore[arg-type]
        )
    unit = "users" if count_by == "user" else "sessions"
    emit(result.to_dict(), as_json, lambda data: _render(data, unit))


def _render(data: dict[str, Any], unit: str) -> None:
    console.print(_steps_table(None, data["steps"], unit))
    for value, part in data.get("breakdown", {}).items():
        console.print()
        console.print(_steps_table(f"{escape(value) or '(none)'}", part["steps"], unit))
    trend = data.get("trend", [])
    if trend:
        n = len(data["steps"])
        rows = [
            [
                p["period"] + ("" if p["complete"] else " *"),
                p["steps"][0]["count"],
                p["steps"][n - 1]["count"],
                p["steps"][n - 1]["conversion_from_start"],
            ]
            for p in trend
        ]
        console.print()
        console.print(
            table(
                "trend by period of entry", ["period", "entered", "converted", "conversion %"], rows
            )
        )
        if any(not p["complete"] for p in trend):
            console.print("* the conversion window of this period has not closed yet")


def _steps_table(title: str | None, steps: list[dict[str, Any]], unit: str) -> Any:
    rows = [
        [
            f"{k}. {escape(s['event'])}",
            s["count"],
            s["conversion_from_previous"] if k else None,
            s["conversion_from_start"],
            s["drop_off"] if k else None,
            duration(s["avg_time_s"]),
            duration(s["median_time_s"]),
        ]
        for k, s in enumerate(steps)
    ]
    columns = ["step", unit, "of previous %", "of first %", "drop-off", "mean time", "median time"]
    return table(title, columns, rows)
