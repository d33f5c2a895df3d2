"""A brute-force funnel in plain Python: docs/funnels.md read literally, for small data.

Written for clarity, not speed: every attempt is enumerated (every step-0 occurrence for
ordered funnels, every valid chain for strict ones, every window for unordered ones) and
the rules are applied to each one as the text says. The tests hold `funnel()` to it.

Input: event dicts as `core.fct_events` rows (event_id, user_id, session_id, event_type,
event_ts as naive UTC, device, country, product_id, amount, properties as a dict or None),
already in scope. Output: the structure of `FunnelResult.to_dict()`.

Where docs/funnels.md leaves a choice open, the reading taken is marked "Reading:".
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

# The columns of core.fct_events a breakdown reads as columns; any other key is a property.
COLUMNS = (
    "event_id",
    "user_id",
    "session_id",
    "event_type",
    "device",
    "country",
    "product_id",
    "amount",
)


@dataclass(frozen=True)
class Event:
    event_id: str
    event_type: str
    ts: datetime
    row: dict[str, Any]

    @property
    def key(self) -> tuple[datetime, str]:
        """The order of occurrences: time, then the smallest event_id first."""
        return (self.ts, self.event_id)


@dataclass(frozen=True)
class Attempt:
    """One attempt (ordered), chain (strict) or window (unordered) of one unit.

    `by_step[k]` is the occurrence that filled step k (None: not filled); `times` are the
    times whose differences are the times to convert (t_0..t_m in the order they count).
    """

    start: datetime  # t_0 (ordered, strict) or the window's t (unordered)
    reach: int
    by_step: tuple[Event | None, ...]
    times: tuple[datetime, ...]
    spoiled: bool
    rank: tuple[Any, ...]  # smaller = preferred as the reporting attempt


@dataclass(frozen=True)
class Outcome:
    """A unit's result: furthest step, times to convert into steps 1..m, reporting attempt."""

    m: int
    times_s: tuple[float, ...]
    report: Attempt


def us(moment: datetime) -> int:
    """Microseconds since the epoch (so that 'latest first' is a negation)."""
    return (moment - datetime(1970, 1, 1)) // timedelta(microseconds=1)


def plus(moment: datetime, window: timedelta) -> datetime:
    """`moment + window`, or the last datetime when that is past the year 9999 (no event
    is later: a window that long has not closed)."""
    try:
        return moment + window
    except OverflowError:
        return datetime.max


def event_text(event: Event, key: str) -> str | None:
    """An event's column or property as text; numbers as their text, null/missing None."""
    source = event.row if key in COLUMNS else (event.row.get("properties") or {})
    value = source.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # DuckDB's text of a DOUBLE for ordinary values ("3.0", "12.5")
    return str(value)


# ---------------------------------------------------------------- attempts per order


def _spoiled_between(
    exclusions: Sequence[tuple[str, int, int]],
    unit_events: Sequence[Event],
    step_time: Callable[[int], datetime | None],
    window_end: datetime,
) -> bool:
    """docs/funnels.md, Exclusions: with FROM's time f and TO's time t, an EVENT in (f, t)
    spoils; with TO not reached/filled, an EVENT in (f, window end] spoils."""
    for name, first, last in exclusions:
        t_from, t_to = step_time(first), step_time(last)
        if t_from is None:
            continue
        for x in unit_events:
            if x.event_type != name:
                continue
            if t_to is not None and t_from < x.ts < t_to:
                return True
            if t_to is None and t_from < x.ts <= window_end:
                return True
    return False


def ordered_attempts(
    steps: Sequence[str],
    events: Sequence[Event],
    window: timedelta,
    exclusions: Sequence[tuple[str, int, int]],
) -> list[Attempt]:
    """Every step-0 occurrence starts an attempt; step k takes the earliest unused
    occurrence of s_k at or after t_{k-1}, reached iff within t_0 + W."""
    attempts = []
    for first in events:
        if first.event_type != steps[0]:
            continue
        chain = [first]
        for name in steps[1:]:
            candidates = [
                e
                for e in events
                if e.event_type == name and e.ts >= chain[-1].ts and e not in chain
            ]
            if not candidates:
                break
            nxt = min(candidates, key=lambda e: e.key)
            if nxt.ts > plus(first.ts, window):
                break
            chain.append(nxt)
        attempts.append(_chain_attempt(steps, chain, events, window, exclusions, strict=False))
    return attempts


def strict_attempts(
    steps: Sequence[str],
    events: Sequence[Event],
    window: timedelta,
    exclusions: Sequence[tuple[str, int, int]],
) -> list[Attempt]:
    """Every valid chain: distinct occurrences named s_0..s_k, each at or after the previous
    one and at the same instant or the unit's very next instant (dense rank over all the
    unit's events), the last one within t_0 + W. Every prefix is a chain too."""
    instants = sorted({e.ts for e in events})
    rank = {ts: i for i, ts in enumerate(instants)}
    chains: list[list[Event]] = []

    def extend(chain: list[Event]) -> None:
        chains.append(chain)
        if len(chain) == len(steps):
            return
        prev, name = chain[-1], steps[len(chain)]
        for e in events:
            if (
                e.event_type == name
                and e not in chain
                and e.ts >= prev.ts
                and rank[e.ts] - rank[prev.ts] in (0, 1)
                and e.ts <= plus(chain[0].ts, window)
            ):
                extend([*chain, e])

    for first in events:
        if first.event_type == steps[0]:
            extend([first])
    return [_chain_attempt(steps, c, events, window, exclusions, strict=True) for c in chains]


