"""The experiment readout's data: sufficient statistics computed in SQL from the marts.

Every query is a SQLGlot expression over `marts.experiment_outcomes` (one row per user per
experiment) and returns a handful of sums per experiment x metric x variant (x dimension
value, or x day of first exposure); user-level rows never reach Python here. The one
exception is `regression`, which pulls the per-user columns a logistic regression needs.

- Metrics (see `metric_defs`): per user, the numerator x, the denominator d (ratio
  metrics) and the pre-exposure covariate c (CUPED). Sums: n, sum x, sum x^2, sum d,
  sum d^2, sum x*d, sum c, sum c^2, sum x*c.
- Capping: the cap is the `cap_percentile` quantile of x pooled over every exposed user of
  the experiment, taken as the inverse of the empirical distribution (the smallest value
  with at least that share of users at or below it: PostgreSQL's percentile_disc, NumPy's
  "inverted_cdf"). It is computed with row_number() and integer arithmetic rather than
  quantile_disc, which SQLGlot turns into PERCENTILE_APPROX or an invalid call on Spark.
  Capped sums use least(x, cap) beside the uncapped ones; d and c are never capped.
- Dimensions (`--by`): the user's attribute in `core.dim_users` at first exposure (the
  SCD Type 2 version valid then), so a later move of country does not move the user.
  The top N values by users exposed are kept; every other value (users without a
  dimension row included, as a null value) falls into one "other" bucket, whose sums
  are exactly the sums of those users. The cap stays the experiment's pooled cap.
- Cumulative effect: the same sums per day of first exposure, cumulated with a window
  sum, every variant on every day (a day without users repeats the previous total).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlglot
from sqlglot import exp

from productlens.errors import ConfigError
from productlens.experiments.metric_defs import MetricDef
from productlens.experiments.stats import VariantStats, json_value

if TYPE_CHECKING:
    import pyarrow as pa

    from productlens.engines import Engine

__all__ = [
    "DIMENSIONS",
    "Coefficient",
    "CumulativeStats",
    "Experiment",
    "Guards",
    "MetricStats",
    "RegressionResult",
    "Variant",
    "cumulative_stats",
    "find_experiment",
    "fit_logit",
    "guards",
    "list_experiments",
    "metric_stats",
    "regression",
    "regression_query",
    "stats_query",
]

# --dimension name -> column of core.dim_users (the version valid at first exposure).
DIMENSIONS: dict[str, str] = {
    "device": "device",
    "country": "country",
    "segment": "segment",
    "acquisition_channel": "acquisition_channel",
}


@dataclass(frozen=True)
class Variant:
    name: str
    weight: float | None  # configured traffic share; None for a variant not configured
    n_users: int


@dataclass(frozen=True)
class Experiment:
    """One experiment as `stg_experiments` configures it and the marts observed it."""

    experiment_id: str
    name: str | None
    start_ts: datetime | None
    end_ts: datetime | None
    outcome_window_days: int | None
    exposure_event: str | None
    primary_metric: str | None
    variants: tuple[Variant, ...]  # the configured ones in order (control first), then others

    @property
    def control(self) -> str:
        return self.variants[0].name

    @property
    def n_users(self) -> int:
        return sum(v.n_users for v in self.variants)

    def weight(self, variant: str) -> float | None:
        return next((v.weight for v in self.variants if v.name == variant), None)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: id, name, dates, outcome window, variants with weights and users."""
        return {
            "experiment_id": self.experiment_id,
            "name": self.name,
            "start": None if self.start_ts is None else self.start_ts.isoformat(),
            "end": None if self.end_ts is None else self.end_ts.isoformat(),
            "outcome_window_days": self.outcome_window_days,
            "variants": [
                {"name": v.name, "weight": json_value(v.weight), "n_users": v.n_users}
                for v in self.variants
            ],
        }


@dataclass(frozen=True)
class MetricStats:
    """One metric's sufficient statistics per variant (control first), for the whole
    experiment or one dimension bucket; `capped` beside them when the metric is capped."""

    metric: str
    variants: tuple[VariantStats, ...]
    capped: tuple[VariantStats, ...] | None = None
    cap: float | None = None
    dimension_value: str | None = None
    is_other: bool = False


@dataclass(frozen=True)
class CumulativeStats:
    """A metric's statistics over the users first exposed on or before `day`."""

    metric: str
    day: date
    variants: tuple[VariantStats, ...]
    capped: tuple[VariantStats, ...] | None = None


