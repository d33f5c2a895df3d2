"""Test helpers for cross-engine parity: copy DuckDB tables into PostgreSQL and Spark, run
queries there, and compare result tables with DuckDB's.

The PostgreSQL and Spark engines live on other branches; these helpers talk to psycopg
and a SparkSession directly (tests only), and build every statement with SQLGlot.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlglot
from sqlglot import exp

from productlens.engines import DuckDBEngine

Schema = dict[str, dict[str, dict[str, str]]]


def duck_arrow(engine: DuckDBEngine, query: exp.Query) -> pa.Table:
    """A query's result from DuckDB (the engine takes text on this branch)."""
    fetch: Callable[[Any], pa.Table] = engine.fetch_arrow
    return fetch(query.sql(dialect="duckdb"))


def duck_schema(engine: DuckDBEngine, schemas: Iterable[str]) -> Schema:
    """{schema: {table: {column: type}}} from DuckDB's catalog."""
    wanted = exp.Tuple(expressions=[exp.Literal.string(s) for s in schemas])
    query = (
        exp.select("table_schema", "table_name", "column_name", "data_type")
        .from_(exp.table_("columns", db="information_schema"))
        .where(exp.column("table_schema").isin(*wanted.expressions))
        .order_by("table_schema", "table_name", "ordinal_position")
    )
    out: Schema = {}
    found = duck_arrow(engine, query)
    for schema, table_name, column, data_type in zip(*found.to_pydict().values(), strict=True):
        out.setdefault(schema, {}).setdefault(table_name, {})[column] = data_type
    return out


def quoted(schema: str, name: str) -> exp.Table:
    return exp.table_(name, db=schema, quoted=True)


def select_all(schema: str, name: str) -> exp.Select:
    return exp.select("*").from_(quoted(schema, name))


# --- PostgreSQL --------------------------------------------------------------------------


def _pg_type(duck_type: str) -> exp.DataType:
    """The PostgreSQL column type: nested values (lists, structs) as JSON."""
    dtype = exp.DataType.build(duck_type, dialect="duckdb")
    return exp.DataType.build("jsonb") if dtype.is_type(*NESTED) else dtype


NESTED = (exp.DataType.Type.ARRAY, exp.DataType.Type.STRUCT, exp.DataType.Type.MAP)


def pg_copy(con: Any, engine: DuckDBEngine, schema: Schema, source: str) -> None:
    """Copy every table of one DuckDB schema into PostgreSQL by CSV COPY (nested values
    as JSON; an empty string stays distinct from NULL: Arrow's CSV quotes it)."""
    from psycopg import sql

    create_schema = exp.Create(this=exp.to_identifier(source, quoted=True), kind="SCHEMA")
    con.execute(create_schema.sql(dialect="postgres"))
    for name, columns in schema[source].items():
        target = quoted(source, name)
        pg_columns = {c: _pg_type(t) for c, t in columns.items()}
        definitions = [
            exp.ColumnDef(this=exp.to_identifier(c, quoted=True), kind=t)
            for c, t in pg_columns.items()
        ]
        create = exp.Create(this=exp.Schema(this=target, expressions=definitions), kind="TABLE")
        con.execute(create.sql(dialect="postgres"))
        projections = [
            exp.func("to_json", exp.column(c, quoted=True)).as_(c, quoted=True)
            if t.is_type(exp.DataType.Type.JSONB)
            else exp.column(c, quoted=True)
            for c, t in pg_columns.items()
        ]
        data = duck_arrow(engine, exp.select(*projections).from_(target))
        buffer = io.BytesIO()
        pacsv.write_csv(data, buffer, pacsv.WriteOptions(include_header=False))
        copy = sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv)").format(sql.Identifier(source, name))
        with con.cursor() as cur, cur.copy(copy) as pipe:
            pipe.write(buffer.getvalue())


def pg_columns(con: Any, schema: str, name: str) -> dict[str, exp.DataType]:
    """A PostgreSQL table's columns with SQLGlot types, as engine.columns reports them."""
    query = (
        exp.select("column_name", "data_type")
        .from_(exp.table_("columns", db="information_schema"))
        .where(
            exp.column("table_schema").eq(exp.Literal.string(schema))
            & exp.column("table_name").eq(exp.Literal.string(name))
        )
        .order_by("ordinal_position")
    )
    rows = con.execute(query.sql(dialect="postgres")).fetchall()
    return {column: _parsed_type(text, "postgres") for column, text in rows}


def _parsed_type(text: str, dialect: str) -> exp.DataType:
    try:
        return exp.DataType.build(text, dialect=dialect)
    except (sqlglot.errors.ParseError, ValueError):
        return exp.DataType.build("unknown")


def pg_arrow(con: Any, query: exp.Query, like: pa.Schema) -> pa.Table:
    """A PostgreSQL query's rows as Arrow, in the reference table's column types."""
    with con.cursor() as cur:
        cur.execute(query.sql(dialect="postgres"))
        rows = cur.fetchall()
        names = [d.name for d in cur.description]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = []
    for values, field in zip(columns, like, strict=False):
        arrays.append(pa.array([_plain(v) for v in values], type=_loose(field.type)))
    return pa.Table.from_arrays(arrays, names=names)


def _plain(value: Any) -> Any:
    from decimal import Decimal

    return float(value) if isinstance(value, Decimal) else value


