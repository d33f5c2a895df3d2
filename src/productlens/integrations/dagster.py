"""Dagster assets and asset checks generated from the model graph.

`productlens_definitions(project)` gives a `dagster.Definitions` with:

- `ingest`: one step materialising every raw table (asset key `raw/<table>`): it loads the
  landing folder's files not loaded before, as `productlens run` does (a file that cannot
  be read is rejected into ops.rejected_files and listed in the metadata; one ingest reads
  every table's folder, so the raw tables are one multi-asset that is not subset).
- one asset per model, key `<layer>/<model>` (the layer is the schema), depending on the
  tables its SQL reads (the graph's upstreams). A step builds its model with
  productlens's own `modeling.materialize` on the engine `app.open_engine` opened, and
  records it in the run log as `productlens build` does.
- one asset check per data test of the model's YAML. An error-level test is a blocking
  check (a failure stops the model's downstream assets); a warn-level one reports with
  WARN severity and blocks nothing. A test runs in its model's step when every table it
  reads is the model or upstream of it; a test that also reads a table built elsewhere
  (a reconciliation) is a check step of its own, after that table.

Every step of a run shares one engine (a Dagster resource, opened once per run) and one
run id (Dagster's, in `ops.run_log` and `ops.test_results`); runs use Dagster's
in-process executor, since a DuckDB warehouse file has one writer at a time. Dagster is
imported here only: nothing else in productlens imports this module.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
from rich.console import Console
from sqlglot import exp

from productlens import checks, daily, modeling
from productlens.app import landing_root, open_engine
from productlens.config import Project, load_project
from productlens.daily import landing_files
from productlens.engines.base import table
from productlens.errors import ConfigError, ModelError
from productlens.ingest import CONTRACTS
from productlens.pipeline import Runner

RESOURCE = "productlens"
RAW = "raw"
INGEST_STEP = "ingest"
# Dagster names (of checks and ops) are letters, digits and underscores.
NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_]")

Step = TypeVar("Step", bound=Callable[..., Any])


@dataclass
class Warehouse:
    """What the steps of one Dagster run share: a runner on the project's engine (its run
    log under Dagster's run id) and the model graph as that project sees it."""

    runner: Runner
    graph: modeling.ModelGraph


@dataclass(frozen=True)
class ProductlensAssets:
    """The assets, checks and resources, for `dagster.materialize` or `Definitions`."""

    assets: list[dg.AssetsDefinition | dg.AssetSpec]
    checks: list[dg.AssetChecksDefinition]
    resources: dict[str, dg.ResourceDefinition]


def asset_key(table_name: str) -> dg.AssetKey:
    """`staging.stg_events` -> AssetKey(["staging", "stg_events"])."""
    return dg.AssetKey(table_name.split(".", 1))


def check_name(test: checks.DataTest) -> str:
    """The test's name as a Dagster check name."""
    return NOT_IN_NAME.sub("_", test.name)


def productlens_definitions(project: Project | Path | str) -> dg.Definitions:
    """The project's assets, checks and engine resource as Dagster definitions."""
    found = productlens_assets(project)
    return dg.Definitions(
        assets=found.assets,
        asset_checks=found.checks,
        resources=found.resources,
        executor=dg.in_process_executor,
    )


def productlens_assets(project: Project | Path | str) -> ProductlensAssets:
    """One asset per raw table and per model, one check per data test (see the module)."""
    if not isinstance(project, Project):
        folder = Path(project).resolve()
        # A mistyped folder fails as the definitions load, not as a run makes a warehouse
        # there. (A folder without productlens.toml is a project on the defaults.)
        if not folder.is_dir():
            raise ConfigError("the productlens project folder does not exist", path=folder)
        project = load_project(folder)
    graph = modeling.discover(project.config, project.model_dirs)
    tests = checks.compile_tests(graph)
    sources = {up for model in graph for up in model.upstreams if up.split(".")[0] != RAW}
    sources -= {model.table for model in graph}
    raw = [*CONTRACTS, *sorted(_raw_read(graph) - set(CONTRACTS))]
    by_model: dict[str, list[checks.DataTest]] = {}
    for test in tests:
        by_model.setdefault(test.model, []).append(test)
    assets: list[dg.AssetsDefinition | dg.AssetSpec] = [_ingest_asset(raw)]
    # Tables no step builds (ops tables a model reads) are external assets.
    assets += [dg.AssetSpec(asset_key(name), group_name=name.split(".")[0]) for name in sources]
    built = {f"{RAW}.{name}" for name in raw} | {model.table for model in graph}
    separate: list[dg.AssetChecksDefinition] = []
    for model in graph:
        lineage = _lineage(graph, model)
        in_step: list[checks.DataTest] = []
        for test in _unique_names(model, by_model.get(model.table, [])):
            elsewhere = (_reads(test) & built) - lineage
            if elsewhere:
                separate.append(_separate_check(test, sorted(elsewhere)))
            else:
                in_step.append(test)
        assets.append(_model_asset(model, in_step))
    return ProductlensAssets(assets, separate, {RESOURCE: _resource(project)})


