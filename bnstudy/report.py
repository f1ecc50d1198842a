"""Turn a sweep's tidy ``runs.csv`` into a report: findings, summary tables, plots, one HTML page.

:func:`write_report` writes ``results/<name>/report/``::

    findings.md                 what was run, a controls-drift warning if any, and one line per
                                finding with its numbers, 95% CI, n and verdict (bnstudy.findings)
    paired.csv                  every paired difference behind the findings, one row per pair
    summary.csv                 per cell: n, mean, std and 95% t-interval of the test accuracy,
                                means of the other metrics and diagnostics, raw fractions
    summary.md                  the same table, accuracies in percent as mean [low, high]
    accuracy_vs_batch_size.png  test accuracy along the batch axis, per test setting
    test_mode_gap.png           paired test-mode differences (only when some run has both)
    output_collapse.png         output std and zero fraction of a probe batch, init and trained
    batch_statistics.png        values per norm statistic and noise of BN batch statistics
    noise_law.png               measured noise of BN batch means and its two predictions
    flip_rate.png               train-mode predictions that change when test batches reshuffle
    index.html                  self-contained page with all of the above, findings first

The batch axis (x of every plot) is ``norm_batch_size`` or ``batch_size``
(:func:`bnstudy.findings.batch_axis`); a norm without batch statistics in a
normalization-batch study is drawn at every axis value from its one model per seed. A plot
whose measurements the runs table lacks (e.g. a table from before the diagnostics) is skipped,
and the page says why. Bands are 95% t-intervals over seeds (none for one seed).

The plot functions return :class:`matplotlib.figure.Figure` objects built without pyplot, so
they are safe headless and leave no global state behind; :func:`save_figure` writes them out.
"""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator, StrMethodFormatter

from bnstudy import store
from bnstudy.findings import (
    AXIS_LABELS,
    BASELINE,
    BATCH_SIZE,
    EVAL,
    NOISE_COLUMNS,
    NORM_BATCH_SIZE,
    TRAIN,
    FindingGroup,
    along_axis,
    batch_axis,
    build_findings,
    comparison_table,
    control_pairs,
    drift_warning,
    findings_markdown,
    flip_baseline,
    mode_pairs,
    ordered_norms,
    other_factors,
    recovery_pairs,
    recovery_reference,
    recovery_skip,
    recovery_table,
    series_columns,
    series_labels,
    sort_by,
    test_batch_label,
    test_batch_rank,
    uses_batch_stats,
    what_was_run,
)
from bnstudy.outcomes import CRASHED, DIVERGED, ERROR, FAILURES, OK, OOM
from bnstudy.stats import DIFFERENCE, FIRST, SECOND, interval_table, t_half_width
from bnstudy.test_modes import TEST_MODES

