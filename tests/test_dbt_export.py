"""`productlens export dbt`: the exported project, built by dbt itself (dbt-duckdb, from
the `.venv-dbt` environment `make` installs) on a copy of a demo warehouse's raw layer,
gives every staging, core and mart table productlens builds, row for row, and runs every
data test productlens declares; its incremental models refresh their window only; the
PostgreSQL target's SQL parses as PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import jinja2
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlglot
import yaml
from sqlglot import exp

from productlens import dialects, modeling
from productlens.checks import compile_tests
from productlens.cli import main
from productlens.config import load_project
from productlens.engines import DuckDBEngine
from productlens.errors import ModelError
from productlens.integrations import dbt
from productlens.lineage import graph_schema
from tests.conftest import run_cli
from tests.cross_engine import differences

# One worker builds the dbt project once for the module.
pytestmark = pytest.mark.xdist_group("dbt")

DBT = Path(__file__).resolve().parents[1] / ".venv-dbt" / "bin" / "dbt"


def run_dbt(project: Path, *args: str, warehouse: Path, search_path: Path) -> str:
    """`dbt ARGS` on the exported project, as a subprocess; its output."""
    if not DBT.exists():
        pytest.fail(
            f"dbt is not installed at {DBT}: `make .venv/.dev` builds .venv-dbt from "
            "requirements-dbt.lock (make test does it)"
        )
    env = {
        **os.environ,
        dbt.DUCKDB_PATH_ENV: str(warehouse),
        dbt.DUCKDB_SEARCH_PATH_ENV: str(search_path),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_USE_COLORS": "false",
    }
    proc = subprocess.run(
        [str(DBT), *args, "--project-dir", str(project), "--profiles-dir", str(project)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"dbt {' '.join(args)} failed:\n{proc.stdout[-6000:]}"
    return proc.stdout


@dataclass
class Built:
    graph: modeling.ModelGraph
    export: dbt.DbtExport
    ours: DuckDBEngine  # the demo's own warehouse, read-only
    theirs: Path  # a copy of the warehouse dbt built (dbt's own may be changed by a test)
    dbt_warehouse: Path  # the file the dbt project's profile names
    schema: dialects.Schema
    search_path: Path
    results: list[dict[str, Any]]  # dbt build's run_results.json


@pytest.fixture(scope="module")
def built(demo_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """The demo's graph exported and built by `dbt build` into a copy of its warehouse
    whose staging, core and marts schemas were dropped first (only raw and ops remain),
    but for the fitted models' tables: they are dbt sources, which productlens builds."""
    root = tmp_path_factory.mktemp("dbt")
    project = load_project(demo_project)
    graph = modeling.discover(project.config, project.model_dirs)
    schema = graph_schema(graph)
    export = dbt.export_dbt(graph, root / "project", target="duckdb", schema=schema)
    theirs = root / "warehouse.duckdb"
    shutil.copyfile(project.warehouse_path, theirs)
    copy = DuckDBEngine(theirs, search_path=demo_project)
    fitted = {m.name: (m.layer, _rows(copy, m.layer, m.name)) for m in graph if m.fitted}
    assert fitted  # customer_value
    for layer in modeling.MODEL_LAYERS:
        copy.execute(
            exp.Drop(
                kind="SCHEMA",
                exists=True,
                cascade=True,
                tables=[exp.Table(db=exp.to_identifier(layer))],
            )
        )
    # The layers really went: dbt builds every model from nothing.
    assert set(copy.list_tables("core")) == set()
    for name, (layer, rows) in fitted.items():
        copy.ensure_schema(layer)
        with copy.temp_table("fitted_rows", rows) as source:
            copy.replace_table(layer, name, exp.select("*").from_(source))
    copy.close()
    run_dbt(export.root, "build", warehouse=theirs, search_path=demo_project)
    pristine = root / "built.duckdb"
    shutil.copyfile(theirs, pristine)
    ours = DuckDBEngine(project.warehouse_path, read_only=True, search_path=demo_project)
    results = json.loads((export.root / "target" / "run_results.json").read_text())
    yield Built(graph, export, ours, pristine, theirs, schema, demo_project, results["results"])
    ours.close()


def _rows(engine: DuckDBEngine, layer: str, name: str) -> pa.Table:
    return engine.fetch_arrow(exp.select("*").from_(exp.table_(name, db=layer, quoted=True)))


