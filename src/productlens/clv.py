"""Fitted customer value: BG/NBD and Gamma-Gamma by maximum likelihood.

The models ("buy till you die"):

- BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): while alive a
  customer buys as a Poisson process of rate lambda ~ Gamma(r, alpha); after each purchase
  they drop out with probability p ~ Beta(a, b). Per customer with x repeat purchases, the
  last at t_x, observed for T (weeks since the first purchase):
  LL = ln G(r+x) - ln G(r) + r ln alpha + ln B(a, b+x) - ln B(a, b)
       + ln[ (alpha+T)^-(r+x) + [x>0] a/(b+x-1) (alpha+t_x)^-(r+x) ].
- Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV"): a customer's transaction values are
  Gamma(p, nu) with nu ~ Gamma(q, gamma); on the mean m of x > 0 repeat transactions:
  LL = ln G(px+q) - ln G(px) - ln G(q) + q ln gamma + (px-1) ln m + px ln x
       - (px+q) ln(gamma + m x).

Both are fitted with L-BFGS-B in log parameters with the closed-form gradients; standard
errors are the square roots of the diagonal of the inverse Hessian of the negative
log-likelihood at the optimum, in the natural parameters (the Hessian as the central
difference of the closed-form gradient, statsmodels' approx_fprime).

The per-customer summary is computed in SQL on `core.int_order_revenue`'s completed orders:
purchases on one day count as one transaction (their amounts add up), times in weeks (days /
7) as in the literature: frequency x = repeat purchase days, recency t_x = weeks from the
first to the last purchase day, age T = weeks from the first purchase day to the end of
calibration (a purchase on that day is at t = T). Everything after that is NumPy over all
customers at once; customers with identical (x, t_x, T) share one likelihood term.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import sqlglot
from scipy.optimize import minimize
from scipy.special import betaln, digamma, gammaln, hyp2f1
from sqlglot import exp
from statsmodels.tools.numdiff import approx_fprime
from threadpoolctl import threadpool_limits

from productlens.errors import ClvInputError

if TYPE_CHECKING:
    from collections.abc import Callable

    from numpy.typing import NDArray

    from productlens.engines import Engine

    Array = NDArray[np.float64]

ORDER_REVENUE_TABLE = "core.int_order_revenue"
MIN_CUSTOMERS = 10  # fewer cannot identify four parameters
MIN_REPEAT_BUYERS = 2  # Gamma-Gamma's three parameters need spread among repeat buyers
# BG/NBD's mean dropout probability a/(a+b) below this: nobody was seen leaving, and the
# model extrapolates every customer buying forever (the mart's `no_dropout_seen`).
MIN_DROPOUT = 1e-3
# The largest order amount the summary adds up exactly: decimal(38, 9) holds 29 integer
# digits, so a customer's day of up to a billion such orders still fits.
MAX_AMOUNT = 1e20
FREQUENCY_BUCKETS = 8  # conditional expectations for x = 0..6 and 7+ (as the paper shows)
# Ten years: beyond that the extrapolation means nothing, and the CLV's customers x weeks
# matrix of a longer horizon (a typo such as 52000w) would exhaust memory.
MAX_HORIZON_WEEKS = 520

_DAYS = """
with orders as (
    select
        user_id,
        order_date,
        net_revenue
    from core.int_order_revenue
    where is_recognized and user_id is not null and order_date <= :holdout_end
),

