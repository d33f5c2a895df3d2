"""Parameters of the synthetic world. Every value here is written to the truth manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from productlens.config import DEFAULT_FUNNELS


def _mix(**weights: float) -> dict[str, float]:
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()}


@dataclass(frozen=True)
class WorldParams:
    """The synthetic world: who signs up, how they come back, how far they get."""

    scenario: str = "ecommerce"
    users: int = 10_000
    days: int = 90
    seed: int = 42
    start_date: str = "2026-01-05"
    users_per_block: int = 25_000

    countries: dict[str, float] = field(
        default_factory=lambda: _mix(US=0.40, GB=0.15, DE=0.15, FR=0.10, IN=0.20)
    )
    devices: dict[str, float] = field(default_factory=lambda: _mix(web=0.55, mobile=0.45))
    channels: dict[str, float] = field(
        default_factory=lambda: _mix(
            organic=0.35, paid_search=0.25, social=0.2, email=0.1, referral=0.1
        )
    )
    segments: dict[str, float] = field(
        default_factory=lambda: _mix(Premium=0.15, Regular=0.55, Budget=0.30)
    )

    # Retention: a share never comes back after the first day; the rest return with a
    # per-user mean gap (log-normal) and leave for good with a per-session churn chance.
    p_return: float = 0.45
    median_gap_days: float = 1.0
    churn_per_session: float = 0.015
    max_sessions_per_user: int = 400

    # Funnel: probability of each step given the one before it, by device. Step 0 is 1.
    step_rates: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {
            "web": (1.0, 0.70, 0.35, 0.60, 0.75),
            "mobile": (1.0, 0.60, 0.25, 0.50, 0.65),
        }
    )
    # Multiplies the rates of steps 2 and later (add_to_cart onward) by country.
    country_conversion: dict[str, float] = field(
        default_factory=lambda: {"US": 1.10, "GB": 1.05, "DE": 1.0, "FR": 0.95, "IN": 0.80}
    )
    # Browsing: extra views per session (Poisson, per-user mean); each extra view raises
    # the odds of the later steps by this factor, capped.
    mean_browse_events: float = 4.0
    browse_lift_per_event: float = 0.04
    browse_lift_cap: float = 1.5
    mean_step_gap_seconds: float = 45.0

    # Order value: log-normal by segment (median, sigma) — heavy-tailed revenue.
    order_value: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {
            "Premium": (120.0, 0.9),
            "Regular": (55.0, 0.8),
            "Budget": (30.0, 0.7),
        }
    )

    def __post_init__(self) -> None:
        steps = DEFAULT_FUNNELS[self.scenario]
        for device, rates in self.step_rates.items():
            if len(rates) != len(steps):
                raise ValueError(f"step_rates[{device}] needs {len(steps)} rates")

    @property
    def funnel_steps(self) -> tuple[str, ...]:
        return DEFAULT_FUNNELS[self.scenario]

    @property
    def start(self) -> datetime:
        return datetime.combine(date.fromisoformat(self.start_date), datetime.min.time())

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    @property
    def n_blocks(self) -> int:
        return -(-self.users // self.users_per_block)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
