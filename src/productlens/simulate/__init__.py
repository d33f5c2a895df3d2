"""The synthetic world: generate it block by block and write the raw tables plus a truth
manifest (`truth.json`) holding every parameter and realised count.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from productlens import __version__
from productlens.errors import SimulateError
from productlens.simulate.behaviour import generate_block
from productlens.simulate.params import WorldParams

__all__ = ["GenerateResult", "WorldParams", "generate"]

TRUTH_FILE = "truth.json"
TABLES = ("users", "events")
EXTENSIONS = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}


@dataclass
class GenerateResult:
    """Where the world was written and how big it is."""

    out: Path
    rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)
    truth: dict[str, Any] = field(default_factory=dict)


def _plain(table: pa.Table) -> pa.Table:
    """Dictionary columns as plain strings (for text formats)."""
    columns = [
        col.cast(pa.string()) if pa.types.is_dictionary(col.type) else col for col in table.columns
    ]
    return pa.table(columns, names=table.column_names)


def _write(table: pa.Table, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        pq.write_table(table, path, compression="zstd", row_group_size=1 << 20)
    elif fmt == "csv":
        pacsv.write_csv(_plain(table), path)
    else:
        con = duckdb.connect()
        con.register("rows", _plain(table))
        con.execute(f"COPY rows TO '{path}' (FORMAT json)")
        con.close()


def generate(
    params: WorldParams,
    out: Path,
    *,
    fmt: str = "parquet",
    on_block: Callable[[int, int], None] | None = None,
) -> GenerateResult:
    """Simulate the world described by `params` into `out/<table>/part-NNNNN.<ext>`.

    Files are written to a scratch folder first and moved into place at the end, so an
    interrupted run never leaves a mix of old and new files.
    """
    if fmt not in EXTENSIONS:
        raise SimulateError(f"unknown format {fmt!r}; choose one of {', '.join(EXTENSIONS)}")
    out.mkdir(parents=True, exist_ok=True)
    scratch = out / ".generating"
    shutil.rmtree(scratch, ignore_errors=True)
    for table in TABLES:
        (scratch / table).mkdir(parents=True)

    rows: Counter[str] = Counter()
    event_types: Counter[str] = Counter()
    for block in range(params.n_blocks):
        result = generate_block(params, block)
        for table, data in (("users", result.users), ("events", result.events)):
            name = f"part-{block:05d}.{EXTENSIONS[fmt]}"
            _write(data, scratch / table / name, fmt)
            rows[table] += data.num_rows
        counts = result.events.column("event_type").value_counts().to_pylist()
        event_types.update({c["values"]: c["counts"] for c in counts})
        if on_block:
            on_block(block + 1, params.n_blocks)

    files: dict[str, list[Path]] = {}
    for table in TABLES:
        target = out / table
        shutil.rmtree(target, ignore_errors=True)
        (scratch / table).rename(target)
        files[table] = sorted(target.iterdir())
    shutil.rmtree(scratch, ignore_errors=True)

    truth = {
        "productlens_version": __version__,
        "format": fmt,
        "params": params.to_dict(),
        "rows": dict(rows),
        "event_types": dict(sorted(event_types.items())),
    }
    (out / TRUTH_FILE).write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    return GenerateResult(out=out, rows=dict(rows), files=files, truth=truth)
