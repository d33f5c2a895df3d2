"""The small parts of `productlens run`, each against a closed-form answer or a real
DuckDB warehouse: which runs are owed a rebuild, how the history reads a run's rows,
the date window new rows touch, the option checks, the retry policy and the alert hook."""

from __future__ import annotations

import re
import shutil
import socket
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from sqlglot import exp

from productlens import checks, modeling
from productlens.app import open_engine
from productlens.config import load_project
from productlens.daily import (
    ZONE_MARGIN,
    RunRecord,
    RunRequest,
    Touched,
    _record,
    _tally_tests,
    aside_tests,
    history,
    pending,
    run_hook,
    run_in_progress,
    run_lock,
    touched_dates,
)
from productlens.engines import DuckDBEngine
from productlens.errors import ConfigError, EngineError, RunInProgress
from productlens.pipeline import Runner
from productlens.retry import RetryPolicy, is_transient, retrying
from productlens.simulate import generate, preset
from tests.holders import hold_run_lock

D1, D2, D3 = date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)


def _rec(
    run_id: str, status: str, rebuild_from: date | None = None, full: bool = False
) -> RunRecord:
    return RunRecord(run_id, status=status, rebuild_from=rebuild_from, full_rebuild=full)


# --- which runs are owed a rebuild -----------------------------------------------------------


def test_pending_stops_at_the_last_success_and_takes_the_earliest_date() -> None:
    newest_first = [
        _rec("c", "failed", D3),
        _rec("b", "failed", D2),
        _rec("a", "success", D1),  # published: owes nothing, nor do the runs before it
        _rec("0", "failed", None, full=True),
    ]
    assert pending(newest_first) == Touched(D2, None, False)
    assert pending([_rec("a", "success", D1)]) == Touched()
    assert pending([]) == Touched()


def test_a_run_that_published_with_rejected_files_owes_nothing() -> None:
    """`completed_with_rejections` published its marts, as `success` does."""
    newest_first = [
        _rec("b", "failed", D2),
        _rec("a", "completed_with_rejections", D1),
        _rec("0", "failed", None, full=True),
    ]
    assert pending(newest_first) == Touched(D2)


def test_a_killed_run_with_no_dates_recorded_is_owed_a_full_rebuild() -> None:
    assert pending([_rec("b", "interrupted"), _rec("a", "success", D1)]) == Touched(full=True)
    # ...but one that recorded its dates before it died is owed only those.
    assert pending([_rec("b", "interrupted", D2), _rec("a", "success")]) == Touched(D2)
    assert pending([_rec("b", "failed", None, full=True)]).full


def test_touched_merge_keeps_the_widest_window() -> None:
    merged = Touched(D2, D2).merge(Touched(D1, D1)).merge(Touched(D3, D3))
    assert merged == Touched(D1, D3, False)
    assert Touched(D1, D2).merge(Touched(full=True)) == Touched(D1, D2, True)
    assert Touched(D1, D2).merge(Touched(undated=True)) == Touched(D1, D2, undated=True)


# --- the history -----------------------------------------------------------------------------


def test_history_tells_a_killed_run_from_a_live_one(tmp_path: Path) -> None:
    engine = DuckDBEngine(tmp_path / "w.duckdb")
    try:
        start = datetime(2026, 1, 5, 6)
        done = RunRecord(
            "a", status="success", started_at=start, finished_at=start, rebuild_from=D1
        )
        _record(engine, RunRecord("a", started_at=start))
        _record(engine, dataclass_copy(RunRecord("a", started_at=start), rebuild_from=D1))
        _record(engine, done)
        older = RunRecord("b", started_at=start + timedelta(hours=1))
        _record(engine, older)
        informed = dataclass_copy(older, rebuild_from=D2)
        _record(engine, informed)
        _record(engine, RunRecord("c", started_at=start + timedelta(hours=2)))

        live = {r.run_id: r for r in history(engine, live=True)}
        assert [r.run_id for r in history(engine)] == ["c", "b", "a"]
        assert (live["a"].status, live["a"].finished_at) == ("success", start)  # its end row
        assert live["b"].status == "interrupted"  # a later run started: b was killed
        assert live["b"].rebuild_from == D2  # its latest row says what it loaded
        assert live["c"].status == "running"  # the run lock says c is alive
        dead = {r.run_id: r for r in history(engine, live=False)}
        assert dead["c"].status == "interrupted"
        assert pending(history(engine, live=False)) == Touched(full=True)
    finally:
        engine.close()


