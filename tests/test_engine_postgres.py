"""PostgresEngine beyond the shared contract: exact Arrow round trips through binary COPY,
refusals that would change a value, atomic swaps seen from a second session, nested
transactions, connection and query errors, and Ctrl-C cancelling on the server.

Every test runs against the throwaway PostgreSQL server of tests/servers.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import pyarrow as pa
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from productlens.engines.base import table
from productlens.engines.postgres import PostgresEngine, _unreachable
from productlens.errors import EngineError, EngineUnavailable
from tests import servers

# The raw contract's and the marts' Arrow types, and the column type each is stored in.
TYPES: dict[str, tuple[pa.DataType, str]] = {
    "i": (pa.int64(), "BIGINT"),
    "f": (pa.float64(), "DOUBLE"),
    "m": (pa.decimal128(12, 2), "DECIMAL(12, 2)"),
    "w": (pa.decimal128(38, 10), "DECIMAL(38, 10)"),
    'it\'s "s"': (pa.string(), "VARCHAR"),
    "b": (pa.bool_(), "BOOLEAN"),
    "d": (pa.date32(), "DATE"),
    "ts": (pa.timestamp("us"), "TIMESTAMP"),
    "tz": (pa.timestamp("us", tz="UTC"), "TIMESTAMPTZ"),
    "j": (pa.string(), "JSON"),
}


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[PostgresEngine]:
    engine = PostgresEngine(pg_dsn)
    engine.ensure_schema("raw")
    yield engine
    engine.close()


def q(sql: str) -> exp.Expression:
    parsed = sqlglot.parse_one(sql, read="duckdb")
    assert parsed is not None
    return parsed


def make_table(pg: PostgresEngine, name: str, types: dict[str, tuple[pa.DataType, str]]) -> None:
    pg.create_table(
        "raw", name, [(col, exp.DataType.build(sql)) for col, (_, sql) in types.items()]
    )


def read_back(pg: PostgresEngine, name: str, columns: list[str]) -> pa.Table:
    return pg.fetch_arrow(
        exp.select(*(exp.column(c, quoted=True) for c in columns))
        .from_(table("raw", name))
        .order_by(exp.column("i", quoted=True))
    )


EDGE_ROWS = pa.table(
    {
        "i": pa.array([-(2**63), 2**63 - 1, 0, None], pa.int64()),
        "f": pa.array([0.1, 1e-300, -1.7976931348623157e308, None], pa.float64()),
        "m": pa.array(
            [Decimal("-9999999999.99"), Decimal("0.01"), Decimal("0"), None], pa.decimal128(12, 2)
        ),
        "w": pa.array(
            [
                Decimal("1234567890123456789012345678.0123456789"),
                Decimal("-0.0000000001"),
                Decimal("0"),
                None,
            ],
            pa.decimal128(38, 10),
        ),
        'it\'s "s"': ['it\'s "quoted"', "é ü 日本 🙂\nnext, line\r\n", "", None],
        "b": [True, False, True, None],
        "d": pa.array([date(1970, 1, 1), date(2024, 2, 29), date(9999, 12, 31), None]),
        "ts": pa.array(
            [
                datetime(2024, 3, 10, 2, 30, 0, 123456),
                datetime(1900, 1, 1),
                datetime(2038, 1, 19, 3, 14, 8),
                None,
            ],
            pa.timestamp("us"),
        ),
        "tz": pa.array(
            [
                datetime(2024, 3, 10, 2, 30, 0, 1, tzinfo=UTC),
                datetime(2000, 1, 1, tzinfo=UTC),
                datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                None,
            ],
            pa.timestamp("us", tz="UTC"),
        ),
        "j": ['{"b": 1, "a": [1, 2]}', '{"s": "it\'s \\"q\\""}', "[]", None],
    }
)


def test_every_type_round_trips_exactly_with_nulls(pg: PostgresEngine) -> None:
    make_table(pg, "edge", TYPES)
    assert pg.append_arrow("raw", "edge", EDGE_ROWS) == 4
    got = read_back(pg, "edge", list(TYPES))
    expected = EDGE_ROWS.sort_by("i")
    assert got.schema.types == expected.schema.types
    assert got.to_pylist() == expected.to_pylist()


def test_the_csv_and_row_paths_of_fetch_arrow_agree(pg: PostgresEngine) -> None:
    make_table(pg, "edge", TYPES)
    pg.append_arrow("raw", "edge", EDGE_ROWS)
    # Ordered: two reads of a table without ORDER BY may come back in different orders.
    query = exp.select("*").from_(table("raw", "edge")).order_by("i")
    assert pg.fetch_arrow(query).equals(pg._fetch_rows(pg.render(query)))


def test_numeric_without_a_scale_takes_the_values_scale(pg: PostgresEngine) -> None:
    make_table(pg, "edge", TYPES)
    pg.append_arrow("raw", "edge", EDGE_ROWS)
    # sum() of numeric(12, 2) is numeric without a declared scale on PostgreSQL.
    query = q("SELECT sum(m) AS total, sum(w) AS wide FROM raw.edge")
    got = pg.fetch_arrow(query)
    assert got.schema.types == [pa.decimal128(38, 2), pa.decimal128(38, 10)]
    assert got.to_pylist() == [
        {
            "total": Decimal("-9999999999.98"),
            "wide": Decimal("1234567890123456789012345678.0123456788"),
        }
    ]
    assert pg._fetch_rows(pg.render(query)).equals(got)


def test_a_result_csv_cannot_carry_takes_the_row_path(pg: PostgresEngine) -> None:
    got = pg.fetch_arrow(q("SELECT [1, 2] AS arr, CAST('1.5' AS DECIMAL(9, 3)) AS m"))
    assert got.to_pylist() == [{"arr": [1, 2], "m": Decimal("1.500")}]
    assert got.schema.field("m").type == pa.decimal128(9, 3)


def test_uuid_and_bytea_fetch_as_text_and_bytes(pg: PostgresEngine, pg_dsn: str) -> None:
    setup_sql(
        pg_dsn,
        "CREATE TABLE raw.odd AS SELECT 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, "
        "'\\x00ff0a'::bytea AS b",
    )
    got = pg.fetch_arrow(exp.select("u", "b").from_(table("raw", "odd")))
    assert got.to_pylist() == [{"u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "b": b"\x00\xff\n"}]


def test_a_value_arrow_cannot_hold_is_an_engine_error(pg: PostgresEngine, pg_dsn: str) -> None:
    setup_sql(pg_dsn, "CREATE TABLE raw.old AS SELECT DATE '0044-03-15 BC' AS d")
    with pytest.raises(EngineError, match="date"):
        pg.fetch_arrow(exp.select("d").from_(table("raw", "old")))


def test_append_matches_columns_by_name_and_leaves_the_rest_null(pg: PostgresEngine) -> None:
    make_table(pg, "part", TYPES)
    shuffled = EDGE_ROWS.select(["tz", "i", "m"])
    assert pg.append_arrow("raw", "part", shuffled.slice(0, 0)) == 0  # an empty file
    pg.append_arrow("raw", "part", shuffled)
    got = read_back(pg, "part", ["i", "m", "tz", "f"]).sort_by("i")
    assert got.column("m").to_pylist() == shuffled.sort_by("i").column("m").to_pylist()
    assert got.column("tz").to_pylist() == shuffled.sort_by("i").column("tz").to_pylist()
    assert got.column("f").null_count == 4


def setup_sql(dsn: str, sql: str) -> None:
    """PostgreSQL's own SQL, for set-ups the DuckDB dialect cannot say."""
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(sql.encode())


