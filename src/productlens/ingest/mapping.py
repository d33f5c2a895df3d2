"""Mappings from a source file's columns onto a contract table.

A contract column takes its value from a source column of the same name, a renamed one
(`columns = { customer_id = "user_id" }`, source -> target), or an expression over source
columns (`expressions = { user_id = "coalesce(userId, anonymousId)" }`, target ->
expression). A row filter (`where = "type = 'track'"`) is an expression too.

Expressions are SQL parsed and checked with SQLGlot: column references (with nested
paths into structs or JSON: `context.device.type`), literals, operators, CASE, casts and
a fixed list of scalar functions. Subqueries, statements, table functions and any other
function are refused with a message naming the expression. Every column reference is
resolved against the file's columns and re-quoted, so a column named `select` or
`a"b` is just a name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from productlens.errors import IngestError
from productlens.ingest.casts import is_nested
from productlens.ingest.sql import fill, string

# Node types an expression may contain (besides the functions below).
ALLOWED_NODES: tuple[type[exp.Expression], ...] = (
    exp.Column, exp.Identifier, exp.Dot, exp.Literal, exp.Null, exp.Boolean, exp.Paren,
    exp.Cast, exp.TryCast, exp.DataType, exp.DataTypeParam, exp.Var, exp.Case, exp.If,
    exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg, exp.DPipe, exp.Bracket,
    exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ,
    exp.And, exp.Or, exp.Not, exp.In, exp.Is, exp.Like, exp.ILike, exp.Between, exp.Tuple,
    exp.JSONPath, exp.JSONPathKey, exp.JSONPathRoot, exp.JSONPathSubscript,
)  # fmt: skip
# Scalar functions an expression may call, by SQLGlot class ...
ALLOWED_FUNCTIONS: tuple[type[exp.Expression], ...] = (
    exp.Coalesce, exp.Nullif, exp.Concat, exp.ConcatWs, exp.MD5, exp.SHA, exp.SHA2,
    exp.Lower, exp.Upper, exp.Trim, exp.Substring, exp.Left, exp.Right, exp.Length,
    exp.Replace, exp.SplitPart, exp.RegexpReplace, exp.RegexpExtract, exp.RegexpLike,
    exp.StrToTime, exp.UnixToTime, exp.JSONExtract, exp.JSONExtractScalar, exp.Abs,
    exp.Round, exp.Floor, exp.Ceil, exp.Greatest, exp.Least, exp.StrPosition,
    exp.ToChar, exp.TimeToStr, exp.Initcap,
)  # fmt: skip
# ... and by name, for functions SQLGlot does not model.
ALLOWED_NAMES = frozenset(
    {"hash", "md5_number", "sha1", "sha256", "to_json", "json_extract_path_text",
     "string_split", "list_extract", "array_extract", "epoch_us", "epoch_ns", "try_strptime",
     "make_timestamp", "ltrim", "rtrim", "json_value", "json_type", "struct_extract",
     "element_at", "try"}
)  # fmt: skip
# Not allowed on purpose: padding and formatting functions (lpad, rpad, printf, format)
# take a width, and one value could ask for gigabytes.


@dataclass(frozen=True)
class Mapped:
    """Where one contract column's value comes from: an expression over the source
    relation (aliased `src`), its DuckDB type, and the source columns it reads."""

    sql: exp.Expr
    type: str
    sources: frozenset[str] = field(default_factory=frozenset)
    expression: str | None = None  # the configured expression, for messages
    column: str | None = None  # the source column, when the value is one read as it is


def parse_expression(text: str, what: str) -> exp.Expression:
    """Parse and check one mapping expression; `what` names it in errors."""
    try:
        statements = sqlglot.parse(text, read="duckdb")
    except ParseError as exc:
        raise IngestError(f"{what}: not a valid expression ({_first(exc)}): {text!r}") from None
    if len(statements) != 1 or statements[0] is None:
        raise IngestError(f"{what}: one expression expected, got {text!r}")
    tree = statements[0]
    if not isinstance(tree, exp.Expression):
        raise IngestError(f"{what}: one expression expected, got {text!r}")
    for node in tree.walk():
        if isinstance(node, (*ALLOWED_NODES, *ALLOWED_FUNCTIONS)):
            continue
        if isinstance(node, exp.Anonymous) and node.name.lower() in ALLOWED_NAMES:
            continue
        kind = node.sql("duckdb") if isinstance(node, exp.Func) else type(node).__name__
        raise IngestError(
            f"{what}: {kind!r} is not allowed in a mapping expression (column references, "
            f"literals, operators, CASE, casts and scalar functions only): {text!r}"
        )
    return tree


def _first(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _path(node: exp.Expression) -> list[exp.Identifier] | None:
    """A column reference with its dotted path, as identifiers: `a.b.c` -> [a, b, c]."""
    if isinstance(node, exp.Column):
        return [
            part
            for part in (node.args.get(k) for k in ("catalog", "db", "table", "this"))
            if isinstance(part, exp.Identifier)
        ]
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Identifier):
        head = _path(node.this)
        return None if head is None else [*head, node.expression]
    return None


def _source_name(
    names: list[exp.Identifier], columns: Mapping[str, str], what: str, text: str
) -> tuple[str, list[str]]:
    """The source column a dotted path starts from (the longest dotted prefix that names
    a column, so a flattened `context.device.type` column wins), and the rest."""
    parts = [n.name for n in names]
    lower: dict[str, list[str]] = {}
    for c in columns:
        lower.setdefault(c.lower(), []).append(c)
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        if name in columns:
            return name, parts[cut:]
        matches = lower.get(name.lower(), [])
        if len(matches) == 1 and not any(n.quoted for n in names[:cut]):
            return matches[0], parts[cut:]
    raise IngestError(
        f"{what}: no column {'.'.join(parts)!r} in the file (it has "
        f"{', '.join(columns) or 'no columns'}): {text!r}"
    )


def _present(names: list[exp.Identifier], columns: Mapping[str, str]) -> bool:
    """Whether a dotted path starts at a column the file has."""
    parts = [n.name for n in names]
    lower = {c.lower() for c in columns}
    return any(
        ".".join(parts[:cut]) in columns or ".".join(parts[:cut]).lower() in lower
        for cut in range(len(parts), 0, -1)
    )


def _nested(value: exp.Expression, source_type: str, path: list[str], what: str) -> exp.Expression:
    """`value.path...` for a struct or map column, or a JSON path for JSON text."""
    if source_type.startswith(("STRUCT", "MAP")):
        for key in path:
            value = exp.Bracket(this=value, expressions=[exp.Literal.string(key)])
        return value
    if source_type in ("VARCHAR", "JSON") or is_nested(source_type):
        return exp.Anonymous(
            this="json_extract_string",
            expressions=[value, exp.Literal.string(json_path(path))],
        )
    raise IngestError(f"{what}: cannot take {'.'.join(path)!r} of a {source_type} column")


def json_key(key: str) -> str:
    """A key as a JSON string (for JSON paths and the structures json_transform reads)."""
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def json_path(keys: list[str]) -> str:
    """A JSON path taking each key literally (quoted: dots and spaces are no steps)."""
    return "$" + "".join("." + json_key(k) for k in keys)


def render(
    tree: exp.Expression,
    columns: Mapping[str, str],
    what: str,
    text: str,
    optional: frozenset[str] = frozenset(),
) -> tuple[exp.Expr, set[str]]:
    """A checked expression over the source relation `src`, and the source
    columns it reads. A reference to an `optional` column the file lacks reads NULL."""
    used: set[str] = set()

    def resolve(node: exp.Expression) -> exp.Expression:
        if isinstance(node.parent, exp.Dot) and node.arg_key == "this":
            return node  # handled at the outermost Dot
        names = _path(node)
        if names is None:
            return node
        if names[0].name in optional and not _present(names, columns):
            return exp.Null()
        name, rest = _source_name(names, columns, what, text)
        used.add(name)
        value: exp.Expression = exp.column(name, table="src", quoted=True)
        return _nested(value, columns[name], rest, what) if rest else value

    return tree.copy().transform(resolve), used


@dataclass(frozen=True)
class Resolution:
    """Each contract column's source, and the source columns nothing maps."""

    values: dict[str, Mapped]
    unmapped: list[str]
    where: exp.Expr | None = None  # a condition over `src`, or None
    folded: tuple[str, ...] = ()  # unmapped columns kept as keys of `properties`


