"""The `productlens` command line: parses options, calls the library, prints.

Errors are one line on stderr (`error [stage]: reason`) and a non-zero exit; `--debug`
shows the traceback as well.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from productlens import __version__
from productlens.config import EngineName, Project, load_project
from productlens.errors import ProductLensError

if TYPE_CHECKING:
    from productlens.pipeline import Runner

# The engine, SQLGlot, Arrow and matplotlib are imported inside the commands that use
# them, so that `--help` and `--version` answer at once.

app = typer.Typer(
    name="productlens",
    help="Product analytics and experimentation on an embedded warehouse.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)

# Names and values are data: Rich would turn `:thumbs_up:` in an event name, a value or
# an error message into an emoji (markup is escaped where text is printed).
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)
INTERRUPTED = 130  # the shell's exit code for a process stopped by Ctrl-C


@dataclass
class State:
    project_dir: Path | None = None
    warehouse: Path | None = None
    engine: EngineName | None = None
    debug: bool = False

    def project(self) -> Project:
        return load_project(self.project_dir, self.warehouse, self.engine)


def _state(ctx: typer.Context) -> State:
    state = ctx.find_root().obj
    return state if isinstance(state, State) else State()


def _version(value: bool) -> None:
    if value:
        console.print(f"productlens {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    project: Annotated[
        Path | None,
        typer.Option(
            "--project",
            "-p",
            help="Project folder (holds productlens.toml). Default: the current folder.",
        ),
    ] = None,
    warehouse: Annotated[
        Path | None,
        typer.Option(
            help="The DuckDB warehouse file. Default: warehouse.duckdb in the project folder."
        ),
    ] = None,
    engine: Annotated[
        EngineName | None,
        typer.Option(
            help="The warehouse engine: duckdb, postgres or spark. Default: [warehouse] engine "
            "in productlens.toml, else duckdb."
        ),
    ] = None,
    debug: Annotated[bool, typer.Option(help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """productlens: simulate or ingest events, build a layered warehouse, check it, report it."""
    ctx.obj = State(project_dir=project, warehouse=warehouse, engine=engine, debug=debug)


Scenario = Literal["ecommerce", "saas"]
Format = Literal["parquet", "csv", "jsonl"]


@app.command()
def demo(
    ctx: typer.Context,
    scenario: Annotated[Scenario | None, typer.Option(help="Which world to simulate.")] = None,
    users: Annotated[int | None, typer.Option(min=1, help="Users to simulate.")] = None,
    days: Annotated[int | None, typer.Option(min=1, help="Days to simulate.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed; same seed, same world.")] = None,
) -> None:
    """Run everything on the embedded engine: simulate -> ingest -> build -> check -> report.

    The demo starts from a fresh warehouse each time (it refuses to touch a warehouse it
    did not make) and ends with a summary and an HTML report.
    """
    from productlens.pipeline import print_summary, run_demo, world_params

    project = _state(ctx).project()
    params = world_params(project, scenario=scenario, users=users, days=days, seed=seed)
    summary = run_demo(project, params, console)
    print_summary(console, summary, title="productlens demo")


@app.command(name="generate")
def generate_cmd(
    ctx: typer.Context,
    scenario: Annotated[Scenario | None, typer.Option(help="Which world to simulate.")] = None,
    users: Annotated[int | None, typer.Option(min=1, help="Users to simulate.")] = None,
    days: Annotated[int | None, typer.Option(min=1, help="Days to simulate.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed; same seed, same files.")] = None,
    fmt: Annotated[Format | None, typer.Option("--format", help="File format to write.")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder. Default: [simulate] out, 'data'.")
    ] = None,
    dirty: Annotated[
        bool | None,
        typer.Option(
            "--dirty/--clean",
            help="Plant the faults of real exports (duplicates, null keys, bad and future "
            "timestamps, negative amounts, unknown products, late events), counted in "
            "truth.json.",
        ),
    ] = None,
    srm: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.5,
            help="Plant a sample-ratio mismatch: lose this share of the first experiment's "
            "treatment exposures (e.g. 0.05).",
        ),
    ] = 0.0,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Processes to generate with (default: one per core)."),
    ] = None,
) -> None:
    """Simulate a synthetic world and write every raw table plus truth.json.

    Events are Parquet (or CSV/JSON Lines) partitioned by date under OUT/events; the
    same seed and parameters give byte-identical files whatever the number of workers.
    """
    from rich.progress import Progress

    from productlens.pipeline import world_params
    from productlens.simulate import generate

    project = _state(ctx).project()
    params = world_params(
        project, srm=srm, scenario=scenario, users=users, days=days, seed=seed, dirty=dirty
    )
    target = out or project.data_dir
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("generate", total=params.n_blocks + params.days)
        result = generate(
            params,
            target,
            fmt=fmt or project.config.simulate.format,
            workers=workers or project.config.simulate.workers,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    table = Table(
        show_edge=False, title=f"{params.scenario} world in {target}", title_justify="left"
    )
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in result.rows.items():
        table.add_row(name, f"{n:,}")
    console.print(table)
    console.print(f"truth: {target / 'truth.json'}")


@app.command()
def ingest(
    ctx: typer.Context,
    paths: Annotated[
        list[str] | None,
        typer.Argument(help="Files, folders or globs to load, local or s3://bucket/key."),
    ] = None,
    table: Annotated[
        str | None,
        typer.Option(help="Target raw table (default: inferred from the folder or file name)."),
    ] = None,
    maps: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="Map a source column onto a contract column, SOURCE=TARGET (repeatable); "
            "adds to \\[ingest.tables.TABLE].columns in productlens.toml.",
        ),
    ] = None,
    replay: Annotated[
        bool,
        typer.Option(
            "--replay",
            help="Re-try the quarantined rows with the current mapping and settings; rows "
            "that now pass are loaded and leave the quarantine; rows that now fail for "
            "other reasons get those reasons.",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Load the named files even if loaded before, replacing the rows of their "
            "earlier loads (same content or same path): those leave the raw table, their "
            "quarantined rows are marked superseded, and ops.superseded_files records it.",
        ),
    ] = False,
    preset: Annotated[
        str | None,
        typer.Option(
            help="Map another tool's export with a shipped preset (segment, ga4, amplitude, "
            "mixpanel, posthog; see `productlens presets`); \\[ingest.tables.TABLE] keys in "
            "productlens.toml override it.",
        ),
    ] = None,
) -> None:
    """Load Parquet, CSV or JSON Lines files into the raw layer, validated in SQL.

    Rows that break the contract go to the quarantine with their reasons; a file loaded
    before is skipped (unless --force). The command is all or nothing: every file of
    every table commits together, or nothing does.
    """
    from productlens.errors import IngestError
    from productlens.ingest import parse_mappings

    mapping = parse_mappings(maps or [])
    if not paths and not replay:
        raise IngestError("name files or folders to load, or pass --replay")
    if force and not paths:
        raise IngestError("--force loads the named files again: name them")
    with _runner(ctx) as runner:
        if paths:
            runner.ingest(paths, table=table, mapping=mapping, preset=preset, force=force)
        if replay:
            runner.replay(table=table, mapping=mapping, preset=preset)


@app.command()
def presets(
    name: Annotated[
        str | None, typer.Argument(help="A preset to print in full, to read or copy.")
    ] = None,
) -> None:
    """List the shipped mappings for other tools' exports, or print one.

    A preset is a fragment of productlens.toml: copy it into yours to change it, or keep
    `preset = NAME` in the project file's ingest section and override single keys in its
    ingest.tables.TABLE section.
    """
    from productlens.ingest import presets as shipped

    if name is not None:
        print(shipped.text(name), end="")
        return
    table = Table(show_edge=False)
    table.add_column("preset")
    table.add_column("loads")
    for preset in shipped.names():
        table.add_row(preset, shipped.summary(preset))
    console.print(table)


@dataclass(frozen=True)
class _ListingKind:
    """How `quarantine` shows one kind of listed rows."""

    title: str
    code: str  # the JSON name of one code
    detail: str  # the JSON and column name of the last column
    empty: str


_LISTINGS = {
    False: _ListingKind("quarantined rows", "reason", "raw", "the quarantine is empty"),
    True: _ListingKind(
        "rows loaded with warnings", "warning", "batch", "no row was loaded with a warning"
    ),
}


@app.command()
def quarantine(
    ctx: typer.Context,
    reason: Annotated[
        str | None,
        typer.Option(help="Only rows held for this reason (with --warnings: this warning)."),
    ] = None,
    table: Annotated[str | None, typer.Option(help="Only rows for this raw table.")] = None,
    limit: Annotated[int, typer.Option(min=0, help="Sample rows to show.")] = 10,
    warnings: Annotated[
        bool,
        typer.Option(
            "--warnings",
            help="List the rows loaded with warnings (say, an unknown user in warn mode) "
            "instead: file, row, warnings and batch.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show what ingestion held back and why: counts by table and reason, and sample rows."""
    from productlens.app import open_engine, open_lake, require_warehouse
    from productlens.ingest import held
    from productlens.ingest.contracts import REASONS

    kind = _LISTINGS[warnings]
    project = _state(ctx).project()
    require_warehouse(project)
    engine = open_engine(project, read_only=True)
    try:
        lake = open_lake(project, engine, read_only=True)
        try:
            listing = (held.warned if warnings else held.quarantined)(
                lake, reason=reason, table=table, limit=limit
            )
        finally:
            lake.close()
    finally:
        engine.close()
    if as_json:
        detail = (lambda v: v) if warnings else json.loads
        console.print_json(
            json.dumps(
                {
                    "counts": [{"table": t, kind.code: c, "rows": n} for t, c, n in listing.counts],
                    "sample": [
                        {
                            "table": t,
                            "file": f,
                            "row": n,
                            kind.code + "s": cs,
                            kind.detail: detail(d),
                        }
                        for t, f, n, cs, d in listing.sample
                    ],
                }
            )
        )
        return
    if not listing.counts:
        console.print(kind.empty)
        return
    summary = Table(title=kind.title, title_justify="left", show_edge=False)
    for column in ("table", kind.code, "rows", "meaning"):
        summary.add_column(column, justify="right" if column == "rows" else "left")
    for t, c, n in listing.counts:
        summary.add_row(t, c, f"{n:,}", REASONS.get(c, ""))
    console.print(summary)
    rows = Table(title="sample", title_justify="left", show_edge=False)
    for column in ("table", "file", "row", kind.code + "s", "values" if not warnings else "batch"):
        rows.add_column(column, overflow="fold")
    for t, f, n, cs, d in listing.sample:
        rows.add_row(t, Path(f).name, str(n), ", ".join(cs), d if len(d) < 160 else d[:157] + "...")
    console.print()
    console.print(rows)