def test_string_layouts_from_parquet_readers_all_load(pg: PostgresEngine) -> None:
    words = ["a", None, "it's", "a"]
    data = pa.table(
        {
            "i": pa.chunked_array([[1, 2], [3, 4]], pa.int64()),  # two chunks
            "s": pa.array(words).dictionary_encode(),
            "l": pa.array(words, pa.large_string()),
            "v": pa.array(words, pa.string_view()),
        }
    )
    columns = {"i": TYPES["i"]} | {c: (pa.string(), "VARCHAR") for c in "slv"}
    make_table(pg, "layouts", columns)
    assert pg.append_arrow("raw", "layouts", data) == 4
    got = read_back(pg, "layouts", ["i", "s", "l", "v"])
    assert got.to_pydict() == {"i": [1, 2, 3, 4], "s": words, "l": words, "v": words}


def test_jsonb_columns_load_json_text(pg: PostgresEngine, pg_dsn: str) -> None:
    setup_sql(pg_dsn, "CREATE TABLE raw.props (i bigint, j jsonb)")
    pg.append_arrow("raw", "props", pa.table({"i": [1, 2], "j": ['{"a": 1}', None]}))
    # jsonb keeps the JSON's meaning (not its spacing): the text reads back as written here.
    assert pg.fetch_all(q("SELECT j FROM raw.props ORDER BY i")) == [('{"a": 1}',), (None,)]


