"""The statistics engine against independent references on the same inputs.

scipy.stats and statsmodels to 1e-9; the delta method against a numeric gradient; CUPED
against an OLS fit on the raw arrays; the Bayesian chance to win against Monte Carlo;
the sequential intervals against GrowthBook's own pinned test values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower, zt_ind_solve_power
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
    proportions_ztest,
)

from productlens.experiments import analyze
from productlens.experiments.inference import Prior, infer
from productlens.experiments.multiple import benjamini_hochberg, holm
from productlens.experiments.power import mde_for_sample, sample_size
from productlens.experiments.srm import srm_test
from productlens.experiments.stats import VariantStats, cuped_theta, estimate

RTOL = 1e-9


def summarise(name: str, y: np.ndarray, **extra: np.ndarray) -> VariantStats:
    """Sufficient statistics of raw per-user arrays (what the SQL will compute)."""
    fields: dict[str, float] = {}
    if "den" in extra:
        d = extra["den"]
        fields |= {
            "denominator_sum": float(d.sum()),
            "denominator_sum_squares": float((d * d).sum()),
            "cross_sum": float((y * d).sum()),
        }
    if "cov" in extra:
        x = extra["cov"]
        fields |= {
            "covariate_sum": float(x.sum()),
            "covariate_sum_squares": float((x * x).sum()),
            "covariate_cross_sum": float((y * x).sum()),
        }
    return VariantStats(name, len(y), float(y.sum()), float((y * y).sum()), **fields)  # type: ignore[arg-type]


PROPORTION_CASES = [
    # (control conversions, control n, treatment conversions, treatment n)
    (1000, 10_000, 1100, 10_000),
    (52, 1_013, 71, 987),
    (4_000, 100_000, 4_000, 100_000),
    (3, 40, 9, 41),
]


@pytest.mark.parametrize(("xc", "nc", "xt", "nt"), PROPORTION_CASES)
def test_two_proportion_z_test_chi_square_and_wald_ci(xc: int, nc: int, xt: int, nt: int) -> None:
    c, t = VariantStats("c", nc, xc, xc), VariantStats("t", nt, xt, xt)
    result = analyze([c, t], "proportion", "frequentist").comparisons[0]
    inf = result.inference
    z, p = proportions_ztest([xt, xc], [nt, nc])
    assert inf.statistic == pytest.approx(z, rel=RTOL, abs=1e-12)
    assert inf.p_value == pytest.approx(p, rel=RTOL)
    chi2, chi_p, dof, _ = sps.chi2_contingency([[xc, nc - xc], [xt, nt - xt]], correction=False)
    assert dof == 1
    assert inf.chi_square == pytest.approx(chi2, rel=RTOL, abs=1e-12)
    assert inf.chi_square_p_value == pytest.approx(chi_p, rel=RTOL)
    lo, hi = confint_proportions_2indep(xt, nt, xc, nc, method="wald", compare="diff")
    assert inf.ci_absolute == pytest.approx((lo, hi), rel=RTOL)


def test_chi_square_would_differ_with_yates_correction() -> None:
    # Guards the reference itself: the comparison above is without continuity correction.
    chi2_yates = sps.chi2_contingency([[52, 961], [71, 916]], correction=True)[0]
    inf = analyze(
        [VariantStats("c", 1013, 52, 52), VariantStats("t", 987, 71, 71)], "proportion"
    ).comparisons[0]
    assert inf.inference.chi_square != pytest.approx(chi2_yates, rel=1e-3)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_welch_t_from_sums_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.lognormal(1.0, 1.0, size=int(rng.integers(30, 3000)))
    b = rng.lognormal(1.1, 1.3, size=int(rng.integers(30, 3000)))
    result = analyze([summarise("a", a), summarise("b", b)], "mean").comparisons[0]
    est, inf = result.estimate, result.inference

    from_stats = sps.ttest_ind_from_stats(
        b.mean(), b.std(ddof=1), len(b), a.mean(), a.std(ddof=1), len(a), equal_var=False
    )
    raw = sps.ttest_ind(b, a, equal_var=False)
    for ref in (from_stats, raw):
        assert inf.statistic == pytest.approx(ref.statistic, rel=RTOL)
        assert inf.p_value == pytest.approx(ref.pvalue, rel=RTOL)
    assert est.df == pytest.approx(raw.df, rel=RTOL)
    assert inf.ci_absolute == pytest.approx(tuple(raw.confidence_interval(0.95)), rel=RTOL)
    assert est.absolute == pytest.approx(b.mean() - a.mean(), rel=RTOL)


def test_variant_stats_moments_from_sums() -> None:
    rng = np.random.default_rng(5)
    y, d, x = rng.normal(3, 2, 500), rng.poisson(4, 500) + 1.0, rng.normal(1, 1, 500)
    s = summarise("v", y, den=d, cov=x)
    assert s.mean == pytest.approx(y.mean(), rel=RTOL)
    assert s.variance == pytest.approx(y.var(ddof=1), rel=RTOL)
    assert s.denominator_variance == pytest.approx(d.var(ddof=1), rel=RTOL)
    assert s.numerator_denominator_covariance == pytest.approx(np.cov(y, d)[0, 1], rel=RTOL)
    assert s.covariate_covariance == pytest.approx(np.cov(y, x)[0, 1], rel=RTOL)
    assert s.ratio_mean == pytest.approx(y.sum() / d.sum(), rel=RTOL)


def _numeric_delta_variance(g, means: np.ndarray, cov: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """J Sigma J' with J from central finite differences (the brute-force delta method)."""
    grad = np.empty(len(means))
    for i in range(len(means)):
        h = 1e-5 * max(abs(means[i]), 1.0)
        up, down = means.copy(), means.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (g(up) - g(down)) / (2 * h)
    return float(grad @ cov @ grad)


