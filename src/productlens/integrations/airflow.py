"""An Airflow DAG that runs productlens every day: ingest -> build -> check -> publish.

In a file of the DAG folder::

    from productlens.integrations.airflow import productlens_dag

    dag = productlens_dag("/srv/analytics")

Each task calls productlens's Python API (`productlens.integrations.stages`, the stages
of `productlens run`) for the run's logical date, in the task's own process: the tasks
share nothing but the warehouse and the small JSON values they pass on (XCom). The check
task is the data-quality gate: an error-level data test that fails it leaves publish
`upstream_failed`, so the previous marts stay live. Ingest loads as `productlens run`
does: a landing file that cannot be read is rejected (`ops.rejected_files`) and the others
load; the run then ends `completed_with_rejections` after publish has swapped the marts in,
and the publish task fails naming the files (`run` exits 3). One Airflow run is one
productlens run (`productlens runs`), whatever its retries.

Retries are for transient errors only (a warehouse file another process holds, a dropped
connection: `productlens.retry.is_transient`), as many and as far apart as `[run]
retries` and `backoff_seconds` say; any other error fails the task at once
(`AirflowFailException`). Only Airflow users import this module: productlens itself never
imports Airflow.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import DAG, CronDataIntervalTimetable, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from productlens.config import PROJECT_FILE, load_project
from productlens.errors import ConfigError
from productlens.retry import is_transient

if TYPE_CHECKING:
    from productlens.integrations.stages import StageJob

T = TypeVar("T")

# The run ids Airflow makes (`scheduled__2026-01-05T00:00:00+00:00`) as productlens ids,
# which name a folder (`runs/<id>/`): the characters a file name takes, the rest as `_`.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")

# Every day at midnight UTC, for the day that just ended: its logical date is that day,
# the `--date` of `productlens run`. (Airflow 3 reads a plain "@daily", by default, as a
# trigger whose logical date is the midnight it fires at: a run for the day just begun.)
DAILY = CronDataIntervalTimetable("@daily", timezone="UTC")


def productlens_dag(
    project: str | Path,
    dag_id: str = "productlens",
    schedule: Any = DAILY,
    **dag_kwargs: Any,
) -> DAG:
    """The DAG ingest -> build -> check -> publish over the productlens project folder
    `project` (its `productlens.toml` names the engine and the landing folder), by
    default run daily for the day just ended (`DAILY`).
    `dag_kwargs` go to Airflow's `DAG` (`start_date`, `tags`, `default_args`, ...); by
    default one run at a time (the stages share `marts_next`) and no catch-up."""
    root = Path(project).resolve()
    # A wrong folder or a project without a landing folder fails here, as the DAG file
    # is parsed, rather than in every run.
    if not (root / PROJECT_FILE).is_file():
        raise ConfigError(f"no {PROJECT_FILE} in the productlens project folder", path=root)
    loaded = load_project(root)
    if loaded.config.sources.landing is None:
        raise ConfigError(
            "the DAG runs productlens run, which reads a landing folder: set "
            '[sources] landing = "landing" (or an s3:// prefix)',
            path=root / PROJECT_FILE,
        )
    settings = loaded.config.run
    default_args = {
        "retries": settings.retries,
        "retry_delay": timedelta(seconds=settings.backoff_seconds),
        "retry_exponential_backoff": 2.0,  # a multiplier in Airflow 3.3 (True: 1, no growth)
        **dag_kwargs.pop("default_args", {}),
    }
    dag_kwargs.setdefault("start_date", datetime(2026, 1, 1, tzinfo=UTC))
    dag_kwargs.setdefault("catchup", False)
    dag_kwargs.setdefault("max_active_runs", 1)
    dag_kwargs.setdefault("doc_md", __doc__)

    with DAG(dag_id, schedule=schedule, default_args=default_args, **dag_kwargs) as dag:
        # The stages (and the warehouse code behind them) are imported as a task runs:
        # parsing the DAG file, which Airflow does again and again, stays cheap.
        @task(task_id="ingest")
        def ingest() -> dict[str, Any]:
            from productlens.integrations import stages

            return _stage(stages.ingest, root)

        @task(task_id="build")
        def build() -> dict[str, Any]:
            from productlens.integrations import stages

            return _stage(lambda job: stages.build(job).to_json(), root)

        @task(task_id="check")
        def check(built: dict[str, Any]) -> dict[str, Any]:
            from productlens.integrations import stages

            done = stages.Built.from_json(built)
            return _stage(lambda job: stages.check(job, done).to_json(), root)

        @task(task_id="publish")
        def publish(built: dict[str, Any], checked: dict[str, Any]) -> dict[str, Any]:
            from productlens.integrations import stages

            done, passed = stages.Built.from_json(built), stages.Checked.from_json(checked)
            return _stage(lambda job: stages.publish(job, done, passed), root)

        # XCom references, typed as the values the tasks receive when they run.
        built: Any = build()
        ingest() >> built
        checked: Any = check(built)
        publish(built, checked)  # publish needs check's success: the data-quality gate
    return dag


def _stage(action: Callable[[StageJob], T], root: Path) -> T:
    """Run one stage for this task's run; a data error fails the task without retries."""
    job = _job(root)
    try:
        return action(job)
    except Exception as exc:
        if is_transient(exc):
            raise  # Airflow retries it, while retries are left
        raise AirflowFailException(str(exc)) from exc


def _job(root: Path) -> StageJob:
    """The stage's job from the task's context: one productlens run per Airflow run, for
    the run's logical date (a manual run without one: the day it was triggered for)."""
    from productlens.integrations.stages import StageJob

    context = get_current_context()
    dag_run = context["dag_run"]
    when = context.get("logical_date") or dag_run.run_after
    ti = context["ti"]
    return StageJob(
        root=root,
        run_id=_UNSAFE.sub("_", f"{dag_run.dag_id}.{dag_run.run_id}"),
        day=when.astimezone(UTC).date(),
        last_attempt=ti.try_number > ti.max_tries,
    )
