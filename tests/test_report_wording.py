"""The insights' words for a count of one: "1 user", not "1 users" (they are the
dashboard's sentences too). Each case is a section of ones and twos, built by hand."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pyarrow as pa
import pytest

from productlens.metrics import customer_value as cv
from productlens.metrics.funnel import StepResult
from productlens.metrics.lifecycle import LifecyclePeriod
from productlens.metrics.retention import Cohort
from productlens.metrics.revenue import FirstPurchase, SegmentValue
from productlens.report import insights as ins
from productlens.report.insights import Insight
from productlens.report.sections import (
    FunnelSection,
    HealthSection,
    RetentionSection,
    RevenueSection,
)


def step(event: str, count: int) -> StepResult:
    return StepResult(event, count, None, None, 0, None, None)


def funnel(*counts: int) -> FunnelSection:
    steps = tuple(step(f"e{i}", n) for i, n in enumerate(counts))
    return FunnelSection(timedelta(days=1), steps, {}, pa.table({}))


def retention(n_cohorts: int, lifecycle: tuple[LifecyclePeriod, ...] = ()) -> RetentionSection:
    cohorts = tuple(Cohort(f"2026-03-0{i + 1}", 2, (2, 1)) for i in range(n_cohorts))
    return RetentionSection(cohorts, cohorts, pa.table({}), lifecycle)


def revenue(n_users: int, n_buyers: int) -> RevenueSection:
    segment = SegmentValue("Regular", n_users, n_buyers, 10.0, 10.0 / n_users, None, 0.0)
    first = FirstPurchase(n_buyers, 1.0, 1.0)
    return RevenueSection(None, None, None, None, None, None, (segment,), first)


def before_signup(first: FirstPurchase) -> RevenueSection:
    return RevenueSection(None, None, None, None, None, None, None, first)


def customers(n: int, repeat: int, never: int) -> RevenueSection:
    """n customers (repeat of them repeat buyers, all active) under a usable fit."""
    value = cv.CustomerValue(
        fit_status="fitted",
        n_customers=n,
        n_repeat_buyers=repeat,
        history_weeks=8.0,
        segments=(cv.SegmentValue("Regular", n, 10.0, 12.0, 1.0, 0.9),),
        churn=(cv.ChurnBand("active", "probability_alive", n),)
        + ((cv.ChurnBand("never_bought", "no_orders", never),) if never else ()),
        alive_bins=(0,) * 9 + (n,),
        mean_probability_alive=0.9,
        mean_probability_alive_repeat=0.8 if repeat else None,
        expected_purchases=1.0,
        predicted_clv=12.0,
    )
    return RevenueSection(None, None, None, None, None, None, None, None, value)


def health(*held: int, tests: int = 1) -> HealthSection:
    quarantine = pa.table(
        {
            "target_table": ["raw.events"] * len(held),
            "reason": [f"reason {i}" for i in range(len(held))],
            "n_rows": list(held),
        }
    )
    return HealthSection(
        quarantine,
        pa.table({"status": ["pass"], "n_tests": [tests]}),
        pa.table({}),
        pa.table({}),
        None,
    )


def week(new: int, dormant: int) -> LifecyclePeriod:
    return LifecyclePeriod("2026-03-02", new, 0, 0, dormant)


CASES: list[tuple[str, Callable[[], Insight | None], str]] = [
    ("funnel of one user", lambda: ins.funnel_conversion(funnel(1, 1)), "1 of 1 user who did"),
    ("funnel of two", lambda: ins.funnel_conversion(funnel(2, 1)), "1 of 2 users who did"),
    ("one user lost", lambda: ins.biggest_dropoff(funnel(3, 2)), "(1 user) went no further"),
    ("two users lost", lambda: ins.biggest_dropoff(funnel(3, 1)), "(2 users) went no further"),
    ("one cohort", lambda: ins.retention_after(retention(1), "day", 1), "over 1 daily cohort)"),
    ("two cohorts", lambda: ins.retention_after(retention(2), "week", 1), "over 2 weekly cohorts"),
    (
        "one week",
        lambda: ins.lifecycle_totals(retention(1, (week(1, 1),))),
        "Over 1 week: 1 new user, 0 came back after a dormant week, and 1 time a user",
    ),
    (
        "two weeks",
        lambda: ins.lifecycle_totals(retention(1, (week(1, 1), week(1, 1)))),
        "Over 2 weeks: 2 new users, 0 came back after a dormant week, and 2 times a user",
    ),
    ("one user's value", lambda: ins.top_clv_segment(revenue(1, 1)), "to date (1 user)."),
    ("one buyer", lambda: ins.first_purchase(revenue(1, 1)), "(median 1.0, 1 buyer)."),
    ("two buyers", lambda: ins.first_purchase(revenue(2, 2)), "(median 1.0, 2 buyers)."),
    (
        "one buyer before signup",
        lambda: ins.first_purchase(before_signup(FirstPurchase(2, 1.0, 1.0, 1))),
        "(median 1.0, 2 buyers). 1 buyer with an order dated before signup left out.",
    ),
    (
        "only a buyer before signup",
        lambda: ins.first_purchase(before_signup(FirstPurchase(0, None, None, 1))),
        "came on or after their signup. 1 buyer with an order dated before signup left out.",
    ),
    (
        "one customer fitted",
        lambda: ins.customer_value_fit(customers(1, 1, 0)),
        "Fitted on 1 customer (1 repeat buyer, 8.0 weeks",
    ),
    (
        "two customers fitted",
        lambda: ins.customer_value_fit(customers(2, 2, 0)),
        "Fitted on 2 customers (2 repeat buyers, 8.0 weeks",
    ),
    (
        "one customer's value",
        lambda: ins.top_predicted_clv_segment(customers(1, 1, 0)),
        "(1 customer).",
    ),
    (
        "one customer banded",
        lambda: ins.churn_bands(customers(1, 1, 1)),
        "Of 1 customer: 1 (100.0%)",
    ),
    ("one never bought", lambda: ins.churn_bands(customers(2, 1, 1)), "; 1 user never bought."),
    ("two never bought", lambda: ins.churn_bands(customers(2, 1, 2)), "; 2 users never bought."),
    (
        "one repeat buyer",
        lambda: ins.probability_alive(customers(3, 1, 0)),
        "80.0% over the 1 repeat buyer. The 2 one-time buyers count as active",
    ),
    (
        "one one-time buyer",
        lambda: ins.probability_alive(customers(3, 2, 0)),
        "over the 2 repeat buyers. The 1 one-time buyer counts as active",
    ),
    (
        "one quarantined row",
        lambda: ins.quarantine_summary(health(1)),
        "1 row is held in quarantine; the most common reason is reason 0 (1 row of raw.events)",
    ),
    (
        "three quarantined rows",
        lambda: ins.quarantine_summary(health(2, 1)),
        "3 rows are held in quarantine; the most common reason is reason 0 (2 rows of",
    ),
    ("one data test", lambda: ins.tests_summary(health(tests=1)), "ran 1 data test: 1 passed"),
    ("two data tests", lambda: ins.tests_summary(health(tests=2)), "ran 2 data tests: 2 passed"),
]


@pytest.mark.parametrize(("case", "make", "said"), CASES, ids=[c[0] for c in CASES])
def test_a_count_of_one_takes_the_singular(
    case: str, make: Callable[[], Insight | None], said: str
) -> None:
    insight = make()
    assert insight is not None, case
    assert said in insight.text, insight.text
    assert not re.search(
        r"(?<![\d,.])1 [a-z -]*?(users|weeks|cohorts|buyers|rows|tests|customers)\b", insight.text
    ), insight.text
