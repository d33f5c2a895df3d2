"""Pure statistics over sufficient statistics (no engine imported here).

SQL returns, per experiment x variant x metric (x dimension value), the sums below;
everything else (means, variances, tests, intervals) is derived from them. Statistics
add up: strata and "other" buckets are exact sums (`VariantStats.__add__`).

This module holds the estimate layer (GrowthBook gbstats style): `VariantStats` with its
derived moments, and `estimate()`, which turns a control and a treatment into an
`Estimate` (means, absolute and relative lift, standard errors, Welch-Satterthwaite
degrees of freedom, optionally CUPED-adjusted). Inference on top of an `Estimate` lives
in `productlens.experiments.inference` (frequentist, Bayesian, sequential); the one
entry point for a whole readout is `productlens.experiments.readout.analyze` (also
importable as `productlens.experiments.analyze`).

The array kernels (`arm_moments`, `difference`) take NumPy arrays as well as floats, so
calibration simulations run thousands of experiments in one call; `estimate()` adds the
checks that turn a degenerate input into an `ErrorCode` instead of an exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "ArmMoments",
    "Difference",
    "ErrorCode",
    "Estimate",
    "MetricType",
    "VariantStats",
    "arm_moments",
    "cuped_theta",
    "difference",
    "estimate",
]

FloatArray = npt.NDArray[np.float64]
Numbers = float | FloatArray


class MetricType(StrEnum):
    """How a metric's per-user values are summarised."""

    PROPORTION = "proportion"  # share of users with a 0/1 outcome; Wald variance p(1-p)
    MEAN = "mean"  # mean per user; sample variance with n - 1
    RATIO = "ratio"  # sum of numerator / sum of denominator; delta-method variance


class ErrorCode(StrEnum):
    """Why an estimate could not be made; the estimate is then neutral (zero lift)."""

    EMPTY_ARM = "empty_arm"  # a variant has no users
    TOO_FEW_USERS = "too_few_users"  # a variant has fewer than 2 users
    # negative n, NaN/infinite sums, proportion sum outside [0, n], a negative variance or a
    # CUPED covariance beyond Cauchy-Schwarz (see `impossible_covariance`)
    INVALID_INPUT = "invalid_input"
    MISSING_FIELDS = "missing_fields"  # ratio metric without denominator sums / cross_sum
    MISSING_COVARIATE = "missing_covariate"  # CUPED requested without covariate sums
    ZERO_VARIANCE = "zero_variance"  # the lift's standard error is zero
    ZERO_DENOMINATOR = "zero_denominator"  # a ratio metric's denominator sums to zero
    ZERO_CONTROL_MEAN = "zero_control_mean"  # relative lift undefined
    CUPED_RATIO_UNSUPPORTED = "cuped_ratio_unsupported"  # CUPED is for proportion/mean metrics
    ZERO_COVARIATE_VARIANCE = "zero_covariate_variance"  # CUPED theta undefined
    OUT_OF_RANGE = "out_of_range"  # sums so large or small that floating point over/underflows


