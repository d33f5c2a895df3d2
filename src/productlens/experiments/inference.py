"""Inference on top of an `Estimate`: frequentist, Bayesian or sequential, interchangeable.

Each method is an array kernel (NumPy arrays or floats in, arrays out, so a simulation
can run thousands of experiments in one call) plus `infer(estimate, method, ...)`, which
applies it to one `Estimate` and returns a frozen `Inference`. A degenerate estimate
(non-None `error`) gives a neutral inference: p-value 1, intervals [0, 0], chance to
win 0.5, no loss.

- frequentist: two-proportion z-test (pooled null SE) for proportions, Welch t with
  Welch-Satterthwaite df for means and ratios; intervals estimate +- critical value x SE
  for the absolute and the relative (delta-method) lift. For proportions the readout
  also gives the chi-square test of independence (equal to the pooled z squared).
- bayesian: a Gaussian posterior for the lift (GrowthBook's effect model): flat prior by
  default, or a proper normal prior on the relative lift; chance to beat control,
  credible interval, expected loss of shipping each arm.
- sequential: GrowthBook's always-valid confidence sequences (Waudby-Smith et al.,
  "Time-uniform central limit theory and asymptotic confidence sequences", eq. 9 for the
  half-width, eq. 161 for rho from the tuning parameter N, eq. 155 for the p-value);
  n is the users of both arms, and the sequence is tightest near n = N (default 5000).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

import numpy as np

from productlens.experiments.stats import ErrorCode, Estimate, MetricType, Numbers, json_value

__all__ = [
    "DEFAULT_TUNING_PARAMETER",
    "Inference",
    "Method",
    "Prior",
    "bayesian_posterior",
    "critical_value",
    "infer",
    "sequential_halfwidth",
    "sequential_p_value",
    "sequential_rho",
    "two_sided_p_value",
]

DEFAULT_TUNING_PARAMETER = 5000.0


class Method(StrEnum):
    FREQUENTIST = "frequentist"
    BAYESIAN = "bayesian"
    SEQUENTIAL = "sequential"


@dataclass(frozen=True)
class Prior:
    """A proper normal prior on the relative lift (GrowthBook's `prior_effect`)."""

    mean: float = 0.0
    stddev: float = 0.3


# --- array kernels -------------------------------------------------------------------


def critical_value(alpha: Numbers, df: Numbers) -> Numbers:
    """Two-sided critical value: normal quantile where df is infinite, Student t otherwise."""
    from scipy import special  # noqa: PLC0415 - slow import, kept off startup

    q = 1 - np.asarray(alpha) / 2
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(df), special.ndtri(q), special.stdtrit(df, q))  # type: ignore[no-any-return]


def two_sided_p_value(statistic: Numbers, df: Numbers) -> Numbers:
    """P(|T| >= |statistic|) for a normal (df infinite) or Student t statistic."""
    from scipy import special  # noqa: PLC0415 - slow import, kept off startup

    x = -np.abs(statistic)
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(df), 2 * special.ndtr(x), 2 * special.stdtr(df, x))  # type: ignore[no-any-return]


def sequential_rho(alpha: Numbers, tuning_parameter: Numbers = DEFAULT_TUNING_PARAMETER) -> Numbers:
    """rho = sqrt((-2 ln alpha + ln(-2 ln alpha + 1)) / N) (Waudby-Smith et al. eq. 161)."""
    la = np.log(alpha)
    return np.sqrt((-2 * la + np.log(-2 * la + 1)) / tuning_parameter)  # type: ignore[no-any-return]


def sequential_halfwidth(
    se: Numbers, n: Numbers, alpha: Numbers, tuning_parameter: Numbers = DEFAULT_TUNING_PARAMETER
) -> Numbers:
    """Half-width of the always-valid interval for an estimate with standard error `se`.

    With s^2 = se^2 n the per-observation variance: sqrt(s^2) sqrt(2 (n rho^2 + 1)
    ln(sqrt(n rho^2 + 1) / alpha) / (n rho)^2) (eq. 9).
    """
    rho = sequential_rho(alpha, tuning_parameter)
    nr2 = np.multiply(n, np.square(rho))
    s2 = np.square(se) * n
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(s2) * np.sqrt(  # type: ignore[no-any-return]
            2 * (nr2 + 1) * np.log(np.sqrt(nr2 + 1) / alpha) / np.square(np.multiply(n, rho))
        )


