"""Lineage: which tables a model is built from and which columns one of its columns is.

Tables come from the model graph (every model and raw table upstream of the model).
Columns come from SQLGlot's lineage (`sqlglot.lineage.lineage`) with the columns of every
table known: the raw tables' from the ingestion contracts, each model's from its own query
qualified in build order (`graph_schema`), so no warehouse needs to be built. A column is
followed through each model it comes from down to the raw (or ops) columns it reads.

A fitted model's columns are its SCHEMA's. One of them named like a column of its input
query is traced through that column; any other (a fitted figure) is computed from the
whole input, so it is traced through every column of the input query.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.lineage import lineage as sqlglot_lineage
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from productlens.dialects import Schema
from productlens.errors import ConfigError, ModelError
from productlens.ingest.contracts import CONTRACTS, LINEAGE_COLUMNS
from productlens.modeling import (
    MODEL_LAYERS,
    SOURCE_DIALECT,
    SOURCE_SCHEMAS,
    ModelGraph,
    fitted_columns,
)

ColumnsBySchema = dict[str, dict[str, dict[str, exp.DataType | str]]]


def raw_schema() -> ColumnsBySchema:
    """The raw tables' columns as the warehouse holds them: contract columns, then the
    lineage columns each row carries."""
    return {
        "raw": {
            name: {
                **{column.name: column.type for column in contract.columns},
                **dict(LINEAGE_COLUMNS),
            }
            for name, contract in CONTRACTS.items()
        }
    }


def graph_schema(graph: ModelGraph, names: Collection[str] | None = None) -> ColumnsBySchema:
    """The columns of the raw tables and of every model (or of the models in `names`, which
    must hold each one's upstream models), each model's found by qualifying its query with
    the columns of the tables before it (types as SQLGlot infers them)."""
    found = raw_schema()
    for model in graph:
        if names is not None and model.name not in names:
            continue
        mapping = MappingSchema(dict[str, object](found), dialect=SOURCE_DIALECT)
        try:
            tree = qualify(
                model.expression.copy(),
                dialect=SOURCE_DIALECT,
                schema=mapping,
                validate_qualify_columns=False,
            )
            tree = annotate_types(tree, schema=mapping)
        except SqlglotError as exc:
            raise ModelError(
                f"cannot resolve the model's columns: {exc}", model=model.name
            ) from None
        assert isinstance(tree, exp.Query)
        columns: dict[str, exp.DataType | str] = {}
        if model.fitted is not None:  # the table is fit()'s, not the input query's
            found.setdefault(model.layer, {})[model.name] = dict(fitted_columns(model))
            continue
        for select in tree.selects:
            dtype = select.type
            columns[select.alias_or_name] = (
                dtype
                if dtype is not None and not dtype.is_type(exp.DataType.Type.UNKNOWN)
                else "UNKNOWN"
            )
        found.setdefault(model.layer, {})[model.name] = columns
    return found


@dataclass(frozen=True)
class ColumnStep:
    """One column (`schema.table.column`) and the columns it is computed from."""

    column: str
    upstream: tuple[str, ...]


@dataclass
class Lineage:
    """A model's upstream tables and, for a column, its upstream columns."""

    model: str  # schema.table
    parents: list[str]  # the tables the model's query reads
    tables: list[str]  # every table upstream, models in build order, then the sources
    column: str | None = None
    steps: list[ColumnStep] = field(default_factory=list)  # from the column down
    sources: list[str] = field(default_factory=list)  # the raw/ops columns at the bottom

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "parents": self.parents,
            "tables": self.tables,
            "column": self.column,
            "steps": [{"column": s.column, "upstream": list(s.upstream)} for s in self.steps],
            "sources": self.sources,
        }


def lineage(graph: ModelGraph, target: str, schema: Schema | None = None) -> Lineage:
    """Lineage of `MODEL` or `MODEL.COLUMN` (a model's name, optionally with its layer:
    `core.fct_events.event_date`)."""
    name, column = _parse_target(target, graph)
    model = graph[name]
    ancestors = graph.ancestors(name)
    models_up = [m.table for m in graph if m.name in ancestors]
    sources = sorted(
        {
            up
            for m in graph
            if m.name in ancestors or m.name == name
            for up in m.upstreams
            if up.split(".", 1)[0] not in MODEL_LAYERS
        }
    )
    result = Lineage(
        model=model.table, parents=list(model.upstreams), tables=[*models_up, *sources]
    )
    if column is None:
        return result
    columns = dict(schema) if schema is not None else graph_schema(graph, {name, *ancestors})
    if column not in columns.get(model.layer, {}).get(model.name, {}):
        known = ", ".join(columns.get(model.layer, {}).get(model.name, {})) or "none known"
        raise ConfigError(f"{model.table} has no column {column!r} (columns: {known})")
    result.column = f"{model.table}.{column}"
    queue: deque[tuple[str, str]] = deque([(model.name, column)])
    seen: set[tuple[str, str]] = set()
    leaves: set[str] = set()
    while queue:
        current, col = queue.popleft()
        if (current, col) in seen:
            continue
        seen.add((current, col))
        upstream = _column_sources(graph, current, col, columns)
        result.steps.append(ColumnStep(f"{graph[current].table}.{col}", tuple(upstream)))
        for qualified in upstream:
            schema_name, table_name, up_col = qualified.split(".", 2)
            if schema_name in MODEL_LAYERS and table_name in graph.models:
                queue.append((table_name, up_col))
            else:
                leaves.add(qualified)
    result.sources = sorted(leaves)
    return result


