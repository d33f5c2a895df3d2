"""Validation as one set-based query: every source row comes out typed to the contract,
with its lineage, and with the list of reasons it cannot be loaded (empty when it can).

Nothing here loops over rows. Identifiers and literals from files and configuration are
quoted through SQLGlot, never pasted raw.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlglot import exp

from productlens.config import TableIngestConfig
from productlens.ingest.contracts import Column, Contract, reference_reason

TIME_TYPES = ("TIMESTAMP", "DATE")
OVERFLOW_PREFIX = "__extra_"  # surplus CSV fields (see ingest.CSV_OVERFLOW)
# Columns whose emptiness is a missing key (rather than a missing value).
ID_SUFFIX = "_id"


def ident(name: str) -> str:
    """A safely quoted identifier."""
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def literal(value: str) -> str:
    """A safely quoted string literal."""
    return exp.Literal.string(value).sql("duckdb")


@dataclass(frozen=True)
class Source:
    """A relation of source rows: what to read, its columns, and where each row came from."""

    relation: str  # a FROM item, e.g. read_parquet([...], filename = true)
    columns: Mapping[str, str]  # source column -> its type
    file_expr: str  # SQL giving each row's source file
    row_expr: str  # SQL giving each row's row number in that file (1-based)
    raw_json_column: str | None = None  # a column already holding the original values


@dataclass(frozen=True)
class Rules:
    """Settings that decide what passes."""

    now: datetime
    future_tolerance_hours: float
    reference_modes: Mapping[str, str]  # referenced table -> "warn" | "quarantine"
    existing_rows: bool  # whether the target table already holds rows
    references_present: Mapping[str, bool] = field(default_factory=dict)


def resolve_mapping(
    contract: Contract, source_columns: Mapping[str, str], mapping: Mapping[str, str]
) -> dict[str, str]:
    """Contract column -> source column: explicit mapping first, then same name."""
    chosen: dict[str, str] = {}
    for src, dst in mapping.items():
        if src in source_columns and dst in contract.column_names:
            chosen[dst] = src
    for column in contract.columns:
        if column.name not in chosen and column.name in source_columns:
            chosen[column.name] = column.name
    return chosen


def _typed(column: Column, source: str | None, settings: TableIngestConfig) -> str:
    """The contract-typed value of one column, NULL where it cannot be read."""
    if source is None:
        return f"CAST(NULL AS {column.type})"
    value = f"src.{ident(source)}"
    if column.type == "VARCHAR":
        return f"CAST({value} AS VARCHAR)"
    if column.type in TIME_TYPES:
        if settings.timestamp_format:
            text = f"CAST({value} AS VARCHAR)"
            parsed = f"try_strptime({text}, {literal(settings.timestamp_format)})"
        else:
            parsed = f"TRY_CAST({value} AS TIMESTAMP)"
        if settings.timezone != "UTC":
            parsed = f"timezone('UTC', timezone({literal(settings.timezone)}, {parsed}))"
        return f"CAST({parsed} AS {column.type})" if column.type == "DATE" else parsed
    return f"TRY_CAST({value} AS {column.type})"


def _present(source: str | None, source_type: str | None) -> str:
    """SQL true where the source value is there (not NULL; for text, not blank)."""
    if source is None:
        return "FALSE"
    value = f"src.{ident(source)}"
    if source_type == "VARCHAR":
        return f"nullif(trim({value}), '') IS NOT NULL"
    return f"{value} IS NOT NULL"


@dataclass(frozen=True)
class Validation:
    """The pieces of one batch's validation, to be composed by the loader."""

    ctes: str  # WITH ... (src, typed, duplicate keys)
    from_sql: str  # FROM typed t LEFT JOIN ...
    flagged: str  # SQL true for rows that are not simply loaded
    reasons: str  # list of reason codes (only evaluated for flagged rows)
    warnings: str  # list of warning codes
    existing: str  # SQL true for an exact copy of a loaded row
    typed_columns: list[str]  # contract columns, typed, as t.__c_<name> AS <name>


