"""The composition root: from a project and the environment, the engine and the paths.

This is the one module that reads the warehouse settings and the environment; everything
below it is given an `Engine` (which knows no project) and the paths it needs. Engines
other than DuckDB are imported only when chosen, so a DuckDB user never imports psycopg
or pyspark.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from productlens.config import Project
from productlens.engines.base import LAYERS, Engine
from productlens.engines.duckdb import DuckDBEngine, StringSession
from productlens.errors import ConfigError

POSTGRES_DSN_ENV = "PRODUCTLENS_POSTGRES_DSN"

# How each engine is built: (project, environment, read_only) -> Engine.
EngineFactory = Callable[[Project, Mapping[str, str], bool], Engine]


def raw_root(project: Project) -> Path:
    """The raw layer's Parquet lake: `<warehouse>.raw`, beside the warehouse file."""
    return project.warehouse_path.with_suffix(".raw")


def open_engine(
    project: Project, *, read_only: bool = False, environ: Mapping[str, str] | None = None
) -> Engine:
    """Open the project's warehouse engine; unless read-only, with every layer's schema."""
    factory = ENGINES.get(project.engine)
    if factory is None:  # the config's Literal makes this a programming error
        raise ConfigError(f"unknown warehouse engine {project.engine!r}")
    engine = factory(project, os.environ if environ is None else environ, read_only)
    if not read_only:
        try:
            for layer in LAYERS:
                engine.ensure_schema(layer)
        except BaseException:
            engine.close()
            raise
    return engine


def ingest_target(engine: Engine, project: Project) -> Any:
    """COMPATIBILITY ONLY (until ingestion's processor lands, branch `lake`): the DuckDB
    warehouse's connection behind the old string API that `productlens.ingest` uses
    (typed `Any` because ingest's signatures still say `Engine`)."""
    if not isinstance(engine, DuckDBEngine):
        raise ConfigError(f"ingestion into the {engine.name} engine is not available yet")
    return StringSession(engine, raw_root(project))


def describe_dsn(dsn: str) -> str:
    """A DSN fit for messages: host, port and database, never user or password."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"postgresql://{host}{port}{parts.path}"
    fields = dict(p.split("=", 1) for p in dsn.split() if "=" in p)
    kept = [f"{k}={fields[k]}" for k in ("host", "port", "dbname") if k in fields]
    return " ".join(kept) or "(a DSN)"


def _duckdb(project: Project, _environ: Mapping[str, str], read_only: bool) -> Engine:
    settings = project.config.warehouse
    path = project.warehouse_path
    return DuckDBEngine(
        path,
        memory_limit=settings.memory_limit,
        threads=settings.threads,
        read_only=read_only,
        # The raw layer's views list their files relative to the warehouse's folder.
        search_path=path.parent,
    )


def _postgres(project: Project, environ: Mapping[str, str], _read_only: bool) -> Engine:
    # Imported when chosen: psycopg is an extra a DuckDB user need not have.
    from productlens.engines.postgres import (  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
        PostgresEngine,
    )

    dsn = environ.get(POSTGRES_DSN_ENV) or project.config.warehouse.postgres.dsn
    if not dsn:
        raise ConfigError(
            f"the postgres engine needs a server: set {POSTGRES_DSN_ENV} "
            "(or [warehouse.postgres] dsn in productlens.toml)"
        )
    engine: Engine = PostgresEngine(dsn)
    return engine


def _spark(project: Project, _environ: Mapping[str, str], _read_only: bool) -> Engine:
    # Imported when chosen: pyspark is an extra a DuckDB user need not have.
    from productlens.engines.spark import (  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
        SparkEngine,
    )

    settings = project.config.warehouse.spark
    folder = settings.warehouse_dir
    if "://" not in folder:  # a local folder, relative to the project
        folder = str(project.resolve(Path(folder)))
    engine: Engine = SparkEngine.connect(
        master=settings.master, warehouse_dir=folder, conf=dict(settings.conf)
    )
    return engine


ENGINES: dict[str, EngineFactory] = {"duckdb": _duckdb, "postgres": _postgres, "spark": _spark}
