"""The synthetic world: generate it block by block (in parallel) and write every raw table
of the contract plus a truth manifest (`truth.json`) with every parameter, planted
effect, realised count and, in dirty mode, fault count.

Layout: `events/event_date=YYYY-MM-DD/part-NNNNN.<ext>` (one file per day, more only past
FILE_ROWS rows), the other per-user tables as `<table>/part-BBBBB.<ext>` (one per block),
and the global tables as `<table>/part-00000.<ext>`. Per-user truth that is no raw table
goes to `truth_activity/part-BBBBB.arrow` (Arrow IPC, which ingestion passes over): each
user's latent end of activity (`activity_end_ts`, the start of their last planned session;
a user whose end is at or after the world's end is still active there).

Blocks of users are the unit of work and of randomness; days are the unit of the event
files. So events are written in two steps: each block keeps its events as Arrow IPC
scratch, one record batch per day, and once every block is done each day's batches are
joined, in block order, into that day's file. Writing a few large files instead of one
small file per block and day is faster here, and reading them is faster downstream.
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
from typing import Any, TypeVar

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
TRUTH_ACTIVITY = "truth_activity"
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
    event_slices: list[tuple[int, int, int, int]]  # (day, first batch, batches, rows)
    active_at_end: int = 0  # users whose latent end of activity is at or after the world's end


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
        # JSON Lines only; keeps worker start-up light. DuckDB writes it (only the engine
        # package may import DuckDB).
        from productlens.engines.duckdb import write_json_lines  # noqa: PLC0415

        write_json_lines(_plain(table), path)


SMALL_DICTIONARY = 256  # dictionaries up to this size are written as they are


def _used(chunks: list[pa.DictionaryArray]) -> list[pa.DictionaryArray]:
    """The chunks, which share one dictionary, with a new shared dictionary holding only
    the values they use (in dictionary order). O(rows + dictionary), no sort."""
    dictionary = chunks[0].dictionary
    present = np.zeros(len(dictionary), bool)
    indices = [c.indices.fill_null(0).to_numpy() for c in chunks]
    for index in indices:
        present[index] = True
    remap = np.cumsum(present, dtype=np.int32) - 1
    used = dictionary.take(pa.array(np.flatnonzero(present)))
    return [
        pa.DictionaryArray.from_arrays(
            pa.array(remap[index], mask=~c.is_valid().to_numpy(zero_copy_only=False)), used
        )
        for c, index in zip(chunks, indices, strict=True)
    ]


def _compact(table: pa.Table) -> pa.Table:
    """Each large dictionary column with one dictionary of the values the table uses,
    so that a file carries its own small dictionaries rather than whole blocks' or the
    world's. (Parquet keeps one dictionary per column chunk, and pyarrow falls back to
    plain encoding when a dictionary changes between chunks.)"""
    return pa.table([_compact_column(c) for c in table.columns], names=table.column_names)


def _compact_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Chunks sharing equal dictionaries (products, devices) are remapped as they are;
    chunks with different ones (each block's own users) are reduced first, so that only
    the values used are unified."""
    if not pa.types.is_dictionary(column.type) or not column.num_chunks:
        return column
    chunks = column.chunks
    if all(c.dictionary.equals(chunks[0].dictionary) for c in chunks[1:]):
        if len(chunks[0].dictionary) <= SMALL_DICTIONARY:
            return column
        return pa.chunked_array(_used(chunks))
    reduced = [_used([c])[0] if len(c.dictionary) > SMALL_DICTIONARY else c for c in chunks]
    return pa.chunked_array([pa.chunked_array(reduced).combine_chunks()])


# Worker state: set once per process, so each task only carries a block number or a
# file's description.
_STATE: dict[str, Any] = {}
EVENT_SCRATCH = "_events"  # per block: events as Arrow IPC, one record batch per day
FILE_ROWS = 2_000_000  # an event file takes whole block slices up to about this many rows


def _init_worker(params: WorldParams, world: World | None, scratch: Path, fmt: str) -> None:
    """Set a process's state; a helper rebuilds the world itself (deterministic and
    quick), so nothing large crosses the pipe while it starts."""
    _STATE.update(params=params, world=world or build_world(params), scratch=scratch, fmt=fmt)


