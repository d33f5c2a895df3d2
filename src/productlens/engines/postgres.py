"""The PostgreSQL engine: a server named by a libpq DSN, layers as schemas.

One psycopg 3 connection in autocommit mode carries every statement, so that
`transaction()`, `append_arrow` and the catalog all see the same session (temp tables
included). Rows go in as a binary COPY encoded from Arrow by pgpq on that same
connection (inside the caller's transaction when there is one), and come out as a CSV
COPY parsed by Arrow's C reader with the result's own column types (psycopg's row
loaders for the few types CSV cannot carry). No Python loop touches a row either way.

Transactions nest: the outermost `transaction()` is BEGIN ... COMMIT, an inner one is a
savepoint, so the atomic methods (`replace_table`, `overwrite_range`, `append_arrow`) keep
their guarantee on their own and join a caller's transaction when called inside one. An
error inside an inner block that the caller catches rolls back that block only.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import date
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlglot import exp
from sqlglot.errors import SqlglotError

from productlens.engines.base import TableKind, Transpiles, table
from productlens.errors import EngineError, EngineUnavailable

if TYPE_CHECKING:
    import psycopg

# Rows per Arrow batch handed to the COPY encoder: large enough to amortise a call, small
# enough to keep one encoded buffer (~10 MB for events) in memory at a time.
_COPY_BATCH_ROWS = 65_536
# A table is swapped in under its name from this temporary one (see replace_table).
_BUILDING_SUFFIX = "__building"
# PostgreSQL cuts identifiers to 63 bytes (NAMEDATALEN - 1) without an error.
_MAX_IDENTIFIER_BYTES = 63

# pg_class.relkind -> what the protocol calls it, and the DROP keyword for it.
_KINDS: dict[str, TableKind] = {"r": "table", "p": "table", "v": "view"}
_DROP_KIND = {"table": "TABLE", "view": "VIEW"}

# PostgreSQL's type (pg_type.typname) -> the Arrow type its values are fetched and loaded
# as. numeric takes its precision and scale from the column's modifier (see _arrow_type).
_ARROW_BY_TYPNAME: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "text": pa.string(),
    "varchar": pa.string(),
    "bpchar": pa.string(),
    "name": pa.string(),
    "json": pa.string(),
    "jsonb": pa.string(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "bytea": pa.binary(),
    "uuid": pa.string(),
}

# Arrow type -> the column type a temp table gets for it (checked in this order).
_SQL_BY_ARROW: tuple[tuple[Callable[[pa.DataType], bool], Callable[[pa.DataType], str]], ...] = (
    (pa.types.is_boolean, lambda _: "BOOLEAN"),
    (
        lambda t: pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t),
        lambda _: "SMALLINT",
    ),
    (lambda t: pa.types.is_int32(t) or pa.types.is_uint16(t), lambda _: "INT"),
    (lambda t: pa.types.is_int64(t) or pa.types.is_uint32(t), lambda _: "BIGINT"),
    (pa.types.is_uint64, lambda _: "DECIMAL(20, 0)"),
    (lambda t: pa.types.is_float16(t) or pa.types.is_float32(t), lambda _: "REAL"),
    (pa.types.is_float64, lambda _: "DOUBLE"),
    (pa.types.is_decimal, lambda t: f"DECIMAL({t.precision}, {t.scale})"),
    (lambda t: _is_text(t) or pa.types.is_null(t), lambda _: "VARCHAR"),
    (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), lambda _: "BLOB"),
    (pa.types.is_date, lambda _: "DATE"),
    (lambda t: pa.types.is_timestamp(t) and t.tz is None, lambda _: "TIMESTAMP"),
    (pa.types.is_timestamp, lambda _: "TIMESTAMPTZ"),
)

_MASK = "***"
# JIT compilation costs about 0.7 s of CPU per query on the short analytic queries a build
# runs, more than it saves; it changes no result.
_SESSION = (
    "SET TIME ZONE 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET extra_float_digits = 1",
    "SET jit = off",
)
# A client killed mid-statement (kill -9 of a build) is noticed by the server only when
# it next talks to it: a long CREATE TABLE ... AS ran on to its end, holding the swap's
# transaction and locks, and the next build waited behind it. PostgreSQL 14+ can poll
# the socket while a query runs and cancel a dead client's work.
_CHECK_CLIENT = "SET client_connection_check_interval = '2s'"
_READ_ONLY = "SET default_transaction_read_only = on"
# SQLSTATE read_only_sql_transaction: a write refused by a read-only session.
_READ_ONLY_REFUSED = "25006"
# The server's messages for SQLSTATE 57P03 (cannot_connect_now) at connection time.
_CANNOT_CONNECT_NOW = re.compile(
    r"FATAL:\s+the database system (is starting up|is shutting down|is in recovery mode"
    r"|is not yet accepting connections|is not accepting connections)"
)
_CHECKS_CLIENT_SINCE = 140000


def _unreachable(exc: Exception) -> bool:
    """Whether a failed connection attempt met no server to answer it (refused, timed
    out, no such host) or one that cannot take connections now (starting up, shutting
    down, in recovery: SQLSTATE 57P03). libpq gives a failed attempt no SQLSTATE, so a
    server's answer is told by the severity it prefixes ("FATAL:  database ... does not
    exist", a wrong password, a role that may not log in: settings to fix)."""
    message = str(exc)
    return "FATAL:" not in message or bool(_CANNOT_CONNECT_NOW.search(message))