days as (
    select
        user_id,
        order_date,
        -- Summed exactly: a double sum's last digit follows the engine's order of addition
        -- (DuckDB's parallel sums differ run to run), and the fit's standard errors magnify it.
        -- An amount too large for the decimal is left out of the sum instead of failing the
        -- query: `largest` carries it, and the summary refuses it by name (`check_amounts`).
        sum(
            cast(case when abs(net_revenue) < :max_amount then net_revenue end as decimal(38, 9))
        ) as spend,
        max(abs(net_revenue)) as largest
    from orders
    group by user_id, order_date
),

calibration as (
    select
        user_id,
        order_date,
        spend,
        largest,
        min(order_date) over (partition by user_id) as first_date
    from days
    where order_date <= :calibration_end
)
"""

_SUMMARY = (
    _DAYS
    + """,
per_user as (
    select
        user_id,
        count(*) - 1 as frequency,
        date_diff('day', min(order_date), max(order_date)) as recency_days,
        date_diff('day', min(order_date), :calibration_end) as age_days,
        sum(case when order_date > first_date then spend else 0 end) as repeat_spend,
        min(first_date) as first_date,
        max(largest) as largest_amount
    from calibration
    group by user_id
),

holdout as (
    select
        user_id,
        count(*) as holdout_frequency
    from days
    where order_date > :calibration_end
    group by user_id
),

final as (
    select
        per_user.user_id,
        per_user.frequency,
        per_user.recency_days,
        per_user.age_days,
        per_user.repeat_spend,
        per_user.first_date,
        per_user.largest_amount,
        coalesce(holdout.holdout_frequency, 0) as holdout_frequency
    from per_user
    left join holdout on per_user.user_id = holdout.user_id
)

select * from final order by user_id
"""
)

# Repeat purchase days per date of the customers first seen by the calibration end.
_REPEATS_BY_DATE = (
    _DAYS
    + """,
firsts as (
    select distinct
        user_id,
        first_date
    from calibration
),

final as (
    select
        days.order_date,
        count(*) as n_repeat
    from days
    inner join firsts on days.user_id = firsts.user_id
    where days.order_date > firsts.first_date
    group by days.order_date
)

select * from final order by order_date
"""
)

# Columns qualified: inside the mart's summary query this is a scalar subquery, and a bare
# name there could be the outer query's (SQLGlot cannot qualify it without a schema).
_LAST_DATE = """
select max(last_orders.order_date) as last_date
from core.int_order_revenue as last_orders
where last_orders.is_recognized and last_orders.user_id is not null
"""


def _date_literal(value: date) -> exp.Expression:
    return exp.cast(exp.Literal.string(value.isoformat()), "date")


def _query(text: str, calibration_end: date, holdout_end: date) -> exp.Query:
    return _query_at(text, _date_literal(calibration_end), _date_literal(holdout_end))


def _query_at(text: str, calibration_end: exp.Expression, holdout_end: exp.Expression) -> exp.Query:
    parsed = sqlglot.parse_one(text, read="duckdb")
    query = exp.replace_placeholders(
        parsed,
        calibration_end=calibration_end.copy(),
        holdout_end=holdout_end.copy(),
        max_amount=exp.Literal.number(int(MAX_AMOUNT)),
    )
    assert isinstance(query, exp.Query)
    return query


def summary_to_date_query() -> exp.Query:
    """The per-customer summary query (columns as `summarize` reads them) calibrated through
    the last completed order's date, found by the query itself: the input of the
    `customer_value` mart. The same SQL as `productlens clv` without --calibration-end."""
    last = exp.Subquery(this=sqlglot.parse_one(_LAST_DATE, read="duckdb"))
    return _query_at(_SUMMARY, last, last)


# --- the summary ------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """One entry per customer first seen by the calibration end (arrays in user_id order)."""

    user_id: NDArray[np.str_]
    frequency: Array  # x: repeat purchase days in calibration
    recency: Array  # t_x, weeks
    age: Array  # T, weeks
    mean_spend: Array  # m: mean spend per repeat purchase day (nan when x = 0)
    first_date: NDArray[np.datetime64]
    holdout_frequency: Array  # repeat purchase days after the calibration end
    calibration_end: date
    holdout_end: date  # the last order date (== calibration_end without a holdout)

    @property
    def n(self) -> int:
        return len(self.user_id)

    @property
    def holdout_weeks(self) -> float:
        return (self.holdout_end - self.calibration_end).days / 7


def last_order_date(engine: Engine) -> date | None:
    """The date of the last completed order, or None when there is none."""
    rows = engine.fetch_all(sqlglot.parse_one(_LAST_DATE, read="duckdb"))
    value = rows[0][0] if rows else None
    return value if isinstance(value, date) else None


def summarize(engine: Engine, calibration_end: date | None = None) -> Summary:
    """The per-customer summary up to `calibration_end` (default: the last order date), and
    each customer's repeat purchase days after it up to the last order date."""
    if engine.table_kind(*ORDER_REVENUE_TABLE.split(".")) is None:
        raise ClvInputError(
            "the warehouse has no orders model: run `productlens build` first",
            table=ORDER_REVENUE_TABLE,
        )
    last = last_order_date(engine)
    if last is None:
        raise ClvInputError("no completed orders to fit on", table=ORDER_REVENUE_TABLE)
    end = calibration_end or last
    if end > last:
        raise ClvInputError(
            f"the calibration end {end} is after the last order ({last})",
            option="--calibration-end",
        )
    summary = summary_from_table(engine.fetch_arrow(_query(_SUMMARY, end, last)), end, last)
    if summary.n == 0:
        raise ClvInputError(
            f"no completed order on or before the calibration end {end}: it is before the "
            "first order",
            option="--calibration-end",
        )
    return summary


def check_amounts(table: pa.Table) -> None:
    """Refuse a summary with an order amount too large to add up exactly, naming the
    customer and the amount (the query leaves such an amount out of the sums)."""
    largest = table.column("largest_amount").to_numpy(zero_copy_only=False).astype(np.float64)
    too_large = np.flatnonzero(largest >= MAX_AMOUNT)
    if too_large.size:
        first = int(too_large[0])
        raise ClvInputError(
            f"customer {table.column('user_id')[first].as_py()!r} has a completed order of "
            f"{largest[first]:.6g}, too large to add up exactly (the limit is "
            f"{MAX_AMOUNT:.0e}); {too_large.size} customer(s) have such an order: correct "
            "the order amounts in the source",
            table=ORDER_REVENUE_TABLE,
        )


def summary_from_table(table: pa.Table, calibration_end: date, holdout_end: date) -> Summary:
    """The summary from the summary query's rows (`summary_to_date_query`); refuses an
    order amount too large to add up exactly (`check_amounts`)."""
    check_amounts(table)
    frequency = table.column("frequency").to_numpy().astype(np.float64)
    repeat_spend = table.column("repeat_spend").to_numpy(zero_copy_only=False).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_spend = np.where(frequency > 0, repeat_spend / frequency, np.nan)
    return Summary(
        user_id=np.asarray(table.column("user_id").to_numpy(zero_copy_only=False), dtype=str),
        frequency=frequency,
        recency=table.column("recency_days").to_numpy().astype(np.float64) / 7,
        age=table.column("age_days").to_numpy().astype(np.float64) / 7,
        mean_spend=mean_spend,
        first_date=table.column("first_date").to_numpy(zero_copy_only=False).astype("M8[D]"),
        holdout_frequency=table.column("holdout_frequency").to_numpy().astype(np.float64),
        calibration_end=calibration_end,
        holdout_end=holdout_end,
    )


# --- the models ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    """Maximum-likelihood estimates with standard errors."""

    model: str
    names: tuple[str, ...]
    params: tuple[float, ...]
    standard_errors: tuple[float, ...]  # nan where the Hessian is not invertible
    log_likelihood: float
    n: int  # customers the likelihood sums over
    converged: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "params": dict(zip(self.names, self.params, strict=True)),
            "standard_errors": dict(
                zip(self.names, _nan_to_none(self.standard_errors), strict=True)
            ),
            "log_likelihood": self.log_likelihood,
            "n": self.n,
            "converged": self.converged,
        }


