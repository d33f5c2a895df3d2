"""The project file, `productlens.toml`, as pydantic models.

Every key has a default, so a project needs no file at all. An unknown key or a bad
value is a `ConfigError` naming the file and the dotted key. Relative paths in the file
are relative to the project folder.
"""

from __future__ import annotations

import codecs
import tomllib
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from productlens.errors import ConfigError
from productlens.experiments.metric_defs import DEFAULT_METRICS, MetricDef, MetricType, parse_value
from productlens.vocabulary import DEFAULT_FUNNELS, ECOMMERCE_FUNNEL, SAAS_FUNNEL

__all__ = ["DEFAULT_FUNNELS", "ECOMMERCE_FUNNEL", "SAAS_FUNNEL", "ProjectConfig", "load_project"]

PROJECT_FILE = "productlens.toml"


Scenario = Literal["ecommerce", "saas"]
FileFormat = Literal["parquet", "csv", "jsonl"]
PositiveInt = Annotated[int, Field(gt=0)]


class Section(BaseModel):
    """Base for every section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


EngineName = Literal["duckdb", "postgres", "spark"]
ENGINE_NAMES: tuple[EngineName, ...] = ("duckdb", "postgres", "spark")


class PostgresConfig(Section):
    """`[warehouse.postgres]`: the server. The DSN is better kept out of the file:
    `PRODUCTLENS_POSTGRES_DSN` overrides it."""

    dsn: str | None = Field(default=None, repr=False)


class SparkConfig(Section):
    """`[warehouse.spark]`: where Spark runs and keeps its tables."""

    # local[*], spark://host:7077, yarn, or a Spark Connect URL (sc://host:15002)
    master: str = "local[*]"
    # A local folder (relative to the project) or an object-store URL (s3://bucket/path)
    warehouse_dir: str = "spark-warehouse"
    conf: dict[str, str] = Field(default_factory=dict)  # extra Spark settings
    # Spark Connect: how long to keep retrying a server that stopped answering before the
    # run stops (pyspark's own default is about ten minutes).
    connect_retry_seconds: float = Field(default=20.0, gt=0, le=600)


class WarehouseConfig(Section):
    """Where the warehouse lives, which engine runs it, and how it may use the machine."""

    engine: EngineName = "duckdb"
    # The DuckDB file; the raw layer's Parquet lake is beside it (`<path>.raw`) whatever
    # the engine.
    path: Path = Path("warehouse.duckdb")
    # DuckDB's buffer limit; the process needs some on top, so 6 GB keeps a 100M-event
    # build under 8 GB resident (DuckDB spills to disk beyond the limit).
    memory_limit: str = Field(
        default="6GB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$"
    )
    threads: PositiveInt | None = None
    postgres: PostgresConfig = Field(default_factory=PostgresConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)


class LakeConfig(Section):
    """`[lake]`: where the raw layer's Parquet files live. By default a folder beside the
    warehouse; `root = "s3://bucket/prefix"` keeps them in S3-compatible storage (the
    lake's catalog stays beside the project). Credentials never go here: they come from
    the standard AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN); AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL and AWS_REGION override the
    endpoint and region below."""

    root: str | None = None  # a local folder (relative to the project) or s3://bucket/prefix
    endpoint: str | None = None  # an S3-compatible server, http(s)://host:port
    region: str | None = None

    @field_validator("root")
    @classmethod
    def _root_scheme(cls, value: str | None) -> str | None:
        if value is not None and "://" in value and not value.startswith("s3://"):
            raise ValueError(f"the lake's root is a local folder or an s3:// URL, got {value!r}")
        return value


class SourcesConfig(Section):
    """`[sources]`: where new files arrive for `productlens run`. `landing` is a folder
    (relative to the project) or an `s3://` prefix holding one sub-folder per contract
    table (`landing/events/`, `landing/orders/`, ...), any file names and supported formats
    inside, nested folders allowed."""

    landing: str | None = None

    @field_validator("landing")
    @classmethod
    def _landing_scheme(cls, value: str | None) -> str | None:
        if value is not None and "://" in value and not value.startswith("s3://"):
            raise ValueError(f"the landing folder is a local folder or an s3:// URL, got {value!r}")
        return value


class RunConfig(Section):
    """`[run]`: how `productlens run` retries and alerts. Transient engine errors (a lock
    held by another process, a dropped connection) are retried `retries` times, waiting
    `backoff_seconds` and then twice as long each time; data errors never are.
    `on_failure` is a shell command that gets the failed run's JSON on stdin."""

    retries: int = Field(default=2, ge=0, le=10)
    backoff_seconds: float = Field(default=2.0, ge=0, le=600)
    on_failure: str | None = None
    hook_timeout_seconds: float = Field(default=60.0, gt=0)
    report: bool = True  # refresh the HTML report after each successful run