def _regclass_of(parameter: exp.Expr) -> exp.Func:
    # to_regclass resolves a quoted qualified name (pg_temp included) or gives NULL.
    return exp.func("to_regclass", parameter)


# The catalog's own queries, written for PostgreSQL and rendered once: they read
# pg_catalog, which models never do, so they skip the transpiling (and the catalog
# look-ups it makes) every other statement goes through. `%s`: a bound parameter.
_KIND_SQL = (
    exp.select("relkind")
    .from_("pg_catalog.pg_class")
    .where(exp.column("oid").eq(_regclass_of(exp.Placeholder())))
    .sql(dialect="postgres")
)
_TABLES_SQL = (
    exp.select("c.relname")
    .from_("pg_catalog.pg_class AS c")
    .join("pg_catalog.pg_namespace AS n", on="n.oid = c.relnamespace")
    .where(exp.column("nspname", "n").eq(exp.Placeholder()))
    .where(exp.column("relkind", "c").isin(*map(exp.Literal.string, _KINDS)))
    .sql(dialect="postgres")
)
_COLUMNS_SQL = (
    exp.select(
        "a.attname",
        "t.typname",
        "a.atttypmod",
        exp.func("format_type", exp.column("atttypid", "a"), exp.column("atttypmod", "a")),
    )
    .from_("pg_catalog.pg_attribute AS a")
    .join("pg_catalog.pg_type AS t", on="t.oid = a.atttypid")
    .where(exp.column("attrelid", "a").eq(_regclass_of(exp.Placeholder())))
    .where("a.attnum > 0 AND NOT a.attisdropped")
    .order_by("a.attnum")
    .sql(dialect="postgres")
)


