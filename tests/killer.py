"""`productlens run` in a process that kills itself (SIGKILL, as `kill -9` does) at a
chosen point: `python -m tests.killer POINT N PROJECT [RUN ARGS]`, where POINT is one of
`KILL_POINTS` and N the how-many-th time the point is reached. Only the moment of death is
arranged; the run, its engine and its files are the real ones."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlglot import exp

import productlens.checks
import productlens.ingest
from productlens.cli import main
from productlens.engines.duckdb import DuckDBEngine


def _die_on(nth: int) -> Callable[[], None]:
    seen = 0

    def reached() -> None:
        nonlocal seen
        seen += 1
        if seen == nth:
            os.kill(os.getpid(), signal.SIGKILL)

    return reached


def _statement(kind: type[exp.Expr], schema: str, nth: int) -> None:
    """Die on the nth statement of this kind on a table of `schema` (before it runs)."""
    reached = _die_on(nth)
    execute = DuckDBEngine.execute

    def patched(self: DuckDBEngine, statement: exp.Expr) -> None:
        target = statement.this if isinstance(statement, kind) else None
        if isinstance(target, exp.Table) and target.db == schema:
            reached()
        execute(self, statement)

    DuckDBEngine.execute = patched  # type: ignore[method-assign]


def _after_batch(nth: int) -> None:
    """Die after the nth ingest batch wrote its files, inside ingestion's transaction."""
    reached = _die_on(nth)
    run_batch = productlens.ingest.run_batch

    def patched(*args: Any, **kwargs: Any) -> Any:
        done = run_batch(*args, **kwargs)
        reached()
        return done

    productlens.ingest.run_batch = patched


def _in_checks(nth: int) -> None:
    reached = _die_on(nth)
    run_tests = productlens.checks.run_tests

    def patched(*args: Any, **kwargs: Any) -> Any:
        reached()
        return run_tests(*args, **kwargs)

    productlens.checks.run_tests = patched


def _pause_in_checks(nth: int) -> None:
    """Not a kill: at the checks, write `<project>/paused` and wait until it is gone
    (another process's turn to try a run meanwhile)."""
    reached = _die_on(nth + 1)  # never dies: counts only
    run_tests = productlens.checks.run_tests
    marker = Path(sys.argv[3]) / "paused"

    def patched(*args: Any, **kwargs: Any) -> Any:
        reached()
        marker.write_text(str(os.getpid()))
        while marker.exists():
            time.sleep(0.05)
        return run_tests(*args, **kwargs)

    productlens.checks.run_tests = patched


KILL_POINTS: dict[str, Callable[[int], None]] = {
    "ingest": _after_batch,
    "build": lambda n: _statement(exp.Create, "core", n),
    "check": _in_checks,
    "swap": lambda n: _statement(exp.Alter, "marts", n),
    "pause": _pause_in_checks,
}

if __name__ == "__main__":
    point, nth, project, *args = sys.argv[1:]
    KILL_POINTS[point](int(nth))
    sys.exit(main(["--project", project, "run", *args]))
