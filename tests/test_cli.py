"""Help texts, errors as one line, and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from productlens import modeling
from productlens.cli import app
from productlens.config import ProjectConfig
from tests.conftest import open_readonly, q, run_cli, warehouse_engine
from tests.test_warehouse import FIXTURE

COMMAND = typer.main.get_command(app)
COMMANDS = sorted(COMMAND.commands)  # type: ignore[attr-defined]


def test_every_command_and_option_is_described() -> None:
    assert {"demo", "generate", "ingest", "build", "check", "report", "models"} <= set(COMMANDS)
    for name, command in COMMAND.commands.items():  # type: ignore[attr-defined]
        assert command.help, name
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"{name} {param.name}"
    for param in COMMAND.params:
        if param.param_type_name == "option":
            assert param.help, param.name


@pytest.mark.parametrize("command", COMMANDS)
def test_help_runs(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert "Usage" in result.stdout


def test_top_level_help_lists_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
    assert "--project" in result.stdout
    assert "--warehouse" in result.stdout


def test_config_error_is_one_line_without_traceback(project_dir: Path) -> None:
    (project_dir / "productlens.toml").write_text("[warehouse]\nmemory_limt = '1GB'\n")
    result = run_cli("--project", str(project_dir), "build")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "warehouse.memory_limt: unknown key" in result.stderr
    assert result.stderr.startswith("error [config]")


def test_debug_shows_the_traceback(project_dir: Path) -> None:
    (project_dir / "productlens.toml").write_text("[warehouse]\nmemory_limt = '1GB'\n")
    result = run_cli("--project", str(project_dir), "--debug", "build")
    assert result.returncode == 2
    assert "Traceback" in result.stderr


def test_report_before_build_is_a_clear_error(project_dir: Path) -> None:
    result = run_cli("--project", str(project_dir), "report")
    assert result.returncode == 1
    assert "run `productlens build` first" in result.stderr


def test_ingest_missing_file(project_dir: Path) -> None:
    result = run_cli("--project", str(project_dir), "ingest", str(project_dir / "nope.parquet"))
    assert result.returncode == 1
    assert "no such file" in result.stderr
    assert "nope.parquet" in result.stderr


def test_usage_errors_exit_two() -> None:
    assert run_cli("build", "--no-such-option").returncode == 2
    assert run_cli("demo", "--users", "0").returncode == 2


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("productlens ")


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", "2026-02-30", "03/01/2026", ""])
def test_build_since_garbage_is_a_one_line_error(project_dir: Path, since: str) -> None:
    result = run_cli("--project", str(project_dir), "build", "--since", since)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"error [config]: --since must be a date like 2026-03-01, got {since!r}"
    )
    assert not (project_dir / "warehouse.duckdb").exists()  # refused before anything ran


def test_check_exits_non_zero_when_an_error_level_test_fails(project_dir: Path) -> None:
    data = project_dir / "data"
    data.mkdir()
    for table, text in FIXTURE.items():
        (data / f"{table}.csv").write_text(text)
    for step in [("ingest", str(data)), ("build",), ("check",)]:
        result = run_cli("--project", str(project_dir), *step)
        assert result.returncode == 0, (step, result.stdout, result.stderr)
        # The summary is titled with the command that ran (it said "productlens run",
        # another command, after check and report).
        titles = [line.strip() for line in result.stdout.splitlines()]
        assert f"productlens {step[0]}" in titles, result.stdout
        assert "productlens run" not in result.stdout
    # Plant a fault: a project model that inner-joins the users again, losing u9's event.
    shipped = Path(modeling.discover(ProjectConfig())["fct_events"].path).read_text()
    (project_dir / "models" / "core").mkdir(parents=True)
    (project_dir / "models" / "core" / "fct_events.sql").write_text(
        shipped.replace("left join users", "inner join users")
    )
    assert run_cli("--project", str(project_dir), "build").returncode == 0
    result = run_cli("--project", str(project_dir), "check")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(
        "error [check]: data test same_rows_as__fct_events__stg_events failed: 1 failing rows"
    )
    assert '"n_rows": 11, "n_upstream": 12' in result.stderr


def test_a_project_folder_with_quotes_in_its_path_works(tmp_path: Path) -> None:
    root = tmp_path / """it's a "project"; drop schema raw --"""
    root.mkdir()
    small = ["--users", "150", "--days", "7", "--seed", "3"]
    for step in [("generate", *small), ("ingest", str(root / "data")), ("build",), ("check",)]:
        result = run_cli("--project", str(root), *step)
        assert result.returncode == 0, (step, result.stdout, result.stderr)
    engine = open_readonly(root)
    try:
        counts = engine.fetch_all(
            q("SELECT (SELECT count(*) FROM raw.events), (SELECT count(*) FROM core.fct_events)")
        )
        setting = engine.fetch_all(q("SELECT current_setting('file_search_path')"))
    finally:
        engine.close()
    assert counts[0][0] == counts[0][1] > 0
    assert setting == [(str(root.resolve()),)]
    # The spill folder is the one beside the warehouse, path and quotes intact.
    writer = warehouse_engine(root / "warehouse.duckdb", memory_limit="1GB")
    try:
        temp = writer.fetch_all(q("SELECT current_setting('temp_directory')"))
    finally:
        writer.close()
    assert temp == [(str(root / "warehouse.tmp"),)]
