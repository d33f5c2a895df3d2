"""The ordered funnel read through `core.fct_user_event_days` (the day index).

On DuckDB a plain ordered funnel (users, no exclusions, filter, range or periods) reads its
first two steps from the index when the run log shows the index was built after the
events fact last changed. The answers must be the brute-force reference's, exactly as
without the index; a stale or missing index must never be read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from productlens import checks, modeling, ops
from productlens.config import ProjectConfig
from productlens.engines import DuckDBEngine
from productlens.metrics import funnel as funnel_module
from productlens.metrics.funnel import Exclusion, day_index_current, funnel
from productlens.metrics.funnel_sql import DAY_INDEX, FunnelSpec, day_index_fits, funnel_query
from productlens.metrics.scope import EVENTS_TABLE, Scope
from productlens.runlog import RunLog
from tests.conftest import q
from tests.funnel_reference import reference_funnel
from tests.test_funnel_properties import breakdowns
from tests.test_funnel_rules import DAY, T0, load_fct_events, make_events, rounded

GRAPH = modeling.discover(ProjectConfig())
INDEX = DAY_INDEX.split(".")[1]


def load_indexed(engine: DuckDBEngine, events: Sequence[dict[str, Any]]) -> None:
    """`events` as core.fct_events and the index built from them, both in the run log as
    a build records them."""
    log = RunLog(engine)
    with log.step("build", EVENTS_TABLE):
        load_fct_events(engine, events)
    result = modeling.build(engine, GRAPH, log, select=[INDEX])
    assert result.ok, result.failed


def reload_events(engine: DuckDBEngine, events: Sequence[dict[str, Any]]) -> None:
    """A later build of core.fct_events alone (the index left as it was)."""
    with RunLog(engine).step("build", EVENTS_TABLE):
        load_fct_events(engine, events)


class Spy:
    """Records whether each funnel query `funnel()` asked for read the index."""

    def __init__(self, original: Callable[..., exp.Query]) -> None:
        self.original = original
        self.indexed: list[bool] = []

    def __call__(self, scope: Scope, spec: FunnelSpec, day_index: bool = False) -> exp.Query:
        self.indexed.append(day_index)
        return self.original(scope, spec, day_index)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    recorder = Spy(funnel_module._duckdb_query)
    monkeypatch.setattr(funnel_module, "_duckdb_query", recorder)
    return recorder


def python_index(events: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The index worked out in Python: per (type, user, day) count, first, last, sorted
    instants."""
    days: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    for e in events:
        days[(e["event_type"], e["user_id"], e["event_ts"].date())].append(e["event_ts"])
    return sorted((*key, len(ts), min(ts), max(ts), sorted(ts)) for key, ts in days.items())


def stored_index(engine: DuckDBEngine) -> list[tuple[Any, ...]]:
    return sorted(
        engine.fetch_all(
            q(
                "select event_type, user_id, event_date, n_events, first_ts, last_ts, "
                f"event_times from {DAY_INDEX}"
            )
        )
    )


# Dense days: two users, a few names, minutes over three days with many ties and some
# instants around midnight (T0 is a midnight), so that a step-1 instant meets starts
# before, at and after it on its own day and on the days before.
DAY_MINUTES = [0, 1, 5, 5, 30, 90, DAY - 1, DAY, DAY + 1, DAY + 30, 2 * DAY - 5, 2 * DAY + 2]
day_event = st.tuples(
    st.sampled_from(["u1", "u2"]),
    st.sampled_from(["a", "a", "b", "b", "c", "x"]),
    st.sampled_from(DAY_MINUTES),
    st.fixed_dictionaries({"device": st.sampled_from([None, "ios", "web"])}),
)
DAY_WINDOWS = [
    timedelta(minutes=4),
    timedelta(minutes=30),
    timedelta(hours=23),
    timedelta(days=1),
    timedelta(days=2),
    timedelta(days=14),
]


