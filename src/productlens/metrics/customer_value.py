"""Customer value for the report and the dashboard: the fitted `marts.customer_value` beside
the historical `marts.customer_metrics`.

- The fit: `customer_value.fit_status` (one status for the whole fit) with the customers and
  repeat buyers it covers. Only `fitted` is a usable fit; any other status comes with the
  reason in plain words (`not_fitted_reason`), and no fitted figure is read.
- By segment (the users' current segment, as `customer_metrics.segment`), over customers
  (users with a completed order): historical CLV per customer (net revenue to date) and,
  when fitted, the predicted CLV per customer (`clv_52w`, discounted, next 52 weeks), the
  expected purchases and the mean probability alive.
- Churn-risk bands: `customer_metrics.churn_risk` with its basis (`probability_alive`
  when fitted, `recency` otherwise, `no_orders` for users who never bought).
- Probability alive: a histogram of ten bins of width 0.1 (the last holds 1.0) and its
  means over all customers and over repeat buyers (fitted only). BG/NBD lets a customer drop
  out only after a repeat purchase, so every one-time buyer has probability alive 1.

A snapshot as of the data's last day: no date range applies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp

from productlens.engines.base import split_name

if TYPE_CHECKING:
    from productlens.engines import Engine

VALUE_TABLE = "marts.customer_value"
METRICS_TABLE = "marts.customer_metrics"
FITTED = "fitted"
NO_CUSTOMERS = "no_customers"  # the mart is empty: nobody has a completed order
ALIVE_BINS = 10
# The churn bands in their natural order (customer_metrics.churn_risk); a band the mart
# adds later is listed after them.
BANDS = ("active", "at_risk", "churned", "never_bought")
# customer_metrics' cut-offs on probability alive (documented there): active at or above
# the first, at risk at or above the second, churned below it.
ACTIVE_AT = 0.7
AT_RISK_AT = 0.3
HORIZON_WEEKS = 52
NO_ORDERS_BASIS = "no_orders"  # churn_risk_basis of users who never bought


@dataclass(frozen=True)
class SegmentValue:
    """Customers of one current segment: value to date and, when fitted, predicted."""

    segment: str | None
    n_customers: int
    historical_clv_per_customer: float
    predicted_clv_per_customer: float | None  # None: no usable fit
    expected_purchases_per_customer: float | None
    mean_probability_alive: float | None


@dataclass(frozen=True)
class ChurnBand:
    band: str
    basis: str
    n_users: int


@dataclass(frozen=True)
class CustomerValue:
    """The fit's status and the figures the report and the dashboard show."""

    fit_status: str
    n_customers: int
    n_repeat_buyers: int
    history_weeks: float  # the longest customer age: weeks from a first purchase to the end
    segments: tuple[SegmentValue, ...]  # highest predicted (else historical) value first
    churn: tuple[ChurnBand, ...]
    # Fitted only (None otherwise):
    alive_bins: tuple[int, ...] | None  # customers per bin [k/10, (k+1)/10), the last [0.9, 1]
    mean_probability_alive: float | None
    mean_probability_alive_repeat: float | None  # over repeat buyers
    expected_purchases: float | None  # sum over customers, next 52 weeks
    predicted_clv: float | None  # sum of clv_52w

    @property
    def fitted(self) -> bool:
        return self.fit_status == FITTED

    def buyer_bands(self) -> dict[str, int]:
        """Customers per churn band (users who never bought left out): active, at risk
        and churned always, in that order, then any other band the mart holds."""
        counts = dict.fromkeys(BANDS[:3], 0)
        for b in self.churn:
            if b.basis != NO_ORDERS_BASIS:
                counts[b.band] = counts.get(b.band, 0) + b.n_users
        return counts

    @property
    def never_bought(self) -> int:
        return sum(b.n_users for b in self.churn if b.basis == NO_ORDERS_BASIS)

    @property
    def reason(self) -> str | None:
        """Why there are no predicted figures, in plain words (None: fitted)."""
        return None if self.fitted else not_fitted_reason(self)


def _min_customers() -> int:
    from productlens.clv import MIN_CUSTOMERS  # noqa: PLC0415 - scipy's import, only here

    return MIN_CUSTOMERS


def _min_repeat_buyers() -> int:
    from productlens.clv import MIN_REPEAT_BUYERS  # noqa: PLC0415

    return MIN_REPEAT_BUYERS


# One reason per status the mart writes (its accepted values): why it did not fit, in
# words without the data's counts (the sentence around it states them).
REASONS: dict[str, Callable[[], str]] = {
    NO_CUSTOMERS: lambda: "no customer has a completed order yet",
    "too_few_customers": lambda: (
        f"a fit needs at least {_min_customers()} customers with a completed order"
    ),
    "too_few_repeat_buyers": lambda: (
        f"the spend model needs at least {_min_repeat_buyers()} customers who bought on "
        "more than one day"
    ),
    "degenerate_fit": lambda: (
        "the fitted models gave no usable figures (the spend model has no finite mean or "
        "some predictions are not finite)"
    ),
    "no_dropout_seen": lambda: (
        "the orders show no customer dropping out yet, so the model cannot tell how long "
        "customers stay and any lifetime value it predicted would be unbounded"
    ),
}


def not_fitted_reason(v: CustomerValue) -> str:
    say = REASONS.get(v.fit_status)
    return f"the fit's status is {v.fit_status}" if say is None else say()


