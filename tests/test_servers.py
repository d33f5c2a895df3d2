"""The test servers themselves start, answer and keep UTC."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import servers


def test_postgres_answers_in_utc(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as con:
        row = con.execute("SELECT version(), current_setting('TimeZone')").fetchone()
    assert row is not None
    assert "PostgreSQL 15" in row[0]
    assert row[1] == "UTC"


def test_each_test_gets_its_own_database(pg_server: servers.PostgresServer) -> None:
    first = pg_server.create_database("separate_a")
    second = pg_server.create_database("separate_b")
    with psycopg.connect(first, autocommit=True) as con:
        con.execute("CREATE TABLE only_here (x int)")
    with psycopg.connect(second) as con:
        found = con.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'only_here'")
        assert found.fetchone() == (0,)


@pytest.mark.xdist_group("spark")
def test_spark_session_is_pinned_to_utc(spark: Any) -> None:
    rows = spark.sql(
        "SELECT current_timezone() AS tz, "
        "CAST(CAST('2024-03-10 10:00:00' AS TIMESTAMP) AS STRING) AS ts"
    ).collect()
    assert rows[0]["tz"] == "UTC"
    assert rows[0]["ts"] == "2024-03-10 10:00:00"
    # The driver JVM was started with the test's options (UTC, and the JIT and collector
    # settings for a short-lived JVM), not handed over from elsewhere without them.
    jvm = spark.sparkContext._jvm
    arguments = list(
        jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()
    )
    assert set(servers.TEST_JVM_OPTIONS.split()) <= set(arguments)
    assert jvm.java.util.TimeZone.getDefault().getID() == "UTC"


def test_a_second_worker_cannot_start_spark(tmp_path: Path) -> None:
    servers.claim_spark(tmp_path, "gw0")
    servers.claim_spark(tmp_path, "gw0")  # the owner's own later tests
    with pytest.raises(pytest.fail.Exception, match=r"gw1 is starting a second Spark.*gw0"):
        servers.claim_spark(tmp_path, "gw1")
    assert (tmp_path / servers.SPARK_OWNER).read_text() == "gw0"


@pytest.mark.xdist_group("spark")
def test_the_spark_fixture_claims_the_run(
    spark: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Under xdist the session's worker is recorded in the run's folder, where every other
    worker of the run looks (the folder above its own `popen-<worker>`)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    base = tmp_path_factory.getbasetemp()
    if worker is None:
        assert not (base.parent / servers.SPARK_OWNER).exists()
    else:
        assert base.name == f"popen-{worker}"
        assert (base.parent / servers.SPARK_OWNER).read_text() == worker


def test_s3_server_stores_objects(s3: servers.S3Server) -> None:
    s3.create_bucket("smoke")
    client = s3.client()
    client.put_object(Bucket="smoke", Key="a/b.txt", Body=b"hello")
    body = client.get_object(Bucket="smoke", Key="a/b.txt")["Body"].read()
    assert body == b"hello"
