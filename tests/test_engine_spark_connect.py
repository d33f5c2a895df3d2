"""Spark Connect: `--engine spark` with an `sc://` master runs ingest, build, check and the
metrics through a Spark Connect server and gives DuckDB's warehouse; a server lost
mid-build stops the build at once; wrong masters are refused before any JVM starts.

The server is the test run's own JVM: Spark Connect's service started inside the `spark`
fixture's session (`servers.connect_service_in_session`), so no second JVM starts. The
CLI processes are Spark Connect clients only. Their sessions share the fixture session's
catalog, so the layers are emptied first, as in test_engine_parity.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlglot import exp

from productlens import cli
from productlens.app import SPARK_MASTER_ENV, open_engine
from productlens.config import load_project
from productlens.engines import Engine
from productlens.engines.base import table
from productlens.engines.spark import CONNECT_RETRY_SECONDS, SparkEngine, connect_retry_policy
from productlens.pipeline import Runner
from productlens.simulate import generate, preset
from tests import servers
from tests.conftest import run_cli
from tests.cross_engine import differences

LAYERS = ("raw", "staging", "core", "marts", "ops")
COMPARED = ("core", "marts")
RUN_COLUMNS = {"_batch_id", "_ingested_at"}  # each side ingests the files itself
STEPS = "page_view,product_view,add_to_cart,checkout_start,purchase"
FUNNEL = ["funnel", "--steps", STEPS, "--window", "3d", "--json"]
# How long the lost-server run's client retries (the default's bound is checked below,
# without a server: the schedule is pyspark's own arithmetic).
LOST_RETRY_SECONDS = 3


@dataclass
class ConnectRun:
    """A tiny world's pipeline, once on DuckDB and once through Spark Connect."""

    world: Path
    spark_project: Path
    duckdb_project: Path
    spark_outputs: dict[str, str]
    duckdb_funnel: str
    duckdb_outcomes: list[tuple[str, str, int]]


def _cli(project: Path, master: str, *args: str) -> str:
    # Spark's fixed cost per statement makes a build of the 38 models take minutes on a
    # busy two-core machine, whatever the world's size.
    result = run_cli(
        "--project",
        str(project),
        "--engine",
        "spark",
        *args,
        env={SPARK_MASTER_ENV: master},
        timeout=1800,
    )
    assert result.returncode == 0, f"{args}: {result.stderr[-3000:]}{result.stdout[-2000:]}"
    return result.stdout


def _outcomes(engine: Engine) -> list[tuple[str, str, int]]:
    """The last check's data-test outcomes, as the run log recorded them."""
    query = exp.select("test_name", "status", "n_failing").from_(table("ops", "test_results"))
    return sorted((str(n), str(s), int(f)) for n, s, f in engine.fetch_all(query))