def test_timestamps_naive_are_utc_and_zoned_keep_their_instant(pg: PostgresEngine) -> None:
    make_table(pg, "times", {"i": TYPES["i"], "ts": TYPES["ts"], "tz": TYPES["tz"]})
    instant = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    data = pa.table(
        {
            "i": [1],
            # A zoned value into the naive column, a naive one into the zoned column.
            "ts": pa.array([instant], pa.timestamp("us", tz="Europe/Paris")),
            "tz": pa.array([datetime(2024, 6, 1, 12, 0)], pa.timestamp("us")),
        }
    )
    pg.append_arrow("raw", "times", data)
    assert pg.fetch_all(q("SELECT ts, tz FROM raw.times")) == [
        (datetime(2024, 6, 1, 12, 0), instant)
    ]


@pytest.mark.parametrize(
    ("column_type", "values", "said"),
    [
        ("INT", pa.array([2**40], pa.int64()), "int4"),
        ("DECIMAL(12, 2)", pa.array([Decimal("1.005")], pa.decimal128(12, 3)), "numeric"),
        ("DECIMAL(4, 2)", pa.array([Decimal("123.45")], pa.decimal128(12, 2)), "numeric"),
        ("TIMESTAMP", pa.array([1_000_000_001], pa.timestamp("ns")), "timestamp"),
    ],
)
def test_a_value_that_would_change_is_refused(
    pg: PostgresEngine, column_type: str, values: pa.Array, said: str
) -> None:
    pg.create_table("raw", "narrow", [("v", exp.DataType.build(column_type))])
    with pytest.raises(EngineError, match=said) as caught:
        pg.append_arrow("raw", "narrow", pa.table({"v": values}))
    assert "raw.narrow" in str(caught.value)
    assert "'v'" in str(caught.value)
    assert pg.fetch_all(q("SELECT count(*) FROM raw.narrow")) == [(0,)]


def test_text_with_nul_is_refused_naming_table_and_column(pg: PostgresEngine) -> None:
    make_table(pg, "names", {"i": TYPES["i"], "label": (pa.string(), "VARCHAR")})
    data = pa.table({"i": [1, 2], "label": ["fine", "bad\x00byte"]})
    with pytest.raises(EngineError, match="NUL") as caught:
        pg.append_arrow("raw", "names", data)
    assert "raw.names" in str(caught.value)
    assert "'label'" in str(caught.value)
    assert pg.fetch_all(q("SELECT count(*) FROM raw.names")) == [(0,)]


def test_unknown_columns_and_missing_tables_are_errors(pg: PostgresEngine) -> None:
    make_table(pg, "small", {"i": TYPES["i"]})
    with pytest.raises(EngineError, match="do not match"):
        pg.append_arrow("raw", "small", pa.table({"i": [1], "extra": [2]}))
    with pytest.raises(EngineError, match="no such table"):
        pg.append_arrow("raw", "absent", pa.table({"i": [1]}))


