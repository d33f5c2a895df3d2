"""The engine boundary: only the engine package talks to database drivers.

Every module under src/ is parsed (imports anywhere in it, inside functions too, and
`importlib.import_module`/`__import__` with a literal name); a driver import outside
`productlens/engines/` fails, except ingestion's one embedded processor module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
DRIVERS = {"duckdb", "psycopg", "psycopg2", "psycopg_pool", "pyspark"}
ENGINE_PACKAGE = Path("productlens/engines")
# Ingestion keeps DuckDB as its embedded processor whatever the warehouse: behind this
# one module.
PROCESSOR = Path("productlens/ingest/processor.py")


def driver_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) for each driver module the source imports, wherever it does."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if called in ("import_module", "__import__") and isinstance(first, ast.Constant):
                names = [str(first.value)]
        found += [(node.lineno, n) for n in names if n.split(".")[0] in DRIVERS]
    return found


def allowed(relative: Path) -> bool:
    return relative.is_relative_to(ENGINE_PACKAGE) or relative == PROCESSOR


def test_only_the_engine_package_imports_database_drivers() -> None:
    offenders = [
        f"{relative}:{line} imports {module}"
        for path in sorted(SRC.rglob("*.py"))
        if not allowed(relative := path.relative_to(SRC))
        for line, module in driver_imports(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "source",
    [
        "import duckdb",
        "import pyspark.sql as ps",
        "from psycopg import sql",
        "from pyspark.sql import SparkSession",
        "def f():\n    import duckdb\n    return duckdb",
        "class C:\n    def m(self):\n        from psycopg.rows import dict_row",
        "import importlib\nimportlib.import_module('pyspark.sql')",
        "__import__('duckdb')",
        "try:\n    import psycopg2\nexcept ImportError:\n    pass",
    ],
)
def test_every_way_of_importing_is_seen(source: str) -> None:
    assert driver_imports(source)


@pytest.mark.parametrize(
    "source",
    [
        "import duckdb_extensions_lookalike",
        "from productlens.engines import duckdb",  # the engine module, not the driver
        "from . import duckdb",
        "import sqlglot",
    ],
)
def test_lookalikes_are_not_driver_imports(source: str) -> None:
    assert not driver_imports(source)


def test_the_exceptions_are_exactly_the_engine_package_and_the_processor() -> None:
    assert allowed(Path("productlens/engines/duckdb.py"))
    assert allowed(Path("productlens/engines/spark.py"))
    assert allowed(Path("productlens/ingest/processor.py"))
    assert not allowed(Path("productlens/ingest/store.py"))
    assert not allowed(Path("productlens/engines_extra.py"))
    assert not allowed(Path("productlens/app.py"))