@app.command()
def build(
    ctx: typer.Context,
    select: Annotated[
        list[str] | None,
        typer.Option(
            help="Models to build: NAME, NAME+ (and downstream), +NAME (and upstream); "
            "each with the int_ models it reads."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Rebuild only rows from this date (YYYY-MM-DD) minus each model's lookback "
            "in date-partitioned models; the others (and one reading a date-partitioned model "
            "built by another run since) rebuild whole. Same tables as a full build."
        ),
    ] = None,
) -> None:
    """Build the warehouse models (staging -> core -> marts) in dependency order."""
    from datetime import date

    from productlens.errors import ConfigError

    try:
        since_date = date.fromisoformat(since) if since is not None else None
    except ValueError:
        raise ConfigError(f"--since must be a date like 2026-03-01, got {since!r}") from None
    with _runner(ctx) as runner:
        runner.build(select, since=since_date)


def _day(option: str, value: str | None) -> date | None:
    from productlens.errors import ConfigError

    try:
        return date.fromisoformat(value) if value is not None else None
    except ValueError:
        raise ConfigError(f"{option} must be a date like 2026-03-01, got {value!r}") from None


@app.command(name="run")
def run_cmd(
    ctx: typer.Context,
    day: Annotated[
        str | None, typer.Option("--date", help="The day this run is for (YYYY-MM-DD).")
    ] = None,
    date_from: Annotated[
        str | None, typer.Option("--from", help="First day of a backfill (YYYY-MM-DD).")
    ] = None,
    date_to: Annotated[
        str | None, typer.Option("--to", help="Last day of a backfill (YYYY-MM-DD).")
    ] = None,
    report: Annotated[
        bool | None,
        typer.Option("--report/--no-report", help="Refresh the report. Default: [run] report."),
    ] = None,
) -> None:
    """Ingest the landing folder's new files, rebuild the dates they touch, check, publish.

    Error-level data-test failures stop the run before the marts are published (the
    previous marts stay live) and exit non-zero. A landing file that cannot be read is
    rejected and left in place (ops.rejected_files), the others load, and the run exits 3;
    the same bytes are not read again until they or the ingest settings change.
    `productlens runs` lists every run.
    """
    from productlens import daily
    from productlens.app import landing_root, open_engine
    from productlens.errors import ConfigError
    from productlens.pipeline import print_summary
    from productlens.retry import RetryPolicy, retrying

    if day is not None and (date_from is not None or date_to is not None):
        raise ConfigError("give --date, or --from and --to, not both")
    first = _day("--date", day) or _day("--from", date_from)
    last = _day("--date", day) or _day("--to", date_to)
    project = _state(ctx).project()
    settings = project.config.run
    request = daily.RunRequest(first, last, report=settings.report if report is None else report)
    landing = landing_root(project)
    policy = RetryPolicy(settings.retries, settings.backoff_seconds)

    def told(n: int, exc: BaseException, delay: float) -> None:
        err_console.print(f"[yellow]retry[/] {n}: {escape(str(exc))} (again in {delay:g}s)")

    with daily.run_lock(project.run_lock_path):  # before the engine: refuse, not wait
        engine = retrying(policy, lambda: open_engine(project), on_retry=told)
        result = None
        try:
            result = daily.run_daily(
                project, engine, console, landing, request, reopen=lambda: open_engine(project)
            )
        finally:
            engine.close()
            again = result.engine if result is not None else None
            if again is not None and again is not engine:
                again.close()  # the engine a retry opened again
    print_summary(console, result.summary, title=f"productlens run ({result.record.status})")
    if result.error is None and not result.record.files_rejected:
        return
    # A failed run, or one that left landing files it could not read (exit 3): the hook
    # is told either way.
    if settings.on_failure:
        problem = daily.run_hook(
            settings.on_failure, result.payload, project.root, settings.hook_timeout_seconds
        )
        if problem:
            err_console.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False)
    raise daily.failure_message(result)


