"""The dashboard's reads, cached by Streamlit on their arguments and the warehouse's last
run: a new run (build, ingest, check) changes the version and so every key; and the
engines kept open between runs (`KEEPER`).

The engine is passed as `_engine` (Streamlit leaves parameters starting with `_` out of
the key); the key is the warehouse, its version and the plain values of the request.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyarrow as pa
import streamlit as st
from sqlglot import exp

from productlens import ops
from productlens.app import open_engine
from productlens.config import Project
from productlens.dashboard import warehouse
from productlens.engines.base import Engine, table
from productlens.errors import ProductLensError
from productlens.metrics.funnel import FunnelResult, funnel
from productlens.metrics.funnel_sql import Order
from productlens.metrics.lifecycle import LifecycleResult, lifecycle
from productlens.metrics.scope import Grain
from productlens.report.sections import (
    SECTIONS,
    Filters,
    FunnelSection,
    FunnelSteps,
    LastRun,
    Settings,
    choose_funnel_steps,
    read_funnel_counts,
    read_last_build,
)
from productlens.report.sections import event_types as event_types_by_frequency

CACHE_ENTRIES = 256  # per cached function: filter combinations kept
RUN_LOG_ROWS = 200

# --- kept engines ------------------------------------------------------------------------
# One read-only engine per warehouse (`warehouse.engine_key`) for every run of every
# browser session of this process, for the engines `warehouse.KEPT_ENGINES` names. Each is
# closed when discarded (`Keeper.discard`, a lost engine), when Streamlit's resource cache
# is cleared, and at the latest when the process exits (Streamlit does not promise to
# release its cache then: `atexit`).
_open: set[Engine] = set()
_open_lock = threading.Lock()


def _close(engine: Engine) -> None:
    with _open_lock:
        if engine not in _open:
            return  # closed already (released, then the process exits)
        _open.discard(engine)
    with contextlib.suppress(ProductLensError):
        engine.close()


@atexit.register
def _close_all() -> None:
    for engine in list(_open):
        _close(engine)


@st.cache_resource(show_spinner="Connecting to the warehouse...", on_release=_close)
def _kept_engine(key: str, _project: Project) -> Engine:
    engine = open_engine(_project, read_only=True)
    with _open_lock:
        _open.add(engine)
    return engine


class _Keeper:
    """`warehouse.Keeper` on Streamlit's resource cache."""

    def engine(self, project: Project) -> Engine:
        return _kept_engine(warehouse.engine_key(project), project)

    def discard(self, project: Project) -> None:
        _kept_engine.clear(warehouse.engine_key(project), project)


KEEPER: warehouse.Keeper = _Keeper()


@dataclass(frozen=True)
class Source:
    """The open warehouse, its identity and its version (for cache keys)."""

    engine: Engine
    key: str
    stamp: str


def warehouse_key(project: Project) -> str:
    """Which warehouse: the engine and the DuckDB file or the project folder."""
    where = project.warehouse_path if project.engine == "duckdb" else project.root
    return f"{project.engine}:{where}"


def version(engine: Engine) -> str:
    return warehouse.last_run(engine)


def last_build(source: Source) -> LastRun | None:
    """The last run that built the warehouse, as the report's health section has it."""
    return _last_build(source.engine, source.key, source.stamp)


@st.cache_data(show_spinner=False, max_entries=CACHE_ENTRIES)
def _last_build(_engine: Engine, key: str, stamp: str) -> LastRun | None:
    return read_last_build(_engine)


def options(source: Source, settings: Settings) -> warehouse.FilterOptions | None:
    """The sidebar's choices, in the project's days (`warehouse.filter_options`)."""
    return _options(source.engine, source.key, source.stamp, settings.timezone)


@st.cache_data(show_spinner=False, max_entries=CACHE_ENTRIES)
def _options(
    _engine: Engine, key: str, stamp: str, timezone: str
) -> warehouse.FilterOptions | None:
    return warehouse.filter_options(_engine, timezone)


def section(source: Source, name: str, filters: Filters, settings: Settings) -> Any:
    """A report section (`report.sections.SECTIONS[name]`), None when the warehouse has
    no data for it. Filters a section does not honour are left out of its key."""
    honoured = SECTIONS[name].filters
    narrowed = Filters(
        filters.start if "date" in honoured else None,
        filters.end if "date" in honoured else None,
        filters.devices if "device" in honoured else (),
        filters.countries if "country" in honoured else (),
    )
    return _section(source.engine, source.key, source.stamp, name, narrowed, settings)


