"""Tests written to kill mutants that the other experiment tests let survive.

Each test pins one behaviour a deliberate code mutation (issue 12 mutation testing)
showed was unchecked: a boundary, a term of a formula, or a parameter that the other
tests only exercised at a value where the mutant and the original agree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from productlens.engines import DuckDBEngine
from productlens.experiments.analysis import DAYS_PER_MONTH, Settings, analyze_experiment, decide
from productlens.experiments.inference import Prior, infer
from productlens.experiments.metric_defs import MetricDef
from productlens.experiments.readout import analyze
from productlens.experiments.stats import VariantStats, estimate
from tests.test_experiment_data import world  # noqa: F401 (a module-scoped fixture)
from tests.test_experiment_decision import rate, readout

RTOL = 1e-9


def test_exactly_min_users_per_arm_is_enough_to_decide() -> None:
    # "keep running while any arm has FEWER than min_users": 100 users is enough.
    # 10 vs 60 of 100 converted: z ~ 7.5, a clear gain.
    stats = (rate("control", 100, 10), rate("treatment", 100, 60))
    assert decide(readout(stats, settings=Settings(min_users=100))).verdict == "ship"
    assert decide(readout(stats, settings=Settings(min_users=101))).verdict == "keep running"


def test_cuped_relative_se_matches_the_delta_method_on_raw_arrays() -> None:
    # Relative lift = (adjusted lift) / (unadjusted control mean). Its SE by the general
    # delta method, g' S g, with S the covariance of the three means estimated from the raw
    # per-user arrays (theta treated as known): this needs Cov(adjusted lift, control
    # mean) = -Cov(y - theta x, y) / n in control, not the plain -Var(y) / n.
    rng = np.random.default_rng(5)
    n_a, n_b = 4000, 4200
    x_a, x_b = rng.gamma(2, 5, n_a), rng.gamma(2, 5, n_b)
    y_a = 5 + 0.9 * x_a + rng.normal(0, 3, n_a)
    y_b = 6 + 0.9 * x_b + rng.normal(0, 3, n_b)

    def sums(name: str, y: np.ndarray, x: np.ndarray) -> VariantStats:
        return VariantStats(
            name,
            len(y),
            float(y.sum()),
            float((y * y).sum()),
            covariate_sum=float(x.sum()),
            covariate_sum_squares=float((x * x).sum()),
            covariate_cross_sum=float((y * x).sum()),
        )

    est = estimate(sums("a", y_a, x_a), sums("b", y_b, x_b), "mean", cuped=True)
    assert est.theta is not None
    theta = est.theta
    adj_a, adj_b = y_a - theta * x_a, y_b - theta * x_b
    # Means m = (mean adj_a, mean adj_b, mean y_a); relative = (m1 - m0) / m2.
    m0, m1, m2 = adj_a.mean(), adj_b.mean(), y_a.mean()
    cov = np.zeros((3, 3))
    cov_a = np.cov(np.vstack([adj_a, y_a]), ddof=1) / n_a
    cov[np.ix_([0, 2], [0, 2])] = cov_a
    cov[1, 1] = adj_b.var(ddof=1) / n_b
    grad = np.array([-1 / m2, 1 / m2, -(m1 - m0) / m2**2])
    assert est.relative == pytest.approx((m1 - m0) / m2, rel=RTOL)
    assert est.relative_se == pytest.approx(float(np.sqrt(grad @ cov @ grad)), rel=RTOL)


def test_proper_prior_with_a_non_zero_mean_is_the_conjugate_normal_posterior() -> None:
    # The other prior test uses a prior mean of 0, where dropping the prior mean changes
    # nothing. Normal likelihood x normal prior on the relative lift: precision-weighted.
    est = estimate(
        VariantStats("c", 2000, 100, 100), VariantStats("t", 2000, 125, 125), "proportion"
    )
    prior = Prior(mean=0.15, stddev=0.1)
    inf = infer(est, "bayesian", prior=prior)
    prec = 1 / est.relative_se**2 + 1 / prior.stddev**2
    mean = (est.relative / est.relative_se**2 + prior.mean / prior.stddev**2) / prec
    half = sps.norm.ppf(0.975) / np.sqrt(prec)
    assert inf.ci_relative == pytest.approx((mean - half, mean + half), rel=RTOL)
    # The absolute lift's posterior: the same prior in the metric's units.
    a_prec = 1 / est.absolute_se**2 + 1 / (prior.stddev * est.control_mean) ** 2
    a_mean = (
        est.absolute / est.absolute_se**2
        + prior.mean * est.control_mean / (prior.stddev * est.control_mean) ** 2
    ) / a_prec
    assert inf.chance_to_win == pytest.approx(sps.norm.cdf(a_mean * np.sqrt(a_prec)), rel=RTOL)


def test_readout_scales_impact_by_exposure_days_and_cuped_skips_metrics_without_covariate(
    world: tuple[DuckDBEngine, pd.DataFrame],  # noqa: F811
) -> None:
    engine, users = world
    metrics = [
        MetricDef("conversion", "proportion", "is_converted", covariate="pre_is_converted"),
        MetricDef("revenue", "mean", "revenue"),  # no covariate: CUPED does not apply
    ]
    result = analyze_experiment(engine, "x1", metrics, Settings(cuped=True, regression=False))
    days = pd.to_datetime(users.first_exposure_ts).dt.date
    exposure_days = (days.max() - days.min()).days + 1  # both ends count
    assert result.exposure_days == exposure_days
    monthly = len(users) / exposure_days * DAYS_PER_MONTH
    conversion, revenue = result.metrics
    first = conversion.readout.comparisons[0]
    assert first.impact is not None
    assert first.impact.monthly_users == pytest.approx(monthly, rel=1e-12)
    assert first.estimate.cuped
    assert first.estimate.ok
    # The metric without a covariate gets the plain estimate, not a missing_covariate error.
    plain = revenue.readout.comparisons[0].estimate
    assert plain.ok
    assert not plain.cuped


def test_a_p_value_between_alpha_over_two_and_alpha_is_significant() -> None:
    # 1000 vs 1095 of 10,000: pooled z ~ 2.19, two-sided p ~ 0.028: significant at 0.05
    # (a test of p < alpha / 2 would call it not significant).
    c, t = VariantStats("c", 10_000, 1000, 1000), VariantStats("t", 10_000, 1095, 1095)
    inf = analyze([c, t], "proportion").comparisons[0].inference
    assert inf.p_value is not None
    assert 0.025 < inf.p_value < 0.05
    assert inf.significant


def test_sequential_flags_a_significant_loss() -> None:
    # 1200 -> 1000 of 10,000: the always-valid interval lies wholly below zero.
    c, t = VariantStats("c", 10_000, 1200, 1200), VariantStats("t", 10_000, 1000, 1000)
    inf = analyze([c, t], "proportion", "sequential").comparisons[0].inference
    assert inf.ci_absolute[1] < 0
    assert inf.significant


def test_a_single_treatment_gets_adjusted_p_values_equal_to_its_own() -> None:
    # Holm and BH over one comparison change nothing; they are still reported.
    c, t = VariantStats("c", 10_000, 1000, 1000), VariantStats("t", 10_000, 1095, 1095)
    cmp = analyze([c, t], "proportion").comparisons[0]
    assert cmp.p_value_holm == cmp.inference.p_value
    assert cmp.p_value_bh == cmp.inference.p_value


def test_variant_stats_of_two_groups_add_up_to_the_pooled_sums() -> None:
    # Strata and "other" buckets are exact sums: a + b is the statistics of a's and b's
    # users together (every count and sum added); name and weight are a's; a sum missing
    # on either side stays missing.
    rng = np.random.default_rng(9)
    # Whole numbers: the sums are exact whatever the order of addition.
    y1, y2 = rng.integers(0, 9, 50).astype(float), rng.integers(0, 9, 70).astype(float)
    d1, d2 = rng.integers(1, 4, 50).astype(float), rng.integers(1, 4, 70).astype(float)

    def sums(name: str, y: np.ndarray, d: np.ndarray, weight: float) -> VariantStats:
        return VariantStats(
            name,
            len(y),
            float(y.sum()),
            float((y * y).sum()),
            weight,
            denominator_sum=float(d.sum()),
            denominator_sum_squares=float((d * d).sum()),
            cross_sum=float((y * d).sum()),
        )

    total = sums("a", y1, d1, 0.5) + sums("b", y2, d2, 0.25)
    assert total == sums("a", np.r_[y1, y2], np.r_[d1, d2], 0.5)
    assert total.covariate_sum is None
