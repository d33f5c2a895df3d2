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

Every function returns a SQLGlot expression (DuckDB's dialect) over a value expression
(`value`), typically a source column; nothing here loops over rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from productlens.ingest.sql import Type, fill

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


def null_of(target: str) -> exp.Expr:
    """`CAST(NULL AS target)`."""
    return fill("CAST(NULL AS __type__)", type=Type(target))


def as_text(value: exp.Expr, source_type: str) -> exp.Expr:
    """A source value as VARCHAR: text as it is, nested values as JSON."""
    if source_type == "VARCHAR":
        return value
    if is_nested(source_type):
        return fill("CAST(to_json(__v__) AS VARCHAR)", v=value)
    return fill("CAST(__v__ AS VARCHAR)", v=value)


def as_integer(value: exp.Expr, source_type: str, target: str = "INTEGER") -> exp.Expr:
    t = Type(target)
    if source_type in TEXT_TYPES:
        return fill(
            "CASE WHEN regexp_full_match(__v__, __pattern__) THEN TRY_CAST(__v__ AS __t__) END",
            v=value, pattern=INTEGER_TEXT, t=t,
        )  # fmt: skip
    if source_type in INTEGER_TYPES:
        return fill("TRY_CAST(__v__ AS __t__)", v=value, t=t)
    if source_type in FLOAT_TYPES or _is_decimal(source_type):
        return fill(
            "CASE WHEN __v__ = trunc(__v__) THEN TRY_CAST(__v__ AS __t__) END", v=value, t=t
        )
    return null_of(target)  # booleans, times, nested values: not integers


def as_double(value: exp.Expr, source_type: str) -> exp.Expr:
    if source_type in TEXT_TYPES:
        return fill(
            "CASE WHEN regexp_full_match(__v__, __pattern__) "
            "AND isfinite(TRY_CAST(__v__ AS DOUBLE)) THEN TRY_CAST(__v__ AS DOUBLE) END",
            v=value, pattern=NUMBER_TEXT,
        )  # fmt: skip
    if source_type in FLOAT_TYPES:
        return fill("CASE WHEN isfinite(__v__) THEN CAST(__v__ AS DOUBLE) END", v=value)
    if is_numeric(source_type):
        return fill("TRY_CAST(__v__ AS DOUBLE)", v=value)
    return null_of("DOUBLE")


def _utc(tstz: exp.Expr) -> exp.Expr:
    """A TIMESTAMPTZ as the naive UTC timestamp the warehouse stores."""
    return fill("timezone('UTC', __v__)", v=tstz)


def _local(naive: exp.Expr, zone: str) -> exp.Expr:
    """A naive timestamp in `zone` as naive UTC; NULL for a local time that does not
    exist (skipped when clocks go forward) or names two instants (repeated when they go
    back), where DuckDB would pick one without a word."""
    if zone == "UTC":
        return naive

    def local(utc: exp.Expr) -> exp.Expr:  # naive UTC -> naive local time in `zone`
        return fill("timezone(__zone__, timezone('UTC', __v__))", zone=zone, v=utc)

    # The zone's offset a day before and a day after `naive` read as UTC (its instant
    # lies between). Equal offsets (the usual case) give the instant at once; around a
    # change of offset, each is tried, and exactly one must read back as `naive`.
    shifted = (
        fill("(__v__ - INTERVAL 1 DAY)", v=naive),
        fill("(__v__ + INTERVAL 1 DAY)", v=naive),
    )
    before, after = (fill("(__v__ - (__l__ - __t__))", v=naive, l=local(t), t=t) for t in shifted)
    ok_before, ok_after = (fill("__l__ = __v__", l=local(c), v=naive) for c in (before, after))
    return fill(
        "CASE WHEN __before__ = __after__ THEN __before__ "
        "WHEN __ok_before__ AND __ok_after__ THEN NULL "
        "WHEN __ok_before__ THEN __before__ WHEN __ok_after__ THEN __after__ END",
        before=before, after=after, ok_before=ok_before, ok_after=ok_after,
    )  # fmt: skip


def _starts_with_digit(text: exp.Expr) -> exp.Expr:
    # Keeps DuckDB's special words ('epoch', 'infinity', 'allballs') from reading as times.
    return fill(r"regexp_matches(__v__, '^\s*\d')", v=text)


# An offset no zone has (beyond +-14 hours) or with 60 minutes or more: DuckDB would add it
# all the same (`+25:00` moves the time back a day).
NO_OFFSET = r":\d{2}(\.\d+)?\s*[+-]((1[5-9]|[2-9]\d)(:?\d{2})?|\d{2}:?[6-9]\d)\s*$"


def _iso(text: exp.Expr, zone: str) -> exp.Expr:
    """ISO-8601 (and DuckDB's usual forms): an offset or zone name in the text wins;
    a naive time is in `zone`."""
    aware = _utc(fill("TRY_CAST(__v__ AS TIMESTAMPTZ)", v=text))
    # DuckDB keeps microseconds and cuts finer digits: such a time is refused, not cut.
    readable = fill(
        "__digit__ AND NOT regexp_matches(__v__, __finer__) "
        "AND NOT regexp_matches(__v__, __no_offset__)",
        digit=_starts_with_digit(text), v=text, finer=FINER, no_offset=NO_OFFSET,
    )  # fmt: skip
    if zone == "UTC":
        return fill("CASE WHEN __readable__ THEN __aware__ END", readable=readable, aware=aware)
    # Text that still reads as a time with " UTC" appended names no zone of its own;
    # nor does a date without a time.
    naive = fill(
        "(TRY_CAST(trim(__v__) || ' UTC' AS TIMESTAMPTZ) IS NOT NULL OR NOT contains(__v__, ':'))",
        v=text,
    )
    local = _local(fill("TRY_CAST(__v__ AS TIMESTAMP)", v=text), zone)
    return fill(
        "CASE WHEN NOT (__readable__) THEN NULL WHEN __naive__ THEN __local__ ELSE __aware__ END",
        readable=readable, naive=naive, local=local, aware=aware,
    )  # fmt: skip


def _epoch(value: exp.Expr, source_type: str, fmt: str) -> exp.Expr:
    """Seconds, milliseconds, microseconds or nanoseconds since 1970-01-01 UTC, from
    digits or a number; a value finer than a microsecond is refused, not rounded (a
    float is rounded to the microsecond, its own precision being coarser)."""
    factor = EPOCH_FACTORS[fmt]
    if source_type in TEXT_TYPES:
        number = fill(
            "CASE WHEN regexp_full_match(__v__, __pattern__) "
            "THEN TRY_CAST(__v__ AS DECIMAL(38, 9)) END",
            v=value, pattern=NUMBER_TEXT,
        )  # fmt: skip
    elif source_type in FLOAT_TYPES:
        number = fill("CASE WHEN isfinite(__v__) THEN __v__ END", v=value)
    elif is_numeric(source_type):
        number = fill("CAST(__v__ AS DECIMAL(38, 9))", v=value)
    else:
        return null_of("TIMESTAMP")
    if factor is None:  # nanoseconds: must come to whole microseconds
        whole = fill("(__n__) % 1000 = 0", n=number)
        micros = fill("CAST((__n__) AS HUGEINT) // 1000", n=number)
    else:
        micros = fill("(__n__) * __factor__", n=number, factor=factor)
        if source_type in FLOAT_TYPES:
            micros = fill("round(__m__)", m=micros)
        whole = fill("__m__ = trunc(__m__)", m=micros)
    return fill(
        "CASE WHEN __whole__ THEN try(make_timestamp(TRY_CAST(__micros__ AS BIGINT))) END",
        whole=whole, micros=micros,
    )  # fmt: skip


def _strptime(text: exp.Expr, fmt: str, zone: str) -> exp.Expr:
    parsed = fill("try_strptime(__v__, __fmt__)", v=text, fmt=fmt)
    if "%z" in fmt or "%Z" in fmt:
        return _utc(parsed)
    return _local(parsed, zone)


def as_timestamp(value: exp.Expr, source_type: str, formats: Sequence[str], zone: str) -> exp.Expr:
    """A source value as a naive UTC TIMESTAMP (see the module docstring)."""
    epochs = [f for f in formats if f in EPOCH_FACTORS]
    if source_type == "TIMESTAMP WITH TIME ZONE":
        return _utc(value)
    if source_type == "TIMESTAMP_NS":
        local = _local(fill("CAST(__v__ AS TIMESTAMP)", v=value), zone)
        return fill("CASE WHEN epoch_ns(__v__) % 1000 = 0 THEN __local__ END", v=value, local=local)
    if source_type in NAIVE_TIMES:
        return _local(fill("CAST(__v__ AS TIMESTAMP)", v=value), zone)
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
        return null_of("TIMESTAMP")
    parsed = parts[0] if len(parts) == 1 else exp.Coalesce(this=parts[0], expressions=parts[1:])
    return fill("CAST(__v__ AS TIMESTAMP)", v=parsed)


def as_date(value: exp.Expr, source_type: str, formats: Sequence[str]) -> exp.Expr:
    """A source value as a DATE: a date, or a time at exactly midnight (no zone applies
    to a calendar date; a time with an offset is a date only at midnight UTC)."""
    if source_type == "DATE":
        return value
    ts = as_timestamp(value, source_type, formats, "UTC")
    return fill("CASE WHEN __ts__ = date_trunc('day', __ts__) THEN CAST(__ts__ AS DATE) END", ts=ts)


def typed(
    value: exp.Expr,
    source_type: str,
    target: str,
    formats: Sequence[str] = (),
    zone: str = "UTC",
) -> exp.Expr:
    """`value` (of DuckDB type `source_type`) read as the contract type `target`, NULL
    where it cannot be read exactly."""
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
