"""The composition root: from a project and the environment, the engine and the paths.

This is the one module that reads the warehouse settings and the environment; everything
below it is given an `Engine` (which knows no project) and the paths it needs. Engines
other than DuckDB are imported only when chosen, so a DuckDB user never imports psycopg
or pyspark.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlglot import exp

from productlens import ops
from productlens.config import DEFAULT_FUNNELS, PROJECT_FILE, Project
from productlens.engines.base import LAYERS, Engine, table
from productlens.engines.duckdb import DuckDBEngine
from productlens.errors import ConfigError, EngineError, NoWarehouse
from productlens.ingest.processor import LakeProcessor
from productlens.objects import FilePath, ObjectStore, S3Settings, is_url

POSTGRES_DSN_ENV = "PRODUCTLENS_POSTGRES_DSN"
# Overrides `[warehouse.spark] master`: a deployment points one project at its cluster or
# Spark Connect server (`sc://host:15002`) without editing the file.
SPARK_MASTER_ENV = "PRODUCTLENS_SPARK_MASTER"
# YARN's client finds the ResourceManager through the Hadoop configuration these name.
HADOOP_CONF_ENVS = ("HADOOP_CONF_DIR", "YARN_CONF_DIR")

# How each engine is built: (project, environment, read_only) -> Engine.
EngineFactory = Callable[[Project, Mapping[str, str], bool], Engine]


def object_store(project: Project, environ: Mapping[str, str] | None = None) -> ObjectStore:
    """The S3-compatible store `s3://` URLs are read from: the endpoint and region from
    the standard AWS environment, else `[lake]`; credentials from the environment only
    (unset: the AWS SDK's own chain)."""
    env = os.environ if environ is None else environ
    lake = project.config.lake
    return ObjectStore(
        S3Settings(
            endpoint=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or lake.endpoint,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or lake.region,
            access_key=env.get("AWS_ACCESS_KEY_ID"),
            secret_key=env.get("AWS_SECRET_ACCESS_KEY"),
            session_token=env.get("AWS_SESSION_TOKEN"),
        )
    )


def raw_root(project: Project, objects: ObjectStore | None = None) -> FilePath:
    """The raw layer's Parquet lake: `[lake] root` (a folder or an `s3://` prefix), else
    `<warehouse>.raw` beside a DuckDB warehouse file (whose file is the lake's catalog),
    or `lake.raw` beside `lake.duckdb` for other engines."""
    root = project.config.lake.root
    if root is not None and is_url(root):
        return (objects or object_store(project)).path(root)
    if root is not None:
        return project.resolve(Path(root))
    if project.engine == "duckdb":
        return project.warehouse_path.with_suffix(".raw")
    return lake_catalog(project).with_suffix(".raw")


def landing_root(project: Project, objects: ObjectStore | None = None) -> FilePath:
    """Where `productlens run` finds new files: `[sources] landing`, a folder (relative to
    the project) or an `s3://` prefix."""
    landing = project.config.sources.landing
    if landing is None and not (project.root / PROJECT_FILE).is_file():
        # A mistyped --project (or the wrong folder): say so, not "set [sources] landing".
        raise ConfigError(
            f"no {PROJECT_FILE} in the project folder: is it the right one (--project)?",
            path=project.root,
        )
    if landing is None:
        raise ConfigError(
            "productlens run reads new files from a landing folder: set "
            '[sources] landing = "landing" (or an s3:// prefix) in productlens.toml'
        )
    if is_url(landing):
        return (objects or object_store(project)).path(landing)
    return project.resolve(Path(landing))


def lake_catalog(project: Project) -> Path:
    """The DuckDB file holding the lake's catalog when the warehouse is not DuckDB."""
    return project.resolve(Path("lake.duckdb"))


def open_lake(
    project: Project,
    engine: Engine,
    *,
    read_only: bool = False,
    environ: Mapping[str, str] | None = None,
) -> LakeProcessor:
    """Ingestion's processor: on a DuckDB warehouse's own connection (its file is the
    lake's catalog), else on the lake's catalog file beside the project."""
    objects = object_store(project, environ)
    if isinstance(engine, DuckDBEngine):
        return LakeProcessor.shared(engine.connection, raw_root(project, objects), objects=objects)
    settings = project.config.warehouse
    return LakeProcessor.open(
        lake_catalog(project),
        raw_root(project, objects),
        memory_limit=settings.memory_limit,
        threads=settings.threads,
        read_only=read_only,
        objects=objects,
    )


def warehouse_exists(project: Project) -> bool:
    """Whether there is a warehouse to read: DuckDB's file; a server is assumed there."""
    return project.engine != "duckdb" or project.warehouse_path.exists()


def require_warehouse(project: Project) -> None:
    """Refuse, before the engine is opened, a command that only reads the warehouse when
    there is none: opening the engine for writing would create an empty warehouse (and
    the run log, run_results.json) in a mistyped --project folder, and the command would
    then fail on a missing table."""
    if not warehouse_exists(project):
        raise NoWarehouse(
            f"there is no warehouse at {project.warehouse_path}: run `productlens demo`, "
            "or ingest your exports and run `productlens build` first"
        )


def open_engine(
    project: Project, *, read_only: bool = False, environ: Mapping[str, str] | None = None
) -> Engine:
    """Open the project's warehouse engine; unless read-only, with every layer's schema.
    A read-only engine refuses writes on every engine (DuckDB opens its file read-only,
    PostgreSQL's session is read-only, Spark's engine refuses any statement but a query)."""
    factory = ENGINES.get(project.engine)
    if factory is None:  # the config's Literal makes this a programming error
        raise ConfigError(f"unknown warehouse engine {project.engine!r}")
    engine = factory(project, os.environ if environ is None else environ, read_only)
    try:
        if not read_only:
            for layer in LAYERS:
                engine.ensure_schema(layer)
        adopt_demo_world(project, engine)
    except BaseException:
        engine.close()
        raise
    return engine


def demo_world(engine: Engine) -> str | None:
    """The world the demo last simulated into this warehouse (`ops.demo_world`), if any."""
    if engine.table_kind(*ops.DEMO_WORLD) is None:
        return None
    query = (
        exp.select(exp.column("params"))
        .from_(table(*ops.DEMO_WORLD))
        .order_by(exp.Ordered(this=exp.column("created_at"), desc=True))
        .limit(1)
    )
    rows = engine.fetch_all(query)
    scenario = json.loads(rows[0][0]).get("scenario") if rows else None
    return str(scenario) if scenario else None


def adopt_demo_world(project: Project, engine: Engine) -> None:
    """When the project file names no scenario, the world the demo simulated into the
    warehouse is the project's: `demo --scenario saas` writes no project file, and a later
    build, report, experiment readout or dashboard must use that world's funnel steps and
    metrics, not the default world's. A scenario the file (or the demo command) names wins."""
    if "scenario" in project.config.simulate.model_fields_set:
        return
    scenario = demo_world(engine)
    # A world this version does not know (a newer demo's) leaves the default in place.
    if scenario in DEFAULT_FUNNELS and scenario != project.config.simulate.scenario:
        project.config.simulate.scenario = scenario  # type: ignore[assignment]


def _duckdb(project: Project, environ: Mapping[str, str], read_only: bool) -> Engine:
    settings = project.config.warehouse
    path = project.warehouse_path
    return DuckDBEngine(
        path,
        memory_limit=settings.memory_limit,
        threads=settings.threads,
        read_only=read_only,
        # The raw layer's views list their files relative to the warehouse's folder, or
        # (a lake in object storage) read them through the store.
        search_path=path.parent,
        filesystems=[object_store(project, environ).for_duckdb()],
    )


def postgres_dsn(project: Project, environ: Mapping[str, str]) -> str:
    """The PostgreSQL DSN: the environment's, else the project file's. A blank one counts
    as unset: libpq would take it as "the local server's defaults" and reach whatever
    server listens there."""
    dsn = (environ.get(POSTGRES_DSN_ENV) or "").strip() or (
        project.config.warehouse.postgres.dsn or ""
    ).strip()
    if not dsn:
        raise ConfigError(
            f"the postgres engine needs a server: set {POSTGRES_DSN_ENV} "
            "(or [warehouse.postgres] dsn in productlens.toml)"
        )
    return dsn


@dataclass(frozen=True)
class SparkSettings:
    master: str
    warehouse_dir: str  # an absolute local folder or an object-store URL
    conf: dict[str, str]
    connect_retry_seconds: float = 20.0


def spark_settings(project: Project, environ: Mapping[str, str] | None = None) -> SparkSettings:
    """Spark's master (PRODUCTLENS_SPARK_MASTER, else the project file's), warehouse
    folder (a local one relative to the project) and conf. `yarn` without a Hadoop
    configuration in the environment is refused here, before a JVM starts."""
    env = os.environ if environ is None else environ
    settings = project.config.warehouse.spark
    master = (env.get(SPARK_MASTER_ENV) or "").strip() or settings.master
    if master == "yarn" and not any(env.get(name) for name in HADOOP_CONF_ENVS):
        raise EngineError(
            "the yarn master needs the cluster's Hadoop configuration: set HADOOP_CONF_DIR "
            "(or YARN_CONF_DIR) to the folder holding yarn-site.xml",
            engine="spark",
        )
    folder = settings.warehouse_dir
    if "://" not in folder:
        folder = str(project.resolve(Path(folder)))
    return SparkSettings(master, folder, dict(settings.conf), settings.connect_retry_seconds)


def _engine_class(name: str, class_name: str) -> Any:
    """An engine class, imported only when chosen: its driver (psycopg, pyspark) is an
    extra that a DuckDB user need not have."""
    try:
        module = importlib.import_module(f"productlens.engines.{name}")
    except ImportError as exc:
        raise ConfigError(
            f"the {name} engine is not available ({exc}); install productlens[{name}]"
        ) from None
    return getattr(module, class_name)


def _postgres(project: Project, environ: Mapping[str, str], read_only: bool) -> Engine:
    dsn = postgres_dsn(project, environ)
    engine: Engine = _engine_class("postgres", "PostgresEngine")(dsn, read_only=read_only)
    return engine


def _spark(project: Project, environ: Mapping[str, str], read_only: bool) -> Engine:
    settings = spark_settings(project, environ)
    engine: Engine = _engine_class("spark", "SparkEngine").connect(
        master=settings.master,
        warehouse_dir=settings.warehouse_dir,
        conf=settings.conf,
        connect_retry_seconds=settings.connect_retry_seconds,
        read_only=read_only,
    )
    return engine


ENGINES: dict[str, EngineFactory] = {"duckdb": _duckdb, "postgres": _postgres, "spark": _spark}
