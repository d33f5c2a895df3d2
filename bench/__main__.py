"""`python -m bench [generate|ingest|pipeline|funnel|metrics|engines] [--sizes 1M,10M,100M]`:
run benchmarks, print tables, and write the figures to bench/results/<name>-<stamp>.json
(and the latest to bench/results/<name>.json)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import engines, funnel, generation, ingestion, metrics, pipeline

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_EVENTS_PER_SECOND = 2_000_000
TARGET_PEAK_RSS = 1.5 * 2**30
TARGET_INGEST_ROWS_PER_SECOND = 5_000_000
TARGET_INGEST_FROM = 10_000_000  # events; below, fixed costs dominate


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 10**3, "M": 10**6, "G": 10**9}.get(text[-1], 1)
    return int(float(text.rstrip("KMG")) * scale)


def bench_generation(sizes: list[int], console: Console) -> list[dict[str, object]]:
    table = Table(title="generation: events per second and peak memory (process tree)")
    for column in ("events", "tool", "seconds", "events/s", "peak RSS", "vs plain NumPy", "target"):
        table.add_column(column, justify="right" if column != "tool" else "left")
    rows: list[dict[str, object]] = []
    for size in sizes:
        ours = generation.measure("productlens", size)
        plain = generation.measure("plain-numpy", size) if size <= 10**7 else None
        rate = ours["events"] / ours["seconds"]
        meets = rate >= TARGET_EVENTS_PER_SECOND and ours["peak_rss"] <= TARGET_PEAK_RSS
        ratio = f"{rate / (plain['events'] / plain['seconds']):.2f}x" if plain else "-"
        table.add_row(
            f"{ours['events']:,.0f}",
            "productlens",
            f"{ours['seconds']:.2f}",
            f"{rate / 1e6:.2f}M",
            f"{ours['peak_rss'] / 2**30:.2f} GiB",
            ratio,
            "met" if meets else "missed",
        )
        if plain:
            table.add_row(
                f"{plain['events']:,.0f}",
                "plain NumPy (1 process)",
                f"{plain['seconds']:.2f}",
                f"{plain['events'] / plain['seconds'] / 1e6:.2f}M",
                f"{plain['peak_rss'] / 2**30:.2f} GiB",
                "1.00x",
                "",
            )
        rows.append({"size": size, "productlens": ours, "plain_numpy": plain})
        console.print(f"done: {size:,} events")
    console.print(table)
    console.print(
        f"targets: at least {TARGET_EVENTS_PER_SECOND / 1e6:.0f}M events/s at 10M events, "
        f"peak RSS under {TARGET_PEAK_RSS / 2**30:.1f} GiB at 100M"
    )
    return rows


INGEST_REPEATS = 3


def bench_ingestion(sizes: list[int], console: Console) -> list[dict[str, object]]:
    table = Table(title="ingest: Parquet events into DuckDB, rows per second and peak memory")
    for column in ("events", "load", "seconds", "rows/s", "peak RSS", "vs plain insert", "target"):
        table.add_column(column, justify="left" if column == "load" else "right")
    rows: list[dict[str, object]] = []
    for size in sizes:
        data = ingestion.world(size)
        runs: dict[str, list[dict[str, float]]] = {"productlens": [], "plain": []}
        try:
            for _ in range(INGEST_REPEATS):  # alternating, so drift hits both alike
                for kind, done in runs.items():
                    done.append(ingestion.measure(kind, data))
        finally:
            import shutil

            shutil.rmtree(data, ignore_errors=True)
        ours, plain = (_median_run(runs[k]) for k in ("productlens", "plain"))
        rate = ours["rows"] / ours["seconds"]
        plain_rate = plain["rows"] / plain["seconds"]
        table.add_row(
            f"{ours['rows']:,.0f}",
            "productlens (validated, quarantine)",
            _spread(runs["productlens"]),
            f"{rate / 1e6:.2f}M",
            f"{ours['peak_rss'] / 2**30:.2f} GiB",
            f"{rate / plain_rate:.2f}x",
            _ingest_verdict(size, rate),
        )
        table.add_row(
            f"{plain['rows']:,.0f}",
            "plain INSERT into a table, no validation",
            _spread(runs["plain"]),
            f"{plain_rate / 1e6:.2f}M",
            f"{plain['peak_rss'] / 2**30:.2f} GiB",
            "1.00x",
            "",
        )
        rows.append(
            {"size": size, "productlens": runs["productlens"], "plain_insert": runs["plain"]}
        )
        console.print(f"done: {size:,} events")
    console.print(table)
    console.print(
        f"seconds: median of {INGEST_REPEATS} runs (fastest-slowest); target: at least "
        f"{TARGET_INGEST_ROWS_PER_SECOND / 1e6:.0f}M events/s with validation at 10M events "
        "(PostgreSQL COPY reference: about 31 s for 10M)"
    )
    return rows


def _ingest_verdict(size: int, rate: float) -> str:
    """The target holds from 10M events up; smaller loads are shown for their fixed costs."""
    if size < TARGET_INGEST_FROM:
        return ""
    return "met" if rate >= TARGET_INGEST_ROWS_PER_SECOND else "missed"


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def _spread(runs: list[dict[str, Any]]) -> str:
    seconds = sorted(r["seconds"] for r in runs)
    return f"{_median_run(runs)['seconds']:.2f} ({seconds[0]:.2f}-{seconds[-1]:.2f})"


PIPELINE_TARGETS = {10**7: 30.0, 10**8: 360.0}
PIPELINE_MEMORY = 8 * 2**30


def bench_pipeline(
    sizes: list[int], console: Console, variants: list[str] | None = None, repeats: int = 1
) -> list[dict[str, object]]:
    """Each size once as shipped; with `variants` (layouts of core.fct_events, see
    bench/pipeline.py), each variant `repeats` times, alternating, medians compared with
    the first variant's."""
    table = Table(title="ingest + build + checks: seconds per stage and peak memory")
    for column in (
        "events",
        "fct_events layout",
        "ingest",
        "build",
        "(fct_events)",
        "check",
        "total",
        "CPU s (ingest/build/check)",
        "vs first",
        "peak RSS",
        "target",
    ):
        table.add_column(column, justify="left" if column == "fct_events layout" else "right")
    names: list[str | None] = list(variants) if variants else [None]
    rows: list[dict[str, object]] = []
    for size in sizes:
        data = ingestion.world(size)
        runs: dict[str | None, list[dict[str, Any]]] = {name: [] for name in names}
        load = [_load()]
        sources = {
            name: pipeline.checkout(name.removeprefix(pipeline.AGAINST))
            for name in names
            if name is not None and name.startswith(pipeline.AGAINST)
        }
        try:
            for _ in range(repeats):  # alternating, so drift hits every variant alike
                for name in names:
                    runs[name].append(pipeline.measure(data, name, sources.get(name)))
                    load.append(_load())
        finally:
            import shutil

            shutil.rmtree(data, ignore_errors=True)
            for folder in sources.values():
                shutil.rmtree(folder, ignore_errors=True)
        console.print(_load_line(load))
        first = _median_run(runs[names[0]])["seconds"]
        for name in names:
            result = _median_run(runs[name])
            stages = result["stages"]
            total = float(result["seconds"])
            peak = float(result["peak_rss"])
            fct = dict(result["slowest_models"]).get("core.fct_events", 0.0)
            limit = PIPELINE_TARGETS.get(size)
            verdict = (
                ""
                if limit is None
                else ("met" if total <= limit and peak <= PIPELINE_MEMORY else "missed")
            )
            table.add_row(
                f"{size:,}",
                name or "as shipped",
                f"{stages['ingest']:.1f}s",
                f"{stages['build']:.1f}s",
                f"{fct:.1f}s",
                f"{stages['check']:.1f}s",
                _spread(runs[name]) if repeats > 1 else f"{total:.1f}s",
                _cpu(result.get("cpu_seconds")),
                f"{total / first:.2f}x",
                f"{peak / 2**30:.2f} GiB",
                verdict,
            )
            slow = ", ".join(f"{n} {secs:.1f}s" for n, secs in result["slowest_models"])
            console.print(f"done: {size:,} events, {name or 'as shipped'}; slowest models: {slow}")
            rows.append({"size": size, "variant": name, "runs": runs[name], **result})
    console.print(table)
    console.print(
        "targets: under 30 s at 10M events; under 6 min and 8 GiB at 100M"
        + (
            f"; stages: the median run's; total: median of {repeats} (fastest-slowest)"
            if repeats > 1
            else ""
        )
    )
    return rows


