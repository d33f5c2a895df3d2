"""Business impact of shipping: the lift per user scaled to a month of traffic.

At 100% rollout every user of the month gets the treatment, so the incremental outcome
is monthly users x absolute lift per user (conversions for a proportion, revenue for
revenue per user), and its interval is monthly users x the lift's interval (confidence,
credible or always-valid, whichever the readout used).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from productlens.experiments.inference import Inference
from productlens.experiments.stats import Estimate, json_value

__all__ = ["Impact", "business_impact"]


@dataclass(frozen=True)
class Impact:
    """Incremental outcome per month at 100% rollout, with its interval."""

    monthly_users: float
    baseline: float  # the outcome per month without the change (control mean x users)
    incremental: float
    lower: float
    upper: float

    def to_dict(self) -> dict[str, Any]:
        return {f.name: json_value(getattr(self, f.name)) for f in fields(self)}


def business_impact(estimate: Estimate, inference: Inference, monthly_users: float) -> Impact:
    """Scale the absolute lift and its interval to `monthly_users` users."""
    lo, hi = inference.ci_absolute
    return Impact(
        monthly_users=monthly_users,
        baseline=estimate.control_mean * monthly_users,
        incremental=estimate.absolute * monthly_users,
        lower=lo * monthly_users,
        upper=hi * monthly_users,
    )