def dataclass_copy(record: RunRecord, **changes: object) -> RunRecord:
    import dataclasses

    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


def test_the_run_lock_refuses_a_second_holder_and_frees_on_exit(tmp_path: Path) -> None:
    lock = tmp_path / "runs" / ".lock"
    assert not run_in_progress(lock)
    holder = hold_run_lock(lock)
    try:
        assert run_in_progress(lock)
        with pytest.raises(RunInProgress, match=f"pid {holder.pid}"), run_lock(lock):
            pass
    finally:
        holder.stdin.close()  # type: ignore[union-attr]
        holder.wait(timeout=30)
    assert not run_in_progress(lock)
    with run_lock(lock), run_lock(lock):  # re-entrant within one process
        assert lock.read_text().startswith("pid ")


# --- the dates new rows touch ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("tiny") / "data"
    generate(preset(users=40, days=4, seed=5), data, workers=1)
    return data


def _ingest(tmp_path: Path, *folders: Path):  # type: ignore[no-untyped-def]
    project = load_project(tmp_path)
    engine = open_engine(project)
    runner = Runner(project, engine, Console(quiet=True))
    result = runner.ingest(list(folders))
    graph = modeling.discover(project.config, project.model_dirs)
    return engine, runner, graph, result


def _dates(table_path: Path, column: str) -> tuple[date, date]:
    days = pc.cast(pq.read_table(table_path).column(column), "date32")
    return pc.min(days).as_py(), pc.max(days).as_py()


def test_touched_dates_span_the_new_rows_less_a_day_for_the_time_zone(
    tmp_path: Path, tiny: Path
) -> None:
    events = tmp_path / "in" / "events"
    days = sorted((tiny / "events").iterdir())
    for day in days[1:3]:  # two middle days only
        shutil.copytree(day, events / day.name)
    engine, runner, graph, result = _ingest(tmp_path, events)
    try:
        first, last = _dates(events, "event_ts")
        assert touched_dates(engine, graph, result) == Touched(first - ZONE_MARGIN, last)
        assert first > _dates(tiny / "events", "event_ts")[0]  # not the whole world
    finally:
        runner.finish()
        engine.close()


def test_order_lines_count_on_their_orders_dates_and_products_rebuild_whole(
    tmp_path: Path, tiny: Path
) -> None:
    engine, runner, graph, result = _ingest(tmp_path, tiny / "orders", tiny / "order_items")
    try:
        first, last = _dates(tiny / "orders", "order_ts")
        assert touched_dates(engine, graph, result) == Touched(first - ZONE_MARGIN, last)
        more = runner.ingest([tiny / "products"])
        assert touched_dates(engine, graph, more).full
        # Campaigns only models rebuilt whole read: no window, but a build all the same.
        campaigns = runner.ingest([tiny / "campaigns"])
        assert touched_dates(engine, graph, campaigns) == Touched(undated=True)
    finally:
        runner.finish()
        engine.close()


# --- options ---------------------------------------------------------------------------------


def test_run_request_checks_its_dates() -> None:
    assert RunRequest(D1, D1).date_to == D1  # one day: --from equal to --to
    with pytest.raises(ConfigError, match="before --from"):
        RunRequest(D2, D1)
    with pytest.raises(ConfigError, match="--to needs --from"):
        RunRequest(None, D1)
    # Today in UTC, as the check counts it (the machine's local date is a day ahead of
    # UTC for part of every day east of Greenwich).
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    assert RunRequest(tomorrow, tomorrow)  # may have begun east of UTC
    with pytest.raises(ConfigError, match="in the future"):
        RunRequest(tomorrow + timedelta(days=2))


# --- retries ---------------------------------------------------------------------------------