PROPERTY_COLUMNS = ["i", "f", "m", 'it\'s "s"', "b", "d", "ts", "tz"]
row_values = st.fixed_dictionaries(
    {
        "i": st.integers(-(2**63), 2**63 - 1),
        "f": st.one_of(st.none(), st.floats(allow_nan=False)),
        "m": st.one_of(
            st.none(),
            st.decimals(
                min_value=-(10**10) + 1,
                max_value=10**10 - 1,
                places=2,
                allow_nan=False,
                allow_infinity=False,
            ),
        ),
        'it\'s "s"': st.one_of(
            st.none(),
            st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")),
        ),
        "b": st.one_of(st.none(), st.booleans()),
        "d": st.one_of(st.none(), st.dates(min_value=date(1, 1, 1))),
        "ts": st.one_of(st.none(), st.datetimes(min_value=datetime(1, 1, 1))),
        "tz": st.one_of(
            st.none(),
            st.datetimes(min_value=datetime(1, 1, 2)).map(lambda v: v.replace(tzinfo=UTC)),
        ),
    }
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(row_values, max_size=20, unique_by=lambda row: row["i"]))
def test_append_then_fetch_is_the_identity(
    pg: PostgresEngine, rows: list[dict[str, object]]
) -> None:
    types = {col: TYPES[col] for col in PROPERTY_COLUMNS}
    pg.drop("raw", "prop")
    make_table(pg, "prop", types)
    schema = pa.schema([(col, arrow) for col, (arrow, _) in types.items()])
    data = pa.Table.from_pylist(rows, schema=schema)
    assert pg.append_arrow("raw", "prop", data) == len(rows)
    got = read_back(pg, "prop", list(types))
    assert got.schema.types == schema.types
    assert got.to_pylist() == data.sort_by("i").to_pylist()


def test_fetch_arrow_types_come_from_the_result_even_when_empty(pg: PostgresEngine) -> None:
    got = pg.fetch_arrow(
        q(
            "SELECT CAST(1 AS SMALLINT) AS a, CAST(1.5 AS DECIMAL(9, 3)) AS b, "
            "CAST('2024-01-01' AS DATE) AS c, CAST(NULL AS TIMESTAMP) AS d WHERE false"
        )
    )
    assert got.num_rows == 0
    assert got.schema.types == [pa.int16(), pa.decimal128(9, 3), pa.date32(), pa.timestamp("us")]


def test_columns_map_postgres_types(pg: PostgresEngine, pg_dsn: str) -> None:
    setup_sql(
        pg_dsn,
        "CREATE TABLE raw.kinds (a numeric(12,2), b timestamp, c timestamptz, d date, e text, "
        "f varchar(10), g bool, h int2, i int4, j int8, k float8, l jsonb, m json, n int4[])",
    )
    got = {name: dtype.sql("duckdb") for name, dtype in pg.columns("raw", "kinds")}
    assert got == {
        "a": "DECIMAL(12, 2)",
        "b": "TIMESTAMP",
        "c": "TIMESTAMPTZ",
        "d": "DATE",
        "e": "TEXT",
        "f": "TEXT(10)",
        "g": "BOOLEAN",
        "h": "SMALLINT",
        "i": "INT",
        "j": "BIGINT",
        "k": "DOUBLE",
        "l": "JSON",
        "m": "JSON",
        "n": "INT[]",
    }
    assert dict(pg.columns("raw", "kinds"))["l"].is_type(exp.DataType.Type.JSONB)