def test_dbt_builds_every_table_as_productlens_does(built: Built) -> None:
    theirs = DuckDBEngine(built.theirs, read_only=True, search_path=built.search_path)
    try:
        problems = {
            model.table: differences(
                _rows(built.ours, model.layer, model.name),
                _rows(theirs, model.layer, model.name),
            )
            for model in built.graph
        }
    finally:
        theirs.close()
    assert len(problems) == len(built.graph) >= 30
    assert {table: p for table, p in problems.items() if p} == {}


def _keys_in_stored_order(
    engine: DuckDBEngine, model: modeling.Model, where: exp.Expr | None = None
) -> pa.Table:
    """The model's `sorted_by` columns of its table's rows, in the order they are stored."""
    assert model.spec is not None
    query = (
        exp.select(*(exp.column(c, quoted=True) for c in model.spec.sorted_by))
        .from_(exp.table_(model.name, db=model.layer, quoted=True))
        .order_by("rowid")
    )
    return engine.fetch_arrow(query if where is None else query.where(where))


def _is_sorted(keys: pa.Table) -> bool:
    """Rows in ascending order of their columns, nulls last (DuckDB's ORDER BY)."""
    in_order = keys.sort_by([(column, "ascending") for column in keys.column_names])
    return keys.num_rows > 0 and keys.equals(in_order)


def test_dbt_stores_a_sorted_by_model_in_its_order(built: Built) -> None:
    """dbt builds a `sorted_by` model's DuckDB table in that order, as productlens does
    (the funnels' zone-map skipping depends on it); the rows are the same either way."""
    models = [m for m in built.graph if m.spec and m.spec.sorted_by]
    assert "fct_events" in {m.name for m in models}
    theirs = DuckDBEngine(built.theirs, read_only=True, search_path=built.search_path)
    try:
        for model in models:
            assert _is_sorted(_keys_in_stored_order(theirs, model)), model.table
            assert _is_sorted(_keys_in_stored_order(built.ours, model)), model.table
    finally:
        theirs.close()


def test_dbt_runs_every_declared_test_and_they_pass(built: Built) -> None:
    tests = [r for r in built.results if r["unique_id"].startswith("test.")]
    models = [r for r in built.results if r["unique_id"].startswith("model.")]
    declared = compile_tests(built.graph)
    assert (
        len(tests) == len(declared) == built.export.generic_tests + len(built.export.singular_tests)
    )
    assert {r["status"] for r in tests} <= {"pass", "warn"}
    # As many warn-level tests in dbt's manifest as we declare, the rest error-level.
    manifest = json.loads((built.export.root / "target" / "manifest.json").read_text())
    severities = Counter(
        str(node["config"]["severity"]).lower()
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test"
    )
    ours = Counter(t.severity for t in declared)
    assert ours["warn"] > 0
    assert severities == ours
    # A fitted model is a source dbt reads, not a model it builds.
    assert len(models) == len([m for m in built.graph if m.fitted is None])
    assert {r["status"] for r in models} == {"success"}


def test_generic_tests_map_to_dbt_with_their_arguments(built: Built) -> None:
    core = yaml.safe_load((built.export.root / "models" / "core" / "schema.yml").read_text())
    columns = {
        (m["name"], c["name"]): c["data_tests"]
        for m in core["models"]
        for c in m.get("columns", [])
    }
    assert columns[("fct_orders", "order_id")] == ["unique", "not_null"]
    assert {
        "accepted_values": {
            "arguments": {
                "values": ["completed", "cancelled", "refunded", "pending"],
                "quote": True,
            }
        }
    } in columns[("int_order_revenue", "status")]
    assert columns[("dim_users", "user_id")] == [
        "not_null",
        {"relationships": {"arguments": {"to": "ref('stg_users')", "field": "user_id"}}},
    ]
    # Tests dbt has no generic for are singular tests, severity kept.
    warn = built.export.root / "tests" / "core" / "events_of_unknown_users.sql"
    assert "config(severity='warn')" in warn.read_text()


