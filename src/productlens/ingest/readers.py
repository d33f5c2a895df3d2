"""Reading source files as one relation of source rows, exactly as the files say.

Parquet files are read in place (`read_parquet`). CSV, TSV and JSON Lines files (plain, or
compressed as `.gz` or `.zst`; UTF-8 or a declared encoding) are read up front, line by
line, into a temporary table, with every value as the text the file holds:

- Rows are numbered by the physical line they start on (the first line of a file is 1, so a
  CSV file's first data row is line 2); blank lines hold no row but are counted.
- A CSV record is a line, or several lines while a quote is open. It parses when it is
  fields separated by the delimiter, each either unquoted (no quote, no line break) or
  quoted (doubled quotes inside), and has as many fields as the header. Values are never
  altered: `""` is an empty text, an empty unquoted field is missing (NULL). A record of
  several lines that does not parse is read again line by line, so one unterminated quote
  costs its own line only.
- A JSON Lines line parses when it is one JSON object. Strings are read unquoted, integers
  keep their digits however long, other numbers keep their text too (`1.50`, `1E2`, `-0`;
  see MAY_HOLD_FLOAT), `true`/`false` stay words, `null` is missing, objects and arrays are
  kept as JSON text. Each row also keeps its line, so keys folded into `properties` keep
  their JSON types (see mapping.fold).
- A line that does not parse is kept as a row whose `malformed` column holds its text; the
  checks quarantine it as `malformed_line` with that text.

The reader's own columns (source file, line, malformed text) get names no source column
has, so a source column named `filename` or `__line` is data like any other.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import glob
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from sqlglot import exp

from productlens.config import TableIngestConfig
from productlens.errors import EngineError, IngestError, UnreadableFile
from productlens.ingest.batch import files_text
from productlens.ingest.contracts import Contract
from productlens.ingest.mapping import json_key
from productlens.ingest.processor import LakeProcessor
from productlens.ingest.sql import aliased, col, fill, query, string, text_list
from productlens.ingest.sql import ident as sql_ident
from productlens.ingest.store import ParquetFile, inspect_parquet
from productlens.ingest.validate import Source
from productlens.objects import FilePath, ObjectPath, ObjectStore, input_stream, is_url

# File name endings (in any case) -> format; a text format may be compressed besides.
FORMATS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}
DELIMITERS = {"tsv": "\t"}  # formats whose delimiter is fixed (CSV's is configured)
# The reader's own columns, renamed with more leading underscores until no source column
# has the name.
FILE_COLUMN, LINE_COLUMN, MALFORMED_COLUMN = "_pl_file", "_pl_line", "_pl_malformed"
# JSON Lines: each row's line as it was read, for keys kept whole as JSON (see mapping.fold)
JSON_COLUMN = "_pl_json"
CHUNK = 1 << 24  # bytes decoded at a time when a file is converted to plain UTF-8
BOM = "\ufeff"
GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class FileKind:
    """How a file is read: its format and its compression (None: plain)."""

    format: str
    compression: str | None = None


def file_kind(path: FilePath) -> FileKind | None:
    """The format of a file by its name (`a.CSV`, `b.jsonl.gz`), None if unsupported."""
    name = path.name.lower()
    compression = None
    for ending, codec in COMPRESSIONS.items():
        if name.endswith(ending):
            name, compression = name.removesuffix(ending), codec
    fmt = FORMATS.get(Path(name).suffix)
    if fmt is None or (fmt == "parquet" and compression):
        return None
    return FileKind(fmt, compression)


def base_name(path: FilePath) -> str:
    """A file's name without its format and compression endings (`users.csv.gz` -> users)."""
    name = path.name
    for ending in COMPRESSIONS:
        if name.lower().endswith(ending):
            name = name[: -len(ending)]
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and f".{suffix.lower()}" in FORMATS else name


@dataclass
class Expanded:
    """The files to load, and the files in folders that were passed over."""

    files: list[FilePath] = field(default_factory=list)
    ignored: list[FilePath] = field(default_factory=list)


