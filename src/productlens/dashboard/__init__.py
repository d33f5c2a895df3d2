"""The Streamlit dashboard: pages over the warehouse, read through the engine only.

`productlens dashboard` runs `streamlit run` on `entry.py` with the project's settings
after `--`; `app.main` reads them (it is a composition root like the CLI), opens the
warehouse read-only with `productlens.app.open_engine` and renders the chosen page.
Streamlit and Plotly are an optional extra (`productlens[dashboard]`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from productlens.config import Project
from productlens.errors import ConfigError

ENTRY = Path(__file__).with_name("entry.py")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501

# Streamlit's own settings for a read-only app on loopback: no telemetry, no browser
# opened, no reloading on file changes, no developer menu.
SERVER_OPTIONS: dict[str, str] = {
    "server.headless": "true",
    "browser.gatherUsageStats": "false",
    "server.fileWatcherType": "none",
    "server.runOnSave": "false",
    "global.developmentMode": "false",
    "client.toolbarMode": "viewer",
    "client.showErrorDetails": "false",
}


def require_extra() -> None:
    """Raise a clear error when Streamlit or Plotly is missing."""
    missing = [m for m in ("streamlit", "plotly") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"the dashboard needs {' and '.join(missing)}: install productlens[dashboard]"
        )


def project_args(project: Project) -> list[str]:
    """The app's own arguments: the project folder and the command line's overrides."""
    args = ["--project", str(project.root), "--engine", project.engine]
    if project.engine == "duckdb":
        args += ["--warehouse", str(project.warehouse_path)]
    return args


def streamlit_argv(python: str, project: Project, host: str, port: int) -> list[str]:
    """`python -m streamlit run entry.py --opt value ... -- <project args>`."""
    options = {**SERVER_OPTIONS, "server.address": host, "server.port": str(port)}
    flags = [f"--{key}={value}" for key, value in options.items()]
    return [python, "-m", "streamlit", "run", str(ENTRY), *flags, "--", *project_args(project)]