@st.composite
def indexed_inputs(draw: st.DrawFn) -> tuple[list[Any], list[str], dict[str, Any]]:
    """Events, steps (first two different) and the options the index answers."""
    steps = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=2, max_size=4))
    assume(steps[0] != steps[1])
    options: dict[str, Any] = {
        "window": draw(st.sampled_from(DAY_WINDOWS)),
        **draw(breakdowns(len(steps))),
    }
    if draw(st.booleans()):
        # A time range, its ends on or between the events' instants (end exclusive).
        bounds = sorted(draw(st.lists(st.sampled_from(RANGE_MINUTES), min_size=2, max_size=2)))
        start, end = (draw(st.sampled_from([T0 + timedelta(minutes=m), None])) for m in bounds)
        assume(start is None or end is None or start < end)
        options["scope"] = Scope(start=start, end=end)
    rows = draw(st.lists(day_event, min_size=6, max_size=30))
    return [(u, k, T0 + timedelta(minutes=m), extra) for u, k, m, extra in rows], steps, options


RANGE_MINUTES = [0, 1, 5, 6, 60, DAY - 1, DAY, DAY + 2, 2 * DAY - 5]


def in_scope(events: Sequence[dict[str, Any]], scope: Scope | None) -> list[dict[str, Any]]:
    """The events inside the scope's time range (start inclusive, end exclusive)."""
    if scope is None:
        return list(events)
    return [
        e
        for e in events
        if (scope.start is None or e["event_ts"] >= scope.start)
        and (scope.end is None or e["event_ts"] < scope.end)
    ]


@settings(max_examples=80, deadline=None)
@given(inputs=indexed_inputs())
def test_the_index_gives_the_reference_funnel(
    shared_engine: DuckDBEngine, inputs: tuple[list[Any], list[str], dict[str, Any]]
) -> None:
    """Random events with many ties and repeats, over several days: through the index,
    `funnel()` equals the brute-force reference, and the index holds exactly the
    events' days."""
    rows, steps, options = inputs
    events = make_events(rows)
    load_indexed(shared_engine, events)
    assert stored_index(shared_engine) == python_index(events)
    recorder = Spy(funnel_module._duckdb_query)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(funnel_module, "_duckdb_query", recorder)
        got = funnel(shared_engine, steps, **options).to_dict()
    assert recorder.indexed == [True]
    scope = options.pop("scope", None)
    expected = reference_funnel(in_scope(events, scope), steps, **options)
    assert rounded(got) == rounded(expected)


# Hand-worked: each user's step-1 instant against the same day's starts (minutes after
# T0 = 2026-03-02 00:00 UTC; window 2 days).
#   u1: starts 10, 20, 30; b at 25 (inside the day's span: the latest start before it is 20)
#   u2: start 10; b at 10 (same instant: the attempt starts at b's own instant, 0 s)
#   u3: start 100; b at 50 that day (before every start), b at DAY + 5 the next day (no
#       start that day: looks back to 100); c at DAY + 6
#   u4: start at 60; b at 2 * DAY + 61 (outside the window), c after it
#   u5: b at 5, no start at all
#   u6: starts 10, 20; b at 40 (after all the day's starts: the latest, 20 minutes before)
DAYS = make_events(
    [
        ("u1", "a", 10),
        ("u1", "a", 20),
        ("u1", "a", 30),
        ("u1", "b", 25),
        ("u2", "a", 10),
        ("u2", "b", 10),
        ("u3", "a", 100),
        ("u3", "b", 50),
        ("u3", "b", DAY + 5),
        ("u3", "c", DAY + 6),
        ("u4", "a", 60),
        ("u4", "b", 2 * DAY + 61),
        ("u4", "c", 2 * DAY + 62),
        ("u5", "b", 5),
        ("u6", "a", 10),
        ("u6", "a", 20),
        ("u6", "b", 40),
    ]
)


def test_step_one_against_its_days_starts(engine: DuckDBEngine, spy: Spy) -> None:
    load_indexed(engine, DAYS)
    result = funnel(engine, ["a", "b", "c"], window=timedelta(days=2))
    assert spy.indexed == [True]
    # Users u1..u4 and u6 start; u1 (20 -> 25: 5 min), u2 (0 s), u3 (100 -> DAY + 5) and
    # u6 (20 -> 40: 20 min) reach b; u3 reaches c a minute later. u4's b is 2 days and 1
    # minute after its start.
    assert [s.count for s in result.steps] == [5, 4, 1]
    assert result.steps[1].median_time_s == (5 + 20) / 2 * 60.0
    assert result.steps[1].avg_time_s == pytest.approx((5 + 0 + (DAY + 5 - 100) + 20) * 60 / 4)
    assert result.steps[2].avg_time_s == 60.0
    assert result.to_dict() == reference_funnel(DAYS, ["a", "b", "c"], window=timedelta(days=2))