@dataclass(frozen=True)
class VariantStats:
    """Sufficient statistics of one variant for one metric.

    `sum` and `sum_squares` are over the metric's per-user numerator values (0/1 for a
    proportion). For a ratio metric, `denominator_*` are over the per-user denominator and
    `cross_sum` is the sum of numerator x denominator. For CUPED, `covariate_*` are over
    the pre-exposure covariate and `covariate_cross_sum` is the sum of metric x covariate.
    `weight` is the configured traffic share, used by the SRM test.

    The derived properties use n - 1 (sample variances and covariances); they are NaN
    when undefined (n < 2, or a missing field).
    """

    name: str
    n: int
    sum: float
    sum_squares: float
    weight: float | None = None
    denominator_sum: float | None = None
    denominator_sum_squares: float | None = None
    cross_sum: float | None = None
    covariate_sum: float | None = None
    covariate_sum_squares: float | None = None
    covariate_cross_sum: float | None = None

    def __add__(self, other: VariantStats) -> VariantStats:
        """Pool two disjoint groups of users of the same variant (name and weight of self)."""
        values: dict[str, object] = {"name": self.name, "weight": self.weight}
        for f in fields(self):
            if f.name in values:
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            values[f.name] = None if a is None or b is None else a + b
        return VariantStats(**values)  # type: ignore[arg-type]

    @property
    def mean(self) -> float:
        """Mean of the per-user metric (numerator) values."""
        return self.sum / self.n if self.n > 0 else math.nan

    @property
    def variance(self) -> float:
        """Sample variance (n - 1) of the per-user metric values."""
        return _covariance(self.n, self.sum, self.sum, self.sum_squares)

    @property
    def denominator_mean(self) -> float:
        return _mean(self.n, self.denominator_sum)

    @property
    def denominator_variance(self) -> float:
        return _covariance(
            self.n, self.denominator_sum, self.denominator_sum, self.denominator_sum_squares
        )

    @property
    def numerator_denominator_covariance(self) -> float:
        """Sample covariance of per-user numerator and denominator (ratio metrics)."""
        return _covariance(self.n, self.sum, self.denominator_sum, self.cross_sum)

    @property
    def ratio_mean(self) -> float:
        """The ratio metric: sum of numerators over sum of denominators."""
        if self.denominator_sum is None or self.denominator_sum == 0:
            return math.nan
        return self.sum / self.denominator_sum

    @property
    def ratio_variance(self) -> float:
        """Per-user delta-method variance of the ratio; its standard error is sqrt(v / n)."""
        m = ratio_moments(
            self.mean,
            self.variance,
            self.denominator_mean,
            self.denominator_variance,
            self.numerator_denominator_covariance,
        )
        return float(m[1])

    @property
    def covariate_mean(self) -> float:
        return _mean(self.n, self.covariate_sum)

    @property
    def covariate_variance(self) -> float:
        return _covariance(
            self.n, self.covariate_sum, self.covariate_sum, self.covariate_sum_squares
        )

    @property
    def covariate_covariance(self) -> float:
        """Sample covariance of the metric and its pre-exposure covariate (CUPED)."""
        return _covariance(self.n, self.sum, self.covariate_sum, self.covariate_cross_sum)


def _mean(n: int, total: float | None) -> float:
    return math.nan if total is None or n <= 0 else total / n


def _covariance(n: int, sum_x: float | None, sum_y: float | None, cross: float | None) -> float:
    if sum_x is None or sum_y is None or cross is None or n < 2:
        return math.nan
    return (cross - sum_x * sum_y / n) / (n - 1)


# --- array kernels -------------------------------------------------------------------


def ratio_moments(
    mean_m: Numbers, var_m: Numbers, mean_d: Numbers, var_d: Numbers, cov_md: Numbers
) -> tuple[Numbers, Numbers]:
    """Mean and per-user delta-method variance of mean_m / mean_d.

    Var(M/D) ~ var_m / mu_d^2 + var_d mu_m^2 / mu_d^4 - 2 cov mu_m / mu_d^3 (first-order
    Taylor expansion of the ratio of means around the true means).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.divide(mean_m, mean_d)
        var = (
            np.divide(var_m, np.square(mean_d))
            + np.divide(np.multiply(var_d, np.square(mean_m)), np.power(mean_d, 4))
            - np.divide(2 * np.multiply(cov_md, mean_m), np.power(mean_d, 3))
        )
    return ratio, var


@dataclass(frozen=True)
class ArmMoments:
    """One arm reduced to what a comparison needs: mean, per-user variance, n."""

    mean: Numbers
    variance: Numbers
    n: Numbers


def arm_moments(
    metric_type: MetricType,
    n: Numbers,
    total: Numbers,
    sum_squares: Numbers,
    denominator_sum: Numbers | None = None,
    denominator_sum_squares: Numbers | None = None,
    cross_sum: Numbers | None = None,
) -> ArmMoments:
    """Mean and per-user variance of one arm for a metric type (arrays or floats)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        n_f = np.asarray(n, dtype=np.float64)
        mean = np.divide(total, n_f)
        if metric_type is MetricType.PROPORTION:
            # Wald variance p(1 - p): what the two-proportion z-test and its CI use.
            return ArmMoments(mean, mean * (1 - mean), n_f)
        variance = (np.asarray(sum_squares) - np.square(total) / n_f) / (n_f - 1)
        if metric_type is MetricType.MEAN:
            return ArmMoments(mean, variance, n_f)
        if denominator_sum is None or denominator_sum_squares is None or cross_sum is None:
            raise ValueError("a ratio metric needs denominator_sum(_squares) and cross_sum")
        mean_d = np.divide(denominator_sum, n_f)
        var_d = (np.asarray(denominator_sum_squares) - np.square(denominator_sum) / n_f) / (n_f - 1)
        cov = (np.asarray(cross_sum) - np.multiply(total, denominator_sum) / n_f) / (n_f - 1)
        ratio, ratio_var = ratio_moments(mean, variance, mean_d, var_d, cov)
        return ArmMoments(ratio, ratio_var, n_f)


