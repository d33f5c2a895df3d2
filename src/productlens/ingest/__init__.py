"""Loading files into the raw layer: validated in SQL, nothing lost, safe to repeat.

One run makes one batch per table (per file format): all new files of that table are
validated together, set-based: the rows that pass join `raw.<table>` (Parquet files owned
by the warehouse, see `store`), the rows that do not go to `raw.quarantine` with their
original values and reasons, and the batch is logged in `ops.ingest_log`. Rows read =
rows loaded + rows quarantined + exact copies of rows already loaded, or the batch fails.

One command is one unit: every file is read and described before anything is written,
then all batches run inside one transaction (later tables see the rows of earlier ones,
for their reference checks) and commit together; on any failure nothing is committed
and every raw file written is removed. A file whose checksum was loaded before is
skipped, so loading twice changes nothing, unless it is forced (`force=True`): then it
replaces the rows its earlier loads gave (see `store.RawStore.supersede`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from sqlglot import exp

from productlens import __version__
from productlens.config import IngestConfig, TableIngestConfig
from productlens.errors import EngineError, IngestError, UnreadableFile
from productlens.ingest import presets
from productlens.ingest.batch import BatchResult, Plan, files_text, run_batch
from productlens.ingest.contracts import CONTRACTS, LOAD_ORDER, Contract
from productlens.ingest.held import STILL_HELD
from productlens.ingest.mapping import Resolution, fold, json_path, resolve
from productlens.ingest.processor import LakeProcessor
from productlens.ingest.readers import (
    Reading,
    base_name,
    check_names,
    expand,
    file_kind,
    parquet_source,
    read_files,
    sweep_copies,
)
from productlens.ingest.sql import aliased, as_from, col, fill, query, string
from productlens.ingest.sql import table as sql_table
from productlens.ingest.store import RawStore
from productlens.ingest.validate import Source
from productlens.objects import FilePath

__all__ = [
    "CONTRACTS",
    "BatchResult",
    "IngestResult",
    "Rejection",
    "Screening",
    "ensure_raw_tables",
    "expand",
    "ingest_paths",
]

QUARANTINE_DDL = """
CREATE TABLE IF NOT EXISTS raw.quarantine (
    batch_id VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,
    row_number BIGINT NOT NULL,
    target_table VARCHAR NOT NULL,
    raw_values VARCHAR NOT NULL,
    reasons VARCHAR[] NOT NULL,
    ingested_at TIMESTAMP NOT NULL,
    productlens_version VARCHAR NOT NULL,
    released_at TIMESTAMP,
    released_batch_id VARCHAR
)
"""
# Added after the first release; ALTERed into older warehouses. A replay that finds a row
# failing for other reasons replaces `reasons` and keeps the earlier ones in
# `reason_history`; a forced load marks the rows of the loads it replaces superseded.
QUARANTINE_COLUMNS = (
    "ALTER TABLE raw.quarantine ADD COLUMN IF NOT EXISTS superseded_at TIMESTAMP",
    "ALTER TABLE raw.quarantine ADD COLUMN IF NOT EXISTS superseded_batch_id VARCHAR",
    # The empty list cast from text: with `DEFAULT []` (a function call) DuckDB 2.0 could
    # not replay its write-ahead log after a crash (it tried to install core_functions).
    "ALTER TABLE raw.quarantine ADD COLUMN IF NOT EXISTS reason_history "
    "STRUCT(reasons VARCHAR[], replaced_at TIMESTAMP, replaced_batch_id VARCHAR)[] "
    "DEFAULT CAST('[]' AS STRUCT(reasons VARCHAR[], replaced_at TIMESTAMP, "
    "replaced_batch_id VARCHAR)[])",
)
# Rows loaded with warnings (say, an unknown user in `warn` mode): where they came from.
WARNED_DDL = """
CREATE TABLE IF NOT EXISTS ops.warned_rows (
    batch_id VARCHAR NOT NULL,
    target_table VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,
    row_number BIGINT NOT NULL,
    warnings VARCHAR[] NOT NULL,
    ingested_at TIMESTAMP NOT NULL
)
"""
INGEST_LOG_DDL = """
CREATE TABLE IF NOT EXISTS ops.ingest_log (
    batch_id VARCHAR NOT NULL,
    target_table VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    n_files BIGINT NOT NULL,
    rows_read BIGINT NOT NULL,
    rows_loaded BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    rows_duplicate BIGINT NOT NULL,
    rows_warned BIGINT NOT NULL,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NOT NULL,
    productlens_version VARCHAR NOT NULL,
    rows_filtered BIGINT NOT NULL DEFAULT 0  -- left out by the table's `where`, not read
)
"""
# Warehouses made before rows_filtered existed get the column (0: they had no `where`).
INGEST_LOG_UPGRADE = (
    "ALTER TABLE ops.ingest_log ADD COLUMN IF NOT EXISTS rows_filtered BIGINT DEFAULT 0"
)
FILES_DDL = """
CREATE TABLE IF NOT EXISTS ops.ingested_files (
    checksum VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,
    target_table VARCHAR NOT NULL,
    batch_id VARCHAR NOT NULL,
    ingested_at TIMESTAMP NOT NULL
)
"""


WHERE_COLUMN = "__where"  # the row filter's value, when its type is asked


@dataclass(frozen=True)
class Rejection:
    """A file that could not be read, left out of the load (`Screening`): what it is, and
    why. `fingerprint` names the settings it was read with (`settings_fingerprint`)."""

    path: FilePath
    table: str
    checksum: str
    size: int
    reason: str
    fingerprint: str


@dataclass(frozen=True)
class Screening:
    """How a landing run treats files it cannot read: each is rejected (left out and
    reported in `IngestResult.rejected`) instead of failing the load, and a file rejected
    before, with the same bytes and the same settings (`(checksum, fingerprint)` in
    `rejected_before`), is not read again (`IngestResult.held_back`)."""

    rejected_before: frozenset[tuple[str, str]] = frozenset()


@dataclass
class IngestResult:
    """Everything one ingest run did."""

    batches: list[BatchResult] = field(default_factory=list)
    skipped_files: list[FilePath] = field(default_factory=list)
    ignored_files: list[FilePath] = field(default_factory=list)  # files of other types in folders
    rejected: list[Rejection] = field(default_factory=list)  # unreadable, left out (Screening)
    held_back: list[FilePath] = field(default_factory=list)  # rejected before, not read again

    @property
    def rows(self) -> dict[str, int]:
        loaded: dict[str, int] = {}
        for b in self.batches:
            if b.rows_loaded:
                loaded[b.table] = loaded.get(b.table, 0) + b.rows_loaded
        return loaded

    @property
    def loaded_files(self) -> list[FilePath]:
        return [f for b in self.batches for f in b.files]

    @property
    def total_rows(self) -> int:
        return sum(b.rows_loaded for b in self.batches)

    @property
    def quarantined(self) -> int:
        return sum(b.rows_quarantined for b in self.batches)


def ensure_raw_tables(lake: LakeProcessor) -> RawStore:
    """Create the raw layer (a view per contract table), the quarantine and the logs,
    if missing; returns the raw layer's file store."""
    lake.execute("CREATE SCHEMA IF NOT EXISTS raw")
    lake.execute("CREATE SCHEMA IF NOT EXISTS ops")
    for ddl in (QUARANTINE_DDL, INGEST_LOG_DDL, INGEST_LOG_UPGRADE, FILES_DDL, WARNED_DDL):
        lake.execute(ddl)
    for added in QUARANTINE_COLUMNS:
        lake.execute(added)
    store = RawStore(lake)
    store.ensure()
    return store


