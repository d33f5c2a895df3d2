"""Every read command of the CLI answers on PostgreSQL as on DuckDB.

One small world of each scenario (with the faults real exports have, so the quarantine
holds rows) goes through `productlens run` once per engine and world, into a warehouse of
its own; then every read command of the CLI, in each of its orders, modes and options
listed in `FORMS`, runs in-process with `--json` against both warehouses, and the two
answers must be the same JSON (floats to 1e-9 relative; the few fields that name a run or
a moment, listed in `PER_RUN`, are left out). The report's insights are compared too. A
coverage test fails when a command of the CLI is neither compared here nor listed in
`EXEMPT` with the reason.

Both projects count days in a zone (the shop's west of UTC with Sunday weeks, the SaaS
world's half an hour off the hour east of it), so the zoned paths of every command, and
the data tests of a zoned project, run on both engines.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from sqlglot import exp
from typer.testing import CliRunner

from productlens.app import open_engine
from productlens.cli import app
from productlens.config import load_project
from productlens.engines.base import table
from productlens.report import write_report
from productlens.report.sections import Settings
from productlens.simulate import generate, preset
from tests import servers


@dataclass(frozen=True)
class World:
    scenario: str
    params: dict[str, Any]
    metrics: str  # the [metrics] section of its project
    steps: tuple[str, ...]  # the funnel's events, in order
    property_key: str  # an event property the commands break down by


WORLDS = {
    "ecommerce": World(
        "ecommerce",
        {"users": 200, "days": 21, "seed": 5},
        'timezone = "America/Los_Angeles"\nweek_start = "sunday"\n',
        ("page_view", "product_view", "add_to_cart", "checkout_start", "purchase"),
        "device",
    ),
    "saas": World(
        "saas",
        {"users": 200, "days": 35, "seed": 6},
        'timezone = "Asia/Kolkata"\n',
        ("login", "create_project", "export", "invite", "upgrade"),
        "device",
    ),
}


# --- the command forms compared -------------------------------------------------------------
# One row per form: a name and the arguments after the command's path, with `{s1}`..`{s5}`
# the world's funnel events, `{key}` a breakdown column, `{d0}`/`{d1}` two days inside the
# world; `{experiment}`: the form runs once per experiment of the world, `{first}`: for
# its first experiment.

FORMS: dict[str, tuple[str, ...]] = {
    # funnel: orders, counting, breakdowns and their attribution, trends, exclusions,
    # windows, ranges and filters
    "funnel": ("funnel", "--steps", "{s1},{s2},{s3},{s4}"),
    "funnel_strict_sessions": (
        *("funnel", "--steps", "{s1},{s2},{s3}", "--order", "strict"),
        *("--count-by", "session"),
    ),
    "funnel_unordered": ("funnel", "--steps", "{s2},{s3},{s4}", "--order", "unordered"),
    "funnel_by_per_day": ("funnel", "--steps", "{s1},{s2},{s3}", "--by", "{key}", "--per", "day"),
    "funnel_by_last_touch": (
        *("funnel", "--steps", "{s1},{s2},{s3}", "--by", "country"),
        *("--attribution", "last_touch"),
    ),
    "funnel_by_step": (
        *("funnel", "--steps", "{s1},{s2},{s3}", "--by", "{key}"),
        *("--attribution", "step:2"),
    ),
    "funnel_per_week": ("funnel", "--steps", "{s1},{s2}", "--per", "week", "--window", "2d"),
    "funnel_exclude": (
        *("funnel", "--steps", "{s1},{s2},{s3}", "--exclude", "{s5}:0:2"),
        *("--window", "1h"),
    ),
    "funnel_range_where": (
        *("funnel", "--steps", "{s1},{s2},{s3}", "--from", "{d0}", "--to", "{d1}"),
        *("--where", "{key}=mobile,web"),
    ),
    # retention: starts, returns, grains, modes, cumulative, ranges and filters
    "retention_signup": ("retention", "--start", "signup"),
    "retention_event_daily": (
        *("retention", "--start", "{s1}", "--return", "{s2}", "--period", "day"),
        *("--periods", "10"),
    ),
    "retention_first_time_monthly": (
        *("retention", "--start", "{s1}", "--mode", "first_time", "--period", "month"),
    ),
    "retention_cumulative": ("retention", "--start", "signup", "--cumulative"),
    "retention_filtered": (
        *("retention", "--start", "{s1}", "--start-where", "{key}=mobile"),
        *("--return-where", "country=US,GB", "--from", "{d0}", "--to", "{d1}"),
    ),
    "retention_where": ("retention", "--start", "{s2}", "--where", "{key}=web"),
    # signup cohorts picked by the users table's device and country
    "retention_signup_where": (
        *("retention", "--start", "signup", "--where", "{key}=mobile", "--where", "country=US,GB"),
    ),
    # activity, lifecycle, paths
    "activity": ("activity",),
    "activity_by": ("activity", "--by", "{key}"),
    "activity_range_where": (
        *("activity", "--from", "{d0}", "--to", "{d1}", "--where", "country=US"),
    ),
    "lifecycle_day": ("lifecycle", "--period", "day", "--from", "{d0}", "--to", "{d1}"),
    "lifecycle_week": ("lifecycle",),
    "lifecycle_month": ("lifecycle", "--period", "month", "--where", "{key}=mobile"),
    "paths_after": ("paths", "--from", "{s1}"),
    "paths_into": ("paths", "--to", "{s3}", "--steps", "2", "--top", "5"),
    "paths_range_where": (
        *("paths", "--from", "{s2}", "--since", "{d0}", "--until", "{d1}"),
        *("--where", "{key}=web"),
    ),
    # revenue and customer value
    "revenue": ("revenue",),
    "revenue_range": ("revenue", "--from", "{d0}", "--to", "{d1}"),
    "clv": ("clv",),
    "clv_holdout": ("clv", "--calibration-end", "{d1}", "--horizon", "26w"),
    # experiments
    "experiment_list": ("experiment", "list"),
    "experiment_analyze": ("experiment", "analyze", "{experiment}"),
    "experiment_analyze_bayesian_cuped": (
        *("experiment", "analyze", "{first}", "--method", "bayesian", "--cuped"),
    ),
    "experiment_analyze_sequential_by": (
        *("experiment", "analyze", "{first}", "--method", "sequential"),
        *("--by", "device", "--alpha", "0.1"),
    ),
    # the warehouse's own records
    "quarantine": ("quarantine", "--limit", "50"),
    "quarantine_one_reason": ("quarantine", "--table", "events", "--reason", "duplicate"),
    "quarantine_warnings": ("quarantine", "--warnings"),
    "runs": ("runs",),
    "models": ("models",),
}

# Commands that are not compared, each with the reason.
EXEMPT: dict[str, str] = {
    "demo": "writes a warehouse of its own on DuckDB (the embedded engine by design)",
    "generate": "writes files; reads no warehouse",
    "ingest": "writes the lake (DuckDB is ingestion's processor on every engine)",
    "build": "writes; the built tables are compared row by row in test_engine_parity",
    "run": "writes; this module builds both warehouses with it, and `runs` is compared",
    "check": "writes; the data tests' outcomes are compared through `runs` and parity",
    "report": "writes files; its insights are compared in test_the_reports_insights_agree",
    "dashboard": "starts a server; its pages read the report's sections (insights compared)",
    "presets": "prints shipped files; reads no warehouse",
    "stats": "reads numbers from stdin; reads no warehouse",
    "experiment plan": "computes from its options; reads no warehouse",
    "export dbt": "writes a dbt project from the model files; reads no warehouse",
    "lineage": "reads the model files; reads no warehouse",
}

# Fields that name a run, a batch or a moment differ between any two runs, whatever the
# engine: only whether each is there is compared. A run's stages are compared by name,
# but for `publish`: showing the lake's raw layer to the engine, a stage only where the
# warehouse is not the lake's own DuckDB file.
PER_RUN: dict[str, Callable[[Any], Any]] = {
    "run_id": lambda v: v is not None,
    "started_at": lambda v: v is not None,
    "finished_at": lambda v: v is not None,
    "last_built": lambda v: v is not None,
    "batch": lambda v: v is not None,
    "stages": lambda v: sorted(set(v) - {"publish"}),
}


# Forms a world cannot answer (the SaaS world has no orders): both engines must refuse
# them alike.
REFUSED = {"saas": {"clv", "clv_holdout"}}


@dataclass(frozen=True)
class Refusal:
    exit_code: int
    message: str


# --- the two warehouses of one world ----------------------------------------------------------

ENGINES = ("duckdb", "postgres")


@dataclass(frozen=True)
class Built:
    """One world built on each engine: project folders and what the commands need."""

    world: World
    projects: dict[str, Path]
    env: dict[str, dict[str, str]]  # each engine's environment (PostgreSQL's DSN)
    days: tuple[str, str]  # two days inside the world

    def invoke(self, engine: str, args: list[str]) -> Any:
        """`productlens --project P ARGS --json` in-process on `engine`'s warehouse; its JSON."""
        answer = self.answer(engine, args)
        assert not isinstance(answer, Refusal), (engine, args, answer)
        return answer

    def answer(self, engine: str, args: list[str]) -> Any:
        """The command's JSON, or its refusal (exit code and message)."""
        result = CliRunner().invoke(
            app, ["--project", str(self.projects[engine]), *args, "--json"], env=self.env[engine]
        )
        if result.exit_code != 0:
            return Refusal(result.exit_code, repr(result.exception))
        return json.loads(result.stdout)

    def fill(self, form: tuple[str, ...], **extra: str) -> list[str]:
        steps = {f"s{i}": s for i, s in enumerate(self.world.steps, start=1)}
        values = {**steps, "key": self.world.property_key, "d0": self.days[0], "d1": self.days[1]}
        return [part.format(**values, **extra) for part in form]


