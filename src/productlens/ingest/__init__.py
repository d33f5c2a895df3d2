"""Loading files into the raw layer.

Each file is one batch: its rows and its `raw.ingest_log` entry are written in one
transaction, so a batch is all or nothing. A file whose checksum is already logged is
skipped, so loading the same file twice changes nothing.
"""

from __future__ import annotations

import glob
import hashlib
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from productlens import __version__
from productlens.engines import Engine
from productlens.errors import EngineError, IngestError
from productlens.ingest.contracts import CONTRACTS, Contract

__all__ = ["CONTRACTS", "IngestResult", "ensure_raw_tables", "ingest_paths"]

INGEST_LOG_DDL = """
CREATE TABLE IF NOT EXISTS raw.ingest_log (
    batch_id VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,
    checksum VARCHAR NOT NULL,
    target_table VARCHAR NOT NULL,
    rows_read BIGINT NOT NULL,
    rows_loaded BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    ingested_at TIMESTAMP NOT NULL,
    productlens_version VARCHAR NOT NULL
)
"""

READERS = {
    ".parquet": "read_parquet({path}, file_row_number = true)",
    ".csv": "read_csv({path}, header = true)",
    ".jsonl": "read_json({path}, format = 'newline_delimited')",
    ".ndjson": "read_json({path}, format = 'newline_delimited')",
}


@dataclass
class IngestResult:
    """Per table: rows loaded; plus the files loaded and skipped as already loaded."""

    rows: dict[str, int] = field(default_factory=dict)
    loaded_files: list[Path] = field(default_factory=list)
    skipped_files: list[Path] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def ensure_raw_tables(engine: Engine) -> None:
    """Create every raw table of the contract, and the ingest log, if missing."""
    for contract in CONTRACTS.values():
        engine.execute(contract.ddl())
    engine.execute(INGEST_LOG_DDL)


def expand(paths: Iterable[Path | str]) -> list[Path]:
    """Files named directly, found under folders, or matched by globs, in a stable order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in READERS and p.is_file())
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


def ingest_paths(
    engine: Engine,
    paths: Iterable[Path | str],
    *,
    table: str | None = None,
    on_file: Callable[[Path, int], None] | None = None,
) -> IngestResult:
    """Load files into their raw tables, one transaction per file."""
    if table is not None and table not in CONTRACTS:
        raise IngestError(f"unknown table {table!r}; the raw tables are {', '.join(CONTRACTS)}")
    ensure_raw_tables(engine)
    result = IngestResult()
    for path in expand(paths):
        if path.suffix not in READERS:
            raise IngestError(
                f"unsupported file type {path.suffix!r} (use {', '.join(READERS)})", file=path
            )
        target = table or infer_table(path)
        rows = _load_file(engine, CONTRACTS[target], path)
        if rows is None:
            result.skipped_files.append(path)
        else:
            result.loaded_files.append(path)
            result.rows[target] = result.rows.get(target, 0) + rows
        if on_file:
            on_file(path, rows or 0)
    return result


def _checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _load_file(engine: Engine, contract: Contract, path: Path) -> int | None:
    """Load one file as one batch; None if this exact file was loaded before."""
    checksum = _checksum(path)
    seen = engine.fetch_all(
        "SELECT count(*) FROM raw.ingest_log WHERE checksum = ? AND target_table = ?",
        [checksum, contract.table],
    )
    if seen[0][0]:
        return None
    reader = READERS[path.suffix].format(path=_sql_string(str(path.resolve())))
    try:
        present = {row[0] for row in engine.fetch_all(f"DESCRIBE SELECT * FROM {reader}")}
    except EngineError as exc:
        raise IngestError(f"cannot read the file: {exc.message}", file=path) from None
    missing = [c.name for c in contract.columns if c.required and c.name not in present]
    if missing:
        raise IngestError(
            f"required columns missing for table {contract.table}: {', '.join(missing)} "
            "(map your column names with --map SOURCE=TARGET)",
            file=path,
        )
    batch_id = uuid.uuid4().hex[:16]
    now = datetime.now(UTC).replace(tzinfo=None)
    row_number = "file_row_number + 1" if path.suffix == ".parquet" else "row_number() OVER ()"
    select = [
        f"CAST({c.name} AS {c.type}) AS {c.name}"
        if c.name in present
        else f"NULL::{c.type} AS {c.name}"
        for c in contract.columns
    ]
    select += [
        f"{_sql_string(batch_id)} AS _batch_id",
        f"{_sql_string(str(path))} AS _source_file",
        f"{row_number} AS _row_number",
        f"TIMESTAMP '{now.isoformat(sep=' ')}' AS _ingested_at",
    ]
    with engine.transaction():
        try:
            engine.execute(
                f"INSERT INTO raw.{contract.table} BY NAME SELECT {', '.join(select)} FROM {reader}"
            )
        except EngineError as exc:
            raise IngestError(
                f"cannot load into raw.{contract.table}: {exc.message}", file=path
            ) from None
        loaded = engine.fetch_all(
            f"SELECT count(*) FROM raw.{contract.table} WHERE _batch_id = ?", [batch_id]
        )[0][0]
        engine.execute(
            "INSERT INTO raw.ingest_log VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
            [batch_id, str(path), checksum, contract.table, loaded, loaded, now, __version__],
        )
    return int(loaded)