def test_ratio_delta_method_matches_numeric_gradient() -> None:
    rng = np.random.default_rng(11)
    arms = []
    for shift in (0.0, 0.2):
        orders = rng.poisson(2.0, 4000) + 1.0
        revenue = orders * rng.gamma(2.0, 10.0 + shift * 10, 4000)
        arms.append((revenue, orders))
    (ma, da), (mb, db) = arms
    result = analyze([summarise("a", ma, den=da), summarise("b", mb, den=db)], "ratio")
    est = result.comparisons[0].estimate

    # Joint vector of the four means; arms independent, so the covariance is block-diagonal.
    means = np.array([ma.mean(), da.mean(), mb.mean(), db.mean()])
    cov = np.zeros((4, 4))
    cov[:2, :2] = np.cov(ma, da) / len(ma)
    cov[2:, 2:] = np.cov(mb, db) / len(mb)

    def absolute(v: np.ndarray) -> float:
        return v[2] / v[3] - v[0] / v[1]

    def relative(v: np.ndarray) -> float:
        return (v[2] / v[3]) / (v[0] / v[1]) - 1

    assert est.absolute == pytest.approx(absolute(means), rel=RTOL)
    assert est.relative == pytest.approx(relative(means), rel=RTOL)
    assert est.absolute_se**2 == pytest.approx(
        _numeric_delta_variance(absolute, means, cov), rel=1e-6
    )
    assert est.relative_se**2 == pytest.approx(
        _numeric_delta_variance(relative, means, cov), rel=1e-6
    )


def test_relative_lift_se_matches_monte_carlo_spread() -> None:
    # The delta method is a first-order approximation: check it against the actual spread
    # of the relative lift over many simulated experiments (from sufficient statistics).
    rng = np.random.default_rng(12)
    n, p_a, p_b = 20_000, 0.05, 0.055
    xa, xb = rng.binomial(n, p_a, 40_000), rng.binomial(n, p_b, 40_000)
    spread = np.std(xb / xa - 1)
    est = estimate(
        VariantStats("a", n, n * p_a, n * p_a), VariantStats("b", n, n * p_b, n * p_b), "proportion"
    )
    assert est.relative_se == pytest.approx(spread, rel=0.02)


