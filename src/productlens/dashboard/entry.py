"""The script Streamlit runs: `streamlit run entry.py -- --project DIR [--engine E]`."""

from __future__ import annotations

import sys

from productlens.dashboard.app import main

main(sys.argv[1:])
