"""Ordered funnels, exact on ties.

A user reaches step k on a day when they did step k at or after the moment they reached
step k-1 that day (greedy earliest chain: the earliest qualifying event is always the
best one to continue from). Equal timestamps count as in order, unlike ClickHouse's
`windowFunnel`, which can break a valid chain on ties.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp


def _step_cte(k: int, step: str) -> exp.Select:
    """Users' earliest time at step k per day, chained to step k-1."""
    events = exp.column  # short alias: every column here is qualified by e or p
    query = exp.select(
        events("user_id", "e"),
        events("event_date", "e"),
        exp.Min(this=events("event_ts", "e")).as_("reached_ts"),
    ).from_(exp.to_table("funnel_events").as_("e"))
    if k > 1:
        prev = f"step_{k - 1}"
        query = query.join(
            exp.to_table(prev).as_("p"),
            on=exp.and_(
                events("user_id", "e").eq(events("user_id", "p")),
                events("event_date", "e").eq(events("event_date", "p")),
                events("event_ts", "e") >= events("reached_ts", "p"),
            ),
        )
    return query.where(events("event_type", "e").eq(exp.convert(step))).group_by(
        events("user_id", "e"), events("event_date", "e")
    )


def daily_funnel_query(steps: Sequence[str], source: str = "fct_events") -> exp.Query:
    """One row per day per step: users reaching the step that day, and conversion rates.

    Columns: event_date, step_no, step_name, n_users, n_users_first_step,
    conversion_from_start, conversion_from_previous.
    """
    if len(steps) < 2:
        raise ValueError("a funnel needs at least two steps")
    query = exp.select("*").from_("final")
    query = query.with_(
        "funnel_events",
        as_=exp.select("user_id", "event_date", "event_ts", "event_type")
        .from_(source)
        .where(exp.column("event_type").isin(*[exp.convert(s) for s in steps])),
    )
    for k, step in enumerate(steps, start=1):
        query = query.with_(f"step_{k}", as_=_step_cte(k, step))

    step_names = exp.select("*").from_(
        exp.Values(
            expressions=[
                exp.tuple_(exp.convert(k), exp.convert(s)) for k, s in enumerate(steps, 1)
            ],
            alias=exp.TableAlias(
                this=exp.to_identifier("step_names"),
                columns=[exp.to_identifier("step_no"), exp.to_identifier("step_name")],
            ),
        )
    )
    query = query.with_("steps", as_=step_names)
    reached = exp.union(
        *[
            exp.select(
                "event_date",
                exp.convert(k).as_("step_no"),
                exp.Count(this=exp.Star()).as_("n_users"),
            )
            .from_(f"step_{k}")
            .group_by("event_date")
            for k in range(1, len(steps) + 1)
        ],
        distinct=False,
    )
    query = query.with_("reached", as_=reached)
    query = query.with_("days", as_=exp.select("event_date").from_("step_1").distinct())

    n_users = exp.func("coalesce", exp.column("n_users", "r"), exp.convert(0))
    grid = (
        exp.select(
            exp.column("event_date", "d"),
            exp.column("step_no", "s"),
            exp.column("step_name", "s"),
            n_users.as_("n_users"),
        )
        .from_(exp.to_table("days").as_("d"))
        .join(exp.to_table("steps").as_("s"), join_type="cross")
        .join(
            exp.to_table("reached").as_("r"),
            on=exp.and_(
                exp.column("event_date", "r").eq(exp.column("event_date", "d")),
                exp.column("step_no", "r").eq(exp.column("step_no", "s")),
            ),
            join_type="left",
        )
    )
    query = query.with_("grid", as_=grid)
    final = exp.select(
        "event_date",
        "step_no",
        "step_name",
        "n_users",
        _window("first_value", "n_users").as_("n_users_first_step"),
        _ratio(exp.column("n_users"), _window("first_value", "n_users")).as_(
            "conversion_from_start"
        ),
        _ratio(exp.column("n_users"), _window("lag", "n_users")).as_("conversion_from_previous"),
    ).from_("grid")
    return query.with_("final", as_=final)


def _window(func: str, column: str) -> exp.Window:
    return exp.Window(
        this=exp.func(func, exp.column(column)),
        partition_by=[exp.column("event_date")],
        order=exp.Order(expressions=[exp.Ordered(this=exp.column("step_no"))]),
    )


def _ratio(numerator: exp.Expression, denominator: exp.Expression) -> exp.Expression:
    """numerator / denominator as a double, NULL when the denominator is 0 or NULL."""
    return exp.Div(
        this=exp.cast(numerator, "double"),
        expression=exp.func("nullif", denominator, exp.convert(0)),
    )
