"""Warehouse engines behind one protocol. The composition root (`productlens.app`) picks
and opens one; this package knows no project, stage or configuration."""

from __future__ import annotations

from productlens.engines.base import LAYERS, Engine
from productlens.engines.duckdb import DuckDBEngine

__all__ = ["LAYERS", "DuckDBEngine", "Engine"]
