"""Hostile inputs to the experiment statistics: each test is a problem a user could hit.

Found by feeding `productlens stats --json` and `experiment analyze` numbers a careless
or hostile user would; every case here failed (a traceback, a silent wrong number or a
silent wrong decision) before its fix.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from productlens.experiments import analyze
from productlens.experiments.inference import Prior, infer
from productlens.experiments.stats import ErrorCode, VariantStats, estimate

from .conftest import run_stats

run = run_stats


def doc(*variants: dict[str, Any], **top: Any) -> str:
    return json.dumps({"metric_type": "proportion", **top, "variants": list(variants)})


def v(name: str, n: int, total: float, squares: float | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "n": n,
        "sum": total,
        "sum_squares": total if squares is None else squares,
    }


# --- stats input: tracebacks and silently ignored fields ------------------------------


def test_a_count_too_large_for_a_float_is_an_input_error_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(
        doc(v("c", 10**400, 1), v("t", 10, 1), metric_type="mean"), capsys, monkeypatch
    )
    assert code == 2
    assert "variants[0].n" in err
    assert "Traceback" not in err


def test_a_utf8_byte_order_mark_is_read_as_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # PowerShell and Notepad write one; it is not part of the document.
    code, out, err = run("\ufeff" + doc(v("c", 100, 10), v("t", 100, 12)), capsys, monkeypatch)
    assert code == 0, err
    assert json.loads(out)["comparisons"][0]["estimate"]["control_mean"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("weights", "field"),
    [
        ((0.9, None), "variants[1].weight"),  # one weight given: the other was ignored
        ((-1, 1), "variants[0].weight"),  # a negative share
        ((0, 0), "weight"),  # no traffic configured at all
    ],
)
def test_weights_that_the_srm_test_would_silently_ignore_are_input_errors(
    weights: tuple[float | None, float | None],
    field: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1000 vs 1000 users against a 90/10 split is a glaring SRM; before, the missing
    # second weight made the test assume 50/50 and report "ok".
    arms = [v("c", 1000, 100), v("t", 1000, 120)]
    for arm, w in zip(arms, weights, strict=True):
        if w is not None:
            arm["weight"] = w
    code, _, err = run(doc(*arms), capsys, monkeypatch)
    assert code == 2, err
    assert field in err


# --- impossible sums: a wrong number without an error code -----------------------------


def test_sum_of_squares_below_sum_squared_over_n_is_invalid_input() -> None:
    # Control's variance would be (90 - 100^2/100) / 99 < 0: no data has that. Before,
    # the treatment's large variance hid it and a lift with a p-value came out.
    control = VariantStats("c", 100, 100.0, 90.0)
    treatment = VariantStats("t", 100, 120.0, 1000.0)
    assert estimate(control, treatment, "mean").error is ErrorCode.INVALID_INPUT


def test_impossible_covariate_sums_are_invalid_input_under_cuped() -> None:
    def arm(name: str, total: float, cov_squares: float) -> VariantStats:
        return VariantStats(
            name,
            1000,
            total,
            total * 8,
            covariate_sum=4000.0,
            covariate_sum_squares=cov_squares,
            covariate_cross_sum=32000.0,
        )

    # 4000^2 / 1000 = 16000 > 10000: a negative covariate variance in control.
    result = estimate(arm("c", 5000.0, 10000.0), arm("t", 5300.0, 30000.0), "mean", cuped=True)
    assert result.error is ErrorCode.INVALID_INPUT


def test_a_proportion_whose_sum_of_squares_is_not_its_sum_is_invalid_input() -> None:
    # 0/1 outcomes have sum of squares == sum; anything else is not a proportion, and
    # CUPED (which uses the sample variance) would build its estimate on it.
    control = VariantStats(
        "c",
        100,
        10.0,
        99999.0,
        covariate_sum=5.0,
        covariate_sum_squares=5.0,
        covariate_cross_sum=3.0,
    )
    treatment = VariantStats(
        "t",
        100,
        12.0,
        12.0,
        covariate_sum=6.0,
        covariate_sum_squares=6.0,
        covariate_cross_sum=4.0,
    )
    assert estimate(control, treatment, "proportion").error is ErrorCode.INVALID_INPUT
    assert estimate(control, treatment, "proportion", cuped=True).error is ErrorCode.INVALID_INPUT


def test_numbers_out_of_floating_point_range_give_an_error_code_not_nan() -> None:
    # Means of 1e-302: the relative lift's variance underflows (c^2 = 0) and came out
    # NaN with no error code, so the readout printed a p-value of null beside "ok".
    control = VariantStats("c", 100, 1e-300, 1e-300)
    treatment = VariantStats("t", 100, 2e-300, 3e-300)
    result = estimate(control, treatment, "mean")
    assert result.error is not None
    inference = infer(result)
    assert inference.p_value == 1.0


# --- a negative control mean: the relative lift's sign ---------------------------------


def test_relative_lift_has_the_sign_of_the_change_when_the_control_mean_is_negative() -> None:
    # Net revenue per user can be negative (refunds). Treatment -1.2 is worse than
    # control -1.0; before, relative = -0.2 / -1.0 = +20% and its interval lay above 0.
    control = VariantStats("c", 10000, -10000.0, 30000.0)
    treatment = VariantStats("t", 10000, -12000.0, 34000.0)
    result = estimate(control, treatment, "mean")
    assert result.absolute == pytest.approx(-0.2)
    assert result.relative == pytest.approx(-0.2)
    ci = infer(result).ci_relative
    assert ci[1] < 0
    # The prior on the relative lift maps to the absolute lift with the same sign.
    flat = infer(result, "bayesian")
    optimistic = infer(result, "bayesian", prior=Prior(mean=0.5, stddev=0.01))
    assert optimistic.ci_absolute[0] > flat.ci_absolute[0]


def test_readout_keeps_relative_and_absolute_in_agreement_for_every_method() -> None:
    variants = [
        VariantStats("c", 5000, -5000.0, 15000.0),
        VariantStats("t", 5000, -4000.0, 14000.0),
    ]
    for method in ("frequentist", "bayesian", "sequential"):
        cmp = analyze(variants, "mean", method).comparisons[0]
        assert math.copysign(1, cmp.estimate.relative) == math.copysign(1, cmp.estimate.absolute)
        lo_rel, hi_rel = cmp.inference.ci_relative
        assert lo_rel < cmp.estimate.relative < hi_rel