@st.cache_data(show_spinner="Reading the warehouse...", max_entries=CACHE_ENTRIES)
def _section(
    _engine: Engine, key: str, stamp: str, name: str, filters: Filters, settings: Settings
) -> Any:
    return SECTIONS[name].read(_engine, filters, settings)


def funnel_counts(source: Source, filters: Filters, settings: Settings) -> FunnelSection | None:
    """The funnel's counts for pages showing no step times: from the marts when they hold
    the answer (`report.sections.read_funnel_counts`), else the funnel section."""
    found = _funnel_counts(source.engine, source.key, source.stamp, filters, settings)
    if found is not None:
        return found
    section_: FunnelSection | None = section(source, "funnel", filters, settings)
    return section_


@st.cache_data(show_spinner="Reading the warehouse...", max_entries=CACHE_ENTRIES)
def _funnel_counts(
    _engine: Engine, key: str, stamp: str, filters: Filters, settings: Settings
) -> FunnelSection | None:
    return read_funnel_counts(_engine, filters, settings)


@dataclass(frozen=True)
class FunnelAsk:
    """The funnel page's question."""

    steps: tuple[str, ...]
    window_s: int
    order: Order
    by: str | None


def live_funnel(
    source: Source, ask: FunnelAsk, filters: Filters, settings: Settings
) -> FunnelResult:
    """The funnel query (productlens.metrics.funnel), run live on the filters; the
    project's own funnel (its steps and window, ordered, no breakdown or by device) is the
    funnel section's, cached once for this page and the overview."""
    shared = section_funnel(ask, filters, settings)
    if shared:
        found: FunnelSection | None = section(source, "funnel", filters, settings)
        if found is not None and tuple(s.event for s in found.steps) == ask.steps:
            return FunnelResult(found.steps, dict(found.by_device) if ask.by else {})
    return _funnel(source.engine, source.key, source.stamp, ask, filters, settings)


def section_funnel(ask: FunnelAsk, filters: Filters, settings: Settings) -> bool:
    """Whether the funnel section answers `ask`: the same query (ordered, the project's
    window, by device or not) on filters without devices or countries (with them the
    section also runs the per-day trend, a second query)."""
    return (
        ask.order == "ordered"
        and ask.by in (None, "device")
        and ask.window_s == settings.funnel_window.total_seconds()
        and not filters.where
    )


@st.cache_data(show_spinner="Running the funnel...", max_entries=CACHE_ENTRIES)
def _funnel(
    _engine: Engine, key: str, stamp: str, ask: FunnelAsk, filters: Filters, settings: Settings
) -> FunnelResult:
    return funnel(
        _engine,
        ask.steps,
        scope=filters.scope(settings),
        window=timedelta(seconds=ask.window_s),
        order=ask.order,
        by=ask.by,
    )


def live_lifecycle(
    source: Source, period: Grain, filters: Filters, settings: Settings
) -> LifecycleResult:
    return _lifecycle(source.engine, source.key, source.stamp, period, filters, settings)


@st.cache_data(show_spinner="Counting lifecycles...", max_entries=CACHE_ENTRIES)
def _lifecycle(
    _engine: Engine, key: str, stamp: str, period: Grain, filters: Filters, settings: Settings
) -> LifecycleResult:
    return lifecycle(_engine, filters.scope(settings), period)


def event_types(source: Source) -> tuple[str, ...]:
    return _event_types(source.engine, source.key, source.stamp)


@st.cache_data(show_spinner=False, max_entries=CACHE_ENTRIES)
def _event_types(_engine: Engine, key: str, stamp: str) -> tuple[str, ...]:
    """Every event type, most frequent first (`report.sections.event_types`)."""
    return event_types_by_frequency(_engine)


def funnel_defaults(source: Source, settings: Settings) -> FunnelSteps:
    """The funnel page's first steps: as the report chooses them."""
    configured = settings.funnel_steps or ()
    return choose_funnel_steps(configured, event_types(source))


def run_log(source: Source) -> pa.Table:
    return _run_log(source.engine, source.key, source.stamp)


@st.cache_data(show_spinner=False, max_entries=CACHE_ENTRIES)
def _run_log(_engine: Engine, key: str, stamp: str) -> pa.Table:
    """The latest steps of the run log, newest first."""
    if _engine.table_kind(*ops.RUN_LOG) is None:
        return pa.table({})
    columns = [exp.column(c, quoted=True) for c, _ in ops.RUN_LOG_COLUMNS]
    query = (
        exp.select(*columns)
        .from_(table(*ops.RUN_LOG))
        .order_by(exp.Ordered(this=exp.column("started_at"), desc=True))
        .limit(RUN_LOG_ROWS)
    )
    return _engine.fetch_arrow(query)
