"""Engines keep the rendered text of a frozen query, and only of a frozen one."""

from __future__ import annotations

import gc

from sqlglot import exp

from productlens.engines import base
from productlens.engines.base import freeze, render_frozen


def test_a_frozen_query_is_rendered_once_per_dialect() -> None:
    query = freeze(exp.select("a").from_("t").where("a > 1"))
    first = render_frozen(query, "duckdb")
    # Changing a frozen query breaks the promise; the kept text shows it was not
    # rendered again (this is what makes the cache pay).
    query.set("where", None)
    assert render_frozen(query, "duckdb") == first == "SELECT a FROM t WHERE a > 1"
    assert render_frozen(query, "postgres") == "SELECT a FROM t"


def test_other_queries_are_rendered_each_time() -> None:
    query = exp.select("a").from_("t").where("a > 1")
    assert render_frozen(query, "duckdb") == "SELECT a FROM t WHERE a > 1"
    query.set("where", None)
    assert render_frozen(query, "duckdb") == "SELECT a FROM t"


def test_a_dead_frozen_query_leaves_nothing_behind() -> None:
    query = freeze(exp.select("b").from_("u"))
    key = id(query)
    render_frozen(query, "duckdb")
    assert key in base._FROZEN
    del query
    gc.collect()
    assert key not in base._FROZEN
    # A new expression that happens to get the same id is not taken for the old one.
    other = exp.select("c").from_("v")
    assert render_frozen(other, "duckdb") == "SELECT c FROM v"
