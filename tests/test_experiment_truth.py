"""The simulator's truth states what the warehouse measures.

A world with one experiment exposed at checkout_start from the first day, a large lift on
purchase and a lowered purchase rate (so the lift is not clipped at the rate's ceiling),
is generated, ingested and built up to experiment_outcomes; the sufficient statistics of
`productlens.experiments.data` are then compared with truth.json:

- per arm, exactly: the logged users of each arm with their own arm's outcome
  (`observed_arms`) are what the warehouse counts, so the two agree up to the rare event
  whose clock runs behind across the exposure or a session straddling the window's end;
- the population levels (everyone in control, everyone treated) within 3 standard
  errors, with the standard error a small fraction of the true effect.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console

from productlens.config import load_project
from productlens.engines import Engine
from productlens.experiments.data import find_experiment, metric_stats
from productlens.experiments.metric_defs import MetricDef
from productlens.experiments.stats import VariantStats
from productlens.pipeline import Runner, open_engine
from productlens.simulate import preset
from productlens.simulate.params import ExperimentSpec

DAYS = 21
SPEC = ExperimentSpec(
    "exp_truth",
    "Truth check",
    "A big lift on purchase after checkout_start.",
    exposure_step=3,
    lifted_step=4,
    relative_lift=0.6,
    start_day=0,
    duration_days=DAYS,
)
WORLD = preset(
    users=16_000,
    days=DAYS,
    seed=5,
    experiments=(SPEC,),
    step_rates={"web": (1.0, 0.85, 0.16, 0.38, 0.25), "mobile": (1.0, 0.78, 0.11, 0.32, 0.2)},
)
METRICS = (
    MetricDef("conversion", "proportion", "is_converted"),
    MetricDef("revenue_per_user", "mean", "revenue"),
)
TRUTH_KEYS = {"conversion": "conversion", "revenue_per_user": "revenue_per_user"}


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, Any], dict[str, VariantStats]]]:
    root = tmp_path_factory.mktemp("truth")
    project = load_project(root)
    engine: Engine = open_engine(project)
    try:
        runner = Runner(project, engine, Console(quiet=True))
        generated = runner.simulate(WORLD, root / "data")
        runner.ingest(list(generated.tables.values()))
        runner.build(["+experiment_outcomes"])
        experiment = find_experiment(engine, SPEC.experiment_id)
        observed = {
            s.metric: dict(zip(("control", "treatment"), s.variants, strict=True))
            for s in metric_stats(engine, experiment, METRICS)
        }
        yield generated.truth["experiments"][SPEC.experiment_id], observed  # type: ignore[misc]
    finally:
        engine.close()


def _mean_se(v: VariantStats) -> tuple[float, float]:
    mean = v.sum / v.n
    variance = (v.sum_squares - v.n * mean * mean) / (v.n - 1)
    return mean, math.sqrt(variance / v.n)


@pytest.mark.parametrize("metric", ["conversion", "revenue_per_user"])
@pytest.mark.parametrize("arm", ["control", "treatment"])
def test_each_arm_observes_the_truth_of_its_own_users(
    built: tuple[dict[str, Any], dict[str, dict[str, VariantStats]]], metric: str, arm: str
) -> None:
    truth, observed = built
    stats = observed[metric][arm]
    expected = truth["observed_arms"][arm]
    assert stats.n == expected["n"]
    mean, _ = _mean_se(stats)
    # Same users, same outcomes: only edge events (a clock running behind across the
    # exposure, a session running past the window's end) may differ: well under 0.5%.
    assert mean == pytest.approx(expected[TRUTH_KEYS[metric]], rel=0.005)


@pytest.mark.parametrize("metric", ["conversion", "revenue_per_user"])
def test_population_levels_are_recovered_within_sampling_error(
    built: tuple[dict[str, Any], dict[str, dict[str, VariantStats]]], metric: str
) -> None:
    truth, observed = built
    key = TRUTH_KEYS[metric]
    control = truth[f"{key}_if_all_control"]
    treated = truth[f"{key}_if_all_treated"]
    effect = treated - control
    for arm, level in (("control", control), ("treatment", treated)):
        mean, se = _mean_se(observed[metric][arm])
        # The check is much tighter than the effect it would have to tell apart ...
        assert se < abs(effect) / 4, (arm, se, effect)
        # ... and the data agree with the truth within sampling error.
        assert abs(mean - level) < 3 * se, (arm, mean, level, se)
