"""Help texts, errors as one line, and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from productlens.cli import app
from tests.conftest import run_cli

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
