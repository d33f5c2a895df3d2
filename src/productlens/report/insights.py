"""Insights: plain-language sentences computed from the sections' numbers.

Each function reads one section's dataclass and returns an `Insight` (or None when the
section has too little to say it): its text and the numbers it states (`values`), so a
test can recompute every one of them from the warehouse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from productlens.metrics.customer_value import (
    ACTIVE_AT,
    AT_RISK_AT,
    BANDS,
    HORIZON_WEEKS,
    NO_ORDERS_BASIS,
)
from productlens.metrics.retention import Cohort
from productlens.report.sections import (
    ExperimentSummary,
    FunnelSection,
    HealthSection,
    ProductsSection,
    RetentionSection,
    RevenueSection,
    UsageSection,
)

Value = float | int | str | None
GRAIN_ADJECTIVE = {"day": "daily", "week": "weekly", "month": "monthly"}
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Insight:
    key: str
    text: str
    values: dict[str, Value] = field(default_factory=dict)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def signed(x: float | None, spec: str = "+.1%") -> str:
    """`x` formatted with a sign (`spec`, a format spec with `+`), but a value that rounds
    to zero unsigned: "-0.0%" read as a fall where there was none. "-" when unknown."""
    if x is None:
        return "-"
    text = format(x, spec)
    zero = format(0.0, spec.replace("+", "", 1))
    return zero if text.lstrip("+-") == zero else text


def _n(count: int, noun: str) -> str:
    """The count and its noun, singular for exactly one: "1 user", "2 users"."""
    return f"{count:,} {noun if count == 1 else noun + 's'}"


def _money(x: float) -> str:
    return f"{x:,.2f}"


def _days(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# --- funnel -----------------------------------------------------------------------------------


def funnel_conversion(f: FunnelSection) -> Insight:
    first, last = f.steps[0], f.steps[-1]
    rate = last.count / first.count
    return Insight(
        "funnel_conversion",
        f"{last.count:,} of {_n(first.count, 'user')} who did {first.event} reached {last.event} "
        f"within {_days(f.window.total_seconds())} ({_pct(rate)}).",
        {"step": last.event, "n_entered": first.count, "n_converted": last.count, "rate": rate},
    )


def biggest_dropoff(f: FunnelSection) -> Insight | None:
    drops = [
        (1 - f.steps[i].count / f.steps[i - 1].count, i)
        for i in range(1, len(f.steps))
        if f.steps[i - 1].count
    ]
    if not drops:
        return None
    # The largest rate; the earliest step on a tie.
    rate, i = max(drops, key=lambda d: (d[0], -d[1]))
    before, after = f.steps[i - 1], f.steps[i]
    lost = before.count - after.count
    return Insight(
        "biggest_dropoff",
        f"The biggest drop-off is from {before.event} to {after.event}: {_pct(rate)} of the "
        f"users who reached {before.event} ({_n(lost, 'user')}) went no further.",
        {"from_step": before.event, "to_step": after.event, "rate": rate, "n_lost": lost},
    )


def device_gap(f: FunnelSection) -> Insight | None:
    rates = {
        device: steps[-1].count / steps[0].count
        for device, steps in f.by_device.items()
        if steps[0].count
    }
    if len(rates) < 2:
        return None
    best = max(sorted(rates), key=lambda d: rates[d])
    worst = min(sorted(rates), key=lambda d: rates[d])
    gap = rates[best] - rates[worst]
    if gap == 0:  # every device alike: no best and worst to name (it named one twice)
        return Insight(
            "device_gap",
            f"Every device converts alike ({_pct(rates[best])}): no gap.",
            {
                "best_device": best,
                "best_rate": rates[best],
                "worst_device": worst,
                "worst_rate": rates[worst],
                "gap": gap,
            },
        )
    return Insight(
        "device_gap",
        f"{best} converts best ({_pct(rates[best])}), {worst} worst ({_pct(rates[worst])}): "
        f"a gap of {gap * 100:.1f} percentage points.",
        {
            "best_device": best,
            "best_rate": rates[best],
            "worst_device": worst,
            "worst_rate": rates[worst],
            "gap": gap,
        },
    )


def slowest_step(f: FunnelSection) -> Insight | None:
    timed = [s for s in f.steps[1:] if s.median_time_s is not None]
    if not timed:
        return None
    slow = max(timed, key=lambda s: s.median_time_s or 0.0)
    index = f.steps.index(slow)
    assert slow.median_time_s is not None
    return Insight(
        "slowest_step",
        f"The slowest step is {f.steps[index - 1].event} to {slow.event}: a median of "
        f"{_days(slow.median_time_s)} among those who made it.",
        {"to_step": slow.event, "median_s": slow.median_time_s, "avg_s": slow.avg_time_s},
    )


# --- retention and engagement -----------------------------------------------------------------


def retention_rate(cohorts: Sequence[Cohort], period: int) -> tuple[int, int, int] | None:
    """(returned, cohort users, cohorts) over the cohorts whose `period` is observed."""
    seen = [c for c in cohorts if len(c.counts) > period and c.counts[period] is not None]
    users = sum(c.size for c in seen)
    if not users:
        return None
    return sum(c.counts[period] or 0 for c in seen), users, len(seen)


def retention_after(r: RetentionSection, grain: str, period: int) -> Insight | None:
    cohorts = r.day_cohorts if grain == "day" else r.week_cohorts
    got = retention_rate(cohorts, period)
    if got is None:
        return None
    returned, users, n_cohorts = got
    rate = returned / users
    return Insight(
        f"retention_{grain}_{period}",
        f"{_pct(rate)} of new users were active again {grain} {period} after signing up "
        f"({returned:,} of {users:,}, over {_n(n_cohorts, GRAIN_ADJECTIVE[grain] + ' cohort')}).",
        {"rate": rate, "n_returned": returned, "n_users": users, "n_cohorts": n_cohorts},
    )


def stickiness(r: RetentionSection) -> Insight | None:
    """Mean DAU, WAU and MAU over the days, and stickiness as mean DAU / mean MAU."""
    a = r.activity
    if a.num_rows == 0:
        return None
    n = a.num_rows
    dau, wau, mau = (sum(a.column(k).to_pylist()) / n for k in ("dau", "wau", "mau"))
    if not mau:
        return None
    return Insight(
        "stickiness",
        f"On an average day {dau:,.1f} users were active, {wau:,.1f} in the trailing week and "
        f"{mau:,.1f} in the trailing 30 days: stickiness (DAU/MAU) {_pct(dau / mau)}.",
        {"dau": dau, "wau": wau, "mau": mau, "stickiness": dau / mau, "n_days": n},
    )


def lifecycle_totals(r: RetentionSection) -> Insight | None:
    """New, resurrecting and dormant users summed over the weeks."""
    if not r.lifecycle:
        return None
    new = sum(w.new for w in r.lifecycle)
    resurrecting = sum(w.resurrecting for w in r.lifecycle)
    dormant = sum(w.dormant for w in r.lifecycle)
    return Insight(
        "lifecycle",
        f"Over {_n(len(r.lifecycle), 'week')}: {_n(new, 'new user')}, {resurrecting:,} came "
        f"back after a dormant week, and {_n(dormant, 'time')} a user went dormant.",
        {"n_weeks": len(r.lifecycle), "new": new, "resurrecting": resurrecting, "dormant": dormant},
    )


# --- revenue ----------------------------------------------------------------------------------


def top_decile_share(r: RevenueSection) -> Insight | None:
    c = r.concentration
    if c is None or c.top_10pct_share is None:
        return None
    return Insight(
        "top_decile_share",
        f"The top 10% of buyers ({c.top_10pct_buyers:,} of {c.n_buyers:,}) bring "
        f"{_pct(c.top_10pct_share)} of net revenue.",
        {
            "share": c.top_10pct_share,
            "n_top": c.top_10pct_buyers,
            "n_buyers": c.n_buyers,
            "gini": c.gini,
        },
    )


def seasonality(r: RevenueSection) -> Insight | None:
    w = r.by_weekday
    if w is None or w.num_rows < 2:
        return None
    rows = w.to_pylist()
    best = max(rows, key=lambda x: (x["per_day"], -x["weekday"]))
    worst = min(rows, key=lambda x: (x["per_day"], x["weekday"]))
    return Insight(
        "seasonality",
        f"Sales peak on {WEEKDAYS[best['weekday']]}s ({_money(best['per_day'])} a day on "
        f"average) and are lowest on {WEEKDAYS[worst['weekday']]}s "
        f"({_money(worst['per_day'])}).",
        {
            "best_weekday": WEEKDAYS[best["weekday"]],
            "best_per_day": best["per_day"],
            "worst_weekday": WEEKDAYS[worst["weekday"]],
            "worst_per_day": worst["per_day"],
        },
    )


def arr_latest(r: RevenueSection) -> Insight | None:
    if not r.arr:
        return None
    m = r.arr[-1]
    return Insight(
        "arr",
        f"ARR closed {m.month[:7]} at {_money(m.closing_arr)} ({m.n_paying_users:,} paying): "
        f"{_money(m.new_arr)} new, {_money(m.expansion_arr)} expansion, "
        f"{_money(m.contraction_arr)} contraction, {_money(m.churned_arr)} cancelled.",
        {
            "month": m.month,
            "closing_arr": m.closing_arr,
            "new_arr": m.new_arr,
            "expansion_arr": m.expansion_arr,
            "contraction_arr": m.contraction_arr,
            "cancelled_arr": m.churned_arr,
            "n_paying": m.n_paying_users,
        },
    )


def top_clv_segment(r: RevenueSection) -> Insight | None:
    if not r.clv:
        return None
    best = max(r.clv, key=lambda s: (s.clv_per_user, str(s.segment)))
    # Users without a segment (none in the users file) are a group too, not "the None segment".
    who = (
        "Users without a segment have"
        if best.segment is None
        else f"The {best.segment} segment has"
    )
    return Insight(
        "top_clv_segment",
        f"{who} the highest lifetime value: "
        f"{_money(best.clv_per_user)} net revenue per user to date ({_n(best.n_users, 'user')}).",
        {"segment": best.segment, "clv_per_user": best.clv_per_user, "n_users": best.n_users},
    )


def customer_value_fit(r: RevenueSection) -> Insight | None:
    """The fit in one sentence: what it expects over the next 52 weeks, or why there is
    no prediction (the figures beside it are then historical)."""
    v = r.customer_value
    if v is None:
        # Orders but no fit: a warehouse built before customer_value was a mart.
        return (
            None
            if not r.clv
            else Insight(
                "customer_value_fit",
                "No predicted lifetime value is shown: the warehouse has no "
                "marts.customer_value yet (run `productlens build`). The customer figures "
                "here are historical (net revenue to date).",
            )
        )
    values: dict[str, Value] = {
        "fit_status": v.fit_status,
        "n_customers": v.n_customers,
        "n_repeat_buyers": v.n_repeat_buyers,
        "history_weeks": v.history_weeks,
    }
    data = (
        f"{_n(v.n_customers, 'customer')} ({_n(v.n_repeat_buyers, 'repeat buyer')}, "
        f"{v.history_weeks:.1f} weeks of orders)"
    )
    if not v.fitted:
        return Insight(
            "customer_value_fit",
            f"No predicted lifetime value is shown for the {data}: {v.reason}. The customer "
            "figures here are historical (net revenue to date, churn risk by days since the "
            "last order).",
            values,
        )
    assert v.expected_purchases is not None
    assert v.predicted_clv is not None
    return Insight(
        "customer_value_fit",
        f"Fitted on {data}, the models expect {v.expected_purchases:,.1f} purchases worth "
        f"{_money(v.predicted_clv)} (discounted) over the next {HORIZON_WEEKS} weeks.",
        values | {"expected_purchases": v.expected_purchases, "predicted_clv": v.predicted_clv},
    )


def top_predicted_clv_segment(r: RevenueSection) -> Insight | None:
    """The segment whose customers are worth the most over the next 52 weeks (fitted only)."""
    v = r.customer_value
    if v is None or not v.fitted:
        return None
    rated = [s for s in v.segments if s.predicted_clv_per_customer is not None]
    if not rated:
        return None
    best = max(rated, key=lambda s: (s.predicted_clv_per_customer or 0.0, str(s.segment or "")))
    assert best.predicted_clv_per_customer is not None
    return Insight(
        "top_predicted_clv_segment",
        f"The {best.segment or '(none)'} segment has the highest predicted lifetime value: "
        f"{_money(best.predicted_clv_per_customer)} per customer over the next "
        f"{HORIZON_WEEKS} weeks (discounted), against {_money(best.historical_clv_per_customer)} "
        f"per customer to date ({_n(best.n_customers, 'customer')}).",
        {
            "segment": best.segment,
            "predicted_clv_per_customer": best.predicted_clv_per_customer,
            "historical_clv_per_customer": best.historical_clv_per_customer,
            "n_customers": best.n_customers,
        },
    )


# How each basis of the churn bands is said: the words before the counts, and each band's.
CHURN_BASIS = {
    "probability_alive": (
        "",
        (
            f"likely active (probability alive {ACTIVE_AT:.0%} or more)",
            f"at risk ({AT_RISK_AT:.0%} to {ACTIVE_AT:.0%})",
            f"likely churned (below {AT_RISK_AT:.0%})",
        ),
    ),
    "recency": (" by days since their last order", ("active", "at risk", "churned")),
}


def churn_bands(r: RevenueSection) -> Insight | None:
    """Customers per churn-risk band, on the basis the mart used for buyers."""
    v = r.customer_value
    if v is None:
        return None
    counts = v.buyer_bands()
    total = sum(counts.values())
    if not total:
        return None
    bases = sorted({b.basis for b in v.churn if b.basis != NO_ORDERS_BASIS})
    basis = bases[0] if len(bases) == 1 else "mixed"
    by, words = CHURN_BASIS.get(basis, ("", ("active", "at risk", "churned")))
    parts = [
        f"{counts[band]:,} ({_pct(counts[band] / total)}) {word}"
        for band, word in zip(BANDS[:3], words, strict=True)
    ]
    values: dict[str, Value] = {
        "basis": basis,
        "n_customers": total,
        "n_never_bought": v.never_bought,
    }
    for band in BANDS[:3]:
        values[f"n_{band}"] = counts[band]
        values[f"share_{band}"] = counts[band] / total
    return Insight(
        "churn_bands",
        f"Of {_n(total, 'customer')}{by}: {parts[0]}, {parts[1]} and {parts[2]}; "
        f"{_n(v.never_bought, 'user')} never bought.",
        values,
    )


def probability_alive(r: RevenueSection) -> Insight | None:
    """Mean probability alive over all customers and over repeat buyers (fitted only)."""
    v = r.customer_value
    if v is None or v.mean_probability_alive is None:
        return None
    one_time = v.n_customers - v.n_repeat_buyers
    repeat = (
        ""
        if v.mean_probability_alive_repeat is None
        else f"; {_pct(v.mean_probability_alive_repeat)} over the "
        f"{_n(v.n_repeat_buyers, 'repeat buyer')}"
    )
    one_time_note = (
        ""
        if not one_time
        else f" The {_n(one_time, 'one-time buyer')} {'counts' if one_time == 1 else 'count'} "
        "as active: the model lets a customer drop out only after a repeat purchase."
    )
    return Insight(
        "probability_alive",
        f"Customers are still active with probability {_pct(v.mean_probability_alive)} on "
        f"average{repeat}.{one_time_note}",
        {
            "mean": v.mean_probability_alive,
            "mean_repeat": v.mean_probability_alive_repeat,
            "n_repeat_buyers": v.n_repeat_buyers,
            "n_one_time": one_time,
        },
    )


def first_purchase(r: RevenueSection) -> Insight | None:
    p = r.first_purchase
    if p is None:
        return None
    values: dict[str, Value] = {
        "mean_days": p.mean_days,
        "median_days": p.median_days,
        "n_buyers": p.n_buyers,
        "n_before_signup": p.n_before_signup,
    }
    # Always said, 0 included: the reader should know the figure excludes such buyers.
    apart = f" {_n(p.n_before_signup, 'buyer')} with an order dated before signup left out."
    if p.mean_days is None or p.median_days is None:
        text = "No buyer's first purchase in range came on or after their signup."
    else:
        text = (
            f"Buyers take {p.mean_days:.1f} days on average from signup to their first "
            f"purchase (median {p.median_days:.1f}, {_n(p.n_buyers, 'buyer')})."
        )
    return Insight("first_purchase", text + apart, values)


# --- products and marketing -------------------------------------------------------------------


def top_products(p: ProductsSection, n: int = 3) -> Insight | None:
    if p.products is None:
        return None
    rows = p.products.slice(0, n).to_pylist()
    listed = ", ".join(f"{r['product_name']} ({_money(r['margin'])})" for r in rows)
    return Insight(
        "top_products",
        f"Highest-margin products: {listed}.",
        {f"product_{i + 1}": r["product_id"] for i, r in enumerate(rows)}
        | {f"margin_{i + 1}": r["margin"] for i, r in enumerate(rows)},
    )


def top_category(p: ProductsSection) -> Insight | None:
    if p.categories is None or p.categories.num_rows == 0:
        return None
    best = p.categories.slice(0, 1).to_pylist()[0]
    return Insight(
        "top_category",
        f"{best['category']} earns the most margin: {_money(best['margin'])} on "
        f"{_money(best['revenue'])} revenue ({_pct(best['margin_pct'])}).",
        {
            "category": best["category"],
            "margin": best["margin"],
            "revenue": best["revenue"],
            "margin_pct": best["margin_pct"],
        },
    )


def fastest_turnover(p: ProductsSection) -> Insight | None:
    if p.categories is None:
        return None
    rows = [r for r in p.categories.to_pylist() if r["inventory_turnover"] is not None]
    if not rows:
        return None
    best = max(rows, key=lambda r: (r["inventory_turnover"], r["category"]))
    return Insight(
        "inventory_turnover",
        f"{best['category']} stock turns over fastest: {best['inventory_turnover']:.2f} "
        f"units sold per unit of average stock.",
        {"category": best["category"], "turnover": best["inventory_turnover"]},
    )


def campaign_roi(p: ProductsSection) -> Insight | None:
    if p.campaigns is None:
        return None
    rows = [r for r in p.campaigns.to_pylist() if r["roi"] is not None]
    if not rows or not any(r["first_touch_revenue"] for r in rows):
        return None  # no campaign brought revenue: ROI says nothing
    best = max(rows, key=lambda r: (r["roi"], r["campaign_id"]))
    worst = min(rows, key=lambda r: (r["roi"], r["campaign_id"]))
    return Insight(
        "campaign_roi",
        f"Best campaign by ROI: {best['campaign_name']} ({signed(best['roi'], '+.0%')} on "
        f"{_money(best['spend'])} spent); worst: {worst['campaign_name']} "
        f"({signed(worst['roi'], '+.0%')} on {_money(worst['spend'])}).",
        {
            "best_campaign": best["campaign_id"],
            "best_roi": best["roi"],
            "worst_campaign": worst["campaign_id"],
            "worst_roi": worst["roi"],
        },
    )


# --- usage ------------------------------------------------------------------------------------


def usage_totals(u: UsageSection) -> Insight:
    totals: dict[str, int] = {}
    for event_type, n in zip(
        u.events.column("event_type").to_pylist(),
        u.events.column("n_events").to_pylist(),
        strict=True,
    ):
        totals[event_type] = totals.get(event_type, 0) + int(n)
    listed = ", ".join(f"{n:,} {t}" for t, n in sorted(totals.items()))
    return Insight("usage_totals", f"Over the period: {listed} events.", dict(totals))


def returning_share(u: UsageSection) -> Insight | None:
    new = sum(u.new_vs_returning.column("new_users").to_pylist())
    returning = sum(u.new_vs_returning.column("returning_users").to_pylist())
    if not new + returning:
        return None
    share = returning / (new + returning)
    return Insight(
        "returning_share",
        f"{_pct(share)} of daily active users were returning users "
        f"({returning:,} returning and {new:,} new user-days).",
        {"share": share, "returning": returning, "new": new},
    )


# --- experiments ------------------------------------------------------------------------------


def experiment_verdict(s: ExperimentSummary) -> Insight:
    impact = (
        ""
        if s.monthly_impact is None
        else f"; estimated impact at full rollout {signed(s.monthly_impact, '+,.1f')} {s.metric} a "
        f"month ({signed(s.impact_low, '+,.1f')} to {signed(s.impact_high, '+,.1f')})"
    )
    srm = " Sample ratio mismatch: the assignment is broken." if s.srm_mismatch else ""
    return Insight(
        f"experiment_{s.experiment_id}_{s.variant}",
        f"{s.name or s.experiment_id}: {s.verdict}. {s.variant} vs {s.control} on {s.metric}: "
        f"{signed(s.lift)} (interval {signed(s.ci_low)} to {signed(s.ci_high)}){impact}.{srm}",
        {
            "experiment_id": s.experiment_id,
            "verdict": s.verdict,
            "lift": s.lift,
            "ci_low": s.ci_low,
            "ci_high": s.ci_high,
            "monthly_impact": s.monthly_impact,
            "srm_mismatch": int(s.srm_mismatch),
        },
    )


# --- data health ------------------------------------------------------------------------------


def quarantine_summary(h: HealthSection) -> Insight:
    total = sum(h.quarantine.column("n_rows").to_pylist())
    if not total:
        return Insight("quarantine", "No row is held in quarantine.", {"n_rows": 0})
    top = h.quarantine.slice(0, 1).to_pylist()[0]
    return Insight(
        "quarantine",
        f"{_n(total, 'row')} {'is' if total == 1 else 'are'} held in quarantine; the most "
        f"common reason is {top['reason']} ({_n(top['n_rows'], 'row')} of "
        f"{top['target_table']}).",
        {"n_rows": total, "top_reason": top["reason"], "top_n_rows": top["n_rows"]},
    )


def tests_summary(h: HealthSection) -> Insight | None:
    counts = dict(
        zip(
            h.tests.column("status").to_pylist(),
            h.tests.column("n_tests").to_pylist(),
            strict=True,
        )
    )
    if not counts:
        return None
    passed, warned = int(counts.get("pass", 0)), int(counts.get("warn", 0))
    failed = int(counts.get("fail", 0)) + int(counts.get("error", 0))
    return Insight(
        "data_tests",
        f"The last check ran {_n(passed + warned + failed, 'data test')}: {passed:,} passed, "
        f"{warned:,} warned, {failed:,} failed.",
        {"passed": passed, "warned": warned, "failed": failed},
    )
