"""Publishing the raw lake to a warehouse engine.

The raw layer is an open lake: immutable Parquet files, listed in the lake's catalog
(`ops.raw_files`, less the (batch, source file) pairs in `ops.superseded_files`), written
by ingestion's DuckDB processor whatever the warehouse is. `publish_raw` makes it visible
to the warehouse through the Engine protocol only:

- an engine that reads Parquet (DuckDB, Spark) gets one view `raw.<table>` per contract
  table over exactly the listed files, with the lineage columns: the rows
  `ingest.store.RawStore.view_sql` gives in the lake. The view reads the table's folder
  through one name pattern per kind of file (copied, rewritten), joined to the
  warehouse's copy of the file list (`ops.raw_files`, for each file's batch, source file
  and ingestion time) and anti-joined to its copy of `ops.superseded_files`: a file no
  committed batch lists is never seen, and a replaced load is never counted twice. Its
  text does not grow with the files (Spark's Hive catalog in Derby refuses a view text
  over 32,700 characters; one relation per file also made Spark plan every query over
  hundreds of relations). The catalog is copied first, so a view reads the list that
  matches the files. Every file in the folder is opened, listed or not: a superseded
  copy costs a read, and a file left half-written by a crash (until the next ingest
  sweeps it) fails the query rather than being skipped;
- an engine that cannot (PostgreSQL) gets each committed file loaded once into the table
  `raw.<table>`: the new files of one table and kind (copied, rewritten) read by one
  query of the processor, the same relation the views use, and streamed as Arrow batches
  into one append (one binary COPY on PostgreSQL), recorded in the warehouse's
  `ops.raw_loaded`, and the rows of superseded pairs deleted, every table in one
  transaction. Publishing again loads only files listed since.

The lake's small catalog tables (the quarantine, the logs, the file list) are copied to
the warehouse's `raw`/`ops` schemas on every publish, for the report and the checks.
When the warehouse IS the lake's catalog (a DuckDB warehouse sharing its connection with
the processor) there is nothing to publish.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

import pyarrow as pa
from sqlglot import exp

from productlens.engines.base import Engine, table
from productlens.errors import EngineError
from productlens.ingest import ensure_raw_tables
from productlens.ingest.contracts import CONTRACTS, LINEAGE_COLUMNS
from productlens.ingest.processor import LakeProcessor
from productlens.ingest.store import COPIED_FILES, REWRITTEN_FILES
from productlens.objects import FilePath, ObjectPath

Strategy = Literal["auto", "views", "load"]

# Per dialect: the name of the file a row was read from (no folder), and the row's index
# in it (from 0), as columns of a Parquet relation. DuckDB's are virtual columns of
# read_parquet; Spark's are fields of the hidden `_metadata` column of a file source.
# An engine whose dialect is missing here cannot read the lake's files: rows are loaded.
_FILE_COLUMNS: dict[str, tuple[Callable[[], exp.Expr], Callable[[], exp.Expr]]] = {
    "duckdb": (
        lambda: exp.func("parse_filename", exp.column("filename")),
        lambda: exp.column("file_row_number"),
    ),
    "spark": (
        lambda: exp.column("file_name", table="_metadata"),
        lambda: exp.column("row_index", table="_metadata"),
    ),
}

# Per dialect: a folder's name made literal in a file name pattern (the views read a
# folder through one pattern, and a folder may be named `[draft] it's *new*`). DuckDB's
# globs take no escape character, but a one-character class matches that character
# (`[[]`, `[*]`), which `glob.escape` writes; `{` and `]` alone are literal there. Hadoop's
# globs (Spark's paths) take a backslash before any character as that character
# (GlobPattern, GlobExpander), braces included; a backslash itself is escaped first.
_LITERAL_FOLDER: dict[str, Callable[[str], str]] = {
    "duckdb": glob.escape,
    "spark": lambda folder: re.sub(r"([\\*?\[\]{}])", r"\\\1", folder),
}

# The lake's catalog tables copied to the warehouse. Their nested columns (lists of
# reasons, the reason history's list of structs) go as JSON text, which every engine holds
# alike; the lake keeps them typed.
CATALOG = (
    ("ops", "raw_files"),
    ("ops", "superseded_files"),
    ("ops", "ingest_log"),
    ("ops", "ingested_files"),
    ("ops", "warned_rows"),
    ("raw", "quarantine"),
)
LOADED = ("ops", "raw_loaded")  # files loaded into a warehouse that cannot read them
LOADED_COLUMNS = (
    ("target_table", exp.DataType.build("VARCHAR")),
    ("file_name", exp.DataType.build("VARCHAR")),
    ("row_count", exp.DataType.build("BIGINT")),
)


@dataclass
class PublishResult:
    """What one publish did: how (`shared`: nothing to do), the raw tables made visible,
    the files and rows loaded (row-loading engines), the superseded rows deleted, and the
    catalog tables copied."""

    strategy: Literal["shared", "views", "load"]
    tables: list[str] = field(default_factory=list)
    files_loaded: int = 0
    rows_loaded: int = 0
    rows_deleted: int = 0
    catalog: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LakeFile:
    """One listed raw file: its absolute path, name, batch, source file (None for a
    rewritten file, whose rows name their own), whether it is a copy, when it came, and
    its rows."""

    path: str
    name: str
    batch: str
    source: str | None
    copied: bool
    ingested_at: object  # a datetime, as the catalog gave it
    rows: int


def publish_raw(
    processor: LakeProcessor,
    engine: Engine,
    *,
    strategy: Strategy = "auto",
    batch_rows: int = 1_000_000,
) -> PublishResult:
    """Make the lake's raw layer and its catalog visible in the warehouse `engine`.
    `strategy`: `views` over the files, `load` the rows, or `auto`: views where the
    engine reads Parquet. Loaded files go to the engine `batch_rows` rows at a time."""
    if shares_catalog(processor, engine):
        return PublishResult("shared")
    ensure_raw_tables(processor)  # an empty lake publishes empty tables
    chosen: Literal["views", "load"]
    if strategy == "auto":
        chosen = "views" if engine.dialect in _FILE_COLUMNS else "load"
    else:
        chosen = strategy
    if chosen == "views" and engine.dialect not in _FILE_COLUMNS:
        raise EngineError("this engine cannot read the lake's files", engine=engine.name)
    for schema in ("raw", "ops"):
        engine.ensure_schema(schema)
    result = PublishResult(chosen)
    if chosen == "views":  # the views read the file list: copied before them
        _copy_all_catalog(processor, engine, result)
        for name in CONTRACTS:
            _publish_view(engine, name, _listed(processor, name))
            result.tables.append(name)
        return result
    for name in CONTRACTS:
        engine.create_table("raw", name, _columns(name))
    engine.create_table(*LOADED, LOADED_COLUMNS)
    # Every table's rows in one transaction: a publish stopped anywhere (an error, Ctrl-C,
    # a kill) leaves the raw layer as it was, and the next one loads the same files.
    with engine.transaction():
        for name in CONTRACTS:
            files = _listed(processor, name)
            gone = _superseded(processor, name)
            _publish_rows(processor, engine, name, files, gone, result, batch_rows)
            result.tables.append(name)
    # After the rows, as before: a failed load leaves the old list.
    _copy_all_catalog(processor, engine, result)
    return result


def _copy_all_catalog(processor: LakeProcessor, engine: Engine, result: PublishResult) -> None:
    for schema, name in CATALOG:
        _copy_catalog(processor, engine, schema, name)
        result.catalog.append(f"{schema}.{name}")


def shares_catalog(processor: LakeProcessor, engine: Engine) -> bool:
    """Whether the warehouse engine runs on the processor's own DuckDB connection."""
    return getattr(engine, "connection", None) is processor.connection