def test_catalog_look_ups_are_not_transpiled(
    pg: PostgresEngine, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog's queries are PostgreSQL's own, prepared once: with transpiling
    broken, look-ups and appends still answer (and a model query does not)."""
    from productlens import dialects

    setup_sql(pg_dsn, 'CREATE TABLE raw."it\'s" (a numeric(12,2), b text)')
    setup_sql(pg_dsn, "CREATE VIEW raw.v AS SELECT 1 AS x")

    def broken(*args: object) -> exp.Expr:
        raise AssertionError("transpiled")

    monkeypatch.setattr(dialects, "for_engine", broken)
    assert pg.table_kind("raw", "it's") == "table"
    assert pg.table_kind("raw", "v") == "view"
    assert pg.table_kind("raw", "absent") is None
    assert pg.table_kind("no such schema", "t") is None
    assert pg.list_tables("raw") == ["it's", "v"]
    assert [(c, t.sql("duckdb")) for c, t in pg.columns("raw", "it's")] == [
        ("a", "DECIMAL(12, 2)"),
        ("b", "TEXT"),
    ]
    assert pg.columns("raw", "absent") == []
    data = pa.table({"b": ["x"], "a": pa.array([Decimal("1.50")], pa.decimal128(12, 2))})
    assert pg.append_arrow("raw", "it's", data) == 1
    with pytest.raises(AssertionError, match="transpiled"):
        pg.fetch_all(q('SELECT a FROM raw."it\'s"'))
    monkeypatch.undo()
    assert pg.fetch_all(q('SELECT a, b FROM raw."it\'s"')) == [(Decimal("1.50"), "x")]


def test_a_streamed_append_is_one_copy_of_every_batch(pg: PostgresEngine, pg_dsn: str) -> None:
    """A reader's batches go into one COPY, each cast as a table's would be; a refused
    value in a later batch loads none of the earlier ones."""
    make_table(pg, "edge", TYPES)
    batches = EDGE_ROWS.to_batches(max_chunksize=1)
    assert len(batches) == 4
    reader = pa.RecordBatchReader.from_batches(EDGE_ROWS.schema, iter(batches))
    assert pg.append_arrow("raw", "edge", reader) == 4
    got = read_back(pg, "edge", list(TYPES))
    expected = EDGE_ROWS.sort_by("i")
    assert got.schema.types == expected.schema.types
    assert got.to_pylist() == expected.to_pylist()
    pg.create_table("raw", "small", [("v", exp.DataType.build("SMALLINT"))])
    ok = pa.record_batch({"v": pa.array([1, 2], pa.int64())})
    too_big = pa.record_batch({"v": pa.array([3, 2**20], pa.int64())})
    with pytest.raises(EngineError, match="column 'v'"):
        pg.append_arrow(
            "raw", "small", pa.RecordBatchReader.from_batches(ok.schema, iter([ok, too_big]))
        )
    assert pg.fetch_all(q("SELECT count(*) FROM raw.small")) == [(0,)]


def test_a_reader_during_the_swap_waits_and_reads_the_new_table(
    pg: PostgresEngine, pg_dsn: str
) -> None:
    pg.replace_table("raw", "t", q("SELECT 1 AS x"))
    seen: list[object] = []

    def read() -> None:
        try:
            with psycopg.connect(pg_dsn, autocommit=True) as reader:
                seen.append(reader.execute("SELECT x FROM raw.t ORDER BY x").fetchall())
        except psycopg.Error as exc:  # a missing table would land here
            seen.append(exc)

    reader = threading.Thread(target=read)
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE 'SELECT x FROM raw.t%'"
    )
    with psycopg.connect(pg_dsn, autocommit=True) as watcher, pg.transaction():
        pg.replace_table("raw", "t", q("SELECT 2 AS x UNION ALL SELECT 3"))
        reader.start()
        while watcher.execute(waiting).fetchall() != [(1,)]:  # blocked on the swap
            assert reader.is_alive(), seen
            time.sleep(0.05)
    reader.join()
    assert seen == [[(2,), (3,)]]
    assert pg.list_tables("raw") == ["t"]


def test_a_left_over_building_table_does_not_block_a_build(pg: PostgresEngine) -> None:
    pg.replace_table("raw", "t__building", q("SELECT 'stale' AS x"))
    assert pg.replace_table("raw", "t", q("SELECT 'fresh' AS x")) == 1
    assert pg.list_tables("raw") == ["t"]


def append_then_fail(pg: PostgresEngine) -> None:
    with pg.transaction():
        pg.append_arrow("raw", "log", pa.table({"x": pa.array([2], pa.int32())}))
        pg.execute(q("SELECT * FROM raw.nope"))


def test_nested_transaction_rolls_back_only_the_inner_block(pg: PostgresEngine) -> None:
    pg.create_table("raw", "log", [("x", exp.DataType.build("INT"))])
    insert = exp.insert(q("SELECT 1"), table("raw", "log"))
    with pg.transaction():
        pg.execute(insert)
        with pytest.raises(EngineError):
            append_then_fail(pg)
    assert pg.fetch_all(q("SELECT x FROM raw.log")) == [(1,)]


def test_append_arrow_joins_the_callers_transaction(pg: PostgresEngine) -> None:
    pg.create_table("raw", "log", [("x", exp.DataType.build("INT"))])
    with pytest.raises(EngineError):
        append_then_fail(pg)
    assert pg.fetch_all(q("SELECT count(*) FROM raw.log")) == [(0,)]


def test_temp_table_holds_every_type_exactly(pg: PostgresEngine) -> None:
    with pg.temp_table("edge", EDGE_ROWS) as relation:
        got = pg.fetch_arrow(exp.select("*").from_(relation).order_by(exp.column("i")))
    assert got.equals(EDGE_ROWS.sort_by("i"))


def test_temp_table_is_gone_after_the_block(pg: PostgresEngine) -> None:
    data = pa.table(
        {"k": pa.array([1, 2], pa.int64()), "at": pa.array([None, 1], pa.timestamp("us"))}
    )
    with pg.temp_table("input rows", data) as relation:
        assert pg.fetch_arrow(exp.select("k").from_(relation)).num_rows == 2
    with pytest.raises(EngineError):
        pg.fetch_all(exp.select("k").from_(relation))


def fail_inside_a_temp_table(pg: PostgresEngine, data: pa.Table) -> None:
    with pg.transaction(), pg.temp_table("rows", data):
        pg.fetch_all(q("SELECT * FROM raw.nope"))


def test_a_failing_block_with_a_temp_table_reports_its_own_error(pg: PostgresEngine) -> None:
    data = pa.table({"k": [1]})
    pg.temp_table("rows", data).__enter__()  # an earlier block that never closed
    with pytest.raises(EngineError, match=r'relation "raw\.nope" does not exist'):
        fail_inside_a_temp_table(pg, data)
    with pg.temp_table("rows", data) as relation:  # the name is free again
        assert pg.fetch_all(exp.select("k").from_(relation)) == [(1,)]


def test_query_errors_carry_postgres_first_line_and_the_table(pg: PostgresEngine) -> None:
    pg.replace_table("raw", "t", q("SELECT 1 AS x"))
    with pytest.raises(EngineError) as caught:
        pg.replace_table("raw", "t", q("SELECT no_such_column FROM raw.t"))
    message = str(caught.value)
    assert 'column "no_such_column" does not exist' in message
    assert "table=raw.t" in message
    assert "\n" not in message
    with pytest.raises(EngineError, match=r'relation "nowhere.t" does not exist.*sql=SELECT'):
        pg.fetch_all(q("SELECT * FROM nowhere.t"))


def test_server_down_is_one_line_without_the_password() -> None:
    port = servers.free_port()  # nothing listens there
    dsn = f"host=127.0.0.1 port={port} user=someone password=hunter2secret dbname=x"
    # No server: unavailable (the dashboard says "cannot be reached", as for a lost one).
    with pytest.raises(EngineUnavailable) as caught:
        PostgresEngine(dsn)
    message = str(caught.value)
    assert "cannot connect to PostgreSQL" in message
    assert "hunter2secret" not in message
    assert "password=***" in message
    assert "\n" not in message


# libpq's text for failed connection attempts (it gives them no SQLSTATE): whether the
# engine calls the server unavailable (EngineUnavailable) or the settings wrong.
AT = 'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
CONNECT_FAILURES = [
    (AT + "Connection refused", True),
    (AT + "timeout expired", True),
    ('connection failed: could not translate host name "nowhere" to address', True),
    (AT + "FATAL:  the database system is starting up", True),
    (AT + "FATAL:  the database system is shutting down", True),
    (AT + "FATAL:  the database system is not yet accepting connections", True),
    (AT + 'FATAL:  database "x" does not exist', False),
    (AT + 'FATAL:  password authentication failed for user "u"', False),
    (AT + "FATAL:  sorry, too many clients already", False),
]


@pytest.mark.parametrize(("message", "unavailable"), CONNECT_FAILURES)
def test_a_failed_connection_is_unavailable_only_without_a_server_to_take_it(
    message: str, unavailable: bool
) -> None:
    assert _unreachable(psycopg.OperationalError(message)) is unavailable


def test_bad_dsn_and_unknown_database_are_clear(pg_server: servers.PostgresServer) -> None:
    with pytest.raises(EngineError, match="invalid PostgreSQL DSN") as caught:
        PostgresEngine("host=127.0.0.1 password=hunter2secret nonsense")
    assert "hunter2secret" not in str(caught.value)
    url = f"postgresql://{pg_server.user}:hunter2secret@127.0.0.1:{pg_server.port}/no_such_db"
    with pytest.raises(EngineError, match='database "no_such_db" does not exist') as caught:
        PostgresEngine(url)
    assert "hunter2secret" not in str(caught.value)
    # The server answered: a setting to fix, not a server to start.
    assert not isinstance(caught.value, EngineUnavailable)


def test_a_role_that_may_not_log_in_is_refused_clearly(
    pg_server: servers.PostgresServer, pg_dsn: str
) -> None:
    setup_sql(pg_dsn, "CREATE ROLE visitor NOLOGIN PASSWORD 'hunter2secret'")
    dsn = f"host=127.0.0.1 port={pg_server.port} user=visitor password=hunter2secret dbname=x"
    with pytest.raises(EngineError, match='role "visitor" is not permitted to log in') as caught:
        PostgresEngine(dsn)
    assert "hunter2secret" not in str(caught.value)
    assert "password=***" in str(caught.value)
    assert not isinstance(caught.value, EngineUnavailable)


def test_a_lost_connection_is_an_engine_error(pg: PostgresEngine, pg_dsn: str) -> None:
    pid = pg.fetch_all(q("SELECT pg_backend_pid()"))[0][0]
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises(EngineError) as caught:
        pg.fetch_all(q("SELECT 1"))
    assert "\n" not in str(caught.value)
    assert "engine=postgres" in str(caught.value)


def test_names_with_quotes_and_long_names_work(pg: PostgresEngine) -> None:
    schema, name = 'it\'s "raw"', 'a "quoted" tablé'
    pg.ensure_schema(schema)
    pg.replace_table(schema, name, q('SELECT 1 AS "it\'s"'))
    pg.append_arrow(schema, name, pa.table({"it's": pa.array([2], pa.int32())}))
    assert pg.list_tables(schema) == [name]
    assert [col for col, _ in pg.columns(schema, name)] == ["it's"]
    assert pg.replace_table(schema, name, exp.select("*").from_(table(schema, name))) == 2
    longest = "n" * 63  # PostgreSQL's limit; the building name must not collide with it
    assert pg.replace_table(schema, longest, q("SELECT 1 AS x")) == 1
    assert pg.replace_table(schema, longest, q("SELECT 2 AS x")) == 1
    assert pg.list_tables(schema) == [name, longest]
    pg.drop(schema, name)
    assert pg.list_tables(schema) == [longest]


@pytest.fixture
def default_ctrl_c() -> Iterator[None]:
    """Python's own Ctrl-C (KeyboardInterrupt in the main thread) for the test: a library
    that ran earlier in the same worker process (an in-process CLI run, Spark, Dagster)
    may have left a SIGINT handler of its own, and then the signal never reached psycopg's
    wait (the two tests below hung or did not raise, depending on what ran before)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_cancels_the_query_on_the_server(
    pg: PostgresEngine, pg_dsn: str, default_ctrl_c: None
) -> None:
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            pg.fetch_all(q("SELECT pg_sleep(60)"))
    finally:
        timer.cancel()
    with psycopg.connect(pg_dsn, autocommit=True) as watcher:
        running = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' "
            "AND state = 'active' AND pid <> pg_backend_pid()"
        ).fetchall()
    assert running == [(0,)]
    assert pg.fetch_all(q("SELECT 1")) == [(1,)]  # the session is still usable


