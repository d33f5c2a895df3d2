"""Every model runs unchanged on PostgreSQL and Spark and gives DuckDB's rows.

A small simulated world (each scenario) is ingested and built on DuckDB; its raw tables
(the raw views and the quarantine) are copied into a real PostgreSQL and a real Spark;
every model's query, transpiled by `productlens.dialects` with the upstream tables'
columns read from the target's catalog, is built there in build order (CREATE TABLE AS);
and every model's rows are compared with DuckDB's: the same multiset of rows, floats to
1e-9 relative, timestamps exact, NULLs equal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlglot import exp

from productlens import modeling
from productlens.config import ProjectConfig
from productlens.engines import DuckDBEngine
from productlens.ingest import ingest_paths
from productlens.runlog import RunLog
from productlens.simulate import generate, preset
from tests import cross_engine as ce

NOW = datetime(2026, 11, 22, tzinfo=UTC)
WORLDS = {
    "ecommerce": {"users": 400, "days": 14, "seed": 7},
    "saas": {"users": 300, "days": 14, "seed": 7},
}
SOURCES = ("raw",)


@dataclass
class World:
    scenario: str
    engine: DuckDBEngine
    graph: modeling.ModelGraph
    schema: ce.Schema
    expected: dict[str, pa.Table]


@pytest.fixture(scope="module", params=sorted(WORLDS))
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    scenario = request.param
    folder = tmp_path_factory.mktemp(f"parity-{scenario}")
    generate(preset(scenario, **WORLDS[scenario]), folder / "data", workers=1)
    engine = DuckDBEngine(folder / "w.duckdb", memory_limit="1GB", threads=1)
    ingest_paths(engine, [folder / "data"], now=NOW)
    config = ProjectConfig.model_validate({"simulate": {"scenario": scenario}})
    graph = modeling.discover(config)
    built = modeling.build(engine, graph, RunLog(engine))
    assert built.ok, built.failed
    expected = {
        m.name: ce.duck_arrow(engine, ce.select_all(m.layer, m.name)) for m in graph
    }
    schema = ce.duck_schema(engine, SOURCES)
    assert {"events", "orders", "quarantine"} <= set(schema["raw"])
    yield World(scenario, engine, graph, schema, expected)
    engine.close()


def build_elsewhere(
    world: World,
    dialect: str,
    execute: Callable[[exp.Expression], None],
    columns: Callable[[str, str], dict[str, exp.DataType]],
    fetch: Callable[[exp.Query, pa.Schema], pa.Table],
) -> dict[str, list[str]]:
    """Build every model on the target in build order; per model, how its rows differ
    from DuckDB's (or why it failed)."""
    known: dict[str, dict[str, dict[str, Any]]] = {
        s: {t: columns(s, t) for t in tables} for s, tables in world.schema.items()
    }
    problems: dict[str, list[str]] = {}
    for model in world.graph:
        query = model.query(dialect, known)
        target = ce.quoted(model.layer, model.name)
        try:
            execute(exp.Create(this=target, kind="TABLE", expression=query))
        except Exception as exc:  # noqa: BLE001 - reported per model below
            problems[model.name] = [f"failed: {str(exc).splitlines()[0]}"]
            break
        known.setdefault(model.layer, {})[model.name] = columns(model.layer, model.name)
        expected = world.expected[model.name]
        got = fetch(ce.select_all(model.layer, model.name), expected.schema)
        if found := ce.differences(expected, got):
            problems[model.name] = found
    return problems


def test_every_model_matches_duckdb_on_postgres(world: World, pg_dsn: str) -> None:
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as con:
        ce.pg_copy(con, world.engine, world.schema, "raw")
        for layer in modeling.MODEL_LAYERS:
            con.execute(
                exp.Create(this=exp.to_identifier(layer, quoted=True), kind="SCHEMA").sql(
                    dialect="postgres"
                )
            )
        problems = build_elsewhere(
            world,
            "postgres",
            lambda statement: con.execute(statement.sql(dialect="postgres")),
            lambda schema, name: ce.pg_columns(con, schema, name),
            lambda query, like: ce.pg_arrow(con, query, like),
        )
    assert problems == {}
    assert len(world.expected) == len(world.graph) > 30


@pytest.mark.xdist_group("spark")
def test_every_model_matches_duckdb_on_spark(world: World, spark: Any) -> None:
    layers = ("raw", *modeling.MODEL_LAYERS)
    ce.spark_drop_schemas(spark, layers)
    try:
        ce.spark_copy(spark, world.engine, world.schema, "raw")
        for layer in modeling.MODEL_LAYERS:
            spark.sql(exp.Create(this=exp.to_identifier(layer), kind="SCHEMA").sql("spark"))
        problems = build_elsewhere(
            world,
            "spark",
            lambda statement: spark.sql(statement.sql(dialect="spark")),
            lambda schema, name: ce.spark_columns(spark, schema, name),
            lambda query, _like: ce.spark_arrow(spark, query),
        )
    finally:
        ce.spark_drop_schemas(spark, layers)
    assert problems == {}


def test_the_comparison_sees_a_changed_value(world: World) -> None:
    """The parity check is not blind: one float nudged past 1e-9, one NULL, one row
    fewer are each a difference; a nudge within 1e-9 is none."""
    table = world.expected["active_users_daily"]
    revenue = table.column("stickiness").to_pylist()
    index = next(i for i, v in enumerate(revenue) if v)

    def with_revenue(value: float | None) -> pa.Table:
        changed = [*revenue[:index], value, *revenue[index + 1 :]]
        position = table.column_names.index("stickiness")
        return table.set_column(position, "stickiness", pa.array(changed, pa.float64()))

    assert ce.differences(table, with_revenue(revenue[index] * (1 + 1e-12))) == []
    assert ce.differences(table, with_revenue(revenue[index] * (1 + 1e-7))) != []
    assert ce.differences(table, with_revenue(None)) != []
    assert ce.differences(table, table.slice(1)) != []
