"""The composition root: engine choice, settings from the file and the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from productlens.app import (
    POSTGRES_DSN_ENV,
    SPARK_MASTER_ENV,
    open_engine,
    postgres_dsn,
    raw_root,
    spark_settings,
    warehouse_exists,
)
from productlens.config import load_project
from productlens.engines import LAYERS, DuckDBEngine
from productlens.errors import ConfigError
from tests.conftest import q, run_cli


def test_duckdb_by_default_with_every_layer(project_dir: Path) -> None:
    project = load_project(project_dir)
    assert project.engine == "duckdb"
    assert not warehouse_exists(project)
    engine = open_engine(project)
    try:
        assert isinstance(engine, DuckDBEngine)
        assert engine.path == project_dir / "warehouse.duckdb"
        schemas = {r[0] for r in engine.fetch_all(q("SELECT schema_name FROM duckdb_schemas()"))}
        assert set(LAYERS) <= schemas
    finally:
        engine.close()
    assert warehouse_exists(project)
    assert raw_root(project) == project_dir / "warehouse.raw"


def test_engine_from_the_file_and_the_command_line_over_it(project_dir: Path) -> None:
    (project_dir / "productlens.toml").write_text('[warehouse]\nengine = "spark"\n')
    assert load_project(project_dir).engine == "spark"
    assert load_project(project_dir, engine="duckdb").engine == "duckdb"
    assert warehouse_exists(load_project(project_dir))  # a server's warehouse is not a file


def test_unknown_engine_in_the_file_is_a_config_error(project_dir: Path) -> None:
    (project_dir / "productlens.toml").write_text('[warehouse]\nengine = "oracle"\n')
    with pytest.raises(ConfigError, match=r"warehouse\.engine"):
        load_project(project_dir)


def test_postgres_dsn_from_the_environment_over_the_file(project_dir: Path) -> None:
    (project_dir / "productlens.toml").write_text(
        '[warehouse.postgres]\ndsn = "host=filehost dbname=a"\n'
    )
    project = load_project(project_dir)
    assert postgres_dsn(project, {}) == "host=filehost dbname=a"
    assert postgres_dsn(project, {POSTGRES_DSN_ENV: "host=envhost"}) == "host=envhost"
    # A blank variable is unset, not libpq's "local server, defaults".
    assert postgres_dsn(project, {POSTGRES_DSN_ENV: " \n"}) == "host=filehost dbname=a"
    assert "filehost" not in repr(project.config.warehouse)  # never printed with the config


def test_postgres_without_a_dsn_says_how_to_give_one(project_dir: Path) -> None:
    project = load_project(project_dir, engine="postgres")
    with pytest.raises(ConfigError, match=POSTGRES_DSN_ENV):
        open_engine(project, environ={})
    with pytest.raises(ConfigError, match=POSTGRES_DSN_ENV):
        open_engine(project, environ={POSTGRES_DSN_ENV: "  "})


def test_spark_settings(project_dir: Path) -> None:
    (project_dir / "productlens.toml").write_text(
        '[warehouse.spark]\nmaster = "sc://cluster:15002"\nwarehouse_dir = "tables"\n'
        '[warehouse.spark.conf]\n"spark.sql.shuffle.partitions" = "8"\n'
    )
    settings = spark_settings(load_project(project_dir), {})
    assert settings.master == "sc://cluster:15002"
    assert settings.warehouse_dir == str(project_dir / "tables")
    assert settings.conf == {"spark.sql.shuffle.partitions": "8"}
    # The environment's master wins over the file's; a blank one counts as unset.
    env = {SPARK_MASTER_ENV: "sc://other:443/;use_ssl=true"}
    assert spark_settings(load_project(project_dir), env).master == env[SPARK_MASTER_ENV]
    blank = {SPARK_MASTER_ENV: " "}
    assert spark_settings(load_project(project_dir), blank).master == "sc://cluster:15002"
    (project_dir / "productlens.toml").write_text(
        '[warehouse.spark]\nwarehouse_dir = "s3://bucket/wh"\nconnect_retry_seconds = 3.5\n'
    )
    defaults = spark_settings(load_project(project_dir), {})
    assert defaults.master == "local[*]"
    assert defaults.connect_retry_seconds == 3.5
    assert defaults.warehouse_dir == "s3://bucket/wh"  # a URL stays a URL


def test_a_duckdb_run_never_imports_the_other_drivers(project_dir: Path) -> None:
    script = (
        "import sys\n"
        "from productlens.cli import main\n"
        f"code = main(['--project', {str(project_dir)!r}, 'models', '--json'])\n"
        "from productlens.app import open_engine\n"
        "from pathlib import Path\n"
        "from productlens.config import load_project\n"
        f"open_engine(load_project(Path({str(project_dir)!r}))).close()\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'pyspark'))\n"
        "print('LOADED', loaded, code)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert "LOADED [] 0" in out


def test_engine_option_on_the_command_line(project_dir: Path) -> None:
    result = run_cli("--project", str(project_dir), "--engine", "postgres", "build", "--help")
    assert result.returncode == 0
    bad = run_cli("--project", str(project_dir), "--engine", "oracle", "models")
    assert bad.returncode != 0
    assert "oracle" in bad.stderr + bad.stdout