def _nan_to_none(values: tuple[float, ...]) -> list[float | None]:
    return [None if not np.isfinite(v) else v for v in values]


BGNBD_NAMES = ("r", "alpha", "a", "b")
GAMMA_GAMMA_NAMES = ("p", "q", "gamma")


def _bgnbd_terms(
    params: Array, x: Array, t_x: Array, big_t: Array
) -> tuple[Array, Array, Array, Array]:
    """The likelihood's pieces: the head, ln((alpha+T)^-(r+x)), the dropout term (-inf when
    x = 0) and their log-sum."""
    r, alpha, a, b = params
    head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    alive = -(r + x) * np.log(alpha + big_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        died = np.where(
            x > 0,
            np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    return head, alive, died, np.logaddexp(alive, died)


def bgnbd_log_likelihood(params: Array, x: Array, t_x: Array, big_t: Array) -> Array:
    """Each customer's BG/NBD log-likelihood at params (r, alpha, a, b)."""
    head, _, _, tail = _bgnbd_terms(params, x, t_x, big_t)
    result: Array = head + tail
    return result


def bgnbd_gradient(params: Array, x: Array, t_x: Array, big_t: Array) -> Array:
    """d LL / d (r, alpha, a, b) per customer (rows), from the closed form: with w the
    dropout term's share of the log-sum (0 when x = 0),
    dr = psi(r+x) - psi(r) + ln alpha - (1-w) ln(alpha+T) - w ln(alpha+t_x),
    dalpha = r/alpha - (r+x) [(1-w)/(alpha+T) + w/(alpha+t_x)],
    da = psi(a+b) - psi(a+b+x) + w/a,
    db = psi(b+x) - psi(b) + psi(a+b) - psi(a+b+x) - w/(b+x-1)."""
    r, alpha, a, b = params
    _, _, died, tail = _bgnbd_terms(params, x, t_x, big_t)
    w = np.exp(died - tail)
    shared = digamma(a + b) - digamma(a + b + x)
    with np.errstate(divide="ignore", invalid="ignore"):
        db_dropout = np.where(x > 0, w / (b + x - 1), 0.0)
    columns = (
        digamma(r + x)
        - digamma(r)
        + np.log(alpha)
        - (1 - w) * np.log(alpha + big_t)
        - w * np.log(alpha + t_x),
        r / alpha - (r + x) * ((1 - w) / (alpha + big_t) + w / (alpha + t_x)),
        shared + w / a,
        digamma(b + x) - digamma(b) + shared - db_dropout,
    )
    result: Array = np.column_stack(columns)
    return result


def gamma_gamma_log_likelihood(params: Array, x: Array, m: Array) -> Array:
    """Each repeat buyer's Gamma-Gamma log-likelihood at params (p, q, gamma); x > 0, m > 0."""
    p, q, gamma = params
    px = p * x
    result: Array = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(gamma)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(gamma + m * x)
    )
    return result


def gamma_gamma_gradient(params: Array, x: Array, m: Array) -> Array:
    """d LL / d (p, q, gamma) per repeat buyer (rows):
    dp = x [psi(px+q) - psi(px) + ln m + ln x - ln(gamma+mx)],
    dq = psi(px+q) - psi(q) + ln gamma - ln(gamma+mx), dgamma = q/gamma - (px+q)/(gamma+mx)."""
    p, q, gamma = params
    px = p * x
    spent = np.log(gamma + m * x)
    columns = (
        x * (digamma(px + q) - digamma(px) + np.log(m) + np.log(x) - spent),
        digamma(px + q) - digamma(q) + np.log(gamma) - spent,
        q / gamma - (px + q) / (gamma + m * x),
    )
    result: Array = np.column_stack(columns)
    return result


def _fit(
    model: str,
    names: tuple[str, ...],
    per_customer: Callable[[Array], Array],
    gradient: Callable[[Array], Array],
    weights: Array,
    n: int,
) -> Fit:
    """Maximise sum(weights x per_customer(params)) over positive params, in their logs
    with the closed-form gradient; the Hessian is the central difference of that gradient."""

    def negative(params: Array) -> float:
        # Sums, not dot products: a BLAS call per evaluation costs more than it saves when
        # OpenBLAS's threads compete for a busy machine's cores.
        value = -float(np.sum(weights * per_customer(params)))
        return value if np.isfinite(value) else 1e300

    def negative_gradient(params: Array) -> Array:
        result: Array = -np.sum(weights[:, None] * gradient(params), axis=0)
        return result

    def in_logs(logs: Array) -> tuple[float, Array]:
        params = np.exp(logs)
        grad = negative_gradient(params) * params  # d/d ln(theta) = theta d/d theta
        return negative(params), np.nan_to_num(grad, nan=0.0, posinf=1e300, neginf=-1e300)

    with threadpool_limits(limits=1, user_api="blas"):
        result = minimize(
            in_logs,
            np.zeros(len(names)),
            jac=True,
            method="L-BFGS-B",
            bounds=[(-20.0, 20.0)] * len(names),
        )
        params = np.exp(result.x)
        hessian = approx_fprime(params, negative_gradient, centered=True)
    hessian = (hessian + hessian.T) / 2
    try:
        diagonal = np.diag(np.linalg.inv(hessian))
        errors = np.where(diagonal > 0, np.sqrt(np.abs(diagonal)), np.nan)
    except np.linalg.LinAlgError:
        errors = np.full(len(names), np.nan)
    return Fit(
        model=model,
        names=names,
        params=tuple(float(v) for v in params),
        standard_errors=tuple(float(v) for v in errors),
        log_likelihood=-negative(params),
        n=n,
        converged=bool(result.success),
    )


def fit_bgnbd(x: Array, t_x: Array, big_t: Array) -> Fit:
    """BG/NBD by maximum likelihood (customers with equal x, t_x, T share one term)."""
    if len(x) < MIN_CUSTOMERS:
        raise ClvInputError(
            f"BG/NBD needs at least {MIN_CUSTOMERS} customers; the orders have {len(x)}"
        )
    if not np.any(x > 0):
        raise ClvInputError("BG/NBD needs repeat buyers: no customer bought on a second day")
    rows, counts = np.unique(np.column_stack([x, t_x, big_t]), axis=0, return_counts=True)
    ux, ut, uT = rows.T
    return _fit(
        "BG/NBD",
        BGNBD_NAMES,
        lambda params: bgnbd_log_likelihood(params, ux, ut, uT),
        lambda params: bgnbd_gradient(params, ux, ut, uT),
        counts.astype(np.float64),
        len(x),
    )


def mean_dropout(bgnbd: Fit) -> float:
    """BG/NBD's mean probability that a customer drops out after a purchase, a/(a+b)."""
    _, _, a, b = bgnbd.params
    return a / (a + b)


def no_dropout_seen(bgnbd: Fit) -> bool:
    """True when the fit saw nobody leave: a/(a+b) below MIN_DROPOUT (too short a history).

    The one rule for `analyze`'s note and the customer_value mart's `no_dropout_seen`
    status: the model then extrapolates every customer buying forever.
    """
    return mean_dropout(bgnbd) < MIN_DROPOUT


def fit_gamma_gamma(x: Array, m: Array) -> Fit:
    """Gamma-Gamma by maximum likelihood on the repeat buyers whose mean repeat spend is
    above 0 (the model's values are positive; a $0 mean has likelihood 0 at any parameters)."""
    keep = (x > 0) & (m > 0)
    if int(keep.sum()) < MIN_REPEAT_BUYERS:
        raise ClvInputError(
            f"Gamma-Gamma needs at least {MIN_REPEAT_BUYERS} repeat buyers with spend above 0; "
            f"the orders have {int(keep.sum())}"
        )
    rows, counts = np.unique(np.column_stack([x[keep], m[keep]]), axis=0, return_counts=True)
    ux, um = rows.T
    return _fit(
        "Gamma-Gamma",
        GAMMA_GAMMA_NAMES,
        lambda params: gamma_gamma_log_likelihood(params, ux, um),
        lambda params: gamma_gamma_gradient(params, ux, um),
        counts.astype(np.float64),
        int(keep.sum()),
    )


# --- predictions --------------------------------------------------------------------------


def _death_odds(params: tuple[float, ...], x: Array, t_x: Array, big_t: Array) -> Array:
    """[x>0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x): P(dead)/P(alive) given the history."""
    r, alpha, a, b = params
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        odds = a / (b + x - 1) * np.exp((r + x) * np.log((alpha + big_t) / (alpha + t_x)))
    result: Array = np.where(x > 0, odds, 0.0)
    return result


def probability_alive(params: tuple[float, ...], x: Array, t_x: Array, big_t: Array) -> Array:
    """P(alive at T | x, t_x, T) = 1 / (1 + [x>0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))."""
    result: Array = 1 / (1 + _death_odds(params, x, t_x, big_t))
    return result


def expected_purchases(
    params: tuple[float, ...], t: Array | float, x: Array, t_x: Array, big_t: Array
) -> Array:
    """E[Y(t) | x, t_x, T]: expected purchases in the next t weeks (FHL 2005, eq. 10):
    (a+b+x-1)/(a-1) [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))]
    / (1 + [x>0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)). Broadcasts t against customers."""
    r, alpha, a, b = params
    t = np.asarray(t, dtype=np.float64)
    ratio = (alpha + big_t) / (alpha + big_t + t)
    term = (
        (a + b + x - 1)
        / (a - 1)
        * (1 - ratio ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + big_t + t)))
    )
    result: Array = term / (1 + _death_odds(params, x, t_x, big_t))
    return result


