"""The report's figures: each function takes the runs table (as :func:`bnstudy.report.load_runs`
returns it; the learning curves also the runs' histories, the comparison several tables) and
returns a :class:`matplotlib.figure.Figure` built without pyplot, so they are safe headless and
leave no global state behind; :func:`save_figure` writes one out.

The x axis of every figure is the study's batch axis (:func:`bnstudy.findings.batch_axis`), log
2, ticks at its values; a norm without batch statistics in a normalization-batch study is drawn
at every axis value from its one model per seed. Lines are means over seeds, bands and bars their
95% intervals (none for one seed): for accuracies and their paired differences the findings'
bootstrap over seeds and test images (given a resampler; seeds only without), for the
diagnostics t-intervals over seeds; an 'x' at the bottom of a panel marks an axis value where no
seed has a value. A norm has one colour in every figure of a report. Panels are drawn only where
the quantity can vary: differences between test modes only for norms with running statistics,
and a diagnostic that is the same in every run is left out (:func:`constant_panels` names it).

A figure that has nothing to draw raises :class:`NothingToPlot` with the reason.
"""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogLocator, NullFormatter, NullLocator, StrMethodFormatter

from bnstudy.findings import (
    AXIS_LABELS,
    AXIS_SHORT,
    BASELINE,
    BATCH_SIZE,
    EVAL,
    NOISE_COLUMNS,
    NORM_BATCH_SIZE,
    SAME,
    SETTING_COLUMNS,
    TRAIN,
    along_axis,
    axis_values,
    batch_axis,
    batch_stat_mask,
    comparison_table,
    measured,
    mode_pairs,
    ordered_settings,
    recovery_reference,
    recovery_skip,
    recovery_table,
    series_columns,
    series_labels,
    sort_by,
    test_batch_label,
    test_batch_rank,
    uses_batch_stats,
)
from bnstudy.resampling import Resampler, arms_of
from bnstudy.results import FAILURES, TEST_MODES
from bnstudy.stats import FIRST, SECOND, interval_table

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
LEGEND_COLUMN = 3.1  # inches per legend column
PANELS_PER_ROW = 3
TITLE_WIDTH = 31  # characters per line of a panel title
LABEL_WIDTH = 27  # characters per line of an axis label
STUDY_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))  # comparison: per study

INIT_PREFIX = "init_"
# Panels of the per-run diagnostic figures: panel title -> columns drawn (init_* dashed).
COLLAPSE_PANELS = {
    "output std": ("init_output_std", "output_std"),
    "fraction of outputs exactly 0": ("init_zero_fraction", "zero_fraction"),
}
BATCH_STATS_PANELS = {
    "fewest values per norm statistic": ("min_values_per_stat",),
    "std of batch means / population std": ("bn_mean_noise",),
    "std of batch variances / population var": ("bn_var_noise",),
}
LOG_Y_COLUMNS = ("min_values_per_stat",)
# Noise figure: column -> (line style, legend label); measured first, then the predictions.
NOISE_LINES = dict(
    zip(
        NOISE_COLUMNS,
        (
            ("-", "measured"),
            ("--", "predicted: between-image variation"),
            (":", "predicted: values law 1/√values"),
        ),
        strict=True,
    )
)
# Learning curves: plotted column (learning_table) -> y label.
CURVES = {"loss": "train loss", "acc": "train accuracy (%)"}
# Bands are clipped to what a quantity can be: column -> (lowest, highest).
PERCENT, SIGNED_PERCENT, FRACTION, NONNEGATIVE = (0, 100), (-100, 100), (0, 1), (0, math.inf)
BAND_LIMITS = {
    "acc": PERCENT,
    "flip": PERCENT,
    "diff": SIGNED_PERCENT,
    "recovery": SIGNED_PERCENT,
    "zero_fraction": FRACTION,
    "init_zero_fraction": FRACTION,
}
NUM_CLASSES_COLUMNS = ("num_classes", "data.num_classes")
# panel order of within-run comparisons: as the test modes list them
COMPARISON_ORDER = {
    f"{mode.name} {other}": index
    for index, (mode, other) in enumerate(
        (mode, other) for mode in TEST_MODES.values() for other in mode.compare_with
    )
}
NO_VALUE_LABEL = f"no result ({'/'.join(FAILURES)})"
BASELINE_LABEL = "seed-to-seed baseline"
FLIP_YLABEL = "predictions flipped (%)"
SHARED_LABEL = " (one model per seed)"  # legend: no batch statistics, drawn at every value
X_VALUE = "the x value"  # comparison of studies with different batch axes: test batch "same"