# --- what reads what -----------------------------------------------------------------------


def _raw_read(graph: modeling.ModelGraph) -> set[str]:
    return {up.split(".", 1)[1] for m in graph for up in m.upstreams if up.startswith(RAW + ".")}


def _lineage(graph: modeling.ModelGraph, model: modeling.Model) -> set[str]:
    """The model's table and every table it reads, directly or through other models."""
    found = {model.table, *model.upstreams}
    for name in graph.ancestors(model.name):
        found |= {graph[name].table, *graph[name].upstreams}
    return found


def _reads(test: checks.DataTest) -> set[str]:
    return {f"{t.db}.{t.name}" for t in test.query.find_all(exp.Table) if t.db}


def _unique_names(model: modeling.Model, tests: list[checks.DataTest]) -> list[checks.DataTest]:
    """The model's tests; two with one name could not both be Dagster checks."""
    seen: dict[str, str] = {}
    for test in tests:
        name = check_name(test)
        if name in seen:
            raise ModelError(
                f"two data tests are both named {name!r} ({seen[name]!r} and {test.name!r}) "
                "as Dagster checks: give one a `name:` in the YAML",
                model=model.name,
            )
        seen[name] = test.name
    return tests


# --- the steps -----------------------------------------------------------------------------


def _context(kind: type) -> Callable[[Step], Step]:
    """Dagster tells a step's `context` parameter by its annotation, compared with its own
    classes; here annotations are text (`from __future__ import annotations`)."""

    def annotate(step: Step) -> Step:
        step.__annotations__["context"] = kind
        return step

    return annotate


def _resource(project: Project) -> dg.ResourceDefinition:
    @dg.resource(description="productlens's warehouse engine, opened once per run")
    def productlens(context: dg.InitResourceContext) -> Iterator[Warehouse]:
        # A fresh copy per run: opening the engine may adopt the world a demo simulated
        # into the warehouse (its funnel steps), which changes the project's config.
        own = copy.deepcopy(project)
        # The run lock `productlens run` holds: never both at once on one warehouse.
        with daily.run_lock(own.run_lock_path):
            engine = open_engine(own)
            try:
                run_id = context.run.run_id if context.run is not None else None
                runner = Runner(own, engine, Console(quiet=True), run_id=run_id)
                try:
                    yield Warehouse(runner, modeling.discover(own.config, own.model_dirs))
                finally:
                    runner.close()
            finally:
                engine.close()

    return productlens


def _ingest_asset(raw: Sequence[str]) -> dg.AssetsDefinition:
    specs = [
        dg.AssetSpec(
            dg.AssetKey([RAW, name]),
            group_name=RAW,
            kinds={"parquet"},
            description=f"raw.{name}: the rows of the landing folder's {name}/ files, as "
            "loaded (rows breaking the contract go to the quarantine)",
        )
        for name in raw
    ]

    @dg.multi_asset(name=INGEST_STEP, specs=specs, required_resource_keys={RESOURCE})
    @_context(dg.AssetExecutionContext)
    def ingest(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult[None]]:
        """Load the landing folder's files not loaded before into the raw layer."""
        warehouse: Warehouse = context.resources.productlens
        runner = warehouse.runner
        folders = landing_files(landing_root(runner.project, runner.lake.objects))
        loaded: dict[str, int] = {}
        held: dict[str, int] = {}
        rejected: dict[str, list[str]] = {}
        if folders:
            # As `productlens run` loads: a file that cannot be read is rejected (left in
            # place, in ops.rejected_files under this run's id) and the others load.
            record = daily.RunRecord(runner.runlog.run_id, started_at=daily._now())
            result = daily.ingest_landing(runner, folders, record)
            for batch in result.batches:
                loaded[batch.table] = loaded.get(batch.table, 0) + batch.rows_loaded
                held[batch.table] = held.get(batch.table, 0) + batch.rows_quarantined
            for r in record.rejected_files:
                why = f"{r['path']}: {r['reason']}"
                rejected.setdefault(str(r["target_table"]), []).append(why)
                context.log.warning(f"landing file rejected (left in place): {why}")
        for name in raw:
            yield dg.MaterializeResult(
                asset_key=dg.AssetKey([RAW, name]),
                metadata={
                    "dagster/row_count": _rows(runner, RAW, name),
                    "rows_loaded": loaded.get(name, 0),
                    "rows_quarantined": held.get(name, 0),
                    "files_rejected": len(rejected.get(name, [])),
                    "rejected_files": rejected.get(name, []),
                },
            )

    return ingest