def validation(
    contract: Contract,
    source: Source,
    settings: TableIngestConfig,
    rules: Rules,
    mapping: Mapping[str, str],
) -> Validation:
    """Build the set-based checks for one batch of source rows.

    Rows come out of `typed` with the contract columns typed as `__c_<name>`, presence
    flags `__has_<name>`, `__file`, `__row` and the original columns (for the JSON of a
    quarantined row). Duplicate keys are found with a hash pre-filter, so only the few
    candidate keys are compared exactly and ranked.
    """
    chosen = resolve_mapping(contract, source.columns, mapping)

    def c_(name: str) -> str:
        return ident("__c_" + name)

    typed_cols = [
        f"{_typed(c, chosen.get(c.name), settings)} AS {c_(c.name)}" for c in contract.columns
    ]
    present_cols = [
        f"{_present(chosen.get(c.name), source.columns.get(chosen.get(c.name, ''), None))} "
        f"AS {ident('__has_' + c.name)}"
        for c in contract.columns
    ]
    key = [c_(k) for k in contract.key]
    key_list = ", ".join(key)
    not_null = " AND ".join(f"{k} IS NOT NULL" for k in key)
    ctes = ",\n".join(
        [
            f"src AS (SELECT * FROM {source.relation})",
            "typed AS (SELECT src.*, "
            + ", ".join(
                [
                    *typed_cols,
                    *present_cols,
                    f"{source.file_expr} AS __file",
                    f"{source.row_expr} AS __row",
                ]
            )
            + " FROM src)",
            f"dup_hash AS (SELECT hash({key_list}) AS h FROM typed WHERE {not_null} "
            "GROUP BY 1 HAVING count(*) > 1)",
            f"dup_rank AS (SELECT __file, __row, row_number() OVER (PARTITION BY {key_list} "
            f"ORDER BY __file, __row) AS __seen FROM typed WHERE {not_null} AND "
            f"hash({key_list}) IN (SELECT h FROM dup_hash))",
        ]
    )
    joins = ["LEFT JOIN dup_rank r ON r.__file = t.__file AND r.__row = t.__row"]
    conditions, warnings = _column_checks(contract, chosen, rules, joins)
    overflow = [name for name in source.columns if name.startswith(OVERFLOW_PREFIX)]
    if overflow:
        surplus = " OR ".join(f"t.{ident(name)} IS NOT NULL" for name in overflow)
        conditions.append((f"({surplus})", "malformed_line"))
    conditions.append(("coalesce(r.__seen, 1) > 1", "duplicate"))

    existing = "FALSE"
    if rules.existing_rows:
        on = " AND ".join(f"e.{ident(k)} = t.{c_(k)}" for k in contract.key)
        cols = ", ".join(ident(c.name) for c in contract.columns)
        joins.append(f"LEFT JOIN (SELECT {cols} FROM raw.{ident(contract.table)}) e ON {on}")
        same = " AND ".join(
            f"e.{ident(c.name)} IS NOT DISTINCT FROM t.{c_(c.name)}" for c in contract.columns
        )
        first = ident(contract.key[0])
        existing = f"(e.{first} IS NOT NULL AND {same})"
        conditions.append((f"(e.{first} IS NOT NULL AND NOT ({same}))", "conflicting_duplicate"))

    flagged_parts = [cond for cond, _ in conditions + warnings] + [existing]
    flagged = " OR ".join(f"coalesce({cond}, FALSE)" for cond in flagged_parts)
    return Validation(
        ctes=ctes,
        from_sql="FROM typed t\n" + "\n".join(joins),
        flagged=flagged,
        reasons=_code_list(conditions),
        warnings=_code_list(warnings),
        existing=existing,
        typed_columns=[f"t.{c_(c.name)} AS {ident(c.name)}" for c in contract.columns],
    )


def _code_list(pairs: list[tuple[str, str]]) -> str:
    """SQL for the sorted list of codes whose condition holds."""
    if not pairs:
        return "CAST([] AS VARCHAR[])"
    items = ", ".join(
        f"CASE WHEN coalesce({cond}, FALSE) THEN '{code}' END" for cond, code in pairs
    )
    return f"list_sort(list_distinct(list_filter([{items}], lambda x: x IS NOT NULL)))"


def _column_checks(
    contract: Contract, chosen: Mapping[str, str], rules: Rules, joins: list[str]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(condition, reason) pairs that quarantine a row, and those that only warn; adds
    the reference joins it needs to `joins`."""
    conditions: list[tuple[str, str]] = []
    warnings: list[tuple[str, str]] = []
    for c in contract.columns:
        col, has = f"t.{ident('__c_' + c.name)}", f"t.{ident('__has_' + c.name)}"
        if c.required:
            empty = (
                "null_key"
                if c.name in contract.key or c.name.endswith(ID_SUFFIX)
                else "missing_value"
            )
            conditions.append((f"NOT {has}", empty))
        bad = "bad_timestamp" if c.type in TIME_TYPES else "bad_type"
        if c.name in chosen:
            conditions.append((f"({has} AND {col} IS NULL)", bad))
        if c.type == "TIMESTAMP" and not c.scheduled:
            limit = literal(rules.now.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds"))
            seconds = f"{rules.future_tolerance_hours * 3600:.0f}"
            conditions.append(
                (f"{col} > TIMESTAMP {limit} + INTERVAL ({seconds}) SECOND", "future_timestamp")
            )
        if c.non_negative:
            conditions.append((f"{col} < 0", "negative_amount"))
        if c.accepted:
            values = ", ".join(literal(v) for v in c.accepted)
            conditions.append((f"{col} NOT IN ({values})", "bad_value"))
        if c.references:
            ref_table, ref_col = c.references.split(".", 1)
            alias = ident("ref_" + c.name)
            if rules.references_present.get(ref_table, False):
                known = f"SELECT DISTINCT {ident(ref_col)} AS v FROM raw.{ident(ref_table)}"
                joins.append(f"LEFT JOIN ({known}) {alias} ON {alias}.v = {col}")
                missing = f"({col} IS NOT NULL AND {alias}.v IS NULL)"
            else:
                missing = f"{col} IS NOT NULL"  # nothing loaded yet: every reference misses
            mode = rules.reference_modes.get(ref_table, "quarantine")
            target = conditions if mode == "quarantine" else warnings
            target.append((missing, reference_reason(c.references)))
    return conditions, warnings


def raw_json(source: Source) -> str:
    """SQL for a row's original values as JSON text."""
    if source.raw_json_column:
        return f"t.{ident(source.raw_json_column)}"
    fields = ", ".join(f"{ident(name)} := t.{ident(name)}" for name in source.columns)
    return f"to_json(struct_pack({fields}))"