def test_cuped_theta_and_estimate_match_ols_on_raw_arrays() -> None:
    rng = np.random.default_rng(21)
    n_a, n_b = 3000, 3200
    x_a, x_b = rng.gamma(2, 5, n_a), rng.gamma(2, 5, n_b)
    y_a = 2 + 0.8 * x_a + rng.normal(0, 4, n_a)
    y_b = 2.5 + 0.8 * x_b + rng.normal(0, 4, n_b)
    c, t = summarise("a", y_a, cov=x_a), summarise("b", y_b, cov=x_b)
    est = estimate(c, t, "mean", cuped=True)

    y = np.concatenate([y_a, y_b])
    design = np.column_stack(
        [np.ones(n_a + n_b), np.r_[np.zeros(n_a), np.ones(n_b)], np.r_[x_a, x_b]]
    )
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    assert cuped_theta(c, t) == pytest.approx(coef[2], rel=RTOL)
    assert est.theta == pytest.approx(coef[2], rel=RTOL)
    assert est.absolute == pytest.approx(coef[1], rel=RTOL)

    # The adjusted variance is the variance of y - theta x in each arm, from the raw arrays.
    theta = coef[2]
    var_raw = np.var(y_a - theta * x_a, ddof=1) / n_a + np.var(y_b - theta * x_b, ddof=1) / n_b
    assert est.absolute_se**2 == pytest.approx(var_raw, rel=RTOL)
    plain = y_a.var(ddof=1) / n_a + y_b.var(ddof=1) / n_b
    assert est.variance_reduction == pytest.approx(1 - var_raw / plain, rel=RTOL)
    assert est.variance_reduction > 0.5  # the covariate explains most of the noise here
    assert est.unadjusted is not None
    assert est.unadjusted.absolute == pytest.approx(y_b.mean() - y_a.mean(), rel=RTOL)
    # OLS's own (homoskedastic) SE of the arm coefficient agrees closely.
    resid = y - design @ coef
    sigma2 = resid @ resid / (len(y) - 3)
    ols_se = math.sqrt(sigma2 * np.linalg.inv(design.T @ design)[1, 1])
    assert est.absolute_se == pytest.approx(ols_se, rel=0.01)


@pytest.mark.parametrize("seed", [0, 1])
def test_holm_and_bh_match_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.r_[rng.uniform(0, 0.05, 6), rng.uniform(0, 1, 10), [0.01, 0.01, 0.5]]
    rng.shuffle(p)
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], rtol=1e-12)
    np.testing.assert_allclose(
        benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1], rtol=1e-12
    )


def test_readout_adjusts_p_values_across_treatments() -> None:
    c = VariantStats("c", 5000, 500, 500)
    treatments = [VariantStats(f"t{i}", 5000, 500 + 25 * i, 500 + 25 * i) for i in range(1, 4)]
    readout = analyze([c, *treatments], "proportion")
    raw = [cmp.inference.p_value for cmp in readout.comparisons]
    np.testing.assert_allclose(
        [cmp.p_value_holm for cmp in readout.comparisons],
        multipletests(raw, method="holm")[1],
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        [cmp.p_value_bh for cmp in readout.comparisons],
        multipletests(raw, method="fdr_bh")[1],
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    ("users", "weights"),
    [
        ([5000, 4800], [0.5, 0.5]),
        ([3000, 3100, 2900], [1, 1, 1]),
        ([1000, 2150], [1 / 3, 2 / 3]),
        ([10_000, 9_500, 10_000], [0.25, 0.25, 0.5]),
    ],
)
def test_srm_matches_scipy_chisquare(users: list[int], weights: list[float]) -> None:
    result = srm_test(users, weights)
    expected = np.asarray(weights) / sum(weights) * sum(users)
    ref = sps.chisquare(users, expected)
    assert result.chi_square == pytest.approx(ref.statistic, rel=RTOL)
    assert result.p_value == pytest.approx(ref.pvalue, rel=RTOL)


def test_srm_flags_at_threshold() -> None:
    assert srm_test([5000, 4600], [0.5, 0.5]).mismatch  # p = 4e-5
    assert not srm_test([5000, 4700], [0.5, 0.5]).mismatch  # p = 0.0023
    assert srm_test([5000, 4700], [0.5, 0.5], threshold=0.01).mismatch
    loose = srm_test([5000, 4850], [0.5, 0.5], threshold=0.2)
    strict = srm_test([5000, 4850], [0.5, 0.5], threshold=0.1)
    assert loose.mismatch
    assert not strict.mismatch


