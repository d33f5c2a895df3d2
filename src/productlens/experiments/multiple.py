"""Adjusted p-values for many comparisons (metrics x variants): Holm and Benjamini-Hochberg.

Holm controls the family-wise error rate (the chance of any false positive); Benjamini-
Hochberg controls the false discovery rate (the expected share of false positives among
the discoveries). Both return adjusted p-values in the input order, to compare with the
unadjusted alpha.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from productlens.experiments.stats import FloatArray

__all__ = ["benjamini_hochberg", "holm"]


def holm(p_values: Sequence[float] | FloatArray) -> FloatArray:
    """Holm's step-down adjustment: max over j <= i of (m - j) p_(j), capped at 1."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def benjamini_hochberg(p_values: Sequence[float] | FloatArray) -> FloatArray:
    """Benjamini-Hochberg step-up: min over j >= i of m p_(j) / j, capped at 1."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    stepped = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out