def unconditional_purchases(params: tuple[float, ...], t: Array) -> Array:
    """E[X(t)]: expected repeat purchases of a new customer in their first t weeks
    (FHL 2005, eq. 9): (a+b-1)/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b; a+b-1; t/(alpha+t))];
    0 for t <= 0."""
    r, alpha, a, b = params
    t = np.maximum(np.asarray(t, dtype=np.float64), 0.0)
    result: Array = (
        (a + b - 1)
        / (a - 1)
        * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))
    )
    return result


def expected_spend(params: tuple[float, ...], x: Array, m: Array) -> Array:
    """E[M | p, q, gamma, m, x] = p (gamma + m x) / (p x + q - 1): the expected mean spend per
    transaction, shrunk from the customer's mean toward the population's (p gamma / (q - 1)
    for a customer without repeat purchases). The posterior mean is finite only when
    p x + q > 1: with q <= 1 (spend so heavy-tailed that it has no finite mean) a customer
    without repeat purchases has no expected spend, and gets nan rather than the formula's
    negative value."""
    p, q, gamma = params
    spend = np.where(x > 0, np.nan_to_num(m), 0.0)
    shape = p * x + q - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        result: Array = np.where(shape > 0, p * (gamma + spend * x) / shape, np.nan)
    return result


def discounted_value(
    purchase_params: tuple[float, ...],
    spend: Array,
    x: Array,
    t_x: Array,
    big_t: Array,
    horizon_weeks: int,
    annual_discount_rate: float,
) -> Array:
    """Discounted CLV over the horizon, week by week as lifetimes' customer_lifetime_value
    does month by month: CLV = sum_{k=1..H} E[M] (E[Y(k)] - E[Y(k-1)]) / (1+d)^(k/52), with
    E[Y(k)] the expected purchases in the next k weeks, E[M] the expected spend, H the
    horizon in weeks and d the annual discount rate (a weekly rate of (1+d)^(1/52) - 1)."""
    weeks = np.arange(horizon_weeks + 1, dtype=np.float64)
    cumulative = expected_purchases(
        purchase_params, weeks[None, :], x[:, None], t_x[:, None], big_t[:, None]
    )
    per_week = np.diff(cumulative, axis=1)
    discount = (1 + annual_discount_rate) ** (-weeks[1:] / 52)
    # A row sum, not a matrix product: BLAS splits a product differently by its thread
    # count, which changed the last digits of a customer's CLV from machine to machine.
    result: Array = spend * np.sum(per_week * discount, axis=1)
    return result