FUNNEL_TARGETS = {10**7: 0.5, 5 * 10**7: 1.0}  # productlens / windowFunnel, at most
METRIC_TARGET_SECONDS = 1.0  # retention and DAU/WAU/MAU at 10M


def bench_funnel(
    sizes: list[int], console: Console, variants: list[str] | None = None
) -> list[dict[str, object]]:
    """`variants`: 'sorted' also times the funnels on a copy of fct_events sorted by user
    and time; `@REF` also times git revision REF's funnel query on the same warehouse."""
    funnel.ensure_chdb(console.print)
    variants = variants or []
    unknown = [v for v in variants if v != "sorted" and not v.startswith(pipeline.AGAINST)]
    if unknown:
        raise SystemExit(f"bench funnel --variants: unknown {', '.join(unknown)} (sorted, @REF)")
    against = {
        v: pipeline.checkout(v.removeprefix(pipeline.AGAINST))
        for v in variants
        if v.startswith(pipeline.AGAINST)
    }
    rows: list[dict[str, object]] = []
    try:
        for size in sizes:
            rows.append(_funnel_size(size, console, "sorted" in variants, against))
    finally:
        import shutil

        for folder in against.values():
            shutil.rmtree(folder, ignore_errors=True)
    return rows


def _funnel_size(
    size: int, console: Console, layouts: bool, against: dict[str, Path]
) -> dict[str, object]:
    data = ingestion.world(size)
    load = [_load()]
    try:
        result = funnel.measure(data, layouts, against)
    finally:
        import shutil

        shutil.rmtree(data, ignore_errors=True)
    load.append(_load())
    _print_funnel(size, result, console)
    console.print(_load_line(load))
    return {"size": size, "load": load, **result}


