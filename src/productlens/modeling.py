"""SQL models: discovery, dependency order, transpilation and atomic materialization.

A model is one SELECT in one `.sql` file under `models/<layer>/`; the file name is the
table name and the folder is its schema (staging, core, marts). Where the shape of the
query depends on configuration (a funnel with N steps), a model is a `.py` file whose
`model(ctx)` returns a SQLGlot expression: values from configuration become literals
through SQLGlot, never pasted text. Models read other models
by bare name (`from stg_events`) and raw or ops tables by qualified name
(`from raw.events`). SQLGlot parses each model, finds the tables it reads, qualifies bare
model names with their layer, and transpiles for the engine's dialect.

A *fitted* model is a `.py` model that also defines `fit(ctx, inputs)` and a module-level
`SCHEMA` (a `pyarrow.Schema`): `model(ctx)` is then its input query (upstreams and lineage
are found from it as for any model), and its table is what `fit` returns for the input's
rows (a statistical model fitted in Python, e.g. `marts.customer_value`). The result must
match `SCHEMA`; it is loaded as a temporary table and swapped in like any other. A fitted
model is always a table: never a view, never incremental.

Each build hands the model's expression to the engine, which builds the table under
another name and swaps it in atomically (`Engine.replace_table`): a failed or killed
build leaves the previous table intact. Engines that build under `<name>__building`
(DuckDB) may leave one behind when killed; it is dropped before the next build.
"""

from __future__ import annotations

import graphlib
import importlib.resources
import importlib.util
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import sqlglot
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlglot import exp

from productlens import dialects, ops
from productlens.config import ProjectConfig, describe_validation_error
from productlens.engines import Engine
from productlens.engines.base import table as quoted_table
from productlens.errors import EngineUnavailable, ModelError
from productlens.metrics.scope import Scope
from productlens.runlog import RunLog

MODEL_LAYERS = ("staging", "core", "marts")
SOURCE_SCHEMAS = ("raw", "ops")
BUILDING_SUFFIX = "__building"
SOURCE_DIALECT = "duckdb"
# A model's file name is its table name: lowercase snake_case, starting with a letter, and
# short enough that `<name>__building` stays within PostgreSQL's 63-byte identifiers.
MODEL_NAME = re.compile(r"[a-z][a-z0-9_]*")
MAX_MODEL_NAME = 63 - len(BUILDING_SUFFIX)

# A data test as written in YAML: "unique", or {"relationships": {"to": ..., "field": ...}}.
TestDecl = str | dict[str, Any]


class IncrementalSpec(BaseModel):
    """A date-partitioned model: `build --since` rewrites only the rows from the given
    date minus the lookback (late-arriving rows within the lookback are picked up)."""

    model_config = ConfigDict(extra="forbid")

    date_column: str
    lookback_days: int = Field(default=7, ge=0)


class ModelSpec(BaseModel):
    """What a model declares beside its SQL: grain, description and data tests."""

    model_config = ConfigDict(extra="forbid")

    name: str
    grain: str
    description: str = ""
    materialized: Literal["table", "view"] = "table"
    incremental: IncrementalSpec | None = None
    # The order a table's rows are stored in, on engines whose scans skip blocks of rows
    # by it (`KEEPS_ROW_ORDER`); a layout, never a meaning: readers still sort.
    sorted_by: list[str] = Field(default_factory=list)
    columns: dict[str, list[TestDecl]] = Field(default_factory=dict)
    tests: list[TestDecl] = Field(default_factory=list)


class SpecFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[ModelSpec]


@dataclass(frozen=True)
class ModelContext:
    """What a Python model may read from configuration."""

    scenario: str
    funnel_steps: tuple[str, ...]
    week_start: str
    session_timeout_minutes: int = 30
    timezone: str = "UTC"
    funnel_window: str = "1d"
    retention_start: str = "signup"
    retention_return: str | None = None  # None: any event
    retention_mode: str = "recurring"
    retention_grains: tuple[str, ...] = ("week", "month")
    clv_discount_rate: float = 0.1  # annual, for the fitted customer value

    def scope(self) -> Scope:
        """The metrics scope of the marts: every event, in the configured zone and week."""
        return Scope(timezone=self.timezone, week_start=self.week_start)  # type: ignore[arg-type]

    @classmethod
    def from_config(cls, config: ProjectConfig) -> ModelContext:
        return cls(
            scenario=config.simulate.scenario,
            funnel_steps=config.funnel_steps(),
            week_start=config.metrics.week_start,
            session_timeout_minutes=config.metrics.session_timeout_minutes,
            timezone=config.metrics.timezone,
            funnel_window=config.metrics.funnel_window,
            retention_start=config.metrics.retention_start,
            retention_return=config.metrics.retention_return,
            retention_mode=config.metrics.retention_mode,
            retention_grains=tuple(config.metrics.retention_grains),
            clv_discount_rate=config.clv.discount_rate,
        )


