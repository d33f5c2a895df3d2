"""The model graph as a dbt project, for teams that already run dbt (Cosmos, dagster-dbt).

`export_dbt` writes:

- `dbt_project.yml` and a `profiles.yml` template whose connection comes from environment
  variables (`PRODUCTLENS_DBT_DUCKDB_PATH` for DuckDB; the standard `PGHOST`, `PGPORT`,
  `PGUSER`, `PGPASSWORD`, `PGDATABASE` for PostgreSQL), and a `generate_schema_name`
  macro so that each layer's models land in the schema of that name, as productlens
  builds them;
- `models/<layer>/<model>.sql`: each model's query (a Python model's too: it is a SQLGlot
  query), transpiled for the target as productlens's engine would, with every model it
  reads rewritten in the tree to `{{ ref('...') }}` and every raw table to
  `{{ source('raw', '...') }}`;
- `models/sources.yml` (the raw tables the models read) and `models/<layer>/schema.yml`
  (grain as description; not_null, unique, accepted_values and relationships as dbt's
  generic tests);
- `tests/<layer>/<test>.sql`: every other data test (invariants, reconciliations,
  multi-column keys) as a singular test, the query productlens runs, refs rewritten.

A fitted model (a Python fit, `productlens.modeling`) cannot run in dbt: it becomes a
source `fitted_<layer>` (the table productlens builds, in the layer's schema), the models
reading it `{{ source('fitted_<layer>', '<name>') }}`, its generic tests the source's, and
the export says so in a note: build it with productlens before `dbt run`.

An incremental model becomes a dbt incremental model with the `delete+insert` strategy
keyed on its date column: a run rebuilds the rows from the latest date in the table less
the lookback, and replaces those dates. Unlike `productlens build --since`, a date in that
window for which the new query returns no row at all keeps its old rows.

A model declaring `sorted_by` ends with that ORDER BY on the DuckDB target, so that its table
is stored in that order as productlens stores it (dbt-duckdb keeps insertion order; its own
`sorted_by` config applies to DuckLake tables only). An incremental run inserts its window
in order among itself; its post-hook (`macros/productlens_resort.sql`) then measures the
table's layout as `productlens build --since` does (`modeling.layout_spread`) and, past the
same limit (the dbt var `productlens_resort_above`), writes the whole table in order again.
The PostgreSQL target keeps no row order and gets neither.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from sqlglot import exp

from productlens.checks import DataTest, compile_tests
from productlens.dialects import Schema, transpile
from productlens.errors import ConfigError, ModelError
from productlens.modeling import (
    MODEL_LAYERS,
    MODEL_NAME,
    RESORT_ABOVE,
    SOURCE_SCHEMAS,
    Model,
    ModelGraph,
    in_order,
    spread_query,
    stored_order,
)

Target = Literal["duckdb", "postgres"]
TARGETS: tuple[Target, ...] = ("duckdb", "postgres")
PROJECT_NAME = "productlens"
DUCKDB_PATH_ENV = "PRODUCTLENS_DBT_DUCKDB_PATH"
DUCKDB_SEARCH_PATH_ENV = "PRODUCTLENS_DBT_DUCKDB_SEARCH_PATH"

# dbt's own: each model's schema is exactly its folder's (dbt's default prefixes the
# target schema, `main_staging`).
SCHEMA_MACRO = """\
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}
"""

# The profile per target: connection settings read from the environment when dbt runs.
PROFILE_OUTPUTS: dict[Target, dict[str, Any]] = {
    "duckdb": {
        "type": "duckdb",
        "path": "{{ env_var('" + DUCKDB_PATH_ENV + "') }}",
        "schema": "main",
        "threads": 1,
        # The raw layer's views name their Parquet files relative to the project folder.
        "settings": {"file_search_path": "{{ env_var('" + DUCKDB_SEARCH_PATH_ENV + "', '.') }}"},
    },
    "postgres": {
        "type": "postgres",
        "host": "{{ env_var('PGHOST', 'localhost') }}",
        "port": "{{ env_var('PGPORT', '5432') | as_number }}",
        "user": "{{ env_var('PGUSER') }}",
        "password": "{{ env_var('PGPASSWORD', '') }}",
        "dbname": "{{ env_var('PGDATABASE') }}",
        "schema": "public",
        "threads": 4,
    },
}

# A fitted model is the dbt source `fitted_<layer>`.
FITTED_PREFIX = "fitted_"

# The folders an export writes whole (replaced on --force; other files are left alone).
WRITTEN_FOLDERS = ("models", "tests", "macros")

# Jinja's delimiters: a string literal holding one is wrapped in {% raw %}.
JINJA_MARKS = ("{{", "{%", "{#")

# The post-hook of an incremental sorted_by model on DuckDB: the table written in order
# again once its layout spread passes the limit (`modeling.refresh_since`'s rule). Its
# query is `modeling.spread_query`, rendered below with the relation and key as Jinja.
RESORT_VAR = "productlens_resort_above"
RESORT_MACRO = """\
{%- macro productlens_resort(relation, columns) -%}
{#- The table written in order again when a filter on its leading column reads more than
    var('RESORT_VAR') times the row groups of the table sorted (productlens's rule). -#}
{%- if execute -%}
  {%- set quoted = [] -%}
  {%- for column in columns -%}{%- do quoted.append(adapter.quote(column)) -%}{%- endfor -%}
  {%- set key = quoted[0] -%}
  {%- set spread_sql -%}
SPREAD_SQL
  {%- endset -%}
  {%- set spread = run_query(spread_sql).rows[0] -%}
  {%- set admitted = spread[0] | float -%}
  {%- set ideal = spread[1] | float -%}
  {%- if ideal > 0 and admitted / ideal > var('RESORT_VAR', RESORT_ABOVE) -%}
create or replace table {{ relation }} as
select * from {{ relation }} order by {{ quoted | join(', ') }}
  {%- endif -%}
{%- endif -%}
{%- endmacro %}
"""


@dataclass
class DbtExport:
    """What an export wrote, relative to its folder."""

    root: Path
    models: list[str] = field(default_factory=list)
    generic_tests: int = 0
    singular_tests: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def export_dbt(
    graph: ModelGraph,
    out: Path,
    *,
    target: Target = "duckdb",
    schema: Schema | None = None,
    force: bool = False,
) -> DbtExport:
    """Write the graph as a dbt project into `out` (refused if it exists and is not empty,
    unless `force`). `schema` holds the columns of the tables ({schema: {table: {column:
    type}}}, e.g. `lineage.graph_schema`): a query for PostgreSQL is transpiled with them,
    as an engine transpiles it with its catalog's."""
    if target not in TARGETS:
        raise ConfigError(f"unknown dbt target {target!r}; known: {', '.join(TARGETS)}")
    check_folder(out, force=force)
    schema = schema or {}
    # Everything is rendered first and written last: a model that cannot be exported
    # leaves the folder as it was.
    files: dict[Path, str] = {
        Path("dbt_project.yml"): _yaml(_project_yaml()),
        Path("profiles.yml"): _yaml(
            {PROJECT_NAME: {"target": target, "outputs": {target: PROFILE_OUTPUTS[target]}}}
        ),
        Path("macros") / "generate_schema_name.sql": SCHEMA_MACRO,
    }
    result = DbtExport(root=out)
    result.sources = sorted(
        {up for model in graph if model.fitted is None for up in model.upstreams if _is_source(up)}
    )
    fitted = [model for model in graph if model.fitted is not None]
    result.sources += [f"{FITTED_PREFIX}{model.table}" for model in fitted]
    result.notes = [
        f"{model.table} is a fitted model (a Python fit dbt cannot run): exported as the "
        f"source {FITTED_PREFIX}{model.layer}.{model.name}; build it with `productlens build "
        f"--select {model.name}` before `dbt run`"
        for model in fitted
    ]

    generic: dict[str, list[tuple[DataTest, dict[str, Any] | str]]] = {}
    singular: list[DataTest] = []
    for test in compile_tests(graph):
        mapped = _generic_test(test, graph, target)
        if mapped is None:
            singular.append(test)
        else:
            generic.setdefault(test.model, []).append((test, mapped))
    result.generic_tests = sum(len(v) for v in generic.values())
    files[Path("models") / "sources.yml"] = _yaml(_sources_yaml(result.sources, graph, generic))

    for layer in MODEL_LAYERS:
        in_layer = [m for m in graph if m.layer == layer and m.fitted is None]
        if not in_layer:
            continue
        for model in in_layer:
            path = Path("models") / layer / f"{model.name}.sql"
            files[path] = render_model(model, graph, target, schema)
            result.models.append(str(path))
        files[Path("models") / layer / "schema.yml"] = _yaml(_schema_yaml(in_layer, generic))

    if any(_resorted(model, target) for model in graph):
        files[Path("macros") / "productlens_resort.sql"] = resort_macro()

    names = Counter[str]()
    for test in singular:
        layer = test.model.split(".", 1)[0]
        path = Path("tests") / layer / f"{_test_file_name(test.name, names)}.sql"
        files[path] = render_singular_test(test, graph, target, schema)
        result.singular_tests.append(str(path))

    out.mkdir(parents=True, exist_ok=True)
    for folder in WRITTEN_FOLDERS:  # a model dropped since an earlier export must go too
        shutil.rmtree(out / folder, ignore_errors=True)
    for path, text in files.items():
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_text(text, encoding="utf-8")
    return result


def check_folder(out: Path, *, force: bool, keep: Collection[Path] = ()) -> None:
    """Refuse a folder that exists and is not empty (a file, too), unless `force`: then
    its `models`, `tests` and `macros` are replaced and the rest is kept. `keep`: folders
    (the project's own models) an export must never replace, so never write around."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not a folder")
    target = out.resolve()
    for folder in keep:
        if folder.resolve().is_relative_to(target):
            raise ConfigError(
                f"{out} holds the project's models ({folder}), which the export would "
                "replace; write the dbt project into a folder of its own"
            )
    if out.exists() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out} exists and is not empty; choose a new folder or pass --force")


# --- SQL ---------------------------------------------------------------------------------


def jinja_references(query: exp.Query, graph: ModelGraph) -> exp.Query:
    """A copy of the query with each model it reads as `{{ ref('name') }}` and each raw or
    ops table as `{{ source('schema', 'name') }}` (aliased to its name, so columns that
    name the table still resolve), and string literals holding Jinja's delimiters kept
    verbatim with `{% raw %}`."""
    tree = query.copy()
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    for table in list(tree.find_all(exp.Table)):
        if not isinstance(table.this, exp.Identifier) or (not table.db and table.name in ctes):
            continue
        call = _reference(table, graph)
        if call is None:
            continue
        alias = table.args.get("alias") or exp.TableAlias(this=exp.to_identifier(table.name))
        table.replace(exp.Table(this=exp.Var(this="{{ " + call + " }}"), alias=alias))
    return tree


def _reference(table: exp.Table, graph: ModelGraph) -> str | None:
    schema, name = table.db, table.name
    if schema in MODEL_LAYERS and name in graph.models and graph[name].layer == schema:
        if graph[name].fitted is not None:
            return f"source('{FITTED_PREFIX}{schema}', '{name}')"
        return f"ref('{name}')"
    if schema in SOURCE_SCHEMAS:
        if not MODEL_NAME.fullmatch(name):
            raise ModelError(f"{schema}.{name}: not a name a dbt source can carry")
        return f"source('{schema}', '{name}')"
    return None


def _sql(tree: exp.Query, target: Target) -> str:
    """The tree as SQL text for the target; Jinja's marks in string literals and quoted
    names escaped and in comments broken up."""
    for literal in list(tree.find_all(exp.Literal)):
        if literal.is_string and any(mark in literal.this for mark in JINJA_MARKS):
            text = literal.sql(dialect=target)
            literal.replace(exp.Var(this="{% raw %}" + text + "{% endraw %}"))
    for name in list(tree.find_all(exp.Identifier)):  # a column alias `"{{ x }}"`, too
        if any(mark in name.this for mark in JINJA_MARKS):
            text = name.sql(dialect=target)
            name.replace(exp.Var(this="{% raw %}" + text + "{% endraw %}"))
    for node in tree.walk():
        if node.comments:
            node.comments = [_without_marks(comment) for comment in node.comments]
    return tree.sql(dialect=target, pretty=True)


def _without_marks(comment: str) -> str:
    for mark in JINJA_MARKS:
        comment = comment.replace(mark, " ".join(mark))
    return comment


def render_model(model: Model, graph: ModelGraph, target: Target, schema: Schema) -> str:
    """One model's dbt SQL file: its config, then its query for the target."""
    query = jinja_references(transpile(model.expression, target, schema), graph)
    incremental = model.spec.incremental if model.spec else None
    # A `sorted_by` model is written in that order where the target keeps row order, as
    # productlens writes it (dbt-duckdb's own `sorted_by` config is for DuckLake tables
    # only; a native DuckDB table keeps the order its rows were inserted in).
    order = stored_order(model, target)
    if incremental is None:
        materialized = model.spec.materialized if model.spec else "table"
        if materialized == "table":
            query = in_order(query, order)
        return f"{{{{ config(materialized='{materialized}') }}}}\n\n{_sql(query, target)}\n"
    date_column = exp.column(incremental.date_column, quoted=True)
    wrapped = exp.select("*").from_(query.subquery("model"))
    this = exp.Table(this=exp.Var(this="{{ this }}"))
    start = exp.select(
        exp.Sub(
            this=exp.Max(this=date_column.copy()),
            expression=exp.Interval(
                this=exp.Literal.string(str(incremental.lookback_days)), unit=exp.var("DAY")
            ),
        )
    ).from_(this)
    window = exp.GTE(this=date_column.copy(), expression=start.subquery())
    hook = ""
    if _resorted(model, target):
        names = ", ".join(f'"{column}"' for column in order)
        # After the commit: inside the run's transaction, the rows it inserted carry DuckDB's
        # transaction-local row ids, not their place in the table.
        hook = f", post_hook=after_commit('{{{{ productlens_resort(this, [{names}]) }}}}')"
    config = (
        "{{ config(materialized='incremental', incremental_strategy='delete+insert', "
        f"unique_key='{incremental.date_column}', on_schema_change='fail'{hook}) }}}}"
    )
    # The ORDER BY comes after the incremental filter: both the first build and each
    # incremental run insert their rows in order.
    order_by = exp.Order(expressions=[exp.Ordered(this=exp.column(c, quoted=True)) for c in order])
    return (
        f"{config}\n\n{_sql(wrapped, target)}\n"
        "{% if is_incremental() %}\n"
        f"WHERE {window.sql(dialect=target)}\n"
        "{% endif %}\n" + (f"{order_by.sql(dialect=target).strip()}\n" if order else "")
    )


def _resorted(model: Model, target: Target) -> bool:
    """Whether the model's export re-sorts its table after an incremental run: an
    incremental sorted_by model on a target that keeps row order (DuckDB: the spread is
    read by rowid). Its sort columns go into a Jinja string of the hook as they are: only
    plain lowercase names are taken."""
    order = stored_order(model, target)
    if not order or model.spec is None or model.spec.incremental is None:
        return False
    plain = [column for column in order if MODEL_NAME.fullmatch(column)]
    if plain != order:
        raise ModelError(
            f"sorted_by {order}: the dbt export re-sorts by plain lowercase column names "
            "only (letters, digits, underscores)",
            model=model.name,
            file=model.path,
        )
    return True


def resort_macro() -> str:
    """macros/productlens_resort.sql: the re-sort post-hook, its spread query rendered
    with the relation and the quoted key as Jinja."""
    query = spread_query(exp.Table(this=exp.Var(this="{{ relation }}")), exp.Var(this="{{ key }}"))
    return (
        RESORT_MACRO.replace("SPREAD_SQL", query.sql(dialect="duckdb", pretty=True))
        .replace("RESORT_VAR", RESORT_VAR)
        .replace("RESORT_ABOVE", repr(RESORT_ABOVE))
    )


def render_singular_test(test: DataTest, graph: ModelGraph, target: Target, schema: Schema) -> str:
    query = jinja_references(transpile(test.query, target, schema), graph)
    config = f"{{{{ config(severity='{test.severity}') }}}}\n\n"
    return f"-- {test.name}: rows returned fail the test\n{config}{_sql(query, target)}\n"


# --- YAML --------------------------------------------------------------------------------


def _project_yaml() -> dict[str, Any]:
    return {
        "name": PROJECT_NAME,
        "version": "1.0.0",
        "config-version": 2,
        "profile": PROJECT_NAME,
        "model-paths": ["models"],
        "test-paths": ["tests"],
        "macro-paths": ["macros"],
        "flags": {"send_anonymous_usage_stats": False},
        "models": {PROJECT_NAME: {layer: {"+schema": layer} for layer in MODEL_LAYERS}},
    }


def _sources_yaml(
    sources: list[str],
    graph: ModelGraph,
    generic: Mapping[str, list[tuple[DataTest, dict[str, Any] | str]]],
) -> dict[str, Any]:
    """sources.yml: the raw and ops tables, and each fitted model as a table of the source
    `fitted_<layer>` (in the layer's schema) with its description and generic tests."""
    by_schema: dict[str, list[dict[str, Any]]] = {}
    for qualified in sources:
        source, name = qualified.split(".", 1)
        entry: dict[str, Any] = {"name": name}
        if source.startswith(FITTED_PREFIX):
            model = graph[name]
            entry["description"] = (
                f"Grain: {model.grain}. Built by productlens (a fitted model: a Python fit "
                "on its input query), not by dbt."
            )
            if columns := _column_entries(generic.get(model.table, [])):
                entry["columns"] = columns
        by_schema.setdefault(source, []).append(entry)
    return {
        "version": 2,
        "sources": [
            {
                "name": source,
                "schema": source.removeprefix(FITTED_PREFIX),
                "tables": tables,
            }
            for source, tables in by_schema.items()
        ],
    }


def _schema_yaml(
    models: list[Model], generic: Mapping[str, list[tuple[DataTest, dict[str, Any] | str]]]
) -> dict[str, Any]:
    entries = []
    for model in models:
        entry: dict[str, Any] = {"name": model.name}
        description = model.spec.description.strip() if model.spec else ""
        if model.grain:
            description = f"Grain: {model.grain}. {description}".strip()
        if description:
            entry["description"] = description
        if columns := _column_entries(generic.get(model.table, [])):
            entry["columns"] = columns
        entries.append(entry)
    return {"version": 2, "models": entries}


def _column_entries(tests: list[tuple[DataTest, dict[str, Any] | str]]) -> list[dict[str, Any]]:
    """A table's columns for schema.yml or sources.yml, each with its generic tests."""
    columns: dict[str, list[dict[str, Any] | str]] = {}
    for test, mapped in tests:
        assert test.column is not None
        columns.setdefault(test.column, []).append(mapped)
    return [_column_entry(c, t) for c, t in columns.items()]


def _column_entry(column: str, tests: list[dict[str, Any] | str]) -> dict[str, Any]:
    """A column of schema.yml. dbt pastes a column's name into its tests' SQL as is: any
    name but a plain lowercase one (a space, a quote, upper case) is quoted."""
    entry: dict[str, Any] = {"name": column, "data_tests": tests}
    if not MODEL_NAME.fullmatch(column):
        entry["quote"] = True
    return entry


def _relation(target: str, graph: ModelGraph) -> str:
    schema, dot, name = target.rpartition(".")
    if dot and schema in SOURCE_SCHEMAS:
        return f"source('{schema}', '{name}')"
    if name in graph.models and graph[name].fitted is not None:
        return f"source('{FITTED_PREFIX}{graph[name].layer}', '{name}')"
    return f"ref('{name}')"


def _accepted_values(test: DataTest, _graph: ModelGraph, _target: Target) -> dict[str, Any]:
    values = list(test.args["values"])
    return {"values": values, "quote": all(isinstance(v, str) for v in values)}


def _relationships(test: DataTest, graph: ModelGraph, target: Target) -> dict[str, Any]:
    return {"to": _relation(str(test.args["to"]), graph), "field": _field(test, target)}


def _field(test: DataTest, target: Target) -> str:
    """The parent column for dbt's relationships test, which pastes `field` into its SQL
    as is (unlike the child column, no `quote: true` reaches it) and renders it with Jinja
    first: any name but a plain lowercase one is quoted for the target, as productlens's
    own check quotes it, and one holding Jinja's marks is kept from Jinja."""
    name = str(test.args["field"])
    if MODEL_NAME.fullmatch(name):
        return name
    quoted = exp.to_identifier(name, quoted=True).sql(dialect=target)
    if any(mark in name for mark in JINJA_MARKS):
        return "{% raw %}" + quoted + "{% endraw %}"
    return quoted


# Our kinds that are dbt's generic tests, column level, with the same semantics (NULLs
# pass every one of them): kind -> its dbt arguments (None: none).
GENERIC: dict[str, Callable[[DataTest, ModelGraph, Target], dict[str, Any]] | None] = {
    "not_null": None,
    "unique": None,
    "accepted_values": _accepted_values,
    "relationships": _relationships,
}


def _generic_test(test: DataTest, graph: ModelGraph, target: Target) -> dict[str, Any] | str | None:
    """The dbt generic test for one of ours, or None when it becomes a singular test."""
    if test.kind not in GENERIC or test.column is None or "columns" in test.args:
        return None
    arguments = GENERIC[test.kind]
    body: dict[str, Any] = {}
    if arguments is not None:
        body["arguments"] = arguments(test, graph, target)
    if test.severity != "error":
        body["config"] = {"severity": test.severity}
    return {test.kind: body} if body else test.kind


def _test_file_name(name: str, seen: Counter[str]) -> str:
    """A file name from a test's name: lowercase word characters, unique in the project."""
    base = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name.lower())[:80]
    seen[base] += 1
    return base if seen[base] == 1 else f"{base}_{seen[base]}"


# --- files -------------------------------------------------------------------------------


def _is_source(qualified: str) -> bool:
    return qualified.split(".", 1)[0] in SOURCE_SCHEMAS


def _yaml(data: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(data), sort_keys=False, width=100)