class PostgresEngine(Transpiles):
    """A PostgreSQL database reached by a DSN (`host=... dbname=...` or a
    `postgresql://` URL). Sessions run in UTC. Read-only (`read_only=True`, as the
    dashboard opens it), every transaction of the session is read-only
    (`default_transaction_read_only`): the server refuses any write."""

    dialect = "postgres"
    name = "postgres"

    def __init__(
        self, dsn: str, *, application_name: str = "productlens", read_only: bool = False
    ) -> None:
        import psycopg  # noqa: PLC0415 - only this engine needs the driver
        from psycopg.types.string import TextLoader  # noqa: PLC0415

        self._psycopg = psycopg
        where = _masked_dsn(dsn)
        try:
            self._con: psycopg.Connection[tuple[Any, ...]] = psycopg.connect(
                dsn, autocommit=True, application_name=application_name
            )
        except psycopg.ProgrammingError:
            # libpq's message may quote the DSN back, password and all.
            raise EngineError(
                "invalid PostgreSQL DSN: expected `key=value ...` or a postgresql:// URL",
                engine=self.name,
            ) from None
        except psycopg.Error as exc:
            reason = _hide(_first_line(exc), _password(dsn))
            # No server answered (refused, unreachable) or it is starting or stopping:
            # unavailable, as a connection lost later is. A server that answered with a
            # refusal (no such database or role, a wrong password) is a setting to fix.
            kind = EngineUnavailable if _unreachable(exc) else EngineError
            raise kind(
                f"cannot connect to PostgreSQL: {reason}", engine=self.name, dsn=where
            ) from None
        # JSON is kept as the text the source wrote; psycopg would parse it into objects.
        # uuid likewise as its text (Arrow has no uuid objects to take).
        for text_type in ("json", "jsonb", "uuid"):
            self._con.adapters.register_loader(text_type, TextLoader)
        # Times are UTC; dates print as ISO (the CSV path parses them); floats print with
        # the shortest text that reads back exactly, whatever the server's defaults.
        for setting in _SESSION:
            self._run(setting)
        if self._con.info.server_version >= _CHECKS_CLIENT_SINCE:
            self._run(_CHECK_CLIENT)
        if read_only:
            self._run(_READ_ONLY)

    # --- statements -------------------------------------------------------------------

    def render(self, expression: exp.Expr) -> str:
        try:
            return self._portable(expression).sql(dialect=self.dialect)
        except SqlglotError as exc:
            raise EngineError(
                f"cannot render for PostgreSQL: {_first_line(exc)}", engine=self.name
            ) from exc

    def execute(self, statement: exp.Expression) -> None:
        self._run(self.render(statement))

    def fetch_arrow(self, query: exp.Expression) -> pa.Table:
        """The result as CSV from `COPY (query) TO STDOUT`, parsed by Arrow's C reader
        with the result's own column types (about 4x faster than building Arrow from
        Python rows); results with a type CSV cannot carry exactly take the row path."""
        sql = self.render(query)
        if isinstance(query, exp.Query):
            probe = exp.select("*").from_(query.copy().subquery("result")).limit(0)
            with self._errors(sql=sql):
                description = self._con.execute(self.render(probe)).description or []
            types = [self._column_type(column) for column in description]
            if all(_csv_carries(name, arrow) for name, arrow in types):
                names = [column.name for column in description]
                try:
                    return self._fetch_csv(query, names, types)
                except pa.ArrowInvalid:
                    pass  # a value Arrow's parser does not take (a BC date...): rows below
        return self._fetch_rows(sql)

    def _fetch_csv(
        self, query: exp.Query, names: list[str], types: list[tuple[str, pa.DataType | None]]
    ) -> pa.Table:
        copy = exp.Copy(
            this=exp.Subquery(this=query.copy()),
            kind=False,
            files=[exp.Var(this="STDOUT")],
            params=[exp.CopyParameter(this=exp.Var(this="FORMAT"), expression=exp.Var(this="csv"))],
        )
        sql = self.render(copy)
        with self._errors(sql=sql), self._con.cursor().copy(sql) as reader:
            data = b"".join(bytes(chunk) for chunk in reader)
        read_as = [arrow if arrow is not None else pa.string() for _, arrow in types]
        if not data:
            columns = [pa.chunked_array([], type=arrow) for arrow in read_as]
        else:
            keys = [f"c{index}" for index in range(len(names))]  # names may repeat
            parsed = pacsv.read_csv(
                pa.BufferReader(data),
                # A block must hold a whole row (text may hold newlines): 16 MiB rows.
                read_options=pacsv.ReadOptions(column_names=keys, block_size=1 << 24),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict(zip(keys, read_as, strict=True)),
                    # PostgreSQL writes NULL as an empty field, '' as a quoted one.
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                    true_values=["t"],
                    false_values=["f"],
                ),
            )
            columns = list(parsed.columns)
        columns = [
            _decimal_from_text(column) if arrow is None else column
            for column, (_, arrow) in zip(columns, types, strict=True)
        ]
        return pa.Table.from_arrays(columns, names=names)

    def _fetch_rows(self, sql: str) -> pa.Table:
        with self._errors(sql=sql):
            cursor = self._con.execute(sql)
            rows = cursor.fetchall()
            description = cursor.description or []
        names = [column.name for column in description]
        values = list(zip(*rows, strict=True)) if rows else [() for _ in names]
        arrays = [
            _to_arrow(column_values, *self._column_type(column), column=column.name)
            for column_values, column in zip(values, description, strict=True)
        ]
        return pa.Table.from_arrays(arrays, names=names)

    def fetch_all(self, query: exp.Expression) -> list[tuple[object, ...]]:
        sql = self.render(query)
        with self._errors(sql=sql):
            return list(self._con.execute(sql).fetchall())

    # --- catalog ----------------------------------------------------------------------

    def ensure_schema(self, schema: str) -> None:
        self.execute(
            exp.Create(this=exp.to_identifier(schema, quoted=True), kind="SCHEMA", exists=True)
        )

    def table_kind(self, schema: str, name: str) -> TableKind | None:
        rows = self._catalog(_KIND_SQL, self._qualified(schema, name))
        return _KINDS.get(str(rows[0][0])) if rows else None

    def list_tables(self, schema: str) -> list[str]:
        return sorted(str(row[0]) for row in self._catalog(_TABLES_SQL, schema))

    def columns(self, schema: str, name: str) -> list[tuple[str, exp.DataType]]:
        return [
            (column, _sqlglot_type(typname, type_text))
            for column, typname, _, type_text in self._catalog_columns(schema, name)
        ]

    def drop(self, schema: str, name: str) -> None:
        kind = self.table_kind(schema, name)
        if kind is not None:
            self.execute(_drop(kind, schema, name))

    # --- writing ----------------------------------------------------------------------

    def replace_table(
        self, schema: str, name: str, query: exp.Query, *, partition_by: str | None = None
    ) -> int:
        """Build under `<name>__building`, then drop the old table or view and rename, all
        in one transaction: readers see the old table until the commit, and a failed build
        rolls back leaving nothing behind. `partition_by` is ignored (no partitions)."""
        building = _building_name(name)
        with self.transaction(), self._errors(table=f"{schema}.{name}"):
            self.drop(schema, building)  # a left-over of a crashed run, if any
            create = exp.Create(this=table(schema, building), kind="TABLE", expression=query.copy())
            rows = self._run(self.render(create), table=f"{schema}.{name}")
            kind = self.table_kind(schema, name)
            if kind is not None:
                self.execute(_drop(kind, schema, name))
            new_name = exp.Table(this=exp.to_identifier(name, quoted=True))
            self.execute(
                exp.Alter(
                    this=table(schema, building),
                    kind="TABLE",
                    actions=[exp.AlterRename(this=new_name)],
                )
            )
        return rows

    def replace_tables(
        self,
        schema: str,
        queries: Mapping[str, exp.Query],
        *,
        partition_by: Mapping[str, str] | None = None,
    ) -> int:
        """Every table built under its building name, then the old ones dropped and the
        new renamed, all in one transaction: readers see the old set until the commit, and
        a failure or a lost connection rolls all of it back. No partitions."""
        rows = 0
        with self.transaction():
            for name, query in queries.items():
                building = _building_name(name)
                with self._errors(table=f"{schema}.{name}"):
                    self.drop(schema, building)  # a left-over of a crashed run, if any
                    create = exp.Create(
                        this=table(schema, building), kind="TABLE", expression=query.copy()
                    )
                    rows += self._run(self.render(create), table=f"{schema}.{name}")
            for name in queries:
                kind = self.table_kind(schema, name)
                if kind is not None:
                    self.execute(_drop(kind, schema, name))
                new_name = exp.Table(this=exp.to_identifier(name, quoted=True))
                self.execute(
                    exp.Alter(
                        this=table(schema, _building_name(name)),
                        kind="TABLE",
                        actions=[exp.AlterRename(this=new_name)],
                    )
                )
        return rows

    def replace_view(self, schema: str, name: str, query: exp.Query) -> None:
        with self.transaction():
            kind = self.table_kind(schema, name)
            if kind is not None:
                self.execute(_drop(kind, schema, name))
            create = exp.Create(this=table(schema, name), kind="VIEW", expression=query.copy())
            self._run(self.render(create), table=f"{schema}.{name}")

    def overwrite_range(
        self, schema: str, name: str, column: str, start: date, query: exp.Query
    ) -> int:
        target = table(schema, name)
        names = [col for col, _ in self.columns(schema, name)]
        since = exp.column(column, quoted=True).__ge__(
            exp.cast(exp.Literal.string(start.isoformat()), "DATE")
        )
        new_rows = (
            exp.select(*(exp.column(col, quoted=True) for col in names))
            .from_(query.copy().subquery("new_rows"))
            .where(since.copy())
        )
        insert = exp.Insert(
            this=exp.Schema(
                this=target, expressions=[exp.to_identifier(c, quoted=True) for c in names]
            ),
            expression=new_rows,
        )
        with self.transaction():
            self.execute(exp.delete(target.copy(), where=since))
            self.execute(insert)
            count = self.fetch_all(exp.select(exp.func("count", exp.Star())).from_(target.copy()))
        return int(str(count[0][0]))

    def create_table(
        self, schema: str, name: str, columns: Sequence[tuple[str, exp.DataType]]
    ) -> None:
        definitions = [
            exp.ColumnDef(this=exp.to_identifier(column, quoted=True), kind=kind.copy())
            for column, kind in columns
        ]
        self.execute(
            exp.Create(
                this=exp.Schema(this=table(schema, name), expressions=definitions),
                kind="TABLE",
                exists=True,
            )
        )

    def append_arrow(self, schema: str, name: str, data: pa.Table | pa.RecordBatchReader) -> int:
        """One binary COPY of the rows, streamed batch by batch from a table or a reader
        (never held whole), each column cast (safely: no overflow, no lost digits) to its
        table column's type; JSON into jsonb is encoded as jsonb. An error in the stream,
        a refused value or Ctrl-C aborts the COPY: nothing of it is loaded."""
        where = f"{schema}.{name}"
        catalog = {
            col: (typname, typmod)
            for col, typname, typmod, _ in self._catalog_columns(schema, name)
        }
        if not catalog:
            raise EngineError("no such table to append to", engine=self.name, table=where)
        names = list(data.schema.names)
        unknown = [col for col in names if col not in catalog]
        if unknown or len(set(names)) != len(names):
            raise EngineError(
                f"the rows' columns {names} do not match the table's {list(catalog)}",
                engine=self.name,
                table=where,
            )
        batches = data.to_batches() if isinstance(data, pa.Table) else data
        copy = exp.Copy(
            this=exp.Schema(
                this=table(schema, name),
                expressions=[exp.to_identifier(col, quoted=True) for col in names],
            ),
            kind=True,
            files=[exp.Var(this="STDIN")],
            params=[
                exp.CopyParameter(this=exp.Var(this="FORMAT"), expression=exp.Var(this="binary"))
            ],
        )
        statement = copy.sql(dialect=self.dialect)

        def loadable(rows: pa.RecordBatch | pa.Table) -> list[pa.Array | pa.ChunkedArray]:
            return [
                _loadable(rows.column(i), *catalog[col], column=col, table=where)
                for i, col in enumerate(names)
            ]

        # The encoder takes the schema the rows are cast to (that of no rows, cast).
        cast_schema = pa.schema(
            pa.field(col, values.type)
            for col, values in zip(names, loadable(data.schema.empty_table()), strict=True)
        )
        encoder = _encoder(cast_schema, catalog)
        rows = 0
        with (
            self.transaction(),
            self._errors(table=where),
            self._con.cursor().copy(statement) as writer,
        ):
            writer.write(encoder.write_header())
            for batch in batches:
                cast = pa.RecordBatch.from_arrays(loadable(batch), schema=cast_schema)
                # Encoded a slice at a time: one buffer (~10 MB for events) in memory.
                for offset in range(0, cast.num_rows, _COPY_BATCH_ROWS):
                    writer.write(encoder.write_batch(cast.slice(offset, _COPY_BATCH_ROWS)))
                rows += cast.num_rows
            writer.write(encoder.finish())
        return rows

    @contextmanager
    def _temp_table(self, name: str, data: pa.Table) -> Iterator[exp.Table]:
        relation = table("pg_temp", name)
        definitions = [
            exp.ColumnDef(
                this=exp.to_identifier(field.name, quoted=True),
                kind=exp.DataType.build(_sql_type_for(field.type, name), dialect="duckdb"),
            )
            for field in data.schema
        ]
        self.execute(_drop("table", "pg_temp", name))  # one a failed block had to leave
        self.execute(
            exp.Create(
                this=exp.Schema(this=relation.copy(), expressions=definitions),
                kind="TABLE",
                properties=exp.Properties(expressions=[exp.TemporaryProperty()]),
            )
        )
        try:
            self.append_arrow("pg_temp", name, data)
            yield relation
        finally:
            # In a failed transaction no statement runs until its rollback: a DROP here
            # would only hide the block's own error.
            failed = self._psycopg.pq.TransactionStatus.INERROR
            if self._con.info.transaction_status != failed:
                self.execute(_drop("table", "pg_temp", name))

    def temp_table(self, name: str, data: pa.Table) -> AbstractContextManager[exp.Table]:
        """A TEMP table of this session loaded from the rows, dropped after the block."""
        return self._temp_table(name, data)

    def parquet_relation(self, paths: Sequence[str]) -> exp.Expression:
        raise EngineError(
            "PostgreSQL reads no Parquet files: load their rows with append_arrow",
            engine=self.name,
        )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._errors(), self._con.transaction():
            yield

    def transaction(self) -> AbstractContextManager[None]:
        """BEGIN ... COMMIT (a savepoint when nested); an exception rolls the block back."""
        return self._transaction()

    def forget_catalog(self) -> None:
        pass  # every catalog look-up asks the database

    def close(self) -> None:
        self._con.close()

    # --- internals --------------------------------------------------------------------

    def _run(self, sql: str, **context: str) -> int:
        """Run one statement; its row count (-1 when it has none)."""
        with self._errors(sql=sql, **context):
            return int(self._con.execute(sql).rowcount)

    @contextmanager
    def _errors(self, **context: str) -> Iterator[None]:
        """psycopg's errors as EngineError with PostgreSQL's first line; Ctrl-C is left
        alone (psycopg has already cancelled the query on the server)."""
        try:
            yield
        except self._psycopg.Error as exc:
            if "table" in context:
                context.pop("sql", None)
            elif "sql" in context:
                context["sql"] = _excerpt(context["sql"])
            if self._con.broken:
                # The server ended the session (restarted, or the backend was terminated)
                # or the network dropped it: no later statement on it can succeed.
                raise EngineUnavailable(
                    f"lost the PostgreSQL connection: {_first_line(exc)}",
                    engine=self.name,
                    **context,
                ) from exc
            message = _first_line(exc)
            if getattr(exc, "sqlstate", None) == _READ_ONLY_REFUSED:
                message = f"the warehouse is open read-only: {message}"
            raise EngineError(message, engine=self.name, **context) from exc

    def _qualified(self, schema: str, name: str) -> str:
        """`"schema"."name"`, quoted as to_regclass reads it."""
        return table(schema, name).sql(dialect=self.dialect)

    def _catalog(self, sql: str, parameter: str) -> list[tuple[Any, ...]]:
        """One of the catalog's prepared queries (`_KIND_SQL`...) with its parameter."""
        with self._errors(sql=sql):
            return list(self._con.execute(sql, (parameter,)).fetchall())

    def _catalog_columns(self, schema: str, name: str) -> list[tuple[str, str, int, str]]:
        """(column, typname, typmod, format_type) of a relation, in order (none when it
        does not exist)."""
        rows = self._catalog(_COLUMNS_SQL, self._qualified(schema, name))
        return [(str(c), str(t), int(m), str(f)) for c, t, m, f in rows]

    def _known_columns(self, schema: str, name: str) -> list[tuple[str, exp.DataType]] | None:
        # One catalog query: a relation that does not exist has no columns.
        return self.columns(schema, name) or None

    def _column_type(self, column: psycopg.Column) -> tuple[str, pa.DataType | None]:
        """A result column's type name and Arrow type (None: unknown, or numeric without
        a declared scale, whose scale is taken from the values)."""
        info = self._con.adapters.types.get(column.type_code)
        typname = info.name if info is not None else ""
        if info is not None and column.type_code == info.array_oid:
            typname = "_" + typname  # the registry answers an array's oid with its element
        if typname == "numeric":
            precision, scale = column.precision, column.scale
            return typname, (pa.decimal128(precision, scale or 0) if precision else None)
        return typname, _ARROW_BY_TYPNAME.get(typname)


