"""`python -m productlens.dashboard.serve run entry.py ...`: Streamlit's own command line,
after importing the app's modules, and making the first page's reads (`warm`) while it
starts.

Streamlit imports what the app imports when the first visitor's page runs: SQLGlot,
DuckDB, Arrow, Plotly and productlens, about a second of CPU (several on a busy machine)
that the first page would wait for. Imported here, before the server answers, the first
page finds them loaded, like every later one (and Python's map of modules to files, which
Streamlit's first element reads, made).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import threading
from collections.abc import Iterator, Sequence

from streamlit.web.cli import main

# `st.cache_data` checks its options where it decorates, and a cached read's spinner looks
# for its page; outside a page's run both say so (`preload` and `warm`, which quiet them
# for the process while they run: a second or so as the server starts; a page's run has
# its context and never says it).
QUIET_LOGGERS = (
    "streamlit.runtime.caching.cache_data_api",
    "streamlit.runtime.scriptrunner_utils.script_run_context",
)
# What the pages import on first use, each a cost to the first page that needs it (measured
# in the served process, new modules per run, on the demo warehouse): Pillow, where
# `st.set_page_config` draws the page icon (0.4-0.5 s of the overview's first load);
# Plotly's figure serialisation (numpy.ma, plotly.io) and colour scales; pandas, through
# which `st.dataframe` shows a table (1.3-2.3 s of the first page with one); SciPy's
# special functions and optimisers (the experiment statistics, about 1.5 s); the fitted
# customer-value model and statsmodels (the health page's model graph discovers it).
LAZY_IMPORTS = (
    "PIL.Image",
    "PIL.ImageFile",
    "numpy.ma",
    "plotly.io",
    "plotly.colors",
    "plotly.offline",
    "plotly.animation",
    "pandas",
    "scipy.special",
    "scipy.optimize",
    "productlens.clv",
    "streamlit.material_icon_names",
)


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


@contextlib.contextmanager
def _quiet_caches() -> Iterator[None]:
    # A filter, not a level: the server reads its config while the warm-up runs (a thread
    # beside it) and then sets every Streamlit logger to the configured level, which let
    # "Thread 'warm': missing ScriptRunContext!" through to the terminal.
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    for logger in loggers:
        logger.addFilter(_errors_only)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(_errors_only)


def preload() -> None:
    """Import the app's modules (and Plotly's figures), quietly."""
    with _quiet_caches():
        import plotly.graph_objects  # noqa: F401, PLC0415
        from streamlit import env_util  # noqa: PLC0415

        import productlens.dashboard.app  # noqa: F401, PLC0415

        for name in LAZY_IMPORTS:
            importlib.import_module(name)
        # A session's first element asks whether Streamlit runs in a REPL (`inspect.stack`),
        # whose first call maps every loaded module to its file: 0.2-0.3 s of the first
        # page. Asked here, the map is made before the server answers.
        env_util.is_repl()


def warm(argv: Sequence[str]) -> None:
    """The first page's cached reads (`app.warm`) for the project named after `--`.

    Made outside any page's run, they land in the cache every session reads:
    `st.cache_data` keeps one cache per function for the process, made on first use and
    found by every later call with the same options (made before the server, on memory,
    as the server's own caches are)."""
    from productlens.dashboard import app  # noqa: PLC0415

    project_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    with _quiet_caches():
        app.warm(project_args)


if __name__ == "__main__":
    preload()
    # Beside the server's start, not before it: the server answers meanwhile (a large
    # warehouse's reads may take a while), and a visitor who comes first waits for the
    # same reads rather than making them again (Streamlit computes a key once at a time).
    threading.Thread(target=warm, args=(sys.argv,), name="warm", daemon=True).start()
    # The same program name as `python -m streamlit`, so the server sees the same command.
    main(prog_name="streamlit")