def _print_funnel(size: int, result: dict[str, Any], console: Console) -> None:
    seconds: dict[str, list[float]] = result["seconds"]
    reference: list[int] = result["reference"]
    counts: dict[str, list[int]] = result["counts"]
    base = _median(seconds.get("clickhouse", []))
    title = (
        f"funnel {', '.join(funnel.STEPS)} (ordered, {funnel.WINDOW.days}-day window) "
        f"on {result['events']:,} events; exact reference: {reference} "
        f"({result['reference_seconds']:.1f} s in plain Python)"
    )
    table = Table(title=title)
    for column in ("query", "seconds", "ratio", "users per step", "counts", "target"):
        table.add_column(column, justify="left" if column in ("query", "counts") else "right")
    limit = FUNNEL_TARGETS.get(size)
    for name, runs in seconds.items():
        if not runs:
            table.add_row(name, "-", "-", "-", result["errors"].get(name, "failed"), "")
            continue
        median = _median(runs)
        got = counts.get(name)
        verdict = ""
        ratio = f"{median / base:.2f}x windowFunnel" if base else "-"
        if name == "productlens" and limit is not None and base:
            verdict = "met" if median <= limit * base and got == reference else "missed"
        elif got is None:  # retention, DAU/WAU/MAU: against their target
            ratio = f"{median / METRIC_TARGET_SECONDS:.2f}x the 1 s target"
            if size == 10**7:
                verdict = "met" if median < METRIC_TARGET_SECONDS else "missed"
        table.add_row(
            name,
            f"{median:.2f} ({min(runs):.2f}-{max(runs):.2f})",
            ratio,
            str(got) if got is not None else "-",
            _agreement(name, got, reference),
            verdict,
        )
    console.print(table)
    if "sorted copy seconds" in result:
        console.print(
            f"sorting a copy of fct_events by (user_id, event_ts) took "
            f"{result['sorted copy seconds']:.1f} s (a build would pay it once)"
        )
    console.print(
        f"seconds: median of {funnel.REPEATS} alternating runs (fastest-slowest); targets: "
        "productlens at most 0.5x windowFunnel at 10M and at most 1x at 50M, with counts "
        f"equal to the exact reference; retention and DAU/WAU/MAU under "
        f"{METRIC_TARGET_SECONDS:.0f} s at 10M"
    )


