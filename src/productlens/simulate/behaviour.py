"""Users, sessions and funnel events for one block of users, fully vectorised.

A block draws from its own random stream (`seed`, block number), so the output does not
depend on how many blocks are made at once or in which process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from productlens.simulate.params import WorldParams

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
EPOCH = np.datetime64("1970-01-01T00:00:00", "us")

# Event-type vocabulary per scenario for browsing events between funnel steps.
BROWSE_EVENT = {"ecommerce": "product_view", "saas": "view_project"}


@dataclass(frozen=True)
class Block:
    """One block's tables, ready to write."""

    index: int
    users: pa.Table
    events: pa.Table


def block_rng(params: WorldParams, block: int) -> np.random.Generator:
    return np.random.default_rng([params.seed, block])


def _pick(rng: np.random.Generator, mix: dict[str, float], n: int) -> tuple[np.ndarray, list[str]]:
    keys = list(mix)
    cumulative = np.cumsum(list(mix.values()))
    codes = np.searchsorted(cumulative / cumulative[-1], rng.random(n), side="right")
    return codes.astype(np.int32), keys


def _dictionary(codes: np.ndarray, keys: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(keys, pa.string()))


def _ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    text = pc.cast(pa.array(numbers, pa.int64()), pa.string())
    return pc.binary_join_element_wise(prefix, text, "")


def _segment_positions(counts: np.ndarray) -> np.ndarray:
    """For segments of the given lengths, each element's position within its segment."""
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    positions: np.ndarray = np.arange(total, dtype=np.int64) - np.repeat(starts, counts)
    return positions


def _segment_cumsum(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at every segment."""
    running = np.cumsum(values)
    first = np.cumsum(counts) - counts
    result: np.ndarray = running - np.repeat(running[first] - values[first], counts)
    return result


def _timestamps(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype("datetime64[us]"), pa.timestamp("us"))


@dataclass(frozen=True)
class _Users:
    """A block's users as code arrays (indexes into each mix's keys)."""

    ids: pa.Array
    signup_us: np.ndarray
    country: np.ndarray
    device: np.ndarray
    segment: np.ndarray
    table: pa.Table


def _users(params: WorldParams, rng: np.random.Generator, block: int) -> _Users:
    first_user = block * params.users_per_block
    n = min(params.users_per_block, params.users - first_user)
    start_us = int((np.datetime64(params.start, "us") - EPOCH).astype(np.int64))
    signup_us = start_us + (rng.random(n) * params.days * US_PER_DAY).astype(np.int64)
    country, countries = _pick(rng, params.countries, n)
    device, devices = _pick(rng, params.devices, n)
    channel, channels = _pick(rng, params.channels, n)
    segment, segments = _pick(rng, params.segments, n)
    ids = _ids("u", np.arange(first_user, first_user + n, dtype=np.int64))
    table = pa.table(
        {
            "user_id": ids,
            "signup_ts": _timestamps(signup_us),
            "country": _dictionary(country, countries),
            "device": _dictionary(device, devices),
            "acquisition_channel": _dictionary(channel, channels),
            "campaign_id": pa.nulls(n, pa.string()),
            "segment": _dictionary(segment, segments),
        }
    )
    return _Users(ids, signup_us, country, device, segment, table)


def _sessions(
    params: WorldParams, rng: np.random.Generator, users: _Users
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Session owners, start times and browsing counts. The first session is at signup;
    returning users come back after exponential gaps around a per-user mean."""
    n = users.signup_us.size
    returner = rng.random(n) < params.p_return
    extra = np.minimum(rng.geometric(params.churn_per_session, n), params.max_sessions_per_user - 1)
    n_sessions = 1 + np.where(returner, extra, 0)
    gap_days = params.median_gap_days * np.exp(0.8 * rng.standard_normal(n))
    browse_mean = params.mean_browse_events * rng.gamma(2.0, 0.5, n)
    owner = np.repeat(np.arange(n), n_sessions)
    gaps = (rng.exponential(1.0, owner.size) * gap_days[owner] * US_PER_DAY).astype(np.int64)
    gaps[_segment_positions(n_sessions) == 0] = 0
    start_us = users.signup_us[owner] + _segment_cumsum(gaps, n_sessions)
    end_us = int((np.datetime64(params.end, "us") - EPOCH).astype(np.int64))
    keep = start_us < end_us
    owner, start_us = owner[keep], start_us[keep]
    return owner, start_us, rng.poisson(browse_mean[owner])