def expand(paths: Iterable[FilePath | str], objects: ObjectStore | None = None) -> Expanded:
    """Files named directly, found under folders, or matched by globs, in a stable order;
    a file named twice (say, by a folder and by name) counts once. A file named directly
    must be of a supported type; in a folder, other files (the simulator's truth.json, a
    README, _SUCCESS or .DS_Store) are passed over and listed, never silently. An
    `s3://bucket/key` URL names an object, a prefix (a folder) or a pattern in `objects`."""
    result = Expanded()
    for raw in paths:
        path = _as_path(raw, objects)
        if isinstance(path, ObjectPath) and GLOB_CHARS.intersection(path.key):
            matches: list[FilePath] = list(path.glob_matches())
            if not matches:
                raise IngestError("no object matches the pattern", file=raw)
            result.files += matches
        elif path.is_dir():
            found: list[FilePath] = list(path.rglob("*"))
            for p in sorted((q for q in found if q.is_file()), key=str):
                (result.files if file_kind(p) else result.ignored).append(p)
        elif path.is_file():
            result.files.append(path)
        elif isinstance(path, ObjectPath):
            path.check_bucket()
            raise IngestError("no such object or prefix", file=raw)
        else:
            local = sorted(Path(m) for m in glob.glob(str(raw), recursive=True))
            if not local:
                raise IngestError("no such file or folder", file=raw)
            result.files += [m for m in local if m.is_file()]
    for p in result.files:
        if not file_kind(p):
            raise IngestError(
                f"unsupported file type (supported: {', '.join(FORMATS)}, the text formats "
                f"also compressed as {', '.join(COMPRESSIONS)}; in any case)",
                file=p,
            )
    first: dict[FilePath, FilePath] = {}
    for path in result.files:
        first.setdefault(path.resolve(), path)
    result.files = list(first.values())
    return result


def _as_path(raw: FilePath | str, objects: ObjectStore | None) -> FilePath:
    if not isinstance(raw, str):
        return raw
    if not is_url(raw):
        return Path(raw)
    if objects is None:
        raise IngestError("s3:// URLs need an object store; none is configured", file=raw)
    return objects.path(raw)


@dataclass
class Reading:
    """Files of one format read for one table: the source rows, and what to clean up."""

    source: Source
    footers: list[ParquetFile] = field(default_factory=list)
    temporary: list[str] = field(default_factory=list)  # temp tables to drop when done

    def close(self, lake: LakeProcessor) -> None:
        for table in self.temporary:
            lake.execute(fill("DROP TABLE IF EXISTS __table__", table=exp.to_table(table)))
        self.temporary.clear()


def read_files(
    lake: LakeProcessor,
    files: Sequence[FilePath],
    fmt: str,
    settings: TableIngestConfig,
    contract: Contract,
) -> Reading:
    """Read (text) or inspect (Parquet) every file of one batch; a file that cannot be read
    is named in an IngestError."""
    if fmt == "parquet":
        return _parquet_reading(lake, files, contract)
    reading = Reading(Source(exp.null(), {}, exp.null(), exp.null()))
    try:
        reading.source = _text_source(lake, files, fmt, settings, contract.table, reading.temporary)
    except EngineError as exc:
        reading.close(lake)
        raise IngestError(f"cannot read the file: {exc.message}", file=files_text(files)) from None
    except BaseException:
        reading.close(lake)
        raise
    return reading


# --- Parquet ------------------------------------------------------------------------------


def _parquet_reading(lake: LakeProcessor, files: Sequence[FilePath], contract: Contract) -> Reading:
    footers = inspect_parquet(lake, files, contract)
    names = [str(p.resolve()) for p in files]
    if footers and footers[0].columns and all(f.columns == footers[0].columns for f in footers):
        columns = dict(footers[0].columns)  # what DESCRIBE would say, without reading again
    else:  # described without the reader's columns, which could meet the files' own
        relation = fill(
            "SELECT * FROM read_parquet(__files__, union_by_name = true, "
            "hive_partitioning = false)",
            files=text_list(names),
        )
        columns = _describe(lake, relation, files)
    return Reading(parquet_source(names, columns), footers)