@dataclass(frozen=True)
class Difference:
    """Treatment minus control, absolute and relative, with standard errors (arrays ok)."""

    control_mean: Numbers
    treatment_mean: Numbers
    absolute: Numbers
    absolute_se: Numbers
    relative: Numbers
    relative_se: Numbers
    df: Numbers  # Welch-Satterthwaite degrees of freedom (inf for proportions: z-test)


def difference(
    control: ArmMoments,
    treatment: ArmMoments,
    *,
    z_test: bool = False,
    absolute: Numbers | None = None,
    control_mean_covariance: Numbers | None = None,
    control_mean_variance: Numbers | None = None,
) -> Difference:
    """Absolute and relative lift of treatment over control with delta-method SEs.

    `absolute` overrides the difference of means (CUPED passes its adjusted difference,
    whose per-user variances are then the arms' `variance`); `control_mean_covariance`
    is Cov(absolute, control mean), by default -Var(control mean) as for a plain
    difference; `control_mean_variance` is Var(control mean), by default the control's
    `variance` / n (CUPED passes the unadjusted one: the relative lift divides by the
    unadjusted control mean). Relative lift = absolute / |control mean|; by the delta method
    Var = Var(abs)/c^2 + abs^2 Var(c)/c^4 - 2 abs Cov(abs, c)/c^3, which for a plain
    difference equals the familiar Var(t)/c^2 + t^2 Var(c)/c^4.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        vc = np.divide(control.variance, control.n)
        vt = np.divide(treatment.variance, treatment.n)
        abs_ = (
            np.subtract(treatment.mean, control.mean) if absolute is None else np.asarray(absolute)
        )
        abs_var = vc + vt
        c = np.asarray(control.mean)
        var_c = (  # variance of the control mean
            np.divide(control.variance, control.n)
            if control_mean_variance is None
            else np.asarray(control_mean_variance)
        )
        cov = -var_c if control_mean_covariance is None else np.asarray(control_mean_covariance)
        # Over |c|, so a relative lift has the sign of the change even when the control
        # mean is negative (net revenue); d(a/|c|)/dc = -a/(c|c|), so rel_var is unchanged.
        rel = abs_ / np.abs(c)
        plain = control_mean_covariance is None and control_mean_variance is None
        rel_var = _relative_variance(c, abs_, vt, abs_var, var_c, cov, plain=plain)
        if z_test:
            df = np.full_like(abs_var, np.inf, dtype=np.float64)
        else:
            df = abs_var**2 / (
                vc**2 / (np.asarray(control.n) - 1) + vt**2 / (np.asarray(treatment.n) - 1)
            )
        relative_se = np.sqrt(rel_var)  # NaN only for a negative variance beyond rounding
    return Difference(
        control_mean=c,
        treatment_mean=c + abs_,
        absolute=abs_,
        absolute_se=np.sqrt(abs_var),
        relative=rel,
        relative_se=relative_se,
        df=df,
    )


def _relative_variance(
    c: FloatArray,
    abs_: FloatArray,
    vt: FloatArray,
    abs_var: FloatArray,
    var_c: FloatArray,
    cov: FloatArray,
    *,
    plain: bool,
) -> FloatArray:
    """Delta-method variance of abs_ / |c|, never negative from rounding alone.

    It is a quadratic form of the covariance matrix of (abs_, c), so it is >= 0. The general
    form Var(abs)/c^2 + abs^2 Var(c)/c^4 - 2 abs Cov/c^3 cancels: for a treatment arm with
    no conversions (mean and Wald variance 0) its terms sum to exactly 0 and rounding left
    about a quarter of such inputs at -1e-20, whose square root was NaN. A plain difference
    (Cov = -Var(c), Var(abs) = Var(c) + vt) is therefore computed as the equal sum of
    non-negative terms vt/c^2 + (c + abs)^2 Var(c)/c^4 (the treatment mean is c + abs).
    The general form (CUPED) keeps a value below 0 by no more than the rounding of its
    terms as 0; a larger negative value (a covariance that no data has) stays negative.
    """
    if plain:
        return vt / c**2 + (c + abs_) ** 2 * var_c / c**4
    terms = (abs_var / c**2, abs_**2 * var_c / c**4, -2 * abs_ * cov / c**3)
    total = terms[0] + terms[1] + terms[2]
    rounding = 1e-9 * (np.abs(terms[0]) + np.abs(terms[1]) + np.abs(terms[2]))
    return np.where((total < 0) & (total >= -rounding), 0.0, total)


def cuped_theta(control: VariantStats, treatment: VariantStats) -> float:
    """CUPED's theta pooled across both arms: within-arm covariance over covariate variance.

    theta = sum over arms of centred cross products / sum over arms of centred covariate
    squares, which is the OLS coefficient of the covariate in metric ~ 1 + arm +
    covariate (so the adjusted difference equals that regression's arm coefficient).
    """
    sxy = sum(s.covariate_covariance * (s.n - 1) for s in (control, treatment))
    sxx = sum(s.covariate_variance * (s.n - 1) for s in (control, treatment))
    return sxy / sxx if sxx > 0 else math.nan


# --- the scalar estimate with its checks --------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """Treatment vs control for one metric: means, lifts, standard errors, df.

    With CUPED, the lift and SEs are the adjusted ones (means stay unadjusted), `theta`
    is the pooled CUPED coefficient, `variance_reduction` is 1 - Var(adjusted lift) /
    Var(unadjusted lift), and `unadjusted` holds the plain estimate. `null_se` is the
    standard error under the null hypothesis (pooled for a two-proportion z-test; the
    same as `absolute_se` otherwise). A non-None `error` means a neutral estimate (zero
    lifts and standard errors).
    """

    metric_type: MetricType
    control_n: int
    treatment_n: int
    control_mean: float
    treatment_mean: float
    absolute: float
    absolute_se: float
    relative: float
    relative_se: float
    df: float
    null_se: float
    error: ErrorCode | None = None
    cuped: bool = False
    theta: float | None = None
    variance_reduction: float | None = None
    unadjusted: Estimate | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (non-finite numbers become null)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Estimate):
                value = value.to_dict()
            out[f.name] = json_value(value)
        return out


def json_value(value: Any) -> Any:
    """A value as plain JSON: enums by value, non-finite floats as null, tuples as lists."""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, tuple | list):
        return [json_value(v) for v in value]
    return value


def neutral_estimate(
    metric_type: MetricType,
    control: VariantStats,
    treatment: VariantStats,
    error: ErrorCode,
    *,
    cuped: bool = False,
) -> Estimate:
    """Zero lifts and standard errors, the error code, and the means where defined."""

    def mean(s: VariantStats) -> float:
        value = s.mean if metric_type is not MetricType.RATIO else s.ratio_mean
        return value if math.isfinite(value) else 0.0

    return Estimate(
        metric_type=metric_type,
        control_n=max(control.n, 0),
        treatment_n=max(treatment.n, 0),
        control_mean=mean(control),
        treatment_mean=mean(treatment),
        absolute=0.0,
        absolute_se=0.0,
        relative=0.0,
        relative_se=0.0,
        df=math.inf,
        null_se=0.0,
        error=error,
        cuped=cuped,
    )


_RATIO_FIELDS = ("denominator_sum", "denominator_sum_squares", "cross_sum")
_COVARIATE_FIELDS = ("covariate_sum", "covariate_sum_squares", "covariate_cross_sum")


def _input_error(metric_type: MetricType, s: VariantStats) -> ErrorCode | None:
    """The first reason this arm's numbers cannot be used, if any."""
    numbers = [s.sum, s.sum_squares, *(getattr(s, f) for f in _RATIO_FIELDS)]
    if s.n < 0 or not all(v is None or math.isfinite(v) for v in numbers):
        return ErrorCode.INVALID_INPUT
    if metric_type is MetricType.PROPORTION and not (
        0 <= s.sum <= s.n and _close(s.sum_squares, s.sum)
    ):
        return ErrorCode.INVALID_INPUT  # 0/1 outcomes: 0 <= sum <= n and sum of squares = sum
    if s.n > 0 and _impossible_spread(s.n, s.sum, s.sum_squares):
        return ErrorCode.INVALID_INPUT
    if s.n > 0 and _impossible_spread(s.n, s.denominator_sum, s.denominator_sum_squares):
        return ErrorCode.INVALID_INPUT
    if metric_type is MetricType.RATIO and any(getattr(s, f) is None for f in _RATIO_FIELDS):
        return ErrorCode.MISSING_FIELDS
    if s.n == 0:
        return ErrorCode.EMPTY_ARM
    if s.n < 2:
        return ErrorCode.TOO_FEW_USERS
    if metric_type is MetricType.RATIO and s.denominator_sum == 0:
        return ErrorCode.ZERO_DENOMINATOR
    return None


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)


