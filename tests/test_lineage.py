"""`productlens lineage`: upstream tables from the model graph and, for a column, the
columns it is computed from, layer by layer, checked by hand on small models and on the
shipped ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from productlens import modeling
from productlens.cli import main
from productlens.config import load_project
from productlens.errors import ConfigError
from productlens.lineage import ColumnStep, graph_schema, lineage, model_graph_dot
from tests.conftest import run_cli

MODELS = {
    "staging/stg_sales.sql": """
        select order_id, user_id, cast(order_ts as date) as order_date,
               total_amount * 100 as amount_cents, order_id || '/' || user_id as order_key
        from raw.orders
    """,
    "core/fct_sales.sql": """
        with sales as (select * from stg_sales)
        select sales.order_id, sales.order_date, sales.amount_cents / 100.0 as amount,
               users.country
        from sales left join raw.users as users on sales.user_id = users.user_id
    """,
    "marts/sales_daily.sql": """
        select order_date, count(*) as n_orders, sum(amount) as revenue,
               max(country) as top_country
        from fct_sales group by order_date
    """,
}


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> modeling.ModelGraph:
    root = tmp_path_factory.mktemp("lineage")
    for relative, sql in MODELS.items():
        path = root / "models" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sql)
    return modeling.discover(load_project(root).config, [root / "models"], shipped=False)


# One row per case: target -> (steps from the column down, the raw columns at the bottom).
CASES = [
    (
        "sales_daily.revenue",
        [
            ("marts.sales_daily.revenue", ("core.fct_sales.amount",)),
            ("core.fct_sales.amount", ("staging.stg_sales.amount_cents",)),
            ("staging.stg_sales.amount_cents", ("raw.orders.total_amount",)),
        ],
        ["raw.orders.total_amount"],
    ),
    (
        "marts.sales_daily.top_country",  # the layer may be given
        [
            ("marts.sales_daily.top_country", ("core.fct_sales.country",)),
            ("core.fct_sales.country", ("raw.users.country",)),
        ],
        ["raw.users.country"],
    ),
    (
        "sales_daily.order_date",
        [
            ("marts.sales_daily.order_date", ("core.fct_sales.order_date",)),
            ("core.fct_sales.order_date", ("staging.stg_sales.order_date",)),
            ("staging.stg_sales.order_date", ("raw.orders.order_ts",)),
        ],
        ["raw.orders.order_ts"],
    ),
    ("sales_daily.n_orders", [("marts.sales_daily.n_orders", ())], []),  # count(*)
    (
        "stg_sales.order_key",  # computed from two columns: both are upstream
        [("staging.stg_sales.order_key", ("raw.orders.order_id", "raw.orders.user_id"))],
        ["raw.orders.order_id", "raw.orders.user_id"],
    ),
]


@pytest.mark.parametrize(("target", "steps", "sources"), CASES, ids=[c[0] for c in CASES])
def test_a_column_is_traced_through_each_layer(
    graph: modeling.ModelGraph,
    target: str,
    steps: list[tuple[str, tuple[str, ...]]],
    sources: list[str],
) -> None:
    result = lineage(graph, target)
    assert result.steps == [ColumnStep(column, upstream) for column, upstream in steps]
    assert result.sources == sources


def test_a_model_lists_its_parents_and_every_table_upstream(graph: modeling.ModelGraph) -> None:
    result = lineage(graph, "sales_daily")
    assert result.model == "marts.sales_daily"
    assert result.parents == ["core.fct_sales"]
    assert result.tables == ["staging.stg_sales", "core.fct_sales", "raw.orders", "raw.users"]
    assert result.column is None
    assert result.steps == []
    # A source the model itself reads (not only its ancestors') is upstream too.
    direct = lineage(graph, "core.fct_sales")
    assert direct.parents == ["raw.users", "staging.stg_sales"]
    assert direct.tables == ["staging.stg_sales", "raw.orders", "raw.users"]


def test_model_columns_are_known_without_a_warehouse(graph: modeling.ModelGraph) -> None:
    schema = graph_schema(graph)
    assert list(schema["marts"]["sales_daily"]) == [
        "order_date",
        "n_orders",
        "revenue",
        "top_country",
    ]
    assert list(schema["core"]["fct_sales"]) == ["order_id", "order_date", "amount", "country"]
    assert str(schema["staging"]["stg_sales"]["order_date"]) == "DATE"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nope", "no model named 'nope'"),
        ("sales_daily.nope", "has no column 'nope' (columns: order_date, n_orders"),
        ("core.sales_daily.revenue", "sales_daily is a marts model, not core"),
        ("sales_daily.revenue.extra", "no model named"),
        # A raw table's column is where lineage ends: named as such, with its readers.
        ("raw.orders.total_amount", "raw.orders is a source table .* read it: stg_sales$"),
        ("raw.users", "raw.users is a source table .* read it: fct_sales$"),
    ],
)
def test_bad_targets_are_named(graph: modeling.ModelGraph, target: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        lineage(graph, target)


def test_cli_traces_a_shipped_model(project_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """fct_events.event_date is `cast(events.event_ts as date)` over stg_events, whose
    event_ts is raw.events' event_ts (read by hand in the two models)."""
    result = run_cli("--project", str(project_dir), "lineage", "fct_events.event_date", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == "core.fct_events"
    assert data["parents"] == ["core.dim_users", "staging.stg_events"]
    assert data["steps"] == [
        {"column": "core.fct_events.event_date", "upstream": ["staging.stg_events.event_ts"]},
        {"column": "staging.stg_events.event_ts", "upstream": ["raw.events.event_ts"]},
    ]
    assert data["sources"] == ["raw.events.event_ts"]
    assert {"raw.events", "raw.users", "staging.stg_users"} <= set(data["tables"])
    assert main(["--project", str(project_dir), "lineage", "fct_events.event_date"]) == 0
    assert "core.fct_events.event_date <- staging.stg_events.event_ts" in capsys.readouterr().out
    assert main(["--project", str(project_dir), "lineage", "fct_events.nope"]) == 2
    err = capsys.readouterr().err
    assert "has no column 'nope'" in err
    assert "Traceback" not in err


def test_model_graph_as_dot_has_every_table_and_edge(graph: modeling.ModelGraph) -> None:
    dot = model_graph_dot(graph)
    edges = set(re.findall(r'^  "([a-z_.]+)" -> "([a-z_.]+)";$', dot, flags=re.MULTILINE))
    assert edges == {
        ("raw.orders", "staging.stg_sales"),
        ("staging.stg_sales", "core.fct_sales"),
        ("raw.users", "core.fct_sales"),
        ("core.fct_sales", "marts.sales_daily"),
    }
    clusters = re.findall(r'subgraph "cluster_([a-z]+)"', dot)
    assert clusters == ["raw", "staging", "core", "marts"]
    nodes = re.findall(r'^    "([a-z_.]+)" \[label="([a-z_]+)"', dot, flags=re.MULTILINE)
    assert sorted(nodes) == sorted(
        [
            ("raw.orders", "orders"),
            ("raw.users", "users"),
            ("staging.stg_sales", "stg_sales"),
            ("core.fct_sales", "fct_sales"),
            ("marts.sales_daily", "sales_daily"),
        ]
    )
    assert dot.startswith("digraph models {")
    assert dot.rstrip().endswith("}")
