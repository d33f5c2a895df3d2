"""Dirty mode: the faults of real exports, planted in disjoint rows and counted.

Each faulty row carries exactly one fault, so the manifest's count per fault is the
number of rows ingestion must quarantine for that reason. Late-arriving events are valid
rows that land in a later date partition; they are counted but are not faults.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from productlens.simulate.catalog import US_PER_DAY

EVENT_FAULT_RATES = {
    "null_key": 0.002,
    "bad_timestamp": 0.002,
    "future_timestamp": 0.001,
    "negative_amount": 0.05,  # of purchase rows (the rows that carry an amount)
    "unknown_product": 0.002,  # of rows that name a product
    "duplicate": 0.004,  # exact copies of clean rows
}
ORDER_FAULT_RATES = {"null_key": 0.002, "negative_amount": 0.005, "duplicate": 0.004}
LATE_RATE = 0.003
BAD_TIMESTAMPS = ["not a date", "2026-13-45 25:61:00", "31/02/2026 10:00", "yesterday"]
FUTURE_START = np.datetime64("2099-01-01T00:00:00", "us")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def _pick_disjoint(
    rng: np.random.Generator, n: int, rates: dict[str, float], eligible: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """One boolean mask per fault; no row gets two faults."""
    taken = np.zeros(n, bool)
    masks = {}
    for fault, rate in rates.items():
        mask = (rng.random(n) < rate) & ~taken & eligible.get(fault, np.ones(n, bool))
        masks[fault] = mask
        taken |= mask
    return masks


def _null_where(column: pa.ChunkedArray | pa.Array, mask: np.ndarray) -> pa.Array:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return pc.if_else(pa.array(mask), pa.nulls(len(mask), column.type), column)


def _duplicate(
    table: pa.Table, day: np.ndarray | None, mask: np.ndarray
) -> tuple[pa.Table, np.ndarray | None]:
    rows = np.flatnonzero(mask)
    table = pa.concat_tables([table, table.take(pa.array(rows))])
    return table, (np.concatenate([day, day[rows]]) if day is not None else None)


def dirty_events(
    table: pa.Table, day: np.ndarray, rng: np.random.Generator
) -> tuple[pa.Table, np.ndarray, dict[str, int], int]:
    """Plant faults in an events table. Timestamps become text (as in a CSV export), so
    that some can be unparseable. Returns the table, each row's partition day, the
    fault counts and the number of late-arriving rows."""
    n = table.num_rows
    amount = table.column("amount")
    product = table.column("product_id")
    masks = _pick_disjoint(
        rng,
        n,
        EVENT_FAULT_RATES,
        {
            "negative_amount": pc.is_valid(amount).to_numpy(zero_copy_only=False),
            "unknown_product": pc.is_valid(product).to_numpy(zero_copy_only=False),
        },
    )
    which_key = rng.random(n) < 0.5
    event_id = _null_where(table.column("event_id"), masks["null_key"] & which_key)
    user_id = _null_where(table.column("user_id"), masks["null_key"] & ~which_key)

    ts = table.column("event_ts")
    future = FUTURE_START + (rng.random(n) * 365 * US_PER_DAY).astype("timedelta64[us]")
    ts = pc.if_else(pa.array(masks["future_timestamp"]), pa.array(future, pa.timestamp("us")), ts)
    text = pc.strftime(ts, format=TIMESTAMP_FORMAT)
    garbage = pa.array(np.array(BAD_TIMESTAMPS)[rng.integers(0, len(BAD_TIMESTAMPS), n)])
    text = pc.if_else(pa.array(masks["bad_timestamp"]), garbage, text)

    amount = pc.if_else(pa.array(masks["negative_amount"]), pc.negate(amount), amount)
    unknown = pc.binary_join_element_wise(
        "p_unknown_", pc.cast(pa.array(np.arange(n)), pa.string()), ""
    )
    product = pc.if_else(pa.array(masks["unknown_product"]), unknown, product.cast(pa.string()))

    columns = dict(zip(table.column_names, table.columns, strict=True))
    columns.update(
        event_id=event_id, user_id=user_id, event_ts=text, amount=amount, product_id=product
    )
    out = pa.table(columns)

    clean = ~np.logical_or.reduce(list(masks.values()))
    late = clean & (rng.random(n) < LATE_RATE)
    day = day + np.where(late, 1 + rng.integers(0, 5, n), 0)
    out, day_out = _duplicate(out, day, masks["duplicate"])
    counts = {fault: int(mask.sum()) for fault, mask in masks.items()}
    assert day_out is not None
    return out, day_out, counts, int(late.sum())


def dirty_orders(
    table: pa.Table, items: pa.Table, rng: np.random.Generator
) -> tuple[pa.Table, dict[str, int], int]:
    """Plant null keys, negative totals and duplicate rows in an orders table. Returns
    also how many order items belong to an order that will be quarantined (their order
    never loads, so they are held as `unknown_order`)."""
    n = table.num_rows
    masks = _pick_disjoint(rng, n, ORDER_FAULT_RATES, {})
    lost = table.column("order_id").filter(pa.array(masks["null_key"] | masks["negative_amount"]))
    orphaned = int(
        pc.sum(
            pc.is_in(items.column("order_id"), value_set=lost.combine_chunks().cast(pa.string()))
        ).as_py()
        or 0
    )
    columns = dict(zip(table.column_names, table.columns, strict=True))
    columns["order_id"] = _null_where(table.column("order_id"), masks["null_key"])
    total = table.column("total_amount")
    columns["total_amount"] = pc.if_else(
        pa.array(masks["negative_amount"]), pc.negate(total), total
    )
    out, _ = _duplicate(pa.table(columns), None, masks["duplicate"])
    return out, {fault: int(mask.sum()) for fault, mask in masks.items()}, orphaned