@pytest.mark.parametrize(
    ("baseline", "mde", "alpha", "power"),
    [
        (0.04, 0.05, 0.05, 0.8),
        (0.1, 0.1, 0.05, 0.9),
        (0.3, -0.05, 0.01, 0.8),
        (0.5, 0.02, 0.1, 0.7),
    ],
)
def test_sample_size_matches_statsmodels_normal_ind_power(
    baseline: float, mde: float, alpha: float, power: float
) -> None:
    plan = sample_size(baseline, mde, alpha=alpha, power=power)
    # Effect size: Cohen's h (statsmodels' proportion_effectsize).
    h = proportion_effectsize(baseline * (1 + mde), baseline)
    assert plan.effect_size == pytest.approx(h, rel=RTOL)
    ref = NormalIndPower().solve_power(effect_size=h, alpha=alpha, power=power, ratio=1.0)
    assert plan.n_per_arm_exact == pytest.approx(ref, rel=RTOL)
    assert plan.n_per_arm == math.ceil(ref)
    assert zt_ind_solve_power(effect_size=h, alpha=alpha, power=power) == pytest.approx(
        plan.n_per_arm_exact, rel=RTOL
    )


def test_sample_size_for_a_mean_metric_uses_cohens_d() -> None:
    plan = sample_size(20.0, 1.0, relative=False, stddev=15.0, daily_users=500)
    ref = NormalIndPower().solve_power(effect_size=1.0 / 15.0, alpha=0.05, power=0.8)
    assert plan.n_per_arm_exact == pytest.approx(ref, rel=RTOL)
    assert plan.days == math.ceil(2 * ref / 500)


@pytest.mark.parametrize("n", [1_000, 25_000, 400_000])
def test_mde_for_sample_matches_statsmodels(n: int) -> None:
    plan = mde_for_sample(0.04, n)
    # statsmodels' own solve for the effect size stops early (its answer has power
    # 0.7999987): the 1e-9 reference is statsmodels' power at our effect size.
    assert NormalIndPower().power(plan.effect_size, n, 0.05) == pytest.approx(0.8, rel=RTOL)
    h = NormalIndPower().solve_power(nobs1=n, alpha=0.05, power=0.8, ratio=1.0)
    assert plan.effect_size == pytest.approx(h, rel=1e-4)
    # Round trip: the MDE found needs exactly n users.
    assert sample_size(0.04, plan.absolute_mde, relative=False).n_per_arm_exact == (
        pytest.approx(n, rel=1e-8)
    )


def test_bayesian_chance_to_win_matches_beta_monte_carlo() -> None:
    # Independent of the normal approximation: Beta(1 + x, 1 + n - x) posteriors per arm.
    xc, nc, xt, nt = 480, 10_000, 540, 10_000
    result = analyze(
        [VariantStats("c", nc, xc, xc), VariantStats("t", nt, xt, xt)], "proportion", "bayesian"
    ).comparisons[0]
    rng = np.random.default_rng(7)
    pc = rng.beta(1 + xc, 1 + nc - xc, 400_000)
    pt = rng.beta(1 + xt, 1 + nt - xt, 400_000)
    lift = pt / pc - 1
    inf = result.inference
    assert inf.chance_to_win == pytest.approx(np.mean(lift > 0), abs=0.002)
    # Expected losses: of the absolute difference, in units of the control mean.
    diff = (pt - pc) / (xc / nc)
    assert inf.expected_loss_treatment == pytest.approx(np.mean(np.maximum(0, -diff)), rel=0.03)
    assert inf.expected_loss_control == pytest.approx(np.mean(np.maximum(0, diff)), rel=0.01)
    lo, hi = np.quantile(pt - pc, [0.025, 0.975])
    assert inf.ci_absolute == pytest.approx((lo, hi), abs=1e-4)  # the width is 0.012
    # The relative interval is the delta method's symmetric one; the exact posterior of
    # the relative lift is right-skewed, so it agrees only to within its skew.
    lo, hi = np.quantile(lift, [0.025, 0.975])
    assert inf.ci_relative == pytest.approx((lo, hi), abs=0.01)  # the width is 0.27


