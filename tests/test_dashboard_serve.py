"""`python -m productlens.dashboard.serve` is Streamlit's command line with the app's
modules imported first (the end-to-end browser test starts the dashboard through it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from productlens.config import load_project
from productlens.dashboard import ENTRY, streamlit_argv


def test_the_dashboard_starts_through_serve(tmp_path: Path) -> None:
    argv = streamlit_argv("python", load_project(tmp_path), "127.0.0.1", 8501)
    assert argv[:5] == ["python", "-m", "productlens.dashboard.serve", "run", str(ENTRY)]


def test_serve_is_streamlits_command_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "productlens.dashboard.serve", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("Streamlit, version"), out.stdout


def test_preload_imports_the_app_quietly() -> None:
    script = (
        "import sys\n"
        "from productlens.dashboard.serve import preload\n"
        "preload()\n"
        "print(all(m in sys.modules for m in ('productlens.dashboard.pages', "
        "'productlens.dashboard.data', 'plotly.graph_objects')))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    assert "No runtime found" not in out.stderr, out.stderr
