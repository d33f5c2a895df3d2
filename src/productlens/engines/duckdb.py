"""The default engine: one DuckDB file, no set-up."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from productlens.engines.base import LAYERS, split_name
from productlens.errors import EngineError


class DuckDBEngine:
    """A DuckDB warehouse file. Opening it takes DuckDB's file lock, so a second writer
    is refused with a clear message instead of corrupting anything."""

    dialect = "duckdb"
    name = "duckdb"

    def __init__(
        self,
        path: Path,
        *,
        memory_limit: str = "6GB",
        threads: int | None = None,
        read_only: bool = False,
    ) -> None:
        self.path = path
        # The raw layer's files live beside the warehouse file (see ingest.store).
        self.raw_root: Path | None = path.with_suffix(".raw")
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise EngineError("no warehouse yet: run `productlens build` first", path=path)
        try:
            self._con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise EngineError(
                    "the warehouse is in use by another process; wait for it to finish "
                    f"({_first_line(exc)})",
                    path=path,
                ) from None
            raise EngineError(f"cannot open the warehouse: {_first_line(exc)}", path=path) from None
        except duckdb.Error as exc:
            raise EngineError(f"cannot open the warehouse: {_first_line(exc)}", path=path) from None
        # Times are UTC everywhere: timestamps with a zone are read in UTC.
        # Row order in a table carries no meaning here; letting DuckDB drop it makes bulk
        # inserts markedly faster.
        settings = [
            f"SET memory_limit = '{memory_limit}'",
            "SET TimeZone = 'UTC'",
            "SET preserve_insertion_order = false",
            "SET enable_progress_bar = false",
            # The raw layer is Parquet files read by many queries in a row: keep their
            # footers (DuckDB re-reads a footer whose file has changed).
            "SET parquet_metadata_cache = true",
            # Raw files are listed relative to the warehouse's folder.
            f"SET file_search_path = '{_sql_text(str(path.resolve().parent))}'",
        ]
        if threads:
            settings.append(f"SET threads = {int(threads)}")
        if not read_only:
            # Spill next to the warehouse rather than in the system temp folder.
            spill = exp.Literal.string(str(path.with_suffix(".tmp"))).sql(dialect="duckdb")
            settings.append(f"SET temp_directory = {spill}")
        for statement in settings:
            self.execute(statement)
        if not read_only:
            for layer in LAYERS:
                self.execute(f"CREATE SCHEMA IF NOT EXISTS {layer}")

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with _translated_errors(self.name):
            self._con.execute(sql, params)

    def fetch_arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        with _translated_errors(self.name):
            result: pa.Table = self._con.sql(sql, params=params).to_arrow_table()
        return result

    def fetch_all(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with _translated_errors(self.name):
            rows: list[tuple[Any, ...]] = self._con.execute(sql, params).fetchall()
        return rows

    def load_arrow(self, table: str, data: pa.Table) -> int:
        split_name(table)
        view = "__productlens_arrow_input"
        self._con.register(view, data)
        try:
            self.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {view}")
        finally:
            self._con.unregister(view)
        return int(data.num_rows)

    def load_files(self, table: str, paths: Sequence[Path]) -> int:
        split_name(table)
        if not paths:
            return 0
        files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
        before = self._count(table)
        self.execute(f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet([{files}])")
        return self._count(table) - before

    def table_exists(self, name: str) -> bool:
        schema, table = split_name(name)
        rows = self.fetch_all(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = ? AND table_name = ?",
            [schema, table],
        )
        return bool(rows[0][0])

    def list_tables(self, schema: str) -> list[str]:
        rows = self.fetch_all(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = ? AND table_type = 'BASE TABLE' ORDER BY table_name",
            [schema],
        )
        return [r[0] for r in rows]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self.execute("COMMIT")

    def close(self) -> None:
        self._con.close()

    def _count(self, table: str) -> int:
        return int(self.fetch_all(f"SELECT count(*) FROM {table}")[0][0])


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


def _sql_text(value: str) -> str:
    return value.replace("'", "''")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
