"""Loading files into the raw layer: validated in SQL, nothing lost, safe to repeat.

One run makes one batch per table (per file format): all new files of that table are
validated together, in one set-based query, and written in one transaction: the rows
that pass go to `raw.<table>`, the rows that do not go to `raw.quarantine` with their
original values and reasons, and the batch is logged in `ops.ingest_log`. Rows read =
rows loaded + rows quarantined + exact copies of rows already loaded, or the batch fails.
A file whose checksum was loaded before is skipped, so loading twice changes nothing.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from productlens import __version__
from productlens.config import IngestConfig, TableIngestConfig
from productlens.engines import Engine
from productlens.errors import EngineError, IngestError
from productlens.ingest.contracts import CONTRACTS, LINEAGE_COLUMNS, LOAD_ORDER, Contract
from productlens.ingest.validate import (
    Rules,
    Source,
    ident,
    literal,
    raw_json,
    resolve_mapping,
    validation,
)

__all__ = ["CONTRACTS", "BatchResult", "IngestResult", "ensure_raw_tables", "ingest_paths"]

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
    productlens_version VARCHAR NOT NULL
)
"""
FILES_DDL = """
CREATE TABLE IF NOT EXISTS ops.ingested_files (
    checksum VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,
    target_table VARCHAR NOT NULL,
    batch_id VARCHAR NOT NULL,
    ingested_at TIMESTAMP NOT NULL
)
"""

SUFFIXES = (".parquet", ".csv", ".jsonl", ".ndjson")
PARQUET_READER = (
    "read_parquet({paths}, filename = true, file_row_number = true, "
    "union_by_name = true, hive_partitioning = false)"
)
# A CSV line with more fields than its header keeps the surplus in these columns (and is
# quarantined as malformed) instead of losing it.
CSV_OVERFLOW = tuple(f"__extra_{i}" for i in range(1, 9))
ROW_NUMBER = {
    ".parquet": "src.file_row_number + 1",
    ".csv": "src.__line",  # the data row, not counting the header
    ".jsonl": "src.__line",
    ".ndjson": "src.__line",
}
READER_COLUMNS = ("filename", "file_row_number", "__line")


@dataclass
class BatchResult:
    """What one batch did."""

    batch_id: str
    table: str
    kind: str  # "files" or "replay"
    files: list[Path] = field(default_factory=list)
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    rows_warned: int = 0


@dataclass
class IngestResult:
    """Everything one ingest run did."""

    batches: list[BatchResult] = field(default_factory=list)
    skipped_files: list[Path] = field(default_factory=list)

    @property
    def rows(self) -> dict[str, int]:
        loaded: dict[str, int] = {}
        for b in self.batches:
            if b.rows_loaded:
                loaded[b.table] = loaded.get(b.table, 0) + b.rows_loaded
        return loaded

    @property
    def loaded_files(self) -> list[Path]:
        return [f for b in self.batches for f in b.files]

    @property
    def total_rows(self) -> int:
        return sum(b.rows_loaded for b in self.batches)

    @property
    def quarantined(self) -> int:
        return sum(b.rows_quarantined for b in self.batches)


def ensure_raw_tables(engine: Engine) -> None:
    """Create every raw table of the contract, the quarantine and the logs, if missing."""
    for contract in CONTRACTS.values():
        engine.execute(contract.ddl())
    for ddl in (QUARANTINE_DDL, INGEST_LOG_DDL, FILES_DDL):
        engine.execute(ddl)


