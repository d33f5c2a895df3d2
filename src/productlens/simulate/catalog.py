"""The world's global tables, drawn once from their own random stream: products with
price and cost versions, marketing campaigns, and the experiments' definitions.

`World` holds them as arrays that every block reads (it is small and pickles cheaply to
worker processes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa

from productlens.simulate.params import WorldParams

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
EPOCH = np.datetime64("1970-01-01T00:00:00", "us")
CATALOG_STREAM = 1_000_003  # random stream ids beyond any block number
CAMPAIGN_STREAM = 1_000_033

# name: (median price, log-sd of price, lowest margin, highest margin)
CATEGORIES: dict[str, tuple[float, float, float, float]] = {
    "Electronics": (180.0, 0.7, 0.08, 0.20),
    "Home": (45.0, 0.6, 0.30, 0.45),
    "Fashion": (40.0, 0.5, 0.45, 0.60),
    "Beauty": (22.0, 0.5, 0.55, 0.70),
    "Sports": (60.0, 0.6, 0.30, 0.45),
    "Books": (15.0, 0.4, 0.20, 0.35),
}
# channel: (median cost per acquisition, purchase-propensity multiplier median)
CAMPAIGN_CHANNELS: dict[str, tuple[float, float]] = {
    "paid_search": (14.0, 1.10),
    "social": (20.0, 0.85),
    "display": (28.0, 0.75),
    "email": (6.0, 1.20),
    "affiliate": (16.0, 1.0),
}


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of a naive UTC datetime."""
    return int((np.datetime64(moment, "us") - EPOCH).astype(np.int64))


def timestamps(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype("datetime64[us]"), pa.timestamp("us"))


@dataclass(frozen=True)
class World:
    """Global arrays shared by every block."""

    start_us: int
    end_us: int
    # Products: one entry per product; versions sorted by (product, time).
    product_ids: list[str]
    product_base_price: np.ndarray
    popularity_cdf: dict[str, np.ndarray]  # by segment: cumulative choice probabilities
    version_key: np.ndarray  # product * 1e10 + seconds since (start - 2 years)
    version_price: np.ndarray
    # Campaigns.
    campaign_ids: list[str]
    campaign_channel: list[str]
    campaign_p: np.ndarray  # probability a user comes from each campaign
    campaign_start_us: np.ndarray
    campaign_end_us: np.ndarray
    campaign_quality: np.ndarray
    # Tables written once.
    products: pa.Table
    campaigns: pa.Table
    experiments: pa.Table
    truth: dict[str, object]

    @property
    def origin_us(self) -> int:
        return self.start_us - 2 * 365 * US_PER_DAY

    def price_at(self, product: np.ndarray, at_us: np.ndarray) -> np.ndarray:
        """Each product's price in the version valid at the given moment."""
        key = product.astype(np.int64) * 10**10 + (at_us - self.origin_us) // US_PER_SECOND
        version = np.searchsorted(self.version_key, key, side="right") - 1
        prices: np.ndarray = self.version_price[version]
        return prices


def build_world(params: WorldParams) -> World:
    """Draw the catalog, campaigns and experiments for these parameters."""
    start_us = to_us(params.start)
    end_us = to_us(params.end)
    products, product_arrays = _products(params, start_us, end_us)
    campaigns, campaign_arrays, campaign_truth = _campaigns(params, start_us)
    return World(
        start_us=start_us,
        end_us=end_us,
        **product_arrays,
        **campaign_arrays,
        products=products,
        campaigns=campaigns,
        experiments=_experiments(params, start_us),
        truth={"campaigns": campaign_truth},
    )