MODEL_SUFFIXES = (".sql", ".py")
INTERMEDIATE_PREFIX = "int_"  # a model holding a step of other models' computation

# fit(ctx, inputs) of a fitted model: the input query's rows in, the table's rows out.
FitFunction = Callable[[ModelContext, pa.Table], pa.Table]


@dataclass(frozen=True)
class Fitted:
    """What makes a model fitted: its fit function, the schema of its table, and the
    context the fit reads."""

    fit: FitFunction
    schema: pa.Schema
    context: ModelContext


@dataclass
class Model:
    """One SQL model, parsed, with the tables it reads."""

    name: str
    layer: str
    path: str
    expression: exp.Query
    upstreams: tuple[str, ...] = ()
    spec: ModelSpec | None = None
    fitted: Fitted | None = None  # a fitted model: `expression` is the fit's input query

    @cached_property
    def sql(self) -> str:
        """The model's SELECT in the source dialect, bare model names qualified with their
        layer. Rendered on first use: pretty-printing every model at discovery cost a third
        of each command's start-up."""
        return self.expression.sql(dialect=SOURCE_DIALECT, pretty=True)

    @property
    def table(self) -> str:
        return f"{self.layer}.{self.name}"

    @property
    def grain(self) -> str:
        return self.spec.grain if self.spec else ""

    def query(self, dialect: str, schema: dialects.Schema | None = None) -> exp.Query:
        """The model's SELECT for the dialect: qualified and typed with the upstream tables'
        columns (`schema`, {schema: {table: {column: type}}}) and rewritten by the dialect's
        overrides (`productlens.dialects`); DuckDB gets the model as written."""
        return dialects.transpile(self.expression, dialect, schema)

    def compile(self, dialect: str, schema: dialects.Schema | None = None) -> str:
        """The model's SELECT, bare names qualified, as SQL text in the engine's dialect."""
        return self.query(dialect, schema).sql(dialect=dialect, pretty=True)


@dataclass
class ModelGraph:
    """Every model of a project in build order, by name."""

    models: dict[str, Model]
    order: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[Model]:
        return (self.models[name] for name in self.order)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, name: str) -> Model:
        return self.models[name]

    def descendants(self, name: str) -> set[str]:
        children: dict[str, set[str]] = {n: set() for n in self.models}
        for model in self.models.values():
            for up in model.upstreams:
                up_name = up.split(".", 1)[1]
                if up_name in children and up.split(".", 1)[0] in MODEL_LAYERS:
                    children[up_name].add(model.name)
        found: set[str] = set()
        stack = [name]
        while stack:
            for child in children[stack.pop()]:
                if child not in found:
                    found.add(child)
                    stack.append(child)
        return found

    def ancestors(self, name: str) -> set[str]:
        found: set[str] = set()
        stack = [name]
        while stack:
            for up in self.models[stack.pop()].upstreams:
                schema, up_name = up.split(".", 1)
                if schema in MODEL_LAYERS and up_name not in found:
                    found.add(up_name)
                    stack.append(up_name)
        return found

    def intermediates(self, name: str) -> set[str]:
        """The `int_` models `name` reads, directly or through other `int_` models."""
        found: set[str] = set()
        stack = [name]
        while stack:
            for up in self.models[stack.pop()].upstreams:
                schema, up_name = up.split(".", 1)
                if (
                    schema in MODEL_LAYERS
                    and up_name.startswith(INTERMEDIATE_PREFIX)
                    and up_name in self.models
                    and up_name not in found
                ):
                    found.add(up_name)
                    stack.append(up_name)
        return found

    def select(self, selectors: Iterable[str] | None) -> list[Model]:
        """Models matching dbt-style selectors (`name`, `name+`, `+name`), in build order.

        A selected model brings the `int_` models it reads: they hold a step of its own
        computation (from settings such as `funnel_steps` too), so building the model
        without them could count a stale table."""
        selectors = list(selectors or [])
        if not selectors:
            return list(self)
        chosen: set[str] = set()
        for selector in selectors:
            name = selector.strip("+")
            if name not in self.models:
                raise ModelError(f"no model named {name!r}", selector=selector)
            chosen.add(name)
            if selector.endswith("+"):
                chosen |= self.descendants(name)
            if selector.startswith("+"):
                chosen |= self.ancestors(name)
        for name in list(chosen):
            chosen |= self.intermediates(name)
        return [m for m in self if m.name in chosen]


