"""Every model compiles for the warehouses productlens does not run (BigQuery, Snowflake,
Redshift) and for the ones it does (PostgreSQL, Spark): SQLGlot raises on what it cannot
write, and no function is left that the target does not know (SQLGlot passes unknown
functions through as-is, which would only fail on the server). Compiled, not run: the
parity tests run PostgreSQL and Spark."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from productlens import dialects, modeling
from productlens.config import ProjectConfig

TARGETS = ("bigquery", "snowflake", "redshift", "postgres", "spark")  # the last two also run
SCENARIOS = ("ecommerce", "saas")
GRAPHS = {
    scenario: modeling.discover(ProjectConfig.model_validate({"simulate": {"scenario": scenario}}))
    for scenario in SCENARIOS
}


def unknown_functions(query: exp.Query, dialect: str) -> list[str]:
    text = dialects.transpile(query, dialect).sql(
        dialect=dialect, unsupported_level=ErrorLevel.RAISE
    )
    reparsed = sqlglot.parse_one(text, read=dialect)
    return sorted({node.name for node in reparsed.find_all(exp.Anonymous)})


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("dialect", TARGETS)
def test_every_model_compiles_for(dialect: str, scenario: str) -> None:
    graph = GRAPHS[scenario]
    unknown = {
        model.name: found
        for model in graph
        if (found := unknown_functions(model.expression, dialect))
    }
    assert unknown == {}
    assert len(graph) > 30


def test_the_check_sees_an_unknown_function() -> None:
    """A function SQLGlot does not know is reported, not passed through silently."""
    query = sqlglot.parse_one("select list_cosine_similarity(a, b) as t from x", read="duckdb")
    assert isinstance(query, exp.Query)
    assert unknown_functions(query, "bigquery") == ["list_cosine_similarity"]


def test_bigquery_windows_keep_duckdbs_null_order() -> None:
    """BigQuery windows take no NULLS LAST: an ascending key sorts `x IS NULL` first."""
    query = sqlglot.parse_one(
        "select sum(x) over (order by d rows between unbounded preceding and current row) "
        "as s from t",
        read="duckdb",
    )
    assert isinstance(query, exp.Query)
    text = dialects.transpile(query, "bigquery").sql(
        dialect="bigquery", unsupported_level=ErrorLevel.RAISE
    )
    assert "ORDER BY d IS NULL, d rows" in text
    with pytest.raises(sqlglot.errors.UnsupportedError):
        query.sql(dialect="bigquery", unsupported_level=ErrorLevel.RAISE)


def traps(query: exp.Query) -> list[str]:
    """The constructs STYLE.md says to avoid (each differs or fails on PostgreSQL or Spark
    with no override here): generate_series/range spines, percentile_cont/quantiles,
    ordered list/array_agg, strftime labels, count(distinct) over a window."""
    found = []
    for node in query.walk():
        if isinstance(node, exp.GenerateSeries | exp.PercentileCont | exp.PercentileDisc):
            found.append(type(node).__name__)
        elif isinstance(node, exp.ArrayAgg) and node.find(exp.Order):
            found.append("ordered ArrayAgg")
        elif isinstance(node, exp.TimeToStr):
            found.append("strftime")
        elif isinstance(node, exp.Window) and node.this.find(exp.Distinct):
            found.append("count(distinct) over")
    return found


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_model_uses_a_style_trap(scenario: str) -> None:
    found = {model.name: t for model in GRAPHS[scenario] if (t := traps(model.expression))}
    assert found == {}


def test_the_trap_check_sees_each_trap() -> None:
    for sql in (
        "select * from range(3)",
        "select quantile_cont(x, 0.5) as q from t",
        "select list(x order by y) as l from t",
        "select strftime(ts, '%V') as w from t",
        "select count(distinct x) over () as n from t",
    ):
        query = sqlglot.parse_one(sql, read="duckdb")
        assert isinstance(query, exp.Query)
        assert len(traps(query)) == 1, sql