RUNS_CSV = "runs.csv"
REPORT_DIR = "report"
FINDINGS_MD = "findings.md"
PAIRED_CSV = "paired.csv"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
INDEX_HTML = "index.html"
RECOVERY_PNG = "recovery.png"
ACCURACY_PNG = "accuracy_vs_batch_size.png"
GAP_PNG = "test_mode_gap.png"
COLLAPSE_PNG = "output_collapse.png"
BATCH_STATS_PNG = "batch_statistics.png"
NOISE_PNG = "noise_law.png"
FLIP_PNG = "flip_rate.png"
BAND = "the mean over seeds with its 95% t-interval as a band (none for one seed)"
# Plot -> (heading, caption saying what is measured).
PLOT_CAPTIONS = {
    RECOVERY_PNG: (
        "Recovery of BN's large-batch accuracy",
        "Per norm, eval-mode test accuracy minus BN's at its largest batch, paired by seed, in "
        f"percentage points, {BAND}. Norms with batch statistics vary along the axis; the "
        "others, trained once per seed, are dashed levels with their interval as a bar at the "
        "right margin. 0 (black): the reference.",
    ),
    ACCURACY_PNG: (
        "Test accuracy along the batch axis",
        f"Test accuracy per test setting, {BAND}; dashed grey: chance (100 / number of "
        "classes); x = no seed produced a result.",
    ),
    GAP_PNG: (
        "Test-mode differences, paired per run",
        "Per run, test accuracy in one test setting minus another (eval − train per train-mode "
        f"test batch; precise − eval where measured) in percentage points, {BAND}; positive = "
        "the first setting is better.",
    ),
    COLLAPSE_PNG: (
        "Output collapse",
        "On a fixed probe batch of the normalization batch size in train mode: the std of the "
        "model "
        "outputs and the fraction of outputs exactly 0, at initialization (dashed) and after "
        f"training (solid), {BAND}; x = no value (run failed, or the forward raised).",
    ),
    BATCH_STATS_PNG: (
        "Batch statistics",
        "The fewest values any norm statistic of the network averages over, and, after "
        "training, the std across batches of the normalization batch size (1024 training "
        "samples) of the per-channel batch mean "
        "(relative to the population std) and batch variance (relative to the population "
        f"variance), averaged over channels and BN layers; {BAND}.",
    ),
    NOISE_PNG: (
        "Noise of BN batch means: measured and predicted",
        "Std across training batches of the per-channel batch mean relative to the population "
        f"std (solid, {BAND}); predicted from between-image variation (std of per-image channel "
        "means / population std / √images per batch; dashed) and by the values law "
        "(1/√values per statistic; dotted); log-log.",
    ),
    FLIP_PNG: (
        "Train-mode flip rate",
        "Percentage of test predictions in train mode (batch statistics) that change when the "
        "test set is reshuffled into different batches (mean over reshuffles), per test batch "
        f"setting, {BAND}; "
        "dotted: the seed-to-seed baseline (predictions of the same setting that differ between "
        "two seeds), where predictions were stored.",
    ),
}
FIGURE_DPI = 120
CSV_FLOATS = "%.6g"  # paired.csv: enough digits for pp differences, no float noise
PANELS_PER_ROW = 3
TITLE_WIDTH = 45  # characters per line of a panel title

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
    *store.PROVENANCE_TEXT_COLUMNS,
)
REQUIRED_COLUMNS = ("run_id", "norm", "batch_size", "status", "test_mode")
NA_STRINGS = ("", "nan", "NaN")  # not pandas' full list: a norm called "none" stays text
SETTING_COLUMNS = ("test_mode", "test_batch")
METRICS = ("test_acc", "test_loss", "train_acc", "samples_per_sec")
# Diagnostics averaged into summary.csv; see bnstudy.diagnostics and bnstudy.run.
DIAGNOSTICS = (
    "test_flip_rate",
    "min_values_per_stat",
    "bn_mean_noise",
    "bn_mean_noise_between_images",
    "bn_mean_noise_values_law",
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
# Noise plot: column -> (line style, legend label); measured first, then the predictions.
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
FAILURE_COLUMNS = ("run_id", "norm", "batch_size", "norm_batch_size", "seed", "status")
FAILURE_COLUMNS += ("error_at", "error")

# Column registry of summary.csv: output column -> (input column, aggregation); the t-interval
# bounds test_acc_ci_low / test_acc_ci_high follow test_acc_std.
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
    "n_oom": ("is_oom", "sum"),
    "n_crashed": ("is_crashed", "sum"),
}
CI_COLUMNS = ("test_acc_ci_low", "test_acc_ci_high")
# Display columns of summary.md / index.html: header -> (metric, scale, number format); shown
# as mean [95% CI] where summary.csv has the interval, else mean ± std where it has the std,
# else the mean.
DISPLAY_COLUMNS = {
    "test acc (%) [95% CI]": ("test_acc", 100, ".1f"),
    "test loss ± std": ("test_loss", 1, ".3f"),
    "train acc (%) ± std": ("train_acc", 100, ".1f"),
    "samples/s": ("samples_per_sec", 1, ".0f"),
    "flip (%)": ("test_flip_rate", 100, ".1f"),
    "min values/stat": ("min_values_per_stat", 1, ".0f"),
}
COUNT_COLUMNS = ("n", "n_error", "n_diverged", "n_oom", "n_crashed")
SHOWN_IF_ANY = ("n_oom", "n_crashed")  # display tables leave these out when every count is 0
SUMMARY_NOTE = (
    "Test accuracy in percent as mean [95% t-interval] over seeds (ok runs only; no interval "
    "for one seed); n = ok seeds. Per-seed values are in runs.csv. flip = test predictions that "
    "change when the test set is reshuffled into other batches; min values/stat = fewest values "
    "any norm statistic averages over (1 = degenerate)."
)
# panel order of within-run comparisons: as the test modes list them
COMPARISON_ORDER = {
    f"{mode.name} {other}": index
    for index, (mode, other) in enumerate(
        (mode, other) for mode in TEST_MODES.values() for other in mode.compare_with
    )
}
NO_VALUE_LABEL = "no result (error/diverged/oom)"
BASELINE_LABEL = "seed-to-seed baseline"
SHARED_LABEL = " (one model per seed,\nat every value)"  # legend: no batch statistics
SHARED_NOTE = "Repeated at every value: {norms} (no batch statistics; one model per seed)."
NO_RUNNING_STATS_NOTE = "Not drawn: {norms} (no batch statistics: every test mode is the same)."

