from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlglot import exp

from productlens import checks, modeling
from productlens.config import ProjectConfig
from productlens.engines import DuckDBEngine
from productlens.errors import DataTestFailure, ModelError
from productlens.runlog import RunLog
from tests.conftest import q

MODELS = {
    "staging/stg_p.sql": "select * from raw.p",
    "staging/stg_c.sql": "select * from raw.c",
}


def setup(engine: DuckDBEngine, tmp_path: Path, spec: str) -> modeling.ModelGraph:
    engine.execute(q("CREATE TABLE raw.p AS SELECT * FROM (VALUES (1, 'a'), (2, 'b')) t(id, kind)"))
    engine.execute(
        q(
            "CREATE TABLE raw.c AS SELECT * FROM (VALUES (10, 1, 5), (11, 2, 7), (12, 3, -1), "
            "(12, NULL, 2)) t(cid, pid, qty)"
        )
    )
    for rel, text in {**MODELS, "staging/_s.yml": spec}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    graph = modeling.discover(ProjectConfig(), [tmp_path], shipped=False)
    assert modeling.build(engine, graph, RunLog(engine)).ok
    return graph


# One row per case: the declaration under model stg_c, and how many rows must fail.
CASES = [
    ("columns: {cid: [unique]}", 1),
    ("columns: {pid: [not_null]}", 1),
    ("columns: {cid: [not_null]}", 0),
    ("columns: {pid: [{relationships: {to: stg_p, field: id}}]}", 1),
    ("columns: {pid: [{relationships: {to: raw.p, field: id}}]}", 1),
    ("columns: {qty: [{accepted_values: [5, 7, 2]}]}", 1),
    ("columns: {qty: [{accepted_values: {values: [5, 7, 2, -1]}}]}", 0),
    ("tests: [{expression: 'qty >= 0'}]", 1),
    ("tests: [{unique: [cid, pid]}]", 0),
    # A query test: model names resolve to their layer; raw tables by schema.
    ("tests: [{query: 'select * from stg_c c anti join stg_p p on c.pid = p.id'}]", 2),
    ("tests: [{query: 'select * from raw.c where qty > 100'}]", 0),
    # Reconciliation: one row (the two counts) when the row counts differ.
    ("tests: [{same_rows_as: raw.c}]", 0),
    ("tests: [{same_rows_as: stg_p}]", 1),
    ("tests: [{same_rows_as: {to: stg_p}, severity: warn}]", 1),
    # A null key is fine only where the dimension lacks the natural key.
    ("columns: {pid: [{null_only_if_unknown: {key: cid, to: stg_p, field: id}}]}", 0),
    ("columns: {pid: [{null_only_if_unknown: {key: qty, to: stg_p, field: id}}]}", 1),
    ("columns: {pid: [{null_only_if_unknown: {key: cid, to: raw.c}}]}", 1),
]


@pytest.mark.parametrize(("decl", "n_failing"), CASES)
def test_test_kinds(engine: DuckDBEngine, tmp_path: Path, decl: str, n_failing: int) -> None:
    graph = setup(engine, tmp_path, f"models:\n  - name: stg_c\n    grain: g\n    {decl}\n")
    tests = checks.compile_tests(graph)
    assert len(tests) == 1
    outcome = checks.run_tests(engine, tests, "r1")[0]
    assert outcome.error is None
    assert outcome.n_failing == n_failing
    failed = {"error": "fail", "warn": "warn"}[tests[0].severity]
    assert outcome.status == ("pass" if n_failing == 0 else failed)


def test_failure_names_test_count_and_sample(engine: DuckDBEngine, tmp_path: Path) -> None:
    spec = (
        "models:\n  - name: stg_c\n    grain: g\n"
        "    tests:\n      - expression: 'qty >= 0'\n        name: qty_not_negative\n"
    )
    graph = setup(engine, tmp_path, spec)
    outcomes = checks.run_tests(engine, checks.compile_tests(graph), "r1")
    with pytest.raises(DataTestFailure) as info:
        checks.raise_for_failures(outcomes)
    message = str(info.value)
    assert "qty_not_negative" in message
    assert "1 failing rows" in message
    assert '"qty": -1' in message
    stored = engine.fetch_all(
        q("SELECT test_name, status, n_failing, sample_json FROM ops.test_results")
    )
    assert stored[0][:3] == ("qty_not_negative", "fail", 1)
    assert json.loads(stored[0][3]) == [{"cid": 12, "pid": 3, "qty": -1}]


