"""Real servers for the engine tests: a throwaway PostgreSQL 15, a local Spark session and
moto's S3 server, each on loopback in a temporary folder.

A part that cannot start fails the test that needs it with a message saying what is
missing; nothing here skips.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/local/bin")
# initdb refuses to run as root: as root the server runs as this account instead.
PG_ACCOUNT = os.environ.get("PRODUCTLENS_TEST_PG_USER", "postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin(name: str) -> str:
    for folder in PG_BIN_DIRS:
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(
        f"PostgreSQL's {name} is not on this machine (looked in {', '.join(PG_BIN_DIRS)} "
        "and PATH): install postgresql-15 to run the PostgreSQL tests",
        pytrace=False,
    )


def _as_account(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam(PG_ACCOUNT)
    except KeyError:
        pytest.fail(
            f"running as root, and there is no {PG_ACCOUNT!r} account to run PostgreSQL as "
            "(set PRODUCTLENS_TEST_PG_USER to a non-root account)",
            pytrace=False,
        )
    return ["runuser", "-u", PG_ACCOUNT, "--", *cmd]


@dataclass
class PostgresServer:
    """A running throwaway server; `dsn` names its `postgres` database."""

    folder: Path
    port: int
    user: str

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"

    def create_database(self, name: str) -> str:
        """A fresh database on this server; returns its DSN."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={name}"


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """initdb + pg_ctl start in a temp folder on a free loopback port; stopped after."""
    folder = Path(tempfile.mkdtemp(prefix="productlens-pg-"))
    data = folder / "data"
    user = PG_ACCOUNT if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        shutil.chown(folder, user=PG_ACCOUNT)
    port = free_port()
    log = folder / "server.log"
    initdb = subprocess.run(
        _as_account(
            [
                _pg_bin("initdb"),
                "-D",
                str(data),
                "-U",
                user,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    if initdb.returncode != 0:
        pytest.fail(f"initdb failed: {initdb.stderr.strip()}", pytrace=False)
    options = (
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50 "
        "-c shared_buffers=256MB -c TimeZone=UTC"
    )
    start = subprocess.run(
        _as_account(
            [
                _pg_bin("pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    if start.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else start.stderr
        pytest.fail(f"PostgreSQL did not start: {tail}", pytrace=False)
    try:
        yield PostgresServer(folder, port, user)
    finally:
        subprocess.run(
            _as_account([_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(folder, ignore_errors=True)


# The test JVM lives for one run of small queries, so the JIT's optimising compiler (C2)
# never pays back: it took about a third of the session's CPU (jstack's per-thread times,
# Spark parity). C1 only, and the serial collector instead of G1's concurrent threads on a
# 2 GB heap. Neither changes what a query returns; the engine's own sessions keep the JVM's
# defaults, which suit long runs on real data.
TEST_JVM_OPTIONS = "-Duser.timezone=UTC -XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


SPARK_OWNER = "spark-session-owner"  # in the run's temp folder, shared by its xdist workers


def claim_spark(run_dir: Path, worker: str) -> None:
    """Record that `worker` starts the run's one Spark session, or fail if another worker
    of this run has already started one: two JVMs on a 2-core machine double the Spark
    tests' time, and it means the `xdist_group("spark")` grouping did not hold."""
    marker = run_dir / SPARK_OWNER
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        owner = marker.read_text().strip()
        if owner != worker:
            pytest.fail(
                f"xdist worker {worker} is starting a second Spark session in this run; "
                f"{owner} already has one (see {marker}). Mark every test that uses the "
                '`spark` fixture with @pytest.mark.xdist_group("spark") and run with '
                "--dist loadgroup (a crashed and replaced worker also ends here, and so does a "
                "pytest that pytest-xdist cannot group with: see pyproject's pin).",
                pytrace=False,
            )
        return
    with os.fdopen(fd, "w") as out:
        out.write(worker)


def spark_session(warehouse: Path) -> Any:
    """One local Spark session pinned to UTC, small enough for a 2-core machine."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.fail("Java is not on this machine: Spark needs Java 17", pytrace=False)
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master("local[2]")
        .appName("productlens-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.extraJavaOptions", TEST_JVM_OPTIONS)
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.ui.enabled", "false")
        # Test data is small: one partition per shuffle saves seconds on every model.
        .config("spark.sql.shuffle.partitions", "1")
        # Adaptive execution re-plans every query at its stage boundaries, which small
        # data never repays: 13% less JVM CPU without it on many small distinct queries
        # (CTAS, join, count; five paired rounds in one session, every round lower). It
        # changes physical plans only, never an answer; the engine keeps Spark's default.
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.default.parallelism", "2")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )


@dataclass
class ConnectService:
    """A Spark Connect service served by a running session's own JVM; `url` reaches it."""

    session: Any
    port: int

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Shut the service down now, cancelling the calls it is serving (a lost server,
        as its clients see it). The session and its JVM keep running. Stopping twice is
        a no-op."""
        service = _connect_service(self.session)
        none = getattr(getattr(self.session._jvm.scala, "None$"), "MODULE$")
        service.stop(none, none)  # no grace period: shutdownNow


def _connect_service(session: Any) -> Any:
    return session._jvm.org.apache.spark.sql.connect.service.SparkConnectService


def connect_sessions(session: Any) -> tuple[set[str], set[str]]:
    """The Spark Connect service's client session ids in `session`'s JVM: (active,
    closed). A client's `stop()` releases its session: active to closed."""
    package = session._jvm.org.apache.spark.sql.connect.service
    # The Scala object itself: its session manager has no static forwarder.
    manager = getattr(getattr(package, "SparkConnectService$"), "MODULE$").sessionManager()

    def ids(seq: Any) -> set[str]:
        return {str(seq.apply(i).sessionId()) for i in range(seq.size())}

    return ids(manager.listActiveSessions()), ids(manager.listClosedSessions())


def connect_service_in_session(session: Any, port: int | None = None) -> ConnectService:
    """Start Spark Connect's gRPC service inside `session`'s JVM (the server plugin Spark
    ships, `SparkConnectService.start`), on `port` or a free loopback port: no second JVM.
    Its clients get sessions of their own on the same SparkContext, so they share its
    catalog. The service reads its address and port from the context's conf when it
    starts; it can be started again after `stop()` (on the same port: a server back)."""
    context = session._jsc.sc()
    conf = context.conf()  # the live SparkConf the service reads (SparkEnv's)
    port = free_port() if port is None else port
    conf.set("spark.connect.grpc.binding.address", "127.0.0.1")
    conf.set("spark.connect.grpc.binding.port", str(port))
    _connect_service(session).start(context)
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return ConnectService(session, port)
        if time.monotonic() > deadline:
            pytest.fail(f"Spark Connect did not listen on port {port} in 30 s", pytrace=False)
        time.sleep(0.1)


@dataclass
class S3Server:
    endpoint: str
    access_key: str = "testing"
    secret_key: str = "testing"
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """The environment a process needs to use this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server as a subprocess on a free loopback port."""
    port = free_port()
    # The server logs every request to stderr: into a file, since a pipe nobody reads
    # fills after 64 KiB and then blocks every request of the server.
    log = tempfile.TemporaryFile()  # noqa: SIM115  (closed in the finally below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                err = log.read().decode(errors="replace")
                pytest.fail(f"moto's S3 server did not start: {err[-2000:]}", pytrace=False)
            time.sleep(0.1)
        yield S3Server(endpoint)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        log.close()
