"""customer_value: one row per customer with a completed order, with fitted customer value.

A fitted model (see `productlens.modeling`): `model(ctx)` is the per-customer summary of
`productlens clv` through the last completed order's day (purchases on one day count as
one, times in weeks), and `fit` fits BG/NBD and Gamma-Gamma on it with `productlens.clv`,
the same code as `productlens clv --json` (same data, same figures).

Observed columns: frequency (repeat purchase days), recency_weeks (first to last purchase
day), age_weeks (first purchase day to the last order day in the warehouse), mean_spend
(mean net revenue per repeat purchase day; null without repeat purchases).
Fitted columns, null unless fit_status is `fitted`: expected_purchases_52w,
probability_alive, expected_spend (per purchase), clv_52w (discounted at the project's
`[clv] discount_rate` a year).

fit_status says why a fit is missing, checked in this order:
- too_few_customers: fewer than `clv.MIN_CUSTOMERS` customers;
- too_few_repeat_buyers: fewer than `clv.MIN_REPEAT_BUYERS` repeat buyers with spend above $0;
- no_dropout_seen: BG/NBD's mean dropout probability a/(a+b) is below `clv.MIN_DROPOUT`
  (`clv.no_dropout_seen`, the rule `productlens clv` notes by): nobody
  was seen leaving (a few weeks of orders), so the model extrapolates every customer buying
  forever and its CLV is meaningless;
- degenerate_fit: Gamma-Gamma's q <= 1 (no finite mean spend), or a fitted figure is not
  finite for some customer (e.g. repeat purchases netting to $0 or less);
- fitted: every figure is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from productlens import clv

if TYPE_CHECKING:
    from sqlglot import exp

    from productlens.modeling import ModelContext

HORIZON_WEEKS = 52

FIT_STATUSES = (
    "fitted",
    "too_few_customers",
    "too_few_repeat_buyers",
    "no_dropout_seen",
    "degenerate_fit",
)

SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("first_order_date", pa.date32(), nullable=False),
        pa.field("as_of_date", pa.date32(), nullable=False),
        pa.field("frequency", pa.int64(), nullable=False),
        pa.field("recency_weeks", pa.float64(), nullable=False),
        pa.field("age_weeks", pa.float64(), nullable=False),
        pa.field("mean_spend", pa.float64()),
        pa.field("expected_purchases_52w", pa.float64()),
        pa.field("probability_alive", pa.float64()),
        pa.field("expected_spend", pa.float64()),
        pa.field("clv_52w", pa.float64()),
        pa.field("fit_status", pa.string(), nullable=False),
    ]
)

FITTED_COLUMNS = ("expected_purchases_52w", "probability_alive", "expected_spend", "clv_52w")


def model(ctx: ModelContext) -> exp.Query:
    """The fit's input: one row per customer, calibrated through the last order's day."""
    return clv.summary_to_date_query()


def fit(ctx: ModelContext, inputs: pa.Table) -> pa.Table:
    """Fit both models on the summary and score every customer (see the module's note)."""
    if inputs.num_rows == 0:
        return SCHEMA.empty_table()
    first = inputs.column("first_date").to_numpy(zero_copy_only=False).astype("M8[D]")
    age = inputs.column("age_days").to_numpy().astype("m8[D]")
    as_of = (first[0] + age[0]).astype(object)  # the same day for every customer
    summary = clv.summary_from_table(inputs, as_of, as_of)
    x, m = summary.frequency, summary.mean_spend
    if summary.n < clv.MIN_CUSTOMERS:
        return _table(inputs, summary, None, "too_few_customers")
    if int(np.sum((x > 0) & (m > 0))) < clv.MIN_REPEAT_BUYERS:
        return _table(inputs, summary, None, "too_few_repeat_buyers")
    bgnbd = clv.fit_bgnbd(x, summary.recency, summary.age)
    if clv.no_dropout_seen(bgnbd):
        return _table(inputs, summary, None, "no_dropout_seen")
    gamma_gamma = clv.fit_gamma_gamma(x, m)
    if gamma_gamma.params[1] <= 1:
        return _table(inputs, summary, None, "degenerate_fit")
    customers = clv.predict(summary, bgnbd, gamma_gamma, HORIZON_WEEKS, ctx.clv_discount_rate)
    figures = {
        "expected_purchases_52w": customers.expected_purchases,
        "probability_alive": customers.probability_alive,
        "expected_spend": customers.expected_spend,
        "clv_52w": customers.clv,
    }
    if not all(np.all(np.isfinite(values)) for values in figures.values()):
        return _table(inputs, summary, None, "degenerate_fit")
    return _table(inputs, summary, figures, "fitted")


def _table(
    inputs: pa.Table,
    summary: clv.Summary,
    figures: dict[str, np.ndarray] | None,
    status: str,
) -> pa.Table:
    """The mart's rows: the observed columns from the summary, the fitted ones (all null
    without a fit) and the status."""
    n = summary.n
    first = summary.first_date.astype("M8[D]")
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "user_id": inputs.column("user_id").cast(pa.string()),
        "first_order_date": pa.array(first, type=pa.date32()),
        "as_of_date": pa.array(
            np.full(n, np.datetime64(summary.calibration_end, "D")), type=pa.date32()
        ),
        "frequency": pa.array(summary.frequency.astype(np.int64)),
        "recency_weeks": pa.array(summary.recency),
        "age_weeks": pa.array(summary.age),
        "mean_spend": pa.array(summary.mean_spend, from_pandas=True),
    }
    for name in FITTED_COLUMNS:
        values = figures[name] if figures is not None else np.full(n, np.nan)
        columns[name] = pa.array(values, type=pa.float64(), from_pandas=True)
    columns["fit_status"] = pa.array(np.full(n, status, dtype=object), type=pa.string())
    return pa.Table.from_pydict(columns, schema=SCHEMA)
