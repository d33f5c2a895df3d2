"""One experiment's whole readout: guards, every metric (overall, per dimension bucket,
capped beside uncapped), the effect over time, the regression, the business impact and
a decision in words.

The warehouse gives sufficient statistics (`experiments.data`); `experiments.readout`
turns them into estimates and inference. This module only composes the two and decides.

The decision reads the first metric (the primary one) and treats the others as
guardrails, in this order:
1. `investigate` on a sample-ratio mismatch: the assignment is broken, no result holds.
2. `keep running` while any arm has fewer users than `min_users` (default 100).
3. On the primary metric: a significant gain is `ship` (`do not ship` if a guardrail is
   significantly worse), a significant loss `do not ship`; inconclusive is `do not ship`
   when the interval already rules out a relative gain of `min_effect` (default 1%), else
   `keep running`. "Significant" is the method's own call: p < alpha (frequentist,
   sequential) or a chance to beat control of at least 1 - alpha (Bayesian).
Users recorded in more than one variant and peeking with a fixed-horizon test add notes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from productlens.experiments import data
from productlens.experiments.data import Experiment, Guards, RegressionResult
from productlens.experiments.inference import DEFAULT_TUNING_PARAMETER, Method, Prior
from productlens.experiments.metric_defs import MetricDef
from productlens.experiments.multiple import benjamini_hochberg, holm
from productlens.experiments.readout import Comparison, Readout, analyze
from productlens.experiments.srm import DEFAULT_SRM_THRESHOLD, SrmResult, srm_test
from productlens.experiments.stats import VariantStats, json_value

if TYPE_CHECKING:
    from productlens.engines import Engine

__all__ = [
    "Decision",
    "ExperimentReadout",
    "MetricResult",
    "Settings",
    "TimelinePoint",
    "analyze_experiment",
    "decide",
]

Verdict = Literal["ship", "do not ship", "keep running", "investigate"]
DAYS_PER_MONTH = 30


@dataclass(frozen=True)
class Settings:
    """How to read an experiment (CLI flags and `[experiments]` in the project file)."""

    method: Method = Method.FREQUENTIST
    alpha: float = 0.05
    cuped: bool = False
    by: str | None = None
    top_n: int = 5
    srm_threshold: float = DEFAULT_SRM_THRESHOLD
    tuning_parameter: float = DEFAULT_TUNING_PARAMETER
    prior: Prior | None = None
    min_users: int = 100
    min_effect: float = 0.01
    regression: bool = True


@dataclass(frozen=True)
class MetricResult:
    """One metric's readout for everyone, or for one dimension bucket."""

    metric: MetricDef
    readout: Readout
    capped: Readout | None = None
    cap: float | None = None
    dimension_value: str | None = None
    is_other: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"metric": self.metric.name, "type": self.metric.type}
        if self.dimension_value is not None or self.is_other:
            out["dimension_value"] = "other" if self.is_other else self.dimension_value
        out.update(self.readout.to_dict())
        if self.capped is not None:
            out["cap"] = json_value(self.cap)
            out["capped"] = self.capped.to_dict()
        return out


@dataclass(frozen=True)
class TimelinePoint:
    """The effect of one variant on one metric among users exposed up to `day`."""

    metric: str
    variant: str
    day: date
    n: int
    relative: float | None
    ci_relative: tuple[float, float] | None
    absolute: float | None
    ci_absolute: tuple[float, float] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "variant": self.variant,
            "day": self.day.isoformat(),
            "n": self.n,
            "relative": json_value(self.relative),
            "ci_relative": None if self.ci_relative is None else list(self.ci_relative),
            "absolute": json_value(self.absolute),
            "ci_absolute": None if self.ci_absolute is None else list(self.ci_absolute),
        }


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reasons": list(self.reasons), "notes": list(self.notes)}


