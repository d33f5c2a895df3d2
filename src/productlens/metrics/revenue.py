"""Revenue: the ARR bridge, revenue concentration, CLV by segment and time to first purchase.

Revenue is net revenue as `core.int_order_revenue` defines it for the whole warehouse:
the amount of completed orders (refunded, pending and cancelled orders count 0).

- ARR bridge: `marts.arr_monthly`, the months from the one holding --from to the one
  holding --to (local dates; the mart measures ARR at each month's end): opening ARR +
  new + expansion + contraction + churned + reactivation = closing ARR.
- Concentration: net revenue per buyer (a user with at least one completed order, $0
  orders included) over the orders placed in the range; the share the top 1% and top 10%
  of buyers hold (the top ceil(n/100) and ceil(n/10) buyers; ties cannot change a sum of
  the top k), and the Gini coefficient G = 2 sum(i x_i) / (n sum x) - (n + 1) / n over
  the amounts sorted ascending (i = 1..n); 0 when everyone has the same, no value when
  nobody paid.
- CLV by segment: `marts.customer_metrics` by the user's current segment (`segment`, not
  `segment_at_first_order`): historical CLV (net revenue to date) per user and per buyer,
  and the mean predicted 12-month CLV. A snapshot as of the data's last day: the range
  does not apply.
- Time to first purchase: `customer_metrics.days_to_first_purchase` (calendar days from
  the signup date to the first completed order's date) of the buyers whose first
  purchase falls in the range; mean and median (the midpoint of the two middle values
  for an even count). A buyer whose first order is dated before their signup (negative
  days; the `first_purchase_after_signup` data test warns on them) is counted apart as
  `n_before_signup` and left out of the mean and median (see `FirstPurchase`).

A section is None, with a note saying why, when the warehouse has no table or no rows
for it (a shop world has no subscriptions; a SaaS world no orders).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp

from productlens.engines.base import split_name
from productlens.metrics.scope import Scope, date_literal, range_condition

if TYPE_CHECKING:
    from productlens.engines import Engine

ARR_TABLE = "marts.arr_monthly"
ORDER_REVENUE_TABLE = "core.int_order_revenue"
CUSTOMERS_TABLE = "marts.customer_metrics"
SEGMENT_COLUMN = "segment"


@dataclass(frozen=True)
class ArrMonth:
    """One month of the ARR bridge; the movements add up from opening to closing."""

    month: str  # the month's first day, YYYY-MM-DD
    opening_arr: float
    new_arr: float
    expansion_arr: float
    contraction_arr: float  # <= 0
    churned_arr: float  # <= 0: cancelled to zero
    reactivation_arr: float
    net_new_arr: float
    closing_arr: float
    n_paying_users: int


@dataclass(frozen=True)
class Concentration:
    """How net revenue is spread over buyers."""

    n_buyers: int
    n_paying: int  # buyers with net revenue above 0
    net_revenue: float
    top_1pct_buyers: int
    top_1pct_share: float | None
    top_10pct_buyers: int
    top_10pct_share: float | None
    gini: float | None


@dataclass(frozen=True)
class SegmentValue:
    """Customer value of one segment (the users' current segment)."""

    segment: str | None
    n_users: int
    n_buyers: int
    net_revenue: float
    clv_per_user: float
    clv_per_buyer: float | None
    predicted_clv_12m_per_user: float


@dataclass(frozen=True)
class FirstPurchase:
    """Days from signup to first purchase over the buyers whose first purchase is in range.

    `n_buyers`, `mean_days` and `median_days` are over the buyers who signed up on or
    before their first order's date. `n_before_signup` counts the others apart: an order
    dated before the signup contradicts the data (an imported order, a re-created account,
    a clock), not a fast buyer, and averaging its negative days in would pull the mean
    below what any real buyer took, silently. Without such buyers the mean and median are
    None (only buyers before signup in range).
    """

    n_buyers: int
    mean_days: float | None
    median_days: float | None
    n_before_signup: int = 0


@dataclass(frozen=True)
class RevenueResult:
    arr_bridge: tuple[ArrMonth, ...] | None
    concentration: Concentration | None
    clv_by_segment: tuple[SegmentValue, ...] | None
    time_to_first_purchase: FirstPurchase | None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "arr_bridge": None if self.arr_bridge is None else [asdict(m) for m in self.arr_bridge],
            "concentration": None if self.concentration is None else asdict(self.concentration),
            "clv_by_segment": None
            if self.clv_by_segment is None
            else {
                "segment_column": SEGMENT_COLUMN,
                "segments": [asdict(s) for s in self.clv_by_segment],
            },
            "time_to_first_purchase": None
            if self.time_to_first_purchase is None
            else asdict(self.time_to_first_purchase),
            "notes": list(self.notes),
        }


# --- queries (fixed shapes; the range enters as expressions) ------------------------------

