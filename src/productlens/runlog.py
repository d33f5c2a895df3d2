"""The run log: one row per stage and per built object, in `ops.run_log`.

A row is appended when work starts (status `running`) and another when it ends
(`ops.run_events`; `ops.run_log` shows each step's latest), so a run killed mid-way
leaves evidence; the next run ends such steps as `interrupted`. Appending only, the log
works on engines whose tables take no UPDATE (Spark).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from productlens import __version__, ops
from productlens.engines import Engine
from productlens.errors import EngineUnavailable


@dataclass
class StepRecord:
    """What one stage or one object build did."""

    stage: str
    object: str | None
    started_at: datetime
    finished_at: datetime | None = None
    rows: int | None = None
    status: str = "running"
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        end = self.finished_at or datetime.now(UTC)
        return (end - self.started_at).total_seconds()


class RunLog:
    """Records the steps of one run in the warehouse and, at the end, in JSON."""

    def __init__(self, engine: Engine, run_id: str | None = None) -> None:
        self.engine = engine
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.records: list[StepRecord] = []
        # Keys added to run_results.json beside the steps (a daily run's summary, tests).
        self.extra: dict[str, Any] = {}
        # The tables this run's builds wrote whole (not only their recent rows): a model
        # reading one is not refreshed from a date either (`modeling.build`).
        self.built_whole: set[str] = set()
        ops.ensure_run_log(engine)
        # The warehouse file lock means no other run can be live: leftovers were killed.
        engine.execute(ops.interrupted_steps(self.run_id, _naive(_now())))

    @contextmanager
    def step(self, stage: str, obj: str | None = None) -> Iterator[StepRecord]:
        """Record the work inside the block; the block sets `record.rows`."""
        record = StepRecord(stage=stage, object=obj, started_at=_now())
        self.records.append(record)
        self.engine.execute(
            ops.insert_rows(
                ops.RUN_EVENTS,
                ops.RUN_LOG_COLUMNS,
                [[self.run_id, stage, obj, _naive(record.started_at), None, None, "running", None]],
            )
        )
        try:
            yield record
        except BaseException as exc:
            record.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
            record.error = str(exc) or type(exc).__name__
            if not isinstance(exc, EngineUnavailable):  # else there is no log to write to
                self._finish(record)
            raise
        record.status = "success"
        self._finish(record)

    def _finish(self, record: StepRecord) -> None:
        record.finished_at = _now()
        row = [
            self.run_id,
            record.stage,
            record.object,
            _naive(record.started_at),
            _naive(record.finished_at),
            record.rows,
            record.status,
            record.error,
        ]
        self.engine.execute(ops.insert_rows(ops.RUN_EVENTS, ops.RUN_LOG_COLUMNS, [row]))

    def write_json(self, path: Path) -> None:
        """Write `run_results.json` (dbt-style) for the steps recorded so far."""
        results = []
        for record in self.records:
            item = asdict(record)
            item["started_at"] = record.started_at.isoformat()
            item["finished_at"] = record.finished_at.isoformat() if record.finished_at else None
            item["seconds"] = round(record.seconds, 4)
            results.append(item)
        payload = {
            "run_id": self.run_id,
            "productlens_version": __version__,
            "engine": self.engine.name,
            "generated_at": _now().isoformat(),
            "results": results,
            **{k: v for k, v in self.extra.items() if v is not None},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
        tmp.replace(path)


def _now() -> datetime:
    return datetime.now(UTC)


def _naive(ts: datetime) -> datetime:
    """Warehouse timestamps are UTC without a zone (the raw data contract's convention)."""
    return ts.astimezone(UTC).replace(tzinfo=None)
