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