def test_warn_severity_does_not_fail(engine: DuckDBEngine, tmp_path: Path) -> None:
    spec = (
        "models:\n  - name: stg_c\n    grain: g\n"
        "    tests:\n      - expression: 'qty >= 0'\n        severity: warn\n"
    )
    outcomes = checks.run_tests(engine, checks.compile_tests(setup(engine, tmp_path, spec)), "r")
    assert [o.status for o in outcomes] == ["warn"]
    checks.raise_for_failures(outcomes)  # does not raise


def test_a_broken_test_is_reported_not_crashed(engine: DuckDBEngine, tmp_path: Path) -> None:
    spec = "models:\n  - name: stg_c\n    grain: g\n    columns: {nope: [not_null]}\n"
    outcomes = checks.run_tests(engine, checks.compile_tests(setup(engine, tmp_path, spec)), "r")
    assert outcomes[0].status == "error"
    assert "nope" in (outcomes[0].error or "")
    with pytest.raises(DataTestFailure, match="could not run"):
        checks.raise_for_failures(outcomes)


@pytest.mark.parametrize(
    ("decl", "message"),
    [
        ("tests: [bogus]", "unknown test kind"),
        ("tests: [not_null]", "must be declared under a column"),
        ("tests: [{expression: 'a', severity: fatal}]", "severity"),
        ("columns: {pid: [{relationships: {to: stg_p}}]}", "needs the argument"),
    ],
)
def test_bad_declarations(engine: DuckDBEngine, tmp_path: Path, decl: str, message: str) -> None:
    graph = setup(engine, tmp_path, f"models:\n  - name: stg_c\n    grain: g\n    {decl}\n")
    with pytest.raises(ModelError, match=message):
        checks.compile_tests(graph)


# Every row-level case above and both unique cases, declared on one model: probed in one
# scan, each must count (and sample) what it counts run alone.
TOGETHER = (
    "models:\n  - name: stg_c\n    grain: g\n"
    "    columns:\n"
    "      cid: [unique, not_null]\n"
    "      pid: [not_null]\n"
    "      qty:\n"
    "        - accepted_values: [5, 7, 2]\n"
    "        - accepted_values: {values: [5, 7, 2, -1]}\n"
    "    tests:\n"
    "      - expression: 'qty >= 0'\n"
    "      - expression: 'qty < 7'\n"
    "        severity: warn\n"
    "      - unique: [cid, pid]\n"
    "      - same_rows_as: stg_p\n"
)
# A unique key whose non-null values do not repeat (one is null): it passes in the probe.
UNIQUE_WITH_NULL = (
    "models:\n  - name: stg_c\n    grain: g\n"
    "    columns: {pid: [unique, not_null], qty: [not_null]}\n"
    "    tests: [{expression: 'qty >= 0'}]\n"
)


@pytest.mark.parametrize(
    ("spec", "n_failing", "n_counts"),
    [
        # Four counts: the probe (with stg_c's rows); stg_p's rows, for the
        # reconciliation; cid's unique again, as its key repeats (the probe knows only
        # that it fails); the unique on two columns, which runs alone.
        (TOGETHER, [1, 0, 1, 1, 0, 1, 1, 0, 1], 4),
        # One count: the unique test passes in the probe, the failing ones are sampled.
        (UNIQUE_WITH_NULL, [0, 1, 0, 1], 1),
    ],
    ids=["together", "unique_with_null"],
)
def test_tests_of_one_table_probed_in_one_scan_count_as_alone(
    engine: DuckDBEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spec: str,
    n_failing: list[int],
    n_counts: int,
) -> None:
    graph = setup(engine, tmp_path, spec)
    tests = checks.compile_tests(graph)
    alone = [checks.run_tests(engine, [t], "alone")[0] for t in tests]
    assert [o.n_failing for o in alone] == n_failing
    counted: list[str] = []
    fetch_all = engine.fetch_all

    def recorded(query: object) -> list[tuple[object, ...]]:
        counted.append(str(query))
        return fetch_all(query)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "fetch_all", recorded)
    together = checks.run_tests(engine, tests, "together")
    assert [(o.n_failing, o.sample, o.status, o.error) for o in together] == [
        (o.n_failing, o.sample, o.status, o.error) for o in alone
    ]
    assert len(counted) == n_counts
    # The probe scans the table ungrouped: no hash table of every key.
    assert "GROUP BY" not in counted[0]


