"""The demo end to end at a small size, through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from productlens import layers
from productlens.ingest.contracts import CONTRACTS
from productlens.metrics.funnel import funnel_mart_query
from productlens.metrics.scope import parse_duration
from tests.conftest import SMALL_WORLD, open_readonly, q, run_cli

EXPECTED_TABLES = {
    "raw": set(CONTRACTS) | {"quarantine"},
    "staging": {"stg_events", "stg_users"},
    "core": {"fct_events"},
    "marts": {"funnel_daily_metrics"},
    "ops": {"run_log", "test_results", "ingest_log", "ingested_files"},
}


def test_demo_builds_every_layer(demo_project: Path) -> None:
    engine = open_readonly(demo_project)
    try:
        for layer, tables in EXPECTED_TABLES.items():
            present = engine.fetch_all(
                q("SELECT table_name FROM information_schema.tables WHERE table_schema = ?", layer),
            )
            assert tables <= {r[0] for r in present}, layer
        n_raw = engine.fetch_all(q("SELECT count(*) FROM raw.events"))[0][0]
        n_fct = engine.fetch_all(q("SELECT count(*) FROM core.fct_events"))[0][0]
        assert n_raw > 1000
        assert n_fct == n_raw  # clean simulated data: nothing is dropped on the way
        leftovers = engine.fetch_all(
            q(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_name LIKE '%__building'"
            )
        )
        assert leftovers == []
    finally:
        engine.close()


def test_funnel_is_plausible(demo_project: Path) -> None:
    engine = open_readonly(demo_project)
    try:
        totals = engine.fetch_all(
            q(
                "SELECT step_no, step_name, sum(n_users) FROM marts.funnel_daily_metrics "
                "GROUP BY ALL ORDER BY step_no"
            )
        )
        days = engine.fetch_all(
            q("SELECT count(DISTINCT event_date) FROM marts.funnel_daily_metrics")
        )
        daily_increase = engine.fetch_all(
            q(
                "SELECT count(*) FROM marts.funnel_daily_metrics a "
                "JOIN marts.funnel_daily_metrics b "
                "ON a.event_date = b.event_date AND b.step_no = a.step_no + 1 "
                "WHERE b.n_users > a.n_users"
            )
        )
        # Step 1 users on a day never exceed the users active that day.
        active = engine.fetch_all(
            q(
                "SELECT count(*) FROM marts.funnel_daily_metrics f JOIN ("
                "  SELECT event_date, count(DISTINCT user_id) AS n FROM core.fct_events GROUP BY 1"
                ") a USING (event_date) WHERE f.step_no = 1 AND f.n_users > a.n"
            )
        )
    finally:
        engine.close()
    names = [t[1] for t in totals]
    counts = [int(t[2]) for t in totals]
    assert names == ["page_view", "product_view", "add_to_cart", "checkout_start", "purchase"]
    assert all(n > 0 for n in counts)
    assert counts == sorted(counts, reverse=True)
    assert counts[-1] < counts[0]
    # 14 simulated days, plus the day before when a clock-skewed first event lands there
    assert 14 <= days[0][0] <= 15
    assert daily_increase == [(0,)]
    assert active == [(0,)]


def test_report_and_run_results_exist(demo_project: Path) -> None:
    html = (demo_project / "reports" / "report.html").read_text()
    assert "<svg" in html
    # Self-contained: nothing is fetched when the file is opened.
    for external in ('src="http', "src='http", 'href="http', "<link", "@import", "url(http"):
        assert external not in html, external
    assert "page_view" in html
    assert "biggest drop-off" in html
    for png in ("funnel.png", "conversion_trend.png"):
        data = (demo_project / "reports" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 5000
    results = json.loads((demo_project / "run_results.json").read_text())
    stages = [r["stage"] for r in results["results"] if r["object"] is None]
    assert stages == ["simulate", "ingest", "build", "check", "report"]
    assert all(r["status"] == "success" for r in results["results"])


def test_summary_is_printed(demo_project: Path) -> None:
    out = (demo_project / "demo_stdout.txt").read_text()
    for word in ("simulate", "ingest", "build", "check", "report", layers.TITLE, "report.html"):
        assert word in out


def test_run_log_records_each_stage(demo_project: Path) -> None:
    con = duckdb.connect(str(demo_project / "warehouse.duckdb"), read_only=True)
    rows = con.execute(
        "SELECT stage, status, n_rows FROM ops.run_log WHERE object IS NULL ORDER BY started_at"
    ).fetchall()
    con.close()
    assert [r[0] for r in rows] == ["simulate", "ingest", "build", "check", "report"]
    assert all(r[1] == "success" and r[2] > 0 for r in rows)


def test_demo_refuses_a_warehouse_it_did_not_make(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute("CREATE SCHEMA raw; CREATE TABLE raw.events AS SELECT 1 AS precious")
    con.close()
    result = run_cli("--project", str(tmp_path), "demo", *SMALL_WORLD)
    assert result.returncode != 0
    assert "did not make" in result.stderr
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT * FROM raw.events").fetchall() == [(1,)]
    con.close()


def test_stages_run_one_by_one(tmp_path: Path) -> None:
    """generate, ingest, build, check and report as separate commands."""
    assert run_cli("--project", str(tmp_path), "generate", *SMALL_WORLD).returncode == 0
    for args in (["ingest", str(tmp_path / "data")], ["build"], ["check"], ["report"]):
        result = run_cli("--project", str(tmp_path), *args)
        assert result.returncode == 0, (args, result.stderr)
    again = run_cli("--project", str(tmp_path), "ingest", str(tmp_path / "data"))
    assert "files already loaded" in again.stdout
    models = run_cli("--project", str(tmp_path), "models", "--json")
    listed = {m["name"]: m for m in json.loads(models.stdout)}
    assert listed["fct_events"]["rows"] > 0
    assert listed["funnel_daily_metrics"]["upstreams"] == ["marts.int_funnel_entries"]
    assert listed["int_funnel_entries"]["upstreams"] == ["core.fct_events"]
    assert (tmp_path / "reports" / "report.html").exists()
    # Building one funnel mart after the funnel's steps change rebuilds the int_ model it
    # counts: its rows are the new funnel's, not the stale table's.
    steps = ["product_view", "purchase"]
    (tmp_path / "productlens.toml").write_text(f"[metrics]\nfunnel_steps = {json.dumps(steps)}\n")
    result = run_cli("--project", str(tmp_path), "build", "--select", "funnel_daily_metrics")
    assert result.returncode == 0, result.stderr
    engine = open_readonly(tmp_path)
    try:
        old = funnel_mart_query(steps, window=parse_duration("1d"), per="day").sql("duckdb")
        columns = "step_no, step_name, n_users, avg_time_s, median_time_s"
        want = engine.fetch_all(q(f"SELECT period, {columns} FROM ({old}) ORDER BY ALL"))
        got = engine.fetch_all(
            q(f"SELECT event_date, {columns} FROM marts.funnel_daily_metrics ORDER BY ALL")
        )
        assert got == want
        assert {row[2] for row in got} == set(steps)
    finally:
        engine.close()
