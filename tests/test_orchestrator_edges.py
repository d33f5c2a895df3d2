"""The orchestrators' runs and `productlens run` (cron) never work on one warehouse at
once: an Airflow stage or a Dagster run started while a `productlens run` holds the
project's run lock refuses with `RunInProgress` (transient, so Airflow retries it) and
records nothing; a stage that meets a model error ends its run failed."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from productlens import daily
from productlens.app import open_engine
from productlens.config import load_project
from productlens.errors import ConfigError, ModelError, RunInProgress
from productlens.integrations import stages
from productlens.integrations.dagster import productlens_assets
from productlens.retry import is_transient
from tests.holders import hold_run_lock
from tests.test_run import _project


def test_an_airflow_stage_refuses_while_a_productlens_run_holds_the_lock(
    tmp_path: Path,
) -> None:
    root = _project(tmp_path / "p")
    holder = hold_run_lock(load_project(root).run_lock_path)
    try:
        with pytest.raises(RunInProgress) as raised:
            stages.ingest(stages.StageJob(root, "airflow.run1"))
    finally:
        holder.communicate("")
    assert is_transient(raised.value)  # Airflow retries it, within the task's retries
    assert not (root / "warehouse.duckdb").exists()  # the stage touched nothing
    # Once the lock is free, the same stage runs.
    assert stages.ingest(stages.StageJob(root, "airflow.run1"))["run_id"] == "airflow.run1"


def test_a_dagster_run_refuses_while_a_productlens_run_holds_the_lock(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    found = productlens_assets(root)
    holder = hold_run_lock(load_project(root).run_lock_path)
    try:
        with pytest.raises(dg.DagsterResourceFunctionError) as raised:
            dg.materialize(
                found.assets,
                resources=found.resources,
                selection=dg.AssetSelection.key_prefixes("raw"),  # the ingest step
                instance=dg.DagsterInstance.ephemeral(),
            )
    finally:
        holder.communicate("")
    assert isinstance(raised.value.__cause__, RunInProgress)  # the resource refused
    assert not (root / "warehouse.duckdb").exists()


def test_an_airflow_stage_with_a_model_error_ends_the_run_failed(tmp_path: Path) -> None:
    """A broken model YAML fails the stage and ends the run `failed` with the reason (not
    left `running`, later `interrupted`, as a killed run), and the hook is told."""
    root = _project(tmp_path / "p", '\non_failure = "cat > hook.json"\n')
    broken = root / "models" / "marts" / "_broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text("models:\n  - name: nowhere\n    grain: one row\n")
    with pytest.raises(ModelError):
        stages.ingest(stages.StageJob(root, "airflow.run1"))
    engine = open_engine(load_project(root), read_only=True)
    try:
        (run,) = daily.history(engine)
    finally:
        engine.close()
    assert (run.run_id, run.status) == ("airflow.run1", "failed")
    assert "nowhere" in (run.error or "")
    assert json.loads((root / "hook.json").read_text())["run"]["run_id"] == "airflow.run1"


def test_dagster_definitions_refuse_a_folder_that_is_not_a_project(tmp_path: Path) -> None:
    """As the Airflow DAG does: a mistyped project folder fails as the definitions file
    loads, naming the folder, and no warehouse is made there."""
    with pytest.raises(ConfigError, match="project folder does not exist") as raised:
        productlens_assets(tmp_path / "typo")
    assert "typo" in str(raised.value)
    assert not (tmp_path / "typo").exists()