class NothingToPlot(ValueError):
    """The runs table holds nothing a figure could show; the message says why."""


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


# ---------------------------------------------------------------------------------------------
# What the figures draw.


def _named(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """An interval table (mean, std, ci_low, ci_high) with those columns prefixed ``<name>_``."""
    return table.rename(
        columns={col: f"{name}_{col}" for col in ("mean", "std", "ci_low", "ci_high")}
    )


def seed_stats(frame: pd.DataFrame, column: str, keys: list[str]) -> pd.DataFrame:
    """Per ``keys`` group: ``<column>_mean``, ``_std``, ``_ci_low``, ``_ci_high`` and ``n``
    (non-NaN values) over the rows (seeds) of ``frame``, sorted by ``keys``."""
    return sort_by(_named(interval_table(frame, column, keys), column), keys)


def accuracy_table(df: pd.DataFrame, resampler: Resampler | None = None) -> pd.DataFrame:
    """Test accuracy in percent over ok seeds per norm (and other factors), axis value and test
    setting: ``acc_mean``, ``acc_std``, ``n`` (0 where every seed failed) and the bootstrap
    interval over seeds and test images ``acc_ci_low``, ``acc_ci_high`` (the report's,
    :class:`bnstudy.resampling.Resampler`; seeds only without one)."""
    df = along_axis(df)
    keys = [*series_columns(df), batch_axis(df), *SETTING_COLUMNS]
    rows = df.assign(acc=100 * measured(df, "test_acc"))
    table = seed_stats(rows, "acc", keys)
    resampler = resampler or Resampler(None)
    bounds = []
    for cell, group in rows[rows["acc"].notna()].groupby(keys, dropna=False, sort=False):
        key = "summary|" + "|".join(map(str, cell))
        estimate = resampler.level(key, arms_of(group), group["acc"].tolist())
        bounds.append((*cell, estimate.low, estimate.high))
    bounds = pd.DataFrame(bounds, columns=[*keys, "acc_ci_low", "acc_ci_high"])
    intervals = table.drop(columns=["acc_ci_low", "acc_ci_high"]).merge(bounds, how="left")
    intervals = intervals.astype({"acc_ci_low": float, "acc_ci_high": float})
    return intervals[table.columns]  # NaN keys match NaN in a merge


def mode_differences(df: pd.DataFrame, resampler: Resampler | None = None) -> pd.DataFrame:
    """Paired test-mode differences (:func:`bnstudy.findings.mode_pairs`) of the batch-statistic
    norms: per series, axis value and comparison, ``diff_mean``, ``diff_std``,
    ``diff_ci_low``, ``diff_ci_high`` (pp, the findings' bootstrap interval) and ``n`` runs,
    sorted."""
    keys = [*series_columns(df), batch_axis(df)]
    comparison = ["comparison", "first_mode", "second_mode", "test_batch"]
    table = comparison_table(mode_pairs(df), [*keys, *comparison], resampler)
    return sort_by(_named(table.drop(columns=[FIRST, SECOND]), "diff"), keys)


def compute_gap(df: pd.DataFrame, resampler: Resampler | None = None) -> pd.DataFrame:
    """Eval-mode minus train-mode test accuracy in percentage points, paired per run for each
    train-mode test_batch, of the norms that use batch statistics: gap_mean, gap_std,
    gap_ci_low, gap_ci_high and n (runs) per norm (and other factors), axis value and
    test_batch. Positive means running statistics beat batch statistics."""
    return _gap(mode_differences(df, resampler))


def _gap(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`compute_gap` from the :func:`mode_differences` ``table``."""
    gap = table[table["first_mode"].eq(EVAL) & table["second_mode"].eq(TRAIN)]
    gap = gap.drop(columns=["comparison", "first_mode", "second_mode"])
    return gap.rename(columns=lambda col: col.replace("diff_", "gap_")).reset_index(drop=True)


def compute_flip_rate(df: pd.DataFrame) -> pd.DataFrame:
    """Train-mode flip rate in percent of the norms that use batch statistics: flip_mean,
    flip_std, flip_ci_low, flip_ci_high and n over ok seeds per norm (and other factors), axis
    value and test_batch; n = 0 where every seed failed."""
    df = along_axis(df)
    train = df[df["test_mode"].eq(TRAIN) & batch_stat_mask(df)]
    keys = [*series_columns(df), batch_axis(df), "test_batch"]
    return seed_stats(train.assign(flip=100 * measured(train, "test_flip_rate")), "flip", keys)


def run_stats(df: pd.DataFrame, column: str, layout: Layout | None = None) -> pd.DataFrame:
    """A per-run diagnostic's mean, std, t-interval and n over seeds per norm (and other
    factors) and axis value, one value per run (ok runs only, except the PRE_TRAINING
    diagnostics); series never measured are left out (e.g. batch-statistic noise of group
    norm). ``layout``: ``df``'s (:func:`figure_layout`), if computed already."""
    series, axis, _ = layout or figure_layout(df)
    df = along_axis(df, axis)
    values = df.assign(**{column: measured(df, column)})
    runs = values.groupby(["run_id", axis])[[*series, column]].first().reset_index()
    stats = seed_stats(runs, column, [*series, axis])
    measured_series = stats.groupby(series_labels(stats, series))["n"].transform("sum") > 0
    return stats[measured_series].reset_index(drop=True)


def constant_panels(df: pd.DataFrame, panels: dict[str, tuple[str, ...]]) -> dict[str, float]:
    """The panels of a per-run figure (title -> columns) whose every value, over all runs and
    columns, is one and the same number: title -> that number. They are not drawn."""
    constant = {}
    for title, columns in panels.items():
        present = [measured(df, c) for c in columns if c in df.columns]
        values = pd.concat([pd.Series(dtype=float), *present]).dropna()
        if values.nunique() == 1:
            constant[title] = float(values.iloc[0])
    return constant


def learning_table(history: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """Per norm (and other factors), axis value and epoch of ``history`` (one row per epoch of
    each run: the run's columns, ``step`` = optimizer steps done, train_loss, train_acc): the
    mean ``step`` and the mean, std, t-interval and n over seeds of the train loss (``loss_*``)
    and of the train accuracy in percent (``acc_*``). Each run is placed where the study
    ``df`` places it (:func:`bnstudy.findings.along_axis`): the ok runs alone may have another
    batch axis and fewer values (BN ok at one normalization batch size only)."""
    axis = batch_axis(df)
    placed = along_axis(df)[["run_id", axis]].drop_duplicates()
    history = history.drop(columns=axis, errors="ignore").merge(placed, on="run_id")
    history = history.assign(loss=history["train_loss"], acc=100 * history["train_acc"])
    keys = [*series_columns(df), axis, "epoch"]
    steps = history.groupby(keys, dropna=False)["step"].mean().reset_index()
    loss, acc = (seed_stats(history, column, keys) for column in CURVES)
    return loss.drop(columns="n").merge(acc, on=keys).merge(steps, on=keys)


def chance_levels(df: pd.DataFrame) -> list[float]:
    """Chance accuracy in percent (100 / number of classes) for each number of classes the
    table records; empty for a table without them."""
    for col in NUM_CLASSES_COLUMNS:
        if col in df.columns and df[col].notna().any():
            return [100 / n for n in sorted(df[col].dropna().unique())]
    return []


# ---------------------------------------------------------------------------------------------
# Why a figure cannot be drawn.


def _train_mode_reason(df: pd.DataFrame) -> str | None:
    """Why a train-mode figure cannot be drawn because the sweep lacks train-mode rows, or
    None."""
    return None if df["test_mode"].eq(TRAIN).any() else "the sweep has no train-mode test rows"


def _unmeasured_reason(df: pd.DataFrame, columns: list[str]) -> str | None:
    """Why a figure of ``columns`` cannot be drawn (none in the table, or no value), or None."""
    present = [col for col in columns if col in df.columns]
    if present and df[present].notna().to_numpy().any():
        return None
    return f"the runs table has no values of {', '.join(columns)} (e.g. a sweep from before them)"


def _require(reason: str | None) -> None:
    """Raise :class:`NothingToPlot` with ``reason`` unless it is None."""
    if reason is not None:
        raise NothingToPlot(reason)


# ---------------------------------------------------------------------------------------------
# Drawing.


def setting_label(test_mode: str, test_batch: str, axis: str = BATCH_SIZE) -> str:
    """Human-readable name of a test setting, used as panel title."""
    mode = TEST_MODES.get(test_mode)
    if mode is None or not mode.per_test_batch:
        return f"{test_mode} mode ({mode.description if mode else 'unknown'})"
    return f"{test_mode} mode ({mode.description}, {test_batch_label(test_batch, axis)})"


def _colors(labels: Iterable[str]) -> dict[str, str]:
    """A colour-cycle colour per distinct label, in order of first appearance."""
    return {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys(labels))}


def series_colors(df: pd.DataFrame, columns: list[str] | None = None) -> dict[str, str]:
    """A colour per norm (and other factors) of the whole table, in sorted order, so a norm has
    the same colour in every figure. ``columns``: ``df``'s :func:`series_columns`, if computed
    already."""
    columns = columns or series_columns(df)
    series = sort_by(df[columns].drop_duplicates(), columns)
    return _colors(series_labels(series, columns))


class Layout(NamedTuple):
    """What the figures of a runs table share: the columns making one line (the norm and other
    factors, :func:`bnstudy.findings.series_columns`), the batch axis, and a colour per line."""

    series: list[str]
    axis: str
    colors: dict[str, str]


def figure_layout(df: pd.DataFrame) -> Layout:
    """The :class:`Layout` of the runs table ``df``, computed once per figure."""
    series = series_columns(df)
    return Layout(series, batch_axis(df), series_colors(df, series))


def _figure_with_panels(
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


def _title(ax: Axes, text: str) -> None:
    """Panel title wrapped at TITLE_WIDTH characters, so it stays over its panel."""
    ax.set_title(textwrap.fill(text, TITLE_WIDTH))


def _log2_axis(ax: Axes, values: list[int], label: str) -> None:
    """Log2 x axis labelled ``label``, ticks exactly at ``values``, same limits per panel."""
    ax.set_xscale("log", base=2)
    ax.set_xlim(values[0] / 1.4, values[-1] * 1.4)
    ax.set_xticks(values, labels=[str(int(v)) for v in values])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(textwrap.fill(label, LABEL_WIDTH))
    ax.grid(alpha=0.3)


def _ylabel(ax: Axes, label: str) -> None:
    """Y axis label wrapped at LABEL_WIDTH characters, so it stays beside its panel."""
    ax.set_ylabel(textwrap.fill(label, LABEL_WIDTH))


def _log_y(ax: Axes, base: int = 10) -> None:
    """Log y axis with plain-number tick labels (at 1, 2, 5 × powers of 10 for base 10)."""
    ax.set_yscale("log", base=base)
    if base == 10:
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _band(
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


def _draw_lines(
    ax: Axes,
    stats: pd.DataFrame,
    x: str,
    column: str,
    by: pd.Series,
    colors: dict[str, str],
    linestyle: str = "-",
) -> bool:
    """One line per value of ``by`` (labels aligned with ``stats`` from :func:`seed_stats`):
    mean and t-interval band of ``column`` vs ``stats[x]``, and an 'x' at the bottom of the
    panel where no seed has a value. Returns whether any 'x' was drawn."""
    for key, rows in stats.groupby(by, sort=False):
        _band(ax, rows, x, column, colors[key], linestyle)
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


def _line_handles(colors: dict[str, str], axis: str) -> list[Line2D]:
    """Legend entries for coloured lines, one per series label; a norm without batch statistics
    in a normalization-batch study (batch ``axis``) is marked as drawn from one model per
    seed."""
    shared = axis == NORM_BATCH_SIZE
    return [
        Line2D([], [], color=color, marker="o", label=label + SHARED_LABEL)
        if shared and not uses_batch_stats(label.split(",")[0])
        else Line2D([], [], color=color, marker="o", label=label)
        for label, color in colors.items()
    ]


def _drawn_handles(table: pd.DataFrame, layout: Layout) -> list[Line2D]:
    """Legend entries for the series of ``table``, in the colours of every figure."""
    series, axis, colors = layout
    return _line_handles({k: colors[k] for k in series_labels(table, series)}, axis)


def _legend(fig: Figure, handles: list[Line2D], failed: bool) -> None:
    """The figure legend below the panels, as many columns as the width holds: ``handles``, and
    an entry for the 'x' of :func:`_mark_failures` if ``failed``."""
    if failed:
        handles = [
            *handles,
            Line2D([], [], color="0.3", marker="x", linestyle="none", label=NO_VALUE_LABEL),
        ]
    ncols = max(1, min(len(handles), int(fig.get_figwidth() // LEGEND_COLUMN)))
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, frameon=False)


def _chance_lines(ax: Axes, levels: list[float]) -> None:
    """A dashed grey line at each chance level (percent)."""
    for level in levels:
        ax.axhline(level, color="0.5", linestyle="--", linewidth=1)


def _chance_handles(levels: list[float]) -> list[Line2D]:
    """The legend entry of the chance lines, if any."""
    label = "chance (100 / classes)"
    return [Line2D([], [], color="0.5", linestyle="--", label=label)] if levels else []


# ---------------------------------------------------------------------------------------------
# The figures.


@styled
def plot_accuracy_vs_batch_size(df: pd.DataFrame, resampler: Resampler | None = None) -> Figure:
    """Test accuracy (%) along the batch axis: one panel per test setting, one line per norm
    (and other factors) with the mean over seeds and its 95% interval band (the report's
    bootstrap over seeds and test images, :func:`accuracy_table`), an 'x' at the
    bottom of the panel where no seed produced a result, and a dashed chance line at
    100 / number of classes where the table records it."""
    _require("the runs table has no rows yet" if df.empty else None)
    table = accuracy_table(df, resampler)
    series, axis, colors = figure_layout(df)
    labels = series_labels(table, series)
    chance = chance_levels(df)
    settings = ordered_settings(table)
    fig, axes = _figure_with_panels(len(settings))
    for ax, (mode, batch) in zip(axes, settings, strict=True):
        panel = table["test_mode"].eq(mode) & table["test_batch"].eq(batch)
        _draw_lines(ax, table[panel], axis, "acc", labels[panel], colors)
        _chance_lines(ax, chance)
        _log2_axis(ax, axis_values(table, axis), AXIS_LABELS[axis])
        _title(ax, setting_label(mode, batch, axis))
        ax.set_ylabel("test accuracy (%)")
    handles = _line_handles(colors, axis) + _chance_handles(chance)
    _legend(fig, handles, table["n"].eq(0).any())
    return fig


def _per_panel_figure(
    table: pd.DataFrame, layout: Layout, column: str, panels: pd.Series, ylabel: str
) -> Figure:
    """One panel per distinct value of ``panels`` (labels aligned with ``table``, in order of
    appearance), one line per norm (and other factors) coloured as in every figure:
    ``column``'s mean and band along the batch axis."""
    series, axis, colors = layout
    labels = series_labels(table, series)
    names = list(dict.fromkeys(panels))
    fig, axes = _figure_with_panels(len(names))
    for ax, name in zip(axes, names, strict=True):
        rows = panels.eq(name)
        _draw_lines(ax, table[rows], axis, column, labels[rows], colors)
        _log2_axis(ax, axis_values(table, axis), AXIS_LABELS[axis])
        _title(ax, name)
        _ylabel(ax, ylabel)
    return fig


def _comparison_rank(table: pd.DataFrame) -> pd.Series:
    """Panel order of test-mode comparisons (:data:`COMPARISON_ORDER`), each by train-mode test
    batch."""
    pair = (table["first_mode"] + " " + table["second_mode"]).map(COMPARISON_ORDER)
    return pair * 1000 + table["test_batch"].map(test_batch_rank).clip(upper=999)


def gap_skip_reason(df: pd.DataFrame, differences: pd.DataFrame | None = None) -> str | None:
    """Why the test-mode difference figure cannot be drawn, or None if it can. ``differences``:
    the :func:`mode_differences` of ``df``, if computed already."""
    if _gap(mode_differences(df) if differences is None else differences).empty:
        return _train_mode_reason(df) or "no run has both eval-mode and train-mode results yet"
    return None


@styled
def plot_test_mode_gap(df: pd.DataFrame, resampler: Resampler | None = None) -> Figure:
    """Paired test-mode differences (pp) along the batch axis for the norms that use batch
    statistics (for the others every test mode is the same computation): one panel per
    comparison (eval − train per train-mode test batch, then precise − eval and precise − train
    where measured), one line per norm with the mean over runs and its 95% interval band (the
    findings'), and a zero line. Raises NothingToPlot if no run has both eval- and train-mode
    results."""
    table = mode_differences(df, resampler)
    _require(gap_skip_reason(df, table))
    layout = figure_layout(df)
    table = table.assign(rank=_comparison_rank(table)).sort_values("rank", kind="stable")
    fig = _per_panel_figure(table, layout, "diff", table["comparison"], "difference (pp)")
    for ax in fig.axes:
        ax.axhline(0, color="0.3", linewidth=1)
    _legend(fig, _drawn_handles(table, layout), table["n"].eq(0).any())
    return fig


def flip_skip_reason(df: pd.DataFrame) -> str | None:
    """Why the flip-rate figure cannot be drawn, or None if it can."""
    train = df[df["test_mode"].eq(TRAIN) & batch_stat_mask(df)]
    return _train_mode_reason(df) or _unmeasured_reason(train, ["test_flip_rate"])


@styled
def plot_flip_rate(df: pd.DataFrame, baseline: pd.DataFrame | None = None) -> Figure:
    """Train-mode flip rate (% of test predictions that change when the test set is reshuffled
    into other batches) along the batch axis for the norms that use batch statistics: one panel
    per train-mode test batch, one line per norm with the mean over seeds and its t-interval
    band, an 'x' where no seed has a value, and the seed-to-seed ``baseline``
    (:func:`bnstudy.findings.flip_baseline`) dotted if given. Raises NothingToPlot if no
    train-mode row of such a norm has a flip rate."""
    _require(flip_skip_reason(df))
    layout = figure_layout(df)
    table = compute_flip_rate(df)
    table = table.sort_values("test_batch", key=lambda b: b.map(test_batch_rank), kind="stable")
    labels = [setting_label(TRAIN, b, layout.axis) for b in table["test_batch"]]
    fig = _per_panel_figure(table, layout, "flip", pd.Series(labels, table.index), FLIP_YLABEL)
    handles = _drawn_handles(table, layout)
    if baseline is not None and not baseline.empty:
        batches = table["test_batch"].unique()  # a panel each, in this order
        _draw_baseline(dict(zip(batches, fig.axes, strict=True)), baseline, layout)
        handles.append(Line2D([], [], color="0.3", linestyle=":", marker="D", label=BASELINE_LABEL))
    _legend(fig, handles, table["n"].eq(0).any())
    return fig


def _draw_baseline(panels: dict[str, Axes], baseline: pd.DataFrame, layout: Layout) -> None:
    """The seed-to-seed baseline of the batch-statistic norms, dotted, on the panel of its
    test batch (``panels``: test batch -> its panel; a test batch without one is not drawn)."""
    columns, axis, colors = layout
    keys = [*columns, axis, "test_batch"]
    baseline = baseline[batch_stat_mask(baseline)].groupby(keys, as_index=False)[BASELINE].mean()
    baseline = sort_by(baseline, [*columns, axis])
    for test_batch, ax in panels.items():
        panel = baseline[baseline["test_batch"].eq(test_batch)]
        for label, rows in panel.groupby(series_labels(panel, columns), sort=False):
            ax.plot(rows[axis], rows[BASELINE], color=colors[label], linestyle=":", marker="D")


def _panel_columns(panels: dict[str, tuple[str, ...]]) -> list[str]:
    """All columns drawn by a per-run figure's ``panels``."""
    return [col for columns in panels.values() for col in columns]


def _draw_run_panel(ax: Axes, df: pd.DataFrame, columns: Iterable[str], layout: Layout) -> bool:
    """Per-run diagnostic ``columns`` per series on ``ax`` (init_* dashed); returns whether an
    'x' was drawn. Says so on the panel when no series has a value."""
    marked = drawn = False
    if any(column in LOG_Y_COLUMNS for column in columns):
        _log_y(ax, base=2)
    for column in columns:
        stats = run_stats(df, column, layout)
        labels = series_labels(stats, layout.series)
        style = "--" if column.startswith(INIT_PREFIX) else "-"
        marked |= _draw_lines(ax, stats, layout.axis, column, labels, layout.colors, style)
        drawn |= not stats.empty
    if not drawn:
        ax.text(0.5, 0.5, "not measured for these norms", ha="center", transform=ax.transAxes)
    return marked


def _run_level_figure(df: pd.DataFrame, panels: dict[str, tuple[str, ...]]) -> Figure:
    """One panel per entry of ``panels`` (title -> per-run diagnostic columns) that is not
    constant (:func:`constant_panels`): per norm (and other factors) the mean over seeds along
    the batch axis with its t-interval band, init_* columns dashed, an 'x' where no seed has a
    value. Raises NothingToPlot if none is measured or every panel is constant."""
    _require(_unmeasured_reason(df, _panel_columns(panels)))
    constant = constant_panels(df, panels)
    panels = {title: cols for title, cols in panels.items() if title not in constant}
    _require(None if panels else "every value is the same in every run: " + ", ".join(constant))
    layout = figure_layout(df)
    df = along_axis(df, layout.axis)  # once for all panels
    fig, axes = _figure_with_panels(len(panels), sharey=False)
    marked = False
    for ax, (name, columns) in zip(axes, panels.items(), strict=True):
        marked |= _draw_run_panel(ax, df, columns, layout)
        _log2_axis(ax, axis_values(df, layout.axis), AXIS_LABELS[layout.axis])
        _title(ax, name)
        _ylabel(ax, name)
    handles = _line_handles(layout.colors, layout.axis)
    if any(col.startswith(INIT_PREFIX) for col in _panel_columns(panels)):
        handles += [
            Line2D([], [], color="0.3", linestyle="--", label="at initialization"),
            Line2D([], [], color="0.3", label="after training"),
        ]
    _legend(fig, handles, marked)
    return fig


@styled
def plot_output_collapse(df: pd.DataFrame) -> Figure:
    """Output collapse on a fixed train-mode probe batch of the normalization batch size: panels of
    the output std and of the fraction of outputs exactly 0 along the batch axis (each only if
    it varies), per norm at initialization (dashed) and after training (solid). Raises
    NothingToPlot if not measured or constant."""
    return _run_level_figure(df, COLLAPSE_PANELS)


@styled
def plot_batch_statistics(df: pd.DataFrame) -> Figure:
    """Batch statistics along the batch axis: the fewest values any norm statistic averages
    over (log y), and the noise of BN batch means and variances across training batches, per
    norm that has them (each panel only if it varies). Raises NothingToPlot if none is
    measured."""
    return _run_level_figure(df, BATCH_STATS_PANELS)


@styled
def plot_noise_law(df: pd.DataFrame) -> Figure:
    """Noise of BN batch means along the batch axis, log-log, one panel: per norm that uses
    batch statistics, the measured bn_mean_noise (solid, mean and t-interval band over seeds)
    and the means of its two predictions (between-image variation dashed, values law dotted).
    Raises NothingToPlot if none is measured."""
    _require(_unmeasured_reason(df, list(NOISE_COLUMNS[1:])))
    layout = figure_layout(df)
    series, axis, colors = layout
    df = along_axis(df, axis)  # once for all lines
    fig, (ax,) = _figure_with_panels(1)
    _log_y(ax)
    stats = {column: run_stats(df, column, layout) for column in NOISE_LINES}
    for column, (style, _) in NOISE_LINES.items():
        labels = series_labels(stats[column], series)
        _draw_lines(ax, stats[column], axis, column, labels, colors, style)
    _log2_axis(ax, axis_values(df, axis), AXIS_LABELS[axis])
    _ylabel(ax, "std of batch means / population std")
    handles = _drawn_handles(stats[NOISE_COLUMNS[0]], layout)
    handles += [Line2D([], [], color="0.3", linestyle=s, label=t) for s, t in NOISE_LINES.values()]
    _legend(fig, handles, False)
    return fig


@styled
def plot_recovery(df: pd.DataFrame, resampler: Resampler | None = None) -> Figure:
    """One panel along the batch axis: per norm, eval-mode accuracy minus BN's at its largest
    axis value (:func:`bnstudy.findings.recovery_table`), mean and the findings' interval: a
    line with a band for norms with batch statistics; a dashed level with its interval as a
    bar at the right margin for those trained once per seed (a band across the panel would hide
    the others). Raises NothingToPlot when there is nothing to compare (no BN runs, or no other
    norm)."""
    table = recovery_table(df, resampler)
    _require(recovery_skip(df) if table.empty else None)
    layout = figure_layout(df)
    series, axis, colors = layout
    values = axis_values(df, axis)
    table = table.rename(columns={k: f"recovery_{k}" for k in ("mean", "ci_low", "ci_high")})
    shared = table[axis].isna()
    fig, (ax,) = _figure_with_panels(1)
    varying = table[~shared]
    for label, line in varying.groupby(series_labels(varying, series), sort=False):
        _band(ax, line, axis, "recovery", colors[label])
    flat = table[shared].reset_index(drop=True)
    margin = values[-1] * 1.4 * 1.15 ** np.arange(len(flat))  # staggered bars, log-spaced
    for (_, row), label, x in zip(
        flat.iterrows(), series_labels(flat, series), margin, strict=True
    ):
        color = colors[label]
        ax.axhline(row["recovery_mean"], color=color, linestyle="--", linewidth=1.2)
        ax.vlines(x, row["recovery_ci_low"], row["recovery_ci_high"], color=color, linewidth=3)
        ax.plot(x, row["recovery_mean"], marker="o", color=color)
    ax.axhline(0, color="black", linewidth=1)
    _log2_axis(ax, values, AXIS_LABELS[axis])
    ax.set_xlim(values[0] / 1.4, (margin[-1] if len(flat) else values[-1]) * 1.2)
    _ylabel(ax, f"accuracy − {recovery_reference(df)} (pp)")
    _legend(fig, _drawn_handles(table, layout), False)
    return fig


@styled
def plot_learning_curves(history: pd.DataFrame, df: pd.DataFrame) -> Figure:
    """Train loss, then train accuracy (%), against the optimizer step: per quantity one panel
    per value of the batch axis (PANELS_PER_ROW a row, the accuracy panels starting a new row),
    one line per norm (and other factors) with the mean over seeds at each epoch's end and its
    t-interval band (none for one seed). ``history`` has one row per epoch of each run
    (:func:`learning_table`). Raises NothingToPlot if it is empty."""
    _require("no run folder has a history.jsonl" if history.empty else None)
    layout = figure_layout(df)
    series, axis, colors = layout
    table = learning_table(history, df)
    values = axis_values(table, axis)
    ncols = min(len(values), PANELS_PER_ROW)
    per_quantity = ncols * math.ceil(len(values) / ncols)
    fig, axes = _figure_with_panels(len(CURVES) * per_quantity, ncols=ncols, sharey=False)
    for quantity, (column, ylabel) in enumerate(CURVES.items()):
        panels = axes[quantity * per_quantity : (quantity + 1) * per_quantity]
        for ax, value in zip(panels, values, strict=False):
            rows = table[table[axis].eq(value)]
            for label, line in rows.groupby(series_labels(rows, series), sort=False):
                _band(ax, line, "step", column, colors[label], marker=None)
            if ax is not panels[0]:
                ax.sharey(panels[0])
            _title(ax, f"{AXIS_SHORT[axis]} {value}")
            ax.set_xlabel("optimizer step")
            _ylabel(ax, ylabel)
            ax.grid(alpha=0.3)
        for ax in panels[len(values) :]:
            fig.delaxes(ax)
    _legend(fig, _drawn_handles(table, layout), False)
    return fig


def _comparison_title(mode: str, batch: str, axes: set[str]) -> str:
    """Panel title of a test setting in a comparison of studies whose batch axes are ``axes``:
    a test batch "same" is the x value when the studies vary different batches."""
    if len(axes) == 1:
        return setting_label(mode, batch, next(iter(axes)))
    return setting_label(mode, X_VALUE if batch == SAME else batch)


def studies_table(studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The :func:`accuracy_table` of each study (label -> runs table), stacked, with ``study``,
    ``axis`` (the study's batch-axis column), ``batch`` (its value) and ``series`` (the norm and
    other factors); a study whose table has no rows yet adds none."""
    frames = []
    for study, df in studies.items():
        if df.empty:
            continue
        table = accuracy_table(df)
        axis = batch_axis(df)
        frames.append(
            table.assign(
                study=study,
                axis=axis,
                batch=table[axis],
                series=series_labels(table, series_columns(df)),
            )
        )
    return pd.concat(frames, ignore_index=True)


def _comparison_xlabel(table: pd.DataFrame) -> str:
    """The x label of a comparison: the shared batch axis, or each study's."""
    axes = table.drop_duplicates("study")[["study", "axis"]]
    if axes["axis"].nunique() == 1:
        return AXIS_LABELS[axes["axis"].iloc[0]]
    return "batch size: " + "; ".join(f"{s}: {AXIS_SHORT[a]}" for s, a in axes.values)


@styled
def plot_comparison(studies: dict[str, pd.DataFrame]) -> Figure:
    """Test accuracy (%) of several studies (label -> runs table) overlaid along their batch
    axes: one panel per test setting any study has; per study and norm (and other factors) the
    mean over seeds with its interval band over seeds (:func:`accuracy_table`), colour per norm,
    line style and marker per study;
    chance lines at each study's 100 / number of classes. Raises NothingToPlot if no study's
    table has rows."""
    _require(None if studies else "no study to compare")
    _require(None if any(not df.empty for df in studies.values()) else "no study has runs yet")
    table = studies_table(studies)
    colors = _colors(sort_by(table[["norm", "series"]].drop_duplicates(), ["norm"])["series"])
    shown = table["study"].unique()
    styles = dict(zip(shown, STUDY_STYLES * len(shown), strict=False))
    settings = ordered_settings(table)
    fig, axes = _figure_with_panels(len(settings))
    chance = sorted({level for df in studies.values() for level in chance_levels(df)})
    for ax, (mode, batch) in zip(axes, settings, strict=True):
        panel = table[table["test_mode"].eq(mode) & table["test_batch"].eq(batch)]
        for (study, series), line in panel.groupby(["study", "series"], sort=False):
            linestyle, marker = styles[study]
            _band(ax, line, "batch", "acc", colors[series], linestyle, marker)
        _chance_lines(ax, chance)
        _log2_axis(ax, axis_values(table, "batch"), _comparison_xlabel(table))
        _title(ax, _comparison_title(mode, batch, set(table["axis"])))
        ax.set_ylabel("test accuracy (%)")
    handles = [Line2D([], [], color=colors[s], label=s) for s in dict.fromkeys(table["series"])]
    handles += [
        Line2D([], [], color="0.3", linestyle=ls, marker=m, label=study)
        for study, (ls, m) in styles.items()
    ]
    _legend(fig, handles + _chance_handles(chance), False)
    return fig
