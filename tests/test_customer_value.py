"""The `customer_value` mart (issue 16) and fitted models: each fit_status from small
hand-made order sets, with the reason checked against clv.py's fits; the churn bands of
`customer_metrics` at their exact cut-offs on planted fit rows; the demo world (two weeks of
orders) is no_dropout_seen and customer_metrics falls back to its heuristic; a fit that
raises or returns the wrong table leaves the previous table; a fitted model cannot be a view
or incremental; the dbt export makes it a source; lineage traces through its input query."""

from __future__ import annotations

import dataclasses
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml
from sqlglot import exp

from productlens import clv, modeling
from productlens.config import ProjectConfig
from productlens.engines import DuckDBEngine
from productlens.errors import ClvInputError, ModelError
from productlens.integrations import dbt
from productlens.lineage import graph_schema, lineage
from productlens.runlog import RunLog
from tests.conftest import q, warehouse_engine

MIN_DROPOUT = 1e-3  # the mart's documented threshold on BG/NBD's a/(a+b)
FITTED = ("expected_purchases_52w", "probability_alive", "expected_spend", "clv_52w")
ORDER_COLUMNS = {
    "user_id": "VARCHAR",
    "order_date": "DATE",
    "net_revenue": "DOUBLE",
    "is_recognized": "BOOLEAN",
}
START = np.datetime64("2026-01-01", "D")


@pytest.fixture(scope="module")
def graph() -> modeling.ModelGraph:
    return modeling.discover(ProjectConfig())


@pytest.fixture
def orders_engine(tmp_path: Path) -> Iterator[DuckDBEngine]:
    engine = warehouse_engine(tmp_path / "w.duckdb", memory_limit="1GB", threads=1)
    for layer in ("core", "marts"):
        engine.ensure_schema(layer)
    yield engine
    engine.close()


def fit_orders(
    engine: DuckDBEngine,
    graph: modeling.ModelGraph,
    users: np.ndarray,
    days: np.ndarray,
    amounts: np.ndarray,
) -> pa.Table:
    """The completed orders as core.int_order_revenue; the mart built on them, by user."""
    engine.drop("core", "int_order_revenue")
    engine.create_table(
        "core",
        "int_order_revenue",
        [(c, exp.DataType.build(t)) for c, t in ORDER_COLUMNS.items()],
    )
    orders = pa.table(
        {
            "user_id": pa.array(users.astype(str), pa.string()),
            "order_date": pa.array(START + days.astype(int), pa.date32()),
            "net_revenue": pa.array(amounts, pa.float64()),
            "is_recognized": pa.array(np.ones(len(users), dtype=bool)),
        }
    )
    engine.append_arrow("core", "int_order_revenue", orders)
    modeling.materialize(engine, graph["customer_value"])
    return engine.fetch_arrow(q("select * from marts.customer_value order by user_id"))


