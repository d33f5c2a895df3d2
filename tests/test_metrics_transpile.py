"""Every metrics query shape compiles for PostgreSQL and Spark: SQLGlot raises on what it
cannot write, and no function is left that the target dialect does not know (SQLGlot
passes unknown functions through as-is, which would only fail on the server)."""

from __future__ import annotations

from datetime import date

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from productlens.metrics.funnel_sql import Exclusion, FunnelSpec, funnel_query
from productlens.metrics.scope import Scope

DIALECTS = ("postgres", "spark")
SCOPES = {
    "utc": Scope(),
    "zoned": Scope.parse(
        timezone="America/Los_Angeles",
        week_start="sunday",
        date_from="2026-03-01",
        date_to="2026-03-31T12:00",
        where=["device=ios", "it's $x=a;b"],
    ),
}


def funnel_shapes() -> dict[str, FunnelSpec]:
    base = FunnelSpec(
        steps=("a", "b", "c"),
        window_s=86400,
        order="ordered",
        exclusions=(),
        per=None,
        count_by="user",
        by=None,
        attribution="first_touch",
    )
    from dataclasses import replace

    excluded = (Exclusion("x", 0, 2), Exclusion("y", 1, 2))
    return {
        "ordered": base,
        "ordered_repeat": replace(base, steps=("a", "a", "b", "a")),
        "ordered_excluded": replace(base, exclusions=excluded),
        "strict": replace(base, order="strict", exclusions=excluded),
        "unordered": replace(base, order="unordered", steps=("a", "b", "a")),
        "unordered_excluded": replace(base, order="unordered", exclusions=excluded),
        "per_week_by_last": replace(base, per="week", by="plan", attribution="last_touch"),
        "session_step_attr": replace(base, count_by="session", by="device", attribution="step:2"),
        "unordered_step_attr": replace(
            base, order="unordered", by="device", attribution="step:1", per="day"
        ),
    }


def queries() -> dict[str, exp.Query]:
    out = {}
    for scope_name, scope in SCOPES.items():
        for name, spec in funnel_shapes().items():
            out[f"funnel-{name}-{scope_name}"] = funnel_query(scope, spec)
    return out


QUERIES = queries()


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("name", sorted(QUERIES))
def test_query_compiles_for(name: str, dialect: str) -> None:
    text = QUERIES[name].sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)
    reparsed = sqlglot.parse_one(text, read=dialect)
    unknown = sorted({node.name for node in reparsed.find_all(exp.Anonymous)})
    assert unknown == [], f"{dialect} does not know {unknown}"


def test_values_from_outside_stay_literals() -> None:
    """A name with quotes, a semicolon and SQL in it is one string literal."""
    hostile = "x'); drop table core.fct_events; --"
    spec = funnel_shapes()["ordered"]
    from dataclasses import replace

    query = funnel_query(SCOPES["utc"], replace(spec, steps=(hostile, "b$", "select")))
    for dialect in ("duckdb", *DIALECTS):
        reparsed = sqlglot.parse_one(query.sql(dialect=dialect), read=dialect)
        assert isinstance(reparsed, exp.Select)  # one statement, not two
        literals = {lit.this for lit in reparsed.find_all(exp.Literal) if lit.is_string}
        assert {hostile, "b$", "select"} <= literals


def test_scope_bounds_are_utc_instants_of_local_days() -> None:
    scope = SCOPES["zoned"]
    # 2026-03-01 00:00 in Los Angeles (PST, -8) is 08:00 UTC; --to 2026-03-31T12:00 is
    # PDT (-7) and inclusive: the first instant after it is 19:00:00.000001 UTC.
    assert scope.start is not None
    assert scope.end is not None
    assert scope.start.isoformat() == "2026-03-01T08:00:00"
    assert scope.end.isoformat() == "2026-03-31T19:00:00.000001"
    assert date(2026, 3, 1) == scope.local(scope.start).date()
