"""Validation as one set-based query: every source row comes out typed to the contract,
with its lineage, and with the list of reasons it cannot be loaded (empty when it can).

Nothing here loops over rows. Every query is a SQLGlot expression: identifiers and literals
from files and configuration are quoted by SQLGlot, never pasted into text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlglot import exp

from productlens.config import TableIngestConfig
from productlens.ingest.casts import can_fail, typed
from productlens.ingest.contracts import Column, Contract, reference_reason
from productlens.ingest.mapping import Mapped, resolve
from productlens.ingest.sql import (
    Type,
    aliased,
    as_from,
    col,
    fill,
    ident,
    join,
    paren,
    string,
    table,
)

__all__ = ["Source", "validation"]

TIME_TYPES = ("TIMESTAMP", "DATE")
# Columns whose emptiness is a missing key (rather than a missing value).
ID_SUFFIX = "_id"


@dataclass(frozen=True)
class Source:
    """A relation of source rows: what to read, its columns, and where each row came from."""

    relation: exp.Expr  # a FROM item (a table or a subquery), read as `src`
    columns: Mapping[str, str]  # source column -> its type
    file_expr: exp.Expr  # each row's source file
    row_expr: exp.Expr  # each row's row number in that file (1-based)
    raw_json_column: str | None = None  # a column already holding the original values
    # contract column -> where its value comes from (None: same-named or renamed columns)
    values: Mapping[str, Mapped] | None = None
    # a column holding the text of a line that could not be read as a row (NULL for the
    # rows that could): such a row is quarantined as malformed_line with that text
    malformed: str | None = None
    # a column holding each row's original JSON object (JSON Lines), or None
    json_column: str | None = None


@dataclass(frozen=True)
class Rules:
    """Settings that decide what passes."""

    now: datetime
    future_tolerance_hours: float
    reference_modes: Mapping[str, str]  # referenced table -> "warn" | "quarantine"
    existing_rows: bool  # whether the target table already holds rows
    references_present: Mapping[str, bool] = field(default_factory=dict)


def source_values(
    contract: Contract, source: Source, mapping: Mapping[str, str]
) -> Mapping[str, Mapped]:
    """Where each contract column comes from in `source`: its resolved values, else (a
    source built without them) the renames in `mapping`, then same-named columns."""
    if source.values is not None:
        return source.values
    return resolve(contract.column_names, source.columns, mapping, {}, None, contract.table).values


def value_column(name: str) -> str:
    """The column of the typed subquery holding a contract column's source value."""
    return "__v_" + name


def typed_column(name: str) -> str:
    """The column of the typed subquery holding a contract column's typed value."""
    return "__c_" + name


def formats_for(settings: TableIngestConfig, column: str) -> tuple[str, ...]:
    """The time formats tried for one column, in order (empty: ISO-8601)."""
    chosen = settings.formats.get(column, settings.timestamp_format)
    if chosen is None:
        return ()
    return (chosen,) if isinstance(chosen, str) else tuple(chosen)


def _typed(column: Column, mapped: Mapped | None, settings: TableIngestConfig) -> exp.Expr:
    """The contract-typed value of one column, NULL where it cannot be read exactly."""
    if mapped is None:
        return fill("CAST(NULL AS __type__)", type=Type(column.type))
    return typed(
        mapped.sql, mapped.type, column.type, formats_for(settings, column.name), settings.timezone
    )


def _can_fail(column: Column, mapped: Mapped | None, settings: TableIngestConfig) -> bool:
    """Whether reading a source value as the column's type can fail (so it needs the
    bad_type / bad_timestamp check at all)."""
    if mapped is None:
        return False
    if column.type in TIME_TYPES and formats_for(settings, column.name):
        return True
    return can_fail(mapped.type, column.type, zone=settings.timezone)


def _missing_tests(name: str, source_type: str | None) -> list[exp.Expr]:
    """Tests, any of which is true where the source value of contract column `name` is
    missing (NULL; for text, also blank).

    Text that starts with a printable ASCII character other than a space cannot be
    blank, so `trim` (the costly part) only runs on the rest. That only holds where
    DuckDB evaluates lazily: OR/AND in a WHERE clause, or CASE branches. In a SELECT
    list an OR would trim every value.
    """
    if source_type is None:
        return [exp.true()]
    value = col(value_column(name), "t")
    if source_type == "VARCHAR":
        return [
            fill("__v__ IS NULL", v=value),
            fill("((__v__ < '!' OR __v__ >= chr(127)) AND trim(__v__) = '')", v=value),
        ]
    return [fill("__v__ IS NULL", v=value)]


