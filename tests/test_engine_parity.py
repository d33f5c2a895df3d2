"""The whole pipeline on PostgreSQL and on Spark gives DuckDB's warehouse, row for row.

One small simulated world (both scenarios) goes through the real stages on each engine:
ingestion into the lake (DuckDB, the embedded processor), publishing the raw layer to the
engine, building every model, the data tests. Every staging, core and mart table is then
compared with DuckDB's as a multiset of rows (floats to 1e-9 relative, timestamps exact,
NULLs equal), and the data tests must give the same outcomes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlglot import exp

from productlens.app import open_engine
from productlens.config import load_project
from productlens.engines import Engine
from productlens.engines.base import table
from productlens.pipeline import Runner
from productlens.simulate import generate, preset
from tests.cross_engine import differences

LAYERS = ("raw", "staging", "core", "marts")
RUN_COLUMNS = {"_batch_id", "_ingested_at"}
# Nested columns of the lake's catalog reach other engines as JSON text; test_lake parses
# them back and compares them with the lake's values.
NESTED = {"reasons", "reason_history"}
WORLDS = {
    "ecommerce": preset("ecommerce", users=250, days=21, seed=5),
    "saas": preset("saas", users=250, days=35, seed=6),
}


@pytest.fixture(scope="module", params=sorted(WORLDS))
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp(f"world-{request.param}")
    generate(WORLDS[request.param], folder / "data", workers=1)
    (folder / "scenario").write_text(request.param)
    return folder


def _project(root: Path, scenario: str, engine: str) -> Any:
    root.mkdir(parents=True, exist_ok=True)
    (root / "productlens.toml").write_text(f'[simulate]\nscenario = "{scenario}"\n')
    return load_project(root, engine=engine)  # type: ignore[arg-type]


def run_pipeline(project: Any, engine: Engine, data: Path) -> list[tuple[str, str, str]]:
    """ingest -> publish -> build -> check on `engine`; the data tests' outcomes."""
    runner = Runner(project, engine, Console(quiet=True))
    try:
        runner.ingest([data])
        built = runner.build()
        assert built.ok, built.failed
        outcomes = runner.check()
    finally:
        runner.finish()
    return sorted((o.test.name, o.status, str(o.n_failing)) for o in outcomes)


@pytest.fixture(scope="module")
def duckdb_side(world: Path) -> Iterator[tuple[Engine, list[tuple[str, str, str]]]]:
    scenario = (world / "scenario").read_text()
    project = _project(world / "duckdb", scenario, "duckdb")
    engine = open_engine(project)
    outcomes = run_pipeline(project, engine, world / "data")
    yield engine, outcomes
    engine.close()


def compare(expected: Engine, actual: Engine) -> dict[str, list[str]]:
    """Every table of the layers, DuckDB's against the other engine's."""
    found: dict[str, list[str]] = {}
    for layer in LAYERS:
        names = expected.list_tables(layer)
        assert actual.list_tables(layer) == names, layer
        for name in names:
            # Each engine's run ingests the files itself: batch ids and load times differ.
            columns = [c for c, _ in expected.columns(layer, name) if c not in RUN_COLUMNS | NESTED]
            query = exp.select(*(exp.column(c, quoted=True) for c in columns)).from_(
                table(layer, name)
            )
            diff = differences(expected.fetch_arrow(query), actual.fetch_arrow(query))
            if diff:
                found[f"{layer}.{name}"] = diff[:2]
    return found


def test_postgres_builds_duckdbs_warehouse(
    world: Path, duckdb_side: tuple[Engine, list[tuple[str, str, str]]], pg_dsn: str
) -> None:
    from productlens.engines.postgres import PostgresEngine

    reference, reference_outcomes = duckdb_side
    project = _project(world / "postgres", (world / "scenario").read_text(), "postgres")
    engine = PostgresEngine(pg_dsn)
    try:
        for layer in (*LAYERS, "ops"):
            engine.ensure_schema(layer)
        outcomes = run_pipeline(project, engine, world / "data")
        assert compare(reference, engine) == {}
        assert outcomes == reference_outcomes
    finally:
        engine.close()


@pytest.mark.xdist_group("spark")
def test_spark_builds_duckdbs_warehouse(
    world: Path, duckdb_side: tuple[Engine, list[tuple[str, str, str]]], spark: Any
) -> None:
    from productlens.engines.spark import SparkEngine

    reference, reference_outcomes = duckdb_side
    scenario = (world / "scenario").read_text()
    project = _project(world / "spark", scenario, "spark")
    for layer in (*LAYERS, "ops"):
        spark.sql(f"DROP DATABASE IF EXISTS `{layer}` CASCADE")
    engine = SparkEngine(spark)
    try:
        for layer in (*LAYERS, "ops"):
            engine.ensure_schema(layer)
        outcomes = run_pipeline(project, engine, world / "data")
        assert compare(reference, engine) == {}
        assert outcomes == reference_outcomes
    finally:
        engine.close()