def _block_events_path(scratch: Path, block: int) -> Path:
    return scratch / EVENT_SCRATCH / f"block-{block:05d}.arrow"


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

    name = f"part-{block:05d}.{EXTENSIONS[fmt]}"
    activity = result.activity
    assert activity is not None
    (scratch / TRUTH_ACTIVITY).mkdir(exist_ok=True)
    with pa.ipc.new_file(
        str(scratch / TRUTH_ACTIVITY / f"part-{block:05d}.arrow"), activity.schema
    ) as writer:
        writer.write_table(activity)
    ends = activity.column("activity_end_ts").cast(pa.int64()).to_numpy()
    for table_name in BLOCK_TABLES:
        if table_name != "events":
            write_table(tables[table_name], scratch / table_name / name, fmt)
    events = tables["events"]
    if np.any(day[1:] < day[:-1]):  # late arrivals moved rows to later partitions
        order = np.argsort(day, kind="stable")
        events, day = events.take(pa.array(order)), day[order]
    days, starts = np.unique(day, return_index=True)
    bounds = [*starts[1:], day.size]
    # The IPC file format holds one dictionary per column, hence one chunk. Uncompressed,
    # so that the day files map their batches straight from the page cache: LZ4 (a third
    # of the size, about 70 bytes per event here) made reading them eight times slower.
    events = events.combine_chunks()
    path = _block_events_path(scratch, block)
    path.parent.mkdir(parents=True, exist_ok=True)
    slices: list[tuple[int, int, int, int]] = []  # (day, first batch, batches, rows)
    options = pa.ipc.IpcWriteOptions(compression=None)
    with pa.ipc.new_file(str(path), events.schema, options=options) as writer:
        written = 0
        for d, lo, hi in zip(days, starts, bounds, strict=True):
            batches = events.slice(lo, hi - lo).to_batches()
            for batch in batches:
                writer.write_batch(batch)
            slices.append((int(d), written, len(batches), int(hi - lo)))
            written += len(batches)

    counts = events.column("event_type").value_counts().to_pylist()
    return _BlockSummary(
        rows={t: tables[t].num_rows for t in BLOCK_TABLES},
        event_types={str(c["values"]): int(c["counts"]) for c in counts},
        sales=result.sales,
        experiment_sums=result.experiment_sums,
        faults=faults,
        late_events=late,
        event_slices=slices,
        active_at_end=int(np.sum(ends >= world.end_us)),
    )


@dataclass(frozen=True)
class _EventFile:
    """One event file to write: its path under the scratch folder and its parts, each
    (block, first record batch, number of batches) of that block's IPC scratch."""

    path: str
    parts: tuple[tuple[int, int, int], ...]


def _event_files(params: WorldParams, summaries: list[_BlockSummary], ext: str) -> list[_EventFile]:
    """Every event file: one per day, split between blocks past FILE_ROWS rows. The
    split depends on the rows alone, so the files do not depend on the worker count."""
    by_day: dict[int, list[tuple[int, int, int, int]]] = {}
    for block, summary in enumerate(summaries):
        for d, first, n, rows in summary.event_slices:
            by_day.setdefault(d, []).append((block, first, n, rows))
    first_day = np.datetime64(params.start_date)
    files: list[_EventFile] = []
    for d in sorted(by_day):
        groups: list[list[tuple[int, int, int]]] = [[]]
        rows = 0
        for block, first, n, count in by_day[d]:
            if groups[-1] and rows + count > FILE_ROWS:
                groups.append([])
                rows = 0
            groups[-1].append((block, first, n))
            rows += count
        folder = f"events/event_date={first_day + d}"
        files.extend(
            _EventFile(f"{folder}/part-{i:05d}.{ext}", tuple(parts))
            for i, parts in enumerate(groups)
        )
    return files


def _write_event_file(spec: _EventFile) -> None:
    """Join a file's block slices, in block order, and write it."""
    scratch: Path = _STATE["scratch"]
    batches: list[pa.RecordBatch] = []
    for block, first, n in spec.parts:
        with pa.memory_map(str(_block_events_path(scratch, block))) as source:
            reader = pa.ipc.open_file(source)
            batches.extend(reader.get_batch(i) for i in range(first, first + n))
    table = pa.Table.from_batches(batches)
    write_table(_compact(table), scratch / spec.path, _STATE["fmt"], ["event_ts"])


Task = TypeVar("Task")
Done = TypeVar("Done")


