"""The Airflow DAG factory, run in this process with Airflow 3's `dag.test()` on the DuckDB
engine: a good day publishes the marts `productlens run` publishes for it; a failed
error-level data test fails the check task, publish never runs, the previous marts stay
live and `productlens runs` shows the run failed, without a retry for a data error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from productlens.app import open_engine
from productlens.config import load_project
from productlens.engines import DuckDBEngine
from productlens.errors import ConfigError
from productlens.simulate import generate, preset
from tests.conftest import q
from tests.cross_engine import differences
from tests.holders import hold_duckdb
from tests.test_run import GUARD_SQL, GUARD_YML, _cli, _project, _tables

pytestmark = pytest.mark.xdist_group("airflow")  # one Airflow metadata DB per worker

DAG_FILE = """from productlens.integrations.airflow import productlens_dag

dag = productlens_dag({root!r})
"""


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """AIRFLOW_HOME in a temporary folder, its SQLite metadata DB created here (no
    network, no example DAGs). Set before Airflow is first imported: it reads its
    configuration then."""
    home = tmp_path_factory.mktemp("airflow")
    (home / "dags").mkdir()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW_HOME", str(home))
        env.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(home / "dags"))
        env.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        env.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
        from airflow.utils import db

        db.initdb()
        yield home


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[date]]:
    """A small simulated world (every table, three days): the files a landing folder
    receives, and its days."""
    data = tmp_path_factory.mktemp("world") / "data"
    generate(preset(users=150, days=3, seed=11), data, workers=1)
    days = sorted(date.fromisoformat(p.name.split("=", 1)[1]) for p in (data / "events").iterdir())
    return data, days


def _with_guard(root: Path, data: Path) -> Path:
    """A project whose landing folder holds the world, with the planted-failure guard."""
    (root / "models" / "marts").mkdir(parents=True)
    (root / "models" / "marts" / "planted_guard.sql").write_text(GUARD_SQL)
    (root / "models" / "marts" / "_guard.yml").write_text(GUARD_YML)
    shutil.copytree(data, root / "landing", dirs_exist_ok=True)
    return root


def _marts(root: Path) -> dict[str, pa.Table]:
    engine = open_engine(load_project(root), read_only=True)
    try:
        return {k: v for k, v in _tables(engine).items() if k.startswith("marts.")}  # type: ignore[arg-type]
    finally:
        engine.close()


def _run_dag(
    home: Path,
    day: date,
    dag_id: str = "productlens",
    prepare: Callable[[Any], None] | None = None,
    **test_kwargs: Any,
) -> tuple[str, dict[str, tuple[str, int]]]:
    """One run of a DAG of the DAG folder, for `day`: the run's state and each task's
    (state, tries). `prepare` gets the DAG first."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(home / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags[dag_id]
    if prepare is not None:
        prepare(dag)
    run = dag.test(logical_date=datetime(day.year, day.month, day.day, tzinfo=UTC), **test_kwargs)
    tasks = {ti.task_id: (str(ti.state), ti.try_number) for ti in run.get_task_instances()}
    return str(run.state), tasks


@pytest.fixture(scope="module")
def published(
    airflow_home: Path, world: tuple[Path, list[date]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, pa.Table], tuple[str, dict[str, tuple[str, int]]]]:
    """The DAG run once for the world's last day over a project of its own: the project,
    its marts right after, and the run's outcome."""
    data, days = world
    hook = '\non_failure = "cat > hook.json"\n'
    root = _with_guard(_project(tmp_path_factory.mktemp("dag") / "p", hook), data)
    (airflow_home / "dags" / "productlens_dag.py").write_text(DAG_FILE.format(root=str(root)))
    outcome = _run_dag(airflow_home, days[-1])
    return root, _marts(root), outcome