def _impossible_spread(n: int, total: float | None, squares: float | None) -> bool:
    """True when no data has these sums: a sum of squares below sum^2 / n (a negative
    variance), beyond what floating-point rounding of the sums explains."""
    if total is None or squares is None:
        return False
    floor = total * total / n
    return squares < floor and not _close(squares, floor)


def impossible_covariance(s: VariantStats) -> bool:
    """True when no data has this arm's metric and covariate sums: a centred cross product
    larger than Cauchy-Schwarz allows (|Sxy| > sqrt(Sxx Syy), i.e. |correlation| > 1).

    The centred sums come from subtracting sum x sum / n from an uncentred sum, so their
    rounding error scales with the uncentred magnitudes, not the centred ones: the slack
    is the 1e-9 relative tolerance of `_close` times sqrt(sum_squares x
    covariate_sum_squares), which bounds |covariate_cross_sum| itself. A covariance beyond
    that is not rounding; within it the adjusted variance is clamped at 0 as rounding.
    """
    values = (s.sum, s.sum_squares, s.covariate_sum, s.covariate_sum_squares)
    cross = s.covariate_cross_sum
    if s.n < 2 or cross is None or any(v is None for v in values):
        return False
    sx, qx, sy, qy = (float(v) for v in values)  # type: ignore[arg-type]
    sxx = max(qx - sx * sx / s.n, 0.0)
    syy = max(qy - sy * sy / s.n, 0.0)
    sxy = cross - sx * sy / s.n
    slack = 1e-9 * math.sqrt(abs(qx) * abs(qy))
    return abs(sxy) > math.sqrt(sxx * syy) + slack


