"""Rows stored per warehouse layer: one definition for the run summary, the report and the
dashboard (they disagreed: the report counted the staging views, the summary did not).

- raw: the rows loaded into the lake's files (`ops.raw_files`), less the rows that forced
  loads replaced (still in the files, left out of the raw views); the quarantine is not
  part of the layer (it is shown on its own).
- staging, core, marts: the rows of the layer's tables. A view stores no rows: counting
  it would run it (a full read of its source on Spark) for rows its source already holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlglot import exp

from productlens.engines.base import Engine, table

LAYERS = ("raw", "staging", "core", "marts")
TITLE = "rows stored per layer"
NOTE = "raw: rows loaded; views store none"
LABEL = f"{TITLE} ({NOTE})"
QUARANTINE = "quarantine"


@dataclass(frozen=True)
class LayerRows:
    """One layer's count: its tables (raw: its views over the lake) and their rows."""

    n_tables: int
    n_rows: int


def stored_rows(
    engine: Engine, known: Mapping[tuple[str, str], int] | None = None
) -> dict[str, LayerRows]:
    """Rows stored per layer, in layer order. `known`: rows of tables counted already (a
    run's builds), taken as they are; the other tables are counted in one query."""
    known = known or {}
    out: dict[str, LayerRows] = {}
    counts: list[exp.Query] = []
    for layer in LAYERS:
        names = [n for n in engine.list_tables(layer) if not (layer == "raw" and n == QUARANTINE)]
        if layer == "raw":
            listed = _column_sum(engine, ("ops", "raw_files"), "row_count")
            replaced = _column_sum(engine, ("ops", "superseded_files"), "rows_loaded")
            out[layer] = LayerRows(len(names), listed - replaced)
            continue
        stored = [n for n in names if engine.table_kind(layer, n) == "table"]
        out[layer] = LayerRows(len(stored), sum(known.get((layer, n), 0) for n in stored))
        counts.extend(
            exp.select(
                exp.Literal.string(layer).as_("layer"), exp.Count(this=exp.Star()).as_("n_rows")
            ).from_(table(layer, n))
            for n in stored
            if (layer, n) not in known
        )
    if counts:
        union = counts[0] if len(counts) == 1 else exp.union(*counts, distinct=False)
        query = (
            exp.select("layer", exp.Sum(this=exp.column("n_rows")).as_("n_rows"))
            .from_(union.subquery("t"))
            .group_by("layer")
        )
        for layer, n in engine.fetch_all(query):
            was = out[str(layer)]
            out[str(layer)] = LayerRows(was.n_tables, was.n_rows + int(n or 0))
    return out


def _column_sum(engine: Engine, name: tuple[str, str], column: str) -> int:
    """The sum of one column of an ops table (0 when the table is absent or empty)."""
    if engine.table_kind(*name) is None:
        return 0
    query = exp.select(exp.func("sum", exp.column(column, quoted=True))).from_(table(*name))
    return int(engine.fetch_all(query)[0][0] or 0)