def parquet_relation(names: Sequence[str], columns: Iterable[str]) -> exp.Expr:
    """Parquet files (absolute paths) as one relation (a subquery) with the file and the
    row number (1-based) in reader columns named apart from `columns`."""
    file_col, line_col = _internal_names(columns, (FILE_COLUMN, LINE_COLUMN))
    if "file_row_number" not in {c.lower() for c in columns}:
        return query(
            "SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS __line__ "
            "FROM read_parquet(__files__, filename = __file__, "
            "file_row_number = true, union_by_name = true, hive_partitioning = false)",
            line=sql_ident(line_col), files=text_list(names), file=file_col,
        ).subquery()  # fmt: skip
    # The files have a column of that name: number each file's rows in scan order.
    parts: list[exp.Query] = [
        query(
            "SELECT *, row_number() OVER () AS __line__ FROM read_parquet("
            "__name__, filename = __file__, hive_partitioning = false)",
            line=sql_ident(line_col),
            name=n,
            file=file_col,
        )
        for n in names
    ]
    union: exp.Query = parts[0]
    for part in parts[1:]:  # UNION ALL BY NAME, left to right
        union = exp.Union(this=union, expression=part, distinct=False, by_name=True)
    return union.subquery()


def parquet_source(names: Sequence[str], columns: Mapping[str, str]) -> Source:
    """Parquet files (absolute paths) as a source of rows."""
    file_col, line_col = _internal_names(columns, (FILE_COLUMN, LINE_COLUMN))
    return Source(
        parquet_relation(names, columns), columns, col(file_col, "src"), col(line_col, "src")
    )


def _describe(lake: LakeProcessor, query: exp.Expr, files: Sequence[FilePath]) -> dict[str, str]:
    try:
        rows = lake.fetch_all(fill("DESCRIBE __query__", query=query))
    except EngineError as exc:
        raise IngestError(f"cannot read the file: {exc.message}", file=files_text(files)) from None
    return {r[0]: r[1] for r in rows}


# --- text files ---------------------------------------------------------------------------

# A text file DuckDB cannot read as it is gets a plain UTF-8 copy in a folder of the
# system's temporary directory named for the process (`productlens-reader-<pid>-...`): a
# process killed mid-read leaves its folder behind, and the next ingest removes the folders
# of processes that are gone (`sweep_copies`).
COPIES_PREFIX = "productlens-reader-"
_COPIES_NAME = re.compile(rf"^{re.escape(COPIES_PREFIX)}(\d+)-")