def _encoder(schema: pa.Schema, catalog: Mapping[str, tuple[str, int]]) -> Any:
    """pgpq's binary COPY encoder for rows of this (loadable) schema: JSON text into a
    jsonb column is encoded as jsonb, every other column as pgpq infers it."""
    from pgpq import ArrowToPostgresBinaryEncoder  # noqa: PLC0415 - optional extra
    from pgpq.encoders import (  # noqa: PLC0415
        LargeStringEncoderBuilder,
        StringEncoderBuilder,
    )
    from pgpq.schema import Jsonb  # noqa: PLC0415

    jsonb_builders: dict[pa.DataType, Any] = {
        pa.string(): StringEncoderBuilder,
        pa.large_string(): LargeStringEncoderBuilder,
    }
    # pgpq wants an encoder for every field once one is given.
    encoders = {
        field.name: (
            jsonb_builders[field.type].new_with_output(field, Jsonb())
            if catalog[field.name][0] == "jsonb"
            else ArrowToPostgresBinaryEncoder.infer_encoder(field)
        )
        for field in schema
    }
    return ArrowToPostgresBinaryEncoder.new_with_encoders(schema, encoders)


def _loadable(
    values: pa.Array | pa.ChunkedArray, typname: str, typmod: int, *, column: str, table: str
) -> pa.Array | pa.ChunkedArray:
    """A column cast to the Arrow type its table column loads from, refusing what would
    change a value."""
    target = _arrow_type(typname, typmod, values.type)
    if target is None:
        raise EngineError(
            f"column {column!r}: cannot load Arrow {values.type} into PostgreSQL {typname}",
            engine="postgres",
            table=table,
        )
    if pa.types.is_string(target) and pa.types.is_large_string(values.type):
        target = values.type  # taken as it is (casting could overflow 32-bit offsets)
    try:
        # A zoned timestamp into a plain one keeps its UTC instant (naive means UTC here),
        # and the reverse reads a naive one as UTC: Arrow stores both as UTC already.
        loadable = values if values.type == target else values.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise EngineError(
            f"column {column!r}: cannot store {values.type} as {typname} without changing "
            f"values: {_first_line(exc)}",
            engine="postgres",
            table=table,
        ) from None
    if _is_text(target) and pc.any(pc.match_substring(loadable, "\x00")).as_py():
        raise EngineError(
            f"column {column!r}: text contains a NUL character, which PostgreSQL text cannot store",
            engine="postgres",
            table=table,
        )
    return loadable


