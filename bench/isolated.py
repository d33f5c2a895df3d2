"""Run one benchmark function in a fresh interpreter, so its peak memory is its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_isolated(
    function: str, *, source: Path | None = None, **kwargs: str | int
) -> dict[str, Any]:
    """Call `function` ("bench.module.name") with `kwargs` in a new Python process and
    return the JSON it prints. `source`: a checkout of another version of the code
    (`bench/` and `src/`) to import instead of this one."""
    module, name = function.rsplit(".", 1)
    code = f"import json; from {module} import {name}; print(json.dumps({name}(**{kwargs!r})))"
    env = None
    if source is not None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source / "src"), str(source)])}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        cwd=source or ROOT,
        env=env,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{function} failed (exit {proc.returncode}):\n{tail}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