def _missing(name: str, source_type: str | None) -> exp.Expr:
    """True where the source value is missing, for a WHERE clause (see above)."""
    return paren(join(_missing_tests(name, source_type), exp.Or))


# Duplicate keys are found in two steps. The key scan sorts 64-bit key hashes and keeps
# those equal to their neighbour: a sort beats a hash aggregate with one group per row
# here (0.9 s against 1.4 s at 10M events), and carrying the file and row through the
# sort would double its cost. When some hash repeats, the check pass keeps the rows with
# such a hash as candidates, with their key, and only those are ranked exactly. A clean
# batch has no candidate, and then the check pass does not read the key at all.
def key_hash(keys: Sequence[exp.Expr]) -> exp.Expr:
    return exp.Anonymous(this="hash", expressions=list(keys))


def unknown_table(column: str) -> str:
    """The temporary table of a batch's values of `column` that its referenced table
    lacks (see Reference)."""
    return "__unknown_" + column


@dataclass(frozen=True)
class Reference:
    """A reference check against a table that holds rows. Rather than joining every row
    of the batch to the referenced table, the distinct values of the batch that the
    table lacks are found first (a small aggregate over one column), and the check pass
    looks rows up in those alone; when there are none, the check is left out."""

    unknown_table: str  # temporary table of the unknown values (column v)
    condition: exp.Expr  # true for a row whose value is among them
    reason: str
    quarantine: bool  # False: warn only


@dataclass(frozen=True)
class _Join:
    """LEFT JOIN `relation` ON `on` (the loaded rows a batch's rows may copy)."""

    relation: exp.Expr
    on: exp.Expr


@dataclass(frozen=True)
class _Checks:
    conditions: list[tuple[exp.Expr, str]]  # (condition, reason): quarantine the row
    warnings: list[tuple[exp.Expr, str]]  # (condition, reason): load the row, count a warning
    joins: list[_Join]
    existing: exp.Expr  # true for an exact copy of a loaded row
    key_missing: list[tuple[exp.Expr, str]]  # the key columns' missing-value checks
    references: list[Reference]
    malformed: exp.Expr | None = None  # true for a line that could not be read as a row