def test_a_later_events_build_makes_the_index_stale(engine: DuckDBEngine, spy: Spy) -> None:
    """Rebuilt events (say `build --select fct_events`) are read from the fact, never
    from the index built before them."""
    load_indexed(engine, DAYS)
    assert day_index_current(engine)
    changed = make_events([("u1", "a", 10), ("u1", "b", 11), ("u9", "a", 3)])
    reload_events(engine, changed)
    assert not day_index_current(engine)
    result = funnel(engine, ["a", "b", "c"], window=timedelta(days=2))
    assert spy.indexed == [False]
    assert [s.count for s in result.steps] == [2, 1, 0]
    # Built again, the index is read again and agrees.
    result = modeling.build(engine, GRAPH, RunLog(engine), select=[INDEX])
    assert result.ok
    assert day_index_current(engine)
    assert [s.count for s in funnel(engine, ["a", "b", "c"], window=timedelta(days=2)).steps] == [
        2,
        1,
        0,
    ]
    assert spy.indexed == [False, True]


def test_an_events_build_killed_after_its_commit_makes_the_index_stale(
    engine: DuckDBEngine,
) -> None:
    """A build step with no end row may have swapped its table in before it died."""
    load_indexed(engine, DAYS)
    log = RunLog(engine)

    def interrupted_build() -> None:
        with log.step("build", EVENTS_TABLE):
            load_fct_events(engine, make_events([("u1", "a", 10)]))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted_build()
    assert not day_index_current(engine)
    # A step left `running` (the process killed outright) counts the same.
    load_indexed(engine, DAYS)
    record_only_a_start(engine)
    assert not day_index_current(engine)


def record_only_a_start(engine: DuckDBEngine) -> None:
    # The run log's times are naive UTC.
    now = datetime.now(UTC).replace(tzinfo=None)
    engine.execute(
        ops.insert_rows(
            ops.RUN_EVENTS,
            ops.RUN_LOG_COLUMNS,
            [["killed", "build", EVENTS_TABLE, now, None, None, "running", None]],
        )
    )


def test_no_index_without_its_record(engine: DuckDBEngine, spy: Spy) -> None:
    """Events loaded without a run log, an index never built, or one whose build failed
    are not read."""
    load_fct_events(engine, DAYS)
    assert not day_index_current(engine)
    load_indexed(engine, DAYS)
    assert day_index_current(engine)
    engine.execute(q(f"drop table {DAY_INDEX}"))
    assert not day_index_current(engine)
    result = funnel(engine, ["a", "b", "c"], window=timedelta(days=2))
    assert spy.indexed == [False]
    assert [s.count for s in result.steps] == [5, 4, 1]


@pytest.mark.parametrize(
    ("scope", "options", "indexed"),
    [
        (Scope.parse(where=["device=ios"]), {}, [False]),
        (Scope(), {"count_by": "session"}, [False]),
        # The totals read the index; the trend's periods read the events.
        (Scope(), {"per": "day"}, [True, False]),
        (Scope(), {"exclude": [("x", 0, 1)]}, [False]),
        (Scope(), {"order": "strict"}, [False]),
    ],
    ids=["where", "sessions", "per", "exclusion", "strict"],
)
def test_what_the_index_does_not_answer_reads_the_events(
    engine: DuckDBEngine,
    spy: Spy,
    scope: Scope,
    options: dict[str, Any],
    indexed: list[bool],
) -> None:
    load_indexed(engine, DAYS)
    excluded = [Exclusion(*e) for e in options.get("exclude", [])]
    got = funnel(
        engine,
        ["a", "b", "c"],
        scope=scope,
        window=timedelta(days=2),
        **{**options, "exclude": excluded},
    )
    assert spy.indexed == indexed
    expected = reference_funnel(
        make_filtered(DAYS, scope), ["a", "b", "c"], window=timedelta(days=2), **options
    )
    assert rounded(got.to_dict()) == rounded(expected)


