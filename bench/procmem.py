"""Peak memory of a process tree, sampled from /proc (Linux; psutil is not a dependency).

Two measures: resident set size (RSS, `statm`), and proportional set size (PSS,
`smaps_rollup`), which splits each shared page among the processes that map it. Summed
over a tree, RSS counts shared memory once per process that touched it (PostgreSQL's
shared buffers once per backend); PSS counts it once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in task.read_text().split()]
        except OSError:
            continue
    return found


def _rss(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def _pss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu(pid: int) -> float:
    # `stat` fields after the command name (which may hold spaces, so split after its
    # closing parenthesis): utime and stime are the 12th and 13th, in clock ticks.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _tree(pid: int, measure: Callable[[int], float]) -> float:
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        try:
            total += measure(current)
        except (OSError, IndexError, ValueError):
            continue  # the process ended between listing and reading
        stack += _children(current)
    return total


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants, now."""
    return int(_tree(pid, _rss))


def tree_pss(pid: int) -> int:
    """Proportional resident bytes of `pid` and all its descendants, now."""
    return int(_tree(pid, _pss))


def tree_cpu(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by `pid` (default: this process) and its
    live descendants (Spark's JVM): on a shared machine a steadier measure than wall time.
    A descendant that already ended is not counted."""
    return _tree(pid or os.getpid(), _cpu)


class PeakMemory:
    """Context manager sampling the tree's memory every `interval` seconds; `.peak` in
    bytes. `also` adds the trees of processes that are not this one's descendants (a
    database server the run talks to); `proportional` samples PSS instead of RSS."""

    def __init__(
        self,
        pid: int | None = None,
        interval: float = 0.05,
        *,
        also: Sequence[int] = (),
        proportional: bool = False,
    ) -> None:
        self.pids = [pid or os.getpid(), *also]
        self.interval = interval
        self.measure = tree_pss if proportional else tree_rss
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        return sum(self.measure(pid) for pid in self.pids)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())
