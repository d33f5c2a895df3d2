"""Project folders whose names hold quotes, a space and glob characters work on every
engine: a tiny world goes ingest -> publish -> build -> check on DuckDB, PostgreSQL and
Spark from inside such a folder (the input files, the catalog, the raw lake in a folder
of its own with a `?` too, and on Spark the warehouse's databases), and every raw,
staging, core and mart table equals DuckDB's, the data tests too. The raw layer's
`_source_file` carries the odd paths as values, so a path mangled on the way would show
as a difference. (DuckDB keeps no database under a `?` and reads no lake under a `,`:
those are refused with a clear error, see test_a_path_duckdb_cannot_take_is_refused.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlglot import exp

from productlens.app import open_engine, raw_root
from productlens.config import Project, load_project
from productlens.engines import Engine
from productlens.engines.base import table
from productlens.pipeline import Runner
from productlens.simulate import generate, preset
from tests.conftest import run_cli
from tests.cross_engine import differences

# Characters special to a shell, SQL text, a Hadoop glob or a DuckDB glob: the project
# folder's name, and the raw lake's (`[lake] root`, in the project folder).
ODD = 'it\'s "odd" [a-b] *{c}'
ODD_LAKE = "raw lake? [x] *{y}"
SPARK_TABLES = "it's \"spark\" tables"
LAYERS = ("raw", "staging", "core", "marts")
# Each engine's run ingests the files itself: batch ids and load times differ. Nested
# catalog values reach other engines as JSON text (test_lake compares them).
RUN_COLUMNS = {"_batch_id", "_ingested_at", "reasons", "reason_history"}
Outcomes = list[tuple[str, str, str]]


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the odd name, holding a tiny simulated world in `data/`."""
    folder = tmp_path_factory.mktemp("paths") / ODD
    generate(preset("ecommerce", users=60, days=6, seed=3), folder / "data", workers=1)
    return folder


def _project(root: Path, engine: str) -> Project:
    """A project in `root` whose raw lake is the folder ODD_LAKE in it."""
    root.mkdir()
    lake = json.dumps(ODD_LAKE)  # a JSON string is a TOML basic string
    (root / "productlens.toml").write_text(f"[lake]\nroot = {lake}\n")
    project = load_project(root, engine=engine)  # type: ignore[arg-type]
    assert str(raw_root(project)) == str(root / ODD_LAKE)
    return project


def _run(project: Project, engine: Engine, data: Path) -> Outcomes:
    """ingest -> publish -> build -> check on `engine`; the data tests' outcomes."""
    runner = Runner(project, engine, Console(quiet=True))
    try:
        runner.ingest([data])
        built = runner.build()
        assert built.ok, built.failed
        outcomes = runner.check()
    finally:
        runner.finish()
    return sorted((o.test.name, o.status, str(o.n_failing)) for o in outcomes)


@pytest.fixture(scope="module")
def reference(odd: Path) -> Iterator[tuple[Engine, Outcomes]]:
    """The world built on DuckDB, its warehouse file and lake in the odd folder."""
    project = _project(odd / "duckdb", "duckdb")
    engine = open_engine(project)
    outcomes = _run(project, engine, odd / "data")
    yield engine, outcomes
    engine.close()


def differing(expected: Engine, actual: Engine) -> dict[str, list[str]]:
    """Every table of the layers whose rows differ between the engines."""
    found: dict[str, list[str]] = {}
    for layer in LAYERS:
        names = expected.list_tables(layer)
        assert actual.list_tables(layer) == names, layer
        for name in names:
            columns = [c for c, _ in expected.columns(layer, name) if c not in RUN_COLUMNS]
            query = exp.select(*(exp.column(c, quoted=True) for c in columns)).from_(
                table(layer, name)
            )
            if diff := differences(expected.fetch_arrow(query), actual.fetch_arrow(query)):
                found[f"{layer}.{name}"] = diff[:2]
    return found


