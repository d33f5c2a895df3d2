"""What the mutation pass on the report and the dashboard found untested: an insight's
sentence naming its steps, devices or campaigns in the wrong roles, the earliest step on a
tie, the device gap's sign (sections of a few numbers worked by hand, each sentence compared
whole); and numbers of the demo warehouse no other test read back: the experiment impact's
interval, and on the dashboard the overview's change, the revenue page's top-10% share and
mean days to a first purchase, the experiments table's users and forest bars, and the plan
calculator against statsmodels."""

from __future__ import annotations

import math
import statistics
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize
from streamlit.testing.v1 import AppTest

from productlens.config import load_project
from productlens.dashboard.pages import View
from productlens.metrics.funnel import counted_steps
from productlens.metrics.revenue import ArrMonth
from productlens.report import insights as ins
from productlens.report.sections import (
    ExperimentsSection,
    ExperimentSummary,
    Filters,
    FunnelSection,
    HealthSection,
    ProductsSection,
    RevenueSection,
    Settings,
    read_experiments,
    read_overview,
    read_retention,
)
from tests.conftest import open_readonly, q
from tests.funnel_reference import reference_funnel
from tests.test_dashboard import (
    app_for,
    frame,
    metrics,
    one,
    open_page,
    overview_period,
    plotly_charts,
)


def funnel(
    counts: tuple[int, ...], by_device: dict[str, tuple[int, ...]] | None = None
) -> FunnelSection:
    names = [f"e{i}" for i in range(len(counts))]
    devices = {d: counted_steps(names, c) for d, c in (by_device or {}).items()}
    return FunnelSection(timedelta(days=1), counted_steps(names, counts), devices, pa.table({}))


# --- the biggest drop-off ----------------------------------------------------------------------

# counts per step -> (from step, to step, users lost, rate), worked by hand.
DROPOFFS = [
    # 10 -> 9 loses 10%, 9 -> 3 loses 66.7%, 3 -> 2 loses 33.3%: the middle step.
    ((10, 9, 3, 2), ("e1", "e2", 6, 6 / 9)),
    # 8 -> 4 and 4 -> 2 both lose 50%: the earliest of them, though 2 -> 2 loses none.
    ((8, 4, 2, 2), ("e0", "e1", 4, 0.5)),
    # The last step loses the most.
    ((5, 5, 4, 1), ("e2", "e3", 3, 0.75)),
]


@pytest.mark.parametrize(("counts", "want"), DROPOFFS, ids=[str(c) for c, _ in DROPOFFS])
def test_the_biggest_drop_off_names_the_step_before_and_after_it(
    counts: tuple[int, ...], want: tuple[str, str, int, float]
) -> None:
    before, after, lost, rate = want
    got = ins.biggest_dropoff(funnel(counts))
    assert got is not None
    assert got.values == {
        "from_step": before,
        "to_step": after,
        "rate": pytest.approx(rate, abs=1e-12),
        "n_lost": lost,
    }
    assert got.text == (
        f"The biggest drop-off is from {before} to {after}: {rate:.1%} of the users who "
        f"reached {before} ({lost:,} users) went no further."
    )


# --- the device gap -----------------------------------------------------------------------------


def test_the_device_gap_names_the_best_device_first_and_is_positive() -> None:
    # Conversion first step to last: desktop 5/10, tablet 3/8, mobile 2/10.
    f = funnel((28, 10), {"mobile": (10, 2), "desktop": (10, 5), "tablet": (8, 3)})
    got = ins.device_gap(f)
    assert got is not None
    assert got.values == {
        "best_device": "desktop",
        "best_rate": 0.5,
        "worst_device": "mobile",
        "worst_rate": 0.2,
        "gap": pytest.approx(0.3),
    }
    assert got.text == (
        "desktop converts best (50.0%), mobile worst (20.0%): a gap of 30.0 percentage points."
    )