# --- the holdout --------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackingWeek:
    week_start: str  # the week's first day (weeks counted from the first customer's first day)
    actual: int  # repeat purchase days of the calibration customers
    predicted: float
    is_holdout: bool


@dataclass(frozen=True)
class FrequencyBucket:
    frequency: str  # "0".."6", "7+"
    n_customers: int
    actual_mean: float  # mean repeat purchase days in the holdout
    predicted_mean: float  # mean E[Y(holdout weeks) | x, t_x, T]


@dataclass(frozen=True)
class Holdout:
    calibration_end: str
    holdout_end: str
    weeks: float
    actual_total: int
    predicted_total: float
    tracking: list[TrackingWeek]
    by_frequency: list[FrequencyBucket]


def tracking(engine: Engine, summary: Summary, params: tuple[float, ...]) -> list[TrackingWeek]:
    """Repeat purchases per week, actual against E[X] summed over customers: a customer first
    buying on day s contributes E[X(t1)] - E[X(t0)] to the week of days d0..d6, with
    t0 = (d0 - 1 - s)/7 and t1 = (d6 - s)/7 (a purchase on day d is at t = (d - s)/7)."""
    origin = summary.first_date.min()
    n_weeks = int(np.ceil(((np.datetime64(summary.holdout_end) - origin).astype(int) + 1) / 7))
    rows = engine.fetch_arrow(
        _query(_REPEATS_BY_DATE, summary.calibration_end, summary.holdout_end)
    )
    day = rows.column("order_date").to_numpy(zero_copy_only=False).astype("M8[D]") - origin
    actual = np.bincount(
        day.astype(int) // 7,
        weights=rows.column("n_repeat").to_numpy().astype(np.float64),
        minlength=n_weeks,
    )
    starts, counts = np.unique((summary.first_date - origin).astype(int), return_counts=True)
    week_days = np.arange(n_weeks + 1, dtype=np.float64) * 7 - 1  # last day of week k-1
    cumulative = unconditional_purchases(params, (week_days[None, :] - starts[:, None]) / 7)
    # A column sum, not `counts @ ...`: the same figures whatever BLAS's thread count.
    predicted = np.sum(counts[:, None] * np.diff(cumulative, axis=1), axis=0)
    calibration_weeks = ((np.datetime64(summary.calibration_end) - origin).astype(int)) // 7
    return [
        TrackingWeek(
            week_start=str(origin + np.timedelta64(7 * k, "D")),
            actual=int(actual[k]),
            predicted=float(predicted[k]),
            is_holdout=bool(k > calibration_weeks),
        )
        for k in range(n_weeks)  # one entry per week of the chart, not per customer
    ]


