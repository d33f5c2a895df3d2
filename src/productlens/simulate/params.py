"""Parameters of the synthetic world. Every value here is written to the truth manifest.

Two scenarios share one machinery: sessions walk down a funnel of five steps whose
transition rates depend on device, country and engagement; experiments lift one
transition for treated users; subscriptions follow from a trigger step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from productlens.vocabulary import DEFAULT_FUNNELS


def _mix(**weights: float) -> dict[str, float]:
    total = sum(weights.values())
    return {k: round(v / total, 6) for k, v in weights.items()}


@dataclass(frozen=True)
class ExperimentSpec:
    """A planted A/B test: users are exposed at their first `exposure_step` event in the
    window; for treated users the chance of `lifted_step` (given the step before it)
    is multiplied by `1 + relative_lift` from that session on."""

    experiment_id: str
    name: str
    hypothesis: str
    exposure_step: int
    lifted_step: int
    relative_lift: float
    start_day: int
    duration_days: int
    outcome_window_days: int = 7
    weights: dict[str, float] = field(default_factory=lambda: {"control": 0.5, "treatment": 0.5})
    # A planted sample-ratio mismatch: this share of treated users' exposures is lost.
    srm_lost_share: float = 0.0


@dataclass(frozen=True)
class Plan:
    name: str
    monthly_price: float


@dataclass(frozen=True)
class WorldParams:
    """The synthetic world: who signs up, how they come back, how far they get."""

    scenario: str = "ecommerce"
    users: int = 10_000
    days: int = 90
    seed: int = 42
    start_date: str = "2026-01-05"
    users_per_block: int = 10_000
    dirty: bool = False

    countries: dict[str, float] = field(
        default_factory=lambda: _mix(US=0.40, GB=0.15, DE=0.15, FR=0.10, IN=0.20)
    )
    devices: dict[str, float] = field(default_factory=lambda: _mix(web=0.55, mobile=0.45))
    organic_channels: dict[str, float] = field(
        default_factory=lambda: _mix(organic=0.6, referral=0.25, direct=0.15)
    )
    segments: dict[str, float] = field(
        default_factory=lambda: _mix(Premium=0.15, Regular=0.55, Budget=0.30)
    )
    # Segment moves over time (the user_changes feed) and country moves.
    p_segment_change: float = 0.15
    p_country_change: float = 0.02

    # Acquisition: this share of users comes through paid campaigns, in proportion to
    # each campaign's spend divided by its cost per acquisition.
    n_campaigns: int = 25
    paid_share: float = 0.45
    signup_trend: float = 0.6  # the last day has 1 + trend times the first day's signups
    weekday_factors: tuple[float, ...] = (1.0, 1.02, 1.0, 0.98, 0.95, 0.8, 0.78)  # Mon..Sun

    # Retention: a share never comes back after the first day; the rest return after
    # exponential gaps around a per-user mean and leave for good with a per-session
    # chance — a sharp drop after day 1, then a slow decay.
    p_return: float = 0.6
    median_gap_days: float = 1.6
    churn_per_session: float = 0.025
    max_sessions_per_user: int = 300

    # Funnel: probability of each step given the one before it, by device (step 0 is 1).
    step_rates: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {
            "web": (1.0, 0.85, 0.16, 0.38, 0.60),
            "mobile": (1.0, 0.78, 0.11, 0.32, 0.50),
        }
    )
    # Multiplies the rates of steps 2 and later by country.
    country_conversion: dict[str, float] = field(
        default_factory=lambda: {"US": 1.10, "GB": 1.05, "DE": 1.0, "FR": 0.95, "IN": 0.75}
    )
    # Engagement: events at step 1 per session (Poisson around a per-user mean); each
    # raises the odds of the later steps, capped.
    mean_step1_events: float = 6.0
    engagement_lift_per_event: float = 0.03
    engagement_lift_cap: float = 1.6
    # Users differ in intent: a per-user log-normal factor on steps 2 and later, which
    # persists across sessions (what makes a pre-period covariate useful for CUPED).
    propensity_sigma: float = 0.6
    mean_extra_step0_events: float = 6.0  # extra landing-type events in a session
    p_repeat_step: float = 0.1  # a reached step 3 event is repeated
    p_out_of_order: float = 0.005  # an event's clock runs up to 90 s behind
    mean_step_gap_seconds: float = 40.0

    # Catalog (e-commerce) and orders.
    n_products: int = 650
    n_brands: int = 40
    mean_price_changes: float = 1.5
    mean_extra_items: float = 0.6
    mean_extra_quantity: float = 0.3
    segment_price_tilt: dict[str, float] = field(
        default_factory=lambda: {"Premium": 0.6, "Regular": 0.0, "Budget": -0.6}
    )
    p_cancelled: float = 0.03
    p_refunded: float = 0.04

    # Subscriptions: the trigger step's events start or raise a subscription.
    p_subscribe_on_trigger: float = 0.06
    p_downgrade: float = 0.15
    mean_days_to_cancel: float = 150.0
    p_annual: float = 0.3

    experiments: tuple[ExperimentSpec, ...] = ()

    def __post_init__(self) -> None:
        steps = DEFAULT_FUNNELS[self.scenario]
        for device, rates in self.step_rates.items():
            if len(rates) != len(steps):
                raise ValueError(f"step_rates[{device}] needs {len(steps)} rates")
        if not self.experiments:
            object.__setattr__(self, "experiments", default_experiments(self))

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

    @property
    def plans(self) -> tuple[Plan, ...]:
        return PLANS[self.scenario]

    @property
    def subscription_trigger_step(self) -> int:
        return 4  # purchase (e-commerce) or upgrade (SaaS)

    @property
    def seat_based(self) -> bool:
        return self.scenario == "saas"

    def with_srm(self, lost_share: float = 0.05) -> WorldParams:
        """The same world with a sample-ratio mismatch planted in the first experiment."""
        first, *rest = self.experiments
        return replace(self, experiments=(replace(first, srm_lost_share=lost_share), *rest))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PLANS: dict[str, tuple[Plan, ...]] = {
    "ecommerce": (Plan("plus", 9.99), Plan("plus_family", 14.99)),
    "saas": (Plan("starter", 12.0), Plan("pro", 29.0), Plan("business", 59.0)),
}


def default_experiments(params: WorldParams) -> tuple[ExperimentSpec, ...]:
    """Two tests per scenario: one with a real effect, one with a tiny or no effect.
    They start halfway through, so many exposed users have a pre-period (for CUPED)."""
    start = max(1, params.days // 2)
    duration = max(1, params.days - start)
    if params.scenario == "saas":
        return (
            ExperimentSpec(
                "exp_onboarding",
                "Onboarding checklist",
                "A checklist after the first project raises exports.",
                exposure_step=1,
                lifted_step=2,
                relative_lift=0.10,
                start_day=start,
                duration_days=duration,
            ),
            ExperimentSpec(
                "exp_pricing_page",
                "Pricing page copy",
                "New pricing copy changes upgrades (expected: no effect).",
                exposure_step=3,
                lifted_step=4,
                relative_lift=0.0,
                start_day=start,
                duration_days=duration,
            ),
        )
    return (
        ExperimentSpec(
            "exp_checkout_redesign",
            "Checkout redesign",
            "A one-page checkout raises checkout completion and revenue.",
            exposure_step=3,
            lifted_step=4,
            relative_lift=0.08,
            start_day=start,
            duration_days=duration,
        ),
        ExperimentSpec(
            "exp_pdp_redesign",
            "Product page redesign",
            "A new product page raises add-to-cart (expected: a tiny effect at most).",
            exposure_step=1,
            lifted_step=2,
            relative_lift=0.005,
            start_day=start,
            duration_days=duration,
        ),
    )


SCENARIO_DEFAULTS: dict[str, dict[str, Any]] = {
    "ecommerce": {},
    "saas": {
        "step_rates": {
            "web": (1.0, 0.50, 0.45, 0.30, 0.10),
            "mobile": (1.0, 0.40, 0.35, 0.22, 0.06),
        },
        "p_return": 0.7,
        "median_gap_days": 1.2,
        "churn_per_session": 0.02,
        "mean_step1_events": 1.3,
        "mean_extra_step0_events": 2.5,
        "mean_extra_items": 0.8,
        "p_subscribe_on_trigger": 1.0,
        "n_campaigns": 12,
    },
}


def preset(scenario: str = "ecommerce", **overrides: Any) -> WorldParams:
    """The default world for a scenario, with any parameter overridden."""
    if scenario not in SCENARIO_DEFAULTS:
        raise ValueError(f"unknown scenario {scenario!r}; choose {', '.join(SCENARIO_DEFAULTS)}")
    return WorldParams(scenario=scenario, **{**SCENARIO_DEFAULTS[scenario], **overrides})
