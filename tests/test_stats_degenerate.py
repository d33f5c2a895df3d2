"""Degenerate inputs return an error code and a neutral result, never an exception."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from productlens.experiments import ErrorCode, VariantStats, analyze
from productlens.experiments.inference import Prior
from productlens.experiments.srm import srm_test
from productlens.experiments.stats import MetricType, arm_moments, difference

GOOD = VariantStats("c", 1000, 100.0, 100.0, 0.5)
RATIO_GOOD = VariantStats("c", 1000, 5000.0, 60000.0, 0.5, 1500.0, 3000.0, 9000.0)
COVARIATES = {"covariate_sum": 50.0, "covariate_sum_squares": 50.0, "covariate_cross_sum": 20.0}

# (case, metric type, control, treatment, cuped, expected code)
CASES = [
    (
        "empty treatment",
        "proportion",
        GOOD,
        VariantStats("t", 0, 0.0, 0.0),
        False,
        ErrorCode.EMPTY_ARM,
    ),
    ("empty control", "mean", VariantStats("c", 0, 0.0, 0.0), GOOD, False, ErrorCode.EMPTY_ARM),
    ("one user", "mean", GOOD, VariantStats("t", 1, 3.0, 9.0), False, ErrorCode.TOO_FEW_USERS),
    ("negative n", "mean", GOOD, VariantStats("t", -5, 3.0, 9.0), False, ErrorCode.INVALID_INPUT),
    ("nan sum", "mean", GOOD, VariantStats("t", 10, math.nan, 9.0), False, ErrorCode.INVALID_INPUT),
    (
        "more conversions than users",
        "proportion",
        GOOD,
        VariantStats("t", 10, 11.0, 11.0),
        False,
        ErrorCode.INVALID_INPUT,
    ),
    (
        "zero variance both arms",
        "mean",
        VariantStats("c", 50, 100.0, 200.0),
        VariantStats("t", 50, 100.0, 200.0),
        False,
        ErrorCode.ZERO_VARIANCE,
    ),
    (
        "nobody converts",
        "proportion",
        VariantStats("c", 500, 0.0, 0.0),
        VariantStats("t", 500, 0.0, 0.0),
        False,
        ErrorCode.ZERO_CONTROL_MEAN,
    ),
    (
        "zero control mean",
        "mean",
        VariantStats("c", 50, 0.0, 10.0),
        VariantStats("t", 50, 5.0, 10.0),
        False,
        ErrorCode.ZERO_CONTROL_MEAN,
    ),
    (
        "ratio without denominator",
        "ratio",
        GOOD,
        VariantStats("t", 100, 5.0, 9.0),
        False,
        ErrorCode.MISSING_FIELDS,
    ),
    (
        "ratio with zero denominator",
        "ratio",
        RATIO_GOOD,
        VariantStats("t", 100, 0.0, 0.0, None, 0.0, 0.0, 0.0),
        False,
        ErrorCode.ZERO_DENOMINATOR,
    ),
    (
        "cuped without covariate",
        "mean",
        VariantStats("c", 100, 50.0, 80.0),
        VariantStats("t", 100, 55.0, 90.0),
        True,
        ErrorCode.MISSING_COVARIATE,
    ),
    ("cuped on a ratio", "ratio", RATIO_GOOD, RATIO_GOOD, True, ErrorCode.CUPED_RATIO_UNSUPPORTED),
    (
        "cuped, constant covariate",
        "mean",
        VariantStats("c", 100, 50.0, 80.0, None, None, None, None, 100.0, 100.0, 50.0),
        VariantStats("t", 100, 55.0, 90.0, None, None, None, None, 100.0, 100.0, 55.0),
        True,
        ErrorCode.ZERO_COVARIATE_VARIANCE,
    ),
    (
        "cuped, empty arm",
        "mean",
        VariantStats("c", 0, 0.0, 0.0, **COVARIATES),  # type: ignore[arg-type]
        VariantStats("t", 100, 55.0, 90.0, **COVARIATES),
        True,
        ErrorCode.EMPTY_ARM,
    ),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("metric", "control", "treatment", "cuped", "code"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
@pytest.mark.parametrize("method", ["frequentist", "bayesian", "sequential"])
def test_degenerate_input_gives_error_code_and_neutral_result(
    metric: str,
    control: VariantStats,
    treatment: VariantStats,
    cuped: bool,
    code: ErrorCode,
    method: str,
) -> None:
    readout = analyze([control, treatment], metric, method, cuped=cuped)
    cmp = readout.comparisons[0]
    assert cmp.estimate.error is code
    assert cmp.inference.error is code
    assert (cmp.estimate.absolute, cmp.estimate.relative) == (0.0, 0.0)
    assert cmp.inference.ci_absolute == (0.0, 0.0)
    assert cmp.inference.ci_relative == (0.0, 0.0)
    assert not cmp.inference.significant
    if method == "bayesian":
        assert cmp.inference.chance_to_win == 0.5
    else:
        assert cmp.inference.p_value == 1.0
    # Still plain JSON: no NaN or infinity sneaks into the output.
    json.dumps(readout.to_dict(), allow_nan=False)


def test_one_bad_treatment_does_not_spoil_the_others() -> None:
    readout = analyze(
        [GOOD, VariantStats("empty", 0, 0.0, 0.0), VariantStats("t", 1000, 130.0, 130.0)],
        "proportion",
    )
    bad, good = readout.comparisons
    assert bad.estimate.error is ErrorCode.EMPTY_ARM
    assert good.estimate.ok
    assert good.inference.p_value is not None
    assert good.inference.p_value < 0.05


def test_srm_of_no_users_is_not_a_mismatch() -> None:
    result = srm_test([0, 0], [0.5, 0.5])
    assert (result.p_value, result.mismatch) == (1.0, False)


def test_srm_assumes_an_equal_split_without_weights() -> None:
    result = srm_test([5000, 4000], [None, None])
    assert result.weights_assumed
    assert result.mismatch


def test_srm_users_in_a_zero_weight_variant_are_a_mismatch() -> None:
    assert srm_test([5000, 5000, 10], [0.5, 0.5, 0.0]).mismatch


# --- a treatment arm with no conversions ----------------------------------------------


@pytest.mark.filterwarnings("error")
def test_no_conversions_in_treatment_gives_zero_relative_se_for_every_count() -> None:
    # Treatment mean and Wald variance are 0, so the delta-method variance of the relative
    # lift, Var(t)/c^2 + t^2 Var(c)/c^4, is exactly 0. Its general form cancels three
    # terms and left about a quarter of these inputs at -1e-20: sqrt warned "invalid
    # value" and the estimate became an out_of_range error instead of a -100% lift.
    n = np.arange(2, 300, dtype=np.float64)
    grid_n, grid_k = np.meshgrid(n, n)
    mask = grid_k < grid_n
    n_c, k_c = grid_n[mask], grid_k[mask]
    control = arm_moments(MetricType.PROPORTION, n_c, k_c, k_c)
    treatment = arm_moments(MetricType.PROPORTION, n_c + 3, np.zeros_like(n_c), 0.0)
    d = difference(control, treatment, z_test=True)
    p = k_c / n_c
    np.testing.assert_array_equal(d.relative, -1.0)
    np.testing.assert_array_equal(d.relative_se, 0.0)
    np.testing.assert_allclose(d.absolute_se, np.sqrt(p * (1 - p) / n_c), rtol=1e-12)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("method", ["frequentist", "bayesian", "sequential"])
def test_no_conversions_in_treatment_is_an_honest_minus_100_percent(method: str) -> None:
    # 37/1000 against 0/1000 came out as out_of_range before (rounding made the
    # variance negative); it is a real, significant -100% lift.
    control, treatment = VariantStats("c", 1000, 37.0, 37.0), VariantStats("t", 1000, 0.0, 0.0)
    prior = Prior(0.0, 0.3) if method == "bayesian" else None
    cmp = analyze([control, treatment], "proportion", method, prior=prior).comparisons[0]
    est = cmp.estimate
    assert est.error is None
    assert (est.absolute, est.relative, est.relative_se) == (-0.037, -1.0, 0.0)
    assert est.absolute_se == pytest.approx(math.sqrt(0.037 * 0.963 / 1000), rel=1e-12)
    pooled = 37 / 2000
    assert est.null_se == pytest.approx(math.sqrt(pooled * (1 - pooled) * 2 / 1000), rel=1e-12)
    # With no uncertainty in the relative lift its interval is the point itself (with a
    # proper prior too: a likelihood of zero width outweighs any prior).
    assert cmp.inference.ci_relative == (-1.0, -1.0)
    assert cmp.inference.significant
    if method == "frequentist":
        z = -0.037 / est.null_se
        assert cmp.inference.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    json.dumps(cmp.estimate.to_dict(), allow_nan=False)


def _arm(name: str, n: int, var_y: float, var_x: float, r: float) -> VariantStats:
    """An arm with exactly these sample moments (means 2 and 3): sums from closed forms."""
    my, mx = 2.0, 3.0
    cross = (n - 1) * r * math.sqrt(var_x * var_y) + n * mx * my
    return VariantStats(
        name,
        n,
        n * my,
        (n - 1) * var_y + n * my * my,
        None,
        None,
        None,
        None,
        n * mx,
        (n - 1) * var_x + n * mx * mx,
        cross,
    )


@pytest.mark.parametrize(
    ("r", "impossible"),
    [
        (0.5, False),
        (1.0, False),  # a covariate that is the metric up to scale: adjusted variance 0
        (1 + 1e-13, False),  # rounding of the sums, well inside the 1e-9 slack
        (1 + 1e-6, True),
        (-1 - 1e-6, True),
        (1.5, True),
    ],
)
def test_cuped_covariance_beyond_cauchy_schwarz_is_invalid_input(
    r: float, impossible: bool
) -> None:
    control, treatment = _arm("c", 400, 4.0, 9.0, r), _arm("t", 500, 5.0, 8.0, 0.3)
    est = analyze([control, treatment], "mean", cuped=True).comparisons[0].estimate
    if impossible:
        assert est.error is ErrorCode.INVALID_INPUT
        assert (est.absolute, est.absolute_se) == (0.0, 0.0)
        return
    assert est.error is None
    # Closed form: theta = pooled Sxy / Sxx, adjusted per-user variance
    # var_y + theta^2 var_x - 2 theta r sd_x sd_y in each arm (clamped at 0 only for rounding).
    sxy = 399 * r * 6.0 + 499 * 0.3 * math.sqrt(40.0)
    theta = sxy / (399 * 9.0 + 499 * 8.0)
    var_c = max(4.0 + theta**2 * 9.0 - 2 * theta * r * 6.0, 0.0)
    var_t = 5.0 + theta**2 * 8.0 - 2 * theta * 0.3 * math.sqrt(40.0)
    assert est.theta == pytest.approx(theta, rel=1e-9)
    assert est.absolute_se**2 == pytest.approx(var_c / 400 + var_t / 500, rel=1e-9)


def test_a_relative_variance_below_zero_beyond_rounding_stays_not_a_number() -> None:
    """The general (CUPED) delta-method variance is clamped at 0 only within its terms'
    rounding: a Cov(abs, c) no data has (|Cov| > sqrt(Var(abs) Var(c))) leaves it clearly
    negative, and its standard error is NaN, not a confident 0."""
    control = arm_moments(MetricType.MEAN, 100, 100.0, 199.0)  # mean 1, variance 1
    treatment = arm_moments(MetricType.MEAN, 100, 200.0, 499.0)  # mean 2, variance 1
    # Var(abs) = 0.02 and Var(c) = 0.01 allow |Cov| <= 0.0141; 1.0 gives 0.03 - 2 < 0.
    bad = difference(control, treatment, control_mean_covariance=1.0, control_mean_variance=0.01)
    assert math.isnan(float(bad.relative_se))
    # Within the bound the same formula gives its closed-form value.
    good = difference(control, treatment, control_mean_covariance=0.01, control_mean_variance=0.01)
    assert float(good.relative_se) == pytest.approx(math.sqrt(0.02 + 0.01 - 2 * 0.01))
