"""The Engine protocol: the only door to a warehouse database.

Everything above this package builds SQL as SQLGlot expressions in DuckDB's dialect (the
dialect models are written in) and hands them to an engine, which renders them for its
own dialect. An engine knows no stage, no layer and no configuration: it is given a
connection target by the composition root (`productlens.app`) and tables by name.

Tables are named by `(schema, name)`; engines quote both, so a name from a file or the
catalog never becomes SQL text of its own.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import pyarrow as pa
from sqlglot import exp

from productlens import dialects

# The warehouse's schemas, in build order. Stages use these names; engines never do.
LAYERS = ("raw", "staging", "core", "marts", "ops")
# Models are written in this dialect; an engine transpiles from it.
SOURCE_DIALECT = "duckdb"

TableKind = Literal["table", "view"]
E = TypeVar("E", bound=exp.Expr)


@runtime_checkable
class Engine(Protocol):
    """What every warehouse engine provides. Methods raise `EngineError` on failure."""

    dialect: str  # SQLGlot's name for the engine's dialect
    name: str  # duckdb, postgres, spark

    # --- statements -------------------------------------------------------------------
    # `exp.Expr`, not `exp.Expression`: in SQLGlot 30 `exp.Query` (what `exp.select`
    # and `.union` are typed as) derives from `Expr` only.

    def render(self, expression: exp.Expr) -> str:
        """The expression (DuckDB dialect) as SQL text for this engine."""

    def execute(self, statement: exp.Expr) -> None:
        """Run one statement for its effect."""

    def fetch_arrow(self, query: exp.Expr) -> pa.Table:
        """Run one query; its result as an Arrow table (column names as the query gave)."""

    def fetch_all(self, query: exp.Expr) -> list[tuple[Any, ...]]:
        """Run one query; its rows as tuples of Python values (small results only)."""

    # --- catalog ----------------------------------------------------------------------

    def ensure_schema(self, schema: str) -> None:
        """Create the schema (database, on Spark) if it does not exist."""

    def table_kind(self, schema: str, name: str) -> TableKind | None:
        """Whether `schema.name` is a table, a view, or absent."""

    def list_tables(self, schema: str) -> list[str]:
        """Tables and views in one schema, sorted."""

    def columns(self, schema: str, name: str) -> list[tuple[str, exp.DataType]]:
        """A table's or view's columns in order, with SQLGlot types."""

    def drop(self, schema: str, name: str) -> None:
        """Drop the table or view `schema.name` if it exists."""

    # --- writing ----------------------------------------------------------------------

    def replace_table(
        self, schema: str, name: str, query: exp.Query, *, partition_by: str | None = None
    ) -> int:
        """Build `schema.name` from the query and swap it in for whatever held the name
        (table or view); returns its row count. A failed build leaves the previous table.
        `partition_by` names a date column an incremental model overwrites by
        (`overwrite_range`); engines without partitions ignore it."""

    def replace_tables(
        self,
        schema: str,
        queries: Mapping[str, exp.Query],
        *,
        partition_by: Mapping[str, str] | None = None,
    ) -> int:
        """`replace_table` for several tables of one schema as a set: each is built under
        another name, then all are swapped in one transaction where the engine has them, so
        that readers and a process killed mid-swap see all the old tables or all the new;
        returns their rows. Engines without transactions swap them one after another."""

    def replace_view(self, schema: str, name: str, query: exp.Query) -> None:
        """Create or replace the view `schema.name` (replacing a table of that name)."""

    def overwrite_range(
        self, schema: str, name: str, column: str, start: date, query: exp.Query
    ) -> int:
        """Replace the table's rows with `column >= start` by the query's rows with
        `column >= start`, atomically (a transaction, or a partition overwrite); returns the
        table's row count."""

    def create_table(
        self, schema: str, name: str, columns: Sequence[tuple[str, exp.DataType]]
    ) -> None:
        """Create an empty table with these columns if it does not exist."""

    def append_arrow(self, schema: str, name: str, data: pa.Table | pa.RecordBatchReader) -> int:
        """Append rows to an existing table, columns matched by name, in one statement;
        returns rows written. A reader's batches are appended as they are read (on Spark, read
        whole first), and an error while reading it appends nothing."""

    def temp_table(self, name: str, data: pa.Table) -> AbstractContextManager[exp.Table]:
        """Make an Arrow table readable by queries as the returned table for the block."""

    def parquet_relation(self, paths: Sequence[str]) -> exp.Expression:
        """A relation (usable in FROM) over Parquet files, local paths or URLs; a path may
        be a glob pattern (`folder/*-rows.parquet`), expanded each time the relation is
        read. Engines that cannot read files raise `EngineError`; rows are then loaded
        instead."""

    def transaction(self) -> AbstractContextManager[None]:
        """Run the statements inside the block atomically where the engine can; engines
        without transactions run them in order."""

    def forget_catalog(self) -> None:
        """Forget what the engine remembers of the catalog (Spark keeps its answers while it
        is open): another process may have changed the warehouse since. A long-lived
        reader (the dashboard) calls it before each read of the warehouse."""

    def close(self) -> None:
        """Release the connection (and any lock or session)."""


