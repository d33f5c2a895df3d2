"""The Dagster assets and checks (`productlens.integrations.dagster`), run in-process with
`dagster.materialize` on the DuckDB engine: every model's table equals `productlens
build`'s, the asset graph is the model graph, every data test is a check that passes, and
a planted error-level failure fails its check and blocks what is downstream of it while a
warn-level one blocks nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sqlglot import exp

from productlens import checks, modeling
from productlens.config import load_project
from productlens.engines.base import table
from productlens.errors import ModelError
from productlens.integrations.dagster import (
    ProductlensAssets,
    check_name,
    productlens_assets,
    productlens_definitions,
)
from productlens.simulate import generate, preset
from tests.conftest import open_readonly, q
from tests.cross_engine import differences

pytestmark = pytest.mark.xdist_group("dagster")  # one worker: the fixture is built once
LAYERS = ("staging", "core", "marts")
# Two models of the project's own guard the events (see test_run.py's planted failure):
# an error-level test (its downstream must not build when it fails) and a warn-level
# one (its downstream builds all the same).
MODELS = {
    "planted_guard.sql": "select event_id, event_date from fct_events\n",
    "planted_after.sql": "select count(*) as n_events from planted_guard\n",
    "planted_warned.sql": "select event_id, event_date from fct_events\n",
    "planted_warned_after.sql": "select count(*) as n_events from planted_warned\n",
    "_planted.yml": """models:
  - name: planted_guard
    grain: one row per event
    tests:
      - expression: "event_id not like 'planted%'"
        name: no_planted_events
  - name: planted_after
    grain: one row
  - name: planted_warned
    grain: one row per event
    tests:
      - expression: "event_id not like 'planted%'"
        name: planted_events_warned
        severity: warn
  - name: planted_warned_after
    grain: one row
