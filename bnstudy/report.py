"""Turn a sweep's tidy ``runs.csv`` into a report: summary tables, plots and one HTML page.

:func:`write_report` writes ``results/<name>/report/``::

    summary.csv                 mean/std/n per factor group, raw fractions
    summary.md                  the same table, accuracies in percent
    accuracy_vs_batch_size.png  test accuracy vs training batch size, per test setting
    test_mode_gap.png           eval- minus train-mode accuracy (only when some run has both)
    output_collapse.png         output std and zero fraction of a probe batch, init and trained
    batch_statistics.png        values per norm statistic and noise of BN batch statistics
    flip_rate.png               train-mode predictions that change when test batches reshuffle
    index.html                  self-contained page with all of the above

A plot whose measurements the runs table lacks (e.g. a table from before the diagnostics) is
skipped, and the page says why.

The plot functions return :class:`matplotlib.figure.Figure` objects built without pyplot, so
they are safe headless and leave no global state behind; :func:`save_figure` writes them out.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator, StrMethodFormatter

RUNS_CSV = "runs.csv"
REPORT_DIR = "report"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
INDEX_HTML = "index.html"
ACCURACY_PNG = "accuracy_vs_batch_size.png"
GAP_PNG = "test_mode_gap.png"
COLLAPSE_PNG = "output_collapse.png"
BATCH_STATS_PNG = "batch_statistics.png"
FLIP_PNG = "flip_rate.png"
# Plot -> (heading, one-sentence caption saying what is measured).
PLOT_CAPTIONS = {
    ACCURACY_PNG: (
        "Test accuracy vs training batch size",
        "Test accuracy, mean over seeds with a ±std band, per test setting; "
        "x = no seed produced a result.",
    ),
    GAP_PNG: (
        "Test-mode gap: eval-mode minus train-mode accuracy (positive = running stats help)",
        "Per run, eval-mode minus train-mode test accuracy in percentage points, "
        "mean over seeds with a ±std band, per train-mode test batch.",
    ),
    COLLAPSE_PNG: (
        "Output collapse",
        "On a fixed probe batch of the training batch size in train mode: the std of the model "
        "outputs and the fraction of outputs exactly 0, at initialization (dashed) and after "
        "training (solid); x = no value (run failed, or the forward raised).",
    ),
    BATCH_STATS_PNG: (
        "Batch statistics",
        "The fewest values any norm statistic of the network averages over, and, after "
        "training, the std across up to 32 training batches of the per-channel batch mean "
        "(relative to the population std) and batch variance (relative to the population "
        "variance), averaged over channels and BN layers.",
    ),
    FLIP_PNG: (
        "Train-mode flip rate",
        "Percentage of test predictions in train mode (batch statistics) that change when the "
        "test set is reshuffled into different batches, per test batch setting.",
    ),
}
FIGURE_DPI = 120
PANELS_PER_ROW = 3

OK, ERROR, DIVERGED = "ok", "error", "diverged"
EVAL, TRAIN, SAME = "eval", "train", "same"
NORM_ORDER = ("batch", "batch_manual", "batch_keras", "group", "instance", "layer", "none")
TEST_BATCH_RANK = {EVAL: -2, SAME: -1}  # then numeric test batch sizes, ascending

# Column registry of runs.csv.
TEXT_COLUMNS = (
    "run_id",
    "name",
    "dataset",
    "model",
    "norm",
    "status",
    "error",
    "error_at",
    "test_mode",
    "test_batch",
)
REQUIRED_COLUMNS = ("run_id", "norm", "batch_size", "status", "test_mode")
NA_STRINGS = ("", "nan", "NaN")  # not pandas' full list: a norm called "none" stays text
SETTING_COLUMNS = ("test_mode", "test_batch")
BASE_FACTORS = ("norm", "batch_size", *SETTING_COLUMNS)
ALIAS_COLUMNS = ("model.norm", "train.batch_size", "seed")  # swept copies of base factors
METRICS = ("test_acc", "test_loss", "train_acc", "samples_per_sec")
# Diagnostics averaged into summary.csv; see bnstudy.diagnostics and bnstudy.run.
DIAGNOSTICS = (
    "test_flip_rate",
    "min_values_per_stat",
    "bn_mean_noise",
    "bn_var_noise",
    "zero_fraction",
    "init_zero_fraction",
    "output_std",
    "init_output_std",
)
# Measured before training, so meaningful for failed runs too; the rest count for ok rows only.
PRE_TRAINING = ("min_values_per_stat", "init_zero_fraction", "init_output_std")
OK_ONLY = (*METRICS, *(col for col in DIAGNOSTICS if col not in PRE_TRAINING))
INIT_PREFIX = "init_"
# Panels of the per-run diagnostic plots: panel title -> columns drawn (init_* dashed).
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
NUM_CLASSES_COLUMNS = ("num_classes", "data.num_classes")
FAILURE_COLUMNS = ("run_id", "norm", "batch_size", "seed", "status", "error_at", "error")

# Column registry of summary.csv: output column -> (input column, aggregation).
SUMMARY_STATS = {
    "test_acc_mean": ("test_acc", "mean"),
    "test_acc_std": ("test_acc", "std"),
    "test_loss_mean": ("test_loss", "mean"),
    "test_loss_std": ("test_loss", "std"),
    "train_acc_mean": ("train_acc", "mean"),
    "train_acc_std": ("train_acc", "std"),
    "samples_per_sec_mean": ("samples_per_sec", "mean"),
    **{f"{col}_mean": (col, "mean") for col in DIAGNOSTICS},
    "n": ("test_acc", "count"),
    "n_error": ("is_error", "sum"),
    "n_diverged": ("is_diverged", "sum"),
}
# Display columns of summary.md / index.html: header -> (metric, scale, number format); shown
# as mean ± std where summary.csv has the std, else as the mean.
DISPLAY_COLUMNS = {
    "test acc (%)": ("test_acc", 100, ".1f"),
    "test loss": ("test_loss", 1, ".3f"),
    "train acc (%)": ("train_acc", 100, ".1f"),
    "samples/s": ("samples_per_sec", 1, ".0f"),
    "flip (%)": ("test_flip_rate", 100, ".1f"),
    "min values/stat": ("min_values_per_stat", 1, ".0f"),
}
COUNT_COLUMNS = ("n", "n_error", "n_diverged")
SUMMARY_NOTE = (
    "Accuracies and flip rates in percent, mean ± std over seeds (ok runs only); n = ok seeds. "
    "flip = test predictions that change when the test set is reshuffled into other batches; "
    "min values/stat = fewest values any norm statistic averages over (1 = degenerate)."
)

PAGE_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 90em; }
table { border-collapse: collapse; font-size: 90%; margin-bottom: 1em; }
th, td { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: left; }
img { max-width: 100%; }
"""