def expand(paths: Iterable[Path | str]) -> list[Path]:
    """Files named directly, found under folders, or matched by globs, in a stable order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            matches = sorted(Path(m) for m in glob.glob(str(raw), recursive=True))
            if not matches:
                raise IngestError("no such file or folder", file=raw)
            found += [m for m in matches if m.is_file()]
    return found


def infer_table(path: Path) -> str:
    """`data/events/event_date=2026-01-05/part-0.parquet`, `data/users/part-0.parquet` or
    `events.csv` -> the table; the nearest folder named after a table wins."""
    for candidate in (*(p.name for p in path.parents), path.stem):
        if candidate in CONTRACTS:
            return candidate
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
    base = config.tables.get(table, TableIngestConfig())
    columns = {**base.columns, **extra}
    for target in columns.values():
        if target not in CONTRACTS[table].column_names:
            raise IngestError(
                f"cannot map onto {target!r}: raw.{table} has the columns "
                f"{', '.join(CONTRACTS[table].column_names)}"
            )
    return base.model_copy(update={"columns": columns})


def ingest_paths(
    engine: Engine,
    paths: Iterable[Path | str],
    *,
    table: str | None = None,
    config: IngestConfig | None = None,
    mapping: Mapping[str, str] | None = None,
    now: datetime | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
) -> IngestResult:
    """Load files into their raw tables: one validated, all-or-nothing batch per table."""
    config = config or IngestConfig()
    if table is not None and table not in CONTRACTS:
        raise IngestError(f"unknown table {table!r}; the raw tables are {', '.join(CONTRACTS)}")
    for t in config.tables:
        if t not in CONTRACTS:
            raise IngestError(f"[ingest.tables.{t}]: no such raw table")
    ensure_raw_tables(engine)
    files = expand(paths)
    for path in files:
        if path.suffix not in SUFFIXES:
            raise IngestError(
                f"unsupported file type {path.suffix!r} (use {', '.join(SUFFIXES)})", file=path
            )
    by_table: dict[tuple[str, str], list[Path]] = {}
    for path in files:
        by_table.setdefault((table or infer_table(path), path.suffix), []).append(path)

    result = IngestResult()
    moment = now or datetime.now(UTC)
    for name in LOAD_ORDER:
        for (target, suffix), group in sorted(by_table.items()):
            if target != name:
                continue
            settings = _settings(config, target, mapping or {})
            checksums = {p: _checksum(p) for p in group}
            seen = _loaded_checksums(engine, target)
            new = [p for p in group if checksums[p] not in seen]
            result.skipped_files += [p for p in group if checksums[p] in seen]
            if not new:
                continue
            batch = _load_files(
                engine, CONTRACTS[target], new, suffix, checksums, settings, config, moment
            )
            result.batches.append(batch)
            if on_batch:
                on_batch(batch)
    return result


def _checksum(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise IngestError(f"cannot read the file: {exc.strerror}", file=path) from None
    return digest.hexdigest()


def _loaded_checksums(engine: Engine, table: str) -> set[str]:
    rows = engine.fetch_all(
        "SELECT checksum FROM ops.ingested_files WHERE target_table = ?", [table]
    )
    return {r[0] for r in rows}


def _describe(engine: Engine, relation: str, files: list[Path]) -> dict[str, str]:
    try:
        rows = engine.fetch_all(f"DESCRIBE SELECT * FROM {relation}")
    except EngineError as exc:
        where = files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more)"
        raise IngestError(f"cannot read the file: {exc.message}", file=where) from None
    return {r[0]: r[1] for r in rows if r[0] not in READER_COLUMNS}


def _load_files(
    engine: Engine,
    contract: Contract,
    files: list[Path],
    suffix: str,
    checksums: Mapping[Path, str],
    settings: TableIngestConfig,
    config: IngestConfig,
    now: datetime,
) -> BatchResult:
    if suffix != ".parquet":
        relation = _text_relation(files, suffix, settings.delimiter)
    else:
        paths = "[" + ", ".join(literal(str(p.resolve())) for p in files) + "]"
        relation = PARQUET_READER.format(paths=paths)
    columns = _describe(engine, relation, files)
    chosen = resolve_mapping(contract, columns, settings.columns)
    missing = [c.name for c in contract.columns if c.required and c.name not in chosen]
    if missing:
        unused = [c for c in columns if c not in chosen.values()]
        hint = f"; the files have {', '.join(_printable(c) for c in unused)}" if unused else ""
        raise IngestError(
            f"required columns missing for raw.{contract.table}: {', '.join(missing)}{hint} "
            "(map them with --map SOURCE=TARGET or [ingest.tables."
            f"{contract.table}].columns in productlens.toml)",
            file=files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more)",
        )
    source = Source(relation, columns, "src.filename", ROW_NUMBER[suffix])
    batch = BatchResult(uuid.uuid4().hex[:16], contract.table, "files", list(files))
    registry = [(checksums[p], str(p.resolve())) for p in files]
    if suffix == ".parquet":
        _run_batch(engine, contract, source, settings, config, now, batch, registry)
        return batch
    # Text rows are numbered in scan order: keep that order through the batch.
    engine.execute("SET preserve_insertion_order = true")
    try:
        _run_batch(engine, contract, source, settings, config, now, batch, registry)
    finally:
        engine.execute("SET preserve_insertion_order = false")
    return batch


def _printable(name: str) -> str:
    """A column name as it can be shown on one line (control characters escaped)."""
    return name.encode("unicode_escape").decode("ascii") if not name.isprintable() else name


def _csv_header(path: Path, delimiter: str) -> tuple[list[str], str]:
    """The header fields of a CSV file (one row, read with the csv module) and its line
    ending, taken from the first line."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh, delimiter=delimiter), [])
        with path.open("rb") as fh:
            first_line = fh.readline()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise IngestError(f"cannot read the CSV header: {exc}", file=path) from None
    names = [h.strip() for h in header]
    if not names or any(not n for n in names) or len(set(names)) != len(names):
        raise IngestError(f"the first line must name every column once, got {header!r}", file=path)
    return names, ("\\r\\n" if first_line.endswith(b"\r\n") else "\\n")


