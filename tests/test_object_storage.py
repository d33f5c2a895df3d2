"""Input files and the raw lake in S3-compatible storage (moto's server on loopback).

The same world ingested from `s3://` into a lake in `s3://` builds the warehouse that the
local files build, row for row, with the lineage naming the objects' URLs; PostgreSQL
loads the same raw rows from that lake; the lake keeps its guarantees there (a re-load
is skipped, a duplicate key and a bad row are quarantined, a replay releases a fixed row,
an object no batch lists is swept); a wrong endpoint, bucket or key is one clear line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from rich.console import Console
from sqlglot import exp

from productlens.app import open_engine
from productlens.config import load_project
from productlens.engines import Engine
from productlens.engines.base import table
from productlens.ingest.contracts import CONTRACTS
from productlens.pipeline import Runner
from tests.conftest import run_cli
from tests.cross_engine import differences
from tests.servers import S3Server
from tests.test_engine_parity import (
    NESTED,
    RUN_COLUMNS,
    _project,
    compare,
    duckdb_side,
    run_pipeline,
    world,
)

__all__ = ["duckdb_side", "world"]  # fixtures shared with the engine parity test

LINEAGE = frozenset({"_source_file", "source_file"})


@pytest.fixture
def aws_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """This process talks to the test server, as a user's shell would."""
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    return s3


def upload(s3: S3Server, folder: Path, bucket: str, prefix: str) -> None:
    client = s3.client()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")


def keys(s3: S3Server, bucket: str) -> list[str]:
    """The objects in a bucket (less the empty "folder/" markers PyArrow leaves when it
    deletes a folder's last object)."""
    listed = s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(o["Key"] for o in listed if not o["Key"].endswith("/"))


def s3_project(root: Path, scenario: str, engine: str, lake: str) -> Any:
    """A parity project whose raw lake is `lake` (an s3:// URL) instead of a local folder."""
    _project(root, scenario, engine)
    (root / "productlens.toml").write_text(
        f'[simulate]\nscenario = "{scenario}"\n[lake]\nroot = "{lake}"\n'
    )
    return load_project(root, engine=engine)  # type: ignore[arg-type]


def raw_rows(engine: Engine, name: str) -> pa.Table:
    """A raw table's rows without the run's own columns (batch ids, load times) and the
    quarantine's nested reasons (JSON text on PostgreSQL; test_lake compares those)."""
    columns = [c for c, _ in engine.columns("raw", name) if c not in RUN_COLUMNS | NESTED]
    return engine.fetch_arrow(
        exp.select(*(exp.column(c, quoted=True) for c in columns)).from_(table("raw", name))
    )


def as_urls(rows: pa.Table, folder: Path, url: str) -> pa.Table:
    """The local run's rows with each source file named as the object it was uploaded to."""
    for column in LINEAGE & set(rows.column_names):
        i = rows.column_names.index(column)
        named = pc.replace_substring(rows.column(column), str(folder), url)
        rows = rows.set_column(i, column, named)
    return rows


def same_raw_rows(reference: Engine, other: Engine, data: Path, url: str) -> dict[str, list[str]]:
    """Every raw table, the local run's against the other's, lineage included."""
    found = {}
    for name in [*CONTRACTS, "quarantine"]:
        expected = as_urls(raw_rows(reference, name), data.resolve(), url)
        assert expected.num_rows > 0 or name == "quarantine", name
        if diff := differences(expected, raw_rows(other, name)):
            found[name] = diff[:2]
    return found


@pytest.mark.parametrize("world", ["ecommerce"], indirect=True)
def test_s3_inputs_into_an_s3_lake_build_the_local_warehouse(
    world: Path, duckdb_side: tuple[Engine, list[tuple[str, str, str]]], aws_env: S3Server
) -> None:
    aws_env.create_bucket("world-inputs")
    aws_env.create_bucket("world-lake")
    upload(aws_env, world / "data", "world-inputs", "exports")
    reference, reference_outcomes = duckdb_side
    scenario = (world / "scenario").read_text()
    project = s3_project(world / "on-s3", scenario, "duckdb", "s3://world-lake/raw")
    engine = open_engine(project)
    try:
        outcomes = run_pipeline(project, engine, "s3://world-inputs/exports")
        assert compare(reference, engine, scenario, skip=LINEAGE) == {}
        assert outcomes == reference_outcomes
        url = "s3://world-inputs/exports"
        assert same_raw_rows(reference, engine, world / "data", url) == {}
        # The lake holds exactly the listed files (paths relative to the bucket).
        files = engine.fetch_all(exp.select("path").from_(table("ops", "raw_files")))
        assert sorted(p for (p,) in files) == keys(aws_env, "world-lake") != []
    finally:
        engine.close()
    assert not list((world / "on-s3").glob("*.raw"))  # nothing of the lake is local


@pytest.mark.parametrize("world", ["ecommerce"], indirect=True)
def test_postgres_loads_the_raw_rows_of_an_s3_lake(
    world: Path,
    duckdb_side: tuple[Engine, list[tuple[str, str, str]]],
    aws_env: S3Server,
    pg_dsn: str,
) -> None:
    from productlens.engines.postgres import PostgresEngine

    aws_env.create_bucket("pg-inputs")
    aws_env.create_bucket("pg-lake")
    upload(aws_env, world / "data", "pg-inputs", "x")
    scenario = (world / "scenario").read_text()
    project = s3_project(world / "pg-on-s3", scenario, "postgres", "s3://pg-lake/lake")
    engine = PostgresEngine(pg_dsn)
    for layer in ("raw", "ops"):
        engine.ensure_schema(layer)
    runner = Runner(project, engine, Console(quiet=True))
    try:
        runner.ingest(["s3://pg-inputs/x"])
        runner.publish()
        assert same_raw_rows(duckdb_side[0], engine, world / "data", "s3://pg-inputs/x") == {}
    finally:
        runner.finish()
        engine.close()


