"""Experiment metrics as declared in `productlens.toml` (`[experiments.metrics.NAME]`).

A metric's numerator, denominator and covariate are per-user values: a column of
`marts.experiment_outcomes` or an arithmetic expression over its columns (`revenue -
pre_revenue`, `greatest(n_orders, 1)`, `revenue > 100`). The SQL aggregates them (n, sums,
sums of squares, cross sums), so an expression holds no aggregate of its own. Every text is
parsed with SQLGlot and only an allow-listed shape is accepted: the columns below (quoted
when compiled), numeric literals, arithmetic, comparisons, and/or/not, and the functions
in `_FUNCTIONS`; nothing from the file is ever pasted into SQL.

Kept free of engine imports: the project file validates with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

__all__ = [
    "DEFAULT_METRICS",
    "OUTCOME_COLUMNS",
    "MetricDef",
    "MetricType",
    "parse_value",
]

MetricType = Literal["proportion", "mean", "ratio"]

# The per-user columns of marts.experiment_outcomes a metric may read.
OUTCOME_COLUMNS = (
    "is_converted",
    "revenue",
    "n_orders",
    "n_events",
    "pre_is_converted",
    "pre_revenue",
    "pre_n_events",
)

# Node types an expression may contain besides columns and numeric literals.
_OPERATORS: tuple[type[exp.Expression], ...] = (
    exp.Paren,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Neg,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.EQ,
    exp.NEQ,
    exp.And,
    exp.Or,
    exp.Not,
    exp.Boolean,
)
_FUNCTIONS: tuple[type[exp.Expression], ...] = (
    exp.Greatest,
    exp.Least,
    exp.Coalesce,
    exp.Abs,
)


def parse_value(text: str) -> exp.Expression:
    """A per-user value from its text, as a DOUBLE expression with quoted column names.

    Raises ValueError naming what is not allowed (pydantic turns it into a ConfigError
    naming the key)."""
    try:
        tree = sqlglot.parse_one(text, read="duckdb")
    except ParseError as err:
        raise ValueError(f"{text!r} is not an expression: {err.errors[0]['description']}") from None
    for node in tree.walk():
        if isinstance(node, exp.Column):
            if node.table or node.name not in OUTCOME_COLUMNS:
                raise ValueError(
                    f"{text!r}: unknown column {node.sql()!r}; a metric reads the columns of "
                    f"experiment_outcomes: {', '.join(OUTCOME_COLUMNS)}"
                )
        elif isinstance(node, exp.Identifier):
            continue  # the name inside a Column, checked above
        elif isinstance(node, exp.Literal):
            if node.is_string:
                raise ValueError(f"{text!r}: only numbers may be literals, not {node.sql()}")
        elif not isinstance(node, _OPERATORS + _FUNCTIONS):
            raise ValueError(f"{text!r}: {node.key!r} is not allowed in a metric expression")
    return _numeric(tree.assert_is(exp.Expression))


BOOLEAN_COLUMNS = frozenset({"is_converted", "pre_is_converted"})
_LOGICAL: tuple[type[exp.Expression], ...] = (exp.And, exp.Or, exp.Not, exp.Boolean)
_COMPARISONS: tuple[type[exp.Expression], ...] = (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.EQ, exp.NEQ)


def _map_args(
    node: exp.Expression, convert: Callable[[exp.Expression], exp.Expression]
) -> exp.Expression:
    """A copy of `node` with `convert` applied to every child expression."""
    copy = node.copy()
    for key, value in node.args.items():
        if isinstance(value, exp.Expression):
            copy.set(key, convert(value))
        elif isinstance(value, list):
            copy.set(key, [convert(v) if isinstance(v, exp.Expression) else v for v in value])
    return copy


def _as_double(value: exp.Expression) -> exp.Expression:
    # CASE, not CAST: PostgreSQL has no cast from boolean to a floating type.
    return exp.Case(
        ifs=[exp.If(this=value, true=exp.Literal.number(1))], default=exp.Literal.number(0)
    )


def _numeric(node: exp.Expression) -> exp.Expression:
    """The node as a DOUBLE value: booleans count 1/0, columns quoted."""
    if isinstance(node, exp.Column):
        column = exp.column(node.name, quoted=True)
        if node.name in BOOLEAN_COLUMNS:
            return _as_double(column)
        return exp.cast(column, exp.DataType.Type.DOUBLE)
    if isinstance(node, _LOGICAL + _COMPARISONS):
        return _as_double(_logical(node))
    if isinstance(node, exp.Literal):
        return exp.cast(node.copy(), exp.DataType.Type.DOUBLE)
    return _map_args(node, _numeric)


def _logical(node: exp.Expression) -> exp.Expression:
    """The node as a condition: a number is true when it is not 0."""
    if isinstance(node, exp.Column) and node.name in BOOLEAN_COLUMNS:
        return exp.column(node.name, quoted=True)
    if isinstance(node, exp.Paren):
        return exp.paren(_logical(node.this), copy=False)
    if isinstance(node, _LOGICAL):
        return _map_args(node, _logical)
    if isinstance(node, _COMPARISONS):
        return _map_args(node, _numeric)
    return exp.NEQ(this=_numeric(node), expression=exp.Literal.number(0))


@dataclass(frozen=True)
class MetricDef:
    """One metric: its kind, per-user values and options (validated by the project file)."""

    name: str
    type: MetricType
    numerator: str
    denominator: str | None = None
    covariate: str | None = None
    # The outcome window the metric is defined over; None = the experiment's own
    # (stg_experiments.outcome_window_days, the window the mart measures).
    window_days: int | None = None
    # Winsorize per-user numerator values at this quantile of the pooled distribution.
    cap_percentile: float | None = None

    @property
    def numerator_sql(self) -> exp.Expression:
        return parse_value(self.numerator)

    @property
    def denominator_sql(self) -> exp.Expression | None:
        return None if self.denominator is None else parse_value(self.denominator)

    @property
    def covariate_sql(self) -> exp.Expression | None:
        return None if self.covariate is None else parse_value(self.covariate)

    @property
    def cap_fraction(self) -> Fraction | None:
        """The cap's quantile as an exact fraction (0.99 -> 99/100), so the rank test in SQL
        is integer arithmetic: no float can move the cap by one user."""
        if self.cap_percentile is None:
            return None
        return Fraction(str(self.cap_percentile))


# The defaults when a project declares no metric, by scenario. A SaaS world has no orders,
# so no revenue metrics.
_CONVERSION = MetricDef("conversion", "proportion", "is_converted", covariate="pre_is_converted")
_EVENTS = MetricDef("events_per_user", "mean", "n_events", covariate="pre_n_events")
DEFAULT_METRICS: dict[str, tuple[MetricDef, ...]] = {
    "ecommerce": (
        _CONVERSION,
        MetricDef("revenue_per_user", "mean", "revenue", covariate="pre_revenue"),
        MetricDef("revenue_per_order", "ratio", "revenue", denominator="n_orders"),
        _EVENTS,
    ),
    "saas": (_CONVERSION, _EVENTS),
}