def _model_asset(model: modeling.Model, tests: list[checks.DataTest]) -> dg.AssetsDefinition:
    key = asset_key(model.table)
    spec = dg.AssetSpec(
        key,
        deps=[asset_key(up) for up in model.upstreams],
        description=(model.spec.description if model.spec else "") or model.grain or None,
        group_name=model.layer,
        kinds={"sql"},
        metadata={
            "sql": dg.MetadataValue.md(f"```sql\n{model.sql}\n```"),
            "grain": model.grain,
            "path": dg.MetadataValue.path(model.path),
            "dagster/table_name": model.table,
        },
    )
    names = {test.name for test in tests}

    @dg.multi_asset(
        name=NOT_IN_NAME.sub("_", f"{model.layer}__{model.name}"),
        specs=[spec],
        check_specs=[_check_spec(test) for test in tests],
        required_resource_keys={RESOURCE},
    )
    @_context(dg.AssetExecutionContext)
    def build(
        context: dg.AssetExecutionContext,
    ) -> Iterator[dg.MaterializeResult[None] | dg.AssetCheckResult]:
        """Build the model (swapped in atomically), then run its data tests."""
        warehouse: Warehouse = context.resources.productlens
        runner = warehouse.runner
        current = _current(warehouse, model.name)
        with runner.runlog.step("build", current.table) as record:
            record.rows = modeling.materialize(runner.engine, current)
        metadata: dict[str, Any] = {"engine": runner.engine.dialect}
        if record.rows is not None:  # a view's rows are not counted
            metadata["dagster/row_count"] = record.rows
        yield dg.MaterializeResult(asset_key=key, metadata=metadata)
        compiled = checks.compile_tests(warehouse.graph, [current])
        chosen = [test for test in compiled if test.name in names]
        missing = names - {test.name for test in chosen}
        if missing:
            raise ModelError(
                f"data tests changed since the definitions were loaded: {sorted(missing)} "
                "are gone (reload the code location)",
                model=model.name,
            )
        for outcome in checks.run_tests(runner.engine, chosen, runner.runlog.run_id):
            yield _check_result(outcome)

    return build


def _separate_check(test: checks.DataTest, elsewhere: list[str]) -> dg.AssetChecksDefinition:
    """A check step of its own, after the other tables its query reads."""
    spec = _check_spec(test)

    @dg.asset_check(
        asset=spec.asset_key,
        name=spec.name,
        description=spec.description,
        blocking=spec.blocking,
        additional_deps=[asset_key(name) for name in elsewhere],
        required_resource_keys={RESOURCE},
        metadata=spec.metadata,
    )
    @_context(dg.AssetCheckExecutionContext)
    def run_check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        warehouse: Warehouse = context.resources.productlens
        model = _current(warehouse, test.model.split(".", 1)[1])
        compiled = [
            t for t in checks.compile_tests(warehouse.graph, [model]) if t.name == test.name
        ]
        if not compiled:
            raise ModelError(
                f"data test {test.name} is gone since the definitions were loaded",
                model=model.name,
            )
        runner = warehouse.runner
        (outcome,) = checks.run_tests(runner.engine, compiled[:1], runner.runlog.run_id)
        return _check_result(outcome)

    return run_check


def _current(warehouse: Warehouse, name: str) -> modeling.Model:
    """The model as this run's project sees it (the definitions were made before)."""
    if name not in warehouse.graph.models:
        raise ModelError(
            "the model is gone since the definitions were loaded (reload the code location)",
            model=name,
        )
    return warehouse.graph[name]


def _rows(runner: Runner, schema: str, name: str) -> int:
    if runner.engine.table_kind(schema, name) is None:
        return 0
    count = exp.select(exp.Count(this=exp.Star())).from_(table(schema, name))
    return int(runner.engine.fetch_all(count)[0][0])


# --- checks --------------------------------------------------------------------------------

SEVERITY: Mapping[str, dg.AssetCheckSeverity] = {
    "error": dg.AssetCheckSeverity.ERROR,
    "warn": dg.AssetCheckSeverity.WARN,
}


def _check_spec(test: checks.DataTest) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        check_name(test),
        asset=asset_key(test.model),
        description=f"{test.severity}-level data test: no row of this query may come back",
        blocking=test.severity == "error",
        metadata={
            "query": dg.MetadataValue.md(f"```sql\n{test.query.sql('duckdb', pretty=True)}\n```"),
            "severity": test.severity,
        },
    )


def _check_result(outcome: checks.TestOutcome) -> dg.AssetCheckResult:
    """A test that could not run fails at error severity, whatever its level (as in
    `productlens check`)."""
    test = outcome.test
    metadata: dict[str, Any] = {"failing_rows": outcome.n_failing}
    if outcome.sample:
        metadata["sample"] = dg.MetadataValue.json(
            json.loads(json.dumps(outcome.sample, default=str))
        )
    if outcome.error:
        metadata["error"] = outcome.error
    return dg.AssetCheckResult(
        asset_key=asset_key(test.model),
        check_name=check_name(test),
        passed=outcome.status == "pass",
        severity=SEVERITY["error" if outcome.error else test.severity],
        metadata=metadata,
    )
