"""Shared fixtures: throwaway projects, a CLI runner, and small warehouses."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from hypothesis import settings
from sqlglot import exp

from productlens.app import open_engine
from productlens.config import load_project
from productlens.engines import LAYERS, DuckDBEngine
from productlens.ingest.processor import LakeProcessor
from productlens.simulate import generate
from tests import cross_engine, servers

# Local runs explore new inputs each time; CI replays a fixed set, so a landing never
# depends on what the fuzzer happened to draw. Inputs found locally are pinned with
# @example in the tests themselves. The profile is Hypothesis's own "ci" (no example
# database, no too_slow health check on a loaded machine), derandomized; it is loaded
# when CI is set or by `--hypothesis-profile=ci` (.ci/run passes it).
settings.register_profile("ci", settings.get_profile("ci"), derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

SMALL_WORLD = ["--users", "400", "--days", "14", "--seed", "7"]
SAAS_WORLD = ["--scenario", "saas", "--users", "400", "--days", "40", "--seed", "7"]


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> CliResult:
    """Run `python -m productlens ARGS` as a real subprocess, without a terminal (`env`:
    variables on top of this process's)."""
    proc = subprocess.run(
        [sys.executable, "-m", "productlens", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {}), "COLUMNS": "160", "NO_COLOR": "1"},
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    return root


def q(sql: str, *params: object) -> exp.Expr:
    """A statement written in the source dialect (DuckDB's), for the engine; each `?`
    becomes the next of `params` as a SQL literal (dates and timestamps typed)."""
    parsed = sqlglot.parse_one(sql, read="duckdb")
    assert parsed is not None
    values = iter(params)

    def literal(node: exp.Expr) -> exp.Expr:
        if not isinstance(node, exp.Placeholder):
            return node
        value = next(values)
        if isinstance(value, datetime):
            return exp.cast(exp.Literal.string(value.isoformat(sep=" ")), "TIMESTAMP")
        if isinstance(value, date):
            return exp.cast(exp.Literal.string(value.isoformat()), "DATE")
        return exp.convert(value)

    result = parsed.transform(literal)
    assert next(values, None) is None, "more params than placeholders"
    return result


def warehouse_engine(
    path: Path, memory_limit: str = "6GB", threads: int | None = None, read_only: bool = False
) -> DuckDBEngine:
    """A DuckDB warehouse as the app opens one: every layer's schema, raw files found
    relative to the warehouse's folder."""
    eng = DuckDBEngine(
        path,
        memory_limit=memory_limit,
        threads=threads,
        read_only=read_only,
        search_path=path.parent,
    )
    if not read_only:
        for layer in LAYERS:
            eng.ensure_schema(layer)
    return eng


@pytest.fixture(scope="module")
def shared_engine(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[DuckDBEngine]:
    """One small warehouse per test module for every example (hypothesis runs many inside
    one test)."""
    path = Path(tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])) / "w.duckdb"
    eng = warehouse_engine(path, memory_limit="1GB", threads=1)
    yield eng
    eng.close()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[DuckDBEngine]:
    eng = warehouse_engine(tmp_path / "w.duckdb", memory_limit="1GB", threads=1)
    yield eng
    eng.close()


def _demo_run(tmp_path_factory: pytest.TempPathFactory, name: str, world: Sequence[str]) -> Path:
    """`productlens demo` into a new folder; its printed summary kept beside it."""
    root = tmp_path_factory.mktemp(name)
    result = run_cli("--project", str(root), "demo", *world)
    assert result.returncode == 0, result.stderr + result.stdout
    (root / "demo_stdout.txt").write_text(result.stdout)
    return root


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small demo run shared by the read-only end-to-end tests."""
    return _demo_run(tmp_path_factory, "demo", SMALL_WORLD)


@pytest.fixture(scope="session")
def saas_demo_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small demo run of the SaaS world (five weeks: week-4 retention is observed)."""
    return _demo_run(tmp_path_factory, "saas_demo", SAAS_WORLD)


# A world whose orders show customers dropping out, so marts.customer_value fits (the demo's
# two weeks of orders do not: no_dropout_seen). Generated, ingested and built in-process.
FITTED_WORLD = ["--users", "300", "--days", "60", "--seed", "7"]


@pytest.fixture(scope="session")
def fitted_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One built e-commerce world of two months where the customer-value models fit."""
    from productlens.cli import main

    root = tmp_path_factory.mktemp("fitted")
    data = root / "data"
    steps = (
        ("generate", *FITTED_WORLD, "--workers", "1", "--out", str(data)),
        ("ingest", str(data)),
        ("build",),
    )
    for step in steps:
        assert main(["--project", str(root), *step]) == 0, step
    return root


def open_readonly(root: Path) -> DuckDBEngine:
    engine = open_engine(load_project(root), read_only=True)
    assert isinstance(engine, DuckDBEngine)
    return engine


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[LakeProcessor]:
    """Ingestion's processor on a lake of its own (`w.duckdb` beside `w.raw/`)."""
    processor = open_lake(tmp_path / "w.duckdb")
    yield processor
    processor.close()


