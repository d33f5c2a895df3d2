"""The decision in words: one row per rule of `experiments.analysis.decide`.

Each case builds the readout from sufficient statistics chosen so the rule's condition
holds by a wide margin (the numbers are worked out in the comments), then checks the
verdict and that the reason names what decided it."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from productlens.experiments.analysis import (
    ExperimentReadout,
    MetricResult,
    Settings,
    decide,
)
from productlens.experiments.data import Experiment, Guards, Variant
from productlens.experiments.inference import Method
from productlens.experiments.metric_defs import MetricDef
from productlens.experiments.readout import analyze
from productlens.experiments.srm import srm_test
from productlens.experiments.stats import VariantStats

CONVERSION = MetricDef("conversion", "proportion", "is_converted")
REVENUE = MetricDef("revenue_per_user", "mean", "revenue")


def rate(name: str, n: int, k: int) -> VariantStats:
    """A proportion: k of n converted (sum = sum of squares = k)."""
    return VariantStats(name, n, float(k), float(k), 0.5)


def money(name: str, n: int, mean: float, sd: float) -> VariantStats:
    """A mean metric with the given mean and standard deviation (n - 1 denominator)."""
    total = mean * n
    return VariantStats(name, n, total, sd**2 * (n - 1) + total**2 / n, 0.5)


def readout(
    primary: tuple[VariantStats, VariantStats],
    guardrail: tuple[VariantStats, VariantStats] | None = None,
    *,
    users: tuple[int, int] | None = None,
    multiple: int = 0,
    settings: Settings | None = None,
) -> ExperimentReadout:
    settings = settings or Settings()
    users = users or (primary[0].n, primary[1].n)
    experiment = Experiment(
        "exp",
        "An experiment",
        datetime(2026, 1, 1),
        datetime(2026, 2, 1),
        7,
        None,
        None,
        (Variant("control", 0.5, users[0]), Variant("treatment", 0.5, users[1])),
    )

    def result(metric: MetricDef, stats: tuple[VariantStats, VariantStats]) -> MetricResult:
        return MetricResult(metric, analyze(stats, metric.type, settings.method, settings.alpha))

    metrics = [result(CONVERSION, primary)]
    if guardrail is not None:
        metrics.append(result(REVENUE, guardrail))
    return ExperimentReadout(
        experiment,
        settings,
        Guards({"control": users[0], "treatment": users[1]}, multiple),
        srm_test(list(users), [0.5, 0.5], settings.srm_threshold),
        30,
        tuple(metrics),
    )


# 10,000 per arm: SE of a difference of rates near 0.1 is about 0.0042.
GAIN = (rate("control", 10_000, 1_000), rate("treatment", 10_000, 1_200))  # +2 pts, z ~ 4.6
LOSS = (rate("control", 10_000, 1_200), rate("treatment", 10_000, 1_000))  # -2 pts
# 200,000 per arm, 10.000% vs 10.002%: SE of the difference sqrt(2 x 0.09 / 200,000) ~
# 0.00095, i.e. +/- 1.86% relative around +0.02%: the interval includes +1%.
WIDE = (rate("control", 200_000, 20_000), rate("treatment", 200_000, 20_004))
# 4,000,000 per arm, identical rates: SE ~ 0.000212, +/- 0.42% relative: rules out +1%.
NARROW = (rate("control", 4_000_000, 400_000), rate("treatment", 4_000_000, 400_000))
# Revenue 50 -> 45 per user with sd 20 and 10,000 per arm: z ~ -17.7, significantly worse.
REVENUE_DOWN = (money("control", 10_000, 50.0, 20.0), money("treatment", 10_000, 45.0, 20.0))
REVENUE_FLAT = (money("control", 10_000, 50.0, 20.0), money("treatment", 10_000, 50.0, 20.0))

CASES = [
    # (id, readout, verdict, words the first reason must contain)
    ("gain ships", readout(GAIN), "ship", "significant gain"),
    ("loss does not ship", readout(LOSS), "do not ship", "significant loss"),
    ("guardrail worse blocks", readout(GAIN, REVENUE_DOWN), "do not ship", "revenue_per_user"),
    ("flat guardrail ships", readout(GAIN, REVENUE_FLAT), "ship", "significant gain"),
    ("inconclusive, wide: keep running", readout(WIDE), "keep running", "still possible"),
    ("inconclusive, narrow: do not ship", readout(NARROW), "do not ship", "rules out"),
    # 10,000 vs 9,000 users against 50/50: chi-square ~ 52.6, p ~ 4e-13 < 0.001.
    ("srm investigates", readout(GAIN, users=(10_000, 9_000)), "investigate", "sample ratio"),
    # 50 users per arm < the 100 minimum, even with a big effect (10 vs 40 of 50).
    (
        "too few users",
        readout((rate("control", 50, 10), rate("treatment", 50, 40))),
        "keep running",
        "fewer than 100",
    ),
    (
        "bayesian win",
        readout(GAIN, settings=Settings(method=Method.BAYESIAN)),
        "ship",
        "significant gain",
    ),
    (
        "bayesian loss",
        readout(LOSS, settings=Settings(method=Method.BAYESIAN)),
        "do not ship",
        "significant loss",
    ),
    (
        "bayesian unsure",
        readout(WIDE, settings=Settings(method=Method.BAYESIAN)),
        "keep running",
        "still possible",
    ),
    (
        "sequential gain",
        readout(GAIN, settings=Settings(method=Method.SEQUENTIAL)),
        "ship",
        "significant gain",
    ),
    # An empty treatment arm is a degenerate input: no result, keep running (not a crash).
    (
        "empty arm",
        readout((rate("control", 10_000, 1_000), rate("treatment", 0, 0)), users=(10_000, 0)),
        "investigate",
        "sample ratio",
    ),
]


@pytest.mark.parametrize(
    ("readout_", "verdict", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decision(readout_: ExperimentReadout, verdict: str, words: str) -> None:
    decision = decide(readout_)
    assert decision.verdict == verdict, decision
    assert words in decision.reasons[0], decision


def test_degenerate_primary_keeps_running_without_raising() -> None:
    # SRM off (weights match), enough users, but the treatment arm has zero variance
    # and the control arm too: no estimate can be made.
    stats = (rate("control", 1_000, 0), rate("treatment", 1_000, 0))
    decision = decide(readout(stats))
    assert decision.verdict == "keep running"
    assert "no result" in decision.reasons[0]


def test_notes_multiple_variants_and_peeking() -> None:
    frequentist = decide(readout(GAIN, multiple=12))
    assert any("12 of 20,000 users" in n for n in frequentist.notes)
    assert any("sequential" in n for n in frequentist.notes)
    sequential = decide(readout(GAIN, settings=Settings(method=Method.SEQUENTIAL)))
    assert not any("sequential" in n for n in sequential.notes)


def test_the_strongest_treatment_decides() -> None:
    # Three arms: one loses, one wins: the experiment has a variant worth shipping.
    settings = Settings()
    stats = (
        rate("control", 10_000, 1_000),
        rate("a", 10_000, 800),
        rate("b", 10_000, 1_200),
    )
    r = readout(GAIN)
    three = replace(
        r,
        metrics=(MetricResult(CONVERSION, analyze(stats, "proportion", settings.method)),),
        guards=Guards({"control": 10_000, "a": 10_000, "b": 10_000}, 0),
        srm=srm_test([10_000] * 3, [1 / 3] * 3),
    )
    decision = decide(three)
    assert decision.verdict == "ship"
    assert any("b vs control" in reason and "gain" in reason for reason in decision.reasons)
    assert any("a vs control" in reason and "loss" in reason for reason in decision.reasons)


def test_table_cells_are_text_not_markup() -> None:
    from rich.console import Console

    from productlens.metrics.cli import table

    console = Console(width=200, record=True)
    console.print(
        table("t", ["term", "odds ratio"], [("variant[treatment]", 1.5), ("[bold]x", 2.0)])
    )
    text = console.export_text()
    assert "variant[treatment]" in text
    assert "[bold]x" in text


def test_a_variant_missing_from_the_configuration_is_a_mismatch() -> None:
    from productlens.experiments.analysis import _weights

    configured = (Variant("control", 0.5, 1_000), Variant("treatment", 0.5, 1_000))
    stray = Variant("debug", None, 40)
    experiment = Experiment("e", None, None, None, 7, None, None, (*configured, stray))
    weights = _weights(experiment)
    assert weights == [0.5, 0.5, 0.0]
    assert srm_test([1_000, 1_000, 40], weights).mismatch
    unconfigured = replace(experiment, variants=(replace(configured[0], weight=None), stray))
    assert _weights(unconfigured) == [None, None]


def test_p_values_are_adjusted_across_metrics_and_variants() -> None:
    from statsmodels.stats.multitest import multipletests

    r = readout(GAIN, REVENUE_FLAT)
    family = r.adjusted_p_values()
    assert [(f["metric"], f["variant"]) for f in family] == [
        ("conversion", "treatment"),
        ("revenue_per_user", "treatment"),
    ]
    p = [f["p_value"] for f in family]
    assert p[0] < 0.001 < p[1]
    for method, key in (("holm", "p_value_holm"), ("fdr_bh", "p_value_bh")):
        expected = multipletests(p, method=method)[1]
        assert [f[key] for f in family] == pytest.approx(list(expected), rel=1e-12)
    assert r.to_dict()["multiple_comparisons"] == family


def test_plan_finds_the_mde_for_a_sample(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from statsmodels.stats.power import NormalIndPower

    from productlens.cli import main

    code = main(["experiment", "plan", "--baseline", "0.04", "--n-per-arm", "10000", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    power = NormalIndPower().power(effect_size=data["effect_size"], nobs1=10000, alpha=0.05)
    assert power == pytest.approx(0.8, abs=1e-9)
    assert data["relative_mde"] > 0
    assert main(["experiment", "plan", "--baseline", "0.04"]) == 2
    assert (
        main(["experiment", "plan", "--baseline", "0.04", "--mde", "0.1", "--n-per-arm", "9"]) == 2
    )