""",
}


def _project(root: Path, landing: Path) -> Path:
    root.mkdir(parents=True)
    (root / "productlens.toml").write_text(f'[sources]\nlanding = "{landing.as_posix()}"\n')
    marts = root / "models" / "marts"
    marts.mkdir(parents=True)
    for name, text in MODELS.items():
        (marts / name).write_text(text)
    return root


def _tables(root: Path) -> dict[str, pa.Table]:
    engine = open_readonly(root)
    try:
        return {
            f"{layer}.{name}": engine.fetch_arrow(exp.select("*").from_(table(layer, name)))
            for layer in LAYERS
            for name in engine.list_tables(layer)
        }
    finally:
        engine.close()


@dataclass
class Materialized:
    root: Path
    landing: Path
    found: ProductlensAssets
    graph: modeling.ModelGraph
    instance: dg.DagsterInstance
    result: dg.ExecuteInProcessResult


def _materialize(
    m: ProductlensAssets, instance: dg.DagsterInstance, selection: dg.AssetSelection | None = None
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*m.assets, *m.checks],
        resources=m.resources,
        instance=instance,
        raise_on_error=False,
        selection=selection,
    )


@pytest.fixture(scope="module")
def materialized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Materialized]:
    """A small simulated world in a landing folder, materialised once by Dagster."""
    base = tmp_path_factory.mktemp("dagster")
    landing = base / "landing"
    generate(preset(users=200, days=7, seed=11), landing, workers=1)
    root = _project(base / "project", landing)
    with pytest.MonkeyPatch.context() as patch:
        home = base / "dagster_home"
        home.mkdir()
        patch.setenv("DAGSTER_HOME", str(home))  # nothing of Dagster's outside tmp
        # Runs and events in memory: a SQLite event log commits each of a run's ~700
        # events on its own, most of the run's time on a busy disk.
        with dg.DagsterInstance.ephemeral(tempdir=str(home)) as instance:
            found = productlens_assets(root)
            project = load_project(root)
            graph = modeling.discover(project.config, project.model_dirs)
            yield Materialized(root, landing, found, graph, instance, _materialize(found, instance))


def _built(result: dg.ExecuteInProcessResult) -> list[str]:
    """The tables the run materialised, in the order it did."""
    return [".".join(e.asset_key.path) for e in result.get_asset_materialization_events()]


def test_materialized_models_equal_a_productlens_build(
    materialized: Materialized, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from productlens.cli import main

    result, graph = materialized.result, materialized.graph
    assert result.success
    reference = _project(tmp_path / "reference", materialized.landing)
    assert main(["--project", str(reference), "ingest", str(materialized.landing)]) == 0
    assert main(["--project", str(reference), "build"]) == 0
    capsys.readouterr()
    expected, actual = _tables(reference), _tables(materialized.root)
    assert sorted(actual) == sorted(expected) == sorted(m.table for m in graph)
    assert {name: differences(t, actual[name]) for name, t in expected.items()} == {
        name: [] for name in expected
    }
    # Each raw table once, then each model once, never before a table it reads.
    built = _built(result)
    raw = [name for name in built if name.startswith("raw.")]
    assert sorted(built) == sorted([*raw, *(m.table for m in graph)])
    assert {up for m in graph for up in m.upstreams if up.startswith("raw.")} <= set(raw)
    position = {name: i for i, name in enumerate(built)}
    late = [(up, m.table) for m in graph for up in m.upstreams if position[up] > position[m.table]]
    assert late == []
    # The run log records every model's build under Dagster's run id.
    engine = open_readonly(materialized.root)
    try:
        logged = engine.fetch_all(
            q(
                "SELECT object, status, n_rows FROM ops.run_log"
                " WHERE run_id = ? AND stage = 'build'",
                result.run_id,
            )
        )
    finally:
        engine.close()
    counts = {name: t.num_rows for name, t in actual.items()}
    # A view's rows are not counted when it is built (that would run it whole).
    views = {m.table for m in graph if m.spec is not None and m.spec.materialized == "view"}
    assert views == {"staging.stg_events"}
    assert sorted(logged, key=str) == sorted(
        ((m.table, "success", None if m.table in views else counts[m.table]) for m in graph),
        key=str,
    )


def test_the_asset_graph_is_the_model_graph(materialized: Materialized) -> None:
    graph = materialized.graph
    defs = productlens_definitions(materialized.root)
    defs.resolve_all_job_defs()  # complete: every step's resources are provided
    assets = defs.resolve_asset_graph()
    edges = {
        (".".join(up.path), ".".join(key.path))
        for key in assets.materializable_asset_keys
        for up in assets.get(key).parent_keys
    }
    expected = {(up, m.table) for m in graph for up in m.upstreams}
    assert edges == expected
    keys = {".".join(k.path) for k in assets.materializable_asset_keys}
    raw = {k for k in keys if k.startswith("raw.")}
    assert keys == raw | {m.table for m in graph}
    assert {up for m in graph for up in m.upstreams if up.startswith("raw.")} <= raw
    sql = assets.get(dg.AssetKey(["marts", "planted_after"])).metadata["sql"]
    assert "planted_guard" in str(sql.value)


def test_every_data_test_is_a_check_and_passes(materialized: Materialized) -> None:
    graph, result = materialized.graph, materialized.result
    tests = checks.compile_tests(graph)
    evaluations = result.get_asset_check_evaluations()
    found = {(".".join(e.asset_key.path), e.check_name): e for e in evaluations}
    assert sorted(found) == sorted((t.model, check_name(t)) for t in tests)
    assert [key for key, e in found.items() if not e.passed] == []
    blocking = {
        (".".join(s.asset_key.path), s.name): s.blocking
        for a in [*materialized.found.assets, *materialized.found.checks]
        if not isinstance(a, dg.AssetSpec)
        for s in a.check_specs
    }
    assert blocking == {(t.model, check_name(t)): t.severity == "error" for t in tests}
    # Each check's outcome is the one recorded in ops.test_results under the run's id.
    engine = open_readonly(materialized.root)
    try:
        recorded = engine.fetch_all(
            q("SELECT test_name, status FROM ops.test_results WHERE run_id = ?", result.run_id)
        )
    finally:
        engine.close()
    assert sorted(recorded) == sorted((t.name, "pass") for t in tests)


def test_an_error_level_failure_blocks_downstream_and_a_warning_does_not(
    materialized: Materialized,
) -> None:
    """Events planted in the landing folder fail both guards: the error-level check fails
    and its downstream model is not built (its table keeps the first run's count); the
    warn-level check reports WARN and its downstream is built."""
    events = pq.read_table(next((materialized.landing / "events").rglob("*.parquet")))
    planted = events.slice(0, 4)
    planted = planted.set_column(
        0, "event_id", pc.binary_join_element_wise("planted_", planted.column("event_id"), "")
    )
    pq.write_table(planted, materialized.landing / "events" / "planted.parquet")
    before = _tables(materialized.root)
    # The guards, what they read and what reads them (the rest would change nothing here).
    guards = [dg.AssetKey(["marts", "planted_guard"]), dg.AssetKey(["marts", "planted_warned"])]
    after_guards = [
        dg.AssetKey(["marts", f"{name}_after"]) for name in ("planted", "planted_warned")
    ]
    upstream = dg.AssetSelection.assets(*guards).upstream().required_multi_asset_neighbors()
    selection = upstream | dg.AssetSelection.assets(*after_guards)
    result = _materialize(materialized.found, materialized.instance, selection)
    assert not result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    failed = {name: e.severity for name, e in evaluations.items() if not e.passed}
    assert failed == {
        "no_planted_events": dg.AssetCheckSeverity.ERROR,
        "planted_events_warned": dg.AssetCheckSeverity.WARN,
    }
    assert evaluations["no_planted_events"].metadata["failing_rows"].value == 4
    built = _built(result)
    assert "marts.planted_guard" in built
    assert "marts.planted_after" not in built
    assert "marts.planted_warned_after" in built
    after = _tables(materialized.root)
    n_events = before["core.fct_events"].num_rows
    assert after["core.fct_events"].num_rows == n_events + 4
    assert after["marts.planted_after"].to_pylist() == [{"n_events": n_events}]
    assert after["marts.planted_warned_after"].to_pylist() == [{"n_events": n_events + 4}]


def test_productlens_does_not_import_dagster() -> None:
    code = (
        "import sys, productlens.cli, productlens.pipeline, productlens.daily, "
        "productlens.integrations; print('dagster' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "False"


def test_two_tests_with_one_check_name_are_a_clear_error(tmp_path: Path) -> None:
    """Dagster needs a model's check names unique: `a-b` and `a_b` would both be `a_b`."""
    root = tmp_path / "p"
    marts = root / "models" / "marts"
    marts.mkdir(parents=True)
    (marts / "twice.sql").write_text("select 1 as x\n")
    (marts / "_twice.yml").write_text(
        "models:\n  - name: twice\n    grain: one row\n    tests:\n"
        '      - expression: "x = 1"\n        name: a-b\n'
        '      - expression: "x > 0"\n        name: a_b\n'
    )
    with pytest.raises(ModelError, match=r"'a_b' \('a-b' and 'a_b'\).*twice"):
        productlens_assets(root)


def test_a_check_runs_after_every_table_it_reads(materialized: Materialized) -> None:
    """Each check's query reads only its asset, tables upstream of it, or tables the check
    depends on itself (a reconciliation's other side): it never runs before them."""
    graph, found = materialized.graph, materialized.found
    by_table = {m.table: m for m in graph}
    built = {m.table for m in graph} | {
        up for m in graph for up in m.upstreams if up.startswith("raw.")
    }

    def upstream(names: set[str]) -> set[str]:
        seen: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(by_table[name].upstreams if name in by_table else [])
        return seen

    tests = {(t.model, check_name(t)): t for t in checks.compile_tests(graph)}
    specs = [
        s
        for a in [*found.assets, *found.checks]
        if not isinstance(a, dg.AssetSpec)
        for s in a.check_specs
    ]
    assert sorted((".".join(s.asset_key.path), s.name) for s in specs) == sorted(tests)
    assert any(s.additional_deps for s in specs)  # the demo has reconciliations
    early = {}
    for spec in specs:
        model = ".".join(spec.asset_key.path)
        deps = {".".join(d.asset_key.path) for d in spec.additional_deps}
        test = tests[(model, spec.name)]
        reads = {f"{t.db}.{t.name}" for t in test.query.find_all(exp.Table) if t.db} & built
        missing = reads - upstream({model, *deps})
        if missing:
            early[spec.name] = missing
        # ...and depends on nothing more: a test of tables upstream runs in the model's step.
        assert deps == reads - upstream({model}), spec.name
    assert early == {}


def test_a_test_of_a_table_two_models_up_runs_in_the_models_step(tmp_path: Path) -> None:
    """chain_b reads chain_a, which reads fct_events: a test of chain_b that reads
    fct_events runs in chain_b's step (nothing to wait for), one that reads a table off
    its lineage (dim_date) is a check step after that table."""
    marts = tmp_path / "p" / "models" / "marts"
    marts.mkdir(parents=True)
    (marts / "chain_a.sql").write_text("select event_id, event_date from fct_events\n")
    (marts / "chain_b.sql").write_text("select event_id, event_date from chain_a\n")
    (marts / "_chain.yml").write_text(
        "models:\n  - name: chain_a\n    grain: one row per event\n"
        "  - name: chain_b\n    grain: one row per event\n    columns:\n"
        "      event_id:\n        - relationships: {to: fct_events, field: event_id}\n"
        "      event_date:\n        - relationships: {to: dim_date, field: date_day}\n"
    )
    found = productlens_assets(tmp_path / "p")
    chain_b = dg.AssetKey(["marts", "chain_b"])
    in_step = {
        s.name
        for a in found.assets
        if not isinstance(a, dg.AssetSpec) and chain_b in a.keys
        for s in a.check_specs
    }
    separate = {
        s.name: {".".join(d.asset_key.path) for d in s.additional_deps}
        for c in found.checks
        for s in c.check_specs
        if s.asset_key == chain_b
    }
    assert in_step == {"relationships__chain_b__event_id__fct_events"}
    assert separate == {"relationships__chain_b__event_date__dim_date": {"core.dim_date"}}


def test_an_unreadable_landing_file_is_rejected_and_the_others_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ingest step loads as `productlens run` does (`daily.ingest_landing`): a file that
    cannot be read is rejected into ops.rejected_files under the Dagster run's id and left
    in place, the readable one loads, and the step succeeds saying so in its metadata."""
    landing = tmp_path / "landing"
    (landing / "users").mkdir(parents=True)
    (landing / "users" / "good.csv").write_text(
        "user_id,signup_ts,country,device,acquisition_channel,campaign_id,segment\n"
        "u1,2026-03-02 09:00:00,US,web,organic,,Regular\n"
        "u2,2026-03-03 10:00:00,GB,mobile,paid_search,,Budget\n"
    )
    bad = landing / "users" / "not_parquet.parquet"
    bad.write_bytes(b"user_id,country\nu1,DE\n")
    root, result, users = _ingest_users(tmp_path, landing, monkeypatch)
    assert users.metadata["rows_loaded"].value == 2
    assert users.metadata["files_rejected"].value == 1
    assert bad.exists()  # left in place
    engine = open_readonly(root)
    try:
        rejected = engine.fetch_all(q("select path, run_id, reason from ops.rejected_files"))
        loaded = engine.fetch_all(q("select user_id from raw.users order by user_id"))
    finally:
        engine.close()
    ((path, run_id, reason),) = rejected
    assert (path, run_id) == (str(bad), result.run_id)
    assert "magic bytes not found" in reason
    assert loaded == [("u1",), ("u2",)]


def _ingest_users(
    tmp_path: Path, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, dg.ExecuteInProcessResult, dg.AssetMaterialization]:
    """A project on `landing` whose raw.users asset alone is materialised: the project
    root, the successful result and the users materialisation (its metadata)."""
    root = _project(tmp_path / "project", landing)
    found = productlens_assets(root)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # nothing of Dagster's outside tmp
    with dg.DagsterInstance.ephemeral(tempdir=str(tmp_path)) as instance:
        ingest_only = dg.AssetSelection.assets(dg.AssetKey(["raw", "users"]))
        result = _materialize(found, instance, ingest_only.required_multi_asset_neighbors())
    assert result.success
    users = next(
        m.materialization
        for m in result.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey(["raw", "users"])
    )
    return root, result, users


def test_every_landing_file_unreadable_rejects_them_all_and_loads_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no readable landing file at all, the ingest step still records each one in
    ops.rejected_files (left in place) and loads nothing, saying so in its metadata."""
    landing = tmp_path / "landing"
    (landing / "users").mkdir(parents=True)
    bad = [landing / "users" / name for name in ("a.parquet", "b.parquet")]
    for path in bad:
        path.write_bytes(b"user_id,country\nu1,DE\n")
    root, _, users = _ingest_users(tmp_path, landing, monkeypatch)
    assert users.metadata["rows_loaded"].value == 0
    assert users.metadata["files_rejected"].value == 2
    assert all(path.exists() for path in bad)
    engine = open_readonly(root)
    try:
        rejected = engine.fetch_all(q("select path from ops.rejected_files order by path"))
    finally:
        engine.close()
    assert rejected == [(str(p),) for p in bad]