def raw_relation(
    relation: exp.Expr,
    dialect: str,
    table_name: str,
    copied: bool,
    lineage: exp.Expr,
    *,
    superseded: exp.Table | None = None,
) -> exp.Select:
    """The rows of a raw table's files of one kind (`copied`, or rewritten), read through
    `relation`, typed to the contract, with their lineage from `lineage` (a relation of
    file_name, batch_id, source_file, ingested_at, one row per file): a file it has no
    row for is left out. With `superseded` (the catalog's `ops.superseded_files`), without
    the rows of the (batch, source file) pairs it lists for the table."""
    contract = CONTRACTS[table_name]
    file_name, row_index = _FILE_COLUMNS[dialect]
    inner: list[exp.Expr] = [exp.column(c.name, quoted=True) for c in contract.columns]
    if not copied:  # a rewritten file stores each row's source file and row number
        inner += [exp.column("_source_file"), exp.column("_row_number")]
    inner += [
        exp.alias_(file_name(), "__file"),
        exp.alias_(row_index(), "__row"),
    ]
    read = exp.select(*inner).from_(relation).subquery("r")
    source = exp.column("source_file", "m") if copied else exp.column("_source_file", "r")
    row: exp.Expr = exp.column("_row_number", "r")
    if copied:  # a copied file's rows are numbered by their place in it, from 1
        row = exp.Add(this=exp.column("__row", "r"), expression=exp.Literal.number(1))
    columns: list[exp.Expr] = [
        exp.alias_(
            exp.cast(exp.column(c.name, "r", quoted=True), _type(c.type)), c.name, quoted=True
        )
        for c in contract.columns
    ]
    columns += [
        exp.alias_(exp.column("batch_id", "m"), "_batch_id"),
        exp.alias_(exp.cast(source, "VARCHAR"), "_source_file"),
        exp.alias_(exp.cast(row, "BIGINT"), "_row_number"),
        exp.alias_(exp.cast(exp.column("ingested_at", "m"), "TIMESTAMP"), "_ingested_at"),
    ]
    query = (
        exp.select(*columns)
        .from_(read)
        .join(lineage, on=exp.column("file_name", "m").eq(exp.column("__file", "r")))
    )
    if superseded is not None:
        replaced = (
            exp.select(exp.Literal.number(1))
            .from_(exp.alias_(superseded, "s", table=True))
            .where(exp.column("target_table", "s").eq(_text(table_name)))
            .where(exp.column("batch_id", "s").eq(exp.column("batch_id", "m")))
            .where(exp.column("source_file", "s").eq(source))
        )
        query = query.where(exp.not_(exp.Exists(this=replaced)))
    return query


