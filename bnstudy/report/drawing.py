"""How the report's figures draw: their style and size, a :class:`Layout` shared by every
figure of a runs table (its series, batch axis and a colour per series, so a norm has one
colour in every figure), panels, log axes, lines with their interval bands, legends, and
writing the figures out (:func:`write_figures`, or :func:`figures_drawn_aside` from a forked
process). Figures are built without pyplot, so they are safe headless and leave no global
state behind."""

from __future__ import annotations

import functools
import math
import multiprocessing
import pickle
import signal
import sys
import textwrap
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import NamedTuple

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogLocator, NullFormatter, NullLocator, StrMethodFormatter

from bnstudy.norm_catalog import display_label, uses_batch_statistics
from bnstudy.report.figure_data import DIFF, FLIP, RECOVERY, NothingToPlot
from bnstudy.report.runs_table import (
    ACC,
    batch_axis,
    series_columns,
    series_labels,
    sort_by,
    test_batch_label,
)
from bnstudy.results import (
    BATCH_SIZE,
    FAILURES,
    INIT_ZERO_FRACTION,
    NORM_BATCH_SIZE,
    TEST_MODES,
    ZERO_FRACTION,
)

FIGURE_DPI = 100
# Text sizes in points: at FIGURE_DPI a three-panel figure is shown at about its pixel width on
# a wide screen and at two thirds of it in an 800 px window, where 13 pt is still 12 px.
STYLE = {
    "font.size": 13,
    "axes.titlesize": 13,
    "axes.labelsize": 13,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "legend.fontsize": 12,
}
PANEL_WIDTH, PANEL_HEIGHT = 3.8, 3.5  # inches per panel
SINGLE_WIDTH = 6.5  # inches of a one-panel figure
LEGEND_COLUMN = 3.1  # inches per legend column, at least
LEGEND_CHARACTER = 0.075  # inches per character of a legend label (10 pt), beside its marker
PANELS_PER_ROW = 3
TITLE_WIDTH = 31  # characters per line of a panel title
LABEL_WIDTH = 27  # characters per line of an axis label
# Bands are clipped to what a quantity can be: column -> (lowest, highest).
PERCENT, SIGNED_PERCENT, FRACTION, NONNEGATIVE = (0, 100), (-100, 100), (0, 1), (0, math.inf)
BAND_LIMITS = {
    ACC: PERCENT,
    FLIP: PERCENT,
    DIFF: SIGNED_PERCENT,
    RECOVERY: SIGNED_PERCENT,
    ZERO_FRACTION: FRACTION,
    INIT_ZERO_FRACTION: FRACTION,
}
NO_VALUE_LABEL = f"no result ({'/'.join(FAILURES)})"
SHARED_LABEL = " (one model per seed)"  # legend: no batch statistics, drawn at every value
BAND_LABEL = "shaded: 95 % CI"  # legend: the bands of draw_band, the findings' intervals


def styled(make: Callable[..., Figure]) -> Callable[..., Figure]:
    """``make`` run under STYLE (text sizes), so its figure reads at the size the page shows."""

    @functools.wraps(make)
    def with_style(*args, **kwargs) -> Figure:
        with matplotlib.rc_context(STYLE):
            return make(*args, **kwargs)

    return with_style


def save_figure(fig: Figure, path: Path) -> Path:
    """Save ``fig`` as a PNG at FIGURE_DPI (under STYLE: tick labels made while drawing get its
    sizes) and return ``path``."""
    with matplotlib.rc_context(STYLE):
        fig.savefig(path, dpi=FIGURE_DPI, format="png")
    return Path(path)


def write_figures(draws: dict[str, Callable[[], Figure]], out: Path) -> dict[str, str | None]:
    """Draw each figure (PNG name -> the call drawing it) and save it into ``out``; map each PNG
    name to None, or to why it was skipped (then a stale PNG from an earlier report is
    removed)."""
    reasons: dict[str, str | None] = {}
    for png, draw in draws.items():
        try:
            save_figure(draw(), out / png)
            reasons[png] = None
        except NothingToPlot as reason:
            (out / png).unlink(missing_ok=True)
            reasons[png] = str(reason)
    return reasons


class DrawingFailed(RuntimeError):
    """The traceback of an exception raised while drawing in the figures' process."""


@contextmanager
def figures_drawn_aside(
    draws: dict[str, Callable[[], Figure]], out: Path
) -> Iterator[Callable[[], dict[str, str | None]]]:
    """Write the figures (:func:`write_figures`) from a forked process, so that they draw on
    another core while the caller computes the findings; yield the call that waits for them and
    returns what :func:`write_figures` returns, or raises what it raised (with the forked
    process's traceback as its cause). Where forking is not safe or not possible (not Linux,
    inside a daemonic process, fork failing) the figures draw here, at once. Leaving the block
    before waiting stops the process."""
    process, receiver = _start_drawing(draws, out)
    if process is None or receiver is None:
        reasons = write_figures(draws, out)
        yield lambda: reasons
        return
    try:
        yield lambda: _received(process, receiver)
    finally:
        if process.is_alive():
            process.terminate()
        process.join()
        receiver.close()