def _check_name(path: Path) -> None:
    name = path.stem
    if not MODEL_NAME.fullmatch(name) or len(name) > MAX_MODEL_NAME:
        raise ModelError(
            f"{path.name!r} is not a valid model name: the file name is the table name, so "
            f"it must be lowercase letters, digits and underscores, start with a letter, "
            f"and be at most {MAX_MODEL_NAME} characters",
            file=path,
        )


def shipped_models_dir() -> Path:
    """The models folder inside the installed package."""
    return Path(str(importlib.resources.files("productlens") / "models"))


def discover(
    config: ProjectConfig, extra_dirs: Iterable[Path] = (), *, shipped: bool = True
) -> ModelGraph:
    """Find, parse and order the shipped models (unless `shipped` is false) plus a
    project's own. A project model with the same name as a shipped one replaces it.
    """
    context = ModelContext.from_config(config)
    files: dict[str, tuple[str, Path]] = {}
    specs: dict[str, ModelSpec] = {}
    roots = [shipped_models_dir()] if shipped else []
    for root in [*roots, *[d for d in extra_dirs if d.is_dir()]]:
        candidates = [p for p in root.rglob("*") if p.suffix in MODEL_SUFFIXES]
        for path in sorted(p for p in candidates if not p.name.startswith("_")):
            layer = path.relative_to(root).parts[0]
            if layer not in MODEL_LAYERS:
                raise ModelError(
                    f"a model must live in one of the folders {', '.join(MODEL_LAYERS)}",
                    file=path,
                )
            _check_name(path)
            files[path.stem] = (layer, path)
        for path in sorted([*root.rglob("*.yml"), *root.rglob("*.yaml")]):
            for spec in _read_specs(path):
                specs[spec.name] = spec

    unknown_specs = sorted(set(specs) - set(files))
    if unknown_specs:
        raise ModelError(f"tests are declared for models that do not exist: {unknown_specs}")

    layers = {name: layer for name, (layer, _) in files.items()}
    models = {
        name: _parse(name, layer, path, layers, specs.get(name), context)
        for name, (layer, path) in files.items()
    }
    return ModelGraph(models=models, order=_order(models))


def _read_specs(path: Path) -> list[ModelSpec]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {"models": []}
        return SpecFile.model_validate(data).models
    except yaml.YAMLError as exc:
        raise ModelError(f"not valid YAML: {exc}", file=path) from None
    except ValidationError as exc:
        raise ModelError(describe_validation_error(exc), file=path) from None


def _load_sql(path: Path) -> exp.Query:
    sql = path.read_text(encoding="utf-8")
    try:
        statements = [s for s in sqlglot.parse(sql, read=SOURCE_DIALECT) if s is not None]
    except sqlglot.errors.ParseError as exc:
        raise ModelError(f"SQL does not parse: {exc.errors[0]['description']}", file=path) from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise ModelError("a model file must hold exactly one SELECT", file=path)
    return statements[0]


