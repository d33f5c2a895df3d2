"""`productlens revenue`: the ARR bridge, revenue concentration, CLV by segment and time to
first purchase (see `productlens.metrics.revenue`)."""

from __future__ import annotations

from typing import Any

import typer

from productlens.metrics.cli import (
    FromOpt,
    JsonOpt,
    ToOpt,
    console,
    emit,
    project_of,
    scope_of,
    table,
    warehouse,
)


def command(
    ctx: typer.Context,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revenue: ARR bridge per month, concentration (top 1%/10% share, Gini), CLV by
    segment, and days from signup to first purchase. Net revenue = completed orders."""
    from productlens.metrics.revenue import revenue

    project = project_of(ctx)
    scope = scope_of(project, date_from, date_to, None)
    with warehouse(project) as engine:
        result = revenue(engine, scope)
    emit(result.to_dict(), as_json, _render)


# The bridge reads down a month: open + movements = close (--json has exact amounts).
_ARR_ROWS = (
    ("open", "opening_arr"),
    ("new", "new_arr"),
    ("expansion", "expansion_arr"),
    ("contraction", "contraction_arr"),
    ("churned", "churned_arr"),
    ("reactivation", "reactivation_arr"),
    ("net new", "net_new_arr"),
    ("close", "closing_arr"),
    ("paying users", "n_paying_users"),
)
# A column whose name ends in % prints as a percentage.
_CONCENTRATION_COLUMNS = (
    ("buyers", "n_buyers"),
    ("paying (> 0)", "n_paying"),
    ("net revenue", "net_revenue"),
    ("top 1% buyers", "top_1pct_buyers"),
    ("top 1% share %", "top_1pct_share"),
    ("top 10% buyers", "top_10pct_buyers"),
    ("top 10% share %", "top_10pct_share"),
    ("Gini", "gini"),
)
_SEGMENT_COLUMNS = (
    ("segment", "segment"),
    ("users", "n_users"),
    ("buyers", "n_buyers"),
    ("net revenue", "net_revenue"),
    ("CLV / user", "clv_per_user"),
    ("CLV / buyer", "clv_per_buyer"),
    ("predicted 12m / user", "predicted_clv_12m_per_user"),
)
_FIRST_PURCHASE_COLUMNS = (
    ("buyers", "n_buyers"),
    ("mean days", "mean_days"),
    ("median days", "median_days"),
    ("left out: ordered before signup", "n_before_signup"),
)


def _render(data: dict[str, Any]) -> None:
    if data["arr_bridge"] is not None:
        months = data["arr_bridge"]
        rows = [[name, *[_money(m[key]) for m in months]] for name, key in _ARR_ROWS]
        console.print(table("ARR bridge", ["ARR", *[m["month"] for m in months]], rows))
    if data["concentration"] is not None:
        conc = data["concentration"]
        row = [_money(conc[k]) if "revenue" in k else conc[k] for _, k in _CONCENTRATION_COLUMNS]
        names = [name for name, _ in _CONCENTRATION_COLUMNS]
        console.print(table("Net revenue concentration", names, [row]))
    if data["clv_by_segment"] is not None:
        segments = data["clv_by_segment"]["segments"]
        rows = [[_money(s[key]) for _, key in _SEGMENT_COLUMNS] for s in segments]
        title = f"CLV by segment ({data['clv_by_segment']['segment_column']}, current)"
        console.print(table(title, [name for name, _ in _SEGMENT_COLUMNS], rows))
    if data["time_to_first_purchase"] is not None:
        row = [data["time_to_first_purchase"][key] for _, key in _FIRST_PURCHASE_COLUMNS]
        names = [name for name, _ in _FIRST_PURCHASE_COLUMNS]
        console.print(table("Signup to first purchase", names, [row]))
    for note in data["notes"]:
        console.print(f"note: {note}")


def _money(value: Any) -> Any:
    """An amount of 1,000 or more as whole units for the table (four significant digits
    would print it in e-notation); smaller amounts, ints and text pass through."""
    if isinstance(value, float) and abs(value) >= 1000:
        return round(value)
    return value