# --- queries (fixed text, no value pasted) ----------------------------------------------------

_FIT = """
select
    fit_status,
    count(*) as n_customers,
    count(case when frequency > 0 then 1 end) as n_repeat_buyers,
    max(age_weeks) as history_weeks
from marts.customer_value
group by fit_status
order by n_customers desc, fit_status
"""

_SEGMENTS = """
with buyers as (
    select user_id, segment, historical_clv
    from marts.customer_metrics
    where n_orders > 0
),

fitted as (
    select user_id, clv_52w, expected_purchases_52w, probability_alive
    from marts.customer_value
    where fit_status = 'fitted'
)

select
    buyers.segment,
    count(*) as n_customers,
    avg(buyers.historical_clv) as historical_clv_per_customer,
    avg(fitted.clv_52w) as predicted_clv_per_customer,
    avg(fitted.expected_purchases_52w) as expected_purchases_per_customer,
    avg(fitted.probability_alive) as mean_probability_alive
from buyers
left join fitted on buyers.user_id = fitted.user_id
group by buyers.segment
order by predicted_clv_per_customer desc nulls last, historical_clv_per_customer desc,
    buyers.segment nulls last
"""

_CHURN = """
select churn_risk as band, churn_risk_basis as basis, count(*) as n_users
from marts.customer_metrics
group by churn_risk, churn_risk_basis
"""

_ALIVE_BINS = """
with binned as (
    select least(cast(floor(probability_alive * 10) as integer), 9) as alive_bin
    from marts.customer_value
    where fit_status = 'fitted' and probability_alive is not null
)

select alive_bin, count(*) as n_customers
from binned
group by alive_bin
order by alive_bin
"""

_FITTED_TOTALS = """
select
    avg(probability_alive) as mean_probability_alive,
    avg(case when frequency > 0 then probability_alive end) as mean_probability_alive_repeat,
    sum(expected_purchases_52w) as expected_purchases,
    sum(clv_52w) as predicted_clv
from marts.customer_value
where fit_status = 'fitted'
"""

QUERIES = {
    "fit": _FIT,
    "segments": _SEGMENTS,
    "churn": _CHURN,
    "alive_bins": _ALIVE_BINS,
    "fitted_totals": _FITTED_TOTALS,
}


def query(name: str) -> exp.Query:
    """One of the reader's queries (DuckDB's dialect; the engine transpiles it)."""
    parsed = sqlglot.parse_one(QUERIES[name], read="duckdb")
    assert isinstance(parsed, exp.Query)
    return parsed


def _rows(engine: Engine, name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = engine.fetch_arrow(query(name)).to_pylist()
    return rows


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _band_order(band: ChurnBand) -> tuple[int, str]:
    return (BANDS.index(band.band) if band.band in BANDS else len(BANDS), band.band)


def customer_value(engine: Engine) -> CustomerValue | None:
    """The customer value the warehouse holds; None without both marts."""
    for name in (VALUE_TABLE, METRICS_TABLE):
        if engine.table_kind(*split_name(name)) is None:
            return None
    fits = _rows(engine, "fit")
    # One status for the whole fit; should rows disagree, any status but fitted wins (the
    # most common of them): a partly usable fit is shown as not fitted.
    unfitted = [f for f in fits if f["fit_status"] != FITTED]
    status = (unfitted or fits)[0]["fit_status"] if fits else NO_CUSTOMERS
    fitted = status == FITTED
    segments = tuple(
        SegmentValue(
            segment=row["segment"],
            n_customers=int(row["n_customers"]),
            historical_clv_per_customer=float(row["historical_clv_per_customer"]),
            predicted_clv_per_customer=_float(row["predicted_clv_per_customer"])
            if fitted
            else None,
            expected_purchases_per_customer=(
                _float(row["expected_purchases_per_customer"]) if fitted else None
            ),
            mean_probability_alive=_float(row["mean_probability_alive"]) if fitted else None,
        )
        for row in _rows(engine, "segments")
    )
    churn = tuple(
        sorted(
            (
                ChurnBand(str(r["band"]), str(r["basis"]), int(r["n_users"]))
                for r in _rows(engine, "churn")
            ),
            key=_band_order,
        )
    )
    bins = totals = None
    if fitted:
        counts = [0] * ALIVE_BINS
        for row in _rows(engine, "alive_bins"):  # at most ten rows
            counts[int(row["alive_bin"])] = int(row["n_customers"])
        bins = tuple(counts)
        totals = _rows(engine, "fitted_totals")[0]
    return CustomerValue(
        fit_status=str(status),
        n_customers=sum(int(f["n_customers"]) for f in fits),
        n_repeat_buyers=sum(int(f["n_repeat_buyers"]) for f in fits),
        history_weeks=max((float(f["history_weeks"] or 0) for f in fits), default=0.0),
        segments=segments,
        churn=churn,
        alive_bins=bins,
        mean_probability_alive=None if totals is None else _float(totals["mean_probability_alive"]),
        mean_probability_alive_repeat=(
            None if totals is None else _float(totals["mean_probability_alive_repeat"])
        ),
        expected_purchases=None if totals is None else _float(totals["expected_purchases"]),
        predicted_clv=None if totals is None else _float(totals["predicted_clv"]),
    )