def _load_python(path: Path, context: ModelContext) -> tuple[exp.Query, Fitted | None]:
    spec = importlib.util.spec_from_file_location(f"productlens_model_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ModelError("cannot import the Python model", file=path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ModelError(f"cannot import the Python model: {exc}", file=path) from exc
    if not callable(getattr(module, "model", None)):
        raise ModelError("a Python model must define model(ctx)", file=path)
    try:
        query = module.model(context)
    except Exception as exc:
        raise ModelError(f"the Python model failed: {exc}", file=path) from exc
    if not isinstance(query, exp.Query):
        raise ModelError("model(ctx) must return a SQLGlot query expression", file=path)
    fit = getattr(module, "fit", None)
    if fit is None:
        return query, None
    schema = getattr(module, "SCHEMA", None)
    if not callable(fit) or not isinstance(schema, pa.Schema):
        raise ModelError(
            "a fitted model must define fit(ctx, inputs) and a module-level SCHEMA "
            "(a pyarrow.Schema of the table fit returns)",
            model=path.stem,
            file=path,
        )
    return query, Fitted(fit=fit, schema=schema, context=context)


def _parse(
    name: str,
    layer: str,
    path: Path,
    layers: dict[str, str],
    spec: ModelSpec | None,
    context: ModelContext,
) -> Model:
    fitted = None
    if path.suffix == ".py":
        tree, fitted = _load_python(path, context)
    else:
        tree = _load_sql(path)
    if fitted is not None:
        _check_fitted_spec(name, path, spec)
    cte_names = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    upstreams: set[str] = set()
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue  # table functions are not dependencies
        if table.db:
            if table.db not in (*MODEL_LAYERS, *SOURCE_SCHEMAS):
                raise ModelError(f"reads {table.db}.{table.name}: unknown schema", file=path)
            upstreams.add(f"{table.db}.{table.name}")
        elif table.name in cte_names:
            continue
        elif table.name in layers:
            table.set("db", exp.to_identifier(layers[table.name]))
            upstreams.add(f"{layers[table.name]}.{table.name}")
        else:
            raise ModelError(
                f"reads {table.name!r}, which is neither a model nor a CTE "
                "(write raw and ops tables with their schema, e.g. raw.events)",
                model=name,
                file=path,
            )
    if f"{layer}.{name}" in upstreams:
        raise ModelError("a model cannot read itself", model=name, file=path)
    model = Model(name, layer, str(path), tree, tuple(sorted(upstreams)), spec, fitted)
    if fitted is not None:
        fitted_columns(model)  # an unsupported SCHEMA type fails at discovery, not in a build
    return model


def _check_fitted_spec(name: str, path: Path, spec: ModelSpec | None) -> None:
    """A fitted model's table is what fit() returns, built whole: never a view, never
    incremental."""
    if spec is None or (spec.materialized != "view" and spec.incremental is None):
        return
    kind = "a view" if spec.materialized == "view" else "incremental"
    raise ModelError(
        f"a fitted model cannot be {kind}: its table is what fit() returns, built whole each time",
        model=name,
        file=path,
    )


def _order(models: dict[str, Model]) -> list[str]:
    graph = {
        name: {
            up.split(".", 1)[1]
            for up in model.upstreams
            if up.split(".", 1)[0] in MODEL_LAYERS and up.split(".", 1)[1] in models
        }
        for name, model in models.items()
    }
    sorter = graphlib.TopologicalSorter(graph)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise ModelError(f"models depend on each other in a cycle: {cycle}") from None
    # Deterministic order: among models ready together, layer order then name.
    rank = {layer: i for i, layer in enumerate(MODEL_LAYERS)}
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=lambda n: (rank[models[n].layer], n))
        order.extend(ready)
        sorter.done(*ready)
    return order


@dataclass
class BuildResult:
    """Outcome of one build: per model, rows (None: a view, not counted) or the error,
    and what was skipped."""

    built: dict[str, int | None] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    # The exception behind each failure (whether it was transient decides a retry).
    errors: dict[str, BaseException] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.failed


def drop_leftovers(engine: Engine) -> list[str]:
    """Drop half-built tables a killed build left behind; returns their names."""
    dropped = []
    for layer in MODEL_LAYERS:
        for name in engine.list_tables(layer):
            if name.endswith(BUILDING_SUFFIX):
                engine.drop(layer, name)
                dropped.append(f"{layer}.{name}")
    return dropped


def materialize(engine: Engine, model: Model) -> int | None:
    """Build one model and swap it in atomically; returns its row count, or None for a
    view.

    A table is built whole and swapped in for the previous one (a failed build leaves
    the previous table); an incremental model's table is partitioned by its date column.
    A view (for light staging models) is replaced in one step. Its rows are not counted:
    counting them ran the whole view (a full read of its source on Spark) for a number
    that the view does not store; its data tests (`same_rows_as`) read them instead.
    A fitted model's input query is fetched, fitted, checked against its SCHEMA and swapped
    in like a table.
    """
    if model.fitted is not None:
        return _materialize_fitted(engine, model, model.fitted)
    if model.spec is not None and model.spec.materialized == "view":
        engine.replace_view(model.layer, model.name, model.expression)
        return None
    incremental = model.spec.incremental if model.spec else None
    return engine.replace_table(
        model.layer,
        model.name,
        stored(engine, model),
        partition_by=incremental.date_column if incremental else None,
    )