def test_devices_that_convert_alike_have_no_gap_and_no_best() -> None:
    # 1/4 and 2/8 both convert 25%: naming one device best and worst said nothing true.
    got = ins.device_gap(funnel((12, 3), {"web": (4, 1), "ios": (8, 2)}))
    assert got is not None
    assert got.text == "Every device converts alike (25.0%): no gap."
    assert got.values["gap"] == 0


def test_a_device_no_user_entered_from_is_left_out_of_the_gap() -> None:
    f = funnel((4, 2), {"web": (4, 2), "tv": (0, 0)})
    assert ins.device_gap(f) is None  # one device left: no gap to state


# --- campaigns ----------------------------------------------------------------------------------


def campaigns(*rows: tuple[str, str, float, float, float]) -> ProductsSection:
    """Campaigns as the section holds them: id, name, spend, first-touch revenue, ROI."""
    return ProductsSection(
        None,
        None,
        pa.table(
            {
                "campaign_id": [r[0] for r in rows],
                "campaign_name": [r[1] for r in rows],
                "spend": [r[2] for r in rows],
                "first_touch_revenue": [r[3] for r in rows],
                "roi": [r[4] for r in rows],
            }
        ),
    )


def test_the_best_and_worst_campaigns_are_named_in_their_roles() -> None:
    p = campaigns(
        ("c1", "Spring", 100.0, 300.0, 0.5),
        ("c2", "Winter", 50.0, 40.0, -0.2),
        ("c3", "Autumn", 80.0, 120.0, 0.25),
    )
    got = ins.campaign_roi(p)
    assert got is not None
    assert got.values == {
        "best_campaign": "c1",
        "best_roi": 0.5,
        "worst_campaign": "c2",
        "worst_roi": -0.2,
    }
    assert got.text == (
        "Best campaign by ROI: Spring (+50% on 100.00 spent); worst: Winter (-20% on 50.00)."
    )


def test_campaigns_that_brought_no_revenue_say_nothing_of_roi() -> None:
    p = campaigns(("c1", "Spring", 100.0, 0.0, -1.0), ("c2", "Winter", 50.0, 0.0, -1.0))
    assert ins.campaign_roi(p) is None


# --- numbers of the demo warehouse the other tests left unread ------------------------------------


def test_the_experiment_sentence_states_the_impact_interval_low_then_high(
    demo_project: Path,
) -> None:
    """The estimated monthly impact and its interval are the readout's, lower bound first."""
    engine = open_readonly(demo_project)
    try:
        section = read_experiments(
            engine, Filters(), Settings.from_config(load_project(demo_project).config)
        )
    finally:
        engine.close()
    assert section is not None
    impacts = {
        (r.experiment.experiment_id, c.variant): c.impact
        for r in section.readouts
        for c in r.metrics[0].readout.comparisons
    }
    for s in section.summaries:
        impact = impacts[s.experiment_id, s.variant]
        assert impact is not None
        assert impact.lower < impact.upper
        assert (s.monthly_impact, s.impact_low, s.impact_high) == (
            impact.incremental,
            impact.lower,
            impact.upper,
        )
        said = ins.experiment_verdict(s).text
        assert (
            f"estimated impact at full rollout {impact.incremental:+,.1f} {s.metric} a month "
            f"({impact.lower:+,.1f} to {impact.upper:+,.1f})."
        ) in said, said