def _text_relation(files: list[Path], suffix: str, delimiter: str) -> str:
    """CSV or JSON Lines files as one relation, each file read and numbered on its own
    (`__line`, the data row in file order): the readers have no row-number column, and
    numbering across files in one window scrambled the order on large files.

    CSV is read with the dialect, line ending and columns stated, never sniffed (the
    sniffer can guess wrong and silently read fewer rows; a guessed line ending split
    quoted fields holding a bare carriage return), serially (what DuckDB needs for
    quoted newlines). JSON Lines schemas are read from every line, so a key first seen
    late is kept.
    """
    parts = []
    for path in files:
        source = literal(str(path.resolve()))
        if suffix == ".csv":
            names, newline = _csv_header(path, delimiter)
            columns = ", ".join(f"{literal(n)}: 'VARCHAR'" for n in (*names, *CSV_OVERFLOW))
            reader = (
                f"read_csv({source}, header = true, auto_detect = false, "
                f"delim = {literal(delimiter)}, quote = '\"', escape = '\"', "
                f"new_line = '{newline}', columns = {{{columns}}}, null_padding = true, "
                "strict_mode = false, parallel = false, filename = true)"
            )
        else:
            reader = (
                f"read_json({source}, format = 'newline_delimited', filename = true, "
                "sample_size = -1)"
            )
        parts.append(f"SELECT *, row_number() OVER () AS __line FROM {reader}")
    return "(" + " UNION ALL BY NAME ".join(parts) + ")"


def _rules(engine: Engine, contract: Contract, config: IngestConfig, now: datetime) -> Rules:
    referenced = {c.references.split(".")[0] for c in contract.columns if c.references}
    present = {
        t: bool(engine.fetch_all(f"SELECT count(*) > 0 FROM raw.{ident(t)}")[0][0])
        for t in referenced
    }
    existing = bool(engine.fetch_all(f"SELECT count(*) > 0 FROM raw.{ident(contract.table)}")[0][0])
    return Rules(now, config.future_tolerance_hours, config.unknown_references, existing, present)


def _run_batch(
    engine: Engine,
    contract: Contract,
    source: Source,
    settings: TableIngestConfig,
    config: IngestConfig,
    now: datetime,
    batch: BatchResult,
    registry: list[tuple[str, str]],
    replay: bool = False,
) -> None:
    """Validate and write one batch in one transaction, checking conservation.

    The checks run once, keeping only the flagged rows (quarantined, warned, or exact
    copies of loaded rows) in a small temporary table; every other row is inserted by an
    anti-join against it, so no check is evaluated twice.
    """
    rules = _rules(engine, contract, config, now)
    v = validation(contract, source, settings, rules, settings.columns)
    stamp = now.astimezone(UTC).replace(tzinfo=None)
    started = datetime.now(UTC).replace(tzinfo=None)
    cols = ", ".join(ident(c.name) for c in contract.columns)
    lineage = ", ".join(name for name, _ in LINEAGE_COLUMNS)
    bid = literal(batch.batch_id)
    table = f"raw.{ident(contract.table)}"
    try:
        with engine.transaction():
            engine.execute(
                f"CREATE OR REPLACE TEMP TABLE __flagged AS WITH {v.ctes} "
                f"SELECT t.__file, t.__row, {raw_json(source)} AS __raw, "
                f"{v.reasons} AS __reasons, {v.warnings} AS __warnings, "
                f"{v.existing} AS __existing {v.from_sql} WHERE {v.flagged}"
            )
            read = engine.fetch_all(f"SELECT count(*) FROM {source.relation}")[0][0]
            bad, duplicate, warned = engine.fetch_all(
                "SELECT count(*) FILTER (WHERE len(__reasons) > 0), "
                "count(*) FILTER (WHERE len(__reasons) = 0 AND __existing), "
                "count(*) FILTER (WHERE len(__reasons) = 0 AND len(__warnings) > 0) "
                "FROM __flagged"
            )[0]
            engine.execute(
                f"INSERT INTO {table} ({cols}, {lineage}) WITH {v.ctes} "
                f"SELECT {', '.join(v.typed_columns)}, {bid}, t.__file, t.__row, ? "
                "FROM typed t ANTI JOIN (SELECT __file, __row FROM __flagged WHERE "
                "len(__reasons) > 0 OR __existing) f ON f.__file = t.__file AND f.__row = t.__row",
                [stamp],
            )
            loaded = engine.fetch_all(
                f"SELECT count(*) FROM {table} WHERE _batch_id = ?", [batch.batch_id]
            )[0][0]
            if replay:
                engine.execute(
                    "UPDATE raw.quarantine SET released_at = ?, released_batch_id = ? "
                    f"FROM (SELECT _source_file AS f, _row_number AS r FROM {table} "
                    "WHERE _batch_id = ?) ok WHERE raw.quarantine.target_table = ? AND "
                    "raw.quarantine.released_at IS NULL AND raw.quarantine.source_file = ok.f "
                    "AND raw.quarantine.row_number = ok.r",
                    [stamp, batch.batch_id, batch.batch_id, contract.table],
                )
                held = read - loaded - duplicate
            else:
                engine.execute(
                    "INSERT INTO raw.quarantine (batch_id, source_file, row_number, target_table, "
                    "raw_values, reasons, ingested_at, productlens_version) "
                    f"SELECT {bid}, __file, __row, ?, __raw, __reasons, ?, ? FROM __flagged "
                    "WHERE len(__reasons) > 0",
                    [contract.table, stamp, __version__],
                )
                held = bad
            if read != loaded + held + duplicate:
                raise IngestError(
                    f"rows read ({read}) != loaded ({loaded}) + quarantined ({held}) + "
                    f"duplicates ({duplicate}); nothing was written",
                    table=contract.table,
                )
            if registry:
                _register(engine, registry, contract.table, batch.batch_id, stamp)
            engine.execute(
                "INSERT INTO ops.ingest_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    batch.batch_id,
                    contract.table,
                    batch.kind,
                    len(batch.files),
                    read,
                    loaded,
                    held,
                    duplicate,
                    warned,
                    started,
                    datetime.now(UTC).replace(tzinfo=None),
                    __version__,
                ],
            )
    except EngineError as exc:
        raise IngestError(
            f"cannot load into raw.{contract.table}: {exc.message}; nothing was written",
            file=_files_text(batch.files) if batch.files else "the quarantine",
        ) from None
    finally:
        engine.execute("DROP TABLE IF EXISTS __flagged")
    batch.rows_read, batch.rows_loaded = int(read), int(loaded)
    batch.rows_quarantined = int(held)
    batch.rows_duplicate, batch.rows_warned = int(duplicate), int(warned)


