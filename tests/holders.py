"""Another process holding a DuckDB warehouse file, for the tests of lock waits and retries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HOLD = (
    "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'ro'); "
    "print('ready', flush=True); sys.stdin.read(); c.close()"
)


def hold_duckdb(path: Path, *, read_only: bool) -> subprocess.Popen[str]:
    """Start a process that holds `path` (read-only as the dashboard does during a render,
    or for writing as a second build does) until its stdin is closed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), "ro" if read_only else "rw"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "ready"
    return holder


LOCK = (
    "import sys; from pathlib import Path; from productlens.daily import run_lock\n"
    "with run_lock(Path(sys.argv[1])):\n"
    "    print('ready', flush=True); sys.stdin.read()\n"
)


def hold_run_lock(path: Path) -> subprocess.Popen[str]:
    """Start a process that holds the project's run lock `path` (as a `productlens run`
    under way does) until its stdin is closed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "ready"
    return holder