def predicted_holdout_total(summary: Summary, params: tuple[float, ...]) -> float:
    """E[repeat purchases after the calibration end up to the holdout end], summed over the
    calibration customers: E[X(t1)] - E[X(t0)] per customer first buying on day s, with
    t0 = (calibration end - s)/7 and t1 = (holdout end - s)/7, the tracking chart's sum
    over exactly the holdout's days."""
    starts, counts = np.unique(summary.first_date, return_counts=True)
    t0 = (np.datetime64(summary.calibration_end) - starts).astype(np.float64) / 7
    t1 = (np.datetime64(summary.holdout_end) - starts).astype(np.float64) / 7
    gained = unconditional_purchases(params, t1) - unconditional_purchases(params, t0)
    return float(np.sum(counts * gained))


def by_frequency(summary: Summary, params: tuple[float, ...]) -> list[FrequencyBucket]:
    """Mean holdout purchases against their conditional expectation, by calibration x."""
    predicted = expected_purchases(
        params, summary.holdout_weeks, summary.frequency, summary.recency, summary.age
    )
    bucket = np.minimum(summary.frequency, FREQUENCY_BUCKETS - 1).astype(int)
    n = np.bincount(bucket, minlength=FREQUENCY_BUCKETS)
    actual_sum = np.bincount(bucket, weights=summary.holdout_frequency, minlength=FREQUENCY_BUCKETS)
    predicted_sum = np.bincount(bucket, weights=predicted, minlength=FREQUENCY_BUCKETS)
    labels = [str(k) for k in range(FREQUENCY_BUCKETS - 1)] + [f"{FREQUENCY_BUCKETS - 1}+"]
    return [
        FrequencyBucket(
            labels[k], int(n[k]), float(actual_sum[k] / n[k]), float(predicted_sum[k] / n[k])
        )
        for k in range(FREQUENCY_BUCKETS)
        if n[k] > 0
    ]


# --- the analysis -------------------------------------------------------------------------


@dataclass(frozen=True)
class Customers:
    """Per-customer figures (arrays in user_id order)."""

    user_id: NDArray[np.str_]
    frequency: Array
    recency_weeks: Array
    age_weeks: Array
    mean_spend: Array
    expected_purchases: Array  # over the horizon
    probability_alive: Array
    expected_spend: Array
    clv: Array  # discounted, over the horizon

    def rows(self) -> list[dict[str, Any]]:
        """As JSON-ready rows (nan -> None)."""
        columns = {name: getattr(self, name) for name in self.__dataclass_fields__}
        table = pa.table({k: pa.array(v, from_pandas=True) for k, v in columns.items()})
        rows: list[dict[str, Any]] = table.to_pylist()
        return rows


