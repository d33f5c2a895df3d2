"""The Streamlit dashboard: pages over the warehouse, read through the engine only.

`productlens dashboard` runs `streamlit run` on `entry.py` with the project's settings
after `--`; `app.main` reads them (it is a composition root like the CLI), opens the
warehouse read-only with `productlens.app.open_engine` and renders the chosen page.
Streamlit and Plotly are an optional extra (`productlens[dashboard]`).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import socket
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


def check_address(host: str, port: int) -> None:
    """Raise a clear error when the dashboard cannot listen on `host:port` (the port is
    taken, the address is not this machine's), before Streamlit takes over the process."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            # As Streamlit's server binds: a port left in TIME_WAIT by a stopped dashboard
            # is free to it.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:  # socket.gaierror is one too
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"cannot listen on {host}:{port}: {reason}; choose another --port or --host"
        ) from None


def exposure_note(host: str, port: int) -> str | None:
    """A warning when the dashboard listens beyond this machine's loopback (None: loopback)."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port)}
    except OSError:
        return None  # check_address says what is wrong with it
    if all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses):
        return None
    return (
        f"listening on {host}: anyone who can reach this machine on port {port} can read "
        "the warehouse's numbers (the dashboard has no login)"
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
