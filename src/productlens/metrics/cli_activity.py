"""`productlens activity`: DAU, WAU, MAU, stickiness and active days per week and month."""

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
    note_lookalikes,
    project_of,
    scope_of,
    table,
    warehouse,
)

ByOpt = Annotated[
    str | None,
    typer.Option(
        "--by",
        help="Break down by an event column or property; a user counts in each value they "
        "had that day.",
    ),
]


def command(
    ctx: typer.Context,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    where: WhereOpt = None,
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Daily, weekly and monthly active users (trailing 7 and 30 days), stickiness
    (DAU/MAU) and how many days a week and a month users are active."""
    from productlens.metrics.activity import activity
    from productlens.metrics.scope import parse_by

    by = parse_by(by)
    note_lookalikes("--by", [by])
    project = project_of(ctx)
    scope = scope_of(project, date_from, date_to, where)
    with warehouse(project) as engine:
        result = activity(engine, scope, by)
    emit(result.to_dict(), as_json, _render)


def _render(data: dict[str, Any]) -> None:
    _render_series(None, data)
    for value, series in (data.get("breakdown") or {}).items():
        _render_series(value, series)


def _render_series(value: str | None, data: dict[str, Any]) -> None:
    suffix = "" if value is None else f" ({value or '(none)'})"
    console.print(
        table(
            f"Active users{suffix}",
            ["day", "DAU", "WAU", "MAU", "DAU/MAU %"],
            [(d["date"], d["dau"], d["wau"], d["mau"], d["stickiness"]) for d in data["days"]],
        )
    )
    for grain, size in (("weeks", 7), ("months", 31)):
        shown = 7 if grain == "weeks" else 10  # months: 1..9 days, then 10 or more
        columns = ["starting", "days", "users", *[str(k) for k in range(1, shown)], f"{shown}+"]
        rows = [
            (p["start"], p["days_in_range"], p["users"], *p["counts"][: shown - 1],
             sum(p["counts"][shown - 1 : size]))
            for p in data[grain]
        ]  # fmt: skip
        if grain == "weeks":
            columns[-1] = "7"
        console.print(table(f"Users by days active per {grain[:-1]}{suffix}", columns, rows))