@pytest.fixture(scope="module", params=sorted(WORLDS))
def built(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_server: servers.PostgresServer,
) -> Built:
    """One world built on both engines, once per run (a database of its own on the run's
    PostgreSQL server)."""
    world = WORLDS[request.param]
    dsn = pg_server.create_database(f"commands_{world.scenario}")
    return build(world, tmp_path_factory.mktemp(f"commands-{world.scenario}"), dsn)


def build(world: World, folder: Path, dsn: str) -> Built:
    """The world generated once (with planted faults, and a few events of users nobody
    loaded: rows loaded with a warning), then `productlens run` on DuckDB and on
    PostgreSQL, each from the same landing folder."""
    params = preset(world.scenario, dirty=True, **world.params)
    generate(params, folder / "data", workers=1)
    _add_unknown_users(folder / "data" / "events")
    projects, env = {}, {}
    for engine in ENGINES:
        root = folder / engine
        root.mkdir()
        (root / "productlens.toml").write_text(
            f'[simulate]\nscenario = "{world.scenario}"\n'
            f"[sources]\nlanding = {json.dumps(str(folder / 'data'))}\n"
            f'[warehouse]\nengine = "{engine}"\n'
            f"[metrics]\n{world.metrics}"
        )
        projects[engine] = root
        env[engine] = {"PRODUCTLENS_POSTGRES_DSN": dsn} if engine == "postgres" else {}
        result = CliRunner().invoke(
            app, ["--project", str(root), "run", "--no-report"], env=env[engine]
        )
        assert result.exit_code == 0, (engine, result.output, result.exception)
    start = params.start.date()
    days = tuple((start + timedelta(days=n)).isoformat() for n in (3, 12))
    return Built(world, projects, env, days)  # type: ignore[arg-type]