# Rendered text of frozen expressions, per dialect, while the expression lives.
_FROZEN: dict[int, tuple[weakref.ReferenceType[exp.Expr], dict[str, str]]] = {}
_FROZEN_LOCK = threading.Lock()


def freeze(expression: E) -> E:
    """Promise that `expression` is never changed again, so an engine may render it once
    and reuse the text (a large query takes SQLGlot milliseconds to render: a cached
    interactive query pays it on every run otherwise)."""
    key = id(expression)

    def forget(_: object) -> None:
        with _FROZEN_LOCK:
            _FROZEN.pop(key, None)

    with _FROZEN_LOCK:
        _FROZEN[key] = (weakref.ref(expression, forget), {})
    return expression


def render_frozen(expression: exp.Expr, dialect: str) -> str:
    """`expression.sql(dialect=dialect)`, kept for an expression `freeze` was given."""
    with _FROZEN_LOCK:
        entry = _FROZEN.get(id(expression))
    if entry is None or entry[0]() is not expression:
        return expression.sql(dialect=dialect)
    texts = entry[1]
    text = texts.get(dialect)
    if text is None:
        text = texts[dialect] = expression.sql(dialect=dialect)
    return text


def table(schema: str, name: str) -> exp.Table:
    """`schema.name` as a quoted SQLGlot table."""
    return exp.table_(name, db=schema, quoted=True)


def split_name(name: str) -> tuple[str, str]:
    """`schema.table` -> (schema, table); a bare name is rejected."""
    schema, dot, table_name = name.partition(".")
    if not dot or not schema or not table_name:
        raise ValueError(f"expected a qualified name schema.table, got {name!r}")
    return schema, table_name


# The engines whose catalog look-ups this thread is making (see Transpiles._portable).
_RESOLVING = threading.local()


class Transpiles:
    """For engines other than DuckDB: statements written in DuckDB's dialect have their
    queries transpiled (`productlens.dialects.for_engine`) with the columns of the tables
    they read, from the engine's own catalog. The catalog look-ups this makes are the
    engine's own queries and are left as they are."""

    dialect: str

    def table_kind(self, schema: str, name: str) -> TableKind | None:
        raise NotImplementedError

    def columns(self, schema: str, name: str) -> list[tuple[str, exp.DataType]]:
        raise NotImplementedError

    def _portable(self, expression: exp.Expr) -> exp.Expr:
        # Per thread: the dashboard shares one engine between the threads of its browser
        # sessions, and one thread's look-up must not leave another's query untranspiled.
        busy: set[int] = _RESOLVING.__dict__.setdefault("engines", set())
        if id(self) in busy:
            return expression
        busy.add(id(self))
        try:
            return dialects.for_engine(expression, self.dialect, self._known_columns)
        finally:
            busy.discard(id(self))

    def _known_columns(self, schema: str, name: str) -> list[tuple[str, exp.DataType]] | None:
        if self.table_kind(schema, name) is None:
            return None
        return self.columns(schema, name)
