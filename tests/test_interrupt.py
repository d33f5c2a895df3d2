"""Interrupting a build (SIGKILL or SIGINT) never leaves a half-built table, and the
next run succeeds. A slow model from the project's own models folder holds the build
open long enough to interrupt it at a known point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SMALL_WORLD, open_readonly, q, run_cli

SLOW_MODEL = (
    "with events as (select count(*) as n_events from fct_events)\n"
    "select events.n_events, count(*) as n_rows\n"
    "from range(600000000) as t (i) cross join events\n"
    "where hash(t.i) % 7 = 0\n"
    "group by events.n_events\n"
)


def slow_project(root: Path) -> Path:
    (root / "models" / "marts").mkdir(parents=True)
    (root / "models" / "marts" / "zz_slow.sql").write_text(SLOW_MODEL)
    (root / "productlens.toml").write_text("[warehouse]\nthreads = 1\nmemory_limit = '1GB'\n")
    return root


def interrupt_when(args: list[str], marker: str, sig: int) -> tuple[int, str]:
    """Start productlens, send `sig` once `marker` is printed, return (exit code, output)."""
    # Ctrl-C as a terminal gives it: a library that ran earlier in this test worker may
    # have set SIGINT to ignored, which a child inherits (Python then never raises
    # KeyboardInterrupt, and the run went on to its end). A handler of our own for the
    # moment of the start is reset to the default in the child.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "productlens", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "160"},
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            time.sleep(0.5)
            assert proc.poll() is None, "the build ended before it could be interrupted"
            proc.send_signal(sig)
            break
    seen.append(proc.stdout.read())
    return proc.wait(timeout=120), "".join(seen)


def snapshot(root: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every model table's rows (sorted), and any half-built leftovers."""
    engine = open_readonly(root)
    try:
        tables = {}
        for layer in ("staging", "core", "marts"):
            for table in engine.list_tables(layer):
                rows = engine.fetch_all(q(f"SELECT * FROM {layer}.{table}"))
                tables[f"{layer}.{table}"] = sorted(rows, key=repr)
        return tables
    finally:
        engine.close()


def assert_no_leftovers(tables: dict[str, object]) -> None:
    assert not [name for name in tables if name.endswith("__building")]


@pytest.mark.slow
def test_sigkill_during_build_keeps_last_good_tables(tmp_path: Path) -> None:
    root = slow_project(tmp_path)
    first = run_cli("--project", str(root), "demo", *SMALL_WORLD)
    assert first.returncode == 0, first.stderr
    before = snapshot(root)
    assert before["marts.zz_slow"]  # built once, completely

    code, output = interrupt_when(
        ["--project", str(root), "build"], "building marts.zz_slow", signal.SIGKILL
    )
    assert code == -signal.SIGKILL, output
    after_kill = snapshot(root)
    assert_no_leftovers(after_kill)
    assert after_kill == before  # every table, the interrupted one included, as it was

    again = run_cli("--project", str(root), "build")
    assert again.returncode == 0, again.stderr
    assert snapshot(root) == before
    engine = open_readonly(root)
    try:
        statuses = engine.fetch_all(
            q("SELECT status, count(*) FROM ops.run_log WHERE stage = 'build' GROUP BY 1")
        )
    finally:
        engine.close()
    assert dict(statuses).get("interrupted", 0) >= 2  # the stage and the model being built


@pytest.mark.slow
def test_sigint_stops_the_run_cleanly(tmp_path: Path) -> None:
    root = slow_project(tmp_path)
    code, output = interrupt_when(
        ["--project", str(root), "demo", *SMALL_WORLD], "building marts.zz_slow", signal.SIGINT
    )
    assert code == 130, output
    assert "interrupted" in output
    assert "Traceback" not in output
    tables = snapshot(root)
    assert_no_leftovers(tables)
    assert "marts.zz_slow" not in tables
    assert "core.fct_events" in tables

    again = run_cli("--project", str(root), "demo", *SMALL_WORLD)
    assert again.returncode == 0, again.stderr
    assert snapshot(root)["marts.zz_slow"]


@pytest.mark.slow
def test_sigkill_during_demo_then_rerun_equals_a_clean_run(tmp_path: Path) -> None:
    killed = slow_project(tmp_path / "killed")
    code, _ = interrupt_when(
        ["--project", str(killed), "demo", *SMALL_WORLD], "building core.fct_events", signal.SIGKILL
    )
    assert code == -signal.SIGKILL
    rerun = run_cli("--project", str(killed), "demo", *SMALL_WORLD)
    assert rerun.returncode == 0, rerun.stderr

    clean = slow_project(tmp_path / "clean")
    assert run_cli("--project", str(clean), "demo", *SMALL_WORLD).returncode == 0
    assert snapshot(killed) == snapshot(clean)