def _chain_attempt(
    steps: Sequence[str],
    chain: list[Event],
    unit_events: Sequence[Event],
    window: timedelta,
    exclusions: Sequence[tuple[str, int, int]],
    *,
    strict: bool,
) -> Attempt:
    times = tuple(e.ts for e in chain)
    by_step = tuple(chain) + (None,) * (len(steps) - len(chain))
    spoiled = _spoiled_between(
        exclusions,
        unit_events,
        lambda k: times[k] if k < len(times) else None,
        plus(times[0], window),
    )
    # Reporting attempt: earliest t_m, then latest t_0, then (ordered) the smallest start
    # event_id / (strict) the earliest times lexicographically.
    # Reading (strict): chains still tied on every time (same instants, other
    # occurrences) take the smallest event_ids lexicographically; this only shows in
    # step:N attribution.
    tail: tuple[Any, ...] = (
        (tuple(us(t) for t in times), tuple(e.event_id for e in chain))
        if strict
        else (chain[0].event_id,)
    )
    rank = (us(times[-1]), -us(times[0]), *tail)
    return Attempt(times[0], len(chain) - 1, by_step, times, spoiled, rank)


def unordered_attempts(
    steps: Sequence[str],
    events: Sequence[Event],
    window: timedelta,
    exclusions: Sequence[tuple[str, int, int]],
) -> list[Attempt]:
    """One window [t, t + W] per instant t of a funnel-step occurrence; in it each name
    fills as many of its steps (in step order) as it has occurrences (earliest first)."""
    step_events = [e for e in events if e.event_type in steps]
    attempts = []
    for start in sorted({e.ts for e in step_events}):
        inside = [e for e in step_events if start <= e.ts <= plus(start, window)]
        by_step: list[Event | None] = [None] * len(steps)
        for name in dict.fromkeys(steps):
            occurrences = sorted((e for e in inside if e.event_type == name), key=lambda e: e.key)
            indices = [k for k, s in enumerate(steps) if s == name]
            for k, e in zip(indices, occurrences, strict=False):
                by_step[k] = e
        matched = sorted(e.key for e in by_step if e is not None)
        # Reading: "strictly between the occurrences of FROM and TO" is taken as the
        # ordered rule on the matched times, t_FROM < x < t_TO; when TO's occurrence
        # comes before FROM's the interval is empty (nothing is after FROM and before TO,
        # the words).
        filled = tuple(by_step)
        spoiled = _spoiled_between(
            exclusions,
            events,
            lambda k, filled=filled: None if filled[k] is None else filled[k].ts,  # type: ignore[misc]
            plus(start, window),
        )
        attempts.append(
            Attempt(
                start,
                len(matched) - 1,
                filled,
                tuple(ts for ts, _ in matched),
                spoiled,
                (us(start),),  # the earliest window achieving the maximum
            )
        )
    return attempts


ATTEMPTS = {
    "ordered": ordered_attempts,
    "strict": strict_attempts,
    "unordered": unordered_attempts,
}


# ---------------------------------------------------------------- units and rows


def outcome(attempts: Sequence[Attempt]) -> Outcome | None:
    """m over all attempts; None (removed) when every attempt reaching m is spoiled."""
    if not attempts:
        return None
    m = max(a.reach for a in attempts)
    clean = [a for a in attempts if a.reach == m and not a.spoiled]
    if not clean:
        return None
    report = min(clean, key=lambda a: a.rank)
    times = tuple(
        (report.times[k] - report.times[k - 1]) / timedelta(microseconds=1) / 1e6
        for k in range(1, m + 1)
    )
    return Outcome(m, times, report)


def step_rows(steps: Sequence[str], outcomes: Iterable[Outcome]) -> list[dict[str, Any]]:
    """The rows of FunnelResult.to_dict()["steps"] for these units."""
    outcomes = list(outcomes)
    counts = [sum(1 for o in outcomes if o.m >= k) for k in range(len(steps))]
    rows = []
    for k, name in enumerate(steps):
        count = counts[k]
        times = [o.times_s[k - 1] for o in outcomes if k >= 1 and o.m >= k]
        if k == 0:
            from_previous = 1.0 if count else None
        else:
            from_previous = count / counts[k - 1] if counts[k - 1] else None
        rows.append(
            {
                "event": name,
                "count": count,
                "conversion_from_previous": from_previous,
                "conversion_from_start": count / counts[0] if counts[0] else None,
                "drop_off": counts[k - 1] - count if k else 0,
                "avg_time_s": sum(times) / len(times) if times else None,
                # statistics.median: the midpoint of the two middle values for an even count
                "median_time_s": statistics.median(times) if times else None,
            }
        )
    return rows