def test_incremental_models_refresh_only_their_window(built: Built) -> None:
    """After the rows of the last days are lost and the rows of the first day changed, an
    incremental run restores the window and leaves the first day (before the lookback) as
    it is: it rewrote the window, not the table."""
    # dbt's own warehouse file: the same profile, so dbt reuses its parse of the project.
    warehouse = built.dbt_warehouse
    copy = DuckDBEngine(warehouse, search_path=built.search_path)
    events = exp.table_("fct_events", db="core", quoted=True)
    counts = exp.table_("event_counts_daily", db="marts", quoted=True)
    last, first = copy.fetch_all(
        exp.select(exp.func("max", "event_date"), exp.func("min", "event_date")).from_(events)
    )[0]
    assert (last - first).days > 7  # the first day lies before the lookback window

    def day(value: date) -> exp.Expr:
        return exp.cast(exp.Literal.string(value.isoformat()), "date")

    recent = exp.column("event_date") >= day(last - timedelta(days=2))
    copy.execute(exp.delete(events, where=recent))
    copy.execute(exp.delete(counts, where=recent))
    planted = exp.update(
        events, {"device": "planted"}, where=exp.column("event_date").eq(day(first))
    )
    copy.execute(planted)
    copy.close()
    output = run_dbt(
        built.export.root,
        "run",
        "--select",
        "config.materialized:incremental",
        warehouse=warehouse,
        search_path=built.search_path,
    )
    n_incremental = sum(1 for m in built.graph if m.spec and m.spec.incremental)
    assert n_incremental >= 2
    assert f"Finished running {n_incremental} incremental models" in output
    theirs = DuckDBEngine(warehouse, read_only=True, search_path=built.search_path)
    try:
        after = theirs.fetch_arrow(exp.select("*").from_(events))
        after_counts = theirs.fetch_arrow(exp.select("*").from_(counts))
    finally:
        theirs.close()
    ours = built.ours.fetch_arrow(exp.select("*").from_(events))
    # The run inserted its window (from the latest date left, the 3rd last, less the
    # lookback of 7) in the events' sorted_by order.
    window = exp.column("event_date") >= day(last - timedelta(days=3 + 7))
    theirs = DuckDBEngine(warehouse, read_only=True, search_path=built.search_path)
    try:
        assert _is_sorted(_keys_in_stored_order(theirs, built.graph["fct_events"], window))
    finally:
        theirs.close()
    first_day = pa.scalar(first, pa.date32())
    kept = after.filter(pc.equal(after["event_date"], first_day))
    assert kept.num_rows == ours.filter(pc.equal(ours["event_date"], first_day)).num_rows > 0
    assert set(kept["device"].to_pylist()) == {"planted"}
    assert (
        differences(
            ours.filter(pc.not_equal(ours["event_date"], first_day)),
            after.filter(pc.not_equal(after["event_date"], first_day)),
        )
        == []
    )
    assert differences(_rows(built.ours, "marts", "event_counts_daily"), after_counts) == []

    # The post-hook left the table as it was (one row group: its spread is 1), sorted only
    # in stretches; with the limit at 0 the next run writes it whole in order, every row
    # kept.
    model = built.graph["fct_events"]
    theirs = DuckDBEngine(warehouse, read_only=True, search_path=built.search_path)
    try:
        assert not _is_sorted(_keys_in_stored_order(theirs, model))
    finally:
        theirs.close()
    run_dbt(
        built.export.root,
        "run",
        "--select",
        "fct_events",
        "--vars",
        json.dumps({dbt.RESORT_VAR: 0}),
        warehouse=warehouse,
        search_path=built.search_path,
    )
    theirs = DuckDBEngine(warehouse, read_only=True, search_path=built.search_path)
    try:
        assert _is_sorted(_keys_in_stored_order(theirs, model))
        resorted = theirs.fetch_arrow(exp.select("*").from_(events))
    finally:
        theirs.close()
    assert differences(after, resorted) == []


# --- PostgreSQL target -------------------------------------------------------------------


