"""Data tests declared beside the models: each is a query returning failing rows.

Zero rows passes. The kinds are a dispatch table (one function per kind builds the
query with SQLGlot), so adding a kind is adding a row. Results go to `ops.test_results`;
an error-severity failure raises `DataTestFailure` naming the test, the count of failing
rows and a sample of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import sqlglot
from sqlglot import exp

from productlens import ops
from productlens.engines import Engine
from productlens.errors import DataTestFailure, EngineUnavailable, ModelError
from productlens.modeling import Model, ModelGraph

Severity = Literal["error", "warn"]
SAMPLE_ROWS = 5


@dataclass(frozen=True)
class DataTest:
    """One declared test, compiled to a query that returns the failing rows."""

    name: str
    model: str
    severity: Severity
    query: exp.Query
    # As declared (for exporters that map kinds onto their own tests): the kind, the
    # column it is declared under (None: model level) and its arguments.
    kind: str = ""
    column: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    # The table the test's query scans, for tests that can share one scan with the other
    # such tests of the same table (`run_tests` probes them together): set when the test
    # is compiled and moved with the query (`daily.aside_tests`), never looked up by the
    # model's name. None: the test runs on its own.
    probe_table: exp.Table | None = None
    # A row fails when this holds (not_null, accepted_values, expression); or, for
    # unique, the rows of a group of these columns (all non-null) fail together.
    probe_condition: exp.Expr | None = None
    probe_key: tuple[str, ...] = ()
    # same_rows_as: the two tables whose row counts must be equal (the model's, then the
    # one it is built from). Each is counted once, in its table's probe, however many
    # tests ask: on Spark each count was a job of its own, two per test.
    probe_counts: tuple[exp.Table, ...] = ()


@dataclass(frozen=True)
class TestOutcome:
    test: DataTest
    n_failing: int
    sample: list[dict[str, Any]]
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        if self.n_failing == 0:
            return "pass"
        return "fail" if self.test.severity == "error" else "warn"


# Names from models and their YAML become quoted identifiers, never SQL text of their own.
def _table(model: Model) -> exp.Table:
    return exp.table_(model.name, db=model.layer, quoted=True)


def _aliased(table: exp.Table, alias: str) -> exp.Table:
    """The table under an alias, as a proper table alias node (SQLGlot's optimizer, which
    the non-DuckDB engines run on every query, needs one)."""
    table = table.copy()
    table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
    return table


def _col(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def _resolve(target: str, models: ModelGraph) -> exp.Table:
    schema, dot, name = target.rpartition(".")
    if dot:
        return exp.table_(name, db=schema, quoted=True)
    if target not in models.models:
        raise ModelError(f"a test points at unknown model {target!r}")
    return _table(models[target])


def _unique(model: Model, column: str | None, args: dict[str, Any], _g: ModelGraph) -> exp.Query:
    columns = [column] if column else list(args["columns"])
    cols = [_col(c) for c in columns]
    return (
        exp.select(*cols, exp.Count(this=exp.Star()).as_("n_rows"))
        .from_(_table(model))
        .where(exp.and_(*[c.is_(exp.null()).not_() for c in cols]))
        .group_by(*cols)
        .having(exp.Count(this=exp.Star()) > 1)
    )


def _not_null(model: Model, column: str | None, _a: dict[str, Any], _g: ModelGraph) -> exp.Query:
    return exp.select("*").from_(_table(model)).where(_not_null_failing(column, {}))


def _not_null_failing(column: str | None, _a: dict[str, Any]) -> exp.Expr:
    return _col(_need(column)).is_(exp.null())


def _accepted_values(
    model: Model, column: str | None, args: dict[str, Any], _g: ModelGraph
) -> exp.Query:
    return exp.select("*").from_(_table(model)).where(_accepted_values_failing(column, args))


def _accepted_values_failing(column: str | None, args: dict[str, Any]) -> exp.Expr:
    values = [exp.convert(v) for v in args["values"]]
    col = _col(_need(column))
    return exp.and_(col.is_(exp.null()).not_(), exp.not_(col.isin(*values)))


def _relationships(
    model: Model, column: str | None, args: dict[str, Any], graph: ModelGraph
) -> exp.Query:
    parent = _resolve(str(args["to"]), graph)
    child_col = exp.column(_need(column), table="child", quoted=True)
    parent_col = exp.column(str(args["field"]), table="parent", quoted=True)
    return (
        exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier("child")))
        .from_(_aliased(_table(model), "child"))
        .join(_aliased(parent, "parent"), on=child_col.eq(parent_col), join_type="left")
        .where(exp.and_(child_col.is_(exp.null()).not_(), parent_col.is_(exp.null())))
    )


def _null_only_if_unknown(
    model: Model, column: str | None, args: dict[str, Any], graph: ModelGraph
) -> exp.Query:
    """A dimension key left null by a fact's left join must mean the dimension does not
    know the row's natural key (`key`), not that the join missed a member it has."""
    dimension = _resolve(str(args["to"]), graph)
    key = str(args["key"])
    known = exp.select(_col(str(args.get("field", key)))).from_(dimension)
    return (
        exp.select("*")
        .from_(_table(model))
        .where(exp.and_(_col(_need(column)).is_(exp.null()), _col(key).isin(query=known)))
    )


