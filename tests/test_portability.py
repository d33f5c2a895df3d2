"""The portability table: each SQL construct the models use (and each trap of STYLE.md's
"SQL that runs on DuckDB, PostgreSQL and Spark"), as a tiny query with a known answer,
run on DuckDB, PostgreSQL and Spark through the one transpile path the models take
(`productlens.dialects.transpile`). SQLGlot's own warnings miss most of these: only
running them proves the answers equal. A last test removes overrides from the dispatch
table and sees the answers go wrong, so every override here is load-bearing."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from productlens import dialects
from productlens.engines import DuckDBEngine
from productlens.metrics.calendar import add_days

Answer = tuple[Any, ...]

# name -> (query in DuckDB's dialect, its one row). Written so the answer is known by hand.
CONSTRUCTS: dict[str, tuple[str | exp.Query, Answer]] = {
    # date - date is a whole number of days (dim_campaigns, customer_metrics, dim_date)
    "date_minus_date": (
        "select date '2026-03-10' - date '2026-03-01' + 1 as n_days, "
        "date '2026-03-01' - date '2026-03-10' as back",
        (10, -9),
    ),
    "date_minus_date_through_a_cte": (
        "with t as (select cast('2026-03-01' as date) as a, cast('2026-05-20' as date) as b) "
        "select b - a as n, -(b - a) / 90.0 as scaled from t",
        (80, -80 / 90),
    ),
    "date_plus_integer": (
        "with t as (select cast('2026-03-01' as date) as d, 79 as n) "
        "select cast(d + n as date) as day from t",
        (date(2026, 5, 19),),
    ),
    # Spark's date_add takes an INT; the activity mart adds a BIGINT day number
    "date_add_bigint_days": (
        exp.select(
            add_days(
                exp.cast(exp.Literal.string("2026-03-01"), "date"),
                exp.cast(exp.convert(5), "bigint"),
            ).as_("day")
        ),
        (date(2026, 3, 6),),
    ),
    # bit masks (the activity queries): a & (b << k), built as a tree without parentheses
    "bitwise_and_of_a_shift": (
        exp.select(
            exp.BitwiseAnd(
                this=exp.convert(6),
                expression=exp.BitwiseLeftShift(
                    this=exp.cast(exp.convert(1), "bigint"), expression=exp.convert(2)
                ),
            ).as_("masked")
        ),
        (4,),
    ),
    # avg of integers is a double (product_metrics' avg_on_hand, the funnel's times):
    # PostgreSQL averages in numeric, which its text shows with 16 places
    "avg_of_integers_is_a_double": (
        "select cast(avg(x) as varchar) as shown, avg(x) as mean, "
        "cast(avg(distinct x) as varchar) as shown_distinct "
        "from (select 2 as x union all select 3 union all select 3) as t",
        ("2.6666666666666665", 8 / 3, "2.5"),
    ),
    # isodow (dim_date): Sunday 1 March 2026 is 7, Monday 2 March is 1
    "isodow": (
        "select isodow(date '2026-03-01') as sun, isodow(date '2026-03-02') as mon, "
        "isodow(date '2026-03-07') as sat, isodow(date '2026-03-01') in (6, 7) as weekend",
        (7, 1, 6, True),
    ),
    # ISO year and week: 1 January 2027 (a Friday) is in week 53 of ISO year 2026
    "isoyear_and_week": (
        "select cast(extract(isoyear from date '2027-01-01') as integer) as y, "
        "cast(extract(week from date '2027-01-01') as integer) as w, "
        "cast(extract(isoyear from date '2024-12-30') as integer) as y2, "
        "cast(extract(week from date '2024-12-30') as integer) as w2",
        (2026, 53, 2025, 1),
    ),
    "calendar_parts": (
        "select cast(date_trunc('month', date '2026-05-20') as date) as m, "
        "cast(date_trunc('quarter', date '2026-05-20') as date) as q, "
        "cast(extract(quarter from date '2026-05-20') as integer) as qn, "
        "cast(extract(month from date '2026-05-20') as integer) as mn, "
        "cast(extract(year from date '2026-05-20') as integer) as yn",
        (date(2026, 5, 1), date(2026, 4, 1), 2, 5, 2026),
    ),
    # to_days (experiment_outcomes): a number of days as an interval
    "to_days": (
        "with t as (select timestamp '2026-03-01 10:00:00' as ts, 7 as n) "
        "select ts + to_days(n) as later, ts - to_days(n) as earlier from t",
        (datetime(2026, 3, 8, 10), datetime(2026, 2, 22, 10)),
    ),
    # interval (N) minute (fct_sessions) and interval 1 day (fct_inventory_daily)
    "interval_arithmetic": (
        "select timestamp '2026-03-01 23:50:00' + interval (30) minute as a, "
        "cast(date '2026-03-01' as timestamp) + interval 1 day as b, "
        "timestamp '2026-03-01 00:00:00' + interval (90) second as c",
        (datetime(2026, 3, 2, 0, 20), datetime(2026, 3, 2), datetime(2026, 3, 1, 0, 1, 30)),
    ),
    # epoch keeps microseconds (fct_sessions' duration)
    "epoch_difference": (
        "select epoch(timestamp '2026-03-01 10:01:30.250000') "
        "- epoch(timestamp '2026-03-01 10:00:00') as seconds",
        (90.25,),
    ),
    # AS MATERIALIZED (fct_order_items): a planner hint, same rows
    "materialized_cte": (
        "with lines as materialized (select 1 as x union all select 2) "
        "select sum(x) as total from lines",
        (3,),
    ),
    # / divides in double precision: integers (PostgreSQL truncates; SQLGlot casts when the
    # types are known) and decimals (Spark rounds a decimal quotient to 6 places)
    "division": (
        "with t as (select 7 as a, 2 as b, cast(1 as bigint) as c, 45 as d) "
        "select a / b as half, c / 3.0 as third, -d / 90.0 as neg, exp(-d / 90.0) as e, "
        "cast(ceil(cast(5 * 3 as double) / 7) as integer) as score from t",
        (3.5, 1 / 3, -0.5, math.exp(-0.5), 3),
    ),
    "division_by_nullif_zero": (
        "with t as (select 10.0 as spend, 0 as n) select spend / nullif(n, 0) as ratio from t",
        (None,),
    ),
    # round(double, n): PostgreSQL rounds only numerics
    "round_double": (
        "with t as (select cast(12.3456 as double) as x) select round(x, 2) as r from t",
        (12.35,),
    ),
    # FILTER, boolean aggregates, count distinct
    "aggregates": (
        "with t as (select * from (values (1, true, 'a'), (2, false, 'a'), (3, false, 'b')) "
        "as v (x, flag, k)) "
        "select count(*) filter (where x > 1) as n, min(k) filter (where x = 3) as k3, "
        "bool_or(flag) as any_flag, bool_and(flag) as all_flag, "
        "count(distinct k) as n_k, count(distinct k) > 1 as many, sum(x) as total, "
        "avg(x) as mean from t",
        (2, "b", True, False, 2, True, 6, 2.0),
    ),
    "median": (
        "with t as (select * from (values (1.0), (2.0), (3.0), (10.0)) as v (x)) "
        "select median(x) as m from t",
        (2.5,),
    ),
    # NULLs sort last in DuckDB (ascending and descending); Spark sorts them first
    "null_order_in_windows": (
        "with t as (select * from (values (1, null), (2, 5), (3, 7)) as v (id, x)) "
        "select max(case when id = 1 then rn end) as null_rank, "
        "max(case when id = 1 then rd end) as null_rank_desc, "
        "max(case when id = 3 then prev end) as prev_of_7 "
        "from (select id, row_number() over (order by x) as rn, "
        "row_number() over (order by x desc) as rd, lag(x) over (order by x) as prev "
        "from t) as w",
        (3, 3, 5),
    ),
    # RANGE frames count ties together (customer_metrics' RFM scores)
    "range_frame_ties": (
        "with t as (select * from (values (1, 10), (2, 10), (3, 20)) as v (id, x)) "
        "select max(case when id = 1 then c end) as tie, max(case when id = 3 then c end) "
        "as top from (select id, count(*) over (order by x range between unbounded "
        "preceding and current row) as c from t) as w",
        (2, 3),
    ),
    "running_sum_rows_frame": (
        "with t as (select * from (values (1, 1.5), (2, 2.5), (3, 3.0)) as v (id, x)) "
        "select max(s) as total, min(s) as first from (select sum(x) over (order by id "
        "rows between unbounded preceding and current row) as s from t) as w",
        (7.0, 1.5),
    ),
    # || with NULL is NULL; concat_ws skips NULLs; md5 of text (SCD keys)
    "strings": (
        "with t as (select 'u1' as a, cast(null as varchar) as b, 3 as n) "
        "select a || '#' || cast(n as varchar) as key, a || b as with_null, "
        "concat_ws('|', a, b, 'x') as ws, md5(concat_ws('|', a, cast(n as varchar))) as h, "
        "lower(trim('  AB ')) as lt, upper('gb') as u, nullif(trim('  '), '') as empty from t",
        ("u1#3", None, "u1|x", "862c473d2af951fc3e045d519298ff14", "ab", "GB", None),
    ),
    # timestamp literals, casts and comparisons (SCD ranges)
    "timestamps": (
        "with t as (select timestamp '2026-03-03 10:00:00' as ts, cast(null as timestamp) "
        "as nothing) "
        "select coalesce(nothing, timestamp '9999-12-31 00:00:00') as valid_to, "
        "cast(ts as date) as day, ts >= timestamp '1900-01-01 00:00:00' as after, "
        "nothing is null as open_ended from t",
        (datetime(9999, 12, 31), date(2026, 3, 3), True, True),
    ),
    # the digits spine (dim_date): no generate_series
    "digits_spine": (
        "with digits as (select * from (values (0), (1), (2), (3), (4), (5), (6), (7), (8), "
        "(9)) as t (n)), numbers as (select a.n + 10 * b.n as n from digits as a cross join "
        "digits as b) select count(*) as n, max(n) as top from numbers where n <= 79",
        (80, 79),
    ),
    # a group's values as a sorted list (core.fct_user_event_days)
    "sorted_list_of_a_group": (
        "select list_sort(list(x)) as xs from (values (3), (1), (2), (1)) as t (x)",
        ([1, 1, 2, 3],),
    ),
    # FILTER with coalesce over an empty group (order_stats in experiment_outcomes)
    "coalesce_of_empty_sum": (
        "with t as (select 1.5 as x, false as keep) "
        "select coalesce(sum(x) filter (where keep), 0) as s, count(*) filter (where keep) as n "
        "from t",
        (0, 0),
    ),
}


def _query(source: str | exp.Query) -> exp.Query:
    if isinstance(source, exp.Query):
        return source
    parsed = sqlglot.parse_one(source, read="duckdb")
    assert isinstance(parsed, exp.Query)
    return parsed


def _plain(value: Any) -> Any:
    """One Python value for any engine's: floats for decimals, naive UTC timestamps."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.replace(tzinfo=None) - (value.utcoffset() or (value - value))
    return value