def open_lake(catalog: Path, *, memory_limit: str = "1GB", threads: int = 1) -> LakeProcessor:
    """The lake whose catalog is `catalog` (a DuckDB warehouse file, or a lake's own),
    its raw files beside it, as ingestion opens it."""
    return LakeProcessor.open(
        catalog, catalog.with_suffix(".raw"), memory_limit=memory_limit, threads=threads
    )


def open_project_lake(root: Path) -> LakeProcessor:
    """A project's lake, after a command has finished with it."""
    return open_lake(load_project(root).warehouse_path)


def lake_of(engine: DuckDBEngine) -> LakeProcessor:
    """Ingestion's processor sharing a DuckDB warehouse's connection (its file is the
    lake's catalog, its raw files beside it)."""
    return LakeProcessor.shared(engine.connection, engine.path.with_suffix(".raw"))


def run_stats(
    stdin: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    """Run `productlens stats --json` in-process with `stdin`; exit code, stdout, stderr."""
    from productlens.cli import main

    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["stats", "--json"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _keep_main_module() -> Iterator[None]:
    """Streamlit's AppTest runs a page as `__main__` (it replaces `sys.modules["__main__"]`
    and leaves it so). A process pool started later in the same worker (the simulator's)
    spawns children that re-run `__main__`'s file: a `from_function` page's temporary
    script, which fails there, and the pool breaks. Each test gets the worker's own back."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


# --- real servers, one per test process --------------------------------------------------
# Spark tests carry `@pytest.mark.xdist_group("spark")`, and the suite runs with
# `--dist loadgroup`, so one worker owns the one Spark session of a run (the `spark`
# fixture fails on a second worker).


@pytest.fixture(scope="session")
def pg_server() -> Iterator[servers.PostgresServer]:
    """A throwaway PostgreSQL server for this test process."""
    with servers.postgres_server() as server:
        yield server


@pytest.fixture
def pg_dsn(pg_server: servers.PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the throwaway server, for one test."""
    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40] + "_"
    name += format(abs(hash(request.node.nodeid)) % 10**8, "d")
    return pg_server.create_database(name)


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The one local Spark session of this test run (under xdist: of its one worker that
    runs the `spark` group; another worker asking for one fails)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is not None:
        # A worker's temp folder is `<run's folder>/popen-<worker>`.
        servers.claim_spark(tmp_path_factory.getbasetemp().parent, worker)
    session = servers.spark_session(tmp_path_factory.mktemp("spark-warehouse"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def parity_world(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The engine parity test's world of a scenario (`cross_engine.WORLDS`), generated once
    per run in an oddly named folder (`cross_engine.ODD`) and shared by its users."""
    made: dict[str, Path] = {}

    def world(scenario: str) -> Path:
        if scenario not in made:
            folder = tmp_path_factory.mktemp(f"world-{scenario}") / cross_engine.ODD
            generate(cross_engine.WORLDS[scenario], folder / "data", workers=1)
            (folder / "scenario").write_text(scenario)
            made[scenario] = folder
        return made[scenario]

    return world


@pytest.fixture(scope="session")
def spark_warehouse(spark: Any, parity_world: Callable[[str], Path]) -> cross_engine.SparkWarehouse:
    """The run's one Spark build: the e-commerce parity world through ingest, build and
    check on the `spark` session, its layers in a folder with quotes and a space (Spark
    refuses glob characters there: see test_engine_paths). The parity test compares it
    with DuckDB's; the dashboard's Spark tests read it. Tests that drop the session's
    layers (test_engine_spark_connect) run after both; `check_intact` says if not."""
    from productlens.engines.spark import SparkEngine

    world = parity_world("ecommerce")
    for layer in LAYERS:  # the session's layers start empty
        spark.sql(f"DROP DATABASE IF EXISTS `{layer}` CASCADE")
        where = exp.Literal.string(str(world.parent / cross_engine.SPARK_TABLES / f"{layer}.db"))
        spark.sql(f"CREATE DATABASE `{layer}` LOCATION {where.sql(dialect='spark')}")
    project = cross_engine.parity_project(world / "spark", "ecommerce", "spark")
    engine = SparkEngine(spark)
    outcomes = cross_engine.run_pipeline(project, engine, world / "data")
    return cross_engine.SparkWarehouse(
        world, project.root, outcomes, cross_engine.fingerprint(engine)
    )


@pytest.fixture(scope="session")
def s3() -> Iterator[servers.S3Server]:
    """moto's S3 server on loopback for this test process."""
    with servers.s3_server() as server:
        yield server


# Figures a test measures and wants seen (`record_property("measured", text)`), printed at
# the end of the run: with xdist a test's own output never reaches the terminal.
_MEASURED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _MEASURED.extend(str(v) for k, v in report.user_properties if k == "measured")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for text in _MEASURED:
        terminalreporter.write_sep("-", "measured")
        terminalreporter.write_line(text)
