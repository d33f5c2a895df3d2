"""Wrong and extreme options of the metrics commands (issue 11, second break-it pass):
each is one clear line naming the option, exit 2, no traceback; the work stays bounded;
an instant bound means the same thing wherever a metric reports whole days."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from productlens.engines import DuckDBEngine
from productlens.metrics.activity import activity
from productlens.metrics.lifecycle import lifecycle
from productlens.metrics.paths import paths
from productlens.metrics.retention import retention
from productlens.metrics.scope import MetricsInputError, Scope, parse_duration, parse_where
from tests.conftest import run_cli
from tests.metrics_events import Event, load

ZONES = ["UTC", "America/Los_Angeles"]


def utc(local: str, zone: str) -> datetime:
    """A local wall-clock time in `zone` as the naive UTC instant the warehouse stores."""
    moment = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone))
    return moment.astimezone(UTC).replace(tzinfo=None)


def june_world(zone: str) -> list[Event]:
    """Local times in `zone`. On 2020-06-10 `early` is active only before 13:00, `late`
    only after it, `both` on either side; everyone is also active on the 9th and 11th.

    So a bound at 2020-06-10T13:00 cuts the day in two: a metric that cut it there would
    report 2 users active on the 10th (to) or 2 (from) instead of 3.
    """
    times = {
        "early": ["2020-06-09T10:00", "2020-06-10T09:00", "2020-06-11T10:00"],
        "late": ["2020-06-09T10:00", "2020-06-10T15:00", "2020-06-11T10:00"],
        "both": ["2020-06-09T10:00", "2020-06-10T12:59", "2020-06-10T13:01", "2020-06-11T10:00"],
    }
    return [
        Event(user, "s", utc(local, zone))
        for user, moments in times.items()
        for local in moments  # a handful of hand-written events, not a scan
    ]


Run = Callable[[DuckDBEngine, Scope], dict[str, Any]]
DAILY_METRICS: dict[str, Run] = {
    "activity": lambda engine, scope: activity(engine, scope).to_dict(),
    "lifecycle": lambda engine, scope: lifecycle(engine, scope, "day").to_dict(),
    "retention": lambda engine, scope: retention(
        engine, start="s", return_event=None, scope=scope, period="day", periods=3
    ).to_dict(),
}


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("metric", sorted(DAILY_METRICS))
@pytest.mark.parametrize(
    ("instant", "day"),
    [
        # --to: the day holding the instant is reported whole (widened to its end).
        ({"date_from": "2020-06-09", "date_to": "2020-06-10T13:00"},
         {"date_from": "2020-06-09", "date_to": "2020-06-10"}),
        # --from: the day holding the instant is reported whole (widened to its start).
        ({"date_from": "2020-06-10T13:00", "date_to": "2020-06-11"},
         {"date_from": "2020-06-10", "date_to": "2020-06-11"}),
        # Both in one day.
        ({"date_from": "2020-06-10T12:00", "date_to": "2020-06-10T14:00"},
         {"date_from": "2020-06-10", "date_to": "2020-06-10"}),
    ],
)  # fmt: skip
def test_daily_metrics_widen_an_instant_to_its_whole_local_day(
    engine: DuckDBEngine, zone: str, metric: str, instant: dict[str, str], day: dict[str, str]
) -> None:
    load(engine, june_world(zone))
    run = DAILY_METRICS[metric]

    def scope(bounds: dict[str, str]) -> Scope:
        return Scope.parse(timezone=zone, date_from=bounds["date_from"], date_to=bounds["date_to"])

    assert run(engine, scope(instant)) == run(engine, scope(day))


@pytest.mark.parametrize("zone", ZONES)
def test_activity_counts_the_whole_day_of_a_to_instant(engine: DuckDBEngine, zone: str) -> None:
    load(engine, june_world(zone))
    scope = Scope.parse(timezone=zone, date_from="2020-06-09", date_to="2020-06-10T13:00")
    days = {d["date"]: d["dau"] for d in activity(engine, scope).to_dict()["days"]}
    # early, late and both were active on the 10th (late only after 13:00).
    assert days == {"2020-06-09": 3, "2020-06-10": 3}


def test_event_level_metrics_use_an_instant_exactly(engine: DuckDBEngine) -> None:
    # paths reads events, not days: an event after --until's instant is not read.
    load(engine, june_world("UTC"))
    scope = Scope.parse(date_from="2020-06-10", date_to="2020-06-10T13:00")
    result = paths(engine, start="s", scope=scope, steps=1).to_dict()
    # early (09:00) and both (12:59, with 13:01 cut) each have a one-event path.
    assert result["users"] == 2
    assert result["paths"] == [{"path": ["s"], "count": 2, "share": 1.0}]


@pytest.mark.parametrize(
    ("texts", "flag"),
    [
        (["device="], "--where"),  # an empty value list
        (["device=ios,,android"], "--where"),  # an empty value among others
        (["device=ios,"], "--where"),
    ],
)
def test_where_refuses_empty_values(texts: list[str], flag: str) -> None:
    with pytest.raises(MetricsInputError, match=flag):
        parse_where(texts)


def test_where_errors_name_the_option_they_came_from() -> None:
    with pytest.raises(MetricsInputError, match="--start-where 'plan='"):
        parse_where(["plan="], flag="--start-where")


@pytest.mark.parametrize("text", ["99999999999999d", "999999999999999999w", "9" * 24 + "s"])
def test_a_window_too_long_to_represent_is_refused(text: str) -> None:
    with pytest.raises(MetricsInputError, match="window"):
        parse_duration(text)


def test_retention_refuses_more_periods_than_the_limit(engine: DuckDBEngine) -> None:
    load(engine, june_world("UTC"))
    kwargs: dict[str, Any] = {"start": "s", "return_event": None, "scope": Scope()}
    # 32 periods (a cohort and the 31 after it, PostHog's maximum) work ...
    result = retention(engine, **kwargs, period="day", periods=32)
    assert len(result.cohorts) == 32
    assert all(len(c.counts) == 32 for c in result.cohorts)
    # ... 33 (and 5000, which used to build a 5000 x 5000 table) are refused up front.
    for periods in (33, 5000, 0, -3):
        with pytest.raises(MetricsInputError, match=f"--periods {periods}: "):
            retention(engine, **kwargs, period="day", periods=periods)


def test_paths_refuses_more_steps_than_the_limit(engine: DuckDBEngine) -> None:
    load(engine, june_world("UTC"))
    # 20 steps after the event work (PostHog's maximum path length is 20 steps) ...
    assert paths(engine, start="s", steps=20).users == 3
    # ... 21 (and 100,000, which used to make one window column per step) are refused.
    for steps in (21, 100_000):
        with pytest.raises(MetricsInputError, match=f"--steps {steps}"):
            paths(engine, start="s", steps=steps)


def test_paths_top_beyond_any_count_means_all(engine: DuckDBEngine) -> None:
    load(engine, june_world("UTC"))
    everything = paths(engine, start="s", steps=2, top=1000).to_dict()
    assert paths(engine, start="s", steps=2, top=10**30).to_dict() == everything


# One row per wrong option: the command line, and the option the error must name.
WRONG_OPTIONS: list[tuple[tuple[str, ...], str]] = [
    # Bounded work: refused above a documented limit instead of running out of memory.
    (("retention", "--start", "signup", "--period", "day", "--periods", "5000"), "--periods"),
    (("retention", "--start", "signup", "--periods", "33"), "--periods"),
    (("paths", "--from", "product_view", "--steps", "21"), "--steps"),
    (("paths", "--from", "product_view", "--steps", "100000"), "--steps"),
    # Out-of-range numbers: one line like every other metrics input error.
    (("retention", "--start", "signup", "--periods", "0"), "--periods"),
    (("retention", "--start", "signup", "--periods", "-3"), "--periods"),
    (("paths", "--from", "product_view", "--steps", "0"), "--steps"),
    (("paths", "--from", "product_view", "--top", "0"), "--top"),
    (("funnel", "--steps", "a,b", "--window", "99999999999999d"), "window"),
    # Empty values.
    (("activity", "--where", "device="), "--where"),
    (("activity", "--where", "device=ios,,android"), "--where"),
    (("funnel", "--steps", "a,b", "--where", "country="), "--where"),
    (("lifecycle", "--where", "device="), "--where"),
    (("paths", "--from", "product_view", "--where", "device="), "--where"),
    (("retention", "--start", "signup", "--where", "device="), "--where"),
    (("retention", "--start", "a", "--start-where", "device="), "--start-where"),
    (("retention", "--start", "a", "--return-where", "device="), "--return-where"),
    (("activity", "--by", ""), "--by"),
    (("funnel", "--steps", "a,b", "--by", ""), "--by"),
    # An option that only means something with another one.
    (("funnel", "--steps", "a,b", "--attribution", "last_touch"), "--by"),
    (("funnel", "--steps", "a,b", "--attribution", "step:1"), "--by"),
    # Ranges the wrong way round, in each command's own range options.
    (("activity", "--from", "2026-02-01", "--to", "2026-01-01"), "--to"),
    (("lifecycle", "--from", "2026-02-01", "--to", "2026-01-01"), "--to"),
    (("retention", "--start", "signup", "--from", "2026-02-01", "--to", "2026-01-01"), "--to"),
    (("revenue", "--from", "2026-02-01", "--to", "2026-01-01"), "--to"),
    (("funnel", "--steps", "a,b", "--from", "2026-02-01", "--to", "2026-01-01"), "--to"),
    (("paths", "--from", "a", "--since", "2026-02-01", "--until", "2026-01-01"), "--until"),
    # Unknown choices.
    (("lifecycle", "--period", "year"), "--period"),
    (("retention", "--start", "signup", "--period", "year"), "--period"),
    (("retention", "--start", "signup", "--mode", "twice"), "--mode"),
    (("funnel", "--steps", "a,b", "--per", "month"), "--per"),
]


@pytest.mark.parametrize(
    ("args", "option"), WRONG_OPTIONS, ids=[" ".join(args) for args, _ in WRONG_OPTIONS]
)
def test_a_wrong_option_is_one_clear_line_and_exit_2(
    demo_project: Path, args: tuple[str, ...], option: str
) -> None:
    result = run_cli("--project", str(demo_project), *args)
    text = (result.stderr + result.stdout).strip()
    assert "Traceback" not in text, text
    assert result.returncode == 2, text
    assert len(text.splitlines()) == 1, text
    assert text.startswith("error [metrics]:"), text
    assert option in text, text


def test_a_large_top_lists_every_path(demo_project: Path) -> None:
    args = ("--project", str(demo_project), "paths", "--to", "purchase", "--json")
    huge = run_cli(*args, "--top", "99999999999999999999999")
    assert huge.returncode == 0, huge.stderr
    assert huge.stdout == run_cli(*args, "--top", "100000").stdout


def test_the_limits_leave_ordinary_requests_alone(demo_project: Path) -> None:
    # The largest allowed values run; the work they do is bounded by the limit.
    for args in (
        ("retention", "--start", "signup", "--period", "day", "--periods", "32", "--json"),
        ("paths", "--from", "product_view", "--steps", "20", "--top", "3", "--json"),
    ):
        result = run_cli("--project", str(demo_project), *args)
        assert result.returncode == 0, (args, result.stderr)