def load_runs(csv_path: Path) -> pd.DataFrame:
    """Read a sweep's runs table: text columns stay text, empty cells become NaN, eval-mode rows
    get test_batch ``eval``, and failed rows without a test setting are spread over all settings."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"{csv_path} not found: a report needs the runs table that a sweep writes"
        )
    df = pd.read_csv(
        csv_path,
        dtype=dict.fromkeys(TEXT_COLUMNS, str),
        keep_default_na=False,
        na_values=list(NA_STRINGS),
    )
    missing = [col for col in REQUIRED_COLUMNS if col not in df.columns]
    if missing:
        raise ValueError(f"{csv_path} lacks required columns: {', '.join(missing)}")
    return _spread_unplaced_failures(_with_defaults(df))


def _with_defaults(df: pd.DataFrame) -> pd.DataFrame:
    """Add the optional columns a table may lack and label eval-mode rows' test batch ``eval``."""
    defaults = {"test_batch": np.nan, "error": "", "error_at": "", "seed": np.nan}
    defaults |= dict.fromkeys((*METRICS, *DIAGNOSTICS), np.nan)
    df = df.assign(**{col: value for col, value in defaults.items() if col not in df.columns})
    df["test_batch"] = df["test_batch"].mask(df["test_mode"].eq(EVAL), EVAL)
    df[["error", "error_at"]] = df[["error", "error_at"]].fillna("")
    return df