def _is_text(arrow: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(arrow)
        or pa.types.is_large_string(arrow)
        or pa.types.is_string_view(arrow)
    )


def _arrow_type(typname: str, typmod: int, source: pa.DataType) -> pa.DataType | None:
    """The Arrow type a column of this PostgreSQL type is loaded from."""
    if typname != "numeric":
        return _ARROW_BY_TYPNAME.get(typname)
    if typmod >= 4:  # numeric(p, s): typmod = ((p << 16) | s) + 4
        precision, scale = (typmod - 4) >> 16, (typmod - 4) & 0xFFFF
        return pa.decimal128(precision, scale) if precision <= 38 else None
    if pa.types.is_decimal(source):
        return source
    if pa.types.is_integer(source):
        return pa.decimal128(20, 0)
    return None  # a float into unconstrained numeric has no exact scale to take


def _sqlglot_type(typname: str, type_text: str) -> exp.DataType:
    """A catalog type as SQLGlot's (format_type's text, e.g. `numeric(12,2)`, `jsonb`)."""
    return _parsed_type(typname, type_text).copy()


@functools.lru_cache(maxsize=256)
def _parsed_type(typname: str, type_text: str) -> exp.DataType:
    # Parsed once per type: every statement looks up the columns of the tables it reads.
    try:
        return exp.DataType.build(type_text, dialect="postgres")
    except SqlglotError:
        return exp.DataType.build(typname, dialect="postgres", udt=True)