class SimulateConfig(Section):
    """Parameters of the synthetic world (see `productlens generate --help`)."""

    scenario: Scenario = "ecommerce"
    users: PositiveInt = 10_000
    days: PositiveInt = 90
    seed: int = 42
    start_date: str = Field(default="2026-01-05", pattern=r"^\d{4}-\d{2}-\d{2}$")
    format: FileFormat = "parquet"
    out: Path = Path("data")
    dirty: bool = False
    workers: PositiveInt | None = None


class MetricsConfig(Section):
    """Vocabulary and windows the marts read from configuration."""

    funnel_steps: list[str] | None = Field(default=None, min_length=2)
    week_start: Literal["monday", "sunday"] = "monday"
    # The zone whose calendar days, weeks and months the metrics queries count in.
    timezone: str = "UTC"
    # The conversion window of the funnel marts (funnel_daily_metrics, device_metrics),
    # N s|m|h|d|w|mo from the first step.
    funnel_window: str = Field(default="1d", pattern=r"^\s*[1-9]\d*\s*(mo|s|m|h|d|w)\s*$")
    session_timeout_minutes: PositiveInt = 30  # for events without a session id
    # The retention_cohorts mart (see productlens.metrics.retention): cohorts by this
    # event or "signup", returns of this event or (unset) any event, one set of rows per
    # grain.
    retention_start: str = Field(default="signup", min_length=1)
    retention_return: str | None = Field(default=None, min_length=1)
    retention_mode: Literal["recurring", "first_time"] = "recurring"
    retention_grains: list[Literal["day", "week", "month"]] = Field(
        default=["week", "month"], min_length=1
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r} (use an IANA name)") from None
        return name

    @field_validator("retention_grains")
    @classmethod
    def _distinct_grains(cls, grains: list[str]) -> list[str]:
        if len(set(grains)) != len(grains):
            raise ValueError("retention grains must be distinct")
        return grains

    @field_validator("funnel_steps")
    @classmethod
    def _distinct_steps(cls, steps: list[str] | None) -> list[str] | None:
        if steps is not None and len(set(steps)) != len(steps):
            raise ValueError("funnel steps must be distinct")
        return steps


TimeFormats = str | list[str]
# Time formats besides strptime patterns (see ingest.casts).
TIME_FORMAT_NAMES = ("iso", "epoch_s", "epoch_ms", "epoch_us", "epoch_ns")


def _check_formats(value: TimeFormats) -> TimeFormats:
    for fmt in [value] if isinstance(value, str) else value:
        if fmt not in TIME_FORMAT_NAMES and "%" not in fmt:
            raise ValueError(
                f"unknown time format {fmt!r}: use a strptime pattern (with %) or one of "
                f"{', '.join(TIME_FORMAT_NAMES)}"
            )
    if isinstance(value, list) and not value:
        raise ValueError("a list of time formats needs at least one format")
    return value


