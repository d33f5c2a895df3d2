"""`productlens stats --json` end to end: summary statistics on stdin, the readout out."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from scipy import stats as sps

from .conftest import run_stats

EXAMPLE: dict[str, Any] = {
    "metric_type": "proportion",
    "method": "frequentist",
    "alpha": 0.05,
    "cuped": False,
    "variants": [
        {"name": "control", "n": 10000, "sum": 1000, "sum_squares": 1000, "weight": 0.5},
        {"name": "treatment", "n": 10000, "sum": 1100, "sum_squares": 1100, "weight": 0.5},
    ],
}


run = run_stats


def test_stats_json_through_a_real_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "productlens", "stats", "--json"],
        input=json.dumps(EXAMPLE),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    cmp = out["comparisons"][0]
    chi2, p, _, _ = sps.chi2_contingency([[1000, 9000], [1100, 8900]], correction=False)
    assert cmp["inference"]["p_value"] == pytest.approx(p, rel=1e-9)
    assert cmp["inference"]["chi_square"] == pytest.approx(chi2, rel=1e-9)
    assert cmp["estimate"]["relative"] == pytest.approx(0.1, rel=1e-12)
    assert out["srm"]["p_value"] == 1.0
    assert out["control"] == "control"


def test_stats_json_cuped_reports_theta_and_unadjusted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = {
        "metric_type": "mean",
        "method": "sequential",
        "cuped": True,
        "variants": [
            {
                "name": "c",
                "n": 1000,
                "sum": 5000,
                "sum_squares": 40000,
                "covariate_sum": 4000,
                "covariate_sum_squares": 30000,
                "covariate_cross_sum": 32000,
            },
            {
                "name": "t",
                "n": 1000,
                "sum": 5300,
                "sum_squares": 44000,
                "covariate_sum": 4050,
                "covariate_sum_squares": 30500,
                "covariate_cross_sum": 33500,
            },
        ],
    }
    code, out, err = run(json.dumps(doc), capsys, monkeypatch)
    assert code == 0, err
    est = json.loads(out)["comparisons"][0]["estimate"]
    assert isinstance(est["theta"], float)
    assert 0 < est["variance_reduction"] < 1
    assert est["unadjusted"]["absolute"] == pytest.approx(0.3, rel=1e-12)
    assert est["absolute_se"] < est["unadjusted"]["absolute_se"]


def test_stats_json_degenerate_data_is_an_error_code_not_a_failure(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = json.loads(json.dumps(EXAMPLE))
    doc["variants"][1]["n"] = 0
    doc["variants"][1]["sum"] = doc["variants"][1]["sum_squares"] = 0
    code, out, _ = run(json.dumps(doc), capsys, monkeypatch)
    assert code == 0
    assert json.loads(out)["comparisons"][0]["estimate"]["error"] == "empty_arm"


def _without(key: str) -> str:
    doc = dict(EXAMPLE)
    del doc[key]
    return json.dumps(doc)


def _variant(i: int, **changes: Any) -> str:
    doc = json.loads(json.dumps(EXAMPLE))
    doc["variants"][i].update(changes)
    return json.dumps(doc)


BAD_INPUTS = [
    ("not json", "{metric_type: proportion", "not valid JSON"),
    ("not an object", "[1, 2]", "JSON object"),
    ("missing metric_type", _without("metric_type"), "metric_type: missing"),
    ("missing variants", _without("variants"), "variants: missing"),
    ("unknown metric_type", json.dumps({**EXAMPLE, "metric_type": "median"}), "metric_type"),
    ("unknown method", json.dumps({**EXAMPLE, "method": "magic"}), "method must be one of"),
    ("alpha out of range", json.dumps({**EXAMPLE, "alpha": 1.5}), "alpha"),
    ("cuped not a bool", json.dumps({**EXAMPLE, "cuped": "yes"}), "cuped"),
    ("one variant", json.dumps({**EXAMPLE, "variants": EXAMPLE["variants"][:1]}), "at least two"),
    ("n a string", _variant(1, n="10000"), "variants[1].n"),
    ("n a float", _variant(0, n=10.5), "variants[0].n"),
    (
        "sum missing",
        json.dumps(
            {
                **EXAMPLE,
                "variants": [EXAMPLE["variants"][0], {"name": "t", "n": 5, "sum_squares": 1}],
            }
        ),
        "variants[1].sum",
    ),
    ("sum a bool", _variant(1, sum=True), "variants[1].sum"),
    ("unknown variant field", _variant(0, sums=3), "variants[0].sums: unknown field"),
    ("duplicate names", _variant(1, name="control"), "not unique"),
]


@pytest.mark.parametrize(
    ("stdin", "needle"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_names_the_field_and_exits_2(
    stdin: str, needle: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run(stdin, capsys, monkeypatch)
    assert code == 2
    assert out == ""
    assert needle in " ".join(err.split())  # Rich may wrap the line
    assert "Traceback" not in err


def test_impossible_cuped_covariance_names_the_fields_and_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # n = 3 with metric 0, 1, 2 and covariate 0, 1, 2: Sxx = Syy = 2, so |Sxy| <= 2 and
    # the cross sum (Sxy + 3 * 3 / 3) lies in [1, 5]. 5 is allowed, 5.01 is not.
    arm = {
        "name": "c",
        "n": 3,
        "sum": 3,
        "sum_squares": 5,
        "covariate_sum": 3,
        "covariate_sum_squares": 5,
    }
    doc = {
        "metric_type": "mean",
        "cuped": True,
        "variants": [{**arm, "covariate_cross_sum": 5}, {**arm, "name": "t"}],
    }
    doc["variants"][1]["covariate_cross_sum"] = 5.01
    code, out, err = run(json.dumps(doc), capsys, monkeypatch)
    assert code == 2
    assert out == ""
    text = " ".join(err.split())
    assert "variants[1].covariate_cross_sum 5.01" in text
    for field in ("sum_squares", "covariate_sum", "covariate_sum_squares"):
        assert field in text
    doc["variants"][1]["covariate_cross_sum"] = 1  # the other bound: allowed
    code, out, err = run(json.dumps(doc), capsys, monkeypatch)
    assert code == 0, err
