from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from productlens import checks, modeling
from productlens.config import ProjectConfig
from productlens.engines import DuckDBEngine
from productlens.errors import ModelError
from productlens.runlog import RunLog
from tests.conftest import q


def write_models(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


SMALL = {
    "staging/stg_a.sql": "select id, v from raw.a",
    "core/fct_a.sql": "with src as (select * from stg_a) select id, v * 2 as v2 from src",
    "marts/a_summary.sql": "select count(*) as n_rows, sum(v2) as total from fct_a",
    "marts/_marts.yml": "models:\n  - name: a_summary\n    grain: one row\n",
}


def graph_for(root: Path) -> modeling.ModelGraph:
    return modeling.discover(ProjectConfig(), [root], shipped=False)


@pytest.fixture
def source(engine: DuckDBEngine) -> DuckDBEngine:
    engine.execute(q("CREATE TABLE raw.a AS SELECT * FROM (VALUES (1, 10), (2, 20)) t(id, v)"))
    return engine


def test_dependencies_come_from_the_sql(tmp_path: Path) -> None:
    graph = graph_for(write_models(tmp_path, SMALL))
    assert graph["stg_a"].upstreams == ("raw.a",)
    assert graph["fct_a"].upstreams == ("staging.stg_a",)  # the CTE name is not a dependency
    assert graph["a_summary"].upstreams == ("core.fct_a",)
    assert graph.order == ["stg_a", "fct_a", "a_summary"]
    assert graph["a_summary"].grain == "one row"
    assert "core.fct_a" in graph["a_summary"].compile("duckdb").replace('"', "")


def test_build_materializes_in_order_and_logs(source: DuckDBEngine, tmp_path: Path) -> None:
    graph = graph_for(write_models(tmp_path, SMALL))
    runlog = RunLog(source)
    result = modeling.build(source, graph, runlog)
    assert result.ok
    assert result.built == {"stg_a": 2, "fct_a": 2, "a_summary": 1}
    assert source.fetch_all(q("SELECT n_rows, total FROM marts.a_summary")) == [(2, 60)]
    logged = source.fetch_all(
        q(
            "SELECT object, status, n_rows FROM ops.run_log WHERE run_id = ? ORDER BY started_at",
            runlog.run_id,
        ),
    )
    assert logged == [
        ("staging.stg_a", "success", 2),
        ("core.fct_a", "success", 2),
        ("marts.a_summary", "success", 1),
    ]


def test_a_view_model_is_created_not_run(source: DuckDBEngine, tmp_path: Path) -> None:
    # A view that fails whenever it is read: building it must not read it (counting its
    # rows ran it whole), and its rows are logged as not counted.
    files = {
        "staging/stg_a.sql": "select id, error('read') as v from raw.a",
        "staging/_staging.yml": "models:\n  - name: stg_a\n    grain: one row per id\n"
        "    materialized: view\n",
    }
    runlog = RunLog(source)
    result = modeling.build(source, graph_for(write_models(tmp_path, files)), runlog)
    assert result.ok, result.failed
    assert result.built == {"stg_a": None}
    assert source.table_kind("staging", "stg_a") == "view"
    with pytest.raises(Exception, match="read"):
        source.fetch_all(q("SELECT * FROM staging.stg_a"))
    logged = source.fetch_all(
        q("SELECT object, status, n_rows FROM ops.run_log WHERE run_id = ?", runlog.run_id)
    )
    assert logged == [("staging.stg_a", "success", None)]


def test_failed_model_keeps_previous_table_and_skips_descendants(
    source: DuckDBEngine, tmp_path: Path
) -> None:
    root = write_models(tmp_path, SMALL)
    modeling.build(source, graph_for(root), RunLog(source))
    # Break fct_a: division by a string fails at run time, after parsing.
    (root / "core/fct_a.sql").write_text("select id, v * 'x' as v2 from stg_a")
    result = modeling.build(source, graph_for(root), RunLog(source))
    assert set(result.failed) == {"fct_a"}
    assert result.skipped == ["a_summary"]
    assert result.built == {"stg_a": 2}
    assert source.fetch_all(q("SELECT sum(v2) FROM core.fct_a")) == [(60,)]  # old table intact
    assert not [t for t in source.list_tables("core") if t.endswith("__building")]
    statuses = source.fetch_all(
        q("SELECT status FROM ops.run_log WHERE object = 'core.fct_a' ORDER BY started_at")
    )
    assert statuses == [("success",), ("error",)]


def test_leftover_half_built_tables_are_dropped(source: DuckDBEngine, tmp_path: Path) -> None:
    source.execute(q("CREATE TABLE core.fct_a__building AS SELECT 1 AS half"))
    modeling.build(source, graph_for(write_models(tmp_path, SMALL)), RunLog(source))
    assert "fct_a__building" not in source.list_tables("core")


def test_stale_running_rows_are_marked_interrupted(source: DuckDBEngine) -> None:
    first = RunLog(source)
    source.execute(
        q(
            "INSERT INTO ops.run_events (run_id, stage, object, started_at, status) "
            "VALUES (?, 'build', 'x', now(), 'running')",
            first.run_id,
        ),
    )
    RunLog(source)
    assert source.fetch_all(q("SELECT status FROM ops.run_log WHERE object = 'x'")) == [
        ("interrupted",)
    ]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (["fct_a"], ["fct_a"]),
        (["fct_a+"], ["fct_a", "a_summary"]),
        (["+fct_a"], ["stg_a", "fct_a"]),
        (["stg_a", "a_summary"], ["stg_a", "a_summary"]),
    ],
)
def test_selectors(tmp_path: Path, selector: list[str], expected: list[str]) -> None:
    graph = graph_for(write_models(tmp_path, SMALL))
    assert [m.name for m in graph.select(selector)] == expected


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"marts/x.sql": "select * from nowhere"}, "neither a model nor a CTE"),
        ({"marts/x.sql": "select from where"}, "does not parse"),
        ({"marts/x.sql": "select 1; select 2"}, "exactly one SELECT"),
        ({"marts/x.sql": "select * from secret.t"}, "unknown schema"),
        ({"other/x.sql": "select 1"}, "must live in one of the folders"),
        ({"marts/x.sql": "select * from y", "marts/y.sql": "select * from x"}, "cycle"),
        ({"marts/x.sql": "select 1", "marts/_m.yml": "models:\n  - name: z\n    grain: g\n"}, "z"),
        ({"marts/x.sql": "select 1", "marts/_m.yml": "models:\n  - name: x\n"}, "grain"),
        ({"marts/x.py": "X = 1\n"}, r"must define model\(ctx\)"),
        ({"marts/x.py": "def model(ctx):\n    return 'select 1'\n"}, "SQLGlot query"),
    ],
)
def test_bad_models_are_clear_errors(tmp_path: Path, files: dict[str, str], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        graph_for(write_models(tmp_path, files))


@pytest.mark.parametrize(
    "file_name",
    [
        "bad name;drop.sql",
        "x'; drop table raw.a; --.sql",
        'say "hi".sql',
        "Upper.sql",
        "1st.sql",
        "dash-ed.py",
        "caf\u00e9.sql",
        "a" * 54 + ".sql",
    ],
)
def test_model_names_are_validated_at_discovery(tmp_path: Path, file_name: str) -> None:
    write_models(tmp_path, {f"marts/{file_name}": "select 1 as n"})
    with pytest.raises(ModelError, match="not a valid model name") as info:
        graph_for(tmp_path)
    assert file_name in str(info.value)


def test_a_model_named_as_a_keyword_builds_and_is_tested(
    source: DuckDBEngine, tmp_path: Path
) -> None:
    root = write_models(
        tmp_path,
        {
            "marts/order.sql": "select id from raw.a",
            "marts/_m.yml": "models:\n  - name: order\n    grain: g\n"
            "    columns: {id: [unique, not_null]}\n",
        },
    )
    graph = graph_for(root)
    for _ in range(2):  # the second build replaces the first
        assert modeling.build(source, graph, RunLog(source)).built == {"order": 2}
    outcomes = checks.run_tests(source, checks.compile_tests(graph), "r")
    assert [(o.test.name, o.status) for o in outcomes] == [
        ("unique__order__id", "pass"),
        ("not_null__order__id", "pass"),
    ]


def test_python_model_reads_configuration(source: DuckDBEngine, tmp_path: Path) -> None:
    root = write_models(
        tmp_path,
        {
            "marts/steps.py": (
                "from sqlglot import exp\n"
                "def model(ctx):\n"
                "    rows = [exp.tuple_(exp.convert(i), exp.convert(s))\n"
                "            for i, s in enumerate(ctx.funnel_steps)]\n"
                "    values = exp.Values(expressions=rows, alias=exp.TableAlias(\n"
                "        this=exp.to_identifier('t'), columns=['position', 'step']))\n"
                "    return exp.select('*').from_(values)\n"
            )
        },
    )
    config = ProjectConfig.model_validate({"metrics": {"funnel_steps": ["open", "it's paid"]}})
    graph = modeling.discover(config, [root], shipped=False)
    modeling.build(source, graph, RunLog(source))
    # A table keeps no row order: the steps' order is read from their position.
    got = source.fetch_all(q("SELECT step FROM marts.steps ORDER BY position"))
    assert got == [("open",), ("it's paid",)]


def test_project_models_extend_and_replace_shipped(tmp_path: Path) -> None:
    root = write_models(
        tmp_path,
        {
            "marts/my_metric.sql": "select count(*) as n_rows from fct_events",
            "staging/stg_users.sql": "select user_id, signup_ts from raw.users",
        },
    )
    graph = modeling.discover(ProjectConfig(), [root])
    assert graph["my_metric"].upstreams == ("core.fct_events",)
    assert graph["stg_users"].path == str(root / "staging/stg_users.sql")
    assert graph.order.index("my_metric") > graph.order.index("fct_events")


def test_every_shipped_model_states_its_grain() -> None:
    graph = modeling.discover(ProjectConfig())
    assert len(graph) >= 4
    assert all(model.grain for model in graph), [m.name for m in graph if not m.grain]


def test_a_run_log_table_of_an_earlier_version_keeps_its_history(source: DuckDBEngine) -> None:
    """Earlier versions kept the run log as a table updated in place; it moves into the
    append-only event table, and `ops.run_log` becomes the view of each step's latest."""
    source.ensure_schema("ops")
    source.execute(
        q(
            "CREATE TABLE ops.run_log AS SELECT 'old' AS run_id, 'build' AS stage, "
            "'core.x' AS object, TIMESTAMP '2026-01-01 10:00:00' AS started_at, "
            "TIMESTAMP '2026-01-01 10:01:00' AS finished_at, CAST(5 AS BIGINT) AS n_rows, "
            "'success' AS status, CAST(NULL AS VARCHAR) AS error"
        )
    )
    log = RunLog(source)
    with log.step("build", "core.y") as record:
        record.rows = 7
    assert source.table_kind("ops", "run_log") == "view"
    rows = source.fetch_all(q("SELECT run_id, object, n_rows, status FROM ops.run_log ORDER BY 2"))
    assert rows == [("old", "core.x", 5, "success"), (log.run_id, "core.y", 7, "success")]


# A sorted_by model of 400,000 rows (four of DuckDB's row groups), 20 days, 3 kinds;
# rows arrive in descending id order.
SORTED_MODEL = {
    "core/fct_a.sql": "select id, kind, day from raw.a",
    "core/_core.yml": "models:\n  - name: fct_a\n    grain: one row per id\n"
    "    incremental: {date_column: day, lookback_days: 0}\n"
    "    sorted_by: [kind, id]\n",
}
SORTED_ROWS = 400_000


@pytest.fixture
def sorted_model(engine: DuckDBEngine, tmp_path: Path) -> modeling.Model:
    engine.execute(
        q(
            f"CREATE TABLE raw.a AS SELECT {SORTED_ROWS} - i AS id, i % 3 AS kind, "
            f"DATE '2024-01-01' + CAST(i % 20 AS INT) AS day FROM range({SORTED_ROWS}) t(i)"
        )
    )
    graph = graph_for(write_models(tmp_path, SORTED_MODEL))
    assert modeling.build(engine, graph, RunLog(engine)).ok
    return graph["fct_a"]


STORED_ORDER = "SELECT kind, id, day FROM core.fct_a ORDER BY rowid"
SORTED_SOURCE = "SELECT kind, id, day FROM raw.a ORDER BY kind, id"


def test_a_model_is_stored_in_its_sorted_by_order(
    engine: DuckDBEngine, sorted_model: modeling.Model
) -> None:
    assert engine.fetch_arrow(q(STORED_ORDER)).equals(engine.fetch_arrow(q(SORTED_SOURCE)))
    assert modeling.layout_spread(engine, "core", "fct_a", "kind") == 1.0


def test_an_incremental_rewrite_past_the_spread_limit_writes_the_table_in_order(
    engine: DuckDBEngine, sorted_model: modeling.Model
) -> None:
    """Rewriting the last 10 of 20 days appends half the rows sorted among themselves:
    row groups admitting every kind, past the limit; the table is then written in order
    again, every row kept."""
    rows = modeling.refresh_since(engine, sorted_model, since=date(2024, 1, 11))
    assert rows == SORTED_ROWS
    assert engine.fetch_arrow(q(STORED_ORDER)).equals(engine.fetch_arrow(q(SORTED_SOURCE)))
    assert modeling.layout_spread(engine, "core", "fct_a", "kind") == 1.0


def test_an_incremental_rewrite_within_the_spread_limit_appends_in_order(
    engine: DuckDBEngine, sorted_model: modeling.Model
) -> None:
    """Rewriting the last day only (a twentieth of the rows) stays within the limit: the
    day is appended in order among itself and the table is not rewritten."""
    assert modeling.refresh_since(engine, sorted_model, since=date(2024, 1, 20)) == SORTED_ROWS
    stored = engine.fetch_arrow(q(STORED_ORDER))
    expected = engine.fetch_arrow(q(SORTED_SOURCE))
    assert not stored.equals(expected)
    assert stored.sort_by([("kind", "ascending"), ("id", "ascending")]).equals(expected)
    recent = engine.fetch_arrow(
        q("SELECT kind, id, day FROM core.fct_a WHERE day = DATE '2024-01-20' ORDER BY rowid")
    )
    assert recent.equals(recent.sort_by([("kind", "ascending"), ("id", "ascending")]))
    spread = modeling.layout_spread(engine, "core", "fct_a", "kind")
    assert 1.0 < spread <= modeling.RESORT_ABOVE


def _spread_by_hand(rowid: np.ndarray, key: np.ndarray, group: int) -> float:
    """layout_spread's measure from each row's rowid and key (NaN: null), block by block:
    per row group, the distinct keys between its minimum and maximum, summed, over the
    distinct keys plus one per row group boundary of the rows sorted."""
    keys = np.unique(key[~np.isnan(key)])
    admitted = 0
    for block in np.unique(rowid // group):
        present = key[(rowid // group == block) & ~np.isnan(key)]
        if present.size:
            admitted += int(((keys >= present.min()) & (keys <= present.max())).sum())
    ideal = keys.size + -(-rowid.size // group) - 1
    return admitted / ideal


def test_layout_spread_matches_a_count_by_hand(engine: DuckDBEngine) -> None:
    """Sorted, appended in sorted stretches, shuffled, with nulls and deleted rows: the
    measure equals the count done by hand from each row's rowid."""
    engine.execute(q("CREATE SCHEMA IF NOT EXISTS core"))
    engine.execute(
        q(
            "CREATE TABLE core.t AS SELECT CASE WHEN i % 97 = 0 THEN NULL ELSE i % 7 END AS k "
            "FROM range(300000) t(i) ORDER BY k"
        )
    )
    cases = [
        "CHECKPOINT",  # sorted
        "INSERT INTO core.t SELECT i % 7 FROM range(150000) t(i) ORDER BY 1",  # a stretch
        "DELETE FROM core.t WHERE k = 3",
        "INSERT INTO core.t SELECT (i * 5) % 11 FROM range(200000) t(i)",  # unsorted
    ]
    spreads = []
    for statement in cases:
        engine.execute(q(statement))
        rows = engine.fetch_arrow(q("SELECT rowid, CAST(k AS DOUBLE) AS k FROM core.t"))
        rowid = rows["rowid"].to_numpy()
        key = rows["k"].to_numpy(zero_copy_only=False)
        spread = modeling.layout_spread(engine, "core", "t", "k")
        assert spread == pytest.approx(_spread_by_hand(rowid, key, modeling.ROW_GROUP_ROWS))
        spreads.append(spread)
    assert spreads[0] == 1.0
    assert 1.0 < spreads[1] < spreads[3]