def make_filtered(events: Sequence[dict[str, Any]], scope: Scope) -> list[dict[str, Any]]:
    """The events the scope keeps (the cases above: one device)."""
    return [e for e in events if not scope.where or e["device"] == "ios"]


def test_the_index_keeps_equal_instants_and_every_day(engine: DuckDBEngine) -> None:
    """Two events at one instant are two entries; a user's days stay apart."""
    events = make_events(
        [("u1", "a", 10), ("u1", "a", 10), ("u1", "a", DAY + 1), ("u2", "a", 10), ("u1", "b", 3)]
    )
    load_indexed(engine, events)
    stored = stored_index(engine)
    assert stored == python_index(events)
    at = T0 + timedelta(minutes=10)
    assert stored[0][:6] == ("a", "u1", T0.date(), 2, at, at)
    assert stored[0][6] == [at, at]


# Hand-worked cases where the index's day rows decide the attempt (minutes after T0, a
# midnight; window one day). Each gives (counts, seconds from the previous step per step
# after the first, breakdown counts by device for attribution step:0 when given).
DAY_CASES = {
    # A start at b's own instant inside the day's span of starts (found by searching the
    # day's instants): that attempt starts latest, 0 s to b (not 10 min from a@0).
    "start_at_the_instant_inside_the_span": (
        ["a", "b"],
        [("u1", "a", 0), ("u1", "a", 10), ("u1", "b", 10), ("u1", "a", 20)],
        [1, 1],
        [0.0],
    ),
    # Steps a, b, a: the attempt from a@0 takes b@10 and the a@10 it has not used, so it
    # reaches step 3 (the attempt starting at a@10 has used that a). The day's last start
    # is b's instant.
    "repeated_name_needs_the_earlier_start": (
        ["a", "b", "a"],
        [("u1", "a", 0), ("u1", "a", 10), ("u1", "b", 10)],
        [1, 1, 1],
        [600.0, 0.0],
    ),
    # As above with a later a: both attempts reach step 3; the one from a@0 gets there
    # first (a@10, not a@20) and reports.
    "repeated_name_inside_the_span": (
        ["a", "b", "a"],
        [("u1", "a", 0), ("u1", "a", 10), ("u1", "b", 10), ("u1", "a", 20)],
        [1, 1, 1],
        [600.0, 0.0],
    ),
}


@pytest.mark.parametrize("name", sorted(DAY_CASES))
def test_day_rows_decide_the_attempt(engine: DuckDBEngine, spy: Spy, name: str) -> None:
    steps, rows, counts, seconds = DAY_CASES[name]
    events = make_events(rows)
    load_indexed(engine, events)
    result = funnel(engine, steps, window=timedelta(days=1))
    assert spy.indexed == [True]
    assert [s.count for s in result.steps] == counts
    assert [s.avg_time_s for s in result.steps[1:]] == seconds
    assert result.to_dict() == reference_funnel(events, steps, window=timedelta(days=1))


def test_a_unit_that_only_starts_reports_its_earliest_start(engine: DuckDBEngine, spy: Spy) -> None:
    """Attribution step:0 of a user who never reaches step 1: the value on their first
    start (ios), not on a later one (web)."""
    events = make_events(
        [("u1", "a", 0, {"device": "ios"}), ("u1", "a", DAY + 1, {"device": "web"})]
    )
    load_indexed(engine, events)
    result = funnel(engine, ["a", "b"], by="device", attribution="step:0")
    assert spy.indexed == [True]
    assert {k: [s.count for s in v] for k, v in result.breakdown.items()} == {"ios": [1, 0]}


def test_a_time_range_cuts_the_index_days(engine: DuckDBEngine, spy: Spy) -> None:
    """DAYS from minute 15 to DAY + 6 (exclusive): u2's events and u1's a@10 fall before
    it, u3's c@DAY+6 and u4's b after it. Starters u1, u3, u4, u6; b by u1 (20 -> 25), u3
    (100 -> DAY + 5) and u6 (20 -> 40); nobody reaches c."""
    load_indexed(engine, DAYS)
    scope = Scope(start=T0 + timedelta(minutes=15), end=T0 + timedelta(minutes=DAY + 6))
    result = funnel(engine, ["a", "b", "c"], scope=scope, window=timedelta(days=2))
    assert spy.indexed == [True]
    assert [s.count for s in result.steps] == [4, 3, 0]
    assert result.steps[1].avg_time_s == pytest.approx((5 + (DAY + 5 - 100) + 20) * 60 / 3)
    expected = reference_funnel(in_scope(DAYS, scope), ["a", "b", "c"], window=timedelta(days=2))
    assert result.to_dict() == expected