def _publish_view(engine: Engine, name: str, files: list[LakeFile]) -> None:
    parts: list[exp.Select] = []
    for copied, pattern in ((True, COPIED_FILES), (False, REWRITTEN_FILES)):
        group = [f for f in files if f.copied is copied]
        if not group:
            continue
        # The views find files by name pattern: a listed file the pattern misses would be
        # silently absent, so it stops the publish instead.
        odd = next((f for f in group if not fnmatchcase(f.name, pattern)), None)
        if odd is not None:
            raise EngineError(
                f"a raw file is not named as the lake names its files ({pattern})",
                table=f"raw.{name}",
                file=odd.path,
            )
        # One relation per folder the files are in: one, as the lake writes them.
        folders = sorted({f.path.rsplit("/", 1)[0] for f in group})
        literal = _LITERAL_FOLDER[engine.dialect]
        relation = engine.parquet_relation([f"{literal(folder)}/{pattern}" for folder in folders])
        listed = (
            exp.select("file_name", "batch_id", "source_file", "ingested_at")
            .from_(table("ops", "raw_files"))
            .where(exp.column("target_table").eq(_text(name)))
            .where(exp.column("copied").eq(exp.Boolean(this=copied)))
            .subquery("m")
        )
        superseded = table("ops", "superseded_files")
        parts.append(
            raw_relation(relation, engine.dialect, name, copied, listed, superseded=superseded)
        )
    query: exp.Query = parts[0] if parts else _empty(name)
    for part in parts[1:]:
        query = exp.union(query, part, distinct=False)
    engine.replace_view("raw", name, query)


def _publish_rows(
    processor: LakeProcessor,
    engine: Engine,
    name: str,
    files: list[LakeFile],
    gone: set[tuple[str, str]],
    result: PublishResult,
    batch_rows: int,
) -> None:
    """Load one table's files not loaded yet and delete its superseded rows (inside the
    publish's transaction). The new files of each kind (copied, rewritten) are read by
    one query of the processor and streamed to the engine in one append (on PostgreSQL
    one binary COPY), not file by file; the rows streamed must be the rows the lake
    lists for those files."""
    done = {
        r[0]
        for r in engine.fetch_all(
            exp.select("file_name")
            .from_(table(*LOADED))
            .where(exp.column("target_table").eq(_text(name)))
        )
    }
    new = [f for f in files if f.name not in done]
    pairs = {pair for pair in gone if pair[0] in {f.batch for f in files}}
    for copied in (True, False):
        group = [f for f in new if f.copied is copied]
        if not group:
            continue
        # The processor reads the files as DuckDB: the relation the views use, over
        # these files only (matched by column name, whatever a file's column order).
        paths = exp.Array(expressions=[_text(f.path) for f in group])
        relation = exp.Table(this=exp.Anonymous(this="read_parquet", expressions=[paths]))
        query = raw_relation(relation, "duckdb", name, copied, _lineage(group))
        rows = engine.append_arrow("raw", name, processor.fetch_batches(query, rows=batch_rows))
        if rows != sum(f.rows for f in group):  # a file changed since it was listed
            _refuse_changed(processor, relation, name, group)
        result.files_loaded += len(group)
        result.rows_loaded += rows
    if new:
        loaded = pa.table(
            {
                "target_table": [name] * len(new),
                "file_name": [f.name for f in new],
                "row_count": pa.array([f.rows for f in new], pa.int64()),
            }
        )
        engine.append_arrow(*LOADED, loaded)
    if pairs:
        target = table("raw", name)
        matches = _pair_in(exp.column("_batch_id"), exp.column("_source_file"), pairs)
        counted = exp.select(exp.func("count", exp.Star())).from_(target).where(matches)
        result.rows_deleted += _int(engine.fetch_all(counted)[0][0])
        engine.execute(exp.delete(target, where=matches))


