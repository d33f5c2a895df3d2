"""Experiment readouts: sufficient statistics from the warehouse, inference in pure Python.

`analyze` (from `productlens.experiments.readout`) is the entry point: per-variant
`VariantStats` in, a `Readout` out.
"""

from __future__ import annotations

from productlens.experiments.readout import Comparison, Readout, analyze
from productlens.experiments.stats import ErrorCode, Estimate, MetricType, VariantStats

__all__ = [
    "Comparison",
    "ErrorCode",
    "Estimate",
    "MetricType",
    "Readout",
    "VariantStats",
    "analyze",
]