def simulated_orders(n: int, weeks: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Users and order days from the BG/NBD story itself: Poisson purchases at a
    Gamma-distributed rate, dropping out after each purchase with a Beta probability."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(0.8, 1 / 4.0, n)  # purchases per week while alive
    dropout = rng.beta(1.0, 4.0, n)
    most = 40
    times = np.cumsum(rng.exponential(1.0, (n, most)) / rate[:, None], axis=1)
    times[:, 0] = 0.0  # the first purchase is where the customer starts
    start_day = rng.integers(0, weeks // 2, n) * 7
    alive = np.arange(most)[None, :] < rng.geometric(dropout)[:, None]
    day = start_day[:, None] + np.floor(times * 7).astype(int)
    keep = alive & (day <= weeks * 7)
    user = np.broadcast_to(np.arange(n)[:, None], (n, most))[keep]
    return np.char.add("u", np.char.zfill(user.astype(str), 3)), day[keep]


def steady_orders() -> tuple[np.ndarray, np.ndarray]:
    """30 customers each buying every 3 to 9 days right up to the last day: nobody leaves."""
    user = np.repeat(np.arange(30), 61)
    day = np.tile(np.arange(61), 30)
    keep = (day >= user % 5) & ((day - user % 5) % (3 + user % 7) == 0)
    return np.char.add("s", np.char.zfill(user[keep].astype(str), 2)), day[keep]


def test_a_customer_set_with_dropout_fits_and_equals_the_clv_analysis(
    orders_engine: DuckDBEngine, graph: modeling.ModelGraph
) -> None:
    users, days = simulated_orders(150, 30, seed=3)
    amounts = 20.0 + np.arange(len(users)) % 7 * 3.0
    mart = fit_orders(orders_engine, graph, users, days, amounts)
    assert set(mart.column("fit_status").to_pylist()) == {"fitted"}
    want = clv.analyze(orders_engine)  # the clv command's own computation, same orders
    c = want.customers
    assert mart.column("user_id").to_pylist() == c.user_id.tolist()
    pairs = {
        "frequency": c.frequency,
        "recency_weeks": c.recency_weeks,
        "age_weeks": c.age_weeks,
        "mean_spend": c.mean_spend,
        "expected_purchases_52w": c.expected_purchases,
        "probability_alive": c.probability_alive,
        "expected_spend": c.expected_spend,
        "clv_52w": c.clv,
    }
    for column, values in pairs.items():
        got = mart.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
        np.testing.assert_array_equal(got, values, err_msg=column)
    _, _, a, b = want.bgnbd.params
    assert a / (a + b) >= MIN_DROPOUT
    assert want.gamma_gamma.params[1] > 1
    # The observed columns against the orders themselves.
    pairs_seen = np.unique(np.char.add(np.char.add(users, "/"), days.astype(str)))
    assert int(np.sum(mart.column("frequency").to_numpy())) == pairs_seen.size - 150


def _too_few_customers() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    users, days = simulated_orders(150, 30, seed=3)
    keep = np.isin(users, np.unique(users)[: clv.MIN_CUSTOMERS - 1])
    return users[keep], days[keep], np.full(int(keep.sum()), 25.0)


def _too_few_repeat_buyers() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # 20 one-time buyers, one repeat buyer, and one whose repeat order is $0: one repeat
    # buyer with spend above $0 is too few for Gamma-Gamma.
    users = np.array([f"o{k:02d}" for k in range(20)] + ["r1", "r1", "z1", "z1"])
    days = np.array([k % 10 for k in range(20)] + [1, 8, 2, 9])
    amounts = np.array([30.0] * 20 + [30.0, 40.0, 30.0, 0.0])
    return users, days, amounts


def _no_dropout_seen() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    users, days = steady_orders()
    return users, days, 10.0 + np.arange(len(users)) % 5


def _heavy_tailed_spend() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # The same purchases as the fitted case, spends from $1 to $1,000,000 by customer:
    # Gamma-Gamma's q falls below 1 (no finite mean spend).
    users, days = simulated_orders(150, 30, seed=3)
    number = np.char.lstrip(users, "u").astype(int)
    return users, days, 10.0 ** (number % 7)


def _poisson_limit() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # 40 customers buying weekly, some stopping: BG/NBD's r and alpha run off together
    # (the Poisson limit) and the expected purchases are not finite numbers.
    k = np.repeat(np.arange(40), 5)
    j = np.tile(np.arange(5), 40)
    keep = j <= 1 + k % 4
    last = np.where(k % 3 > 0, 5 + (k * 7) % 50, 100)
    days = np.minimum(last, j * 7 + k % 5)[keep]
    users = np.char.add("p", np.char.zfill(k[keep].astype(str), 2))
    return users, days, 10.0 + 3.0 * (k[keep] % 7) + j[keep]


@pytest.mark.parametrize(
    ("orders", "status", "reason"),
    [
        (_too_few_customers, "too_few_customers", "customers"),
        (_too_few_repeat_buyers, "too_few_repeat_buyers", "repeat buyers"),
        (_no_dropout_seen, "no_dropout_seen", "dropout"),
        (_heavy_tailed_spend, "degenerate_fit", "q"),
        (_poisson_limit, "degenerate_fit", "not finite"),
    ],
)
def test_each_fit_status_with_its_reason(
    orders_engine: DuckDBEngine,
    graph: modeling.ModelGraph,
    orders: object,
    status: str,
    reason: str,
) -> None:
    users, days, amounts = orders()  # type: ignore[operator]
    mart = fit_orders(orders_engine, graph, users, days, amounts)
    assert mart.num_rows == np.unique(users).size  # every customer has a row regardless
    assert set(mart.column("fit_status").to_pylist()) == {status}
    for column in FITTED:
        assert mart.column(column).null_count == mart.num_rows, column
    assert mart.column("frequency").null_count == 0
    # The reason, from clv.py's own functions on the same orders.
    summary = clv.summarize(orders_engine)
    x, m = summary.frequency, summary.mean_spend
    if reason == "customers":
        assert summary.n < clv.MIN_CUSTOMERS
        with pytest.raises(ClvInputError, match="at least"):
            clv.analyze(orders_engine)
        return
    if reason == "repeat buyers":
        assert summary.n >= clv.MIN_CUSTOMERS
        assert int(np.sum(x > 0)) == 2
        assert int(np.sum((x > 0) & (m > 0))) == 1
        with pytest.raises(ClvInputError, match="repeat buyers with spend above 0"):
            clv.analyze(orders_engine)
        return
    bgnbd = clv.fit_bgnbd(x, summary.recency, summary.age)
    _, _, a, b = bgnbd.params
    if reason == "dropout":
        assert a / (a + b) < MIN_DROPOUT
        return
    assert a / (a + b) >= MIN_DROPOUT
    gamma_gamma = clv.fit_gamma_gamma(x, m)
    if reason == "q":
        assert gamma_gamma.params[1] <= 1
        return
    assert gamma_gamma.params[1] > 1
    figures = clv.predict(summary, bgnbd, gamma_gamma, 52, 0.1)
    assert not np.all(np.isfinite(figures.expected_purchases) & np.isfinite(figures.clv))


def test_the_observed_columns_by_hand_with_mean_spend_as_exact_decimal_sums(
    orders_engine: DuckDBEngine, graph: modeling.ModelGraph
) -> None:
    # Cent amounts whose double sums miss the exact total in the last digit, in different
    # orders: ten 0.1s make 0.9999999999999999 in doubles, 0.2 + 0.1 0.30000000000000004.
    plan = {
        "a": [(0, [5.0]), (3, [0.1] * 10)],
        "b": [(1, [2.5]), (2, [0.2, 0.1])],
        "c": [(0, [1.0]), (5, [0.7, 0.1, 0.2]), (6, [0.1] * 10)],
    }
    users = np.array([u for u, days in plan.items() for _, amounts in days for _ in amounts])
    days = np.array([d for days in plan.values() for d, amounts in days for _ in amounts])
    amounts = np.array([v for days in plan.values() for _, amounts in days for v in amounts])
    mart = fit_orders(orders_engine, graph, users, days, amounts)
    # Brute force: each repeat day's orders added as exact decimals, one float at the end.
    want = {
        user: float(sum(Decimal(repr(v)) for _, day in days[1:] for v in day)) / (len(days) - 1)
        for user, days in plan.items()
    }
    assert want == {"a": 1.0, "b": 0.3, "c": 1.0}  # by hand: 1/1, 0.3/1, 2/2
    users_got, spend_got = mart.column("user_id").to_pylist(), mart.column("mean_spend").to_pylist()
    got = dict(zip(users_got, spend_got, strict=True))
    assert got == want  # exactly: no last-digit error from double sums
    assert mart.column("frequency").to_pylist() == [1, 1, 2]
    # The other observed columns by hand: the last order is on day 6.
    last = (START + 6).astype(object)
    assert mart.column("as_of_date").to_pylist() == [last] * 3
    firsts = [(START + d).astype(object) for d in (0, 1, 0)]
    assert mart.column("first_order_date").to_pylist() == firsts
    assert mart.column("recency_weeks").to_pylist() == [3 / 7, 1 / 7, 6 / 7]
    assert mart.column("age_weeks").to_pylist() == [6 / 7, 5 / 7, 6 / 7]


def _exactly_min_customers() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    users, days = simulated_orders(150, 30, seed=3)
    keep = np.isin(users, np.unique(users)[: clv.MIN_CUSTOMERS])
    return users[keep], days[keep], 20.0 + np.arange(int(keep.sum())) % 7 * 3.0


def _exactly_min_repeat_buyers() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # The too-few case with one more repeat buyer with spend: two are enough.
    users, days, amounts = _too_few_repeat_buyers()
    return (
        np.concatenate([users, ["r2", "r2"]]),
        np.concatenate([days, [3, 6]]),
        np.concatenate([amounts, [20.0, 50.0]]),
    )


@pytest.mark.parametrize(
    ("orders", "too_few"),
    [
        (_exactly_min_customers, "too_few_customers"),
        (_exactly_min_repeat_buyers, "too_few_repeat_buyers"),
    ],
)
def test_exactly_the_minimum_counts_are_enough(
    orders_engine: DuckDBEngine, graph: modeling.ModelGraph, orders: object, too_few: str
) -> None:
    users, days, amounts = orders()  # type: ignore[operator]
    mart = fit_orders(orders_engine, graph, users, days, amounts)
    statuses = set(mart.column("fit_status").to_pylist())
    assert len(statuses) == 1
    assert too_few not in statuses
    summary = clv.summarize(orders_engine)
    x, m = summary.frequency, summary.mean_spend
    if too_few == "too_few_customers":
        assert summary.n == clv.MIN_CUSTOMERS
    else:
        assert summary.n >= clv.MIN_CUSTOMERS
        assert int(np.sum((x > 0) & (m > 0))) == clv.MIN_REPEAT_BUYERS
    # Both fits take exactly the minimum (they refuse one fewer: the case above).
    assert clv.fit_bgnbd(x, summary.recency, summary.age).n == summary.n
    assert clv.fit_gamma_gamma(x, m).n == int(np.sum((x > 0) & (m > 0)))


@pytest.mark.parametrize(
    ("b", "no_dropout"),
    [(2000.0, True), (1998.0, False)],  # a/(a+b) = 2/2002 just below 1e-3, then 1e-3 itself
)
def test_no_dropout_seen_cuts_at_exactly_min_dropout(
    orders_engine: DuckDBEngine,
    graph: modeling.ModelGraph,
    monkeypatch: pytest.MonkeyPatch,
    b: float,
    no_dropout: bool,
) -> None:
    # The real BG/NBD fit with its dropout parameters planted (a = 2): the mart's status
    # turns on a/(a+b) against the documented threshold alone.
    real = clv.fit_bgnbd

    def planted(*args: np.ndarray) -> clv.Fit:
        fit = real(*args)
        r, alpha, _, _ = fit.params
        return dataclasses.replace(fit, params=(r, alpha, 2.0, b))

    monkeypatch.setattr(clv, "fit_bgnbd", planted)
    users, days = simulated_orders(150, 30, seed=3)
    amounts = 20.0 + np.arange(len(users)) % 7 * 3.0
    mart = fit_orders(orders_engine, graph, users, days, amounts)
    statuses = set(mart.column("fit_status").to_pylist())
    assert 2.0 / (2.0 + b) < MIN_DROPOUT if no_dropout else 2.0 / (2.0 + b) == MIN_DROPOUT
    if no_dropout:
        assert statuses == {"no_dropout_seen"}
    else:
        assert len(statuses) == 1
        assert "no_dropout_seen" not in statuses
    # `productlens clv` notes by the same rule on the same fit, on both sides of the cut.
    notes = clv.analyze(orders_engine).notes
    assert any("(no_dropout_seen)" in note for note in notes) is no_dropout, notes


def test_the_mart_and_the_command_share_one_dropout_threshold(
    orders_engine: DuckDBEngine,
    graph: modeling.ModelGraph,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fit that saw plenty of dropout (a/(a+b) = 0.5) under a threshold raised above it:
    # both read clv.MIN_DROPOUT through clv.no_dropout_seen, so both must now call it
    # no_dropout_seen (the mart once kept its own copy of the constant and its own test).
    real = clv.fit_bgnbd

    def planted(*args: np.ndarray) -> clv.Fit:
        fit = real(*args)
        r, alpha, _, _ = fit.params
        return dataclasses.replace(fit, params=(r, alpha, 2.0, 2.0))

    monkeypatch.setattr(clv, "fit_bgnbd", planted)
    monkeypatch.setattr(clv, "MIN_DROPOUT", 0.6)
    users, days = simulated_orders(150, 30, seed=3)
    amounts = 20.0 + np.arange(len(users)) % 7 * 3.0
    mart = fit_orders(orders_engine, graph, users, days, amounts)
    assert set(mart.column("fit_status").to_pylist()) == {"no_dropout_seen"}
    notes = clv.analyze(orders_engine).notes
    assert any("a/(a+b) = 0.5 is below 0.6" in note for note in notes), notes


def test_no_orders_at_all_give_an_empty_mart(
    orders_engine: DuckDBEngine, graph: modeling.ModelGraph
) -> None:
    empty = np.array([], dtype=str)
    mart = fit_orders(orders_engine, graph, empty, np.array([], dtype=int), np.array([]))
    assert mart.num_rows == 0
    assert mart.column_names == graph["customer_value"].fitted.schema.names  # type: ignore[union-attr]


# --- customer_metrics on the fit ----------------------------------------------------------


def test_the_demo_world_sees_no_dropout_and_customer_metrics_falls_back(
    demo_project: Path,
) -> None:
    engine = warehouse_engine(demo_project / "warehouse.duckdb", read_only=True)
    try:
        value = engine.fetch_arrow(q("select * from marts.customer_value"))
        metrics = engine.fetch_arrow(
            q(
                "select m.*, (select max(date_day) from core.dim_date) - m.signup_date + 1"
                " as tenure_days from marts.customer_metrics as m where n_orders > 0"
            )
        )
        summary = clv.summarize(engine)
    finally:
        engine.close()
    # Two weeks of orders: nobody is seen leaving, and BG/NBD says so.
    assert value.num_rows == summary.n > 0
    assert set(value.column("fit_status").to_pylist()) == {"no_dropout_seen"}
    _, _, a, b = clv.fit_bgnbd(summary.frequency, summary.recency, summary.age).params
    assert a / (a + b) < MIN_DROPOUT
    for column in FITTED:
        assert value.column(column).null_count == value.num_rows
    # customer_metrics: the recency bands and the heuristic CLV, computed here again.
    assert set(metrics.column("churn_risk_basis").to_pylist()) == {"recency"}
    assert metrics.column("probability_alive").null_count == metrics.num_rows
    assert metrics.column("expected_purchases_12m").null_count == metrics.num_rows
    recency = metrics.column("recency_days").to_numpy()
    want_band = np.where(recency <= 30, "active", np.where(recency <= 90, "at_risk", "churned"))
    assert metrics.column("churn_risk").to_pylist() == want_band.tolist()
    revenue = metrics.column("revenue").to_numpy(zero_copy_only=False).astype(np.float64)
    tenure = metrics.column("tenure_days").to_numpy().astype(np.float64)
    heuristic = revenue * 365.0 / tenure * np.exp(-recency / 90.0)
    np.testing.assert_allclose(metrics.column("predicted_clv_12m").to_numpy(), heuristic, rtol=1e-9)


# Planted P(alive) -> the band, at and just below each cut-off.
BANDS = [
    (1.0, "active"),
    (0.7, "active"),
    (float(np.nextafter(0.7, 0)), "at_risk"),
    (0.3, "at_risk"),
    (float(np.nextafter(0.3, 0)), "churned"),
    (0.0, "churned"),
]


def test_churn_bands_cut_at_exactly_0_7_and_0_3(
    demo_project: Path, graph: modeling.ModelGraph, tmp_path: Path
) -> None:
    copy = tmp_path / "warehouse.duckdb"
    shutil.copyfile(demo_project / "warehouse.duckdb", copy)
    engine = warehouse_engine(copy)
    try:
        rows = engine.fetch_arrow(
            q(
                "select v.* from marts.customer_value as v inner join core.dim_users as u"
                " on v.user_id = u.user_id and u.is_current order by v.user_id"
            )
        )
        planted_ids = rows.column("user_id").to_pylist()[: len(BANDS)]
        n = rows.num_rows
        alive = np.full(n, np.nan)
        alive[: len(BANDS)] = [p for p, _ in BANDS]
        clv_52w = np.where(np.isnan(alive), np.nan, 100.0 + np.arange(n))
        status = np.where(np.isnan(alive), "no_dropout_seen", "fitted")
        planted = (
            rows.set_column(
                rows.schema.get_field_index("probability_alive"),
                "probability_alive",
                pa.array(alive, from_pandas=True),
            )
            .set_column(
                rows.schema.get_field_index("clv_52w"),
                "clv_52w",
                pa.array(clv_52w, from_pandas=True),
            )
            .set_column(
                rows.schema.get_field_index("expected_purchases_52w"),
                "expected_purchases_52w",
                pa.array(np.where(np.isnan(alive), np.nan, 2.5), from_pandas=True),
            )
            .set_column(
                rows.schema.get_field_index("expected_spend"),
                "expected_spend",
                pa.array(np.where(np.isnan(alive), np.nan, 40.0), from_pandas=True),
            )
            .set_column(rows.schema.get_field_index("fit_status"), "fit_status", pa.array(status))
        )
        with engine.temp_table("planted", planted) as source:
            engine.replace_table("marts", "customer_value", exp.select("*").from_(source))
        modeling.materialize(engine, graph["customer_metrics"])
        got = engine.fetch_arrow(
            q(
                "select user_id, churn_risk, churn_risk_basis, probability_alive,"
                " predicted_clv_12m, expected_purchases_12m from marts.customer_metrics"
                " where n_orders > 0 order by user_id"
            )
        )
    finally:
        engine.close()
    by_user = {row["user_id"]: row for row in got.to_pylist()}
    for user, (p_alive, band) in zip(planted_ids, BANDS, strict=True):
        row = by_user[user]
        assert (row["churn_risk"], row["churn_risk_basis"]) == (band, "probability_alive"), p_alive
        assert row["probability_alive"] == p_alive
        assert row["predicted_clv_12m"] == 100.0 + planted_ids.index(user)
        assert row["expected_purchases_12m"] == 2.5
    others = [row for user, row in by_user.items() if user not in planted_ids]
    assert others
    assert {row["churn_risk_basis"] for row in others} == {"recency"}


# --- fitted models ------------------------------------------------------------------------

PROBE = """
import pyarrow as pa
import pyarrow.compute as pc
import sqlglot

SCHEMA = pa.schema([pa.field("n", pa.int64(), nullable=False), ("label", pa.string())])


def model(ctx):
    return sqlglot.parse_one("select 1 as one union all select 2 as one")


def fit(ctx, inputs):
    {body}
"""


def probe_graph(root: Path, body: str, spec: str = "") -> modeling.ModelGraph:
    folder = root / "marts"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "probe.py").write_text(PROBE.format(body=body))
    (folder / "_probe.yml").write_text(
        "models:\n  - name: probe\n    grain: one row per input row\n" + spec
    )
    return modeling.discover(ProjectConfig(), [root], shipped=False)


# The input rows come in no set order (a union on a multi-threaded engine): the label
# follows from n, not from the row's position.
GOOD = (
    'n = inputs.column("one"); '
    'return pa.table({"n": n, "label": pc.if_else(pc.equal(n, 1), "a", "b")}, schema=SCHEMA)'
)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('raise RuntimeError("the optimizer diverged")', "the fit failed: the optimizer diverged"),
        ('return pa.table({"n": [1, 2]})', "fit() returned the columns ['n']"),
        (
            'return pa.table({"n": pa.array([1.0, 2.0]), "label": ["a", "b"]})',
            "fit() returned column 'n' as double; SCHEMA declares int64",
        ),
        (
            'return pa.table({"n": pa.array([1, None], pa.int64()), "label": ["a", "b"]})',
            "fit() returned nulls in 'n'",
        ),
        ("return None", "fit() returned NoneType, not a pyarrow.Table"),
    ],
)
def test_a_failed_fit_names_the_model_and_keeps_the_previous_table(
    tmp_path: Path, engine: DuckDBEngine, body: str, message: str
) -> None:
    engine.ensure_schema("marts")
    good = probe_graph(tmp_path / "good", GOOD)
    assert modeling.materialize(engine, good["probe"]) == 2
    bad = probe_graph(tmp_path / "bad", body)
    with pytest.raises(ModelError, match="probe") as failure:
        modeling.materialize(engine, bad["probe"])
    assert message in str(failure.value)
    rows = engine.fetch_all(q("select n, label from marts.probe order by n"))
    assert rows == [(1, "a"), (2, "b")]
    # A build records the failure and leaves the table too.
    result = modeling.build(engine, bad, RunLog(engine))
    assert "probe" in result.failed
    assert message in result.failed["probe"]
    assert engine.fetch_all(q("select count(*) from marts.probe")) == [(2,)]


