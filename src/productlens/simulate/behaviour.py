"""Everything one block of users does, fully vectorised (no loop per user or event).

A block draws from its own random stream (`seed`, block number), so its output does not
depend on how many blocks are made at once or in which process. The order of the draws
below is part of the output: change it and every file changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from productlens.simulate.catalog import US_PER_DAY, US_PER_SECOND, World, timestamps, variant_hash
from productlens.simulate.params import WorldParams

N_STEPS = 5
EXTRA_STEP0_EVENT = {"ecommerce": "page_view", "saas": "view_project"}
DIURNAL = np.array(  # relative activity per hour of day (UTC)
    [0.3, 0.2, 0.15, 0.12, 0.12, 0.2, 0.4, 0.7, 0.9, 1.0, 1.0, 1.05,
     1.1, 1.05, 1.0, 1.0, 1.05, 1.1, 1.2, 1.3, 1.25, 1.0, 0.7, 0.45]
)  # fmt: skip
STATUSES = ["completed", "cancelled", "refunded"]


@dataclass
class Block:
    """One block's tables plus what the main process aggregates across blocks."""

    index: int
    tables: dict[str, pa.Table]
    event_day: np.ndarray  # partition day of each event row (relative to the start)
    sales: np.ndarray  # units sold per (product, day), for inventory
    experiment_sums: dict[str, dict[str, float]] = field(default_factory=dict)
    faults: dict[str, dict[str, int]] = field(default_factory=dict)
    activity: pa.Table | None = None  # truth: user_id, activity_end_ts (latent end)


# --- small vectorised helpers -----------------------------------------------------------


def block_rng(params: WorldParams, block: int) -> np.random.Generator:
    return np.random.default_rng([params.seed, block])


def _pick(rng: np.random.Generator, mix: dict[str, float], n: int) -> np.ndarray:
    cumulative = np.cumsum(list(mix.values()))
    codes: np.ndarray = np.searchsorted(cumulative / cumulative[-1], rng.random(n), side="right")
    return codes.astype(np.int32)


def _dictionary(codes: np.ndarray, keys: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(keys, pa.string()))


HEX_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)
# Two hex characters as one little-endian 16-bit word (the first character in the low
# byte), explicitly little-endian so the bytes are the same on every machine.
HEX_PAIRS = (
    HEX_DIGITS[np.arange(256) >> 4].astype("<u2")
    | (HEX_DIGITS[np.arange(256) & 15].astype("<u2") << 8)
).astype("<u2")


def _ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    """`prefix` + the number in hexadecimal, zero-padded to one width, built directly as
    Arrow buffers two digits at a time (several times faster than formatting strings)."""
    n = numbers.size
    head = np.frombuffer(prefix.encode(), np.uint8)
    n_pairs = max(1, (int(numbers.max()).bit_length() + 7) // 8) if n else 1
    pairs = np.empty((n, n_pairs), "<u2")
    value = numbers.astype(np.uint64)
    for i in range(n_pairs):
        pairs[:, n_pairs - 1 - i] = HEX_PAIRS[(value >> np.uint64(8 * i)) & np.uint64(255)]
    width = head.size + 2 * n_pairs
    buf = np.empty((n, width), np.uint8)
    buf[:, : head.size] = head
    buf[:, head.size :] = pairs.view(np.uint8)
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buf))


def _keyed(index: np.ndarray, values: pa.Array) -> pa.DictionaryArray:
    """values[index] as a dictionary column (no string copies); null where index < 0."""
    indices = pa.array(np.maximum(index, 0).astype(np.int32), pa.int32(), mask=index < 0)
    return pa.DictionaryArray.from_arrays(indices, values)


def _take(values: pa.Array, index: np.ndarray) -> pa.Array:
    """values[index], null where the index is negative."""
    return values.take(pa.array(np.maximum(index, 0), pa.int64(), mask=index < 0))


def _positions(counts: np.ndarray) -> np.ndarray:
    """For groups of the given sizes laid end to end, each element's place in its group."""
    starts = np.cumsum(counts) - counts
    result: np.ndarray = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)
    return result


