"""Loading files into the raw layer: validated in SQL, nothing lost, safe to repeat.

One run makes one batch per table (per file format): all new files of that table are
validated together, set-based, and committed in one transaction: the rows that pass
join `raw.<table>` (Parquet files owned by the warehouse, see `store`), the rows that do
not go to `raw.quarantine` with their original values and reasons, and the batch is
logged in `ops.ingest_log`. Rows read = rows loaded + rows quarantined + exact copies
of rows already loaded, or the batch fails. A file whose checksum was loaded before is
skipped, so loading twice changes nothing.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from productlens.config import IngestConfig, TableIngestConfig
from productlens.engines import Engine
from productlens.errors import EngineError, IngestError
from productlens.ingest import presets
from productlens.ingest.batch import BatchResult, Plan, files_text, run_batch
from productlens.ingest.contracts import CONTRACTS, LOAD_ORDER, Contract
from productlens.ingest.mapping import Resolution, fold, resolve
from productlens.ingest.store import RawStore, inspect_parquet
from productlens.ingest.validate import Source, ident, literal

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
WHERE_COLUMN = "__where"  # the row filter's value, when its type is asked


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


def ensure_raw_tables(engine: Engine) -> RawStore:
    """Create the raw layer (a view per contract table), the quarantine and the logs,
    if missing; returns the raw layer's file store."""
    for ddl in (QUARANTINE_DDL, INGEST_LOG_DDL, FILES_DDL):
        engine.execute(ddl)
    store = RawStore(engine)
    store.ensure()
    return store


def expand(paths: Iterable[Path | str]) -> list[Path]:
    """Files named directly, found under folders, or matched by globs, in a stable order;
    a file named twice (say, by a folder and by name) counts once."""
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
    first: dict[Path, Path] = {}
    for path in found:
        first.setdefault(path.resolve(), path)
    return list(first.values())


