"""Retries for transient engine errors: bounded, with exponential backoff, never for data.

An error is transient when something in its chain of causes is one of the kinds in
`TRANSIENT` (by package and class name, so this module imports no database driver): a
lock another process holds on a DuckDB file, a dropped or refused connection, a
serialization failure or deadlock on PostgreSQL (a server starting up or shutting down,
"cannot connect now", is one of psycopg's OperationalErrors), a lost Spark gateway, a Spark
Connect server that is unavailable (gRPC status UNAVAILABLE, once the client's own retries
are spent). Everything else (a contract violation, a failed data test, a SQL error in a
model, a full disk) fails at once: running it again would give the same answer.

DuckDB's out-of-memory error is not transient: DuckDB runs out of its own `memory_limit`,
so the same query on the same data fails the same way; the fix is a setting (a higher
limit, a temp directory to spill to), not a wait. The package matters: DuckDB's
IOException and OutOfMemoryException derive from a DB-API `OperationalError` of its own,
which is not psycopg's dropped connection.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

Test = re.Pattern[str] | Callable[[BaseException], bool] | None


def _grpc_unavailable(error: BaseException) -> bool:
    """A gRPC error whose status is UNAVAILABLE (the server is gone or not up yet). The
    status is asked of the error (Spark Connect's `getGrpcStatusCode`, grpc's `code`): the
    message is the server's and need not name it."""
    status = getattr(error, "getGrpcStatusCode", None) or getattr(error, "code", None)
    try:
        code = status() if callable(status) else None
    except Exception:  # noqa: BLE001 - an error that cannot say its status is not this one
        return False
    return getattr(code, "name", None) == "UNAVAILABLE"


# A PostgreSQL server that answered a connection attempt with a refusal that only a
# setting fixes: a wrong password, no such database or role, a role that may not log in,
# no pg_hba.conf line for this client. libpq gives a failed attempt no SQLSTATE, so the
# server's message tells (English server messages assumed, as engines/postgres.py does).
_PG_REFUSED = re.compile(
    r"FATAL:\s+(password authentication failed|\w+ authentication failed"
    r"|(database|role) \".*\" does not exist|role \".*\" is not permitted to log in"
    r"|no pg_hba\.conf entry|permission denied)",
    re.IGNORECASE,
)


def _pg_transient(error: BaseException) -> bool:
    """psycopg's OperationalError: the server went away, refused the socket, is starting
    or shutting down, or has no free connection slot (transient), unless it answered with
    a refusal only a setting fixes (see `_PG_REFUSED`): retrying a wrong password three
    times with backoff only delays the message the user needs."""
    return not _PG_REFUSED.search(str(error))


# (package, exception class name) -> a pattern its message must match, or a test of the
# error (None: any). The most specific class of an error found here decides.
TRANSIENT: dict[tuple[str, str], Test] = {
    # DuckDB: another process holds the database file's lock; a write-write conflict.
    ("duckdb", "IOException"): re.compile(r"Could not set lock|Conflicting lock", re.IGNORECASE),
    ("duckdb", "TransactionException"): re.compile(r"conflict", re.IGNORECASE),
    # Another productlens run holds the project's run lock (an orchestrator's stage
    # waits for it; `productlens run` itself takes the lock outside its retries).
    ("productlens", "RunInProgress"): None,
    # psycopg: the server went away or refused; PostgreSQL asks for a retry.
    ("psycopg", "OperationalError"): _pg_transient,
    ("psycopg", "SerializationFailure"): None,
    ("psycopg", "DeadlockDetected"): None,
    ("psycopg", "LockNotAvailable"): None,
    ("psycopg", "AdminShutdown"): None,
    # Spark (py4j gateway) and plain sockets.
    ("py4j", "Py4JNetworkError"): None,
    # Spark Connect (and any gRPC client): the server is unavailable; other statuses (a
    # bad plan, a failed query) are answers.
    ("pyspark", "SparkConnectGrpcException"): _grpc_unavailable,
    ("grpc", "RpcError"): _grpc_unavailable,
    ("builtins", "ConnectionRefusedError"): None,
    ("builtins", "ConnectionResetError"): None,
    ("builtins", "BrokenPipeError"): None,
    ("builtins", "TimeoutError"): None,
}


@dataclass(frozen=True)
class RetryPolicy:
    """`retries` more attempts after the first, waiting `backoff_seconds`, then twice as
    long each time."""

    retries: int = 2
    backoff_seconds: float = 2.0

    def delays(self) -> Iterator[float]:
        return (self.backoff_seconds * 2**attempt for attempt in range(self.retries))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_transient(exc: BaseException) -> bool:
    """Whether the error (or one of its causes) is one a later attempt may not meet."""
    for error in _chain(exc):
        for kind in type(error).__mro__:
            key = (kind.__module__.split(".")[0].lstrip("_"), kind.__name__)
            if key in TRANSIENT:
                test = TRANSIENT[key]
                if test is None:
                    return True
                if isinstance(test, re.Pattern):
                    if test.search(str(error)):
                        return True
                elif test(error):
                    return True
                break  # the most specific kind listed decides for this error
    return False


OnRetry = Callable[[int, BaseException, float], None]


def retrying(
    policy: RetryPolicy,
    action: Callable[[], T],
    *,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`action()`, attempted again after a transient error as the policy allows;
    `on_retry(attempt, error, delay)` is told before each wait. The last error (or the
    first that is not transient) is raised as it was."""
    delays = policy.delays()
    attempt = 1
    while True:
        try:
            return action()
        except Exception as exc:
            delay = next(delays, None) if is_transient(exc) else None
            if delay is None:
                raise
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            sleep(delay)
            attempt += 1
