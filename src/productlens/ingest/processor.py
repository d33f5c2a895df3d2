"""Ingestion's embedded processor: DuckDB over the raw lake, whatever the warehouse is.

Validation, the quarantine, the raw Parquet files and the lake's own catalog
(`ops.raw_files`, `ops.superseded_files`, `ops.ingest_log`, `ops.ingested_files`,
`ops.warned_rows`, `raw.quarantine`, the `raw.<table>` views) are DuckDB's work. Statements
come as SQLGlot expressions (or constant text), rendered in DuckDB's dialect here and
nowhere else. This is the one module outside `productlens.engines` that imports duckdb.

A processor either shares the warehouse engine's connection (`shared`: the warehouse is
DuckDB, its file is the lake's catalog, exactly as before the engine boundary) or opens a
catalog file of its own (`open`: `lake.duckdb` beside `lake.raw/`, for a PostgreSQL or
Spark warehouse, which `productlens.lake.publish_raw` then shows the lake to).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from productlens.engines.duckdb import check_path
from productlens.errors import EngineError
from productlens.ingest.sql import fill, render
from productlens.objects import FilePath, ObjectPath, ObjectStore, is_url

# What the processor runs: a SQLGlot expression, or constant SQL text (never text built from
# names or values: tests/test_ingest_sql.py checks every call in productlens.ingest).
Statement = exp.Expr | str


class LakeProcessor:
    """DuckDB running ingestion's SQL over the raw lake at `raw_root` (a local folder or
    a prefix in object storage). Paths listed in the lake's catalog are relative to
    `raw_root.parent` (for a local lake, DuckDB's file search path). `objects`: the
    object store that `s3://` URLs (inputs, or the lake itself) are read from; DuckDB
    reads it through the file system registered on the connection."""

    name = "duckdb"

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection,
        raw_root: FilePath,
        *,
        owned: bool,
        objects: ObjectStore | None = None,
    ):
        if isinstance(raw_root, Path):  # a shared connection's (see `open`)
            check_path(raw_root.resolve().parent, "search")
        self._con = connection
        self.raw_root = raw_root
        self.objects = objects
        self._owned = owned
        # Times are UTC everywhere; raw files are listed relative to the lake's folder.
        # Both are set on a shared connection too: the warehouse engine knows no raw
        # layer, and the raw views in its file need the search path. (Nothing is created
        # here: a read-only connection must work, say for `productlens quarantine`.)
        self.execute("SET TimeZone = 'UTC'")
        if isinstance(raw_root, Path):  # DuckDB resolves no relative path in a store
            self.execute(
                fill("SET file_search_path = __path__", path=str(raw_root.resolve().parent))
            )
        if objects is not None and "s3" not in connection.list_filesystems():
            connection.register_filesystem(objects.for_duckdb())

    @classmethod
    def shared(
        cls,
        connection: duckdb.DuckDBPyConnection,
        raw_root: FilePath,
        *,
        objects: ObjectStore | None = None,
    ) -> LakeProcessor:
        """A processor on the DuckDB warehouse's own connection: the warehouse file is the
        lake's catalog. Closing the processor leaves the connection open."""
        return cls(connection, raw_root, owned=False, objects=objects)

    @classmethod
    def open(
        cls,
        catalog: Path,
        raw_root: FilePath,
        *,
        memory_limit: str = "6GB",
        threads: int | None = None,
        read_only: bool = False,
        objects: ObjectStore | None = None,
    ) -> LakeProcessor:
        """A processor on a catalog file of its own (created if missing, unless
        `read_only`)."""
        check_path(catalog, "database")
        if isinstance(raw_root, Path):
            check_path(raw_root.resolve().parent, "search")
        if read_only and not catalog.exists():
            raise EngineError("nothing ingested yet: run `productlens ingest` first", path=catalog)
        if not read_only:
            catalog.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(catalog), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise EngineError(
                    "the lake's catalog is in use by another process; wait for it to finish "
                    f"({_first_line(exc)})",
                    path=catalog,
                ) from None
            raise EngineError(f"cannot open the lake: {_first_line(exc)}", path=catalog) from None
        except duckdb.Error as exc:
            raise EngineError(f"cannot open the lake: {_first_line(exc)}", path=catalog) from None
        settings: list[Statement] = [
            fill("SET memory_limit = __limit__", limit=memory_limit),
            # Row order carries no meaning; dropping it makes bulk writes faster.
            "SET preserve_insertion_order = false",
            "SET enable_progress_bar = false",
            "SET parquet_metadata_cache = true",
            fill("SET temp_directory = __path__", path=str(catalog.with_suffix(".tmp"))),
        ]
        if threads:
            settings.append(fill("SET threads = __n__", n=int(threads)))
        for statement in settings:
            with _translated_errors():
                con.execute(_rendered(statement))
        return cls(con, raw_root, owned=True, objects=objects)

    def path(self, name: str) -> FilePath:
        """A file by the name ingestion gives it (an absolute path or an `s3://` URL)."""
        if is_url(name):
            return self.object_path(name)
        return Path(name)

    def object_path(self, url: str) -> ObjectPath:
        if self.objects is None:
            raise EngineError("no object store is configured for s3:// URLs", path=url)
        return self.objects.path(url)

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection (to tell whether a warehouse engine shares it)."""
        return self._con

    @property
    def owns_catalog(self) -> bool:
        """Whether the catalog is a file of the lake's own (not the warehouse's)."""
        return self._owned

    # --- statements -------------------------------------------------------------------

    def execute(self, statement: Statement, params: Sequence[Any] | None = None) -> None:
        with _translated_errors():
            self._con.execute(_rendered(statement), params)

    def fetch_all(
        self, statement: Statement, params: Sequence[Any] | None = None
    ) -> list[tuple[Any, ...]]:
        with _translated_errors():
            rows: list[tuple[Any, ...]] = self._con.execute(_rendered(statement), params).fetchall()
        return rows

    def fetch_arrow(self, statement: Statement, params: Sequence[Any] | None = None) -> pa.Table:
        with _translated_errors():
            result: pa.Table = self._con.sql(_rendered(statement), params=params).to_arrow_table()
        return result

    def fetch_batches(
        self, statement: Statement, params: Sequence[Any] | None = None, *, rows: int = 1_000_000
    ) -> pa.RecordBatchReader:
        """Run one query; its result as a stream of Arrow batches of about `rows` rows,
        computed as they are read (a large result is never held whole). Nothing else may
        run on the processor until the stream is read or dropped. An error while reading
        is an EngineError, as any other."""
        with _translated_errors():
            reader = self._con.sql(_rendered(statement), params=params).to_arrow_reader(rows)
        return pa.RecordBatchReader.from_batches(reader.schema, _translated_batches(reader))

    def register(self, name: str, data: pa.Table) -> None:
        """Make an Arrow table readable as `name` until `unregister`."""
        with _translated_errors():
            self._con.register(name, data)

    def unregister(self, name: str) -> None:
        with _translated_errors():
            self._con.unregister(name)

    def load_arrow(self, table: str, data: pa.Table) -> int:
        """Append Arrow rows to `schema.table`, columns matched by name."""
        schema, dot, name = table.partition(".")
        if not dot:
            raise ValueError(f"expected a qualified name schema.table, got {table!r}")
        view = "__productlens_arrow_input"
        self.register(view, data)
        try:
            self.execute(
                fill(
                    "INSERT INTO __target__ BY NAME SELECT * FROM __view__",
                    target=exp.table_(name, db=schema, quoted=True),
                    view=exp.to_table(view),
                )
            )
        finally:
            self.unregister(view)
        return int(data.num_rows)

    def table_exists(self, table: str) -> bool:
        schema, _, name = table.partition(".")
        rows = self.fetch_all(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = ? AND table_name = ?",
            [schema, name],
        )
        return bool(rows[0][0])

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
        """Close the catalog file (a shared connection is the warehouse engine's)."""
        if self._owned:
            self._con.close()


def _translated_batches(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    with _translated_errors():
        try:
            yield from reader
        except (pa.ArrowException, OSError) as exc:
            # DuckDB's error in the middle of a stream comes through Arrow's C stream.
            raise EngineError(_first_line(exc), engine="duckdb") from exc


@contextmanager
def _translated_errors() -> Iterator[None]:
    """DuckDB errors as EngineError; an interrupted query (Ctrl-C) as KeyboardInterrupt."""
    try:
        yield
    except duckdb.InterruptException:
        raise KeyboardInterrupt from None
    except duckdb.Error as exc:
        raise EngineError(_first_line(exc), engine="duckdb") from exc
    except RuntimeError as exc:
        # DuckDB 2.0's Python client reports a Ctrl-C during a query this way.
        if str(exc) == "Query interrupted":
            raise KeyboardInterrupt from None
        raise


def _rendered(statement: Statement) -> str:
    """The text DuckDB runs: an expression rendered in its dialect, or constant text."""
    return statement if isinstance(statement, str) else render(statement)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