def test_only_a_lock_or_a_conflict_is_transient_among_duckdb_errors() -> None:
    assert is_transient(duckdb.IOException('Could not set lock on file "w.duckdb"'))
    assert is_transient(duckdb.TransactionException("Conflict on tuple deletion"))
    assert not is_transient(duckdb.IOException("No space left on device"))
    assert not is_transient(duckdb.BinderException("column x not found"))
    wrapped = RuntimeError("stage failed")
    wrapped.__cause__ = ConnectionResetError("reset by peer")
    assert is_transient(wrapped)


def test_duckdb_running_out_of_its_memory_limit_is_not_retried(tmp_path: Path) -> None:
    """A real out-of-memory error (DuckDB's own memory_limit, nowhere to spill): the same
    query on the same data fails the same way, so it is not transient and runs once."""
    engine = DuckDBEngine(tmp_path / "w.duckdb")
    engine.connection.execute("SET memory_limit = '20MB'")
    engine.connection.execute("SET temp_directory = ''")
    calls: list[int] = []
    waits: list[float] = []

    def too_big() -> object:
        calls.append(1)
        return engine.fetch_all(exp.select("list(i)").from_("range(20000000) AS t(i)"))

    try:
        with pytest.raises(EngineError) as caught:
            retrying(RetryPolicy(retries=2, backoff_seconds=1.0), too_big, sleep=waits.append)
    finally:
        engine.close()
    assert isinstance(caught.value.__cause__, duckdb.OutOfMemoryException)
    assert not is_transient(caught.value)
    assert (calls, waits) == ([1], [])


def test_a_postgresql_server_refusing_the_login_is_not_retried(pg_dsn: str) -> None:
    """A real server answering "no such database" or "no such role" (a setting to fix)
    fails at once; a port nothing listens on (a server not up yet) is retried."""
    from productlens.engines.postgres import PostgresEngine
    from productlens.errors import EngineUnavailable

    with socket.socket() as probe:  # a free port, closed again
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    cases = {
        re.sub(r"dbname=\S+", "dbname=no_such_db", pg_dsn): 1,
        pg_dsn + " user=no_such_role": 1,
        re.sub(r"port=\d+", f"port={free}", pg_dsn): 3,
    }
    for dsn, attempts in cases.items():
        calls: list[int] = []
        waits: list[float] = []

        def connect(dsn: str = dsn, calls: list[int] = calls) -> object:
            calls.append(1)
            return PostgresEngine(dsn)

        with pytest.raises(EngineError) as caught:
            retrying(RetryPolicy(retries=2, backoff_seconds=1.0), connect, sleep=waits.append)
        assert len(calls) == attempts, (dsn, str(caught.value))
        assert waits == [1.0, 2.0][: attempts - 1], dsn
        assert isinstance(caught.value, EngineUnavailable) == (attempts > 1), dsn


def _unavailable_rpc() -> BaseException:
    """A real gRPC call to a port nothing listens on: status UNAVAILABLE."""
    import grpc

    with socket.socket() as probe:  # a free port, closed again
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/spark.connect.SparkConnectService/Config")
        with pytest.raises(grpc.RpcError) as caught:
            call(b"", timeout=10)
    return caught.value