def predict(
    summary: Summary,
    bgnbd: Fit,
    gamma_gamma: Fit,
    horizon_weeks: int,
    discount_rate: float,
) -> Customers:
    """Every customer's figures from the two fits: expected purchases over the horizon,
    P(alive), expected spend and discounted CLV (the one computation behind both
    `productlens clv` and the `customer_value` mart)."""
    x, t_x, big_t, m = summary.frequency, summary.recency, summary.age, summary.mean_spend
    spend = expected_spend(gamma_gamma.params, x, m)
    return Customers(
        user_id=summary.user_id,
        frequency=x,
        recency_weeks=t_x,
        age_weeks=big_t,
        mean_spend=m,
        expected_purchases=expected_purchases(bgnbd.params, float(horizon_weeks), x, t_x, big_t),
        probability_alive=probability_alive(bgnbd.params, x, t_x, big_t),
        expected_spend=spend,
        clv=discounted_value(bgnbd.params, spend, x, t_x, big_t, horizon_weeks, discount_rate),
    )


USERS_TABLE = "core.dim_users"
NO_SEGMENT = "(none)"

_SEGMENTS = """
select
    user_id,
    coalesce(segment, :no_segment) as segment
from core.dim_users
where is_current
"""


@dataclass(frozen=True)
class SegmentValue:
    """Customers of one current segment (`dim_users`): who has the highest lifetime value."""

    segment: str
    n_customers: int
    clv: float  # sum over the segment's customers
    clv_per_customer: float
    expected_purchases: float  # sum over the horizon
    mean_probability_alive: float


def by_segment(engine: Engine, customers: Customers) -> list[SegmentValue] | None:
    """CLV by each customer's current segment, highest CLV per customer first; None when
    the warehouse has no users dimension. A customer without a segment counts in (none)."""
    if engine.table_kind(*USERS_TABLE.split(".")) is None:
        return None
    query = exp.replace_placeholders(
        sqlglot.parse_one(_SEGMENTS, read="duckdb"), no_segment=exp.Literal.string(NO_SEGMENT)
    )
    users = engine.fetch_arrow(query)
    ids = np.asarray(users.column("user_id").to_numpy(zero_copy_only=False), dtype=str)
    names = np.asarray(users.column("segment").to_numpy(zero_copy_only=False), dtype=str)
    segment = np.full(customers.user_id.size, NO_SEGMENT, dtype=object)
    if len(ids):
        order = np.argsort(ids)
        at = np.minimum(np.searchsorted(ids[order], customers.user_id), len(ids) - 1)
        known = ids[order][at] == customers.user_id
        segment[known] = names[order][at[known]]
    labels, group = np.unique(segment.astype(str), return_inverse=True)
    n = np.bincount(group)
    clv = np.bincount(group, weights=customers.clv)
    purchases = np.bincount(group, weights=customers.expected_purchases)
    alive = np.bincount(group, weights=customers.probability_alive)
    rows = [
        SegmentValue(
            segment=str(labels[k]),
            n_customers=int(n[k]),
            clv=float(clv[k]),
            clv_per_customer=float(clv[k] / n[k]),
            expected_purchases=float(purchases[k]),
            mean_probability_alive=float(alive[k] / n[k]),
        )
        for k in range(len(labels))  # one row per segment
    ]
    return sorted(rows, key=lambda row: -row.clv_per_customer)


