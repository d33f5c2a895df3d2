"""`productlens stats`: an experiment readout straight from summary statistics on stdin.

For teams whose experiment data lives elsewhere: per-variant n, sum and sum of squares
(plus ratio and CUPED sums) in, every estimate, interval, p-value, SRM p-value and theta
out (`--json`), or a table. The input is validated field by field; a malformed input is
a `StatsInputError` naming the field (exit code 2), never a traceback.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import typer

from productlens.errors import StatsInputError

# Top-level keys: name -> (check, required). A check returns an error text or None.
Check = Callable[[Any], str | None]


def _number(value: Any) -> str | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return None if ok else "must be a finite number"


def _optional_number(value: Any) -> str | None:
    return None if value is None else _number(value)


def _share(value: Any) -> str | None:
    return _number(value) or (None if 0 < value < 1 else "must lie strictly between 0 and 1")


def _positive(value: Any) -> str | None:
    return _number(value) or (None if value > 0 else "must be positive")


# Counts are used as floats; beyond 2^53 a float no longer holds every whole number.
MAX_COUNT = 2**53


def _count(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT
    return None if ok else f"must be a whole number from 0 to {MAX_COUNT}"


def _weight(value: Any) -> str | None:
    if value is None:
        return None
    return _number(value) or (None if value >= 0 else "must be >= 0")


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "must be a non-empty string"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def _prior(value: Any) -> str | None:
    if not isinstance(value, dict) or set(value) - {"mean", "stddev"} or "stddev" not in value:
        return 'must be an object {"mean": number, "stddev": number > 0}'
    return _number(value.get("mean", 0.0)) or _positive(value["stddev"])


TOP_LEVEL: dict[str, tuple[Check, bool]] = {
    "metric_type": (_one_of("proportion", "mean", "ratio"), True),
    "method": (_one_of("frequentist", "bayesian", "sequential"), False),
    "alpha": (_share, False),
    "cuped": (_boolean, False),
    "variants": (lambda v: None, True),  # checked one by one below
    "srm_threshold": (_share, False),
    "tuning_parameter": (_positive, False),
    "prior": (_prior, False),
    "monthly_users": (_positive, False),
}
VARIANT: dict[str, tuple[Check, bool]] = {
    "name": (_text, True),
    "n": (_count, True),
    "sum": (_number, True),
    "sum_squares": (_number, True),
    "weight": (_weight, False),
    "denominator_sum": (_optional_number, False),
    "denominator_sum_squares": (_optional_number, False),
    "cross_sum": (_optional_number, False),
    "covariate_sum": (_optional_number, False),
    "covariate_sum_squares": (_optional_number, False),
    "covariate_cross_sum": (_optional_number, False),
}


def _check_object(obj: Mapping[str, Any], spec: dict[str, tuple[Check, bool]], where: str) -> None:
    for key in obj:
        if key not in spec:
            known = ", ".join(spec)
            raise StatsInputError(f"{where}{key}: unknown field (known: {known})")
    for key, (check, required) in spec.items():
        if key not in obj:
            if required:
                raise StatsInputError(f"{where}{key}: missing")
            continue
        problem = check(obj[key])
        if problem:
            raise StatsInputError(f"{where}{key} {problem}, got {json.dumps(obj[key])}")


def parse(text: str) -> dict[str, Any]:
    """The validated input document (raises StatsInputError naming the bad field)."""
    try:
        doc = json.loads(text.removeprefix("\ufeff"))  # a byte order mark is not JSON
    except json.JSONDecodeError as exc:
        raise StatsInputError(f"input is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise StatsInputError("input must be a JSON object with metric_type and variants")
    _check_object(doc, TOP_LEVEL, "")
    variants = doc["variants"]
    if not isinstance(variants, list) or len(variants) < 2:
        raise StatsInputError("variants must be a list of at least two (control first)")
    names: set[str] = set()
    for i, variant in enumerate(variants):
        if not isinstance(variant, dict):
            raise StatsInputError(f"variants[{i}] must be an object")
        _check_object(variant, VARIANT, f"variants[{i}].")
        if variant["name"] in names:
            raise StatsInputError(f"variants[{i}].name {variant['name']!r} is not unique")
        names.add(variant["name"])
    _check_weights(variants)
    _check_covariances(variants)
    return doc


def _check_covariances(variants: list[dict[str, Any]]) -> None:
    """A covariate cross sum no data can have (|correlation| > 1 beyond rounding) is bad
    input, named here, rather than an `invalid_input` code in an otherwise fine readout."""
    from productlens.experiments.stats import VariantStats, impossible_covariance

    for i, variant in enumerate(variants):
        if impossible_covariance(VariantStats(**variant)):
            raise StatsInputError(
                f"variants[{i}].covariate_cross_sum {json.dumps(variant['covariate_cross_sum'])} "
                "is impossible with its sum, sum_squares, covariate_sum and "
                "covariate_sum_squares: the metric-covariate correlation would exceed 1"
            )


def _check_weights(variants: list[dict[str, Any]]) -> None:
    """Weights for every variant or for none (the SRM test would silently assume an
    equal split), and some traffic in total."""
    given = [variant.get("weight") is not None for variant in variants]
    if any(given) and not all(given):
        i = given.index(False)
        raise StatsInputError(
            f"variants[{i}].weight: missing while other variants have one "
            "(give every variant's weight, or none for an equal split)"
        )
    if all(given) and sum(variant["weight"] for variant in variants) <= 0:
        raise StatsInputError("variants' weight must add up to more than 0")


def readout_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Run `analyze` on a validated input document; the readout as plain JSON values."""
    from productlens.experiments.inference import DEFAULT_TUNING_PARAMETER, Prior
    from productlens.experiments.readout import analyze
    from productlens.experiments.srm import DEFAULT_SRM_THRESHOLD
    from productlens.experiments.stats import VariantStats

    prior = doc.get("prior")
    readout = analyze(
        [VariantStats(**v) for v in doc["variants"]],
        doc["metric_type"],
        doc.get("method", "frequentist"),
        alpha=doc.get("alpha", 0.05),
        cuped=doc.get("cuped", False),
        srm_threshold=doc.get("srm_threshold", DEFAULT_SRM_THRESHOLD),
        tuning_parameter=doc.get("tuning_parameter", DEFAULT_TUNING_PARAMETER),
        prior=None if prior is None else Prior(prior.get("mean", 0.0), prior["stddev"]),
        monthly_users=doc.get("monthly_users"),
    )
    return readout.to_dict()