def _spread_unplaced_failures(df: pd.DataFrame) -> pd.DataFrame:
    """Copy each failed row that has no test setting (the run died before testing and wrote one
    row) to every test setting in the table, so it counts as a failure in each setting's group."""
    unplaced = df["test_mode"].isna() & df["status"].ne(OK)
    if not unplaced.any():
        return df
    settings = df.loc[~unplaced, list(SETTING_COLUMNS)].drop_duplicates()
    if settings.empty:
        settings = pd.DataFrame({"test_mode": [EVAL], "test_batch": [EVAL]})
    spread = df[unplaced].drop(columns=list(SETTING_COLUMNS)).merge(settings, how="cross")
    return pd.concat([df[~unplaced], spread], ignore_index=True)


def factor_columns(df: pd.DataFrame) -> list[str]:
    """Grouping factors: norm, batch_size, test_mode, test_batch, then every other swept (dotted)
    column that varies and is not determined by norm or by batch size."""
    return [*BASE_FACTORS, *_extra_factors(df)]


def _extra_factors(df: pd.DataFrame) -> list[str]:
    """Swept dotted columns that are factors of their own: they vary, are not aliases such as
    ``model.norm``, and take several values for some norm and for some batch size (so an lr
    zipped with batch size is left out)."""
    return [
        col
        for col in df.columns
        if "." in col
        and col not in ALIAS_COLUMNS
        and df[col].nunique() > 1
        and all(df.groupby(key)[col].nunique().max() > 1 for key in ("norm", "batch_size"))
    ]


def _series_columns(df: pd.DataFrame) -> list[str]:
    """Columns whose values make one plotted line: the norm plus any extra factor."""
    return ["norm", *_extra_factors(df)]


def _sort_key(col: pd.Series) -> pd.Series:
    """Sort key per column: norms in NORM_ORDER (others after, alphabetically), test batches as
    eval < same < 1 < 2 < ..., anything else by value."""
    if col.name == "norm":
        present = set(col.dropna())
        order = [n for n in NORM_ORDER if n in present] + sorted(present - set(NORM_ORDER))
        return pd.Series(pd.Categorical(col, categories=order, ordered=True), index=col.index)
    if col.name == "test_batch":
        return col.map(_test_batch_rank)
    return col


def _test_batch_rank(label: object) -> float:
    """Position of a test_batch label: eval, same, then the numeric sizes; unknown labels last."""
    if label in TEST_BATCH_RANK:
        return TEST_BATCH_RANK[label]
    return float(label) if str(label).isdigit() else math.inf


