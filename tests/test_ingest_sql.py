"""Ingestion hands DuckDB SQLGlot expressions or constant text, never SQL built as text.

Every module of src/productlens/ingest is parsed: each statement given to the processor or
a connection (`execute`, `fetch_all`, `fetch_arrow`, `fetch_batches`, `sql`) must be a
constant string or something that is not text built in Python (an expression from
`productlens.ingest.sql.fill` or SQLGlot's builders, a name bound to one); and each
`fill`/`query` template must be constant text. An f-string, `%`, `+` on strings, `str.format` or
`str.join` there fails, directly or through a name assigned that way in the same function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import sqlglot

from productlens.ingest.sql import Type, fill, render

INGEST = Path(__file__).resolve().parents[1] / "src" / "productlens" / "ingest"
RUNS = {"execute", "fetch_all", "fetch_arrow", "fetch_batches", "sql"}
TEMPLATES = {"fill", "query"}
# The module of `fill` itself, whose `query` hands its caller's template on.
HELPERS = {"sql.py"}


def _text_built(node: ast.expr) -> bool:
    """Whether an expression builds a string in Python."""
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr in ("format", "join")
    return False


def offenders(source: str) -> list[tuple[int, str]]:
    """(line, call) for each statement or template built as text."""
    tree = ast.parse(source)
    found = []
    scopes = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.Module)]
    for scope in scopes:
        built = {
            target.id
            for node in ast.walk(scope)
            if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign)
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)
            and (
                isinstance(node, ast.AugAssign)
                or (node.value is not None and _text_built(node.value))
            )
        }
        for node in ast.walk(scope):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if name in TEMPLATES:
                bad = not (isinstance(first, ast.Constant) and isinstance(first.value, str))
            elif name in RUNS:
                bad = _text_built(first) or (isinstance(first, ast.Name) and first.id in built)
            else:
                continue
            if bad:
                found.append((node.lineno, name))
    return sorted(set(found))


def test_ingestion_runs_no_sql_built_as_text() -> None:
    bad = {
        path.name: offenders(path.read_text(encoding="utf-8"))
        for path in sorted(INGEST.glob("*.py"))
        if path.name not in HELPERS
    }
    assert {name: found for name, found in bad.items() if found} == {}


@pytest.mark.parametrize(
    "source",
    [
        'lake.execute(f"DROP TABLE {name}")',
        'lake.fetch_all("SELECT count(*) FROM " + table)',
        'lake.fetch_all("SELECT %s" % value)',
        'lake.execute("SELECT {}".format(x))',
        'con.sql(", ".join(parts))',
        'def f(lake, t):\n    q = f"SELECT * FROM {t}"\n    lake.fetch_arrow(q)',
        'def f(lake, t):\n    q = "SELECT 1"\n    q += t\n    lake.execute(q)',
        'fill(f"SELECT * FROM {t} WHERE x = __v__", v=1)',
        "fill(template, v=1)",
    ],
)
def test_every_way_of_building_text_is_seen(source: str) -> None:
    assert offenders(source)


@pytest.mark.parametrize(
    "source",
    [
        'lake.execute("DROP TABLE IF EXISTS __flagged")',
        'lake.execute("SELECT 1 "\n    "FROM t")',
        'lake.execute(fill("SELECT * FROM __t__", t=table(name)))',
        'def f(lake):\n    q = fill("SELECT __v__", v=1)\n    lake.fetch_all(q, [1])',
        "lake.fetch_all(v.key_scan)",
        'message = f"cannot read {path}"',
    ],
)
def test_expressions_and_constants_pass(source: str) -> None:
    assert not offenders(source)


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        # a value is a literal, quoted by SQLGlot; a name in it is data
        ("SELECT __v__", {"v": "it's"}, "SELECT 'it''s'"),
        ("SELECT __v__", {"v": r"\d"}, r"SELECT '\d'"),
        ("SELECT * FROM __t__ src", {"t": sqlglot.exp.table_('a"b', quoted=True)},
         'SELECT * FROM "a""b" AS src'),
        ("SELECT CAST(x AS __t__)", {"t": Type("TIMESTAMP WITH TIME ZONE")},
         "SELECT CAST(x AS TIMESTAMPTZ)"),
        ("COPY (SELECT __q__) TO '__path__' (FORMAT parquet)",
         {"q": sqlglot.parse_one("SELECT 1"), "path": "/a/b'c.parquet"},
         "COPY (SELECT 1) TO '/a/b''c.parquet' WITH (FORMAT parquet)"),
        ("SET file_search_path = __p__", {"p": "/x"}, "SET file_search_path = '/x'"),
        # a quoted column that looks like a slot is a column
        ('SELECT "__v__", __v__', {"v": 1}, 'SELECT "__v__", 1'),
    ],
)  # fmt: skip
def test_fill_quotes_what_it_puts_in_slots(
    template: str, values: dict[str, object], expected: str
) -> None:
    assert render(fill(template, **values)) == expected  # type: ignore[arg-type]


def test_a_derived_table_fills_a_table_slot_as_the_text_would_parse() -> None:
    # (VALUES ...) l(a, b) in a FROM slot is the tree SQLGlot reads from that text, not a
    # table wrapped around it
    pairs = sqlglot.exp.values([("x'", 1)], alias="l", columns=["a", "b"])
    filled = fill("SELECT * FROM __pairs__ UNION SELECT * FROM t", pairs=pairs)
    text = "SELECT * FROM (VALUES ('x''', 1)) AS l(a, b) UNION SELECT * FROM t"
    assert filled == sqlglot.parse_one(text, read="duckdb")
    assert render(filled) == text


def test_every_slot_needs_a_value_and_every_value_a_slot() -> None:
    with pytest.raises(KeyError):
        fill("SELECT __a__, __b__", a=1)
    with pytest.raises(KeyError):
        fill("SELECT __a__", a=1, b=2)
