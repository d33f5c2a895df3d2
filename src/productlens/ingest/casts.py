"""How a source value becomes a contract value: SQL that reads one value exactly, or gives
NULL where the value cannot be read as it was written (the caller turns that NULL into
`bad_type` or `bad_timestamp`). Nothing is rounded, truncated or guessed:

- Times: an explicit offset or zone in the text (`Z`, `+05:30`, `-0800`,
  `America/New_York`) always wins; the configured zone applies to naive times only; the
  same text gives the same instant whatever the file format. A naive time the zone skips
  or repeats when summer time starts or ends names no single instant, so it is not read.
  Epoch numbers are read only when a format says so (`epoch_s`, `epoch_ms`, `epoch_us`,
  `epoch_ns`), as UTC.
  DuckDB's special words (`epoch`, `infinity`) are not times.
- Dates: a date, or a time at exactly midnight; `2026-01-05 10:00` is not a date.
- Integers: digits only (`1.5` is not 2, `0x10` is not 16); a float source must hold a
  whole number.
- Amounts: decimal or scientific notation; `NaN`, `inf` and overflow (`1e309`) are not
  amounts, from text or from a typed file.
- Text from nested values (structs, lists, maps, JSON) is JSON, never DuckDB's own
  struct notation.

Every function returns SQL for DuckDB over a value expression (`value`), typically a
source column; nothing here loops over rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from sqlglot import exp

# Format names besides strptime patterns (which contain `%`).
ISO = "iso"
EPOCH_FACTORS = {"epoch_s": 1_000_000, "epoch_ms": 1_000, "epoch_us": 1, "epoch_ns": None}
FORMAT_NAMES = (ISO, *EPOCH_FACTORS)

INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                 "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT")  # fmt: skip
FLOAT_TYPES = ("FLOAT", "DOUBLE")
TEXT_TYPES = ("VARCHAR", "JSON")
# Time types that always read as a TIMESTAMP (nanoseconds may not be whole microseconds).
SAFE_TIMES = ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S", "TIMESTAMP_MS", "DATE")
NAIVE_TIMES = ("TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "DATE")
# A whole number, or a decimal / scientific number, as text (surrounding blanks allowed,
# as every reader trims them; nothing else is).
INTEGER_TEXT = r"\s*[+-]?\d+\s*"
NUMBER_TEXT = r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*"
# Seconds with a non-zero digit finer than a microsecond (`10:00:00.1234567`).
FINER = r":\d\d[.,]\d{6}\d*[1-9]"


@lru_cache(maxsize=4096)
def literal(value: str) -> str:
    """A string literal, quoted by SQLGlot."""
    return exp.Literal.string(value).sql("duckdb")


def is_numeric(source_type: str) -> bool:
    return source_type in INTEGER_TYPES or source_type in FLOAT_TYPES or _is_decimal(source_type)


def _is_decimal(source_type: str) -> bool:
    return source_type.startswith("DECIMAL")


def is_nested(source_type: str) -> bool:
    """STRUCT(...), MAP(...), LIST (`T[]`), arrays (`T[3]`), UNION or JSON."""
    return (
        source_type.startswith(("STRUCT", "MAP", "UNION"))
        or source_type.endswith("]")
        or source_type == "JSON"
    )


def as_text(value: str, source_type: str) -> str:
    """A source value as VARCHAR: text as it is, nested values as JSON."""
    if source_type == "VARCHAR":
        return value
    if is_nested(source_type):
        return f"CAST(to_json({value}) AS VARCHAR)"
    return f"CAST({value} AS VARCHAR)"


def as_integer(value: str, source_type: str, target: str = "INTEGER") -> str:
    if source_type in TEXT_TYPES:
        return (
            f"CASE WHEN regexp_full_match({value}, {literal(INTEGER_TEXT)}) "
            f"THEN TRY_CAST({value} AS {target}) END"
        )
    if source_type in INTEGER_TYPES:
        return f"TRY_CAST({value} AS {target})"
    if source_type in FLOAT_TYPES or _is_decimal(source_type):
        return f"CASE WHEN {value} = trunc({value}) THEN TRY_CAST({value} AS {target}) END"
    return f"CAST(NULL AS {target})"  # booleans, times, nested values: not integers


def as_double(value: str, source_type: str) -> str:
    if source_type in TEXT_TYPES:
        number = f"TRY_CAST({value} AS DOUBLE)"
        return (
            f"CASE WHEN regexp_full_match({value}, {literal(NUMBER_TEXT)}) "
            f"AND isfinite({number}) THEN {number} END"
        )
    if source_type in FLOAT_TYPES:
        return f"CASE WHEN isfinite({value}) THEN CAST({value} AS DOUBLE) END"
    if is_numeric(source_type):
        return f"TRY_CAST({value} AS DOUBLE)"
    return "CAST(NULL AS DOUBLE)"


def _utc(tstz: str) -> str:
    """A TIMESTAMPTZ as the naive UTC timestamp the warehouse stores."""
    return f"timezone('UTC', {tstz})"


def _local(naive: str, zone: str) -> str:
    """A naive timestamp in `zone` as naive UTC; NULL for a local time that does not
    exist (skipped when clocks go forward) or names two instants (repeated when they go
    back), where DuckDB would pick one without a word."""
    if zone == "UTC":
        return naive

    def local(utc: str) -> str:  # naive UTC -> naive local time in `zone`
        return f"timezone({literal(zone)}, timezone('UTC', {utc}))"

    # The zone's offset a day before and a day after `naive` read as UTC (its instant
    # lies between). Equal offsets (the usual case) give the instant at once; around a
    # change of offset, each is tried, and exactly one must read back as `naive`.
    shifted = (f"({naive} {sign} INTERVAL 1 DAY)" for sign in ("-", "+"))
    before, after = (f"({naive} - ({local(t)} - {t}))" for t in shifted)
    ok_before, ok_after = (f"{local(c)} = {naive}" for c in (before, after))
    return (
        f"CASE WHEN {before} = {after} THEN {before} "
        f"WHEN {ok_before} AND {ok_after} THEN NULL "
        f"WHEN {ok_before} THEN {before} WHEN {ok_after} THEN {after} END"
    )


def _starts_with_digit(text: str) -> str:
    # Keeps DuckDB's special words ('epoch', 'infinity', 'allballs') from reading as times.
    return f"regexp_matches({text}, '^\\s*\\d')"


# An offset no zone has (beyond +-14 hours) or with 60 minutes or more: DuckDB would add it
# all the same (`+25:00` moves the time back a day).
NO_OFFSET = r":\d{2}(\.\d+)?\s*[+-]((1[5-9]|[2-9]\d)(:?\d{2})?|\d{2}:?[6-9]\d)\s*$"


def _iso(text: str, zone: str) -> str:
    """ISO-8601 (and DuckDB's usual forms): an offset or zone name in the text wins;
    a naive time is in `zone`."""
    aware = _utc(f"TRY_CAST({text} AS TIMESTAMPTZ)")
    # DuckDB keeps microseconds and cuts finer digits: such a time is refused, not cut.
    readable = (
        f"{_starts_with_digit(text)} AND NOT regexp_matches({text}, {literal(FINER)}) "
        f"AND NOT regexp_matches({text}, {literal(NO_OFFSET)})"
    )
    if zone == "UTC":
        return f"CASE WHEN {readable} THEN {aware} END"
    # Text that still reads as a time with " UTC" appended names no zone of its own;
    # nor does a date without a time.
    naive = (
        f"(TRY_CAST(trim({text}) || ' UTC' AS TIMESTAMPTZ) IS NOT NULL "
        f"OR NOT contains({text}, ':'))"
    )
    local = _local(f"TRY_CAST({text} AS TIMESTAMP)", zone)
    return f"CASE WHEN NOT ({readable}) THEN NULL WHEN {naive} THEN {local} ELSE {aware} END"


def _epoch(value: str, source_type: str, fmt: str) -> str:
    """Seconds, milliseconds, microseconds or nanoseconds since 1970-01-01 UTC, from
    digits or a number; a value finer than a microsecond is refused, not rounded (a
    float is rounded to the microsecond, its own precision being coarser)."""
    factor = EPOCH_FACTORS[fmt]
    if source_type in TEXT_TYPES:
        number = (
            f"CASE WHEN regexp_full_match({value}, {literal(NUMBER_TEXT)}) "
            f"THEN TRY_CAST({value} AS DECIMAL(38, 9)) END"
        )
    elif source_type in FLOAT_TYPES:
        number = f"CASE WHEN isfinite({value}) THEN {value} END"
    elif is_numeric(source_type):
        number = f"CAST({value} AS DECIMAL(38, 9))"
    else:
        return "CAST(NULL AS TIMESTAMP)"
    if factor is None:  # nanoseconds: must come to whole microseconds
        whole = f"({number}) % 1000 = 0"
        micros = f"CAST(({number}) AS HUGEINT) // 1000"
    else:
        micros = f"({number}) * {factor}"
        if source_type in FLOAT_TYPES:
            micros = f"round({micros})"
        whole = f"{micros} = trunc({micros})"
    return f"CASE WHEN {whole} THEN try(make_timestamp(TRY_CAST({micros} AS BIGINT))) END"


def _strptime(text: str, fmt: str, zone: str) -> str:
    parsed = f"try_strptime({text}, {literal(fmt)})"
    if "%z" in fmt or "%Z" in fmt:
        return _utc(parsed)
    return _local(parsed, zone)


def as_timestamp(value: str, source_type: str, formats: Sequence[str], zone: str) -> str:
    """A source value as a naive UTC TIMESTAMP (see the module docstring)."""
    epochs = [f for f in formats if f in EPOCH_FACTORS]
    if source_type == "TIMESTAMP WITH TIME ZONE":
        return _utc(value)
    if source_type == "TIMESTAMP_NS":
        whole = f"epoch_ns({value}) % 1000 = 0"
        return f"CASE WHEN {whole} THEN {_local(f'CAST({value} AS TIMESTAMP)', zone)} END"
    if source_type in NAIVE_TIMES:
        return _local(f"CAST({value} AS TIMESTAMP)", zone)
    if is_numeric(source_type):
        parts = [_epoch(value, source_type, f) for f in epochs]
    elif source_type in TEXT_TYPES:
        parts = []
        for fmt in formats or (ISO,):
            if fmt == ISO:
                parts.append(_iso(value, zone))
            elif fmt in EPOCH_FACTORS:
                parts.append(_epoch(value, source_type, fmt))
            else:
                parts.append(_strptime(value, fmt, zone))
    else:
        parts = []
    if not parts:
        return "CAST(NULL AS TIMESTAMP)"
    parsed = parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"
    return f"CAST({parsed} AS TIMESTAMP)"


def as_date(value: str, source_type: str, formats: Sequence[str]) -> str:
    """A source value as a DATE: a date, or a time at exactly midnight (no zone applies
    to a calendar date; a time with an offset is a date only at midnight UTC)."""
    if source_type == "DATE":
        return value
    ts = as_timestamp(value, source_type, formats, "UTC")
    return f"CASE WHEN {ts} = date_trunc('day', {ts}) THEN CAST({ts} AS DATE) END"


def typed(
    value: str, source_type: str, target: str, formats: Sequence[str] = (), zone: str = "UTC"
) -> str:
    """SQL reading `value` (of DuckDB type `source_type`) as the contract type `target`,
    NULL where it cannot be read exactly."""
    if target == "VARCHAR":
        return as_text(value, source_type)
    if target == "TIMESTAMP":
        return as_timestamp(value, source_type, formats, zone)
    if target == "DATE":
        return as_date(value, source_type, formats)
    if target in ("INTEGER", "BIGINT"):
        return as_integer(value, source_type, target)
    if target == "DOUBLE":
        return as_double(value, source_type)
    raise ValueError(f"no rule to read a contract column of type {target}")


def can_fail(source_type: str, target: str, zone: str = "UTC") -> bool:
    """Whether reading a source value as `target` can give NULL for a present value (so
    the row needs the bad_type / bad_timestamp check)."""
    if target == "VARCHAR":
        return False
    if target == "DOUBLE":
        return True  # NaN and infinities are refused even from DOUBLE columns
    if target == "TIMESTAMP" and source_type in SAFE_TIMES:
        # A naive time in a zone with summer time may not exist, or exist twice.
        return zone != "UTC" and source_type in NAIVE_TIMES
    if target == "DATE" and source_type == "DATE":
        return False
    return not (target == source_type and target in INTEGER_TYPES)