@contextlib.contextmanager
def copies_dir() -> Iterator[Path]:
    """A temporary folder for this process's copies, removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix=f"{COPIES_PREFIX}{os.getpid()}-") as tmp:
        yield Path(tmp)


def sweep_copies() -> list[Path]:
    """Remove the copy folders that killed processes left in the temporary directory (their
    pid is no longer running); returns the folders removed. A folder of a live process, or
    of another user's, is left alone."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{COPIES_PREFIX}*"):
        named = _COPIES_NAME.match(folder.name)
        if named is None or not folder.is_dir() or _alive(int(named.group(1))):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    """Whether a process with this id runs (another user's counts: it may not be ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _text_source(
    lake: LakeProcessor,
    files: Sequence[FilePath],
    fmt: str,
    settings: TableIngestConfig,
    table: str,
    temporary: list[str],
) -> Source:
    tag = uuid.uuid4().hex[:8]
    lines = f"__pl_lines_{tag}"
    rows = f"__pl_rows_{tag}"
    temporary += [lines, rows]
    lake.execute(
        fill("CREATE TEMP TABLE __lines__ (f VARCHAR, n BIGINT, text VARCHAR)", lines=_t(lines))
    )
    with copies_dir() as tmp:
        for i, path in enumerate(files):
            plain = _plain(path, settings.encoding, table, Path(tmp) / f"{i}.txt")
            try:
                lake.execute(
                    fill(
                        "INSERT INTO __lines__ SELECT __file__, generate_subscripts(l, 1), "
                        "unnest(l) FROM (SELECT string_split(content, chr(10)) AS l "
                        "FROM read_text(__plain__))",
                        lines=_t(lines),
                        file=str(path.resolve()),
                        plain=str(plain),
                    )
                )
            except EngineError as exc:
                raise UnreadableFile(_unreadable(exc.message, settings, table), file=path) from None
            if plain != path:
                plain.unlink()
    # A byte order mark before the first line is no part of it.
    lake.execute(
        fill(
            "UPDATE __lines__ SET text = substr(text, 2) "
            "WHERE n = 1 AND starts_with(text, chr(65279))",
            lines=_t(lines),
        )
    )
    if fmt == "jsonl":
        columns = _json_rows(lake, lines, rows, files)
    else:
        delimiter = DELIMITERS.get(fmt, settings.delimiter)
        columns = _csv_rows(lake, lines, rows, files, delimiter)
    lake.execute(fill("DROP TABLE __lines__", lines=_t(lines)))
    file_col, line_col, bad_col, json_col = _internal_names(
        columns, (FILE_COLUMN, LINE_COLUMN, MALFORMED_COLUMN, JSON_COLUMN)
    )
    return Source(
        exp.to_table(rows),
        dict.fromkeys(columns, "VARCHAR"),
        col(file_col, "src"),
        col(line_col, "src"),
        malformed=bad_col,
        json_column=json_col if fmt == "jsonl" else None,
    )


def _unreadable(message: str, settings: TableIngestConfig, table: str) -> str:
    if "UTF-8" in message:
        return (
            f"cannot read the file as {settings.encoding}: it holds bytes that are no text in "
            f"that encoding ({_declare(table)})"
        )
    return f"cannot read the file: {message}"


def _declare(table: str) -> str:
    return f'declare the encoding with [ingest.tables.{table}] encoding = "..."'


def _plain(path: FilePath, encoding: str, table: str, target: Path) -> FilePath:
    """The file itself if DuckDB can read it as text as it is (plain UTF-8); otherwise a
    plain UTF-8 copy of it, decompressed and decoded in chunks."""
    kind = file_kind(path) or FileKind("csv")
    utf8 = codecs.lookup(encoding).name == "utf-8"
    # DuckDB would take *, ? and [ in a name as a pattern: such a file is copied first
    if kind.compression is None and utf8 and not GLOB_CHARS.intersection(str(path)):
        return path
    # utf-16 and utf-32 read their byte order mark; for UTF-8 it is dropped later
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    done = 0
    try:
        with (
            input_stream(path, kind.compression) as src,
            target.open("w", encoding="utf-8", newline="") as out,
        ):
            while True:
                chunk = src.read(CHUNK)
                out.write(decoder.decode(chunk, final=not chunk))
                done += len(chunk)
                if not chunk:
                    break
    except UnicodeDecodeError as exc:
        raise UnreadableFile(
            f"cannot read the file as {encoding}: byte {done + exc.start + 1} is no text in "
            f"that encoding ({_declare(table)})",
            file=path,
        ) from None
    except (OSError, pa.ArrowException) as exc:
        what = f"{kind.compression} data" if kind.compression else "the file"
        raise UnreadableFile(f"cannot read {what}: {exc}", file=path) from None
    return target


def _internal_names(columns: Iterable[str], names: Sequence[str]) -> list[str]:
    """The reader's column names, each with leading underscores added until no source
    column (in any case) has it."""
    taken = {c.lower() for c in columns}
    result = []
    for base in names:
        name = base
        while name.lower() in taken:
            name = "_" + name
        result.append(name)
    return result


def _t(name: str) -> exp.Table:
    """One of the reader's temporary tables (internal names, unquoted as before)."""
    return exp.to_table(name)


def _strip_cr(value: exp.Expr) -> exp.Expr:
    """A line without the carriage return of a CRLF line ending."""
    # `value[:-2]` built, not parsed: SQLGlot's parser takes no slice without a start.
    cut = exp.Bracket(this=value.copy(), expressions=[exp.Slice(expression=exp.Literal.number(-2))])
    return fill("CASE WHEN suffix(__v__, chr(13)) THEN __cut__ ELSE __v__ END", v=value, cut=cut)


# Exact number text in JSON: DuckDB reads a non-integer number as a double (1.50 -> 1.5),
# and -0 as 0. On lines that may hold one (a quick test, never missing one), every such
# number outside strings is first turned into a string marked with chr(1), so its text survives;
# the mark is taken off again after reading. A line already holding chr(1) to chr(3) or
# the escape \u0001 is read unmarked (its other numbers as doubles): the marks would be
# ambiguous there.
MAY_HOLD_FLOAT = r'"\s*:\s*-?[0-9]+[.eE]|[\[,]\s*-?[0-9]+[.eE]|[:\[,]\s*-0\b'
STRING_OR_FLOAT = (
    r'("(?:[^"\\]|\\.)*")|(-?[0-9]+(?:\.[0-9]+(?:[eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+)|-0\b)'
)
UNSAFE_TO_MARK = r"[\x01-\x03]|\\u0001"
MARKED_IN_JSON = r'"\\u0001([^"]*)"'