def _add_unknown_users(events: Path) -> None:
    """Three events of the first day again, as new events of users the users table lacks."""
    first = sorted(events.glob("*/*.parquet"))[0]
    rows = pq.read_table(first).slice(0, 3)
    fresh = pa.array([f"unknown_{i}" for i in range(rows.num_rows)])
    rows = rows.set_column(rows.column_names.index("event_id"), "event_id", fresh)
    rows = rows.set_column(rows.column_names.index("user_id"), "user_id", fresh)
    pq.write_table(rows, first.with_name("unknown-users.parquet"))


# --- comparing answers --------------------------------------------------------------------


def differences(expected: Any, actual: Any, where: str = "$") -> list[str]:
    """Where two JSON answers differ (floats to 1e-9 relative; ints, text and each value's
    JSON type exactly: a count printed as 3.0 differs from 3; lists in order; `PER_RUN`
    fields by what they keep); empty when they agree."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        if sorted(expected) != sorted(actual):
            return [f"{where}: keys {sorted(actual)} != {sorted(expected)}"]
        out = []
        for key, value in expected.items():
            keep = PER_RUN.get(key)
            left, right = (keep(value), keep(actual[key])) if keep else (value, actual[key])
            out += differences(left, right, f"{where}.{key}")
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{where}: {len(actual)} items != {len(expected)}"]
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in differences(e, a, f"{where}[{i}]")
        ]
    if isinstance(expected, float) and isinstance(actual, float):
        same = math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-12) or (
            math.isnan(expected) and math.isnan(actual)
        )
        return [] if same else [f"{where}: {actual!r} != {expected!r}"]
    if type(expected) is not type(actual) or expected != actual:
        return [f"{where}: {actual!r} != {expected!r}"]
    return []


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _forms(built: Built, name: str) -> list[list[str]]:
    """The argument lists of one form: once, or once per experiment of the world."""
    form = FORMS[name]
    if "{experiment}" not in form and "{first}" not in form:
        return [built.fill(form)]
    listed = [
        e["experiment_id"] for e in built.invoke("duckdb", ["experiment", "list"])["experiments"]
    ]
    assert listed, "the world has no experiment"
    if "{first}" in form:
        return [built.fill(form, first=listed[0])]
    return [built.fill(form, experiment=e) for e in listed]


@pytest.mark.parametrize("name", sorted(FORMS))
def test_the_command_answers_alike_on_postgresql(built: Built, name: str) -> None:
    refused = name in REFUSED.get(built.world.scenario, ())
    for args in _forms(built, name):
        expected = built.answer("duckdb", args)
        actual = built.answer("postgres", args)
        if refused:
            assert isinstance(expected, Refusal), (args, expected)
            assert actual == expected, args
            continue
        assert not isinstance(expected, Refusal), (args, expected)
        assert _substantial(expected), (args, "answered nothing: the comparison would prove little")
        assert not isinstance(actual, Refusal), (args, actual)
        assert differences(expected, actual) == [], args


def test_every_command_of_the_cli_is_compared_or_exempt() -> None:
    """A command added to the CLI fails here until it is compared (a form in FORMS) or
    listed in EXEMPT with the reason; a name in neither list is a typo or a removed
    command."""
    commands = set(_command_paths(typer.main.get_command(app)))
    compared = {_command_path(form) for form in FORMS.values()}
    assert commands - compared - set(EXEMPT) == set()
    assert compared & set(EXEMPT) == set()
    assert (compared | set(EXEMPT)) - commands == set()


def _command_paths(command: Any, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    """Every runnable command's path (`experiment analyze`), walking the groups."""
    children = getattr(command, "commands", None)
    if children is None:
        yield " ".join(prefix)
        return
    for name, child in children.items():
        yield from _command_paths(child, (*prefix, name))


