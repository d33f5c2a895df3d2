"""The whole pipeline on PostgreSQL and on Spark gives DuckDB's warehouse, row for row.

One small simulated world (both scenarios) goes through the real stages on each engine:
ingestion into the lake (DuckDB, the embedded processor), publishing the raw layer to the
engine, building every model, the data tests. Every raw, staging, core and mart table is
then compared with DuckDB's as a multiset of rows (floats to 1e-9 relative, timestamps
exact, NULLs equal), the data tests must give the same outcomes, and so must the
parameterized metrics and experiment queries run on the built warehouse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlglot import exp

from productlens.app import open_engine
from productlens.config import ProjectConfig
from productlens.engines import Engine
from productlens.engines.base import table
from productlens.experiments.data import regression_query, stats_query
from productlens.experiments.metric_defs import DEFAULT_METRICS
from productlens.metrics.activity import activity_query
from productlens.metrics.funnel_sql import FunnelSpec, funnel_query
from productlens.metrics.lifecycle import lifecycle_query
from productlens.metrics.retention import RetentionSpec, cohort_query
from productlens.metrics.scope import Scope
from tests.cross_engine import (
    WORLDS,
    SparkWarehouse,
    differences,
    run_pipeline,
)
from tests.cross_engine import parity_project as _project

__all__ = ["_project", "run_pipeline"]  # shared with test_object_storage

LAYERS = ("raw", "staging", "core", "marts")
RUN_COLUMNS = {"_batch_id", "_ingested_at"}
# Nested columns of the lake's catalog reach other engines as JSON text; test_lake parses
# them back and compares them with the lake's values.
NESTED = {"reasons", "reason_history"}


@pytest.fixture(scope="module", params=sorted(WORLDS))
def world(request: pytest.FixtureRequest, parity_world: Callable[[str], Path]) -> Path:
    """The scenario's world, generated once per run (the Spark build shares it)."""
    return parity_world(request.param)


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


@pytest.fixture(scope="module")
def duckdb_side(
    world: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Engine, list[tuple[str, str, str]]]]:
    scenario = (world / "scenario").read_text()
    # A folder per test module: the world is the run's, and test_object_storage builds
    # its own DuckDB side of it too.
    project = _project(world / f"duckdb-{request.module.__name__}", scenario, "duckdb")
    engine = open_engine(project)
    outcomes = run_pipeline(project, engine, world / "data")
    yield engine, outcomes
    engine.close()


def queries_for(engine: Engine, scenario: str) -> dict[str, exp.Query]:
    config = ProjectConfig.model_validate({"simulate": {"scenario": scenario}})
    experiments = engine.fetch_all(
        exp.select("experiment_id").from_(table("staging", "stg_experiments"))
    )
    return downstream_queries(config, sorted(str(row[0]) for row in experiments))


def compare(
    expected: Engine, actual: Engine, scenario: str, skip: frozenset[str] = frozenset()
) -> dict[str, list[str]]:
    """Every table of the layers and every downstream query, DuckDB's against the other
    engine's (without the columns in `skip`)."""
    found: dict[str, list[str]] = {}
    for name, query in queries_for(expected, scenario).items():
        answer = expected.fetch_arrow(query)
        assert answer.num_rows > 0, name  # a query with no rows would prove nothing
        if diff := differences(answer, actual.fetch_arrow(query)):
            found[name] = diff[:2]
    for layer in LAYERS:
        names = expected.list_tables(layer)
        assert actual.list_tables(layer) == names, layer
        for name in names:
            # Each engine's run ingests the files itself: batch ids and load times differ.
            left_out = RUN_COLUMNS | NESTED | skip
            columns = [c for c, _ in expected.columns(layer, name) if c not in left_out]
            query = exp.select(*(exp.column(c, quoted=True) for c in columns)).from_(
                table(layer, name)
            )
            diff = differences(expected.fetch_arrow(query), actual.fetch_arrow(query))
            if diff:
                found[f"{layer}.{name}"] = diff[:2]
    return found


