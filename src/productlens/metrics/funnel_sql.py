"""The SQL of `productlens.metrics.funnel`: one query per funnel, built from fixed text
whose identifiers this module chooses (c0, nx1, t2, ...) and whose values (event names,
the window, time bounds) are SQLGlot placeholders replaced by literals; nothing from
outside is pasted into SQL text.

How an ordered funnel is computed without a loop or a self-join (docs/funnels.md has the
rules):

- `inst`: one row per unit and instant with how many occurrences of each step (and
  exclusion) event it holds; `look` adds, per event name, the unit's next instant holding
  it (a window over the unit's instants, sorted once).
- Every instant holding a step-0 event starts an attempt (`att`). Greedy earliest is
  exact for ordered funnels: step k is at t(k-1)'s instant when it holds an occurrence of
  step k's name the chain has not used yet, else at the name's next instant. Which
  occurrences are used at an instant depends only on the first step `f` placed there, so
  the chain's state after a step is (instant, f).
- Attempts that share (t1, f1) share the rest of their chain, so the chain after step 1
  is computed once per distinct (unit, t1, f1) (`s1`, `s2`, ...: one join of `look` per
  step on a table the size of the step-1 instants), then joined back to the attempts,
  which are judged one by one against their own window and exclusions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlglot
from sqlglot import exp

from productlens.metrics.scope import (
    EventsSpec,
    Grain,
    Scope,
    local_ts,
    period_start,
    scoped_events,
)

Order = Literal["ordered", "strict", "unordered"]


@dataclass(frozen=True)
class ExclusionSpec:
    event: str
    from_step: int
    to_step: int


@dataclass(frozen=True)
class FunnelSpec:
    """Everything the query depends on, validated by `productlens.metrics.funnel`."""

    steps: tuple[str, ...]
    window_s: int
    order: Order
    exclusions: tuple[ExclusionSpec, ...]
    per: Grain | None
    count_by: Literal["user", "session"]
    by: str | None
    attribution: str  # first_touch, last_touch or step:N

    @property
    def names(self) -> tuple[str, ...]:
        """Distinct step names, then exclusion names, each once."""
        return tuple(dict.fromkeys([*self.steps, *(e.event for e in self.exclusions)]))

    def name_index(self, name: str) -> int:
        return self.names.index(name)

    @property
    def units(self) -> tuple[str, ...]:
        return ("uid",) if self.count_by == "user" else ("uid", "sid")


def funnel_query(scope: Scope, spec: FunnelSpec) -> exp.Query:
    """One row per (bucket, period, step): units reaching the step, and the mean and
    median seconds they took from the previous step."""
    if spec.order != "ordered":
        raise NotImplementedError(f"{spec.order} funnels")
    text = _ordered_text(spec)
    query = sqlglot.parse_one(text, read="duckdb")
    values: dict[str, Any] = {f"name{i}": name for i, name in enumerate(spec.names)}
    values["window"] = spec.window_s
    query = exp.replace_placeholders(query, **values)
    assert isinstance(query, exp.Query)
    return _with_first(query, "ev", _events(scope, spec))


def _events(scope: Scope, spec: FunnelSpec) -> exp.Select:
    extra: dict[str, exp.Expression] = {"uid": exp.column("user_id")}
    if spec.count_by == "session":
        extra["sid"] = exp.func("coalesce", exp.column("session_id"), exp.Literal.string(""))
    if spec.per is not None:
        extra["period"] = period_start(scope, spec.per, local_ts(scope))
    return scoped_events(
        scope,
        EventsSpec(
            event_types=spec.names,
            columns=("event_id", "event_ts", "event_type"),
            extra=extra,
        ),
    )


def _with_first(query: exp.Query, name: str, cte: exp.Query) -> exp.Query:
    """`query` with `cte` as its first common table expression."""
    with_ = query.args["with_"]
    with_.set(
        "expressions", [exp.CTE(this=cte, alias=exp.TableAlias(this=name)), *with_.expressions]
    )
    return query


def _ordered_text(spec: FunnelSpec) -> str:
    u = list(spec.units)
    ulist = ", ".join(u)
    n = len(spec.steps)
    ni = [spec.name_index(s) for s in spec.steps]
    names = range(len(spec.names))
    counts = ", ".join(
        f"sum(case when event_type = :name{i} then 1 else 0 end) as c{i}" for i in names
    )
    nexts = ", ".join(
        f"min(case when c{i} > 0 then ts end) over (partition by {ulist} order by ts "
        f"rows between 1 following and unbounded following) as nx{i}"
        for i in names
    )
    deadline = "a.t0 + interval (:window) second"

    def step_time(k: int, row: str, prev_t: str, prev_f: str) -> str:
        """t_k from the `look` row `row` at t_{k-1}."""
        used = " + ".join(
            f"case when {prev_f} <= {j} then 1 else 0 end"
            for j in range(k)
            if spec.steps[j] == spec.steps[k]
        )
        return f"case when {row}.c{ni[k]} > {used or '0'} then {prev_t} else {row}.nx{ni[k]} end"

    def step_first(k: int, t_k: str, prev_t: str, prev_f: str) -> str:
        return f"case when {t_k} = {prev_t} then {prev_f} else {k} end"

    # Exclusions: the next instant of the excluded event after the FROM step, looked up at
    # t_FROM (on the attempt's own row for FROM = 0, along the chain otherwise).
    excl = list(enumerate(spec.exclusions))
    att_excl = "".join(
        f", nx{spec.name_index(e.event)} as xf{j}" for j, e in excl if e.from_step == 0
    )
    t1 = step_time(1, "look", "ts", "0")
    ctes = [
        f"inst as (select {ulist}, event_ts as ts, {counts} from ev group by {ulist}, event_ts)",
        f"look as (select *, {nexts} from inst)",
        f"att as (select {ulist}, ts as t0, {t1} as t1, "
        f"{step_first(1, t1, 'ts', '0')} as f1{att_excl} from look where c{ni[0]} > 0)",
        f"s1 as (select distinct {ulist}, t1, f1 from att where t1 is not null)",
    ]
    on = " and ".join(f"l.{c} = s.{c}" for c in u)
    for k in range(2, n):
        t_k = step_time(k, "l", f"s.t{k - 1}", f"s.f{k - 1}")
        chain_excl = "".join(
            f", l.nx{spec.name_index(e.event)} as xf{j}" for j, e in excl if e.from_step == k - 1
        )
        ctes.append(
            f"s{k} as (select s.*, {t_k} as t{k}, "
            f"{step_first(k, t_k, f's.t{k - 1}', f's.f{k - 1}')} as f{k}{chain_excl} "
            f"from s{k - 1} as s left join look as l on {on} and l.ts = s.t{k - 1})"
        )
    times = [f"c.t{k}" for k in range(1, n)]
    reach = " ".join(f"when {times[k - 1]} <= {deadline} then {k}" for k in range(n - 1, 0, -1))
    spoils = []
    for j, e in excl:
        xf = f"a.xf{j}" if e.from_step == 0 else f"c.xf{j}"
        spoils.append(
            f"coalesce(case when reach >= {e.to_step} then {xf} < t{e.to_step} "
            f"when reach >= {e.from_step} then {xf} <= deadline end, false)"
        )
    join_on = " and ".join(f"c.{col} = a.{col}" for col in u)
    chain_cols = ", ".join(f"c.t{k}" if k > 1 else "a.t1" for k in range(1, n))
    ctes.append(
        f"ax0 as (select {', '.join('a.' + c for c in u)}, a.t0, {chain_cols}, "
        f"{deadline} as deadline, case {reach} else 0 end as reach"
        + "".join(f", {'a' if e.from_step == 0 else 'c'}.xf{j}" for j, e in excl)
        + f" from att as a left join s{n - 1} as c on {join_on} "
        f"and c.t1 = a.t1 and c.f1 = a.f1)"
        if n > 2
        else f"ax0 as (select {', '.join('a.' + c for c in u)}, a.t0, a.t1, "
        f"{deadline} as deadline, case {reach.replace('c.t1', 'a.t1')} else 0 end as reach"
        + "".join(f", a.xf{j}" for j, _ in excl)
        + " from att as a)"
    )
    spoiled = " or ".join(s.replace("a.xf", "xf").replace("c.xf", "xf") for s in spoils)
    ctes.append(f"ax as (select *, {spoiled or 'false'} as spoiled from ax0)")
    tm = " ".join(f"when {k} then t{k}" for k in range(n))
    all_t = ", ".join(f"t{k}" for k in range(n))
    ctes += [
        f"best as (select {ulist}, max(reach) as m from ax group by {ulist})",
        f"cand as (select ax.*, b.m, case b.m {tm} end as tm from ax inner join best as b "
        f"using ({ulist}) where ax.reach = b.m and not ax.spoiled)",
        f"ranked as (select *, row_number() over (partition by {ulist} order by tm, t0 desc) "
        f"as rn from cand where m > 0)",
        f"units as (select {ulist}, m, {all_t} from ranked where rn = 1 "
        f"union all select distinct {ulist}, 0 as m, "
        + ", ".join(["cast(null as timestamp)"] * n)
        + " from cand where m = 0)",
    ]
    # The period of an attempt is that of its start event. (Trends: later.)
    parts = []
    for k in range(n):
        secs = (
            f"case when m >= {k} then date_diff('microsecond', t{k - 1}, t{k}) / 1000000.0 end"
            if k
            else "cast(null as double)"
        )
        parts.append(
            f"select {k} as step, sum(case when m >= {k} then 1 else 0 end) as n_units, "
            f"avg({secs}) as avg_time_s, median({secs}) as median_time_s from units"
        )
    ctes.append("final as (" + " union all ".join(parts) + ")")
    return "with " + ",\n".join(ctes) + "\nselect * from final order by step"


def explain(query: exp.Query, dialect: str = "duckdb") -> str:
    """The query's text, for debugging and the transpile tests."""
    return query.sql(dialect=dialect, pretty=True)


__all__: Sequence[str] = ("ExclusionSpec", "FunnelSpec", "funnel_query", "explain")
