"""The raw layer's storage: immutable Parquet files owned by the lake, with one view
per contract table over them.

Loading into a native DuckDB table re-encodes every row (about 3.8 s per 10M events on
this machine, before any check), so the raw layer keeps files instead:

- a source Parquet file whose columns are exactly the contract's, and which has no row to
  hold back, is copied byte for byte (`<batch>-<n>.parquet`);
- every other row that loads (CSV, JSON Lines, mapped or retyped columns, files with
  quarantined rows, replayed rows) is written once, typed to the contract, into
  `<batch>-rows.parquet`, which also stores each row's source file and row number.

`ops.raw_files` lists the files that belong to the raw layer; `raw.<table>` is a view over
exactly those files, adding the lineage columns from the list. Files are written before
the command's transaction commits and listed inside it, so a crash leaves at most
unlisted files, which the next ingest removes (`sweep`). Files are made read-only once
written.

Files are never edited, so a file loaded again with `ingest --force` replaces its
earlier rows by listing them in `ops.superseded_files`, one row per (batch, source file):
the view leaves those rows out (a rewritten file can hold rows of several source files,
so the exclusion is per pair, not per file).

Paths in the list are relative to the lake's folder (for a local lake the processor sets
DuckDB's `file_search_path` there), so a project folder can be moved or copied whole.

A lake in object storage (`s3://bucket/prefix`) keeps the same guarantees with S3's own
semantics: an object appears only when its upload completes (a crashed write leaves no
object, at most an incomplete multipart upload that S3 never shows), so the files a batch
wrote are whole or absent; they are listed, exactly as locally, in the catalog's
transaction, and `sweep` deletes the objects no committed batch lists. Objects cannot be
edited in place; "read-only" is the names: each one carries its batch id, and a copy
refuses a key that exists. The views read such a lake by full URL (DuckDB's search
path is local), through the store registered on the connection.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlglot import exp

from productlens.errors import EngineError, IngestError, UnreadableFile
from productlens.ingest.contracts import CONTRACTS, LINEAGE_COLUMNS, Contract
from productlens.ingest.processor import LakeProcessor
from productlens.ingest.sql import aliased, fill, query, text_list
from productlens.objects import FilePath, ObjectPath, copy_file, relative_to

# How the raw files of a batch are named, and the name patterns (globs, the same for
# DuckDB and Hadoop) that tell the two kinds apart: a warehouse reads each kind of a
# table's folder through one pattern (`productlens.lake`), never a list of files.
COPIED_FILES = "*[0-9].parquet"
REWRITTEN_FILES = "*-rows.parquet"


def copied_name(batch_id: str, n: int) -> str:
    """The name of a batch's `n`th copied file (matches COPIED_FILES)."""
    return f"{batch_id}-{n:05d}.parquet"


def rewritten_name(batch_id: str) -> str:
    """The name of a batch's file of rewritten rows (matches REWRITTEN_FILES)."""
    return f"{batch_id}-rows.parquet"


MANIFEST_DDL = """
CREATE TABLE IF NOT EXISTS ops.raw_files (
    file_name VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    target_table VARCHAR NOT NULL,
    batch_id VARCHAR NOT NULL,
    source_file VARCHAR,
    row_count BIGINT NOT NULL,
    copied BOOLEAN NOT NULL,
    ingested_at TIMESTAMP NOT NULL
)
"""
SUPERSEDED_DDL = """
CREATE TABLE IF NOT EXISTS ops.superseded_files (
    target_table VARCHAR NOT NULL,
    batch_id VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,
    rows_loaded BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    superseded_by VARCHAR NOT NULL,
    superseded_at TIMESTAMP NOT NULL
)
"""


@dataclass(frozen=True)
class RawFile:
    """One file of the raw layer: where it is, the source file it copies (None for a
    rewritten file, whose rows name their own), and its rows."""

    path: FilePath
    source: str | None
    rows: int
    copied: bool


