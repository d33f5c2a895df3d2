"""Charts drawn with matplotlib: each is returned as inline SVG text and saved as PNG."""

from __future__ import annotations

import functools
import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# PNG resolution: the PNGs are for slides and chat, the HTML carries vector SVG.
PNG_DPI = 100


@functools.cache
def _plt() -> ModuleType:
    """matplotlib's pyplot, imported and set up on the first chart: importing it costs a
    second or more, which the dashboard (it imports `report.sections`, never a chart)
    should not pay."""
    import matplotlib  # noqa: PLC0415 - a second to import; the dashboard never draws one

    matplotlib.use("Agg")  # no display: render to files only
    import matplotlib.pyplot as plt  # noqa: PLC0415

    plt.rcParams.update(
        {
            "svg.hashsalt": "productlens",  # stable element ids: same data, same SVG
            "svg.fonttype": "none",
            "font.size": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    return plt


def _percent() -> Any:
    from matplotlib.ticker import PercentFormatter  # noqa: PLC0415

    return PercentFormatter(1.0)


PALETTE = ("#3b6ea5", "#e07b39", "#5aa469", "#c44e52", "#8172b2", "#937860")
# A label longer than this (a product, campaign or event name is whatever the data says)
# would squeeze the plot into a sliver: charts cut it; insights and tables keep it whole.
LABEL_CHARS = 40


# What a chart label shows for a character its font has no glyph for (an emoji, a script
# DejaVu lacks): a box in the PNG told nobody anything; the insights and tables keep the
# character.
MISSING_GLYPH = "?"
_MARKS = frozenset({"Mn", "Me", "Cf"})  # combining and format marks: nothing to show


@functools.cache
def _glyphs() -> frozenset[int]:
    """The code points the charts' font draws."""
    _plt()
    from matplotlib import font_manager  # noqa: PLC0415
    from matplotlib.ft2font import FT2Font  # noqa: PLC0415

    path = font_manager.findfont(font_manager.FontProperties())
    return frozenset(FT2Font(path).get_charmap())


def _drawable(text: str) -> str:
    """The label with every character the font lacks replaced (marks dropped)."""
    if text.isascii():
        return text
    glyphs = _glyphs()
    return "".join(
        c if ord(c) in glyphs else "" if unicodedata.category(c) in _MARKS else MISSING_GLYPH
        for c in text
    )


def _short(text: str) -> str:
    text = _drawable(text)
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _shorts(texts: Sequence[str]) -> list[str]:
    return [_short(t) for t in texts]


@dataclass(frozen=True)
class Chart:
    """A rendered chart: its name, title, inline SVG and the PNG written to disk."""

    name: str
    title: str
    svg: str
    png: Path


def _save(fig: Figure, name: str, title: str, out_dir: Path) -> Chart:
    buffer = io.StringIO()
    # No metadata: no date (deterministic) and no URL of matplotlib's in the page.
    none = {"Date": None, "Creator": None, "Format": None, "Type": None}
    png = out_dir / f"{name}.png"
    # Written beside and renamed: a report stopped midway leaves no truncated PNG.
    partial = png.with_name(f".{png.name}.partial")
    # The layout is fitted once to the labels (no `bbox_inches="tight"`, which draws
    # the whole figure once more per file to measure it), then drawn as SVG and PNG.
    fig.tight_layout(pad=0.4)
    # tight_layout leaves a placeholder layout engine, for which savefig draws once
    # more before drawing: none is left.
    fig.set_layout_engine(None)
    fig.savefig(buffer, format="svg", metadata=none)
    fig.savefig(partial, format="png", dpi=PNG_DPI, metadata={"Software": None})
    partial.replace(png)
    _plt().close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML prolog and doctype: it is inlined in HTML
    return Chart(name=name, title=title, svg=svg, png=png)


def funnel_bars(steps: Sequence[str], users: Sequence[int], out_dir: Path) -> Chart:
    """Horizontal bars, one per step, labelled with the count and share of step one."""
    fig, ax = _plt().subplots(figsize=(7.5, 0.55 * len(steps) + 1.2))
    positions = list(range(len(steps)))[::-1]
    ax.barh(positions, users, color=PALETTE[0])
    top = max(users) if users and max(users) > 0 else 1
    for pos, n in zip(positions, users, strict=True):
        ax.text(n + top * 0.01, pos, f"{n:,}  ({n / top:.1%})", va="center", fontsize=9)
    ax.set_yticks(positions, labels=_shorts(steps))
    ax.set_xlim(0, top * 1.25)
    ax.set_xlabel("user-days reaching the step")
    ax.set_title("Funnel over the whole period", loc="left")
    return _save(fig, "funnel", "Funnel", out_dir)


def _line(
    ax: Any,
    x: np.ndarray,
    y: Sequence[float],
    colour: str,
    label: str | None,
    *,
    partial: bool = False,
) -> None:
    """A line over days; with `partial`, its last segment dashed and its last point an open
    circle: the last day is partial (`report.sections.DataEnd`), its value not a fall."""
    if not partial or len(y) < 1:
        ax.plot(x, y, color=colour, linewidth=1.6, label=label)
        return
    ax.plot(x[:-1], y[:-1], color=colour, linewidth=1.6, label=label)
    ax.plot(x[-2:], y[-2:], color=colour, linewidth=1.6, linestyle=(0, (3, 2)))
    ax.plot(x[-1:], y[-1:], marker="o", markerfacecolor="white", color=colour, linestyle="none")


def conversion_trend(
    days: Sequence[date],
    rates: Sequence[float | None],
    out_dir: Path,
    *,
    partial: date | None = None,
) -> Chart:
    """Daily conversion from the first step to the last, as a line (a partial last day
    `partial` dashed)."""
    fig, ax = _plt().subplots(figsize=(7.5, 3.0))
    values = [r if r is not None else float("nan") for r in rates]
    x = np.array(days, dtype="datetime64[D]")
    _line(ax, x, values, PALETTE[1], None, partial=partial is not None and days[-1] == partial)
    ax.yaxis.set_major_formatter(_percent())
    ax.set_ylim(bottom=0)
    ax.set_title("Daily conversion, first step to last", loc="left")
    fig.autofmt_xdate()
    return _save(fig, "conversion_trend", "Daily conversion", out_dir)


def _dates(values: Sequence[date]) -> np.ndarray:
    return np.array(values, dtype="datetime64[D]")


def _figure(height: float = 3.0) -> tuple[Figure, Any]:
    fig, ax = _plt().subplots(figsize=(7.5, height))
    return fig, ax


def bars(
    name: str,
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    out_dir: Path,
    *,
    percent: bool = False,
    counts: bool = False,
    xlabel: str = "",
) -> Chart:
    """Horizontal bars, first label on top, each labelled with its value (`counts`: as a
    whole number)."""
    fig, ax = _figure(0.4 * len(labels) + 1.2)
    positions = list(range(len(labels)))[::-1]
    colours = [PALETTE[0] if v >= 0 else PALETTE[3] for v in values]
    ax.barh(positions, values, color=colours)
    span = max((abs(v) for v in values), default=1.0) or 1.0
    for pos, v in zip(positions, values, strict=True):
        whole = counts or abs(v) >= 1000
        text = f"{v:.1%}" if percent else f"{v:,.0f}" if whole else f"{v:,.2f}"
        # Right of the bar's end, or of zero for a negative bar (its row is empty there):
        # left of a negative bar's end the label ran over the names on the axis.
        ax.text(max(v, 0.0) + span * 0.01, pos, text, va="center", ha="left", fontsize=8)
    ax.set_yticks(positions, labels=_shorts(labels))
    low = min(0.0, min(values, default=0.0))
    high = max(0.0, max(values, default=0.0)) * 1.25
    if low < 0:  # room right of zero for the negative bars' labels
        high = max(high, span * 0.3)
    ax.set_xlim(low * 1.3 if low < 0 else 0, high or 1.0)
    if percent:
        ax.xaxis.set_major_formatter(_percent())
    ax.set_xlabel(xlabel)
    ax.set_title(title, loc="left")
    return _save(fig, name, title, out_dir)


def grouped_bars(
    name: str,
    title: str,
    labels: Sequence[str],
    series: dict[str, Sequence[float]],
    out_dir: Path,
    *,
    xlabel: str = "",
) -> Chart:
    """Horizontal bars, one group per label (first on top), one bar per series in each
    group, each labelled with its value."""
    n = max(1, len(series))
    fig, ax = _figure(0.3 * n * len(labels) + 1.4)
    height = 0.8 / n
    positions = np.arange(len(labels))[::-1].astype(float)
    top = max((max(v, default=0.0) for v in series.values()), default=0.0) or 1.0
    for i, (label, values) in enumerate(series.items()):
        y = positions + 0.4 - height * (i + 0.5)
        ax.barh(y, values, height=height, color=PALETTE[i % len(PALETTE)], label=_short(label))
        for pos, v in zip(y, values, strict=True):
            text = f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
            ax.text(v + top * 0.01, pos, text, va="center", fontsize=7)
    ax.set_yticks(positions, labels=_shorts(labels))
    ax.set_xlim(0, top * 1.6)  # room on the right for the legend, clear of every bar
    ax.set_xlabel(xlabel)
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    ax.set_title(title, loc="left")
    return _save(fig, name, title, out_dir)


def histogram(
    name: str,
    title: str,
    edges: Sequence[float],
    counts: Sequence[int],
    out_dir: Path,
    *,
    xlabel: str = "",
    percent: bool = False,
) -> Chart:
    """Counts per bin as vertical bars; `edges` has one more value than `counts`."""
    fig, ax = _figure()
    left = np.asarray(edges[:-1], dtype=float)
    widths = np.diff(np.asarray(edges, dtype=float))
    ax.bar(left, counts, width=widths, align="edge", color=PALETTE[0], edgecolor="white")
    top = max(counts, default=0) or 1
    for x, w, n in zip(left, widths, counts, strict=True):
        if n:
            ax.text(x + w / 2, n + top * 0.01, f"{n:,}", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, top * 1.15)
    if percent:
        ax.xaxis.set_major_formatter(_percent())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("customers")
    ax.set_title(title, loc="left")
    return _save(fig, name, title, out_dir)


def lines(
    name: str,
    title: str,
    days: Sequence[date],
    series: dict[str, Sequence[float | None]],
    out_dir: Path,
    *,
    percent: bool = False,
    partial: date | None = None,
) -> Chart:
    """One line per series over days; the last day, when it is `partial`, dashed."""
    fig, ax = _figure()
    x = _dates(days)
    cut = partial is not None and bool(days) and days[-1] == partial
    for i, (label, values) in enumerate(series.items()):
        y = [v if v is not None else float("nan") for v in values]
        _line(ax, x, y, PALETTE[i % len(PALETTE)], _short(label), partial=cut)
    if percent:
        ax.yaxis.set_major_formatter(_percent())
    ax.set_ylim(bottom=0)
    if len(series) > 1:
        ax.legend(frameon=False, fontsize=8)
    ax.set_title(title, loc="left")
    fig.autofmt_xdate()
    return _save(fig, name, title, out_dir)


def stacked(
    name: str,
    title: str,
    labels: Sequence[str],
    series: dict[str, Sequence[float]],
    out_dir: Path,
    *,
    partial_last: bool = False,
) -> Chart:
    """Vertical stacked bars (negative parts stack downwards), one bar per label; with
    `partial_last`, the last bar hatched and pale (a partial last day)."""
    fig, ax = _figure(3.2)
    x = np.arange(len(labels))
    up = np.zeros(len(labels))
    down = np.zeros(len(labels))
    for i, (label, values) in enumerate(series.items()):
        v = np.asarray(values, dtype=float)
        base = np.where(v >= 0, up, down)
        bars = ax.bar(
            x, v, bottom=base, color=PALETTE[i % len(PALETTE)], label=_short(label), width=0.7
        )
        if partial_last and len(bars):
            bars[-1].set_hatch("//")
            bars[-1].set_alpha(0.45)
        up = up + np.where(v >= 0, v, 0)
        down = down + np.where(v < 0, v, 0)
    ax.axhline(0, color="#52606d", linewidth=0.8)
    # Room above the tallest stack for the legend: without it the legend sat on the bars
    # (the SaaS demo's ARR bridge).
    top, bottom = float(up.max(initial=0.0)), float(down.min(initial=0.0))
    if top > 0:
        ax.set_ylim(bottom * 1.05, top + (top - bottom) * 0.4)
    step = max(1, len(labels) // 12)
    ax.set_xticks(x[::step], labels=_shorts(labels)[::step], rotation=45, ha="right", fontsize=8)
    ax.legend(frameon=False, fontsize=8, ncols=min(4, len(series)))
    ax.set_title(title, loc="left")
    return _save(fig, name, title, out_dir)


def heatmap(
    name: str,
    title: str,
    rows: Sequence[str],
    matrix: Sequence[Sequence[float | None]],
    out_dir: Path,
    *,
    xlabel: str,
) -> Chart:
    """Retention heatmap: one row per cohort, one column per period since it started."""
    data = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    n_rows, n_cols = data.shape if data.size else (0, 0)
    fig, ax = _plt().subplots(figsize=(7.5, 0.28 * n_rows + 1.4))
    ax.imshow(data, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    if n_cols <= 16:
        for (i, j), v in np.ndenumerate(data):
            if not np.isnan(v):
                ax.text(
                    j,
                    i,
                    f"{v:.0%}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if v > 0.6 else "#1f2933",
                )
    ax.set_yticks(range(n_rows), labels=list(rows), fontsize=7)
    step = max(1, n_cols // 16)
    ax.set_xticks(range(0, n_cols, step))
    ax.set_xlabel(xlabel)
    ax.spines[:].set_visible(False)
    ax.set_title(title, loc="left")
    return _save(fig, name, title, out_dir)


def pareto(
    name: str, title: str, buyers: Sequence[float], revenue: Sequence[float], out_dir: Path
) -> Chart:
    """Cumulative share of revenue against the cumulative share of buyers (best first)."""
    fig, ax = _figure(3.2)
    ax.plot([0, *buyers], [0, *revenue], color=PALETTE[0], linewidth=1.8)
    ax.plot([0, 1], [0, 1], color="#9aa5b1", linewidth=0.8, linestyle="--")
    ax.xaxis.set_major_formatter(_percent())
    ax.yaxis.set_major_formatter(_percent())
    ax.set_xlabel("buyers, highest revenue first")
    ax.set_ylabel("share of net revenue")
    ax.set_title(title, loc="left")
    return _save(fig, name, title, out_dir)


def forest(
    name: str,
    title: str,
    labels: Sequence[str],
    lifts: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    out_dir: Path,
) -> Chart:
    """Relative lift with its interval per comparison; the zero line marks no effect."""
    fig, ax = _figure(0.45 * len(labels) + 1.2)
    y = list(range(len(labels)))[::-1]
    lift = np.asarray(lifts, dtype=float)
    err = np.vstack([lift - np.asarray(lows, dtype=float), np.asarray(highs, dtype=float) - lift])
    ax.errorbar(lift, y, xerr=err, fmt="o", color=PALETTE[0], capsize=3)
    ax.axvline(0, color="#52606d", linewidth=0.8)
    ax.set_yticks(y, labels=_shorts(labels), fontsize=8)
    ax.xaxis.set_major_formatter(_percent())
    ax.set_xlabel("relative lift vs control")
    ax.set_title(title, loc="left")
    return _save(fig, name, title, out_dir)
