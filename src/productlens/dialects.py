"""Models are written in DuckDB's SQL dialect; this module makes them run elsewhere.

`transpile` qualifies a query with the tables' columns known (every column bound to its
table, `*` expanded), annotates every expression with its type, and then applies the
per-dialect overrides in `OVERRIDES`: a dispatch table from dialect to expression type to
a rewrite. SQLGlot's generator does the rest when the engine renders the tree for its
dialect. An override exists only where SQLGlot's own translation is wrong or missing,
and each one is covered by the portability test (tests/test_portability.py), which runs
the construct on DuckDB, PostgreSQL and Spark and compares the answers; one more
(`materialized_when_shared`) keeps a DuckDB planner hint from steering PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

from sqlglot import exp
from sqlglot.optimizer.annotate_types import TypeAnnotator
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

SOURCE_DIALECT = "duckdb"

# {schema: {table: {column: type}}}, as engine.columns reports them.
Schema = Mapping[str, Mapping[str, Mapping[str, exp.DataType | str]]]
Rewrite = Callable[[exp.Expr], exp.Expr]


T = exp.DataType.Type
FLOATS = {T.DOUBLE, T.FLOAT}


class _DuckDBTypes(TypeAnnotator):
    """SQLGlot's type inference, plus DuckDB's `date - date`: a number of days (SQLGlot
    types it a date, which would mislead every rule reading the column downstream)."""

    BINARY_COERCIONS: ClassVar = {
        **TypeAnnotator.BINARY_COERCIONS,
        (T.DATE, T.DATE): lambda _left, _right: T.BIGINT,
    }


def _is(node: exp.Expr, *types: exp.DType) -> bool:
    return node.type is not None and node.type.this in types


def _floating(node: exp.Expr) -> bool:
    """Typed double, and not a literal like 90.0 (a decimal in PostgreSQL and Spark)."""
    return _is(node, *FLOATS) and not isinstance(node, exp.Literal)


def _double(node: exp.Expr) -> exp.Expr:
    return node if _floating(node) else exp.cast(node, T.DOUBLE)


def float_division(node: exp.Expr) -> exp.Expr:
    """`/` divides in double precision, as in DuckDB: Spark divides decimals (a literal
    like 90.0 is one) in decimal and rounds the quotient to 6 places."""
    assert isinstance(node, exp.Div)
    if _floating(node.this) or _floating(node.expression):
        return node
    return exp.Div(this=_double(node.this), expression=node.expression)


def average_in_double(node: exp.Expr) -> exp.Expr:
    """`avg` of integers or decimals is a double in DuckDB; PostgreSQL averages them in
    numeric (a Decimal with 16 or more places reaches Python, and the columns built on it
    are numeric). The argument is cast to double, as `avg(distinct x)`'s."""
    assert isinstance(node, exp.Avg)
    argument = node.this
    if isinstance(argument, exp.Distinct):
        values = argument.expressions
        if len(values) == 1 and not _floating(values[0]):
            argument.set("expressions", [exp.cast(values[0], T.DOUBLE)])
        return node
    if argument is None or _floating(argument):
        return node
    node.set("this", exp.cast(argument, T.DOUBLE))
    return node


def date_difference_in_days(node: exp.Expr) -> exp.Expr:
    """`date - date` is a whole number of days in DuckDB (and PostgreSQL); Spark gives an
    interval."""
    assert isinstance(node, exp.Sub)
    if _is(node.this, T.DATE) and _is(node.expression, T.DATE):
        return exp.DateDiff(this=node.this, expression=node.expression, unit=exp.var("DAY"))
    return node


def days_interval(node: exp.Expr) -> exp.Expr:
    """`to_days(n)`: n times a one-day interval (neither target knows to_days)."""
    assert isinstance(node, exp.ToDays)
    one_day = exp.Interval(this=exp.Literal.string("1"), unit=exp.var("DAY"))
    return exp.paren(exp.Mul(this=node.this, expression=one_day), copy=False)


def parenthesized_shift(node: exp.Expr) -> exp.Expr:
    """`a & (b << k)` built as a tree prints as `a & b << k`, which PostgreSQL reads as
    `(a & b) << k` (its bitwise and shift operators share one precedence)."""
    return node if isinstance(node.parent, exp.Paren) else exp.paren(node.copy(), copy=False)


def isodow_postgres(node: exp.Expr) -> exp.Expr:
    """ISO weekday (Monday 1 .. Sunday 7) as PostgreSQL's `extract(isodow)`."""
    return exp.Extract(this=exp.var("ISODOW"), expression=node.this)