def _sql_type_for(arrow: pa.DataType, table_name: str) -> str:
    for matches, sql in _SQL_BY_ARROW:
        if matches(arrow):
            return sql(arrow)
    raise EngineError(
        f"no PostgreSQL column type for Arrow {arrow}", engine="postgres", table=table_name
    )


def _to_arrow(
    values: Sequence[Any], typname: str, arrow_type: pa.DataType | None, *, column: str
) -> pa.Array | pa.ChunkedArray:
    # Arrow converts the whole column in C; the type comes from the result's description
    # so that an empty or all-null column keeps it.
    try:
        if arrow_type is not None:
            return pa.array(values, type=arrow_type)
        if typname == "numeric":
            return _decimal_from_text(pa.array(values).cast(pa.string()))
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise EngineError(
            f"column {column!r}: PostgreSQL {typname.lstrip('_')}"
            f"{'[]' if typname.startswith('_') else ''} has no Arrow form here: "
            f"{_first_line(exc)}",
            engine="postgres",
        ) from None


def _building_name(name: str) -> str:
    """`<name>__building`, or, when that would be cut to 63 bytes (and could become the
    name itself), the name's head with the suffix and a hash of the whole name."""
    building = name + _BUILDING_SUFFIX
    if len(building.encode()) <= _MAX_IDENTIFIER_BYTES:
        return building
    tail = f"{_BUILDING_SUFFIX}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    head = name.encode()[: _MAX_IDENTIFIER_BYTES - len(tail)].decode(errors="ignore")
    return head + tail


