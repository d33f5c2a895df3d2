"""The synthetic world: generate it block by block (in parallel) and write every raw table
of the contract plus a truth manifest (`truth.json`) with every parameter, planted
effect, realised count and, in dirty mode, fault count.

Layout: `events/event_date=YYYY-MM-DD/part-BBBBB.<ext>`, the other per-user tables as
`<table>/part-BBBBB.<ext>`, and the global tables as `<table>/part-00000.<ext>`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import threading
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from productlens import __version__
from productlens.errors import SimulateError
from productlens.simulate.behaviour import generate_block
from productlens.simulate.catalog import World, build_world
from productlens.simulate.dirty import dirty_events, dirty_orders
from productlens.simulate.inventory import inventory_table
from productlens.simulate.params import ExperimentSpec, WorldParams, preset

__all__ = ["ExperimentSpec", "GenerateResult", "WorldParams", "generate", "preset"]

TRUTH_FILE = "truth.json"
BLOCK_TABLES = (
    "users",
    "user_changes",
    "events",
    "orders",
    "order_items",
    "subscriptions",
    "assignments",
)
GLOBAL_TABLES = ("products", "campaigns", "experiments", "inventory")
EXTENSIONS = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}
DIRTY_STREAM = 2_000_003


@dataclass
class GenerateResult:
    """Where the world was written and how big it is."""

    out: Path
    rows: dict[str, int] = field(default_factory=dict)
    tables: dict[str, Path] = field(default_factory=dict)
    truth: dict[str, Any] = field(default_factory=dict)


@dataclass
class _BlockSummary:
    rows: dict[str, int]
    event_types: dict[str, int]
    sales: np.ndarray
    experiment_sums: dict[str, dict[str, float]]
    faults: dict[str, dict[str, int]]
    late_events: int


def _plain(table: pa.Table) -> pa.Table:
    """Dictionary columns as plain strings (for text formats)."""
    columns = [
        col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col
        for col in table.columns
    ]
    return pa.table(columns, names=table.column_names)


def write_table(table: pa.Table, path: Path, fmt: str, statistics: list[str] | None = None) -> None:
    """Write one file in the given format; Parquet min/max statistics for the named
    columns only when given (they cost a third of the write time on wide tables)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        # Dictionary-encode only what is already dictionary-typed: trying it on unique ids,
        # times and amounts costs time and then falls back to plain anyway.
        encode = [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
        pq.write_table(
            table,
            path,
            compression="zstd",
            compression_level=1,
            use_dictionary=encode or False,
            write_statistics=statistics if statistics is not None else True,
            row_group_size=1 << 20,
        )
    elif fmt == "csv":
        pacsv.write_csv(_plain(table), path)
    else:
        import duckdb  # noqa: PLC0415 - JSON Lines only; keeps worker start-up light

        con = duckdb.connect()
        con.register("rows", _plain(table))
        con.execute(f"COPY rows TO '{path}' (FORMAT json)")
        con.close()


def _compact(table: pa.Table) -> pa.Table:
    """Shrink large dictionaries to the values a slice uses, so that each partition file
    carries its own small dictionary rather than the whole block's."""
    columns = []
    for original in table.columns:
        column = original
        if pa.types.is_dictionary(column.type) and len(column.chunk(0).dictionary) > 256:
            chunk = column.combine_chunks()
            indices = chunk.indices.fill_null(0).to_numpy()
            valid = chunk.is_valid().to_numpy(zero_copy_only=False)
            present = np.zeros(len(chunk.dictionary), bool)
            present[indices] = True  # O(rows + dictionary), no sort
            remap = np.cumsum(present, dtype=np.int32) - 1
            column = pa.DictionaryArray.from_arrays(
                pa.array(remap[indices], mask=~valid),
                chunk.dictionary.take(pa.array(np.flatnonzero(present))),
            )
        columns.append(column)
    return pa.table(columns, names=table.column_names)


# Worker state: set once per process, so each task only carries a block number.
_STATE: dict[str, Any] = {}


def _init_worker(params: WorldParams, world: World | None, scratch: Path, fmt: str) -> None:
    """Set a process's state; a helper rebuilds the world itself (deterministic and
    quick), so nothing large crosses the pipe while it starts."""
    _STATE.update(params=params, world=world or build_world(params), scratch=scratch, fmt=fmt)


def _run_block(block: int) -> _BlockSummary:
    params: WorldParams = _STATE["params"]
    world: World = _STATE["world"]
    scratch: Path = _STATE["scratch"]
    fmt: str = _STATE["fmt"]
    result = generate_block(params, world, block)
    tables = result.tables
    day = result.event_day
    faults: dict[str, dict[str, int]] = {}
    late = 0
    if params.dirty:
        rng = np.random.default_rng([params.seed, DIRTY_STREAM, block])
        tables["events"], day, faults["events"], late = dirty_events(tables["events"], day, rng)
        tables["orders"], faults["orders"], orphaned = dirty_orders(
            tables["orders"], tables["order_items"], rng
        )
        faults["order_items"] = {"unknown_order": orphaned}

    ext = EXTENSIONS[fmt]
    name = f"part-{block:05d}.{ext}"
    for table_name in BLOCK_TABLES:
        if table_name != "events":
            write_table(tables[table_name], scratch / table_name / name, fmt)
    events = tables["events"]
    if np.any(day[1:] < day[:-1]):  # late arrivals moved rows to later partitions
        order = np.argsort(day, kind="stable")
        events, day = events.take(pa.array(order)), day[order]
    days, starts = np.unique(day, return_index=True)
    bounds = [*starts[1:], day.size]
    first = np.datetime64(params.start_date)
    for d, lo, hi in zip(days, starts, bounds, strict=True):
        folder = scratch / "events" / f"event_date={first + int(d)}"
        write_table(_compact(events.slice(lo, hi - lo)), folder / name, fmt, ["event_ts"])

    counts = events.column("event_type").value_counts().to_pylist()
    return _BlockSummary(
        rows={t: tables[t].num_rows for t in BLOCK_TABLES},
        event_types={str(c["values"]): int(c["counts"]) for c in counts},
        sales=result.sales,
        experiment_sums=result.experiment_sums,
        faults=faults,
        late_events=late,
    )


def _run_blocks(
    params: WorldParams,
    world: World,
    scratch: Path,
    fmt: str,
    workers: int,
    on_block: Callable[[int, int], None] | None,
) -> list[_BlockSummary]:
    """Run every block; return their summaries in block order.

    This process works too: `workers - 1` helper processes take blocks from the front of
    the queue while this one takes them from the back, so the helpers' start-up costs
    nothing and no core idles.
    """
    _init_worker(params, world, scratch, fmt)
    pending = deque(range(params.n_blocks))
    done: dict[int, _BlockSummary] = {}

    def finished(block: int, summary: _BlockSummary) -> None:
        done[block] = summary
        if on_block:
            on_block(len(done), params.n_blocks)

    if workers <= 1:
        while pending:
            block = pending.popleft()
            finished(block, _run_block(block))
        return [done[b] for b in range(params.n_blocks)]

    # Spawned helpers import in parallel while this process already works (a fork server
    # would block here until its imports finish; a plain fork would copy this possibly
    # multi-threaded process). Each helper gets its next block as soon as it finishes one.
    context = multiprocessing.get_context("spawn")
    lock = threading.Lock()
    futures: dict[int, Future[_BlockSummary]] = {}
    with ProcessPoolExecutor(
        workers - 1,
        mp_context=context,
        initializer=_init_worker,
        initargs=(params, None, scratch, fmt),
    ) as pool:

        def feed(previous: Future[_BlockSummary] | None = None) -> None:
            with lock:
                if previous is not None and previous.exception() is None:
                    finished(owner[previous], previous.result())
                if not pending:
                    return
                block = pending.popleft()
                futures[block] = pool.submit(_run_block, block)
                owner[futures[block]] = block
            futures[block].add_done_callback(feed)

        owner: dict[Future[_BlockSummary], int] = {}
        try:
            for _ in range(workers - 1):
                feed()
            while True:
                with lock:
                    if not pending:
                        break
                    block = pending.pop()
                summary = _run_block(block)
                with lock:
                    finished(block, summary)
            for future in list(futures.values()):
                future.result()  # re-raises a helper's error here
        except BaseException:
            with lock:
                pending.clear()  # stop feeding helpers; let the pool wind down
            raise
    return [done[b] for b in range(params.n_blocks)]


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def generate(
    params: WorldParams,
    out: Path,
    *,
    fmt: str = "parquet",
    workers: int | None = None,
    on_block: Callable[[int, int], None] | None = None,
) -> GenerateResult:
    """Simulate the world described by `params` into `out`.

    Blocks run in `workers` processes; the files are the same whatever that number. (As
    with any multiprocessing code, a script calling this with workers > 1 needs the
    `if __name__ == "__main__":` guard.) Files are written to a scratch folder and moved
    into place at the end, so an interrupted run never leaves a mix of old and new files.
    """
    if fmt not in EXTENSIONS:
        raise SimulateError(f"unknown format {fmt!r}; choose one of {', '.join(EXTENSIONS)}")
    out.mkdir(parents=True, exist_ok=True)
    scratch = out / ".generating"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    world = build_world(params)
    workers = min(workers or default_workers(), params.n_blocks)

    summaries = _run_blocks(params, world, scratch, fmt, workers, on_block)

    rows: Counter[str] = Counter()
    event_types: Counter[str] = Counter()
    for s in summaries:
        rows.update(s.rows)
        event_types.update(s.event_types)
    sales = np.sum([s.sales for s in summaries], axis=0)
    global_tables = {
        "products": world.products,
        "campaigns": world.campaigns,
        "experiments": world.experiments,
        "inventory": inventory_table(params, world, sales),
    }
    for name, table in global_tables.items():
        write_table(table, scratch / name / f"part-00000.{EXTENSIONS[fmt]}", fmt)
        rows[name] = table.num_rows

    tables: dict[str, Path] = {}
    for name in (*BLOCK_TABLES, *GLOBAL_TABLES):
        target = out / name
        shutil.rmtree(target, ignore_errors=True)
        (scratch / name).rename(target)
        tables[name] = target
    shutil.rmtree(scratch, ignore_errors=True)

    truth = {
        "productlens_version": __version__,
        "format": fmt,
        "params": params.to_dict(),
        "rows": dict(sorted(rows.items())),
        "event_types": dict(sorted(event_types.items())),
        "experiments": _experiment_truth(params, summaries),
        "campaigns": world.truth["campaigns"],
        "dirty": _dirty_truth(params, summaries),
    }
    (out / TRUTH_FILE).write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    return GenerateResult(out=out, rows=dict(rows), tables=tables, truth=truth)


def _experiment_truth(params: WorldParams, summaries: list[_BlockSummary]) -> dict[str, Any]:
    """Per experiment: the planted lift and the true effect among exposed users, from
    both potential outcomes of every exposed user."""
    result: dict[str, Any] = {}
    for e in params.experiments:
        total: Counter[str] = Counter()
        for s in summaries:
            total.update(s.experiment_sums[e.experiment_id])
        n = total["n_exposed"]
        entry: dict[str, Any] = {
            "planted_relative_lift": e.relative_lift,
            "lifted_step": params.funnel_steps[e.lifted_step],
            "exposure_event": params.funnel_steps[e.exposure_step],
            "srm_lost_share": e.srm_lost_share,
            "n_exposed": int(n),
            "n_treated": int(total["n_treated"]),
        }
        if n:
            control = total["converted_control"] / n
            treatment = total["converted_treatment"] / n
            entry.update(
                conversion_if_all_control=round(control, 6),
                conversion_if_all_treated=round(treatment, 6),
                true_absolute_lift=round(treatment - control, 6),
                true_relative_lift=round(treatment / control - 1, 6) if control else None,
            )
            if "revenue_control" in total:
                entry.update(
                    revenue_per_user_if_all_control=round(total["revenue_control"] / n, 4),
                    revenue_per_user_if_all_treated=round(total["revenue_treatment"] / n, 4),
                )
        result[e.experiment_id] = entry
    return result


def _dirty_truth(params: WorldParams, summaries: list[_BlockSummary]) -> dict[str, Any]:
    if not params.dirty:
        return {}
    faults: dict[str, Counter[str]] = {}
    for s in summaries:
        for table, counts in s.faults.items():
            faults.setdefault(table, Counter()).update(counts)
    return {
        "faults": {table: dict(sorted(c.items())) for table, c in faults.items()},
        "late_arriving_events": sum(s.late_events for s in summaries),
    }
