"""Breaking the PostgreSQL engine as a user would: a build killed (kill -9) in the middle
of a table's swap never half-replaces the live table, its server-side work ends soon
after instead of holding the swap's locks, and the next build succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from sqlglot import exp

from productlens.engines.base import table
from productlens.engines.postgres import PostgresEngine
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