def sequential_p_value(
    estimate: Numbers,
    se: Numbers,
    n: Numbers,
    alpha: Numbers,
    tuning_parameter: Numbers = DEFAULT_TUNING_PARAMETER,
) -> Numbers:
    """Always-valid p-value: min(1, 1 / e-value), e = exp(rho^2 S / (2 (n rho^2 + 1))) /
    sqrt(n rho^2 + 1) with S = estimate^2 n / se^2 (eq. 155, as GrowthBook)."""
    rho2 = np.square(sequential_rho(alpha, tuning_parameter))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        st2 = np.square(estimate) * n / np.square(se)
        tr2p1 = np.multiply(n, rho2) + 1
        log_e = rho2 * st2 / (2 * tr2p1) - 0.5 * np.log(tr2p1)
        return np.minimum(1.0, np.exp(-log_e))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Posterior:
    """A Gaussian posterior of a lift and what a readout shows of it (arrays ok)."""

    mean: Numbers
    stddev: Numbers
    chance_to_win: Numbers  # P(lift > 0)
    lower: Numbers
    upper: Numbers
    loss_treatment: Numbers  # E[max(0, -lift)]: expected loss of shipping treatment
    loss_control: Numbers  # E[max(0, lift)]: expected loss of keeping control


def bayesian_posterior(
    estimate: Numbers,
    se: Numbers,
    alpha: Numbers,
    prior_mean: Numbers | None = None,
    prior_stddev: Numbers | None = None,
) -> Posterior:
    """Normal likelihood N(estimate, se^2) times a flat or a proper normal prior."""
    from scipy import special  # noqa: PLC0415 - slow import, kept off startup

    if prior_stddev is None:
        mean, sd = np.asarray(estimate, dtype=np.float64), np.asarray(se, dtype=np.float64)
    else:
        # The precision-weighted mean and 1 / (1/se^2 + 1/prior^2) as the equal ratios
        # below, which stay defined at se = 0 (the data pin the lift: mean = estimate, sd 0)
        # instead of dividing by zero.
        v, pv = np.square(np.asarray(se, dtype=np.float64)), np.square(prior_stddev)
        mean = (np.asarray(estimate) * pv + np.asarray(prior_mean or 0.0) * v) / (v + pv)
        sd = np.sqrt(v * pv / (v + pv))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = mean / sd
        half = special.ndtri(1 - np.asarray(alpha) / 2) * sd
        density = sd * np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
        return Posterior(
            mean=mean,
            stddev=sd,
            chance_to_win=special.ndtr(z),
            lower=mean - half,
            upper=mean + half,
            loss_treatment=density - mean * special.ndtr(-z),
            loss_control=density + mean * special.ndtr(z),
        )


# --- one estimate -------------------------------------------------------------------


@dataclass(frozen=True)
class Inference:
    """What a method concludes from one `Estimate`.

    Intervals are (lower, upper) for the absolute and the relative lift: confidence
    intervals (frequentist), credible intervals (bayesian) or always-valid intervals
    (sequential). `p_value` is None for the Bayesian method; `chance_to_win` and the
    losses are None for the others. `chi_square` is the 2x2 test of independence, for
    frequentist proportions only.
    """

    method: Method
    alpha: float
    ci_absolute: tuple[float, float]
    ci_relative: tuple[float, float]
    significant: bool
    p_value: float | None = None
    statistic: float | None = None
    chi_square: float | None = None
    chi_square_p_value: float | None = None
    chance_to_win: float | None = None
    expected_loss_treatment: float | None = None
    expected_loss_control: float | None = None
    tuning_parameter: float | None = None
    prior: Prior | None = None
    error: ErrorCode | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Prior):
                value = {"mean": value.mean, "stddev": value.stddev}
            out[f.name] = json_value(value)
        return out


def _pair(lo: Numbers, hi: Numbers) -> tuple[float, float]:
    return float(lo), float(hi)


