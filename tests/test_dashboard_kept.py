"""The dashboard's kept engines (`warehouse.opened` with a `Keeper`): a kept engine is
reused and read afresh, not closed after a run; a lost one is discarded, whether it is
lost on opening or inside the run. The engine and keeper are stand-ins that record what
`opened` does to them: what is under test is `opened`'s own bookkeeping (the real
PostgreSQL connection is kept and dropped in test_dashboard_paths)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from productlens import ops
from productlens.config import Project, load_project
from productlens.dashboard import warehouse
from productlens.errors import EngineUnavailable


class Recorder:
    """An engine whose warehouse has every table, one row each; or, with `lose_at`, whose
    server is gone from that call on (EngineUnavailable, as a dropped connection raises)."""

    def __init__(self, lose_at: str | None = None) -> None:
        self.calls: list[str] = []
        self.lose_at = lose_at

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name == self.lose_at:
            raise EngineUnavailable("lost the PostgreSQL connection: server closed it")

    def forget_catalog(self) -> None:
        self._call("forget_catalog")

    def table_kind(self, schema: str, name: str) -> str | None:
        self._call("table_kind")
        return None if (schema, name) == ops.DEMO_WORLD else "table"

    def fetch_all(self, query: Any) -> list[tuple[Any, ...]]:
        self._call("fetch_all")
        return [(1,)]

    def close(self) -> None:
        self._call("close")


class Keeper:
    """Keeps one engine per project as Streamlit's resource cache does, and counts discards."""

    def __init__(self, engines: list[Recorder]) -> None:
        self.engines = engines  # the engine each (re)open returns, in turn
        self.kept: Recorder | None = None
        self.opens = 0
        self.discards = 0

    def engine(self, project: Project) -> Any:
        if self.kept is None:
            self.kept = self.engines[self.opens]
            self.opens += 1
            if self.kept.lose_at == "open":
                self.kept = None
                raise EngineUnavailable("lost the PostgreSQL connection: refused")
        return self.kept

    def discard(self, project: Project) -> None:
        self.discards += 1
        self.kept = None


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return load_project(tmp_path, engine="postgres")


def test_a_kept_engine_is_reused_read_afresh_and_not_closed(project: Project) -> None:
    engine = Recorder()
    keeper = Keeper([engine])
    for _ in range(2):
        with warehouse.opened(project, keeper) as opened:  # type: ignore[arg-type]
            assert opened is engine
    assert keeper.opens == 1
    assert keeper.discards == 0
    assert engine.calls.count("forget_catalog") == 2  # before each run's reads
    assert "close" not in engine.calls


def test_an_engine_lost_on_opening_is_discarded_and_the_next_run_connects_again(
    project: Project,
) -> None:
    # The first kept engine is lost when the run asks for it: the page says so, the keeper
    # forgets it, and the next run gets a new one.
    keeper = Keeper([Recorder(lose_at="forget_catalog"), Recorder()])
    with warehouse.opened(project, keeper) as first:  # type: ignore[arg-type]
        assert isinstance(first, warehouse.Guidance)
        assert first.title == "The warehouse cannot be reached"
    assert keeper.discards == 1
    with warehouse.opened(project, keeper) as second:  # type: ignore[arg-type]
        assert second is keeper.engines[1]
    assert keeper.opens == 2


def test_an_engine_lost_inside_the_run_is_discarded_and_the_error_raised(
    project: Project,
) -> None:
    keeper = Keeper([Recorder(), Recorder()])
    lost = keeper.engines[0]

    def a_page_whose_read_loses_the_server() -> None:
        with warehouse.opened(project, keeper) as opened:  # type: ignore[arg-type]
            assert opened is lost
            lost.lose_at = "fetch_all"
            lost.fetch_all("select 1")

    with pytest.raises(EngineUnavailable):
        a_page_whose_read_loses_the_server()
    assert keeper.discards == 1
    with warehouse.opened(project, keeper) as again:  # type: ignore[arg-type]
        assert again is keeper.engines[1]
