"""Charts drawn with matplotlib: each is returned as inline SVG text and saved as PNG."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display: render to files only

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

plt.rcParams.update(
    {
        "svg.hashsalt": "productlens",  # stable element ids: same data, same SVG
        "svg.fonttype": "none",
        "font.size": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)

PALETTE = ("#3b6ea5", "#e07b39", "#5aa469", "#c44e52", "#8172b2", "#937860")


@dataclass(frozen=True)
class Chart:
    """A rendered chart: its name, title, inline SVG and the PNG written to disk."""

    name: str
    title: str
    svg: str
    png: Path


def _save(fig: Figure, name: str, title: str, out_dir: Path) -> Chart:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    png = out_dir / f"{name}.png"
    fig.savefig(png, format="png", dpi=144, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML prolog and doctype: it is inlined in HTML
    return Chart(name=name, title=title, svg=svg, png=png)


def funnel_bars(steps: Sequence[str], users: Sequence[int], out_dir: Path) -> Chart:
    """Horizontal bars, one per step, labelled with the count and share of step one."""
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(steps) + 1.2))
    positions = list(range(len(steps)))[::-1]
    ax.barh(positions, users, color=PALETTE[0])
    top = max(users) if users and max(users) > 0 else 1
    for pos, n in zip(positions, users, strict=True):
        ax.text(n + top * 0.01, pos, f"{n:,}  ({n / top:.1%})", va="center", fontsize=9)
    ax.set_yticks(positions, labels=list(steps))
    ax.set_xlim(0, top * 1.25)
    ax.set_xlabel("user-days reaching the step")
    ax.set_title("Funnel over the whole period", loc="left")
    return _save(fig, "funnel", "Funnel", out_dir)


def conversion_trend(days: Sequence[date], rates: Sequence[float | None], out_dir: Path) -> Chart:
    """Daily conversion from the first step to the last, as a line."""
    fig, ax = plt.subplots(figsize=(7.5, 3.0))
    values = [r if r is not None else float("nan") for r in rates]
    ax.plot(np.array(days, dtype="datetime64[D]"), values, color=PALETTE[1], linewidth=1.6)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_ylim(bottom=0)
    ax.set_title("Daily conversion, first step to last", loc="left")
    fig.autofmt_xdate()
    return _save(fig, "conversion_trend", "Daily conversion", out_dir)
