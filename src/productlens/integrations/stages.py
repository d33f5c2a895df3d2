"""`productlens run` as four stages an orchestrator runs as separate tasks:
ingest -> build -> check -> publish.

The stages are `productlens run` (`productlens.daily`) cut where a task boundary can fall:
ingest loads the landing folder's new files as `run` does (`daily.ingest_landing`: one that
cannot be read is rejected, the others load) and records the dates their rows touch;
build rebuilds staging and core from that window and the marts aside (`marts_next`);
check runs every data test on them; publish swaps the marts in and refreshes the report
(and, when ingest rejected files, ends the run `completed_with_rejections`, tells the hook
and raises `FilesRejected`, as `run` exits 3).
A failed error-level test fails check, so publish never runs and the previous marts stay
live.

Tasks may run in separate processes, hours apart after a retry: each stage opens the
warehouse, works under the run's id (stable across retries, so one run is one entry of
`productlens runs`) and closes it. What a stage hands on lives in the warehouse (the run's
record in `ops.run_history`, the marts in `marts_next`) or travels as small JSON values
(`Built`, `Checked`) an orchestrator passes from task to task.

Every stage is idempotent: ingest skips the files loaded before (by checksum), build
recomputes its window from the run history, check only reads, and publish swaps in only
the marts still waiting aside. A failed stage ends the run as `failed` with the error
(a later successful attempt ends it again, and the latest end counts); a failure that no
retry will follow runs the project's `[run] on_failure` hook with the run's JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from productlens import daily, modeling
from productlens.app import landing_root, open_engine
from productlens.config import Project, load_project
from productlens.daily import MARTS, RunRecord
from productlens.engines import Engine
from productlens.pipeline import Runner
from productlens.retry import is_transient

T = TypeVar("T")


@dataclass(frozen=True)
class StageJob:
    """What every stage is given: the project folder, the run's id (the same for each
    stage and each retry of one run) and the day the run is for (`productlens run
    --date`; None: the dates the new rows touch). `last_attempt`: no retry follows a
    failure of this attempt (the `on_failure` hook runs only then)."""

    root: Path
    run_id: str
    day: date | None = None
    last_attempt: bool = True


@dataclass(frozen=True)
class Built:
    """What build did: whether it built the marts aside, and from which date (None with
    `full`: everything)."""

    built: bool
    since: date | None = None
    full: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "built": self.built,
            "since": self.since.isoformat() if self.since else None,
            "full": self.full,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Built:
        since = data.get("since")
        return cls(bool(data["built"]), date.fromisoformat(since) if since else None, data["full"])


@dataclass(frozen=True)
class Checked:
    """The data tests' outcomes, as `run_results.json` lists them."""

    tests: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"tests": self.tests}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checked:
        return cls(list(data["tests"]))


@dataclass
class _Opened:
    project: Project
    engine: Engine
    runner: Runner
    record: RunRecord
    graph: modeling.ModelGraph


@contextmanager
def _opened(job: StageJob, console: Console | None) -> Iterator[_Opened]:
    project = load_project(job.root)
    # Each stage holds the run lock, as `productlens run` does: a cron run meanwhile exits
    # 75, and a stage that finds one under way raises `RunInProgress` (transient: retried).
    with daily.run_lock(project.run_lock_path):
        engine = open_engine(project)
        try:
            out = Console(width=120, no_color=True)
            runner = Runner(project, engine, console or out, job.run_id)
            try:
                record = _this_run(engine, job)
                opened = _Opened(project, engine, runner, record, modeling.ModelGraph({}))
                # A model or YAML error fails the run as any stage's error does.
                opened.graph = _attempt(
                    job, opened, lambda: modeling.discover(project.config, project.model_dirs)
                )
                yield opened
            finally:
                runner.close()
        finally:
            engine.close()


def _this_run(engine: Engine, job: StageJob) -> RunRecord:
    """The run's record as the history has it (under way again), or a new one."""
    for record in daily.history(engine):
        if record.run_id == job.run_id:
            record.status, record.finished_at, record.error = "running", None, None
            return record
    record = RunRecord(job.run_id, started_at=daily._now(), date_from=job.day, date_to=job.day)
    daily._record(engine, record)
    return record


def _attempt(
    job: StageJob,
    opened: _Opened,
    action: Callable[[], T],
    tests: list[dict[str, Any]] | None = None,
) -> T:
    """Run the stage's work; a failure ends the run as failed (and, on the last attempt,
    calls the `on_failure` hook) before it is raised again."""
    try:
        return action()
    except Exception as exc:
        record = opened.record
        record.status, record.error, record.finished_at = "failed", str(exc), daily._now()
        outcomes = [daily._outcome(o) for o in opened.runner.summary.outcomes]
        _tally(record, outcomes or tests or [])
        daily._record(opened.engine, record)
        payload = _write_results(opened, outcomes or tests)
        if job.last_attempt or not is_transient(exc):
            _hook(opened, payload)
        raise


def _hook(opened: _Opened, payload: dict[str, Any]) -> None:
    """Run the project's `[run] on_failure` command, if any, with the run's JSON."""
    settings = opened.project.config.run
    if settings.on_failure:
        problem = daily.run_hook(
            settings.on_failure, payload, opened.project.root, settings.hook_timeout_seconds
        )
        if problem:
            opened.runner.console.print(f"warning: {problem}", highlight=False)


# --- the stages ----------------------------------------------------------------------------


