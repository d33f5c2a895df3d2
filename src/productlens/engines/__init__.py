"""Warehouse engines behind one protocol; `open_engine` is the composition root."""

from __future__ import annotations

from productlens.config import Project
from productlens.engines.base import LAYERS, Engine
from productlens.engines.duckdb import DuckDBEngine

__all__ = ["LAYERS", "DuckDBEngine", "Engine", "open_engine"]


def open_engine(project: Project, *, read_only: bool = False) -> Engine:
    """Open the engine the project file names, on the project's warehouse."""
    settings = project.config.warehouse
    return DuckDBEngine(
        project.warehouse_path,
        memory_limit=settings.memory_limit,
        threads=settings.threads,
        read_only=read_only,
    )