def infer_table(path: Path, default: str | None = None) -> str:
    """`data/events/event_date=2026-01-05/part-0.parquet`, `data/users/part-0.parquet` or
    `events.csv` -> the table; the nearest folder named after a table wins, else
    `default` (a preset's table: vendor exports are not named after raw tables)."""
    for candidate in (*(p.name for p in path.parents), path.stem):
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
    preset: str | None = None,
) -> IngestResult:
    """Load files into their raw tables: one validated, all-or-nothing batch per table.
    A `preset` (else `config.preset`) maps another tool's export (see `presets`)."""
    config = presets.apply(config or IngestConfig(), preset, mapping)
    default = presets.default_table(config.preset) if config.preset else None
    if table is not None and table not in CONTRACTS:
        raise IngestError(f"unknown table {table!r}; the raw tables are {', '.join(CONTRACTS)}")
    for t in config.tables:
        if t not in CONTRACTS:
            raise IngestError(f"[ingest.tables.{t}]: no such raw table")
    store = ensure_raw_tables(engine)
    store.sweep()
    files = expand(paths)
    for path in files:
        if path.suffix not in SUFFIXES:
            raise IngestError(
                f"unsupported file type {path.suffix!r} (use {', '.join(SUFFIXES)})", file=path
            )
    by_table: dict[tuple[str, str], list[Path]] = {}
    for path in files:
        by_table.setdefault((table or infer_table(path, default), path.suffix), []).append(path)

    result = IngestResult()
    moment = now or datetime.now(UTC)
    # Hashing releases the GIL: two threads halve the time for many files.
    with ThreadPoolExecutor(max_workers=2) as pool:
        all_checksums = dict(zip(files, pool.map(_checksum, files), strict=True))
    for name in LOAD_ORDER:
        for (target, suffix), group in sorted(by_table.items()):
            if target != name:
                continue
            settings = _settings(config, target, mapping or {})
            checksums = {p: all_checksums[p] for p in group}
            seen = _loaded_checksums(engine, target)
            new = [p for p in group if checksums[p] not in seen]
            result.skipped_files += [p for p in group if checksums[p] in seen]
            if not new:
                continue
            batch = _load_files(
                engine, store, CONTRACTS[target], new, suffix, checksums, settings, config, moment
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
        where = files_text(files)
        raise IngestError(f"cannot read the file: {exc.message}", file=where) from None
    return {r[0]: r[1] for r in rows if r[0] not in READER_COLUMNS}


def _load_files(
    engine: Engine,
    store: RawStore,
    contract: Contract,
    files: list[Path],
    suffix: str,
    checksums: Mapping[Path, str],
    settings: TableIngestConfig,
    config: IngestConfig,
    now: datetime,
) -> BatchResult:
    names = {p: str(p.resolve()) for p in files}  # how the readers name each file
    footers = []
    if suffix != ".parquet":
        relation = _text_relation(files, suffix, settings.delimiter)
    else:
        footers = inspect_parquet(engine, files, contract)
        relation = _parquet_relation(list(names.values()))
    if footers and footers[0].columns and all(f.columns == footers[0].columns for f in footers):
        columns = dict(footers[0].columns)  # what DESCRIBE would say, without reading again
    else:
        columns = _describe(engine, relation, files)
    _check_names(columns, files)
    resolution = _resolve(engine, contract, relation, columns, settings, files)
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
    source = _source(relation, columns, ROW_NUMBER[suffix], resolution)
    batch = BatchResult(uuid.uuid4().hex[:16], contract.table, "files", list(files))
    batch.notes += _notes(contract, resolution)
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
        total = int(engine.fetch_all(f"SELECT count(*) FROM {relation}")[0][0])
    plan = Plan(
        read=sum(f.rows for f in footers) if footers and total is None else None,
        copyable={names[f.path]: f.rows for f in footers if as_is and f.exact},
        names=list(names.values()),
        subset=(lambda subset: _parquet_source(subset, columns, resolution)) if footers else None,
        registry=[(checksums[p], names[p]) for p in files],
    )
    try:
        if suffix == ".parquet":
            run_batch(engine, store, contract, source, settings, config, now, batch, plan)
        else:
            # Text rows are numbered in scan order: keep that order through the batch.
            engine.execute("SET preserve_insertion_order = true")
            try:
                run_batch(engine, store, contract, source, settings, config, now, batch, plan)
            finally:
                engine.execute("SET preserve_insertion_order = false")
    except IngestError:
        _blame(engine, contract.table, relation, resolution, settings, files)
        raise
    if total is not None:
        batch.rows_filtered = total - batch.rows_read
    return batch


def _check_names(columns: Mapping[str, str], files: list[Path]) -> None:
    """Refuse columns whose names differ only in case: DuckDB's names are not case
    sensitive, so `src."Event_Type"` would read the column `event_type`."""
    seen: dict[str, str] = {}
    for name in columns:
        other = seen.setdefault(name.lower(), name)
        if other != name:
            raise IngestError(
                f"the columns {_printable(other)!r} and {_printable(name)!r} differ only in "
                "case, which the engine cannot tell apart: rename one of them",
                file=files_text(files),
            )


def _parquet_relation(names: list[str]) -> str:
    """Parquet files (absolute paths) as one relation."""
    return PARQUET_READER.format(paths="[" + ", ".join(literal(n) for n in names) + "]")


def _parquet_source(names: list[str], columns: Mapping[str, str], resolution: Resolution) -> Source:
    """Parquet files (absolute paths) as a source of rows."""
    return _source(_parquet_relation(names), columns, ROW_NUMBER[".parquet"], resolution)


def _source(
    relation: str, columns: Mapping[str, str], row_expr: str, resolution: Resolution
) -> Source:
    """A reader's relation as a source of rows, filtered by the table's `where`."""
    if resolution.where is not None:
        relation = f"(SELECT * FROM {relation} src WHERE {resolution.where})"
    return Source(relation, columns, "src.filename", row_expr, values=resolution.values)


def _resolve(
    engine: Engine,
    contract: Contract,
    relation: str,
    columns: Mapping[str, str],
    settings: TableIngestConfig,
    files: list[Path],
) -> Resolution:
    """Where each contract column comes from, with every expression's type (asked of the
    engine, which also checks that the expression runs on these files); columns nothing
    maps are folded into `properties` where the table has one and it is not mapped."""
    resolution = resolve(
        contract.column_names,
        columns,
        settings.columns,
        settings.expressions,
        settings.where,
        contract.table,
        internal=frozenset(READER_COLUMNS) | frozenset(CSV_OVERFLOW),
        optional=frozenset(settings.optional_columns),
    )
    values = dict(resolution.values)
    if resolution.unmapped and "properties" in contract.column_names and "properties" not in values:
        values["properties"] = fold(resolution.unmapped, columns)
        resolution = replace(resolution, folded=tuple(resolution.unmapped))
    typed_later = {k: m for k, m in values.items() if not m.type}
    # The filter is typed with the expressions (one DESCRIBE): it must be a condition.
    # `where = "1"` or a text column would otherwise be cast to a boolean and keep or
    # drop rows by DuckDB's casting rules.
    asked = {ident(k): m.sql for k, m in typed_later.items()}
    if resolution.where is not None:
        asked[ident(WHERE_COLUMN)] = resolution.where
    if asked:
        select = ", ".join(f"{sql} AS {name}" for name, sql in asked.items())
        try:
            described = engine.fetch_all(f"DESCRIBE SELECT {select} FROM {relation} src")
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


def _blame(
    engine: Engine,
    table: str,
    relation: str,
    resolution: Resolution,
    settings: TableIngestConfig,
    files: list[Path],
) -> None:
    """After a failed batch, raise an error naming the configured expression (or row
    filter) that fails on these files, if one does: an expression can fail on a value
    (a text that is not JSON, a cast), not only on its types. Each is tried alone, once
    the files themselves read."""
    try:
        engine.fetch_all(f"SELECT count(*) FROM {relation} src")
    except EngineError:
        return  # the files fail on their own: the batch's error says so
    where = f" WHERE {resolution.where}" if resolution.where else ""
    tried = [
        (f"[ingest.tables.{table}.expressions] {name}", m.expression, f"count({m.sql})")
        for name, m in resolution.values.items()
        if m.expression is not None
    ]
    if settings.where is not None:
        tried.insert(0, (f"[ingest.tables.{table}] where", settings.where, "count(*)"))
    for what, text, count in tried:
        try:
            engine.fetch_all(f"SELECT {count} FROM {relation} src{where}")
        except EngineError as exc:
            raise IngestError(
                f"{what}: fails on these files ({exc.message}): {text!r}; nothing was written",
                file=files_text(files),
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


def replay(
    engine: Engine,
    *,
    config: IngestConfig | None = None,
    mapping: Mapping[str, str] | None = None,
    table: str | None = None,
    now: datetime | None = None,
    preset: str | None = None,
) -> IngestResult:
    """Re-try quarantined rows with the current settings; rows that now pass are loaded
    and leave the quarantine (they are marked released, with the batch that loaded them)."""
    config = presets.apply(config or IngestConfig(), preset, mapping)
    store = ensure_raw_tables(engine)
    store.sweep()
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
        run_batch(
            engine, store, CONTRACTS[name], source, settings, config, moment, batch, Plan(),
            replay=True,
        )  # fmt: skip
        result.batches.append(batch)
    return result


def _json_path(key: str) -> str:
    """A JSON path step for any key: quoted so dots and spaces are taken literally."""
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