@dataclass(frozen=True)
class Validation:
    """The pieces of one batch's validation, for the loader to run in turn.

    Every piece is a plain subquery, never a CTE used twice: DuckDB would materialise
    such a CTE, and here that means a copy of the whole batch.
    """

    typed: exp.Select  # every source row typed, with __file and __row
    # One row: the key hashes seen more than once in the batch, and the number of rows
    # with a key value missing. Reads the key columns only.
    key_scan: exp.Select
    typed_columns: list[exp.Expr]  # contract columns, typed, as t.__c_<name> AS <name>
    key_columns: list[str]  # the typed key columns (__c_<name>)
    key_types: list[str]  # their contract types
    # (temporary table, SELECT): per reference to a loaded table, the distinct values
    # of the batch that the referenced table lacks. See Reference.
    reference_scans: list[tuple[str, exp.Select]]
    _checks: _Checks

    def flagged(
        self,
        dup_hashes_table: str | None,
        keys_complete: bool = False,
        all_known: frozenset[str] = frozenset(),
    ) -> exp.Select:
        """SELECT the rows not simply loaded: __file, __row, __reasons, __warnings,
        __existing, plus __candidate and the key (__key_<i>) of the rows whose key hash
        is in `dup_hashes_table` (None: no hash was seen twice). `merge_duplicates` then
        finds the true duplicates among the candidates. With `keys_complete` (the key
        scan found no key value missing) the key columns are not checked again, which
        spares reading them at all. `all_known`: the reference scans' tables that came
        out empty; their checks are left out. The original values are left out: carrying
        every column through the checks would cost more than the checks."""
        checks = self._checks
        conditions, warnings = list(checks.conditions), list(checks.warnings)
        if not keys_complete:
            conditions = checks.key_missing + conditions
        for ref in checks.references:
            if ref.unknown_table not in all_known:
                (conditions if ref.quarantine else warnings).append((ref.condition, ref.reason))
        existing = checks.existing
        parts = [cond for cond, _ in conditions + warnings] + [existing]
        candidate: exp.Expr = exp.false()
        keys = [col(k, "t") for k in self.key_columns]
        if dup_hashes_table is not None:
            not_null = join([fill("__k__ IS NOT NULL", k=k) for k in keys], exp.And)
            candidate = fill(
                "(__not_null__ AND __hash__ IN (SELECT h FROM __dup__))",
                not_null=not_null, hash=key_hash(keys), dup=exp.to_table(dup_hashes_table),
            )  # fmt: skip
            parts.append(candidate)
        # No coalesce here: a NULL condition is not true either way, and a function
        # around each condition would stop DuckDB from skipping the costly ones.
        where = join([paren(cond) for cond in parts], exp.Or)
        if dup_hashes_table is not None:
            key_out = [aliased(k, exp.to_identifier(f"__key_{i}")) for i, k in enumerate(keys)]
        else:  # no candidates: leave the key unread (DuckDB reads whatever is selected)
            key_out = [
                aliased(
                    fill("CAST(NULL AS __type__)", type=Type(t)), exp.to_identifier(f"__key_{i}")
                )
                for i, t in enumerate(self.key_types)
            ]
        reasons = _code_list(conditions)
        if checks.malformed:  # a line that could not be read has no other fault to list
            reasons = fill(
                "CASE WHEN __malformed__ THEN ['malformed_line'] ELSE __reasons__ END",
                malformed=checks.malformed, reasons=reasons,
            )  # fmt: skip
        query = fill(
            "SELECT t.__file, t.__row, __reasons__ AS __reasons, __warnings__ AS __warnings, "
            "__existing__ AS __existing, coalesce(__candidate__, FALSE) AS __candidate "
            "FROM (__typed__) t",
            reasons=reasons, warnings=_code_list(warnings), existing=existing,
            candidate=candidate, typed=self.typed,
        )  # fmt: skip
        assert isinstance(query, exp.Select)
        query = query.select(*key_out, copy=False)
        for j in checks.joins:
            query = query.join(j.relation.copy(), on=j.on.copy(), join_type="LEFT", copy=False)
        return query.where(where, copy=False)

    def merge_duplicates(self, flagged_table: str) -> list[exp.Expr]:
        """Statements that give the candidates whose key was seen earlier in the batch
        (by file, then row) the reason `duplicate`, and drop the candidates flagged for
        nothing else."""
        keys = [exp.column(f"__key_{i}") for i in range(len(self.key_columns))]
        flagged = exp.to_table(flagged_table)
        seen = fill("row_number() OVER (PARTITION BY __k__ ORDER BY __file, __row)", k=keys[0])
        seen.set("partition_by", keys)
        return [
            fill(
                "UPDATE __flagged__ SET __reasons = list_sort(list_append(__reasons, "
                "'duplicate')) FROM (SELECT __file AS f, __row AS r FROM (SELECT __file, __row, "
                "__seen__ AS seen FROM __flagged__ WHERE __candidate) WHERE seen > 1) d "
                "WHERE __flagged_file__ = d.f AND __flagged_row__ = d.r",
                flagged=flagged,
                seen=seen,
                flagged_file=exp.column("__file", table=flagged_table),
                flagged_row=exp.column("__row", table=flagged_table),
            ),
            fill(
                "DELETE FROM __flagged__ WHERE __candidate AND len(__reasons) = 0 "
                "AND len(__warnings) = 0 AND NOT __existing",
                flagged=flagged,
            ),
        ]