def test_duckdb_keeps_the_odd_paths_as_values(
    odd: Path, reference: tuple[Engine, Outcomes]
) -> None:
    engine, outcomes = reference
    assert outcomes
    assert all(status != "error" for _, status, _ in outcomes)
    sources = engine.fetch_all(
        exp.select(exp.column("_source_file")).distinct().from_(table("raw", "events"))
    )
    assert sources, "the events must have been ingested"
    assert all(str(row[0]).startswith(str(odd / "data")) for row in sources), sources


def test_postgres_in_an_odd_folder(
    odd: Path, reference: tuple[Engine, Outcomes], pg_dsn: str
) -> None:
    from productlens.engines.postgres import PostgresEngine

    project = _project(odd / "postgres", "postgres")
    engine = PostgresEngine(pg_dsn)
    try:
        for layer in (*LAYERS, "ops"):
            engine.ensure_schema(layer)
        outcomes = _run(project, engine, odd / "data")
        assert differing(reference[0], engine) == {}
        assert outcomes == reference[1]
    finally:
        engine.close()


@pytest.mark.xdist_group("spark")
def test_spark_in_an_odd_folder(odd: Path, reference: tuple[Engine, Outcomes], spark: Any) -> None:
    from productlens.engines.spark import SparkEngine

    project = _project(odd / "spark", "spark")
    engine = SparkEngine(spark)
    try:
        # The run's session is shared: its layers start empty, and here they live in a
        # folder with quotes and a space (tables are files under a database's location;
        # Spark refuses glob characters there, see test_spark_refuses_a_glob_warehouse).
        for layer in (*LAYERS, "ops"):
            spark.sql(f"DROP DATABASE IF EXISTS `{layer}` CASCADE")
            location = exp.Literal.string(str(odd.parent / SPARK_TABLES / f"{layer}.db"))
            spark.sql(f"CREATE DATABASE `{layer}` LOCATION {location.sql(dialect='spark')}")
        outcomes = _run(project, engine, odd / "data")
        assert differing(reference[0], engine) == {}
        assert outcomes == reference[1]
    finally:
        for layer in (*LAYERS, "ops"):
            spark.sql(f"DROP DATABASE IF EXISTS `{layer}` CASCADE")
        engine.close()


@pytest.mark.parametrize(
    ("folder", "says"),
    [
        ("a?b", "DuckDB cannot keep a database in a path with '?'"),
        ("a,b", "DuckDB cannot read the lake from a folder whose path has a ','"),
    ],
)
def test_a_path_duckdb_cannot_take_is_refused(tmp_path: Path, folder: str, says: str) -> None:
    """DuckDB writes the log of a database under `a?b/` to `a.wal?b/` (the first commit
    fails after the work is done) and reads `a,b` as two folders to look in: both are
    refused before anything is written, in one line naming the path."""
    root = tmp_path / folder
    root.mkdir()
    (tmp_path / "users.csv").write_text("user_id,signup_ts,country\nu1,2026-01-01 10:00:00,DE\n")
    result = run_cli("--project", str(root), "ingest", str(tmp_path / "users.csv"))
    assert result.returncode == 1
    said = " ".join(result.stderr.split())  # as one line, however the console wrapped it
    assert says in said
    assert str(root) in said
    assert "Traceback" not in said
    assert list(root.iterdir()) == []  # nothing written


def test_spark_refuses_a_glob_warehouse(tmp_path: Path) -> None:
    """Spark globs a table's folder when it reads the table, so tables written under
    `[a-b]` are "not found" at once: such a warehouse folder (the default one, in the
    project folder) is refused before a JVM starts, in one line naming it."""
    root = tmp_path / "project [a-b]"
    root.mkdir()
    result = run_cli("--project", str(root), "--engine", "spark", "build")
    assert result.returncode == 1
    said = " ".join(result.stderr.split())  # as one line, however the console wrapped it
    assert "Spark cannot keep tables in a folder whose path has any of" in said
    assert "[warehouse.spark] warehouse_dir" in said
    assert str(root / "spark-warehouse") in said
    assert "Traceback" not in said