KILLED_FIT = """
import sys
from pathlib import Path

from productlens import modeling
from productlens.config import ProjectConfig
from productlens.engines import DuckDBEngine

graph = modeling.discover(ProjectConfig(), [Path(sys.argv[1])], shipped=False)
modeling.materialize(DuckDBEngine(Path(sys.argv[2])), graph["probe"])
"""


def test_a_fit_killed_mid_way_keeps_the_previous_table(tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    engine = warehouse_engine(database)
    engine.ensure_schema("marts")
    assert modeling.materialize(engine, probe_graph(tmp_path / "good", GOOD)["probe"]) == 2
    engine.close()
    # SIGKILL, as kill -9 does, from inside the fit: the process dies with its input fetched.
    probe_graph(tmp_path / "killed", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_FIT, str(tmp_path / "killed"), str(database)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    engine = warehouse_engine(database, read_only=True)
    try:
        assert engine.fetch_all(q("select n, label from marts.probe order by n")) == [
            (1, "a"),
            (2, "b"),
        ]
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("    materialized: view\n", "a view"),
        ("    incremental: {date_column: n}\n", "incremental"),
    ],
)
def test_a_fitted_model_cannot_be_a_view_or_incremental(
    tmp_path: Path, spec: str, kind: str
) -> None:
    with pytest.raises(ModelError, match=f"a fitted model cannot be {kind}") as failure:
        probe_graph(tmp_path, GOOD, spec)
    assert "probe" in str(failure.value)