def ingest(job: StageJob, console: Console | None = None) -> dict[str, Any]:
    """Load the landing folder's new files; record the rows and the dates they touch.
    Returns the run's record as JSON."""
    with _opened(job, console) as opened:
        record = opened.record

        def load() -> None:
            folders = daily.landing_files(landing_root(opened.project))
            if not folders:
                return
            try:
                # As `productlens run` loads: an unreadable file is rejected, the rest load.
                loaded = daily.ingest_landing(opened.runner, folders, record)
            except Exception:
                # Some batches may have loaded: their dates are unknown, so owed in full.
                record.full_rebuild = True
                raise
            touched = daily.touched_dates(opened.engine, opened.graph, loaded)
            record.rows_in += sum(b.rows_read for b in loaded.batches)
            record.rows_loaded += loaded.total_rows
            record.rows_quarantined += loaded.quarantined
            record.date_from = record.date_from or touched.first
            record.date_to = record.date_to or touched.last or record.date_from
            owed = daily.Touched(record.rebuild_from, None, record.full_rebuild).merge(touched)
            record.rebuild_from, record.full_rebuild = owed.first, owed.full
            if loaded.batches or loaded.rejected:
                daily._record(opened.engine, record)  # owed from here on (`daily.pending`)

        _attempt(job, opened, load)
        _write_results(opened, None)
        return record.to_json()


def build(job: StageJob, console: Console | None = None) -> Built:
    """Rebuild staging and core from the first date owed (this run's day, the dates the
    new rows touch, what failed runs left), and the marts aside in `marts_next`."""
    with _opened(job, console) as opened:
        engine, graph, runner, record = opened.engine, opened.graph, opened.runner, opened.record

        def rebuild() -> Built:
            owed = daily.pending(daily.history(engine))
            starts = [d for d in (job.day, owed.first) if d is not None]
            if not starts and not owed.full and daily._marts_exist(engine, graph):
                runner.console.print("nothing new in the landing folder: the warehouse is current")
                return Built(built=False)
            since = None if owed.full or not starts else min(starts)
            record.rebuild_from, record.full_rebuild = since, since is None
            runner.build([m.name for m in graph if m.layer != MARTS], since=since, graph=graph)
            daily.seed_aside(engine, graph, since)
            marts = [m.name for m in graph if m.layer == MARTS]
            runner.build(marts, since=since, graph=daily.aside(graph), stage="build marts")
            return Built(True, since, since is None)

        built = _attempt(job, opened, rebuild)
        _write_results(opened, None)
        return built


def check(job: StageJob, built: Built, console: Console | None = None) -> Checked:
    """Run every data test, the marts' on `marts_next`; an error-level failure raises
    `DataTestFailure` (and publish must not run)."""
    with _opened(job, console) as opened:
        _carry(opened.record, built)

        def run_tests() -> Checked:
            if not built.built:
                return Checked([])
            tests = daily.aside_tests(daily.aside(opened.graph))
            outcomes = opened.runner.check(tests=tests)
            return Checked([daily._outcome(o) for o in outcomes])

        checked = _attempt(job, opened, run_tests)
        _write_results(opened, checked.tests)
        return checked


def publish(
    job: StageJob, built: Built, checked: Checked, console: Console | None = None
) -> dict[str, Any]:
    """Swap the checked marts in, refresh the report, end the run as a success. Returns
    the run's record as JSON; when ingest rejected landing files, ends the run
    `completed_with_rejections`, calls the `on_failure` hook and raises `FilesRejected`."""
    with _opened(job, console) as opened:
        record, runner = opened.record, opened.runner
        _carry(record, built)
        _tally(record, checked.tests)

        def swap() -> None:
            if not built.built:
                return
            marts = [m for m in opened.graph if m.layer == MARTS]
            with runner.stage("publish marts", len(marts)):
                rows = daily.promote(opened.engine, opened.graph)
                runner.stage_meta(rows=rows, detail=f"{len(marts)} marts swapped in")
            if opened.project.config.run.report:
                runner.report()

        _attempt(job, opened, swap, checked.tests)
        rejected = record.files_rejected > 0
        record.status = daily.WITH_REJECTIONS if rejected else "success"
        record.finished_at = daily._now()
        daily._record(opened.engine, record)
        payload = _write_results(opened, checked.tests)
        if rejected:
            # As `productlens run` ends (exit 3): the marts are published, the hook is
            # told, and the task fails naming the files (no retry reads them again).
            _hook(opened, payload)
            raise daily.files_rejected(record)
        return record.to_json()


# --- the record and run_results.json -------------------------------------------------------


def _carry(record: RunRecord, built: Built) -> None:
    if built.built:
        record.rebuild_from, record.full_rebuild = built.since, built.full


def _tally(record: RunRecord, tests: list[dict[str, Any]]) -> None:
    failed = [t["name"] for t in tests if t["status"] in ("fail", "error")]
    record.tests_passed = sum(t["status"] == "pass" for t in tests)
    record.tests_warned = sum(t["status"] == "warn" for t in tests)
    record.tests_failed = len(failed)
    record.failed_tests = failed


def _write_results(opened: _Opened, tests: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Write the run's `run_results.json` (under `runs/<id>/` and the project's latest):
    every stage's steps so far, the run's record and the tests. Returns the run's JSON."""
    project, record = opened.project, opened.record
    for found in daily.history(opened.engine):
        if found.run_id == record.run_id:
            record.stages = found.stages  # every stage's seconds, from the run log
    path = project.runs_dir / record.run_id / "run_results.json"
    before = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    payload = {
        "run": record.to_json(),
        "tests": before.get("tests", []) if tests is None else tests,
    }
    opened.runner.runlog.extra = payload
    opened.runner.runlog.write_json(path)
    merged = json.loads(path.read_text(encoding="utf-8"))
    merged["results"] = before.get("results", []) + merged["results"]
    text = json.dumps(merged, indent=2, default=str) + "\n"
    path.write_text(text, encoding="utf-8")
    project.run_results_path.write_text(text, encoding="utf-8")
    return payload
