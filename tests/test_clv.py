"""Fitted customer value (issue 16): BG/NBD and Gamma-Gamma reproduce the published CDNOW
results from the raw 1/10 sample loaded through ingestion, and the formulas agree with
independent references (the file read in NumPy, simulation, closed-form identities)."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import warnings
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlglot
from scipy.integrate import IntegrationWarning, dblquad, quad
from scipy.special import betaln, gammaln
from sqlglot import ErrorLevel, exp
from statsmodels.tools.numdiff import approx_fprime
from threadpoolctl import threadpool_limits

from productlens import clv
from productlens.cli import main
from productlens.engines import DuckDBEngine
from tests.cdnow import read_log, write_contract_files
from tests.conftest import run_cli, warehouse_engine

CALIBRATION_END = date(1997, 9, 30)
# Fader, Hardie & Lee (2005), CDNOW 1/10 sample, 39 calibration weeks.
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_LL = -9582.4
PUBLISHED_GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "gamma": 15.44}


def build_project(project: Path, name: str) -> None:
    write_contract_files(name, project / "data")
    for step in (("ingest", str(project / "data")), ("build",)):
        # In-process: a subprocess per step would add an interpreter start to the suite.
        assert main(["--project", str(project), *step]) == 0, step


@pytest.fixture(scope="module")
def sample_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("cdnow_sample")
    build_project(project, "CDNOW_sample.txt")
    return project


@pytest.fixture(scope="module")
def sample(sample_project: Path) -> Iterator[DuckDBEngine]:
    engine = warehouse_engine(sample_project / "warehouse.duckdb", read_only=True)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def calibrated(sample: DuckDBEngine) -> clv.ClvResult:
    return clv.analyze(sample, CALIBRATION_END)


def test_the_published_bgnbd_and_gamma_gamma_estimates(calibrated: clv.ClvResult) -> None:
    assert (calibrated.n_customers, calibrated.n_repeat_buyers) == (2357, 946)
    bgnbd = dict(zip(calibrated.bgnbd.names, calibrated.bgnbd.params, strict=True))
    # To the published decimals (three significant digits or more).
    assert {k: round(v, 3) for k, v in bgnbd.items()} == PUBLISHED_BGNBD
    assert round(calibrated.bgnbd.log_likelihood, 1) == PUBLISHED_LL
    gamma_gamma = dict(
        zip(calibrated.gamma_gamma.names, calibrated.gamma_gamma.params, strict=True)
    )
    assert {k: round(v, 2) for k, v in gamma_gamma.items()} == PUBLISHED_GAMMA_GAMMA
    assert calibrated.gamma_gamma.n == 946
    assert calibrated.bgnbd.converged
    assert calibrated.gamma_gamma.converged
    assert all(np.isfinite(calibrated.bgnbd.standard_errors))
    assert all(np.isfinite(calibrated.gamma_gamma.standard_errors))


def test_the_log_likelihood_at_the_published_parameters(calibrated: clv.ClvResult) -> None:
    c = calibrated.customers
    params = np.array(list(PUBLISHED_BGNBD.values()))
    ll = clv.bgnbd_log_likelihood(params, c.frequency, c.recency_weeks, c.age_weeks).sum()
    assert round(float(ll), 1) == PUBLISHED_LL


def test_the_summary_equals_the_file_read_in_numpy(calibrated: clv.ClvResult) -> None:
    # The independent side: the sample file's lines, one transaction per customer and day.
    log = read_log("CDNOW_sample.txt")
    day = pc.strptime(pa.array(log.date), format="%Y%m%d", unit="s").to_numpy().astype("M8[D]")
    keep = day <= np.datetime64(CALIBRATION_END)
    pairs, pair_of = np.unique(
        np.column_stack([log.customer[keep], day[keep].astype(str)]), axis=0, return_inverse=True
    )
    spend = np.bincount(pair_of.ravel(), weights=log.cents[keep]) / 100
    customers, customer_of = np.unique(pairs[:, 0], return_inverse=True)
    pair_day = pairs[:, 1].astype("M8[D]")
    first = np.full(len(customers), np.datetime64("2100-01-01"), dtype="M8[D]")
    last = np.full(len(customers), np.datetime64("1900-01-01"), dtype="M8[D]")
    np.minimum.at(first, customer_of, pair_day)
    np.maximum.at(last, customer_of, pair_day)
    x = np.bincount(customer_of) - 1
    is_first = pair_day == first[customer_of]
    repeat_spend = np.bincount(customer_of, weights=np.where(is_first, 0, spend))
    c = calibrated.customers
    assert c.user_id.tolist() == customers.tolist()
    np.testing.assert_array_equal(c.frequency, x)
    np.testing.assert_allclose(c.recency_weeks, (last - first).astype(int) / 7)
    np.testing.assert_allclose(
        c.age_weeks, (np.datetime64(CALIBRATION_END) - first).astype(int) / 7
    )
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(c.mean_spend, np.where(x > 0, repeat_spend / x, np.nan))


def test_the_holdout_counts_equal_the_file(calibrated: clv.ClvResult) -> None:
    log = read_log("CDNOW_sample.txt")
    day = pc.strptime(pa.array(log.date), format="%Y%m%d", unit="s").to_numpy().astype("M8[D]")
    pairs = np.unique(np.column_stack([log.customer, day.astype(str)]), axis=0)
    first_day = pairs[np.unique(pairs[:, 0], return_index=True)[1], 1]  # sorted: first date
    customers = np.unique(pairs[:, 0])
    calibration = np.isin(pairs[:, 0], customers[first_day.astype("M8[D]") <= CALIBRATION_END])
    after = pairs[:, 1].astype("M8[D]") > np.datetime64(CALIBRATION_END)
    holdout = calibrated.holdout
    assert holdout is not None
    assert (holdout.holdout_end, holdout.weeks) == ("1998-06-30", 39.0)
    assert holdout.actual_total == int(np.sum(calibration & after))
    assert sum(b.n_customers for b in holdout.by_frequency) == 2357
    assert sum(b.actual_mean * b.n_customers for b in holdout.by_frequency) == pytest.approx(
        holdout.actual_total
    )
    # Every repeat purchase of the chart is counted once: calibration weeks plus holdout.
    assert sum(w.actual for w in holdout.tracking) == int(np.sum(calibration)) - len(customers)
    # The model's aggregate forecast is within 15% of what happened (FHL 2005, figure 2).
    assert holdout.predicted_total == pytest.approx(holdout.actual_total, rel=0.15)


PARAMS = np.array([0.3, 5.0, 0.8, 2.5])


@pytest.mark.parametrize(
    ("model", "gradient", "params", "data"),
    [
        (
            clv.bgnbd_log_likelihood,
            clv.bgnbd_gradient,
            PARAMS,
            (np.array([0.0, 1, 2, 7]), np.array([0.0, 3.5, 10, 30]), np.array([20.0, 30, 38, 39])),
        ),
        (
            clv.gamma_gamma_log_likelihood,
            clv.gamma_gamma_gradient,
            np.array([6.0, 3.7, 15.0]),
            (np.array([1.0, 2, 7]), np.array([12.5, 40.0, 3.2])),
        ),
    ],
)
def test_the_gradients_are_the_likelihoods_derivatives(
    model: object, gradient: object, params: np.ndarray, data: tuple[np.ndarray, ...]
) -> None:
    numeric = approx_fprime(params, lambda p: model(p, *data), centered=True)  # type: ignore[operator]
    np.testing.assert_allclose(gradient(params, *data), numeric, rtol=1e-5, atol=1e-7)  # type: ignore[operator]


def test_unconditional_purchases_match_a_simulation() -> None:
    # The BG/NBD story, drawn directly: lambda ~ Gamma(r, 1/alpha), p ~ Beta(a, b), the
    # customer drops out after the K-th repeat purchase, K ~ Geometric(p) on 1, 2, ...
    r, alpha, a, b = PARAMS
    rng = np.random.default_rng(16)
    n, t = 400_000, 26.0
    rate = rng.gamma(r, 1 / alpha, n)
    k = rng.geometric(rng.beta(a, b, n))
    purchases = np.minimum(rng.poisson(rate * t), k)
    expected = clv.unconditional_purchases(tuple(PARAMS), np.array([t]))[0]
    standard_error = purchases.std() / np.sqrt(n)
    assert abs(purchases.mean() - expected) < 4 * standard_error


def test_a_customer_without_repeats_is_a_new_customer_who_waited() -> None:
    # x = 0 over T weeks: alive for sure, lambda's posterior is Gamma(r, alpha + T), p's is
    # the prior; so E[Y(t) | 0, 0, T] is E[X(t)] with alpha + T.
    r, alpha, a, b = PARAMS
    big_t = np.array([5.0, 20.0, 39.0])
    zero = np.zeros(3)
    got = clv.expected_purchases(tuple(PARAMS), 13.0, zero, zero, big_t)
    want = [clv.unconditional_purchases((r, alpha + T, a, b), np.array([13.0]))[0] for T in big_t]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_array_equal(clv.probability_alive(tuple(PARAMS), zero, zero, big_t), 1.0)


def test_discounted_value_is_the_weekly_sum() -> None:
    x, t_x, big_t = np.array([0.0, 3, 8]), np.array([0.0, 20, 37]), np.array([39.0, 39, 39])
    spend = np.array([30.0, 25.0, 50.0])
    params = tuple(PARAMS)
    undiscounted = clv.discounted_value(params, spend, x, t_x, big_t, 52, 0.0)
    np.testing.assert_allclose(
        undiscounted, spend * clv.expected_purchases(params, 52.0, x, t_x, big_t), rtol=1e-10
    )
    by_week = [
        clv.expected_purchases(params, float(k), x, t_x, big_t)
        - clv.expected_purchases(params, float(k - 1), x, t_x, big_t)
        for k in range(1, 53)  # weeks
    ]
    want = sum(spend * w / 1.1 ** (k / 52) for k, w in enumerate(by_week, start=1))
    np.testing.assert_allclose(clv.discounted_value(params, spend, x, t_x, big_t, 52, 0.1), want)


def test_discounted_value_does_not_depend_on_blas_threads_or_the_batch() -> None:
    # A customer's CLV must be the same figure on every machine: whatever BLAS's thread
    # count, and alone or among thousands of customers (BLAS splits a product by its size).
    rng = np.random.default_rng(16)
    n = 3000
    x = rng.integers(0, 12, n).astype(np.float64)
    big_t = rng.uniform(1, 78, n)
    t_x = np.where(x > 0, big_t * rng.uniform(0, 1, n), 0.0)
    spend = rng.uniform(1, 300, n)
    params = tuple(PARAMS)
    with threadpool_limits(limits=1, user_api="blas"):
        one = clv.discounted_value(params, spend, x, t_x, big_t, 104, 0.1)
    with threadpool_limits(limits=4, user_api="blas"):
        four = clv.discounted_value(params, spend, x, t_x, big_t, 104, 0.1)
    np.testing.assert_array_equal(one, four)
    weeks = np.arange(105, dtype=np.float64)
    discount = 1.1 ** (-weeks[1:] / 52)
    for k in (0, 1, 1234, n - 1):  # a few customers: alone, and the weekly sum by hand
        one_customer = (spend[k : k + 1], x[k : k + 1], t_x[k : k + 1], big_t[k : k + 1])
        alone = clv.discounted_value(params, *one_customer, 104, 0.1)
        assert alone[0] == one[k]
        cumulative = clv.expected_purchases(params, weeks, *one_customer[1:])
        want = spend[k] * math.fsum(np.diff(cumulative) * discount)
        assert one[k] == pytest.approx(want, rel=1e-12)


def test_expected_spend_shrinks_to_the_population_mean() -> None:
    p, q, gamma = 6.25, 3.74, 15.44
    x, m = np.array([0.0, 1, 50]), np.array([np.nan, 100.0, 100.0])
    got = clv.expected_spend((p, q, gamma), x, m)
    assert got[0] == pytest.approx(p * gamma / (q - 1))
    assert got[0] < got[1] < got[2] < 100
    # Independently: a customer's mean spend is p / nu, and given x transactions of mean m
    # the likelihood of nu is nu^(px) e^(-nu m x) (up to a constant) times its Gamma(q, gamma)
    # prior; integrate p / nu against that posterior numerically.
    for k in (1, 2):
        shape, rate = q + p * x[k], gamma + m[k] * x[k]
        mode = (shape - 1) / rate

        def posterior(
            nu: float, shape: float = shape, rate: float = rate, mode: float = mode
        ) -> float:
            # Scaled by its value at the mode: nu^(px) alone underflows for large x.
            log = (shape - 1) * np.log(nu / mode) - rate * (nu - mode)
            return float(np.exp(log))

        bounds = (0, mode, 50 * mode)  # split at the mode: the mass is narrow for large x
        mass = sum(quad(posterior, lo, hi)[0] for lo, hi in itertools.pairwise(bounds))
        mean = sum(
            quad(lambda nu: p / nu * posterior(nu), lo, hi)[0]
            for lo, hi in itertools.pairwise(bounds)
        )
        assert got[k] == pytest.approx(mean / mass, rel=1e-8)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--calibration-end", "1997-13-01"], "cannot read '1997-13-01' as a date"),
        (["--calibration-end", "1998-07-01"], "is after the last order (1998-06-30)"),
        (["--calibration-end", "1996-12-31"], "before the first order"),
        # Everyone seen by 1 January bought that day only (same-day purchases are one).
        (["--calibration-end", "1997-01-01"], "needs repeat buyers"),
        (["--horizon", "a year"], "cannot read the horizon 'a year'"),
        (["--discount-rate", "-0.5"], "the annual discount rate must be in [0, 10)"),
    ],
)
def test_clv_refuses_what_it_cannot_fit(
    sample_project: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = main(["--project", str(sample_project), "clv", *args])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert message in err + out
    assert "Traceback" not in err


def test_clv_prints_the_fit_and_exact_json(
    sample_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--project", str(sample_project), "clv", "--calibration-end", "1997-09-30")
    text = run_cli(*args)  # once as a user runs it: a real process, no terminal
    assert text.returncode == 0, text.stderr
    assert "2,357 customers (946 repeat buyers)" in text.stdout
    assert "Holdout 1997-09-30 to 1998-06-30" in text.stdout
    assert main([*args, "--horizon", "26w", "--discount-rate", "0", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert round(got["bgnbd"]["log_likelihood"], 1) == PUBLISHED_LL
    assert got["horizon_weeks"] == 26
    customers = got["customers"]
    assert len(customers) == 2357
    # With no discounting, CLV is expected spend x expected purchases over the horizon.
    clv_values = np.array([c["clv"] for c in customers])
    product = np.array([c["expected_spend"] * c["expected_purchases"] for c in customers])
    np.testing.assert_allclose(clv_values, product, rtol=1e-9)
    assert all(c["mean_spend"] is None for c in customers if c["frequency"] == 0)
    assert len(got["holdout"]["tracking"]) == 78


@pytest.mark.parametrize("dialect", ["postgres", "spark"])
def test_the_summary_queries_transpile(dialect: str) -> None:
    for text in (clv._SUMMARY, clv._REPEATS_BY_DATE):
        query = clv._query(text, date(1997, 9, 30), date(1998, 6, 30))
        sql = query.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)
        assert "1997-09-30" in sql


def test_clv_on_an_unbuilt_warehouse_says_build_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = warehouse_engine(tmp_path / "warehouse.duckdb")
    engine.close()
    assert main(["--project", str(tmp_path), "clv"]) == 2
    assert "run `productlens build` first" in capsys.readouterr().err


def test_the_summary_is_the_same_on_postgresql(sample: DuckDBEngine, pg_dsn: str) -> None:
    # The orders the summary reads, copied as they are into a real PostgreSQL server; the
    # same SQL, transpiled, must give every customer the same x, t_x, T, m and holdout.
    from productlens.engines.postgres import PostgresEngine

    columns = {
        "user_id": "VARCHAR",
        "order_date": "DATE",
        "net_revenue": "DOUBLE",
        "is_recognized": "BOOLEAN",
    }
    orders = sample.fetch_arrow(
        sqlglot.parse_one(f"select {', '.join(columns)} from core.int_order_revenue")
    )
    pg = PostgresEngine(pg_dsn)
    try:
        pg.ensure_schema("core")
        pg.create_table(
            "core", "int_order_revenue", [(c, exp.DataType.build(t)) for c, t in columns.items()]
        )
        assert pg.append_arrow("core", "int_order_revenue", orders) == 6919
        got = clv.summarize(pg, CALIBRATION_END)
    finally:
        pg.close()
    want = clv.summarize(sample, CALIBRATION_END)
    assert got.user_id.tolist() == want.user_id.tolist()
    for name in ("frequency", "recency", "age", "mean_spend", "holdout_frequency"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-12)
    np.testing.assert_array_equal(got.first_date, want.first_date)
    assert (got.calibration_end, got.holdout_end) == (want.calibration_end, want.holdout_end)


@pytest.mark.parametrize(("x", "t_x", "big_t"), [(1, 5.0, 30.0), (3, 28.0, 30.0), (6, 10.0, 39.0)])
def test_p_alive_and_expected_purchases_are_the_posterior_integrals(
    x: int, t_x: float, big_t: float
) -> None:
    # The model's definition integrated numerically over the prior of (lambda, p):
    # the likelihood is alive(lambda, p) + died(lambda, p) with
    # alive = (1-p)^x lambda^x e^(-lambda T), died = p (1-p)^(x-1) lambda^x e^(-lambda t_x);
    # P(alive) = E[alive] / E[alive + died], and an alive customer buys
    # (1 - e^(-lambda p t)) / p times in the next t weeks on average.
    r, alpha, a, b = PARAMS
    t = 13.0

    def prior(lam: float, u: float) -> tuple[float, float]:
        p = u**5  # takes the Beta density's singularity at 0 away
        log = (
            r * np.log(alpha)
            - gammaln(r)
            + (r - 1) * np.log(lam)
            - alpha * lam
            + (a - 1) * np.log(p)
            + (b - 1) * np.log1p(-p)
            - betaln(a, b)
        )
        return float(np.exp(log) * 5 * u**4), p

    def alive(lam: float, u: float) -> float:
        weight, p = prior(lam, u)
        return weight * (1 - p) ** x * lam**x * np.exp(-lam * big_t)

    def died(lam: float, u: float) -> float:
        weight, p = prior(lam, u)
        return weight * p * (1 - p) ** (x - 1) * lam**x * np.exp(-lam * t_x)

    def future(lam: float, u: float) -> float:
        p = u**5
        return alive(lam, u) * (1 - np.exp(-lam * p * t)) / p

    top = 200 / (alpha + t_x)  # e^-200 of the mass lies beyond
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)  # the comparison is the check
        alive_mass, died_mass, future_mass = (
            dblquad(f, 0, 1, 0, top, epsabs=0, epsrel=1e-9)[0] for f in (alive, died, future)
        )
    one = (np.array([float(x)]), np.array([t_x]), np.array([big_t]))
    params = tuple(PARAMS)
    assert clv.probability_alive(params, *one)[0] == pytest.approx(
        alive_mass / (alive_mass + died_mass), rel=1e-7
    )
    assert clv.expected_purchases(params, t, *one)[0] == pytest.approx(
        future_mass / (alive_mass + died_mass), rel=1e-7
    )


def test_the_customer_value_mart_is_the_clv_analysis_exactly(
    sample_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The mart (built by `productlens build`) and `productlens clv --json` on the same
    # orders: the same fit and the same figures for every customer, to the last digit.
    assert main(["--project", str(sample_project), "clv", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    engine = warehouse_engine(sample_project / "warehouse.duckdb", read_only=True)
    try:
        mart = engine.fetch_arrow(
            sqlglot.parse_one("select * from marts.customer_value order by user_id")
        )
    finally:
        engine.close()
    customers = got["customers"]
    assert mart.num_rows == len(customers) == 2357
    assert set(mart.column("fit_status").to_pylist()) == {"fitted"}
    assert mart.column("user_id").to_pylist() == [c["user_id"] for c in customers]
    pairs = {
        "frequency": "frequency",
        "recency_weeks": "recency_weeks",
        "age_weeks": "age_weeks",
        "mean_spend": "mean_spend",
        "expected_purchases_52w": "expected_purchases",
        "probability_alive": "probability_alive",
        "expected_spend": "expected_spend",
        "clv_52w": "clv",
    }
    for column, key in pairs.items():
        want = [c[key] for c in customers]
        assert mart.column(column).to_pylist() == want, column
    assert set(mart.column("as_of_date").to_pylist()) == {date(1998, 6, 30)}


def test_the_holdout_after_a_mid_week_calibration_end_counts_every_day(
    sample: DuckDBEngine,
) -> None:
    # 1997-09-27 is a Saturday in the chart's fourth day of a week: the rest of that week
    # belongs to the holdout, and its purchases count in the holdout totals.
    end = date(1997, 9, 27)
    log = read_log("CDNOW_sample.txt")
    day = pc.strptime(pa.array(log.date), format="%Y%m%d", unit="s").to_numpy().astype("M8[D]")
    pairs = np.unique(np.column_stack([log.customer, day.astype(str)]), axis=0)
    first_day = pairs[np.unique(pairs[:, 0], return_index=True)[1], 1]
    customers = np.unique(pairs[:, 0])
    calibration = np.isin(pairs[:, 0], customers[first_day.astype("M8[D]") <= end])
    after = pairs[:, 1].astype("M8[D]") > np.datetime64(end)
    result = clv.analyze(sample, end)
    holdout = result.holdout
    assert holdout is not None
    assert holdout.actual_total == int(np.sum(calibration & after)) == 1908
    # The chart's holdout weeks hold whole weeks only; the totals are the days after the end.
    chart = sum(w.actual for w in holdout.tracking if w.is_holdout)
    assert chart < holdout.actual_total
    assert holdout.predicted_total == pytest.approx(holdout.actual_total, rel=0.15)


def test_the_predicted_holdout_total_is_the_charts_on_a_week_boundary(
    calibrated: clv.ClvResult,
) -> None:
    # 1997-09-30 ends a chart week: the closed-form total over the holdout's days equals
    # the sum of the tracking chart's holdout weeks.
    holdout = calibrated.holdout
    assert holdout is not None
    chart = sum(w.predicted for w in holdout.tracking if w.is_holdout)
    assert holdout.predicted_total == pytest.approx(chart, rel=1e-12)
    assert holdout.actual_total == sum(w.actual for w in holdout.tracking if w.is_holdout)


def test_python_m_productlens_cli_honours_project(sample_project: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "productlens.cli",
            "--project",
            str(sample_project),
            "clv",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # an empty folder: the project must come from --project
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n_customers"] == 2357