# Per dialect: whether a table keeps the order its rows were written in and its scans skip
# blocks of rows by it (DuckDB's zone maps: a filter on the leading sort column reads only
# its row groups, and rows of one user come together). Elsewhere a model's `sorted_by`
# would cost a sort (a shuffle on Spark) for no gain, so it is left out.
KEEPS_ROW_ORDER: dict[str, bool] = {"duckdb": True, "postgres": False, "spark": False}


def stored_order(model: Model, dialect: str) -> list[str]:
    """The columns a model's table is stored in order of on the dialect: its `sorted_by`
    where the dialect keeps row order, else none."""
    order = model.spec.sorted_by if model.spec else []
    return list(order) if KEEPS_ROW_ORDER.get(dialect, False) else []


def in_order(query: exp.Query, order: Sequence[str]) -> exp.Query:
    """`query` as a select of all its rows sorted by the `order` columns (as it is when
    `order` is empty)."""
    if not order:
        return query
    return (
        exp.select("*")
        .from_(query.subquery("stored"))
        .order_by(*(exp.column(name, quoted=True) for name in order))
    )


def stored(engine: Engine, model: Model) -> exp.Query:
    """The model's query as its table is written: in its `sorted_by` order where the
    engine keeps it, else as it is."""
    return in_order(model.expression, stored_order(model, engine.dialect))


# Arrow type -> the SQL type a fitted model's column is known by (lineage, dbt, transpiling).
_ARROW_SQL_TYPES: dict[pa.DataType, str] = {
    pa.string(): "varchar",
    pa.large_string(): "varchar",
    pa.bool_(): "boolean",
    pa.int32(): "int",
    pa.int64(): "bigint",
    pa.float32(): "float",
    pa.float64(): "double",
    pa.date32(): "date",
    pa.timestamp("us"): "timestamp",
}


def fitted_columns(model: Model) -> list[tuple[str, exp.DataType]]:
    """A fitted model's columns and their SQL types, from its SCHEMA (decimals keep their
    precision and scale)."""
    assert model.fitted is not None
    columns = []
    for column in model.fitted.schema:
        if pa.types.is_decimal(column.type):
            sql = f"decimal({column.type.precision}, {column.type.scale})"
        elif column.type in _ARROW_SQL_TYPES:
            sql = _ARROW_SQL_TYPES[column.type]
        else:
            raise ModelError(
                f"SCHEMA column {column.name!r} has a type fitted models do not support: "
                f"{column.type}",
                model=model.name,
                file=model.path,
            )
        columns.append((column.name, exp.DataType.build(sql)))
    return columns


def _materialize_fitted(engine: Engine, model: Model, fitted: Fitted) -> int:
    """Fit on the input query's rows and swap the result in atomically: a fit that raises
    (or a process killed meanwhile) leaves the previous table as it was."""
    inputs = engine.fetch_arrow(model.expression)
    try:
        result = fitted.fit(fitted.context, inputs)
    except Exception as exc:
        raise ModelError(f"the fit failed: {exc}", model=model.name, file=model.path) from exc
    check_fitted(model, result)
    columns = [exp.column(name, quoted=True) for name in fitted.schema.names]
    with engine.temp_table(f"__productlens_fit_{model.name}", result) as rows:
        return engine.replace_table(model.layer, model.name, exp.select(*columns).from_(rows))


def check_fitted(model: Model, result: object) -> None:
    """Refuse a fit's result that is not a table of exactly the model's SCHEMA (names,
    order and types), naming the model and the first difference."""
    assert model.fitted is not None
    expected = model.fitted.schema
    if not isinstance(result, pa.Table):
        raise ModelError(
            f"fit() returned {type(result).__name__}, not a pyarrow.Table",
            model=model.name,
            file=model.path,
        )
    if result.schema.names != expected.names:
        raise ModelError(
            f"fit() returned the columns {result.schema.names}; SCHEMA declares {expected.names}",
            model=model.name,
            file=model.path,
        )
    for got, want in zip(result.schema, expected, strict=True):
        if got.type != want.type:
            raise ModelError(
                f"fit() returned column {got.name!r} as {got.type}; SCHEMA declares {want.type}",
                model=model.name,
                file=model.path,
            )
    for field_ in expected:
        if not field_.nullable and result.column(field_.name).null_count:
            raise ModelError(
                f"fit() returned nulls in {field_.name!r}, which SCHEMA declares not null",
                model=model.name,
                file=model.path,
            )