def test_a_fitted_decimal_column_keeps_its_precision_and_scale(
    tmp_path: Path, engine: DuckDBEngine
) -> None:
    # The types lineage and the dbt export see (fitted_columns) are the built table's.
    engine.ensure_schema("marts")
    folder = tmp_path / "marts"
    folder.mkdir()
    text = (
        PROBE.format(
            body='n = inputs.column("one"); amount = pa.decimal128(18, 2); '
            'return pa.table({"n": n, "amount": pc.if_else(pc.equal(n, 1), '
            'pa.scalar(Decimal("1.25"), amount), pa.scalar(Decimal("-3.50"), amount))}, '
            "schema=SCHEMA)"
        )
        .replace('("label", pa.string())', '("amount", pa.decimal128(18, 2))')
        .replace("import sqlglot\n", "import sqlglot\nfrom decimal import Decimal\n")
    )
    (folder / "probe.py").write_text(text)
    graph = modeling.discover(ProjectConfig(), [tmp_path], shipped=False)
    assert modeling.materialize(engine, graph["probe"]) == 2
    built = engine.fetch_all(
        q(
            "select column_name, data_type from information_schema.columns"
            " where table_schema = 'marts' and table_name = 'probe' order by ordinal_position"
        )
    )
    assert built == [("n", "BIGINT"), ("amount", "DECIMAL(18,2)")]
    seen = [(name, dtype.sql("duckdb")) for name, dtype in modeling.fitted_columns(graph["probe"])]
    assert seen == [("n", "BIGINT"), ("amount", "DECIMAL(18, 2)")]
    amounts = engine.fetch_all(q("select amount from marts.probe order by n"))
    assert amounts == [(Decimal("1.25"),), (Decimal("-3.50"),)]