class TableIngestConfig(Section):
    """How one raw table's source files map onto the contract."""

    columns: dict[str, str] = Field(default_factory=dict)  # source column -> contract column
    # contract column -> SQL expression over source columns (see ingest.mapping)
    expressions: dict[str, str] = Field(default_factory=dict)
    where: str | None = None  # keep only the source rows for which this expression is true
    # Source columns an expression may reference that a file may lack (a JSON export
    # leaves out keys that are null on every line): they read NULL where absent.
    optional_columns: list[str] = Field(default_factory=list)
    # Time formats tried in order, for every time column ("iso", "epoch_ms", "%d/%m/%Y", ...),
    timestamp_format: TimeFormats | None = None
    # ... or per contract column.
    formats: dict[str, TimeFormats] = Field(default_factory=dict)
    timezone: str = "UTC"  # the zone naive source times are in; stored as UTC
    delimiter: str = Field(default=",", min_length=1, max_length=1)  # CSV only
    encoding: str = "utf-8"  # of CSV, TSV and JSON Lines files, e.g. "latin-1", "utf-16"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r}") from None
        return zone

    @field_validator("timestamp_format")
    @classmethod
    def _known_format(cls, value: TimeFormats | None) -> TimeFormats | None:
        return None if value is None else _check_formats(value)

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: dict[str, TimeFormats]) -> dict[str, TimeFormats]:
        for formats in value.values():
            _check_formats(formats)
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        try:
            info = codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {encoding!r}") from None
        if not getattr(info, "_is_text_encoding", True):
            raise ValueError(f"{encoding!r} is not a text encoding")
        return encoding


ReferenceMode = Literal["warn", "quarantine"]
# What a row whose id refers to a row not loaded yet does, by referenced table.
DEFAULT_REFERENCE_MODES: dict[str, ReferenceMode] = {
    "users": "warn",
    "products": "quarantine",
    "orders": "quarantine",
    "experiments": "quarantine",
}


class IngestConfig(Section):
    """Validation settings and per-table mappings for `productlens ingest`."""

    # A shipped mapping for another tool's export (see `productlens presets`), applied
    # first; the keys of [ingest.tables.TABLE] here override it key by key.
    preset: str | None = None
    future_tolerance_hours: float = Field(default=24.0, ge=0)
    # A partial table is merged with the defaults; a key that is not a referenced table
    # (a typo such as `user`) is an error.
    unknown_references: dict[str, ReferenceMode] = Field(
        default_factory=lambda: dict(DEFAULT_REFERENCE_MODES)
    )
    tables: dict[str, TableIngestConfig] = Field(default_factory=dict)

    @field_validator("unknown_references")
    @classmethod
    def _merge_reference_modes(cls, value: dict[str, ReferenceMode]) -> dict[str, ReferenceMode]:
        unknown = [k for k in value if k not in DEFAULT_REFERENCE_MODES]
        if unknown:
            raise ValueError(
                f"unknown referenced table {', '.join(map(repr, unknown))}: the tables other "
                f"tables refer to are {', '.join(DEFAULT_REFERENCE_MODES)}"
            )
        return {**DEFAULT_REFERENCE_MODES, **value}


class ModelsConfig(Section):
    """Where a project's own SQL models live, in addition to the shipped ones."""

    paths: list[Path] = Field(default_factory=lambda: [Path("models")])


class ClvConfig(Section):
    """Fitted customer value (`productlens clv` and the `customer_value` mart)."""

    # The annual rate future purchases are discounted at in the 52-week CLV (0.1 = 10%).
    discount_rate: float = Field(default=0.1, ge=0, lt=10)


class ReportConfig(Section):
    """Where the HTML report and PNG charts are written."""

    out: Path = Path("reports")


class ExperimentMetricConfig(Section):
    """`[experiments.metrics.NAME]`: one metric of the experiment readout (see
    productlens.experiments.metric_defs for what the value expressions may contain)."""

    type: MetricType
    numerator: str = Field(min_length=1)
    denominator: str | None = Field(default=None, min_length=1)  # ratio metrics only
    covariate: str | None = Field(default=None, min_length=1)  # pre-exposure, for CUPED
    window_days: PositiveInt | None = None  # None: the experiment's outcome window
    cap_percentile: float | None = Field(default=None, gt=0, lt=1)  # e.g. 0.99; off

    @field_validator("numerator", "denominator", "covariate")
    @classmethod
    def _allowed_expression(cls, text: str | None) -> str | None:
        if text is not None:
            parse_value(text)
        return text

    @model_validator(mode="after")
    def _fits_the_type(self) -> ExperimentMetricConfig:
        if (self.type == "ratio") != (self.denominator is not None):
            raise ValueError("a ratio metric needs a denominator, and only a ratio metric has one")
        if self.type == "proportion" and self.cap_percentile is not None:
            raise ValueError("a proportion (0/1 per user) cannot be capped")
        return self