_ARR = """
select month_start_date, gross_arr - net_new_arr as opening_arr, new_arr, expansion_arr,
    contraction_arr, cancelled_arr as churned_arr, reactivation_arr, net_new_arr,
    gross_arr as closing_arr, n_paying_users
from marts.arr_monthly
order by month_start_date
"""

# ceil(n / 100.0): n / 100.0 is exact when n is a multiple of 100, and otherwise at least
# 1/100 away from an integer, so no rounding can move the ceiling.
_CONCENTRATION = """
with per_user as (
    select user_id, sum(net_revenue) as revenue
    from core.int_order_revenue
    where is_recognized
    group by user_id
),
ranked as (
    select
        revenue,
        row_number() over (order by revenue desc, user_id) as revenue_rank,
        count(*) over () as n
    from per_user
)
select
    count(*) as n_buyers,
    coalesce(sum(case when revenue > 0 then 1 else 0 end), 0) as n_paying,
    coalesce(sum(revenue), 0) as net_revenue,
    coalesce(max(ceil(n / 100.0)), 0) as top_1pct_buyers,
    coalesce(sum(case when revenue_rank <= ceil(n / 100.0) then revenue else 0 end), 0)
        as top_1pct_revenue,
    coalesce(max(ceil(n / 10.0)), 0) as top_10pct_buyers,
    coalesce(sum(case when revenue_rank <= ceil(n / 10.0) then revenue else 0 end), 0)
        as top_10pct_revenue,
    coalesce(sum((n + 1 - revenue_rank) * revenue), 0) as rank_weighted_revenue
from ranked
"""

_CLV = """
select
    segment as segment,
    count(*) as n_users,
    sum(case when n_orders > 0 then 1 else 0 end) as n_buyers,
    sum(revenue) as net_revenue,
    avg(historical_clv) as clv_per_user,
    sum(historical_clv) / nullif(sum(case when n_orders > 0 then 1 else 0 end), 0)
        as clv_per_buyer,
    avg(predicted_clv_12m) as predicted_clv_12m_per_user
from marts.customer_metrics
group by segment
order by clv_per_user desc, segment nulls last
"""

# The median as the mean of the middle row(s): 2r in [n, n + 2] picks row (n + 1) / 2 for
# an odd n and rows n / 2 and n / 2 + 1 for an even n (portable: no percentile functions).
_FIRST_PURCHASE = """
with buyers as (
    select days_to_first_purchase as days
    from marts.customer_metrics
    where n_orders > 0 and days_to_first_purchase is not null
),
ranked as (
    select
        days,
        row_number() over (order by days) as days_rank,
        count(*) over () as n
    from buyers
    where days >= 0
)
select
    count(*) as n_buyers,
    (select count(*) from buyers where days < 0) as n_before_signup,
    avg(cast(days as double)) as mean_days,
    avg(case when 2 * days_rank between n and n + 2 then cast(days as double) end)
        as median_days
from ranked
"""


def _parse(sql: str) -> exp.Select:
    query = sqlglot.parse_one(sql, read="duckdb")
    assert isinstance(query, exp.Select)
    return query


def _where_in_cte(query: exp.Select, cte: str, condition: exp.Condition | None) -> exp.Select:
    """The query with `condition` added to the WHERE of its CTE named `cte`."""
    if condition is None:
        return query
    for found in query.find_all(exp.CTE):
        if found.alias_or_name == cte:
            inner = found.this
            assert isinstance(inner, exp.Select)
            found.set("this", inner.where(condition, copy=False))
    return query


def arr_query(scope: Scope) -> exp.Select:
    """The ARR bridge of the months from the one holding --from to the one holding --to
    (as local dates: a month is labelled by its first day, whatever the zone)."""
    query = _parse(_ARR)
    conditions: list[exp.Expression] = []
    if scope.start is not None:
        first = scope.local(scope.start).date().replace(day=1)
        conditions.append(exp.column("month_start_date") >= date_literal(first))
    if scope.end is not None:
        last = scope.local(scope.end - timedelta(microseconds=1)).date()
        conditions.append(exp.column("month_start_date") <= date_literal(last))
    return query.where(exp.and_(*conditions)) if conditions else query


def concentration_query(scope: Scope) -> exp.Select:
    """One row: buyers, net revenue, top-1% and top-10% revenue, the Gini weighted sum."""
    return _where_in_cte(_parse(_CONCENTRATION), "per_user", range_condition(scope, "order_ts"))


def clv_query(_scope: Scope) -> exp.Select:
    """One row per current segment (a snapshot: the range does not apply)."""
    return _parse(_CLV)


def first_purchase_query(scope: Scope) -> exp.Select:
    """One row: buyers whose first purchase is in range, mean and median days to it."""
    return _where_in_cte(
        _parse(_FIRST_PURCHASE), "buyers", range_condition(scope, "first_order_ts")
    )


QUERIES = {
    "arr_bridge": arr_query,
    "concentration": concentration_query,
    "clv_by_segment": clv_query,
    "time_to_first_purchase": first_purchase_query,
}


# --- running them -------------------------------------------------------------------------


