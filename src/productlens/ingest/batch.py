"""One ingest batch: check every row set-based, write what loads into the raw layer's
files, and record the batch, checking conservation, inside the transaction of the command
it belongs to (see `ingest.ingest_paths`: a command commits all its batches or none).

The checks run once and keep only the flagged rows (quarantined, warned, or exact copies
of loaded rows) in a small temporary table. A copyable source file without a held row is
copied byte for byte (the copies start in the background while the checks run); every
other row that loads is written, typed, by one anti-join against the flagged rows, so no
check is evaluated twice.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
from sqlglot import exp

from productlens import __version__
from productlens.config import IngestConfig, TableIngestConfig
from productlens.errors import EngineError, IngestError, UnreadableFile
from productlens.ingest.contracts import Contract
from productlens.ingest.processor import LakeProcessor
from productlens.ingest.sql import fill, table, text_list
from productlens.ingest.store import RawFile, RawStore, copied_name, rewritten_name, seal
from productlens.ingest.validate import Rules, Source, raw_json, unknown_table, validation
from productlens.objects import FilePath

# The statements below name the rows that do not load (quarantined, or exact copies of
# rows already loaded) as `SELECT __file, __row FROM __flagged WHERE len(__reasons) > 0 OR
# __existing`, and the quarantined rows of one table (a parameter) still waiting (neither
# released by a replay nor superseded by a forced load) as `raw.quarantine.target_table = ?
# AND raw.quarantine.released_at IS NULL AND raw.quarantine.superseded_at IS NULL`.


@dataclass
class BatchResult:
    """What one batch did."""

    batch_id: str
    table: str
    kind: str  # "files" or "replay"
    files: list[FilePath] = field(default_factory=list)
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    rows_warned: int = 0
    rows_filtered: int = 0  # left out by the table's `where` (not counted as read)
    notes: list[str] = field(default_factory=list)  # what the user should know, in words
    written: list[FilePath] = field(default_factory=list)  # the raw layer's files it wrote


@dataclass
class Plan:
    """What is known about a batch's source before it is checked."""

    read: int | None = None  # rows in the source, when the files' footers tell
    # source files (as the reader names them) that may be copied as they are -> rows
    copyable: dict[str, int] = field(default_factory=dict)
    # every source file of the batch, as the reader names them
    names: list[str] = field(default_factory=list)
    # the source restricted to some of its files (to rewrite or quote only those)
    subset: Callable[[list[str]], Source] | None = None
    # (checksum, path) of the source files, recorded so they are not loaded twice
    registry: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Counts:
    read: int = 0
    bad: int = 0
    duplicate: int = 0
    warned: int = 0
    held_files: set[str] = field(default_factory=set)