def infer_table(path: FilePath, default: str | None = None) -> str:
    """`data/events/event_date=2026-01-05/part-0.parquet`, `data/users/part-0.parquet` or
    `events.csv` -> the table; the nearest folder named after a table wins, else
    `default` (a preset's table: vendor exports are not named after raw tables)."""
    for candidate in (*(p.name for p in path.parents), base_name(path)):
        if candidate in CONTRACTS:
            return candidate
    if default is not None:
        return default
    raise IngestError(
        f"cannot tell which table this file is for; name its folder or file after one of "
        f"{', '.join(CONTRACTS)} or pass --table",
        file=path,
    )


def parse_mappings(pairs: Iterable[str]) -> dict[str, str]:
    """`["customer_id=user_id", ...]` -> {"customer_id": "user_id", ...}."""
    mapping = {}
    for pair in pairs:
        src, eq, dst = pair.partition("=")
        if not eq or not src.strip() or not dst.strip():
            raise IngestError(f"a mapping is SOURCE=TARGET, got {pair!r}")
        mapping[src.strip()] = dst.strip()
    return mapping


def _settings(config: IngestConfig, table: str, extra: Mapping[str, str]) -> TableIngestConfig:
    """A table's settings with this run's `--map` renames onto its columns (a run may load
    several tables; a rename applies to those that have its target)."""
    base = config.tables.get(table, TableIngestConfig())
    names = CONTRACTS[table].column_names
    columns = {**base.columns, **{s: d for s, d in extra.items() if d in names}}
    for target in columns.values():
        if target not in CONTRACTS[table].column_names:
            raise IngestError(
                f"cannot map onto {target!r}: raw.{table} has the columns "
                f"{', '.join(CONTRACTS[table].column_names)}"
            )
    return base.model_copy(update={"columns": columns})


