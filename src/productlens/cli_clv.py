"""`productlens clv`: fitted customer value (BG/NBD + Gamma-Gamma, see `productlens.clv`)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import typer

from productlens.errors import ClvInputError
from productlens.metrics.cli import JsonOpt, console, emit, project_of, table, warehouse

CalibrationOpt = Annotated[
    str | None,
    typer.Option(
        "--calibration-end",
        help="Last day (YYYY-MM-DD) of the orders the models are fitted on; the orders after "
        "it are the holdout the fit is scored on. Default: the last order's day, no holdout.",
    ),
]
HorizonOpt = Annotated[
    str, typer.Option("--horizon", help="Weeks ahead for expected purchases and CLV (52w).")
]
DiscountOpt = Annotated[
    float | None,
    typer.Option(
        "--discount-rate",
        help="Annual discount rate of the CLV (0.1 = 10%). Default: the project's "
        "[clv] discount_rate (0.1), as the customer_value mart uses.",
    ),
]
TOP_CUSTOMERS = 10


def command(
    ctx: typer.Context,
    calibration_end: CalibrationOpt = None,
    horizon: HorizonOpt = "52w",
    discount_rate: DiscountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Customer value: BG/NBD (purchases, P(alive)) and Gamma-Gamma (spend) fitted by
    maximum likelihood on completed orders (same-day purchases count as one, times in weeks);
    per-customer expected purchases, P(alive), expected spend and discounted CLV (--json)."""
    from productlens import clv

    project = project_of(ctx)
    end = _date(calibration_end) if calibration_end is not None else None
    weeks = clv.parse_horizon(horizon)
    rate = project.config.clv.discount_rate if discount_rate is None else discount_rate
    with warehouse(project) as engine:
        result = clv.analyze(engine, end, weeks, rate)
    emit(result.to_dict(), as_json, _render)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ClvInputError(
            f"cannot read {text!r} as a date (YYYY-MM-DD)", option="--calibration-end"
        ) from None


def _render(data: dict[str, Any]) -> None:
    console.print(
        f"{data['n_customers']:,} customers ({data['n_repeat_buyers']:,} repeat buyers), "
        f"fitted on orders through {data['calibration_end']}"
    )
    rows = [
        (fit["model"], name, value, fit["standard_errors"][name])
        for fit in (data["bgnbd"], data["gamma_gamma"])
        for name, value in fit["params"].items()
    ]
    rows += [
        (fit["model"], f"log-likelihood (n={fit['n']:,})", fit["log_likelihood"], None)
        for fit in (data["bgnbd"], data["gamma_gamma"])
    ]
    console.print(table("Parameters", ("model", "parameter", "estimate", "std. error"), rows))
    totals = data["totals"]
    value = "not given (see the notes)" if totals["clv"] is None else f"{totals['clv']:,.2f}"
    console.print(
        f"Next {data['horizon_weeks']} weeks: {totals['expected_purchases']:,.1f} expected "
        f"purchases, mean P(alive) {totals['mean_probability_alive']:.1%}, discounted CLV "
        f"{value} at {data['discount_rate']:.1%} a year"
    )
    # Customers without a CLV (null: see the notes) come last.
    top = sorted(data["customers"], key=lambda c: (c["clv"] is None, -(c["clv"] or 0.0)))
    top = top[:TOP_CUSTOMERS]
    console.print(
        table(
            f"Top {TOP_CUSTOMERS} customers by CLV (all in --json)",
            ("user", "x", "t_x (w)", "T (w)", "exp. purchases", "P(alive) %", "exp. spend", "CLV"),
            [
                (
                    c["user_id"],
                    int(c["frequency"]),
                    c["recency_weeks"],
                    c["age_weeks"],
                    c["expected_purchases"],
                    c["probability_alive"],
                    c["expected_spend"],
                    c["clv"],
                )
                for c in top
            ],
        )
    )
    if data["by_segment"] is not None:
        console.print(
            table(
                "CLV by current segment (highest per customer first)",
                ("segment", "customers", "CLV", "CLV / customer", "exp. purchases", "P(alive) %"),
                [
                    (
                        v["segment"],
                        v["n_customers"],
                        v["clv"],
                        v["clv_per_customer"],
                        v["expected_purchases"],
                        v["mean_probability_alive"],
                    )
                    for v in data["by_segment"]
                ],
            )
        )
    if data["holdout"] is not None:
        _render_holdout(data["holdout"])
    for note in data["notes"]:
        console.print(f"note: {note}")


def _render_holdout(holdout: dict[str, Any]) -> None:
    console.print(
        f"Holdout {holdout['calibration_end']} to {holdout['holdout_end']} "
        f"({holdout['weeks']:.1f} weeks): {holdout['actual_total']:,} repeat purchases, "
        f"{holdout['predicted_total']:,.1f} predicted"
    )
    weeks = [w for w in holdout["tracking"] if w["is_holdout"]]
    actual = predicted = 0.0
    rows = []
    for week in weeks:  # the chart's weeks, not customers
        actual += week["actual"]
        predicted += week["predicted"]
        rows.append((week["week_start"], week["actual"], week["predicted"], actual, predicted))
    console.print(
        table(
            "Repeat purchases per week (tracking; every week in --json)",
            ("week of", "actual", "predicted", "cum. actual", "cum. predicted"),
            rows,
        )
    )
    console.print(
        table(
            "Holdout purchases by calibration frequency (conditional expectations)",
            ("x", "customers", "actual mean", "predicted mean"),
            [
                (b["frequency"], b["n_customers"], b["actual_mean"], b["predicted_mean"])
                for b in holdout["by_frequency"]
            ],
        )
    )
