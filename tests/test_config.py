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


# --- [experiments.metrics.NAME] ----------------------------------------------------------------

_METRIC = "[experiments.metrics.m]\n"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (_METRIC + 'type = "ratio"\nnumerator = "revenue"\n', "experiments.metrics.m: "),
        (_METRIC + 'type = "share"\nnumerator = "revenue"\n', "experiments.metrics.m.type: "),
        (_METRIC + 'type = "mean"\n', "experiments.metrics.m.numerator: Field required"),
        (
            _METRIC + 'type = "mean"\nnumerator = "password"\n',
            "experiments.metrics.m.numerator: Value error, 'password': unknown column",
        ),
        (
            _METRIC + 'type = "mean"\nnumerator = "revenue); drop table users; --"\n',
            "experiments.metrics.m.numerator: ",
        ),
        (
            _METRIC + 'type = "mean"\nnumerator = "sum(revenue)"\n',
            "experiments.metrics.m.numerator: Value error, 'sum(revenue)': 'sum' is not allowed",
        ),
        (
            _METRIC + 'type = "ratio"\nnumerator = "revenue"\ndenominator = "u.n_orders"\n',
            "experiments.metrics.m.denominator: Value error, 'u.n_orders': unknown column",
        ),
        (
            _METRIC + 'type = "mean"\nnumerator = "revenue"\ncovariate = "\'x\'"\n',
            "experiments.metrics.m.covariate: Value error",
        ),
        (
            _METRIC + 'type = "mean"\nnumerator = "revenue"\ncap_percentile = 99\n',
            "experiments.metrics.m.cap_percentile: Input should be less than 1",
        ),
        (
            _METRIC + 'type = "proportion"\nnumerator = "is_converted"\ncap_percentile = 0.9\n',
            "experiments.metrics.m: Value error, a proportion (0/1 per user) cannot be capped",
        ),
        (
            _METRIC + 'type = "mean"\nnumerator = "revenue"\nwindow_days = 0\n',
            "experiments.metrics.m.window_days: Input should be greater than 0",
        ),
        (_METRIC + 'type = "mean"\nnumerator = "revenue"\nlag = 1\n', "experiments.metrics.m.lag"),
        ("[experiments]\ntop_n = 0\n", "experiments.top_n: Input should be greater than 0"),
    ],
)
def test_bad_experiment_metric_names_the_key(project_dir: Path, toml: str, expected: str) -> None:
    (project_dir / "productlens.toml").write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_project(project_dir)
    assert expected in str(info.value)


def test_experiment_metrics_default_by_scenario(project_dir: Path) -> None:
    shop = load_project(project_dir).config.experiment_metrics()
    assert [(m.name, m.type, m.numerator, m.denominator) for m in shop] == [
        ("conversion", "proportion", "is_converted", None),
        ("revenue_per_user", "mean", "revenue", None),
        ("revenue_per_order", "ratio", "revenue", "n_orders"),
        ("events_per_user", "mean", "n_events", None),
    ]
    (project_dir / "productlens.toml").write_text('[simulate]\nscenario = "saas"\n')
    saas = load_project(project_dir).config.experiment_metrics()
    assert [m.name for m in saas] == ["conversion", "events_per_user"]


def test_declared_experiment_metrics_replace_the_defaults(project_dir: Path) -> None:
    (project_dir / "productlens.toml").write_text(
        "[experiments.metrics.big_spenders]\n"
        'type = "proportion"\nnumerator = "revenue > 100"\n'
        "[experiments.metrics.net_gain]\n"
        'type = "mean"\nnumerator = "greatest(revenue - pre_revenue, 0)"\n'
        'covariate = "pre_revenue"\ncap_percentile = 0.99\nwindow_days = 7\n'
    )
    metrics = load_project(project_dir).config.experiment_metrics()
    assert [m.name for m in metrics] == ["big_spenders", "net_gain"]
    net = metrics[1]
    assert (net.cap_percentile, net.window_days, net.covariate) == (0.99, 7, "pre_revenue")
    assert net.cap_fraction is not None
    assert (net.cap_fraction.numerator, net.cap_fraction.denominator) == (99, 100)
    # Columns come out quoted, whatever the dialect.
    assert net.numerator_sql.sql("postgres") == (
        'GREATEST(CAST("revenue" AS DOUBLE PRECISION) - CAST("pre_revenue" AS DOUBLE PRECISION), '
        "CAST(0 AS DOUBLE PRECISION))"
    )