def test_the_dashboard_shows_the_change_share_days_users_and_plan_the_warehouse_gives(
    demo_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The overview's change against the previous period, the revenue page's top-10% share
    and mean days to a first purchase, the funnel page's conversion, the experiments table's
    users and its forest plot's bars, and the plan calculator at a chosen alpha and power
    (statsmodels)."""
    engine = open_readonly(demo_project)
    try:
        start, end = overview_period(engine)
        length = (end - start).days + 1
        active = (
            "select count(distinct user_id) from core.fct_events where event_date between ? and ?"
        )
        now = one(engine, active, start, end)
        before = one(engine, active, start - timedelta(days=length), start - timedelta(days=1))
        spent = [
            r[0]
            for r in engine.fetch_all(
                q(
                    "select sum(net_revenue) as v from core.int_order_revenue "
                    "where status = 'completed' group by user_id order by v desc"
                )
            )
        ]
        waits = [
            r[0]
            for r in engine.fetch_all(
                q(
                    "select min(o.order_date) - any_value(cast(u.signup_ts as date)) "
                    "from core.int_order_revenue o join core.dim_users u "
                    "on u.user_id = o.user_id and u.is_current "
                    "where o.status = 'completed' group by o.user_id"
                )
            )
        ]
        steps = ["page_view", "product_view", "add_to_cart", "checkout_start", "purchase"]
        rows = engine.fetch_arrow(q("select * from core.fct_events")).to_pylist()
        reached = [
            s["count"] for s in reference_funnel(rows, steps, window=timedelta(days=1))["steps"]
        ]
        exposed = {
            (e, v): n
            for e, v, n in engine.fetch_all(
                q(
                    "select experiment_id, variant, count(distinct user_id) "
                    "from marts.experiment_exposures group by 1, 2"
                )
            )
        }
    finally:
        engine.close()
    at = open_page(app_for(demo_project, monkeypatch), "overview")
    (users,) = [m for m in at.metric if m.label == "active users"]
    assert before
    assert now != before  # a change to state
    assert users.proto.delta == f"{(now - before) / before:+.1%}"

    # The funnel page's conversion is first step to last (not from the step before).
    at = open_page(at, "funnel")
    assert at.multiselect(key="funnel_steps").value == steps
    assert reached[-2] != reached[0]
    assert metrics(at)["conversion"] == f"{reached[-1] / reached[0]:.1%}"

    at = open_page(at, "revenue")
    top = math.ceil(len(spent) / 10)
    shown = metrics(at)
    assert shown["share of revenue from the top 10% of buyers"] == (
        f"{sum(spent[:top]) / sum(spent):.1%}"
    )
    days = [d for d in waits if d >= 0]
    assert statistics.mean(days) != statistics.median(days)
    assert shown["days from signup to first purchase (mean)"] == f"{statistics.mean(days):.1f}"

    at = open_page(at, "experiments")
    table = frame(
        at, "experiment", "variant", "users in variant", "control", "users in control", "lift",
        "low", "high",
    )  # fmt: skip
    arms: dict[str, int] = {}
    for e, _ in exposed:
        arms[e] = arms.get(e, 0) + 1
    assert set(arms.values()) == {2}  # a control and one treatment: each row names both arms
    for e, variant, n_variant, control, n_control in zip(
        table["experiment"],
        table["variant"],
        table["users in variant"],
        table["control"],
        table["users in control"],
        strict=True,
    ):
        assert variant != control
        assert (n_variant, n_control) == (exposed[e, variant], exposed[e, control])
    (forest,) = plotly_charts(at)["Lift on the primary metric, with its interval"]
    assert forest["error_x"]["array"] == pytest.approx(list(table["high"] - table["lift"]))
    assert forest["error_x"]["arrayminus"] == pytest.approx(list(table["lift"] - table["low"]))
    assert all(x > 0 for x in forest["error_x"]["array"] + forest["error_x"]["arrayminus"])

    # 0.2 -> 0.22 at alpha 1%, power 90%, 500 users a day (two arms): Cohen's h and the
    # two-sided z-test's sample size from statsmodels.
    for key, value in (
        ("plan_baseline", 0.2),
        ("plan_mde", 0.1),
        ("plan_alpha", 0.01),
        ("plan_power", 0.9),
        ("plan_daily", 500),
    ):
        at.number_input(key=key).set_value(value).run()
    h = proportion_effectsize(0.22, 0.2)
    n = NormalIndPower().solve_power(h, alpha=0.01, power=0.9, ratio=1.0)
    shown = metrics(at)
    assert shown["users per arm"] == f"{math.ceil(n):,}"
    assert shown["days at the daily traffic"] == f"{math.ceil(2 * n / 500):,}"


# --- data health ---------------------------------------------------------------------------------


def test_the_checks_summary_counts_errors_as_failed_and_warnings_apart() -> None:
    # The last check: 5 passed, 2 warned, 2 failed and 1 that could not run (an error).
    tests = pa.table({"status": ["error", "fail", "pass", "warn"], "n_tests": [1, 2, 5, 2]})
    empty = pa.table({})
    quarantine = pa.table(
        {
            "target_table": pa.array([], pa.string()),
            "reason": [],
            "n_rows": pa.array([], pa.int64()),
        }
    )
    got = ins.tests_summary(HealthSection(quarantine, tests, empty, empty, None))
    assert got is not None
    assert got.values == {"passed": 5, "warned": 2, "failed": 3}
    assert got.text == "The last check ran 10 data tests: 5 passed, 2 warned, 3 failed."


# --- the ARR bridge ------------------------------------------------------------------------------


def test_the_arr_sentence_states_the_latest_month_s_parts_in_their_places() -> None:
    # February: 1,200 opening + 600 new + 240 expansion - 120 contraction - 360 cancelled
    # + 60 reactivated = 1,620 closing (reactivation is drawn, not said).
    january = ArrMonth("2026-01-01", 0.0, 1200.0, 0.0, 0.0, 0.0, 0.0, 1200.0, 1200.0, 10)
    february = ArrMonth("2026-02-01", 1200.0, 600.0, 240.0, -120.0, -360.0, 60.0, 420.0, 1620.0, 13)
    section = RevenueSection(None, None, None, (january, february), None, None, None, None)
    got = ins.arr_latest(section)
    assert got is not None
    assert got.values == {
        "month": "2026-02-01",
        "closing_arr": 1620.0,
        "new_arr": 600.0,
        "expansion_arr": 240.0,
        "contraction_arr": -120.0,
        "cancelled_arr": -360.0,
        "n_paying": 13,
    }
    assert got.text == (
        "ARR closed 2026-02 at 1,620.00 (13 paying): 600.00 new, 240.00 expansion, "
        "-120.00 contraction, -360.00 cancelled."
    )


# --- the overview's default period ---------------------------------------------------------------


def test_a_long_world_s_overview_is_its_last_week_against_the_week_before(
    saas_demo_project: Path,
) -> None:
    """Forty days of events: the overview's default is the last 7 days (the demo shop's
    14 days are cut in halves of 7, so only a longer world tells 7 from "half the data")."""
    engine = open_readonly(saas_demo_project)
    try:
        first = one(engine, "select min(event_date) from core.fct_events")
        last = one(engine, "select max(event_date) from core.fct_events")
        o = read_overview(engine, Filters(), Settings())
    finally:
        engine.close()
    assert (last - first).days + 1 >= 28  # long enough that half the data is over a week
    assert o is not None
    assert (o.start, o.end) == (last - timedelta(days=6), last)
    assert (o.previous_start, o.previous_end) == (
        last - timedelta(days=13),
        last - timedelta(days=7),
    )


def test_the_overview_under_a_device_and_a_country_counts_their_users_only(
    demo_project: Path,
) -> None:
    """Signups are users whose current device and country are the chosen ones (a user's
    version in dim_users), active users and events the events of that device and country;
    orders and revenue are the whole shop's (marked unfiltered)."""
    engine = open_readonly(demo_project)
    try:
        device, country = engine.fetch_all(
            q(
                "select device, country from core.dim_users where is_current "
                "group by all order by count(*) desc, 1, 2 limit 1"
            )
        )[0]
        o = read_overview(engine, Filters(devices=(device,), countries=(country,)), Settings())
        assert o is not None
        # The same days for everyone (the filtered default ends on the pair's last day).
        unfiltered = read_overview(engine, Filters(o.start, o.end), Settings())
        assert unfiltered is not None
        for k, (first, last) in enumerate(((o.start, o.end), (o.previous_start, o.previous_end))):
            kpis = {x.key: (x.current, x.previous)[k] for x in o.kpis}
            signups = one(
                engine,
                "select count(*) from core.dim_users where is_current and device = ? "
                "and country = ? and cast(signup_ts as date) between ? and ?",
                device,
                country,
                first,
                last,
            )
            users, events = engine.fetch_all(
                q(
                    "select count(distinct user_id), count(*) from core.fct_events "
                    "where device = ? and country = ? and event_date between ? and ?",
                    device,
                    country,
                    first,
                    last,
                )
            )[0]
            assert (kpis["signups"], kpis["active_users"], kpis["events"]) == (
                signups,
                users,
                events,
            )
        everyone = one(engine, "select count(*) from core.dim_users where is_current")
    finally:
        engine.close()
    signed = next(k for k in o.kpis if k.key == "signups")
    assert signed.filtered
    assert 0 < (signed.current or 0) + (signed.previous or 0) < everyone
    whole = {k.key: k for k in unfiltered.kpis}
    for key in ("orders", "net_revenue"):
        kpi = next(k for k in o.kpis if k.key == key)
        assert not kpi.filtered
        assert (kpi.current, kpi.previous) == (whole[key].current, whole[key].previous)