def test_a_range_inside_a_day_keeps_only_its_instants(engine: DuckDBEngine, spy: Spy) -> None:
    """Range [10, 20) minutes: u1's day of a (0 and 30) spans it with no instant inside,
    so u1 does not start; u2 (a 12, b 13) starts and converts in a minute; u3's first a
    (5, ios) is before the range, so its step-0 bucket is that of a 15 (web)."""
    events = make_events(
        [
            ("u1", "a", 0),
            ("u1", "a", 30),
            ("u2", "a", 12),
            ("u2", "b", 13),
            ("u3", "a", 5, {"device": "ios"}),
            ("u3", "a", 15, {"device": "web"}),
        ]
    )
    load_indexed(engine, events)
    scope = Scope(start=T0 + timedelta(minutes=10), end=T0 + timedelta(minutes=20))
    result = funnel(engine, ["a", "b"], scope=scope, by="device", attribution="step:0")
    assert spy.indexed == [True]
    assert [s.count for s in result.steps] == [2, 1]
    assert result.steps[1].avg_time_s == 60.0
    assert {k: [s.count for s in v] for k, v in result.breakdown.items()} == {
        "": [1, 1],
        "web": [1, 0],
    }
    expected = reference_funnel(
        in_scope(events, scope), ["a", "b"], by="device", attribution="step:0"
    )
    assert result.to_dict() == expected


def test_an_index_rewritten_from_a_later_day_than_the_events_is_rebuilt_whole(
    engine: DuckDBEngine, spy: Spy
) -> None:
    """`build --select fct_events` (late events of an old day), then
    `build --select fct_user_event_days --since` a later day: the index's rewrite starts
    after the events' change, so it must be built whole, not refreshed from that day."""
    load_indexed(engine, DAYS)
    # A late `a` of u5 on T0's day, a minute before its `b`: u5 now starts and reaches b.
    late = [*DAYS, *make_events([("u5", "a", 1, {"event_id": "late"})])]
    reload_events(engine, late)
    since = (T0 + timedelta(days=30)).date()
    result = modeling.build(engine, GRAPH, RunLog(engine), select=[INDEX], since=since)
    assert result.ok, result.failed
    assert stored_index(engine) == python_index(late)
    window = timedelta(days=2)
    answer = funnel(engine, ["a", "b", "c"], window=window)
    assert [s.count for s in answer.steps] == [6, 5, 1]
    assert answer.to_dict() == reference_funnel(late, ["a", "b", "c"], window=window)
    assert spy.indexed == [True]