def ingest_paths(
    lake: LakeProcessor,
    paths: Iterable[FilePath | str],
    *,
    table: str | None = None,
    config: IngestConfig | None = None,
    mapping: Mapping[str, str] | None = None,
    now: datetime | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    preset: str | None = None,
    force: bool = False,
    screening: Screening | None = None,
) -> IngestResult:
    """Load files into their raw tables: one validated batch per table (and format), all
    committed together or none. A `preset` (else `config.preset`) maps another tool's
    export (see `presets`). `force`: load files even if loaded before, replacing the rows
    of their earlier loads (same checksum or same path, same table). `screening`: a file
    that cannot be read is left out and reported instead of stopping the load (see
    `Screening`); without it, such a file fails the whole command, naming it."""
    config = presets.apply(config or IngestConfig(), preset, mapping)
    default = presets.default_table(config.preset) if config.preset else None
    if table is not None and table not in CONTRACTS:
        raise IngestError(f"unknown table {table!r}; the raw tables are {', '.join(CONTRACTS)}")
    for t in config.tables:
        if t not in CONTRACTS:
            raise IngestError(f"[ingest.tables.{t}]: no such raw table")
    store = ensure_raw_tables(lake)
    store.sweep()
    sweep_copies()
    expanded = expand(paths, lake.objects)
    files = expanded.files
    by_table: dict[tuple[str, str], list[FilePath]] = {}
    for path in files:
        kind = file_kind(path)
        assert kind is not None  # expand refuses the rest
        by_table.setdefault((table or infer_table(path, default), kind.format), []).append(path)

    _check_map_targets(mapping or {}, {t for t, _ in by_table} or {table or "events"})
    moment = now or datetime.now(UTC)
    # Hashing releases the GIL: two threads halve the time for many files.
    with ThreadPoolExecutor(max_workers=2) as pool:
        hashed = dict(zip(files, pool.map(_checksum, files), strict=True))
    checksums = {p: digest for p, (digest, _) in hashed.items()}
    sizes = {p: size for p, (_, size) in hashed.items()}
    rejected: list[Rejection] = []
    while True:
        result = IngestResult(ignored_files=expanded.ignored)
        readings: list[Reading] = []
        try:
            jobs = _plan(
                lake,
                by_table,
                _Hashed(checksums, sizes),
                config,
                mapping or {},
                force,
                result,
                readings,
                screening,
            )
            _run_all(lake, store, jobs, config, moment, result, on_batch)
        except UnreadableFile as exc:
            # A file whose footer read but whose data does not fails its batch (all was
            # rolled back): with screening, the command runs again without it.
            found = _group_of(by_table, exc.path) if screening is not None else None
            if found is None:
                raise
            (target, fmt), bad = found
            settings = _settings(config, target, mapping or {})
            fingerprint = settings_fingerprint(target, fmt, settings)
            rejected += result.rejected
            rejected.append(
                Rejection(bad, target, checksums[bad], sizes[bad], str(exc), fingerprint)
            )
            gone = {r.path for r in rejected}
            by_table = {k: [p for p in v if p not in gone] for k, v in by_table.items()}
            continue
        finally:
            for reading in readings:
                reading.close(lake)
        result.rejected = rejected + result.rejected
        return result


def _group_of(
    by_table: Mapping[tuple[str, str], list[FilePath]], path: object
) -> tuple[tuple[str, str], FilePath] | None:
    """The (table, format) group of the command's file `path` names, and the file."""
    for key, group in by_table.items():
        for p in group:
            if path is p or str(path) in (str(p), str(p.resolve())):
                return key, p
    return None