def test_bayesian_proper_prior_matches_importance_sampling() -> None:
    est = estimate(
        VariantStats("c", 2000, 100, 100), VariantStats("t", 2000, 125, 125), "proportion"
    )
    prior = Prior(mean=0.0, stddev=0.1)
    inf = infer(est, "bayesian", prior=prior)
    rng = np.random.default_rng(3)
    effect = rng.normal(prior.mean, prior.stddev, 2_000_000)  # relative lift
    # The relative prior in the metric's units; the likelihood of the observed difference.
    weights = np.exp(-0.5 * ((est.absolute - effect * est.control_mean) / est.absolute_se) ** 2)
    posterior_win = np.sum(weights * (effect > 0)) / np.sum(weights)
    assert inf.chance_to_win == pytest.approx(posterior_win, abs=0.003)
    rel_weights = np.exp(-0.5 * ((est.relative - effect) / est.relative_se) ** 2)
    lo, hi = inf.ci_relative
    inside = np.sum(rel_weights * ((effect > lo) & (effect < hi))) / np.sum(rel_weights)
    assert inside == pytest.approx(0.95, abs=0.003)
    flat = infer(est, "bayesian")
    # The prior shrinks toward zero: less certain than the flat-prior answer.
    assert 0.5 < inf.chance_to_win < flat.chance_to_win  # type: ignore[operator]
    assert flat.chance_to_win == pytest.approx(
        sps.norm.cdf(est.absolute / est.absolute_se), rel=RTOL
    )


def test_sequential_matches_growthbook_pinned_values() -> None:
    # gbstats' own tests (frequentist/tests.py, TestSequentialTTest), relative lift.
    a = VariantStats("a", 3000, 1396.87, 52377.9767)
    b = VariantStats("b", 3461, 2422.7, 134698.29)
    est = estimate(a, b, "mean")
    inf = infer(est, "sequential", tuning_parameter=1000)
    assert round(est.relative, 5) == 0.50336
    assert round(est.relative_se, 5) == 0.33341
    assert (round(inf.ci_relative[0], 5), round(inf.ci_relative[1], 5)) == (-0.55844, 1.56516)
    assert inf.p_value == 1.0

    a, b = VariantStats("a", 3000, 1396, 1396), VariantStats("b", 3461, 2422, 2422)
    est = estimate(a, b, "proportion")
    inf = infer(est, "sequential")  # default tuning parameter 5000
    assert round(est.relative, 5) == 0.50386
    assert (round(inf.ci_relative[0], 5), round(inf.ci_relative[1], 5)) == (0.40098, 0.60675)
    assert round(inf.p_value or 1, 5) == 0.0


def test_sequential_interval_is_wider_than_fixed_horizon() -> None:
    a = VariantStats("a", 3000, 1396.87, 52377.9767)
    b = VariantStats("b", 3461, 2422.7, 134698.29)
    fixed = analyze([a, b], "mean", "frequentist").comparisons[0].inference
    seq = analyze([a, b], "mean", "sequential").comparisons[0].inference
    assert seq.ci_absolute[0] < fixed.ci_absolute[0]
    assert seq.ci_absolute[1] > fixed.ci_absolute[1]


def test_business_impact_scales_the_lift_and_its_interval_to_a_month() -> None:
    c, t = VariantStats("c", 10_000, 1000, 1000), VariantStats("t", 10_000, 1100, 1100)
    cmp = analyze([c, t], "proportion", monthly_users=250_000).comparisons[0]
    assert cmp.impact is not None
    assert cmp.impact.incremental == pytest.approx(0.01 * 250_000, rel=1e-12)
    lo, hi = cmp.inference.ci_absolute
    assert (cmp.impact.lower, cmp.impact.upper) == pytest.approx((lo * 250_000, hi * 250_000))
    assert cmp.impact.baseline == pytest.approx(25_000)
    assert cmp.impact.lower < cmp.impact.incremental < cmp.impact.upper


def test_days_needed_at_daily_traffic() -> None:
    plan = sample_size(0.04, 0.05, daily_users=2_000)
    assert plan.days == math.ceil(2 * plan.n_per_arm_exact / 2_000)
    assert plan.n_per_arm > 100_000  # a 5% relative lift on 4% needs a lot of users