def assert_same_warehouse(
    world: Path, duckdb_side: tuple[Engine, list[tuple[str, str, str]]], engine: Engine
) -> None:
    """Run the pipeline on `engine` and compare its warehouse and data tests with DuckDB's."""
    reference, reference_outcomes = duckdb_side
    scenario = (world / "scenario").read_text()
    project = _project(world / engine.name, scenario, engine.name)
    try:
        for layer in (*LAYERS, "ops"):
            engine.ensure_schema(layer)
        outcomes = run_pipeline(project, engine, world / "data")
        assert compare(reference, engine, scenario) == {}
        assert outcomes == reference_outcomes
    finally:
        engine.close()


def test_postgres_builds_duckdbs_warehouse(
    world: Path, duckdb_side: tuple[Engine, list[tuple[str, str, str]]], pg_dsn: str
) -> None:
    from productlens.engines.postgres import PostgresEngine

    assert_same_warehouse(world, duckdb_side, PostgresEngine(pg_dsn))


# Spark builds the demo's world only: each model costs it seconds whatever its size, and
# the suite has one Spark session; the SaaS world is proven on PostgreSQL. The build is
# the run's `spark_warehouse` (conftest), which the dashboard's Spark tests read too.
@pytest.mark.xdist_group("spark")
@pytest.mark.parametrize("world", ["ecommerce"], indirect=True)
def test_spark_builds_duckdbs_warehouse(
    world: Path,
    duckdb_side: tuple[Engine, list[tuple[str, str, str]]],
    spark_warehouse: SparkWarehouse,
    spark: Any,
) -> None:
    from productlens.engines.spark import SparkEngine

    assert spark_warehouse.world == world
    engine = SparkEngine(spark)
    spark_warehouse.check_intact(engine)
    reference, reference_outcomes = duckdb_side
    assert compare(reference, engine, "ecommerce") == {}
    assert spark_warehouse.outcomes == reference_outcomes


def test_the_comparison_sees_a_changed_value(
    duckdb_side: tuple[Engine, list[tuple[str, str, str]]],
) -> None:
    """The parity check is not blind: one float nudged past 1e-9, one NULL, one row
    fewer are each a difference; a nudge within 1e-9 is none."""
    marts = duckdb_side[0].fetch_arrow(exp.select("*").from_(table("marts", "active_users_daily")))
    stickiness = marts.column("stickiness").to_pylist()
    index = next(i for i, v in enumerate(stickiness) if v)

    def with_stickiness(value: float | None) -> pa.Table:
        changed = [*stickiness[:index], value, *stickiness[index + 1 :]]
        position = marts.column_names.index("stickiness")
        return marts.set_column(position, "stickiness", pa.array(changed, pa.float64()))

    assert differences(marts, with_stickiness(stickiness[index] * (1 + 1e-12))) == []
    assert differences(marts, with_stickiness(stickiness[index] * (1 + 1e-7))) != []
    assert differences(marts, with_stickiness(None)) != []
    assert differences(marts, marts.slice(1)) != []


def test_the_comparison_covers_the_fitted_customer_value(
    world: Path, duckdb_side: tuple[Engine, list[tuple[str, str, str]]]
) -> None:
    """marts.customer_value (a fitted model, loaded through a temp table on each engine) is
    among the tables compared, with its status, its fitted figures and its NULLs (the mean
    spend of one-time buyers): a changed status, a changed figure or a NULL where DuckDB has
    a value are each a difference."""
    engine = duckdb_side[0]
    assert "customer_value" in engine.list_tables("marts")
    value = engine.fetch_arrow(exp.select("*").from_(table("marts", "customer_value")))
    if (world / "scenario").read_text() == "saas":
        return  # the SaaS world's orders are compared all the same, whatever they hold
    assert value.num_rows > 0
    (status,) = set(value.column("fit_status").to_pylist())
    print(f"customer_value on the parity world: {status}, {value.num_rows} customers")
    assert value.column("mean_spend").null_count > 0
    other = "degenerate_fit" if status == "fitted" else "fitted"
    position = value.column_names.index("fit_status")
    changed = value.set_column(position, "fit_status", pa.array([other] * value.num_rows))
    assert differences(value, changed) != []
    figure = value.column_names.index("probability_alive")
    swapped = [None if v is not None else 0.5 for v in value.column(figure).to_pylist()]
    nulled = value.set_column(figure, "probability_alive", pa.array(swapped, pa.float64()))
    assert differences(value, nulled) != []