def test_an_index_refresh_with_nothing_new_upstream_stays_incremental(
    engine: DuckDBEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole rebuild above is kept for an events fact changed by another run: with
    the events as the index last saw them, `--since` rewrites only the recent days."""
    load_indexed(engine, DAYS)
    refreshed: list[str] = []
    original = modeling.refresh_since

    def counting(engine_: Any, model: modeling.Model, since: Any) -> int:
        refreshed.append(model.name)
        return original(engine_, model, since)

    monkeypatch.setattr(modeling, "refresh_since", counting)
    since = (T0 + timedelta(days=30)).date()
    assert modeling.build(engine, GRAPH, RunLog(engine), select=[INDEX], since=since).ok
    assert refreshed == [INDEX]
    assert day_index_current(engine)
    reload_events(engine, DAYS)
    assert modeling.build(engine, GRAPH, RunLog(engine), select=[INDEX], since=since).ok
    assert refreshed == [INDEX]  # built whole this time
    assert stored_index(engine) == python_index(DAYS)


def test_a_project_whose_event_date_is_a_local_day(engine: DuckDBEngine, spy: Spy) -> None:
    """A project's fct_events may date its events by a local day (here UTC-5): the index's
    days are then those days, and the earlier days a step-1 instant searches must be
    earlier by the index's own day, not by the instant's UTC date. Window 3 hours. u1's
    `b` (01:00 UTC, 20:00 local) comes before its `a` (04:00 UTC, 23:00 local): one
    local day, two UTC dates; u1 starts and never converts. u2's `a` (04:00 UTC, 23:00
    local) is 2 hours before its `b` (06:00 UTC, 01:00 local the next day): u2 converts."""
    events = make_events([("u1", "b", 60), ("u1", "a", 240), ("u2", "a", 240), ("u2", "b", 360)])
    log = RunLog(engine)
    with log.step("build", EVENTS_TABLE):
        load_fct_events(engine, events)
        engine.execute(
            q("update core.fct_events set event_date = cast(event_ts - interval 5 hour as date)")
        )
    assert modeling.build(engine, GRAPH, log, select=[INDEX]).ok
    window = timedelta(hours=3)
    result = funnel(engine, ["a", "b"], window=window)
    assert spy.indexed == [True]
    assert [s.count for s in result.steps] == [2, 1]
    assert result.steps[1].median_time_s == 2 * 3600.0
    assert result.to_dict() == reference_funnel(events, ["a", "b"], window=window)


def test_a_project_model_replacing_the_index_is_not_read(
    engine: DuckDBEngine, spy: Spy, tmp_path: Path
) -> None:
    """A project's own `fct_user_event_days` (here leaving out u1, say as internal) may
    mean anything: the funnel reads the events, built whole or refreshed over the
    shipped model's table, until the shipped model is built again."""
    models = tmp_path / "models" / "core"
    models.mkdir(parents=True)
    shipped = modeling.shipped_models_dir() / "core" / f"{INDEX}.sql"
    (models / f"{INDEX}.sql").write_text(
        shipped.read_text().replace("from fct_events", "from fct_events where user_id <> 'u1'")
    )
    project = modeling.discover(ProjectConfig(), [tmp_path / "models"])
    expected = [5, 4, 1]  # test_step_one_against_its_days_starts: u1 reaches b
    load_indexed(engine, DAYS)
    since = (T0 + timedelta(days=1)).date()
    for build_since in (since, None):  # over the shipped table, then whole
        assert modeling.build(engine, project, RunLog(engine), select=[INDEX], since=build_since).ok
        assert engine.fetch_all(q(f"select count(*) from {DAY_INDEX} where user_id = 'u1'")) == [
            (0,)
        ]
        assert not day_index_current(engine)
        result = funnel(engine, ["a", "b", "c"], window=timedelta(days=2))
        assert [s.count for s in result.steps] == expected
    assert spy.indexed == [False, False]
    assert modeling.build(engine, GRAPH, RunLog(engine), select=[INDEX]).ok
    assert day_index_current(engine)


def test_an_events_fact_built_whole_in_the_same_run_rebuilds_the_index_whole(
    engine: DuckDBEngine,
) -> None:
    """One run, two builds (the daily run's core, then its marts): the events fact written
    whole by the first (as `build` records it) may have changed any day, so the index is
    not refreshed from a date by the second."""
    load_indexed(engine, DAYS)
    log = RunLog(engine)
    late = [*DAYS, *make_events([("u5", "a", 1, {"event_id": "late"})])]
    with log.step("build", EVENTS_TABLE):
        load_fct_events(engine, late)
    log.built_whole.add(EVENTS_TABLE)
    since = (T0 + timedelta(days=30)).date()
    assert modeling.build(engine, GRAPH, log, select=[INDEX], since=since).ok
    assert stored_index(engine) == python_index(late)
    assert day_index_current(engine)