def _check_map_targets(mapping: Mapping[str, str], tables: set[str]) -> None:
    """Every `--map` target is a column of a table this run loads."""
    for src, dst in mapping.items():
        if not any(dst in CONTRACTS[t].column_names for t in tables):
            listed = "; ".join(
                f"raw.{t}: {', '.join(CONTRACTS[t].column_names)}" for t in sorted(tables)
            )
            raise IngestError(f"cannot map onto {dst!r} (--map {src}={dst}): {listed}")


def _check_map_sources(
    mapping: Mapping[str, str], contract: Contract, reading: Reading, files: list[FilePath]
) -> None:
    """A `--map` source the files lack is a typo, not a rename to skip in silence."""
    columns = reading.source.columns
    for src, dst in mapping.items():
        if dst in contract.column_names and src not in columns:
            raise IngestError(
                f"--map {src}={dst}: no column {src!r} in the file (it has "
                f"{', '.join(_printable(c) for c in columns) or 'no columns'})",
                file=files_text(files),
            )


@dataclass(frozen=True)
class _Job:
    """One batch to run: a table's new files of one format, read and described."""

    contract: Contract
    kind: str  # "files" or "replay"
    files: list[FilePath]
    source: Source
    settings: TableIngestConfig
    plan: Plan
    # (batch, source file) of the earlier loads a forced load replaces
    replaces: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the user should know, in words
    total: int | None = None  # rows before the table's `where`, when it has one
    # the reader's relation and the mapping, to name a failing expression (see _blame)
    reader_relation: exp.Expr | None = None
    resolution: Resolution | None = None


@dataclass(frozen=True)
class _Hashed:
    """The files of one command: each one's checksum (SHA-256) and size in bytes."""

    checksums: Mapping[FilePath, str]
    sizes: Mapping[FilePath, int]


