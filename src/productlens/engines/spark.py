"""Apache Spark as a warehouse engine: local, any master URL, or Spark Connect.

Layers are Spark databases; tables are Parquet files in the session's warehouse directory
(`USING parquet`, Spark's default catalog). That catalog has no transactions, `DELETE`,
`MERGE` or `CREATE OR REPLACE TABLE`, which shapes three methods:

- `replace_table` builds `<name>__building`, then drops the old table and renames the new
  one in. Between the drop and the rename (two catalog calls, a directory move on a local
  warehouse) the name is briefly absent; a reader in that window gets "table not found",
  never a half-written table. A failed build leaves the old table and no leftover.
- A table built with `partition_by` is stored as `<name>__parts_a` (or `_b`), partitioned
  by that column, behind a view `<name>` that lists the columns in the model's order
  (Spark moves a partition column last, and a `SELECT *` or positional `UNION` downstream
  must not see another order than on DuckDB). The pair counts as one table: `table_kind`
  says "table", `list_tables` hides the `__parts_*` table, `drop` removes both. A rebuild
  writes the other `__parts_*` name and repoints the view (`CREATE OR REPLACE VIEW`), so
  readers never see the name missing. It never renames: renaming a partitioned table in
  Spark's default catalog moves the files but leaves the partitions' locations behind,
  and the renamed table reads as empty.
- `overwrite_range` overwrites the partitions `>= start` (dynamic partition overwrite) and
  drops the ones the new rows no longer have. `transaction()` runs statements in order
  and cannot roll back.

Spark copies a CTE into every place that reads it, and plans the copies one by one: a
query whose CTEs are read more than once (a funnel's are) is fetched in stages, each such
CTE computed once into a local checkpoint that the rest reads (`_staged`).

pyspark is imported lazily: only this module may import it, and only when Spark is used.
"""

from __future__ import annotations

import os
import re
import socket
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from itertools import count
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlglot
from sqlglot import exp

from productlens.engines.base import TableKind, Transpiles, table
from productlens.errors import EngineError, EngineUnavailable

# The physical, partitioned table behind a partitioned model's view: two names, used in
# turn, so that a rebuild swaps the view from one to the other (see replace_table).
PARTS = ("__parts_a", "__parts_b")
BUILDING = "__building"  # a table being built, before it is swapped in

# Pinned on every session this module builds: times are UTC everywhere, an incremental
# overwrite replaces only the partitions it writes, and no web UI (a port per process).
_DEFAULT_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.ui.enabled": "false",
}
# What a Spark Connect client may set: the server owns its JVM, warehouse and UI.
_CONNECT_CONF = ("spark.sql.session.timeZone", "spark.sql.sources.partitionOverwriteMode")
# Catalog table types (pyspark's Table.tableType) as the protocol's kinds.
_views = count()
# The statements a read-only engine runs: they read, never write or change the catalog
# (Spark SQL has no data-changing CTE or SELECT).
_READS = (exp.Query, exp.Describe)
# Spark reads a table by globbing its location when the location holds one of these
# (SparkHadoopUtil.isGlobPath): a table in a folder named `[a-b]` is "not found" once
# written. A warehouse directory holding one is refused before the session starts.
_GLOB_CHARS = frozenset("{}[]*?\\")
# The master URLs Spark accepts, checked before any JVM starts: a typo such as `local[abc]`
# would otherwise cost a JVM start and end in a Java stack trace.
_MASTERS = {
    "local": r"local(\[(\*|[1-9]\d*)(,[1-9]\d*)?\])?",
    "local-cluster": r"local-cluster\[[1-9]\d*,[1-9]\d*,[1-9]\d*\]",
    "standalone": r"spark://[^\s/,:]+:\d+(,[^\s/,:]+:\d+)*",
    "yarn": r"yarn",
    "kubernetes": r"k8s://\S+",
    "connect": r"sc://[^\s/:;]+(:\d+)?(/;\S*)?",
}
CONNECT_PORT = 15002  # Spark Connect's default port, when `sc://host` names none
REACH_SECONDS = 5.0  # how long a server named by the master URL gets to accept a connection
# How long a Spark Connect client retries a server that stopped answering (gRPC's
# UNAVAILABLE) before the run stops; pyspark's own default waits about ten minutes.
CONNECT_RETRY_SECONDS = 20.0


