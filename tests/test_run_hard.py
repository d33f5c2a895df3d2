"""`productlens run` attacked as a new user would: killed (`kill -9`) mid-ingest, mid-build,
mid-checks and mid-swap of the marts, started twice at once, given hostile landing files
and wrong options. Each run is a real process on a real DuckDB warehouse; the next run
repairs what a killed one left, and `runs` tells the truth about it."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from sqlglot import exp

from productlens.app import open_engine
from productlens.config import load_project
from productlens.engines.base import table
from productlens.pipeline import Runner
from productlens.simulate import generate, preset
from tests.cross_engine import differences
from tests.test_ingest_rejects import corrupt_page_parquet
from tests.test_run import _cli, _project, _tables

REPO = Path(__file__).resolve().parents[1]
SECOND_DAYS = 2  # the last days' events arrive in the second delivery


def _snapshot(
    root: Path, layers: tuple[str, ...] = ("staging", "core", "marts")
) -> dict[str, pa.Table]:
    engine = open_engine(load_project(root), read_only=True)
    try:
        found = _tables(engine)  # type: ignore[arg-type]
    finally:
        engine.close()
    return {k: v for k, v in found.items() if k.split(".", 1)[0] in layers}


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, pa.Table]]:
    """A small world in two deliveries (`first`: everything but the last days' events;
    `second`: those events), a project after one run on the first, and the reference: one
    full build on both."""
    root = tmp_path_factory.mktemp("hard")
    data = root / "data"
    generate(preset(users=120, days=5, seed=11), data, workers=1)
    first, second = root / "first", root / "second"
    days = sorted((data / "events").iterdir())
    shutil.copytree(data, first, ignore=shutil.ignore_patterns("truth.json"))
    for day in days[-SECOND_DAYS:]:
        shutil.rmtree(first / "events" / day.name)
        shutil.copytree(day, second / "events" / day.name)

    project = _project(root / "after_first")
    shutil.copytree(first, project / "landing", dirs_exist_ok=True)
    code = _main(project, "run")
    assert code == 0

    reference = _project(root / "full")
    everything = root / "everything"
    shutil.copytree(first, everything)
    shutil.copytree(second, everything, dirs_exist_ok=True)
    loaded = load_project(reference)
    engine = open_engine(loaded)
    try:
        runner = Runner(loaded, engine, Console(quiet=True))
        runner.ingest([everything])
        assert runner.build().ok
        runner.finish()
    finally:
        engine.close()
    return project, second, _snapshot(reference)


def _main(root: Path, *args: str) -> int:
    from productlens.cli import main

    return main(["--project", str(root), *args])


def _copy(project: Path, to: Path) -> Path:
    shutil.copytree(project, to)
    return to


def _killer(point: str, nth: int, root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.killer", point, str(nth), str(root)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize(("point", "nth"), [("ingest", 1), ("build", 3), ("check", 1), ("swap", 3)])
def test_a_run_killed_mid_way_is_shown_interrupted_and_the_next_run_repairs(
    tmp_path: Path,
    deliveries: tuple[Path, Path, dict[str, pa.Table]],
    capsys: pytest.CaptureFixture[str],
    point: str,
    nth: int,
) -> None:
    project, second, full = deliveries
    root = _copy(project, tmp_path / "p")
    before = _snapshot(root, ("marts",))
    shutil.copytree(second, root / "landing", dirs_exist_ok=True)

    killed = _killer(point, nth, root)
    output, _ = killed.communicate(timeout=300)
    assert killed.returncode == -9, output

    # The live marts are the previous run's, every one of them (the swap is one set);
    # the copies a killed swap built beside them (`*__building`) go with the next run.
    after = {k: v for k, v in _snapshot(root, ("marts",)).items() if "__" not in k}
    assert sorted(after) == sorted(before)
    assert {k: differences(v, after[k]) for k, v in before.items()} == {k: [] for k in before}
    # `runs`, with no run live, shows the killed one as interrupted, not running.
    code, listed, err = _cli(root, "runs", "--json", capsys=capsys)
    assert code == 0, err
    latest = json.loads(listed)[0]
    assert (latest["status"], latest["finished_at"]) == ("interrupted", None)
    if point != "ingest":  # it had loaded its rows: the dates they touch were recorded
        assert latest["rebuild_from"] is not None
        assert latest["rows"]["loaded"] > 0

    # The next run repairs: the warehouse equals one full build on both deliveries.
    code, out, err = _cli(root, "run", capsys=capsys)
    assert code == 0, out + err
    repaired = _snapshot(root)
    assert sorted(repaired) == sorted(full)
    assert {k: d for k in full if (d := differences(full[k], repaired[k]))} == {}


def test_a_second_run_at_the_same_time_refuses_and_changes_nothing(
    tmp_path: Path,
    deliveries: tuple[Path, Path, dict[str, pa.Table]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two real processes: the first holds the run lock mid-run (stopped by SIGSTOP in
    its checks); the second exits 75 naming the holder, records nothing and touches
    nothing, and `runs` meanwhile says a run holds the warehouse; the first then finishes."""
    project, second, _full = deliveries
    root = _copy(project, tmp_path / "p")
    shutil.copytree(second, root / "landing", dirs_exist_ok=True)
    first = subprocess.Popen(
        [sys.executable, "-m", "tests.killer", "pause", "1", str(root)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (root / "paused").exists():  # the first run is in its checks
            assert first.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.1)
        other = subprocess.run(
            [sys.executable, "-m", "productlens.cli", "--project", str(root), "run"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert other.returncode == 75, other.stdout + other.stderr
        assert "another productlens run is in progress" in other.stderr
        assert f"pid {first.pid}" in other.stderr
        # Listing the runs meanwhile says a run holds the warehouse (not "in use").
        code, _, err = _cli(root, "runs", capsys=capsys)
        assert code == 75, err
        assert "a productlens run is in progress and holds the warehouse" in " ".join(err.split())
    finally:
        (root / "paused").unlink(missing_ok=True)  # let the first run go on
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output
    code, listed, err = _cli(root, "runs", "--json", capsys=capsys)
    assert code == 0, err
    history = json.loads(listed)
    assert [r["status"] for r in history] == ["success", "success"]  # no trace of the refused


# --- wrong options and hostile landing files ----------------------------------------------


def test_dates_that_cannot_be_meant_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _project(tmp_path / "p")
    for args, reason in [
        (("--to", "2026-01-05"), "--to needs --from"),
        (("--date", "2999-01-01"), "is in the future"),
        (("--from", "2026-01-05", "--to", "2999-01-01"), "is in the future"),
    ]:
        code, out, err = _cli(root, "run", *args, capsys=capsys)
        assert code == 2, out + err
        assert reason in err
    # Nothing was recorded for a refused command.
    code, out, _ = _cli(root, "runs", "--json", capsys=capsys)
    assert json.loads(out) == []


def test_a_first_run_with_nothing_landed_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _project(tmp_path / "p")
    code, out, err = _cli(root, "run", capsys=capsys)
    assert code != 0
    assert "no files in the landing folder" in err
    assert "does not exist!" not in out + err  # not a catalog error from a model


def test_folders_and_files_a_run_cannot_load_are_named(
    tmp_path: Path,
    deliveries: tuple[Path, Path, dict[str, pa.Table]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A folder that is no contract table and a file of no supported format are not
    loaded: the run says so, by name, instead of passing them over in silence."""
    project, _second, _full = deliveries
    root = _copy(project, tmp_path / "p")
    (root / "landing" / "event").mkdir()  # a typo for events/
    events = next((root / "landing" / "events").rglob("*.parquet"))
    shutil.copy(events, root / "landing" / "event" / "late.parquet")
    (root / "landing" / "events" / "notes.txt").write_text("not data\n")
    shutil.copy(events, root / "landing" / "stray.parquet")
    code, out, err = _cli(root, "run", capsys=capsys)
    assert code == 0, out + err
    said = "".join((out + err).split())  # as printed, less the console's line breaks
    assert "notloaded" in said
    assert "event(1files)" in said
    assert "stray.parquet(1files)" in said
    assert "passedover" in said
    assert "events/notes.txt" in said


def test_every_landing_row_is_loaded_quarantined_or_an_exact_copy(
    tmp_path: Path,
    deliveries: tuple[Path, Path, dict[str, pa.Table]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bad row is quarantined, not lost; a file replaced in place under the same name
    is read again and its rows already loaded are counted as copies; each run's rows
    reconcile (in = loaded + quarantined + duplicate) and agree with the ops tables."""
    project, _second, _full = deliveries
    root = _copy(project, tmp_path / "p")
    events = next((root / "landing" / "events").rglob("*.parquet"))
    table = pq.read_table(events)
    bad = table.slice(0, 1).set_column(
        0, "event_id", pa.array([None], table.schema.field("event_id").type)
    )
    pq.write_table(bad, root / "landing" / "events" / 'we\'ird "name" [1] *.parquet')
    pq.write_table(table.slice(0, table.num_rows - 3), events)  # replaced in place
    code, out, err = _cli(root, "run", capsys=capsys)
    assert code == 0, out + err
    code, listed, err = _cli(root, "runs", "--json", capsys=capsys)
    history = json.loads(listed)
    latest = history[0]["rows"]
    assert latest == {
        "in": table.num_rows - 3 + 1,
        "loaded": 0,
        "quarantined": 1,
        "duplicate": table.num_rows - 3,
    }
    landed = (root / "landing").rglob("*.parquet")
    delivered = sum(pq.ParquetFile(f).metadata.num_rows for f in landed)
    engine = open_engine(load_project(root), read_only=True)
    try:
        (logged,) = engine.fetch_all(_sum_of("rows_loaded", "rows_quarantined", "rows_duplicate"))
    finally:
        engine.close()
    for r in history:
        assert r["rows"]["in"] == sum(r["rows"][k] for k in ("loaded", "quarantined", "duplicate"))
    assert sum(r["rows"]["in"] for r in history) == sum(logged)
    # The file replaced in place was read whole once more (the rows in its first version
    # that the second lacks stay loaded: raw is append-only).
    assert sum(logged) == delivered + table.num_rows


def _sum_of(*columns: str) -> exp.Select:
    return exp.select(*(exp.func("sum", exp.column(c, quoted=True)) for c in columns)).from_(
        table("ops", "ingest_log")
    )


# --- retries ---------------------------------------------------------------------------------

# A core model that, the first time it is built, has PostgreSQL end the session building
# it (as a server restart or a dropped network would), and builds normally after that.
KILL_ONCE_SQL = """select case when nextval('kill_once') = 1
    then pg_terminate_backend(pg_backend_pid()) else true end as survived
"""


def test_a_retry_after_a_lost_connection_carries_on_with_a_new_one(
    tmp_path: Path,
    deliveries: tuple[Path, Path, dict[str, pa.Table]],
    pg_dsn: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The build loses its PostgreSQL connection mid-way: the retry opens the engine
    again and the run succeeds (retrying on the dead connection could only fail)."""
    from productlens.engines.postgres import PostgresEngine

    project, _second, _full = deliveries
    setup = PostgresEngine(pg_dsn)
    try:
        setup.execute(exp.Create(this=exp.to_table("kill_once"), kind="SEQUENCE"))
    finally:
        setup.close()
    root = _project(tmp_path / "pg", "retries = 1\n")
    toml = root / "productlens.toml"
    toml.write_text(toml.read_text() + '\n[warehouse]\nengine = "postgres"\n')
    monkeypatch.setenv("PRODUCTLENS_POSTGRES_DSN", pg_dsn)
    (root / "models" / "core").mkdir(parents=True)
    (root / "models" / "core" / "kill_once.sql").write_text(KILL_ONCE_SQL)
    shutil.copytree(project / "landing", root / "landing", dirs_exist_ok=True)

    code, out, err = _cli(root, "run", capsys=capsys)
    said = " ".join((out + err).split())
    assert code == 0, said
    assert "retry 1:" in said
    # What the lost session left: the server ended it (EngineUnavailable names the cause).
    assert "retry 1: lost the PostgreSQL connection: terminating connection" in said
    engine = PostgresEngine(pg_dsn)
    try:
        assert engine.fetch_all(exp.select("survived").from_(table("core", "kill_once"))) == [
            (True,)
        ]
        last = exp.select("last_value").from_(exp.to_table("kill_once"))
        assert engine.fetch_all(last) == [(2,)]  # killed once, built once more
    finally:
        engine.close()
    code, listed, err = _cli(root, "runs", "--json", capsys=capsys)
    assert [r["status"] for r in json.loads(listed)] == ["success"]


NEW_MART_SQL = "select event_date, count(*) as n from fct_events group by event_date\n"


def test_a_mart_added_since_the_last_run_is_built_though_nothing_new_landed(
    tmp_path: Path,
    deliveries: tuple[Path, Path, dict[str, pa.Table]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    project, _second, _full = deliveries
    root = _copy(project, tmp_path / "p")
    (root / "models" / "marts").mkdir(parents=True)
    (root / "models" / "marts" / "events_per_day.sql").write_text(NEW_MART_SQL)
    code, out, err = _cli(root, "run", capsys=capsys)
    assert code == 0, out + err
    assert "nothing new" not in out
    marts = _snapshot(root, ("marts",))
    per_day = marts["marts.events_per_day"]
    counts = marts["marts.event_counts_daily"]
    assert sum(per_day.column("n").to_pylist()) == sum(counts.column("n_events").to_pylist())


def test_rows_only_whole_rebuilt_models_read_reach_the_warehouse(
    tmp_path: Path,
    deliveries: tuple[Path, Path, dict[str, pa.Table]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A new campaign alone (no events that day): no incremental model reads campaigns,
    so it touches no date, yet it must reach core.dim_campaigns, not be called nothing new."""
    project, _second, _full = deliveries
    root = _copy(project, tmp_path / "p")
    campaigns = pq.read_table(next((root / "landing" / "campaigns").rglob("*.parquet")))
    new = campaigns.slice(0, 1)
    new = new.set_column(0, "campaign_id", pa.array(["new_one"], new.schema.field(0).type))
    pq.write_table(new, root / "landing" / "campaigns" / "new.parquet")
    code, out, err = _cli(root, "run", capsys=capsys)
    assert code == 0, out + err
    assert "nothing new" not in out
    engine = open_engine(load_project(root), read_only=True)
    try:
        found = exp.select("campaign_id").from_(table("core", "dim_campaigns"))
        found = found.where(exp.column("campaign_id").eq(exp.Literal.string("new_one")))
        assert engine.fetch_all(found) == [("new_one",)]
    finally:
        engine.close()


# --- landing files that cannot be read ---------------------------------------------------

ORDER_HEADER = "order_id,user_id,order_ts,status,total_amount,campaign_id\n"
# An order whose status ("payé", not an accepted one) holds a byte that is no UTF-8.
LATIN1_ORDER = (ORDER_HEADER + "o-x,u-x,2026-01-05 10:00:00,payé,1.5,\n").encode("latin-1")
# (folder/name, bytes, what the rejection's reason says): one row per kind of bad file.
# Two are empty (the same checksum, other formats): each is rejected on its own.
BAD_LANDING_FILES = [
    ("events/zero.parquet", b"", "Parquet file size is 0 bytes"),
    ("users/not_parquet.parquet", b"user_id,country\nu1,DE\n", "magic bytes not found"),
    ("orders/latin1.csv", LATIN1_ORDER, "cannot read the file as utf-8"),
    ("campaigns/empty.csv", b"", "the file is empty"),
    ("experiments/array.jsonl", b"[1, 2]\n", "not JSON Lines"),
    ("users/corrupt_page.parquet", corrupt_page_parquet(), "Failed to read file"),
]


def _rejected(root: Path) -> list[dict[str, object]]:
    engine = open_engine(load_project(root), read_only=True)
    try:
        if engine.table_kind("ops", "rejected_files") is None:
            return []
        query = exp.select("*").from_(table("ops", "rejected_files")).order_by("path")
        return engine.fetch_arrow(query).to_pylist()
    finally:
        engine.close()


def test_a_run_killed_with_unreadable_files_then_reruns_load_exactly_and_retry_fixed_files(
    tmp_path: Path,
    deliveries: tuple[Path, Path, dict[str, pa.Table]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every kind of unreadable landing file, and one events file of the second delivery
    truncated (its footer cut off). A run is killed (`kill -9`) mid-ingest; the next run
    rejects each bad file (left in place, recorded with its checksum, size and reason),
    loads every other row exactly once, ends `completed_with_rejections` with exit 3 and
    tells the hook; the run after reads none of them again; then the truncated file
    arrives whole (new bytes) and the CSV's encoding is declared (new settings): both are
    read, and the warehouse equals one full build on both deliveries."""
    project, second, full = deliveries
    root = _copy(project, tmp_path / "p")
    (root / "productlens.toml").write_text(
        '[sources]\nlanding = "landing"\n\n[run]\nreport = false\nbackoff_seconds = 0\n'
        'on_failure = "cat > hook.json"\n'
    )
    shutil.copytree(second, root / "landing", dirs_exist_ok=True)
    whole = sorted((root / "landing" / "events").rglob("*.parquet"))[-1]
    good_bytes = whole.read_bytes()
    whole.write_bytes(good_bytes[: len(good_bytes) // 2])
    bad = {root / "landing" / name: (data, said) for name, data, said in BAD_LANDING_FILES}
    bad[whole] = (whole.read_bytes(), "magic bytes not found")
    for path, (data, _) in bad.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    landed = [p for p in (root / "landing" / "events").rglob("*.parquet") if p not in bad]
    good_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in landed)
    arrived = [root / "landing" / p.relative_to(second) for p in second.rglob("*.parquet")]
    new_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in arrived if p != whole)

    killed = _killer("ingest", 1, root)
    output, _ = killed.communicate(timeout=300)
    assert killed.returncode == -9, output

    code, out, err = _cli(root, "run", capsys=capsys)
    assert code == 3, out + err
    error_lines = [line for line in err.splitlines() if line.startswith("error")]
    assert len(error_lines) == 1, err
    said = f"{len(bad)} landing file(s) could not be read and were left in place"
    assert said in error_lines[0]
    rejected = _rejected(root)
    assert [r["path"] for r in rejected] == sorted(str(p) for p in bad)
    for row in rejected:
        data, said = bad[Path(str(row["path"]))]
        assert row["checksum"] == hashlib.sha256(data).hexdigest()
        assert row["size_bytes"] == len(data)
        assert said in str(row["reason"]), row
        assert str(row["path"]) in str(row["reason"])  # the reason names the file
        assert row["settings_fingerprint"]
    for path, (data, _) in bad.items():
        assert path.read_bytes() == data  # left in place, untouched
    # Every other file's rows loaded exactly once (the killed run's batch is not there).
    assert _count(root, "raw", "events") == good_rows
    hook = json.loads((root / "hook.json").read_text())
    assert hook["run"]["status"] == "completed_with_rejections"
    assert sorted(r["path"] for r in hook["run"]["rejected_files"]) == sorted(map(str, bad))
    code, listed, err = _cli(root, "runs", "--json", capsys=capsys)
    history = json.loads(listed)
    assert [r["status"] for r in history[:2]] == ["completed_with_rejections", "interrupted"]
    assert history[0]["files_rejected"] == len(bad)
    assert history[0]["rows"]["in"] == history[0]["rows"]["loaded"] == new_rows
    code, shown, _ = _cli(root, "runs", capsys=capsys)
    for row in rejected:
        assert f"{history[0]['run_id']}: rejected {row['reason']}" in shown.splitlines()

    # The same bytes with the same settings are not read again.
    (root / "hook.json").unlink()
    code, out, err = _cli(root, "run", capsys=capsys)
    assert code == 0, out + err
    assert f"{len(bad)} file(s) rejected before, not read again" in " ".join(out.split())
    assert len(_rejected(root)) == len(bad)
    assert not (root / "hook.json").exists()
    code, listed, _ = _cli(root, "runs", "--json", capsys=capsys)
    latest = json.loads(listed)[0]
    assert (latest["status"], latest["rows"]["in"], latest["files_rejected"]) == ("success", 0, 0)

    # A fixed file (new bytes) and a file under new settings are read again.
    whole.write_bytes(good_bytes)
    with (root / "productlens.toml").open("a") as toml:
        toml.write('\n[ingest.tables.orders]\nencoding = "latin-1"\n')
    code, out, err = _cli(root, "run", capsys=capsys)
    assert code == 0, out + err
    assert len(_rejected(root)) == len(bad)  # no new rejection
    code, listed, _ = _cli(root, "runs", "--json", capsys=capsys)
    rows = json.loads(listed)[0]["rows"]
    whole_rows = pq.ParquetFile(whole).metadata.num_rows
    assert (rows["in"], rows["loaded"], rows["quarantined"]) == (whole_rows + 1, whole_rows, 1)
    engine = open_engine(load_project(root), read_only=True)
    try:
        held = engine.fetch_all(
            exp.select("raw_values").from_(table("raw", "quarantine")).where("row_number = 2")
        )
    finally:
        engine.close()
    assert any("payé" in str(v) for (v,) in held)  # read as latin-1: the text as written
    repaired = _snapshot(root)
    assert sorted(repaired) == sorted(full)
    assert {k: d for k in full if (d := differences(full[k], repaired[k]))} == {}


def _count(root: Path, schema: str, name: str) -> int:
    engine = open_engine(load_project(root), read_only=True)
    try:
        return int(engine.fetch_all(exp.select("count(*)").from_(table(schema, name)))[0][0])
    finally:
        engine.close()