def test_a_fitted_model_needs_a_schema(tmp_path: Path) -> None:
    folder = tmp_path / "marts"
    folder.mkdir()
    text = PROBE.format(body=GOOD).replace("SCHEMA = pa.schema", "NOT_SCHEMA = pa.schema")
    (folder / "probe.py").write_text(text)
    with pytest.raises(ModelError, match="module-level SCHEMA"):
        modeling.discover(ProjectConfig(), [tmp_path], shipped=False)


def test_lineage_traces_fitted_columns_through_the_input_query(
    graph: modeling.ModelGraph,
) -> None:
    value = lineage(graph, "customer_value.clv_52w")
    assert value.parents == ["core.int_order_revenue"]
    assert {
        "raw.orders.user_id",
        "raw.orders.order_ts",
        "raw.orders.total_amount",
        "raw.orders.status",
    } <= set(value.sources)
    first = value.steps[0]
    assert first.column == "marts.customer_value.clv_52w"
    assert "core.int_order_revenue.net_revenue" in first.upstream
    # A column of the input query keeps its own lineage only.
    user = lineage(graph, "customer_value.user_id")
    assert user.steps[0].upstream == ("core.int_order_revenue.user_id",)
    # customer_metrics' fitted columns go through the mart down to the raw orders.
    metrics = lineage(graph, "customer_metrics.probability_alive")
    assert "marts.customer_value.probability_alive" in metrics.steps[0].upstream
    assert "raw.orders.total_amount" in metrics.sources