class SparkEngine(Transpiles):
    """A Spark session as a warehouse. Built from a session (which `close()` leaves
    running: the caller owns it) or by `connect()` (which owns and stops it).

    Read-only (`read_only=True`, as the dashboard opens it), the engine runs queries and
    DESCRIBE only and refuses every other statement with an EngineError before Spark sees
    it: Spark's default catalog has no read-only session of its own."""

    dialect = "spark"
    name = "spark"

    def __init__(self, session: Any, *, owned: bool = False, read_only: bool = False) -> None:
        self._session = session
        self._owned = owned
        self.read_only = read_only
        # Catalog answers, kept until a statement of this engine changes their schema
        # (see `_forget`). Every statement is transpiled with the columns of the tables
        # it reads, and each look-up is a Spark command: uncached, a build asked the
        # same few answers several times per model. The engine is taken to be the only
        # writer of its schemas while it is open, as a build is.
        self._kinds: dict[str, dict[str, TableKind]] = {}
        self._fields: dict[tuple[str, str], list[tuple[str, exp.DataType]]] = {}
        self._storages: dict[tuple[str, str], str | None] = {}
        # Set when the session is lost (see `_errors`): later calls fail at once.
        self._lost: EngineUnavailable | None = None

    @classmethod
    def connect(
        cls,
        master: str = "local[*]",
        *,
        warehouse_dir: str,
        conf: dict[str, str] | None = None,
        connect_retry_seconds: float = CONNECT_RETRY_SECONDS,
        read_only: bool = False,
    ) -> SparkEngine:
        """Start (or reach) Spark and own the session. `sc://host:port` is Spark Connect;
        anything else a master URL (`local[*]`, `spark://…`, `yarn`, `k8s://…`).
        `conf` is applied last, over the pinned settings (see `_metastore` for where the
        catalog lives). A malformed master, a server that does not accept a connection
        and a warehouse folder that cannot be made are refused before any JVM starts; a
        Spark Connect server that stops answering is retried for `connect_retry_seconds`,
        then `EngineUnavailable`. `read_only`: see the class."""
        try:
            from pyspark.sql import SparkSession  # noqa: PLC0415
        except ImportError:
            raise EngineError(
                "pyspark is not installed: install productlens[spark]", engine="spark"
            ) from None
        kind = check_master(master)
        remote = kind == "connect"
        if kind in ("standalone", "connect"):
            _reach(master)
        if not remote and _GLOB_CHARS.intersection(warehouse_dir):
            raise EngineError(
                "Spark cannot keep tables in a folder whose path has any of "
                f"{' '.join(sorted(_GLOB_CHARS))} (it reads a table's folder as a pattern); "
                "set [warehouse.spark] warehouse_dir to another folder",
                engine="spark",
                path=warehouse_dir,
            )
        if not remote and "://" not in warehouse_dir:
            _make_folder(warehouse_dir)
        settings = dict(_DEFAULT_CONF)
        settings.update(_local_tuning(master))
        settings["spark.sql.warehouse.dir"] = warehouse_dir
        settings.update(_metastore(master, warehouse_dir))
        if remote:
            settings = {k: v for k, v in settings.items() if k in _CONNECT_CONF}
        settings.update(conf or {})
        if remote:
            session = _remote_session(master, settings, connect_retry_seconds)
            return cls(session, owned=True, read_only=read_only)
        # The driver JVM is a child of this process and inherits its environment.
        os.environ["TZ"] = "UTC"
        if SparkSession.getActiveSession() is not None:
            # getOrCreate would hand back that session and silently ignore the warehouse
            # directory and JVM options: refuse instead.
            raise EngineError(
                "a Spark session is already running in this process; "
                "pass it to SparkEngine(session) instead",
                engine="spark",
            )
        builder = SparkSession.builder.appName("productlens").master(master)
        for key, value in settings.items():
            builder = builder.config(key, value)
        with _translated_errors(master=master):
            session = builder.getOrCreate()
            _quiet(session)
        return cls(session, owned=True, read_only=read_only)

    # --- statements -------------------------------------------------------------------

    def render(self, expression: exp.Expr) -> str:
        return _render(self._portable(expression))

    def execute(self, statement: exp.Expression) -> None:
        # Commands (DDL, INSERT) run when `sql()` is called; a query is only analysed.
        try:
            self._sql(statement)
        finally:  # a failed statement may have changed the catalog too
            self._forget(statement)

    def fetch_arrow(self, query: exp.Expression) -> pa.Table:
        """The query's rows. A query whose common table expressions are read more than once
        runs in stages (`_staged`): Spark inlines every reference to a CTE, and a query
        such as a funnel's (twenty CTEs, several read by several others) became one plan
        of hundreds of stages whose planning, not its data, took minutes."""
        if not isinstance(query, exp.Query):
            frame = self._sql(query)
            with self._errors():
                result: pa.Table = frame.toArrow()
            return result
        # Staging only reads: its checkpoints and temporary views are the session's own,
        # so a read-only engine stages too.
        with self._staged(self._portable(query)) as last, self._errors():
            staged: pa.Table = self._session.sql(_render(last)).toArrow()
        return staged

    def fetch_all(self, query: exp.Expression) -> list[tuple[object, ...]]:
        result = self.fetch_arrow(query)
        return list(zip(*(column.to_pylist() for column in result.columns), strict=True))

    # --- catalog ----------------------------------------------------------------------

    def ensure_schema(self, schema: str) -> None:
        self.execute(exp.Create(this=exp.Table(this=_ident(schema)), kind="SCHEMA", exists=True))

    def table_kind(self, schema: str, name: str) -> TableKind | None:
        kinds = self._catalog(schema)
        kind = kinds.get(name)
        if kind == "view" and any(kinds.get(name + suffix) == "table" for suffix in PARTS):
            return "table"  # a partitioned model: its view over `<name>__parts_*`
        return kind

    def list_tables(self, schema: str) -> list[str]:
        kinds = self._catalog(schema)
        hidden = {name + suffix for name in kinds for suffix in PARTS}
        return sorted(name for name in kinds if name not in hidden)

    def columns(self, schema: str, name: str) -> list[tuple[str, exp.DataType]]:
        cached = self._fields.get((schema, name))
        if cached is not None:
            return list(cached)
        with self._errors(table=f"{schema}.{name}"):
            fields = self._session.table(self.render(table(schema, name))).schema.fields
        found = [
            (field.name, exp.DataType.build(field.dataType.simpleString(), dialect="spark"))
            for field in fields
        ]
        self._fields[(schema, name)] = found
        return list(found)

    def drop(self, schema: str, name: str) -> None:
        kinds = self._catalog(schema)
        storage = [name + suffix for suffix in PARTS] if kinds.get(name) == "view" else []
        for each in [name, *storage]:
            if each in kinds:
                self.execute(_drop(schema, each, kinds[each]))

    # --- writing ----------------------------------------------------------------------

    def replace_table(
        self, schema: str, name: str, query: exp.Query, *, partition_by: str | None = None
    ) -> int:
        if partition_by is not None:
            return self._replace_partitioned(schema, name, query, partition_by)
        building = name + BUILDING
        written = self._build(schema, building, query, None)
        rows = self._count(schema, building) if written is None else written
        # No transactions: from the drop to the rename, `name` is briefly absent.
        self.drop(schema, name)
        self.execute(_rename(schema, building, name))
        return rows

    def replace_tables(
        self,
        schema: str,
        queries: Mapping[str, exp.Query],
        *,
        partition_by: Mapping[str, str] | None = None,
    ) -> int:
        """No transactions: each table is swapped in turn (`replace_table`), so a reader
        or a process killed mid-way sees some tables new and the rest old."""
        by = partition_by or {}
        return sum(
            self.replace_table(schema, name, query, partition_by=by.get(name))
            for name, query in queries.items()
        )

    def _replace_partitioned(
        self, schema: str, name: str, query: exp.Query, partition_by: str
    ) -> int:
        live = self._storage(schema, name)
        fresh = name + (PARTS[1] if live == name + PARTS[0] else PARTS[0])
        order = self._sql(query).columns  # analysed only: the model's column order
        written = self._build(schema, fresh, query, partition_by)
        rows = self._count(schema, fresh) if written is None else written
        if self._catalog(schema).get(name) == "table":
            self.drop(schema, name)  # a plain table of the name: briefly absent
        self.execute(_view(schema, name, _select_all(order, table(schema, fresh))))
        if live is not None:
            self.execute(_drop(schema, live, "table"))
        return rows

    def _build(
        self, schema: str, name: str, query: exp.Query, partition_by: str | None
    ) -> int | None:
        """Create `name` from the query; on failure leave no table of that name. Returns
        the rows written, as the write itself counted them, or None where the session does
        not say (Spark Connect: the caller counts the table).

        A classic session creates the empty table from the query's analysed columns, then
        fills it with one INSERT, whose write command reports `numOutputRows` (the rows of
        the committed tasks' files): a table's rows without a second pass over it, which
        cost a Spark job per model. A CTAS would not do: it writes through a nested command
        whose metrics it does not keep. A Spark Connect client sees no JVM plan (and the
        server's metrics of a command stop at its result), so there the table is created
        by one CTAS and counted."""
        kinds = self._catalog(schema)
        if name in kinds:  # left by a process killed mid-build
            self.execute(_drop(schema, name, kinds[name]))
        try:
            if not _classic(self._session):
                self.execute(_create_as(schema, name, query, partition_by))
                return None
            frame = self._sql(query)  # analysed only
            columns = [
                (f.name, exp.DataType.build(f.dataType.simpleString(), dialect="spark"))
                for f in frame.schema.fields
            ]
            self.execute(_create_empty(schema, name, columns, partition_by))
            # Spark stores a partition column last; the INSERT matches columns by position.
            physical = [c for c, _ in columns if c != partition_by]
            physical += [partition_by] if partition_by is not None else []
            # The INSERT reads the analysed query through a temporary view: SQLGlot writes
            # an INSERT's CTEs, nested ones included, as one WITH before it, where two
            # subqueries' CTEs of one name collide (retention_cohorts' week and month).
            view = f"__productlens_build_{next(_views)}"
            with self._errors(table=f"{schema}.{name}"):
                frame.createOrReplaceTempView(view)
            try:
                source = exp.table_(view, quoted=True)
                insert = exp.insert(_select_all(physical, source), table(schema, name))
                return _rows_written(self._sql(insert))  # an INSERT leaves the catalog as is
            finally:
                with self._errors(table=view):
                    self._session.catalog.dropTempView(view)
        except EngineError:
            self.execute(_drop(schema, name, "table"))
            raise

    def replace_view(self, schema: str, name: str, query: exp.Query) -> None:
        if self.table_kind(schema, name) == "table":
            self.drop(schema, name)
        self.execute(_view(schema, name, query))

    def overwrite_range(
        self, schema: str, name: str, column: str, start: date, query: exp.Query
    ) -> int:
        parts = self._storage(schema, name)
        if parts is None:
            raise EngineError(
                f"overwrite_range needs a table built with partition_by={column!r}",
                engine=self.name,
                table=f"{schema}.{name}",
            )
        since = exp.column(column, quoted=True) >= exp.cast(
            exp.Literal.string(start.isoformat()), exp.DataType.Type.DATE
        )
        fresh = exp.select("*").from_(query.subquery("fresh")).where(since)
        building = name + BUILDING
        # Materialised first, so a failing query leaves the table as it was.
        self._build(schema, building, fresh, column)
        try:
            stale = self._values(schema, parts, column, since) - self._values(
                schema, building, column, None
            )
            physical = [field for field, _ in self.columns(schema, parts)]
            overwrite = exp.insert(
                _select_all(physical, table(schema, building)),
                _partitioned(table(schema, parts), column),
                overwrite=True,
            )
            self.execute(overwrite)
            # Dynamic overwrite replaces the partitions it writes; days that had rows and
            # now have none must go too.
            for value in sorted(stale, key=str):
                self.execute(_drop_partition(schema, parts, column, value))
        finally:
            self.execute(_drop(schema, building, "table"))
        return self._count(schema, parts)

    def create_table(
        self, schema: str, name: str, columns: Sequence[tuple[str, exp.DataType]]
    ) -> None:
        definition = exp.Schema(
            this=table(schema, name),
            expressions=[
                exp.ColumnDef(this=_ident(column), kind=dtype) for column, dtype in columns
            ],
        )
        self.execute(exp.Create(this=definition, kind="TABLE", exists=True, properties=_parquet()))

    def append_arrow(self, schema: str, name: str, data: pa.Table | pa.RecordBatchReader) -> int:
        """One INSERT of the rows. A reader is read whole first: Spark makes a data frame
        of rows in memory (the lake reaches Spark as files, not through here)."""
        rows_in = data if isinstance(data, pa.Table) else data.read_all()
        target = self._storage(schema, name) or name
        with self.temp_table(f"__productlens_append_{next(_views)}", rows_in) as rows:
            names = rows_in.column_names
            insert = exp.Insert(
                this=exp.Schema(this=table(schema, target), expressions=[_ident(n) for n in names]),
                expression=_select_all(names, rows),
            )
            self.execute(insert)
        return int(rows_in.num_rows)

    @contextmanager
    def temp_table(self, name: str, data: pa.Table) -> Iterator[exp.Table]:
        from pyspark.sql.pandas.types import from_arrow_schema  # noqa: PLC0415

        # A naive Arrow timestamp is a wall-clock time: TIMESTAMP_NTZ keeps it as it is,
        # where Spark's default (TIMESTAMP) would read it in the session's time zone.
        schema = from_arrow_schema(data.schema, prefer_timestamp_ntz=True)
        with self._errors(table=name):
            self._session.createDataFrame(data, schema=schema).createOrReplaceTempView(name)
        try:
            yield exp.table_(name, quoted=True)
        finally:
            with self._errors(table=name):
                self._session.catalog.dropTempView(name)

    def parquet_relation(self, paths: Sequence[str]) -> exp.Expression:
        """A subquery over the files: each file read as Spark's `parquet.`path`` relation,
        its columns taken by name from the files' schema (a file missing one is an error,
        never a shifted column), plus `_metadata` (Spark's file_path, file_name, row_index
        …) as a column, because Spark's hidden file metadata does not pass a UNION.
        Unlike a temporary view, this may appear in a permanent view (`raw.<table>`).
        Note: `_metadata.file_name`/`file_path` are URL-encoded (`b%20b.parquet`)."""
        if not paths:
            raise EngineError("no Parquet files to read", engine=self.name)
        with self._errors(path=paths[0]):
            names = self._session.read.parquet(*paths).columns
        branches = [
            _select_all(
                names, exp.Table(this=_ident(path), db=exp.to_identifier("parquet"))
            ).select(exp.column("_metadata"))
            for path in paths
        ]
        union: exp.Query = branches[0]
        for branch in branches[1:]:
            union = exp.union(union, branch, distinct=False)
        return union.subquery()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Spark's catalog has no transactions: the block's statements run in order, and
        a failure leaves the ones before it done."""
        yield

    def forget_catalog(self) -> None:
        self._kinds.clear()
        self._fields.clear()
        self._storages.clear()

    def close(self) -> None:
        if not self._owned:
            return
        client = _connect_client(self._session)
        if client is not None:
            # Releasing the session is best-effort (pyspark logs a failure): a server that
            # is gone is not retried for `connect_retry_seconds` at exit.
            client.set_retry_policies([])
        self._session.stop()

    # --- helpers ----------------------------------------------------------------------

    @contextmanager
    def _errors(self, **context: object) -> Iterator[None]:
        """Spark's errors as EngineError (`_translated_errors`). Once the session is lost,
        every later call (the run log's last rows, the closing counts) fails at once with
        the same EngineUnavailable instead of waiting out the client's retries again."""
        if self._lost is not None:
            raise EngineUnavailable(self._lost.message, **self._lost.context)
        try:
            with _translated_errors(**context):
                yield
        except EngineUnavailable as exc:
            self._lost = exc
            client = _connect_client(self._session)
            if client is not None:
                client.set_retry_policies([])  # closing it must not retry a gone server
            raise

    def _sql(self, statement: exp.Expr) -> Any:
        if self.read_only and not isinstance(statement, _READS):
            raise EngineError(
                f"the warehouse is open read-only: {_statement_kind(statement)} refused",
                engine=self.name,
                table=next((f"{t.db}.{t.name}" for t in statement.find_all(exp.Table)), None),
            )
        text = self.render(statement)
        with self._errors():
            return self._session.sql(text)

    @contextmanager
    def _staged(self, query: exp.Expr) -> Iterator[exp.Expr]:
        """`query` (transpiled) with each top-level CTE that is read more than once
        computed first, once, into a local checkpoint (a plan of its own, whose result the
        later stages read as a leaf), under a temporary view of a name of its own; the
        views are dropped on leaving. Queries whose CTE names are also defined in a
        nested WITH, or recursive ones, are left whole."""
        with_ = query.args.get("with_")
        if not isinstance(with_, exp.With) or with_.recursive or not _repeated(query):
            yield query
            return
        query = query.copy()
        ctes = list(query.args["with_"].expressions)
        query.set("with_", None)
        pending: list[exp.CTE] = []
        views: list[str] = []
        try:
            for index, cte in enumerate(ctes):
                later = [*ctes[index + 1 :], query]
                if sum(_reads(node, cte.alias) for node in later) < 2:
                    pending.append(cte)
                    continue
                # The CTE's own column names, if it lists them, stay with it.
                alias = cte.args["alias"].copy()
                alias.set("this", exp.to_identifier("stage"))
                piece = exp.select("*").from_(exp.Subquery(this=cte.this.copy(), alias=alias))
                if pending:
                    piece.set("with_", exp.With(expressions=[c.copy() for c in pending]))
                view = f"__productlens_stage_{next(_views)}"
                with self._errors():
                    frame = self._session.sql(_render(piece)).localCheckpoint(eager=True)
                    frame.createOrReplaceTempView(view)
                views.append(view)
                for node in later:
                    _rename_reads(node, cte.alias, view)
            if pending:
                query.set("with_", exp.With(expressions=pending))
            yield query
        finally:
            for view in views:
                with self._errors(table=view):
                    self._session.catalog.dropTempView(view)

    def _catalog(self, schema: str) -> dict[str, TableKind]:
        """The schema's tables and views by name (temporary views excluded)."""
        # SHOW TABLES and SHOW VIEWS read names only; `catalog.listTables` fetches every
        # table's metadata from the metastore (seconds per call on a 38-model layer, and
        # the build asks several times per model). Cached until `_forget`.
        cached = self._kinds.get(schema)
        if cached is not None:
            return dict(cached)
        with self._errors(schema=schema):
            if not self._session.catalog.databaseExists(schema):
                self._kinds[schema] = {}
                return {}
            where = self.render(_ident(schema))
            # SQLGlot parses SHOW as an opaque command; the name is quoted by render().
            names = self._session.sql(f"SHOW TABLES IN {where}").collect()
            views = self._session.sql(f"SHOW VIEWS IN {where}").collect()
        is_view = {row.viewName for row in views if not row.isTemporary}
        kinds: dict[str, TableKind] = {
            row.tableName: "view" if row.tableName in is_view else "table"
            for row in names
            if not row.isTemporary
        }
        self._kinds[schema] = kinds
        return dict(kinds)

    def _forget(self, statement: exp.Expr) -> None:
        """Drop the cached catalog answers a statement may have changed: those of every
        schema it names (a created or dropped schema included). An INSERT changes rows
        only; a statement naming no schema clears everything."""
        if isinstance(statement, exp.Insert):
            return
        schemas = {t.db for t in statement.find_all(exp.Table) if t.db}
        if isinstance(statement, exp.Create | exp.Drop) and str(
            statement.args.get("kind") or ""
        ).upper() in ("SCHEMA", "DATABASE"):
            schemas.add(statement.this.name)
        if not schemas:
            self.forget_catalog()
            return
        for schema in schemas:
            self._kinds.pop(schema, None)
        for cache in (self._fields, self._storages):
            for key in [key for key in cache if key[0] in schemas]:
                del cache[key]

    def _storage(self, schema: str, name: str) -> str | None:
        """The `__parts_*` table a partitioned model's view reads, or None when `name` is
        not such a view. Read from the view's own text, so a table left by a crash between
        building and repointing is never mistaken for the live one. Cached until
        `_forget`."""
        if (schema, name) in self._storages:
            return self._storages[(schema, name)]
        kinds = self._catalog(schema)
        candidates = {name + suffix for suffix in PARTS if kinds.get(name + suffix) == "table"}
        if kinds.get(name) != "view" or not candidates:
            self._storages[(schema, name)] = None
            return None
        described = self.fetch_all(exp.Describe(this=table(schema, name), style="EXTENDED"))
        text = next((str(row[1]) for row in described if row[0] == "View Text"), "")
        parsed = sqlglot.parse_one(text, read=self.dialect) if text else None
        read = {t.name for t in parsed.find_all(exp.Table)} if parsed is not None else set()
        live = read & candidates
        found = live.pop() if len(live) == 1 else None
        self._storages[(schema, name)] = found
        return found

    def _count(self, schema: str, name: str) -> int:
        query = exp.select(exp.func("count", exp.Star())).from_(table(schema, name))
        return int(self.fetch_arrow(query).column(0)[0].as_py())

    def _values(
        self, schema: str, name: str, column: str, where: exp.Expression | None
    ) -> set[object]:
        query = exp.select(exp.column(column, quoted=True)).distinct().from_(table(schema, name))
        if where is not None:
            query = query.where(where)
        return {row[0] for row in self.fetch_all(query)}


# Loggers whose WARNs are noise, kept at ERROR on the sessions this module starts. Spark
# checks every path it reads for a streaming sink's `_spark_metadata` folder; a raw view
# reads its folder by pattern (`*-rows.parquet`), which is no folder, so the check fails
# and FileStreamSink logs the expected answer ("Assume no metadata directory") as a WARN
# with a Java stack trace, once per view created or read. Its errors still show.
_QUIET_LOGGERS = ("org.apache.spark.sql.execution.streaming.sinks.FileStreamSink",)


def check_master(master: str) -> str:
    """The kind of a Spark master URL (a key of `_MASTERS`), or EngineError naming the
    forms Spark accepts."""
    for kind, pattern in _MASTERS.items():
        if re.fullmatch(pattern, master):
            return kind
    raise EngineError(
        f"not a Spark master URL: {master!r} (use local[*], local[N], spark://host:port, "
        "yarn, k8s://https://host:port or sc://host:port for Spark Connect)",
        engine="spark",
    )


def _endpoints(master: str) -> list[tuple[str, int]]:
    """The (host, port) pairs a `spark://` or `sc://` URL names."""
    if master.startswith("sc://"):
        host, _, port = master[len("sc://") :].split("/", 1)[0].partition(":")
        return [(host, int(port or CONNECT_PORT))]
    pairs = (item.rpartition(":") for item in master[len("spark://") :].split(","))
    return [(host, int(port)) for host, _, port in pairs]


def _reach(master: str) -> None:
    """EngineUnavailable unless a server the master URL names accepts a TCP connection
    within REACH_SECONDS: Spark's own clients retry an absent server for minutes."""
    failures = []
    for host, port in _endpoints(master):
        try:
            with socket.create_connection((host, port), timeout=REACH_SECONDS):
                return
        except OSError as exc:
            failures.append(f"{host}:{port} ({exc.strerror or exc})")
    raise EngineUnavailable(
        f"cannot reach the Spark server at {', '.join(failures)}: is it running, and is "
        "the master URL right?",
        engine="spark",
        master=master,
    )


def _make_folder(folder: str) -> None:
    """Create the local warehouse folder now, so that a path that cannot hold one is
    refused in a line before a JVM starts (Spark would fail at the first table)."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise EngineError(
            f"cannot create the Spark warehouse folder: {reason}", engine="spark", path=folder
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise EngineError("cannot write to the Spark warehouse folder", engine="spark", path=folder)


def _remote_session(master: str, settings: Mapping[str, str], retry_seconds: float) -> Any:
    """A Spark Connect session on `master` whose client retries a server that stops
    answering for at most `retry_seconds`; the session settings are applied after the
    policy is in place (each is a call to the server)."""
    with warnings.catch_warnings():
        # pyspark's notice that pandas 3 is new to it: no part of this engine uses pandas.
        warnings.simplefilter("ignore", FutureWarning)
        from pyspark.sql.connect.session import (  # noqa: PLC0415
            SparkSession as RemoteSession,
        )
    # The client warns before raising when it gives up; the error says it in one line.
    warnings.filterwarnings("ignore", message=r"\[RETRIES_EXCEEDED\]")
    session = RemoteSession.builder.remote(master).create()  # no call to the server yet
    session.client.set_retry_policies([connect_retry_policy(retry_seconds)])
    try:
        with _translated_errors(master=master):
            for key, value in settings.items():
                session.conf.set(key, value)
    except BaseException:
        session.client.set_retry_policies([])
        session.stop()
        raise
    return session


def connect_retry_policy(seconds: float) -> Any:
    """pyspark's retry policy with waits of 0.1 s, doubling up to 5 s each, as many as fit
    in `seconds` in all (no jitter, and no longer wait when the server asks for one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # as in _remote_session
        from pyspark.sql.connect.client.retries import DefaultPolicy  # noqa: PLC0415

    retries, wait, total = 0, 100, 0
    while total + wait <= seconds * 1000:
        total += wait
        retries += 1
        wait = min(wait * 2, 5000)
    return DefaultPolicy(
        max_retries=retries,
        initial_backoff=100,
        backoff_multiplier=2.0,
        max_backoff=5000,
        jitter=0,
        min_jitter_threshold=0,
        recognize_server_retry_delay=False,
    )


def _quiet(session: Any) -> None:
    jvm = session.sparkContext._jvm
    error = jvm.org.apache.logging.log4j.Level.ERROR
    for logger in _QUIET_LOGGERS:
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(logger, error)


# A local master: `local` (one core), `local[N]`, `local[*]`, with `,F` (task retries) or not.
_LOCAL = re.compile(r"local(?:\[(?P<cores>\*|\d+)(?:,\s*\d+)?\])?")


def _local_tuning(master: str) -> dict[str, str]:
    """Defaults for a local master, where one JVM on a few cores does all the work
    (`[warehouse.spark] conf` overrides them). Spark's 200 shuffle partitions are sized
    for a cluster: locally each shuffle ran 200 tiny tasks per stage and each table was
    written as up to 200 small files, which every later read opened again. Two
    partitions per core keep every core busy; adaptive execution (Spark's default, pinned
    here) merges the small ones after each shuffle. Plans change, never answers."""
    found = _LOCAL.fullmatch(master)
    if found is None:
        return {}
    cores = found["cores"]
    n = 1 if cores is None else (os.cpu_count() or 1) if cores == "*" else max(1, int(cores))
    return {
        "spark.sql.shuffle.partitions": str(2 * n),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
    }


def _metastore(master: str, warehouse_dir: str) -> dict[str, str]:
    """Where the catalog lives. Spark's default catalog is in memory: a new process sees
    none of the tables whose files are in the warehouse. On a local master with a local
    warehouse, the catalog is Hive's, in an embedded Derby database inside the warehouse
    directory, so a warehouse outlives the process (one process at a time, as Derby
    locks it). A cluster brings its own metastore (Hive, Glue, Unity) through `conf`."""
    if not master.startswith("local") or "://" in warehouse_dir:
        return {}
    derby = Path(warehouse_dir).resolve() / "metastore_db"
    url = f"jdbc:derby:;databaseName={derby};create=true"
    return {
        "spark.sql.catalogImplementation": "hive",
        "spark.hadoop.javax.jdo.option.ConnectionURL": url,
    }


def _render(expression: exp.Expr) -> str:
    """Spark SQL for an expression in the source dialect. DuckDB's TIMESTAMP has no time
    zone; SQLGlot's generic TIMESTAMP (`DataType.build("TIMESTAMP")`) would become Spark's
    zoned TIMESTAMP, so it is pinned to TIMESTAMP_NTZ as DuckDB means it."""
    naive = expression.transform(_naive_timestamp)
    return naive.sql(dialect="spark")


def _naive_timestamp(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.TIMESTAMP:
        return exp.DataType.build(exp.DataType.Type.TIMESTAMPNTZ)
    return node


def _ident(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def _select_all(columns: Sequence[str], source: exp.Expr) -> exp.Select:
    return exp.select(*(exp.column(c, quoted=True) for c in columns)).from_(source)


def _parquet(partition_by: str | None = None) -> exp.Properties:
    properties: list[exp.Expression] = [
        exp.FileFormatProperty(this=exp.var("parquet")),
        # Carried by the table itself, so an overwrite is dynamic whatever the session says.
        exp.OptionsProperty(
            expressions=[
                exp.Property(
                    this=exp.Literal.string("partitionOverwriteMode"),
                    value=exp.Literal.string("dynamic"),
                )
            ]
        ),
    ]
    if partition_by is not None:
        properties.append(
            exp.PartitionedByProperty(this=exp.Schema(expressions=[_ident(partition_by)]))
        )
    return exp.Properties(expressions=properties)


def _create_empty(
    schema: str,
    name: str,
    columns: Sequence[tuple[str, exp.DataType]],
    partition_by: str | None,
) -> exp.Create:
    """An empty Parquet table of these columns (all nullable, as a CTAS makes them)."""
    definition = exp.Schema(
        this=table(schema, name),
        expressions=[exp.ColumnDef(this=_ident(column), kind=dtype) for column, dtype in columns],
    )
    return exp.Create(this=definition, kind="TABLE", properties=_parquet(partition_by))


def _repeated(query: exp.Expr) -> bool:
    """Whether a top-level CTE of `query` is read more than once, and no nested WITH
    defines a name of a top-level one (which would make a name's readers ambiguous)."""
    top = query.args["with_"].expressions
    nested = {
        cte.alias
        for w in query.find_all(exp.With)
        if w is not query.args["with_"]
        for cte in w.expressions
    }
    if nested.intersection(cte.alias for cte in top):
        return False
    main = query.copy()
    main.set("with_", None)
    return any(
        sum(_reads(node, cte.alias) for node in [*top[i + 1 :], main]) >= 2
        for i, cte in enumerate(top)
    )


def _reads(node: exp.Expr, name: str) -> int:
    """How many times `node` reads the table `name` (unqualified)."""
    return sum(1 for t in node.find_all(exp.Table) if not t.db and t.name == name)


def _rename_reads(node: exp.Expr, name: str, view: str) -> None:
    """Point `node`'s reads of the table `name` at the temporary view `view`, under the
    alias they had (or `name`), so that their columns' qualifiers still resolve."""
    for t in list(node.find_all(exp.Table)):
        if not t.db and t.name == name:
            alias = t.alias or name
            t.replace(exp.table_(view, quoted=True, alias=exp.to_identifier(alias, quoted=True)))


def _classic(session: Any) -> bool:
    """Whether the session is a classic one (a JVM in reach through py4j), not Spark
    Connect's client."""
    return getattr(session, "_jsparkSession", None) is not None


def _rows_written(result: Any) -> int | None:
    """The rows an INSERT's write command wrote (its `numOutputRows` metric), from the
    executed plan of the classic DataFrame `spark.sql` returned for it; None when the plan
    holds no such metric."""
    from py4j.protocol import Py4JError  # type: ignore[import-untyped]  # noqa: PLC0415

    try:
        plan = result._jdf.queryExecution().executedPlan()
        # `spark.sql` runs a command at once; its plan is a CommandResultExec over the
        # command's own physical plan (DataWritingCommandExec), which keeps the metrics.
        metric = plan.commandPhysicalPlan().metrics().get("numOutputRows")
        return None if metric.isEmpty() else int(metric.get().value())
    except Py4JError:
        return None


def _create_as(schema: str, name: str, query: exp.Expr, partition_by: str | None) -> exp.Create:
    return exp.Create(
        this=table(schema, name),
        kind="TABLE",
        expression=query,
        properties=_parquet(partition_by),
    )


def _view(schema: str, name: str, query: exp.Expr) -> exp.Create:
    return exp.Create(this=table(schema, name), kind="VIEW", replace=True, expression=query)


def _drop(schema: str, name: str, kind: TableKind) -> exp.Drop:
    return exp.Drop(tables=[table(schema, name)], kind=kind.upper(), exists=True)


def _rename(schema: str, old: str, new: str) -> exp.Alter:
    return exp.Alter(
        this=table(schema, old), kind="TABLE", actions=[exp.AlterRename(this=table(schema, new))]
    )


def _partitioned(target: exp.Table, column: str) -> exp.Table:
    target.set("partition", exp.Partition(expressions=[exp.column(column, quoted=True)]))
    return target


def _drop_partition(schema: str, name: str, column: str, value: object) -> exp.Alter:
    # A partition spec takes constants only; Spark casts the string to the column's type.
    spec = exp.EQ(this=exp.column(column, quoted=True), expression=exp.Literal.string(str(value)))
    return exp.Alter(
        this=table(schema, name),
        kind="TABLE",
        actions=[exp.DropPartition(expressions=[exp.Partition(expressions=[spec])], exists=True)],
    )


@contextmanager
def _translated_errors(**context: object) -> Iterator[None]:
    """Spark's errors (analysis, parse, runtime; classic or Connect) as EngineError with
    the first line of the message, never a Java stack trace."""
    from pyspark.errors import PySparkException  # noqa: PLC0415

    try:
        from py4j.protocol import (  # noqa: PLC0415
            Py4JError,
            Py4JJavaError,
            Py4JNetworkError,
        )
    except ImportError:  # a Spark Connect client without the classic runtime
        py4j_errors: tuple[type[BaseException], ...] = ()
        py4j_network: tuple[type[BaseException], ...] = ()
    else:
        py4j_errors = (Py4JJavaError, Py4JError)
        py4j_network = (Py4JNetworkError,)
    try:
        yield
    except PySparkException as exc:
        status = _lost_status(exc)
        if status is not None:
            raise EngineUnavailable(
                f"lost the Spark Connect server (gRPC {status}): it stopped or cannot be reached",
                engine="spark",
                **context,
            ) from exc
        raise EngineError(_first_line(exc), engine="spark", **context) from exc
    except py4j_network as exc:  # the driver JVM of a classic session is gone
        raise EngineUnavailable(
            f"lost the Spark driver: {_first_line(exc)}", engine="spark", **context
        ) from exc
    except py4j_errors as exc:
        java = getattr(exc, "java_exception", None)
        raise EngineError(
            _first_line(java if java is not None else exc), engine="spark", **context
        ) from exc


# gRPC status codes of a Spark Connect call that mean the server is gone, not that it
# refused the statement: UNAVAILABLE (nothing answers, after the client's retries) and
# CANCELLED (the server shut down while the call ran).
_LOST = ("UNAVAILABLE", "CANCELLED")


def _lost_status(exc: Any) -> str | None:
    """The gRPC status name when a Spark Connect error means the server was lost."""
    status = getattr(exc, "getGrpcStatusCode", None)
    if status is None or exc.getCondition() is not None:  # an error the server reported
        return None
    name = str(getattr(status(), "name", ""))
    return name if name in _LOST else None


def _connect_client(session: Any) -> Any:
    """A Spark Connect session's client; None for a classic session (whose `client`
    attribute raises instead of being absent)."""
    if not type(session).__module__.startswith("pyspark.sql.connect"):
        return None
    return session.client


def _statement_kind(statement: exp.Expr) -> str:
    """`CREATE TABLE`, `DROP SCHEMA`, `INSERT`...: what a refused statement would do."""
    kind = statement.args.get("kind")
    words = [statement.key.upper(), str(kind).upper() if isinstance(kind, str) else ""]
    return " ".join(w for w in words if w)


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