def _start_drawing(
    draws: dict[str, Callable[[], Figure]], out: Path
) -> tuple[BaseProcess | None, Connection | None]:
    """The forked process writing the figures and the end of the pipe its outcome comes
    through; (None, None) where the figures must draw here."""
    if sys.platform != "linux" or multiprocessing.current_process().daemon:
        return None, None
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_draw_and_send, args=(draws, out, sender))
    try:
        process.start()
    except OSError:  # no memory or processes left to fork
        receiver.close()
        return None, None
    finally:
        sender.close()
    return process, receiver


def _draw_and_send(draws: dict[str, Callable[[], Figure]], out: Path, sender: Connection) -> None:
    """In the forked process: write the figures and send (reasons, None, "") or, on an
    exception, (None, the pickled exception or None, its traceback). Ctrl-C is the parent's to
    handle: it stops this process when it leaves :func:`figures_drawn_aside`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sender.send((write_figures(draws, out), None, ""))
    except Exception as error:  # noqa: BLE001 - the parent raises it
        try:
            pickled = pickle.dumps(error)
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            pickled = None
        sender.send((None, pickled, traceback.format_exc()))


def _received(process: BaseProcess, receiver: Connection) -> dict[str, str | None]:
    """What the figures' process sent: its reasons, or its exception raised here."""
    try:
        reasons, pickled, trace = receiver.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f"the figures' process died (exit code {process.exitcode})") from None
    process.join()
    if reasons is not None:
        return reasons
    try:
        error = pickle.loads(pickled) if pickled is not None else None
    except Exception:  # noqa: BLE001 - an exception that does not unpickle
        error = None
    raise (error or RuntimeError(trace.strip().splitlines()[-1])) from DrawingFailed(trace)


def setting_label(test_mode: str, test_batch: str, axis: str = BATCH_SIZE) -> str:
    """Human-readable name of a test setting, used as panel title."""
    mode = TEST_MODES.get(test_mode)
    if mode is None or not mode.per_test_batch:
        return f"{test_mode} mode ({mode.description if mode else 'unknown'})"
    return f"{test_mode} mode ({mode.description}, {test_batch_label(test_batch, axis)})"


def label_colors(labels: Iterable[str]) -> dict[str, str]:
    """A colour-cycle colour per distinct label, in order of first appearance."""
    return {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys(labels))}


def series_colors(df: pd.DataFrame, columns: list[str] | None = None) -> dict[str, str]:
    """A colour per norm (and other factors) of the whole table, in sorted order, so a norm has the
    same colour in every figure. ``columns``: ``df``'s
    :func:`bnstudy.report.runs_table.series_columns`, if computed already."""
    columns = columns or series_columns(df)
    series = sort_by(df[columns].drop_duplicates(), columns)
    return label_colors(series_labels(series, columns))


class Layout(NamedTuple):
    """What the figures of a runs table share: the columns making one line (the norm and other
    factors, :func:`bnstudy.report.runs_table.series_columns`), the batch axis, and a colour per
    line."""

    series: list[str]
    axis: str
    colors: dict[str, str]


def figure_layout(df: pd.DataFrame) -> Layout:
    """The :class:`Layout` of the runs table ``df``, computed once per figure."""
    series = series_columns(df)
    return Layout(series, batch_axis(df), series_colors(df, series))


