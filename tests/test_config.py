from __future__ import annotations

from pathlib import Path

import pytest

from productlens.config import ECOMMERCE_FUNNEL, SAAS_FUNNEL, load_project
from productlens.errors import ConfigError


def test_no_file_means_defaults(project_dir: Path) -> None:
    project = load_project(project_dir)
    assert project.warehouse_path == project_dir / "warehouse.duckdb"
    assert project.data_dir == project_dir / "data"
    assert project.config.simulate.users == 10_000
    assert project.config.funnel_steps() == ECOMMERCE_FUNNEL


def test_values_from_file_and_relative_paths(project_dir: Path) -> None:
    (project_dir / "productlens.toml").write_text(
        '[warehouse]\npath = "wh/main.duckdb"\nthreads = 2\n'
        '[simulate]\nscenario = "saas"\nusers = 50\n'
    )
    project = load_project(project_dir)
    assert project.warehouse_path == project_dir / "wh" / "main.duckdb"
    assert project.config.warehouse.threads == 2
    assert project.config.funnel_steps() == SAAS_FUNNEL


def test_warehouse_option_overrides_file(project_dir: Path, tmp_path: Path) -> None:
    (project_dir / "productlens.toml").write_text('[warehouse]\npath = "a.duckdb"\n')
    project = load_project(project_dir, warehouse=tmp_path / "b.duckdb")
    assert project.warehouse_path == tmp_path / "b.duckdb"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[warehouse]\nmemory_limt = "1GB"\n', "warehouse.memory_limt: unknown key"),
        ("[simulat]\nusers = 5\n", "simulat: unknown key"),
        ("[simulate]\nusers = -5\n", "simulate.users: Input should be greater than 0"),
        ('[simulate]\nscenario = "bank"\n', "simulate.scenario"),
        ('[warehouse]\nmemory_limit = "lots"\n', "warehouse.memory_limit"),
        ('[metrics]\nfunnel_steps = ["a", "a"]\n', "funnel steps must be distinct"),
        ("[simulate\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(project_dir: Path, toml: str, expected: str) -> None:
    (project_dir / "productlens.toml").write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_project(project_dir)
    assert expected in str(info.value)
    assert "productlens.toml" in str(info.value)


def test_configured_funnel_steps_win(project_dir: Path) -> None:
    (project_dir / "productlens.toml").write_text('[metrics]\nfunnel_steps = ["open", "pay"]\n')
    assert load_project(project_dir).config.funnel_steps() == ("open", "pay")