def _moments(metric_type: MetricType, s: VariantStats) -> ArmMoments:
    return arm_moments(
        metric_type,
        float(s.n),
        s.sum,
        s.sum_squares,
        s.denominator_sum,
        s.denominator_sum_squares,
        s.cross_sum,
    )


def estimate(
    control: VariantStats,
    treatment: VariantStats,
    metric_type: MetricType | str,
    *,
    cuped: bool = False,
) -> Estimate:
    """Treatment vs control for one metric; never raises on degenerate numbers.

    Proportions use the Wald variance p(1 - p) and a z-test (df = inf, pooled null SE);
    means and ratios use per-user sample variances and Welch-Satterthwaite df.
    """
    kind = MetricType(metric_type)
    for arm in (control, treatment):
        error = _input_error(kind, arm)
        if error is not None:
            return neutral_estimate(kind, control, treatment, error, cuped=cuped)
    if cuped:
        return _cuped_estimate(kind, control, treatment)
    mc, mt = _moments(kind, control), _moments(kind, treatment)
    if float(mc.mean) == 0:
        return neutral_estimate(kind, control, treatment, ErrorCode.ZERO_CONTROL_MEAN)
    d = difference(mc, mt, z_test=kind is MetricType.PROPORTION)
    error = _difference_error(d)
    if error is not None:
        return neutral_estimate(kind, control, treatment, error)
    return _from_difference(kind, control, treatment, d, _null_se(kind, control, treatment, d))


def _difference_error(d: Difference) -> ErrorCode | None:
    """Zero variance, or a lift or standard error that over/underflowed (never NaN out)."""
    if float(d.absolute_se) == 0:
        return ErrorCode.ZERO_VARIANCE
    finite = (d.absolute, d.absolute_se, d.relative, d.relative_se)
    # df is infinite for a z-test, but never NaN.
    if not all(math.isfinite(float(x)) for x in finite) or math.isnan(float(d.df)):
        return ErrorCode.OUT_OF_RANGE
    return None