def test_retention_cohorts_under_a_country_hold_that_country_s_signups(
    demo_project: Path,
) -> None:
    """Each day cohort's size is the number of users of the chosen country (the users
    table's) who signed up that day; the device test elsewhere cannot see a dropped
    country."""
    engine = open_readonly(demo_project)
    try:
        country = one(
            engine,
            "select country from staging.stg_users group by 1 order by count(*) desc, 1 limit 1",
        )
        r = read_retention(engine, Filters(countries=(country,)), Settings())
        signups = dict(
            engine.fetch_all(
                q(
                    "select cast(cast(signup_ts as date) as varchar), count(*) "
                    "from staging.stg_users where country = ? and signup_ts is not null "
                    "group by 1",
                    country,
                )
            )
        )
        everyone = one(engine, "select count(*) from staging.stg_users")
    finally:
        engine.close()
    assert r is not None
    sizes = {c.start: c.size for c in r.day_cohorts}
    assert sizes == {day: signups.get(day, 0) for day in sizes}
    assert 0 < sum(sizes.values()) < everyone


# --- the SRM banner ------------------------------------------------------------------------------


def summary(experiment_id: str, variant: str, *, srm: bool) -> ExperimentSummary:
    return ExperimentSummary(
        experiment_id=experiment_id,
        name=None,
        metric="conversion",
        control="control",
        variant=variant,
        n_control=100,
        n_variant=100,
        lift=0.1,
        ci_low=-0.05,
        ci_high=0.25,
        p_value=0.2,
        significant=False,
        srm_mismatch=srm,
        srm_p_value=0.0001 if srm else 0.5,
        verdict="inconclusive",
        reasons=(),
        monthly_impact=None,
        impact_low=None,
        impact_high=None,
    )