def _agreement(name: str, got: list[int] | None, reference: list[int]) -> str:
    if got is None:
        return ""
    if got == reference:
        return "= reference"
    off = ", ".join(
        f"step {i + 1}: {g - r:+d}"
        for i, (g, r) in enumerate(zip(got, reference, strict=True))
        if g != r
    )
    note = " (windowFunnel is wrong on ties)" if name == "clickhouse" else ""
    return f"DIFFERS from reference: {off}{note}"


def _cpu(cpu: dict[str, float] | None) -> str:
    if not cpu:
        return "-"
    parts = "/".join(f"{cpu[s]:.1f}" for s in ("ingest", "build", "check"))
    return f"{sum(cpu.values()):.1f}s ({parts})"


def _load() -> float:
    """The machine's 1-minute load average: on a shared machine only ratios within one
    run mean much, and the load says how much the seconds are inflated."""
    return os.getloadavg()[0]


def _load_line(load: Sequence[float]) -> str:
    return (
        f"machine load (1-minute average) before and after each run: "
        f"{', '.join(f'{x:.1f}' for x in load)} on {os.cpu_count()} cores"
    )


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else 0.0


def bench_metrics(sizes: list[int], console: Console) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for size in sizes:
        data = ingestion.world(size)
        try:
            result = metrics.measure(data)
        finally:
            import shutil

            shutil.rmtree(data, ignore_errors=True)
        rows.append({"size": size, **result})
        _print_metrics(size, result, console)
    return rows


def _print_metrics(size: int, result: dict[str, Any], console: Console) -> None:
    title = (
        f"activity and retention (signup -> any event, {metrics.RETENTION_PERIODS} cohorts) "
        f"on {result['events']:,} events"
    )
    table = Table(title=title)
    for column in ("metric", "query", "seconds", "vs productlens", "vs floor", "figures", "target"):
        table.add_column(
            column, justify="left" if column in ("metric", "query", "figures") else "right"
        )
    entries: list[dict[str, Any]] = result["rows"]
    floor = _median(next(r["seconds"] for r in entries if r["metric"] == "floor"))
    ours = {r["metric"]: _median(r["seconds"]) for r in entries if r["tool"] == "productlens"}
    for row in entries:
        median = _median(row["seconds"])
        mine = row["tool"] == "productlens"
        verdict = ""
        if mine and size >= 10**7:
            verdict = (
                "met"
                if median < METRIC_TARGET_SECONDS
                else (f"missed by {median - METRIC_TARGET_SECONDS:.2f} s")
            )
        base = ours.get(row["metric"])
        table.add_row(
            row["metric"],
            row["tool"],
            f"{median:.2f} ({min(row['seconds']):.2f}-{max(row['seconds']):.2f})",
            f"{median / base:.2f}x" if base and not mine else "",
            f"{median / floor:.1f}x" if floor and row["metric"] != "floor" else "",
            row["agreement"] or ("reference" if mine else ""),
            verdict,
        )
    console.print(table)
    console.print(
        f"seconds: median of {metrics.REPEATS} alternating runs (fastest-slowest); target: "
        f"productlens's retention and DAU/WAU/MAU under {METRIC_TARGET_SECONDS:.0f} s each at "
        "10M events (UTC); 'vs productlens' > 1 means the other query is slower; figures: "
        "each query's days and cohorts compared with productlens's"
    )


def bench_engines(
    sizes: list[int],
    console: Console,
    names: Sequence[str] = engines.ENGINES,
    repeats: int = 1,
    *,
    server: Any | None = None,
    run: engines.Measure = engines.measure,
) -> list[dict[str, object]]:
    """Every engine on one world per size; with PostgreSQL, a throwaway server for the
    whole run (or `server`)."""
    unknown = sorted(set(names) - set(engines.ENGINES))
    if unknown:
        raise SystemExit(
            f"unknown engine(s) {', '.join(unknown)}: use {', '.join(engines.ENGINES)}"
        )
    with contextlib.ExitStack() as stack:
        if "postgres" in names and server is None:
            server = stack.enter_context(engines.postgres())
        rows: list[dict[str, object]] = []
        for size in sizes:
            data = ingestion.world(size)
            try:
                result = engines.compare(
                    data, names, server, repeats=repeats, run=run, tag=str(size)
                )
            finally:
                import shutil

                shutil.rmtree(data, ignore_errors=True)
            rows.append({"size": size, **result})
            _print_engines(size, result, repeats, console)
    return rows