@app.command()
def runs(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="Show the latest N runs.")] = 20,
) -> None:
    """List the runs of `productlens run`: dates, status, stage timings, rows, rejected
    landing files and tests."""
    from productlens import daily
    from productlens.app import open_engine, warehouse_exists
    from productlens.errors import EngineError, RunInProgress

    project = _state(ctx).project()
    records: list[daily.RunRecord] = []
    if warehouse_exists(project):
        live = daily.run_in_progress(project.run_lock_path)
        try:
            engine = open_engine(project, read_only=True)
        except EngineError:
            if not live:
                raise
            # A DuckDB file has one writer and no reader beside it: say why, not "in use".
            raise RunInProgress(
                "a productlens run is in progress and holds the warehouse; "
                "its history can be listed when it ends"
            ) from None
        try:
            records = daily.history(engine, live=live)[:limit]
        finally:
            engine.close()
    if as_json:
        console.print_json(json.dumps([r.to_json() for r in records]))
        return
    if not records:
        console.print("no runs yet: productlens run ingests the landing folder")
        return
    listing = Table(show_edge=False, pad_edge=False)
    for column in (
        *("run", "status", "dates", "seconds"),
        *("rows in", "loaded", "held", "rejected", "tests"),
    ):
        left = column in ("run", "status", "dates")
        listing.add_column(column, justify="left" if left else "right")
    for r in records:
        dates = str(r.date_from or "-")
        if r.date_to != r.date_from:
            dates += f"..{r.date_to or '-'}"
        colour = {"success": "green", "failed": "red"}.get(r.status, "yellow")
        listing.add_row(
            r.run_id,
            f"[{colour}]{r.status}[/]",
            dates,
            f"{sum(r.stages.values()):.1f}",
            f"{r.rows_in:,}",
            f"{r.rows_loaded:,}",
            f"{r.rows_quarantined:,}",
            f"{r.files_rejected:,}",
            f"{r.tests_passed}/{r.tests_warned}/{r.tests_failed}",
        )
    console.print(listing)
    console.print(
        "held: rows quarantined; rejected: landing files that could not be read; "
        "tests: passed/warned/failed",
        highlight=False,
    )
    failed = [r for r in records if r.failed_tests]
    for r in failed[:3]:
        console.print(f"{r.run_id}: failed {', '.join(r.failed_tests)}", highlight=False)
    for r in [r for r in records if r.rejected_files][:3]:
        for rejected in r.rejected_files:
            line = f"{r.run_id}: rejected {escape(rejected['reason'])}"
            console.print(line, highlight=False, soft_wrap=True)  # a path is not cut