def _products(params: WorldParams, start_us: int, end_us: int) -> tuple[pa.Table, dict]:  # type: ignore[type-arg]
    rng = np.random.default_rng([params.seed, CATALOG_STREAM])
    if params.scenario == "saas":
        return _plan_products(params, start_us)
    n = params.n_products
    names = list(CATEGORIES)
    category = rng.integers(0, len(names), n)
    median, sigma, low, high = (np.array([CATEGORIES[c][i] for c in names]) for i in range(4))
    price = np.round(median[category] * np.exp(sigma[category] * rng.standard_normal(n)), 2)
    price = np.maximum(price, 1.0)
    margin = low[category] + (high[category] - low[category]) * rng.random(n)
    cost = np.round(price * (1 - margin), 2)
    brand = rng.integers(0, params.n_brands, n)

    # Versions: the first is valid from long before the period; changes fall inside it.
    n_versions = 1 + rng.poisson(params.mean_price_changes, n)
    owner = np.repeat(np.arange(n), n_versions)
    first = np.r_[True, owner[1:] != owner[:-1]]
    at = np.where(
        first,
        start_us - 365 * US_PER_DAY,
        start_us + (rng.random(owner.size) * (end_us - start_us)).astype(np.int64),
    )
    order = np.lexsort((at, owner))
    owner, at = owner[order], at[order]
    step_price = np.where(first, 0.0, rng.normal(0, 0.08, owner.size))
    step_cost = np.where(first, 0.0, rng.normal(0, 0.04, owner.size))
    v_price = np.round(price[owner] * np.exp(_group_cumsum(step_price, owner)), 2)
    v_cost = np.round(cost[owner] * np.exp(_group_cumsum(step_cost, owner)), 2)
    v_cost = np.minimum(v_cost, v_price)  # never sold below cost by construction

    ids = [f"p{i:05d}" for i in range(n)]
    table = pa.table(
        {
            "product_id": pa.array([ids[i] for i in owner], pa.string()),
            "name": pa.array([f"{names[category[i]]} item {i:05d}" for i in owner], pa.string()),
            "category": pa.array([names[category[i]] for i in owner], pa.string()),
            "brand": pa.array([f"Brand {brand[i]:02d}" for i in owner], pa.string()),
            "price": v_price,
            "cost": v_cost,
            "updated_at": timestamps(at),
        }
    )
    # Popularity: Zipf over a random ranking, tilted towards dearer or cheaper products
    # by segment.
    base = 1.0 / (1 + rng.permutation(n)) ** 0.9
    relative_price = price / np.median(price)
    cdfs = {}
    for segment, tilt in params.segment_price_tilt.items():
        weights = base * relative_price**tilt
        cdfs[segment] = np.cumsum(weights) / weights.sum()
    origin = start_us - 2 * 365 * US_PER_DAY
    return table, {
        "product_ids": ids,
        "product_base_price": price,
        "popularity_cdf": cdfs,
        "version_key": owner.astype(np.int64) * 10**10 + (at - origin) // US_PER_SECOND,
        "version_price": v_price,
    }


def _plan_products(params: WorldParams, start_us: int) -> tuple[pa.Table, dict]:  # type: ignore[type-arg]
    """SaaS: the plans are the products (monthly price per seat, hosting cost)."""
    plans = params.plans
    at = np.full(len(plans), start_us - 365 * US_PER_DAY)
    price = np.array([p.monthly_price for p in plans])
    table = pa.table(
        {
            "product_id": [p.name for p in plans],
            "name": [p.name.title() for p in plans],
            "category": ["plan"] * len(plans),
            "brand": ["productlens"] * len(plans),
            "price": price,
            "cost": np.round(price * 0.2, 2),
            "updated_at": timestamps(at),
        }
    )
    origin = start_us - 2 * 365 * US_PER_DAY
    uniform = np.cumsum(np.ones(len(plans))) / len(plans)
    return table, {
        "product_ids": [p.name for p in plans],
        "product_base_price": price,
        "popularity_cdf": dict.fromkeys(params.segments, uniform),
        "version_key": np.arange(len(plans), dtype=np.int64) * 10**10
        + (at - origin) // US_PER_SECOND,
        "version_price": price,
    }