def resolve(
    contract_columns: tuple[str, ...],
    columns: Mapping[str, str],
    renames: Mapping[str, str],
    expressions: Mapping[str, str],
    where: str | None,
    table: str,
    internal: frozenset[str] = frozenset(),
    optional: frozenset[str] = frozenset(),
) -> Resolution:
    """Contract column -> where its value comes from. An expression wins over a rename,
    a rename over a same-named column. Expression types are left empty ("") for the
    caller to fill in by asking the processor (`with_types`). Expressions may reference the
    `optional` source columns a file lacks (they read NULL there)."""
    values: dict[str, Mapped] = {}
    used: set[str] = set()
    # Reader internals (file name, row number, surplus CSV fields) are not source columns:
    # an expression cannot read them, and no message names them.
    visible = {c: t for c, t in columns.items() if c not in internal}
    for target, text in expressions.items():
        what = f"[ingest.tables.{table}.expressions] {target}"
        if target not in contract_columns:
            raise IngestError(
                f"{what}: raw.{table} has no column {target!r} (it has "
                f"{', '.join(contract_columns)})"
            )
        sql, reads = render(parse_expression(text, what), visible, what, text, optional)
        values[target] = Mapped(sql, "", frozenset(reads), text)
        used |= reads
    for src, dst in renames.items():
        if src in columns and dst not in values:
            values[dst] = Mapped(_column(src), columns[src], frozenset({src}), column=src)
            used.add(src)
    for target in contract_columns:
        if target not in values and target in columns:
            values[target] = Mapped(
                _column(target), columns[target], frozenset({target}), column=target
            )
            used.add(target)
    where_sql = None
    if where:
        what = f"[ingest.tables.{table}] where"
        where_sql, reads = render(parse_expression(where, what), visible, what, where, optional)
        used |= reads
    unmapped = [c for c in columns if c not in used and c not in internal]
    return Resolution(values, unmapped, where_sql)


def _column(name: str) -> exp.Column:
    return exp.column(name, table="src", quoted=True)


def fold(names: list[str], columns: Mapping[str, str], json_column: str | None = None) -> Mapped:
    """A JSON object of the given source columns, for `properties`: each value as JSON
    (text as a string, numbers as numbers, nested values as they are; from JSON Lines,
    each key's value as the line held it); a NULL value leaves its key out, and a row
    with no value at all has no properties."""
    values: list[exp.Expr]
    if json_column is not None:
        # Anonymous, not parsed: SQLGlot would rewrite the JSON path's text.
        values = [
            exp.Anonymous(
                this="json_extract", expressions=[_column(json_column), string(json_path([n]))]
            )
            for n in names
        ]
    else:
        values = [_column(n) for n in names]
    pairs = exp.Anonymous(
        this="json_object",
        expressions=[x for n, v in zip(names, values, strict=True) for x in (string(n), v)],
    )
    # json_merge_patch onto {} drops the keys whose value is null (RFC 7396).
    folded = fill("nullif(CAST(json_merge_patch('{}', __pairs__) AS VARCHAR), '{}')", pairs=pairs)
    return Mapped(folded, "VARCHAR", frozenset(names))