@app.command()
def check(
    ctx: typer.Context,
    select: Annotated[
        list[str] | None, typer.Option(help="Only the tests of these models.")
    ] = None,
) -> None:
    """Run the data tests declared beside the models; error-level failures fail the run."""
    from productlens.app import require_warehouse

    require_warehouse(_state(ctx).project())
    with _runner(ctx) as runner:
        runner.check(select)


@app.command()
def report(
    ctx: typer.Context,
    out: Annotated[
        Path | None, typer.Option(help="Folder for report.html and the PNG charts.")
    ] = None,
) -> None:
    """Write the self-contained HTML report and a PNG per chart."""
    from productlens.app import require_warehouse

    require_warehouse(_state(ctx).project())
    with _runner(ctx) as runner:
        runner.report(out)


@app.command()
def dashboard(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="Address to listen on (loopback unless told otherwise).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8501,
) -> None:
    """Start the Streamlit dashboard on the warehouse, read-only: http://HOST:PORT.

    Pages: overview, funnel, retention, engagement, revenue and customers, products,
    marketing, experiments, data health; filters by date, device and country.
    Needs productlens[dashboard]. Ctrl-C stops it.
    """
    import os

    from productlens.dashboard import (
        check_address,
        exposure_note,
        require_extra,
        streamlit_argv,
    )

    require_extra()
    check_address(host, port)
    note = exposure_note(host, port)
    if note:
        err_console.print(f"[yellow]warning:[/] {escape(note)}")
    project = _state(ctx).project()
    argv = streamlit_argv(sys.executable, project, host, port)
    console.print(f"productlens dashboard on http://{host}:{port} (Ctrl-C stops it)")
    sys.stdout.flush()
    # Streamlit takes over this process: stopping it stops the server, nothing is left.
    os.execv(sys.executable, argv)