class ExperimentsConfig(Section):
    """The experiment readout: its metrics (default: the scenario's) and dimensions."""

    metrics: dict[str, ExperimentMetricConfig] = Field(default_factory=dict)
    top_n: PositiveInt = 5  # dimension values shown before the "other" bucket


class ProjectConfig(Section):
    """The whole project file."""

    warehouse: WarehouseConfig = Field(default_factory=WarehouseConfig)
    lake: LakeConfig = Field(default_factory=LakeConfig)
    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    clv: ClvConfig = Field(default_factory=ClvConfig)
    experiments: ExperimentsConfig = Field(default_factory=ExperimentsConfig)
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    def experiment_metrics(self) -> tuple[MetricDef, ...]:
        """The experiment metrics: declared, else the scenario's defaults."""
        declared = self.experiments.metrics
        if not declared:
            return DEFAULT_METRICS[self.simulate.scenario]
        return tuple(
            MetricDef(name=name, **metric.model_dump()) for name, metric in declared.items()
        )

    def funnel_steps(self) -> tuple[str, ...]:
        """The funnel steps in order: configured, else the scenario's default."""
        if self.metrics.funnel_steps:
            return tuple(self.metrics.funnel_steps)
        return DEFAULT_FUNNELS[self.simulate.scenario]


class Project:
    """A project folder with its validated configuration; resolves every path in it."""

    def __init__(
        self,
        root: Path,
        config: ProjectConfig,
        warehouse: Path | None = None,
        engine: EngineName | None = None,
    ) -> None:
        self.root = root
        self.config = config
        self._warehouse = warehouse
        self._engine = engine

    @property
    def engine(self) -> EngineName:
        """The warehouse engine: the command line's `--engine`, else the file's."""
        return self._engine or self.config.warehouse.engine

    @property
    def warehouse_path(self) -> Path:
        return self._warehouse or self.resolve(self.config.warehouse.path)

    @property
    def data_dir(self) -> Path:
        return self.resolve(self.config.simulate.out)

    @property
    def report_dir(self) -> Path:
        return self.resolve(self.config.report.out)

    @property
    def model_dirs(self) -> list[Path]:
        return [self.resolve(p) for p in self.config.models.paths]

    @property
    def run_results_path(self) -> Path:
        return self.root / "run_results.json"

    @property
    def runs_dir(self) -> Path:
        """Where `productlens run` keeps each run's `run_results.json` (`runs/<id>/`)."""
        return self.root / "runs"

    @property
    def run_lock_path(self) -> Path:
        """The lock a live `productlens run` holds (`runs/.lock`): one run at a time."""
        return self.runs_dir / ".lock"

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else self.root / path


def load_project(
    root: Path | None = None, warehouse: Path | None = None, engine: EngineName | None = None
) -> Project:
    """Read and validate `productlens.toml` in `root` (defaults when there is none);
    `warehouse` and `engine` override the file's."""
    root = (root or Path.cwd()).resolve()
    if root.exists() and not root.is_dir():
        raise ConfigError("the project path is not a folder", path=root)
    file = root / PROJECT_FILE
    data: dict[str, object] = {}
    if file.is_file():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    try:
        config = ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{file}: {describe_validation_error(exc)}") from None
    if warehouse is not None and not warehouse.is_absolute():
        warehouse = Path.cwd() / warehouse
    return Project(root, config, warehouse, engine)


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, each naming the dotted key: `warehouse.threads: ...`."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        reason = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        problems.append(f"{key}: {reason}")
    return "; ".join(problems)