def _runs(root: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()  # Airflow's own log lines, printed while the DAG ran
    code, listed, err = _cli(root, "runs", "--json", capsys=capsys)
    assert code == 0, err
    runs: list[dict[str, Any]] = json.loads(listed)
    return runs


def test_a_good_day_publishes_what_productlens_run_publishes(
    published: tuple[Path, dict[str, pa.Table], tuple[str, dict[str, tuple[str, int]]]],
    world: tuple[Path, list[date]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, marts, (state, tasks) = published
    data, days = world
    assert state == "success", tasks
    assert tasks == {
        "ingest": ("success", 1),
        "build": ("success", 1),
        "check": ("success", 1),
        "publish": ("success", 1),
    }

    # The reference: `productlens run --date` for the same day over the same files.
    reference = _with_guard(_project(tmp_path / "cli"), data)
    code, out, err = _cli(reference, "run", "--date", days[-1].isoformat(), capsys=capsys)
    assert code == 0, out + err
    expected = _marts(reference)
    assert sorted(marts) == sorted(expected)
    assert marts["marts.event_counts_daily"].num_rows > 0
    assert {name: differences(t, marts[name]) for name, t in expected.items()} == {
        name: [] for name in expected
    }

    (run,) = _runs(root, capsys)
    assert run["status"] == "success"
    assert run["run_id"].startswith("productlens.manual__")
    assert run["dates"]["from"] == days[-1].isoformat()
    delivered = sum(pq.ParquetFile(f).metadata.num_rows for f in data.rglob("*.parquet"))
    assert run["rows"]["in"] == delivered
    assert run["rows"]["loaded"] + run["rows"]["quarantined"] == delivered
    assert run["tests"]["passed"] > 0
    assert run["tests"]["failed"] == 0
    assert {"ingest", "build", "build marts", "check", "publish marts"} <= set(run["stages"])
    results = json.loads((root / "runs" / run["run_id"] / "run_results.json").read_text())
    assert results["run"]["status"] == "success"
    assert {r["stage"] for r in results["results"] if r["object"] is None} >= {
        "ingest",
        "build",
        "check",
        "publish marts",
    }
    assert all(t["status"] in ("pass", "warn") for t in results["tests"])

    # Cleared and run again (as an Airflow user may), the stages change nothing: the
    # same marts, still one successful run.
    from productlens.integrations import stages

    job = stages.StageJob(root, run["run_id"], days[-1])
    stages.ingest(job)
    built = stages.build(job)
    stages.publish(job, built, stages.check(job, built))
    again = _marts(root)
    assert {name: differences(t, again[name]) for name, t in marts.items()} == {
        name: [] for name in marts
    }
    (rerun,) = _runs(root, capsys)
    assert (rerun["run_id"], rerun["status"]) == (run["run_id"], "success")
    assert rerun["rows"] == run["rows"]


def test_a_failed_data_test_fails_check_and_publish_never_runs(
    airflow_home: Path,
    published: tuple[Path, dict[str, pa.Table], tuple[str, dict[str, tuple[str, int]]]],
    world: tuple[Path, list[date]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, before, _outcome = published
    _data, days = world
    assert not (root / "hook.json").exists()  # the good run called no hook
    events = pq.read_table(next((root / "landing" / "events").rglob("*.parquet")))
    planted = events.slice(0, 5)
    planted = planted.set_column(
        0, "event_id", pc.binary_join_element_wise("planted_", planted.column("event_id"), "")
    )
    pq.write_table(planted, root / "landing" / "events" / "planted.parquet")

    state, tasks = _run_dag(airflow_home, days[-1] + timedelta(days=1))
    assert state == "failed"
    # A data error is not retried ([run] retries = 2 by default), and publish never ran.
    assert tasks == {
        "ingest": ("success", 1),
        "build": ("success", 1),
        "check": ("failed", 1),
        "publish": ("upstream_failed", 0),
    }

    engine = open_engine(load_project(root), read_only=True)
    try:
        # The planted rows reached core and the marts built aside...
        found = engine.fetch_all(
            q("SELECT count(*) FROM core.fct_events WHERE event_id LIKE 'planted%'")
        )
        assert found == [(5,)]
        aside = engine.fetch_all(
            q("SELECT count(*) FROM marts_next.planted_guard WHERE event_id LIKE 'planted%'")
        )
        assert aside == [(5,)]
    finally:
        engine.close()
    # ...but the live marts are the good run's, row for row.
    after = _marts(root)
    assert {k: differences(v, after[k]) for k, v in before.items()} == {k: [] for k in before}

    latest, earlier = _runs(root, capsys)
    assert earlier["status"] == "success"
    assert latest["status"] == "failed"
    assert latest["run_id"] != earlier["run_id"]
    assert latest["tests"]["failed_tests"] == ["no_planted_events"]
    # Rebuilt from the first date owed (the planted rows' dates), before the run's own day.
    assert latest["rebuild_from"] <= days[-1].isoformat()
    assert "no_planted_events" in latest["error"]
    assert "check" in latest["stages"]
    assert "publish marts" not in latest["stages"]
    # The [run] on_failure hook got the failed run's JSON, as `productlens run` gives it.
    hook = json.loads((root / "hook.json").read_text())
    assert hook["run"]["run_id"] == latest["run_id"]
    assert hook["run"]["status"] == "failed"
    assert [t["name"] for t in hook["tests"] if t["status"] == "fail"] == ["no_planted_events"]


def test_a_transient_error_is_retried_within_one_run(
    airflow_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another process holds the warehouse file when ingest first opens it: Airflow runs
    ingest again (it is released meanwhile) and the run stays one productlens run."""
    root = _project(tmp_path / "p")
    (airflow_home / "dags" / "retried.py").write_text(
        DAG_FILE.format(root=str(root)).replace(")\n", ', dag_id="retried")\n')
    )
    warehouse = load_project(root).warehouse_path
    DuckDBEngine(warehouse).close()
    holder = hold_duckdb(warehouse, read_only=False)

    def release(_context: Any) -> None:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)

    def on_retry(dag: Any) -> None:
        dag.task_dict["ingest"].on_retry_callback = [release]

    try:
        # Only ingest runs (the landing folder is empty); the others are marked done.
        state, tasks = _run_dag(
            airflow_home,
            date(2026, 1, 5),
            "retried",
            on_retry,
            mark_success_pattern="build|check|publish",
        )
    finally:
        if holder.poll() is None:
            release(None)
    assert tasks["ingest"] == ("success", 2), tasks
    assert state == "success"
    (run,) = _runs(root, capsys)
    assert run["run_id"].startswith("retried.manual__")


def test_productlens_never_imports_airflow() -> None:
    """Only a DAG file imports Airflow (through productlens.integrations.airflow)."""
    modules = "productlens.cli, productlens.daily, productlens.integrations.stages"
    code = (
        f"import sys, {modules}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'airflow'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_wrong_project_fails_as_the_dag_file_is_parsed(
    airflow_home: Path, tmp_path: Path
) -> None:
    from productlens.integrations.airflow import productlens_dag

    with pytest.raises(ConfigError, match=r"no productlens\.toml"):
        productlens_dag(tmp_path / "missing")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "productlens.toml").write_text("[run]\nretries = 1\n")
    with pytest.raises(ConfigError, match=r"\[sources\] landing"):
        productlens_dag(bare)
    dag = productlens_dag(_project(tmp_path / "good"), dag_id="good")
    # The data-quality gate: publish waits for check (and build); retries from [run].
    assert {t.task_id: t.upstream_task_ids for t in dag.tasks} == {
        "ingest": set(),
        "build": {"ingest"},
        "check": {"build"},
        "publish": {"build", "check"},
    }
    assert dag.task_dict["check"].retries == 2


def test_a_run_ended_twice_shows_its_latest_end(tmp_path: Path) -> None:
    """A task that failed and then succeeded on a retry (or a cleared run) ends one run
    twice in `ops.run_history`: `productlens runs` shows the later end, in either order
    of the rows."""
    from productlens import daily

    engine = DuckDBEngine(tmp_path / "w.duckdb")
    try:
        first = datetime(2026, 1, 6, 1, 0)
        rows = {"a": ("running", "failed", "success"), "b": ("success", "failed", "running")}
        ends = {"running": None, "failed": 3, "success": 9}  # minutes after the start
        for run_id, statuses in rows.items():
            for status in statuses:
                record = daily.RunRecord(run_id, status=status, started_at=first)
                minutes = ends[status]
                if minutes is not None:
                    record.finished_at = first + timedelta(minutes=minutes)
                daily._record(engine, record)
        shown = {r.run_id: (r.status, r.finished_at) for r in daily.history(engine)}
    finally:
        engine.close()
    latest = ("success", first + timedelta(minutes=9))
    assert shown == {"a": latest, "b": latest}


def test_the_daily_schedule_runs_for_the_day_just_ended(airflow_home: Path, tmp_path: Path) -> None:
    """A scheduled run's logical date (the `--date` its tasks work on) is the day before
    the midnight it fires at: the run for 5 January starts once that day is over."""
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    from productlens.integrations.airflow import productlens_dag

    dag = productlens_dag(_project(tmp_path / "p"), dag_id="scheduled")
    earliest = datetime(2026, 1, 5, tzinfo=UTC)
    info = coerce_to_core_timetable(dag.timetable).next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=earliest, latest=None, catchup=True),
    )
    assert info is not None
    assert info.logical_date == earliest
    assert info.run_after == datetime(2026, 1, 6, tzinfo=UTC)
    # One run at a time (a run's stages share marts_next), no catch-up by default.
    assert (dag.max_active_runs, dag.catchup) == (1, False)


@pytest.mark.parametrize(
    ("error", "last_attempt", "hooked"),
    [
        (ConnectionResetError("dropped"), False, False),  # transient: a retry follows
        (ConnectionResetError("dropped"), True, True),  # transient, no retry left
        (ValueError("bad data"), False, True),  # not transient: no retry will follow
    ],
)
def test_the_failure_hook_runs_only_when_no_retry_follows(
    tmp_path: Path, error: Exception, last_attempt: bool, hooked: bool
) -> None:
    """A stage's failure ends the run as failed every time; `[run] on_failure` runs only
    when no retry follows (the last attempt, or an error no retry would cure)."""
    from productlens import daily
    from productlens.integrations import stages

    root = _project(tmp_path / "p", '\non_failure = "cat > hook.json"\n')
    job = stages.StageJob(root, "run-1", date(2026, 1, 5), last_attempt=last_attempt)

    def fail() -> None:
        raise error

    with pytest.raises(type(error)), stages._opened(job, None) as opened:
        stages._attempt(job, opened, fail)
    assert (root / "hook.json").exists() == hooked
    engine = open_engine(load_project(root), read_only=True)
    try:
        (record,) = daily.history(engine)
    finally:
        engine.close()
    assert (record.run_id, record.status, record.error) == ("run-1", "failed", str(error))


PROBE_DAG = """import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, task

from productlens.integrations.airflow import DAILY, _job

with DAG("probe", schedule=DAILY, start_date=datetime(2026, 1, 1, tzinfo=UTC)) as dag:

    @task(retries=1, retry_delay=timedelta(0))
    def probe() -> None:
        job = _job(Path({root!r}))
        seen = Path({root!r}) / "jobs.jsonl"
        with seen.open("a") as out:
            out.write(json.dumps([job.run_id, job.day.isoformat(), job.last_attempt]) + "\\n")
        if not job.last_attempt:
            raise ConnectionResetError("dropped")  # transient: Airflow retries

    probe()
"""


def test_each_try_knows_whether_it_is_the_last(airflow_home: Path, tmp_path: Path) -> None:
    """The job a task's stage gets: the run's id and logical date on every try, and
    `last_attempt` only on the try no retry follows (one retry: the second)."""
    root = _project(tmp_path / "p")
    (airflow_home / "dags" / "probe.py").write_text(PROBE_DAG.format(root=str(root)))
    state, tasks = _run_dag(airflow_home, date(2026, 1, 5), "probe")
    assert (state, tasks) == ("success", {"probe": ("success", 2)})
    jobs = [json.loads(line) for line in (root / "jobs.jsonl").read_text().splitlines()]
    assert [(day, last) for _run_id, day, last in jobs] == [
        ("2026-01-05", False),
        ("2026-01-05", True),
    ]
    assert jobs[0][0] == jobs[1][0]
    assert jobs[0][0].startswith("probe.manual__")


def test_a_run_for_a_past_day_rebuilds_from_that_day(
    world: tuple[Path, list[date]], tmp_path: Path
) -> None:
    """Nothing new in the landing folder, but a run for an earlier day (an Airflow run
    cleared, a backfill) rebuilds from that day; a run with nothing owed and no day of
    its own builds nothing."""
    from productlens.integrations import stages

    data, days = world
    root = _with_guard(_project(tmp_path / "p"), data)
    first = stages.StageJob(root, "first", days[-1])
    stages.ingest(first)
    built = stages.build(first)
    stages.publish(first, built, stages.check(first, built))
    again = stages.StageJob(root, "again", days[0])
    stages.ingest(again)
    rebuilt = stages.build(again)
    assert rebuilt == stages.Built(True, days[0], False)
    stages.publish(again, rebuilt, stages.check(again, rebuilt))
    idle = stages.StageJob(root, "idle", None)
    stages.ingest(idle)
    assert stages.build(idle) == stages.Built(False)


def test_a_test_that_could_not_run_counts_as_failed() -> None:
    """The run's tally: a test that errored (its query could not run) is a failed test,
    as `productlens runs` shows it for `productlens run`."""
    from productlens import daily
    from productlens.integrations import stages

    record = daily.RunRecord("r")
    outcomes = ["pass", "pass", "warn", "fail", "error"]
    stages._tally(record, [{"name": f"t{i}", "status": s} for i, s in enumerate(outcomes)])
    assert (record.tests_passed, record.tests_warned, record.tests_failed) == (2, 1, 2)
    assert record.failed_tests == ["t3", "t4"]


def test_an_unreadable_landing_file_is_rejected_as_productlens_run_rejects_it(
    world: tuple[Path, list[date]], tmp_path: Path
) -> None:
    """The stages load as `productlens run` does (`daily.ingest_landing`): a landing file
    that cannot be read is rejected into ops.rejected_files and left in place, the others
    load, the marts are published, and the run ends completed_with_rejections with the
    hook told and the publish task failing as `run` exits 3."""
    from productlens import daily
    from productlens.errors import FilesRejected
    from productlens.integrations import stages

    data, days = world
    root = _with_guard(_project(tmp_path / "p", '\non_failure = "cat > hook.json"\n'), data)
    bad = root / "landing" / "users" / "not_parquet.parquet"
    bad.write_bytes(b"user_id,country\nu1,DE\n")
    job = stages.StageJob(root, "rejecting", days[-1])
    ingested = stages.ingest(job)
    assert (ingested["files_rejected"], ingested["rows"]["loaded"] > 0) == (1, True)
    built = stages.build(job)
    checked = stages.check(job, built)
    with pytest.raises(FilesRejected, match="1 landing file"):
        stages.publish(job, built, checked)
    assert bad.exists()  # left in place
    engine = open_engine(load_project(root), read_only=True)
    try:
        (record,) = daily.history(engine)
        n_users = engine.fetch_all(q("select count(*) from marts.customer_metrics"))[0][0]
    finally:
        engine.close()
    assert (record.status, record.files_rejected) == (daily.WITH_REJECTIONS, 1)
    ((path, reason),) = [(r["path"], r["reason"]) for r in record.rejected_files]
    assert path == str(bad)
    assert "magic bytes not found" in str(reason)
    assert n_users == pq.read_table(data / "users").num_rows  # the good users/ file loaded
    hook = json.loads((root / "hook.json").read_text())
    assert hook["run"]["status"] == daily.WITH_REJECTIONS
    assert [r["path"] for r in hook["run"]["rejected_files"]] == [str(bad)]