@dataclass(frozen=True)
class _Listed:
    """One file in ops.raw_files: its path (relative), whether it is a copy, its batch,
    and the source file it copies (None for a rewritten file)."""

    path: str
    copied: bool
    batch: str
    source: str | None


@dataclass(frozen=True)
class ParquetFile:
    """What the footer of one source Parquet file says."""

    path: FilePath
    rows: int
    exact: bool  # its columns are the contract's, with the contract's types
    # (name, DuckDB type) in file order; empty for a file with nested columns
    columns: tuple[tuple[str, str], ...]


def inspect_parquet(
    lake: LakeProcessor, files: Sequence[FilePath], contract: Contract
) -> list[ParquetFile]:
    """Read the footers of source Parquet files (in one query): each file's rows, and
    whether DuckDB reads it as exactly the contract's columns and types, so that it can
    be copied as it is."""
    listed = text_list(str(f.resolve()) for f in files)
    try:
        rows = lake.fetch_all(
            fill(
                "SELECT m.file_name, m.num_rows, s.columns, s.nested FROM parquet_file_metadata("
                "__files__) m LEFT JOIN (SELECT file_name, list((name, duckdb_type) ORDER BY "
                "column_id) AS columns, bool_or(num_children > 0) AS nested "
                "FROM parquet_schema(__files__) WHERE column_id > 0 GROUP BY file_name) s "
                "USING (file_name)",
                files=listed,
            )
        )
    except EngineError as exc:
        for f in files:  # find the file that cannot be read, to name it
            try:
                with f.open("rb") as fh:
                    pq.read_metadata(fh)
            except (OSError, ValueError) as bad:
                raise UnreadableFile(f"cannot read the file: {bad}", file=f) from None
        raise IngestError(f"cannot read the files: {exc.message}", file=files[0]) from None
    wanted = sorted((c.name, c.type) for c in contract.columns)
    found = {r[0]: (int(r[1]), tuple(tuple(c) for c in r[2] or []), bool(r[3])) for r in rows}
    result = []
    for f in files:
        n, columns, nested = found[str(f.resolve())]
        flat = () if nested else columns  # nested columns list their children too
        result.append(ParquetFile(f, n, not nested and sorted(columns) == wanted, flat))
    return result