def _group_cumsum(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at every group (groups of the given sizes, none empty)."""
    running = np.cumsum(values)
    first = np.cumsum(counts) - counts
    result: np.ndarray = running - np.repeat(running[first] - values[first], counts)
    return result


def _first_per_group(group: np.ndarray, mask: np.ndarray, n_groups: int) -> np.ndarray:
    """Index of the first element with mask set in each group (group sorted); -1 if none."""
    hits = np.flatnonzero(mask)
    first = np.full(n_groups, -1, np.int64)
    owners, at = np.unique(group[hits], return_index=True)
    first[owners] = hits[at]
    return first


def _diurnal_warp(day_fraction: np.ndarray) -> np.ndarray:
    """Map a uniform time of day onto the diurnal profile, keeping order."""
    cdf = np.r_[0.0, np.cumsum(DIURNAL)] / DIURNAL.sum()
    result: np.ndarray = np.interp(day_fraction, cdf, np.arange(25) / 24)
    return result


# --- users ------------------------------------------------------------------------------


@dataclass
class Users:
    no: np.ndarray
    ids: pa.Array
    signup_us: np.ndarray
    country: np.ndarray
    device: np.ndarray
    segment: np.ndarray
    campaign: np.ndarray  # campaign index, -1 for organic
    quality: np.ndarray  # purchase-propensity multiplier


def _users(params: WorldParams, world: World, rng: np.random.Generator, block: int) -> Users:
    first = block * params.users_per_block
    n = min(params.users_per_block, params.users - first)
    no = np.arange(first, first + n, dtype=np.int64)

    # Source: a campaign (in proportion to spend / CPA) or an organic channel.
    cumulative = np.cumsum(world.campaign_p)
    u = rng.random(n)
    campaign = np.searchsorted(cumulative, u, side="right")
    campaign = np.where(campaign < cumulative.size, campaign, -1).astype(np.int64)
    paid = campaign >= 0

    # Organic signups follow the trend and the week; campaign signups its flight dates.
    days = np.arange(params.days)
    weekday0 = params.start.weekday()
    weights = (1 + params.signup_trend * days / max(params.days - 1, 1)) * np.array(
        [params.weekday_factors[(weekday0 + d) % 7] for d in days]
    )
    day = np.searchsorted(np.cumsum(weights) / weights.sum(), rng.random(n), side="right")
    tod = _diurnal_warp(rng.random(n))
    organic_us = world.start_us + ((day + tod) * US_PER_DAY).astype(np.int64)
    c = np.maximum(campaign, 0)
    flight = (world.campaign_end_us[c] - world.campaign_start_us[c]) if c.size else c
    paid_us = (
        world.campaign_start_us[c] + (rng.random(n) * flight).astype(np.int64) if c.size else c
    )
    signup_us = np.where(paid, paid_us, organic_us)

    country = _pick(rng, params.countries, n)
    device = _pick(rng, params.devices, n)
    segment = _pick(rng, params.segments, n)
    quality = np.where(paid, world.campaign_quality[c] if c.size else 1.0, 1.0)
    return Users(no, _ids("u", no), signup_us, country, device, segment, campaign, quality)


def _users_table(
    params: WorldParams, world: World, users: Users, rng: np.random.Generator
) -> pa.Table:
    organic = list(params.organic_channels)
    organic_code = _pick(rng, params.organic_channels, users.no.size)
    channels = organic + sorted(set(world.campaign_channel))
    channel_code = np.array([channels.index(c) for c in world.campaign_channel] or [0], np.int32)
    paid = users.campaign >= 0
    channel = np.where(paid, channel_code[np.maximum(users.campaign, 0)], organic_code)
    return pa.table(
        {
            "user_id": users.ids,
            "signup_ts": timestamps(users.signup_us),
            "country": _dictionary(users.country, list(params.countries)),
            "device": _dictionary(users.device, list(params.devices)),
            "acquisition_channel": _dictionary(channel.astype(np.int32), channels),
            "campaign_id": _take(pa.array(world.campaign_ids, pa.string()), users.campaign),
            "segment": _dictionary(users.segment, list(params.segments)),
        }
    )


def _user_changes(
    params: WorldParams, world: World, users: Users, rng: np.random.Generator
) -> pa.Table:
    """Segment moves (one or two) and rarer country moves; each row is the user's full
    state after the change, so SCD Type 2 history can be rebuilt from it."""
    n = users.no.size
    n_seg = np.where(rng.random(n) < params.p_segment_change, 1 + (rng.random(n) < 0.3), 0)
    n_cty = (rng.random(n) < params.p_country_change).astype(np.int64)
    counts = 1 + n_seg + n_cty  # row 0 of each user is the signup state (dropped below)
    owner = np.repeat(np.arange(n), counts)
    place = _positions(counts)
    initial = place == 0
    is_country = ~initial & (place > n_seg[owner])
    remaining = np.maximum(world.end_us - users.signup_us[owner], 1)
    at = np.where(
        initial,
        users.signup_us[owner],
        users.signup_us[owner] + (rng.random(owner.size) * remaining).astype(np.int64),
    )
    order = np.lexsort((at, ~initial, owner))
    owner, at, initial, is_country = owner[order], at[order], initial[order], is_country[order]

    # Each change moves one attribute away from its current value by a random shift.
    n_segments, n_countries = len(params.segments), len(params.countries)
    seg_shift = np.where(~initial & ~is_country, rng.integers(1, n_segments, owner.size), 0)
    cty_shift = np.where(is_country, rng.integers(1, n_countries, owner.size), 0)
    seg = (users.segment[owner] + _group_cumsum(seg_shift, counts)) % n_segments
    cty = (users.country[owner] + _group_cumsum(cty_shift, counts)) % n_countries
    keep = ~initial
    return pa.table(
        {
            "user_id": users.ids.take(pa.array(owner[keep])),
            "changed_at": timestamps(at[keep]),
            "segment": _dictionary(seg[keep].astype(np.int32), list(params.segments)),
            "country": _dictionary(cty[keep].astype(np.int32), list(params.countries)),
        }
    )


# --- sessions and the funnel ------------------------------------------------------------


@dataclass
class Sessions:
    owner: np.ndarray  # user index within the block, sorted, times ascending per user
    start_us: np.ndarray
    counts: np.ndarray  # events per step (sessions x 5)
    reached: np.ndarray  # bool (sessions x 5)
    treated: dict[str, np.ndarray]  # experiment id -> treated user flag
    exposure: dict[str, np.ndarray]  # experiment id -> exposure session index per user (-1)


def _sessions(
    params: WorldParams, world: World, users: Users, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's sessions (owner, start), and each user's latent end of activity: the
    start of their last planned session, before the weekday thinning and the world's end
    cut them (a user whose end lies at or after the world's end is still active there)."""
    n = users.no.size
    returner = rng.random(n) < params.p_return
    extra = np.minimum(rng.geometric(params.churn_per_session, n), params.max_sessions_per_user - 1)
    n_sessions = 1 + np.where(returner, extra, 0)
    gap_days = params.median_gap_days * np.exp(0.8 * rng.standard_normal(n))
    owner = np.repeat(np.arange(n), n_sessions)
    gaps = rng.exponential(1.0, owner.size) * gap_days[owner]
    first = _positions(n_sessions) == 0
    gaps[first] = 0.0
    # Returning sessions start on a later day at a time of day that follows the profile.
    offset_days = _group_cumsum(gaps, n_sessions)
    signup_day = (users.signup_us[owner] - world.start_us) / US_PER_DAY
    at_day = signup_day + offset_days
    day = np.floor(at_day)
    warped = day + _diurnal_warp(at_day - day)
    # The warp can pull a same-day return before the signup: keep returns after it.
    returning_us = np.maximum(
        world.start_us + (warped * US_PER_DAY).astype(np.int64),
        users.signup_us[owner] + 30 * 60 * US_PER_SECOND,
    )
    start_us = np.where(first, users.signup_us[owner], returning_us)
    activity_end_us = start_us[np.cumsum(n_sessions) - 1]  # offsets grow: the last is latest
    # The week: thin returning sessions on quieter weekdays.
    weekday = (params.start.weekday() + day.astype(np.int64)) % 7
    factors = np.array(params.weekday_factors)
    keep = first | (rng.random(owner.size) < factors[weekday] / factors.max())
    keep &= start_us < world.end_us
    owner, start_us = owner[keep], start_us[keep]
    order = np.lexsort((start_us, owner))  # the warp can reorder sessions within a day
    return owner[order], start_us[order], activity_end_us


def _funnel(
    params: WorldParams,
    world: World,
    users: Users,
    owner: np.ndarray,
    start_us: np.ndarray,
    rng: np.random.Generator,
) -> tuple[Sessions, dict[str, dict[str, np.ndarray]]]:
    """Decide how far each session gets, step by step, with the experiments' effects.

    Each transition uses one uniform number per session for both arms of an experiment
    (common random numbers), so each exposed user's outcome under both arms is known:
    the truth manifest reports the true effect, not just the planted parameter.
    """
    n_s, n_u = owner.size, users.no.size
    devices, countries = list(params.devices), list(params.countries)
    rates = np.array([params.step_rates[d] for d in devices])[users.device[owner]]
    engagement_mean = params.mean_step1_events * rng.gamma(2.0, 0.5, n_u)
    sigma = params.propensity_sigma
    propensity = np.exp(sigma * rng.standard_normal(n_u) - sigma**2 / 2)  # mean 1
    n_step1 = np.maximum(1, rng.poisson(engagement_mean[owner]))
    boost = np.minimum(1.0 + params.engagement_lift_per_event * n_step1, params.engagement_lift_cap)
    country_factor = np.array([params.country_conversion.get(c, 1.0) for c in countries])
    user_factor = country_factor[users.country] * users.quality * propensity
    rates[:, 2:] *= (user_factor[owner] * boost)[:, None]
    uniforms = rng.random((n_s, N_STEPS))

    specs = params.experiments
    treated = {
        e.experiment_id: _variant(users.no, e_index, e.weights) == 1
        for e_index, e in enumerate(specs)
    }
    exposure: dict[str, np.ndarray] = {}
    outcomes: dict[str, dict[str, np.ndarray]] = {}
    reached = np.zeros((n_s, N_STEPS), bool)
    reached[:, 0] = True
    for k in range(1, N_STEPS):
        p = np.minimum(rates[:, k], 0.98)
        lifted = [e for e in specs if e.lifted_step == k]
        multiplier = np.ones(n_s)
        for e in lifted:
            exposed_from = exposure[e.experiment_id]
            on = (
                treated[e.experiment_id][owner]
                & (exposed_from[owner] >= 0)
                & (np.arange(n_s) >= exposed_from[owner])
            )
            multiplier = np.where(on, multiplier * (1 + e.relative_lift), multiplier)
            control = reached[:, k - 1] & (uniforms[:, k] < p)
            treat = reached[:, k - 1] & (
                uniforms[:, k] < np.minimum(p * (1 + e.relative_lift), 0.99)
            )
            after = (exposed_from[owner] >= 0) & (np.arange(n_s) >= exposed_from[owner])
            outcomes[e.experiment_id] = {
                "control": np.where(after, control, False),
                "treatment": np.where(after, treat, False),
            }
        reached[:, k] = reached[:, k - 1] & (uniforms[:, k] < np.minimum(p * multiplier, 0.99))
        for e in specs:
            if e.exposure_step == k:
                window_start = world.start_us + e.start_day * US_PER_DAY
                window_end = window_start + e.duration_days * US_PER_DAY
                in_window = (start_us >= window_start) & (start_us < window_end)
                exposure[e.experiment_id] = _first_per_group(owner, reached[:, k] & in_window, n_u)

    counts = reached.astype(np.int64)
    counts[:, 1] *= n_step1
    if params.scenario == "ecommerce":
        counts[:, 2] *= np.minimum(1 + rng.poisson(params.mean_extra_items, n_s), n_step1)
    else:
        counts[:, 2] *= 1 + rng.poisson(params.mean_extra_items, n_s)
    counts[:, 3] += reached[:, 3] & (rng.random(n_s) < params.p_repeat_step)
    return Sessions(owner, start_us, counts, reached, treated, exposure), outcomes


def _variant(user_no: np.ndarray, salt: int, weights: dict[str, float]) -> np.ndarray:
    """Variant index per user from a hash of (user, experiment); 1 is the first non-control."""
    cumulative = np.cumsum(list(weights.values()))
    codes: np.ndarray = np.searchsorted(
        cumulative / cumulative[-1], variant_hash(user_no, salt + 1), side="right"
    )
    return codes


# --- events -----------------------------------------------------------------------------


@dataclass
class Events:
    session: np.ndarray
    step: np.ndarray  # 0..4, or 5 for the extra landing-type events
    ts: np.ndarray
    product: np.ndarray  # product index or -1
    place: np.ndarray  # position among the session's events of the same step


def _events(
    params: WorldParams, world: World, users: Users, s: Sessions, rng: np.random.Generator
) -> Events:
    """Every event of every session: the funnel steps reached, a gap apart, plus extra
    landing-type events (step code 5) at random moments within the session."""
    n_s = s.owner.size
    n_extra = rng.poisson(params.mean_extra_step0_events, n_s)
    counts = np.column_stack([s.counts, n_extra])  # sessions x 6, laid out row-major
    width = counts.shape[1]
    flat = counts.ravel()
    row = np.repeat(np.arange(flat.size, dtype=np.int64), flat)
    session, step = row // width, (row % width).astype(np.int8)
    place = _positions(flat)
    extra = step == N_STEPS

    # Funnel events advance the clock; extra events do not (they are placed afterwards).
    gaps = rng.exponential(params.mean_step_gap_seconds * US_PER_SECOND, session.size)
    gaps[extra] = 0.0
    per_session = counts.sum(axis=1)
    gaps[_positions(per_session) == 0] = 0.0
    ts = s.start_us[session] + _group_cumsum(gaps.astype(np.int64), per_session)
    span = np.maximum(ts[np.cumsum(per_session) - 1] - s.start_us, 60 * US_PER_SECOND)
    ts[extra] += 1 + (rng.random(int(extra.sum())) * span[session[extra]]).astype(np.int64)
    ts = _end_by_world_end(ts, session, per_session, s.start_us, world.end_us)

    # Products: each step-1 event views one (by the segment's taste); step-2 events put
    # the session's first viewed products in the cart.
    product = np.full(session.size, -1, np.int64)
    if params.scenario == "ecommerce":
        views = np.flatnonzero(step == 1)
        segment = users.segment[s.owner[session[views]]]
        draws = rng.random(views.size)
        for code, name in enumerate(params.segments):
            mine = segment == code
            product[views[mine]] = np.searchsorted(
                world.popularity_cdf[name], draws[mine], side="right"
            )
        product = np.minimum(product, len(world.product_ids) - 1)
        group_start = np.cumsum(flat) - flat
        carts = np.flatnonzero(step == 2)
        first_view = group_start[session[carts] * width + 1]
        product[carts] = product[first_view + place[carts]]

    # Clock noise: a few events arrive with a clock up to 90 s behind (never before the
    # world's first day, which has no day before it either).
    skewed = rng.integers(0, ts.size, rng.binomial(ts.size, params.p_out_of_order))
    behind = (rng.random(skewed.size) * 90 * US_PER_SECOND).astype(np.int64)
    ts[skewed] = np.maximum(ts[skewed] - behind, world.start_us)

    order = _sort_events(ts - world.start_us)
    return Events(session[order], step[order], ts[order], product[order], place[order])


def _end_by_world_end(
    ts: np.ndarray, session: np.ndarray, per_session: np.ndarray, start_us: np.ndarray, end_us: int
) -> np.ndarray:
    """Event times with every session over by the world's end: a session that would run
    past it (one started in its last minutes) does the same things faster, its events
    drawn towards its start in proportion, so its last one falls just before the end.

    A world of N days then has no event after its last day (a partial day there read as
    a drop in every "last week" figure). Squeezing, rather than cutting the events past
    the end, keeps every session's steps, order and products: the funnel, the orders and
    the experiments' truth (timed by these same events) stay as they were decided.
    """
    if not ts.size:
        return ts
    # Events lie session by session (every session has at least its first step).
    last = np.maximum.reduceat(ts, np.cumsum(per_session) - per_session)
    over = last >= end_us
    if not over.any():
        return ts
    # Scale factor per session (1 where it ends in time); `start_us < end_us` always.
    scale = np.ones(start_us.size)
    scale[over] = (end_us - 1 - start_us[over]) / (last[over] - start_us[over])
    offset = ts - start_us[session]
    squeezed = start_us[session] + np.floor(offset * scale[session]).astype(np.int64)
    result: np.ndarray = np.where(over[session], np.minimum(squeezed, end_us - 1), ts)
    return result


def _sort_events(offset_us: np.ndarray) -> np.ndarray:
    """Group events by day, keeping their generated order (user, session, step) within a
    day: a stable radix sort on the day number, O(n). Date partitions come out as
    contiguous slices; rows inside a file are by user and session, not strictly by time."""
    day = offset_us // US_PER_DAY
    small = (day - day.min()).astype(np.int16) if day.size else day.astype(np.int16)
    order: np.ndarray = np.argsort(small, kind="stable")
    return order


# --- orders, subscriptions, assignments -------------------------------------------------


def _orders(
    params: WorldParams,
    world: World,
    users: Users,
    s: Sessions,
    ev: Events,
    rng: np.random.Generator,
    block: int,
) -> tuple[pa.Table, pa.Table, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Orders and their items from purchase events: same user, time and amount.

    Returns (orders, items, purchase event rows, their amounts, the net revenue a purchase
    in each session books (None without orders), units sold per product and day).
    """
    n_s = s.owner.size
    carts = np.flatnonzero(ev.step == 2)
    cart_session = ev.session[carts]
    quantity = 1 + rng.poisson(params.mean_extra_quantity, carts.size)
    unit_price = (
        world.price_at(ev.product[carts], s.start_us[cart_session]) if carts.size else np.zeros(0)
    )
    line_value = quantity * unit_price
    cart_value = np.bincount(cart_session, weights=line_value, minlength=n_s)

    purchases = np.flatnonzero(ev.step == 4)
    sales = np.zeros((len(world.product_ids), params.days), np.int64)
    if params.scenario != "ecommerce":
        empty = np.zeros(0, np.int64)
        return _empty_orders(), _empty_items(), empty, np.zeros(0), None, sales
    p_session = ev.session[purchases]
    order_no = np.full(n_s, -1, np.int64)
    order_no[p_session] = np.arange(p_session.size)
    amount = np.round(cart_value[p_session], 2)
    # The status a purchase in each session gets, drawn for every session: the truth
    # needs it for the purchases only the other arm of an experiment would have made.
    session_status = _pick(
        rng,
        {
            "completed": 1 - params.p_cancelled - params.p_refunded,
            "cancelled": params.p_cancelled,
            "refunded": params.p_refunded,
        },
        n_s,
    )
    status = session_status[p_session]
    order_ids = _ids(f"o{block}_", np.arange(p_session.size))
    user = s.owner[p_session]
    orders = pa.table(
        {
            "order_id": order_ids,
            "user_id": _keyed(user, users.ids),
            "order_ts": timestamps(ev.ts[purchases]),
            "status": _dictionary(status, STATUSES),
            "total_amount": amount,
            "campaign_id": _take(pa.array(world.campaign_ids, pa.string()), users.campaign[user]),
        }
    )
    bought = order_no[cart_session] >= 0
    item_order = order_no[cart_session[bought]]
    items = pa.table(
        {
            "order_id": _keyed(item_order, order_ids),
            "line_no": pa.array(ev.place[carts][bought] + 1, pa.int32()),
            "product_id": pa.array(world.product_ids, pa.string()).take(
                pa.array(ev.product[carts][bought])
            ),
            "quantity": pa.array(quantity[bought], pa.int32()),
            "unit_price": unit_price[bought],
        }
    )
    # Units sold per product and day, for inventory (cancelled orders never ship).
    shipped = status[item_order] != STATUSES.index("cancelled")
    day = (s.start_us[cart_session[bought]] - world.start_us) // US_PER_DAY
    cell = ev.product[carts][bought] * params.days + np.clip(day, 0, params.days - 1)
    sales += (
        np.bincount(cell[shipped], weights=quantity[bought][shipped], minlength=sales.size)
        .astype(np.int64)
        .reshape(sales.shape)
    )
    # Net revenue as the warehouse defines it (int_order_revenue): completed orders only.
    completed = session_status == STATUSES.index("completed")
    net_value = np.where(completed, np.round(cart_value, 2), 0.0)
    return orders, items, purchases, amount, net_value, sales


def _empty_orders() -> pa.Table:
    return pa.table(
        {
            "order_id": pa.array([], pa.string()),
            "user_id": pa.array([], pa.string()),
            "order_ts": pa.array([], pa.timestamp("us")),
            "status": pa.array([], pa.string()),
            "total_amount": pa.array([], pa.float64()),
            "campaign_id": pa.array([], pa.string()),
        }
    )


def _empty_items() -> pa.Table:
    return pa.table(
        {
            "order_id": pa.array([], pa.string()),
            "line_no": pa.array([], pa.int32()),
            "product_id": pa.array([], pa.string()),
            "quantity": pa.array([], pa.int32()),
            "unit_price": pa.array([], pa.float64()),
        }
    )


def _subscriptions(
    params: WorldParams,
    world: World,
    users: Users,
    s: Sessions,
    ev: Events,
    rng: np.random.Generator,
    block: int,
) -> pa.Table:
    """Subscriptions from trigger events (purchase or upgrade): the k-th trigger moves a
    user to plan k (then adds seats where plans are per seat); after the last one, a
    chance of one downgrade and of cancelling, which ends the paid period."""
    trig = np.flatnonzero(ev.step == params.subscription_trigger_step)
    trig = trig[rng.random(trig.size) < params.p_subscribe_on_trigger]
    user, at = s.owner[ev.session[trig]], ev.ts[trig]
    by_user = np.lexsort((at, user))  # events are grouped by day; rank triggers per user
    user, at = user[by_user], at[by_user]
    annual = rng.random(users.no.size) < params.p_annual
    n_plans = len(params.plans)
    rank = _positions(np.bincount(user, minlength=users.no.size))
    level = np.minimum(rank, n_plans - 1)
    seats = 1 + np.maximum(rank - (n_plans - 1), 0) if params.seat_based else np.ones_like(rank)
    keep = params.seat_based | (rank < n_plans)
    user, at, level, seats = user[keep], at[keep], level[keep], seats[keep]

    last = np.r_[user[1:] != user[:-1], True] if user.size else np.zeros(0, bool)
    down = last & (level > 0) & (rng.random(user.size) < params.p_downgrade)
    down_at = at + (rng.exponential(45.0, user.size) * US_PER_DAY).astype(np.int64)
    down &= down_at < world.end_us
    user = np.concatenate([user, user[down]])
    at = np.concatenate([at, down_at[down]])
    level = np.concatenate([level, level[down] - 1])
    seats = np.concatenate([seats, seats[down]])
    order = np.lexsort((at, user))
    user, at, level, seats = user[order], at[order], level[order], seats[order]

    n = user.size
    last = np.r_[user[1:] != user[:-1], True] if n else np.zeros(0, bool)
    period = np.where(annual[user], 365, 30) * US_PER_DAY
    cancel_at = at + (rng.exponential(params.mean_days_to_cancel, n) * US_PER_DAY).astype(np.int64)
    cancelled = last & (cancel_at < world.end_us)
    periods = -(-(cancel_at - at) // period)
    next_start = np.r_[at[1:], 0] if n else at
    ended = np.where(last, at + periods * period, next_start)
    monthly = np.array([p.monthly_price for p in params.plans])[level] * seats
    amount = np.round(np.where(annual[user], monthly * 12 * 0.8, monthly), 2)
    return pa.table(
        {
            "subscription_id": _ids(f"sub{block}_", np.arange(n)),
            "user_id": users.ids.take(pa.array(user)),
            "plan": _dictionary(level.astype(np.int32), [p.name for p in params.plans]),
            "billing_period": _dictionary(annual[user].astype(np.int32), ["monthly", "annual"]),
            "amount": amount,
            "started_at": timestamps(at),
            "cancelled_at": pa.array(
                cancel_at.astype("datetime64[us]"), pa.timestamp("us"), mask=~cancelled
            ),
            "ended_at": pa.array(
                ended.astype("datetime64[us]"), pa.timestamp("us"), mask=~(cancelled | ~last)
            ),
        }
    )


def _assignments(
    params: WorldParams,
    world: World,
    users: Users,
    s: Sessions,
    ev: Events,
    outcomes: dict[str, dict[str, np.ndarray]],
    net_value: np.ndarray | None,
) -> tuple[pa.Table, dict[str, dict[str, float]]]:
    """Exposed users per experiment, and sums of both potential outcomes for the truth,
    measured as the warehouse measures them: conversion = the lifted step's event in the
    outcome window, revenue = net revenue of completed orders (None: no orders, no
    revenue truth)."""
    n_u, n_s = users.no.size, s.owner.size
    tables, sums = [], {}
    for e_index, e in enumerate(params.experiments):
        exposure_session = s.exposure[e.experiment_id]
        exposed = np.flatnonzero(exposure_session >= 0)
        mask = ev.step == e.exposure_step
        first_ts = np.full(n_s, np.iinfo(np.int64).max)
        np.minimum.at(first_ts, ev.session[mask], ev.ts[mask])
        assigned_ts = first_ts[exposure_session[exposed]]
        # Exposure is decided by the session's start, but the exposure event itself can
        # fall outside the window: a session running past its end, or a clock running
        # behind at the start. Like a real platform, the experiment only logs exposures
        # inside its window, and the truth covers exactly the users it logged.
        window_start = world.start_us + e.start_day * US_PER_DAY
        inside = (assigned_ts >= window_start) & (
            assigned_ts < window_start + e.duration_days * US_PER_DAY
        )
        exposed, assigned_ts = exposed[inside], assigned_ts[inside]
        variant = _variant(users.no[exposed], e_index, e.weights)
        lost = (variant == 1) & (variant_hash(users.no[exposed], 7919 + e_index) < e.srm_lost_share)
        names = pa.array(list(e.weights), pa.string())
        tables.append(
            pa.table(
                {
                    "experiment_id": pa.array([e.experiment_id] * int((~lost).sum()), pa.string()),
                    "user_id": users.ids.take(pa.array(exposed[~lost])),
                    "variant": names.take(pa.array(variant[~lost])),
                    "assigned_ts": timestamps(assigned_ts[~lost]),
                }
            )
        )
        # Potential outcomes per exposed user within the outcome window, timed as the
        # warehouse times them: by the lifted step's event where the session has one (its
        # clock may run behind, even to before the exposure), else by the session start
        # (an outcome only the other arm would have had has no event, hence no time; the
        # sessions from the exposure session on are the candidates, see _funnel).
        never = np.iinfo(np.int64).max
        outcome_start = np.full(n_u, never)
        outcome_start[exposed] = assigned_ts
        outcome_end = np.full(n_u, -1, np.int64)
        outcome_end[exposed] = assigned_ts + e.outcome_window_days * US_PER_DAY
        lifted = ev.step == e.lifted_step
        lifted_ts = np.full(n_s, never)
        np.minimum.at(lifted_ts, ev.session[lifted], ev.ts[lifted])
        in_window = np.where(
            lifted_ts < never,
            (lifted_ts >= outcome_start[s.owner]) & (lifted_ts < outcome_end[s.owner]),
            s.start_us < outcome_end[s.owner],
        )
        entry = {"n_exposed": float(exposed.size), "n_treated": float((variant == 1).sum())}
        # The users the experiment logged in each arm, for the per-arm levels the
        # warehouse observes (each user's own potential outcome).
        logged = ~lost
        arm_users = {"control": exposed[logged & (variant == 0)]}
        arm_users["treatment"] = exposed[logged & (variant == 1)]
        for arm in ("control", "treatment"):
            hit = outcomes[e.experiment_id][arm] & in_window
            converted = np.bincount(s.owner[hit], minlength=n_u) > 0
            entry[f"converted_{arm}"] = float(converted[exposed].sum())
            entry[f"arm_n_{arm}"] = float(arm_users[arm].size)
            entry[f"arm_converted_{arm}"] = float(converted[arm_users[arm]].sum())
            if e.lifted_step == N_STEPS - 1 and net_value is not None:
                # Per session, rounded like an order's amount; summed like the mart.
                revenue = np.bincount(s.owner[hit], weights=net_value[hit], minlength=n_u)
                entry[f"revenue_{arm}"] = float(revenue[exposed].sum())
                entry[f"arm_revenue_{arm}"] = float(revenue[arm_users[arm]].sum())
        sums[e.experiment_id] = entry
    table = pa.concat_tables(tables) if tables else pa.table({})
    return table, sums


def _events_table(
    params: WorldParams,
    world: World,
    users: Users,
    s: Sessions,
    ev: Events,
    block: int,
    purchases: np.ndarray,
    amounts: np.ndarray,
    orders: pa.Table,
) -> pa.Table:
    n = ev.ts.size
    vocabulary = list(dict.fromkeys([*params.funnel_steps, EXTRA_STEP0_EVENT[params.scenario]]))
    code = np.array(
        [*range(N_STEPS), vocabulary.index(EXTRA_STEP0_EVENT[params.scenario])], np.int32
    )
    user = s.owner[ev.session]
    amount = np.full(n, np.nan)
    amount[purchases] = amounts
    properties = pa.nulls(n, pa.string())
    if purchases.size:
        order_json = pc.binary_join_element_wise(
            '{"order_id": "', orders.column("order_id"), '"}', ""
        )
        index = np.full(n, -1, np.int64)
        index[purchases] = np.arange(purchases.size)
        properties = _take(order_json, index)
    products = pa.array(world.product_ids, pa.string())
    return pa.table(
        {
            "event_id": _ids(f"e{block}_", np.arange(n)),
            "user_id": _keyed(user, users.ids),
            "session_id": _ids(f"s{block}_", ev.session),
            "event_type": _dictionary(code[ev.step], vocabulary),
            "event_ts": timestamps(ev.ts),
            "device": _dictionary(users.device[user], list(params.devices)),
            "country": _dictionary(users.country[user], list(params.countries)),
            "product_id": _keyed(ev.product, products),
            "amount": pa.array(amount, pa.float64(), from_pandas=True),
            "properties": properties,
        }
    )


def generate_block(params: WorldParams, world: World, block: int) -> Block:
    """Simulate the users of one block and everything they do."""
    rng = block_rng(params, block)
    users = _users(params, world, rng, block)
    users_table = _users_table(params, world, users, rng)
    changes = _user_changes(params, world, users, rng)
    owner, start_us, activity_end_us = _sessions(params, world, users, rng)
    sessions, outcomes = _funnel(params, world, users, owner, start_us, rng)
    ev = _events(params, world, users, sessions, rng)
    orders, items, purchases, amounts, net_value, sales = _orders(
        params, world, users, sessions, ev, rng, block
    )
    subscriptions = _subscriptions(params, world, users, sessions, ev, rng, block)
    assignments, experiment_sums = _assignments(
        params, world, users, sessions, ev, outcomes, net_value
    )
    events = _events_table(params, world, users, sessions, ev, block, purchases, amounts, orders)
    tables = {
        "users": users_table,
        "user_changes": changes,
        "events": events,
        "orders": orders,
        "order_items": items,
        "subscriptions": subscriptions,
        "assignments": assignments,
    }
    event_day = (ev.ts - world.start_us) // US_PER_DAY
    activity = pa.table({"user_id": users.ids, "activity_end_ts": timestamps(activity_end_us)})
    return Block(block, tables, event_day, sales, experiment_sums, activity=activity)