def validation(
    contract: Contract,
    source: Source,
    settings: TableIngestConfig,
    rules: Rules,
    mapping: Mapping[str, str],
) -> Validation:
    """Build the set-based checks for one batch of source rows.

    Rows come out of `typed` with the contract columns typed as `__c_<name>`, `__file`,
    `__row` and the original columns (for the JSON of a quarantined row). Duplicate keys
    are found by `key_scan` (see key_hash).
    """
    chosen = source_values(contract, source, mapping)

    def c_(name: str) -> exp.Column:
        return col(typed_column(name), "t")

    typed_cols = [
        aliased(_typed(c, chosen.get(c.name), settings), typed_column(c.name))
        for c in contract.columns
    ]
    key = [typed_column(k) for k in contract.key]
    typed = exp.select(
        "src.*",
        *typed_cols,
        *(aliased(m.sql, value_column(name)) for name, m in chosen.items()),
        aliased(source.file_expr, exp.to_identifier("__file")),
        aliased(source.row_expr, exp.to_identifier("__row")),
        dialect="duckdb",
    ).from_(as_from(source.relation, "src"), copy=False)
    types = {c.name: (chosen[c.name].type if c.name in chosen else None) for c in contract.columns}
    fallible = {c.name for c in contract.columns if _can_fail(c, chosen.get(c.name), settings)}
    missing = {c.name: _missing(c.name, types[c.name]) for c in contract.columns}
    conditions, warnings, references, scans = _column_checks(
        contract, source, chosen, settings, fallible, missing, rules
    )
    key_missing = [p for p in conditions if p[0] in [missing[k] for k in contract.key]]
    conditions = [p for p in conditions if p not in key_missing]
    # Only the key columns are read (see key_hash). A row with a key value missing or
    # unreadable gets no hash; the missing ones are counted.
    key_cols: list[exp.Expr] = []
    for c in contract.columns:
        if c.name in contract.key:
            key_cols.append(aliased(_typed(c, chosen.get(c.name), settings), typed_column(c.name)))
            if c.name in chosen:
                key_cols.append(aliased(chosen[c.name].sql, value_column(c.name)))
    # CASE, not OR: in a SELECT list only CASE spares the costly tests (see _missing).
    no_hash = exp.Case(
        ifs=[
            *(
                exp.If(this=test, true=exp.null())
                for k in contract.key
                for test in _missing_tests(k, types[k])
            ),
            *(exp.If(this=fill("__k__ IS NULL", k=col(k, "t")), true=exp.null()) for k in key),
        ],
        default=key_hash([col(k) for k in key]),
    )
    keys_read = exp.select(*key_cols).from_(as_from(source.relation, "src"), copy=False)
    key_scan = fill(
        "SELECT coalesce(list(DISTINCT h) FILTER (WHERE h IS NOT NULL), []) AS dup_hashes, "
        "count(*) FILTER (WHERE h IS NULL) AS missing_keys FROM (SELECT h, "
        "lead(h) OVER (ORDER BY h) AS next_h FROM (SELECT __no_hash__ AS h "
        "FROM __keys__ t)) WHERE h = next_h OR h IS NULL",
        no_hash=no_hash, keys=keys_read.subquery(),
    )  # fmt: skip
    assert isinstance(key_scan, exp.Select)
    malformed = None
    if source.malformed:
        malformed = fill("__m__ IS NOT NULL", m=col(source.malformed, "t"))
        conditions.append((paren(malformed.copy()), "malformed_line"))

    joins: list[_Join] = []
    existing: exp.Expr = exp.false()
    if rules.existing_rows:
        on = join([fill("__e__ = __t__", e=col(k, "e"), t=c_(k)) for k in contract.key], exp.And)
        loaded = exp.select(*(ident(c.name) for c in contract.columns)).from_(
            table(contract.table, "raw")
        )
        joins.append(_Join(loaded.subquery("e"), on))
        same = join(
            [
                fill("__e__ IS NOT DISTINCT FROM __t__", e=col(c.name, "e"), t=c_(c.name))
                for c in contract.columns
            ],
            exp.And,
        )
        first = col(contract.key[0], "e")
        existing = fill("(__first__ IS NOT NULL AND __same__)", first=first, same=same)
        conditions.append(
            (
                fill("(__first__ IS NOT NULL AND NOT (__same__))", first=first, same=same),
                "conflicting_duplicate",
            )
        )

    return Validation(
        typed=typed,
        key_scan=key_scan,
        typed_columns=[aliased(c_(c.name), c.name) for c in contract.columns],
        key_columns=key,
        key_types=[next(c.type for c in contract.columns if c.name == k) for k in contract.key],
        reference_scans=scans,
        _checks=_Checks(conditions, warnings, joins, existing, key_missing, references, malformed),
    )


def _code_list(pairs: list[tuple[exp.Expr, str]]) -> exp.Expr:
    """The sorted list of codes whose condition holds."""
    if not pairs:
        return fill("CAST([] AS VARCHAR[])")
    items = exp.Array(
        expressions=[
            fill("CASE WHEN coalesce(__c__, FALSE) THEN __code__ END", c=cond, code=code)
            for cond, code in pairs
        ]
    )
    return fill(
        "list_sort(list_distinct(list_filter(__items__, lambda x: x IS NOT NULL)))", items=items
    )