def _render(text: str, refs: dict[str, str]) -> str:
    """A dbt SQL file rendered as dbt would, with stand-ins: a ref or source is the
    schema-qualified table, `this` a table, the incremental branch taken."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return env.from_string(text).render(
        ref=lambda name: refs[name],
        # A fitted model's source (fitted_<layer>) is its table in the layer's schema.
        source=lambda source, name: f"{source.removeprefix(dbt.FITTED_PREFIX)}.{name}",
        config=lambda **_: "",
        is_incremental=lambda: True,
        this="core.this_model",
    )


def test_postgres_target_sql_parses_as_postgresql(built: Built, tmp_path: Path) -> None:
    graph = built.graph
    export = dbt.export_dbt(graph, tmp_path / "pg", target="postgres", schema=built.schema)
    profile = yaml.safe_load((export.root / "profiles.yml").read_text())
    assert profile["productlens"]["outputs"]["postgres"]["type"] == "postgres"
    refs = {m.name: m.table for m in graph}
    files = [*export.models, *export.singular_tests]
    for relative in files:
        text = (export.root / relative).read_text()
        sql = _render(text, refs)
        tree = sqlglot.parse_one(sql, read="postgres")
        assert isinstance(tree, exp.Query), relative
        # Every model the SQL reads comes through ref(), every raw table through source().
        read = {f"{t.db}.{t.name}" for t in tree.find_all(exp.Table) if t.db}
        if relative.startswith("models/"):
            model = graph[Path(relative).stem]
            assert read - {"core.this_model"} == set(model.upstreams), relative
            assert "staging." not in text
            assert "raw." not in text.replace("source('raw'", "")
    # PostgreSQL keeps no row order: the events model has no ORDER BY there.
    events = (export.root / "models" / "core" / "fct_events.sql").read_text()
    assert "ORDER BY" not in events.upper()
    # PostgreSQL's spelling where DuckDB's differs: `isodow(d)` is extract(isodow from d).
    dim_date = (export.root / "models" / "core" / "dim_date.sql").read_text()
    assert "EXTRACT(ISODOW FROM" in dim_date
    assert "ISODOW(" not in dim_date


def test_jinja_in_a_string_literal_stays_a_literal(built: Built) -> None:
    graph = built.graph
    query = sqlglot.parse_one(
        "select '{{ not jinja }}' as a, x /* {% no block %} */ from staging.stg_users",
        read="duckdb",
    )
    assert isinstance(query, exp.Query)
    text = dbt._sql(dbt.jinja_references(query, graph), "duckdb")
    rendered = _render(text, {"stg_users": "staging.stg_users"})
    assert re.sub(r"\s+", " ", rendered) == (
        "SELECT '{{ not jinja }}' AS a, x /* { % no block %} */ FROM staging.stg_users AS stg_users"
    )


def test_export_refuses_a_folder_that_is_not_empty(
    demo_project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    refused = run_cli("--project", str(demo_project), "export", "dbt", str(out))
    assert refused.returncode == 2
    assert "not empty" in refused.stderr
    assert "--force" in refused.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    stale = out / "models" / "staging" / "stg_dropped_since.sql"
    stale.parent.mkdir(parents=True)
    stale.write_text("select 1 as x")
    code = main(["--project", str(demo_project), "export", "dbt", str(out), "--force"])
    assert code == 0, capsys.readouterr()
    assert "wrote a dbt project" in capsys.readouterr().out
    assert (out / "dbt_project.yml").exists()
    assert (out / "models" / "marts").is_dir()
    assert not stale.exists()  # the export's own folders are replaced whole
    assert (out / "keep.txt").read_text() == "mine"  # anything else is kept


@pytest.mark.parametrize("where", [".", ".."])
def test_export_never_replaces_the_projects_own_models(
    tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--force` replaces the export's `models/`: pointed at the project folder (or one
    above it) it would delete the project's own models. Refused, naming them."""
    root = tmp_path / "proj"
    own = root / "models" / "marts" / "my_model.sql"
    own.parent.mkdir(parents=True)
    own.write_text("select 1 as x\n")
    (root / "productlens.toml").write_text("")
    code = main(["--project", str(root), "export", "dbt", str(root / where), "--force"])
    err = " ".join(capsys.readouterr().err.split())  # unwrapped
    assert code == 2, err
    assert "holds the project's models" in err
    assert own.read_text() == "select 1 as x\n"
    assert not (root / where / "dbt_project.yml").exists()