def figure_with_panels(
    n: int, ncols: int = PANELS_PER_ROW, sharey: bool | str = True
) -> tuple[Figure, list[Axes]]:
    """A constrained-layout figure with ``n`` panels, ``ncols`` a row (one panel: a wide one)."""
    ncols = min(n, ncols)
    nrows = math.ceil(n / ncols)
    width = SINGLE_WIDTH if n == 1 else PANEL_WIDTH * ncols + 0.3
    fig = Figure(figsize=(width, PANEL_HEIGHT * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=sharey, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def set_title(ax: Axes, text: str) -> None:
    """Panel title wrapped at TITLE_WIDTH characters, so it stays over its panel."""
    ax.set_title(textwrap.fill(text, TITLE_WIDTH))


def log2_axis(ax: Axes, values: list[int], label: str) -> None:
    """Log2 x axis labelled ``label``, ticks exactly at ``values``, same limits per panel."""
    ax.set_xscale("log", base=2)
    ax.set_xlim(values[0] / 1.4, values[-1] * 1.4)
    ax.set_xticks(values, labels=[str(int(v)) for v in values])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(textwrap.fill(label, LABEL_WIDTH))
    ax.grid(alpha=0.3)


def set_ylabel(ax: Axes, label: str) -> None:
    """Y axis label wrapped at LABEL_WIDTH characters, so it stays beside its panel."""
    ax.set_ylabel(textwrap.fill(label, LABEL_WIDTH))


def log_y(ax: Axes, base: int = 10) -> None:
    """Log y axis with plain-number tick labels (at 1, 2, 5 × powers of 10 for base 10)."""
    ax.set_yscale("log", base=base)
    if base == 10:
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def draw_band(
    ax: Axes,
    rows: pd.DataFrame,
    x: str,
    column: str,
    color: str,
    linestyle: str = "-",
    marker: str | None = "o",
) -> None:
    """Line of ``rows[<column>_mean]`` vs ``rows[x]`` with a shaded band and a bar at each point
    from ``<column>_ci_low`` to ``<column>_ci_high`` (clipped to BAND_LIMITS; none where NaN,
    nor on a log axis where the interval reaches 0)."""
    lowest, highest = BAND_LIMITS.get(column, NONNEGATIVE)
    low = rows[f"{column}_ci_low"].clip(lowest, highest)
    high = rows[f"{column}_ci_high"].clip(lowest, highest)
    if ax.get_yscale() == "log":
        low, high = low.where(low > 0), high.where(low > 0)
    ax.plot(rows[x], rows[f"{column}_mean"], marker=marker, color=color, linestyle=linestyle)
    ax.fill_between(rows[x], low, high, color=color, alpha=0.2, linewidth=0)
    if marker is not None:  # a bar stays visible where a neighbour has no interval
        ax.vlines(rows[x], low, high, color=color, alpha=0.5)


def draw_lines(
    ax: Axes,
    stats: pd.DataFrame,
    x: str,
    column: str,
    by: pd.Series,
    colors: dict[str, str],
    linestyle: str = "-",
) -> bool:
    """One line per value of ``by`` (labels aligned with ``stats`` from
    :func:`bnstudy.report.figure_data.seed_stats`): mean and t-interval band of ``column`` vs
    ``stats[x]``, and an 'x' at the bottom of the panel where no seed has a value. Returns whether
    any 'x' was drawn."""
    for key, rows in stats.groupby(by, sort=False):
        draw_band(ax, rows, x, column, colors[key], linestyle)
        _mark_failures(ax, rows.loc[rows["n"].eq(0), x], colors[key])
    return bool(stats["n"].eq(0).any())


def _mark_failures(ax: Axes, x: pd.Series, color: str) -> None:
    """An 'x' at the bottom of the panel at each axis value in ``x``."""
    ax.plot(
        x,
        np.full(len(x), 0.04),
        marker="x",
        markersize=8,
        linestyle="none",
        color=color,
        transform=ax.get_xaxis_transform(),
    )


def line_handles(colors: dict[str, str], axis: str) -> list[Line2D]:
    """Legend entries for coloured lines, one per series label; a norm without batch statistics
    in a normalization-batch study (batch ``axis``) is marked as drawn from one model per
    seed."""
    shared = axis == NORM_BATCH_SIZE
    return [
        Line2D([], [], color=color, marker="o", label=display_label(label) + SHARED_LABEL)
        if shared and not uses_batch_statistics(label.split(",")[0])
        else Line2D([], [], color=color, marker="o", label=display_label(label))
        for label, color in colors.items()
    ]


def drawn_handles(table: pd.DataFrame, layout: Layout) -> list[Line2D]:
    """Legend entries for the series of ``table``, in the colours of every figure."""
    series, axis, colors = layout
    return line_handles({k: colors[k] for k in series_labels(table, series)}, axis)


def add_legend(fig: Figure, handles: list[Line2D], failed: bool) -> None:
    """The figure legend below the panels, as many columns as the width holds: ``handles``, an
    entry for the 'x' of :func:`_mark_failures` if ``failed``, and one naming the shaded bands
    (:func:`draw_band`) where the figure has them."""
    if any(isinstance(c, PolyCollection) for ax in fig.axes for c in ax.collections):
        handles = [*handles, Patch(facecolor="0.3", alpha=0.2, label=BAND_LABEL)]
    if failed:
        handles = [
            *handles,
            Line2D([], [], color="0.3", marker="x", linestyle="none", label=NO_VALUE_LABEL),
        ]
    longest = max((len(h.get_label()) for h in handles), default=0)
    column = max(LEGEND_COLUMN, 0.7 + LEGEND_CHARACTER * longest)  # marker, gap, label
    ncols = max(1, min(len(handles), int(fig.get_figwidth() // column)))
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, frameon=False)


def chance_lines(ax: Axes, levels: list[float]) -> None:
    """A dashed grey line at each chance level (percent)."""
    for level in levels:
        ax.axhline(level, color="0.5", linestyle="--", linewidth=1)


def chance_handles(levels: list[float]) -> list[Line2D]:
    """The legend entry of the chance lines, if any."""
    label = "chance (100 / classes)"
    return [Line2D([], [], color="0.5", linestyle="--", label=label)] if levels else []
