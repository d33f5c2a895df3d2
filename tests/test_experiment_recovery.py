"""`experiment analyze` on simulated worlds whose effects are known (truth.json).

One world plants a large checkout lift (detectable at this size) and a product-page test
with no effect at all; a second world loses 20% of the first experiment's
treatment exposures (a planted sample-ratio mismatch). The readout must put the true
lift inside its interval and decide to ship, find nothing where nothing was planted,
and refuse to decide under the mismatch."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from productlens.app import open_engine
from productlens.cli import main
from productlens.config import load_project
from productlens.experiments.analysis import ExperimentReadout, Settings, analyze_experiment
from productlens.experiments.inference import Method
from productlens.pipeline import Runner
from productlens.simulate import generate, preset

from .conftest import run_cli


def _world(
    root: Path, srm: float, lifts: tuple[float, float], users: int = 6_000
) -> dict[str, Any]:
    """Generate, ingest and build a world in `root`; return its truth manifest."""
    params = preset(users=users, days=60, seed=11)
    checkout, pdp = params.experiments
    params = replace(
        params,
        experiments=(
            replace(checkout, relative_lift=lifts[0]),
            replace(pdp, relative_lift=lifts[1]),
        ),
    )
    if srm:
        params = params.with_srm(srm)
    result = generate(params, root / "data", workers=1)
    project = load_project(root)
    engine = open_engine(project)
    try:
        runner = Runner(project, engine, Console(quiet=True))
        runner.ingest([str(root / "data")])
        runner.build([])
    finally:
        engine.close()
    return result.truth


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("planted")
    return root, _world(root, 0.0, (0.30, 0.0))


def _read(root: Path, experiment: str, settings: Settings | None = None) -> ExperimentReadout:
    project = load_project(root)
    engine = open_engine(project, read_only=True)
    try:
        return analyze_experiment(engine, experiment, project.config.experiment_metrics(), settings)
    finally:
        engine.close()


@pytest.mark.parametrize("method", [Method.FREQUENTIST, Method.SEQUENTIAL, Method.BAYESIAN])
def test_recovers_the_planted_checkout_lift(
    planted: tuple[Path, dict[str, Any]], method: Method
) -> None:
    root, truth = planted
    expected = truth["experiments"]["exp_checkout_redesign"]
    readout = _read(root, "exp_checkout_redesign", Settings(method=method))
    conversion = readout.metrics[0]
    assert conversion.metric.name == "conversion"
    (c,) = conversion.readout.comparisons
    lo, hi = c.inference.ci_relative
    assert lo <= expected["true_relative_lift"] <= hi
    assert lo > 0  # detected
    assert readout.decision.verdict == "ship"
    assert not readout.srm.mismatch


def test_finds_nothing_where_nothing_was_planted(planted: tuple[Path, dict[str, Any]]) -> None:
    root, truth = planted
    assert truth["experiments"]["exp_pdp_redesign"]["planted_relative_lift"] == 0.0
    readout = _read(root, "exp_pdp_redesign")
    (c,) = readout.metrics[0].readout.comparisons
    lo, hi = c.inference.ci_relative
    assert lo < 0 < hi
    assert not c.inference.significant
    assert readout.decision.verdict in ("keep running", "do not ship")


def test_cli_readout_matches_the_api(planted: tuple[Path, dict[str, Any]]) -> None:
    root, _ = planted
    result = run_cli(
        "--project",
        str(root),
        "experiment",
        "analyze",
        "exp_checkout_redesign",
        "--json",
        "--cuped",
        "--by",
        "device",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    api = _read(root, "exp_checkout_redesign", Settings(cuped=True, by="device")).to_dict()
    assert data == json.loads(json.dumps(api))
    # CUPED reduced the variance of the conversion lift (pre-period conversion predicts it).
    estimate = data["metrics"][0]["comparisons"][0]["estimate"]
    assert estimate["cuped"]
    assert estimate["variance_reduction"] > 0
    # The device buckets add up to everyone.
    buckets = [m for m in data["breakdown"] if m["metric"] == "conversion"]
    assert sum(v["n"] for m in buckets for v in m["variants"]) == sum(
        v["n_users"] for v in data["experiment"]["variants"]
    )
    text = run_cli("--project", str(root), "experiment", "analyze", "exp_checkout_redesign")
    assert text.returncode == 0, text.stderr
    assert "Decision: ship" in text.stdout


def test_flags_a_planted_sample_ratio_mismatch(tmp_path: Path) -> None:
    truth = _world(tmp_path, 0.20, (0.0, 0.0))
    assert truth["experiments"]["exp_checkout_redesign"]["srm_lost_share"] == 0.20
    readout = _read(tmp_path, "exp_checkout_redesign")
    assert readout.srm.mismatch
    assert readout.decision.verdict == "investigate"
    clean = _read(tmp_path, "exp_pdp_redesign")
    assert not clean.srm.mismatch


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["analyze", "exp_nope"], "unknown experiment 'exp_nope'"),
        (["analyze", "exp_checkout_redesign", "--method", "magic"], "--method 'magic'"),
        (["analyze", "exp_checkout_redesign", "--metric", "nps"], "--metric 'nps'"),
        (["analyze", "exp_checkout_redesign", "--by", "zodiac"], "--by 'zodiac'"),
        (["analyze", "exp_checkout_redesign", "--alpha", "1.5"], "--alpha 1.5"),
        (["plan", "--baseline", "0.04", "--mde", "0"], "MDE must be non-zero"),
        (["plan", "--baseline", "1.2", "--mde", "0.05"], "(0, 1)"),
        (["plan", "--baseline", "0.04", "--mde", "0.05", "--arms", "1"], "--arms 1"),
        (["plan", "--baseline", "0.04", "--mde", "0.05", "--daily-users", "0"], "--daily-users"),
    ],
)
def test_wrong_options_get_one_clear_line(
    planted: tuple[Path, dict[str, Any]],
    args: list[str],
    words: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, _ = planted
    code = main(["--project", str(root), "experiment", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert words in " ".join(err.split())  # Rich may wrap the line
    assert "Traceback" not in err


def test_list_and_plan(planted: tuple[Path, dict[str, Any]]) -> None:
    root, truth = planted
    listed = run_cli("--project", str(root), "experiment", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    experiments = {e["experiment_id"]: e for e in json.loads(listed.stdout)["experiments"]}
    for experiment_id, expected in truth["experiments"].items():
        variants = {v["name"]: v for v in experiments[experiment_id]["variants"]}
        assert sum(v["n_users"] for v in variants.values()) == expected["n_exposed"]
        assert variants["treatment"]["n_users"] == expected["n_treated"]
        assert variants["control"]["weight"] == 0.5
    plan = run_cli(
        "experiment",
        "plan",
        "--baseline",
        "0.04",
        "--mde",
        "0.05",
        "--daily-users",
        "1000",
        "--json",
        cwd=root,
    )
    assert plan.returncode == 0, plan.stderr
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    data = json.loads(plan.stdout)
    effect = proportion_effectsize(0.042, 0.04)
    n = NormalIndPower().solve_power(effect_size=effect, alpha=0.05, power=0.8, ratio=1.0)
    assert data["n_per_arm_exact"] == pytest.approx(n, rel=1e-9)
    assert data["days"] == -(-2 * data["n_per_arm_exact"] // 1000)
