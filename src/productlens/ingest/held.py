"""What ingestion held back, and what it loaded with warnings: counts by table and code,
and sample rows, for `productlens quarantine`.

Held rows are the quarantine's rows still waiting (neither released by a replay nor
superseded by a forced load). Warned rows are the rows loaded with a warning (listed in
`ops.warned_rows`), leaving out those of loads a forced load replaced.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from productlens.ingest.processor import LakeProcessor
from productlens.ingest.sql import fill, join

# The quarantine's rows still held: neither released by a replay nor superseded by a
# forced load. (In a warehouse from before forced loads: not released.)
STILL_HELD = fill("released_at IS NULL AND superseded_at IS NULL")
NOT_RELEASED = fill("released_at IS NULL")
LIVE_WARNINGS = fill(
    "NOT EXISTS (SELECT 1 FROM ops.superseded_files s WHERE s.target_table = w.target_table "
    "AND s.batch_id = w.batch_id AND s.source_file = w.source_file)"
)


@dataclass(frozen=True)
class Listing:
    """Counts per (table, code) and sample rows: (table, file, row, codes, detail), the
    detail being a held row's original values (JSON text) or a warned row's batch."""

    counts: list[tuple[str, str, int]]
    sample: list[tuple[str, str, int, list[str], str]]


def quarantined(
    lake: LakeProcessor, *, reason: str | None = None, table: str | None = None, limit: int = 10
) -> Listing:
    """The rows held in the quarantine, optionally for one reason or table."""
    if not lake.table_exists("raw.quarantine"):
        return Listing([], [])
    # A warehouse without ops.warned_rows predates forced loads: nothing is superseded.
    held = STILL_HELD if lake.table_exists("ops.warned_rows") else NOT_RELEASED
    return _listing(
        lake,
        exp.table_("quarantine", db="raw"),
        "reasons",
        "raw_values",
        held,
        reason,
        table,
        limit,
    )


def warned(
    lake: LakeProcessor, *, reason: str | None = None, table: str | None = None, limit: int = 10
) -> Listing:
    """The rows loaded with warnings, optionally for one warning code or table."""
    if not lake.table_exists("ops.warned_rows"):
        return Listing([], [])
    return _listing(
        lake,
        exp.table_("warned_rows", db="ops"),
        "warnings",
        "batch_id",
        LIVE_WARNINGS,
        reason,
        table,
        limit,
    )


def _listing(
    lake: LakeProcessor,
    relation: exp.Table,
    codes: str,
    detail: str,
    live: exp.Expr,
    code: str | None,
    table: str | None,
    limit: int,
) -> Listing:
    # `relation` is aliased `w` in the statements; `codes` and `detail` are its columns.
    names = {"codes": exp.to_identifier(codes), "detail": exp.to_identifier(detail)}
    where = [live.copy()]
    params: list[object] = []
    if code:
        where.append(fill("list_contains(w.__codes__, ?)", codes=names["codes"]))
        params.append(code)
    if table:
        where.append(fill("w.target_table = ?"))
        params.append(table)
    clause = join(where, exp.And)
    counts = lake.fetch_all(
        fill(
            "SELECT target_table, c, count(*) FROM (SELECT w.target_table, unnest(w.__codes__) "
            "AS c FROM __relation__ w WHERE __clause__) WHERE c = coalesce(?, c) GROUP BY ALL "
            "ORDER BY 1, 3 DESC, 2",
            codes=names["codes"],
            relation=relation,
            clause=clause,
        ),
        [*params, code],
    )
    sample = lake.fetch_all(
        fill(
            "SELECT w.target_table, w.source_file, w.row_number, w.__codes__, w.__detail__ "
            "FROM __relation__ w WHERE __clause__ "
            "ORDER BY w.ingested_at, w.source_file, w.row_number LIMIT ?",
            relation=relation,
            clause=clause,
            **names,
        ),
        [*params, limit],
    )
    return Listing(
        [(t, c, int(n)) for t, c, n in counts],
        [(t, f, int(n), list(cs), str(d)) for t, f, n, cs, d in sample],
    )