def _frequentist(e: Estimate, alpha: float, _: float, __: Prior | None) -> Inference:
    from scipy import special  # noqa: PLC0415 - slow import, kept off startup

    crit = float(critical_value(alpha, e.df))
    statistic = e.absolute / e.null_se
    p = float(two_sided_p_value(statistic, e.df))
    proportion = e.metric_type is MetricType.PROPORTION and not e.cuped
    return Inference(
        method=Method.FREQUENTIST,
        alpha=alpha,
        ci_absolute=_pair(e.absolute - crit * e.absolute_se, e.absolute + crit * e.absolute_se),
        ci_relative=_pair(e.relative - crit * e.relative_se, e.relative + crit * e.relative_se),
        significant=p < alpha,
        p_value=p,
        statistic=statistic,
        # Without continuity correction the 2x2 chi-square is the pooled z squared.
        chi_square=statistic**2 if proportion else None,
        chi_square_p_value=float(special.chdtrc(1, statistic**2)) if proportion else None,
    )


def _sequential(e: Estimate, alpha: float, tuning: float, _: Prior | None) -> Inference:
    n = e.control_n + e.treatment_n
    h_abs = float(sequential_halfwidth(e.absolute_se, n, alpha, tuning))
    h_rel = float(sequential_halfwidth(e.relative_se, n, alpha, tuning))
    p = float(sequential_p_value(e.absolute, e.absolute_se, n, alpha, tuning))
    lower = e.absolute - h_abs
    return Inference(
        method=Method.SEQUENTIAL,
        alpha=alpha,
        ci_absolute=(lower, e.absolute + h_abs),
        ci_relative=(e.relative - h_rel, e.relative + h_rel),
        significant=lower > 0 or e.absolute + h_abs < 0,
        p_value=p,
        statistic=e.absolute / e.absolute_se,
        tuning_parameter=tuning,
    )


def _bayesian(e: Estimate, alpha: float, _: float, prior: Prior | None) -> Inference:
    # The prior is on the relative lift (over |control mean|); for the absolute lift it
    # is scaled by |control mean| (the same belief in the metric's own units).
    scale = abs(e.control_mean)
    pm, ps = (None, None) if prior is None else (prior.mean, prior.stddev)
    rel = bayesian_posterior(e.relative, e.relative_se, alpha, pm, ps)
    abs_ = bayesian_posterior(
        e.absolute,
        e.absolute_se,
        alpha,
        None if pm is None else pm * scale,
        None if ps is None else ps * scale,
    )
    # The chance to win and the losses come from the absolute lift's posterior: the same
    # event as relative lift > 0, but its normal approximation is the better one (the
    # relative lift's distribution is skewed). Losses are shown relative to the control
    # mean, as GrowthBook shows risk.
    return Inference(
        method=Method.BAYESIAN,
        alpha=alpha,
        ci_absolute=_pair(abs_.lower, abs_.upper),
        ci_relative=_pair(rel.lower, rel.upper),
        significant=float(abs_.lower) > 0 or float(abs_.upper) < 0,
        chance_to_win=float(abs_.chance_to_win),
        expected_loss_treatment=float(abs_.loss_treatment) / scale,
        expected_loss_control=float(abs_.loss_control) / scale,
        prior=prior,
    )


_METHODS = {
    Method.FREQUENTIST: _frequentist,
    Method.SEQUENTIAL: _sequential,
    Method.BAYESIAN: _bayesian,
}


def infer(
    estimate: Estimate,
    method: Method | str = Method.FREQUENTIST,
    *,
    alpha: float = 0.05,
    tuning_parameter: float = DEFAULT_TUNING_PARAMETER,
    prior: Prior | None = None,
) -> Inference:
    """Apply one method to an estimate; a degenerate estimate gives a neutral result."""
    kind = Method(method)
    if estimate.error is not None:
        return Inference(
            method=kind,
            alpha=alpha,
            ci_absolute=(0.0, 0.0),
            ci_relative=(0.0, 0.0),
            significant=False,
            p_value=None if kind is Method.BAYESIAN else 1.0,
            chance_to_win=0.5 if kind is Method.BAYESIAN else None,
            expected_loss_treatment=0.0 if kind is Method.BAYESIAN else None,
            expected_loss_control=0.0 if kind is Method.BAYESIAN else None,
            error=estimate.error,
        )
    return _METHODS[kind](estimate, alpha, tuning_parameter, prior)
