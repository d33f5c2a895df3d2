"""The dashboard's view of the warehouse: whether it can be read, its last run, the values
its filters offer, and the filters as a metrics `Scope`.

Nothing here imports Streamlit: the app caches these functions' results (and keeps the
engines `KEPT_ENGINES` names open between runs, through a `Keeper`). The filters
themselves are `report.sections.Filters`, which every section reader takes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from sqlglot import exp

from productlens import ops
from productlens.app import (
    adopt_demo_world,
    open_engine,
    postgres_dsn,
    spark_settings,
    warehouse_exists,
)
from productlens.config import Project
from productlens.engines.base import Engine, table
from productlens.errors import EngineUnavailable, ProductLensError
from productlens.report.sections import DataEnd, Filters, event_bounds, local_day, zone_days

EVENTS = ("core", "fct_events")
# The tables whose rows some page shows: with none of them there is nothing to look at.
DATA_TABLES = (
    EVENTS,
    ("core", "fct_orders"),
    ("core", "fct_subscriptions"),
    ("core", "fct_assignments"),
)
FILTER_COLUMNS = ("device", "country")  # the sidebar's multi-selects, event columns


@dataclass(frozen=True)
class Guidance:
    """What the dashboard shows instead of pages: the problem and the commands to run."""

    title: str
    detail: str
    commands: tuple[str, ...] = ()


def _demo_or_ingest(project: Project) -> tuple[str, ...]:
    root = project.root
    return (
        f"productlens --project {root} demo",
        f"productlens --project {root} ingest DATA_FOLDER && "
        f"productlens --project {root} build && productlens --project {root} check",
    )


# Engines kept open from one run of the page to the next: a Spark session (a JVM, or a
# Spark Connect session) and a PostgreSQL connection cost seconds to start and hold no
# lock a writer waits for. DuckDB is opened for each run: its read-only connection holds
# the file, and `productlens build` or `run` waits until no reader has it open.
KEPT_ENGINES = frozenset({"postgres", "spark"})


class Keeper(Protocol):
    """Where the app keeps engines between runs (Streamlit's resource cache)."""

    def engine(self, project: Project) -> Engine:
        """The project's kept read-only engine, opened on first use."""

    def discard(self, project: Project) -> None:
        """Close and forget the project's kept engine: the next run opens a new one."""


def engine_key(project: Project, environ: Mapping[str, str] | None = None) -> str:
    """What a kept engine is for: the project folder and the engine's settings (another
    DSN or master is another engine). A setting that is missing raises ConfigError, as
    opening the engine would."""
    env = os.environ if environ is None else environ
    if project.engine == "postgres":
        where: object = postgres_dsn(project, env)
    elif project.engine == "spark":
        where = spark_settings(project, env)
    else:
        where = project.warehouse_path
    return f"{project.engine}:{project.root}:{where!r}"


@contextmanager
def opened(project: Project, keeper: Keeper | None = None) -> Iterator[Engine | Guidance]:
    """The project's warehouse opened read-only, or the guidance to show when it cannot be
    read: no DuckDB file, an engine that refuses, no models built, no data at all.

    With a `keeper`, the engines of `KEPT_ENGINES` are kept open between runs, their
    catalog read afresh each time; an engine lost on the way (EngineUnavailable, raised
    from here or from the block) is discarded, so that the next run connects again."""
    if not warehouse_exists(project):
        yield Guidance(
            "No warehouse yet",
            f"There is no warehouse at {project.warehouse_path}. Simulate a world with the "
            "demo, or load your own exports and build the models:",
            _demo_or_ingest(project),
        )
        return
    kept = keeper if keeper is not None and project.engine in KEPT_ENGINES else None
    try:
        if kept is None:
            engine = open_engine(project, read_only=True)
        else:
            engine = kept.engine(project)
            engine.forget_catalog()  # a build since the last run may have changed it
            adopt_demo_world(project, engine)  # as open_engine does: this run's project
    except EngineUnavailable as exc:
        if kept is not None:
            kept.discard(project)
        yield unavailable(exc)
        return
    except ProductLensError as exc:
        yield Guidance(
            "The warehouse cannot be opened",
            f"{exc}. If a run is writing to it, reload this page when it has finished.",
        )
        return
    try:
        yield _readiness(project, engine) or engine
    except EngineUnavailable:
        if kept is not None:
            kept.discard(project)
        raise
    finally:
        if kept is None:
            engine.close()


def unavailable(exc: EngineUnavailable) -> Guidance:
    """The page for a warehouse engine that cannot be reached (a Spark Connect server or
    PostgreSQL server that stopped, a network that dropped the connection)."""
    return Guidance(
        "The warehouse cannot be reached",
        f"{exc}. Check that the server is running; reloading this page connects again.",
    )


def _readiness(project: Project, engine: Engine) -> Guidance | None:
    if engine.table_kind(*EVENTS) is None:
        return Guidance(
            "The warehouse has no models",
            f"The {project.engine} warehouse has no core.fct_events table: build the models "
            "(after loading data, if the raw layer is empty):",
            (f"productlens --project {project.root} build",),
        )
    # A shop's orders alone (no events) still has revenue, products and health pages: the
    # event pages say they have no events, as the report leaves their sections out.
    if not any(_has_rows(engine, name) for name in DATA_TABLES):
        return Guidance(
            "The warehouse has no data",
            "core.fct_events, core.fct_orders, core.fct_subscriptions and "
            "core.fct_assignments are empty: load data into the raw layer and build again:",
            _demo_or_ingest(project),
        )
    return None


def _has_rows(engine: Engine, name: tuple[str, str]) -> bool:
    if engine.table_kind(*name) is None:
        return False
    one_row = exp.select(exp.Literal.number(1)).from_(table(*name)).limit(1)
    return bool(engine.fetch_all(one_row))


def last_run(engine: Engine) -> str:
    """The warehouse's version for caches: the last step the run log recorded (every run
    that changes the warehouse appends to it)."""
    for name in (ops.RUN_EVENTS, ops.RUN_LOG):
        if engine.table_kind(*name) is not None:
            query = exp.select(
                exp.Max(this=exp.column("started_at")),
                exp.Max(this=exp.column("finished_at")),
                exp.Count(this=exp.Star()),
            ).from_(table(*name))
            return "|".join(str(v) for v in engine.fetch_all(query)[0])
    return "no run log"


@dataclass(frozen=True)
class FilterOptions:
    """What the sidebar offers: the events' first and last day in the project's zone (the
    days `report.sections.Filters` and the metrics count in), and every device and country
    seen; and where the data end (a daily chart's last day may be partial)."""

    first_day: date
    last_day: date
    devices: tuple[str, ...]
    countries: tuple[str, ...]
    last_event: datetime | None = None  # naive UTC
    timezone: str = "UTC"

    @property
    def days(self) -> str:
        """Whose days the dates are: "UTC days", "America/Los_Angeles days"."""
        return zone_days(self.timezone)

    @property
    def end(self) -> DataEnd | None:
        return None if self.last_event is None else DataEnd(self.last_event, self.timezone)


def filter_options(engine: Engine, timezone: str = "UTC") -> FilterOptions | None:
    """The range (local days in `timezone`) and the values of the filter columns over
    core.fct_events (None: no events)."""
    bounds = event_bounds(engine, Filters())
    if bounds is None:
        return None
    days = local_day(bounds[0], timezone), local_day(bounds[1], timezone)
    values: dict[str, tuple[str, ...]] = {}
    for column in FILTER_COLUMNS:
        rows = engine.fetch_all(
            exp.select(exp.column(column))
            .from_(table(*EVENTS))
            .where(exp.column(column).is_(exp.null()).not_())
            .group_by(exp.column(column))
            .order_by(exp.column(column))
        )
        values[column] = tuple(str(r[0]) for r in rows)
    return FilterOptions(days[0], days[1], values["device"], values["country"], bounds[1], timezone)
