"""The report's figures: each function takes the runs table (as
:func:`bnstudy.report.load.load_runs` returns it; for its series, batch axis and colours) and
the tables that :mod:`bnstudy.report.figure_data` computed for it, and returns a
:class:`matplotlib.figure.Figure` (:mod:`bnstudy.report.drawing`: built without pyplot).

The x axis of every figure is the study's batch axis (:func:`bnstudy.report.runs_table.batch_axis`),
log 2, ticks at its values; a norm without batch statistics in a normalization-batch study is
drawn at every axis value from its one model per seed. Lines are means over seeds, bands and
bars their 95% intervals (none for one seed); an 'x' at the bottom of a panel marks an axis
value where no seed has a value. Panels are drawn only where the quantity can vary:
differences between test modes only for norms with running statistics, and a diagnostic that
is the same in every run is left out.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bnstudy.norm_catalog import display_label
from bnstudy.report.drawing import (
    LEGEND_CHARACTER,
    PANELS_PER_ROW,
    Layout,
    add_legend,
    chance_handles,
    chance_lines,
    draw_band,
    draw_lines,
    drawn_handles,
    figure_layout,
    figure_with_panels,
    label_colors,
    line_handles,
    log2_axis,
    log_y,
    set_title,
    set_ylabel,
    setting_label,
    styled,
)
from bnstudy.report.figure_data import CURVES, DIFF, FLIP, RECOVERY, chance_levels
from bnstudy.report.flips import BASELINE
from bnstudy.report.noise import NOISE_COLUMNS
from bnstudy.report.recovery import recovery_reference
from bnstudy.report.runs_table import (
    ACC,
    AXIS_LABELS,
    AXIS_SHORT,
    axis_values,
    ordered_settings,
    series_labels,
    sort_by,
    test_batch_rank,
)
from bnstudy.results import (
    MIN_VALUES_PER_STAT,
    NORM,
    SAME,
    TEST_BATCH,
    TEST_MODE,
    TEST_MODES,
    TRAIN,
)

STUDY_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))  # comparison: per study
INIT_PREFIX = "init_"
LOG_Y_COLUMNS = (MIN_VALUES_PER_STAT,)
# Learning curves: plotted column (figure_data.learning_table) -> y label.
CURVE_LABELS = dict(zip(CURVES, ("train loss", "train accuracy (%)"), strict=True))
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
# panel order of within-run comparisons: as the test modes list them
COMPARISON_ORDER = {
    f"{mode.name} {other}": index
    for index, (mode, other) in enumerate(
        (mode, other) for mode in TEST_MODES.values() for other in mode.compare_with
    )
}
BASELINE_LABEL = "seed-to-seed baseline"
FLIP_YLABEL = "predictions flipped (%)"
X_VALUE = "the x value"  # comparison of studies with different batch axes: test batch "same"


@styled
def plot_accuracy_vs_batch_size(df: pd.DataFrame, table: pd.DataFrame) -> Figure:
    """Test accuracy (%) along the batch axis: one panel per test setting, one line per norm
    (and other factors) with the mean over seeds and its 95% interval band (``table``:
    :func:`bnstudy.report.figure_data.accuracy_data`, the report's bootstrap over seeds and
    test images), an 'x' at the bottom of the panel where no seed produced a result, and a
    dashed chance line at 100 / number of classes where the runs table ``df`` records it."""
    series, axis, colors = figure_layout(df)
    labels = series_labels(table, series)
    chance = chance_levels(df)
    settings = ordered_settings(table)
    fig, axes = figure_with_panels(len(settings))
    for ax, (mode, batch) in zip(axes, settings, strict=True):
        panel = table[TEST_MODE].eq(mode) & table[TEST_BATCH].eq(batch)
        draw_lines(ax, table[panel], axis, ACC, labels[panel], colors)
        chance_lines(ax, chance)
        log2_axis(ax, axis_values(table, axis), AXIS_LABELS[axis])
        set_title(ax, setting_label(mode, batch, axis))
        ax.set_ylabel("test accuracy (%)")
    handles = line_handles(colors, axis) + chance_handles(chance)
    add_legend(fig, handles, table["n"].eq(0).any())
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
    fig, axes = figure_with_panels(len(names))
    for ax, name in zip(axes, names, strict=True):
        rows = panels.eq(name)
        draw_lines(ax, table[rows], axis, column, labels[rows], colors)
        log2_axis(ax, axis_values(table, axis), AXIS_LABELS[axis])
        set_title(ax, name)
        set_ylabel(ax, ylabel)
    return fig


def _comparison_rank(table: pd.DataFrame) -> pd.Series:
    """Panel order of test-mode comparisons (:data:`COMPARISON_ORDER`), each by train-mode test
    batch."""
    pair = (table["first_mode"] + " " + table["second_mode"]).map(COMPARISON_ORDER)
    return pair * 1000 + table[TEST_BATCH].map(test_batch_rank).clip(upper=999)


@styled
def plot_test_mode_gap(df: pd.DataFrame, table: pd.DataFrame) -> Figure:
    """Paired test-mode differences (pp) along the batch axis for the norms that use batch
    statistics (for the others every test mode is the same computation): one panel per
    comparison (eval − train per train-mode test batch, then precise − eval and precise − train
    where measured), one line per norm with the mean over runs and its 95% interval band (the
    findings': ``table``, :func:`bnstudy.report.figure_data.gap_data`), and a zero line."""
    layout = figure_layout(df)
    table = table.assign(rank=_comparison_rank(table)).sort_values("rank", kind="stable")
    fig = _per_panel_figure(table, layout, DIFF, table["comparison"], "difference (pp)")
    for ax in fig.axes:
        ax.axhline(0, color="0.3", linewidth=1)
    add_legend(fig, drawn_handles(table, layout), table["n"].eq(0).any())
    return fig


@styled
def plot_flip_rate(
    df: pd.DataFrame, rates: pd.DataFrame, baseline: pd.DataFrame | None = None
) -> Figure:
    """Train-mode flip rate (% of test predictions that change when the test set is reshuffled
    into other batches) along the batch axis for the norms that use batch statistics: one panel
    per train-mode test batch, one line per norm with the mean over seeds and its t-interval
    band (``rates``), an 'x' where no seed has a value, and the seed-to-seed ``baseline``
    dotted if given (both from :func:`bnstudy.report.figure_data.flip_data`)."""
    layout = figure_layout(df)
    table = rates.sort_values(TEST_BATCH, key=lambda b: b.map(test_batch_rank), kind="stable")
    labels = [setting_label(TRAIN, b, layout.axis) for b in table[TEST_BATCH]]
    fig = _per_panel_figure(table, layout, FLIP, pd.Series(labels, table.index), FLIP_YLABEL)
    handles = drawn_handles(table, layout)
    if baseline is not None:
        batches = table[TEST_BATCH].unique()  # a panel each, in this order
        _draw_baseline(dict(zip(batches, fig.axes, strict=True)), baseline, layout)
        handles.append(Line2D([], [], color="0.3", linestyle=":", marker="D", label=BASELINE_LABEL))
    add_legend(fig, handles, table["n"].eq(0).any())
    return fig


def _draw_baseline(panels: dict[str, Axes], baseline: pd.DataFrame, layout: Layout) -> None:
    """The seed-to-seed ``baseline`` of the batch-statistic norms (its means,
    :func:`bnstudy.report.figure_data.baseline_means`), dotted, on the panel of its test batch
    (``panels``: test batch -> its panel; a test batch without one is not drawn)."""
    columns, axis, colors = layout
    for test_batch, ax in panels.items():
        panel = baseline[baseline[TEST_BATCH].eq(test_batch)]
        for label, rows in panel.groupby(series_labels(panel, columns), sort=False):
            ax.plot(rows[axis], rows[BASELINE], color=colors[label], linestyle=":", marker="D")


def _draw_run_panel(ax: Axes, panel: dict[str, pd.DataFrame], layout: Layout) -> bool:
    """A panel's per-run diagnostics (column -> its statistics) per series on ``ax`` (init_*
    dashed); returns whether an 'x' was drawn. Says so on the panel when no series has a
    value."""
    marked = drawn = False
    if any(column in LOG_Y_COLUMNS for column in panel):
        log_y(ax, base=2)
    for column, stats in panel.items():
        labels = series_labels(stats, layout.series)
        style = "--" if column.startswith(INIT_PREFIX) else "-"
        marked |= draw_lines(ax, stats, layout.axis, column, labels, layout.colors, style)
        drawn |= not stats.empty
    if not drawn:
        ax.text(0.5, 0.5, "not measured for these norms", ha="center", transform=ax.transAxes)
    return marked


@styled
def plot_run_panels(df: pd.DataFrame, panels: dict[str, dict[str, pd.DataFrame]]) -> Figure:
    """Per-run diagnostics along the batch axis, one panel per entry of ``panels`` (title ->
    column -> its statistics, :func:`bnstudy.report.figure_data.panel_data`): per norm (and
    other factors) the mean over seeds with its t-interval band, init_* columns (at
    initialization) dashed, an 'x' where no seed has a value. Draws the output collapse
    (COLLAPSE_PANELS: output std and fraction of outputs exactly 0 on a fixed train-mode probe
    batch) and the batch statistics (BATCH_STATS_PANELS: the fewest values any norm statistic
    averages over, log y, and the noise of BN batch means and variances across training
    batches)."""
    layout = figure_layout(df)
    fig, axes = figure_with_panels(len(panels), sharey=False)
    marked = False
    for ax, (name, panel) in zip(axes, panels.items(), strict=True):
        marked |= _draw_run_panel(ax, panel, layout)
        log2_axis(ax, axis_values(df, layout.axis), AXIS_LABELS[layout.axis])
        set_title(ax, name)
        set_ylabel(ax, name)
    handles = line_handles(layout.colors, layout.axis)
    if any(col.startswith(INIT_PREFIX) for panel in panels.values() for col in panel):
        handles += [
            Line2D([], [], color="0.3", linestyle="--", label="at initialization"),
            Line2D([], [], color="0.3", label="after training"),
        ]
    add_legend(fig, handles, marked)
    return fig


@styled
def plot_noise_law(df: pd.DataFrame, stats: dict[str, pd.DataFrame]) -> Figure:
    """Noise of BN batch means along the batch axis, log-log, one panel: per norm that uses
    batch statistics, the measured bn_mean_noise (solid, mean and t-interval band over seeds)
    and the means of its two predictions (between-image variation dashed, values law dotted);
    ``stats``: column -> its statistics (:func:`bnstudy.report.figure_data.noise_data`)."""
    layout = figure_layout(df)
    series, axis, colors = layout
    fig, (ax,) = figure_with_panels(1)
    log_y(ax)
    for column, (style, _) in NOISE_LINES.items():
        labels = series_labels(stats[column], series)
        draw_lines(ax, stats[column], axis, column, labels, colors, style)
    log2_axis(ax, axis_values(df, axis), AXIS_LABELS[axis])
    set_ylabel(ax, "std of batch means / population std")
    handles = drawn_handles(stats[NOISE_COLUMNS[0]], layout)
    handles += [Line2D([], [], color="0.3", linestyle=s, label=t) for s, t in NOISE_LINES.values()]
    add_legend(fig, handles, False)
    return fig


@styled
def plot_recovery(df: pd.DataFrame, table: pd.DataFrame) -> Figure:
    """One panel along the batch axis: per norm, eval-mode accuracy minus BN's at its largest
    axis value, mean and the findings' interval (``table``,
    :func:`bnstudy.report.figure_data.recovery_data`): a line with a band for norms with batch
    statistics; a dashed level with its interval as a bar at the right margin for those
    trained once per seed (a band across the panel would hide the others), its tick named."""
    layout = figure_layout(df)
    series, axis, colors = layout
    values = axis_values(df, axis)
    shared = table[axis].isna()
    fig, (ax,) = figure_with_panels(1)
    varying = table[~shared]
    for label, line in varying.groupby(series_labels(varying, series), sort=False):
        draw_band(ax, line, axis, RECOVERY, colors[label])
    flat = table[shared].reset_index(drop=True)
    margin = values[-1] * 1.4 * 1.15 ** np.arange(len(flat))  # staggered bars, log-spaced
    for (_, row), label, x in zip(
        flat.iterrows(), series_labels(flat, series), margin, strict=True
    ):
        color = colors[label]
        mean, low, high = (row[f"{RECOVERY}_{k}"] for k in ("mean", "ci_low", "ci_high"))
        ax.axhline(mean, color=color, linestyle="--", linewidth=1.2)
        ax.vlines(x, low, high, color=color, linewidth=3)
        ax.plot(x, mean, marker="o", color=color)
    ax.axhline(0, color="black", linewidth=1)
    log2_axis(ax, values, AXIS_LABELS[axis])
    names = [display_label(label) for label in series_labels(flat, series)]
    ax.set_xticks([*values, *margin[: len(flat)]], labels=[*map(str, values), *names])
    for tick in ax.get_xticklabels()[len(values) :]:  # the controls' bars, named
        tick.set(rotation=90, fontsize="small")
    longest = max(map(len, names), default=0)
    legend_rows = len(series_labels(table, series).unique()) + 1  # and the band's entry
    room = LEGEND_CHARACTER * longest + 0.25 * legend_rows  # the names, the legend below
    fig.set_figheight(fig.get_figheight() + room)
    ax.set_xlim(values[0] / 1.4, (margin[-1] if len(flat) else values[-1]) * 1.2)
    reference = display_label(recovery_reference(df))
    set_title(ax, f"eval-mode accuracy − {reference}'s, paired by seed")
    set_ylabel(ax, "difference (pp)")
    add_legend(fig, drawn_handles(table, layout), False)
    return fig


@styled
def plot_learning_curves(df: pd.DataFrame, table: pd.DataFrame) -> Figure:
    """Train loss, then train accuracy (%), against the optimizer step: per quantity one panel
    per value of the batch axis (PANELS_PER_ROW a row, the accuracy panels starting a new row),
    one line per norm (and other factors) with the mean over seeds at each epoch's end and its
    t-interval band (none for one seed): ``table``,
    :func:`bnstudy.report.figure_data.learning_data`."""
    layout = figure_layout(df)
    series, axis, colors = layout
    values = axis_values(table, axis)
    ncols = min(len(values), PANELS_PER_ROW)
    per_quantity = ncols * math.ceil(len(values) / ncols)
    fig, axes = figure_with_panels(len(CURVES) * per_quantity, ncols=ncols, sharey=False)
    for quantity, (column, ylabel) in enumerate(CURVE_LABELS.items()):
        panels = axes[quantity * per_quantity : (quantity + 1) * per_quantity]
        for ax, value in zip(panels, values, strict=False):
            rows = table[table[axis].eq(value)]
            for label, line in rows.groupby(series_labels(rows, series), sort=False):
                draw_band(ax, line, "step", column, colors[label], marker=None)
            if ax is not panels[0]:
                ax.sharey(panels[0])
            set_title(ax, f"{AXIS_SHORT[axis]} {value}")
            ax.set_xlabel("optimizer step")
            set_ylabel(ax, ylabel)
            ax.grid(alpha=0.3)
        for ax in panels[len(values) :]:
            fig.delaxes(ax)
    add_legend(fig, drawn_handles(table, layout), False)
    return fig


def _comparison_title(mode: str, batch: str, axes: set[str]) -> str:
    """Panel title of a test setting in a comparison of studies whose batch axes are ``axes``:
    a test batch "same" is the x value when the studies vary different batches."""
    if len(axes) == 1:
        return setting_label(mode, batch, next(iter(axes)))
    return setting_label(mode, X_VALUE if batch == SAME else batch)


def _comparison_xlabel(table: pd.DataFrame) -> str:
    """The x label of a comparison: the shared batch axis, or each study's."""
    axes = table.drop_duplicates("study")[["study", "axis"]]
    if axes["axis"].nunique() == 1:
        return AXIS_LABELS[axes["axis"].iloc[0]]
    return "batch size: " + "; ".join(f"{s}: {AXIS_SHORT[a]}" for s, a in axes.values)


@styled
def plot_comparison(studies: dict[str, pd.DataFrame], table: pd.DataFrame) -> Figure:
    """Test accuracy (%) of several studies (label -> runs table) overlaid along their batch
    axes: one panel per test setting any study has; per study and norm (and other factors) the
    mean over seeds with its interval band over seeds (``table``,
    :func:`bnstudy.report.figure_data.comparison_data`), colour per norm, line style and marker
    per study; chance lines at each study's 100 / number of classes."""
    colors = label_colors(sort_by(table[[NORM, "series"]].drop_duplicates(), [NORM])["series"])
    shown = table["study"].unique()
    styles = dict(zip(shown, STUDY_STYLES * len(shown), strict=False))
    settings = ordered_settings(table)
    fig, axes = figure_with_panels(len(settings))
    chance = sorted({level for df in studies.values() for level in chance_levels(df)})
    for ax, (mode, batch) in zip(axes, settings, strict=True):
        panel = table[table[TEST_MODE].eq(mode) & table[TEST_BATCH].eq(batch)]
        for (study, series), line in panel.groupby(["study", "series"], sort=False):
            linestyle, marker = styles[study]
            draw_band(ax, line, "batch", ACC, colors[series], linestyle, marker)
        chance_lines(ax, chance)
        log2_axis(ax, axis_values(table, "batch"), _comparison_xlabel(table))
        set_title(ax, _comparison_title(mode, batch, set(table["axis"])))
        ax.set_ylabel("test accuracy (%)")
    handles = [
        Line2D([], [], color=colors[s], label=display_label(s))
        for s in dict.fromkeys(table["series"])
    ]
    handles += [
        Line2D([], [], color="0.3", linestyle=ls, marker=m, label=study)
        for study, (ls, m) in styles.items()
    ]
    add_legend(fig, handles + chance_handles(chance), False)
    return fig