def run_batch(
    lake: LakeProcessor,
    store: RawStore,
    contract: Contract,
    source: Source,
    settings: TableIngestConfig,
    config: IngestConfig,
    now: datetime,
    batch: BatchResult,
    plan: Plan,
    replay: bool = False,
) -> None:
    """Check, write and record one batch, inside the caller's transaction; on any
    failure the files it wrote are removed again (the caller rolls back the rest)."""
    rules = _rules(store, contract, config, now)
    stamp = now.astimezone(UTC).replace(tzinfo=None)
    started = datetime.now(UTC).replace(tzinfo=None)
    copies = {
        name: store.table_dir(contract.table) / copied_name(batch.batch_id, i)
        for i, name in enumerate(sorted(plan.copyable))
    }
    written: list[RawFile] = []
    pool = ThreadPoolExecutor(max_workers=1)
    stop = threading.Event()
    copying = pool.submit(_copy_all, store, copies, stop)
    try:
        counts = _check(lake, contract, source, settings, rules, plan)
        copying.result()
        written += _keep_clean(store, copies, plan, counts.held_files)
        rewritten = _rewrite(
            lake, store, contract, source, settings, rules, plan, batch, counts.held_files
        )
        written += [rewritten] if rewritten else []
        loaded = sum(f.rows for f in written)
        held = _commit(
            lake, store, contract, source, settings, rules, plan, batch, counts,
            written, stamp, replay,
        )  # fmt: skip
        if counts.read != loaded + held + counts.duplicate:
            raise IngestError(
                f"rows read ({counts.read}) != loaded ({loaded}) + quarantined "
                f"({held}) + duplicates ({counts.duplicate}); nothing was loaded",
                table=contract.table,
            )
        _log(lake, batch, counts, loaded, held, started)
    except EngineError as exc:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        store.discard([*copies.values(), *(f.path for f in written)])
        where = files_text(batch.files) if batch.files else "the quarantine"
        message = f"cannot load into raw.{contract.table}: {exc.message}; nothing was loaded"
        bad = _unreadable_file(exc.message, batch.files)
        if bad is not None:  # a file whose footer read but whose data does not
            raise UnreadableFile(message, file=bad) from None
        raise IngestError(message, file=where) from None
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        store.discard([*copies.values(), *(f.path for f in written)])
        raise
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    # Only now: after a failure the transaction may be aborted, and its rollback drops
    # the temporary tables anyway.
    lake.execute("DROP TABLE IF EXISTS __flagged")
    lake.execute("DROP TABLE IF EXISTS __dup_hashes")
    for unknown in _unknown_tables(contract):
        lake.execute(fill("DROP TABLE IF EXISTS __t__", t=table(unknown)))
    batch.rows_read, batch.rows_loaded = counts.read, loaded
    batch.rows_quarantined = held
    batch.rows_duplicate, batch.rows_warned = counts.duplicate, counts.warned
    batch.written = [f.path for f in written]


def _unknown_tables(contract: Contract) -> list[str]:
    """The temporary tables a batch's reference scans may leave (see validate.Reference)."""
    return [unknown_table(c.name) for c in contract.columns if c.references]


def _rules(store: RawStore, contract: Contract, config: IngestConfig, now: datetime) -> Rules:
    referenced = {c.references.split(".")[0] for c in contract.columns if c.references}
    present = {t: store.has_rows(t) for t in referenced}
    existing = store.has_rows(contract.table)
    return Rules(now, config.future_tolerance_hours, config.unknown_references, existing, present)


def _copy_all(store: RawStore, copies: Mapping[str, FilePath], stop: threading.Event) -> None:
    """Copy every copyable source file, byte for byte (in the background, while the
    checks run: the copying is mostly the kernel's work), until told to stop."""
    for name, target in copies.items():
        if stop.is_set():
            return
        store.copy_in(store.lake.path(name), target)


def _keep_clean(
    store: RawStore, copies: Mapping[str, FilePath], plan: Plan, held_files: set[str]
) -> list[RawFile]:
    """The copies of files without a held-back row; the others are removed again."""
    written = []
    for name, target in copies.items():
        if name in held_files:
            store.discard([target])
        else:
            written.append(RawFile(target, name, plan.copyable[name], copied=True))
    return written


def _check(
    lake: LakeProcessor,
    contract: Contract,
    source: Source,
    settings: TableIngestConfig,
    rules: Rules,
    plan: Plan,
) -> _Counts:
    """Find the flagged rows (into __flagged) and count them."""
    v = validation(contract, source, settings, rules, settings.columns)
    hashes, missing_keys = lake.fetch_all(v.key_scan)[0]
    twice = len(hashes) > 0
    if twice:
        lake.execute(
            "CREATE OR REPLACE TEMP TABLE __dup_hashes AS SELECT unnest(CAST(? AS UBIGINT[])) AS h",
            [hashes],
        )
    all_known = set()
    for unknown, scan in v.reference_scans:
        lake.execute(
            fill("CREATE OR REPLACE TEMP TABLE __t__ AS __scan__", t=table(unknown), scan=scan)
        )
        if lake.fetch_all(fill("SELECT count(*) FROM __t__", t=table(unknown)))[0][0] == 0:
            all_known.add(unknown)
    flagged = v.flagged(
        "__dup_hashes" if twice else None,
        keys_complete=missing_keys == 0,
        all_known=frozenset(all_known),
    )
    lake.execute(fill("CREATE OR REPLACE TEMP TABLE __flagged AS __query__", query=flagged))
    if twice:
        for statement in v.merge_duplicates("__flagged"):
            lake.execute(statement)
    counts = _Counts()
    if plan.read is not None:
        counts.read = plan.read
    else:
        counted = fill("SELECT count(*) FROM __relation__", relation=source.relation)
        counts.read = int(lake.fetch_all(counted)[0][0])
    bad, duplicate, warned = lake.fetch_all(
        "SELECT count(*) FILTER (WHERE len(__reasons) > 0), "
        "count(*) FILTER (WHERE len(__reasons) = 0 AND __existing), "
        "count(*) FILTER (WHERE len(__reasons) = 0 AND len(__warnings) > 0 AND NOT __existing) "
        "FROM __flagged"
    )[0]
    counts.bad, counts.duplicate, counts.warned = int(bad), int(duplicate), int(warned)
    held = lake.fetch_all(
        "SELECT DISTINCT __file FROM __flagged WHERE len(__reasons) > 0 OR __existing"
    )
    counts.held_files = {r[0] for r in held}
    return counts


