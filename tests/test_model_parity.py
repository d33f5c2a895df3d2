"""Every model, and every metrics and experiment query over the models, runs unchanged on
PostgreSQL and Spark and gives DuckDB's rows.

A small simulated world (each scenario) is ingested and built on DuckDB; its raw tables
(the raw views and the quarantine) are copied into a real PostgreSQL and a real Spark;
every model's query, transpiled by `productlens.dialects` with the upstream tables'
columns read from the target's catalog, is built there in build order (CREATE TABLE AS);
and every model's rows are compared with DuckDB's: the same multiset of rows, floats to
1e-9 relative, timestamps exact, NULLs equal. Then the metrics queries (funnel, retention,
activity, lifecycle) and the experiment queries (per-variant statistics, by device, by day,
the regression rows) run on the built warehouse through the same transpile path and are
compared with DuckDB's answers the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from sqlglot import exp

from productlens import dialects, modeling
from productlens.config import ProjectConfig
from productlens.engines import DuckDBEngine
from productlens.experiments.data import regression_query, stats_query
from productlens.experiments.metric_defs import DEFAULT_METRICS
from productlens.ingest import ingest_paths
from productlens.metrics.activity import activity_query
from productlens.metrics.funnel_sql import FunnelSpec, funnel_query
from productlens.metrics.lifecycle import lifecycle_query
from productlens.metrics.retention import RetentionSpec, cohort_query
from productlens.metrics.scope import Scope
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
    queries: dict[str, exp.Query]  # metrics and experiment queries over the built warehouse
    answers: dict[str, pa.Table]  # their DuckDB results


def downstream_queries(config: ProjectConfig, experiment_ids: list[str]) -> dict[str, exp.Query]:
    """The parameterized metrics and experiment queries, as the commands build them."""
    steps = config.funnel_steps()
    zoned = Scope.parse(timezone="America/Los_Angeles", week_start="sunday")
    funnel = FunnelSpec(
        steps=tuple(steps[:3]),
        window_s=86400,
        order="ordered",
        exclusions=(),
        per=None,
        count_by="user",
        by=None,
        attribution="first_touch",
    )
    queries: dict[str, exp.Query] = {
        "funnel": funnel_query(Scope(), funnel),
        "funnel_by_device_per_day_zoned": funnel_query(
            zoned, replace(funnel, by="device", per="day")
        ),
        "funnel_unordered_sessions": funnel_query(
            Scope(), replace(funnel, order="unordered", count_by="session")
        ),
        "retention_weekly": cohort_query(Scope(), RetentionSpec(start="signup")),
        "retention_monthly_zoned": cohort_query(
            zoned, RetentionSpec(start="signup", period="month", mode="first_time")
        ),
        "activity": activity_query(Scope()),
        "activity_by_device": activity_query(Scope(), by="device"),
        "lifecycle_week": lifecycle_query(Scope(), "week"),
        "lifecycle_month_zoned": lifecycle_query(zoned, "month"),
    }
    metrics = DEFAULT_METRICS[config.simulate.scenario]
    for experiment_id in experiment_ids:
        queries[f"experiment_stats_{experiment_id}"] = stats_query(experiment_id, metrics)
        queries[f"experiment_stats_by_device_{experiment_id}"] = stats_query(
            experiment_id, metrics, dimension="device"
        )
        queries[f"experiment_daily_{experiment_id}"] = stats_query(
            experiment_id, metrics, by_day=True
        )
        queries[f"regression_{experiment_id}"] = regression_query(experiment_id)
    return queries


@pytest.fixture(scope="module", params=sorted(WORLDS))
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    scenario = request.param
    folder = tmp_path_factory.mktemp(f"parity-{scenario}")
    generate(preset(scenario, **WORLDS[scenario]), folder / "data", workers=1)
    engine = DuckDBEngine(folder / "w.duckdb", memory_limit="1GB", threads=1)
    ingest_paths(engine, [folder / "data"], now=NOW)
    config = ProjectConfig.model_validate({"simulate": {"scenario": scenario}})
    graph = modeling.discover(config)
    built = modeling.build(engine, graph, RunLog(engine))
    assert built.ok, built.failed
    expected = {m.name: ce.duck_arrow(engine, ce.select_all(m.layer, m.name)) for m in graph}
    schema = ce.duck_schema(engine, SOURCES)
    assert {"events", "orders", "quarantine"} <= set(schema["raw"])
    experiments = ce.duck_arrow(
        engine, exp.select("experiment_id").from_(ce.quoted("staging", "stg_experiments"))
    )
    queries = downstream_queries(config, sorted(experiments.column("experiment_id").to_pylist()))
    answers = {name: ce.duck_arrow(engine, query) for name, query in queries.items()}
    assert sum(table.num_rows > 0 for table in answers.values()) == len(answers)
    yield World(scenario, engine, graph, schema, expected, queries, answers)
    engine.close()


def build_elsewhere(
    world: World,
    dialect: str,
    execute: Callable[[exp.Expression], object],
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
    if problems:
        return problems
    for name, query in world.queries.items():
        answer = world.answers[name]
        try:
            got = fetch(dialects.transpile(query, dialect, known), answer.schema)
        except Exception as exc:  # noqa: BLE001 - reported per query below
            problems[name] = [f"failed: {str(exc).splitlines()[0]}"]
            continue
        if found := ce.differences(answer, got):
            problems[name] = found
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
