"""Sample ratio mismatch: Pearson chi-square goodness of fit of users per variant.

The observed users per variant are tested against the configured weights (normalised
to shares); a p-value below the threshold (default 0.001, as GrowthBook and Optimizely
use) flags the experiment: the assignment or the exposure logging is broken, and no
lift from it can be trusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from productlens.experiments.stats import json_value

__all__ = ["DEFAULT_SRM_THRESHOLD", "SrmResult", "srm_test"]

DEFAULT_SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SrmResult:
    """The SRM test: statistic, p-value, flag, and the shares it compared."""

    chi_square: float
    df: int
    p_value: float
    threshold: float
    mismatch: bool
    observed_shares: tuple[float, ...]
    expected_shares: tuple[float, ...]
    weights_assumed: bool  # True when no weights were given: an equal split was assumed

    def to_dict(self) -> dict[str, Any]:
        return {f.name: json_value(getattr(self, f.name)) for f in fields(self)}


def srm_test(
    users: Sequence[int],
    weights: Sequence[float | None] | None = None,
    threshold: float = DEFAULT_SRM_THRESHOLD,
) -> SrmResult:
    """Chi-square goodness of fit of `users` per variant against `weights`.

    Missing weights (None, or any None) mean an equal split. With no users at all, or
    weights that do not sum to a positive number, the test is not run: p-value 1.
    """
    from scipy import special  # noqa: PLC0415 - slow import, kept off startup

    observed = np.asarray(users, dtype=np.float64)
    assumed = weights is None or any(w is None for w in weights)
    w = (
        np.ones(len(observed))
        if assumed
        else np.asarray([float(x) for x in weights if x is not None])  # type: ignore[union-attr]
    )
    total, total_w = float(observed.sum()), float(w.sum())
    if total <= 0 or total_w <= 0 or len(observed) < 2 or np.any(w < 0):
        shares = tuple(0.0 for _ in observed)
        return SrmResult(0.0, len(observed) - 1, 1.0, threshold, False, shares, shares, assumed)
    expected = w / total_w * total
    positive = expected > 0
    # A variant with zero weight but users is a mismatch by itself; it cannot enter the
    # statistic (division by zero), so it is flagged directly.
    stray = bool(np.any(observed[~positive] > 0))
    chi2 = float(np.sum((observed[positive] - expected[positive]) ** 2 / expected[positive]))
    df = int(positive.sum()) - 1
    p = 0.0 if stray else float(special.chdtrc(df, chi2)) if df > 0 else 1.0
    return SrmResult(
        chi_square=chi2,
        df=df,
        p_value=p,
        threshold=threshold,
        mismatch=p < threshold,
        observed_shares=tuple(float(x) for x in observed / total),
        expected_shares=tuple(float(x) for x in w / total_w),
        weights_assumed=assumed,
    )