class RawStore:
    """The files behind the raw layer of one warehouse."""

    def __init__(self, lake: LakeProcessor) -> None:
        self.lake = lake
        self.root: FilePath = lake.raw_root
        self.base: FilePath = self.root.parent  # what the listed paths are relative to

    def ensure(self) -> None:
        """Create the file list, and a view for every contract table that has none yet."""
        if isinstance(self.root, ObjectPath):
            self.root.check_bucket()  # before anything is written there
        self.lake.execute(MANIFEST_DDL)
        self.lake.execute(SUPERSEDED_DDL)
        kinds = dict(
            self.lake.fetch_all(
                "SELECT table_name, table_type FROM information_schema.tables "
                "WHERE table_schema = 'raw'"
            )
        )
        for table in CONTRACTS:
            if kinds.get(table) == "BASE TABLE":
                raise IngestError(
                    f"raw.{table} is a table here, written by an earlier productlens; "
                    "this version keeps the raw layer as files: ingest into a new warehouse",
                    table=table,
                )
            if table not in kinds:
                self.refresh_view(table)

    def table_dir(self, table: str) -> FilePath:
        return self.root / table

    def relative(self, path: FilePath) -> str:
        return relative_to(path, self.base)

    def location(self, relative: str) -> str:
        """Where DuckDB reads a listed file: its listed path (local: DuckDB's search path
        is the lake's folder), or its full URL in object storage."""
        return relative if isinstance(self.base, Path) else str(self.base / relative)

    def copy_in(self, source: FilePath, target: FilePath) -> None:
        """Copy a source file into the raw layer byte for byte."""
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if isinstance(source, Path) and isinstance(target, Path):
                _copy(source, target)
            else:
                copy_file(source, target)
        except OSError as exc:
            raise IngestError(
                f"cannot copy into the raw layer: {exc.strerror or exc}", file=source
            ) from None
        seal(target)

    def listed(self, table: str) -> list[_Listed]:
        """The files of one table, oldest first."""
        rows = self.lake.fetch_all(
            "SELECT path, copied, batch_id, source_file FROM ops.raw_files "
            "WHERE target_table = ? ORDER BY ingested_at, file_name",
            [table],
        )
        return [_Listed(r[0], bool(r[1]), r[2], r[3]) for r in rows]

    def superseded(self, table: str) -> set[tuple[str, str]]:
        """The (batch, source file) pairs of one table whose rows a forced load replaced."""
        rows = self.lake.fetch_all(
            "SELECT batch_id, source_file FROM ops.superseded_files WHERE target_table = ?",
            [table],
        )
        return {(r[0], r[1]) for r in rows}

    def has_rows(self, table: str) -> bool:
        rows = self.lake.fetch_all(
            "SELECT count(*) FROM ops.raw_files WHERE target_table = ? AND row_count > 0",
            [table],
        )
        return bool(rows[0][0])

    def register(
        self, table: str, batch_id: str, files: Sequence[RawFile], stamp: datetime
    ) -> None:
        """List one batch's new files (inside the batch's transaction)."""
        if not files:
            return
        n = len(files)
        listing = pa.table(
            {
                "file_name": [f.path.name for f in files],
                "path": [self.relative(f.path) for f in files],
                "target_table": [table] * n,
                "batch_id": [batch_id] * n,
                "source_file": pa.array([f.source for f in files], pa.string()),
                "row_count": pa.array([f.rows for f in files], pa.int64()),
                "copied": [f.copied for f in files],
                "ingested_at": pa.array([stamp] * n, pa.timestamp("us")),
            }
        )
        self.lake.load_arrow("ops.raw_files", listing)

    def refresh_view(self, table: str) -> None:
        """(Re)define raw.<table> over exactly the listed files."""
        view = exp.table_(table, db="raw")
        self.lake.execute(
            exp.Create(this=view, kind="VIEW", replace=True, expression=self.view_sql(table))
        )

    def view_sql(self, table: str) -> exp.Query:
        contract = CONTRACTS[table]
        gone = self.superseded(table)
        gone_batches = {batch for batch, _ in gone}
        # A copied file holds one source file: superseded, it leaves the list. A rewritten
        # file of a batch with a superseded pair is read with its rows filtered per pair.
        files = [f for f in self.listed(table) if not (f.copied and (f.batch, f.source) in gone)]
        plain = [f for f in files if f.copied or f.batch not in gone_batches]
        filtered = [f for f in files if not f.copied and f.batch in gone_batches]
        parts = [self._select(table, plain, False)] if plain else []
        parts += [self._select(table, filtered, True)] if filtered else []
        if not parts:
            typed = [(c.name, c.type) for c in contract.columns] + list(LINEAGE_COLUMNS)
            empty = [_named(exp.cast(exp.null(), _type(t)), name) for name, t in typed]
            return exp.select(*empty).where(exp.false())
        union: exp.Query = parts[0]
        for part in parts[1:]:
            union = exp.union(union, part, distinct=False)
        return union

    def _select(self, table: str, files: list[_Listed], exclude_superseded: bool) -> exp.Select:
        """The rows of some listed files with their lineage; with `exclude_superseded`,
        without the rows of superseded (batch, source file) pairs."""
        contract = CONTRACTS[table]
        rewritten = any(not f.copied for f in files)
        any_copied = any(f.copied for f in files)
        source, row = _LINEAGE[rewritten, any_copied]
        select = query(
            "SELECT * FROM read_parquet(__paths__, filename = true, file_row_number = true, "
            "union_by_name = true, hive_partitioning = false) r "
            "JOIN ops.raw_files m ON m.target_table = __table__ "
            "AND m.file_name = parse_filename(r.filename)",
            paths=text_list(self.location(f.path) for f in files),
            table=table,
        )
        assert isinstance(select, exp.Select)
        cols: list[exp.Expr] = [
            _named(exp.cast(exp.column(c.name, "r"), _type(c.type)), c.name)
            for c in contract.columns
        ]
        cols += [
            fill("m.batch_id AS _batch_id"),
            aliased(source.copy(), exp.to_identifier("_source_file")),
            fill("CAST(__row__ AS BIGINT) AS _row_number", row=row),
            fill("m.ingested_at AS _ingested_at"),
        ]
        select.set("expressions", cols)
        if exclude_superseded:
            select = select.where(
                fill(
                    "NOT EXISTS (SELECT 1 FROM ops.superseded_files s WHERE s.target_table = "
                    "__table__ AND s.batch_id = m.batch_id AND s.source_file = __source__)",
                    table=table,
                    source=source,
                )
            )
        return select

    def supersede(
        self, table: str, loads: Sequence[tuple[str, str]], by: str, stamp: datetime
    ) -> tuple[int, int, int]:
        """Take the rows of earlier loads, (batch, source file) pairs, out of raw.<table>
        (inside the command's transaction, before the forced batch is checked): their
        loaded rows leave the view, and their quarantined rows are marked superseded.
        Rows of those loads that a replay released go too (they carry the replay's
        batch). The fate of each pair is recorded in ops.superseded_files. Returns the
        pairs replaced, their rows loaded and their rows still held."""
        if not loads:
            return 0, 0, 0
        pairs = exp.values(list(loads), alias="l", columns=["batch_id", "source_file"])
        self.lake.execute(
            fill(
                "CREATE OR REPLACE TEMP TABLE __superseding AS "
                "SELECT batch_id, source_file FROM __pairs__ UNION "
                "SELECT q.released_batch_id, q.source_file FROM raw.quarantine q JOIN __pairs__ "
                "ON q.batch_id = l.batch_id AND q.source_file = l.source_file "
                "WHERE q.target_table = __table__ AND q.released_batch_id IS NOT NULL "
                "AND q.superseded_at IS NULL",
                pairs=pairs,
                table=table,
            )
        )
        try:
            self._record_superseded(table, by, stamp)
            self.lake.execute(
                fill(
                    "UPDATE raw.quarantine SET superseded_at = ?, superseded_batch_id = ? "
                    "FROM __pairs__ WHERE raw.quarantine.target_table = ? "
                    "AND raw.quarantine.superseded_at IS NULL "
                    "AND raw.quarantine.batch_id = l.batch_id "
                    "AND raw.quarantine.source_file = l.source_file",
                    pairs=pairs,
                ),
                [stamp, by, table],
            )
        finally:
            self.lake.execute("DROP TABLE IF EXISTS __superseding")
        self.refresh_view(table)
        pairs, rows, held = self.lake.fetch_all(
            "SELECT count(*), coalesce(sum(rows_loaded), 0), coalesce(sum(rows_quarantined), 0) "
            "FROM ops.superseded_files WHERE superseded_by = ?",
            [by],
        )[0]
        return int(pairs), int(rows), int(held)

    def _record_superseded(self, table: str, by: str, stamp: datetime) -> None:
        """One row per pair in __superseding: its rows loaded (counted in the listed
        files of its batch, the copied ones from the list) and still held."""
        rewritten = [
            r[0]
            for r in self.lake.fetch_all(
                "SELECT path FROM ops.raw_files WHERE target_table = ? AND NOT copied "
                "AND batch_id IN (SELECT batch_id FROM __superseding)",
                [table],
            )
        ]
        counted = query(
            "SELECT batch_id, source_file, row_count FROM ops.raw_files "
            "WHERE target_table = ? AND copied"
        )
        if rewritten:
            in_rewritten = query(
                "SELECT m.batch_id, r._source_file AS source_file, count(*) AS n "
                "FROM read_parquet(__paths__, filename = true) r JOIN ops.raw_files m "
                "ON m.target_table = ? AND m.file_name = parse_filename(r.filename) GROUP BY ALL",
                paths=text_list(self.location(p) for p in rewritten),
            )
            counted = exp.union(in_rewritten, counted, distinct=False)
        self.lake.execute(
            fill(
                "INSERT INTO ops.superseded_files SELECT ?, s.batch_id, s.source_file, "
                "coalesce((SELECT sum(c.n) FROM __counted__ c(batch_id, source_file, n) "
                "WHERE c.batch_id = s.batch_id AND c.source_file = s.source_file), 0), "
                "(SELECT count(*) FROM raw.quarantine q WHERE q.target_table = ? "
                "AND q.batch_id = s.batch_id AND q.source_file = s.source_file "
                "AND q.released_at IS NULL AND q.superseded_at IS NULL), ?, ? "
                "FROM __superseding s",
                counted=counted.subquery(),
            ),
            [table, *([table] if rewritten else []), table, table, by, stamp],
        )

    def sweep(self) -> list[FilePath]:
        """Delete files in the raw folder that no committed batch lists (what a crash
        between writing and committing leaves); returns them."""
        if not self.root.exists():
            return []
        listed = {r[0] for r in self.lake.fetch_all("SELECT path FROM ops.raw_files")}
        removed: list[FilePath] = []
        found: list[FilePath] = list(self.root.rglob("*"))
        for path in sorted(found, key=str):
            if path.is_file() and self.relative(path) not in listed:
                path.unlink()
                removed.append(path)
        return removed

    def discard(self, paths: Iterable[FilePath]) -> None:
        """Remove files of a batch that failed (best effort; `sweep` catches the rest)."""
        for path in paths:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)


