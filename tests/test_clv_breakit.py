"""Customer value attacked as a demanding user would (issue 16): what broke, one test each.

- Heavy-tailed spend (Gamma-Gamma q <= 1): `productlens clv` printed negative expected spend
  and CLV for customers without repeat purchases and a total CLV in the hundreds of billions;
  now those customers have none (null), the total is null and a note says why.
- `--horizon 100000000w` allocated a customers x weeks matrix and died with a MemoryError
  traceback; the horizon is now 1 to 520 weeks.
- A history too short to see anyone leave: the mart says no_dropout_seen and gives no CLV,
  while `productlens clv` printed its extrapolation without a word; it now says so.
- An order of $1e30 (loaded: the contract has no upper bound) failed the customer_value
  build and `productlens clv` with a DuckDB cast error naming no order; both now name the
  customer and the amount, and the previous mart stays.
- A users file without segments: the report said "The None segment has the highest lifetime
  value"; it now says "Users without a segment".
- A calibration end before the first order said "BG/NBD needs at least 10 customers; the
  orders have 0"; it now names --calibration-end and says it is before the first order.
"""

from __future__ import annotations

import json
from datetime import date
from types import SimpleNamespace

import numpy as np
import pyarrow.compute as pc
import pytest

from productlens import clv, modeling
from productlens.engines import DuckDBEngine
from productlens.errors import ClvInputError, ModelError
from productlens.metrics import revenue
from productlens.report import insights
from tests.conftest import q
from tests.test_customer_value import (  # noqa: F401 - fixtures
    _heavy_tailed_spend,
    _no_dropout_seen,
    fit_orders,
    graph,
    orders_engine,
)


def test_expected_spend_is_the_posterior_mean_only_where_it_is_finite() -> None:
    p, q, gamma = 2.0, 0.5, 10.0
    x = np.array([0.0, 1.0, 3.0])
    m = np.array([np.nan, 20.0, 30.0])
    got = clv.expected_spend((p, q, gamma), x, m)
    # E[p/nu] with nu ~ Gamma(p x + q, gamma + m x): p (gamma + m x) / (p x + q - 1), finite
    # only for p x + q > 1; here x = 0 gives p x + q = 0.5.
    assert np.isnan(got[0])
    np.testing.assert_allclose(got[1:], [2 * (10 + 20) / 1.5, 2 * (10 + 90) / 5.5], rtol=1e-15)


def test_heavy_tailed_spend_gives_no_negative_value_on_the_command(
    orders_engine: DuckDBEngine,  # noqa: F811
    graph: modeling.ModelGraph,  # noqa: F811
) -> None:
    users, days, amounts = _heavy_tailed_spend()
    mart = fit_orders(orders_engine, graph, users, days, amounts)
    assert set(mart.column("fit_status").to_pylist()) == {"degenerate_fit"}
    result = clv.analyze(orders_engine)
    p, q, _gamma = result.gamma_gamma.params
    assert q <= 1
    x = result.customers.frequency
    spend = result.customers.expected_spend
    no_mean = p * x + q <= 1
    assert no_mean.any()  # the case under attack: customers whose spend has no finite mean
    assert np.isnan(spend[no_mean]).all()
    assert np.isnan(result.customers.clv[no_mean]).all()
    assert (spend[~no_mean] > 0).all()
    assert (result.customers.clv[~no_mean] >= 0).all()
    data = result.to_dict()
    json.dumps(data, allow_nan=False)  # valid JSON: no NaN anywhere
    assert data["totals"]["clv"] is None
    assert any("no finite mean" in note for note in data["notes"])
    assert all(c["clv"] is None for c, bad in zip(data["customers"], no_mean, strict=True) if bad)


@pytest.mark.parametrize("horizon", ["521w", "100000000w"])
def test_a_horizon_beyond_ten_years_is_refused_before_any_work(horizon: str) -> None:
    with pytest.raises(ClvInputError, match="whole weeks from 1 to 520"):
        clv.parse_horizon(horizon)
    assert clv.parse_horizon("520w") == 520