@dataclass(frozen=True)
class Guards:
    """What the readout checks before trusting a result."""

    users_per_variant: dict[str, int]
    n_multiple_variants: int  # users recorded in more than one variant


EXPERIMENTS_TABLE = "staging.stg_experiments"
EXPOSURES_TABLE = "marts.experiment_exposures"
OUTCOMES_TABLE = "marts.experiment_outcomes"
USERS_TABLE = "core.dim_users"


def _table(name: str) -> exp.Table:
    schema, table = name.split(".")
    return exp.table_(table, db=schema, quoted=True)


def _fill(template: str, **values: Any) -> exp.Query:
    """Parse a fixed template and put values (as literals, or expressions) in its slots,
    the columns named `__NAME` (SQLGlot's own :name placeholders clash with DuckDB's
    `alias: expression` syntax)."""

    def put(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and node.name.startswith("__"):
            return exp.convert(values[node.name[2:]])
        return node

    tree = sqlglot.parse_one(template, read="duckdb").transform(put)
    assert isinstance(tree, exp.Query)
    return tree


def _run(engine: Engine, query: exp.Query) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = engine.fetch_arrow(query).to_pylist()
    return rows


# --- experiments and guards ----------------------------------------------------------------

_EXPERIMENTS = """
with exposed as (
    select experiment_id, variant, count(*) as n_users
    from marts.experiment_exposures
    group by experiment_id, variant
)
select
    coalesce(x.experiment_id, exposed.experiment_id) as experiment_id,
    x.experiment_name, x.start_ts, x.end_ts, x.outcome_window_days, x.exposure_event,
    x.primary_metric, x.variants, exposed.variant, exposed.n_users
from staging.stg_experiments as x
full outer join exposed on x.experiment_id = exposed.experiment_id
order by 1, exposed.variant
"""


def list_experiments(engine: Engine) -> list[Experiment]:
    """Every experiment configured or exposed, with its variants' weights and users."""
    rows = _run(engine, _fill(_EXPERIMENTS))
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in rows:  # one row per experiment x variant: a handful
        by_id.setdefault(row["experiment_id"], []).append(row)
    return [_experiment(group) for group in by_id.values()]


def _experiment(rows: list[dict[str, Any]]) -> Experiment:
    first = rows[0]
    weights = _weights(first["variants"])
    observed = {r["variant"]: int(r["n_users"]) for r in rows if r["variant"] is not None}
    names = list(weights) + sorted(set(observed) - set(weights))
    return Experiment(
        experiment_id=first["experiment_id"],
        name=first["experiment_name"],
        start_ts=first["start_ts"],
        end_ts=first["end_ts"],
        outcome_window_days=first["outcome_window_days"],
        exposure_event=first["exposure_event"],
        primary_metric=first["primary_metric"],
        variants=tuple(Variant(n, weights.get(n), observed.get(n, 0)) for n in names),
    )


def _weights(text: str | None) -> dict[str, float | None]:
    """The variants JSON of stg_experiments: {"control": 0.5, ...} or a list of names or
    of {"name": ..., "weight": ...}; order kept (the first is the control)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    if isinstance(value, dict):
        return {str(k): _number(v) for k, v in value.items()}
    if isinstance(value, list):
        out: dict[str, float | None] = {}
        for item in value:
            if isinstance(item, dict) and "name" in item:
                out[str(item["name"])] = _number(item.get("weight"))
            elif isinstance(item, str):
                out[item] = None
        return out
    return {}


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def find_experiment(engine: Engine, experiment_id: str) -> Experiment:
    """One experiment by id (or by name), or a ConfigError listing the known ones."""
    experiments = list_experiments(engine)
    for e in experiments:
        if experiment_id in (e.experiment_id, e.name):
            return e
    known = ", ".join(e.experiment_id for e in experiments) or "none"
    raise ConfigError(f"unknown experiment {experiment_id!r}; known: {known}")


_GUARDS = """
select variant, count(*) as n_users, count(*) filter (where has_multiple_variants) as n_multiple
from marts.experiment_exposures
where experiment_id = __experiment_id
group by variant
"""


def guards(engine: Engine, experiment: Experiment) -> Guards:
    """Users per variant (every variant of the experiment, 0 where none) and users seen in
    more than one variant."""
    rows = _run(engine, _fill(_GUARDS, experiment_id=experiment.experiment_id))
    counts = {v.name: 0 for v in experiment.variants}
    counts.update({r["variant"]: int(r["n_users"]) for r in rows})
    return Guards(counts, sum(int(r["n_multiple"]) for r in rows))


# --- sufficient statistics -------------------------------------------------------------------

# Output column -> aggregate over the per-user values x, d, c and the capped xc.
STAT_AGGREGATES: dict[str, str] = {
    "n": "count(*)",
    "sum": "sum(x)",
    "sum_squares": "sum(x * x)",
    "denominator_sum": "sum(d)",
    "denominator_sum_squares": "sum(d * d)",
    "cross_sum": "sum(x * d)",
    "covariate_sum": "sum(c)",
    "covariate_sum_squares": "sum(c * c)",
    "covariate_cross_sum": "sum(x * c)",
    "capped_sum": "sum(xc)",
    "capped_sum_squares": "sum(xc * xc)",
    "capped_cross_sum": "sum(xc * d)",
    "capped_covariate_cross_sum": "sum(xc * c)",
}

_UNITS = """
with outcomes as (
    select * from marts.experiment_outcomes where experiment_id = __experiment_id
),

users as (
    select * from core.dim_users
),

units as (
    select
        outcomes.*,
        cast(outcomes.first_exposure_ts as date) as exposure_date,
        cast(__dimension as varchar) as dimension_value
    from outcomes
    left join users
        on
            outcomes.user_id = users.user_id
            and users.valid_from <= outcomes.first_exposure_ts
            and outcomes.first_exposure_ts < users.valid_to
),

ranked_values as (
    select
        dimension_value,
        row_number() over (order by count(*) desc, dimension_value nulls last) as value_rank
    from units
    group by dimension_value
),

bucketed as (
    select
        units.*,
        ranked_values.value_rank > __top_n as is_other
    from units
    inner join ranked_values
        on units.dimension_value is not distinct from ranked_values.dimension_value
),

long_values as (
    select 1
),

ranked as (
    select
        metric,
        x,
        cap_numerator,
        cap_denominator,
        row_number() over (partition by metric order by x) as x_rank,
        count(*) over (partition by metric) as n_pooled
    from long_values
    where cap_numerator is not null
),

caps as (
    select metric, min(x) as cap
    from ranked
    where x_rank * cap_denominator >= cap_numerator * n_pooled
    group by metric
),

capped as (
    select
        long_values.*,
        caps.cap,
        case when caps.cap is not null then least(long_values.x, caps.cap) end as xc
    from long_values
    left join caps on long_values.metric = caps.metric
)

select 1
"""

_LONG = """
select
    __metric as metric,
    variant,
    case when is_other then null else dimension_value end as dimension_value,
    is_other,
    exposure_date,
    cast(__x as double) as x,
    cast(__d as double) as d,
    cast(__c as double) as c,
    cast(__cap_numerator as bigint) as cap_numerator,
    cast(__cap_denominator as bigint) as cap_denominator
from bucketed
"""

_BY_BUCKET = """
select metric, variant, dimension_value, is_other, max(cap) as cap
from capped
group by metric, variant, dimension_value, is_other
"""

_DAILY = """
select metric, variant, exposure_date, max(cap) as cap
from capped
group by metric, variant, exposure_date
"""

_CUMULATIVE = """
with days as (
    select distinct exposure_date from daily
),

arms as (
    select distinct metric, variant, cap from daily
),

spine as (
    select arms.metric, arms.variant, arms.cap, days.exposure_date
    from arms cross join days
),

filled as (
    select spine.metric, spine.variant, spine.cap, spine.exposure_date
    from spine
    left join daily
        on
            spine.metric = daily.metric
            and spine.variant = daily.variant
            and spine.exposure_date = daily.exposure_date
)

select metric, variant, exposure_date, cap from filled
"""


def _null() -> exp.Expression:
    return exp.Null()


def _long_select(metric: MetricDef) -> exp.Query:
    fraction = metric.cap_fraction
    return _fill(
        _LONG,
        metric=metric.name,
        x=metric.numerator_sql,
        d=metric.denominator_sql or _null(),
        c=metric.covariate_sql or _null(),
        cap_numerator=_null() if fraction is None else fraction.numerator,
        cap_denominator=_null() if fraction is None else fraction.denominator,
    )


def _running_sum(column: str) -> exp.Window:
    """sum(column) per metric and variant, cumulated over exposure days."""
    return exp.Window(
        this=exp.Sum(this=exp.column(column)),
        partition_by=[exp.column("metric"), exp.column("variant")],
        order=exp.Order(expressions=[exp.Ordered(this=exp.column("exposure_date"))]),
        spec=exp.WindowSpec(
            kind="ROWS", start="UNBOUNDED", start_side="PRECEDING", end="CURRENT ROW"
        ),
    )


def _with_aggregates(select: exp.Select) -> exp.Select:
    for name, aggregate in STAT_AGGREGATES.items():
        select = select.select(
            exp.alias_(sqlglot.parse_one(aggregate, read="duckdb"), name, quoted=False),
            copy=False,
        )
    return select


def stats_query(
    experiment_id: str,
    metrics: Sequence[MetricDef],
    dimension: str | None = None,
    top_n: int = 5,
    by_day: bool = False,
) -> exp.Query:
    """The sufficient statistics of `metrics` per variant: per dimension bucket (top N
    values by users, the rest as "other"), or cumulated per day of first exposure."""
    if not metrics:
        raise ConfigError("no metric to compute")
    if dimension is not None and dimension not in DIMENSIONS:
        raise ConfigError(
            f"unknown dimension {dimension!r}; choose {', '.join(DIMENSIONS)}", option="--by"
        )
    column: exp.Expression = (
        exp.column(DIMENSIONS[dimension], table="users", quoted=True) if dimension else _null()
    )
    query = _fill(_UNITS, experiment_id=experiment_id, dimension=column, top_n=top_n).assert_is(
        exp.Select
    )
    union = _long_select(metrics[0])
    for metric in metrics[1:]:
        union = exp.union(union, _long_select(metric), distinct=False)
    ctes = {cte.alias: cte for cte in query.find_all(exp.CTE)}
    ctes["long_values"].set("this", union)
    if not by_day:
        body = _with_aggregates(_fill(_BY_BUCKET).assert_is(exp.Select))
        return (
            query.select(*body.expressions, append=False)
            .from_("capped")
            .group_by(*body.args["group"].expressions)
            .assert_is(exp.Query)
        )
    daily = _with_aggregates(_fill(_DAILY).assert_is(exp.Select))
    cumulative = _fill(_CUMULATIVE).assert_is(exp.Select)

    filled = next(c for c in cumulative.find_all(exp.CTE) if c.alias == "filled")
    filled_select = filled.this.assert_is(exp.Select)
    for name in STAT_AGGREGATES:
        filled_select.select(
            # Python decides from the metric which sums exist, so 0 for "none" is safe.
            exp.alias_(
                exp.func("coalesce", exp.column(name, table="daily"), exp.Literal.number(0)),
                name,
            ),
            copy=False,
        )
        cumulative.select(exp.alias_(_running_sum(name), name), copy=False)
    query = query.with_("daily", as_=daily, copy=False)
    for cte in cumulative.ctes:
        query = query.with_(cte.alias, as_=cte.this, copy=False)
    return (
        query.select(*cumulative.expressions, append=False)
        .from_("filled")
        .order_by("metric", "variant", "exposure_date")
        .assert_is(exp.Query)
    )


def _variant_stats(
    metric: MetricDef, experiment: Experiment, rows: list[dict[str, Any]], capped: bool
) -> tuple[VariantStats, ...]:
    """One VariantStats per variant of the experiment (control first; 0 users where a
    variant has no row), holding only the sums the metric defines."""
    prefix = "capped_" if capped else ""
    by_variant = {r["variant"]: r for r in rows}
    out = []
    for variant in experiment.variants:
        row = by_variant.get(variant.name)

        def value(name: str, row: dict[str, Any] | None = row) -> float:
            return 0.0 if row is None or row[name] is None else float(row[name])

        ratio = metric.denominator is not None
        covariate = metric.covariate is not None
        out.append(
            VariantStats(
                name=variant.name,
                n=0 if row is None else int(row["n"]),
                sum=value(f"{prefix}sum"),
                sum_squares=value(f"{prefix}sum_squares"),
                weight=variant.weight,
                denominator_sum=value("denominator_sum") if ratio else None,
                denominator_sum_squares=value("denominator_sum_squares") if ratio else None,
                cross_sum=value(f"{prefix}cross_sum") if ratio else None,
                covariate_sum=value("covariate_sum") if covariate else None,
                covariate_sum_squares=value("covariate_sum_squares") if covariate else None,
                covariate_cross_sum=value(f"{prefix}covariate_cross_sum") if covariate else None,
            )
        )
    return tuple(out)


def _check_windows(experiment: Experiment, metrics: Sequence[MetricDef]) -> None:
    for metric in metrics:
        if metric.window_days is not None and metric.window_days != experiment.outcome_window_days:
            raise ConfigError(
                f"experiments.metrics.{metric.name}.window_days: {metric.window_days} days, but "
                f"experiment {experiment.experiment_id!r} measures outcomes over "
                f"{experiment.outcome_window_days} days (its outcome_window_days)"
            )


def metric_stats(
    engine: Engine,
    experiment: Experiment,
    metrics: Sequence[MetricDef],
    dimension: str | None = None,
    top_n: int = 5,
) -> list[MetricStats]:
    """Per metric (and per dimension bucket, top N first by users, then "other"): the
    variants' sufficient statistics, capped beside uncapped where the metric is capped."""
    _check_windows(experiment, metrics)
    rows = _run(engine, stats_query(experiment.experiment_id, metrics, dimension, top_n))
    groups: dict[tuple[str, str | None, bool], list[dict[str, Any]]] = {}
    for row in rows:  # metrics x variants x buckets: a small result
        groups.setdefault((row["metric"], row["dimension_value"], row["is_other"]), []).append(row)
    order = {m.name: i for i, m in enumerate(metrics)}
    bucket_users: dict[tuple[str | None, bool], int] = {}
    for (name, value, other), group in groups.items():
        if name == metrics[0].name:
            bucket_users[value, other] = sum(int(r["n"]) for r in group)
    out = []
    for (name, value, other), group in groups.items():
        metric = metrics[order[name]]
        cap = group[0]["cap"]
        out.append(
            MetricStats(
                metric=name,
                variants=_variant_stats(metric, experiment, group, capped=False),
                capped=None
                if metric.cap_percentile is None
                else _variant_stats(metric, experiment, group, capped=True),
                cap=None if cap is None else float(cap),
                dimension_value=value,
                is_other=bool(other),
            )
        )

    def rank(s: MetricStats) -> tuple[int, bool, int, str]:
        users = bucket_users.get((s.dimension_value, s.is_other), 0)
        return (order[s.metric], s.is_other, -users, s.dimension_value or "")

    return sorted(out, key=rank)


def cumulative_stats(
    engine: Engine, experiment: Experiment, metrics: Sequence[MetricDef]
) -> list[CumulativeStats]:
    """Per metric and day of first exposure, the statistics of all users exposed so far."""
    _check_windows(experiment, metrics)
    rows = _run(engine, stats_query(experiment.experiment_id, metrics, by_day=True))
    groups: dict[tuple[str, date], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["metric"], row["exposure_date"]), []).append(row)
    order = {m.name: i for i, m in enumerate(metrics)}
    out = []
    for (name, day), group in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        metric = metrics[order[name]]
        out.append(
            CumulativeStats(
                metric=name,
                day=day,
                variants=_variant_stats(metric, experiment, group, capped=False),
                capped=None
                if metric.cap_percentile is None
                else _variant_stats(metric, experiment, group, capped=True),
            )
        )
    return out


