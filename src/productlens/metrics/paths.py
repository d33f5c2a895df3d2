"""Paths: the most common sequences of events after (`--from`) or before (`--to`) an event.

- Per user, like PostHog's paths with a start or end point: the path starts at the
  user's first occurrence of the event in the scope (`--from`), or ends at their first
  occurrence of it (`--to`: how did users get there the first time?).
- A path is that event and the user's next (previous) `steps` events in the scope, any
  event type, repeats kept; a user with fewer events has a shorter path. `--where`
  filters every event of the path, so a path runs through matching events only.
- Events are ordered by `event_ts`, then `event_id` (as text): two events at the same
  instant follow each other in event-id order, so paths are deterministic on ties.
- Each path: the users who took it and their share of every user who did the event;
  the `top` most common, ties broken by the path: its events' names step by step
  outward from the anchor (the next event first for `--from`, the previous one for
  `--to`), a path that ends before sorting first (so `view` < `view > buy > x` <
  `view > cart`: shorter first only among paths that share the steps before). A `top`
  beyond the number of paths lists them all.
- `steps` is 1 to `MAX_STEPS` (20, PostHog's longest path): the query has one window
  column per step, so the limit bounds its width; more is refused.

Set-based: one window pass (`lead` / `lag` over each user's events), no self-joins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlglot import exp

from productlens.metrics.scope import EventsSpec, MetricsInputError, Scope, scoped_events

if TYPE_CHECKING:
    from productlens.engines import Engine

Direction = Literal["from", "to"]
DEFAULT_STEPS = 3
DEFAULT_TOP = 10
MAX_STEPS = 20
# The largest LIMIT every engine takes (a BIGINT); no result has more paths than this.
MAX_LIMIT = 2**63 - 1


@dataclass(frozen=True)
class PathRow:
    """One path (the anchor event first for `from`, last for `to`) and its users."""

    path: tuple[str, ...]
    count: int
    share: float

    def to_dict(self) -> dict[str, Any]:
        return {"path": list(self.path), "count": self.count, "share": self.share}


@dataclass(frozen=True)
class PathsResult:
    direction: Direction
    event: str
    steps: int
    users: int  # users who did the event in scope
    paths: tuple[PathRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            self.direction: self.event,
            "steps": self.steps,
            "users": self.users,
            "paths": [p.to_dict() for p in self.paths],
        }


def paths(
    engine: Engine,
    *,
    start: str | None = None,
    end: str | None = None,
    scope: Scope | None = None,
    steps: int = DEFAULT_STEPS,
    top: int = DEFAULT_TOP,
) -> PathsResult:
    """The `top` paths of `steps` events after `start` or before `end` (module docstring)."""
    direction, event = _anchor(start, end)
    query = paths_query(event, direction, scope or Scope(), steps, top)
    rows = engine.fetch_arrow(query).to_pylist()
    users = int(rows[0]["n_total"]) if rows else 0
    out = []
    for row in rows:
        names = [row[f"step_{k}"] for k in range(1, steps + 1)]
        taken = tuple(n for n in names if n is not None)  # nulls only trail: the path ended
        path = (event, *taken) if direction == "from" else (*reversed(taken), event)
        out.append(PathRow(path, int(row["n_users"]), int(row["n_users"]) / users))
    return PathsResult(direction, event, steps, users, tuple(out))


def _anchor(start: str | None, end: str | None) -> tuple[Direction, str]:
    if (start is None) == (end is None):
        raise MetricsInputError("paths: give exactly one of --from EVENT or --to EVENT")
    return ("from", start) if start is not None else ("to", end)  # type: ignore[return-value]


def paths_query(
    event: str,
    direction: Direction,
    scope: Scope,
    steps: int = DEFAULT_STEPS,
    top: int = DEFAULT_TOP,
) -> exp.Select:
    """The `top` paths: step_1 .. step_N (the 1st .. Nth event after, or before, the
    anchor; null once the path has ended), n_users, and n_total (every anchored user)."""
    if not 1 <= steps <= MAX_STEPS:
        raise MetricsInputError(
            f"paths: --steps {steps}: must be at least 1 and at most {MAX_STEPS}"
        )
    if top < 1:
        raise MetricsInputError(f"paths: --top {top}: must be at least 1")
    anchor = exp.Literal.string(event)
    events = scoped_events(
        scope, EventsSpec(columns=("user_id", "event_id", "event_ts", "event_type"))
    )

    def window(func: exp.Expression, *, running: bool = False) -> exp.Window:
        return exp.Window(
            this=func,
            partition_by=[exp.column("user_id")],
            order=exp.Order(
                expressions=[exp.column("event_ts"), exp.cast(exp.column("event_id"), "varchar")]
            ),
            spec=exp.WindowSpec(
                kind="ROWS", start="UNBOUNDED", start_side="PRECEDING", end="CURRENT ROW"
            )
            if running
            else None,
        )

    is_anchor = exp.column("event_type").eq(anchor)
    # Only the events of users who did the anchor event enter the sort.
    anchor_users = exp.select("user_id").from_("scoped").where(is_anchor.copy())
    anchor_events = (
        exp.select("*").from_("scoped").where(exp.column("user_id").isin(query=anchor_users))
    )
    seen = exp.Sum(
        this=exp.Case(ifs=[exp.If(this=is_anchor, true=exp.convert(1))], default=exp.convert(0))
    )
    shift = exp.Lead if direction == "from" else exp.Lag
    names = [f"step_{k}" for k in range(1, steps + 1)]
    sequenced = exp.select(
        "event_type",
        window(seen, running=True).as_("n_seen"),
        *[
            window(shift(this=exp.column("event_type"), offset=exp.convert(k))).as_(name)
            for k, name in enumerate(names, start=1)
        ],
    ).from_("anchor_events")
    anchored = (
        exp.select(*names)
        .from_(sequenced.subquery("s"))
        .where(exp.and_(is_anchor.copy(), exp.column("n_seen").eq(1)))
    )
    counted = (
        exp.select(
            *names,
            exp.Count(this=exp.Star()).as_("n_users"),
        )
        .from_("anchored")
        .group_by(*names)
    )
    final = (
        exp.select(
            *names,
            "n_users",
            exp.Window(this=exp.Sum(this=exp.column("n_users"))).as_("n_total"),
        )
        .from_("counted")
        .order_by(
            exp.Ordered(this=exp.column("n_users"), desc=True),
            *[exp.Ordered(this=exp.column(n), nulls_first=True) for n in names],
        )
        .limit(min(top, MAX_LIMIT))
    )
    return (
        exp.select("*")
        .from_("final")
        .with_("scoped", as_=events)
        .with_("anchor_events", as_=anchor_events)
        .with_("anchored", as_=anchored)
        .with_("counted", as_=counted)
        .with_("final", as_=final)
        .order_by(
            exp.Ordered(this=exp.column("n_users"), desc=True),
            *[exp.Ordered(this=exp.column(n), nulls_first=True) for n in names],
        )
    )