@app.command()
def models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the models: layer, grain, upstream tables, rows and last build time."""
    from productlens import modeling, ops
    from productlens.app import open_engine, warehouse_exists

    project = _state(ctx).project()
    graph = modeling.discover(project.config, project.model_dirs)
    built: dict[str, tuple[int | None, object]] = {}
    if warehouse_exists(project):
        engine = open_engine(project, read_only=True)
        try:
            if engine.table_kind(*ops.RUN_LOG):
                rows = engine.fetch_all(ops.last_builds())
                built = {r[0]: (r[1], r[2]) for r in rows}
        finally:
            engine.close()
    items = [
        {
            "name": m.name,
            "layer": m.layer,
            "grain": m.grain,
            "upstreams": list(m.upstreams),
            "rows": built.get(m.table, (None, None))[0],
            "last_built": str(built[m.table][1]) if m.table in built else None,
        }
        for m in graph
    ]
    if as_json:
        console.print_json(json.dumps(items))
        return
    table = Table(show_edge=False)
    for column in ("model", "grain", "upstreams", "rows", "last built"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for item in items:
        table.add_row(
            f"{item['layer']}.{item['name']}",
            str(item["grain"]),
            ", ".join(item["upstreams"]),  # type: ignore[arg-type]
            f"{item['rows']:,}" if item["rows"] is not None else "-",
            str(item["last_built"] or "-"),
        )
    console.print(table)


export_app = typer.Typer(
    name="export",
    help="Write the project for another tool (dbt).",
    no_args_is_help=True,
)
app.add_typer(export_app)

DbtTarget = Literal["duckdb", "postgres"]


@export_app.command(name="dbt")
def export_dbt_cmd(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="The folder to write the dbt project into.")],
    target: Annotated[
        DbtTarget, typer.Option(help="The dbt adapter the SQL is written for.")
    ] = "duckdb",
    force: Annotated[
        bool, typer.Option(help="Write into the folder even if it is not empty.")
    ] = False,
) -> None:
    """Export the models as a dbt project: refs and sources, schema and singular tests,
    incremental models, SQL for the target. `profiles.yml` reads the connection from
    environment variables."""
    from productlens import modeling
    from productlens.integrations.dbt import check_folder, export_dbt
    from productlens.lineage import graph_schema

    project = _state(ctx).project()
    # Before the models are read: it fails at once.
    check_folder(folder, force=force, keep=[project.root / "models", *project.model_dirs])
    graph = modeling.discover(project.config, project.model_dirs)
    result = export_dbt(graph, folder, target=target, schema=graph_schema(graph), force=force)
    console.print(
        f"wrote a dbt project for {target} to {escape(str(folder))}: {len(result.models)} models, "
        f"{len(result.sources)} sources, {result.generic_tests} generic and "
        f"{len(result.singular_tests)} singular tests"
    )
    for note in result.notes:
        console.print(f"note: {escape(note)}")


@app.command(name="lineage")
def lineage_cmd(
    ctx: typer.Context,
    target: Annotated[
        str, typer.Argument(metavar="MODEL[.COLUMN]", help="A model, or one of its columns.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Show the tables a model is built from and, for a column, the columns it is computed
    from, model by model down to the raw tables."""
    from productlens import modeling
    from productlens.lineage import lineage

    project = _state(ctx).project()
    graph = modeling.discover(project.config, project.model_dirs)
    result = lineage(graph, target)
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
        return
    console.print(f"[bold]{escape(result.model)}[/] reads {escape(', '.join(result.parents))}")
    console.print("upstream tables: " + escape(", ".join(result.tables)))
    if result.column is None:
        return
    console.print()
    for step in result.steps:
        sources = ", ".join(step.upstream) or "(no column: a constant or a count)"
        console.print(f"{escape(step.column)} <- {escape(sources)}")
    console.print("raw columns: " + escape(", ".join(result.sources) or "none"))