def _rewrite(
    lake: LakeProcessor,
    store: RawStore,
    contract: Contract,
    source: Source,
    settings: TableIngestConfig,
    rules: Rules,
    plan: Plan,
    batch: BatchResult,
    held_files: set[str],
) -> RawFile | None:
    """Write every loading row that was not copied, typed, into one file; None if there
    is no such row."""
    if plan.copyable:
        rest = [n for n in plan.names if n not in plan.copyable or n in held_files]
        if not rest or plan.subset is None:
            return None
        source = plan.subset(rest)
    v = validation(contract, source, settings, rules, settings.columns)
    target = store.table_dir(contract.table) / rewritten_name(batch.batch_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    rows_out = fill(
        "SELECT t.__file AS _source_file, CAST(t.__row AS BIGINT) AS _row_number "
        "FROM (__typed__) t ANTI JOIN (SELECT __file, __row FROM __flagged "
        "WHERE len(__reasons) > 0 OR __existing) f ON f.__file = t.__file AND f.__row = t.__row",
        typed=v.typed,
    )
    assert isinstance(rows_out, exp.Select)
    rows_out.set("expressions", [*v.typed_columns, *rows_out.expressions])
    lake.execute(
        fill(
            "COPY (SELECT __rows__) TO '__target__' (FORMAT parquet)",
            rows=rows_out,
            target=str(target),
        )
    )
    counted = fill("SELECT count(*) FROM read_parquet(__target__)", target=str(target))
    rows = int(lake.fetch_all(counted)[0][0])
    if rows == 0:
        store.discard([target])
        return None
    seal(target)
    return RawFile(target, None, rows, copied=False)


def _commit(
    lake: LakeProcessor,
    store: RawStore,
    contract: Contract,
    source: Source,
    settings: TableIngestConfig,
    rules: Rules,
    plan: Plan,
    batch: BatchResult,
    counts: _Counts,
    written: list[RawFile],
    stamp: datetime,
    replay: bool,
) -> int:
    """Record the batch (inside the caller's transaction); returns the rows held back."""
    if replay:
        if written:
            released = fill(
                "UPDATE raw.quarantine SET released_at = ?, released_batch_id = ? "
                "FROM (SELECT _source_file AS f, _row_number AS r FROM read_parquet(__paths__)) "
                "ok WHERE raw.quarantine.target_table = ? AND raw.quarantine.released_at IS NULL "
                "AND raw.quarantine.superseded_at IS NULL AND raw.quarantine.source_file = ok.f "
                "AND raw.quarantine.row_number = ok.r",
                paths=text_list(str(f.path) for f in written),
            )
            lake.execute(released, [stamp, batch.batch_id, contract.table])
        if counts.bad:
            _new_reasons(lake, contract, batch, stamp)
        held = counts.read - sum(f.rows for f in written) - counts.duplicate
    else:
        if counts.bad:
            # The original values, read again only from the files that hold such rows.
            bad_files = [
                r[0]
                for r in lake.fetch_all(
                    "SELECT DISTINCT __file FROM __flagged WHERE len(__reasons) > 0"
                )
            ]
            quoted = plan.subset(bad_files) if plan.subset else source
            v = validation(contract, quoted, settings, rules, settings.columns)
            held_rows = fill(
                "INSERT INTO raw.quarantine (batch_id, source_file, row_number, target_table, "
                "raw_values, reasons, ingested_at, productlens_version) "
                "SELECT __batch__, f.__file, f.__row, ?, __raw_json__, "
                "f.__reasons, ?, ? FROM (__typed__) t JOIN __flagged f "
                "ON f.__file = t.__file AND f.__row = t.__row WHERE len(f.__reasons) > 0",
                batch=batch.batch_id, raw_json=raw_json(quoted), typed=v.typed,
            )  # fmt: skip
            lake.execute(held_rows, [contract.table, stamp, __version__])
        held = counts.bad
    if counts.warned:
        lake.execute(
            "INSERT INTO ops.warned_rows SELECT ?, ?, __file, __row, __warnings, ? FROM __flagged "
            "WHERE len(__reasons) = 0 AND len(__warnings) > 0 AND NOT __existing",
            [batch.batch_id, contract.table, stamp],
        )
    store.register(contract.table, batch.batch_id, written, stamp)
    if written:
        store.refresh_view(contract.table)
    if plan.registry:
        files = pa.table(
            {
                "checksum": [c for c, _ in plan.registry],
                "source_file": [p for _, p in plan.registry],
                "target_table": [contract.table] * len(plan.registry),
                "batch_id": [batch.batch_id] * len(plan.registry),
                "ingested_at": pa.array([stamp] * len(plan.registry), pa.timestamp("us")),
            }
        )
        lake.load_arrow("ops.ingested_files", files)
    return held


def _new_reasons(
    lake: LakeProcessor, contract: Contract, batch: BatchResult, stamp: datetime
) -> None:
    """Give replayed rows that still fail, for other reasons now, their new reasons; the
    reasons they had are kept in `reason_history`, with when and by which replay."""
    lake.execute(
        "UPDATE raw.quarantine SET reasons = f.__reasons, reason_history = list_append("
        "raw.quarantine.reason_history, struct_pack(reasons := raw.quarantine.reasons, "
        "replaced_at := CAST(? AS TIMESTAMP), replaced_batch_id := ?)) FROM __flagged f "
        "WHERE raw.quarantine.target_table = ? AND raw.quarantine.released_at IS NULL "
        "AND raw.quarantine.superseded_at IS NULL AND raw.quarantine.source_file = f.__file "
        "AND raw.quarantine.row_number = f.__row AND len(f.__reasons) > 0 "
        "AND raw.quarantine.reasons <> f.__reasons",
        [stamp, batch.batch_id, contract.table],
    )


def _log(
    lake: LakeProcessor,
    batch: BatchResult,
    counts: _Counts,
    loaded: int,
    held: int,
    started: datetime,
) -> None:
    lake.execute(
        "INSERT INTO ops.ingest_log (batch_id, target_table, kind, n_files, rows_read, "
        "rows_loaded, rows_quarantined, rows_duplicate, rows_warned, started_at, finished_at, "
        "productlens_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            batch.batch_id,
            batch.table,
            batch.kind,
            len(batch.files),
            counts.read,
            loaded,
            held,
            counts.duplicate,
            counts.warned,
            started,
            datetime.now(UTC).replace(tzinfo=None),
            __version__,
        ],
    )


# DuckDB's words for a source file whose bytes it cannot decode (a corrupt data page).
FAILED_TO_READ = re.compile(r'Failed to read file "(?P<path>[^"]+)"')


def _unreadable_file(message: str, files: Sequence[FilePath]) -> FilePath | None:
    """The batch's file that DuckDB's error says it failed to read, if it names one."""
    named = FAILED_TO_READ.search(message)
    if named is None:
        return None
    return next((f for f in files if str(f.resolve()) == named.group("path")), None)


def files_text(files: Sequence[FilePath]) -> str:
    """One file, or the first and how many more, for messages."""
    return str(files[0]) if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more)"