def _marked(text: exp.Expr) -> exp.Expr:
    """A JSON text with every non-integer number outside strings as a marked string."""
    # strings come out followed by chr(2) chr(3) (dropped again), numbers between them
    return fill(
        r"""replace(replace(replace(regexp_replace(__json__, __pattern__, """
        r"""'\1' || chr(2) || '\2' || chr(3), 'g'), chr(2) || chr(3), ''), chr(2), '"\u0001'), """
        r"""chr(3), '"')""",
        json=text,
        pattern=STRING_OR_FLOAT,
    )


def _unmarked(value: exp.Expr) -> exp.Expr:
    """A value read from a marked line, with its numbers' text restored."""
    return fill(
        r"""CASE WHEN starts_with(__v__, chr(1)) THEN substr(__v__, 2) """
        r"""WHEN contains(__v__, '\u0001') THEN regexp_replace(__v__, __pattern__, '\1', 'g') """
        r"""ELSE __v__ END""",
        v=value,
        pattern=MARKED_IN_JSON,
    )


def _json_rows(lake: LakeProcessor, lines: str, rows: str, files: Sequence[FilePath]) -> list[str]:
    """JSON Lines: one row per non-blank line; the keys of all objects are the columns."""
    # Read twice rather than kept twice: once for the keys, once for the values. An object
    # with a key twice is no row: keeping either value would drop the other in silence.
    checked = query(
        "SELECT f, n, text, CASE WHEN json_valid(text) THEN json_type(text) = 'OBJECT' AND "
        "len(json_keys(text)) = len(list_distinct(json_keys(text))) ELSE "
        "FALSE END AS ok FROM (SELECT f, n, __stripped__ AS text FROM __lines__) "
        "WHERE trim(text) <> ''",
        stripped=_strip_cr(exp.column("text")),
        lines=_t(lines),
    )
    _check_some_object(lake, checked)
    keys = [
        r[0]
        for r in lake.fetch_all(
            fill(
                "SELECT k FROM (SELECT DISTINCT unnest(json_keys(text)) AS k FROM __checked__ "
                "WHERE ok) ORDER BY k",
                checked=checked.subquery(),
            )
        )
    ]
    check_names(keys, files)
    file_col, line_col, bad_col, json_col = _internal_names(
        keys, (FILE_COLUMN, LINE_COLUMN, MALFORMED_COLUMN, JSON_COLUMN)
    )
    # Every key as VARCHAR: strings unquoted, other values as JSON text. (The shape is a
    # value: JSON text, made a string literal.)
    shape = "{" + ", ".join(f'{json_key(k)}: "VARCHAR"' for k in keys) + "}"
    values = (
        fill("json_transform(coalesce(marked, text), __shape__)", shape=shape)
        if keys
        else exp.null()
    )
    picked = []
    for k in keys:
        value = exp.Bracket(this=exp.column("v"), expressions=[string(k)])  # v['key']
        picked.append(
            aliased(
                fill(
                    "CASE WHEN marked IS NULL THEN __v__ ELSE __unmarked__ END",
                    v=value,
                    unmarked=_unmarked(value),
                ),
                k,
            )
        )
    marked = fill(
        "CASE WHEN ok AND regexp_matches(text, __may__) AND NOT "
        "regexp_matches(text, __unsafe__) THEN __marked__ END",
        may=MAY_HOLD_FLOAT,
        unsafe=UNSAFE_TO_MARK,
        marked=_marked(exp.column("text")),
    )
    created = fill(
        "CREATE TEMP TABLE __rows__ AS SELECT f AS __file__, n AS __line__, "
        "CASE WHEN NOT ok THEN text END AS __bad__, CASE WHEN ok THEN text END AS __json__ "
        "FROM (SELECT f, n, ok, text, marked, CASE WHEN ok THEN __values__ END AS v FROM "
        "(SELECT f, n, ok, text, __marked__ AS marked FROM __checked__))",
        rows=_t(rows),
        file=sql_ident(file_col),
        line=sql_ident(line_col),
        bad=sql_ident(bad_col),
        json=sql_ident(json_col),
        values=values,
        marked=marked,
        checked=checked.subquery(),
    )
    _select_of(created).expressions.extend(picked)
    lake.execute(created)
    return keys