@dataclass(frozen=True)
class ExperimentReadout:
    experiment: Experiment
    settings: Settings
    guards: Guards
    srm: SrmResult
    exposure_days: int
    metrics: tuple[MetricResult, ...]
    breakdown: tuple[MetricResult, ...] = ()
    timeline: tuple[TimelinePoint, ...] = ()
    regression: RegressionResult | None = None
    decision: Decision = field(default_factory=lambda: Decision("keep running", ()))

    def adjusted_p_values(self) -> list[dict[str, Any]]:
        """Holm and Benjamini-Hochberg p-values across every metric and variant of the
        overall readout (one family), for methods that give p-values. The decision reads
        the primary metric unadjusted (it is chosen before the test); the rest are
        guardrails and exploration, which these adjusted values are for."""
        rows = [
            (m.metric.name, c.variant, c.inference.p_value)
            for m in self.metrics
            for c in m.readout.comparisons
            if c.inference.p_value is not None and c.inference.error is None
        ]
        if not rows:
            return []
        p = np.asarray([r[2] for r in rows], dtype=np.float64)
        return [
            {"metric": m, "variant": v, "p_value": pv, "p_value_holm": h, "p_value_bh": b}
            for (m, v, pv), h, b in zip(
                rows, holm(p).tolist(), benjamini_hochberg(p).tolist(), strict=True
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment.to_dict(),
            "settings": {
                "method": self.settings.method.value,
                "alpha": self.settings.alpha,
                "cuped": self.settings.cuped,
                "by": self.settings.by,
            },
            "guards": {
                "users_per_variant": self.guards.users_per_variant,
                "n_multiple_variants": self.guards.n_multiple_variants,
                "srm": self.srm.to_dict(),
                "exposure_days": self.exposure_days,
            },
            "metrics": [m.to_dict() for m in self.metrics],
            "multiple_comparisons": self.adjusted_p_values(),
            "breakdown": [m.to_dict() for m in self.breakdown],
            "timeline": [p.to_dict() for p in self.timeline],
            "regression": None if self.regression is None else _regression_dict(self.regression),
            "decision": self.decision.to_dict(),
        }


def analyze_experiment(
    engine: Engine,
    experiment: str | Experiment,
    metrics: Sequence[MetricDef],
    settings: Settings | None = None,
) -> ExperimentReadout:
    """Read one experiment from the warehouse (module docstring): by its id or name, or as
    `data.list_experiments` gave it (a caller reading every experiment lists them once)."""
    settings = settings or Settings()
    if isinstance(experiment, str):
        experiment = data.find_experiment(engine, experiment)
    guards = data.guards(engine, experiment)
    srm = srm_test(
        [guards.users_per_variant[v.name] for v in experiment.variants],
        _weights(experiment),
        settings.srm_threshold,
    )
    by_name = {m.name: m for m in metrics}
    timeline_stats = data.cumulative_stats(engine, experiment, metrics)
    days = sorted({c.day for c in timeline_stats})
    exposure_days = (days[-1] - days[0]).days + 1 if days else 0
    overall = data.metric_stats(engine, experiment, metrics)
    results = tuple(
        _result(by_name[s.metric], s, settings, _monthly_users(experiment, exposure_days))
        for s in overall
    )
    breakdown: tuple[MetricResult, ...] = ()
    if settings.by is not None:
        breakdown = tuple(
            _result(by_name[s.metric], s, settings, None)
            for s in data.metric_stats(engine, experiment, metrics, settings.by, settings.top_n)
        )
    timeline = tuple(
        point
        for c in timeline_stats
        for point in _timeline_points(by_name[c.metric], c.day, c.variants, settings)
    )
    regression = None
    if settings.regression:
        regression = data.regression(engine, experiment, settings.alpha)
    readout = ExperimentReadout(
        experiment, settings, guards, srm, exposure_days, results, breakdown, timeline, regression
    )
    return replace(readout, decision=decide(readout))


def _weights(experiment: Experiment) -> list[float | None]:
    """The configured traffic shares; a variant the data shows but the configuration does
    not name gets 0, so users in it are a mismatch rather than a reason to assume an
    equal split. With no weights configured at all, an equal split is assumed."""
    weights = [v.weight for v in experiment.variants]
    if all(w is None for w in weights):
        return weights
    return [0.0 if w is None else w for w in weights]


def _monthly_users(experiment: Experiment, exposure_days: int) -> float | None:
    """Users a month at 100% rollout: everyone the experiment exposed, per day, x 30."""
    if exposure_days <= 0 or experiment.n_users == 0:
        return None
    return experiment.n_users / exposure_days * DAYS_PER_MONTH


def _analyze(
    metric: MetricDef,
    variants: Sequence[VariantStats],
    settings: Settings,
    monthly_users: float | None,
) -> Readout:
    return analyze(
        variants,
        metric.type,
        settings.method,
        settings.alpha,
        cuped=settings.cuped and metric.covariate is not None,
        srm_threshold=settings.srm_threshold,
        tuning_parameter=settings.tuning_parameter,
        prior=settings.prior,
        # Impact per user makes sense for per-user metrics; a ratio's unit is not a user.
        monthly_users=monthly_users if metric.type != "ratio" else None,
    )


def _result(
    metric: MetricDef, stats: data.MetricStats, settings: Settings, monthly_users: float | None
) -> MetricResult:
    return MetricResult(
        metric,
        _analyze(metric, stats.variants, settings, monthly_users),
        None if stats.capped is None else _analyze(metric, stats.capped, settings, monthly_users),
        stats.cap,
        stats.dimension_value,
        stats.is_other,
    )


def _timeline_points(
    metric: MetricDef, day: date, variants: Sequence[VariantStats], settings: Settings
) -> list[TimelinePoint]:
    readout = _analyze(metric, variants, settings, None)
    return [
        TimelinePoint(
            metric.name,
            c.variant,
            day,
            sum(v.n for v in variants),
            None if c.estimate.error else c.estimate.relative,
            None if c.inference.error else c.inference.ci_relative,
            None if c.estimate.error else c.estimate.absolute,
            None if c.inference.error else c.inference.ci_absolute,
        )
        for c in readout.comparisons
    ]


def _regression_dict(result: RegressionResult) -> dict[str, Any]:
    return {
        "n": result.n,
        "error": result.error,
        "coefficients": [
            {k: json_value(v) for k, v in c.__dict__.items()} for c in result.coefficients
        ],
    }


# --- the decision ----------------------------------------------------------------------


def _significant(c: Comparison, settings: Settings) -> int:
    """+1 a significant gain, -1 a significant loss, 0 neither (or no result)."""
    if c.estimate.error is not None or c.inference.error is not None:
        return 0
    if settings.method is Method.BAYESIAN:
        win = c.inference.chance_to_win
        if win is None:
            return 0
        return 1 if win >= 1 - settings.alpha else -1 if win <= settings.alpha else 0
    if not c.inference.significant:
        return 0
    return 1 if c.estimate.absolute > 0 else -1


def _percent(value: float) -> str:
    return f"{value * 100:+.2f}%" if math.isfinite(value) else "n/a"


def _interval(c: Comparison) -> str:
    lo, hi = c.inference.ci_relative
    level = round((1 - c.inference.alpha) * 100)
    return f"{_percent(c.estimate.relative)} ({level}% interval {_percent(lo)} to {_percent(hi)})"


def decide(readout: ExperimentReadout) -> Decision:  # noqa: PLR0912 (one rule per branch)
    """The verdict and its reasons (rules in the module docstring)."""
    settings, notes = readout.settings, []
    n_users = readout.experiment.n_users
    if readout.guards.n_multiple_variants:
        notes.append(
            f"{readout.guards.n_multiple_variants:,} of {n_users:,} users were recorded in "
            "more than one variant; each is counted in the first variant by name"
        )
    if settings.method is Method.FREQUENTIST:
        notes.append(
            "fixed-horizon test: deciding the first day it looks significant inflates false "
            "positives; use --method sequential to look every day safely"
        )
    if readout.srm.mismatch:
        return Decision(
            "investigate",
            (
                f"sample ratio mismatch (p = {readout.srm.p_value:.2g} < "
                f"{readout.srm.threshold:g}): users did not split as configured, so no "
                "result can be trusted until the assignment is fixed",
            ),
            tuple(notes),
        )
    small = [v for v, n in readout.guards.users_per_variant.items() if n < settings.min_users]
    if small:
        return Decision(
            "keep running",
            (f"fewer than {settings.min_users} users in {', '.join(small)}",),
            tuple(notes),
        )
    if not readout.metrics:
        return Decision("keep running", ("no metric could be read",), tuple(notes))
    primary, guardrails = readout.metrics[0], readout.metrics[1:]
    reasons: list[str] = []
    verdicts: list[Verdict] = []
    for c in primary.readout.comparisons:
        name = f"{primary.metric.name} ({c.variant} vs {primary.readout.control})"
        if c.estimate.error is not None:
            reasons.append(f"{name}: no result ({c.estimate.error.value})")
            verdicts.append("keep running")
            continue
        sign = _significant(c, settings)
        if sign > 0:
            worse = [
                g.metric.name
                for g in guardrails
                for gc in g.readout.comparisons
                if gc.variant == c.variant and _significant(gc, settings) < 0
            ]
            if worse:
                reasons.append(f"{name}: {_interval(c)}, but {', '.join(worse)} got worse")
                verdicts.append("do not ship")
            else:
                reasons.append(f"{name}: a significant gain of {_interval(c)}")
                verdicts.append("ship")
        elif sign < 0:
            reasons.append(f"{name}: a significant loss of {_interval(c)}")
            verdicts.append("do not ship")
        elif c.inference.ci_relative[1] < settings.min_effect:
            reasons.append(
                f"{name}: no significant effect, {_interval(c)}; the interval rules out a "
                f"gain of {_percent(settings.min_effect)} or more"
            )
            verdicts.append("do not ship")
        else:
            reasons.append(
                f"{name}: not significant yet, {_interval(c)}; a gain of "
                f"{_percent(settings.min_effect)} is still possible"
            )
            verdicts.append("keep running")
    order: tuple[Verdict, ...] = ("ship", "keep running", "do not ship")
    # With several treatments: ship if any wins; else keep running if any may still win.
    verdict = next(v for v in order if v in verdicts) if verdicts else "keep running"
    return Decision(verdict, tuple(reasons), tuple(notes))