# A view's lineage by the kinds of files it reads, (rewritten?, copied?): the source file
# and the row number (a rewritten file stores each row's; a copied file's rows are numbered
# by their place in it, from 1).
_LINEAGE = {
    (True, True): (fill("coalesce(r._source_file, m.source_file)"),
                   fill("coalesce(r._row_number, r.file_row_number + 1)")),
    (True, False): (fill("coalesce(r._source_file, m.source_file)"), fill("r._row_number")),
    (False, True): (fill("m.source_file"), fill("r.file_row_number + 1")),
}  # fmt: skip


def _type(name: str) -> exp.DataType:
    """A contract type, read as DuckDB's."""
    return exp.DataType.build(name, dialect="duckdb")


def _named(value: exp.Expr, name: str) -> exp.Alias:
    """`value AS name`, the name quoted only where DuckDB needs it (as the text had it)."""
    return exp.Alias(this=value, alias=exp.to_identifier(name))


def _copy(source: Path, target: Path) -> None:
    """Copy a file inside the kernel (copy_file_range: no user-space buffers, and a
    reflink where the file system offers one), falling back to shutil."""
    with source.open("rb") as src, target.open("xb") as dst:
        left = os.fstat(src.fileno()).st_size
        try:
            while left > 0:
                done = os.copy_file_range(src.fileno(), dst.fileno(), left)
                if done == 0:
                    break
                left -= done
        except (AttributeError, OSError):  # not Linux, or across file systems
            src.seek(0)
            dst.seek(0)
            dst.truncate()
            shutil.copyfileobj(src, dst)
            left = 0
    if left:
        raise OSError(errno.EIO, "the file shrank while it was being copied")


def seal(path: FilePath) -> None:
    """Make a raw file read-only: the raw layer is never edited in place (an object in
    storage cannot be edited at all)."""
    if isinstance(path, Path):
        os.chmod(path, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