def _run_tasks(
    pool: ProcessPoolExecutor | None,
    helpers: int,
    run: Callable[[Task], Done],
    tasks: list[Task],
    finished: Callable[[], None],
) -> list[Done]:
    """Run `run` on every task; return the results in task order.

    This process works too: the pool's `helpers` processes take tasks from the front of
    the queue while this one takes them from the back, so the helpers' start-up costs
    nothing and no core idles. Each helper gets its next task as soon as it finishes one.
    """
    if pool is None:
        results = []
        for task in tasks:
            results.append(run(task))
            finished()
        return results

    pending = deque(range(len(tasks)))
    done: dict[int, Done] = {}

    def record(index: int, result: Done) -> None:
        done[index] = result
        finished()

    lock = threading.Lock()
    futures: dict[int, Future[Done]] = {}
    owner: dict[Future[Done], int] = {}

    def feed(previous: Future[Done] | None = None) -> None:
        with lock:
            if previous is not None and previous.exception() is None:
                record(owner[previous], previous.result())
            if not pending:
                return
            index = pending.popleft()
            futures[index] = pool.submit(run, tasks[index])
            owner[futures[index]] = index
        futures[index].add_done_callback(feed)

    try:
        for _ in range(helpers):
            feed()
        while True:
            with lock:
                if not pending:
                    break
                index = pending.pop()
            result = run(tasks[index])
            with lock:
                record(index, result)
        for future in list(futures.values()):
            future.result()  # re-raises a helper's error here
    except BaseException:
        with lock:
            pending.clear()  # stop feeding helpers; let the pool wind down
        raise
    return [done[i] for i in range(len(tasks))]


def _run_steps(
    params: WorldParams,
    world: World,
    scratch: Path,
    fmt: str,
    workers: int,
    on_progress: Callable[[int, int], None] | None,
) -> list[_BlockSummary]:
    """Run every block, then write every event file; return the blocks' summaries in
    block order. `on_progress(done, total)` follows both steps; the total is an
    estimate until the blocks are done."""
    _init_worker(params, world, scratch, fmt)
    steps = {"done": 0, "total": params.n_blocks + params.days}

    def finished() -> None:
        steps["done"] += 1
        if on_progress:
            on_progress(steps["done"], steps["total"])

    # Spawned helpers import in parallel while this process already works (a fork server
    # would block here until its imports finish; a plain fork would copy this possibly
    # multi-threaded process).
    pool = (
        ProcessPoolExecutor(
            workers - 1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(params, None, scratch, fmt),
        )
        if workers > 1
        else None
    )
    try:
        summaries = _run_tasks(
            pool, workers - 1, _run_block, list(range(params.n_blocks)), finished
        )
        files = _event_files(params, summaries, EXTENSIONS[fmt])
        steps["total"] = params.n_blocks + len(files)
        _run_tasks(pool, workers - 1, _write_event_file, files, finished)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    shutil.rmtree(scratch / EVENT_SCRATCH, ignore_errors=True)
    return summaries


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def generate(
    params: WorldParams,
    out: Path,
    *,
    fmt: str = "parquet",
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> GenerateResult:
    """Simulate the world described by `params` into `out`.

    Blocks, then event files, run in `workers` processes; the files are the same whatever
    that number. `on_progress(done, total)` is called after each. (As with any
    multiprocessing code, a script calling this with workers > 1 needs the
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

    summaries = _run_steps(params, world, scratch, fmt, workers, on_progress)

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
    for name in (*BLOCK_TABLES, *GLOBAL_TABLES, TRUTH_ACTIVITY):
        target = out / name
        shutil.rmtree(target, ignore_errors=True)
        (scratch / name).rename(target)
        if name != TRUTH_ACTIVITY:
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
        "activity": {
            "files": f"{TRUTH_ACTIVITY}/part-*.arrow",
            "rule": "activity_end_ts = the start of a user's last planned session; active at "
            "the end when activity_end_ts >= the world's end",
            "users": int(rows["users"]),
            "active_at_end": sum(s.active_at_end for s in summaries),
        },
    }
    (out / TRUTH_FILE).write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    return GenerateResult(out=out, rows=dict(rows), tables=tables, truth=truth)


def _experiment_truth(params: WorldParams, summaries: list[_BlockSummary]) -> dict[str, Any]:
    """Per experiment: the planted lift and the true effect among exposed users, from
    both potential outcomes of every exposed user, by the warehouse's definitions
    (experiment_outcomes: the primary metric's event in the outcome window; net revenue
    of completed orders). `n_exposed` counts users an SRM lost too; `observed_arms`
    only the users the experiment logged."""
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
        # What the warehouse should observe in each arm: the logged users of that arm,
        # each with the outcome of the arm they got (no sampling error between the two).
        arms: dict[str, dict[str, float | int]] = {}
        for arm in ("control", "treatment"):
            n_arm = total[f"arm_n_{arm}"]
            arms[arm] = {"n": int(n_arm)}
            if n_arm:
                arms[arm]["conversion"] = round(total[f"arm_converted_{arm}"] / n_arm, 6)
                if f"arm_revenue_{arm}" in total:
                    arms[arm]["revenue_per_user"] = round(total[f"arm_revenue_{arm}"] / n_arm, 4)
        entry["observed_arms"] = arms
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
