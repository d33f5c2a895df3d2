"""`productlens run` from a landing folder, day by day, equals one full build; a late file
is picked up; an error-level data-test failure keeps the previous marts live; `runs`
shows the history; the `on_failure` hook gets the run's JSON; transient engine errors are
retried and data errors are not."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from sqlglot import exp

from productlens.app import open_engine
from productlens.config import load_project
from productlens.engines import DuckDBEngine
from productlens.engines.base import table
from productlens.errors import EngineError
from productlens.pipeline import Runner
from productlens.retry import RetryPolicy, is_transient, retrying
from productlens.simulate import generate, preset
from tests.conftest import q
from tests.cross_engine import differences
from tests.holders import hold_duckdb
from tests.servers import S3Server

START = date(2026, 1, 5)
LATE_DAY = START + timedelta(days=2)  # day 3
LATE_ARRIVAL = 8  # delivered with day 8
LATE_ROWS = 30
# Each table's day: the date of this column (order lines: their order's).
DAY_OF = {
    "users": "signup_ts",
    "user_changes": "changed_at",
    "orders": "order_ts",
    "assignments": "assigned_ts",
    "subscriptions": "started_at",
}
LAYERS = ("staging", "core", "marts")


def _days(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(column, pa.date32())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[date], dict[date, Path]]:
    """A small simulated world cut into daily drops: `drops[day]` holds the files that
    arrive that day, one folder per table; reference data arrives on the first day."""
    root = tmp_path_factory.mktemp("daily")
    data = root / "data"
    generate(preset(users=300, days=10, seed=7), data, workers=1)
    days = sorted(date.fromisoformat(p.name.split("=", 1)[1]) for p in (data / "events").iterdir())
    drops = {day: root / "drops" / day.isoformat() for day in days}

    def write(tbl: pa.Table, name: str, day: date, file: str = "part.parquet") -> None:
        folder = drops[day] / name / f"day={day}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(tbl, folder / file)

    def split(tbl: pa.Table, name: str, when: pa.ChunkedArray) -> None:
        # Rows dated before the first day arrive on it; after the last day, on it.
        clipped = pc.min_element_wise(
            pc.max_element_wise(when, pa.scalar(days[0])), pa.scalar(days[-1])
        )
        for day in days:
            part = tbl.filter(pc.equal(clipped, pa.scalar(day)))
            if part.num_rows:
                write(part, name, day)

    orders = pq.read_table(data / "orders")
    for name, column in DAY_OF.items():
        tbl = pq.read_table(data / name)
        split(tbl, name, _days(tbl.column(column)))
    items = pq.read_table(data / "order_items")
    order_day = pa.table(
        {"order_id": orders.column("order_id"), "order_day": _days(orders.column("order_ts"))}
    )
    dated = items.join(order_day, "order_id", join_type="left outer")
    split(dated.drop_columns(["order_day"]), "order_items", dated.column("order_day"))
    for name in ("products", "campaigns", "experiments", "inventory"):
        write(pq.read_table(data / name), name, days[0])
    for day in days:
        events = pq.read_table(data / "events" / f"event_date={day}")
        if day == LATE_DAY:  # some of day 3's events arrive late, with day 8's files
            late = days[LATE_ARRIVAL - 1]
            folder = drops[late] / "events" / f"event_date={day}"
            folder.mkdir(parents=True)
            pq.write_table(events.slice(0, LATE_ROWS), folder / "late.parquet")
            events = events.slice(LATE_ROWS)
        folder = drops[day] / "events" / f"event_date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(events, folder / "part.parquet")
    return days, drops


def _project(root: Path, extra: str = "") -> Path:
    root.mkdir(parents=True)
    (root / "productlens.toml").write_text(
        '[sources]\nlanding = "landing"\n\n[run]\nreport = false\nbackoff_seconds = 0\n' + extra
    )
    (root / "landing").mkdir()
    return root


def _cli(root: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`productlens --project ROOT ARGS` in this process (the imports paid once): exit
    code, stdout and stderr."""
    from productlens.cli import main

    code = main(["--project", str(root), *args])
    out, err = capsys.readouterr()
    return code, out, err