def _column_sources(graph: ModelGraph, name: str, column: str, schema: Schema) -> list[str]:
    """The table columns (`schema.table.column`) one model column is computed from."""
    model = graph[name]
    mapping = {s: {t: dict(c) for t, c in tables.items()} for s, tables in schema.items()}
    traced = [column]
    if model.fitted is not None:
        inputs = _output_names(model.expression, mapping)
        traced = [column] if column in inputs else inputs
    found: list[str] = []
    for one in traced:
        try:
            node = sqlglot_lineage(
                one, model.expression, schema=mapping, dialect=SOURCE_DIALECT, copy=True
            )
        except SqlglotError as exc:
            raise ModelError(f"cannot trace {one!r}: {exc}", model=name) from None
        for step in node.walk():
            table = step.expression
            if isinstance(table, exp.Table) and table.db:
                qualified = f"{table.db}.{table.name}.{step.name.rsplit('.', 1)[-1]}"
                if qualified not in found:
                    found.append(qualified)
    return sorted(found)


def _output_names(
    query: exp.Query, mapping: dict[str, dict[str, dict[str, exp.DataType | str]]]
) -> list[str]:
    """The names of a query's output columns (a `select *` expanded with the schema)."""
    try:
        tree = qualify(
            query.copy(),
            dialect=SOURCE_DIALECT,
            schema=MappingSchema(dict[str, object](mapping), dialect=SOURCE_DIALECT),
            validate_qualify_columns=False,
        )
    except SqlglotError as exc:
        raise ModelError(f"cannot resolve the input query's columns: {exc}") from None
    assert isinstance(tree, exp.Query)
    return [select.alias_or_name for select in tree.selects]


def _parse_target(target: str, graph: ModelGraph) -> tuple[str, str | None]:
    """`name`, `name.column`, `layer.name` or `layer.name.column`."""
    parts = target.split(".")
    if parts[0] in SOURCE_SCHEMAS and len(parts) > 1:
        source = ".".join(parts[:2])
        readers = [m.name for m in graph if source in m.upstreams]
        raise ConfigError(
            f"{source} is a source table (loaded, not built from anything): lineage starts "
            "at a model; the models that read it: " + (", ".join(readers) or "none")
        )
    if parts[0] in MODEL_LAYERS and len(parts) > 1:
        layer, parts = parts[0], parts[1:]
        if parts[0] in graph.models and graph[parts[0]].layer != layer:
            raise ConfigError(f"{parts[0]} is a {graph[parts[0]].layer} model, not {layer}")
    if parts[0] not in graph.models or len(parts) > 2:
        raise ConfigError(
            f"no model named {parts[0]!r}: give MODEL or MODEL.COLUMN (see productlens models)"
        )
    return parts[0], parts[1] if len(parts) == 2 else None


# --- the graph as a picture ---------------------------------------------------------------

# Fill colour per schema in the picture; sources (raw, ops) are grey.
LAYER_COLOURS = {"raw": "#eeeeee", "ops": "#eeeeee", "staging": "#dbe9f6", "core": "#fde3c8"}
MART_COLOUR = "#d5efd5"


def _dot_id(text: str) -> str:
    """A DOT string literal (model names are plain words; quotes escaped all the same)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def model_graph_dot(graph: ModelGraph) -> str:
    """The model graph as Graphviz DOT text, left to right: one box per table in a cluster
    per schema (raw first, then the layers), an edge from each table to each model that
    reads it."""
    tables: dict[str, list[str]] = {}
    for model in graph:
        for up in model.upstreams:
            tables.setdefault(up.split(".", 1)[0], []).append(up)
        tables.setdefault(model.layer, []).append(model.table)
    order = [s for s in tables if s not in MODEL_LAYERS] + [s for s in MODEL_LAYERS if s in tables]
    lines = [
        "digraph models {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
    ]
    for schema in order:
        colour = LAYER_COLOURS.get(schema, MART_COLOUR)
        lines.append(f"  subgraph {_dot_id('cluster_' + schema)} {{")
        lines.append(f'    label={_dot_id(schema)}; color="#bbbbbb";')
        for name in sorted(dict.fromkeys(tables[schema])):
            label = name.split(".", 1)[1]
            lines.append(
                f"    {_dot_id(name)} [label={_dot_id(label)}, fillcolor={_dot_id(colour)}];"
            )
        lines.append("  }")
    for model in graph:
        for up in model.upstreams:
            lines.append(f"  {_dot_id(up)} -> {_dot_id(model.table)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