def test_a_spark_connect_server_that_is_unavailable_is_transient() -> None:
    """Spark Connect's client turns a gRPC error into SparkConnectGrpcException with the
    call's status (its `_handle_rpc_error`, when the server sent no details), and the
    Spark engine wraps that in an EngineError: UNAVAILABLE (the server is gone or not up)
    is worth a retry; another status (a bad request) is an answer."""
    import grpc
    from pyspark.errors.exceptions.connect import SparkConnectGrpcException

    rpc = _unavailable_rpc()
    assert rpc.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert is_transient(rpc)
    down = SparkConnectGrpcException(message=str(rpc), grpc_status_code=rpc.code())  # type: ignore[attr-defined]
    wrapped = EngineError("cannot run the query", engine="spark")
    wrapped.__cause__ = down
    assert is_transient(wrapped)
    refused = SparkConnectGrpcException(
        message="UNAVAILABLE is a word in this message only",
        grpc_status_code=grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert not is_transient(refused)


def test_retrying_waits_doubling_then_gives_up() -> None:
    waits: list[float] = []
    calls: list[int] = []

    def always() -> None:
        calls.append(1)
        raise ConnectionRefusedError("refused")

    with pytest.raises(ConnectionRefusedError):
        retrying(RetryPolicy(retries=3, backoff_seconds=0.5), always, sleep=waits.append)
    assert waits == [0.5, 1.0, 2.0]
    assert len(calls) == 4
    assert list(RetryPolicy(retries=0).delays()) == []


# --- the alert hook --------------------------------------------------------------------------


def test_the_hook_gets_the_json_and_its_own_failures_are_told(tmp_path: Path) -> None:
    payload = {"run": {"run_id": "r1", "status": "failed"}}
    assert run_hook("cat > got.json", payload, tmp_path, 10) is None
    assert (tmp_path / "got.json").read_text() == '{"run": {"run_id": "r1", "status": "failed"}}'
    failed = run_hook("echo no webhook >&2; exit 3", payload, tmp_path, 10)
    assert failed == "the on_failure command exited with 3: no webhook"
    hung = run_hook("sleep 30", payload, tmp_path, 0.5)
    assert hung == "the on_failure command did not finish within 0.5s"
    killed = run_hook("kill -9 $$", payload, tmp_path, 10)
    assert killed is not None
    assert "-9" in killed


def test_a_test_that_errors_counts_as_failed() -> None:
    def outcome(
        name: str, severity: str, failing: int, error: str | None = None
    ) -> checks.TestOutcome:
        test = checks.DataTest(name, "core.x", severity, exp.select("1"))  # type: ignore[arg-type]
        return checks.TestOutcome(test, failing, [], error)

    record = RunRecord("r")
    _tally_tests(
        record,
        [
            outcome("ok", "error", 0),
            outcome("soft", "warn", 3),
            outcome("hard", "error", 2),
            outcome("broken", "error", 0, "Binder Error: no column x"),
        ],
    )
    assert (record.tests_passed, record.tests_warned, record.tests_failed) == (1, 1, 2)
    assert record.failed_tests == ["hard", "broken"]


def test_the_most_specific_listed_class_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    """A listed class with a message pattern is not overruled by a listed ancestor."""
    from productlens import retry

    monkeypatch.setitem(retry.TRANSIENT, ("builtins", "OSError"), None)
    monkeypatch.setitem(retry.TRANSIENT, ("builtins", "FileNotFoundError"), re.compile("lock file"))
    assert is_transient(OSError("anything"))
    assert is_transient(FileNotFoundError("no lock file yet"))
    assert not is_transient(FileNotFoundError("no such table file"))


def test_a_hook_past_its_time_is_killed_with_what_it_started(tmp_path: Path) -> None:
    """The shell and the command it started in the background (as `curl ... &` would
    be) are both gone when the hook times out: nothing of it is left running."""
    hung = run_hook("sleep 60 & echo $! > sleeper; wait", {}, tmp_path, 1)
    assert hung == "the on_failure command did not finish within 1s"
    sleeper = int((tmp_path / "sleeper").read_text())
    deadline = time.monotonic() + 10
    while _alive(sleeper):
        assert time.monotonic() < deadline, f"the hook's child {sleeper} is still running"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting to be reaped does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_tests_of_marts_built_aside_count_the_aside_tables(tmp_path: Path) -> None:
    """A mart's reconciliation run against `marts_next` counts the aside table's rows (its
    probe's table moves with its query), and the table it names outside the marts stays."""
    (tmp_path / "marts").mkdir()
    (tmp_path / "marts" / "m.sql").write_text("select 1 as x")
    (tmp_path / "marts" / "_m.yml").write_text(
        "models:\n  - name: m\n    grain: g\n    tests: [{same_rows_as: raw.p}]\n"
    )
    graph = modeling.discover(load_project(tmp_path).config, [tmp_path], shipped=False)
    (test,) = aside_tests(graph)
    counted = [(t.db, t.name) for t in test.probe_counts]
    assert counted == [("marts_next", "m"), ("raw", "p")]
    assert {(t.db, t.name) for t in test.query.find_all(exp.Table)} == set(counted)
