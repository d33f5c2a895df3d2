"""`productlens funnel` as a new user meets it: hostile names and values on a tiny
warehouse, and the errors of wrong options (each names the option and the reason).

The command runs in this process (`productlens.cli.main`) on a `core.fct_events` of a
few hand-written rows, so each case costs a fraction of a second.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from productlens.cli import main
from tests.conftest import warehouse_engine
from tests.funnel_reference import reference_funnel
from tests.test_funnel_rules import load_fct_events, make_events


def project_with(root: Path, rows: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """A project folder in `root` whose warehouse holds these events (make_events rows)."""
    events = make_events(rows)
    engine = warehouse_engine(root / "warehouse.duckdb", memory_limit="1GB", threads=1)
    try:
        load_fct_events(engine, events)
    finally:
        engine.close()
    return events


def run(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, str, str]:
    """`productlens --project ROOT funnel ARGS` in this process: exit code, stdout, stderr."""
    code = main(["--project", str(root), "funnel", *args])
    said = capsys.readouterr()
    return code, said.out, said.err


def test_emoji_codes_in_names_and_values_are_printed_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rich turned `:thumbs_up:` in an event name, a breakdown value or an error message
    into an emoji: `a:thumbs_up:` printed as `a👍`, `--exclude x:-1:1` as `x👎1`."""
    monkeypatch.setenv("COLUMNS", "200")
    project_with(
        tmp_path,
        [
            ("u1", "a:thumbs_up:", 0, {"device": ":smile:"}),
            ("u1", "b", 1, {"device": ":smile:"}),
        ],
    )
    code, out, err = run(capsys, tmp_path, "--steps", "a:thumbs_up:,b", "--by", "device")
    assert code == 0, err
    assert "0. a:thumbs_up:" in out
    assert ":smile:" in out
    assert "\N{THUMBS UP SIGN}" not in out
    assert "\N{SMILING FACE WITH OPEN MOUTH}" not in out

    code, out, err = run(capsys, tmp_path, "--steps", "a,b", "--exclude", "x:-1:1")
    assert code == 2
    assert "'x:-1:1'" in err, err


# One row per wrong option: the command line after `funnel`, and what the one-line error
# must say (the option, the value as typed, the reason).
WRONG_OPTIONS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("--steps", "a"), ("--steps 'a'", "at least two steps")),
    (("--steps", "a,,b"), ("--steps 'a,,b'", "step 1 has no event name")),
    (("--steps", ",a"), ("--steps ',a'", "step 0 has no event name")),
    (("--steps", "a,b", "--window", "7x"), ("--window '7x'", "s, m, h, d, w or mo")),
    (("--steps", "a,b", "--window", "0d"), ("--window '0d'", "positive")),
    (("--steps", "a,b", "--window", "9" * 30 + "d"), ("--window", "too long")),
]


@pytest.mark.parametrize(
    ("args", "said"), WRONG_OPTIONS, ids=[" ".join(args) for args, _ in WRONG_OPTIONS]
)
def test_a_wrong_option_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], said: tuple[str, ...]
) -> None:
    project_with(tmp_path, [("u1", "a", 0), ("u1", "b", 1)])
    code, out, err = run(capsys, tmp_path, *args)
    assert code == 2, err
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error [metrics]: "), err
    for text in said:
        assert text in err, err


def test_step_names_are_matched_as_the_warehouse_stores_event_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Staging stores event types lowercased and trimmed (`Sign Up` in an export is
    `sign up` in core.fct_events), so `--steps 'Sign Up,Purchase'` as the export spells
    them counted nobody, with no word why. The names are read as the warehouse stores
    them, and a note on stderr says so."""
    rows = [
        ("u1", "sign up", 0), ("u1", "purchase", 1),
        ("u2", "sign up", 0), ("u2", "x", 1),
    ]  # fmt: skip
    events = project_with(tmp_path, rows)
    code, out, err = run(capsys, tmp_path, "--steps", "Sign Up,PURCHASE", "--json")
    assert code == 0, err
    expected = reference_funnel(events, ["sign up", "purchase"])
    assert json.loads(out) == expected
    assert [s["count"] for s in expected["steps"]] == [2, 1]
    assert "'Sign Up' is read as 'sign up'" in err, err
    assert "'PURCHASE' is read as 'purchase'" in err, err
    # Exclusions too: u1's x between the steps now spoils its attempt.
    code, out, err = run(
        capsys, tmp_path, "--steps", "sign up,x", "--exclude", "PURCHASE:0:1", "--json"
    )
    assert code == 0, err
    assert json.loads(out) == reference_funnel(
        events, ["sign up", "x"], exclude=[("purchase", 0, 1)]
    )
    assert "'PURCHASE' is read as 'purchase'" in err, err
    # Names already as stored: no note.
    code, out, err = run(capsys, tmp_path, "--steps", "sign up,purchase", "--json")
    assert code == 0, err
    assert err == ""


def test_a_step_name_the_events_hold_as_typed_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A project may replace the staging model and keep the export's case: a name the
    events hold exactly as typed is not folded (`Buy` is its own event beside `buy`)."""
    rows = [("u1", "Buy", 0), ("u1", "Pay", 1), ("u2", "Buy", 0), ("u2", "pay", 1)]
    events = project_with(tmp_path, rows)
    code, out, err = run(capsys, tmp_path, "--steps", "Buy,Pay", "--json")
    assert code == 0, err
    assert err == ""
    expected = reference_funnel(events, ["Buy", "Pay"])
    assert json.loads(out) == expected
    assert [s["count"] for s in expected["steps"]] == [2, 1]


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        (("paths", "--from", "Sign Up"), ("paths", "--from", "sign up")),
        (("paths", "--to", "PURCHASE"), ("paths", "--to", "purchase")),
        (
            (
                "retention",
                "--start",
                "Sign Up",
                "--return",
                "Purchase",
                "--period",
                "day",
                "--periods",
                "3",
            ),
            (
                "retention",
                "--start",
                "sign up",
                "--return",
                "purchase",
                "--period",
                "day",
                "--periods",
                "3",
            ),
        ),
    ],
)
def test_paths_and_retention_read_event_names_as_stored(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    typed: tuple[str, ...],
    stored: tuple[str, ...],
) -> None:
    """The same folding in the other commands that take event names."""
    rows = [("u1", "sign up", 0), ("u1", "purchase", DAY_MIN), ("u2", "sign up", 0)]
    project_with(tmp_path, rows)
    code = main(["--project", str(tmp_path), *stored, "--json"])
    expected = capsys.readouterr()
    assert code == 0, expected.err
    assert expected.err == ""
    # The stored names find the events (u1 and u2 signed up, u1 bought a day later).
    assert any(
        n in expected.out
        for n in ('"users": 2', '"users": 1', '"counts": [\n        2,\n        1,')
    )
    code = main(["--project", str(tmp_path), *typed, "--json"])
    got = capsys.readouterr()
    assert code == 0, got.err
    assert json.loads(got.out) == json.loads(expected.out)
    assert "is read as 'sign up'" in got.err or "is read as 'purchase'" in got.err, got.err


DAY_MIN = 24 * 60