def isodow_spark(node: exp.Expr) -> exp.Expr:
    """ISO weekday from Spark's `dayofweek` (Sunday 1 .. Saturday 7): SQLGlot's own
    `dayofweek % 7 + 1` puts Sunday at 2 and Monday at 3."""
    shifted = exp.paren(exp.Add(this=exp.DayOfWeek(this=node.this), expression=exp.convert(5)))
    monday_zero = exp.paren(exp.Mod(this=shifted, expression=exp.convert(7)))
    return exp.Add(this=monday_zero, expression=exp.convert(1))


def isoyear_spark(node: exp.Expr) -> exp.Expr:
    """`extract(isoyear)` is `extract(yearofweek)` in Spark (the ISO 8601 year)."""
    assert isinstance(node, exp.Extract)
    if node.this.name.upper() == "ISOYEAR":
        return exp.Extract(this=exp.var("YEAROFWEEK"), expression=node.expression)
    return node


def sorted_array_agg_postgres(node: exp.Expr) -> exp.Expr:
    """`list_sort(list(x))`, a group's values sorted: PostgreSQL 15 has no `array_sort`;
    `array_agg(x ORDER BY x)` is the same list (ascending, nulls last)."""
    assert isinstance(node, exp.ArraySort)
    agg = node.this
    if not isinstance(agg, exp.ArrayAgg) or isinstance(agg.this, exp.Order) or node.expression:
        return node
    value = agg.this
    ordered = exp.Ordered(this=value.copy(), nulls_first=False)
    return exp.ArrayAgg(this=exp.Order(this=value, expressions=[ordered]))


def plain_cte(node: exp.Expr) -> exp.Expr:
    """Spark has no `AS MATERIALIZED` (a planner hint; results are the same)."""
    node.set("materialized", None)
    return node


def materialized_when_shared(node: exp.Expr) -> exp.Expr:
    """`AS NOT MATERIALIZED` is a DuckDB choice (its tables' zone maps make scanning again
    cheaper than a copy); PostgreSQL decides itself, and materializes a CTE read more
    than once (a heap has no zone maps). Results are the same."""
    if node.args.get("materialized") is False:
        node.set("materialized", None)
    return node


def epoch_seconds_spark(node: exp.Expr) -> exp.Expr:
    """`epoch(ts)` keeps microseconds; Spark's unix_timestamp truncates to the second."""
    micros = exp.func("unix_micros", exp.cast(node.this, T.TIMESTAMPLTZ))
    return exp.Div(this=exp.cast(micros, T.DOUBLE), expression=exp.Literal.number(1_000_000))


def interval_spark(node: exp.Expr) -> exp.Expr:
    """`interval (30) minute`: Spark takes a quoted number; an expression count becomes a
    multiple of one unit."""
    assert isinstance(node, exp.Interval)
    count = node.this.unnest() if node.this is not None else None
    unit = node.args.get("unit")
    if count is None or unit is None or (isinstance(count, exp.Literal) and count.is_string):
        return node
    if isinstance(count, exp.Literal):
        return exp.Interval(this=exp.Literal.string(count.this), unit=unit)
    one = exp.Interval(this=exp.Literal.string("1"), unit=unit)
    return exp.paren(exp.Mul(this=count, expression=one), copy=False)


def int_day_count_spark(node: exp.Expr) -> exp.Expr:
    """Spark's date_add/date_sub take an INT count; DuckDB's day arithmetic any integer."""
    assert isinstance(node, exp.DateAdd | exp.DateSub)
    count = node.expression
    if _is(count, T.INT, T.SMALLINT, T.TINYINT) or isinstance(count, exp.Literal):
        return node
    node.set("expression", exp.cast(count, T.INT))
    return node


def window_nulls_last_bigquery(node: exp.Expr) -> exp.Expr:
    """DuckDB sorts NULLs last; BigQuery's windows accept no NULLS LAST, so an ascending
    key `x` becomes `x IS NULL, x` (the same order)."""
    assert isinstance(node, exp.Window)
    order = node.args.get("order")
    if order is None:
        return node
    keys: list[exp.Expr] = []
    for key in order.expressions:
        if (
            isinstance(key, exp.Ordered)
            and not key.args.get("desc")
            and not key.args.get("nulls_first")
        ):
            is_null = exp.Is(this=key.this.copy(), expression=exp.null())
            keys.append(exp.Ordered(this=is_null, nulls_first=True))  # never null
            keys.append(exp.Ordered(this=key.this, nulls_first=True))
        else:
            keys.append(key)
    order.set("expressions", keys)
    return node