def _select_of(statement: exp.Expr) -> exp.Select:
    """The SELECT of a CREATE TABLE ... AS or an INSERT ... SELECT (to add columns to)."""
    select = statement.expression
    if isinstance(select, exp.Table):  # a query put in a table slot (`AS __query__`)
        select = select.this
    assert isinstance(select, exp.Select)
    return select


def _check_some_object(lake: LakeProcessor, checked: exp.Query) -> None:
    """A file none of whose lines is a JSON object is no JSON Lines file (a JSON array or
    a pretty-printed document, say): named as such, not quarantined line by line."""
    rows = lake.fetch_all(
        fill(
            "SELECT f, arg_min(text, n), min(n) FROM __checked__ GROUP BY f "
            "HAVING NOT bool_or(ok) ORDER BY f LIMIT 1",
            checked=checked.subquery(),
        )
    )
    if rows:
        name, text, number = rows[0]
        shown = text if len(text) <= 60 else text[:60] + "..."
        raise UnreadableFile(
            f"not JSON Lines: no line is one JSON object (line {number}: {shown!r}); a JSON "
            "Lines file holds one object per line",
            file=name,
        )


def check_names(names: Sequence[str], files: Sequence[FilePath]) -> None:
    """Column names must not be empty and must differ in more than case: DuckDB's names
    ignore it."""
    seen: dict[str, str] = {}
    for name in names:
        if not name:
            raise IngestError(
                'a key is empty (""), which cannot name a column', file=files_text(files)
            )
        other = seen.setdefault(name.lower(), name)
        if other != name:
            raise IngestError(
                f"the columns {other!r} and {name!r} differ only in case, which SQL cannot "
                "tell apart; rename one",
                file=files_text(files),
            )


def _csv_rows(
    lake: LakeProcessor, lines: str, rows: str, files: Sequence[FilePath], delimiter: str
) -> list[str]:
    """CSV: the header (line 1) names the columns; every record after it is one row."""
    headers = {
        r[0]: _csv_header(lake.path(r[0]), r[1], delimiter)
        for r in lake.fetch_all(fill("SELECT f, text FROM __lines__ WHERE n = 1", lines=_t(lines)))
    }
    for path in files:
        if str(path.resolve()) not in headers:
            raise UnreadableFile(
                "the file is empty: the first line must name the columns", file=path
            )
    columns = list(dict.fromkeys(c for names in headers.values() for c in names))
    check_names(columns, files)
    internal = _internal_names(columns, (FILE_COLUMN, LINE_COLUMN, MALFORMED_COLUMN))
    file_col, line_col, bad_col = (sql_ident(c) for c in internal)
    records = f"{lines}_records"
    dropped = _csv_records(lake, lines, records)
    created = fill(
        "CREATE TEMP TABLE __rows__ (__file__ VARCHAR, __line__ BIGINT, __bad__ VARCHAR)",
        rows=_t(rows),
        file=file_col,
        line=line_col,
        bad=bad_col,
    )
    created.this.expressions.extend(
        exp.ColumnDef(this=sql_ident(c), kind=exp.DataType.build("VARCHAR")) for c in columns
    )
    lake.execute(created)
    try:
        by_header: dict[tuple[str, ...], list[str]] = {}
        for name, header in headers.items():
            by_header.setdefault(tuple(header), []).append(name)
        for shared, names in by_header.items():
            _parse_records(lake, rows, records, shared, delimiter, internal, names)
        _split_broken_records(lake, lines, rows, records, headers, delimiter, internal)
    finally:
        lake.execute(dropped)
    return columns