def command(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print exact JSON instead of a table.")
    ] = False,
) -> None:
    """Analyse an experiment from summary statistics read on stdin (JSON; see README).

    Input: {"metric_type": "proportion"|"mean"|"ratio", "method":
    "frequentist"|"bayesian"|"sequential", "alpha": 0.05, "cuped": false, "variants":
    [{"name", "n", "sum", "sum_squares", "weight", ...}, ...]}; the first variant is the
    control.
    """
    from productlens.metrics.cli import emit

    result = readout_of(parse(sys.stdin.read()))
    emit(result, as_json, _render)


def _render(data: dict[str, Any]) -> None:
    from productlens.metrics.cli import console, table

    srm = data["srm"]
    console.print(
        f"{data['metric_type']} metric, {data['method']}, alpha {data['alpha']}"
        f"{', CUPED' if data['cuped'] else ''}; control: {data['control']}"
    )
    verdict = "MISMATCH" if srm["mismatch"] else "ok"
    console.print(f"SRM: p = {srm['p_value']:.4g} ({verdict} at {srm['threshold']})")
    rows = []
    for c in data["comparisons"]:
        e, i = c["estimate"], c["inference"]
        rows.append(
            [
                c["variant"],
                e["control_mean"],
                e["treatment_mean"],
                e["relative"],
                i["ci_relative"][0],
                i["ci_relative"][1],
                i["p_value"] if i["p_value"] is not None else i["chance_to_win"],
                e["error"] or "",
            ]
        )
    last = "chance to win" if data["method"] == "bayesian" else "p-value"
    columns = ["variant", "control", "treatment", "lift %", "low %", "high %", last, "error"]
    console.print(table(None, columns, rows))