def test_column_tests_hold_for_names_dbt_must_quote(tmp_path: Path) -> None:
    """dbt pastes a column's name into its generic tests' SQL: a column alias with a space,
    a quote or upper case is exported with `quote: true`, and dbt runs its tests; an alias
    holding Jinja's marks is kept from Jinja."""
    models = tmp_path / "models" / "marts"
    models.mkdir(parents=True)
    (models / "odd_names.sql").write_text(
        'select * from (values (1, 2, 5), (3, 4, 6)) as t("n ev\'s", "Big N", "{{ x }}")\n'
    )
    # Foreign keys onto those odd names: dbt pastes a relationships test's `field` into
    # its SQL unquoted (and through Jinja), so the export quotes it itself. 7 is no
    # "{{ x }}" of a parent: that warn-level test finds one row.
    (models / "odd_children.sql").write_text(
        "select * from (values (1, 5), (3, 7)) as t(parent_n, jinja_n)\n"
    )
    (models / "_odd.yml").write_text(
        "models:\n  - name: odd_names\n    grain: one row per pair\n    columns:\n"
        '      "n ev\'s": [not_null, unique]\n      Big N: [not_null]\n'
        "  - name: odd_children\n    grain: one row per child\n    columns:\n"
        '      parent_n: [{relationships: {to: odd_names, field: "n ev\'s"}}]\n'
        '      jinja_n: [{relationships: {to: odd_names, field: "{{ x }}"}, severity: warn}]\n'
    )
    graph = modeling.discover(load_project(tmp_path).config, [tmp_path / "models"], shipped=False)
    export = dbt.export_dbt(graph, tmp_path / "dbt", schema=graph_schema(graph))
    out = run_dbt(export.root, "build", warehouse=tmp_path / "w.duckdb", search_path=tmp_path)
    assert "PASS=6 WARN=1 ERROR=0" in out  # the two models and their five tests
    marts = yaml.safe_load((export.root / "models" / "marts" / "schema.yml").read_text())
    fields = [
        t["relationships"]["arguments"]["field"]
        for m in marts["models"]
        for c in m.get("columns", [])
        for t in c["data_tests"]
        if isinstance(t, dict) and "relationships" in t
    ]
    assert fields == ['"n ev\'s"', '{% raw %}"{{ x }}"{% endraw %}']
    built = DuckDBEngine(tmp_path / "w.duckdb", read_only=True)
    try:  # a name holding Jinja's marks is kept verbatim, not rendered
        names = [c for c, _ in built.columns("marts", "odd_names")]
    finally:
        built.close()
    assert names == ["n ev's", "Big N", "{{ x }}"]


def _one_model_graph(root: Path, name: str, sql: str, spec: str) -> modeling.ModelGraph:
    """A project holding one mart of its own (`name`.sql and its YAML), discovered alone."""
    (root / "models" / "marts").mkdir(parents=True)
    (root / "models" / "marts" / f"{name}.sql").write_text(sql)
    (root / "models" / "marts" / f"_{name}.yml").write_text(spec)
    return modeling.discover(load_project(root).config, [root / "models"], shipped=False)


def test_the_incremental_window_is_the_lookback_from_the_latest_date(tmp_path: Path) -> None:
    """The exported incremental model, rendered as dbt would and run on DuckDB: the first
    build reads every date; an incremental run reads from the table's latest date less
    `lookback_days`, that date included, and nothing earlier."""
    graph = _one_model_graph(
        tmp_path / "p",
        "daily_n",
        "select cast(event_ts as date) as event_date, count(*) as n from raw.events group by 1\n",
        "models:\n  - name: daily_n\n    grain: one row per day\n"
        "    incremental: {date_column: event_date, lookback_days: 2}\n",
    )
    text = dbt.render_model(graph["daily_n"], graph, "duckdb", graph_schema(graph))
    first = date(2026, 1, 1)
    engine = DuckDBEngine(tmp_path / "w.duckdb")
    try:
        for statement in (
            "CREATE SCHEMA raw",
            "CREATE SCHEMA core",
            "CREATE TABLE raw.events AS SELECT DATE '2026-01-01' + CAST(i AS INTEGER)"
            " + INTERVAL 1 HOUR AS event_ts FROM range(10) AS t(i)",
            # The table as an earlier run left it: up to the 6th.
            "CREATE TABLE core.this_model AS SELECT DATE '2026-01-01' + CAST(i AS INTEGER)"
            " AS event_date FROM range(6) AS t(i)",
        ):
            engine.execute(sqlglot.parse_one(statement, read="duckdb"))

        def dates(incremental: bool) -> list[date]:
            sql = (
                jinja2.Environment(undefined=jinja2.StrictUndefined)
                .from_string(text)
                .render(
                    source=lambda schema, name: f"{schema}.{name}",
                    config=lambda **_: "",
                    is_incremental=lambda: incremental,
                    this="core.this_model",
                )
            )
            query = exp.select("event_date").from_(sqlglot.parse_one(sql, read="duckdb").subquery())
            return sorted(row[0] for row in engine.fetch_all(query))

        assert dates(False) == [first + timedelta(days=i) for i in range(10)]
        # Latest date the 6th, lookback 2: the 4th to the 10th.
        assert dates(True) == [first + timedelta(days=i) for i in range(3, 10)]
    finally:
        engine.close()


