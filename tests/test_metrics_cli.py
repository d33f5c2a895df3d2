"""The metrics commands through the real CLI on a small simulated project: the table a
person reads, and exact JSON equal to the Python API's result."""

from __future__ import annotations

import json
from pathlib import Path

from productlens.metrics.funnel import funnel
from productlens.metrics.scope import Scope
from tests.conftest import open_readonly, run_cli

STEPS = "product_view,add_to_cart,checkout_start,purchase"


def test_funnel_json_is_the_api_result(demo_project: Path) -> None:
    result = run_cli(
        "--project", str(demo_project), "funnel", "--steps", STEPS, "--window", "7d",
        "--by", "device", "--where", "country=US,DE", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "note:" not in result.stderr  # exact column names
    data = json.loads(result.stdout)
    engine = open_readonly(demo_project)
    try:
        from datetime import timedelta

        expected = funnel(
            engine,
            STEPS.split(","),
            window=timedelta(days=7),
            by="device",
            scope=Scope.parse(where=["country=US,DE"]),
        ).to_dict()
        unfiltered = funnel(engine, STEPS.split(","), window=timedelta(days=7)).to_dict()
    finally:
        engine.close()
    assert data == expected
    counts = [s["count"] for s in data["steps"]]
    assert counts == sorted(counts, reverse=True)
    assert counts[-1] > 0
    # The filter filters, and every user of the total is in exactly one device bucket.
    assert counts[0] < unfiltered["steps"][0]["count"]
    assert sum(b["steps"][0]["count"] for b in data["breakdown"].values()) == counts[0]


def test_funnel_table_names_steps_and_counts(demo_project: Path) -> None:
    result = run_cli("--project", str(demo_project), "funnel", "--steps", STEPS, "--per", "week")
    assert result.returncode == 0, result.stderr
    data = json.loads(
        run_cli(
            "--project", str(demo_project), "funnel", "--steps", STEPS, "--per", "week", "--json"
        ).stdout
    )
    lines = result.stdout.splitlines()
    for k, step in enumerate(data["steps"]):
        row = next(line for line in lines if f"{k}. {step['event']}" in line)
        assert f"{step['count']:,}" in row
    for period in data["trend"]:
        marker = "" if period["complete"] else " *"
        assert any(line.lstrip().startswith(period["period"] + marker) for line in lines)


def test_funnel_bad_options_say_what_is_wrong(demo_project: Path) -> None:
    cases = {
        ("--window", "7x"): "window '7x'",
        ("--order", "sideways"): "--order 'sideways'",
        ("--exclude", "x:2:1"): "FROM must come before TO",
        # With --by: without it any --attribution is refused first (test_metrics_input_errors).
        ("--by", "device", "--attribution", "step:9"): "--attribution 'step:9'",
        ("--from", "yesterday"): "--from 'yesterday'",
        ("--where", "device"): "--where 'device'",
    }
    for args, message in cases.items():
        result = run_cli("--project", str(demo_project), "funnel", "--steps", STEPS, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in " ".join(result.stderr.split()), (args, result.stderr)


def test_a_key_that_is_a_column_in_another_case_gets_a_note(demo_project: Path) -> None:
    """`Country`/`Device` are property names (keys are exact), which a user rarely means:
    stderr says so and names the column; the JSON on stdout is still the property's
    result (no event has those properties, so nobody is counted)."""
    result = run_cli(
        "--project", str(demo_project), "funnel", "--steps", STEPS,
        "--where", " Country=US", "--by", "Device", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: --by 'Device' is not an event column, so it reads the property 'Device'; "
        "the column is 'device'",
        "note: --where 'Country' is not an event column, so it reads the property "
        "'Country'; the column is 'country'",
    ]
    assert [s["count"] for s in json.loads(result.stdout)["steps"]] == [0, 0, 0, 0]
    exact = run_cli(
        "--project", str(demo_project), "retention", "--start", "signup",
        "--return", "purchase", "--return-where", "DEVICE=ios", "--where", "country=US",
        "--json",
    )  # fmt: skip
    assert exact.returncode == 0, exact.stderr
    assert [line for line in exact.stderr.splitlines() if line.startswith("note:")] == [
        "note: --return-where 'DEVICE' is not an event column, so it reads the property "
        "'DEVICE'; the column is 'device'"
    ]
