"""The experiment data layer against a brute-force computation over the user-level rows.

The marts are written directly (random users with ties, unknown users, a variant missing
from some dimension values, a third unconfigured variant), then every sufficient
statistic the SQL returns is recomputed in pandas from the same rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlglot
import statsmodels.formula.api as smf
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from productlens.engines import DuckDBEngine
from productlens.errors import ConfigError
from productlens.experiments.data import (
    _EXPERIMENTS,
    _GUARDS,
    Experiment,
    Variant,
    _fill,
    cumulative_stats,
    find_experiment,
    fit_logit,
    guards,
    list_experiments,
    metric_stats,
    regression,
    regression_query,
    stats_query,
)
from productlens.experiments.metric_defs import MetricDef
from productlens.experiments.stats import VariantStats
from tests.conftest import q, warehouse_engine

START = datetime(2026, 3, 1)
COUNTRIES = ["US", "GB", "DE", "FR", "IN", "BR", "JP"]
METRICS = (
    MetricDef("conversion", "proportion", "is_converted", covariate="pre_is_converted"),
    MetricDef("revenue", "mean", "revenue", covariate="pre_revenue"),
    MetricDef("revenue_capped", "mean", "revenue", covariate="pre_revenue", cap_percentile=0.9),
    MetricDef("revenue_per_order", "ratio", "revenue", denominator="n_orders"),
    MetricDef("aov_capped", "ratio", "revenue", denominator="n_orders", cap_percentile=0.75),
    MetricDef("engaged", "mean", "greatest(n_events - pre_n_events, 0) + (n_orders > 1)"),
)


def _users(rng: np.random.Generator, n: int) -> pd.DataFrame:
    variant = rng.choice(["control", "treatment", "zeta"], n, p=[0.45, 0.45, 0.10])
    converted = rng.random(n) < np.where(variant == "treatment", 0.35, 0.3)
    n_orders = np.where(converted, rng.integers(1, 4, n), 0)
    # Revenue rounded to whole units: many ties, so the cap lands on a repeated value.
    revenue = np.where(converted, np.round(rng.exponential(40, n)), 0.0)
    country = rng.choice(COUNTRIES, n, p=[0.3, 0.2, 0.15, 0.15, 0.1, 0.06, 0.04])
    # JP users are all control: a dimension value where a variant has no user.
    variant = np.where(country == "JP", "control", variant)
    return pd.DataFrame(
        {
            "experiment_id": "x1",
            "user_id": [f"u{i:04d}" for i in range(n)],
            "variant": variant,
            "has_multiple_variants": rng.random(n) < 0.01,
            "first_exposure_ts": [START + timedelta(hours=float(h)) for h in rng.random(n) * 240],
            "is_converted": converted,
            "revenue": revenue,
            "n_orders": n_orders,
            "n_events": rng.poisson(8, n),
            "pre_is_converted": rng.random(n) < 0.2,
            "pre_revenue": np.round(rng.exponential(20, n) * (rng.random(n) < 0.2), 2),
            "pre_n_events": rng.poisson(5, n),
            "country": country,
            "device": rng.choice(["web", "mobile"], n),
        }
    )


def _put(engine: DuckDBEngine, name: str, frame: pd.DataFrame | pa.Table, folder: Path) -> None:
    """Create `name` from a frame, through a Parquet file (the engine has no replacement
    scans of Python objects)."""
    import pyarrow.parquet as pq

    table = (
        frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    )
    path = folder / f"{name}.parquet"
    pq.write_table(table, path)
    engine.execute(q(f"CREATE TABLE {name} AS SELECT * FROM read_parquet('{path}')"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DuckDBEngine, pd.DataFrame]]:
    rng = np.random.default_rng(12)
    users = _users(rng, 3000)
    folder = tmp_path_factory.mktemp("x")
    engine = warehouse_engine(folder / "w.duckdb", threads=1)
    for schema in ("staging", "core", "marts"):
        engine.execute(q(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
    outcomes = users.drop(columns=["country", "device"]).assign(outcome_window_days=7)
    _put(engine, "marts.experiment_outcomes", outcomes, folder)
    engine.execute(
        q(
            "CREATE TABLE marts.experiment_exposures AS SELECT experiment_id, user_id, variant, "
            "first_exposure_ts, has_multiple_variants, outcome_window_days "
            "FROM marts.experiment_outcomes"
        )
    )
    engine.execute(
        q(
            "CREATE TABLE staging.stg_experiments AS SELECT 'x1' AS experiment_id, 'Test' AS "
            "experiment_name, 'h' AS hypothesis, '{\"control\": 0.5, \"treatment\": 0.5}' AS "
            "variants, TIMESTAMP '2026-03-01' AS start_ts, TIMESTAMP '2026-03-11' AS end_ts, "
            "'checkout_start' AS exposure_event, 'purchase' AS primary_metric, "
            "7 AS outcome_window_days"
        )
    )
    # dim_users as SCD Type 2: every fifth user moved country halfway through the test
    # (the value at first exposure counts); the last 40 users are unknown to it.
    known = users.iloc[:-40]
    moved = known.iloc[::5]
    middle = START + timedelta(days=5)
    old_country = np.where(moved.country == "US", "GB", "US")
    versions = pd.concat(
        [
            known.assign(valid_from=datetime(1900, 1, 1), valid_to=datetime(9999, 12, 31)).drop(
                moved.index
            ),
            moved.assign(country=old_country, valid_from=datetime(1900, 1, 1), valid_to=middle),
            moved.assign(valid_from=middle, valid_to=datetime(9999, 12, 31)),
        ]
    )[["user_id", "country", "device", "valid_from", "valid_to"]]
    _put(engine, "core.dim_users", versions, folder)
    moved_before = moved.first_exposure_ts < middle
    truth = users.copy()
    truth.loc[moved.index[moved_before], "country"] = old_country[moved_before.to_numpy()]
    truth.loc[truth.index[-40:], ["country", "device"]] = None
    yield engine, truth
    engine.close()


# --- the brute-force reference -----------------------------------------------------------


def _values(users: pd.DataFrame, metric: MetricDef) -> pd.DataFrame:
    """Per user x, d, c as the metric defines them (by hand, not through SQL)."""
    by_hand = {
        "is_converted": users.is_converted.astype(float),
        "revenue": users.revenue.astype(float),
        "n_orders": users.n_orders.astype(float),
        "pre_is_converted": users.pre_is_converted.astype(float),
        "pre_revenue": users.pre_revenue.astype(float),
        "greatest(n_events - pre_n_events, 0) + (n_orders > 1)": np.maximum(
            users.n_events - users.pre_n_events, 0
        )
        + (users.n_orders > 1),
    }
    return pd.DataFrame(
        {
            "variant": users.variant,
            "x": by_hand[metric.numerator],
            "d": by_hand[metric.denominator] if metric.denominator else np.nan,
            "c": by_hand[metric.covariate] if metric.covariate else np.nan,
        }
    )


def _cap(x: np.ndarray, p: float) -> float:
    """The smallest value with at least share p of users at or below it."""
    ordered = np.sort(x)
    k = math.ceil(Fraction(str(p)) * len(ordered))
    return float(ordered[k - 1])


def _expected(values: pd.DataFrame, variant: str, cap: float | None) -> dict[str, float]:
    v = values[values.variant == variant]
    x = v.x.to_numpy() if cap is None else np.minimum(v.x.to_numpy(), cap)
    d, c = v.d.to_numpy(), v.c.to_numpy()
    return {
        "n": len(v),
        "sum": x.sum(),
        "sum_squares": (x * x).sum(),
        "denominator_sum": d.sum(),
        "denominator_sum_squares": (d * d).sum(),
        "cross_sum": (x * d).sum(),
        "covariate_sum": c.sum(),
        "covariate_sum_squares": (c * c).sum(),
        "covariate_cross_sum": (x * c).sum(),
    }


def _assert_matches(got: VariantStats, expected: dict[str, float], metric: MetricDef) -> None:
    assert got.n == expected["n"]
    for name, value in expected.items():
        actual = getattr(got, name)
        if np.isnan(value) or (expected["n"] == 0 and name != "n"):
            # An absent part of the metric is None; an empty group sums to 0.
            absent = (name.startswith("denominator") or name == "cross_sum") and not (
                metric.denominator
            )
            absent |= name.startswith("covariate") and not metric.covariate
            assert actual is None if absent else actual == 0, (metric.name, name, actual)
        else:
            assert actual == pytest.approx(value, rel=1e-12, abs=1e-9), (metric.name, name)


VARIANTS = ("control", "treatment", "zeta")


def test_lists_the_experiment_with_weights_and_users(
    world: tuple[DuckDBEngine, pd.DataFrame],
) -> None:
    engine, users = world
    [experiment] = list_experiments(engine)
    assert experiment.experiment_id == "x1"
    assert experiment.control == "control"
    # Configured variants first in their order, then the one only the data shows.
    assert [(v.name, v.weight) for v in experiment.variants] == [
        ("control", 0.5),
        ("treatment", 0.5),
        ("zeta", None),
    ]
    assert {
        v.name: v.n_users for v in experiment.variants
    } == users.variant.value_counts().to_dict()
    assert find_experiment(engine, "Test") == experiment
    with pytest.raises(ConfigError, match="unknown experiment 'nope'; known: x1"):
        find_experiment(engine, "nope")


def test_guards_count_users_and_multiple_exposures(
    world: tuple[DuckDBEngine, pd.DataFrame],
) -> None:
    engine, users = world
    g = guards(engine, find_experiment(engine, "x1"))
    assert g.users_per_variant == users.variant.value_counts().to_dict()
    assert g.n_multiple_variants == int(users.has_multiple_variants.sum())


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.name)
def test_overall_statistics_match_brute_force(
    world: tuple[DuckDBEngine, pd.DataFrame], metric: MetricDef
) -> None:
    engine, users = world
    experiment = find_experiment(engine, "x1")
    [result] = metric_stats(engine, experiment, [metric])
    values = _values(users, metric)
    assert [s.name for s in result.variants] == list(VARIANTS)
    for got in result.variants:
        _assert_matches(got, _expected(values, got.name, None), metric)
    if metric.cap_percentile is None:
        assert result.capped is None
        assert result.cap is None
        return
    cap = _cap(values.x.to_numpy(), metric.cap_percentile)
    assert result.cap == cap
    assert result.capped is not None
    for got in result.capped:
        _assert_matches(got, _expected(values, got.name, cap), metric)
    # The cap bites: the capped sum is smaller, the count is not.
    assert result.capped[0].sum < result.variants[0].sum
    assert result.capped[0].n == result.variants[0].n


def test_cap_is_the_inverse_empirical_quantile_without_float_slips() -> None:
    # 100 users 1..100 at p = 0.99: the 99th value (99), not 100 (0.99 * 100 in floating
    # point is 99.00000000000001, whose ceiling would be 100).
    assert _cap(np.arange(1, 101), 0.99) == 99
    assert float(np.quantile(np.arange(1, 101), 0.99, method="inverted_cdf")) == 99


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.name)
def test_dimension_buckets_are_top_values_and_an_exact_other(
    world: tuple[DuckDBEngine, pd.DataFrame], metric: MetricDef
) -> None:
    engine, users = world
    experiment = find_experiment(engine, "x1")
    top_n = 3
    buckets = metric_stats(engine, experiment, [metric], dimension="country", top_n=top_n)
    # The country at first exposure; users unknown to dim_users have no value (NaN/None).
    country = users.country.astype(object).where(users.country.notna(), None)
    counts = country.value_counts(dropna=False)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))
    top = [value for value, _ in ranked[:top_n]]
    assert [b.dimension_value for b in buckets] == [*top, None]
    assert [b.is_other for b in buckets] == [False] * top_n + [True]
    values = _values(users, metric)
    pooled_cap = (
        None if metric.cap_percentile is None else _cap(values.x.to_numpy(), metric.cap_percentile)
    )
    for bucket in buckets:
        member = (~country.isin(top)) if bucket.is_other else (country == bucket.dimension_value)
        for got in bucket.variants:
            _assert_matches(got, _expected(values[member.to_numpy()], got.name, None), metric)
        if pooled_cap is not None:
            assert bucket.cap == pooled_cap  # the experiment's cap, not the bucket's
            assert bucket.capped is not None
            for got in bucket.capped:
                _assert_matches(
                    got, _expected(values[member.to_numpy()], got.name, pooled_cap), metric
                )
    # Buckets add up to the whole experiment, exactly.
    [overall] = metric_stats(engine, experiment, [metric])
    for i, whole in enumerate(overall.variants):
        pooled = buckets[0].variants[i]
        for bucket in buckets[1:]:
            pooled = pooled + bucket.variants[i]
        assert pooled.n == whole.n
        assert pooled.sum == pytest.approx(whole.sum, rel=1e-12)
        assert pooled.sum_squares == pytest.approx(whole.sum_squares, rel=1e-12)


def test_a_value_where_a_variant_has_nobody_still_lists_every_variant(
    world: tuple[DuckDBEngine, pd.DataFrame],
) -> None:
    engine, _ = world
    experiment = find_experiment(engine, "x1")
    buckets = metric_stats(engine, experiment, METRICS[:1], dimension="country", top_n=10)
    [jp] = [b for b in buckets if b.dimension_value == "JP"]
    assert [(s.name, s.n) for s in jp.variants][1:] == [("treatment", 0), ("zeta", 0)]
    assert jp.variants[0].n > 0


@pytest.mark.parametrize("metric", [METRICS[0], METRICS[2], METRICS[4]], ids=lambda m: m.name)
def test_cumulative_statistics_match_brute_force_per_day(
    world: tuple[DuckDBEngine, pd.DataFrame], metric: MetricDef
) -> None:
    engine, users = world
    experiment = find_experiment(engine, "x1")
    series = cumulative_stats(engine, experiment, [metric])
    days = sorted(users.first_exposure_ts.dt.date.unique())
    assert [s.day for s in series] == days
    values = _values(users, metric)
    cap = (
        None if metric.cap_percentile is None else _cap(values.x.to_numpy(), metric.cap_percentile)
    )
    exposure_day = users.first_exposure_ts.dt.date
    for point in series:
        so_far = (exposure_day <= point.day).to_numpy()
        for got in point.variants:
            _assert_matches(got, _expected(values[so_far], got.name, None), metric)
        if cap is not None:
            assert point.capped is not None
            for got in point.capped:
                _assert_matches(got, _expected(values[so_far], got.name, cap), metric)
    # The last day holds everyone.
    [overall] = metric_stats(engine, experiment, [metric])
    assert [s.n for s in series[-1].variants] == [s.n for s in overall.variants]


def test_unknown_dimension_and_mismatched_window_are_config_errors(
    world: tuple[DuckDBEngine, pd.DataFrame],
) -> None:
    engine, _ = world
    experiment = find_experiment(engine, "x1")
    with pytest.raises(ConfigError, match="unknown dimension 'planet'"):
        metric_stats(engine, experiment, METRICS[:1], dimension="planet")
    weekly = MetricDef("conversion_14d", "proportion", "is_converted", window_days=14)
    with pytest.raises(ConfigError, match=r"experiments\.metrics\.conversion_14d\.window_days"):
        metric_stats(engine, experiment, [weekly])
    same = MetricDef("conversion_7d", "proportion", "is_converted", window_days=7)
    assert metric_stats(engine, experiment, [same])[0].variants[0].n > 0


# --- regression ------------------------------------------------------------------------------


def test_regression_matches_the_statsmodels_formula_api(
    world: tuple[DuckDBEngine, pd.DataFrame],
) -> None:
    engine, users = world
    result = regression(engine, find_experiment(engine, "x1"))
    assert result.error is None
    frame = users.assign(
        y=users.is_converted.astype(int),
        pre_conv=users.pre_is_converted.astype(int),
        device=users.device.fillna("(unknown)"),
    )
    # The most common device is the reference level.
    common = str(frame.device.value_counts().idxmax())
    other = sorted({"web", "mobile"} - {common})[0]
    reference = smf.logit(
        "y ~ C(variant, Treatment('control')) + n_events + pre_conv + pre_n_events"
        f" + C(device, Treatment('{common}'))",
        data=frame,
    ).fit(disp=0)
    names = {
        "intercept": "Intercept",
        "variant[treatment]": "C(variant, Treatment('control'))[T.treatment]",
        "variant[zeta]": "C(variant, Treatment('control'))[T.zeta]",
        "n_events": "n_events",
        "pre_is_converted": "pre_conv",
        "pre_n_events": "pre_n_events",
        "device[(unknown)]": f"C(device, Treatment('{common}'))[T.(unknown)]",
        f"device[{other}]": f"C(device, Treatment('{common}'))[T.{other}]",
    }
    assert sorted(result.terms) == sorted(names)
    interval = reference.conf_int()
    for ours, theirs in names.items():
        c = result.coefficient(ours)
        assert c.coefficient == pytest.approx(reference.params[theirs], rel=1e-9, abs=1e-12)
        assert c.std_error == pytest.approx(reference.bse[theirs], rel=1e-9)
        assert c.odds_ratio == pytest.approx(math.exp(reference.params[theirs]), rel=1e-9)
        assert c.odds_ratio_low == pytest.approx(math.exp(interval.loc[theirs, 0]), rel=1e-9)
        assert c.odds_ratio_high == pytest.approx(math.exp(interval.loc[theirs, 1]), rel=1e-9)


def _hand(variant: list[str], converted: list[int], n_events: list[int] | None = None) -> pa.Table:
    n = len(variant)
    return pa.table(
        {
            "variant": variant,
            "is_converted": converted,
            "n_events": n_events or [i % 5 for i in range(n)],
            "pre_is_converted": [i % 3 == 0 for i in range(n)],
            "pre_n_events": [i % 7 for i in range(n)],
            "device": ["web" if i % 4 < 2 else "mobile" for i in range(n)],
        }
    )


DEGENERATE = {
    "one_class": _hand(["control", "treatment"] * 20, [1] * 40),
    "one_variant": _hand(["control"] * 40, [i % 2 for i in range(40)]),
    "too_few_users": _hand(["control", "treatment"], [0, 1]),
    # Conversion exactly when n_events > 2: perfectly separated.
    "perfect_separation": _hand(
        ["control", "treatment"] * 20,
        [int(i % 5 > 2) for i in range(40)],
    ),
}


@pytest.mark.parametrize("code", sorted(DEGENERATE))
def test_degenerate_fits_return_an_error_code(code: str) -> None:
    result = fit_logit(DEGENERATE[code], ["control", "treatment"])
    assert result.error == code
    assert result.coefficients == ()


def test_a_covariate_without_variation_is_left_out_not_fatal() -> None:
    converted = (np.random.default_rng(3).random(60) < 0.4).astype(int).tolist()
    table = _hand(["control", "treatment"] * 30, converted)
    table = table.set_column(3, "pre_is_converted", pa.array([False] * 60))
    result = fit_logit(table, ["control", "treatment"])
    assert result.error is None
    assert "pre_is_converted" not in result.terms
    assert "variant[treatment]" in result.terms


def test_variants_json_shapes(tmp_path: Path) -> None:
    """Weights from a dict, from a list of objects, or none from a list of names."""
    engine = warehouse_engine(tmp_path / "w.duckdb", threads=1)
    for schema in ("staging", "marts"):
        engine.execute(q(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
    engine.execute(
        q(
            "CREATE TABLE marts.experiment_exposures (experiment_id VARCHAR, user_id VARCHAR, "
            "variant VARCHAR, has_multiple_variants BOOLEAN)"
        )
    )
    shapes = {
        "a": {"b": 0.2, "a": 0.8},
        "b": [{"name": "off", "weight": 0.9}, {"name": "on", "weight": 0.1}],
        "c": ["x", "y"],
    }
    rows = pa.table(
        {
            "experiment_id": list(shapes),
            "experiment_name": list(shapes),
            "variants": [json.dumps(v) for v in shapes.values()],
            "start_ts": pa.array([None] * 3, pa.timestamp("us")),
            "end_ts": pa.array([None] * 3, pa.timestamp("us")),
            "outcome_window_days": [7, 7, 7],
            "exposure_event": ["e"] * 3,
            "primary_metric": ["m"] * 3,
        }
    )
    _put(engine, "staging.stg_experiments", rows, tmp_path)
    got = {
        e.experiment_id: [(v.name, v.weight) for v in e.variants] for e in list_experiments(engine)
    }
    assert got == {
        "a": [("b", 0.2), ("a", 0.8)],
        "b": [("off", 0.9), ("on", 0.1)],
        "c": [("x", None), ("y", None)],
    }
    engine.close()


# --- portability -------------------------------------------------------------------------------


def _shapes() -> dict[str, exp.Query]:
    return {
        "overall": stats_query("x1", METRICS),
        "by_country": stats_query("x1", METRICS, dimension="country", top_n=3),
        "cumulative": stats_query("x1", METRICS, by_day=True),
        "uncapped_only": stats_query("x1", METRICS[:2], dimension="device"),
        "regression": regression_query("x1"),
        "experiments": _fill(_EXPERIMENTS),
        "guards": _fill(_GUARDS, experiment_id="x1"),
    }


@pytest.mark.parametrize("dialect", ["postgres", "spark"])
@pytest.mark.parametrize("shape", sorted(_shapes()))
def test_every_query_shape_compiles_for(shape: str, dialect: str) -> None:
    text = _shapes()[shape].sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)
    reparsed = sqlglot.parse_one(text, read=dialect)
    unknown = sorted({node.name for node in reparsed.find_all(exp.Anonymous)})
    assert unknown == [], f"{dialect} does not know {unknown}"
    # No percentile function: Spark would approximate it (PERCENTILE_APPROX).
    assert "PERCENTILE" not in text.upper()


def test_an_experiment_id_from_outside_stays_a_literal() -> None:
    hostile = "x'); drop table marts.experiment_outcomes; --"
    for query in (stats_query(hostile, METRICS), regression_query(hostile)):
        for dialect in ("duckdb", "postgres", "spark"):
            reparsed = sqlglot.parse_one(query.sql(dialect=dialect), read=dialect)
            assert isinstance(reparsed, exp.Select)
            literals = {lit.this for lit in reparsed.find_all(exp.Literal) if lit.is_string}
            assert hostile in literals


@pytest.mark.parametrize(
    ("percentile", "cap"),
    [(0.9, 9.0), (0.91, 10.0), (0.5, 5.0), (0.51, 6.0), (0.1, 1.0), (0.09, 1.0)],
)
def test_cap_on_distinct_values_is_the_rank_ceil_p_n(
    tmp_path: Path, percentile: float, cap: float
) -> None:
    """Ten users with revenue 1..10: the cap is the ceil(p * 10)-th value, exactly."""
    engine = warehouse_engine(tmp_path / "w.duckdb", threads=1)
    for schema in ("core", "marts"):
        engine.execute(q(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
    engine.execute(
        q(
            "CREATE TABLE marts.experiment_outcomes AS SELECT 'x1' AS experiment_id, "
            "'u' || i AS user_id, CASE WHEN i % 2 = 0 THEN 'control' ELSE 'treatment' END "
            "AS variant, TIMESTAMP '2026-03-01' AS first_exposure_ts, i::DOUBLE AS revenue "
            "FROM range(1, 11) AS t(i)"
        )
    )
    engine.execute(
        q(
            "CREATE TABLE core.dim_users (user_id VARCHAR, valid_from TIMESTAMP, "
            "valid_to TIMESTAMP, device VARCHAR)"
        )
    )
    experiment = Experiment(
        "x1",
        None,
        None,
        None,
        7,
        None,
        None,
        (Variant("control", 0.5, 5), Variant("treatment", 0.5, 5)),
    )
    metric = MetricDef("r", "mean", "revenue", cap_percentile=percentile)
    [result] = metric_stats(engine, experiment, [metric])
    assert result.cap == cap
    assert result.capped is not None
    capped_total = sum(s.sum for s in result.capped)
    assert capped_total == sum(min(i, cap) for i in range(1, 11))
    engine.close()