# The freshness rule on hand-written run-log histories, after a normal load (whose rows
# are all older): each row is (object, stage, minutes after now, status) for one step
# (a start row `running`, then its end row unless `running`).
EVENTS_STEP, INDEX_STEP = (EVENTS_TABLE, "build"), (DAY_INDEX, "build")
FRESHNESS_CASES = {
    # Both builds started in the same instant: which one read the other is unknown.
    "same_start": ([(*EVENTS_STEP, 1, "success"), (*INDEX_STEP, 1, "success")], False),
    "index_after": ([(*EVENTS_STEP, 1, "success"), (*INDEX_STEP, 2, "success")], True),
    # A later index build that failed left the table of the earlier success in place.
    "index_failed_after_a_success": (
        [(*EVENTS_STEP, 1, "success"), (*INDEX_STEP, 2, "success"), (*INDEX_STEP, 3, "failed")],
        True,
    ),
    # Only the index's failed build started after the events': its table is older.
    "index_failed_after_events": (
        [(*EVENTS_STEP, 1, "success"), (*INDEX_STEP, 2, "failed")],
        False,
    ),
    # A step of another stage naming the events table builds nothing.
    "other_stage_on_events": (
        [
            (*EVENTS_STEP, 1, "success"),
            (*INDEX_STEP, 2, "success"),
            (EVENTS_TABLE, "check", 3, "success"),
        ],
        True,
    ),
}


@pytest.mark.parametrize("name", sorted(FRESHNESS_CASES))
def test_the_freshness_rule_on_run_log_histories(engine: DuckDBEngine, name: str) -> None:
    history, current = FRESHNESS_CASES[name]
    load_indexed(engine, DAYS)
    assert day_index_current(engine)
    # The run log's times are naive UTC.
    now = datetime.now(UTC).replace(tzinfo=None)
    rows: list[list[Any]] = []
    for k, (obj, stage, minutes, status) in enumerate(history):
        started = now + timedelta(minutes=minutes)
        rows.append([f"r{k}", stage, obj, started, None, None, "running", None])
        if status != "running":
            ended = started + timedelta(seconds=1)
            rows.append([f"r{k}", stage, obj, started, ended, 1, status, None])
    engine.execute(ops.insert_rows(ops.RUN_EVENTS, ops.RUN_LOG_COLUMNS, rows))
    assert day_index_current(engine) == current


# A built index spoiled one way each (the first row: u1's a on T0's day, instants 10, 20
# and 30), and the data tests that must then fail.
UNIQUE = f"unique__{INDEX}__event_type_user_id_event_date"
SPOILED = {
    "a_day_twice": (
        f"insert into {DAY_INDEX} select * from {DAY_INDEX} where user_id = 'u1' "
        "and event_type = 'a'",
        {UNIQUE, "user_event_days_hold_every_event"},
    ),
    "an_instant_more": (
        f"update {DAY_INDEX} set event_times = list_append(event_times, first_ts) "
        "where user_id = 'u1' and event_type = 'a'",
        {"user_event_days_count_their_instants"},
    ),
    "first_after_last": (
        f"update {DAY_INDEX} set first_ts = last_ts, last_ts = first_ts "
        "where user_id = 'u1' and event_type = 'a'",
        {"user_event_days_count_their_instants"},
    ),
    "another_day": (
        f"update {DAY_INDEX} set event_date = event_date + 1 "
        "where user_id = 'u1' and event_type = 'a'",
        {"user_event_days_hold_their_day"},
    ),
    "a_day_lost": (
        f"delete from {DAY_INDEX} where user_id = 'u1' and event_type = 'a'",
        {"user_event_days_hold_every_event"},
    ),
}


@pytest.mark.parametrize("name", sorted(SPOILED))
def test_the_data_tests_see_a_spoiled_index(engine: DuckDBEngine, name: str) -> None:
    spoil, failing = SPOILED[name]
    load_indexed(engine, DAYS)
    tests = checks.compile_tests(GRAPH, [GRAPH[INDEX]])
    assert {o.test.name for o in checks.run_tests(engine, tests, "clean") if o.n_failing} == set()
    engine.execute(q(spoil))
    outcomes = checks.run_tests(engine, tests, "spoiled")
    assert all(o.error is None for o in outcomes)
    assert {o.test.name for o in outcomes if o.n_failing} == failing