def _command_path(form: tuple[str, ...]) -> str:
    """A form's command path: its words before the first option."""
    words = []
    for word in form:
        if word.startswith("-") or "{" in word:
            break
        words.append(word)
    return " ".join(words)


def _substantial(answer: Any) -> bool:
    """Whether an answer holds a number other than zero (a funnel nobody entered names
    its steps all the same)."""
    if isinstance(answer, dict):
        return any(_substantial(v) for v in answer.values())
    if isinstance(answer, list):
        return any(_substantial(v) for v in answer)
    return _number(answer) and answer != 0


def test_the_reports_insights_agree(built: Built, tmp_path: Path) -> None:
    """The report read on PostgreSQL states what it states on DuckDB: every insight's key,
    sentence and numbers (the data-health section reads the quarantine's reasons, a list
    on DuckDB and JSON text on PostgreSQL)."""
    found = {}
    for engine in ENGINES:
        project, os_env = load_project(built.projects[engine]), built.env[engine]
        with _environment(os_env):
            warehouse = open_engine(project, read_only=True)
        try:
            result = write_report(
                warehouse, tmp_path / engine, settings=Settings.from_config(project.config)
            )
        finally:
            warehouse.close()
        found[engine] = {
            key: {"text": i.text, "values": i.values} for key, i in result.insights().items()
        }
    assert _substantial(found["duckdb"]["quarantine"]["values"])
    assert differences(found["duckdb"], found["postgres"]) == []


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in the environment while the engine opens (the app reads the DSN there)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _zoned_mart(built: Built, engine: str, name: str, *columns: str) -> list[dict[str, Any]]:
    """The rows of `marts.<name>` on `engine`'s warehouse of a project in a zone."""
    project = load_project(built.projects[engine])
    assert project.config.metrics.timezone != "UTC"
    with _environment(built.env[engine]):
        warehouse = open_engine(project, read_only=True)
    try:
        query = exp.select(*columns).from_(table("marts", name))
        return warehouse.fetch_arrow(query).to_pylist()
    finally:
        warehouse.close()