def _fetch(engine: Engine, query: exp.Query) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = engine.fetch_arrow(query).to_pylist()
    return rows


def _float(value: Any) -> float:
    return float(value) if value is not None else 0.0


def arr_bridge(engine: Engine, scope: Scope) -> tuple[ArrMonth, ...]:
    return tuple(
        ArrMonth(
            month=row["month_start_date"].isoformat(),
            opening_arr=_float(row["opening_arr"]),
            new_arr=_float(row["new_arr"]),
            expansion_arr=_float(row["expansion_arr"]),
            contraction_arr=_float(row["contraction_arr"]),
            churned_arr=_float(row["churned_arr"]),
            reactivation_arr=_float(row["reactivation_arr"]),
            net_new_arr=_float(row["net_new_arr"]),
            closing_arr=_float(row["closing_arr"]),
            n_paying_users=int(row["n_paying_users"]),
        )
        for row in _fetch(engine, arr_query(scope))
    )


def gini(n: int, total: float, rank_weighted: float) -> float | None:
    """G = 2 sum(i x_i) / (n sum x) - (n + 1) / n, from n, sum x and sum(i x_i)."""
    if n == 0 or total <= 0:
        return None
    return 2.0 * rank_weighted / (n * total) - (n + 1) / n


def concentration(engine: Engine, scope: Scope) -> Concentration:
    row = _fetch(engine, concentration_query(scope))[0]
    n, total = int(row["n_buyers"]), _float(row["net_revenue"])

    def share(part: Any) -> float | None:
        return _float(part) / total if total > 0 else None

    return Concentration(
        n_buyers=n,
        n_paying=int(row["n_paying"]),
        net_revenue=total,
        top_1pct_buyers=int(row["top_1pct_buyers"]),
        top_1pct_share=share(row["top_1pct_revenue"]),
        top_10pct_buyers=int(row["top_10pct_buyers"]),
        top_10pct_share=share(row["top_10pct_revenue"]),
        gini=gini(n, total, _float(row["rank_weighted_revenue"])),
    )


def clv_by_segment(engine: Engine, scope: Scope) -> tuple[SegmentValue, ...]:
    return tuple(
        SegmentValue(
            segment=row["segment"],
            n_users=int(row["n_users"]),
            n_buyers=int(row["n_buyers"]),
            net_revenue=_float(row["net_revenue"]),
            clv_per_user=_float(row["clv_per_user"]),
            clv_per_buyer=None if row["clv_per_buyer"] is None else float(row["clv_per_buyer"]),
            predicted_clv_12m_per_user=_float(row["predicted_clv_12m_per_user"]),
        )
        for row in _fetch(engine, clv_query(scope))
    )


def time_to_first_purchase(engine: Engine, scope: Scope) -> FirstPurchase | None:
    """Signup to first purchase in range (see `FirstPurchase`); None with no buyer at all."""
    row = _fetch(engine, first_purchase_query(scope))[0]
    if not row["n_buyers"] and not row["n_before_signup"]:
        return None
    return FirstPurchase(
        n_buyers=int(row["n_buyers"]),
        mean_days=None if row["mean_days"] is None else float(row["mean_days"]),
        median_days=None if row["median_days"] is None else float(row["median_days"]),
        n_before_signup=int(row["n_before_signup"]),
    )


def revenue(engine: Engine, scope: Scope | None = None) -> RevenueResult:
    """Every section the warehouse has the tables and rows for; a note for the others."""
    scope = scope or Scope()
    notes: list[str] = []

    arr: tuple[ArrMonth, ...] | None = None
    if engine.table_kind(*split_name(ARR_TABLE)) is None:
        notes.append("ARR bridge: no marts.arr_monthly in the warehouse (run build).")
    else:
        arr = arr_bridge(engine, scope) or None
        if arr is None:
            notes.append("ARR bridge: no subscription months in the range (no subscriptions).")

    conc: Concentration | None = None
    if engine.table_kind(*split_name(ORDER_REVENUE_TABLE)) is None:
        notes.append("Concentration: no core.int_order_revenue in the warehouse (run build).")
    else:
        conc = concentration(engine, scope)
        if conc.n_buyers == 0:
            conc = None
            notes.append("Concentration: no completed orders in the range.")

    clv: tuple[SegmentValue, ...] | None = None
    first: FirstPurchase | None = None
    if engine.table_kind(*split_name(CUSTOMERS_TABLE)) is None:
        notes.append("CLV and time to first purchase: no marts.customer_metrics (run build).")
    else:
        segments = clv_by_segment(engine, scope)
        if any(s.n_buyers for s in segments):
            clv = segments
            notes.append(
                "CLV by segment: users' current segment, net revenue to the data's last "
                "day (the range does not apply)."
            )
        else:
            notes.append("CLV by segment: no buyer among the known users.")
        first = time_to_first_purchase(engine, scope)
        if first is None:
            notes.append("Time to first purchase: no first purchase in the range.")
    return RevenueResult(arr, conc, clv, first, tuple(notes))
