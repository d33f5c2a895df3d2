"""`productlens activity`, `lifecycle` and `paths` end to end on the demo warehouse: exact
JSON against the brute-force references over the same events, and readable tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import open_readonly, q, run_cli
from tests.metrics_events import Event
from tests.test_activity import reference as activity_reference
from tests.test_lifecycle import reference as lifecycle_reference
from tests.test_paths import reference as paths_reference


@pytest.fixture(scope="module")
def demo_events(demo_project: Path) -> list[Event]:
    engine = open_readonly(demo_project)
    try:
        rows = engine.fetch_all(
            q("SELECT user_id, event_type, event_ts, event_id, device FROM core.fct_events")
        )
    finally:
        engine.close()
    return [Event(u, t, ts, i, d) for u, t, ts, i, d in rows]


def cli_json(root: Path, *args: str) -> dict[str, object]:
    result = run_cli("--project", str(root), *args, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def test_activity_json_is_exact(demo_project: Path, demo_events: list[Event]) -> None:
    days = sorted({e.ts.date() for e in demo_events})
    first, last = days[3], days[-2]
    got = cli_json(demo_project, "activity", "--from", first.isoformat(), "--to", last.isoformat(),
                   "--by", "device", "--where", "device=web,ios")  # fmt: skip
    expected = activity_reference(
        demo_events, date_from=first, date_to=last, by="device",
        where={"device": {"web", "ios"}},
    )  # fmt: skip
    assert got == expected
    assert sum(d["dau"] for d in expected["days"]) > 0


def test_activity_table(demo_project: Path, demo_events: list[Event]) -> None:
    day = max(e.ts.date() for e in demo_events)
    dau = len({e.user_id for e in demo_events if e.ts.date() == day})
    result = run_cli("--project", str(demo_project), "activity", "--from", day.isoformat())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].strip() == "Active users"
    row = next(line for line in lines if line.strip().startswith(day.isoformat()))
    assert row.split("│")[1].strip() == f"{dau:,}"
    assert any(line.strip() == "Users by days active per week" for line in lines)


@pytest.mark.parametrize("period", ["day", "week", "month"])
def test_lifecycle_json_is_exact(demo_project: Path, demo_events: list[Event], period: str) -> None:
    got = cli_json(demo_project, "lifecycle", "--period", period)
    assert got == lifecycle_reference(demo_events, period=period)


def test_lifecycle_table_and_a_bad_period(demo_project: Path) -> None:
    result = run_cli("--project", str(demo_project), "lifecycle")
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[1].split("┃")
    assert [h.strip() for h in header] == [
        "starting",
        "new",
        "returning",
        "resurrecting",
        "dormant",
    ]
    bad = run_cli("--project", str(demo_project), "lifecycle", "--period", "year")
    assert bad.returncode != 0
    assert "--period 'year'" in bad.stderr


@pytest.mark.parametrize(("flag", "direction"), [("--from", "from"), ("--to", "to")])
def test_paths_json_is_exact(
    demo_project: Path, demo_events: list[Event], flag: str, direction: str
) -> None:
    got = cli_json(demo_project, "paths", flag, "add_to_cart", "--steps", "2", "--top", "4")
    assert got == paths_reference(demo_events, "add_to_cart", direction, 2, 4)
    assert got["users"]


def test_paths_table_and_the_date_range(demo_project: Path, demo_events: list[Event]) -> None:
    last = max(e.ts.date() for e in demo_events)
    result = run_cli("--project", str(demo_project), "paths", "--from", "product_view",
                     "--steps", "1", "--since", last.isoformat(), "--json")  # fmt: skip
    in_range = [e for e in demo_events if e.ts.date() >= last]
    assert json.loads(result.stdout) == paths_reference(in_range, "product_view", "from", 1, 10)
    table = run_cli("--project", str(demo_project), "paths", "--from", "product_view")
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("Paths after product_view (")
    both = run_cli("--project", str(demo_project), "paths", "--from", "a", "--to", "b")
    assert both.returncode != 0
    assert "exactly one of --from EVENT or --to EVENT" in both.stderr


def test_a_date_without_events_reports_zeros(demo_project: Path) -> None:
    got = cli_json(demo_project, "activity", "--from", "1999-01-01", "--to", "1999-01-02")
    assert [(d["date"], d["dau"], d["mau"]) for d in got["days"]] == [  # type: ignore[union-attr]
        ("1999-01-01", 0, 0),
        ("1999-01-02", 0, 0),
    ]