def _csv_records(lake: LakeProcessor, lines: str, records: str) -> exp.Expr:
    """The records after the header: a line, or several lines while a quote is open (an odd
    number of quotes so far). Blank records hold no row; the line ending's carriage return
    is no part of the record. Returns the statement that drops `records` (a table or a
    view)."""
    odd = fill("""(length(text) - length(replace(text, '"', ''))) % 2""")
    any_odd = lake.fetch_all(
        fill("SELECT bool_or(__odd__ = 1) FROM __lines__ WHERE n > 1", odd=odd, lines=_t(lines))
    )[0][0]
    if any_odd:
        grouped = query(
            "SELECT f, min(n) AS n, count(*) AS k, string_agg(text, chr(10) ORDER BY n) AS text "
            "FROM (SELECT f, n, text, sum(CASE WHEN (opened - odd) % 2 = 0 THEN 1 ELSE 0 END) "
            "OVER (PARTITION BY f ORDER BY n ROWS UNBOUNDED PRECEDING) AS rec FROM (SELECT f, "
            "n, text, odd, sum(odd) OVER (PARTITION BY f ORDER BY n ROWS UNBOUNDED PRECEDING) "
            "AS opened FROM (SELECT f, n, text, __odd__ AS odd FROM __lines__ WHERE n > 1))) "
            "GROUP BY f, rec",
            odd=odd,
            lines=_t(lines),
        )
    else:  # one line, one record: no copy needed
        grouped = query("SELECT f, n, 1 AS k, text FROM __lines__ WHERE n > 1", lines=_t(lines))
    body = query(
        "SELECT f, n, k, __stripped__ AS text FROM __grouped__ "
        "WHERE text <> '' AND text <> chr(13)",
        stripped=_strip_cr(exp.column("text")),
        grouped=grouped.subquery(),
    )
    if any_odd:
        lake.execute(
            fill("CREATE TEMP TABLE __records__ AS __body__", records=_t(records), body=body)
        )
        return fill("DROP TABLE IF EXISTS __records__", records=_t(records))
    lake.execute(fill("CREATE TEMP VIEW __records__ AS __body__", records=_t(records), body=body))
    return fill("DROP VIEW IF EXISTS __records__", records=_t(records))


def _split_broken_records(
    lake: LakeProcessor,
    lines: str,
    rows: str,
    records: str,
    headers: Mapping[str, list[str]],
    delimiter: str,
    internal: Sequence[str],
) -> None:
    """A record of several lines whose quotes do not pair up is read again line by line:
    an unterminated quote then costs its own line, not every line after it. (A record
    quoted well but with the wrong number of fields stays one malformed record.)"""
    file_col, line_col, bad_col = (sql_ident(c) for c in internal)
    d = _re2_char(delimiter)
    field_re = f'("(?:[^"]|"")*"|[^"{d}\\n]*)'
    broken = lake.fetch_all(
        fill(
            "SELECT r.__file__, r.__line__, k.k FROM __rows__ r JOIN __records__ k "
            "ON k.f = r.__file__ AND k.n = r.__line__ WHERE k.k > 1 AND r.__bad__ IS NOT NULL "
            "AND NOT regexp_full_match(k.text, __quoted_well__)",
            file=file_col,
            line=line_col,
            bad=bad_col,
            rows=_t(rows),
            records=_t(records),
            quoted_well=f"{field_re}({d}{field_re})*",
        )
    )
    if not broken:
        return
    spans = f"{records}_spans"
    lake.execute(
        fill("CREATE TEMP TABLE __spans__ (f VARCHAR, n BIGINT, k BIGINT)", spans=_t(spans))
    )
    try:
        lake.execute(
            fill(
                "INSERT INTO __spans__ SELECT * FROM __values__",
                spans=_t(spans),
                values=exp.values([(f, int(n), int(k)) for f, n, k in broken]),
            )
        )
        lake.execute(
            fill(
                "DELETE FROM __rows__ USING __spans__ s WHERE __target__.__file__ = s.f "
                "AND __target__.__line__ = s.n",
                rows=_t(rows),
                spans=_t(spans),
                target=exp.to_identifier(rows),
                file=file_col,
                line=line_col,
            )
        )
        lake.execute(fill("DELETE FROM __records__", records=_t(records)))
        lake.execute(
            fill(
                "INSERT INTO __records__ SELECT l.f, l.n, 1, __stripped__ FROM __lines__ l "
                "JOIN __spans__ s ON l.f = s.f AND l.n BETWEEN s.n AND s.n + s.k - 1 "
                "WHERE l.text <> '' AND l.text <> chr(13)",
                records=_t(records),
                stripped=_strip_cr(exp.column("text", "l")),
                lines=_t(lines),
                spans=_t(spans),
            )
        )
    finally:
        lake.execute(fill("DROP TABLE IF EXISTS __spans__", spans=_t(spans)))
    distinct = fill("SELECT DISTINCT f FROM __records__", records=_t(records))
    for (name,) in lake.fetch_all(distinct):
        _parse_records(lake, rows, records, headers[name], delimiter, internal, [name])