def test_ctrl_c_during_a_load_cancels_it(
    pg: PostgresEngine, pg_dsn: str, default_ctrl_c: None
) -> None:
    pg.create_table("raw", "log", [("x", exp.DataType.build("BIGINT"))])
    with psycopg.connect(pg_dsn) as holder:
        holder.execute("LOCK TABLE raw.log")  # the COPY waits on the server for this lock
        timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                pg.append_arrow("raw", "log", pa.table({"x": pa.array([1, 2, 3], pa.int64())}))
        finally:
            timer.cancel()
        holder.rollback()
    assert pg.fetch_all(q("SELECT count(*) FROM raw.log")) == [(0,)]


def test_exact_whatever_the_servers_defaults(pg_dsn: str) -> None:
    dbname = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    with psycopg.connect(pg_dsn, autocommit=True) as con:
        for setting in (
            "extra_float_digits = 0",
            "DateStyle = 'SQL, DMY'",
            "TimeZone = 'Asia/Tokyo'",
            "jit = on",
        ):
            con.execute(
                psycopg.sql.SQL("ALTER DATABASE {} SET " + setting).format(
                    psycopg.sql.Identifier(dbname)
                )
            )
    engine = PostgresEngine(pg_dsn)
    try:
        query = q(
            "SELECT CAST(1 AS DOUBLE) / 3 AS third, CAST('2024-02-03' AS DATE) AS day, "
            "CAST('2024-02-03 04:05:06' AS TIMESTAMPTZ) AS at"
        )
        expected = {
            "third": 1 / 3,
            "day": date(2024, 2, 3),
            "at": datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC),
        }
        assert engine.fetch_arrow(query).to_pylist() == [expected]
        assert engine.fetch_all(query) == [tuple(expected.values())]
        # No JIT compilation (0.7 s of CPU per short analytic query): it changes no value.
        assert engine.fetch_all(q("SELECT current_setting('jit')")) == [("off",)]
    finally:
        engine.close()


