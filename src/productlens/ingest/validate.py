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
    raw_json_expr: str | None = None  # SQL giving the original values; default: the row


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
        text = f"CAST({value} AS VARCHAR)"
        if settings.timestamp_format:
            parsed = f"try_strptime({text}, {literal(settings.timestamp_format)})"
        else:
            parsed = f"TRY_CAST({value} AS TIMESTAMP)"
        if settings.timezone != "UTC":
            parsed = f"timezone('UTC', timezone({literal(settings.timezone)}, {parsed}))"
        return f"CAST({parsed} AS {column.type})" if column.type == "DATE" else parsed
    return f"TRY_CAST({value} AS {column.type})"


def _present(source: str | None) -> str:
    """SQL true where the source value is there (not NULL, not blank)."""
    if source is None:
        return "FALSE"
    return f"nullif(trim(CAST(src.{ident(source)} AS VARCHAR)), '') IS NOT NULL"


def checked_query(
    contract: Contract,
    source: Source,
    settings: TableIngestConfig,
    rules: Rules,
    mapping: Mapping[str, str],
) -> str:
    """SELECT over every source row: contract columns (typed), `__file`, `__row`,
    `__raw` (JSON of the original values), `__reasons` (list of reason codes),
    `__warnings` (list), and `__existing` (true for an exact copy of a loaded row)."""
    chosen = resolve_mapping(contract, source.columns, mapping)
    typed_cols = [
        f"{_typed(c, chosen.get(c.name), settings)} AS {ident(c.name)}" for c in contract.columns
    ]
    present_cols = [
        f"{_present(chosen.get(c.name))} AS {ident('__has_' + c.name)}" for c in contract.columns
    ]
    raw_json = source.raw_json_expr or (
        "to_json(struct_pack("
        + ", ".join(f"{ident(name)} := src.{ident(name)}" for name in source.columns)
        + "))"
    )
    key = [ident(k) for k in contract.key]
    key_not_null = " AND ".join(f"t.{k} IS NOT NULL" for k in key)
    ctes = [
        f"src AS (SELECT * FROM {source.relation})",
        "typed AS (SELECT "
        + ", ".join(
            [
                *typed_cols,
                *present_cols,
                f"{source.file_expr} AS __file",
                f"{source.row_expr} AS __row",
                f"{raw_json} AS __raw",
            ]
        )
        + " FROM src)",
        # Keys seen more than once in this batch: only those rows get ranked.
        f"dup_keys AS (SELECT {', '.join(key)} FROM typed t WHERE {key_not_null} "
        f"GROUP BY ALL HAVING count(*) > 1)",
        f"dup_rank AS (SELECT t.__file, t.__row, row_number() OVER (PARTITION BY "
        f"{', '.join('t.' + k for k in key)} ORDER BY t.__file, t.__row) AS __seen "
        f"FROM typed t SEMI JOIN dup_keys d USING ({', '.join(key)}))",
    ]
    joins = ["LEFT JOIN dup_rank r ON r.__file = t.__file AND r.__row = t.__row"]
    reasons: list[str] = []
    warnings: list[str] = []

    for c in contract.columns:
        col, has = f"t.{ident(c.name)}", f"t.{ident('__has_' + c.name)}"
        if c.required:
            empty = (
                "null_key"
                if c.name in contract.key or c.name.endswith(ID_SUFFIX)
                else "missing_value"
            )
            reasons.append(f"CASE WHEN NOT {has} THEN '{empty}' END")
        bad = "bad_timestamp" if c.type in TIME_TYPES else "bad_type"
        reasons.append(f"CASE WHEN {has} AND {col} IS NULL THEN '{bad}' END")
        if c.type == "TIMESTAMP" and not c.scheduled:
            limit = exp.Literal.string(
                rules.now.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
            ).sql("duckdb")
            reasons.append(
                f"CASE WHEN {col} > TIMESTAMP {limit} + INTERVAL "
                f"({rules.future_tolerance_hours * 3600:.0f}) SECOND THEN 'future_timestamp' END"
            )
        if c.non_negative:
            reasons.append(f"CASE WHEN {col} < 0 THEN 'negative_amount' END")
        if c.accepted:
            values = ", ".join(literal(v) for v in c.accepted)
            reasons.append(f"CASE WHEN {col} NOT IN ({values}) THEN 'bad_value' END")
        if c.references:
            ref_table, ref_col = c.references.split(".", 1)
            alias = ident("ref_" + c.name)
            reason = reference_reason(c.references)
            if rules.references_present.get(ref_table, False):
                known = f"SELECT DISTINCT {ident(ref_col)} AS v FROM raw.{ident(ref_table)}"
                joins.append(f"LEFT JOIN ({known}) {alias} ON {alias}.v = {col}")
                missing = f"{col} IS NOT NULL AND {alias}.v IS NULL"
            else:
                missing = f"{col} IS NOT NULL"  # nothing loaded yet: every reference misses
            target = (
                reasons
                if rules.reference_modes.get(ref_table, "quarantine") == "quarantine"
                else warnings
            )
            target.append(f"CASE WHEN {missing} THEN '{reason}' END")
    reasons.append("CASE WHEN r.__seen > 1 THEN 'duplicate' END")

    existing = "FALSE"
    if rules.existing_rows:
        on = " AND ".join(f"e.{k} = t.{k}" for k in key)
        joins.append(
            f"LEFT JOIN (SELECT {', '.join(ident(c.name) for c in contract.columns)} "
            f"FROM raw.{ident(contract.table)}) e ON {on}"
        )
        same = " AND ".join(
            f"e.{ident(c.name)} IS NOT DISTINCT FROM t.{ident(c.name)}" for c in contract.columns
        )
        first_key = key[0]
        existing = f"(e.{first_key} IS NOT NULL AND {same})"
        reasons.append(
            f"CASE WHEN e.{first_key} IS NOT NULL AND NOT ({same}) THEN 'conflicting_duplicate' END"
        )

    columns = ", ".join(f"t.{ident(c.name)}" for c in contract.columns)
    return (
        "WITH "
        + ",\n".join(ctes)
        + f"\nSELECT {columns}, t.__file, t.__row, t.__raw, "
        + f"list_sort(list_distinct(list_filter([{', '.join(reasons)}], lambda x: x IS NOT NULL))) "
        + "AS __reasons, "
        + f"list_filter([{', '.join(warnings) or 'NULL'}], lambda x: x IS NOT NULL) AS __warnings, "
        + f"{existing} AS __existing\nFROM typed t\n"
        + "\n".join(joins)
    )