@pytest.fixture(scope="module")
def connect_run(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> ConnectRun:
    root = tmp_path_factory.mktemp("connect")
    world = root / "data"
    generate(preset("ecommerce", users=80, days=10, seed=11), world, workers=1)

    duckdb_project = root / "duckdb"
    duckdb_project.mkdir()
    project = load_project(duckdb_project)
    engine = open_engine(project)
    runner = Runner(project, engine, Console(quiet=True))
    try:
        runner.ingest([world])
        assert runner.build().ok
        runner.check()
    finally:
        runner.finish()
        engine.close()
    duckdb_funnel = run_cli("--project", str(duckdb_project), *FUNNEL)
    assert duckdb_funnel.returncode == 0, duckdb_funnel.stderr
    reference = open_engine(load_project(duckdb_project), read_only=True)
    try:
        duckdb_outcomes = _outcomes(reference)
    finally:
        reference.close()

    for layer in LAYERS:  # the shared catalog's layers start empty
        spark.sql(f"DROP DATABASE IF EXISTS `{layer}` CASCADE")
    spark_project = root / "spark"
    spark_project.mkdir()
    service = servers.connect_service_in_session(spark)
    try:
        outputs = {
            step[0]: _cli(spark_project, service.url, *step)
            for step in (["ingest", str(world)], ["build"], ["check"], FUNNEL)
        }
    finally:
        service.stop()
    return ConnectRun(
        world, spark_project, duckdb_project, outputs, duckdb_funnel.stdout, duckdb_outcomes
    )


@pytest.mark.slow
@pytest.mark.xdist_group("spark")
def test_spark_connect_builds_duckdbs_warehouse(connect_run: ConnectRun, spark: Any) -> None:
    # No JVM in the client: the work ran in the server's (the run's own session).
    assert not (connect_run.spark_project / "spark-warehouse").exists()
    assert "models built" in connect_run.spark_outputs["build"]
    assert json.loads(connect_run.spark_outputs["funnel"]) == json.loads(connect_run.duckdb_funnel)

    built = SparkEngine(spark)  # the same catalog the Connect sessions wrote
    assert _outcomes(built) == connect_run.duckdb_outcomes
    reference = open_engine(load_project(connect_run.duckdb_project), read_only=True)
    found: dict[str, list[str]] = {}
    try:
        for layer in COMPARED:
            names = reference.list_tables(layer)
            assert names, layer
            assert built.list_tables(layer) == names, layer
            for name in names:
                columns = [c for c, _ in reference.columns(layer, name) if c not in RUN_COLUMNS]
                query = exp.select(*(exp.column(c, quoted=True) for c in columns)).from_(
                    table(layer, name)
                )
                if diff := differences(reference.fetch_arrow(query), built.fetch_arrow(query)):
                    found[f"{layer}.{name}"] = diff[:2]
    finally:
        reference.close()
    assert found == {}


@pytest.mark.slow
@pytest.mark.xdist_group("spark")
def test_a_server_lost_mid_build_stops_the_build_at_once(
    connect_run: ConnectRun, spark: Any
) -> None:
    project = connect_run.spark_project
    (project / "productlens.toml").write_text(
        f"[warehouse.spark]\nconnect_retry_seconds = {LOST_RETRY_SECONDS}\n"
    )
    service = servers.connect_service_in_session(spark)  # started again, on a new port
    env = {**os.environ, SPARK_MASTER_ENV: service.url, "COLUMNS": "160", "NO_COLOR": "1"}
    build = subprocess.Popen(
        [sys.executable, "-m", "productlens", "--project", str(project), "--engine", "spark",
         "build"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        assert build.stdout is not None
        started = 0
        for line in build.stdout:  # one "building <table>" line as each model starts
            started += "building" in line
            if started == 3:  # two models built, the third under way
                break
        assert started == 3, "the build ended before its third model"
        service.stop()
        lost_at = time.monotonic()
        rest, stderr = build.communicate(timeout=120)
        took = time.monotonic() - lost_at
    finally:
        service.stop()
        if build.poll() is None:
            build.kill()
    assert build.returncode == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error [engine]: lost the Spark Connect server"), lines[0]
    # Stopped at once: at most the model in flight when the server went (whose next
    # statement found no server) started after it, and no model failed one by one.
    assert rest.count("building") <= 1, rest
    assert "failed" not in rest, rest
    assert "skipped" not in rest, rest
    # The client's retries are bounded (pyspark's default would wait about ten minutes).
    assert took < LOST_RETRY_SECONDS + 20, took


def test_the_default_connect_retries_end_within_25_seconds() -> None:
    state = connect_retry_policy(CONNECT_RETRY_SECONDS).to_state()
    waits = []
    while (wait := state.next_attempt()) is not None:  # milliseconds, as pyspark sleeps them
        waits.append(wait)
    assert 15_000 < sum(waits) <= CONNECT_RETRY_SECONDS * 1000 <= 25_000
    assert waits[0] == 100
    assert max(waits) == 5000
    assert len(waits) > 5  # a brief outage (a server restart) is ridden out, not fatal


@pytest.fixture
def refused_port() -> int:
    return servers.free_port()  # nothing listens there


@pytest.mark.parametrize(
    ("master", "env", "expected"),
    [
        ("local[abc]", {}, "not a Spark master URL: 'local[abc]'"),
        ("yarn", {"HADOOP_CONF_DIR": "", "YARN_CONF_DIR": ""}, "set HADOOP_CONF_DIR"),
        ("spark://127.0.0.1:{port}", {}, "cannot reach the Spark server at 127.0.0.1:{port}"),
        ("sc://127.0.0.1:{port}", {}, "cannot reach the Spark server at 127.0.0.1:{port}"),
        ("local[1]", {"warehouse_dir": "a-file/tables"}, "cannot create the Spark warehouse"),
    ],
)
def test_wrong_masters_are_refused_in_a_line_before_a_jvm_starts(
    master: str,
    env: dict[str, str],
    expected: str,
    refused_port: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "a-file").write_text("a file, not a folder")
    folder = env.pop("warehouse_dir", "tables")
    (tmp_path / "productlens.toml").write_text(f'[warehouse.spark]\nwarehouse_dir = "{folder}"\n')
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(SPARK_MASTER_ENV, master.format(port=refused_port))
    monkeypatch.setattr(cli.err_console, "_width", 500)  # a line is not wrapped at 80
    from pyspark.sql import SparkSession

    before = SparkSession.getActiveSession()  # the run's own, on the Spark tests' worker
    started = time.monotonic()
    code = cli.main(["--project", str(tmp_path), "--engine", "spark", "build"])
    took = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expected.format(port=refused_port) in lines[0], err
    assert lines[0].startswith("error [engine]:"), lines[0]
    assert took < 10, took
    # Nothing of Spark's was started or written: no session, no catalog, no log.
    assert SparkSession.getActiveSession() is before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "productlens.toml"]