def _loose(dtype: pa.DataType) -> pa.DataType | None:
    """Let pyarrow infer integers and floats (compared later by value)."""
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return None
    return dtype


# --- Spark -------------------------------------------------------------------------------


def spark_copy(spark: Any, engine: DuckDBEngine, schema: Schema, source: str) -> None:
    """Copy every table of one DuckDB schema into Spark as Parquet tables."""
    spark.sql(
        exp.Create(this=exp.to_identifier(source), kind="SCHEMA", exists=True).sql(dialect="spark")
    )
    for name in schema[source]:
        # One chunk per column: pyspark cannot convert a column without chunks (0 rows).
        data = duck_arrow(engine, select_all(source, name))
        data = pa.Table.from_arrays(
            [
                pa.concat_arrays(c.chunks) if c.num_chunks else pa.array([], c.type)
                for c in data.columns
            ],
            schema=data.schema,
        )
        spark.createDataFrame(data).write.mode("overwrite").saveAsTable(
            quoted(source, name).sql(dialect="spark")
        )


def spark_columns(spark: Any, schema: str, name: str) -> dict[str, exp.DataType]:
    """A Spark table's columns with SQLGlot types, as engine.columns reports them."""
    fields = spark.table(quoted(schema, name).sql(dialect="spark")).schema.fields
    return {f.name: _parsed_type(f.dataType.simpleString(), "spark") for f in fields}


def spark_drop_schemas(spark: Any, schemas: Iterable[str]) -> None:
    """Drop Spark databases with their tables (and files)."""
    for schema in schemas:
        name = exp.Table(db=exp.to_identifier(schema))
        drop = exp.Drop(tables=[name], kind="SCHEMA", exists=True, cascade=True)
        spark.sql(drop.sql(dialect="spark"))


def spark_arrow(spark: Any, query: exp.Query) -> pa.Table:
    result: pa.Table = spark.sql(query.sql(dialect="spark")).toArrow()
    return result


# --- comparing ---------------------------------------------------------------------------


def _kind(dtype: pa.DataType) -> str:
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "number"
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    return str(dtype)


def _normalised(table: pa.Table) -> pa.Table:
    """Numbers as float64, timestamps as naive UTC microseconds (an aware timestamp's
    UTC instant: Arrow stores instants in UTC)."""
    return pa.Table.from_arrays(
        [_normalised_column(column) for column in table.columns], names=table.column_names
    )


def _normalised_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    dtype = column.type
    if _kind(dtype) == "number":
        return pc.cast(column, pa.float64())
    if pa.types.is_timestamp(dtype):
        naive = pa.timestamp(dtype.unit)
        utc = pa.chunked_array([chunk.view(naive) for chunk in column.chunks], naive)
        return pc.cast(utc, pa.timestamp("us"))
    return column


def differences(expected: pa.Table, actual: pa.Table) -> list[str]:
    """Why two result tables differ as multisets of rows (floats to 1e-9 relative); empty
    when they are equal."""
    if expected.column_names != actual.column_names:
        return [f"columns {actual.column_names} != {expected.column_names}"]
    problems = [
        f"{name}: {_kind(a.type)} != {_kind(e.type)}"
        for name, e, a in zip(expected.column_names, expected.schema, actual.schema, strict=True)
        if _kind(a.type) != _kind(e.type) and a.type != pa.null() and e.type != pa.null()
    ]
    if problems:
        return problems
    if expected.num_rows != actual.num_rows:
        return [f"{actual.num_rows} rows != {expected.num_rows}"]
    left, right = _normalised(expected), _normalised(actual)
    # Sort by every column, floats rounded to 9 significant digits so that values within
    # the tolerance sort alike.
    keys = [
        name
        for name, f in zip(left.column_names, left.schema, strict=True)
        if pa.types.is_floating(f.type) is False and _sortable(f.type)
    ]
    floats = [
        n
        for n, f in zip(left.column_names, left.schema, strict=True)
        if pa.types.is_floating(f.type)
    ]
    left, right = _sorted(left, keys, floats), _sorted(right, keys, floats)
    out = []
    for name in left.column_names:
        e, a = left[name].to_pylist(), right[name].to_pylist()
        bad = [(x, y) for x, y in zip(e, a, strict=True) if not _same(x, y)]
        if bad:
            out.append(f"{name}: {len(bad)} values differ, e.g. {bad[:3]}")
    return out


def _sortable(dtype: pa.DataType) -> bool:
    return not (pa.types.is_list(dtype) or pa.types.is_struct(dtype) or pa.types.is_map(dtype))


def _sorted(table: pa.Table, keys: list[str], floats: list[str]) -> pa.Table:
    helper = table
    sort_keys: list[tuple[str, str]] = [(k, "ascending") for k in keys]
    for name in floats:
        rounded = pc.round(helper[name], 6)
        helper = helper.append_column(f"__r_{name}", rounded)
        sort_keys.append((f"__r_{name}", "ascending"))
    order = pc.sort_indices(helper, sort_keys=sort_keys)
    return table.take(order)


def _same(x: Any, y: Any) -> bool:
    if x is None or y is None:
        return x is None and y is None
    if isinstance(x, float) and isinstance(y, float):
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) and math.isnan(y)
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)
    return bool(x == y)