def refresh_since(engine: Engine, model: Model, since: date) -> int:
    """Rewrite an incremental model's rows from `since` minus its lookback, atomically;
    returns the table's row count. The model's query still reads all its upstream data,
    so windowed measures come out exactly as in a full rebuild. A `sorted_by` table (on an
    engine keeping row order) whose layout the appended window spread past `RESORT_ABOVE`
    is then written whole in order again (`resort`)."""
    spec = model.spec.incremental if model.spec else None
    if spec is None:
        raise ModelError(
            "not an incremental model (declare incremental: in its YAML)", model=model.name
        )
    start = since - timedelta(days=spec.lookback_days)
    rows = engine.overwrite_range(
        model.layer, model.name, spec.date_column, start, stored(engine, model)
    )
    order = stored_order(model, engine.dialect)
    if order and layout_spread(engine, model.layer, model.name, order[0]) > RESORT_ABOVE:
        rows = resort(engine, model, order)
    return rows


def shipped_model(model: Model) -> bool:
    """Whether the model is productlens's own (not a project's, nor one replacing it)."""
    return Path(model.path).is_relative_to(shipped_models_dir())


def _mark(engine: Engine, model: Model) -> None:
    """On DuckDB, comment the model's table with where it comes from (`ops.SHIPPED_MODEL`
    or the project's file): a table built whole is new and has no comment yet."""
    if engine.dialect != "duckdb" or engine.table_kind(model.layer, model.name) != "table":
        return
    text = ops.SHIPPED_MODEL if shipped_model(model) else f"project model {model.path}"
    engine.execute(
        exp.Comment(
            this=quoted_table(model.layer, model.name),
            kind="TABLE",
            expression=exp.Literal.string(text),
        )
    )


def _refresh_keeps_up(engine: Engine, models: ModelGraph, model: Model, runlog: RunLog) -> bool:
    """Whether rewriting `model`'s recent rows suffices: each incremental model it reads
    changed since the model's last successful build only by this run's rewrites from the
    same date. One this run built whole (`RunLog.built_whole`), or one another run built
    after the model's last successful build (`build --select` of it alone, a run killed
    before the model was rewritten), may have changed older rows: build the model whole."""
    found = ((up, models.models.get(up.split(".", 1)[1])) for up in model.upstreams)
    parents = [
        p
        for up, p in found
        if p is not None and p.table == up and p.spec is not None and p.spec.incremental
    ]
    if not parents:
        return True
    if any(p.table in runlog.built_whole for p in parents):
        return False
    names = [model.table, *(p.table for p in parents)]
    rows = engine.fetch_all(ops.build_starts(names, other_than=runlog.run_id))
    starts = {row[0]: row[1:] for row in rows}
    built = starts.get(model.table, (None, None))[1]
    others = [starts[p.table][0] for p in parents if p.table in starts]
    if not others:
        return True  # the parents were never built by another run (nothing to catch up)
    return built is not None and all(start < built for start in others)


# An incremental rewrite appends its window sorted among itself, after the rows it kept:
# each run adds a stretch of row groups spanning every value of the leading sort key,
# which a filter on one value can no longer skip. Once a filter on the leading key would
# read this many times the row groups it reads in a sorted table, the whole table is
# written in order again. Measured at 10M events (fct_events, daily runs, 7-day
# lookback, CPU seconds): the incremental step 3.5, measuring the spread 0.2, rewriting
# the table in order 9.3 (always rewriting would make each step ~3.7 times dearer); the
# spread passes 1.5 every three to five daily runs. After 15 runs unsorted (spread 2.0)
# the funnel took 15% more CPU and a one-event-type count 2.5 times as much.
RESORT_ABOVE = 1.5
ROW_GROUP_ROWS = 122_880  # DuckDB's row group: the block its zone maps skip

# Per row group (by DuckDB's rowid: rows stored in one group are numbered together), the
# leading key's range; the key's distinct values ranked. A row group admits every value
# between its minimum and maximum; summed over the row groups, over what the rows sorted
# would give (each value once, plus one per boundary between row groups).
_SPREAD = """
with blocks as (
    select min(sort_key) as lo, max(sort_key) as hi, count(*) as n_rows
    from sorted_table
    group by rowid // :row_group_rows
),
key_ranks as (
    select sort_key, dense_rank() over (order by sort_key) as key_rank
    from (select distinct sort_key from sorted_table where sort_key is not null) as keys
)
select
    (
        select coalesce(sum(high.key_rank - low.key_rank + 1), 0)
        from blocks
        inner join key_ranks as low on blocks.lo = low.sort_key
        inner join key_ranks as high on blocks.hi = high.sort_key
    ) as admitted,
    (select count(*) from key_ranks)
    + ceil((select sum(n_rows) from blocks) / :row_group_rows) - 1 as ideal
"""