def _null_se(kind: MetricType, c: VariantStats, t: VariantStats, d: Difference) -> float:
    if kind is not MetricType.PROPORTION:
        return float(d.absolute_se)
    pooled = (c.sum + t.sum) / (c.n + t.n)
    return math.sqrt(pooled * (1 - pooled) * (1 / c.n + 1 / t.n))


def _from_difference(
    kind: MetricType, c: VariantStats, t: VariantStats, d: Difference, null_se: float
) -> Estimate:
    return Estimate(
        metric_type=kind,
        control_n=c.n,
        treatment_n=t.n,
        control_mean=float(d.control_mean),
        treatment_mean=float(d.treatment_mean),
        absolute=float(d.absolute),
        absolute_se=float(d.absolute_se),
        relative=float(d.relative),
        relative_se=float(d.relative_se),
        df=float(d.df),
        null_se=null_se,
    )


def _cuped_estimate(kind: MetricType, c: VariantStats, t: VariantStats) -> Estimate:
    """CUPED: lift of Y - theta (X - mean X), theta pooled over both arms.

    The adjusted difference is (mean Yt - mean Yc) - theta (mean Xt - mean Xc); each arm's
    adjusted per-user variance is Var(Y) + theta^2 Var(X) - 2 theta Cov(Y, X) (theta is
    treated as known, as CUPED does). The relative lift divides by the unadjusted
    control mean, with Cov(adjusted lift, control mean) = -(Var Yc - theta Cov_c) / n_c
    and Var(control mean) = Var Yc / n_c (unadjusted).
    """
    if kind is MetricType.RATIO:
        return neutral_estimate(kind, c, t, ErrorCode.CUPED_RATIO_UNSUPPORTED, cuped=True)
    covariates = [getattr(s, f) for s in (c, t) for f in _COVARIATE_FIELDS]
    if any(v is None for v in covariates):
        return neutral_estimate(kind, c, t, ErrorCode.MISSING_COVARIATE, cuped=True)
    if not all(math.isfinite(v) for v in covariates) or any(
        _impossible_spread(s.n, s.covariate_sum, s.covariate_sum_squares)
        or impossible_covariance(s)
        for s in (c, t)
    ):
        return neutral_estimate(kind, c, t, ErrorCode.INVALID_INPUT, cuped=True)
    plain = estimate(c, t, kind)
    if plain.error is not None:
        return neutral_estimate(kind, c, t, plain.error, cuped=True)
    theta = cuped_theta(c, t)
    if not math.isfinite(theta):
        return neutral_estimate(kind, c, t, ErrorCode.ZERO_COVARIATE_VARIANCE, cuped=True)

    def adjusted(s: VariantStats) -> ArmMoments:
        # Per-user variance of the metric itself (n - 1), even for a proportion: the
        # adjusted variance is a regression residual variance, not a binomial one.
        var = s.variance + theta**2 * s.covariate_variance - 2 * theta * s.covariate_covariance
        # Var(Y - theta X) >= 0 for any theta once `impossible_covariance` has passed, so a
        # negative value here is rounding (e.g. a covariate equal to the metric): 0.
        return ArmMoments(s.mean, max(var, 0.0), float(s.n))

    ac, at = adjusted(c), adjusted(t)
    lift = (t.mean - c.mean) - theta * (t.covariate_mean - c.covariate_mean)
    cov = -(c.variance - theta * c.covariate_covariance) / c.n
    d = difference(
        ac,
        at,
        z_test=kind is MetricType.PROPORTION,
        absolute=lift,
        control_mean_covariance=cov,
        control_mean_variance=c.variance / c.n,
    )
    error = _difference_error(d)
    if error is not None:
        return neutral_estimate(kind, c, t, error, cuped=True)
    # Both variances with n - 1 (for a proportion the plain estimate uses p(1 - p)), so
    # that theta = 0 reduces nothing.
    plain_var = c.variance / c.n + t.variance / t.n
    reduction = 1 - float(d.absolute_se) ** 2 / plain_var
    return Estimate(
        metric_type=kind,
        control_n=c.n,
        treatment_n=t.n,
        control_mean=c.mean,
        treatment_mean=t.mean,
        absolute=float(d.absolute),
        absolute_se=float(d.absolute_se),
        relative=float(d.relative),
        relative_se=float(d.relative_se),
        df=float(d.df),
        null_se=float(d.absolute_se),
        cuped=True,
        theta=theta,
        variance_reduction=reduction,
        unadjusted=plain,
    )
