"""Runs the stages in order, shows progress, records each in the run log, and summarises.

simulate -> ingest -> build -> check -> report. Each stage reads only what the stage
before it wrote, through the engine.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from productlens import checks, layers, modeling, ops
from productlens.app import lake_catalog, open_engine, open_lake, raw_root
from productlens.config import Project
from productlens.engines import LAYERS, Engine
from productlens.errors import ConfigError, ModelError
from productlens.ingest import (
    CONTRACTS,
    BatchResult,
    IngestResult,
    Screening,
    expand,
    infer_table,
    ingest_paths,
    presets,
)
from productlens.ingest import replay as replay_quarantine
from productlens.ingest.processor import LakeProcessor
from productlens.lake import publish_raw, shares_catalog
from productlens.objects import ObjectPath
from productlens.runlog import RunLog
from productlens.simulate import GenerateResult, WorldParams, generate, preset

if TYPE_CHECKING:
    from productlens.report import ReportResult


@dataclass
class StageSummary:
    name: str
    seconds: float
    detail: str


@dataclass
class RunSummary:
    """What a run did, for the closing screen and for tests."""

    run_id: str
    stages: list[StageSummary] = field(default_factory=list)
    layer_rows: dict[str, int] = field(default_factory=dict)
    report: ReportResult | None = None
    outcomes: list[checks.TestOutcome] = field(default_factory=list)


class Runner:
    """One run against one warehouse: the stages as methods, sharing progress and log."""

    def __init__(
        self, project: Project, engine: Engine, console: Console, run_id: str | None = None
    ) -> None:
        self.project = project
        self.engine = engine
        self.console = console
        # `run_id`: an orchestrator's run's id, so that its tasks (each a Runner) share one run.
        self.runlog = RunLog(engine, run_id)
        self.summary = RunSummary(run_id=self.runlog.run_id)
        self._progress: Progress | None = None
        self._lake: LakeProcessor | None = None
        self._published = False  # whether the warehouse shows the lake as it is now

    @property
    def lake(self) -> LakeProcessor:
        """Ingestion's processor over the raw lake, opened on first use."""
        if self._lake is None:
            self._lake = open_lake(self.project, self.engine)
        return self._lake

    def close(self) -> None:
        """Release the lake's processor (the caller closes the engine)."""
        if self._lake is not None:
            self._lake.close()
            self._lake = None

    def use_engine(self, engine: Engine) -> None:
        """Carry on with a newly opened engine (a retry after the connection was lost):
        the run log writes to it and the lake's processor is opened again on it."""
        self.close()
        self.engine = engine
        self.runlog.engine = engine
        self._published = False

    def publish(self) -> None:
        """Show the lake's raw layer to the warehouse engine: nothing to do when the
        warehouse is the lake's DuckDB file; otherwise views over the files or each new
        file loaded once (see `productlens.lake`)."""
        if self._published or shares_catalog(self.lake, self.engine):
            return
        self._published = True
        with self._stage("publish", len(CONTRACTS)):
            published = publish_raw(self.lake, self.engine)
            detail = f"raw layer as {published.strategy}"
            if published.strategy == "load":
                detail += f", {published.files_loaded} files and {published.rows_loaded:,} rows"
            self._last_meta(rows=published.rows_loaded, detail=detail)

    @contextmanager
    def progress(self) -> Iterator[Progress]:
        progress = Progress(
            TextColumn("[bold]{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._progress = progress
        with progress:
            yield progress
        self._progress = None

    def _say(self, text: str) -> None:
        """A line above the progress bars (or on its own when there are none)."""
        self.console.print(text, highlight=False)

    @contextmanager
    def _stage(self, name: str, total: int | None) -> Iterator[Callable[..., Any]]:
        """Record a stage in the run log and give it a progress bar."""
        progress = self._progress
        task = progress.add_task(name, total=total) if progress else None

        def advance(steps: int = 1, *, total: int | None = None, description: str = "") -> None:
            if progress is not None and task is not None:
                if total is not None:
                    progress.update(task, total=total)
                progress.update(task, advance=steps, description=description or name)

        started = time.perf_counter()
        try:
            with self.runlog.step(name) as record:
                yield advance
                record.rows = int(record.meta.get("rows", 0) or 0)
        except BaseException as exc:
            # The stage that failed is in the summary (and a hook's run.stages) too: it is
            # the one the reader looks for.
            ended = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            self.summary.stages.append(StageSummary(name, time.perf_counter() - started, ended))
            raise
        if progress is not None and task is not None:
            done = progress.tasks[task].total or 1
            progress.update(task, completed=done, description=name)
        detail = str(record.meta.get("detail", ""))
        self.summary.stages.append(StageSummary(name, time.perf_counter() - started, detail))

    # --- stages ------------------------------------------------------------------------

    def simulate(self, params: WorldParams, out: Path, fmt: str = "parquet") -> GenerateResult:
        with self._stage("simulate", params.n_blocks + params.days) as advance:
            result = generate(
                params,
                out,
                fmt=fmt,
                workers=self.project.config.simulate.workers,
                on_progress=lambda _done, total: advance(total=total),
            )
            self._last_meta(
                rows=sum(result.rows.values()),
                detail=f"{result.rows['users']:,} users, {result.rows['events']:,} events, "
                f"{len(result.rows)} tables",
            )
        return result

    def ingest(
        self,
        paths: Sequence[Path | str],
        table: str | None = None,
        mapping: dict[str, str] | None = None,
        preset: str | None = None,
        force: bool = False,
        screening: Screening | None = None,
    ) -> IngestResult:
        """Load files into the raw layer (`ingest_paths`) and show the lake to the
        warehouse; with `screening`, files that cannot be read are rejected, not fatal."""
        expanded = expand(paths, self.lake.objects)
        files = expanded.files
        if expanded.ignored:
            names = ", ".join(str(p) for p in expanded.ignored[:5])
            more = f" and {len(expanded.ignored) - 5} more" if len(expanded.ignored) > 5 else ""
            self._say(f"passed over (not a supported data file): {names}{more}")
        chosen = preset or self.project.config.ingest.preset
        default = presets.default_table(chosen) if chosen else None
        tables = {table} if table else {infer_table(p, default) for p in files}
        with self._stage("ingest", len(tables)) as advance:

            def on_batch(batch: BatchResult) -> None:
                advance()
                self._say(_batch_line(batch))

            result = ingest_paths(
                self.lake,
                files,
                table=table,
                config=self.project.config.ingest,
                mapping=mapping,
                on_batch=on_batch,
                preset=preset,
                force=force,
                screening=screening,
            )
            for rejection in result.rejected:
                self._say(f"  [red]rejected[/] {escape(rejection.reason)}; left in place")
            if result.held_back:
                self._say(
                    f"  [yellow]still rejected[/] {len(result.held_back)} file(s) rejected "
                    "before, not read again (same bytes, same settings): "
                    + escape(", ".join(str(p) for p in result.held_back[:3]))
                    + (" ..." if len(result.held_back) > 3 else "")
                )
            skipped = len(result.skipped_files)
            detail = f"{result.total_rows:,} rows loaded, {result.quarantined:,} quarantined"
            if skipped:
                detail += f", {skipped} files already loaded"
            if result.rejected:
                detail += f", {len(result.rejected)} files rejected"
            self._last_meta(rows=result.total_rows, detail=detail)
        self._published = False
        self.publish()
        return result

    def replay(
        self,
        table: str | None = None,
        mapping: dict[str, str] | None = None,
        preset: str | None = None,
    ) -> IngestResult:
        with self._stage("replay", None) as advance:
            result = replay_quarantine(
                self.lake,
                config=self.project.config.ingest,
                mapping=mapping,
                table=table,
                preset=preset,
            )
            for batch in result.batches:
                advance()
                self._say(_batch_line(batch))
            held = sum(b.rows_quarantined for b in result.batches)
            self._last_meta(
                rows=result.total_rows,
                detail=f"{result.total_rows:,} rows released and loaded, {held:,} still held",
            )
        self._published = False
        self.publish()
        return result

    def build(
        self,
        select: Sequence[str] | None = None,
        since: date | None = None,
        *,
        graph: modeling.ModelGraph | None = None,
        stage: str = "build",
    ) -> modeling.BuildResult:
        """Build the selected models (of `graph`, default: the project's) as `stage`."""
        graph = graph or modeling.discover(self.project.config, self.project.model_dirs)
        chosen = graph.select(select)
        self.publish()
        with self._stage(stage, len(chosen)) as advance:
            started: dict[str, float] = {}

            def on_model(model: modeling.Model, event: str) -> None:
                if event == "start":
                    started[model.name] = time.perf_counter()
                    advance(0, description=f"build {model.name}")
                    if not self.console.is_terminal:
                        self._say(f"  building {model.table}")
                    return
                took = time.perf_counter() - started.get(model.name, time.perf_counter())
                if event == "done":
                    rows = self.runlog.records[-1].rows
                    # A view stores no rows and is not run to count them.
                    shown = "view" if rows is None else f"{rows:>12,} rows"
                    self._say(f"  [green]ok[/]      {model.table:<36} {shown:>17}  {took:6.2f}s")
                elif event == "failed":
                    self._say(f"  [red]failed[/]  {model.table}")
                else:
                    self._say(f"  [yellow]skipped[/] {model.table} (an upstream model failed)")
                advance()

            result = modeling.build(
                self.engine, graph, self.runlog, select=select, since=since, on_model=on_model
            )
            self._last_meta(
                rows=sum(rows or 0 for rows in result.built.values()),
                detail=f"{len(result.built)} models built"
                + (f", {len(result.failed)} failed" if result.failed else ""),
            )
            if result.failed:
                name, error = next(iter(result.failed.items()))
                raise ModelError(
                    f"{len(result.failed)} model(s) failed, first {name}: {error}"
                    + (f"; skipped {', '.join(result.skipped)}" if result.skipped else "")
                ) from result.errors.get(name)
        return result

    def check(
        self, select: Sequence[str] | None = None, tests: list[checks.DataTest] | None = None
    ) -> list[checks.TestOutcome]:
        """Run the data tests of the selected models (or the `tests` given)."""
        if tests is None:
            graph = modeling.discover(self.project.config, self.project.model_dirs)
            tests = checks.compile_tests(graph, graph.select(select) if select else None)
        with self._stage("check", len(tests)) as advance:
            outcomes = checks.run_tests(self.engine, tests, self.runlog.run_id)
            advance(len(tests))
            self.summary.outcomes = outcomes
            passed = sum(o.status == "pass" for o in outcomes)
            warned = sum(o.status == "warn" for o in outcomes)
            failed = len(outcomes) - passed - warned
            self._last_meta(
                rows=len(outcomes), detail=f"{passed} passed, {warned} warned, {failed} failed"
            )
            for o in outcomes:
                if o.status != "pass":
                    colour = "yellow" if o.status == "warn" else "red"
                    problem = o.error or f"{o.n_failing} failing rows"
                    self._say(f"  [{colour}]{o.status}[/] {o.test.name}: {problem}")
            checks.raise_for_failures(outcomes)
        return outcomes

    def report(self, out_dir: Path | None = None) -> ReportResult:
        # matplotlib: only when reporting
        from productlens.report import write_report
        from productlens.report.sections import Settings

        with self._stage("report", 1) as advance:
            result = write_report(
                self.engine,
                out_dir or self.project.report_dir,
                settings=Settings.from_config(self.project.config),
                # The file's name only: the report holds no path of this machine.
                warehouse=self.project.warehouse_path.name,
            )
            advance()
            self._last_meta(rows=1 + len(result.pngs), detail=shown(result.html))
        self.summary.report = result
        return result

    # --- bookkeeping -------------------------------------------------------------------

    def stage(self, name: str, total: int | None) -> AbstractContextManager[Callable[..., Any]]:
        """A stage of a caller's own, recorded and timed like the built-in ones."""
        return self._stage(name, total)

    def stage_meta(self, **meta: object) -> None:
        """Rows and a one-line detail for the stage being recorded."""
        self._last_meta(**meta)

    def _last_meta(self, **meta: object) -> None:
        """Attach rows and a one-line detail to the stage being recorded."""
        stage_records = [r for r in self.runlog.records if r.object is None]
        stage_records[-1].meta.update(meta)

    def built_rows(self) -> dict[tuple[str, str], int]:
        """The rows of each table this run built, as its build recorded them (the engine's
        count of the table swapped in), by (layer, name); the latest build of a table
        wins. Views and failed builds record none."""
        built: dict[tuple[str, str], int] = {}
        for record in self.runlog.records:
            if record.stage == "build" and record.object and record.status == "success":
                layer, _, name = record.object.partition(".")
                if record.rows is None:
                    built.pop((layer, name), None)
                else:
                    built[(layer, name)] = record.rows
        return built

    def finish(self) -> RunSummary:
        """Count rows per layer, write run_results.json and release the lake. A table
        this run built is counted by its build's record (`built_rows`), not read again:
        on Spark each count was a job over the whole table, 30-odd per run."""
        self.close()
        stored = layers.stored_rows(self.engine, self.built_rows())
        self.summary.layer_rows.update({name: n.n_rows for name, n in stored.items()})
        self.runlog.write_json(self.project.run_results_path)
        return self.summary


def _batch_line(batch: BatchResult) -> str:
    held = f", [yellow]{batch.rows_quarantined:,} quarantined[/]" if batch.rows_quarantined else ""
    dup = f", {batch.rows_duplicate:,} already loaded" if batch.rows_duplicate else ""
    warned = f", {batch.rows_warned:,} with warnings" if batch.rows_warned else ""
    filtered = f", {batch.rows_filtered:,} left out by `where`" if batch.rows_filtered else ""
    # Notes name source columns, which may hold anything: escaped, not read as markup.
    notes = "".join(f"\n    [yellow]note:[/] {escape(n)}" for n in batch.notes)
    return (
        f"  [green]{batch.kind}[/] raw.{batch.table:<14} {batch.rows_loaded:>12,} rows loaded"
        f"{held}{dup}{warned}{filtered}{notes}"
    )


def print_summary(console: Console, summary: RunSummary, title: str) -> None:
    """The one-screen summary under `title` (the command that ran): seconds per stage,
    rows per layer, where the report is."""
    stages = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    stages.add_column("stage")
    stages.add_column("seconds", justify="right")
    stages.add_column("result")
    for stage in summary.stages:
        stages.add_row(stage.name, f"{stage.seconds:.2f}", stage.detail)
    stages.add_row("[bold]total", f"[bold]{sum(s.seconds for s in summary.stages):.2f}", "")
    console.print()
    console.print(stages)
    if summary.layer_rows:
        per_layer = Table(show_edge=False, pad_edge=False, title=layers.TITLE, title_justify="left")
        for layer in summary.layer_rows:
            per_layer.add_column(layer, justify="right")
        per_layer.add_row(*[f"{n:,}" for n in summary.layer_rows.values()])
        console.print()
        console.print(per_layer)
        console.print(layers.NOTE, highlight=False)  # a title this long wraps at the table
    if summary.report:
        console.print(f"\nreport: [bold]{shown(summary.report.html)}[/]")
        console.print(f"charts: {', '.join(str(p.name) for p in summary.report.pngs)}")
    console.print(f"run id: {summary.run_id}")


def prepare_demo_warehouse(project: Project) -> None:
    """The demo always starts from a fresh warehouse (and lake), but never deletes one it
    did not make."""
    path = project.warehouse_path
    if project.engine == "duckdb" and not path.exists():
        return
    engine = open_engine(project)
    try:
        made_by_demo = engine.table_kind(*ops.DEMO_WORLD) is not None or not any(
            engine.list_tables(layer) for layer in LAYERS
        )
        if not made_by_demo:
            raise ConfigError(
                "this warehouse holds data the demo did not make; run the demo in another "
                "folder (--project) or with another --warehouse",
                path=path if project.engine == "duckdb" else None,
            )
        if project.engine != "duckdb":
            # A server's warehouse is emptied table by table; views first, since a
            # view may depend on a table of the same layer.
            for layer in reversed(LAYERS):
                names = engine.list_tables(layer)
                views = [n for n in names if engine.table_kind(layer, n) == "view"]
                for name in [*views, *(n for n in names if n not in views)]:
                    engine.drop(layer, name)
    finally:
        engine.close()
    if project.engine == "duckdb":
        path.unlink()
        path.with_suffix(path.suffix + ".wal").unlink(missing_ok=True)
    else:
        catalog = lake_catalog(project)
        catalog.unlink(missing_ok=True)
        catalog.with_suffix(catalog.suffix + ".wal").unlink(missing_ok=True)
    raw_files = raw_root(project)
    if isinstance(raw_files, ObjectPath):
        raw_files.remove_tree()
    elif raw_files.is_dir():
        shutil.rmtree(raw_files)


def shown(path: Path) -> str:
    """A path as the user typed it: relative to the current folder when it lies below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_demo(project: Project, params: WorldParams, console: Console) -> RunSummary:
    """simulate -> ingest -> build -> check -> report on a fresh warehouse."""
    # The world simulated now is the project's for this run, whatever an earlier demo left
    # in the warehouse (`app.adopt_demo_world` reads that only when nothing names one).
    project.config.simulate.scenario = params.scenario  # type: ignore[assignment]
    prepare_demo_warehouse(project)
    engine = open_engine(project)
    try:
        ops.ensure(engine, ops.DEMO_WORLD, ops.DEMO_WORLD_COLUMNS)
        made = datetime.now(UTC).replace(tzinfo=None)
        engine.execute(
            ops.insert_rows(
                ops.DEMO_WORLD, ops.DEMO_WORLD_COLUMNS, [[json.dumps(params.to_dict()), made]]
            )
        )
        runner = Runner(project, engine, console)
        try:
            with runner.progress():
                generated = runner.simulate(params, project.data_dir)
                runner.ingest(list(generated.tables.values()))
                runner.build()
                runner.check()
                runner.report()
        finally:
            summary = runner.finish()
    finally:
        engine.close()
    return summary


def world_params(project: Project, *, srm: float = 0.0, **overrides: Any) -> WorldParams:
    """World parameters: the scenario's defaults, then the project file, then the
    command line; `srm` plants a sample-ratio mismatch in the first experiment."""
    sim = project.config.simulate
    settings: dict[str, Any] = {
        "scenario": sim.scenario,
        "users": sim.users,
        "days": sim.days,
        "seed": sim.seed,
        "start_date": sim.start_date,
        "dirty": sim.dirty,
    }
    settings.update({k: v for k, v in overrides.items() if v is not None})
    params = preset(settings.pop("scenario"), **settings)
    return params.with_srm(srm) if srm else params