# --- regression (the one user-level pull) ---------------------------------------------------

_REGRESSION = """
with outcomes as (
    select * from marts.experiment_outcomes where experiment_id = __experiment_id
),

users as (
    select * from core.dim_users
)

select
    outcomes.variant,
    case when outcomes.is_converted then 1 else 0 end as is_converted,
    outcomes.n_events,
    case when outcomes.pre_is_converted then 1 else 0 end as pre_is_converted,
    outcomes.pre_n_events,
    users.device
from outcomes
left join users
    on
        outcomes.user_id = users.user_id
        and users.valid_from <= outcomes.first_exposure_ts
        and outcomes.first_exposure_ts < users.valid_to
order by outcomes.user_id
"""

# Numeric covariates of the regression besides the treatment indicators and the device.
REGRESSION_COVARIATES = ("n_events", "pre_is_converted", "pre_n_events")
UNKNOWN_DEVICE = "(unknown)"


def regression_query(experiment_id: str) -> exp.Query:
    """Per exposed user: variant, conversion (0/1), engagement intensity (events in the
    outcome window), pre-exposure conversion and events, device at first exposure."""
    return _fill(_REGRESSION, experiment_id=experiment_id)


@dataclass(frozen=True)
class Coefficient:
    """One term of the logistic regression, on the log-odds scale and as an odds ratio."""

    name: str
    coefficient: float
    std_error: float
    p_value: float
    odds_ratio: float
    odds_ratio_low: float
    odds_ratio_high: float