def test_postgres_target_transpiles_singular_tests_too(tmp_path: Path) -> None:
    """A data test's query is transpiled for PostgreSQL as a model's is: DuckDB's
    `isodow(d)` becomes `extract(isodow from d)` in the singular test."""
    graph = _one_model_graph(
        tmp_path / "p",
        "days",
        "select distinct cast(event_ts as date) as d from raw.events\n",
        "models:\n  - name: days\n    grain: one row per day\n    tests:\n"
        '      - expression: "isodow(d) between 1 and 7"\n        name: weekday_known\n',
    )
    export = dbt.export_dbt(graph, tmp_path / "pg", target="postgres", schema=graph_schema(graph))
    (relative,) = export.singular_tests
    text = (export.root / relative).read_text()
    assert "EXTRACT(ISODOW FROM" in text
    assert "ISODOW(" not in text
    sql = _render(text, {"days": "marts.days"})
    assert isinstance(sqlglot.parse_one(sql, read="postgres"), exp.Query)


def test_accepted_numbers_are_compared_unquoted(tmp_path: Path) -> None:
    """dbt's accepted_values quotes its values unless told not to: numbers go with
    `quote: false` (compared as numbers, as productlens compares them), text with
    `quote: true`; the severity is carried as dbt's config."""
    graph = _one_model_graph(
        tmp_path / "p",
        "levels",
        "select 1 as level, 'a' as grade from raw.events\n",
        "models:\n  - name: levels\n    grain: one row per event\n    columns:\n"
        "      level:\n        - accepted_values: [1, 2]\n"
        "      grade:\n        - accepted_values: {values: [a, b], severity: warn}\n",
    )
    export = dbt.export_dbt(graph, tmp_path / "out", schema=graph_schema(graph))
    marts = yaml.safe_load((export.root / "models" / "marts" / "schema.yml").read_text())
    (model,) = marts["models"]
    assert {c["name"]: c["data_tests"] for c in model["columns"]} == {
        "level": [{"accepted_values": {"arguments": {"values": [1, 2], "quote": False}}}],
        "grade": [
            {
                "accepted_values": {
                    "arguments": {"values": ["a", "b"], "quote": True},
                    "config": {"severity": "warn"},
                }
            }
        ],
    }


# (sorted_by columns, target) -> whether the model gets the re-sort post-hook and the
# project its macro; None: the export is refused.
RESORT_CASES = [
    (["kind", "id"], "duckdb", True),
    (["kind", "id"], "postgres", False),
    (["Kind"], "duckdb", None),  # a name the hook's Jinja string would have to escape
]


@pytest.mark.parametrize(("order", "target", "hooked"), RESORT_CASES)
def test_the_resort_hook_goes_where_row_order_is_kept(
    tmp_path: Path, order: list[str], target: dbt.Target, hooked: bool | None
) -> None:
    columns = ", ".join(f'"{c}"' for c in order)
    graph = _one_model_graph(
        tmp_path / "p",
        "daily_n",
        f"select 1 as {columns.split(',')[0]}, 2 as id, current_date as event_date\n",
        "models:\n  - name: daily_n\n    grain: one row per day\n"
        "    incremental: {date_column: event_date, lookback_days: 2}\n"
        f"    sorted_by: [{columns}]\n",
    )
    out = tmp_path / "dbt"
    if hooked is None:
        with pytest.raises(ModelError, match="plain lowercase"):
            dbt.export_dbt(graph, out, target=target, schema=graph_schema(graph))
        assert not out.exists()
        return
    dbt.export_dbt(graph, out, target=target, schema=graph_schema(graph))
    model = (out / "models" / "marts" / "daily_n.sql").read_text()
    hook = "post_hook=after_commit('{{ productlens_resort(this, [" + columns + "]) }}')"
    assert (hook in model) is hooked
    assert (out / "macros" / "productlens_resort.sql").exists() is hooked
    assert ("ORDER BY " + columns) in model if hooked else "ORDER BY" not in model.upper()
