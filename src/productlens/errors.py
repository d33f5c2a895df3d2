"""One exception root with a child per stage.

Every error carries the context a person needs to act on it (stage, model, file, row,
engine) and renders as a single line; the CLI prints that line and exits non-zero.
"""

from __future__ import annotations

from typing import ClassVar


class ProductLensError(Exception):
    """Root of every error productlens raises on purpose."""

    stage: ClassVar[str] = "productlens"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message)
        self.message = message
        self.context = {k: v for k, v in context.items() if v is not None}

    def __str__(self) -> str:
        where = ", ".join(f"{k}={v}" for k, v in self.context.items())
        return f"{self.message} ({where})" if where else self.message


class ConfigError(ProductLensError):
    """The project file or a command-line option is invalid."""

    stage = "config"
    exit_code = 2


class RunInProgress(ProductLensError):
    """Another `productlens run` holds the project's run lock (exit 75, EX_TEMPFAIL:
    try again later)."""

    stage = "run"
    exit_code = 75


class EngineError(ProductLensError):
    """The warehouse engine could not be reached or refused a statement."""

    stage = "engine"


class EngineUnavailable(EngineError):
    """The warehouse engine cannot be reached: refused at the start, or lost mid-run (a
    Spark Connect server stopped, a Spark driver gone). Nothing after it can succeed, so a
    build or check stops at once instead of failing every remaining model in turn."""


class NoWarehouse(ProductLensError):
    """A command that reads the warehouse was run where there is none (no DuckDB file)."""

    stage = "warehouse"


class StorageError(ProductLensError):
    """Object storage (an `s3://` URL) could not be reached, read or written."""

    stage = "storage"


class SimulateError(ProductLensError):
    """The synthetic world could not be generated."""

    stage = "simulate"


class IngestError(ProductLensError):
    """Input files could not be read or loaded into the raw layer."""

    stage = "ingest"


class UnreadableFile(IngestError):
    """One input file cannot be read at all (no Parquet footer, bytes that are no text in
    the declared encoding, an empty CSV file, no JSON object on any line). `path` is the
    file: `productlens run` rejects it and loads the others; `productlens ingest` stops."""

    def __init__(self, message: str, *, file: object) -> None:
        super().__init__(message, file=file)
        self.path = file


class FilesRejected(IngestError):
    """`productlens run` completed, but rejected landing files it could not read (exit 3):
    they are left in place and listed in `ops.rejected_files`."""

    exit_code = 3


class ModelError(ProductLensError):
    """A SQL model could not be discovered, ordered or built."""

    stage = "build"


class DataTestFailure(ProductLensError):
    """One or more error-severity data tests found failing rows."""

    stage = "check"


class ReportError(ProductLensError):
    """The report could not be rendered."""

    stage = "report"


class StatsInputError(ProductLensError):
    """Summary statistics given to `productlens stats` are malformed (names the field)."""

    stage = "stats"
    exit_code = 2


class ExperimentInputError(ProductLensError):
    """An `experiment` command got an option it cannot use (names the option)."""

    stage = "experiment"
    exit_code = 2


class ClvInputError(ProductLensError):
    """`productlens clv` cannot fit its models on these orders (too few customers, no repeat
    buyers, a calibration end outside the data)."""

    stage = "clv"
    exit_code = 2