def _same(got: Answer, expected: Answer) -> bool:
    if len(got) != len(expected):
        return False
    for g, e in zip(got, expected, strict=True):
        if isinstance(e, float) or isinstance(g, float):
            if g is None or e is None or not math.isclose(g, e, rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif g != e or isinstance(g, bool) != isinstance(e, bool):
            return False
    return True


Runner = Callable[[exp.Query], Answer]


@pytest.fixture(scope="module")
def duck(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    engine = DuckDBEngine(Path(tmp_path_factory.mktemp("port")) / "p.duckdb", threads=1)

    def run(query: exp.Query) -> Answer:
        fetch: Callable[[Any], list[tuple[Any, ...]]] = engine.fetch_all
        rows = fetch(dialects.transpile(query, "duckdb", {}))
        return tuple(_plain(v) for v in rows[0])

    yield run
    engine.close()


@pytest.fixture
def postgres(pg_dsn: str) -> Iterator[Runner]:
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as con:

        def run(query: exp.Query) -> Answer:
            text = dialects.transpile(query, "postgres", {}).sql(dialect="postgres")
            row = con.execute(text).fetchone()
            assert row is not None
            return tuple(_plain(v) for v in row)

        yield run


@pytest.fixture
def spark_runner(spark: Any) -> Runner:
    def run(query: exp.Query) -> Answer:
        text = dialects.transpile(query, "spark", {}).sql(dialect="spark")
        table: pa.Table = spark.sql(text).toArrow()
        return tuple(_plain(column[0].as_py()) for column in table.columns)

    return run


@pytest.mark.parametrize("name", sorted(CONSTRUCTS))
def test_duckdb_gives_the_known_answer(name: str, duck: Runner) -> None:
    source, expected = CONSTRUCTS[name]
    assert _same(duck(_query(source)), expected), duck(_query(source))


def test_postgres_gives_the_known_answers(postgres: Runner) -> None:
    wrong = {}
    for name, (source, expected) in CONSTRUCTS.items():
        try:
            got = postgres(_query(source))
        except Exception as exc:  # noqa: BLE001 - every construct reported at once
            wrong[name] = str(exc).splitlines()[0]
            continue
        if not _same(got, expected):
            wrong[name] = f"{got} != {expected}"
    assert wrong == {}


@pytest.mark.xdist_group("spark")
def test_spark_gives_the_known_answers(spark_runner: Runner) -> None:
    wrong = {}
    for name, (source, expected) in CONSTRUCTS.items():
        try:
            got = spark_runner(_query(source))
        except Exception as exc:  # noqa: BLE001 - every construct reported at once
            wrong[name] = str(exc).splitlines()[0]
            continue
        if not _same(got, expected):
            wrong[name] = f"{got} != {expected}"
    assert wrong == {}


# Each override, removed from the dispatch table, and a construct that then goes wrong.
LOAD_BEARING = [
    ("postgres", exp.Avg, "avg_of_integers_is_a_double"),
    ("postgres", exp.ToDays, "to_days"),
    ("postgres", exp.BitwiseLeftShift, "bitwise_and_of_a_shift"),
    ("postgres", exp.DayOfWeekIso, "isodow"),
    ("postgres", exp.ArraySort, "sorted_list_of_a_group"),
    ("spark", exp.Div, "division"),
    ("spark", exp.Sub, "date_minus_date"),
    ("spark", exp.ToDays, "to_days"),
    ("spark", exp.DayOfWeekIso, "isodow"),
    ("spark", exp.Extract, "isoyear_and_week"),
    ("spark", exp.CTE, "materialized_cte"),
    ("spark", exp.TimeToUnix, "epoch_difference"),
    ("spark", exp.Interval, "interval_arithmetic"),
    ("spark", exp.DateAdd, "date_add_bigint_days"),
]


def test_every_override_is_tested_as_load_bearing() -> None:
    listed = {(dialect, kind) for dialect, kind, _ in LOAD_BEARING}
    run_here = {"postgres", "spark"}
    table = {(d, k) for d, rules in dialects.OVERRIDES.items() if d in run_here for k in rules}
    # DateSub and right shifts share DateAdd's and left shifts' rules; PostgreSQL's CTE
    # rule changes a plan, not an answer (test_postgres_chooses_what_to_materialize).
    assert table - listed == {
        ("spark", exp.DateSub),
        ("postgres", exp.BitwiseRightShift),
        ("postgres", exp.CTE),
    }


def test_postgres_chooses_what_to_materialize() -> None:
    """DuckDB's `NOT MATERIALIZED` (the funnels' events: its zone maps make scanning again
    cheaper than a copy) is left out for PostgreSQL, which materializes a CTE read more
    than once; an explicit `MATERIALIZED` stays."""
    query = sqlglot.parse_one(
        "with ev as not materialized (select 1 as x), lines as materialized (select 2 as y) "
        "select * from ev, lines, ev as again",
        read="duckdb",
    )
    assert isinstance(query, exp.Query)
    hints = {
        cte.alias: cte.args.get("materialized")
        for cte in dialects.transpile(query, "postgres").find_all(exp.CTE)
    }
    assert hints == {"ev": None, "lines": True}
    assert [cte.args.get("materialized") for cte in query.find_all(exp.CTE)] == [False, True]


def _without(dialect: str, kind: type[exp.Expression], run: Runner, source: Any) -> Any:
    rule = dialects.OVERRIDES[dialect].pop(kind)
    try:
        return run(_query(source))
    except Exception as exc:  # noqa: BLE001 - an error is one way of going wrong
        return exc
    finally:
        dialects.OVERRIDES[dialect][kind] = rule


@pytest.mark.parametrize(
    ("kind", "construct"),
    [(k, c) for d, k, c in LOAD_BEARING if d == "postgres"],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_a_postgres_override_removed_breaks_its_construct(
    kind: type[exp.Expression], construct: str, postgres: Runner
) -> None:
    source, expected = CONSTRUCTS[construct]
    assert _same(postgres(_query(source)), expected)
    got = _without("postgres", kind, postgres, source)
    assert isinstance(got, Exception) or not _same(got, expected)


@pytest.mark.xdist_group("spark")
@pytest.mark.parametrize(
    ("kind", "construct"),
    [(k, c) for d, k, c in LOAD_BEARING if d == "spark"],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_a_spark_override_removed_breaks_its_construct(
    kind: type[exp.Expression], construct: str, spark_runner: Runner
) -> None:
    source, expected = CONSTRUCTS[construct]
    assert _same(spark_runner(_query(source)), expected)
    got = _without("spark", kind, spark_runner, source)
    assert isinstance(got, Exception) or not _same(got, expected)