def _column_checks(
    contract: Contract,
    source: Source,
    chosen: Mapping[str, Mapped],
    settings: TableIngestConfig,
    fallible: set[str],
    missing: Mapping[str, exp.Expr],
    rules: Rules,
) -> tuple[
    list[tuple[exp.Expr, str]],
    list[tuple[exp.Expr, str]],
    list[Reference],
    list[tuple[str, exp.Select]],
]:
    """(condition, reason) pairs that quarantine a row and those that only warn, the
    reference checks against loaded tables, and the scans those need (see Reference).
    `fallible`: the columns whose source values may fail to read as the contract type;
    `missing`: true where a column's source value is missing."""
    conditions: list[tuple[exp.Expr, str]] = []
    warnings: list[tuple[exp.Expr, str]] = []
    references: list[Reference] = []
    scans: list[tuple[str, exp.Select]] = []
    for c in contract.columns:
        value = col(typed_column(c.name), "t")
        if c.required:
            empty = (
                "null_key"
                if c.name in contract.key or c.name.endswith(ID_SUFFIX)
                else "missing_value"
            )
            conditions.append((missing[c.name], empty))
        bad = "bad_timestamp" if c.type in TIME_TYPES else "bad_type"
        if c.name in fallible:
            conditions.append(
                (fill("(NOT __missing__ AND __c__ IS NULL)", missing=missing[c.name], c=value), bad)
            )
        if c.type == "TIMESTAMP" and not c.scheduled:
            limit = rules.now.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
            seconds = f"{rules.future_tolerance_hours * 3600:.0f}"
            number: exp.Expr = exp.Literal.number(seconds.removeprefix("-"))
            if seconds.startswith("-"):
                number = exp.Neg(this=number)
            conditions.append(
                (
                    fill(
                        "__c__ > CAST(__limit__ AS TIMESTAMP) + INTERVAL (__seconds__) SECOND",
                        c=value,
                        limit=limit,
                        seconds=number,
                    ),
                    "future_timestamp",
                )
            )
        if c.non_negative:
            conditions.append((fill("__c__ < 0", c=value), "negative_amount"))
        if c.accepted:
            accepted = exp.In(this=value, expressions=[string(v) for v in c.accepted])
            conditions.append((exp.Not(this=accepted), "bad_value"))
        if c.references:
            ref_table, ref_col = c.references.split(".", 1)
            reason = reference_reason(c.references)
            quarantine = rules.reference_modes.get(ref_table, "quarantine") == "quarantine"
            if not rules.references_present.get(ref_table, False):
                # Nothing loaded yet: every reference misses.
                target = conditions if quarantine else warnings
                target.append((fill("__c__ IS NOT NULL", c=value), reason))
                continue
            unknown = unknown_table(c.name)
            scan = fill(
                "SELECT DISTINCT v FROM (SELECT __value__ AS v FROM __relation__ src) d "
                "WHERE v IS NOT NULL AND NOT EXISTS (SELECT 1 FROM __referenced__ k "
                "WHERE __key__ = d.v)",
                value=_typed(c, chosen.get(c.name), settings), relation=source.relation,
                referenced=table(ref_table, "raw"), key=col(ref_col, "k"),
            )  # fmt: skip
            assert isinstance(scan, exp.Select)
            scans.append((unknown, scan))
            condition = fill(
                "(__c__ IN (SELECT v FROM __unknown__))", c=value, unknown=table(unknown)
            )
            references.append(Reference(unknown, condition, reason, quarantine))
    return conditions, warnings, references, scans


def raw_json(source: Source) -> exp.Expr:
    """A row's original values as JSON text."""
    if source.raw_json_column:
        return col(source.raw_json_column, "t")
    fields = [
        exp.PropertyEQ(this=ident(name), expression=col(name, "t")) for name in source.columns
    ]
    values = fill("to_json(__fields__)", fields=exp.Struct(expressions=fields))
    if source.malformed:  # the line's text, as a JSON string
        return fill(
            "CASE WHEN __bad__ IS NOT NULL THEN CAST(to_json(__bad__) AS VARCHAR) "
            "ELSE __values__ END",
            bad=col(source.malformed, "t"), values=values,
        )  # fmt: skip
    return values
