"""Customer value in the report (issues 14 and 16): predicted CLV by segment beside the
historical, churn-risk bands and the probability-alive histogram on a world whose fit is
usable; on the demo (no_dropout_seen) the historical view with the reason in words and no
fitted figure. Every number an insight states is recomputed here from the warehouse's rows
(orders, users and the customer_value mart) by brute force and compared."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from productlens.config import load_project
from productlens.engines import Engine
from productlens.engines.duckdb import DuckDBEngine
from productlens.metrics import customer_value as cv
from productlens.report import ReportResult, classic_questions, write_report
from productlens.report import insights as ins
from productlens.report.sections import RevenueSection, Settings
from tests.conftest import open_readonly, q
from tests.test_report_sections import stated

CLOSE = 1e-9
MARTS_YML = Path(cv.__file__).parents[1] / "models" / "marts" / "_marts.yml"


@dataclass
class World:
    engine: DuckDBEngine
    result: ReportResult
    html: str

    def rows(self, sql: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self.engine.fetch_arrow(q(sql)).to_pylist()
        return out

    @property
    def revenue(self) -> RevenueSection:
        assert self.result.sections is not None
        assert self.result.sections.revenue is not None
        return self.result.sections.revenue

    def insight(self, key: str) -> dict[str, Any]:
        found = self.result.insights()
        assert key in found, f"no insight {key}; have {sorted(found)}"
        return found[key].values

    def charts(self) -> dict[str, str]:
        return {
            b.chart.name: b.chart.svg for bs in self.result.blocks.values() for b in bs if b.chart
        }


def _world(root: Path, out: Path) -> World:
    engine = open_readonly(root)
    settings = Settings.from_config(load_project(root).config)
    # The revenue section alone: the others have their own tests.
    result = write_report(engine, out, settings=settings, only=("revenue",))
    return World(engine, result, result.html.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def fitted(fitted_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = _world(fitted_project, tmp_path_factory.mktemp("report_fitted"))
    yield w
    w.engine.close()


@pytest.fixture(scope="module")
def demo(demo_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = _world(demo_project, tmp_path_factory.mktemp("report_demo"))
    yield w
    w.engine.close()


# --- the brute-force reference: Python over the warehouse's rows ------------------------------


@dataclass
class Reference:
    status: str
    n_customers: int
    n_repeat: int
    history_weeks: float
    historical: dict[str | None, list[float]]  # segment -> net revenue to date per customer
    predicted: dict[str | None, list[float]]  # segment -> clv_52w per customer (fitted)
    alive: list[float]
    alive_repeat: list[float]
    purchases: float
    clv: float
    bands: dict[tuple[str, str], int]  # (band, basis) -> users, from customer_metrics


def reference(w: World) -> Reference:
    value = w.rows("select * from marts.customer_value")
    orders = w.rows(
        "select user_id, net_revenue from core.int_order_revenue "
        "where is_recognized and user_id is not null"
    )
    users = {
        r["user_id"]: r["segment"]
        for r in w.rows("select user_id, segment from core.dim_users where is_current")
    }
    spent: dict[str, float] = defaultdict(float)
    for o in orders:
        spent[o["user_id"]] += o["net_revenue"]
    statuses = {r["fit_status"] for r in value}
    assert len(statuses) == 1, statuses  # one status for the whole fit
    historical: dict[str | None, list[float]] = defaultdict(list)
    for user, revenue in spent.items():
        if user in users:  # customer_metrics holds the users the users table knows
            historical[users[user]].append(revenue)
    predicted: dict[str | None, list[float]] = defaultdict(list)
    for r in value:
        if r["clv_52w"] is not None and r["user_id"] in users:
            predicted[users[r["user_id"]]].append(r["clv_52w"])
    bands: dict[tuple[str, str], int] = defaultdict(int)
    for r in w.rows("select churn_risk, churn_risk_basis from marts.customer_metrics"):
        bands[(r["churn_risk"], r["churn_risk_basis"])] += 1
    fitted = [r for r in value if r["probability_alive"] is not None]
    return Reference(
        status=statuses.pop(),
        n_customers=len(value),
        n_repeat=sum(r["frequency"] > 0 for r in value),
        history_weeks=max(r["age_weeks"] for r in value),
        historical=historical,
        predicted=predicted,
        alive=[r["probability_alive"] for r in fitted],
        alive_repeat=[r["probability_alive"] for r in fitted if r["frequency"] > 0],
        purchases=sum(r["expected_purchases_52w"] for r in fitted),
        clv=sum(r["clv_52w"] for r in fitted),
        bands=bands,
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _churn_counts(ref: Reference) -> tuple[dict[str, int], int]:
    buyers: dict[str, int] = defaultdict(int)
    for (band, basis), n in ref.bands.items():
        if basis != "no_orders":
            buyers[band] += n
    return buyers, ref.bands.get(("never_bought", "no_orders"), 0)


# --- a usable fit -----------------------------------------------------------------------------


def test_a_usable_fit_shows_predicted_beside_historical_clv_by_segment(fitted: World) -> None:
    ref = reference(fitted)
    assert ref.status == "fitted"
    fit = fitted.insight("customer_value_fit")
    assert fit["fit_status"] == "fitted"
    assert fit["n_customers"] == ref.n_customers
    assert fit["n_repeat_buyers"] == ref.n_repeat
    assert fit["history_weeks"] == pytest.approx(ref.history_weeks, abs=CLOSE)
    assert fit["expected_purchases"] == pytest.approx(ref.purchases, rel=CLOSE)
    assert fit["predicted_clv"] == pytest.approx(ref.clv, rel=CLOSE)
    # Per segment: both figures per customer, the segment with the highest prediction named.
    v = fitted.revenue.customer_value
    assert v is not None
    assert {s.segment for s in v.segments} == set(ref.historical)
    for s in v.segments:
        assert s.n_customers == len(ref.historical[s.segment])
        assert s.historical_clv_per_customer == pytest.approx(_mean(ref.historical[s.segment]))
        assert s.predicted_clv_per_customer == pytest.approx(_mean(ref.predicted[s.segment]))
    per_customer = {seg: _mean(values) for seg, values in ref.predicted.items()}
    best = max(per_customer, key=lambda seg: per_customer[seg])
    # Highest predicted value per customer first (as the chart and the dashboard show them).
    assert len(per_customer) > 1
    ranked = sorted(per_customer, key=lambda seg: -per_customer[seg])
    assert [s.segment for s in v.segments] == ranked
    top = fitted.insight("top_predicted_clv_segment")
    assert top["segment"] == best
    assert top["predicted_clv_per_customer"] == pytest.approx(per_customer[best])
    assert top["historical_clv_per_customer"] == pytest.approx(_mean(ref.historical[best]))
    assert top["n_customers"] == len(ref.historical[best])
    # The chart draws both series, each bar labelled with its value.
    svg = fitted.charts()["clv_by_segment"]
    for s in v.segments:
        assert f"{s.historical_clv_per_customer:,.2f}" in svg
        assert f"{s.predicted_clv_per_customer:,.2f}" in svg
    # "Which segments have the highest lifetime value?" is answered by the prediction.
    assert fitted.result.sections is not None
    answer = dict(classic_questions(fitted.result.sections))
    found = answer["Which segments have the highest lifetime value?"]
    assert found is not None
    assert found.key == "top_predicted_clv_segment"


def test_a_usable_fit_bands_churn_risk_by_probability_alive(fitted: World) -> None:
    ref = reference(fitted)
    value = fitted.rows("select probability_alive from marts.customer_value")
    # The cut-offs the sentence states, applied here to each customer's probability.
    expected = defaultdict(int)
    for r in value:
        p = r["probability_alive"]
        expected["active" if p >= 0.7 else "at_risk" if p >= 0.3 else "churned"] += 1
    counts, never = _churn_counts(ref)
    assert dict(counts) == dict(expected)
    churn = fitted.insight("churn_bands")
    assert churn["basis"] == "probability_alive"
    assert churn["n_customers"] == ref.n_customers
    assert churn["n_never_bought"] == never
    for band in ("active", "at_risk", "churned"):
        assert churn[f"n_{band}"] == expected[band]
        assert churn[f"share_{band}"] == pytest.approx(expected[band] / ref.n_customers)
    text = fitted.result.insights()["churn_bands"].text
    assert "probability alive 70% or more" in text
    assert "below 30%" in text
    # Each count beside its own band's words (the counts differ, so a swap shows).
    assert len({expected[band] for band in ("active", "at_risk", "churned")}) == 3
    for band, words in (
        ("active", "likely active"),
        ("at_risk", "at risk"),
        ("churned", "likely churned"),
    ):
        assert re.search(rf"\b{expected[band]:,} \([^)]*\) {words}", text), (band, text)


def test_customer_metrics_takes_its_predictions_from_the_fit(fitted: World) -> None:
    # customer_metrics' predicted CLV, P(alive) and expected purchases are the mart's own.
    rows = fitted.rows(
        "select m.predicted_clv_12m, m.probability_alive as alive, m.expected_purchases_12m,"
        " m.historical_clv, v.clv_52w, v.probability_alive, v.expected_purchases_52w"
        " from marts.customer_metrics as m inner join marts.customer_value as v"
        " on m.user_id = v.user_id where v.fit_status = 'fitted'"
    )
    assert len(rows) == reference(fitted).n_customers
    assert [r["predicted_clv_12m"] for r in rows] == [r["clv_52w"] for r in rows]
    assert [r["alive"] for r in rows] == [r["probability_alive"] for r in rows]
    assert [r["expected_purchases_12m"] for r in rows] == [
        r["expected_purchases_52w"] for r in rows
    ]
    assert [r["predicted_clv_12m"] for r in rows] != [float(r["historical_clv"]) for r in rows]


def test_a_usable_fit_draws_the_probability_alive_histogram(fitted: World) -> None:
    ref = reference(fitted)
    v = fitted.revenue.customer_value
    assert v is not None
    assert v.alive_bins is not None
    bins = [0] * 10
    for p in ref.alive:
        bins[min(math.floor(p * 10), 9)] += 1
    assert list(v.alive_bins) == bins
    assert sum(bins) == ref.n_customers
    svg = fitted.charts()["probability_alive"]
    for n in bins:
        if n:
            assert f">{n:,}<" in svg
    alive = fitted.insight("probability_alive")
    assert alive["mean"] == pytest.approx(_mean(ref.alive))
    assert alive["mean_repeat"] == pytest.approx(_mean(ref.alive_repeat))
    assert alive["n_repeat_buyers"] == ref.n_repeat
    assert alive["n_one_time"] == ref.n_customers - ref.n_repeat
    # BG/NBD: a one-time buyer cannot have dropped out; the sentence says so because it is so.
    one_time = fitted.rows("select probability_alive from marts.customer_value where frequency = 0")
    assert one_time
    assert all(r["probability_alive"] == pytest.approx(1.0) for r in one_time)


def test_every_sentence_states_the_numbers_it_holds(fitted: World, demo: World) -> None:
    keys = ("customer_value_fit", "top_predicted_clv_segment", "churn_bands", "probability_alive")
    for key in keys:
        stated(fitted.result.insights()[key])
    for key in ("customer_value_fit", "churn_bands"):
        stated(demo.result.insights()[key])


# --- the same reader on PostgreSQL and Spark --------------------------------------------------

OTHER_ENGINES = ["postgres", pytest.param("spark", marks=pytest.mark.xdist_group("spark"))]
# The columns the reader reads, copied from the fitted DuckDB warehouse.
READ = {
    "customer_value": (
        "user_id",
        "frequency",
        "age_weeks",
        "probability_alive",
        "expected_purchases_52w",
        "clv_52w",
        "fit_status",
    ),
    "customer_metrics": (
        "user_id",
        "segment",
        "n_orders",
        "historical_clv",
        "churn_risk",
        "churn_risk_basis",
    ),
}


def _engine(kind: str, request: pytest.FixtureRequest) -> Engine:
    if kind == "postgres":
        from productlens.engines.postgres import PostgresEngine

        return PostgresEngine(request.getfixturevalue("pg_dsn"))
    from productlens.engines.spark import SparkEngine

    return SparkEngine(request.getfixturevalue("spark"))


@pytest.mark.parametrize("kind", OTHER_ENGINES)
def test_the_reader_gives_the_same_figures_on_every_engine(
    kind: str, fitted: World, request: pytest.FixtureRequest
) -> None:
    here = fitted.revenue.customer_value
    assert here is not None
    engine = _engine(kind, request)
    try:
        engine.ensure_schema("marts")
        for name, wanted in READ.items():
            types = dict(fitted.engine.columns("marts", name))
            engine.drop("marts", name)
            engine.create_table("marts", name, [(c, types[c]) for c in wanted])
            data = fitted.engine.fetch_arrow(q(f"select {', '.join(wanted)} from marts.{name}"))
            assert engine.append_arrow("marts", name, data) == data.num_rows
        there = cv.customer_value(engine)
    finally:
        if kind == "spark":  # the run's one Spark session: leave its catalog as found
            for name in READ:
                engine.drop("marts", name)
        engine.close()
    assert there is not None
    exact = ("fit_status", "n_customers", "n_repeat_buyers", "churn", "alive_bins")
    for field in exact:
        assert getattr(there, field) == getattr(here, field), field
    for field in (
        "history_weeks",
        "mean_probability_alive",
        "mean_probability_alive_repeat",
        "expected_purchases",
        "predicted_clv",
    ):
        assert getattr(there, field) == pytest.approx(getattr(here, field), rel=CLOSE), field
    assert {s.segment: s for s in there.segments}.keys() == {s.segment for s in here.segments}
    for s in here.segments:
        t = next(x for x in there.segments if x.segment == s.segment)
        assert t.n_customers == s.n_customers
        for field in (
            "historical_clv_per_customer",
            "predicted_clv_per_customer",
            "expected_purchases_per_customer",
            "mean_probability_alive",
        ):
            assert getattr(t, field) == pytest.approx(getattr(s, field), rel=CLOSE), field


# --- no usable fit: the demo ------------------------------------------------------------------


def test_the_demo_shows_history_and_says_why_there_is_no_prediction(demo: World) -> None:
    ref = reference(demo)
    assert ref.status == "no_dropout_seen"
    assert not ref.alive
    assert not any(ref.predicted.values())
    fit = demo.result.insights()["customer_value_fit"]
    assert fit.values == {
        "fit_status": ref.status,
        "n_customers": ref.n_customers,
        "n_repeat_buyers": ref.n_repeat,
        "history_weeks": pytest.approx(ref.history_weeks, abs=CLOSE),
    }
    assert cv.REASONS["no_dropout_seen"]() in fit.text
    assert f'data-insight="customer_value_fit">{fit.text}<' in demo.html.replace("&#39;", "'")
    # No fitted figure anywhere: no prediction insight, no histogram, the historical chart.
    keys = set(demo.result.insights())
    assert "top_predicted_clv_segment" not in keys
    assert "probability_alive" not in keys
    charts = demo.charts()
    assert "probability_alive" not in charts
    assert "Net revenue per user to date" in charts["clv_by_segment"]
    assert "predicted" not in charts["clv_by_segment"]
    v = demo.revenue.customer_value
    assert v is not None
    assert all(s.predicted_clv_per_customer is None for s in v.segments)
    assert v.mean_probability_alive is None
    assert v.predicted_clv is None
    # The heuristic predicted_clv_12m of customer_metrics is no fit: no sentence states it.
    heuristic = demo.rows(
        "select segment, avg(predicted_clv_12m) as p from marts.customer_metrics "
        "where n_orders > 0 group by segment"
    )
    text = " ".join(i.text for i in demo.result.insights().values())
    for r in heuristic:
        assert f"{r['p']:,.2f}" not in text
    # The classic question is answered from history.
    assert demo.result.sections is not None
    answer = dict(classic_questions(demo.result.sections))
    found = answer["Which segments have the highest lifetime value?"]
    assert found is not None
    assert found.key == "top_clv_segment"


def test_a_warehouse_without_the_mart_says_to_build_it(demo: World) -> None:
    """A warehouse built before customer_value was a mart: history, and what to run."""
    before = replace(demo.revenue, customer_value=None)
    fit = ins.customer_value_fit(before)
    assert fit is not None
    assert "run `productlens build`" in fit.text
    assert fit.values == {}
    assert ins.churn_bands(before) is None
    assert ins.top_clv_segment(before) is not None


def test_the_demo_bands_churn_risk_by_recency(demo: World) -> None:
    ref = reference(demo)
    counts, never = _churn_counts(ref)
    assert {basis for (_, basis) in ref.bands} <= {"recency", "no_orders"}
    churn = demo.insight("churn_bands")
    assert churn["basis"] == "recency"
    assert churn["n_customers"] == ref.n_customers
    assert churn["n_never_bought"] == never
    for band in ("active", "at_risk", "churned"):
        assert churn[f"n_{band}"] == counts.get(band, 0)
    assert "churn_risk" in demo.charts()
    text = demo.result.insights()["churn_bands"].text
    assert "by days since their last order" in text
    assert "probability" not in text


# --- every status the mart can write has its reason --------------------------------------------


def _statuses() -> list[str]:
    marts = yaml.safe_load(MARTS_YML.read_text())["models"]
    model = next(m for m in marts if m["name"] == "customer_value")
    (accepted,) = [
        t["accepted_values"] for t in model["columns"]["fit_status"] if "accepted_values" in t
    ]
    return list(accepted)


NOT_FITTED = [s for s in _statuses() if s != "fitted"]


def _value(status: str) -> cv.CustomerValue:
    """One customer, no repeat buyer, half a week of orders, of this status."""
    return cv.CustomerValue(
        fit_status=status,
        n_customers=1,
        n_repeat_buyers=0,
        history_weeks=0.5,
        segments=(cv.SegmentValue("Regular", 1, 10.0, None, None, None),),
        churn=(cv.ChurnBand("active", "recency", 1),),
        alive_bins=None,
        mean_probability_alive=None,
        mean_probability_alive_repeat=None,
        expected_purchases=None,
        predicted_clv=None,
    )


def _revenue(v: cv.CustomerValue) -> RevenueSection:
    return RevenueSection(None, None, None, None, None, None, None, None, v)


@pytest.mark.parametrize("status", [*NOT_FITTED, cv.NO_CUSTOMERS])
def test_every_status_but_fitted_is_said_in_words(status: str) -> None:
    assert len(NOT_FITTED) == 4  # the mart's statuses, read from its tests
    v = _value(status)
    section = _revenue(v)
    fit = ins.customer_value_fit(section)
    assert fit is not None
    assert status in cv.REASONS, f"no reason in words for {status}"
    assert v.reason == cv.REASONS[status]()
    assert v.reason in fit.text
    assert status not in fit.text  # words, not the code
    # "1 customer", "0 repeat buyers": a count of one and of none read right.
    assert fit.text.startswith(
        "No predicted lifetime value is shown for the 1 customer (0 repeat buyers, 0.5 weeks "
    )
    assert ins.top_predicted_clv_segment(section) is None
    assert ins.probability_alive(section) is None


def test_a_fitted_status_states_the_fit_not_a_reason() -> None:
    v = replace(_value("fitted"), expected_purchases=1.5, predicted_clv=12.5)
    fit = ins.customer_value_fit(_revenue(v))
    assert fit is not None
    assert v.reason is None
    assert fit.text == (
        "Fitted on 1 customer (0 repeat buyers, 0.5 weeks of orders), the models expect 1.5 "
        "purchases worth 12.50 (discounted) over the next 52 weeks."
    )