def spread_query(source: exp.Expr, column: exp.Expr) -> exp.Query:
    """The query `layout_spread` runs: the row groups' admitted values of `column` (an
    identifier) in `source` (a table), and their number were the rows sorted."""

    def named(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Table) and node.name == "sorted_table" and not node.db:
            return source.copy()
        if isinstance(node, exp.Identifier) and node.this == "sort_key":
            return column.copy()
        return node

    query = exp.replace_placeholders(
        sqlglot.parse_one(_SPREAD, read="duckdb").transform(named),
        row_group_rows=exp.Literal.number(ROW_GROUP_ROWS),
    )
    assert isinstance(query, exp.Query)
    return query


def layout_spread(engine: Engine, schema: str, name: str, column: str) -> float:
    """How many times the row groups it would read in sorted order a filter on one value of
    `column` (a table's leading sort key) reads in the table as stored, on average over the
    column's values, by the row groups' minimum and maximum (DuckDB's zone maps): 1.0 for
    a table sorted by the column, more as unsorted stretches are appended. A DuckDB query
    (`rowid`): only for engines that keep row order."""
    query = spread_query(quoted_table(schema, name), exp.to_identifier(column, quoted=True))
    admitted, ideal = engine.fetch_all(query)[0]
    return float(admitted) / float(ideal) if ideal and ideal > 0 else 1.0


def resort(engine: Engine, model: Model, order: Sequence[str]) -> int:
    """Write a model's table again in `order`, every row as it is (one statement reading
    the table whole), swapped in atomically: a failed rewrite leaves the table as it was.
    Returns the table's row count."""
    incremental = model.spec.incremental if model.spec else None
    source = exp.select("*").from_(quoted_table(model.layer, model.name))
    return engine.replace_table(
        model.layer,
        model.name,
        in_order(source, order),
        partition_by=incremental.date_column if incremental else None,
    )


def build(
    engine: Engine,
    models: ModelGraph,
    runlog: RunLog,
    *,
    select: Iterable[str] | None = None,
    since: date | None = None,
    on_model: Callable[[Model, str], None] | None = None,
) -> BuildResult:
    """Build the selected models in order. A failed model skips its descendants; the
    others still build. With `since`, incremental models that already exist rewrite only
    their recent rows; every other model is rebuilt whole. `on_model(model, event)`
    reports `start`/`done`/`failed`/`skipped`.
    """
    drop_leftovers(engine)
    result = BuildResult()
    blocked: set[str] = set()
    chosen = models.select(select)
    for layer in dict.fromkeys(model.layer for model in chosen):
        engine.ensure_schema(layer)  # a new server database has none of the layers yet
    for model in chosen:
        notify = on_model or (lambda _m, _e: None)
        if model.name in blocked:
            result.skipped.append(model.name)
            notify(model, "skipped")
            continue
        notify(model, "start")
        try:
            # A project's model never leaves a shipped model's mark on its table, even
            # killed mid-way: the mark goes first (`_mark`).
            if not shipped_model(model):
                _mark(engine, model)
            with runlog.step("build", model.table) as record:
                incremental = model.spec.incremental if model.spec else None
                if (
                    since is not None
                    and incremental
                    and engine.table_kind(model.layer, model.name) == "table"
                    and _refresh_keeps_up(engine, models, model, runlog)
                ):
                    record.rows = refresh_since(engine, model, since)
                else:
                    record.rows = materialize(engine, model)
                    runlog.built_whole.add(model.table)
                _mark(engine, model)
        except EngineUnavailable:
            raise  # no later model can be built either: stop the build now
        except Exception as exc:  # noqa: BLE001 - one failed model must not stop the others
            result.failed[model.name] = str(exc)
            result.errors[model.name] = exc
        if model.name in result.failed:
            blocked |= models.descendants(model.name)
            notify(model, "failed")
            continue
        result.built[model.name] = record.rows
        notify(model, "done")
    return result
