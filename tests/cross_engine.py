"""Comparing result tables across engines: rows as multisets, floats to 1e-9 relative,
timestamps exact, NULLs equal, types compared by kind (an engine's integer or decimal
width may differ from DuckDB's); and the parity test's worlds and pipeline, which the
run's one Spark build (conftest's `spark_warehouse`) shares."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from sqlglot import exp

from productlens.app import raw_root
from productlens.config import Project, load_project
from productlens.engines import Engine
from productlens.engines.base import table
from productlens.pipeline import Runner
from productlens.simulate import preset

WORLDS = {
    "ecommerce": preset("ecommerce", users=250, days=21, seed=5),
    "saas": preset("saas", users=250, days=35, seed=6),
}
# Every run lives in a folder named with quotes, a space and glob characters, its raw
# lake in a folder with a `?` as well (`[lake] root`): the input paths, the lake, the
# catalog, and the raw layer's `_source_file` values all carry them, on every engine.
# (A `?` in a DuckDB database's path, a `,` in the lake's or a glob character in Spark's
# warehouse folder are refused instead: see test_engine_paths.)
ODD = 'it\'s "odd" [a-b] *{c}'
ODD_LAKE = "raw lake? [x] *{y}"
SPARK_TABLES = 'it\'s "spark" tables'


def parity_project(root: Path, scenario: str, engine: str) -> Project:
    """A project of the parity worlds: the scenario, the lake in an oddly named folder."""
    root.mkdir(parents=True, exist_ok=True)
    lake = json.dumps(ODD_LAKE)  # a JSON string is a TOML basic string
    text = f'[simulate]\nscenario = "{scenario}"\n[lake]\nroot = {lake}\n'
    (root / "productlens.toml").write_text(text)
    project = load_project(root, engine=engine)  # type: ignore[arg-type]
    assert str(raw_root(project)) == str(root / ODD_LAKE)
    return project


def run_pipeline(project: Any, engine: Engine, data: Path | str) -> list[tuple[str, str, str]]:
    """ingest -> publish -> build -> check on `engine`; the data tests' outcomes."""
    runner = Runner(project, engine, Console(quiet=True))
    try:
        runner.ingest([data])
        built = runner.build()
        assert built.ok, built.failed
        outcomes = runner.check()
    finally:
        runner.finish()
    return sorted((o.test.name, o.status, str(o.n_failing)) for o in outcomes)


@dataclass(frozen=True)
class SparkWarehouse:
    """The run's one Spark build of the e-commerce parity world, in the `spark` session's
    catalog: its world folder, project folder, data-test outcomes and fingerprint."""

    world: Path
    project: Path
    outcomes: list[tuple[str, str, str]]
    fingerprint: tuple[Any, ...]

    def check_intact(self, engine: Engine) -> None:
        """Fail clearly when another test has rebuilt or emptied the shared catalog's
        layers since the build (the Spark tests share one session)."""
        assert fingerprint(engine) == self.fingerprint, (
            "the Spark session's warehouse is no longer the spark_warehouse build: a test "
            "that ran since dropped or rebuilt its layers"
        )


def fingerprint(engine: Engine) -> tuple[Any, ...]:
    """The run log's steps and last finish, and the events' count: what a rebuild changes."""
    log = exp.select(exp.Count(this=exp.Star()), exp.Max(this=exp.column("finished_at"))).from_(
        table("ops", "run_log")
    )
    events = exp.select(exp.Count(this=exp.Star())).from_(table("core", "fct_events"))
    return (*engine.fetch_all(log)[0], engine.fetch_all(events)[0][0])


def _plain(value: Any) -> Any:
    from decimal import Decimal

    return float(value) if isinstance(value, Decimal) else value


def _loose(dtype: pa.DataType) -> pa.DataType | None:
    """Let pyarrow infer integers and floats (compared later by value)."""
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return None
    return dtype


# --- Spark -------------------------------------------------------------------------------


# --- comparing ---------------------------------------------------------------------------


def _kind(dtype: pa.DataType) -> str:
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "number"
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        # The child's name is each engine's own (DuckDB "l", Arrow "item", Spark "element").
        return f"list<{_kind(dtype.value_type)}>"
    return str(dtype)


def _normalised(table: pa.Table) -> pa.Table:
    """Numbers as float64, timestamps as naive UTC microseconds (an aware timestamp's
    UTC instant: Arrow stores instants in UTC)."""
    return pa.Table.from_arrays(
        [_normalised_column(column) for column in table.columns], names=table.column_names
    )


def _normalised_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    dtype = column.type
    if _kind(dtype) == "number":
        return pc.cast(column, pa.float64())
    if pa.types.is_timestamp(dtype):
        naive = pa.timestamp(dtype.unit)
        utc = pa.chunked_array([chunk.view(naive) for chunk in column.chunks], naive)
        return pc.cast(utc, pa.timestamp("us"))
    return column


def differences(expected: pa.Table, actual: pa.Table) -> list[str]:
    """Why two result tables differ as multisets of rows (floats to 1e-9 relative); empty
    when they are equal."""
    if expected.column_names != actual.column_names:
        return [f"columns {actual.column_names} != {expected.column_names}"]
    problems = [
        f"{name}: {_kind(a.type)} != {_kind(e.type)}"
        for name, e, a in zip(expected.column_names, expected.schema, actual.schema, strict=True)
        if _kind(a.type) != _kind(e.type) and a.type != pa.null() and e.type != pa.null()
    ]
    if problems:
        return problems
    if expected.num_rows != actual.num_rows:
        return [f"{actual.num_rows} rows != {expected.num_rows}"]
    left, right = _normalised(expected), _normalised(actual)
    # Sort by every column, floats rounded to 9 significant digits so that values within
    # the tolerance sort alike.
    keys = [
        name
        for name, f in zip(left.column_names, left.schema, strict=True)
        if pa.types.is_floating(f.type) is False and _sortable(f.type)
    ]
    floats = [
        n
        for n, f in zip(left.column_names, left.schema, strict=True)
        if pa.types.is_floating(f.type)
    ]
    left, right = _sorted(left, keys, floats), _sorted(right, keys, floats)
    out = []
    for name in left.column_names:
        e, a = left[name].to_pylist(), right[name].to_pylist()
        bad = [(x, y) for x, y in zip(e, a, strict=True) if not _same(x, y)]
        if bad:
            out.append(f"{name}: {len(bad)} values differ, e.g. {bad[:3]}")
    return out


def _sortable(dtype: pa.DataType) -> bool:
    return not (pa.types.is_list(dtype) or pa.types.is_struct(dtype) or pa.types.is_map(dtype))


def _sorted(table: pa.Table, keys: list[str], floats: list[str]) -> pa.Table:
    helper = table
    sort_keys: list[tuple[str, str]] = [(k, "ascending") for k in keys]
    for name in floats:
        rounded = pc.round(helper[name], 6)
        helper = helper.append_column(f"__r_{name}", rounded)
        sort_keys.append((f"__r_{name}", "ascending"))
    order = pc.sort_indices(helper, sort_keys=sort_keys)
    return table.take(order)


def _same(x: Any, y: Any) -> bool:
    if x is None or y is None:
        return x is None and y is None
    if isinstance(x, float) and isinstance(y, float):
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) and math.isnan(y)
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)
    return bool(x == y)