def _experiments_page() -> None:
    # AppTest runs this function's body as the app's script: its imports are inside it.
    from productlens.dashboard import pages
    from productlens.report.sections import Filters, Settings

    pages.experiments_page(pages.View(None, None, Settings(), Filters(), None))  # type: ignore[arg-type]


def test_a_mismatched_experiment_of_two_treatments_gets_one_banner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The demo's experiments have one treatment each: here e1 has two (one summary per
    treatment) and a mismatch, e2 none. One banner, naming e1; e2's table row says ok."""
    section = ExperimentsSection(
        (
            summary("e1", "b", srm=True),
            summary("e1", "c", srm=True),
            summary("e2", "b", srm=False),
        )
    )
    monkeypatch.setattr(View, "section", lambda self, name: section)
    at = AppTest.from_function(_experiments_page, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    banners = [e.value for e in at.error]
    assert banners == [
        "Sample ratio mismatch in e1 (p = 0.0001): its assignment is broken; do not trust "
        "its readout."
    ]
    table = frame(at, "experiment", "variant", "SRM")
    assert list(zip(table["experiment"], table["variant"], table["SRM"], strict=True)) == [
        ("e1", "b", "mismatch"),
        ("e1", "c", "mismatch"),
        ("e2", "b", "ok"),
    ]