def _parse_records(
    lake: LakeProcessor,
    rows: str,
    records: str,
    header: Sequence[str],
    delimiter: str,
    internal: Sequence[str],
    files: Sequence[str],
) -> None:
    """Parse the records of `files` (which share `header`) into `rows`: each field
    unquoted, or the record's text in the malformed column if it does not parse."""
    file_col, line_col, bad_col = (sql_ident(c) for c in internal)
    fields = [
        aliased(fill("CASE WHEN ok THEN __v__ END", v=_unquoted(exp.column(f"c{i}", "p"))), c)
        for i, c in enumerate(header)
    ]
    inserted = fill(
        "INSERT INTO __rows__ BY NAME SELECT f AS __file__, n AS __line__, "
        "CASE WHEN NOT ok THEN text END AS __bad__ FROM (SELECT f, n, text, p, "
        "p.end = chr(1) AS ok FROM (SELECT f, n, text, regexp_extract(text || chr(1), "
        "__pattern__, __groups__) AS p FROM __records__ WHERE __files__))",
        rows=_t(rows),
        file=file_col,
        line=line_col,
        bad=bad_col,
        pattern=_record_pattern(len(header), delimiter),
        groups=text_list([*(f"c{i}" for i in range(len(header))), "end"]),
        records=_t(records),
        files=exp.column("f").isin(*(string(n) for n in files)),
    )
    _select_of(inserted).expressions.extend(fields)
    lake.execute(inserted)


def _record_pattern(n_fields: int, delimiter: str) -> str:
    """RE2: a whole record of `n_fields` fields, then the sentinel chr(1) as group `end`:
    a record parses exactly when the group holds it."""
    d = _re2_char(delimiter)
    field_re = f'("(?:[^"]|"")*"|[^"{d}\\n]*)'
    return "^" + d.join([field_re] * n_fields) + "(\\x01)$"


def _re2_char(char: str) -> str:
    """One character as an RE2 escape (safe inside and outside a class)."""
    return f"\\x{{{ord(char):x}}}"


def _unquoted(value: exp.Expr) -> exp.Expr:
    """A field's value: quoted -> the text inside, doubled quotes halved; an empty unquoted
    field -> NULL; anything else as it is."""
    return fill(
        """CASE WHEN __v__ = '' THEN NULL WHEN starts_with(__v__, '"') THEN """
        """replace(__v__[2:-2], '""', '"') ELSE __v__ END""",
        v=value,
    )


def _csv_header(path: FilePath, line: str, delimiter: str) -> list[str]:
    """The column names on a CSV file's first line."""
    line = line.removeprefix(BOM).removesuffix("\r")
    if not line.strip():
        raise UnreadableFile("the file is empty: the first line must name the columns", file=path)
    if "\x00" in line:
        raise UnreadableFile(
            "the first line holds NUL bytes: the file is probably UTF-16 or UTF-32 without a "
            'byte order mark; declare its encoding (encoding = "utf-16-le", say, under '
            "[ingest.tables.TABLE])",
            file=path,
        )
    if "\r" in line:
        raise UnreadableFile(
            "the lines end in a bare carriage return (an old Mac export): convert them to "
            "\\n or \\r\\n line endings",
            file=path,
        )
    try:
        header = next(csv.reader([line], delimiter=delimiter, strict=True), [])
    except csv.Error as exc:
        raise UnreadableFile(f"cannot read the header (line 1): {exc}", file=path) from None
    names = [h.strip() for h in header]
    if not names or any(not n for n in names) or len(set(names)) != len(names):
        raise UnreadableFile(
            f"the first line must name every column once, got {header!r}", file=path
        )
    return names
