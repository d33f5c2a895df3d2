"""`SparkEngine.connect()` on a local master (a classic session; Spark Connect is tested in
test_engine_spark_connect.py): a session it builds pinned to UTC, which it owns and stops,
and a local warehouse whose catalog outlives the process.

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
        "adaptive": conf.get("spark.sql.adaptive.enabled"),
        # Its WARN (a stack trace per raw view read by pattern) is noise: errors only.
        "sink_log": str(session.sparkContext._jvm.org.apache.logging.log4j.LogManager
                        .getLogger("org.apache.spark.sql.execution.streaming.sinks"
                                   ".FileStreamSink").getLevel()),
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
        "shuffle": "2",  # `conf` overrides the local default (2 per core: 2 on local[1])
        "adaptive": "true",
        "sink_log": "ERROR",
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


# A lake with hundreds of raw files (copied users files, rewritten CSV rows, forced
# reloads of both kinds, and a stray file no batch lists), published to a warehouse whose
# catalog is Hive's in Derby, as `SparkEngine.connect` makes it on a local master. Derby
# refuses a view text over 32,700 characters: the raw views' text must not grow with the
# number of files (200 files made it about 70,000).
LAKE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from datetime import datetime
    from pathlib import Path
    import pyarrow as pa, pyarrow.parquet as pq
    from sqlglot import exp
    from productlens.engines.base import table
    from productlens.engines.spark import SparkEngine
    from productlens.ingest import ingest_paths
    from productlens.ingest.processor import LakeProcessor
    from productlens.lake import publish_raw

    root = Path(sys.argv[1])
    lake = LakeProcessor.open(root / "lake.duckdb", root / "lake.raw", memory_limit="1GB",
                              threads=1)

    def users(folder, prefix, n):
        folder.mkdir(parents=True)
        for i in range(n):  # exactly the contract's columns: copied byte for byte
            pq.write_table(pa.table({
                "user_id": [f"{prefix}{i}a", f"{prefix}{i}b"],
                "signup_ts": pa.array([datetime(2026, 1, 1, 10, i % 60)] * 2, pa.timestamp("us")),
                "country": ["DE", "FR"],
                **{c: pa.array([None, None], pa.string()) for c in
                   ("device", "acquisition_channel", "campaign_id", "segment")},
            }), folder / f"{prefix}-{i:03d}.parquet")
        return sorted(folder.iterdir())

    first = users(root / "in1", "u", int(sys.argv[2]))
    ingest_paths(lake, first, table="users", now=datetime(2026, 11, 22))
    csv = root / "more.csv"
    csv.write_text("user_id,signup_ts,country\\nc1,2026-01-02 11:00:00,NL\\n"
                   "c2,2026-01-02 12:00:00,\\n")
    ingest_paths(lake, [csv], table="users", now=datetime(2026, 11, 22))
    # Forced reloads: one copied file and the CSV replace their earlier rows.
    ingest_paths(lake, [first[0], csv], table="users", force=True, now=datetime(2026, 11, 23))
    folder = root / "lake.raw" / "users"
    listed = lake.fetch_all("SELECT count(*) FROM ops.raw_files")[0][0]
    # A file no batch lists (what a crash between writing and committing leaves).
    pq.write_table(pq.read_table(first[1]), folder / "0000000000000000-00000.parquet")

    def rows(data):
        return sorted(json.dumps(r, default=str) for r in data.to_pylist())

    engine = SparkEngine.connect("local[1]", warehouse_dir=str(root / "warehouse"),
                                 conf={"spark.sql.shuffle.partitions": "1"})
    publish_raw(lake, engine)
    got = engine.fetch_arrow(exp.select("*").from_(table("raw", "users")))
    engine.close()
    print(json.dumps({"listed": listed, "lake": rows(lake.fetch_arrow("SELECT * FROM raw.users")),
                      "warehouse": rows(got)}))
    """
)


@pytest.mark.slow
def test_a_lake_of_many_files_publishes_to_a_derby_catalog(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", LAKE_SCRIPT, str(tmp_path), "200"],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=tmp_path,  # Derby writes derby.log into the working directory
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["listed"] == 200 + 1 + 2  # copies, the CSV's rows, the forced reloads
    # 200 files of 2 users, the CSV's 2; the reloads replace, never add.
    assert len(report["lake"]) == 402
    assert report["warehouse"] == report["lake"]  # lineage included


# A local master's defaults: shuffle partitions two per core (Spark's 200 are for a
# cluster), adaptive execution on; any other master keeps Spark's and the cluster's.
LOCAL_TUNING = [
    ("local", 2),
    ("local[1]", 2),
    ("local[3]", 6),
    ("local[4,2]", 8),
    ("local[*]", 2 * (os.cpu_count() or 1)),
    ("local[*, 3]", 2 * (os.cpu_count() or 1)),
    ("local-cluster[2,1,1024]", None),
    ("spark://host:7077", None),
    ("yarn", None),
    ("sc://localhost:15002", None),
]


@pytest.mark.parametrize(("master", "partitions"), LOCAL_TUNING)
def test_a_local_master_gets_few_shuffle_partitions(master: str, partitions: int | None) -> None:
    from productlens.engines.spark import _local_tuning

    expected = (
        {}
        if partitions is None
        else {
            "spark.sql.shuffle.partitions": str(partitions),
            "spark.sql.adaptive.enabled": "true",
            "spark.sql.adaptive.coalescePartitions.enabled": "true",
        }
    )
    assert _local_tuning(master) == expected
