"""Daily inventory snapshots that fall with sales and jump when a restock arrives."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from productlens.simulate.catalog import World
from productlens.simulate.params import WorldParams

COVER_DAYS_TARGET = 21  # a restock fills up to three weeks of average demand
COVER_DAYS_REORDER = 7  # ... and is ordered when less than a week is left


def inventory_table(params: WorldParams, world: World, sales: np.ndarray) -> pa.Table:
    """One row per product per day: units on hand at the end of the day.

    `sales` is units shipped per (product, day), summed over all blocks. A restock is
    ordered at the end of a day that closes below the reorder point and arrives the next
    morning. The loop runs over days (not rows), each step vectorised over products.
    """
    n_products, days = sales.shape
    if params.scenario != "ecommerce" or n_products == 0:
        return pa.table(
            {
                "snapshot_date": pa.array([], pa.date32()),
                "product_id": pa.array([], pa.string()),
                "on_hand": pa.array([], pa.int32()),
            }
        )
    daily = sales.sum(axis=1) / days
    target = np.ceil(daily * COVER_DAYS_TARGET).astype(np.int64) + 10
    reorder = np.ceil(daily * COVER_DAYS_REORDER).astype(np.int64) + 2
    on_hand = target.copy()
    snapshots = np.empty((days, n_products), np.int64)
    for day in range(days):
        on_hand = np.where(on_hand < reorder, target, on_hand)  # last night's order arrives
        on_hand = np.maximum(on_hand - sales[:, day], 0)
        snapshots[day] = on_hand
    dates = np.datetime64(params.start_date) + np.repeat(np.arange(days), n_products)
    products = pa.array(world.product_ids, pa.string())
    return pa.table(
        {
            "snapshot_date": pa.array(dates.astype("datetime64[D]"), pa.date32()),
            "product_id": products.take(pa.array(np.tile(np.arange(n_products), days))),
            "on_hand": pa.array(snapshots.ravel(), pa.int32()),
        }
    )