def settings_fingerprint(table: str, fmt: str, settings: TableIngestConfig) -> str:
    """A short digest of what decides how a file is read into `table`: its format, the
    table's settings (mapping, encoding, delimiter, formats...) and the productlens
    version. A rejected file is read again when any of them changes."""
    described = {
        "table": table,
        "format": fmt,
        "settings": settings.model_dump(mode="json"),
        "version": __version__,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def _plan(
    lake: LakeProcessor,
    by_table: Mapping[tuple[str, str], list[FilePath]],
    hashed: _Hashed,
    config: IngestConfig,
    mapping: Mapping[str, str],
    force: bool,
    result: IngestResult,
    readings: list[Reading],
    screening: Screening | None = None,
) -> list[_Job]:
    """The batches of one command in load order, every new file read (text) or inspected
    (Parquet) and described before anything is written, so a file that cannot be read is
    named before any commit (or, with `screening`, left out and recorded in `result`).
    Files loaded before are skipped (recorded in `result`) unless forced. Each reading is
    added to `readings`, for the caller to close."""
    checksums = hashed.checksums
    loaded = _loaded_checksums(lake)
    jobs = []
    for name in LOAD_ORDER:
        for (target, fmt), group in sorted(by_table.items()):
            if target != name:
                continue
            settings = _settings(config, target, mapping)
            seen = loaded.setdefault(target, set())
            new = list(group) if force else [p for p in group if checksums[p] not in seen]
            result.skipped_files += [p for p in group if p not in new]
            contract = CONTRACTS[target]
            if screening is not None:
                fingerprint = settings_fingerprint(target, fmt, settings)
                held = [p for p in new if (checksums[p], fingerprint) in screening.rejected_before]
                result.held_back += held
                screened = _read_screened(
                    lake, [p for p in new if p not in held], fmt, settings, contract, hashed,
                    fingerprint,
                )  # fmt: skip
                result.rejected += screened.rejected
                new, reading = screened.files, screened.reading
            else:
                reading = read_files(lake, new, fmt, settings, contract) if new else None
            # Only files read count as loaded for the groups after (a rejected empty CSV
            # has the checksum of an empty Parquet file).
            seen.update(checksums[p] for p in new)
            if reading is None:
                continue
            readings.append(reading)
            _check_map_sources(mapping, contract, reading, new)
            job = _prepare(lake, contract, new, reading, checksums, settings)
            if force:
                job = replace(job, replaces=_earlier_loads(lake, target, job.plan.registry))
            jobs.append(job)
    return jobs


@dataclass
class _Screened:
    """The files of one group that could be read (and their reading), and the rest."""

    files: list[FilePath]
    reading: Reading | None  # None: no file left to read
    rejected: list[Rejection]


def _read_screened(
    lake: LakeProcessor,
    files: list[FilePath],
    fmt: str,
    settings: TableIngestConfig,
    contract: Contract,
    hashed: _Hashed,
    fingerprint: str,
) -> _Screened:
    """`read_files`, leaving out each file that cannot be read: the readers stop at the
    first such file, so the group is read again without it until it reads (a bad file is
    rare; the files read before it are read once more per bad file)."""
    rejected: list[Rejection] = []
    remaining = list(files)
    by_name = {str(p.resolve()): p for p in files} | {str(p): p for p in files}
    while remaining:
        try:
            reading = read_files(lake, remaining, fmt, settings, contract)
        except UnreadableFile as exc:
            bad = by_name.get(str(exc.path))
            if bad is None or bad not in remaining:
                raise  # not one of these files: no file to leave out
            remaining.remove(bad)
            rejected.append(
                Rejection(
                    bad,
                    contract.table,
                    hashed.checksums[bad],
                    hashed.sizes[bad],
                    str(exc),  # names the file, as `productlens ingest` would
                    fingerprint,
                )
            )
            continue
        return _Screened(remaining, reading, rejected)
    return _Screened([], None, rejected)


def _run_all(
    lake: LakeProcessor,
    store: RawStore,
    jobs: list[_Job],
    config: IngestConfig,
    now: datetime,
    result: IngestResult,
    on_batch: Callable[[BatchResult], None] | None,
) -> None:
    """Run the batches in one transaction: all commit, or none and their files go."""
    if not jobs:
        return
    stamp = now.astimezone(UTC).replace(tzinfo=None)
    written: list[FilePath] = []
    failed: list[_Job] = []  # the batch running when an error struck
    try:
        with lake.transaction():
            for job in jobs:
                failed[:] = [job]
                batch = BatchResult(uuid.uuid4().hex[:16], job.contract.table, job.kind, job.files)
                keys = _keep_keys(lake, job)
                _supersede(store, job, batch, stamp)
                batch.notes += job.notes
                run_batch(
                    lake,
                    store,
                    job.contract,
                    job.source,
                    job.settings,
                    config,
                    now,
                    batch,
                    job.plan,
                    replay=job.kind == "replay",
                )
                batch.notes += _orphaned(lake, job.contract.table, keys)
                if job.total is not None:  # rows the filter left out are counted, not lost
                    batch.rows_filtered = job.total - batch.rows_read
                    lake.execute(
                        "UPDATE ops.ingest_log SET rows_filtered = ? WHERE batch_id = ?",
                        [batch.rows_filtered, batch.batch_id],
                    )
                written += batch.written
                result.batches.append(batch)
                if on_batch:
                    on_batch(batch)
            failed.clear()
    except IngestError:
        store.discard(written)
        if failed:  # after the rollback: name the setting that fails, if one does
            _blame(lake, failed[0])
        raise
    except BaseException:
        store.discard(written)
        raise


def _supersede(store: RawStore, job: _Job, batch: BatchResult, stamp: datetime) -> None:
    """Take the rows of the loads a forced batch replaces out of the raw layer first."""
    table = job.contract.table
    try:
        pairs, rows, held = store.supersede(table, job.replaces, batch.batch_id, stamp)
    except EngineError as exc:
        raise IngestError(
            f"cannot replace the earlier rows of raw.{table}: {exc.message}; nothing was loaded",
            file=files_text(job.files),
        ) from None
    if pairs:
        batch.notes.append(
            f"replaces {pairs} earlier load(s) of these files: {rows} rows left raw.{table}, "
            f"{held} quarantined rows marked superseded (see ops.superseded_files)"
        )


def _referencing(table: str) -> dict[str, list[tuple[str, str]]]:
    """The key columns of `table` that other tables reference -> (table, column) of each
    reference."""
    found: dict[str, list[tuple[str, str]]] = {}
    for other, contract in CONTRACTS.items():
        for c in contract.columns:
            if c.references and c.references.split(".", 1)[0] == table:
                found.setdefault(c.references.split(".", 1)[1], []).append((other, c.name))
    return found


def _keep_keys(lake: LakeProcessor, job: _Job) -> dict[str, str]:
    """Before a forced load replaces rows of a table others reference: the referenced keys
    it holds, in a temporary table per key column (column -> temporary table)."""
    if not job.replaces:
        return {}
    kept = {}
    for column in _referencing(job.contract.table):
        name = f"__keys_before_{column}"
        lake.execute(
            fill(
                "CREATE OR REPLACE TEMP TABLE __kept__ AS SELECT DISTINCT __column__ AS k "
                "FROM __table__ WHERE __column__ IS NOT NULL",
                kept=sql_table(name),
                column=col(column),
                table=sql_table(job.contract.table, "raw"),
            )
        )
        kept[column] = name
    return kept


def _orphaned(lake: LakeProcessor, table: str, kept: Mapping[str, str]) -> list[str]:
    """After a forced load: the rows of other tables that reference a key the load took
    out of raw.<table>. They passed their reference check when they were loaded and raw
    files are never edited, so they stay; the user is told how many, and where."""
    notes = []
    for column, name in kept.items():
        gone = query(
            "SELECT k FROM __kept__ EXCEPT SELECT __column__ FROM __table__",
            kept=sql_table(name),
            column=col(column),
            table=sql_table(table, "raw"),
        )
        if lake.fetch_all(fill("SELECT count(*) FROM __gone__", gone=gone.subquery()))[0][0]:
            for other, ref in _referencing(table)[column]:
                counted = fill(
                    "SELECT count(*) FROM __other__ WHERE __gone__",
                    other=sql_table(other, "raw"),
                    gone=col(ref).isin(query=gone.copy()),
                )
                n = int(lake.fetch_all(counted)[0][0])
                if n:
                    notes.append(
                        f"{n} rows of raw.{other} reference {table} no longer in raw.{table} "
                        f"(by {ref}; they passed their reference check when loaded): load "
                        f"them again with --force, or see `productlens check`"
                    )
        lake.execute(fill("DROP TABLE IF EXISTS __kept__", kept=sql_table(name)))
    return notes


def _checksum(path: FilePath) -> tuple[str, int]:
    """A file's SHA-256 and its size in bytes."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise IngestError(f"cannot read the file: {exc.strerror}", file=path) from None
    return digest.hexdigest(), size


def _loaded_checksums(lake: LakeProcessor) -> dict[str, set[str]]:
    """Per table, the checksums of the files loaded into it."""
    loaded: dict[str, set[str]] = {}
    for table, checksum in lake.fetch_all(
        "SELECT DISTINCT target_table, checksum FROM ops.ingested_files"
    ):
        loaded.setdefault(table, set()).add(checksum)
    return loaded


def _earlier_loads(
    lake: LakeProcessor, table: str, registry: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """(batch, source file) of the loads into `table`, not yet replaced, of a file with
    one of these (checksum, path)s: the same bytes under any name, or the same path."""
    rows = lake.fetch_all(
        "SELECT DISTINCT i.batch_id, i.source_file FROM ops.ingested_files i "
        "WHERE i.target_table = ? AND (list_contains(?, i.checksum) "
        "OR list_contains(?, i.source_file)) AND NOT EXISTS (SELECT 1 FROM "
        "ops.superseded_files s WHERE s.target_table = i.target_table "
        "AND s.batch_id = i.batch_id AND s.source_file = i.source_file) ORDER BY 1, 2",
        [table, [c for c, _ in registry], [p for _, p in registry]],
    )
    return [(r[0], r[1]) for r in rows]


def _prepare(
    lake: LakeProcessor,
    contract: Contract,
    files: list[FilePath],
    reading: Reading,
    checksums: Mapping[FilePath, str],
    settings: TableIngestConfig,
) -> _Job:
    """Map one batch's read files onto the contract: its source of rows, and its plan."""
    names = {p: str(p.resolve()) for p in files}  # how the readers name each file
    footers = reading.footers
    columns = dict(reading.source.columns)
    relation = reading.source.relation
    check_names(list(columns), files)  # Parquet columns too (text readers check their own)
    resolution = _resolve(
        lake, contract, relation, columns, settings, files, reading.source.json_column
    )
    chosen = resolution.values
    missing = [c.name for c in contract.columns if c.required and c.name not in chosen]
    if missing:
        unused = resolution.unmapped
        hint = f"; the files have {', '.join(_printable(c) for c in unused)}" if unused else ""
        raise IngestError(
            f"required columns missing for raw.{contract.table}: {', '.join(missing)}{hint} "
            "(map them with --map SOURCE=TARGET or [ingest.tables."
            f"{contract.table}].columns in productlens.toml)",
            file=files_text(files),
        )
    source = _source(reading.source, resolution)
    # A file is copied as it is only if reading it needs no mapping, parsing or casting.
    as_is = (
        not settings.timestamp_format
        and not settings.formats
        and settings.timezone == "UTC"
        and resolution.where is None
        and not resolution.unmapped
        and all(m.column == dst for dst, m in chosen.items())
    )
    total = None
    if resolution.where is not None:  # rows the filter leaves out are counted, not lost
        total = int(lake.fetch_all(fill("SELECT count(*) FROM __r__", r=relation))[0][0])
    plan = Plan(
        read=sum(f.rows for f in footers) if footers and total is None else None,
        copyable={names[f.path]: f.rows for f in footers if as_is and f.exact},
        names=list(names.values()),
        subset=(lambda subset: _source(parquet_source(subset, columns), resolution))
        if footers
        else None,
        registry=[(checksums[p], names[p]) for p in files],
    )
    notes = _notes(contract, resolution)
    return _Job(
        contract,
        "files",
        files,
        source,
        settings,
        plan,
        notes=notes,
        total=total,
        reader_relation=relation,
        resolution=resolution,
    )


def _source(source: Source, resolution: Resolution) -> Source:
    """A reader's source of rows with the mapping, filtered by the table's `where` (a line
    that could not be read stays, to be quarantined)."""
    relation = source.relation
    if resolution.where is not None:
        keep = fill("(__where__) IS TRUE", where=resolution.where)
        if source.malformed:
            bad = fill("__bad__ IS NOT NULL", bad=col(source.malformed, "src"))
            keep = exp.Or(this=keep, expression=bad)
        kept = query("SELECT * FROM __r__ src WHERE __keep__", r=relation, keep=keep)
        relation = kept.subquery()
    return replace(source, relation=relation, values=resolution.values)


def _resolve(
    lake: LakeProcessor,
    contract: Contract,
    relation: exp.Expr,
    columns: Mapping[str, str],
    settings: TableIngestConfig,
    files: list[FilePath],
    json_column: str | None = None,
) -> Resolution:
    """Where each contract column comes from, with every expression's type (asked of the
    lake, which also checks that the expression runs on these files); columns nothing
    maps are folded into `properties` where the table has one and it is not mapped."""
    resolution = resolve(
        contract.column_names,
        columns,
        settings.columns,
        settings.expressions,
        settings.where,
        contract.table,
        optional=frozenset(settings.optional_columns),
    )
    values = dict(resolution.values)
    if resolution.unmapped and "properties" in contract.column_names and "properties" not in values:
        values["properties"] = fold(resolution.unmapped, columns, json_column)
        resolution = replace(resolution, folded=tuple(resolution.unmapped))
    typed_later = {k: m for k, m in values.items() if not m.type}
    # The filter is typed with the expressions (one DESCRIBE): it must be a condition.
    # `where = "1"` or a text column would otherwise be cast to a boolean and keep or
    # drop rows by DuckDB's casting rules.
    asked = [aliased(m.sql, k) for k, m in typed_later.items()]
    if resolution.where is not None:
        asked.append(aliased(resolution.where, WHERE_COLUMN))
    if asked:
        query = exp.select(*asked).from_(as_from(relation, "src"), copy=False)
        try:
            described = lake.fetch_all(fill("DESCRIBE __q__", q=query))
        except EngineError as exc:
            exprs = [f"{k} = {m.expression!r}" for k, m in typed_later.items()]
            if settings.where is not None:
                exprs.append(f"where = {settings.where!r}")
            raise IngestError(
                f"[ingest.tables.{contract.table}] expressions do not run on these files "
                f"({exc.message}): {'; '.join(exprs)}",
                file=files_text(files),
            ) from None
        for name, kind, *_ in described:
            if name == WHERE_COLUMN:
                if kind != "BOOLEAN":
                    raise IngestError(
                        f"[ingest.tables.{contract.table}] where: a condition (true or false "
                        f"for each row) expected, got {kind}: {settings.where!r}",
                        file=files_text(files),
                    )
                continue
            values[name] = replace(values[name], type=kind)
    return replace(resolution, values=values)


def _blame(lake: LakeProcessor, job: _Job) -> None:
    """After a failed batch (and its rollback), raise an error naming the configured
    expression (or row filter) that fails on these files, if one does: an expression can
    fail on a value (a text that is not JSON, a cast), not only on its types. Each is
    tried alone, once the files themselves read."""
    if job.reader_relation is None or job.resolution is None:
        return
    relation, resolution, table = job.reader_relation, job.resolution, job.contract.table
    try:
        lake.fetch_all(fill("SELECT count(*) FROM __r__ src", r=relation))
    except EngineError:
        return  # the files fail on their own: the batch's error says so
    tried = [
        (
            f"[ingest.tables.{table}.expressions] {name}",
            m.expression,
            fill("count(__v__)", v=m.sql),
        )
        for name, m in resolution.values.items()
        if m.expression is not None
    ]
    if job.settings.where is not None:
        tried.insert(0, (f"[ingest.tables.{table}] where", job.settings.where, fill("count(*)")))
    for what, text, count in tried:
        counted = exp.select(count).from_(as_from(relation, "src"), copy=False)
        if resolution.where:
            counted = counted.where(resolution.where.copy(), copy=False)
        try:
            lake.fetch_all(counted)
        except EngineError as exc:
            raise IngestError(
                f"{what}: fails on these files ({exc.message}): {text!r}; nothing was written",
                file=files_text(job.files),
            ) from None


def _notes(contract: Contract, resolution: Resolution) -> list[str]:
    """What a user should know about columns the contract does not name."""
    if not resolution.unmapped:
        return []
    names = ", ".join(_printable(c) for c in resolution.unmapped)
    if resolution.folded:
        return [f"columns not in the contract kept as keys of properties: {names}"]
    return [
        f"columns not in the contract and not mapped, not loaded into raw.{contract.table}: "
        f"{names} (map them with expressions in [ingest.tables.{contract.table}])"
    ]


def _printable(name: str) -> str:
    """A column name as it can be shown on one line (control characters escaped)."""
    return name.encode("unicode_escape").decode("ascii") if not name.isprintable() else name


def replay(
    lake: LakeProcessor,
    *,
    config: IngestConfig | None = None,
    mapping: Mapping[str, str] | None = None,
    table: str | None = None,
    now: datetime | None = None,
    preset: str | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
) -> IngestResult:
    """Re-try quarantined rows with the current settings, all tables in one transaction;
    rows that now pass are loaded and leave the quarantine (they are marked released,
    with the batch that loaded them); rows that now fail for other reasons get those
    reasons (the earlier ones kept in `reason_history`)."""
    config = presets.apply(config or IngestConfig(), preset, mapping)
    store = ensure_raw_tables(lake)
    store.sweep()
    sweep_copies()
    result = IngestResult()
    waiting = {
        r[0]
        for r in lake.fetch_all(
            fill("SELECT DISTINCT target_table FROM raw.quarantine WHERE __held__", held=STILL_HELD)
        )
    }
    jobs = []
    for name in LOAD_ORDER:
        if name not in waiting or (table and name != table):
            continue
        keys = [
            r[0]
            for r in lake.fetch_all(
                fill(
                    "SELECT DISTINCT unnest(json_keys(raw_values)) AS k FROM raw.quarantine "
                    "WHERE target_table = ? AND __held__ AND json_type(raw_values) = 'OBJECT' "
                    "ORDER BY k",
                    held=STILL_HELD,
                ),
                [name],
            )
        ]
        # Anonymous, not parsed: SQLGlot would rewrite the JSON path's text.
        extract = [
            aliased(
                exp.Anonymous(
                    this="json_extract_string",
                    expressions=[exp.column("raw_values", "q"), string(json_path([k]))],
                ),
                k,
            )
            for k in keys
        ]
        held = fill(
            "SELECT q.source_file AS __qfile, q.row_number AS __qrow, q.raw_values AS __qraw, "
            # a malformed line is held as its text (a JSON string), and stays malformed
            "CASE WHEN json_type(q.raw_values) = 'VARCHAR' THEN q.raw_values ->> '$' END "
            "AS __qbad FROM raw.quarantine q WHERE q.target_table = __name__ AND "
            "released_at IS NULL AND superseded_at IS NULL",
            name=name,
        )
        assert isinstance(held, exp.Select)
        source = Source(
            held.select(*extract, copy=False).subquery(),
            dict.fromkeys(keys, "VARCHAR"),
            exp.column("__qfile", "src"),
            exp.column("__qrow", "src"),
            "__qraw",
            malformed="__qbad",
        )
        settings = _settings(config, name, mapping or {})
        jobs.append(_Job(CONTRACTS[name], "replay", [], source, settings, Plan()))
    _run_all(lake, store, jobs, config, now or datetime.now(UTC), result, on_batch)
    return result
