"""The dashboard's composition root: arguments -> project -> read-only engine -> page.

Streamlit runs `entry.py`, which calls `main` with the arguments after `--`. Every rerun
opens the warehouse read-only (a DuckDB file for the run; a PostgreSQL connection or a
Spark session kept from one run to the next), reads its last run (the caches' version)
and renders the page chosen in the sidebar (or by `?page=` in the address), under the
sidebar's global filters. A warehouse that cannot be read or reached gets a page saying
what to do.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import streamlit as st

from productlens.config import EngineName, Project, load_project
from productlens.dashboard import data, pages
from productlens.dashboard.warehouse import (
    KEPT_ENGINES,
    FilterOptions,
    Guidance,
    opened,
    unavailable,
)
from productlens.engines.base import Engine
from productlens.errors import EngineUnavailable, ProductLensError
from productlens.report.sections import Filters, Settings, run_time

PAGE_PARAM = "page"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="productlens dashboard", add_help=False)
    parser.add_argument("--project", type=Path, default=None)
    parser.add_argument("--warehouse", type=Path, default=None)
    parser.add_argument("--engine", default=None)
    args, _ = parser.parse_known_args(list(argv))
    return args


def main(argv: Sequence[str]) -> None:
    """Render one run of the app."""
    st.set_page_config(page_title="productlens", page_icon=":bar_chart:", layout="wide")
    args = parse_args(argv)
    try:
        engine_name: EngineName | None = args.engine
        project = load_project(args.project, args.warehouse, engine_name)
    except ProductLensError as exc:
        show_guidance(Guidance("The project cannot be read", str(exc)))
        return
    page = choose_page()
    body = st.empty()  # the page, replaced by the guidance if the engine is lost mid-way
    try:
        with opened(project, data.KEEPER) as engine, body.container():
            if isinstance(engine, Guidance):
                show_guidance(engine)
                return
            # Opening the warehouse settled the project's world (`app.adopt_demo_world`).
            settings = Settings.from_config(project.config)
            view = build_view(project, engine, settings)
            st.title(page.title)
            page.render(view)
    except EngineUnavailable as exc:  # a server gone: what to do, not a half-drawn page
        body.empty()
        show_guidance(unavailable(exc))
    except ProductLensError as exc:  # a query the engine refused: say so, no traceback
        st.error(f"The warehouse could not answer: {exc}")


def choose_page() -> pages.Page:
    """The page from the sidebar, kept in the address (`?page=funnel`) so it can be linked."""
    slugs = list(pages.PAGES)
    wanted = st.query_params.get(PAGE_PARAM, slugs[0])
    if "page" not in st.session_state:
        st.session_state["page"] = wanted if wanted in pages.PAGES else slugs[0]
    slug = st.sidebar.radio("Page", slugs, key="page", format_func=lambda s: pages.PAGES[s].title)
    st.query_params[PAGE_PARAM] = slug
    return pages.PAGES[slug]


def build_view(project: Project, engine: Engine, settings: Settings) -> pages.View:
    """The sidebar's filters over the warehouse's values, and what every page reads."""
    source = _source(project, engine)
    options = data.options(source, settings)
    filters = sidebar_filters(options) if options is not None else Filters()
    # The last run that built, as the report and the data health page say it.
    last = data.last_build(source)
    when = "unknown" if last is None else run_time(last.finished_at or last.started_at)
    st.sidebar.caption(f"{project.engine} warehouse · last build {when}")
    return pages.View(project, source, settings, filters, options)


def _source(project: Project, engine: Engine) -> data.Source:
    return data.Source(engine, data.warehouse_key(project), data.version(engine))


def warm(argv: Sequence[str]) -> None:
    """Make the first page's cached reads as its first run would, with the sidebar's
    defaults (all days, devices and countries: `Filters()`), while the server starts
    (`serve.py`): the first visitor finds them in the caches, like every later one. They
    are kept under the warehouse's last run, as every read is, so a build after this is
    read afresh.

    Only for the engines opened for each run (DuckDB): a kept engine (`KEPT_ENGINES`: a
    Spark session, a PostgreSQL connection) would be opened and held by the process
    before anyone asked for a page. A warehouse that cannot be read is left for the first
    page to explain."""
    args = parse_args(argv)
    try:
        engine_name: EngineName | None = args.engine
        project = load_project(args.project, args.warehouse, engine_name)
        first = next(iter(pages.PAGES.values()))
        if project.engine in KEPT_ENGINES or first.reads is None:
            return
        with opened(project) as engine:
            if isinstance(engine, Guidance):
                return
            settings = Settings.from_config(project.config)
            source = _source(project, engine)
            options = data.options(source, settings)
            first.reads(pages.View(project, source, settings, Filters(), options))
    except ProductLensError:
        return  # the first page says what is wrong


def sidebar_filters(options: FilterOptions) -> Filters:
    """Date range (days in the project's zone, as every page counts them), devices and
    countries; the whole range and an empty choice mean all."""
    st.sidebar.subheader("Filters")
    chosen = st.sidebar.date_input(
        f"Dates ({options.days})",
        value=(options.first_day, options.last_day),
        min_value=options.first_day,
        max_value=options.last_day,
        key="dates",
    )
    start, end = _range(chosen, options)
    devices = st.sidebar.multiselect("Device", options.devices, key="devices", placeholder="all")
    countries = st.sidebar.multiselect(
        "Country", options.countries, key="countries", placeholder="all"
    )
    return Filters(start, end, tuple(devices), tuple(countries))


def _range(chosen: object, options: FilterOptions) -> tuple[date | None, date | None]:
    """The chosen days; (None, None) for all the data's days (so the readers default to
    all the data), and a single picked day as a one-day range. A range that is not all
    the data keeps both ends, the data's own first or last day too: left open, a reader
    would close it by the filtered devices' and countries' own first or last day."""
    picked = [d for d in (chosen if isinstance(chosen, tuple) else (chosen,)) if d is not None]
    days = [d for d in picked if isinstance(d, date)]
    if not days:
        return None, None
    start, end = days[0], days[-1]
    if start <= options.first_day and end >= options.last_day:
        return None, None
    return start, end


def show_guidance(guidance: Guidance) -> None:
    st.title("productlens")
    st.warning(guidance.title, icon=":material/info:")
    st.write(guidance.detail)
    for command in guidance.commands:
        st.code(command, language="bash")
    st.caption("Then reload this page.")
