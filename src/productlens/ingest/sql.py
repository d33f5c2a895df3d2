"""Ingestion's SQL as SQLGlot expressions: fixed text in DuckDB's dialect, parsed once, with
slots filled by expressions, identifiers, literals or types. Nothing from a file, a path or
the configuration is pasted into SQL text; the processor renders the finished expression
(`LakeProcessor.execute`).

A slot is an unquoted name between double underscores, `__value__`, written where the SQL
holds a column (filled with any expression), a table (filled with a table or a subquery,
which keeps the slot's alias), an alias (filled with an identifier), a setting's value or
a type
(`CAST(x AS __type__)`, filled with a type name); `SELECT __query__` alone is a slot for a
whole query in `COPY (SELECT __query__) TO ...` (where SQLGlot's grammar wants one), and
`'__name__'` a slot where only a string parses (`TO '__path__' (FORMAT parquet)`). Slots
are never quoted, so a source column named `__value__` (always quoted) is no slot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

import sqlglot
from sqlglot import exp

SLOT = re.compile(r"__([a-z][a-z0-9_]*?)__")

# What a slot is filled with: an expression (used as it is), a type (`Type("BIGINT")`), or
# a Python value (str, int, float, bool, None), made a literal.
Value = exp.Expr | str | int | float | bool | None


class Type(str):
    """A type name, for a type slot (`CAST(x AS __type__)`)."""


@lru_cache(maxsize=1024)
def _parsed(text: str) -> exp.Expr:
    tree = sqlglot.parse_one(text, read="duckdb")
    assert tree is not None
    return tree


def _slot(node: exp.Expr) -> str | None:
    """The slot a node is, if any: an unquoted identifier, column or table `__name__`, or a
    user-defined type of that name."""
    if _copied_query(node):
        return _slot(node.expressions[0])
    if isinstance(node, exp.DataType) and node.this == exp.DType.USERDEFINED:
        name = str(node.args.get("kind") or "")
    elif isinstance(node, exp.Column) and not node.table:
        if not isinstance(node.this, exp.Identifier) or node.this.quoted:
            return None
        name = node.name
    elif isinstance(node, exp.Table) and not node.db and isinstance(node.this, exp.Identifier):
        if node.this.quoted:
            return None
        name = node.name
    elif isinstance(node, exp.Identifier) and not node.quoted:
        name = node.name
    elif isinstance(node, exp.Literal) and node.is_string:  # where only text parses: '__v__'
        name = node.this
    elif isinstance(node, exp.Var):  # a value where SQLGlot reads words (SET x = __v__)
        name = node.name
    else:
        return None
    match = SLOT.fullmatch(name)
    return match.group(1) if match else None


def _as_expression(value: Value) -> exp.Expr:
    if isinstance(value, exp.Expr):
        return value.copy()
    if isinstance(value, Type):
        return exp.DataType.build(str(value), dialect="duckdb")
    return exp.convert(value)


def _put(node: exp.Expr, value: Value) -> exp.Expr:
    """`value` in the place of slot `node`."""
    new = _as_expression(value)
    if isinstance(node, exp.Table) and not isinstance(new, exp.Table | exp.DerivedTable):
        new = exp.Table(this=new)  # a table function: read_parquet([...])
    if isinstance(node, exp.Table) and node.args.get("alias") is not None:
        new.set("alias", node.args["alias"].copy())
    if isinstance(node, exp.Identifier) and not isinstance(new, exp.Identifier):
        raise TypeError(f"slot {node.name} takes an identifier, got {new.sql('duckdb')}")
    return new


def fill(text: str, **values: Value) -> exp.Expr:
    """Parse fixed SQL text (once) and fill its slots; every slot must be given a value and
    every value must have its slot."""
    seen: set[str] = set()

    def replace(node: exp.Expr) -> exp.Expr:
        name = _slot(node)
        if name is None:
            return node
        if name not in values:
            raise KeyError(f"no value for slot __{name}__ in {text!r}")
        seen.add(name)
        return _put(node, values[name])

    tree = _parsed(text).copy().transform(replace, copy=False)
    if unused := set(values) - seen:
        raise KeyError(f"no slot for {sorted(unused)} in {text!r}")
    return tree


def ident(name: str) -> exp.Identifier:
    """A quoted identifier."""
    return exp.to_identifier(name, quoted=True)


def col(name: str, table: str | None = None) -> exp.Column:
    """A quoted column, optionally qualified by an (unquoted, internal) table alias."""
    return exp.Column(this=ident(name), table=exp.to_identifier(table) if table else None)


def table(name: str, schema: str | None = None) -> exp.Table:
    """A quoted table name, optionally in an (unquoted, internal) schema."""
    return exp.Table(this=ident(name), db=exp.to_identifier(schema) if schema else None)


def string(value: str) -> exp.Literal:
    """A string literal."""
    return exp.Literal.string(value)


def text_list(values: Iterable[str]) -> exp.Array:
    """A DuckDB list literal of strings: `['a', 'b']`."""
    return exp.Array(expressions=[string(v) for v in values])


def join(items: Iterable[exp.Expr], op: type[exp.Connector]) -> exp.Expr:
    """Items joined by AND or OR, left to right (as the text `a OR b OR c` parses)."""
    listed = list(items)
    result = listed[0]
    for item in listed[1:]:
        result = op(this=result, expression=item)
    return result


def paren(value: exp.Expr) -> exp.Paren:
    return exp.Paren(this=value)


def aliased(value: exp.Expr, name: str | exp.Identifier) -> exp.Alias:
    """`value AS name` (a str name is quoted)."""
    return exp.Alias(this=value, alias=ident(name) if isinstance(name, str) else name)


def as_from(relation: exp.Expr, alias: str) -> exp.Expr:
    """A relation (a table, a subquery or a table function) as a FROM item `alias`."""
    return _put(
        exp.Table(
            this=exp.to_identifier("__"), alias=exp.TableAlias(this=exp.to_identifier(alias))
        ),
        relation,
    )


def query(template: str, **values: Value) -> exp.Query:
    """`fill` for a query (a SELECT or a set operation)."""
    tree = fill(template, **values)
    assert isinstance(tree, exp.Query)
    return tree


def render(statement: exp.Expr) -> str:
    """The SQL DuckDB runs (the processor's one place of rendering)."""
    return statement.sql(dialect="duckdb")


def _copied_query(node: exp.Expr) -> bool:
    """`SELECT __query__` as the query of a COPY statement."""
    return (
        isinstance(node, exp.Select)
        and isinstance(node.parent, exp.Subquery)
        and isinstance(node.parent.parent, exp.Copy)
        and len(node.expressions) == 1
        and not any(v for k, v in node.args.items() if k != "expressions")
    )