def test_analyze_refuses_a_huge_horizon_without_allocating(
    orders_engine: DuckDBEngine,  # noqa: F811
) -> None:
    with pytest.raises(ClvInputError, match="1 to 520 weeks"):
        clv.analyze(orders_engine, horizon_weeks=100_000_000)


def test_a_calibration_end_before_the_first_order_names_the_option(
    orders_engine: DuckDBEngine,  # noqa: F811
    graph: modeling.ModelGraph,  # noqa: F811
) -> None:
    users, days, amounts = _heavy_tailed_spend()
    fit_orders(orders_engine, graph, users, days, amounts)
    with pytest.raises(ClvInputError, match="before the first order") as caught:
        clv.analyze(orders_engine, date(2025, 12, 31))
    assert "--calibration-end" in str(caught.value)


def test_the_command_says_when_nobody_was_seen_leaving(
    orders_engine: DuckDBEngine,  # noqa: F811
    graph: modeling.ModelGraph,  # noqa: F811
) -> None:
    users, days, amounts = _no_dropout_seen()
    mart = fit_orders(orders_engine, graph, users, days, amounts)
    assert set(mart.column("fit_status").to_pylist()) == {"no_dropout_seen"}
    result = clv.analyze(orders_engine)
    _, _, a, b = result.bgnbd.params
    assert a / (a + b) < clv.MIN_DROPOUT
    assert any("no_dropout_seen" in note for note in result.notes), result.notes


def test_an_order_too_large_to_add_up_exactly_is_refused_by_name(
    orders_engine: DuckDBEngine,  # noqa: F811
    graph: modeling.ModelGraph,  # noqa: F811
) -> None:
    users, days, amounts = _heavy_tailed_spend()
    fit_orders(orders_engine, graph, users, days, amounts)  # a mart to keep
    before = orders_engine.fetch_arrow(q("select * from marts.customer_value order by user_id"))
    amounts = amounts.copy()
    amounts[5] = 1e30  # beyond decimal(38, 9): the query itself used to fail on the cast
    with pytest.raises(ModelError, match=f"customer '{users[5]}' has a completed order of 1e"):
        fit_orders(orders_engine, graph, users, days, amounts)
    after = orders_engine.fetch_arrow(q("select * from marts.customer_value order by user_id"))
    assert after.equals(before)  # the previous table stays
    with pytest.raises(ClvInputError, match="too large to add up exactly"):
        clv.analyze(orders_engine)
    amounts[5] = clv.MAX_AMOUNT / 10  # below the limit: summed exactly, fitted as any other
    mart = fit_orders(orders_engine, graph, users, days, amounts)
    row = mart.filter(pc.equal(mart.column("user_id"), users[5]))
    mine = users == users[5]
    day_values, at = np.unique(days[mine], return_inverse=True)
    per_day = np.bincount(at, weights=amounts[mine])
    assert row.column("frequency")[0].as_py() == day_values.size - 1
    if day_values.size > 1:  # the mean spend of the repeat days, the huge order included
        assert row.column("mean_spend")[0].as_py() == pytest.approx(per_day[1:].mean(), rel=1e-12)


def test_users_without_a_segment_are_not_the_none_segment() -> None:
    def group(segment: str | None, clv_per_user: float) -> revenue.SegmentValue:
        return revenue.SegmentValue(segment, 4, 2, clv_per_user * 4, clv_per_user, None, 0.0)

    section = SimpleNamespace(clv=[group(None, 50.0), group("smb", 20.0)])
    best = insights.top_clv_segment(section)  # type: ignore[arg-type]
    assert best is not None
    assert best.text.startswith("Users without a segment have the highest lifetime value: 50.00 ")
    assert "None" not in best.text
    section = SimpleNamespace(clv=[group(None, 10.0), group("smb", 20.0)])
    named = insights.top_clv_segment(section)  # type: ignore[arg-type]
    assert named is not None
    assert named.text.startswith("The smb segment has the highest lifetime value: 20.00 ")
