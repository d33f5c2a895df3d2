"""Generation speed and memory: productlens's simulator against a plain NumPy funnel
generator writing zstd Parquet (the reference in PERFORMANCE.md: about 0.8M events/s).

Each size runs in a fresh process so that peak memory is that run's alone.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.isolated import run_isolated
from bench.procmem import PeakMemory

EVENTS_PER_USER = 137.0  # the default world's events per user (10k users -> ~1.37M)


def plain_numpy_baseline(n_events: int, out: Path, chunk: int = 5_000_000) -> None:
    """A straightforward funnel generator: random users, types, times and amounts."""
    rng = np.random.default_rng(0)
    types = pa.array(["page_view", "product_view", "add_to_cart", "checkout_start", "purchase"])
    written = 0
    part = 0
    while written < n_events:
        n = min(chunk, n_events - written)
        kind = rng.choice(5, n, p=[0.45, 0.35, 0.1, 0.06, 0.04])
        table = pa.table(
            {
                "event_id": np.arange(written, written + n),
                "user_id": rng.integers(0, max(n_events // 137, 1), n),
                "event_type": pa.DictionaryArray.from_arrays(pa.array(kind, pa.int32()), types),
                "ts": pa.array(
                    (
                        np.datetime64("2026-01-05")
                        + rng.integers(0, 90 * 86400 * 10**6, n).astype("timedelta64[us]")
                    ),
                    pa.timestamp("us"),
                ),
                "device": np.where(rng.random(n) < 0.55, "web", "mobile"),
                "amount": np.where(kind == 4, np.round(rng.lognormal(4, 0.8, n), 2), np.nan),
            }
        )
        pq.write_table(table, out / f"part-{part:04d}.parquet", compression="zstd")
        written += n
        part += 1


def run_one(kind: str, n_events: int, out: str) -> dict[str, float]:
    """Run one generation in this process; return events, seconds, peak RSS."""
    from productlens.simulate import generate, preset

    with PeakMemory() as memory:
        started = time.perf_counter()
        if kind == "productlens":
            users = max(1, round(n_events / EVENTS_PER_USER))
            result = generate(preset(users=users), Path(out))
            events = result.rows["events"]
        else:
            plain_numpy_baseline(n_events, Path(out))
            events = n_events
        seconds = time.perf_counter() - started
    return {"events": events, "seconds": seconds, "peak_rss": memory.peak}


def measure(kind: str, n_events: int) -> dict[str, float]:
    """Run `run_one` in a fresh interpreter and read back its figures."""
    scratch = Path(tempfile.mkdtemp(prefix="productlens-bench-"))
    try:
        return run_isolated(
            "bench.generation.run_one", kind=kind, n_events=n_events, out=str(scratch)
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