def test_a_zoned_projects_active_users_count_local_days(built: Built) -> None:
    """marts.active_users_daily counts days in [metrics] timezone, as `productlens
    activity` does (in UTC days, a day's funnel entrants could outnumber its active users
    and a zoned project's data tests failed)."""
    for engine in ENGINES:
        mart = _zoned_mart(
            built, engine, "active_users_daily", "activity_date", "dau", "wau", "mau"
        )
        command = {d["date"]: d for d in built.invoke(engine, ["activity"])["days"]}
        shared = [row for row in mart if row["activity_date"].isoformat() in command]
        assert len(shared) >= 14, engine
        for row in shared:
            day = command[row["activity_date"].isoformat()]
            assert (row["dau"], row["wau"], row["mau"]) == (day["dau"], day["wau"], day["mau"])


def test_a_zoned_projects_lifecycle_mart_counts_local_weeks(built: Built) -> None:
    """marts.user_lifecycle counts weeks in [metrics] timezone (and its week start), as
    `productlens lifecycle --period week` does: every week both have agrees status by
    status (in UTC days, users active near midnight moved between weeks)."""
    for engine in ENGINES:
        mart = _zoned_mart(built, engine, "user_lifecycle", "week_start_date", "status", "n_users")
        weeks: dict[str, dict[str, int]] = {}
        for row in mart:
            weeks.setdefault(row["week_start_date"].isoformat(), {})[row["status"]] = int(
                row["n_users"]
            )
        command = built.invoke(engine, ["lifecycle", "--period", "week"])["periods"]
        shared = [p for p in command if p["start"] in weeks]
        assert len(shared) >= 2, engine
        for period in shared:
            got = weeks[period["start"]]
            for status in ("new", "returning", "resurrecting", "dormant"):
                assert got.get(status, 0) == period[status], (engine, period["start"], status)


def test_the_comparison_sees_a_changed_answer() -> None:
    """The JSON comparison is not blind: a float nudged past 1e-9, a number sent as text (a
    Decimal printed by `default=str`), an integer become a float, a missing key, a list
    reordered or shortened each differ; a nudge within 1e-9 and a run's own id do not."""
    answer = {"run_id": "a", "rows": [{"n": 3, "rate": 0.25}, {"n": 1, "rate": None}]}

    def changed(**row: Any) -> dict[str, Any]:
        return {**answer, "rows": [{**answer["rows"][0], **row}, answer["rows"][1]]}

    assert differences(answer, answer) == []
    assert differences(answer, {**answer, "run_id": "b"}) == []
    assert differences(answer, changed(rate=0.25 * (1 + 1e-12))) == []
    assert differences(answer, changed(rate=0.25 * (1 + 1e-7))) != []
    assert differences(answer, changed(rate="0.25")) != []
    assert differences(answer, changed(n=3.5)) != []
    assert differences(answer, changed(n=3.0)) != []
    assert differences(answer, changed(n=True)) != []
    assert differences(answer, {"rows": answer["rows"]}) != []
    assert differences(answer, {**answer, "rows": answer["rows"][::-1]}) != []
    assert differences(answer, {**answer, "rows": answer["rows"][:1]}) != []
    assert differences(answer, {**answer, "run_id": None}) != []