@dataclass(frozen=True)
class ClvResult:
    calibration_end: str
    horizon_weeks: int
    discount_rate: float
    n_customers: int
    n_repeat_buyers: int
    bgnbd: Fit
    gamma_gamma: Fit
    customers: Customers
    holdout: Holdout | None = None
    segments: list[SegmentValue] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Exact JSON: the fits, the holdout and one row per customer."""
        return {
            "calibration_end": self.calibration_end,
            "horizon_weeks": self.horizon_weeks,
            "discount_rate": self.discount_rate,
            "n_customers": self.n_customers,
            "n_repeat_buyers": self.n_repeat_buyers,
            "bgnbd": self.bgnbd.as_dict(),
            "gamma_gamma": self.gamma_gamma.as_dict(),
            "totals": {
                "expected_purchases": float(self.customers.expected_purchases.sum()),
                "mean_probability_alive": float(self.customers.probability_alive.mean()),
                # None, not NaN (which is not JSON), when some customer has no CLV.
                "clv": _finite_or_none({"v": float(self.customers.clv.sum())})["v"],
            },
            "by_segment": (
                [_finite_or_none(asdict(v)) for v in self.segments]
                if self.segments is not None
                else None
            ),
            "holdout": asdict(self.holdout) if self.holdout is not None else None,
            "notes": self.notes,
            "customers": self.customers.rows(),
        }


def _finite_or_none(row: dict[str, Any]) -> dict[str, Any]:
    """The row with nan and infinite floats as None (JSON has no NaN)."""
    return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in row.items()}


def analyze(
    engine: Engine,
    calibration_end: date | None = None,
    horizon_weeks: int = 52,
    discount_rate: float = 0.1,
) -> ClvResult:
    """Fit both models on the orders up to the calibration end, score every customer, and
    (with a calibration end before the last order) the holdout after it."""
    if not 1 <= horizon_weeks <= MAX_HORIZON_WEEKS:
        raise ClvInputError(
            f"the horizon must be 1 to {MAX_HORIZON_WEEKS} weeks", option="--horizon"
        )
    if not 0 <= discount_rate < 10:
        raise ClvInputError("the annual discount rate must be in [0, 10)", option="--discount-rate")
    summary = summarize(engine, calibration_end)
    x, m = summary.frequency, summary.mean_spend
    bgnbd = fit_bgnbd(x, summary.recency, summary.age)
    gamma_gamma = fit_gamma_gamma(x, m)
    customers = predict(summary, bgnbd, gamma_gamma, horizon_weeks, discount_rate)
    notes: list[str] = []
    n_zero = int(np.sum((x > 0) & ~(m > 0)))
    if n_zero:
        notes.append(
            f"Gamma-Gamma: {n_zero} repeat buyers whose repeat purchases total $0 are left out "
            "of the fit (the model's values are positive); their expected spend is still given."
        )
    if no_dropout_seen(bgnbd):
        notes.append(
            f"BG/NBD: the mean dropout probability a/(a+b) = {mean_dropout(bgnbd):.2g} is below "
            f"{MIN_DROPOUT:g}: no customer was seen leaving (too short a history), so every "
            "customer is extrapolated as buying forever and the CLV means little; the "
            "customer_value mart gives no fit (no_dropout_seen)."
        )
    n_no_spend = int(np.sum(~np.isfinite(customers.expected_spend)))
    if n_no_spend:
        notes.append(
            f"Gamma-Gamma: q = {gamma_gamma.params[1]:.4g} is not above 1, so spend has no "
            f"finite mean (a few very large orders); {n_no_spend} customers without enough "
            "repeat purchases have no expected spend and no CLV, and the total CLV is not given."
        )
    for fit in (bgnbd, gamma_gamma):
        unknown = [n for n, e in zip(fit.names, fit.standard_errors, strict=True) if not e > 0]
        if unknown:
            notes.append(
                f"{fit.model}: no standard error for {', '.join(unknown)}: the likelihood is "
                "flat there (a parameter running off to its bound, such as a and b growing "
                "together when every customer drops out with the same probability)."
            )
    holdout = None
    if summary.holdout_end > summary.calibration_end:
        track = tracking(engine, summary, bgnbd.params)
        holdout = Holdout(
            calibration_end=summary.calibration_end.isoformat(),
            holdout_end=summary.holdout_end.isoformat(),
            weeks=summary.holdout_weeks,
            # From the days after the calibration end, not from the chart's weeks: a
            # calibration end in mid-week puts the rest of that week in the holdout.
            actual_total=int(summary.holdout_frequency.sum()),
            predicted_total=predicted_holdout_total(summary, bgnbd.params),
            tracking=track,
            by_frequency=by_frequency(summary, bgnbd.params),
        )
    return ClvResult(
        calibration_end=summary.calibration_end.isoformat(),
        horizon_weeks=horizon_weeks,
        discount_rate=discount_rate,
        n_customers=summary.n,
        n_repeat_buyers=int(np.sum(x > 0)),
        bgnbd=bgnbd,
        gamma_gamma=gamma_gamma,
        customers=customers,
        holdout=holdout,
        segments=by_segment(engine, customers),
        notes=notes,
    )


def parse_horizon(text: str) -> int:
    """`52w` or `52` -> 52 weeks."""
    value = text.strip().lower().removesuffix("w")
    if not value.isdigit() or not 1 <= int(value) <= MAX_HORIZON_WEEKS:
        raise ClvInputError(
            f"cannot read the horizon {text!r}: give whole weeks from 1 to "
            f"{MAX_HORIZON_WEEKS}, like 52w",
            option="--horizon",
        )
    return int(value)


__all__ = [
    "ClvResult",
    "Fit",
    "Summary",
    "analyze",
    "bgnbd_log_likelihood",
    "discounted_value",
    "expected_purchases",
    "expected_spend",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "gamma_gamma_log_likelihood",
    "parse_horizon",
    "predict",
    "predicted_holdout_total",
    "probability_alive",
    "summarize",
    "summary_from_table",
    "summary_to_date_query",
]