def attribute(
    attribution: str,
    by: str,
    steps: Sequence[str],
    unit_events: Sequence[Event],
    result: Outcome,
) -> str:
    """The unit's breakdown bucket (missing/null = "")."""
    if attribution.startswith("step:"):
        n = int(attribution.removeprefix("step:"))
        if not 0 <= n < len(steps):
            raise ValueError(f"attribution {attribution}: no step {n}")
        # "" when the unit did not reach N (m < N), in every order. Reading (unordered):
        # step N's occurrence is the one matched to step index N in the reporting window;
        # with m >= N that step may still be unfilled (steps a,b,c, window holds a and c:
        # m = 1, step 1 has no occurrence): "" too.
        filled = result.report.by_step[n]
        if result.m < n or filled is None:
            return ""
        return event_text(filled, by) or ""
    touched = sorted((e for e in unit_events if e.event_type in steps), key=lambda e: e.key)
    if attribution == "last_touch":
        touched.reverse()
    elif attribution != "first_touch":
        raise ValueError(f"unknown attribution {attribution!r}")
    for e in touched:
        value = event_text(e, by)
        if value is not None:
            return value
    return ""


# ---------------------------------------------------------------- periods


def period_of(moment: datetime, per: str, zone: ZoneInfo, week_start: str) -> date:
    """The first local day of the day/week a UTC instant falls in."""
    local = moment.replace(tzinfo=UTC).astimezone(zone).date()
    if per == "day":
        return local
    offset = local.weekday() if week_start == "monday" else (local.weekday() + 1) % 7
    return local - timedelta(days=offset)


def period_end_utc(start: date, per: str, zone: ZoneInfo) -> datetime:
    """The next period's first local midnight, as a naive UTC instant."""
    end = start + timedelta(days=1 if per == "day" else 7)
    return datetime.combine(end, time()).replace(tzinfo=zone).astimezone(UTC).replace(tzinfo=None)


# ---------------------------------------------------------------- the funnel


def reference_funnel(
    events: Sequence[dict[str, Any]],
    steps: Sequence[str],
    *,
    window: timedelta = timedelta(days=14),
    order: str = "ordered",
    exclude: Sequence[tuple[str, int, int]] = (),
    by: str | None = None,
    attribution: str = "first_touch",
    per: str | None = None,
    count_by: str = "user",
    timezone: str = "UTC",
    week_start: str = "monday",
) -> dict[str, Any]:
    """The funnel of docs/funnels.md over `events` (already in scope), by brute force."""
    exclusions = [(e[0], e[1], e[2]) for e in exclude]
    units: dict[tuple[str, ...], list[Event]] = defaultdict(list)
    for row in events:
        unit: tuple[str, ...] = (
            (row["user_id"],)
            if count_by == "user"
            else (row["user_id"], row.get("session_id") or "")  # NULL session: key ""
        )
        units[unit].append(Event(row["event_id"], row["event_type"], row["event_ts"], row))
    for unit_events in units.values():
        unit_events.sort(key=lambda e: e.key)

    enumerate_attempts = ATTEMPTS[order]
    attempts = {
        unit: enumerate_attempts(steps, unit_events, window, exclusions)
        for unit, unit_events in units.items()
    }
    outcomes = {unit: outcome(a) for unit, a in attempts.items()}
    kept = {unit: o for unit, o in outcomes.items() if o is not None}

    out: dict[str, Any] = {"steps": step_rows(steps, kept.values())}
    if by is not None:
        # Reading: a removed unit (every attempt reaching m spoiled) is in no bucket, as it
        # is in no row of the total; a bucket exists only for units in the funnel.
        buckets: dict[str, list[Outcome]] = defaultdict(list)
        for unit, result in kept.items():
            value = attribute(attribution, by, steps, units[unit], result)
            buckets[value].append(result)
        if buckets:
            out["breakdown"] = {
                value: {"steps": step_rows(steps, group)} for value, group in buckets.items()
            }
    if per is not None:
        zone = ZoneInfo(timezone)
        # Reading: "the last event time in scope" is over every event in scope, of any
        # type; period_end is the next period's first local midnight as a UTC instant.
        last = max(e.ts for unit_events in units.values() for e in unit_events)
        by_period: dict[date, dict[tuple[str, ...], list[Attempt]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for unit, unit_attempts in attempts.items():
            for a in unit_attempts:
                by_period[period_of(a.start, per, zone, week_start)][unit].append(a)
        # Reading: a period is listed when some attempt starts in it, even if exclusions
        # then remove every unit of it (its counts are zeros).
        trend = []
        for start in sorted(by_period):
            period_outcomes = [outcome(a) for a in by_period[start].values()]
            trend.append(
                {
                    "period": start.isoformat(),
                    "complete": not window > last - period_end_utc(start, per, zone),
                    "steps": step_rows(steps, [o for o in period_outcomes if o is not None]),
                }
            )
        if trend:
            out["trend"] = trend
    return out