def _refuse_changed(
    processor: LakeProcessor, relation: exp.Table, name: str, group: list[LakeFile]
) -> None:
    """Stop the publish (its transaction loads nothing), naming a file whose rows are not
    the rows the lake's catalog lists for it."""
    file_name = exp.func("parse_filename", exp.column("filename"))
    counted = dict(
        processor.fetch_all(
            exp.select(file_name, exp.func("count", exp.Star())).from_(relation).group_by(file_name)
        )
    )
    changed = next((f for f in group if counted.get(f.name, 0) != f.rows), group[0])
    raise EngineError(
        f"the file holds {counted.get(changed.name, 0):,} rows where the lake lists "
        f"{changed.rows:,}: it changed after it was ingested",
        table=f"raw.{name}",
        file=changed.path,
    )


def _copy_catalog(processor: LakeProcessor, engine: Engine, schema: str, name: str) -> None:
    """Replace the warehouse's copy of one catalog table by the lake's rows (nested
    values as JSON text)."""
    described = processor.fetch_all(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, name],
    )
    select = [
        exp.alias_(_json(c), c, quoted=True) if _nested(t) else exp.column(c, quoted=True)
        for c, t in described
    ]
    data = processor.fetch_arrow(exp.select(*select).from_(table(schema, name)))
    with engine.temp_table(f"lake_{schema}_{name}", data) as rows:
        engine.replace_table(schema, name, exp.select("*").from_(rows))


def _nested(duckdb_type: str) -> bool:
    return _type(duckdb_type).is_type(*exp.DataType.NESTED_TYPES)


def _json(column: str) -> exp.Expr:
    return exp.cast(exp.func("to_json", exp.column(column, quoted=True)), "VARCHAR")


def _listed(processor: LakeProcessor, name: str) -> list[LakeFile]:
    """The listed files of one raw table, oldest first, with absolute paths."""
    base = processor.raw_root.resolve().parent  # a folder, or a prefix in object storage
    rows = processor.fetch_all(
        "SELECT path, file_name, batch_id, source_file, copied, ingested_at, row_count "
        "FROM ops.raw_files WHERE target_table = ? ORDER BY ingested_at, file_name",
        [name],
    )
    return [
        LakeFile(str(_absolute(base, r[0])), r[1], r[2], r[3], bool(r[4]), r[5], int(r[6]))
        for r in rows
    ]


def _superseded(processor: LakeProcessor, name: str) -> set[tuple[str, str]]:
    rows = processor.fetch_all(
        "SELECT batch_id, source_file FROM ops.superseded_files WHERE target_table = ?", [name]
    )
    return {(r[0], r[1]) for r in rows}


def _absolute(base: FilePath, path: str) -> FilePath:
    if isinstance(base, ObjectPath):
        return base / path
    listed = Path(path)
    return listed if listed.is_absolute() else base / listed


def _columns(name: str) -> list[tuple[str, exp.DataType]]:
    """A raw table's columns: the contract's, then the lineage."""
    contract = CONTRACTS[name]
    pairs = [(c.name, c.type) for c in contract.columns] + list(LINEAGE_COLUMNS)
    return [(n, _type(t)) for n, t in pairs]


def _empty(name: str) -> exp.Select:
    """No rows, the raw table's columns and types."""
    nulls = [exp.alias_(exp.cast(exp.null(), t), n, quoted=True) for n, t in _columns(name)]
    return exp.select(*nulls).where(exp.false())


def _lineage(files: list[LakeFile]) -> exp.Expr:
    """The files' lineage as a relation `m`, one row per file."""
    return exp.values(
        [
            (
                _text(f.name),
                _text(f.batch),
                exp.cast(_text(f.source) if f.source is not None else exp.null(), "VARCHAR"),
                exp.cast(_text(str(f.ingested_at)), "TIMESTAMP"),
            )
            for f in files
        ],
        alias="m",
        columns=["file_name", "batch_id", "source_file", "ingested_at"],
    )


def _pair_in(batch: exp.Expr, source: exp.Expr, pairs: set[tuple[str, str]]) -> exp.In:
    """`(batch, source) IN ((b, s), ...)`."""
    return exp.In(
        this=exp.Tuple(expressions=[batch, source]),
        expressions=[exp.Tuple(expressions=[_text(b), _text(s)]) for b, s in sorted(pairs)],
    )


def _int(value: object) -> int:
    assert isinstance(value, int), value
    return value


def _type(duckdb_type: str) -> exp.DataType:
    return exp.DataType.build(duckdb_type, dialect="duckdb")


def _text(value: str) -> exp.Literal:
    return exp.Literal.string(value)