def _csv_carries(typname: str, arrow: pa.DataType | None) -> bool:
    """Whether a result column reads exactly from PostgreSQL's CSV text (bytea prints
    as hex text; arrays and other types have no Arrow parse)."""
    return typname != "bytea" and (arrow is not None or typname == "numeric")


def _decimal_from_text(text: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """numeric values without a declared scale (PostgreSQL's text, never an exponent) as
    decimal128(38, s), s the largest scale among them; decimal256 when 38 digits do not
    hold them."""
    dot = pc.find_substring(text, ".")
    digits = pc.if_else(pc.greater_equal(dot, 0), pc.subtract(pc.utf8_length(text), dot), 1)
    scale = max(int(pc.max(digits).as_py() or 1) - 1, 0)
    for decimal in (pa.decimal128(38, scale), pa.decimal256(76, scale)):
        try:
            return text.cast(decimal, safe=True)
        except pa.ArrowInvalid:
            continue
    raise EngineError(
        "a numeric value has no Arrow decimal (NaN, or more than 76 digits)", engine="postgres"
    )


def _drop(kind: TableKind, schema: str, name: str) -> exp.Drop:
    return exp.Drop(tables=[table(schema, name)], kind=_DROP_KIND[kind], exists=True)


def _first_line(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    text = str(primary or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _excerpt(sql: str, limit: int = 160) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _password(dsn: str) -> str | None:
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

    try:
        value = conninfo_to_dict(dsn).get("password")
    except Exception:  # noqa: BLE001 - an unparsable DSN has no password we can find
        return None
    return str(value) if value else None


def _hide(text: str, secret: str | None) -> str:
    return text.replace(secret, _MASK) if secret else text


def _masked_dsn(dsn: str) -> str:
    """The DSN for messages: its password replaced by ***, or just `<unparsable>`."""
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001
        return "<unparsable>"
    # The password's value is hidden wherever it shows (pasted into another field too).
    secret = str(parts.get("password") or "") or None
    shown = {
        key: (_MASK if key == "password" else _hide(str(value), secret))
        for key, value in parts.items()
    }
    return " ".join(f"{key}={value}" for key, value in shown.items())


__all__ = ["PostgresEngine"]