def _campaigns(params: WorldParams, start_us: int) -> tuple[pa.Table, dict, list]:  # type: ignore[type-arg]
    rng = np.random.default_rng([params.seed, CAMPAIGN_STREAM])
    n = params.n_campaigns
    channels = list(CAMPAIGN_CHANNELS)
    channel = rng.integers(0, len(channels), n)
    cpa = np.array([CAMPAIGN_CHANNELS[channels[c]][0] for c in channel])
    cpa = np.round(cpa * np.exp(0.35 * rng.standard_normal(n)), 2)
    quality = np.array([CAMPAIGN_CHANNELS[channels[c]][1] for c in channel])
    quality = quality * np.exp(0.25 * rng.standard_normal(n))
    budget = np.exp(0.6 * rng.standard_normal(n))
    p = params.paid_share * budget / budget.sum() if n else np.zeros(0)
    start_day = rng.integers(0, max(1, int(params.days * 0.7)), n)
    length = rng.integers(14, 46, n)
    end_day = np.minimum(start_day + length, params.days)
    spend = np.round(p * params.users * cpa, 2)  # spend buys the expected signups
    ids = [f"c{i + 1:03d}" for i in range(n)]
    start_dates = (np.datetime64(params.start_date) + start_day).astype("datetime64[D]")
    end_dates = (np.datetime64(params.start_date) + end_day - 1).astype("datetime64[D]")
    table = pa.table(
        {
            "campaign_id": ids,
            "name": [
                f"{channels[c].replace('_', ' ').title()} {i + 1:03d}"
                for i, c in enumerate(channel)
            ],
            "channel": [channels[c] for c in channel],
            "start_date": pa.array(start_dates, pa.date32()),
            "end_date": pa.array(end_dates, pa.date32()),
            "spend": spend,
        }
    )
    truth = [
        {
            "campaign_id": ids[i],
            "cost_per_acquisition": float(cpa[i]),
            "quality": round(float(quality[i]), 4),
            "expected_signups": round(float(p[i] * params.users), 2),
        }
        for i in range(n)
    ]
    arrays = {
        "campaign_ids": ids,
        "campaign_channel": [channels[c] for c in channel],
        "campaign_p": p,
        "campaign_start_us": start_us + start_day.astype(np.int64) * US_PER_DAY,
        "campaign_end_us": start_us + end_day.astype(np.int64) * US_PER_DAY,
        "campaign_quality": quality,
    }
    return table, arrays, truth


def _experiments(params: WorldParams, start_us: int) -> pa.Table:
    steps = params.funnel_steps
    specs = params.experiments
    return pa.table(
        {
            "experiment_id": [e.experiment_id for e in specs],
            "name": [e.name for e in specs],
            "hypothesis": [e.hypothesis for e in specs],
            "variants": [json.dumps(e.weights) for e in specs],
            "start_ts": timestamps(
                np.array([start_us + e.start_day * US_PER_DAY for e in specs], np.int64)
            ),
            "end_ts": timestamps(
                np.array(
                    [start_us + (e.start_day + e.duration_days) * US_PER_DAY for e in specs],
                    np.int64,
                )
            ),
            "exposure_event": [steps[e.exposure_step] for e in specs],
            "primary_metric": [steps[e.lifted_step] for e in specs],
            "outcome_window_days": pa.array([e.outcome_window_days for e in specs], pa.int32()),
        }
    )


def _group_cumsum(values: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting where `owner` changes (owner sorted)."""
    running = np.cumsum(values)
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    counts = np.diff(np.r_[starts, owner.size])
    result: np.ndarray = running - np.repeat(running[starts] - values[starts], counts)
    return result


def variant_hash(user_no: np.ndarray, salt: int) -> np.ndarray:
    """A uniform number in [0, 1) per user and experiment (splitmix64): deterministic,
    independent across experiments, and the same in every process."""
    x = user_no.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(salt)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    result: np.ndarray = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return result