PAGE_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 90em; }
table { border-collapse: collapse; font-size: 90%; margin-bottom: 1em; }
th, td { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: left; }
img { max-width: 100%; }
.warning { border: 2px solid #c00; background: #fee; padding: 0.5em 1em; font-weight: bold; }
.rule { color: #555; font-size: 90%; }
"""


def load_runs(csv_path: Path) -> pd.DataFrame:
    """Read a sweep's runs table: text columns stay text, empty cells become NaN, eval- and
    precise-mode rows get test_batch ``eval``/``precise``, and failed rows without a test setting
    are spread over all settings. Rows are as stored (see :func:`bnstudy.findings.along_axis`)."""
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
    """Add the optional columns a table may lack and label the test batch of rows of modes
    evaluated once (eval, precise, adabn) with their mode."""
    defaults = {"test_batch": np.nan, "error": "", "error_at": "", "seed": np.nan}
    defaults |= dict.fromkeys((*METRICS, *DIAGNOSTICS), np.nan)
    df = df.assign(**{col: value for col, value in defaults.items() if col not in df.columns})
    once = [name for name, mode in TEST_MODES.items() if not mode.per_test_batch]
    df["test_batch"] = df["test_batch"].mask(df["test_mode"].isin(once), df["test_mode"])
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
    """Grouping factors: norm, the batch axis, test_mode, test_batch, then the other factors
    (:func:`bnstudy.findings.other_factors`)."""
    return ["norm", batch_axis(df), *SETTING_COLUMNS, *other_factors(df)]


def _ok_only(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the OK_ONLY columns blanked (NaN) on rows whose status is not ok."""
    ok = df["status"].eq(OK)
    return df.assign(**{col: df[col].where(ok) for col in OK_ONLY})


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per factor group on the batch axis: mean, std and 95% t-interval (``test_acc_ci_low``,
    ``test_acc_ci_high``) over seeds of test_acc; mean and std of test_loss and train_acc; the
    mean of samples_per_sec and the DIAGNOSTICS (ok rows only, except the PRE_TRAINING
    diagnostics, which count failed runs too); n (ok seeds with a test accuracy), and n_error /
    n_diverged / n_oom / n_crashed (failed seeds). Groups where every seed failed are kept with
    n = 0."""
    df = along_axis(df)
    factors = factor_columns(df)
    data = _ok_only(df).assign(
        is_error=df["status"].eq(ERROR),
        is_diverged=df["status"].eq(DIVERGED),
        is_oom=df["status"].eq(OOM),
        is_crashed=df["status"].eq(CRASHED),
    )
    summary = data.groupby(factors, dropna=False).agg(**SUMMARY_STATS).reset_index()
    half = t_half_width(summary["test_acc_std"], summary["n"])
    at = summary.columns.get_loc("test_acc_std") + 1
    summary.insert(at, CI_COLUMNS[0], summary["test_acc_mean"] - half)
    summary.insert(at + 1, CI_COLUMNS[1], summary["test_acc_mean"] + half)
    return sort_by(summary, factors)


def _named(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """An interval table (mean, std, ci_low, ci_high) with those columns prefixed ``<name>_``."""
    return table.rename(
        columns={col: f"{name}_{col}" for col in ("mean", "std", "ci_low", "ci_high")}
    )


def _seed_stats(frame: pd.DataFrame, column: str, keys: list[str]) -> pd.DataFrame:
    """Per ``keys`` group: ``<column>_mean``, ``_std``, ``_ci_low``, ``_ci_high`` and ``n``
    (non-NaN values) over the rows (seeds) of ``frame``, sorted by ``keys``."""
    return sort_by(_named(interval_table(frame, column, keys), column), keys)


def _mean_pm_std(mean: float, std: float, scale: float, fmt: str) -> str:
    """``mean ± std`` scaled and formatted; just the mean when std is NaN, blank when both are."""
    if pd.isna(mean):
        return ""
    if pd.isna(std):
        return f"{mean * scale:{fmt}}"
    return f"{mean * scale:{fmt}} ± {std * scale:{fmt}}"


def _mean_ci(mean: float, low: float, high: float, scale: float, fmt: str) -> str:
    """``mean [low, high]`` scaled and formatted; just the mean without an interval, blank
    without a mean."""
    if pd.isna(mean):
        return ""
    if pd.isna(low):
        return f"{mean * scale:{fmt}}"
    return f"{mean * scale:{fmt}} [{low * scale:{fmt}}, {high * scale:{fmt}}]"


def _display(summary: pd.DataFrame, metric: str, scale: float, fmt: str) -> list[str]:
    """One display string per row of ``summary`` for ``metric`` (see DISPLAY_COLUMNS)."""
    means = summary[f"{metric}_mean"]
    if f"{metric}_ci_low" in summary.columns:
        bounds = zip(means, summary[f"{metric}_ci_low"], summary[f"{metric}_ci_high"], strict=True)
        return [_mean_ci(m, lo, hi, scale, fmt) for m, lo, hi in bounds]
    stds = summary.get(f"{metric}_std", pd.Series(np.nan, index=summary.index))
    return [_mean_pm_std(m, s, scale, fmt) for m, s in zip(means, stds, strict=True)]


def format_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Display version of :func:`summarize`: factor columns, DISPLAY_COLUMNS (test accuracy as
    ``mean [low, high]`` in percent with 1 decimal, loss and train accuracy as mean ± std,
    samples/s rounded, flip rate in percent, values per statistic rounded), then the counts."""
    hidden = {*SUMMARY_STATS, *CI_COLUMNS}
    table = summary[[col for col in summary.columns if col not in hidden]].copy()
    for header, (metric, scale, fmt) in DISPLAY_COLUMNS.items():
        table[header] = _display(summary, metric, scale, fmt)
    for col in COUNT_COLUMNS:
        if col not in SHOWN_IF_ANY or summary[col].any():
            table[col] = summary[col]
    return table


def _markdown_table(table: pd.DataFrame) -> str:
    """GitHub-flavoured markdown table of ``table``, NaN as blank and pipes escaped."""
    rows = [list(table.columns), *table.astype(object).fillna("").to_numpy().tolist()]
    lines = ["| " + " | ".join(str(v).replace("|", r"\|") for v in row) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * len(table.columns))
    return "\n".join(lines) + "\n"


def mode_differences(df: pd.DataFrame) -> pd.DataFrame:
    """Paired test-mode differences (:func:`bnstudy.findings.mode_pairs`) of the batch-statistic
    norms: per series, axis value and comparison, ``diff_mean``, ``diff_std``,
    ``diff_ci_low``, ``diff_ci_high`` (pp) and ``n`` runs, sorted."""
    keys = [*series_columns(df), batch_axis(df)]
    comparison = ["comparison", "first_mode", "second_mode", "test_batch"]
    table = comparison_table(mode_pairs(df), [*keys, *comparison]).drop(columns=[FIRST, SECOND])
    return sort_by(_named(table, "diff"), keys)


def compute_gap(df: pd.DataFrame) -> pd.DataFrame:
    """Eval-mode minus train-mode test accuracy in percentage points, paired per run for each
    train-mode test_batch, of the norms that use batch statistics: gap_mean, gap_std,
    gap_ci_low, gap_ci_high and n (runs) per norm (and other factors), axis value and
    test_batch. Positive means running statistics beat batch statistics."""
    table = mode_differences(df)
    gap = table[table["first_mode"].eq(EVAL) & table["second_mode"].eq(TRAIN)]
    gap = gap.drop(columns=["comparison", "first_mode", "second_mode"])
    return gap.rename(columns=lambda col: col.replace("diff_", "gap_")).reset_index(drop=True)


def compute_flip_rate(df: pd.DataFrame) -> pd.DataFrame:
    """Train-mode flip rate in percent of the norms that use batch statistics: flip_mean,
    flip_std, flip_ci_low, flip_ci_high and n over ok seeds per norm (and other factors), axis
    value and test_batch; n = 0 where every seed failed."""
    df = along_axis(df)
    train = _ok_only(df)[df["test_mode"].eq(TRAIN) & df["norm"].map(uses_batch_stats)]
    keys = [*series_columns(df), batch_axis(df), "test_batch"]
    return _seed_stats(train.assign(flip=100 * train["test_flip_rate"]), "flip", keys)


def _run_stats(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """A per-run diagnostic's mean, std, t-interval and n over seeds per norm (and other
    factors) and axis value, one value per run (ok rows only unless PRE_TRAINING); series never
    measured are left out (e.g. batch-statistic noise of group norm)."""
    df = along_axis(df)
    series, axis = series_columns(df), batch_axis(df)
    runs = _ok_only(df).groupby(["run_id", axis])[[*series, column]].first().reset_index()
    stats = _seed_stats(runs, column, [*series, axis])
    measured = stats.groupby(series_labels(stats, series))["n"].transform("sum") > 0
    return stats[measured].reset_index(drop=True)


def paired_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every paired difference behind the findings, one row per pair: the test-mode comparisons
    of each run, each batch-statistic norm against each control at the same seed, then each
    norm against BN at its largest batch
    (``comparison``, series columns, axis value, seed, run_id or control, ``first``,
    ``second``, ``difference`` in pp)."""
    keys = [*series_columns(df), batch_axis(df)]
    frames = (mode_pairs(df), control_pairs(df), recovery_pairs(df))
    pairs = [frame for frame in frames if not frame.empty]
    if not pairs:
        return pd.DataFrame(columns=["comparison", *keys, "seed", FIRST, SECOND, DIFFERENCE])
    table = pd.concat(pairs, ignore_index=True)
    front = ["comparison", *keys, "seed", *(c for c in ("run_id", "control") if c in table)]
    return table[[*front, FIRST, SECOND, DIFFERENCE]]


def failure_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per failed (error, diverged or oom) run with the FAILURE_COLUMNS the table has,
    sorted by norm, batch size and seed."""
    failed = df[df["status"].isin(FAILURES)].drop_duplicates("run_id")
    columns = [col for col in FAILURE_COLUMNS if col in failed.columns]
    return sort_by(failed[columns], ["norm", "batch_size", "seed"])


def setting_label(test_mode: str, test_batch: str, axis: str = BATCH_SIZE) -> str:
    """Human-readable name of a test setting, used as panel title."""
    mode = TEST_MODES.get(test_mode)
    if mode is None or not mode.per_test_batch:
        return f"{test_mode} mode ({mode.description if mode else 'unknown'})"
    return f"{test_mode} mode ({mode.description}, {test_batch_label(test_batch, axis)})"


def _colors(labels: Iterable[str]) -> dict[str, str]:
    """A colour-cycle colour per distinct label, in order of first appearance."""
    return {label: f"C{i % 10}" for i, label in enumerate(dict.fromkeys(labels))}


def _series_colors(df: pd.DataFrame) -> dict[str, str]:
    """A colour per norm (and other factors) of the whole table, in sorted order, so a norm has
    the same colour in every figure."""
    df = along_axis(df)
    columns = series_columns(df)
    series = sort_by(df[columns].drop_duplicates(), columns)
    return _colors(series_labels(series, columns))


def _figure_with_panels(n: int, sharey: bool = True) -> tuple[Figure, list[Axes]]:
    """A constrained-layout figure with ``n`` panels, PANELS_PER_ROW a row."""
    ncols = min(n, PANELS_PER_ROW)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.2 * ncols + 2.5, 3.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=sharey, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def _title(ax: Axes, text: str) -> None:
    """Panel title wrapped at TITLE_WIDTH characters, so it stays over its panel."""
    ax.set_title(textwrap.fill(text, TITLE_WIDTH), fontsize="medium")


def _ticks(frame: pd.DataFrame, axis: str) -> list[int]:
    """The distinct values of column ``axis`` of ``frame``, ascending."""
    return sorted(int(v) for v in frame[axis].dropna().unique())


def _log2_axis(ax: Axes, values: list[int], axis: str) -> None:
    """Log2 x axis labelled with the batch axis, ticks exactly at its values, same limits per
    panel."""
    ax.set_xscale("log", base=2)
    ax.set_xlim(values[0] / 1.4, values[-1] * 1.4)
    ax.set_xticks(values, labels=[str(int(v)) for v in values])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(AXIS_LABELS[axis])
    ax.grid(alpha=0.3)


def _band(ax: Axes, rows: pd.DataFrame, x: str, column: str, color: str, linestyle: str) -> None:
    """Line of ``rows[<column>_mean]`` vs ``rows[x]`` with a shaded band and a bar at each point
    from ``<column>_ci_low`` to ``<column>_ci_high`` (clipped to BAND_LIMITS; none where NaN)."""
    lowest, highest = BAND_LIMITS.get(column, NONNEGATIVE)
    low = rows[f"{column}_ci_low"].clip(lowest, highest)
    high = rows[f"{column}_ci_high"].clip(lowest, highest)
    ax.plot(rows[x], rows[f"{column}_mean"], marker="o", color=color, linestyle=linestyle)
    ax.fill_between(rows[x], low, high, color=color, alpha=0.2, linewidth=0)
    ax.vlines(rows[x], low, high, color=color, alpha=0.5)  # visible where a neighbour has none


def _draw_lines(
    ax: Axes,
    stats: pd.DataFrame,
    x: str,
    column: str,
    by: pd.Series,
    colors: dict[str, str],
    linestyle: str = "-",
) -> bool:
    """One line per value of ``by`` (labels aligned with ``stats`` from :func:`_seed_stats`):
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


def _line_handles(colors: dict[str, str], df: pd.DataFrame) -> list[Line2D]:
    """Legend entries for coloured lines, one per series label; a norm without batch statistics
    in a normalization-batch study is marked as drawn from one model per seed."""
    shared = batch_axis(df) == NORM_BATCH_SIZE
    return [
        Line2D([], [], color=color, marker="o", label=label + SHARED_LABEL)
        if shared and not uses_batch_stats(label.split(",")[0])
        else Line2D([], [], color=color, marker="o", label=label)
        for label, color in colors.items()
    ]


def _legend(fig: Figure, handles: list[Line2D], failed: bool) -> None:
    """The figure legend: ``handles``, and an entry for the 'x' of :func:`_mark_failures` if
    ``failed``."""
    if failed:
        handles = [
            *handles,
            Line2D([], [], color="0.3", marker="x", linestyle="none", label=NO_VALUE_LABEL),
        ]
    fig.legend(handles=handles, loc="outside right center")


def plot_accuracy_vs_batch_size(df: pd.DataFrame, num_classes: int | None = None) -> Figure:
    """Test accuracy (%) along the batch axis: one panel per test setting, one line per norm
    (and other factors) with the mean over seeds and its 95% t-interval band, an 'x' at the
    bottom of the panel where no seed produced a result, and a dashed chance line at
    100 / num_classes if num_classes is given."""
    summary = summarize(df)
    if summary.empty:
        raise ValueError("the runs table has no rows to plot")
    summary = summary.assign(
        **{f"acc_{s}": 100 * summary[f"test_acc_{s}"] for s in ("mean", "ci_low", "ci_high")}
    )
    axis = batch_axis(df)
    labels = series_labels(summary, series_columns(df))
    colors = _series_colors(df)
    settings = sort_by(summary[list(SETTING_COLUMNS)].drop_duplicates().dropna(), ["test_batch"])
    fig, axes = _figure_with_panels(len(settings))
    for ax, (mode, batch) in zip(axes, settings.itertuples(index=False), strict=True):
        panel = summary["test_mode"].eq(mode) & summary["test_batch"].eq(batch)
        _draw_lines(ax, summary[panel], axis, "acc", labels[panel], colors)
        if num_classes:
            ax.axhline(100 / num_classes, color="0.5", linestyle="--", linewidth=1)
        _log2_axis(ax, _ticks(summary, axis), axis)
        _title(ax, setting_label(mode, batch, axis))
        ax.set_ylabel("test accuracy (%)")
    handles = _line_handles(colors, df)
    if num_classes:
        handles.append(Line2D([], [], color="0.5", linestyle="--", label="chance"))
    _legend(fig, handles, summary["n"].eq(0).any())
    return fig


def _per_panel_figure(
    table: pd.DataFrame, df: pd.DataFrame, column: str, panels: pd.Series, ylabel: str
) -> Figure:
    """One panel per distinct value of ``panels`` (labels aligned with ``table``, in order of
    appearance), one line per norm (and other factors) coloured as in every figure:
    ``column``'s mean and band along the batch axis."""
    labels = series_labels(table, series_columns(df))
    colors = _series_colors(df)
    axis = batch_axis(df)
    names = list(dict.fromkeys(panels))
    fig, axes = _figure_with_panels(len(names))
    for ax, name in zip(axes, names, strict=True):
        rows = panels.eq(name)
        _draw_lines(ax, table[rows], axis, column, labels[rows], colors)
        _log2_axis(ax, _ticks(table, axis), axis)
        _title(ax, name)
        ax.set_ylabel(ylabel)
    return fig


def _comparison_rank(table: pd.DataFrame) -> pd.Series:
    """Panel order of test-mode comparisons (:data:`COMPARISON_ORDER`), each by train-mode test
    batch."""
    pair = (table["first_mode"] + " " + table["second_mode"]).map(COMPARISON_ORDER)
    return pair * 1000 + table["test_batch"].map(test_batch_rank).clip(upper=999)


def plot_test_mode_gap(df: pd.DataFrame) -> Figure:
    """Paired test-mode differences (pp) along the batch axis for the norms that use batch
    statistics: one panel per comparison (eval − train per train-mode test batch, then
    precise − eval and precise − train where measured), one line per norm with the mean over
    runs and its 95% t-interval band, and a zero line. Raises ValueError if no run has both
    eval- and train-mode results."""
    table = mode_differences(df)
    if not (table["first_mode"].eq(EVAL) & table["second_mode"].eq(TRAIN)).any():
        raise ValueError("no run has both eval-mode and train-mode test accuracy")
    table = table.assign(rank=_comparison_rank(table)).sort_values("rank", kind="stable")
    fig = _per_panel_figure(table, df, "diff", table["comparison"], "difference (pp)")
    for ax in fig.axes:
        ax.axhline(0, color="0.3", linewidth=1)
    _legend(fig, _drawn_handles(table, df), table["n"].eq(0).any())
    fig.suptitle(
        "Test-mode differences (positive = the first setting is better)", fontsize="medium"
    )
    return fig


def _drawn_handles(table: pd.DataFrame, df: pd.DataFrame) -> list[Line2D]:
    """Legend entries for the series of ``table``, in the colours of every figure."""
    colors = _series_colors(df)
    return _line_handles({k: colors[k] for k in series_labels(table, series_columns(df))}, df)


def plot_flip_rate(df: pd.DataFrame, baseline: pd.DataFrame | None = None) -> Figure:
    """Train-mode flip rate (% of test predictions that change when the test set is reshuffled
    into other batches) along the batch axis for the norms that use batch statistics: one panel
    per train-mode test batch, one line per norm with the mean over seeds and its t-interval
    band, an 'x' where no seed has a value, and the seed-to-seed ``baseline``
    (:func:`bnstudy.findings.flip_baseline`) dotted if given. Raises ValueError if no
    train-mode row of such a norm has a flip rate."""
    reason = _flip_skip_reason(df)
    if reason:
        raise ValueError(reason)
    axis = batch_axis(df)
    table = compute_flip_rate(df)
    table = table.sort_values("test_batch", key=lambda b: b.map(test_batch_rank), kind="stable")
    panels = pd.Series([setting_label(TRAIN, b, axis) for b in table["test_batch"]], table.index)
    fig = _per_panel_figure(table, df, "flip", panels, "predictions flipped (%)")
    handles = _drawn_handles(table, df)
    if baseline is not None and not baseline.empty:
        _draw_baseline(fig.axes, baseline, df)
        handles.append(Line2D([], [], color="0.3", linestyle=":", marker="D", label=BASELINE_LABEL))
    _legend(fig, handles, table["n"].eq(0).any())
    fig.suptitle("Train-mode flip rate when test batches are reshuffled", fontsize="medium")
    return fig


def _draw_baseline(axes: list[Axes], baseline: pd.DataFrame, df: pd.DataFrame) -> None:
    """The seed-to-seed baseline of the batch-statistic norms, dotted, on the panel of its
    test batch (panels in test-batch order)."""
    columns, axis = series_columns(df), batch_axis(df)
    keys = [*columns, axis, "test_batch"]
    baseline = (
        baseline[baseline["norm"].map(uses_batch_stats)]
        .groupby(keys, as_index=False)[BASELINE]
        .mean()
    )
    baseline = sort_by(baseline, [*columns, axis])
    colors = _series_colors(df)
    batches = sorted(baseline["test_batch"].unique(), key=test_batch_rank)
    for ax, test_batch in zip(axes, batches, strict=False):
        panel = baseline[baseline["test_batch"].eq(test_batch)]
        for label, rows in panel.groupby(series_labels(panel, columns), sort=False):
            ax.plot(rows[axis], rows[BASELINE], color=colors[label], linestyle=":", marker="D")


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
        labels = series_labels(stats, series_columns(df))
        style = "--" if column.startswith(INIT_PREFIX) else "-"
        marked |= _draw_lines(ax, stats, batch_axis(df), column, labels, colors, style)
        drawn |= not stats.empty
        if column in LOG_Y_COLUMNS:
            ax.set_yscale("log", base=2)
            ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    if not drawn:
        ax.text(0.5, 0.5, "not measured for these norms", ha="center", transform=ax.transAxes)
    return marked


def _run_level_figure(df: pd.DataFrame, panels: dict[str, tuple[str, ...]], title: str) -> Figure:
    """One panel per entry of ``panels`` (title -> per-run diagnostic columns): per norm (and
    other factors) the mean over seeds along the batch axis with its t-interval band, init_*
    columns dashed, an 'x' where no seed has a value. Raises ValueError if none is measured."""
    reason = _unmeasured_reason(df, _panel_columns(panels))
    if reason:
        raise ValueError(reason)
    colors = _series_colors(df)
    axis = batch_axis(df)
    fig, axes = _figure_with_panels(len(panels), sharey=False)
    marked = False
    for ax, (name, columns) in zip(axes, panels.items(), strict=True):
        marked |= _draw_run_panel(ax, df, columns, colors)
        _log2_axis(ax, _ticks(along_axis(df), axis), axis)
        _title(ax, name)
        ax.set_ylabel(name)
    handles = _line_handles(colors, df)
    if any(col.startswith(INIT_PREFIX) for col in _panel_columns(panels)):
        handles += [
            Line2D([], [], color="0.3", linestyle="--", label="at initialization"),
            Line2D([], [], color="0.3", label="after training"),
        ]
    _legend(fig, handles, marked)
    fig.suptitle(title, fontsize="medium")
    return fig


def plot_output_collapse(df: pd.DataFrame) -> Figure:
    """Output collapse on a fixed train-mode probe batch of the normalization batch size: panels of
    the output std and of the fraction of outputs exactly 0 along the batch axis, per norm at
    initialization (dashed) and after training (solid). Raises ValueError if not measured."""
    return _run_level_figure(df, COLLAPSE_PANELS, "Output collapse on a probe batch (train mode)")


def plot_batch_statistics(df: pd.DataFrame) -> Figure:
    """Batch statistics along the batch axis: the fewest values any norm statistic averages
    over (log y), and the noise of BN batch means and variances across training batches, per
    norm that has them. Raises ValueError if none is measured."""
    return _run_level_figure(df, BATCH_STATS_PANELS, "What the norm statistics average over")


def plot_noise_law(df: pd.DataFrame) -> Figure:
    """Noise of BN batch means along the batch axis, log-log, one panel: per norm that uses
    batch statistics, the measured bn_mean_noise (solid, mean and t-interval band over seeds)
    and the means of its two predictions (between-image variation dashed, values law dotted).
    Raises ValueError if none is measured."""
    reason = _unmeasured_reason(df, list(NOISE_COLUMNS[1:]))
    if reason:
        raise ValueError(reason)
    colors = _series_colors(df)
    fig, (ax,) = _figure_with_panels(1)
    axis = batch_axis(df)
    for column, (style, _) in NOISE_LINES.items():
        stats = _run_stats(df, column)
        labels = series_labels(stats, series_columns(df))
        _draw_lines(ax, stats, axis, column, labels, colors, style)
    _log2_axis(ax, _ticks(along_axis(df), axis), axis)
    ax.set_yscale("log")
    ax.set_ylabel("std of batch means / population std")
    handles = _drawn_handles(_run_stats(df, NOISE_COLUMNS[0]), df)
    handles += [Line2D([], [], color="0.3", linestyle=s, label=t) for s, t in NOISE_LINES.values()]
    _legend(fig, handles, False)
    fig.suptitle("Noise of BN batch means: measured vs predicted", fontsize="medium")
    return fig


def plot_recovery(df: pd.DataFrame) -> Figure:
    """One panel along the batch axis: per norm, eval-mode accuracy minus BN's at its largest
    axis value (:func:`bnstudy.findings.recovery_table`), mean and t-interval over seeds: a
    line with a band for norms with batch statistics; a dashed level with its interval as a
    bar at the right margin for those trained once per seed (a band across the panel would hide
    the others). Raises ValueError when there is nothing to compare (no BN runs, or no other
    norm)."""
    table = recovery_table(df)
    if table.empty:
        raise ValueError("no recovery to plot: " + recovery_skip(df))
    axis, series = batch_axis(df), series_columns(df)
    values = _ticks(along_axis(df), axis)
    table = table.rename(columns={k: f"recovery_{k}" for k in ("mean", "ci_low", "ci_high")})
    shared = table[axis].isna()
    colors = _series_colors(df)
    fig, (ax,) = _figure_with_panels(1)
    varying = table[~shared]
    for label, line in varying.groupby(series_labels(varying, series), sort=False):
        _band(ax, line, axis, "recovery", colors[label], "-")
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
    _log2_axis(ax, values, axis)
    ax.set_xlim(values[0] / 1.4, (margin[-1] if len(flat) else values[-1]) * 1.2)
    ax.set_ylabel(f"accuracy − {recovery_reference(df)} (pp)")
    _legend(fig, _drawn_handles(table, df), False)
    fig.suptitle("Recovery of BN's large-batch accuracy (eval mode)", fontsize="medium")
    return fig


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


def _recovery_reason(df: pd.DataFrame) -> str | None:
    return None if not recovery_table(df).empty else recovery_skip(df)


def _gap_skip_reason(df: pd.DataFrame) -> str | None:
    """Why the test-mode gap plot cannot be drawn, or None if it can."""
    if compute_gap(df).empty:
        return _train_mode_reason(df) or "no run has both eval-mode and train-mode results yet"
    return None


def _unmeasured_reason(df: pd.DataFrame, columns: list[str]) -> str | None:
    """Why a plot of ``columns`` cannot be drawn (none in the table, or no value), or None."""
    present = [col for col in columns if col in df.columns]
    if present and df[present].notna().to_numpy().any():
        return None
    return f"the runs table has no values of {', '.join(columns)} (e.g. a sweep from before them)"


def _flip_skip_reason(df: pd.DataFrame) -> str | None:
    """Why the flip-rate plot cannot be drawn, or None if it can."""
    train = df[df["test_mode"].eq(TRAIN) & df["norm"].map(uses_batch_stats)]
    return _train_mode_reason(df) or _unmeasured_reason(train, ["test_flip_rate"])


def _write_plots(df: pd.DataFrame, out: Path, baseline: pd.DataFrame) -> dict[str, str | None]:
    """Save the plots into ``out``; map each PNG name to None, or to why it was skipped (then a
    stale PNG from an earlier report is removed)."""
    reasons = {
        RECOVERY_PNG: _recovery_reason(df),
        ACCURACY_PNG: "the runs table has no rows yet" if df.empty else None,
        GAP_PNG: _gap_skip_reason(df),
        COLLAPSE_PNG: _unmeasured_reason(df, _panel_columns(COLLAPSE_PANELS)),
        BATCH_STATS_PNG: _unmeasured_reason(df, _panel_columns(BATCH_STATS_PANELS)),
        NOISE_PNG: _unmeasured_reason(df, list(NOISE_COLUMNS[1:])),
        FLIP_PNG: _flip_skip_reason(df),
    }
    makers = {
        RECOVERY_PNG: lambda: plot_recovery(df),
        ACCURACY_PNG: lambda: plot_accuracy_vs_batch_size(df, _num_classes(df)),
        GAP_PNG: lambda: plot_test_mode_gap(df),
        COLLAPSE_PNG: lambda: plot_output_collapse(df),
        BATCH_STATS_PNG: lambda: plot_batch_statistics(df),
        NOISE_PNG: lambda: plot_noise_law(df),
        FLIP_PNG: lambda: plot_flip_rate(df, baseline),
    }
    for png, reason in reasons.items():
        if reason is None:
            save_figure(makers[png](), out / png)
        else:
            (out / png).unlink(missing_ok=True)
    return reasons


def _caption_notes(df: pd.DataFrame) -> dict[str, str]:
    """Extra caption sentences per plot: which norms the train-mode plots leave out, and which
    norms are repeated at every normalization batch size."""
    controls = [n for n in ordered_norms(df["norm"].dropna()) if not uses_batch_stats(n)]
    notes = {}
    if controls:
        left_out = NO_RUNNING_STATS_NOTE.format(norms=", ".join(controls))
        notes = {GAP_PNG: left_out, FLIP_PNG: left_out}
    if controls and batch_axis(df) == NORM_BATCH_SIZE:
        notes[ACCURACY_PNG] = SHARED_NOTE.format(norms=", ".join(controls))
    return notes


def _sweep_name(df: pd.DataFrame, sweep_dir: Path) -> str:
    """The sweep name(s) recorded in the table, else the folder name."""
    names = df["name"].dropna().unique() if "name" in df.columns else []
    return ", ".join(names) or sweep_dir.name


def _html_table(table: pd.DataFrame, css_class: str) -> str:
    """``table`` as escaped HTML without index."""
    return table.to_html(index=False, border=0, classes=css_class, na_rep="", escape=True)


def _plots_html(plots: dict[str, str | None], notes: dict[str, str]) -> list[str]:
    """One section per plot: heading and caption (with its note), then the image or a note
    saying why it was skipped."""
    parts = []
    for png, reason in plots.items():
        heading, caption = (html.escape(text) for text in PLOT_CAPTIONS[png])
        note = html.escape(notes.get(png, ""))
        parts += [f"<h2>{heading}</h2>", f"<p>{caption} {note}</p>"]
        if reason is None:
            parts.append(f'<img src="{png}" alt="{heading}">')
        else:
            parts.append(f"<p>Plot skipped: {html.escape(reason)}.</p>")
    return parts


def _findings_html(groups: list[FindingGroup]) -> list[str]:
    """The findings as HTML: per group a heading, its rule, and a list of findings with the
    verdict in bold, the notes, or why the group is empty."""
    parts = [
        "<h2>Findings</h2>",
        f'<p>Also as <a href="{FINDINGS_MD}">{FINDINGS_MD}</a>; every paired difference is in '
        f'<a href="{PAIRED_CSV}">{PAIRED_CSV}</a>.</p>',
    ]
    for group in groups:
        parts += [f"<h3>{html.escape(group.title)}</h3>"]
        parts += [f'<p class="rule">{html.escape(group.rule)}</p>']
        if group.skipped:
            parts.append(f"<p>Skipped: {html.escape(group.skipped)}.</p>")
            continue
        items = (
            f"<li>{html.escape(f.describe())} → <strong>{html.escape(f.verdict)}</strong></li>"
            for f in group.findings
        )
        parts += ["<ul>", *items, "</ul>"]
        parts += [f"<p><em>{html.escape(note)}</em></p>" for note in group.notes]
    return parts


def _html_page(
    title: str,
    df: pd.DataFrame,
    groups: list[FindingGroup],
    table: pd.DataFrame,
    plots: dict[str, str | None],
) -> str:
    """The self-contained index.html: the controls-drift warning if any, what was run, the
    findings, the summary ``table``, plots and failed runs."""
    failures = failure_table(df)
    warning = drift_warning(groups)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{PAGE_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if warning:
        parts.append(f'<div class="warning">Warning — {html.escape(warning)}</div>')
    parts += [
        f"<p><strong>What was run:</strong> {html.escape(what_was_run(df))}</p>",
        *_findings_html(groups),
        "<h2>Summary</h2>",
        f"<p>{html.escape(SUMMARY_NOTE)} "
        f'Also as <a href="{SUMMARY_CSV}">{SUMMARY_CSV}</a> (with more diagnostics) and '
        f'<a href="{SUMMARY_MD}">{SUMMARY_MD}</a>.</p>',
        _html_table(table, "summary"),
        *_plots_html(plots, _caption_notes(df)),
    ]
    if not failures.empty:
        parts += ["<h2>Failed runs</h2>", _html_table(failures, "failures")]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(sweep_dir: Path) -> Path:
    """Write ``sweep_dir/report/`` (findings.md, paired.csv, summary.csv, summary.md, plots,
    index.html) from ``sweep_dir/runs.csv`` and the runs' stored predictions, and return the
    report folder. Works on partial sweeps."""
    sweep_dir = Path(sweep_dir)
    df = load_runs(sweep_dir / RUNS_CSV)
    out = sweep_dir / REPORT_DIR
    out.mkdir(exist_ok=True)
    name = _sweep_name(df, sweep_dir)
    baseline = flip_baseline(df, lambda run_id: store.read_predictions(sweep_dir, run_id))
    groups = build_findings(df, baseline)
    (out / FINDINGS_MD).write_text(
        findings_markdown(f"bnstudy findings: {name}", what_was_run(df), groups), encoding="utf-8"
    )
    paired_table(df).to_csv(out / PAIRED_CSV, index=False, float_format=CSV_FLOATS)
    summary = summarize(df)
    summary.to_csv(out / SUMMARY_CSV, index=False)
    table = format_summary(summary)
    (out / SUMMARY_MD).write_text(
        f"# bnstudy report: {name}\n\n{SUMMARY_NOTE}\n\n" + _markdown_table(table),
        encoding="utf-8",
    )
    plots = _write_plots(df, out, baseline)
    page = _html_page(f"bnstudy report: {name}", df, groups, table, plots)
    (out / INDEX_HTML).write_text(page, encoding="utf-8")
    return out