def _register(
    engine: Engine, registry: list[tuple[str, str]], table: str, batch_id: str, stamp: datetime
) -> None:
    """Record the batch's files by checksum, in one statement."""
    values = ", ".join(
        f"({literal(checksum)}, {literal(path)}, {literal(table)}, {literal(batch_id)}, ?)"
        for checksum, path in registry
    )
    engine.execute(f"INSERT INTO ops.ingested_files VALUES {values}", [stamp] * len(registry))


def _files_text(files: list[Path]) -> str:
    return str(files[0]) if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more)"


def replay(
    engine: Engine,
    *,
    config: IngestConfig | None = None,
    mapping: Mapping[str, str] | None = None,
    table: str | None = None,
    now: datetime | None = None,
) -> IngestResult:
    """Re-try quarantined rows with the current settings; rows that now pass are loaded
    and leave the quarantine (they are marked released, with the batch that loaded them)."""
    config = config or IngestConfig()
    ensure_raw_tables(engine)
    result = IngestResult()
    moment = now or datetime.now(UTC)
    waiting = {
        r[0]
        for r in engine.fetch_all(
            "SELECT DISTINCT target_table FROM raw.quarantine WHERE released_at IS NULL"
        )
    }
    for name in LOAD_ORDER:
        if name not in waiting or (table and name != table):
            continue
        keys = [
            r[0]
            for r in engine.fetch_all(
                "SELECT DISTINCT unnest(json_keys(raw_values)) AS k FROM raw.quarantine "
                "WHERE target_table = ? AND released_at IS NULL ORDER BY k",
                [name],
            )
        ]
        extract = ", ".join(
            f"json_extract_string(q.raw_values, {literal('$.' + _json_path(k))}) AS {ident(k)}"
            for k in keys
        )
        relation = (
            f"(SELECT q.source_file AS __qfile, q.row_number AS __qrow, q.raw_values AS __qraw, "
            f"{extract} FROM raw.quarantine q WHERE q.target_table = {literal(name)} "
            "AND q.released_at IS NULL)"
        )
        source = Source(
            relation, dict.fromkeys(keys, "VARCHAR"), "src.__qfile", "src.__qrow", "__qraw"
        )
        settings = _settings(config, name, mapping or {})
        batch = BatchResult(uuid.uuid4().hex[:16], name, "replay")
        _run_batch(
            engine, CONTRACTS[name], source, settings, config, moment, batch, [], replay=True
        )
        result.batches.append(batch)
    return result


def _json_path(key: str) -> str:
    """A JSON path step for any key: quoted so dots and spaces are taken literally."""
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