def test_the_index_is_asked_for_only_where_it_fits() -> None:
    """`day_index_fits` on one spec changed one way at a time; `funnel_query` refuses the
    index where it does not fit or off DuckDB."""
    plain = FunnelSpec(("a", "b"), 3600, "ordered", (), None, "user", None, "first_touch")
    assert day_index_fits(Scope(), plain)
    assert day_index_fits(Scope(start=T0), replace(plain, by="device"))
    assert not day_index_fits(Scope.parse(where=["device=ios"]), plain)
    assert not day_index_fits(replace(Scope(), source="marts.some_events"), plain)
    assert not day_index_fits(Scope(), replace(plain, per="day"))
    assert not day_index_fits(Scope(), replace(plain, count_by="session"))
    assert not day_index_fits(Scope(), replace(plain, cuts=(T0,)))
    assert not day_index_fits(Scope(), replace(plain, order="strict"))
    assert not day_index_fits(Scope(), replace(plain, steps=("a", "a")))
    with pytest.raises(ValueError, match="day index"):
        funnel_query(Scope(), plain, day_index=True)
    with pytest.raises(ValueError, match="day index"):
        funnel_query(Scope(), replace(plain, per="day"), duckdb=True, day_index=True)


def test_no_index_without_a_run_log(engine: DuckDBEngine, spy: Spy) -> None:
    """A warehouse whose run log is gone (say copied without the ops schema) reads the
    events, index or not."""
    load_indexed(engine, DAYS)
    engine.execute(q(f"drop view if exists {'.'.join(ops.RUN_LOG)}"))
    engine.execute(q(f"drop table {'.'.join(ops.RUN_EVENTS)}"))
    assert not day_index_current(engine)
    result = funnel(engine, ["a", "b", "c"], window=timedelta(days=2))
    assert spy.indexed == [False]
    assert [s.count for s in result.steps] == [5, 4, 1]


def test_no_index_when_the_events_have_no_build_record(engine: DuckDBEngine) -> None:
    """Events loaded by hand, then the index built by productlens: when the events last
    changed is unknown, so the index is not read."""
    load_fct_events(engine, DAYS)
    assert modeling.build(engine, GRAPH, RunLog(engine), select=[INDEX]).ok
    assert stored_index(engine) == python_index(DAYS)
    assert not day_index_current(engine)


def test_a_range_starting_at_a_days_last_instant_keeps_it(engine: DuckDBEngine, spy: Spy) -> None:
    """Range from minute 30: u1's day of a (0, 30) keeps its a@30, which b@40 follows
    (10 min); u2's day of b (20, 30) keeps b@30, at the instant of its a@30 (0 s)."""
    events = make_events(
        [
            ("u1", "a", 0),
            ("u1", "a", 30),
            ("u1", "b", 40),
            ("u2", "a", 30),
            ("u2", "b", 20),
            ("u2", "b", 30),
        ]
    )
    load_indexed(engine, events)
    scope = Scope(start=T0 + timedelta(minutes=30))
    result = funnel(engine, ["a", "b"], scope=scope)
    assert spy.indexed == [True]
    assert [s.count for s in result.steps] == [2, 2]
    assert result.steps[1].avg_time_s == 5 * 60.0
    assert result.to_dict() == reference_funnel(in_scope(events, scope), ["a", "b"])


def test_a_unit_that_only_starts_reports_its_days_first_start(
    engine: DuckDBEngine, spy: Spy
) -> None:
    """As above with both starts on one day: the day's first instant (ios), not its last
    (web)."""
    events = make_events([("u1", "a", 0, {"device": "ios"}), ("u1", "a", 10, {"device": "web"})])
    load_indexed(engine, events)
    result = funnel(engine, ["a", "b"], by="device", attribution="step:0")
    assert spy.indexed == [True]
    assert {k: [s.count for s in v] for k, v in result.breakdown.items()} == {"ios": [1, 0]}


def test_step_one_takes_the_latest_of_the_earlier_days(engine: DuckDBEngine, spy: Spy) -> None:
    """No start on b's own day (window 2 days): b@2*DAY+5 takes the latest start of the
    two days before it, a@DAY+10 (a day less 5 minutes before), not a@10."""
    events = make_events([("u1", "a", 10), ("u1", "a", DAY + 10), ("u1", "b", 2 * DAY + 5)])
    load_indexed(engine, events)
    result = funnel(engine, ["a", "b"], window=timedelta(days=2))
    assert spy.indexed == [True]
    assert [s.count for s in result.steps] == [1, 1]
    assert result.steps[1].avg_time_s == (DAY - 5) * 60.0
    assert result.to_dict() == reference_funnel(events, ["a", "b"], window=timedelta(days=2))
