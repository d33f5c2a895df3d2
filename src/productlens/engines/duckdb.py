"""The default engine: one DuckDB file, no set-up."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
from sqlglot import exp
from sqlglot.errors import ParseError

from productlens.engines.base import TableKind, render_frozen, table
from productlens.errors import EngineError

# A table is built under this name and renamed into place (a killed build leaves it; the
# next build drops it, see modeling.drop_leftovers).
BUILDING_SUFFIX = "__building"
_KINDS: dict[str, TableKind] = {"BASE TABLE": "table", "LOCAL TEMPORARY": "table", "VIEW": "view"}
_arrow_names = itertools.count()
# How long a writer waits for another process's hold on the file (a dashboard render, a
# report) to end, and the pauses between its tries.
LOCK_WAIT_S = 5.0
_LOCK_PAUSES_S = (0.05, 0.1, 0.2, 0.4, 0.8)


# A character DuckDB cannot take in a local path, by the use it makes of the path: a
# database file (it reads `?` as the start of URL options and writes the write-ahead log
# elsewhere, `a?b/w.duckdb` to `a.wal?b/w.duckdb`, so the first commit fails after work
# was done: duckdb#13472), and a folder relative file paths are read from (its
# `file_search_path` is a comma-separated list: the folder would be read as two).
PathUse = Literal["database", "search"]
_REFUSED: dict[PathUse, tuple[str, str]] = {
    "database": (
        "?",
        "DuckDB cannot keep a database in a path with '?' (it takes it for "
        "the start of URL options)",
    ),
    "search": (
        ",",
        "DuckDB cannot read the lake from a folder whose path has a ',' (its "
        "file_search_path is a comma-separated list)",
    ),
}


def check_path(path: Path, use: PathUse) -> None:
    """Refuse, with a clear error naming it, a local path DuckDB would mishandle."""
    char, reason = _REFUSED[use]
    if char in str(path):
        raise EngineError(f"{reason}; rename the folder or choose another path", path=path)


def _connect(path: Path, read_only: bool, lock_wait: float) -> duckdb.DuckDBPyConnection:
    """DuckDB's connection to the file; on a lock held by another process, tried again
    until `lock_wait` seconds have passed."""
    deadline = time.monotonic() + lock_wait
    for attempt in itertools.count():
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise EngineError(
                    f"cannot open the warehouse: {_first_line(exc)}", path=path
                ) from None
            pause = _LOCK_PAUSES_S[min(attempt, len(_LOCK_PAUSES_S) - 1)]
            if time.monotonic() + pause > deadline:
                waited = f" after waiting {lock_wait:g} s" if lock_wait else ""
                raise EngineError(
                    f"the warehouse is in use by another process{waited}; wait for it to "
                    f"finish and run again ({_first_line(exc)})",
                    path=path,
                ) from None
            time.sleep(pause)
        except duckdb.Error as exc:
            raise EngineError(f"cannot open the warehouse: {_first_line(exc)}", path=path) from None
    raise AssertionError("unreachable")


class DuckDBEngine:
    """A DuckDB warehouse file. Opening it takes DuckDB's file lock, so a second writer
    is refused with a clear message instead of corrupting anything.

    `search_path` is the folder relative file paths in queries are read from (DuckDB's
    `file_search_path`); `filesystems` are fsspec file systems to read and write through
    (object storage, say: registered on the connection); `connection` is the DuckDB
    connection itself, shared by the embedded ingestion processor when the warehouse is
    DuckDB. A writer finding the file locked (the dashboard reads it during a render) tries
    again for up to `lock_wait` seconds before it is refused.
    """

    dialect = "duckdb"
    name = "duckdb"

    def __init__(
        self,
        path: Path,
        *,
        memory_limit: str = "6GB",
        threads: int | None = None,
        read_only: bool = False,
        search_path: Path | None = None,
        filesystems: Sequence[Any] = (),
        lock_wait: float = LOCK_WAIT_S,
    ) -> None:
        self.path = path
        check_path(path, "database")
        if search_path is not None:
            check_path(search_path.resolve(), "search")
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise EngineError("no warehouse yet: run `productlens build` first", path=path)
        self.connection = _connect(path, read_only, 0.0 if read_only else lock_wait)
        # Times are UTC everywhere: timestamps with a zone are read in UTC.
        # Row order in a table carries no meaning here; letting DuckDB drop it makes bulk
        # inserts markedly faster.
        settings: dict[str, str | int | bool] = {
            "memory_limit": memory_limit,
            "TimeZone": "UTC",
            "preserve_insertion_order": False,
            "enable_progress_bar": False,
            # Parquet files read by many queries in a row: keep their footers (DuckDB
            # re-reads a footer whose file has changed).
            "parquet_metadata_cache": True,
        }
        if search_path is not None:
            settings["file_search_path"] = str(search_path.resolve())
        if threads:
            settings["threads"] = int(threads)
        if not read_only:
            # Spill next to the warehouse rather than in the system temp folder.
            settings["temp_directory"] = str(path.with_suffix(".tmp"))
        for key, value in settings.items():
            self._run(f"SET {key} = {_value(value)}")
        # DuckDB shares one database instance per file within a process, file systems
        # included: a second engine on the same warehouse (the dashboard opens one per
        # page) finds the store its first engine registered.
        registered = set(self.connection.list_filesystems())
        for filesystem in filesystems:
            if filesystem.protocol not in registered:
                self.connection.register_filesystem(filesystem)

    # --- statements -------------------------------------------------------------------

    def render(self, expression: exp.Expr) -> str:
        return render_frozen(expression, self.dialect)

    def execute(self, statement: exp.Expr) -> None:
        self._run(self.render(statement))

    def fetch_arrow(self, query: exp.Expr) -> pa.Table:
        with _translated_errors(self.name):
            result: pa.Table = self.connection.sql(self.render(query)).to_arrow_table()
        return result

    def fetch_all(self, query: exp.Expr) -> list[tuple[Any, ...]]:
        return self._rows(self.render(query))

    # --- catalog ----------------------------------------------------------------------

    def ensure_schema(self, schema: str) -> None:
        self.execute(exp.Create(kind="SCHEMA", exists=True, this=exp.Table(db=_ident(schema))))

    def table_kind(self, schema: str, name: str) -> TableKind | None:
        rows = self._rows(
            "SELECT table_type FROM information_schema.tables "
            "WHERE table_schema = ? AND table_name = ?",
            [schema, name],
        )
        return _KINDS.get(rows[0][0], "table") if rows else None

    def list_tables(self, schema: str) -> list[str]:
        rows = self._rows(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
            "ORDER BY table_name",
            [schema],
        )
        return [r[0] for r in rows]

    def columns(self, schema: str, name: str) -> list[tuple[str, exp.DataType]]:
        rows = self._rows(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [schema, name],
        )
        return [(column, _data_type(kind)) for column, kind in rows]

    def drop(self, schema: str, name: str) -> None:
        kind = self.table_kind(schema, name)
        if kind is not None:
            self.execute(exp.Drop(kind=kind.upper(), exists=True, tables=[table(schema, name)]))

    # --- writing ----------------------------------------------------------------------

    def replace_table(
        self, schema: str, name: str, query: exp.Query, *, partition_by: str | None = None
    ) -> int:
        # Built under another name outside the swap's transaction (a long CREATE inside
        # one would hold it for the whole build), then swapped in one short transaction.
        building = table(schema, name + BUILDING_SUFFIX)
        self.execute(exp.Drop(kind="TABLE", exists=True, tables=[building]))
        try:
            self.execute(exp.Create(kind="TABLE", this=building, expression=query))
            with self.transaction():
                self.drop(schema, name)
                self.execute(_rename(building, name))
        except BaseException:
            self._run(f"DROP TABLE IF EXISTS {self.render(building)}")
            raise
        return self._count(schema, name)

    def replace_tables(
        self,
        schema: str,
        queries: Mapping[str, exp.Query],
        *,
        partition_by: Mapping[str, str] | None = None,
    ) -> int:
        # Every table built first, outside the transaction; then one short transaction
        # of drops and renames (DuckDB's DDL is transactional: a kill before COMMIT
        # leaves all the old tables, the WAL replays none of it).
        building = {name: table(schema, name + BUILDING_SUFFIX) for name in queries}
        try:
            for name, query in queries.items():
                self.execute(exp.Drop(kind="TABLE", exists=True, tables=[building[name]]))
                self.execute(exp.Create(kind="TABLE", this=building[name], expression=query))
            with self.transaction():
                for name in queries:
                    self.drop(schema, name)
                    self.execute(_rename(building[name], name))
        except BaseException:
            for each in building.values():
                self._run(f"DROP TABLE IF EXISTS {self.render(each)}")
            raise
        return sum(self._count(schema, name) for name in queries)

    def replace_view(self, schema: str, name: str, query: exp.Query) -> None:
        with self.transaction():
            self.drop(schema, name)
            self.execute(exp.Create(kind="VIEW", this=table(schema, name), expression=query))

    def overwrite_range(
        self, schema: str, name: str, column: str, start: date, query: exp.Query
    ) -> int:
        target = table(schema, name)
        cutoff = exp.column(column, quoted=True) >= exp.cast(
            exp.Literal.string(start.isoformat()), exp.DataType.Type.DATE
        )
        fresh = exp.select("*").from_(query.subquery("incremental")).where(cutoff)
        with self.transaction():
            self.execute(exp.delete(target, where=cutoff))
            self.execute(exp.Insert(this=target, expression=fresh, by_name=True))
        return self._count(schema, name)

    def create_table(
        self, schema: str, name: str, columns: Sequence[tuple[str, exp.DataType]]
    ) -> None:
        definition = exp.Schema(
            this=table(schema, name),
            expressions=[exp.ColumnDef(this=_ident(c), kind=kind) for c, kind in columns],
        )
        self.execute(exp.Create(kind="TABLE", exists=True, this=definition))

    def append_arrow(self, schema: str, name: str, data: pa.Table | pa.RecordBatchReader) -> int:
        # A registered reader is scanned once, by the INSERT, as it is read.
        with self.temp_table(f"__productlens_arrow_{next(_arrow_names)}", data) as rows:
            insert = exp.Insert(
                this=table(schema, name), expression=exp.select("*").from_(rows), by_name=True
            )
            written = self._rows(self.render(insert))  # an INSERT answers its row count
        return int(written[0][0])

    @contextmanager
    def temp_table(self, name: str, data: pa.Table | pa.RecordBatchReader) -> Iterator[exp.Table]:
        # A registered Arrow table is read in place (no copy) by the queries of the block.
        with _translated_errors(self.name):
            self.connection.register(name, data)
        try:
            yield exp.Table(this=_ident(name))
        finally:
            self.connection.unregister(name)

    def parquet_relation(self, paths: Sequence[str]) -> exp.Expression:
        files = exp.Array(expressions=[exp.Literal.string(str(p)) for p in paths])
        return exp.Table(this=exp.Anonymous(this="read_parquet", expressions=[files]))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._run("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self._run("COMMIT")

    def forget_catalog(self) -> None:
        pass  # every catalog look-up asks the database

    def close(self) -> None:
        self.connection.close()

    # --- inside the engine ------------------------------------------------------------

    def _run(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with _translated_errors(self.name):
            self.connection.execute(sql, params)

    def _rows(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with _translated_errors(self.name):
            rows: list[tuple[Any, ...]] = self.connection.execute(sql, params).fetchall()
        return rows

    def _count(self, schema: str, name: str) -> int:
        query = exp.select(exp.Count(this=exp.Star())).from_(table(schema, name))
        return int(self.fetch_all(query)[0][0])


def _rename(source: exp.Table, name: str) -> exp.Alter:
    """ALTER TABLE source RENAME TO name (in the same schema)."""
    return exp.Alter(
        kind="TABLE", this=source, actions=[exp.AlterRename(this=exp.Table(this=_ident(name)))]
    )


def write_json_lines(data: pa.Table, path: Path) -> None:
    """Write an Arrow table as a JSON Lines file (one object per row), with DuckDB's
    JSON writer in a throwaway in-memory database (PyArrow has no JSON writer)."""
    con = duckdb.connect()
    try:
        con.register("rows", data)
        target = exp.Literal.string(str(path)).sql("duckdb")  # a path may hold quotes
        con.execute(f"COPY rows TO {target} (FORMAT json)")
    finally:
        con.close()


@contextmanager
def _translated_errors(engine: str) -> Iterator[None]:
    """DuckDB errors as EngineError; an interrupted query (Ctrl-C) as KeyboardInterrupt,
    so that it stops the whole run instead of failing one model."""
    try:
        yield
    except duckdb.InterruptException:
        raise KeyboardInterrupt from None
    except duckdb.Error as exc:
        raise EngineError(_first_line(exc), engine=engine) from exc
    except RuntimeError as exc:
        # DuckDB 2.0's Python client reports a Ctrl-C during a query this way.
        if str(exc) == "Query interrupted":
            raise KeyboardInterrupt from None
        raise


def _ident(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def _value(value: str | int | bool) -> str:
    """A setting's value as a DuckDB literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return exp.Literal.string(value).sql(dialect="duckdb")


def _data_type(kind: str) -> exp.DataType:
    """A catalog type name as a SQLGlot type (UNKNOWN for one SQLGlot cannot read)."""
    try:
        return exp.DataType.build(kind, dialect="duckdb")
    except ParseError:
        return exp.DataType(this=exp.DataType.Type.UNKNOWN)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