USERS = "user_id,signup_ts,country,device,acquisition_channel,campaign_id,segment\n"


def test_the_lake_in_s3_keeps_its_guarantees(tmp_path: Path, s3: S3Server) -> None:
    s3.create_bucket("rules-in")
    s3.create_bucket("rules-lake")
    client = s3.client()
    client.put_object(
        Bucket="rules-in",
        Key="drop/users/a.csv",
        Body=(USERS + "u1,2026-01-01 00:00:00,GB,mobile,organic,,new\n"
              "u2,01/02/2026 10:00,GB,mobile,organic,,new\n").encode(),
    )  # fmt: skip
    client.put_object(Bucket="rules-in", Key="drop/README.txt", Body=b"not data")
    client.put_object(Bucket="rules-lake", Key="lake/users/stray-rows.parquet", Body=b"crash")
    root = tmp_path / "project"
    root.mkdir()
    (root / "productlens.toml").write_text('[lake]\nroot = "s3://rules-lake/lake"\n')

    def cli(*args: str) -> str:
        result = run_cli("--project", str(root), *args, env=s3.env())
        assert result.returncode == 0, result.stderr + result.stdout
        return result.stdout

    out = cli("ingest", "s3://rules-in/drop")
    assert "passed over (not a supported data file): s3://rules-in/drop/README.txt" in out
    assert "1 rows loaded, 1 quarantined" in out
    lake = keys(s3, "rules-lake")
    assert "lake/users/stray-rows.parquet" not in lake  # listed by no batch: swept
    assert len(lake) == 1
    assert "1 files already loaded" in cli("ingest", "s3://rules-in/drop/users/a.csv")
    client.put_object(
        Bucket="rules-in",
        Key="drop/users/b.csv",
        Body=(USERS + "u1,2026-01-03 00:00:00,FR,web,paid,,new\n").encode(),
    )
    cli("ingest", "s3://rules-in/drop/users/*.csv")  # a pattern: a.csv again is skipped
    text = (root / "productlens.toml").read_text()
    (root / "productlens.toml").write_text(
        text + '[ingest.tables.users]\ntimestamp_format = "%d/%m/%Y %H:%M"\n'
    )
    assert "1 rows loaded" in cli("ingest", "--replay")

    project = load_project(root)
    engine = open_engine(project, read_only=True, environ=s3.env())
    try:
        users = engine.fetch_all(
            exp.select("user_id", "country", "_source_file", "_row_number")
            .from_(table("raw", "users"))
            .order_by("user_id")
        )
        held = engine.fetch_all(
            exp.select("source_file", "row_number", exp.column("reasons"), "released_at")
            .from_(table("raw", "quarantine"))
            .order_by("source_file")
        )
    finally:
        engine.close()
    a, b = "s3://rules-in/drop/users/a.csv", "s3://rules-in/drop/users/b.csv"
    assert [u[:4] for u in users] == [("u1", "GB", a, 2), ("u2", "GB", a, 3)]
    # a's bad row was released by the replay; b's row, another u1, is held as one
    assert [(h[0], h[1], h[3] is not None) for h in held] == [(a, 3, True), (b, 2, False)]
    assert list(held[0][2]) == ["bad_timestamp"]
    assert "conflicting_duplicate" in held[1][2]


@pytest.mark.parametrize(
    ("target", "environment", "message"),
    [
        ("s3://nobucket/x.csv", {}, "no bucket 'nobucket' in object storage at http://127.0.0.1"),
        ("s3://errs-in/missing/", {}, "no such object or prefix (file=s3://errs-in/missing"),
        (
            "s3://errs-in/users.csv",
            {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
            "cannot look up the object in object storage at http://127.0.0.1:9",
        ),
    ],
)
def test_a_wrong_bucket_key_or_endpoint_is_one_clear_line(
    tmp_path: Path, s3: S3Server, target: str, environment: dict[str, str], message: str
) -> None:
    if "errs-in" not in {b["Name"] for b in s3.client().list_buckets()["Buckets"]}:
        s3.create_bucket("errs-in")
    result = run_cli("--project", str(tmp_path), "ingest", target, env={**s3.env(), **environment})
    assert result.returncode != 0
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_a_lake_in_a_missing_bucket_is_refused_before_anything_is_written(
    tmp_path: Path, s3: S3Server
) -> None:
    (tmp_path / "users.csv").write_text(USERS + "u1,2026-01-01 00:00:00,GB,mobile,organic,,new\n")
    (tmp_path / "productlens.toml").write_text('[lake]\nroot = "s3://no-lake-here/raw"\n')
    result = run_cli("--project", str(tmp_path), "ingest", str(tmp_path / "users.csv"),
                     env=s3.env())  # fmt: skip
    assert result.returncode != 0
    assert "no bucket 'no-lake-here'" in result.stderr
    assert "Traceback" not in result.stderr