OVERRIDES: dict[str, dict[type[exp.Expr], Rewrite]] = {
    "bigquery": {
        exp.Window: window_nulls_last_bigquery,
    },
    "postgres": {
        exp.Avg: average_in_double,
        exp.BitwiseLeftShift: parenthesized_shift,
        exp.BitwiseRightShift: parenthesized_shift,
        exp.ToDays: days_interval,
        exp.DayOfWeekIso: isodow_postgres,
        exp.ArraySort: sorted_array_agg_postgres,
        exp.CTE: materialized_when_shared,
    },
    "spark": {
        exp.Div: float_division,
        exp.Sub: date_difference_in_days,
        exp.ToDays: days_interval,
        exp.DayOfWeekIso: isodow_spark,
        exp.Extract: isoyear_spark,
        exp.CTE: plain_cte,
        exp.TimeToUnix: epoch_seconds_spark,
        exp.Interval: interval_spark,
        exp.DateAdd: int_day_count_spark,
        exp.DateSub: int_day_count_spark,
    },
}


def _drop_self_aliases(tree: exp.Expr) -> None:
    """`t.x AS x` -> `t.x` in select lists and `FROM t AS t` -> `FROM t`: the same query,
    and Spark 4's analyzer and optimizer (rule RemoveRedundantAliases) reject their own
    plans for some queries qualified so."""
    for table in tree.find_all(exp.Table):
        if table.alias and table.alias == table.name and not table.db:
            table.set("alias", None)
    for alias in list(tree.find_all(exp.Alias)):
        column = alias.this
        if (
            isinstance(column, exp.Column)
            and column.name == alias.alias
            and isinstance(alias.parent, exp.Select)
            and alias.arg_key == "expressions"
        ):
            alias.replace(column)


def transpile(query: exp.Query, dialect: str, schema: Schema | None = None) -> exp.Query:
    """The query, qualified and typed, with the target dialect's overrides applied.

    The result is still a DuckDB-dialect tree in form (an engine renders it with
    `.sql(dialect)`); for DuckDB itself the query is returned unchanged.
    """
    if dialect == SOURCE_DIALECT:
        return query
    mapping = MappingSchema(
        {s: {t: dict(cols) for t, cols in tables.items()} for s, tables in (schema or {}).items()},
        dialect=SOURCE_DIALECT,
    )
    tree = qualify(
        query.copy(),
        dialect=SOURCE_DIALECT,
        schema=mapping,
        validate_qualify_columns=False,
        identify=False,
    )
    _drop_self_aliases(tree)
    tree = _DuckDBTypes(schema=mapping).annotate(tree)
    rules = OVERRIDES.get(dialect, {})
    if rules:
        # Children first, so a rule sees its operands already rewritten (and typed).
        for node in reversed(list(tree.walk())):
            rule = rules.get(type(node))
            if rule is not None:
                replacement = rule(node)
                if replacement is not node:  # no rule rewrites a whole query
                    node.replace(replacement)
    assert isinstance(tree, exp.Query)
    return tree


ColumnsOf = Callable[[str, str], Sequence[tuple[str, exp.DataType]] | None]


def for_engine(expression: exp.Expr, dialect: str, columns_of: ColumnsOf) -> exp.Expr:
    """A statement for an engine of `dialect`: each query in it transpiled (`transpile`)
    with the columns of the tables it reads, as `columns_of(schema, name)` reports them
    (None for a table the catalog does not know). An engine calls this before rendering,
    so every caller's DuckDB-dialect SQL runs alike on every engine."""
    if dialect == SOURCE_DIALECT:
        return expression
    if isinstance(expression, exp.Query) and not isinstance(expression, exp.Subquery):
        return transpile(expression, dialect, _schema_of(expression, columns_of))
    # A statement around queries (CREATE TABLE AS, INSERT, COPY (query) TO): each
    # outermost query in it.
    expression = expression.copy()
    for node in list(expression.find_all(exp.Query)):
        if isinstance(node, exp.Subquery) or _inside_query(node):
            continue
        node.replace(transpile(node, dialect, _schema_of(node, columns_of)))
    return expression


def _inside_query(node: exp.Expr) -> bool:
    """Whether a query is part of a larger one (a parenthesized wrapper does not count)."""
    parent = node.parent
    while parent is not None:
        if isinstance(parent, exp.Query) and not isinstance(parent, exp.Subquery):
            return True
        parent = parent.parent
    return False


def _schema_of(query: exp.Expr, columns_of: ColumnsOf) -> Schema:
    """The columns of every schema-qualified table the query reads."""
    found: dict[str, dict[str, dict[str, exp.DataType | str]]] = {}
    for table in query.find_all(exp.Table):
        if not table.db or not isinstance(table.this, exp.Identifier):
            continue
        if table.name in found.get(table.db, {}):
            continue
        columns = columns_of(table.db, table.name)
        if columns:
            found.setdefault(table.db, {})[table.name] = dict(columns)
    return found
