"""`python -m productlens.dashboard.serve run entry.py ...`: Streamlit's own command line,
after importing the app's modules.

Streamlit imports what the app imports when the first visitor's page runs: SQLGlot,
DuckDB, Arrow, Plotly and productlens, about a second of CPU (several on a busy machine)
that the first page would wait for. Imported here, before the server answers, the first
page finds them loaded, like every later one.
"""

from __future__ import annotations

import logging

from streamlit.web.cli import main

# `st.cache_data` checks its options where it decorates; with no server running yet it
# says so (the caches themselves are made on the server's storage when first called).
CACHE_LOGGER = "streamlit.runtime.caching.cache_data_api"


def preload() -> None:
    """Import the app's modules (and Plotly's figures), quietly."""
    quiet = logging.getLogger(CACHE_LOGGER)
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        import plotly.graph_objects  # noqa: F401, PLC0415

        import productlens.dashboard.app  # noqa: F401, PLC0415
    finally:
        quiet.setLevel(level)


if __name__ == "__main__":
    preload()
    # The same program name as `python -m streamlit`, so the server sees the same command.
    main(prog_name="streamlit")
