"""`python -m productlens.dashboard.serve` is Streamlit's command line with the app's
modules imported and the first page's reads made first (the end-to-end browser test
starts the dashboard through it)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
import streamlit as st
from streamlit import logger as streamlit_logger

from productlens.config import load_project
from productlens.dashboard import ENTRY, data, serve, streamlit_argv, warehouse
from productlens.dashboard import app as serve_app
from productlens.engines import DuckDBEngine
from productlens.ops import RUN_EVENTS, RUN_LOG_COLUMNS, insert_rows
from productlens.report.sections import SECTIONS
from tests.conftest import open_readonly, q
from tests.test_dashboard import app_for, count, metrics, one, overview_period


def test_the_dashboard_starts_through_serve(tmp_path: Path) -> None:
    argv = streamlit_argv("python", load_project(tmp_path), "127.0.0.1", 8501)
    assert argv[:5] == ["python", "-m", "productlens.dashboard.serve", "run", str(ENTRY)]


def test_serve_is_streamlits_command_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "productlens.dashboard.serve", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("Streamlit, version"), out.stdout


def test_preload_imports_the_app_quietly() -> None:
    script = (
        "import sys\n"
        "from productlens.dashboard.serve import preload\n"
        "preload()\n"
        "print(all(m in sys.modules for m in ('productlens.dashboard.pages', "
        "'productlens.dashboard.data', 'plotly.graph_objects')))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    assert "No runtime found" not in out.stderr, out.stderr


def test_the_first_page_is_read_from_the_warmed_caches_and_a_build_after_is_seen(
    demo_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve.warm` makes the overview's reads as its first run would (the same cache
    keys: with every reader refusing, the page still shows the warehouse's numbers); a
    build after the warm-up (the run log moves) is read afresh."""
    root = tmp_path / "copied"
    shutil.copytree(demo_project, root, ignore=shutil.ignore_patterns("data", "reports"))
    engine = open_readonly(root)
    try:
        start, end = overview_period(engine)
        window = "from core.fct_events where event_date between ? and ?"
        events = one(engine, f"select count(*) {window}", start, end)
        users = one(engine, f"select count(distinct user_id) {window}", start, end)
    finally:
        engine.close()
    st.cache_data.clear()  # what other tests of this process read is not the warm-up's
    serve.warm(["entry.py", "--flag=1", "--", "--project", str(root)])

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("read again: the warm-up's cache keys are not the page's")

    with monkeypatch.context() as patched:
        patched.setattr(warehouse, "filter_options", refuse)
        patched.setitem(SECTIONS, "overview", replace(SECTIONS["overview"], read=refuse))
        patched.setattr(data, "read_funnel_counts", refuse)
        at = app_for(root, monkeypatch)
        assert not at.exception, [e.value for e in at.exception]
        assert at.title[0].value == "Overview"
        assert metrics(at)["events"] == count(events)
        assert metrics(at)["active users"] == count(users)

    # A build that drops the last day's mobile events (and logs its step).
    engine = DuckDBEngine(root / "warehouse.duckdb")
    try:
        engine.execute(
            q("delete from core.fct_events where event_date = ? and device = ?", end, "mobile")
        )
        fewer = one(engine, f"select count(*) {window}", start, end)
        when = datetime(2030, 1, 1)
        step = ("r2", "build", "core.fct_events", when, when, 1, "success", None)
        engine.execute(insert_rows(RUN_EVENTS, RUN_LOG_COLUMNS, [step]))
    finally:
        engine.close()
    assert fewer < events
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert metrics(at)["events"] == count(fewer)


def test_warming_a_folder_without_a_warehouse_leaves_it_to_the_page(tmp_path: Path) -> None:
    """No warehouse: the warm-up reads nothing and writes nothing (the first page says
    what to run)."""
    serve.warm(["entry.py", "--", "--project", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


def test_the_warm_up_stays_quiet_when_the_server_reads_its_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server reads its config while the warm-up runs (a thread beside it), and
    Streamlit then sets every one of its loggers to the configured level: the warnings the
    warm-up quiets ("Thread 'warm': missing ScriptRunContext!") must stay quiet after
    that too, and come back once it is done."""
    seen: list[str] = []

    class Kept(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    loggers = [streamlit_logger.get_logger(name) for name in serve.QUIET_LOGGERS]
    handler = Kept()

    def warm_while_the_server_starts(argv: object) -> None:
        streamlit_logger.set_log_level("info")  # what the server's config parse does
        for logger in loggers:
            logger.warning("during the warm-up")

    level = loggers[0].level
    for logger in loggers:
        logger.addHandler(handler)
    try:
        monkeypatch.setattr(serve_app, "warm", warm_while_the_server_starts)
        serve.warm(["entry.py", "--", "--project", "somewhere"])
        for logger in loggers:
            logger.warning("after it")
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        streamlit_logger.set_log_level(level)
    assert seen == ["after it"] * len(loggers)