@dataclass(frozen=True)
class RegressionResult:
    """Logit of conversion; `error` names why there is no fit (then no coefficients)."""

    n: int
    coefficients: tuple[Coefficient, ...] = ()
    error: str | None = None
    terms: tuple[str, ...] = field(default=())

    def coefficient(self, name: str) -> Coefficient:
        return next(c for c in self.coefficients if c.name == name)


def regression(engine: Engine, experiment: Experiment, alpha: float = 0.05) -> RegressionResult:
    """Fit the logistic regression of conversion for one experiment."""
    table = engine.fetch_arrow(regression_query(experiment.experiment_id))
    return fit_logit(table, [v.name for v in experiment.variants], alpha)


def _design(table: pa.Table, variants: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """y and X (intercept, one indicator per non-control variant, the covariates, one
    indicator per device but the most common) as arrays, and the column names."""
    variant = np.asarray(table.column("variant").to_pylist(), dtype=object)
    device = np.asarray(
        [UNKNOWN_DEVICE if d is None else d for d in table.column("device").to_pylist()],
        dtype=object,
    )
    columns: list[np.ndarray] = [np.ones(table.num_rows)]
    names = ["intercept"]
    for name in variants[1:]:
        columns.append((variant == name).astype(float))
        names.append(f"variant[{name}]")
    for name in REGRESSION_COVARIATES:
        columns.append(table.column(name).to_numpy(zero_copy_only=False).astype(float))
        names.append(name)
    levels, counts = np.unique(device.astype(str), return_counts=True)
    reference = levels[np.argmax(counts)] if levels.size else None
    for level in levels:
        if level != reference:
            columns.append((device == level).astype(float))
            names.append(f"device[{level}]")
    y = table.column("is_converted").to_numpy(zero_copy_only=False).astype(float)
    return y, np.column_stack(columns), names


def fit_logit(table: pa.Table, variants: Sequence[str], alpha: float = 0.05) -> RegressionResult:
    """statsmodels Logit of is_converted on the design above. A degenerate input returns
    an error code instead of raising: too_few_users, one_class, one_variant,
    perfect_separation, singular, no_convergence."""
    y, x, names = _design(table, variants)
    n = int(y.size)
    if n <= x.shape[1]:
        return RegressionResult(n, error="too_few_users", terms=tuple(names))
    if np.all(y == y[0]):
        return RegressionResult(n, error="one_class", terms=tuple(names))
    treatment = x[:, 1 : len(variants)]
    if treatment.shape[1] == 0 or np.any(treatment.min(axis=0) == treatment.max(axis=0)):
        return RegressionResult(n, error="one_variant", terms=tuple(names))
    # A covariate without variation (no pre-period at all) has no coefficient: drop it
    # rather than fail the whole fit; the treatment terms are checked above.
    keep = np.r_[True, np.ptp(x[:, 1:], axis=0) > 0]
    x, names = x[:, keep], [n_ for n_, k in zip(names, keep, strict=True) if k]
    if np.linalg.matrix_rank(x) < x.shape[1]:
        return RegressionResult(n, error="singular", terms=tuple(names))
    # Imported here: statsmodels takes seconds to import, and only the regression needs it.
    from statsmodels.discrete.discrete_model import Logit  # noqa: PLC0415
    from statsmodels.tools.sm_exceptions import (  # noqa: PLC0415
        ConvergenceWarning,
        PerfectSeparationError,
        PerfectSeparationWarning,
    )

    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        warnings.simplefilter("error", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow on the way to separation
        try:
            fit = Logit(y, x).fit(disp=0, maxiter=100)
        except (PerfectSeparationError, PerfectSeparationWarning):
            return RegressionResult(n, error="perfect_separation", terms=tuple(names))
        except ConvergenceWarning:
            return RegressionResult(n, error="no_convergence", terms=tuple(names))
        except np.linalg.LinAlgError:
            return RegressionResult(n, error="singular", terms=tuple(names))
    params, se, pvalues = fit.params, fit.bse, fit.pvalues
    interval = fit.conf_int(alpha)
    if not (np.all(np.isfinite(params)) and np.all(np.isfinite(se))):
        return RegressionResult(n, error="no_convergence", terms=tuple(names))
    coefficients = tuple(
        Coefficient(
            name=name,
            coefficient=float(params[i]),
            std_error=float(se[i]),
            p_value=float(pvalues[i]),
            odds_ratio=float(np.exp(params[i])),
            odds_ratio_low=float(np.exp(interval[i, 0])),
            odds_ratio_high=float(np.exp(interval[i, 1])),
        )
        for i, name in enumerate(names)
    )
    return RegressionResult(n, coefficients, terms=tuple(names))
