"""`analyze`: the whole readout of one metric from per-variant sufficient statistics.

The first variant is the control; each other variant is compared with it (an
`Estimate`, then an `Inference` by the chosen method), the SRM test runs on the users
per variant, and with more than one treatment the p-values are adjusted for the
comparisons (Holm and Benjamini-Hochberg). Nothing here raises on degenerate numbers: a
comparison that cannot be made carries an `ErrorCode` and a neutral result.

This is the stable entry point for the SQL-backed `experiment analyze` and for
`productlens stats --json`; every result is a frozen dataclass with `to_dict()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from productlens.experiments.impact import Impact, business_impact
from productlens.experiments.inference import (
    DEFAULT_TUNING_PARAMETER,
    Inference,
    Method,
    Prior,
    infer,
)
from productlens.experiments.multiple import benjamini_hochberg, holm
from productlens.experiments.srm import DEFAULT_SRM_THRESHOLD, SrmResult, srm_test
from productlens.experiments.stats import (
    Estimate,
    MetricType,
    VariantStats,
    estimate,
    json_value,
)

__all__ = ["Comparison", "Readout", "analyze"]


@dataclass(frozen=True)
class Comparison:
    """One treatment against the control."""

    variant: str
    estimate: Estimate
    inference: Inference
    p_value_holm: float | None = None
    p_value_bh: float | None = None
    impact: Impact | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "estimate": self.estimate.to_dict(),
            "inference": self.inference.to_dict(),
            "p_value_holm": json_value(self.p_value_holm),
            "p_value_bh": json_value(self.p_value_bh),
            "impact": None if self.impact is None else self.impact.to_dict(),
        }


@dataclass(frozen=True)
class Readout:
    """A metric's readout: settings, the variants' sizes, SRM, and each comparison."""

    metric_type: MetricType
    method: Method
    alpha: float
    cuped: bool
    control: str
    variants: tuple[VariantStats, ...]
    srm: SrmResult
    comparisons: tuple[Comparison, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric_type": self.metric_type.value,
            "method": self.method.value,
            "alpha": self.alpha,
            "cuped": self.cuped,
            "control": self.control,
            "variants": [
                {"name": v.name, "n": v.n, "weight": json_value(v.weight)} for v in self.variants
            ],
            "srm": self.srm.to_dict(),
            "comparisons": [c.to_dict() for c in self.comparisons],
        }


def analyze(
    variants: Sequence[VariantStats],
    metric_type: MetricType | str,
    method: Method | str = Method.FREQUENTIST,
    alpha: float = 0.05,
    cuped: bool = False,
    *,
    srm_threshold: float = DEFAULT_SRM_THRESHOLD,
    tuning_parameter: float = DEFAULT_TUNING_PARAMETER,
    prior: Prior | None = None,
    monthly_users: float | None = None,
) -> Readout:
    """Analyse one metric: variants[0] is the control, every other variant is compared.

    `metric_type`: proportion | mean | ratio. `method`: frequentist | bayesian |
    sequential (`tuning_parameter`, GrowthBook's N, for sequential; `prior` on the
    relative lift for bayesian, flat if None). `cuped` adjusts with the covariate sums
    (theta pooled over control and each treatment). `monthly_users` adds the business
    impact at 100% rollout (for a ratio metric pass the monthly count of the
    denominator's unit). Raises ValueError only for fewer than two variants or an
    unknown metric type or method (caller errors, not data).
    """
    if len(variants) < 2:
        raise ValueError("analyze needs a control and at least one treatment")
    kind, how = MetricType(metric_type), Method(method)
    control = variants[0]
    pairs = []
    for treatment in variants[1:]:
        est = estimate(control, treatment, kind, cuped=cuped)
        inf = infer(est, how, alpha=alpha, tuning_parameter=tuning_parameter, prior=prior)
        pairs.append((treatment.name, est, inf))
    p_values = [inf.p_value for _, _, inf in pairs]
    adjusted: list[tuple[float | None, float | None]] = [(None, None)] * len(pairs)
    if how is not Method.BAYESIAN and all(p is not None for p in p_values):
        ps = np.asarray(p_values, dtype=np.float64)
        adjusted = list(zip(holm(ps).tolist(), benjamini_hochberg(ps).tolist(), strict=True))
    comparisons = tuple(
        Comparison(
            variant=name,
            estimate=est,
            inference=inf,
            p_value_holm=holm_p,
            p_value_bh=bh_p,
            impact=None
            if monthly_users is None or est.error is not None
            else business_impact(est, inf, monthly_users),
        )
        for (name, est, inf), (holm_p, bh_p) in zip(pairs, adjusted, strict=True)
    )
    return Readout(
        metric_type=kind,
        method=how,
        alpha=alpha,
        cuped=cuped,
        control=control.name,
        variants=tuple(variants),
        srm=srm_test([max(v.n, 0) for v in variants], [v.weight for v in variants], srm_threshold),
        comparisons=comparisons,
    )
