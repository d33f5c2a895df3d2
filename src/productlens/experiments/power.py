"""Power analysis for a two-arm test: users per arm, the detectable effect, days needed.

The test is the two-sided z-test of two independent arms, as statsmodels'
`NormalIndPower` (power = P(Z > c - d sqrt(n/2)) + P(Z < -c - d sqrt(n/2)) with equal
arms, c = z(1 - alpha/2)) and solved exactly, both tails included. The standardised
effect size d is
- for a proportion, Cohen's h = 2 asin(sqrt(p2)) - 2 asin(sqrt(p1)) (statsmodels'
  `proportion_effectsize`): the arcsine transform stabilises the variance;
- for a mean metric (give `stddev`, the per-user standard deviation), Cohen's
  d = absolute MDE / stddev.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from productlens.experiments.stats import json_value

__all__ = ["PowerPlan", "days_needed", "mde_for_sample", "power_at", "sample_size"]


@dataclass(frozen=True)
class PowerPlan:
    """A plan: users per arm for an effect, or the effect detectable with n users per arm."""

    baseline: float
    absolute_mde: float
    relative_mde: float
    effect_size: float  # Cohen's h (proportions) or d (means)
    alpha: float
    power: float
    n_per_arm: int  # rounded up
    n_per_arm_exact: float
    stddev: float | None = None  # None: a proportion metric
    days: int | None = None  # at `daily_users` split over the arms
    daily_users: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: json_value(getattr(self, f.name)) for f in fields(self)}


def power_at(effect_size: float, n_per_arm: float, alpha: float = 0.05) -> float:
    """Power of the two-sided two-sample z-test with equal arms."""
    from scipy import special  # noqa: PLC0415 - slow import, kept off startup

    crit = float(special.ndtri(1 - alpha / 2))
    shift = abs(effect_size) * math.sqrt(n_per_arm / 2)
    return float(special.ndtr(shift - crit) + special.ndtr(-crit - shift))


def _effect_size(baseline: float, absolute_mde: float, stddev: float | None) -> float:
    if stddev is not None:
        return absolute_mde / stddev
    target = baseline + absolute_mde
    if not 0 < baseline < 1 or not 0 < target < 1:
        raise ValueError("a proportion's baseline and baseline + MDE must lie in (0, 1)")
    return 2 * math.asin(math.sqrt(target)) - 2 * math.asin(math.sqrt(baseline))


def _validate(alpha: float, power: float) -> None:
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError("alpha and power must lie in (0, 1)")


def days_needed(n_per_arm: float, daily_users: float, arms: int = 2) -> int:
    """Days until every one of `arms` equal arms has `n_per_arm` users."""
    if daily_users <= 0:
        raise ValueError("daily_users must be positive")
    return math.ceil(n_per_arm * arms / daily_users)


def sample_size(
    baseline: float,
    mde: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    relative: bool = True,
    stddev: float | None = None,
    daily_users: float | None = None,
    arms: int = 2,
) -> PowerPlan:
    """Users per arm to detect `mde` (relative to `baseline` unless `relative=False`).

    Raises ValueError for impossible plans (a zero MDE, a proportion outside (0, 1)).
    """
    from scipy import optimize, special  # noqa: PLC0415 - slow import, kept off startup

    _validate(alpha, power)
    absolute = mde * baseline if relative else mde
    d = _effect_size(baseline, absolute, stddev)
    if d == 0:
        raise ValueError("the MDE must be non-zero")
    crit, z_power = float(special.ndtri(1 - alpha / 2)), float(special.ndtri(power))
    # The one-tail closed form slightly overshoots (it ignores the far tail's power):
    # the exact n lies between half of it and it.
    upper = 2 * ((crit + z_power) / d) ** 2
    exact = optimize.brentq(
        lambda n: power_at(d, n, alpha) - power, 1e-9, upper * 1.0001, xtol=1e-12, rtol=1e-15
    )
    return PowerPlan(
        baseline=baseline,
        absolute_mde=absolute,
        relative_mde=absolute / baseline if baseline else math.nan,
        effect_size=d,
        alpha=alpha,
        power=power,
        n_per_arm=math.ceil(exact),
        n_per_arm_exact=exact,
        stddev=stddev,
        days=days_needed(exact, daily_users, arms) if daily_users else None,
        daily_users=daily_users,
    )


def mde_for_sample(
    baseline: float,
    n_per_arm: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    stddev: float | None = None,
) -> PowerPlan:
    """The smallest positive lift detectable with `n_per_arm` users per arm."""
    from scipy import optimize, special  # noqa: PLC0415 - slow import, kept off startup

    _validate(alpha, power)
    if n_per_arm <= 0:
        raise ValueError("n_per_arm must be positive")
    crit, z_power = float(special.ndtri(1 - alpha / 2)), float(special.ndtri(power))
    upper = (crit + z_power) * math.sqrt(2 / n_per_arm)
    d = optimize.brentq(
        lambda es: power_at(es, n_per_arm, alpha) - power, 0.0, upper * 1.0001, xtol=1e-15
    )
    if stddev is not None:
        absolute = d * stddev
    else:
        if not 0 < baseline < 1:
            raise ValueError("a proportion's baseline must lie in (0, 1)")
        angle = math.asin(math.sqrt(baseline)) + d / 2
        absolute = (math.sin(angle) ** 2 if angle < math.pi / 2 else 1.0) - baseline
    return PowerPlan(
        baseline=baseline,
        absolute_mde=absolute,
        relative_mde=absolute / baseline if baseline else math.nan,
        effect_size=d,
        alpha=alpha,
        power=power,
        n_per_arm=math.ceil(n_per_arm),
        n_per_arm_exact=float(n_per_arm),
        stddev=stddev,
    )