def test_application_name_is_set(pg_dsn: str) -> None:
    engine = PostgresEngine(pg_dsn, application_name="productlens-test")
    try:
        assert engine.fetch_all(q("SELECT current_setting('application_name')")) == [
            ("productlens-test",)
        ]
        assert engine.fetch_all(q("SELECT current_setting('TimeZone')")) == [("UTC",)]
    finally:
        engine.close()


def test_a_read_only_role_keeps_reading_rebuilt_tables_with_default_privileges(
    pg_dsn: str,
) -> None:
    """What README's Dashboard section tells a PostgreSQL admin: a build recreates each
    table, so a plain GRANT SELECT is lost at the next build; default privileges for the
    building role keep a read-only role (the dashboard's) reading every rebuilt table."""
    database = pg_dsn.rsplit("dbname=", 1)[1]
    builder, reader, plain = (f"{database}_{who}"[:60] for who in ("build", "read", "plain"))
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        for role in (builder, reader, plain):
            admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'GRANT CREATE ON DATABASE "{database}" TO "{builder}"')
        # The README's two statements, run once by an admin:
        admin.execute(
            f'ALTER DEFAULT PRIVILEGES FOR ROLE "{builder}" GRANT USAGE ON SCHEMAS TO "{reader}"'
        )
        admin.execute(
            f'ALTER DEFAULT PRIVILEGES FOR ROLE "{builder}" GRANT SELECT ON TABLES TO "{reader}"'
        )
    build = PostgresEngine(f"{pg_dsn} user={builder}")
    try:
        build.ensure_schema("marts")
        build.replace_table("marts", "kpis", q("SELECT 1 AS n"))
        build.execute(q(f'GRANT USAGE ON SCHEMA marts TO "{plain}"'))
        build.execute(q(f'GRANT SELECT ON ALL TABLES IN SCHEMA marts TO "{plain}"'))
        build.replace_table("marts", "kpis", q("SELECT 2 AS n"))  # the next build
        build.replace_view("marts", "kpis_view", q("SELECT n FROM marts.kpis"))
    finally:
        build.close()
    read = PostgresEngine(f"{pg_dsn} user={reader}", read_only=True)
    try:
        assert read.fetch_all(q("SELECT n FROM marts.kpis")) == [(2,)]
        assert read.fetch_all(q("SELECT n FROM marts.kpis_view")) == [(2,)]
    finally:
        read.close()
    lost = PostgresEngine(f"{pg_dsn} user={plain}", read_only=True)
    try:  # a grant on the tables of the day is gone with them
        with pytest.raises(EngineError, match="permission denied"):
            lost.fetch_all(q("SELECT n FROM marts.kpis"))
    finally:
        lost.close()