# Two tables with the same columns and the same tests: stg_p passes them all, stg_q (a
# null id, a repeated id, a kind outside the list) fails each once. Each table is probed on
# its own; a probe of one table must not answer for the other's tests.
SAME_COLUMNS = (
    "models:\n"
    "  - name: stg_p\n    grain: g\n"
    "    columns: {id: [unique, not_null], kind: [{accepted_values: [a, b]}]}\n"
    "  - name: stg_q\n    grain: g\n"
    "    columns: {id: [unique, not_null], kind: [{accepted_values: [a, b]}]}\n"
)


def test_tests_of_two_tables_with_the_same_columns_are_probed_per_table(
    engine: DuckDBEngine, tmp_path: Path
) -> None:
    (tmp_path / "staging").mkdir()
    (tmp_path / "staging" / "stg_q.sql").write_text(
        "select * from (values (1, 'a'), (1, 'b'), (null, 'c')) t(id, kind)"
    )
    tests = checks.compile_tests(setup(engine, tmp_path, SAME_COLUMNS))
    together = checks.run_tests(engine, tests, "together")
    by_name = {o.test.name: o.n_failing for o in together}
    assert by_name == {
        "unique__stg_p__id": 0,
        "not_null__stg_p__id": 0,
        "accepted_values__stg_p__kind": 0,
        "unique__stg_q__id": 1,
        "not_null__stg_q__id": 1,
        "accepted_values__stg_q__kind": 1,
    }
    alone = [checks.run_tests(engine, [t], "alone")[0].n_failing for t in tests]
    assert [o.n_failing for o in together] == alone


def test_a_broken_test_in_a_probe_is_reported_alone(engine: DuckDBEngine, tmp_path: Path) -> None:
    spec = (
        "models:\n  - name: stg_c\n    grain: g\n"
        "    columns: {pid: [not_null], nope: [not_null]}\n"
        "    tests: [{expression: 'qty >= 0'}]\n"
    )
    outcomes = checks.run_tests(engine, checks.compile_tests(setup(engine, tmp_path, spec)), "r")
    assert [(o.status, o.n_failing) for o in outcomes] == [
        ("fail", 1),
        ("error", 0),
        ("fail", 1),
    ]
    assert "nope" in (outcomes[1].error or "")


# Reconciliations between four tables, each named by two tests (one of them naming a table
# that does not exist): every table's rows are counted once, in its probe.
RECONCILED = (
    "models:\n"
    "  - name: stg_p\n    grain: g\n"
    "    columns: {id: [not_null]}\n"
    "    tests: [{same_rows_as: raw.p}, {same_rows_as: stg_c, severity: warn}]\n"
    "  - name: stg_c\n    grain: g\n"
    "    tests: [{same_rows_as: raw.c}, {same_rows_as: stg_p}, {same_rows_as: raw.nope}]\n"
)


def test_reconciled_tables_are_counted_once_each(
    engine: DuckDBEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tests = checks.compile_tests(setup(engine, tmp_path, RECONCILED))
    alone = [checks.run_tests(engine, [t], "alone")[0] for t in tests]
    assert [(o.test.name, o.status, o.n_failing) for o in alone] == [
        ("same_rows_as__stg_c__raw_c", "pass", 0),
        ("same_rows_as__stg_c__stg_p", "fail", 1),
        ("same_rows_as__stg_c__raw_nope", "error", 0),
        ("not_null__stg_p__id", "pass", 0),
        ("same_rows_as__stg_p__raw_p", "pass", 0),
        ("same_rows_as__stg_p__stg_c", "warn", 1),
    ]
    counted: list[exp.Expr] = []
    fetch_all = engine.fetch_all

    def recorded(query: exp.Expr) -> list[tuple[object, ...]]:
        counted.append(query)
        return fetch_all(query)

    monkeypatch.setattr(engine, "fetch_all", recorded)
    together = checks.run_tests(engine, tests, "together")
    assert [(o.n_failing, o.sample, o.status, o.error) for o in together] == [
        (o.n_failing, o.sample, o.status, o.error) for o in alone
    ]
    # One scan of each table (stg_p's with its not_null test; raw.nope's fails), then the
    # test naming raw.nope alone, to report its error. Run alone, each reconciliation
    # read two tables.
    read = [sorted(f"{t.db}.{t.name}" for t in query.find_all(exp.Table)) for query in counted]
    assert sorted(read[:-1]) == [
        ["raw.c"],
        ["raw.nope"],
        ["raw.p"],
        ["staging.stg_c"],
        ["staging.stg_p"],
    ]
    assert read[-1] == ["raw.nope", "staging.stg_c"]