def _register_metrics() -> None:
    from productlens.metrics.cli import register

    register(app)


_register_metrics()


def _register_stats() -> None:
    from productlens.experiments.cli_stats import command

    app.command(name="stats")(command)


_register_stats()


def _register_experiment() -> None:
    from productlens.experiments.cli_experiment import app as experiment_app

    app.add_typer(experiment_app)


_register_experiment()


def _register_clv() -> None:
    from productlens.cli_clv import command

    app.command(name="clv")(command)


_register_clv()


class _RunnerContext:
    """Opens the engine, yields a Runner with progress, then closes and summarises."""

    def __init__(self, ctx: typer.Context) -> None:
        self.project = _state(ctx).project()
        # The summary names the command that ran (`productlens check`), not `run`.
        self.title = f"productlens {ctx.info_name}"

    def __enter__(self) -> Runner:
        from productlens.app import open_engine
        from productlens.pipeline import Runner

        self.engine = open_engine(self.project)
        self.runner = Runner(self.project, self.engine, console)
        self._progress = self.runner.progress()
        self._progress.__enter__()
        return self.runner

    def __exit__(self, *exc: object) -> None:
        try:
            self._progress.__exit__(*exc)  # type: ignore[arg-type]
            summary = self.runner.finish()
        finally:
            self.engine.close()
        if exc[0] is None:
            from productlens.pipeline import print_summary

            print_summary(console, summary, title=self.title)


def _runner(ctx: typer.Context) -> _RunnerContext:
    return _RunnerContext(ctx)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # Without standalone mode Typer returns an exit code for `typer.Exit` and for
        # Ctrl-C (130) instead of calling sys.exit, and lets other errors through.
        result = app(args=argv, standalone_mode=False)
    except ProductLensError as exc:
        if debug:
            err_console.print_exception()
        message = f"[red]error[/] {escape(f'[{exc.stage}]')}: {escape(str(exc))}"
        err_console.print(message, highlight=False, soft_wrap=True)  # one line, unwrapped
        return exc.exit_code
    except typer.TyperException as exc:  # usage errors: bad options or arguments
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err_console.print(f"error: {escape(exc.format_message())}", highlight=False)
        return int(exc.exit_code)
    except typer.Abort:
        return 1
    code = result if isinstance(result, int) else 0
    if code == INTERRUPTED:
        err_console.print("[yellow]interrupted[/]: the warehouse keeps its last good tables")
    return code


if __name__ == "__main__":
    # Run as `python -m productlens.cli`, this file is a second copy of the module
    # (`__main__`): the commands registered from other modules (`productlens clv`) look the
    # root options up in `productlens.cli`'s State and found none (`--project` was ignored).
    # Run the one module every command shares.
    from productlens.cli import main as shared_main

    sys.exit(shared_main())
