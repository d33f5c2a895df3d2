"""`SparkEngine.connect()`: a session it builds pinned to UTC, which it owns and stops, and
a local warehouse whose catalog outlives the process.

Each step runs in a process of its own (its own JVM), so these tests carry no
`xdist_group("spark")`: they never touch the run's shared session, and the worker that
owns that session (the suite's critical path) does not wait for these extra JVMs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CONNECT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from sqlglot import exp
    from productlens.engines.spark import SparkEngine
    from productlens.engines.base import table

    warehouse, step = sys.argv[1], sys.argv[2]
    engine = SparkEngine.connect("local[1]", warehouse_dir=warehouse,
                                 conf={"spark.sql.shuffle.partitions": "2"})
    session = engine._session
    if step == "build":
        engine.ensure_schema("core")
        stamp = exp.cast(exp.Literal.string("2024-03-10 02:30:00"), "TIMESTAMPTZ")
        day = exp.cast(exp.Literal.string("2024-01-01"), "DATE")
        engine.replace_table("core", "t", exp.select(stamp.as_("at")))
        engine.replace_table("core", "p", exp.select(day.as_("day"), "1 AS v"), partition_by="day")
    at = engine.fetch_all(exp.select("at").from_(table("core", "t")))[0][0]
    conf = session.conf
    print(json.dumps({
        "tables": engine.list_tables("core"),
        "at": at.isoformat(),
        "p": engine.fetch_all(exp.select("v").from_(table("core", "p"))),
        "tz": conf.get("spark.sql.session.timeZone"),
        "jvm_tz": session.sparkContext._jvm.java.util.TimeZone.getDefault().getID(),
        "overwrite": conf.get("spark.sql.sources.partitionOverwriteMode"),
        "ui": session.sparkContext.uiWebUrl,
        "shuffle": conf.get("spark.sql.shuffle.partitions"),
    }))
    engine.close()
    print(session.sparkContext._jsc is None)
    """
)


@pytest.mark.slow
def test_connect_builds_a_utc_session_it_owns_and_a_warehouse_that_lasts(tmp_path: Path) -> None:
    warehouse = tmp_path / 'ware "house"'
    env = {**os.environ, "TZ": "America/New_York"}  # the engine pins UTC anyway
    expected = {
        "tables": ["p", "t"],
        "at": "2024-03-10T02:30:00+00:00",
        "p": [[1]],
        "tz": "UTC",
        "jvm_tz": "UTC",
        "overwrite": "dynamic",
        "ui": None,
        "shuffle": "2",
    }
    # The second process sees what the first built: the catalog is not in memory.
    for step in ("build", "read"):
        done = subprocess.run(
            [sys.executable, "-c", CONNECT_SCRIPT, str(warehouse), step],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            cwd=tmp_path,  # Derby writes derby.log into the working directory
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        report_line, stopped = done.stdout.strip().splitlines()[-2:]
        assert json.loads(report_line) == expected, step
        assert stopped == "True"  # close() stopped the session it built
    assert (warehouse / "core.db" / "t").is_dir()
