"""Breaking the engines' swap as a user (or a machine) would: a build killed (kill -9) in
the middle of a PostgreSQL swap never half-replaces the live table, its server-side work
ends soon after instead of holding the swap's locks, and the next build succeeds; a
failure between a swap's drop and its rename leaves the old table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlglot import exp

from productlens.engines import Engine
from productlens.engines.base import table
from productlens.engines.duckdb import DuckDBEngine
from productlens.engines.postgres import PostgresEngine
from productlens.errors import EngineError
from tests.conftest import q

# A swap whose build runs for ten minutes: the test kills its process in the middle.
SLOW_SWAP = """
import sys
import sqlglot
from productlens.engines.postgres import PostgresEngine

engine = PostgresEngine(sys.argv[1], application_name="killed build")
query = sqlglot.parse_one("SELECT 2 AS a FROM (SELECT pg_sleep(600)) AS s", read="duckdb")
engine.replace_table("marts", "t", query)
"""


def _backends(pg: PostgresEngine, sleeping: bool = False) -> int:
    """The killed build's server processes (those running its slow query)."""
    query = q(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'killed build' "
        "AND (NOT ? OR (state = 'active' AND query ILIKE '%pg_sleep(600)%'))",
        sleeping,
    )
    return int(str(pg.fetch_all(query)[0][0]))


def _until(condition: object, what: str, seconds: float = 60) -> None:
    """Wait for `condition()` (a deadline for a process to act, not a timing claim)."""
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_kill_9_mid_swap_keeps_the_live_table(pg_dsn: str) -> None:
    pg = PostgresEngine(pg_dsn)
    try:
        pg.ensure_schema("marts")
        pg.replace_table("marts", "t", q("SELECT 1 AS a"))
        proc = subprocess.Popen([sys.executable, "-c", SLOW_SWAP, pg_dsn])
        try:
            _until(lambda: _backends(pg, sleeping=True) == 1, "the slow swap never started")
            # Inside the swap's transaction: the building table exists for it alone.
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()  # a no-op once killed; never leave it sleeping
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        # The server notices the dead client and rolls its transaction back, rather
        # than sleeping on for ten minutes with the swap's locks held.
        _until(lambda: _backends(pg) == 0, "the killed build's query still runs")
        assert pg.fetch_all(exp.select("a").from_(table("marts", "t"))) == [(1,)]
        assert pg.list_tables("marts") == ["t"]  # no half-built table left
        assert pg.replace_table("marts", "t", q("SELECT 3 AS a")) == 1
        assert pg.fetch_all(exp.select("a").from_(table("marts", "t"))) == [(3,)]
    finally:
        pg.close()


@pytest.fixture(params=["duckdb", "postgres"])
def writer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine with transactions, its `core` schema made."""
    if request.param == "duckdb":
        engine: Engine = DuckDBEngine(tmp_path / "w.duckdb", memory_limit="1GB", threads=1)
    else:
        engine = PostgresEngine(request.getfixturevalue("pg_dsn"))
    engine.ensure_schema("core")
    yield engine
    engine.close()


def test_a_failure_between_drop_and_rename_keeps_the_live_table(
    writer: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The swap drops the old table and renames the new one in one transaction: a failure
    between the two (a crash, injected here as the rename raising) leaves the old table,
    never no table."""
    writer.replace_table("core", "t", q("SELECT 1 AS a"))
    execute = writer.execute

    def rename_fails(statement: exp.Expr) -> None:
        if isinstance(statement, exp.Alter):
            raise EngineError("injected: the rename failed")
        execute(statement)

    monkeypatch.setattr(writer, "execute", rename_fails)
    with pytest.raises(EngineError, match="injected"):
        writer.replace_table("core", "t", q("SELECT 2 AS a"))
    monkeypatch.undo()
    assert writer.fetch_all(exp.select("a").from_(table("core", "t"))) == [(1,)]
    assert writer.list_tables("core") == ["t"]  # and no half-built table


def test_a_password_libpq_quotes_back_is_hidden() -> None:
    """libpq quotes a bad option's value in its message: a password pasted into the
    port's place is printed as *** with the rest of the line kept."""
    dsn = "host=127.0.0.1 port=hunter2pw user=me password=hunter2pw dbname=x"
    with pytest.raises(EngineError) as info:
        PostgresEngine(dsn)
    said = str(info.value)
    assert "hunter2pw" not in said
    assert 'invalid integer value "***" for connection option "port"' in said