def _same_rows_as(
    model: Model, _c: str | None, args: dict[str, Any], graph: ModelGraph
) -> exp.Query:
    """Reconciliation across layers: the model holds exactly as many rows as the table it
    is built from (`to`), so a join or filter that drops (or doubles) rows fails. Both
    counts are count(*): table metadata on DuckDB, no scan of the fact."""
    counts = exp.select(
        exp.select(exp.Count(this=exp.Star())).from_(_table(model)).subquery().as_("n_rows"),
        exp.select(exp.Count(this=exp.Star()))
        .from_(_resolve(str(args["to"]), graph))
        .subquery()
        .as_("n_upstream"),
    )
    return (
        exp.select("*")
        .from_(counts.subquery("counts"))
        .where(exp.column("n_rows").neq(exp.column("n_upstream")))
    )


def _expression(
    model: Model, column: str | None, args: dict[str, Any], _g: ModelGraph
) -> exp.Query:
    return exp.select("*").from_(_table(model)).where(_expression_failing(column, args))


def _expression_failing(_c: str | None, args: dict[str, Any]) -> exp.Expr:
    condition = sqlglot.parse_one(str(args["expression"]), read="duckdb")
    return exp.not_(exp.paren(condition))


def _query(model: Model, column: str | None, args: dict[str, Any], graph: ModelGraph) -> exp.Query:
    """Any SELECT returning the failing rows (a reconciliation across models); bare model
    names are qualified with their layer, as in models."""
    try:
        query = sqlglot.parse_one(str(args["query"]), read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise ModelError(f"test query does not parse: {exc}", model=model.name) from None
    if not isinstance(query, exp.Query):
        raise ModelError("a test query must be a SELECT", model=model.name)
    ctes = {cte.alias_or_name for cte in query.find_all(exp.CTE)}
    for table in query.find_all(exp.Table):
        if not table.db and table.name in graph.models and table.name not in ctes:
            table.set("db", exp.to_identifier(graph[table.name].layer))
    return query


def _need(column: str | None) -> str:
    if column is None:
        raise ModelError("this test must be declared under a column")
    return column


TestBuilder = Callable[[Model, str | None, dict[str, Any], ModelGraph], exp.Query]

TEST_KINDS: dict[str, TestBuilder] = {
    "unique": _unique,
    "not_null": _not_null,
    "accepted_values": _accepted_values,
    "relationships": _relationships,
    "null_only_if_unknown": _null_only_if_unknown,
    "same_rows_as": _same_rows_as,
    "expression": _expression,
    "query": _query,
}

# Kinds whose failing rows are one condition on the model's own rows: probed together,
# in one scan of the table (the row-level condition of each).
ROW_CONDITIONS: dict[str, Callable[[str | None, dict[str, Any]], exp.Expr]] = {
    "not_null": _not_null_failing,
    "accepted_values": _accepted_values_failing,
    "expression": _expression_failing,
}

# Shorthands: `- expression: "a >= b"` and `- unique: [a, b]` at model level.
_OPTIONS = ("severity", "name")
_SHORTHAND_ARG = {
    "expression": "expression",
    "unique": "columns",
    "accepted_values": "values",
    "query": "query",
    "same_rows_as": "to",
}


def compile_tests(models: ModelGraph, selected: list[Model] | None = None) -> list[DataTest]:
    """Every test declared for the given models (default: all), compiled."""
    tests: list[DataTest] = []
    for model in selected if selected is not None else list(models):
        if model.spec is None:
            continue
        declared: list[tuple[str | None, Any]] = [
            (col, decl) for col, decls in model.spec.columns.items() for decl in decls
        ]
        declared += [(None, decl) for decl in model.spec.tests]
        for column, decl in declared:
            tests.append(_compile(model, column, decl, models))
    return tests


def _compile(model: Model, column: str | None, decl: Any, graph: ModelGraph) -> DataTest:
    kind, args = (decl, {}) if isinstance(decl, str) else _unpack(decl, model)
    if kind not in TEST_KINDS:
        raise ModelError(
            f"unknown test kind {kind!r}; known: {', '.join(TEST_KINDS)}", model=model.name
        )
    severity = args.pop("severity", "error")
    if severity not in ("error", "warn"):
        raise ModelError(f"severity must be error or warn, not {severity!r}", model=model.name)
    custom_name = args.pop("name", None)
    try:
        query = TEST_KINDS[kind](model, column, args, graph)
    except KeyError as exc:
        raise ModelError(f"test {kind} needs the argument {exc}", model=model.name) from None
    name = custom_name or "__".join(
        [kind, model.name, *([column] if column else []), *_name_hint(kind, args)]
    )
    probe: dict[str, Any] = {}
    if kind in ROW_CONDITIONS:
        probe = {
            "probe_table": _table(model),
            "probe_condition": ROW_CONDITIONS[kind](column, args),
        }
    elif kind == "unique":
        probe = {
            "probe_table": _table(model),
            "probe_key": (column,) if column else tuple(args["columns"]),
        }
    elif kind == "same_rows_as":
        probe = {"probe_counts": (_table(model), _resolve(str(args["to"]), graph))}
    return DataTest(
        name=name,
        model=model.table,
        severity=severity,
        query=query,
        kind=kind,
        column=column,
        args=dict(args),
        **probe,
    )


def _unpack(decl: dict[str, Any], model: Model) -> tuple[str, dict[str, Any]]:
    """`{kind: args}` plus optional `severity` and `name` keys beside it."""
    kinds = [key for key in decl if key not in _OPTIONS]
    if len(kinds) != 1:
        raise ModelError(f"a test is one kind with its arguments, got {decl}", model=model.name)
    kind = kinds[0]
    args = decl[kind]
    if not isinstance(args, dict):
        args = {_SHORTHAND_ARG.get(kind, "value"): args}
    return kind, {**args, **{k: v for k, v in decl.items() if k in _OPTIONS}}


def _name_hint(kind: str, args: dict[str, Any]) -> list[str]:
    if kind in ("relationships", "null_only_if_unknown", "same_rows_as"):
        return [str(args["to"]).replace(".", "_")]
    if kind == "unique" and "columns" in args:
        return ["_".join(args["columns"])]
    if kind in ("expression", "query"):
        text = "".join(ch if ch.isalnum() else "_" for ch in str(args[kind]))
        return ["_".join(part for part in text.split("_") if part)[:40]]
    return []


def run_tests(engine: Engine, tests: list[DataTest], run_id: str) -> list[TestOutcome]:
    """Run each test, record it in `ops.test_results`, and return the outcomes.

    The row-level tests of one table (not_null, accepted_values, expression, and one
    single-column unique) are counted together in one scan of it, which also counts the
    table's rows for the same_rows_as tests that name it (a table only they name is
    counted alone); a test that fails is then sampled with its own query, so counts and
    samples are those of the test run alone."""
    ops.ensure(engine, ops.TEST_RESULTS, ops.TEST_RESULTS_COLUMNS)
    counts: dict[int, int] = {}
    rows_of: dict[str, int] = {}
    for probed, group in _probe_groups(tests).items():
        found, n_rows = _probe(
            engine, group.table, [(i, tests[i]) for i in group.tests], group.rows
        )
        counts.update(found)
        if n_rows is not None:
            rows_of[probed] = n_rows
    for i, test in enumerate(tests):
        sides = [rows_of.get(_key(t)) for t in test.probe_counts]
        if sides and None not in sides:
            counts[i] = int(sides[0] != sides[1])  # the test's query: one row if they differ
    outcomes = [_run_one(engine, test, counts.get(i)) for i, test in enumerate(tests)]
    checked_at = datetime.now(UTC).replace(tzinfo=None)
    rows: list[list[ops.Value]] = [
        [
            run_id,
            o.test.name,
            o.test.model,
            o.test.severity,
            o.status,
            o.n_failing,
            json.dumps(o.sample, default=str) if o.sample else o.error,
            checked_at,
        ]
        for o in outcomes
    ]
    if rows:
        engine.execute(ops.insert_rows(ops.TEST_RESULTS, ops.TEST_RESULTS_COLUMNS, rows))
    return outcomes


@dataclass
class _ProbeGroup:
    """One table's probe: the table, the tests it counts, and whether it counts the rows."""

    table: exp.Table
    tests: list[int] = field(default_factory=list)
    rows: bool = False


def _key(table: exp.Table) -> str:
    return table.sql("duckdb")


def _probe_groups(tests: list[DataTest]) -> dict[str, _ProbeGroup]:
    """The probes to run, by table: per scanned table, its row-level tests and its first
    unique test on one column, and its row count where a same_rows_as test names it. A
    unique test on several columns (or a second one on the table) runs alone: its own
    grouped query, as a count of distinct values of one column is the only uniqueness
    probe that costs no more than that query."""
    groups: dict[str, _ProbeGroup] = {}
    keyed: set[str] = set()
    for i, test in enumerate(tests):
        for counted in test.probe_counts:
            groups.setdefault(_key(counted), _ProbeGroup(counted)).rows = True
        if test.probe_table is None:
            continue
        table = _key(test.probe_table)
        if test.probe_key:
            if len(test.probe_key) > 1 or table in keyed:
                continue
            keyed.add(table)
        groups.setdefault(table, _ProbeGroup(test.probe_table)).tests.append(i)
    return groups


def _probe(
    engine: Engine, table: exp.Table, tests: list[tuple[int, DataTest]], rows: bool
) -> tuple[dict[int, int], int | None]:
    """Failing-row counts of tests of one table, in one ungrouped scan: ({index: count},
    the table's rows when `rows`, else None).

    A condition's failing rows are counted (`count(case when failing then 1 end)`). A
    unique test's key is counted twice, its non-null values and its distinct ones: equal,
    no value repeats and the test passes; else it is left out, to count its duplicated
    keys with its own query. No grouping by the key here: at 10M events a hash table of
    every event_id with the conditions' sums beside it took 2.0 GiB and more CPU than
    each test alone; this scan takes 0.85 GiB and the least CPU of the three. Empty (and
    None) when the probe cannot run (each test then runs alone and reports its own
    error)."""
    conditions = [(i, t.probe_condition) for i, t in tests if t.probe_condition is not None]
    counted: list[exp.Expr] = [
        exp.Count(this=exp.Case().when(condition, exp.convert(1))) for _, condition in conditions
    ]
    unique = next(((i, _col(t.probe_key[0])) for i, t in tests if t.probe_key), None)
    if unique is not None:
        key = unique[1]
        counted += [exp.Count(this=key), exp.Count(this=exp.Distinct(expressions=[key.copy()]))]
    if rows:
        counted.append(exp.Count(this=exp.Star()))
    try:
        row = engine.fetch_all(exp.select(*counted).from_(table.copy()))[0]
    except Exception:  # noqa: BLE001 - each test then runs alone and reports its error
        return {}, None
    counts = {i: int(n) for (i, _), n in zip(conditions, row, strict=False)}
    if unique is not None:
        n_keys, n_distinct = row[len(conditions)], row[len(conditions) + 1]
        if n_keys == n_distinct:
            counts[unique[0]] = 0
    return counts, int(row[-1]) if rows else None


def _run_one(engine: Engine, test: DataTest, probed: int | None = None) -> TestOutcome:
    """Run `test` (its count already known from a probe when `probed` is given)."""
    failing = test.query.subquery("failing")
    count = exp.select(exp.Count(this=exp.Star())).from_(failing)
    try:
        n = probed if probed is not None else int(engine.fetch_all(count)[0][0])
        sample: list[dict[str, Any]] = []
        if n:
            sample = engine.fetch_arrow(test.query.limit(SAMPLE_ROWS)).to_pylist()
    except EngineUnavailable:
        raise  # the engine is gone, not the test: no later test can run either
    except Exception as exc:  # noqa: BLE001 - a broken test is reported, not fatal
        return TestOutcome(test, 0, [], error=str(exc))
    return TestOutcome(test, n, sample)


def raise_for_failures(outcomes: list[TestOutcome]) -> None:
    """Raise `DataTestFailure` if any error-severity test failed or could not run."""
    bad = [o for o in outcomes if o.status in ("fail", "error")]
    if not bad:
        return
    first = bad[0]
    detail = (
        f"could not run: {first.error}"
        if first.error
        else f"{first.n_failing} failing rows, e.g. {json.dumps(first.sample[:2], default=str)}"
    )
    more = f" (and {len(bad) - 1} more failing tests)" if len(bad) > 1 else ""
    raise DataTestFailure(f"data test {first.test.name} failed: {detail}{more}")
