"""Pure statistics over sufficient statistics (no engine imported here).

SQL returns, per experiment x variant x metric (x dimension value), the sums below;
everything else (means, variances, tests, intervals) is derived from them. Statistics
add up: strata and "other" buckets are exact sums (`VariantStats.__add__`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["VariantStats"]


@dataclass(frozen=True)
class VariantStats:
    """Sufficient statistics of one variant for one metric.

    `sum` and `sum_squares` are over the metric's per-user numerator values (0/1 for a
    proportion). For a ratio metric, `denominator_*` are over the per-user denominator and
    `cross_sum` is the sum of numerator x denominator. For CUPED, `covariate_*` are over
    the pre-exposure covariate and `covariate_cross_sum` is the sum of metric x covariate.
    `weight` is the configured traffic share, used by the SRM test.
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
