"""The Engine protocol: the only way stages touch the warehouse.

Models are written once in DuckDB's dialect; an engine names its SQLGlot dialect so the
model runner can transpile for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

LAYERS = ("raw", "staging", "core", "marts", "ops")


@runtime_checkable
class Engine(Protocol):
    """What every warehouse engine provides."""

    dialect: str
    name: str
    # Where the engine keeps the raw layer's files, or None if it keeps raw tables.
    raw_root: Path | None

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run one statement for its effect."""

    def fetch_arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run one query and return its result as an Arrow table."""

    def fetch_all(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one query and return its rows as tuples (small results only)."""

    def load_arrow(self, table: str, data: pa.Table) -> int:
        """Append an Arrow table to an existing table; returns rows written."""

    def load_files(self, table: str, paths: Sequence[Path]) -> int:
        """Append files (Parquet) to an existing table; returns rows written."""

    def table_exists(self, name: str) -> bool:
        """Whether `schema.table` exists."""

    def list_tables(self, schema: str) -> list[str]:
        """Tables in one schema, sorted."""

    def transaction(self) -> AbstractContextManager[None]:
        """Run the statements inside the block atomically."""

    def close(self) -> None:
        """Release the connection (and any file lock)."""


def split_name(name: str) -> tuple[str, str]:
    """`schema.table` -> (schema, table); a bare name is rejected."""
    schema, dot, table = name.partition(".")
    if not dot or not schema or not table:
        raise ValueError(f"expected a qualified name schema.table, got {name!r}")
    return schema, table