def _funnel_depth(
    params: WorldParams,
    rng: np.random.Generator,
    users: _Users,
    owner: np.ndarray,
    browse: np.ndarray,
) -> np.ndarray:
    """How many funnel steps each session reaches (at least the first)."""
    devices, countries = list(params.devices), list(params.countries)
    rates = np.array([params.step_rates[d] for d in devices])[users.device[owner]]
    boost = np.minimum(1.0 + params.browse_lift_per_event * browse, params.browse_lift_cap)
    country_factor = np.array([params.country_conversion.get(c, 1.0) for c in countries])
    rates[:, 2:] *= (country_factor[users.country[owner]] * boost)[:, None]
    passed = rng.random((owner.size, rates.shape[1] - 1)) < np.minimum(rates[:, 1:], 0.98)
    depth: np.ndarray = 1 + np.cumprod(passed, axis=1).sum(axis=1)
    return depth


def generate_block(params: WorldParams, block: int) -> Block:
    """Simulate the users of one block and everything they do."""
    rng = block_rng(params, block)
    users = _users(params, rng, block)
    owner, s_ts, browse = _sessions(params, rng, users)
    depth = _funnel_depth(params, rng, users, owner, browse)
    n_s = owner.size

    # Funnel steps reached, a gap apart; then browsing views spread over the session.
    e_session = np.repeat(np.arange(n_s), depth)
    e_step = _segment_positions(depth)
    step_gap = rng.exponential(params.mean_step_gap_seconds * US_PER_SECOND, e_session.size)
    step_gap[e_step == 0] = 0
    e_ts = s_ts[e_session] + _segment_cumsum(step_gap.astype(np.int64), depth)
    span = np.maximum(e_ts[np.cumsum(depth) - 1] - s_ts, 60 * US_PER_SECOND)
    b_session = np.repeat(np.arange(n_s), browse)
    b_ts = s_ts[b_session] + (rng.random(b_session.size) * span[b_session]).astype(np.int64)
    b_ts = np.maximum(b_ts, s_ts[b_session] + 1)  # browsing follows the landing event

    steps = params.funnel_steps
    browse_event = BROWSE_EVENT[params.scenario]
    vocabulary = list(dict.fromkeys([*steps, browse_event]))  # a dictionary holds no repeats
    session = np.concatenate([e_session, b_session])
    ts = np.concatenate([e_ts, b_ts])
    b_type = np.full(b_session.size, vocabulary.index(browse_event))
    etype = np.concatenate([e_step, b_type]).astype(np.int32)
    # Time order; ties broken by funnel step, then by source, for a stable total order.
    source = np.concatenate([np.zeros(e_session.size, np.int8), np.ones(b_session.size, np.int8)])
    order = np.lexsort((source, etype, ts))
    session, ts, etype = session[order], ts[order], etype[order]
    user = owner[session]

    # Purchase amounts: heavy-tailed, by segment.
    median, sigma = np.array([params.order_value[s] for s in params.segments]).T
    seg = users.segment[user]
    value = median[seg] * np.exp(sigma[seg] * rng.standard_normal(ts.size))
    amount = np.where(etype == len(steps) - 1, np.round(value, 2), np.nan)

    n_e = ts.size
    events = pa.table(
        {
            "event_id": _ids(f"e{block}_", np.arange(n_e)),
            "user_id": users.ids.take(pa.array(user)),
            "session_id": _ids(f"s{block}_", session),
            "event_type": _dictionary(etype, vocabulary),
            "event_ts": _timestamps(ts),
            "device": _dictionary(users.device[user], list(params.devices)),
            "country": _dictionary(users.country[user], list(params.countries)),
            "product_id": pa.nulls(n_e, pa.string()),
            "amount": pa.array(amount, pa.float64(), from_pandas=True),
            "properties": pa.nulls(n_e, pa.string()),
        }
    )
    return Block(block, users.table, events)