def _run(root: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code, out, err = _cli(root, "run", *args, capsys=capsys)
    return code, out + err


def _deliver(drop: Path, landing: Path) -> None:
    shutil.copytree(drop, landing, dirs_exist_ok=True)


def _tables(engine: DuckDBEngine) -> dict[str, pa.Table]:
    found = {}
    for layer in LAYERS:
        for name in engine.list_tables(layer):
            query = exp.select("*").from_(table(layer, name))
            found[f"{layer}.{name}"] = engine.fetch_arrow(query)
    return found


def _full_build(root: Path, drops: dict[date, Path]) -> dict[str, pa.Table]:
    """The reference: every drop ingested at once and built whole (`build`, no `run`)."""
    everything = root / "all"
    for drop in drops.values():
        _deliver(drop, everything)
    project = load_project(root)
    engine = open_engine(project)
    try:
        runner = Runner(project, engine, Console(quiet=True))
        runner.ingest([everything])
        assert runner.build().ok
        runner.check()
        runner.finish()
        return _tables(engine)  # type: ignore[arg-type]
    finally:
        engine.close()


def _late_count(root: Path) -> int:
    engine = open_engine(load_project(root), read_only=True)
    try:
        query = q(
            "SELECT coalesce(sum(n_events), 0) FROM marts.event_counts_daily WHERE event_date = ?",
            LATE_DAY,
        )
        return int(engine.fetch_all(query)[0][0])
    finally:
        engine.close()


def test_daily_runs_equal_one_full_build_and_pick_up_a_late_file(
    tmp_path: Path, world: tuple[list[date], dict[date, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    days, drops = world
    root = _project(tmp_path / "daily")
    counts = []
    for n, day in enumerate(days, start=1):
        before = _late_count(root) if n > 1 else 0
        _deliver(drops[day], root / "landing")
        code, output = _run(root, "--date", day.isoformat(), capsys=capsys)
        assert code == 0, output
        counts.append(_late_count(root))
        if n == LATE_ARRIVAL:
            # The late file for day 3 was loaded and day 3's marts changed by its rows.
            assert counts[-1] == before + LATE_ROWS
    # Re-running the last date changes nothing.
    code, output = _run(root, "--date", days[-1].isoformat(), capsys=capsys)
    assert code == 0, output
    assert "nothing new" not in output  # a date given: its window was rebuilt

    engine = open_engine(load_project(root), read_only=True)
    try:
        daily = _tables(engine)  # type: ignore[arg-type]
    finally:
        engine.close()
    full = _full_build(_project(tmp_path / "full"), drops)
    assert sorted(daily) == sorted(full)
    assert any(name.startswith("marts.") for name in full)
    found = {name: d for name in full if (d := differences(full[name], daily[name]))}
    assert found == {}

    # A backfill over the whole range, everything delivered at once, is the same again.
    backfill = _project(tmp_path / "backfill")
    for day in days:
        _deliver(drops[day], backfill / "landing")
    code, output = _run(
        backfill, "--from", days[0].isoformat(), "--to", str(days[-1]), capsys=capsys
    )
    assert code == 0, output
    engine = open_engine(load_project(backfill), read_only=True)
    try:
        filled = _tables(engine)  # type: ignore[arg-type]
    finally:
        engine.close()
    mismatched = {name: d for name in full if (d := differences(full[name], filled[name]))}
    assert mismatched == {}

    code, listed, err = _cli(root, "runs", "--json", capsys=capsys)
    assert code == 0, err
    history = json.loads(listed)
    assert len(history) == len(days) + 1
    assert {r["status"] for r in history} == {"success"}
    delivered = sum(
        pq.ParquetFile(f).metadata.num_rows for f in (tmp_path / "full" / "all").rglob("*.parquet")
    )
    assert sum(r["rows"]["in"] for r in history) == delivered
    assert sum(r["rows"]["loaded"] + r["rows"]["quarantined"] for r in history) == delivered
    first = history[-1]
    assert first["dates"] == {"from": days[0].isoformat(), "to": days[0].isoformat()}
    assert first["rows"]["in"] == first["rows"]["loaded"] + first["rows"]["quarantined"]
    assert first["tests"]["failed"] == 0
    assert first["tests"]["passed"] > 0
    assert {"ingest", "build", "build marts", "check", "publish marts"} <= set(first["stages"])
    late_run = history[len(history) - LATE_ARRIVAL]
    assert late_run["rebuild_from"] <= LATE_DAY.isoformat()
    results = json.loads((root / "runs" / late_run["run_id"] / "run_results.json").read_text())
    assert results["run"]["run_id"] == late_run["run_id"]
    assert results["tests"]
    assert all(t["status"] in ("pass", "warn") for t in results["tests"])


GUARD_SQL = "select event_id, event_date from fct_events\n"
GUARD_YML = """models:
  - name: planted_guard
    grain: one row per event
    tests:
      - expression: "event_id not like 'planted%'"
        name: no_planted_events
"""


def test_a_failed_data_test_keeps_the_previous_marts_and_is_recorded(
    tmp_path: Path, world: tuple[list[date], dict[date, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A planted error-level failure: exit non-zero naming the test, the marts as the run
    before left them (and readable), `runs` shows it failed, the hook gets the JSON."""
    days, drops = world
    root = _project(tmp_path / "p", '\non_failure = "cat > hook.json"\n')
    (root / "models" / "marts").mkdir(parents=True)
    (root / "models" / "marts" / "planted_guard.sql").write_text(GUARD_SQL)
    (root / "models" / "marts" / "_guard.yml").write_text(GUARD_YML)
    _deliver(drops[days[0]], root / "landing")
    code, output = _run(root, capsys=capsys)
    assert code == 0, output
    engine = open_engine(load_project(root), read_only=True)
    try:
        before = {k: v for k, v in _tables(engine).items() if k.startswith("marts.")}  # type: ignore[arg-type]
    finally:
        engine.close()
    assert not (root / "hook.json").exists()

    _deliver(drops[days[1]], root / "landing")
    events = pq.read_table(next((root / "landing" / "events").rglob(f"*{days[1]}*/part.parquet")))
    planted = events.slice(0, 5)
    planted = planted.set_column(
        0, "event_id", pc.binary_join_element_wise("planted_", planted.column("event_id"), "")
    )
    pq.write_table(planted, root / "landing" / "events" / "planted.parquet")
    code, _out, err = _cli(root, "run", "--date", days[1].isoformat(), capsys=capsys)
    assert code != 0
    assert "no_planted_events" in err
    assert "previous marts stay live" in err

    engine = open_engine(load_project(root), read_only=True)
    try:
        after = _tables(engine)  # type: ignore[arg-type]
        # The new rows did reach core, and the marts built aside hold them...
        assert engine.fetch_all(
            q("SELECT count(*) FROM core.fct_events WHERE event_id LIKE 'planted%'")
        ) == [(5,)]
        aside = engine.fetch_all(q("SELECT max(event_date) FROM marts_next.event_counts_daily"))
        assert aside == [(days[1],)]
    finally:
        engine.close()
    # ...but the live marts are the first run's, row for row.
    assert {k: differences(v, after[k]) for k, v in before.items()} == {k: [] for k in before}
    assert max(before["marts.event_counts_daily"].column("event_date").to_pylist()) == days[0]

    code, listed, err = _cli(root, "runs", "--json", capsys=capsys)
    assert code == 0, err
    latest, earlier = json.loads(listed)
    assert earlier["status"] == "success"
    assert latest["status"] == "failed"
    assert latest["tests"]["failed"] == 1
    assert latest["tests"]["failed_tests"] == ["no_planted_events"]
    assert "publish marts" not in latest["stages"]
    assert "check" in latest["stages"]
    code, table_view, _err = _cli(root, "runs", capsys=capsys)
    assert "failed" in table_view
    assert "no_planted_events" in table_view

    hook = json.loads((root / "hook.json").read_text())
    assert hook["run"]["run_id"] == latest["run_id"]
    assert hook["run"]["status"] == "failed"
    assert [t["name"] for t in hook["tests"] if t["status"] == "fail"] == ["no_planted_events"]
    # What the README's Alerts section says the hook gets: the record `runs --json` lists
    # and the tests, in the shape of its example, which has this run's failed test.
    # (its `stages` with the failed check last, as the run log has them).
    assert {**hook["run"], "stages": None} == {**latest, "stages": None}
    assert list(hook["run"]["stages"]) == ["ingest", "build", "build marts", "check"]
    assert set(hook["run"]["stages"]) == set(latest["stages"])
    example = _readme_hook_example()
    assert _shape(example) == _shape(hook)
    failed = next(t for t in hook["tests"] if t["status"] == "fail")
    assert example["tests"] == [failed]
    assert example["run"]["error"].split(", e.g.")[0] == hook["run"]["error"].split(", e.g.")[0]


def _readme_hook_example() -> dict[str, Any]:
    """The JSON block of the README's Alerts section."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("**Alerts.**", 1)[1]
    block = section.split("```json\n", 1)[1].split("```", 1)[0]
    example: dict[str, Any] = json.loads(block)
    return example


def _shape(value: Any) -> Any:
    """The keys of every object, nested, the first item standing for a list."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value and isinstance(value[0], dict) else []
    return None


# --- retries -----------------------------------------------------------------------------


def _release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=60)


def test_a_locked_warehouse_is_retried_until_it_is_free(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    DuckDBEngine(path).close()
    holder = hold_duckdb(path, read_only=False)
    waits: list[float] = []
    tries: list[int] = []

    def on_retry(attempt: int, exc: BaseException, delay: float) -> None:
        assert is_transient(exc)
        tries.append(attempt)
        _release(holder)  # the other process finishes while this one waits

    try:
        engine = retrying(
            RetryPolicy(retries=3, backoff_seconds=0.5),
            lambda: DuckDBEngine(path),
            on_retry=on_retry,
            sleep=waits.append,
        )
        engine.close()
    finally:
        if holder.poll() is None:
            _release(holder)
    assert tries == [1]
    assert waits == [0.5]


def test_retries_are_bounded_with_backoff(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    DuckDBEngine(path).close()
    holder = hold_duckdb(path, read_only=False)
    waits: list[float] = []
    try:
        with pytest.raises(EngineError, match="in use by another process"):
            retrying(
                RetryPolicy(retries=3, backoff_seconds=1.0),
                lambda: DuckDBEngine(path),
                sleep=waits.append,
            )
    finally:
        _release(holder)
    assert waits == [1.0, 2.0, 4.0]


def test_data_errors_are_not_retried(tmp_path: Path) -> None:
    engine = DuckDBEngine(tmp_path / "w.duckdb")
    waits: list[float] = []
    try:
        with pytest.raises(EngineError) as caught:
            retrying(
                RetryPolicy(retries=3, backoff_seconds=1.0),
                lambda: engine.fetch_all(q("SELECT missing_column FROM (SELECT 1 AS x)")),
                sleep=waits.append,
            )
    finally:
        engine.close()
    assert not is_transient(caught.value)
    assert waits == []


def test_a_landing_prefix_in_s3(
    tmp_path: Path,
    world: tuple[list[date], dict[date, Path]],
    s3: S3Server,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`[sources] landing = "s3://..."`: each run loads the objects not loaded before."""
    days, drops = world
    s3.create_bucket("landing-in")
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)  # as a user's shell would
    root = _project(tmp_path / "p")
    (root / "productlens.toml").write_text(
        (root / "productlens.toml").read_text().replace('"landing"', '"s3://landing-in/new"')
    )
    client = s3.client()
    loaded = []
    for day in days[:2]:
        delivered = 0
        for file in sorted(drops[day].rglob("*.parquet")):
            key = f"new/{file.relative_to(drops[day]).as_posix()}"
            client.upload_file(str(file), "landing-in", key)
            delivered += pq.ParquetFile(file).metadata.num_rows
        code, output = _run(root, capsys=capsys)
        assert code == 0, output
        loaded.append(delivered)
    code, listed, err = _cli(root, "runs", "--json", capsys=capsys)
    assert code == 0, err
    history = json.loads(listed)
    # Newest first: the second run read only the second day's objects.
    assert [r["rows"]["in"] for r in history] == loaded[::-1]
    assert [r["status"] for r in history] == ["success", "success"]
    assert history[0]["dates"]["to"] == days[1].isoformat()


def test_a_model_error_fails_the_run_and_calls_the_hook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken model YAML fails the run as any error does: `runs` shows it failed with
    the reason (not `interrupted`, as a killed run), and the on_failure hook is told."""
    root = _project(tmp_path / "p", '\non_failure = "cat > hook.json"\n')
    broken = root / "models" / "marts" / "_broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text("models:\n  - name: nowhere\n    grain: one row\n")
    code, out = _run(root, capsys=capsys)
    assert code != 0, out
    code, listed, err = _cli(root, "runs", "--json", capsys=capsys)
    assert code == 0, err
    (run,) = json.loads(listed)
    assert run["status"] == "failed"
    assert "nowhere" in run["error"]
    assert json.loads((root / "hook.json").read_text())["run"]["run_id"] == run["run_id"]


def test_a_wrong_project_folder_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--project` naming a folder with no productlens.toml (a typo): the error says so
    and names the folder, rather than asking for a landing folder in the file."""
    code, out = _run(tmp_path / "no_such_project", capsys=capsys)
    flat = " ".join(out.split())
    assert code == 2, out
    assert "no productlens.toml in the project folder" in flat
    assert "no_such_project" in "".join(out.split())  # the path, however wrapped
    # A project file without a landing folder still gets the landing hint.
    (tmp_path / "productlens.toml").write_text("")
    code, out = _run(tmp_path, capsys=capsys)
    assert code == 2
    assert "[sources] landing" in out
    assert not (tmp_path / "no_such_project").exists()
