"""Run one benchmark function in a fresh interpreter, so its peak memory is its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_isolated(function: str, **kwargs: str | int) -> dict[str, Any]:
    """Call `function` ("bench.module.name") with `kwargs` in a new Python process and
    return the JSON it prints."""
    module, name = function.rsplit(".", 1)
    code = f"import json; from {module} import {name}; print(json.dumps({name}(**{kwargs!r})))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{function} failed (exit {proc.returncode}):\n{tail}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