def _print_engines(size: int, result: dict[str, Any], repeats: int, console: Console) -> None:
    done = [runs[0] for runs in result["runs"].values() if runs]
    events = done[0]["rows"].get("raw", 0) if done else 0
    table = Table(
        title=f"ingest + publish + build + checks by engine, {size:,} events "
        f"(raw layer: {events:,} rows): seconds per stage and peak memory (process tree)"
    )
    for column in engines.COLUMNS:
        table.add_column(column, justify="left" if column == "engine" else "right")
    for row in engines.table_rows(result):
        table.add_row(*row)
    console.print(table)
    for name, error in result["errors"].items():
        console.print(f"{name} failed: {error}")
    for name, runs in result["runs"].items():
        if not runs or "finish" not in runs[0]:
            continue
        run = engines.median_run(runs)
        slowest = sorted(run["model_seconds"].items(), key=lambda item: -item[1])[:8]
        console.print(
            f"{name}: finish (rows per layer) {run['finish']:.2f} s; models built "
            f"{sum(run['model_seconds'].values()):.2f} s in all, slowest: "
            + ", ".join(f"{model} {seconds:.2f}" for model, seconds in slowest)
        )
    console.print(
        "publish: the raw layer shown to the engine (PostgreSQL loads each raw file once; "
        "Spark reads the files as tables; DuckDB's warehouse is the lake's catalog); total: "
        "the sum of the stages; cpu s: CPU seconds (user + system) of the run's processes "
        "(Spark's JVM, PostgreSQL's server included) over the stages, steadier than wall "
        "time on a busy machine"
        + (f", the median of {repeats} alternating runs" if repeats > 1 else "")
        + "; peak memory: PSS from /proc of the run's processes, PostgreSQL's server and "
        "Spark's JVM included; plain COPY: CSV COPY of the same tables' rows (lineage "
        "columns included) into bare tables on one connection, in the publish column; "
        "'vs plain COPY' gives the total's ratio and publish's"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "which",
        nargs="?",
        default="all",
        choices=["all", "generate", "ingest", "pipeline", "funnel", "metrics", "engines"],
    )
    parser.add_argument("--sizes", default=None, help="comma-separated event counts")
    parser.add_argument(
        "--variants",
        default=None,
        help="pipeline: layouts of core.fct_events to compare in one run, comma-separated "
        f"(first is the baseline): {', '.join(pipeline.VARIANTS)}, or @REF for git revision "
        "REF's code as shipped (@main); funnel: 'sorted' also "
        "times the funnels on a copy of fct_events sorted by (user_id, event_ts), @REF "
        "also times git revision REF's funnel query on the same warehouse",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="pipeline: runs per variant; engines: per engine"
    )
    parser.add_argument(
        "--engines",
        default=",".join(engines.ENGINES),
        help="engines: which warehouse engines to compare, comma-separated",
    )
    args = parser.parse_args()
    console = Console(width=max(Console().width, 120))  # the tables need the room
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    runs = {
        "generate": (bench_generation, "1M,10M,100M"),
        "ingest": (bench_ingestion, "1M,10M"),
        "pipeline": (
            lambda sizes, console: bench_pipeline(
                sizes,
                console,
                args.variants.split(",") if args.variants else None,
                args.repeats or (3 if args.variants else 1),
            ),
            "10M",
        ),
        "funnel": (
            lambda sizes, console: bench_funnel(
                sizes, console, args.variants.split(",") if args.variants else None
            ),
            "10M,50M",
        ),
        "metrics": (bench_metrics, "10M"),
        "engines": (
            lambda sizes, console: bench_engines(
                sizes, console, args.engines.split(","), args.repeats or 1
            ),
            "1M,10M",
        ),
    }
    for name, (run, default_sizes) in runs.items():
        if args.which not in ("all", name):
            continue
        sizes = [parse_size(s) for s in (args.sizes or default_sizes).split(",")]
        rows = run(sizes, console)
        text = json.dumps(rows, indent=2) + "\n"
        (RESULTS / f"{name}-{stamp}.json").write_text(text)
        (RESULTS / f"{name}.json").write_text(text)


if __name__ == "__main__":
    main()
