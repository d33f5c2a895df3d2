"""What the metrics commands share: the time and filter options, opening the warehouse
read-only, and printing a result as a readable table or as exact JSON.

Each metrics command lives in its own module (`metrics/cli_<name>.py`) and registers
itself on the app with `command(app)`; `productlens.cli` imports them. Only Typer and Rich
are imported here, so `--help` stays fast; the engine and SQLGlot load inside commands.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from productlens.config import Project
    from productlens.engines import Engine
    from productlens.metrics.scope import Scope

# Names and values are data: Rich would turn `:thumbs_up:` in an event name, a value or
# an error message into an emoji (markup is escaped where text is printed).
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)

FromOpt = Annotated[
    str | None,
    typer.Option(
        "--from",
        help="First day (YYYY-MM-DD) or instant (ISO 8601), inclusive; local time in "
        "[metrics] timezone unless it has an offset.",
    ),
]
ToOpt = Annotated[
    str | None,
    typer.Option("--to", help="Last day or instant, inclusive (same forms as --from)."),
]
WhereOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        help="KEY=VALUE[,VALUE...]: only events whose column or property KEY has one of "
        "the values. Repeat for several filters (all must hold).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exact JSON instead of a table.")]


def project_of(ctx: typer.Context) -> Project:
    from productlens.cli import _state

    return _state(ctx).project()


def where_keys(texts: Sequence[str] | None) -> list[str]:
    """The keys of `KEY=VALUE` filters, as `parse_where` reads them."""
    return [text.partition("=")[0].strip() for text in texts or ()]


def note_lookalikes(flag: str, keys: Iterable[str | None]) -> None:
    """Say on stderr when a filter or breakdown key is an event column in another case:
    it is read as a property of that name (keys are exact), which is rarely what is meant,
    and a filter on a property no event has matches nothing without any other sign."""
    from productlens.metrics.scope import column_lookalike

    for key in keys:
        column = column_lookalike(key) if key else None
        if column is not None:
            err_console.print(
                f"note: {flag} {escape(repr(key))} is not an event column, so it reads the "
                f"property {escape(repr(key))}; the column is {column!r}",
                highlight=False,
                soft_wrap=True,
            )


def stored_event_names(engine: Engine, flag: str, names: Sequence[str]) -> list[str]:
    """Event names as the warehouse stores event types: staging lowercases and trims them
    (an export's `Sign Up` is `sign up` in core.fct_events), so a name typed as the export
    spells it would match nothing. A name that no event has, while its folded form
    (`lower(trim())` by the warehouse's own engine, as the data was) is an event type, is
    read as that form, with a note on stderr. A name the events hold as typed (a project
    whose own staging model keeps case) stays as it is."""
    from sqlglot import exp

    from productlens.metrics.scope import EVENTS_TABLE

    if not names:
        return []
    folded = exp.select(
        *[
            exp.Lower(this=exp.Trim(this=exp.Literal.string(name))).as_(f"n{i}")
            for i, name in enumerate(names)
        ]
    )
    stored = [str(value) for value in engine.fetch_all(folded)[0]]
    changed = {name: form for name, form in zip(names, stored, strict=True) if form != name}
    if not changed:
        return list(names)
    # Only for names that differ (rare): which of the two spellings the events hold.
    wanted = [exp.Literal.string(n) for n in {*changed, *changed.values()}]
    present = {
        str(row[0])
        for row in engine.fetch_all(
            exp.select("event_type")
            .distinct()
            .from_(exp.to_table(EVENTS_TABLE))
            .where(exp.column("event_type").isin(*wanted))
        )
    }
    out = []
    for name in names:
        form = changed.get(name)
        if form is not None and name not in present and form in present:
            err_console.print(
                f"note: {flag} {escape(repr(name))} is read as {escape(repr(form))}: event "
                "types are stored lowercased and trimmed",
                highlight=False,
                soft_wrap=True,
            )
            out.append(form)
        else:
            out.append(name)
    return out


def scope_of(
    project: Project,
    date_from: str | None,
    date_to: str | None,
    where: Sequence[str] | None,
    flags: tuple[str, str] = ("--from", "--to"),
) -> Scope:
    """The scope of a metrics command: the project's zone and week start, the range and
    filters from the command line (`flags`: the range options' names, for errors)."""
    from productlens.metrics.scope import Scope

    settings = project.config.metrics
    note_lookalikes("--where", where_keys(where))
    return Scope.parse(
        timezone=settings.timezone,
        week_start=settings.week_start,
        date_from=date_from,
        date_to=date_to,
        where=where or (),
        flags=flags,
    )


@contextmanager
def warehouse(project: Project) -> Iterator[Engine]:
    """The project's warehouse, opened read-only (metrics never write)."""
    from productlens.app import open_engine, require_warehouse

    require_warehouse(project)
    engine = open_engine(project, read_only=True)
    try:
        yield engine
    finally:
        engine.close()


def emit(data: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], None]) -> None:
    """Print `data` as JSON (exact numbers) or through `render` as tables."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        render(data)


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A Rich table; numbers right-aligned and formatted (ints with separators, floats to
    four significant places, shares as percentages when the column name ends in %)."""
    out = Table(title=title, show_edge=False, title_justify="left")
    numeric = [bool(rows) and all(_is_number(r[i]) for r in rows) for i in range(len(columns))]
    for i, (name, is_number) in enumerate(zip(columns, numeric, strict=True)):
        # The first column names the row: never wrapped.
        out.add_column(name, justify="right" if is_number else "left", no_wrap=i == 0)
    for row in rows:
        out.add_row(*[fmt(v, pct=c.endswith("%")) for c, v in zip(columns, row, strict=True)])
    return out


def fmt(value: Any, *, pct: bool = False) -> str:
    """A value as a table cell: ints with separators, shares as percentages, floats to
    four significant digits (whole units from 1,000 up)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if pct:
            return f"{value:.1%}"
        # Four significant digits, but never in e-notation for amounts people read.
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.4g}"
    # Text is data (an event named "[bold]" stays as it is), never Rich markup.
    return escape(str(value))


def duration(seconds: float | None) -> str | None:
    """Seconds in the largest unit that keeps the number readable: 42 s, 3.5 min, 2.1 h."""
    if seconds is None:
        return None
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


# Command name -> module defining `command`, in the order `--help` lists them.
COMMANDS: dict[str, str] = {
    "funnel": "productlens.metrics.cli_funnel",
    "retention": "productlens.metrics.cli_retention",
    "revenue": "productlens.metrics.cli_revenue",
    "activity": "productlens.metrics.cli_activity",
    "lifecycle": "productlens.metrics.cli_lifecycle",
    "paths": "productlens.metrics.cli_paths",
}


def register(app: typer.Typer) -> None:
    """Add every metrics command to the app."""
    import importlib

    for name, module in COMMANDS.items():
        app.command(name=name)(importlib.import_module(module).command)