def _sort_by(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``df`` sorted by ``columns`` using :func:`_sort_key`, with a fresh index."""
    return df.sort_values(list(columns), key=_sort_key, ignore_index=True)


def _ok_only(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the OK_ONLY columns blanked (NaN) on rows whose status is not ok."""
    ok = df["status"].eq(OK)
    return df.assign(**{col: df[col].where(ok) for col in OK_ONLY})


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per factor group: mean and std over seeds of test_acc, test_loss and train_acc, and the
    mean of samples_per_sec and the DIAGNOSTICS (ok rows only, except the PRE_TRAINING
    diagnostics, which count failed runs too), n (ok seeds with a test accuracy), and n_error /
    n_diverged (failed seeds). Groups where every seed failed are kept with n = 0."""
    factors = factor_columns(df)
    data = _ok_only(df).assign(
        is_error=df["status"].eq(ERROR), is_diverged=df["status"].eq(DIVERGED)
    )
    summary = data.groupby(factors, dropna=False).agg(**SUMMARY_STATS).reset_index()
    return _sort_by(summary, factors)


def _seed_stats(frame: pd.DataFrame, column: str, keys: list[str]) -> pd.DataFrame:
    """Per ``keys`` group: ``<column>_mean``, ``<column>_std`` and ``n`` (non-NaN values) over
    the rows (seeds) of ``frame``, sorted by ``keys``."""
    stats = frame.groupby(keys, dropna=False)[column].agg(
        **{f"{column}_mean": "mean", f"{column}_std": "std", "n": "count"}
    )
    return _sort_by(stats.reset_index(), keys)


def _mean_pm_std(mean: float, std: float, scale: float, fmt: str) -> str:
    """``mean ± std`` scaled and formatted; just the mean when std is NaN, blank when both are."""
    if pd.isna(mean):
        return ""
    if pd.isna(std):
        return f"{mean * scale:{fmt}}"
    return f"{mean * scale:{fmt}} ± {std * scale:{fmt}}"


def format_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Display version of :func:`summarize`: factor columns, DISPLAY_COLUMNS (accuracies as
    ``mean ± std`` in percent with 1 decimal, loss with 3 decimals, samples/s rounded, flip rate
    in percent, values per statistic rounded), then the counts."""
    table = summary[[col for col in summary.columns if col not in SUMMARY_STATS]].copy()
    no_std = pd.Series(np.nan, index=summary.index)
    for header, (metric, scale, fmt) in DISPLAY_COLUMNS.items():
        means, stds = summary[f"{metric}_mean"], summary.get(f"{metric}_std", no_std)
        table[header] = [_mean_pm_std(m, s, scale, fmt) for m, s in zip(means, stds, strict=True)]
    for col in COUNT_COLUMNS:
        table[col] = summary[col]
    return table


def _markdown_table(table: pd.DataFrame) -> str:
    """GitHub-flavoured markdown table of ``table``, NaN as blank and pipes escaped."""
    rows = [list(table.columns), *table.astype(object).fillna("").to_numpy().tolist()]
    lines = ["| " + " | ".join(str(v).replace("|", r"\|") for v in row) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * len(table.columns))
    return "\n".join(lines) + "\n"


def compute_gap(df: pd.DataFrame) -> pd.DataFrame:
    """Eval-mode minus train-mode test accuracy in percentage points, paired per run_id for each
    train-mode test_batch, then gap_mean / gap_std / n over seeds per norm (and other varying
    factors), batch_size and test_batch. Positive means running statistics beat batch statistics."""
    ok = df[df["status"].eq(OK)]
    eval_acc = ok[ok["test_mode"].eq(EVAL)].groupby("run_id")["test_acc"].mean()
    train = ok[ok["test_mode"].eq(TRAIN)]
    gap = 100 * (train["run_id"].map(eval_acc) - train["test_acc"])
    keys = [*_series_columns(df), "batch_size", "test_batch"]
    return _seed_stats(train.assign(gap=gap).dropna(subset=["gap"]), "gap", keys)


def compute_flip_rate(df: pd.DataFrame) -> pd.DataFrame:
    """Train-mode flip rate in percent: flip_mean / flip_std / n over ok seeds per norm (and
    other varying factors), batch_size and test_batch; n = 0 where every seed failed."""
    train = _ok_only(df)[df["test_mode"].eq(TRAIN)]
    keys = [*_series_columns(df), "batch_size", "test_batch"]
    return _seed_stats(train.assign(flip=100 * train["test_flip_rate"]), "flip", keys)


def _run_stats(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """A per-run diagnostic's mean / std / n over seeds per norm (and other varying factors) and
    batch size, one value per run (ok rows only unless PRE_TRAINING); series never measured are
    left out (e.g. batch-statistic noise of group norm)."""
    series = _series_columns(df)
    runs = _ok_only(df).groupby("run_id")[[*series, "batch_size", column]].first()
    stats = _seed_stats(runs, column, [*series, "batch_size"])
    measured = stats.groupby(_series_labels(stats, series))["n"].transform("sum") > 0
    return stats[measured].reset_index(drop=True)


def failure_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per failed (error or diverged) run with FAILURE_COLUMNS, sorted by norm,
    batch size and seed."""
    failed = df[df["status"].isin((ERROR, DIVERGED))].drop_duplicates("run_id")
    return _sort_by(failed[list(FAILURE_COLUMNS)], ["norm", "batch_size", "seed"])


def setting_label(test_mode: str, test_batch: str) -> str:
    """Human-readable name of a test setting, used as panel title."""
    if test_mode == EVAL:
        return "eval mode (running stats)"
    return f"{test_mode} mode (batch stats, {_test_batch_label(test_batch)})"


def _test_batch_label(test_batch: str) -> str:
    """``test batch = ...`` for a train-mode test_batch label."""
    return "test batch = " + ("training batch" if test_batch == SAME else str(test_batch))


def _series_labels(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Legend label per row: the norm, then ``key=value`` for each other varying factor."""
    labels = frame[columns[0]].astype(str)
    for col in columns[1:]:
        labels = labels + f", {col}=" + frame[col].astype(str)
    return labels


def _colors(labels: pd.Series) -> dict[str, str]:
    """A colour-cycle colour per distinct label, in order of first appearance."""
    return {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys(labels))}


def _series_colors(df: pd.DataFrame) -> dict[str, str]:
    """A colour per norm (and other varying factors) of the whole table, in sorted order, so a
    norm has the same colour in every plot."""
    columns = _series_columns(df)
    series = _sort_by(df[columns].drop_duplicates(), columns)
    return _colors(_series_labels(series, columns))


def _figure_with_panels(n: int, sharey: bool = True) -> tuple[Figure, list[Axes]]:
    """A constrained-layout figure with ``n`` panels, PANELS_PER_ROW a row."""
    ncols = min(n, PANELS_PER_ROW)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.2 * ncols + 2.5, 3.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=sharey, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def _log2_axis(ax: Axes, sizes: list[int]) -> None:
    """Log2 x axis with ticks exactly at the given training batch sizes, same limits per panel."""
    ax.set_xscale("log", base=2)
    ax.set_xlim(sizes[0] / 1.4, sizes[-1] * 1.4)
    ax.set_xticks(sizes, labels=[str(int(s)) for s in sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("training batch size")
    ax.grid(alpha=0.3)


def _band(ax: Axes, rows: pd.DataFrame, column: str, color: str, linestyle: str) -> None:
    """Line of ``rows[<column>_mean]`` vs batch size with a shaded ±``<column>_std`` band (none
    where the std is NaN)."""
    x, y = rows["batch_size"], rows[f"{column}_mean"]
    spread = rows[f"{column}_std"].fillna(0)
    ax.plot(x, y, marker="o", color=color, linestyle=linestyle)
    ax.fill_between(x, y - spread, y + spread, color=color, alpha=0.2, linewidth=0)


def _draw_lines(
    ax: Axes,
    stats: pd.DataFrame,
    column: str,
    by: str | pd.Series,
    colors: dict[str, str],
    linestyle: str = "-",
) -> bool:
    """One line per value of ``by`` (a column of, or labels aligned with, ``stats`` from
    :func:`_seed_stats`): mean ± std band of ``column`` vs batch size, and an 'x' at the bottom
    of the panel where no seed has a value. Returns whether any 'x' was drawn."""
    for key, rows in stats.groupby(by, sort=False):
        _band(ax, rows, column, colors[key], linestyle)
        _mark_failures(ax, rows[rows["n"].eq(0)], colors[key])
    return bool(stats["n"].eq(0).any())


def _mark_failures(ax: Axes, failed: pd.DataFrame, color: str) -> None:
    """An 'x' at the bottom of the panel at each failed cell's batch size."""
    ax.plot(
        failed["batch_size"],
        np.full(len(failed), 0.04),
        marker="x",
        markersize=8,
        linestyle="none",
        color=color,
        transform=ax.get_xaxis_transform(),
    )


def _batch_sizes(df: pd.DataFrame) -> list[int]:
    """The distinct training batch sizes in ``df``, ascending."""
    return sorted(int(s) for s in df["batch_size"].dropna().unique())


def _line_handles(colors: dict[str, str], label: Callable[[str], str] = str) -> list[Line2D]:
    """Legend entries for coloured lines, labelled ``label(key)``."""
    return [Line2D([], [], color=c, marker="o", label=label(key)) for key, c in colors.items()]


def _no_value_handle(label: str) -> Line2D:
    """Legend entry for the 'x' of :func:`_mark_failures`."""
    return Line2D([], [], color="0.3", marker="x", linestyle="none", label=label)


def plot_accuracy_vs_batch_size(df: pd.DataFrame, num_classes: int | None = None) -> Figure:
    """Test accuracy (%) vs training batch size: one panel per test setting, one line per norm
    (and other varying factors) with the mean over seeds and a ±std band, an 'x' at the bottom of
    the panel where no seed produced a result, and a dashed chance line if num_classes is given."""
    summary = summarize(df).assign(
        acc_mean=lambda s: 100 * s["test_acc_mean"], acc_std=lambda s: 100 * s["test_acc_std"]
    )
    if summary.empty:
        raise ValueError("the runs table has no rows to plot")
    labels = _series_labels(summary, _series_columns(df))
    colors = _series_colors(df)
    settings = _sort_by(summary[list(SETTING_COLUMNS)].drop_duplicates().dropna(), SETTING_COLUMNS)
    fig, axes = _figure_with_panels(len(settings))
    for ax, (mode, batch) in zip(axes, settings.itertuples(index=False), strict=True):
        panel = summary["test_mode"].eq(mode) & summary["test_batch"].eq(batch)
        _draw_lines(ax, summary[panel], "acc", labels[panel], colors)
        if num_classes:
            ax.axhline(100 / num_classes, color="0.5", linestyle="--", linewidth=1)
        _log2_axis(ax, _batch_sizes(summary))
        ax.set_title(setting_label(mode, batch), fontsize="medium")
    axes[0].set_ylabel("test accuracy (%)")
    handles = _line_handles(colors)
    if summary["n"].eq(0).any():
        handles.append(_no_value_handle("no result (error/diverged)"))
    if num_classes:
        handles.append(Line2D([], [], color="0.5", linestyle="--", label="chance"))
    fig.legend(handles=handles, loc="outside right upper")
    return fig


def _per_test_batch_figure(table: pd.DataFrame, df: pd.DataFrame, column: str) -> Figure:
    """One panel per norm (and other varying factors) of ``table`` (from :func:`_seed_stats`
    per series, batch size and test_batch), one line per train-mode test_batch."""
    labels = _series_labels(table, _series_columns(df))
    colors = _colors(_sort_by(table[["test_batch"]], ["test_batch"])["test_batch"])
    panels = list(dict.fromkeys(labels))
    fig, axes = _figure_with_panels(len(panels))
    for ax, panel in zip(axes, panels, strict=True):
        _draw_lines(ax, table[labels.eq(panel)], column, "test_batch", colors)
        _log2_axis(ax, _batch_sizes(table))
        ax.set_title(panel, fontsize="medium")
    handles = _line_handles(colors, _test_batch_label)
    if table["n"].eq(0).any():
        handles.append(_no_value_handle("no result (error/diverged)"))
    fig.legend(handles=handles, loc="outside right upper")
    return fig


def plot_test_mode_gap(df: pd.DataFrame) -> Figure:
    """Eval-mode minus train-mode accuracy (percentage points) vs training batch size: one panel
    per norm (and other varying factors), one line per train-mode test_batch with the mean over
    seeds and a ±std band, and a zero line. Raises ValueError if no run has both modes."""
    gap = compute_gap(df)
    if gap.empty:
        raise ValueError("no run has both eval-mode and train-mode test accuracy")
    fig = _per_test_batch_figure(gap, df, "gap")
    for ax in fig.axes:
        ax.axhline(0, color="0.3", linewidth=1)
    fig.axes[0].set_ylabel("eval − train accuracy (pp)")
    fig.suptitle("Test-mode gap (positive = running statistics help)", fontsize="medium")
    return fig


def plot_flip_rate(df: pd.DataFrame) -> Figure:
    """Train-mode flip rate (% of test predictions that change when the test set is reshuffled
    into other batches) vs training batch size: one panel per norm (and other varying factors),
    one line per train-mode test_batch with the mean over seeds and a ±std band, an 'x' where
    no seed has a value. Raises ValueError if no train-mode row has a flip rate."""
    reason = _flip_skip_reason(df)
    if reason:
        raise ValueError(reason)
    fig = _per_test_batch_figure(compute_flip_rate(df), df, "flip")
    fig.axes[0].set_ylabel("predictions flipped (%)")
    fig.suptitle("Train-mode flip rate when test batches are reshuffled", fontsize="medium")
    return fig


def _panel_columns(panels: dict[str, tuple[str, ...]]) -> list[str]:
    """All columns drawn by a per-run figure's ``panels``."""
    return [col for columns in panels.values() for col in columns]


def _draw_run_panel(
    ax: Axes, df: pd.DataFrame, columns: Iterable[str], colors: dict[str, str]
) -> bool:
    """Per-run diagnostic ``columns`` per series on ``ax`` (init_* dashed); returns whether an
    'x' was drawn. Says so on the panel when no series has a value."""
    marked = drawn = False
    for column in columns:
        stats = _run_stats(df, column)
        labels = _series_labels(stats, _series_columns(df))
        style = "--" if column.startswith(INIT_PREFIX) else "-"
        marked |= _draw_lines(ax, stats, column, labels, colors, style)
        drawn |= not stats.empty
        if column in LOG_Y_COLUMNS:
            ax.set_yscale("log", base=2)
            ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    if not drawn:
        ax.text(0.5, 0.5, "not measured for these norms", ha="center", transform=ax.transAxes)
    return marked


def _run_level_figure(df: pd.DataFrame, panels: dict[str, tuple[str, ...]], title: str) -> Figure:
    """One panel per entry of ``panels`` (title -> per-run diagnostic columns): per norm (and
    other varying factors) the mean over seeds vs training batch size with a ±std band, init_*
    columns dashed, an 'x' where no seed has a value. Raises ValueError if none is measured."""
    reason = _unmeasured_reason(df, _panel_columns(panels))
    if reason:
        raise ValueError(reason)
    colors = _series_colors(df)
    fig, axes = _figure_with_panels(len(panels), sharey=False)
    marked = False
    for ax, (name, columns) in zip(axes, panels.items(), strict=True):
        marked |= _draw_run_panel(ax, df, columns, colors)
        _log2_axis(ax, _batch_sizes(df))
        ax.set_title(name, fontsize="medium")
    handles = _line_handles(colors)
    if any(col.startswith(INIT_PREFIX) for col in _panel_columns(panels)):
        handles += [
            Line2D([], [], color="0.3", linestyle="--", label="at initialization"),
            Line2D([], [], color="0.3", label="after training"),
        ]
    if marked:
        handles.append(_no_value_handle("no value (failed run or forward raised)"))
    fig.legend(handles=handles, loc="outside right upper")
    fig.suptitle(title, fontsize="medium")
    return fig


def plot_output_collapse(df: pd.DataFrame) -> Figure:
    """Output collapse on a fixed train-mode probe batch of the training batch size: panels of
    the output std and of the fraction of outputs exactly 0 vs training batch size, per norm at
    initialization (dashed) and after training (solid). Raises ValueError if not measured."""
    return _run_level_figure(df, COLLAPSE_PANELS, "Output collapse on a probe batch (train mode)")


def plot_batch_statistics(df: pd.DataFrame) -> Figure:
    """Batch statistics vs training batch size: the fewest values any norm statistic averages
    over (log y), and the noise of BN batch means and variances across training batches, per
    norm that has them. Raises ValueError if none is measured."""
    return _run_level_figure(df, BATCH_STATS_PANELS, "What the norm statistics average over")


def save_figure(fig: Figure, path: Path) -> Path:
    """Save ``fig`` as a PNG at FIGURE_DPI, close it if pyplot manages it, and return ``path``."""
    fig.savefig(path, dpi=FIGURE_DPI, format="png")
    if fig.canvas.manager is not None:  # made through pyplot: drop it from pyplot's registry
        import matplotlib.pyplot as plt

        plt.close(fig)
    return Path(path)


def _num_classes(df: pd.DataFrame) -> int | None:
    """The number of classes if the table records a single value for it, else None."""
    for col in NUM_CLASSES_COLUMNS:
        if col in df.columns and df[col].nunique() == 1:
            return int(df[col].dropna().iloc[0])
    return None


def _train_mode_reason(df: pd.DataFrame) -> str | None:
    """Why a train-mode plot cannot be drawn because the sweep lacks train-mode rows, or None."""
    return None if df["test_mode"].eq(TRAIN).any() else "the sweep has no train-mode test rows"


def _gap_skip_reason(df: pd.DataFrame) -> str | None:
    """Why the test-mode gap plot cannot be drawn, or None if it can."""
    if compute_gap(df).empty:
        return _train_mode_reason(df) or "no run has both eval-mode and train-mode results yet"
    return None


def _unmeasured_reason(df: pd.DataFrame, columns: list[str]) -> str | None:
    """Why a plot of ``columns`` cannot be drawn (no value in any of them), or None."""
    if df[columns].notna().to_numpy().any():
        return None
    return f"the runs table has no values of {', '.join(columns)} (e.g. a sweep from before them)"


def _flip_skip_reason(df: pd.DataFrame) -> str | None:
    """Why the flip-rate plot cannot be drawn, or None if it can."""
    train = df[df["test_mode"].eq(TRAIN)]
    return _train_mode_reason(df) or _unmeasured_reason(train, ["test_flip_rate"])


def _write_plots(df: pd.DataFrame, out: Path) -> dict[str, str | None]:
    """Save the plots into ``out``; map each PNG name to None, or to why it was skipped (then a
    stale PNG from an earlier report is removed)."""
    reasons = {
        ACCURACY_PNG: "the runs table has no rows yet" if df.empty else None,
        GAP_PNG: _gap_skip_reason(df),
        COLLAPSE_PNG: _unmeasured_reason(df, _panel_columns(COLLAPSE_PANELS)),
        BATCH_STATS_PNG: _unmeasured_reason(df, _panel_columns(BATCH_STATS_PANELS)),
        FLIP_PNG: _flip_skip_reason(df),
    }
    makers = {
        ACCURACY_PNG: lambda: plot_accuracy_vs_batch_size(df, _num_classes(df)),
        GAP_PNG: lambda: plot_test_mode_gap(df),
        COLLAPSE_PNG: lambda: plot_output_collapse(df),
        BATCH_STATS_PNG: lambda: plot_batch_statistics(df),
        FLIP_PNG: lambda: plot_flip_rate(df),
    }
    for png, reason in reasons.items():
        if reason is None:
            save_figure(makers[png](), out / png)
        else:
            (out / png).unlink(missing_ok=True)
    return reasons


def _sweep_name(df: pd.DataFrame, sweep_dir: Path) -> str:
    """The sweep name(s) recorded in the table, else the folder name."""
    names = df["name"].dropna().unique() if "name" in df.columns else []
    return ", ".join(names) or sweep_dir.name


def _counts_line(df: pd.DataFrame) -> str:
    """``N runs: a ok, b error, c diverged; R rows`` (runs counted once per run_id)."""
    per_run = df.drop_duplicates("run_id")["status"].value_counts()
    counts = ", ".join(f"{per_run.get(s, 0)} {s}" for s in (OK, ERROR, DIVERGED))
    return f"{df['run_id'].nunique()} runs: {counts}; {len(df)} rows"


def _html_table(table: pd.DataFrame, css_class: str) -> str:
    """``table`` as escaped HTML without index."""
    return table.to_html(index=False, border=0, classes=css_class, na_rep="", escape=True)


def _plots_html(plots: dict[str, str | None]) -> list[str]:
    """One section per plot: heading and caption, then the image or a note saying why it was
    skipped."""
    parts = []
    for png, reason in plots.items():
        heading, caption = (html.escape(text) for text in PLOT_CAPTIONS[png])
        parts += [f"<h2>{heading}</h2>", f"<p>{caption}</p>"]
        if reason is None:
            parts.append(f'<img src="{png}" alt="{heading}">')
        else:
            parts.append(f"<p>Plot skipped: {html.escape(reason)}.</p>")
    return parts


def _html_page(
    title: str, df: pd.DataFrame, table: pd.DataFrame, plots: dict[str, str | None]
) -> str:
    """The self-contained index.html: counts, summary ``table``, plots and failed runs."""
    failures = failure_table(df)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{PAGE_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(_counts_line(df))}</p>",
        "<h2>Summary</h2>",
        f"<p>{html.escape(SUMMARY_NOTE)} "
        f'Also as <a href="{SUMMARY_CSV}">{SUMMARY_CSV}</a> (with more diagnostics) and '
        f'<a href="{SUMMARY_MD}">{SUMMARY_MD}</a>.</p>',
        _html_table(table, "summary"),
        *_plots_html(plots),
    ]
    if not failures.empty:
        parts += ["<h2>Failed runs</h2>", _html_table(failures, "failures")]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(sweep_dir: Path) -> Path:
    """Write ``sweep_dir/report/`` (summary.csv, summary.md, plots, index.html) from
    ``sweep_dir/runs.csv`` and return the report folder. Works on partial sweeps."""
    sweep_dir = Path(sweep_dir)
    df = load_runs(sweep_dir / RUNS_CSV)
    out = sweep_dir / REPORT_DIR
    out.mkdir(exist_ok=True)
    title = f"bnstudy report: {_sweep_name(df, sweep_dir)}"
    summary = summarize(df)
    summary.to_csv(out / SUMMARY_CSV, index=False)
    table = format_summary(summary)
    (out / SUMMARY_MD).write_text(
        f"# {title}\n\n{SUMMARY_NOTE}\n\n" + _markdown_table(table),
        encoding="utf-8",
    )
    plots = _write_plots(df, out)
    (out / INDEX_HTML).write_text(_html_page(title, df, table, plots), encoding="utf-8")
    return out
