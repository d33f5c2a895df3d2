"""The orchestrators' runs and `productlens run` (cron) never work on one warehouse at
once: an Airflow stage or a Dagster run started while a `productlens run` holds the
project's run lock refuses with `RunInProgress` (transient, so Airflow retries it) and
records nothing."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from productlens.config import load_project
from productlens.errors import RunInProgress
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