def test_the_column_types_lineage_and_dbt_see_are_the_built_tables(
    orders_engine: DuckDBEngine, graph: modeling.ModelGraph
) -> None:
    fit_orders(orders_engine, graph, *_too_few_customers())
    built = orders_engine.fetch_all(
        q(
            "select column_name, data_type from information_schema.columns"
            " where table_schema = 'marts' and table_name = 'customer_value'"
            " order by ordinal_position"
        )
    )
    seen = graph_schema(graph, {"customer_value"})["marts"]["customer_value"]
    assert [(name, str(dtype)) for name, dtype in seen.items()] == [
        (name, dtype.upper()) for name, dtype in built
    ]
    assert ("clv_52w", "DOUBLE") in built  # not a narrower float


def test_the_dbt_export_makes_a_fitted_model_a_source(
    graph: modeling.ModelGraph, tmp_path: Path
) -> None:
    export = dbt.export_dbt(graph, tmp_path / "dbt", schema=graph_schema(graph))
    assert "models/marts/customer_value.sql" not in export.models
    assert not (tmp_path / "dbt" / "models" / "marts" / "customer_value.sql").exists()
    assert "models/marts/customer_metrics.sql" in export.models
    assert "fitted_marts.customer_value" in export.sources
    assert len(export.notes) == 1
    assert "marts.customer_value is a fitted model" in export.notes[0]
    sources = yaml.safe_load((tmp_path / "dbt" / "models" / "sources.yml").read_text())
    fitted = [s for s in sources["sources"] if s["name"] == "fitted_marts"]
    assert len(fitted) == 1
    assert fitted[0]["schema"] == "marts"
    (entry,) = fitted[0]["tables"]
    assert entry["name"] == "customer_value"
    tests = {c["name"]: c["data_tests"] for c in entry["columns"]}
    assert tests["user_id"] == ["unique", "not_null"]
    assert "accepted_values" in tests["fit_status"][0]
    metrics_sql = (tmp_path / "dbt" / "models" / "marts" / "customer_metrics.sql").read_text()
    assert "{{ source('fitted_marts', 'customer_value') }}" in metrics_sql
    assert "ref('customer_value')" not in metrics_sql
    singular = [
        (tmp_path / "dbt" / p).read_text() for p in export.singular_tests if "customer_value" in p
    ]
    assert singular
    assert all("source('fitted_marts', 'customer_value')" in s for s in singular)
    schema_yml = yaml.safe_load((tmp_path / "dbt" / "models" / "marts" / "schema.yml").read_text())
    assert "customer_value" not in {m["name"] for m in schema_yml["models"]}


def test_the_discount_rate_is_validated(tmp_path: Path) -> None:
    from productlens.config import load_project
    from productlens.errors import ConfigError

    (tmp_path / "productlens.toml").write_text("[clv]\ndiscount_rate = -0.2\n")
    with pytest.raises(ConfigError, match="discount_rate"):
        load_project(tmp_path)
    (tmp_path / "productlens.toml").write_text("[clv]\ndiscount_rate = 0.25\n")
    config = load_project(tmp_path).config
    assert modeling.ModelContext.from_config(config).clv_discount_rate == 0.25
