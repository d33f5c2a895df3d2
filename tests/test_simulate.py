from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from productlens.ingest.contracts import CONTRACTS
from productlens.simulate import WorldParams, generate

SMALL = WorldParams(users=3000, days=21, seed=11, users_per_block=1000)


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate(SMALL, out)
    return out


def test_same_seed_same_bytes(world: Path, tmp_path: Path) -> None:
    generate(SMALL, tmp_path)
    assert digest(tmp_path) == digest(world)
    generate(replace(SMALL, seed=12), tmp_path / "other")
    assert digest(tmp_path / "other") != digest(world)


@pytest.mark.parametrize("table", ["users", "events"])
def test_columns_follow_the_contract(world: Path, table: str) -> None:
    described = duckdb.sql(f"DESCRIBE SELECT * FROM '{world}/{table}/*.parquet'").fetchall()
    names = [row[0] for row in described]
    types = {row[0]: row[1] for row in described}
    contract = CONTRACTS[table]
    assert tuple(names) == contract.column_names
    for column in contract.columns:
        assert types[column.name] == column.type
    key = ", ".join(contract.key)
    dupes = duckdb.sql(
        f"SELECT count(*) FROM (SELECT {key} FROM '{world}/{table}/*.parquet' "
        f"GROUP BY {key} HAVING count(*) > 1)"
    ).fetchall()[0]
    assert dupes == (0,)


def test_every_event_has_a_known_user_after_signup(world: Path) -> None:
    orphans = duckdb.sql(
        f"SELECT count(*) FROM '{world}/events/*.parquet' e "
        f"LEFT JOIN '{world}/users/*.parquet' u USING (user_id) "
        "WHERE u.user_id IS NULL OR e.event_ts < u.signup_ts"
    ).fetchall()[0]
    assert orphans == (0,)


def test_truth_manifest_counts_match_files(world: Path) -> None:
    truth = json.loads((world / "truth.json").read_text())
    assert truth["params"]["seed"] == 11
    for table in ("users", "events"):
        n = duckdb.sql(f"SELECT count(*) FROM '{world}/{table}/*.parquet'").fetchall()[0]
        assert n == (truth["rows"][table],)
    assert sum(truth["event_types"].values()) == truth["rows"]["events"]


def test_funnel_falls_step_by_step_and_web_converts_better(world: Path) -> None:
    rows = duckdb.sql(
        f"SELECT device, event_type, count(DISTINCT session_id) FROM '{world}/events/*.parquet' "
        "GROUP BY ALL"
    ).fetchall()
    sessions = {(d, t): n for d, t, n in rows}
    steps = SMALL.funnel_steps
    for device in ("web", "mobile"):
        counts = [sessions[(device, s)] for s in steps]
        assert counts == sorted(counts, reverse=True), (device, counts)
        assert counts[-1] > 0
    rate = {d: sessions[(d, "purchase")] / sessions[(d, "page_view")] for d in ("web", "mobile")}
    assert rate["web"] > rate["mobile"]


def test_text_formats_hold_the_same_rows(tmp_path: Path) -> None:
    params = WorldParams(users=200, days=7, seed=3)
    generate(params, tmp_path / "p")
    generate(params, tmp_path / "c", fmt="csv")
    generate(params, tmp_path / "j", fmt="jsonl")
    query = "SELECT count(*), count(DISTINCT event_id), round(sum(amount), 2) FROM {}"
    expected = duckdb.sql(query.format(f"'{tmp_path}/p/events/*.parquet'")).fetchall()[0]
    assert (
        duckdb.sql(query.format(f"read_csv('{tmp_path}/c/events/*.csv')")).fetchall()[0] == expected
    )
    assert (
        duckdb.sql(query.format(f"read_json('{tmp_path}/j/events/*.jsonl')")).fetchall()[0]
        == expected
    )
