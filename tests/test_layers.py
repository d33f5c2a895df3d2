"""Rows stored per layer: the run summary and the report count them one way
(`productlens.layers`)."""

from __future__ import annotations

from pathlib import Path

from productlens.report.sections import read_health
from tests.conftest import open_readonly, q
from tests.test_ingest_batches import layer_rows


def test_the_report_counts_rows_per_layer_as_the_run_summary_does(demo_project: Path) -> None:
    """The report counted the staging views' rows (1,466,783 in the demo) where the run
    summary counts the tables only (98,703): one definition for both (`layers`), checked
    here against the demo's printed summary and a count of each layer's tables."""
    engine = open_readonly(demo_project)
    try:
        section = read_health(engine)
        assert section is not None
        shown = dict(
            zip(
                section.rows_per_layer.column("layer").to_pylist(),
                section.rows_per_layer.column("n_rows").to_pylist(),
                strict=True,
            )
        )
        # The case the two differed on: staging.stg_events is a view.
        assert engine.table_kind("staging", "stg_events") == "view"
        for layer in ("staging", "core", "marts"):
            stored = [
                n for n in engine.list_tables(layer) if engine.table_kind(layer, n) == "table"
            ]
            expected = sum(
                int(engine.fetch_all(q(f"select count(*) from {layer}.{n}"))[0][0]) for n in stored
            )
            assert shown[layer] == expected, layer
        loaded = engine.fetch_all(q("select sum(row_count) from ops.raw_files"))[0][0]
        assert shown["raw"] == loaded
    finally:
        engine.close()
    printed = layer_rows((demo_project / "demo_stdout.txt").read_text())
    assert printed == shown
