"""Turn a sweep's tidy ``runs.csv`` and run folders into a report: what was run, findings,
tables, figures, one HTML page; and compare studies on one page.

:func:`write_report` writes ``results/<name>/report/``::

    index.html                  one page, offline (no scripts, no external files): what is
                                missing, the answer (primary claims, where BN breaks, the best
                                alternative) beside the headline figure, what was run (data,
                                model, training, testing, budget, machine and software), every
                                finding folded by group with raw and adjusted p-values, the
                                accuracy pivot table, the other figures, and the full summary
                                table and failed runs at the bottom
    findings.md                 planned against present runs, what was run, the answer, how the
                                intervals and verdicts are computed, and one line per finding
                                with its numbers, 95% interval, n, raw and adjusted p-values,
                                verdict and key (bnstudy.findings)
    paired.csv                  every paired difference behind the findings, one row per pair
    summary.csv                 per cell: n, mean, std, 95% bootstrap interval (seeds and test
                                images), median and seeds at chance of the test accuracy (a
                                fraction), means of the other metrics and diagnostics, counts
    summary.md                  the accuracy pivot table, then the summary table, accuracies in
                                percent as mean [low, high]
    *.png                       the figures of bnstudy.plots (FIGURES lists them)

:func:`write_comparison` writes one page that overlays several studies along their batch axes.

The batch axis is ``norm_batch_size`` or ``batch_size`` (:func:`bnstudy.findings.batch_axis`);
a norm without batch statistics in a normalization-batch study is shown at every axis value from
its one model per seed. A figure whose measurements the runs table lacks is skipped, and the page
says why. Works on partial sweeps and on a runs table without run folders (then the page says
less about what was run and has no learning curves).
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure
from pydantic import ValidationError

from bnstudy import plots, store
from bnstudy.analysis_config import AnalysisConfig
from bnstudy.findings import (
    AXIS_LABELS,
    CONTRADICTED,
    CONTROLS_TITLE,
    DRIFT,
    EQUIVALENT,
    EVAL,
    FLAT,
    NORM_BATCH_SIZE,
    PRECISE,
    SETTING_COLUMNS,
    SUPPORTED,
    TRAIN,
    Finding,
    FindingGroup,
    along_axis,
    answer,
    at_chance,
    batch_axis,
    batch_stat_mask,
    build_findings,
    chance_level,
    control_pairs,
    count_text,
    design_text,
    drift_warning,
    environments,
    findings_markdown,
    flip_baseline,
    measured,
    method_text,
    mode_pairs,
    ordered_norms,
    other_factors,
    recovery_pairs,
    series_columns,
    series_labels,
    setting_name,
    setting_names,
    shared_norms,
    sort_by,
    training_budget,
    uses_batch_stats,
)
from bnstudy.resampling import Resampler, arms_of
from bnstudy.results import DIVERGED, ERROR, FAILURES, OK, TEST_MODES, counts_text
from bnstudy.stats import DIFFERENCE, FIRST, SECOND, Bootstrap

RUNS_CSV = "runs.csv"
STUDY_YAML = "study.yaml"
REPORT_DIR = "report"
FINDINGS_MD = "findings.md"
PAIRED_CSV = "paired.csv"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
INDEX_HTML = "index.html"
ACCURACY_PNG = "accuracy_vs_batch_size.png"
RECOVERY_PNG = "recovery.png"
LEARNING_PNG = "learning_curves.png"
GAP_PNG = "test_mode_gap.png"
FLIP_PNG = "flip_rate.png"
COLLAPSE_PNG = "output_collapse.png"
BATCH_STATS_PNG = "batch_statistics.png"
NOISE_PNG = "noise_law.png"
HEADLINE = ACCURACY_PNG  # the figure the page shows right after the findings
BAND = "the mean over seeds with its 95% t-interval as a band (none for one seed)"
BOOTSTRAP_BAND = (
    "the mean over seeds with its 95% interval as a band (the findings' bootstrap over seeds "
    "and test images; none for one seed)"
)


class FigureInputs(NamedTuple):
    """What the figures are drawn from: the runs table, the runs' histories
    (:func:`history_table`), the flip-rate baseline (:func:`bnstudy.findings.flip_baseline`)
    and the resampler of the findings' intervals."""

    df: pd.DataFrame
    history: pd.DataFrame
    baseline: pd.DataFrame
    resampler: Resampler | None = None


class ReportFigure(NamedTuple):
    """A figure of the page: its heading, its caption saying what is measured, and the call
    that draws it (raising :class:`bnstudy.plots.NothingToPlot` with the reason it cannot)."""

    heading: str
    caption: str
    draw: Callable[[FigureInputs], Figure]


# PNG -> its heading, caption (what is measured) and drawing, in page order.
FIGURES = {
    ACCURACY_PNG: ReportFigure(
        "Test accuracy along the batch axis",
        f"Test accuracy per test setting, {BOOTSTRAP_BAND}; dashed grey: chance (100 / number of "
        "classes, where the runs table records it); x = no seed produced a result.",
        lambda i: plots.plot_accuracy_vs_batch_size(i.df, i.resampler),
    ),
    RECOVERY_PNG: ReportFigure(
        "Recovery of BN's large-batch accuracy",
        "Per norm, eval-mode test accuracy minus BN's at its largest batch, paired by seed, in "
        f"percentage points, {BOOTSTRAP_BAND}. Norms with batch statistics vary along the "
        "axis; the others, trained once per seed, are dashed levels with their interval as a "
        "bar at the right margin. 0 (black): the reference.",
        lambda i: plots.plot_recovery(i.df, i.resampler),
    ),
    LEARNING_PNG: ReportFigure(
        "Learning curves",
        "Training loss and accuracy averaged over each epoch's training batches (the model in "
        "train mode), plotted at the optimizer step that ends the epoch, one panel per value of "
        f"the batch axis, {BAND}. From each ok run's history.jsonl.",
        lambda i: plots.plot_learning_curves(i.history, i.df),
    ),
    GAP_PNG: ReportFigure(
        "Test-mode differences, paired per run",
        "Per run, test accuracy in one test setting minus another (eval − train per train-mode "
        "test batch; precise − eval where measured) in percentage points, "
        f"{BOOTSTRAP_BAND}; positive = the first setting is better.",
        lambda i: plots.plot_test_mode_gap(i.df, i.resampler),
    ),
    FLIP_PNG: ReportFigure(
        "Train-mode flip rate",
        "Percentage of test predictions in train mode (batch statistics) that change when the "
        "test set is reshuffled into different batches (mean over reshuffles), per test batch "
        f"setting, {BAND}; "
        "dotted: the seed-to-seed baseline (predictions of the same setting that differ between "
        "two seeds), where predictions were stored.",
        lambda i: plots.plot_flip_rate(i.df, i.baseline),
    ),
    COLLAPSE_PNG: ReportFigure(
        "Output collapse",
        "On a fixed probe batch of the normalization batch size in train mode: the std of the "
        "model outputs and the fraction of outputs exactly 0, at initialization (dashed) and "
        f"after training (solid), {BAND}; x = no value (run failed, or the forward raised).",
        lambda i: plots.plot_output_collapse(i.df),
    ),
    BATCH_STATS_PNG: ReportFigure(
        "Batch statistics",
        "The fewest values any norm statistic of the network averages over, and, after "
        "training, the std across batches of the normalization batch size (1024 training "
        "samples) of the per-channel batch mean (relative to the population std) and batch "
        "variance (relative to the population variance), averaged over channels and BN layers; "
        f"{BAND}.",
        lambda i: plots.plot_batch_statistics(i.df),
    ),
    NOISE_PNG: ReportFigure(
        "Noise of BN batch means: measured and predicted",
        "Std across training batches of the per-channel batch mean relative to the population "
        f"std (solid, {BAND}); predicted from between-image variation (std of per-image channel "
        "means / population std / √images per batch; dashed) and by the values law "
        "(1/√values per statistic; dotted); log-log.",
        lambda i: plots.plot_noise_law(i.df),
    ),
}
CSV_FLOATS = "%.6g"  # paired.csv: enough digits for pp differences, no float noise

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
FAILURE_COLUMNS = ("run_id", "norm", "batch_size", "norm_batch_size", "seed", "status")
FAILURE_COLUMNS += ("error_at", "error")

# Column registry of summary.csv: output column -> (input column, aggregation); the bootstrap
# interval test_acc_ci_low / test_acc_ci_high, test_acc_median and n_at_chance follow
# test_acc_std.
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
    **{f"n_{failure}": (f"is_{failure}", "sum") for failure in FAILURES},
}
CI_COLUMNS = ("test_acc_ci_low", "test_acc_ci_high")
SPREAD_COLUMNS = ("test_acc_median", "n_at_chance")  # bimodal seeds: the median, how many failed
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
COUNT_COLUMNS = ("n", *(f"n_{failure}" for failure in FAILURES))
# display tables leave these out when every count is 0 (as bnstudy.results.counts_text does)
SHOWN_IF_ANY = tuple(f"n_{failure}" for failure in FAILURES if failure not in (ERROR, DIVERGED))
BUDGET_KEYS = ("train.steps", "train.samples")  # set, either replaces train.epochs
SUMMARY_NOTE = (
    "Test accuracy in percent as mean [95% bootstrap interval over seeds and test images] (ok "
    "runs only; no interval for one seed; where some seeds are stuck at chance, how many and "
    "the median); n = ok seeds. Per-seed values are in runs.csv (accuracies there are "
    "fractions). flip = test predictions that change when the test set is reshuffled into "
    "other batches; min values/stat = fewest values any norm statistic averages over (1 = "
    "degenerate)."
)
PIVOT_NOTE = (
    "Test accuracy in %, mean [95% bootstrap interval over seeds and test images] over n = {n} "
    "seeds per cell (n given where it is fewer; no interval for one seed; seeds stuck at chance "
    "counted, with the median). Norms without running statistics compute the same in "
    "every test mode: one column each."
)
PIVOT_HEADING = "Test accuracy by batch size, norm and test mode"
NO_OK_RUNS_NOTE = "No ok runs: no test accuracy to show."  # the pivot's note instead
SAME_MODEL = "same model"  # pivot cell of a norm trained once per seed, after its first row
NO_RESULT = "no result"
SHARED_NOTE = "Repeated at every value: {norms} (no batch statistics; one model per seed)."
NO_RUNNING_STATS_NOTE = (
    "Not drawn: {norms} (no running statistics: every test mode computes the same, so the "
    "differences are 0 by construction)."
)
CONSTANT_NOTE = "Not drawn, the same in every run: {panels}."
VERDICT_CLASSES = {  # verdict prefix -> CSS class of its cell
    SUPPORTED: "yes",
    CONTRADICTED: "no",
    DRIFT: "bad",
    FLAT: "yes",
    EQUIVALENT: "yes",
}

PAGE_STYLE = """
body { font-family: system-ui, sans-serif; font-size: 16px; line-height: 1.4; margin: 1em auto;
       padding: 0 1em; max-width: 76em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.3em; }
h2 { font-size: 1.3em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.3em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9em; margin-bottom: 0.8em; }
th, td { padding: 3px 8px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td { white-space: nowrap; }
td.text, .setup td, .findings td { white-space: normal; }
table.findings { width: 100%; table-layout: fixed; }
table.setup { width: 100%; }
.setup th:first-child { width: 10em; background: none; }
.detail, .rule, figcaption, .note { color: #555; font-size: 0.9em; }
.verdict { font-weight: bold; }
.yes { color: #1a7f37; } .no { color: #9a3412; } .bad { color: #c00; } .open { color: #666; }
img { max-width: 100%; height: auto; }
figure { margin: 0.5em 0 1.5em; }
.warning { border: 2px solid #c00; background: #fee; padding: 0.5em 1em; font-weight: bold; }
details { margin: 0.3em 0 1em; }
.answer { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.answer .claims { flex: 1 1 26em; } .answer .headline { flex: 1 1 34em; }
.answer li { margin-bottom: 0.4em; }
.completeness { border: 2px solid #b45309; background: #fff7ed; padding: 0.5em 1em; }
summary { cursor: pointer; color: #333; }
@media (max-width: 900px) { table { font-size: 0.8em; } th, td { padding: 2px 4px; } }
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


# ---------------------------------------------------------------------------------------------
# Tables.


def summarize(df: pd.DataFrame, resampler: Resampler | None = None) -> pd.DataFrame:
    """Per factor group on the batch axis: mean, std and 95% bootstrap interval over seeds and
    test images (``test_acc_ci_low``, ``test_acc_ci_high``; :mod:`bnstudy.resampling`, seeds
    only without stored predictions) of test_acc, its median and ``n_at_chance`` (seeds stuck
    at chance); mean and std of test_loss and train_acc; the mean of samples_per_sec and the
    DIAGNOSTICS (ok rows only, except the diagnostics measured before training, which count
    failed runs too); n (ok seeds with a test accuracy), and n_<outcome> (failed seeds) per
    outcome of bnstudy.results.FAILURES. Groups where every seed failed are kept with n = 0."""
    df = along_axis(df)
    factors = factor_columns(df)
    data = df.assign(
        **{col: measured(df, col) for col in (*METRICS, *DIAGNOSTICS)},
        **{f"is_{failure}": df["status"].eq(failure) for failure in FAILURES},
    )
    summary = data.groupby(factors, dropna=False).agg(**SUMMARY_STATS).reset_index()
    intervals = _accuracy_intervals(data, factors, resampler or Resampler(None), chance_level(df))
    at = summary.columns.get_loc("test_acc_std") + 1
    for offset, column in enumerate((*CI_COLUMNS, *SPREAD_COLUMNS)):
        summary.insert(at + offset, column, intervals[column].to_numpy())
    return sort_by(summary, factors)


def _accuracy_intervals(
    data: pd.DataFrame, factors: list[str], resampler: Resampler, chance: float
) -> pd.DataFrame:
    """Per factor group (in groupby order): the bootstrap interval of test_acc (fractions), its
    median, and the seeds within AT_CHANCE_MARGIN of ``chance`` (percent)."""
    rows = []
    for cell, group in data.groupby(factors, dropna=False):
        ok = group[group["test_acc"].notna()]
        values = 100 * ok["test_acc"]
        arms = arms_of(ok)
        key = "summary|" + "|".join(map(str, cell if isinstance(cell, tuple) else (cell,)))
        estimate = resampler.level(key, arms, values.tolist())
        rows.append(
            (
                estimate.low / 100,
                estimate.high / 100,
                values.median() / 100,
                at_chance(values, chance),
            )
        )
    return pd.DataFrame(rows, columns=[*CI_COLUMNS, *SPREAD_COLUMNS])


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
    hidden = {*SUMMARY_STATS, *CI_COLUMNS, *SPREAD_COLUMNS}
    table = summary[[col for col in summary.columns if col not in hidden]].copy()
    for header, (metric, scale, fmt) in DISPLAY_COLUMNS.items():
        table[header] = _display(summary, metric, scale, fmt)
    table["test acc (%) [95% CI]"] += [_bimodal_text(row) for _, row in summary.iterrows()]
    for col in COUNT_COLUMNS:
        if col not in SHOWN_IF_ANY or summary[col].any():
            table[col] = summary[col]
    return table


def _pivot_cell(row: pd.Series, n: int) -> str:
    """A pivot cell: accuracy in percent as mean [low, high], with its n if fewer than ``n``,
    and the seeds at chance with the median where some seeds are and others are not."""
    if row["n"] == 0:
        return NO_RESULT
    text = _mean_ci(row["test_acc_mean"], *row[list(CI_COLUMNS)], 100, ".1f")
    text += f" (n = {int(row['n'])})" if row["n"] < n else ""
    return text + _bimodal_text(row)


def _bimodal_text(row: pd.Series) -> str:
    """`` — 2 of 5 seeds at chance, median 97.1``: where a cell's seeds are bimodal."""
    failed = int(row.get("n_at_chance", 0) or 0)
    if not 0 < failed < row["n"]:
        return ""
    return (
        f" — {failed} of {int(row['n'])} seeds at chance, median {100 * row['test_acc_median']:.1f}"
    )


def _pivot_columns(summary: pd.DataFrame, df: pd.DataFrame) -> pd.Series:
    """The pivot column of each summary row: ``<norm>, <test setting>`` for norms with running
    statistics, the norm alone for the others (whose eval-mode row stands for every mode)."""
    axis = batch_axis(df)
    labels = series_labels(summary, series_columns(df))
    settings = [setting_name(m, b, axis) for m, b in summary[list(SETTING_COLUMNS)].values]
    uses = batch_stat_mask(summary)
    return labels.where(~uses, labels + ", " + pd.Series(settings, index=summary.index))


def accuracy_pivot(summary: pd.DataFrame, df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Test accuracy by batch-axis value (rows) and norm × test setting (columns), cells as
    :func:`_pivot_cell`; a norm without running statistics gets one column (eval mode), and a
    norm trained once per seed in a normalization-batch study shows its value in the first row
    and SAME_MODEL below. Returns the table and the n most cells have."""
    axis = batch_axis(df)
    rows = summary[batch_stat_mask(summary) | summary["test_mode"].eq(EVAL)]
    rows = rows.assign(column=_pivot_columns(rows, df))
    n = int(rows["n"].max()) if len(rows) else 0
    cells = rows.assign(cell=[_pivot_cell(row, n) for _, row in rows.iterrows()])
    table = cells.pivot(index=axis, columns="column", values="cell")
    table = table[list(dict.fromkeys(cells["column"]))].sort_index()
    if axis == NORM_BATCH_SIZE:  # a shared norm's columns: one per value of the other factors
        shared = cells.loc[cells["norm"].isin(shared_norms(df)), "column"]
        table.iloc[1:, table.columns.get_indexer(shared.unique())] = SAME_MODEL
    table.columns.name = None
    return table.rename_axis(AXIS_LABELS[axis]).reset_index(), n


def _pivot_note(n: int) -> str:
    """The note of the accuracy pivot table whose cells have ``n`` seeds at most."""
    return PIVOT_NOTE.format(n=n) if n else NO_OK_RUNS_NOTE


def _markdown_table(table: pd.DataFrame) -> str:
    """GitHub-flavoured markdown table of ``table``, NaN as blank and pipes escaped."""
    rows = [list(table.columns), *table.astype(object).fillna("").to_numpy().tolist()]
    lines = ["| " + " | ".join(str(v).replace("|", r"\|") for v in row) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * len(table.columns))
    return "\n".join(lines) + "\n"


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
    """One row per failed run (an outcome of bnstudy.results.FAILURES) with the FAILURE_COLUMNS
    the table has, sorted by norm, batch size and seed."""
    failed = df[df["status"].isin(FAILURES)].drop_duplicates("run_id")
    columns = [col for col in FAILURE_COLUMNS if col in failed.columns]
    return sort_by(failed[columns], ["norm", "batch_size", "seed"])


# ---------------------------------------------------------------------------------------------
# Run folders: configs, provenance, learning curves.


def run_settings(sweep_dir: Path, df: pd.DataFrame) -> pd.DataFrame:
    """One row per run of ``df`` whose folder has a config.json: ``run_id``, the resolved config
    flattened to dotted keys (``train.lr``) and the provenance of its result.json
    (``provenance.python``, ...); lists as ``a/b/c``. Empty without run folders."""
    rows = []
    for run_id in df["run_id"].unique():
        folder = store.run_dir(sweep_dir, run_id)
        if not (folder / store.CONFIG).is_file():
            continue
        record = json.loads((folder / store.CONFIG).read_text())
        result = store.read_result(sweep_dir, run_id)  # None when missing or damaged
        if result is not None:
            record["provenance"] = result["provenance"]
        rows.append({"run_id": run_id, **record})
    flat = pd.json_normalize(rows) if rows else pd.DataFrame(columns=["run_id"])
    return flat.map(lambda v: "/".join(map(str, v)) if isinstance(v, list) else v)


def history_table(sweep_dir: Path, df: pd.DataFrame) -> pd.DataFrame:
    """One row per epoch of each ok run that has a history.jsonl: the run's columns of the runs
    table (not its test columns), the history's fields (epoch, steps, train_loss, train_acc,
    ...) and ``step``, the optimizer steps done by the epoch's end. Empty if no run has one."""
    runs = df[df["status"].eq(OK)].drop_duplicates("run_id")
    frames = []
    for run_id in runs["run_id"]:
        path = store.run_dir(sweep_dir, run_id) / store.HISTORY
        if path.is_file() and path.stat().st_size:
            frames.append(pd.read_json(path, lines=True).assign(run_id=run_id))
    if not frames:
        return pd.DataFrame()
    history = pd.concat(frames, ignore_index=True)
    history["step"] = history.groupby("run_id")["steps"].cumsum()
    shared = [col for col in runs.columns if col not in history.columns or col == "run_id"]
    return runs[shared].merge(history, on="run_id")


def _number_text(value: object) -> str:
    """A config value as text: integers without a decimal point, floats in ``g`` format."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _values(frame: pd.DataFrame, key: str) -> str:
    """The distinct non-null values of column ``key`` (a config key or a runs-table column), as
    text, in ascending order, comma-separated; empty if there are none."""
    if key not in frame.columns:
        return ""
    values = frame[key].dropna()
    values = values.sort_values() if values.map(type).nunique() == 1 else values
    return ", ".join(dict.fromkeys(_number_text(v) for v in values))


def _parts(*parts: tuple[str, str]) -> str:
    """``template.format(value)`` for each (template, value) with a value, comma-separated."""
    return ", ".join(template.format(value) for template, value in parts if value)


def _data_setup(settings: pd.DataFrame, df: pd.DataFrame) -> str:
    """Data: the data set, its sizes, classes, image size, augmentation and intensity step."""
    details = _parts(
        ("{} training samples", _values(settings, "data.train_size")),
        ("{} test samples", _values(settings, "data.test_size")),
        ("{} classes", _values(df, "num_classes")),
        ("image size {}", _values(settings, "data.image_size")),
        ("augmentation {}", _unless(_values(settings, "data.augment"), "none")),
        ("intensity {}", _unless(_values(settings, "data.intensity"), "none")),
    )
    name = _values(settings, "data.name") or _values(df, "dataset")
    return f"{name}: {details}" if details else name


def _norm_options(settings: pd.DataFrame, norm: str) -> str:
    """A norm's options from the ``model.<norm>.*`` keys of its runs, ``key value`` each."""
    prefix = f"model.{norm}."
    runs = settings[settings["model.norm"].eq(norm)] if "model.norm" in settings else settings
    keys = [col for col in runs.columns if col.startswith(prefix)]
    options = _parts(*((f"{key[len(prefix) :]} {{}}", _values(runs, key)) for key in keys))
    return f"{norm} ({options})" if options else norm


def _model_setup(settings: pd.DataFrame, df: pd.DataFrame) -> str:
    """Model: its name, widths and each norm with its options; empty without runs."""
    norms = "; ".join(_norm_options(settings, n) for n in ordered_norms(df["norm"].dropna()))
    name = _values(settings, "model.name") or _values(df, "model")
    widths = _values(settings, "model.widths")
    return _clauses(name + (f", widths {widths}" if widths else ""), norms and f"norms: {norms}")


def _unless(text: str, *blank: str) -> str:
    """``text``, or empty if it is one of ``blank`` (a setting at its "off" value)."""
    return "" if text in blank else text


def _schedule(settings: pd.DataFrame) -> str:
    """The lr schedule: peak lr, scaling, schedule, warm-up."""
    base = _values(settings, "train.base_batch_size")
    return _parts(
        ("peak lr {}", _values(settings, "train.lr")),
        ("{} scaling from batch " + base, _unless(_values(settings, "train.lr_scaling"), "none")),
        ("{} schedule", _values(settings, "train.schedule")),
        ("warm-up over {} of the steps", _unless(_values(settings, "train.warmup_fraction"), "0")),
        ("warm-up {} steps", _unless(_values(settings, "train.warmup_steps"), "0")),
    )


def _clauses(*texts: str) -> str:
    """The non-empty ``texts`` joined with semicolons."""
    return "; ".join(text for text in texts if text)


def _training_setup(settings: pd.DataFrame, df: pd.DataFrame) -> str:
    """Training: batch, accumulation, optimizer with momentum and weight decay, lr schedule,
    the length of training and the numerics."""
    accumulate = _unless(_values(settings, "train.accumulate"), "1")
    return _clauses(
        _parts(
            ("{} samples per batch", _values(settings, "train.batch_size")),
            ("{} batches per optimizer step", accumulate),
            ("BN statistics over {} samples", _values(df, NORM_BATCH_SIZE)),
        ),
        _parts(
            ("{}", _values(settings, "train.optimizer")),
            ("momentum {}", _values(settings, "train.momentum")),
            ("weight decay {}", _values(settings, "train.weight_decay")),
        ),
        _schedule(settings),
        _parts(
            ("{}", _budget(settings)),
            ("{}", _values(settings, "train.precision")),
        ),
    )


def _budget(settings: pd.DataFrame) -> str:
    """The length of training of the runs (:func:`bnstudy.findings.training_budget`): the
    distinct amounts per unit, e.g. ``40 steps`` or ``1, 2 epochs``; empty without configs."""
    if "train.epochs" not in settings:
        return ""
    settings = settings.dropna(subset=["train.epochs"])
    unset = pd.Series(np.nan, index=settings.index)
    keys = (settings["train.epochs"], *(settings.get(k, unset) for k in BUDGET_KEYS))
    budgets = pd.DataFrame(
        [training_budget(*run) for run in zip(*keys, strict=True)], columns=["amount", "unit"]
    )
    return ", ".join(
        count_text(_values(runs, "amount"), unit)
        for unit, runs in budgets.groupby("unit", sort=False)
    )


def _testing_setup(settings: pd.DataFrame, df: pd.DataFrame) -> str:
    """Testing: the test settings, and how precise statistics and flip rates are measured
    (where those modes were tested)."""
    modes = set(df["test_mode"].dropna())
    return _parts(
        ("{}", ", ".join(setting_names(df))),
        (
            "precise statistics from {} training samples",
            _values(settings, "eval.precise_samples") if PRECISE in modes else "",
        ),
        (
            "train-mode flip rate over {} reshuffles of the test set",
            _values(settings, "eval.flip_reshuffles") if TRAIN in modes else "",
        ),
    )


def _minutes(seconds: float) -> str:
    """A duration: in s (one decimal below 10 s) below two minutes, else in min with one
    decimal."""
    if seconds < 120:
        return f"{seconds:.{1 if seconds < 10 else 0}f} s"
    return f"{seconds / 60:.1f} min"


def _budget_setup(settings: pd.DataFrame, df: pd.DataFrame) -> str:
    """Budget: optimizer steps and training time per ok run, and the time of all runs."""
    runs = df[df["status"].eq(OK)].drop_duplicates("run_id")
    seconds = runs["train_seconds"].mean() if "train_seconds" in runs else np.nan
    parts = [
        ("{} optimizer steps per run", _values(runs, "steps")),
        ("{} of training per run (mean)", "" if pd.isna(seconds) else _minutes(seconds)),
    ]
    if {"provenance.started", "provenance.seconds"} <= set(settings.columns):
        started, took = settings["provenance.started"], settings["provenance.seconds"]
        parts += [
            ("{} for all runs with their tests", _minutes(took.sum())),
            (
                "{} from the first start to the last end",
                _minutes((started + took).max() - started.min()),
            ),
        ]
    return _parts(*parts)


def _commit(settings: pd.DataFrame) -> str:
    """The bnstudy commit(s) the runs computed with, shortened to 10 hex digits."""
    if "provenance.bnstudy_commit" not in settings:
        return ""
    commits = (
        settings["provenance.bnstudy_commit"]
        .dropna()
        .str.replace(r"^([0-9a-f]{10})[0-9a-f]*", r"\1", regex=True)
    )
    return ", ".join(dict.fromkeys(commits))


def _machine_setup(settings: pd.DataFrame, df: pd.DataFrame) -> str:
    """Machine and software: each environment with its run count, then Python, torchvision,
    threads per run and the bnstudy commit."""
    machines = "; ".join(
        f"{label}, {count} run{'s' * (count != 1)}" for label, count in environments(df)
    )
    software = _parts(
        ("Python {}", _values(settings, "provenance.python")),
        ("torchvision {}", _values(settings, "provenance.torchvision")),
        ("CPU threads per run: {}", _values(settings, "provenance.threads")),
        ("bnstudy commit {}", _commit(settings)),
    )
    return _clauses(machines, software)


SETUP_ROWS: dict[str, Callable[[pd.DataFrame, pd.DataFrame], str]] = {
    "Design": lambda settings, df: design_text(df),
    "Data": _data_setup,
    "Model": _model_setup,
    "Training": _training_setup,
    "Testing": _testing_setup,
    "Budget": _budget_setup,
    "Machine and software": _machine_setup,
}


def setup_rows(sweep_dir: Path, df: pd.DataFrame) -> dict[str, str]:
    """What was run, one line per SETUP_ROWS entry (heading -> text), from the runs table and
    the runs' config.json and result.json (:func:`run_settings`); entries with nothing to say
    are left out."""
    settings = run_settings(sweep_dir, df)
    rows = {heading: describe(settings, df) for heading, describe in SETUP_ROWS.items()}
    return {heading: text for heading, text in rows.items() if text}


# ---------------------------------------------------------------------------------------------
# Figures.


def _write_figures(draws: dict[str, Callable[[], Figure]], out: Path) -> dict[str, str | None]:
    """Draw each figure (PNG name -> the call drawing it) and save it into ``out``; map each PNG
    name to None, or to why it was skipped (then a stale PNG from an earlier report is
    removed)."""
    reasons: dict[str, str | None] = {}
    for png, draw in draws.items():
        try:
            plots.save_figure(draw(), out / png)
            reasons[png] = None
        except plots.NothingToPlot as reason:
            (out / png).unlink(missing_ok=True)
            reasons[png] = str(reason)
    return reasons


def _caption_notes(df: pd.DataFrame) -> dict[str, str]:
    """Extra caption sentences per figure: the norms the test-mode figures leave out, the norms
    repeated at every normalization batch size, and the diagnostics left out as constant."""
    controls = [n for n in ordered_norms(df["norm"].dropna()) if not uses_batch_stats(n)]
    notes = {}
    if controls:
        left_out = NO_RUNNING_STATS_NOTE.format(norms=", ".join(controls))
        notes = {GAP_PNG: left_out, FLIP_PNG: left_out}
    if controls and batch_axis(df) == NORM_BATCH_SIZE:
        shared = SHARED_NOTE.format(norms=", ".join(controls))
        notes |= {ACCURACY_PNG: shared, LEARNING_PNG: shared}
    for png, panels in (
        (COLLAPSE_PNG, plots.COLLAPSE_PANELS),
        (BATCH_STATS_PNG, plots.BATCH_STATS_PANELS),
    ):
        constant = plots.constant_panels(df, panels)
        if constant:
            text = ", ".join(f"{name} ({value:g})" for name, value in constant.items())
            notes[png] = CONSTANT_NOTE.format(panels=text)
    return notes


# ---------------------------------------------------------------------------------------------
# The page.


def _sweep_name(df: pd.DataFrame, sweep_dir: Path) -> str:
    """The sweep name(s) recorded in the table, else the folder name."""
    names = df["name"].dropna().unique() if "name" in df.columns else []
    return ", ".join(names) or sweep_dir.name


def _html_table(table: pd.DataFrame, css_class: str) -> str:
    """``table`` as escaped HTML without index, in a box that scrolls sideways when narrow."""
    inner = table.to_html(index=False, border=0, classes=css_class, na_rep="", escape=True)
    return f'<div class="scroll">{inner}</div>'


def _page(title: str, body: list[str]) -> str:
    """A self-contained HTML page: ``title`` and the ``body`` parts, the style inline."""
    head = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{PAGE_STYLE}</style></head><body>"
    )
    return "\n".join([head, f"<h1>{html.escape(title)}</h1>", *body, "</body></html>"]) + "\n"


def _verdict_class(verdict: str) -> str:
    """The CSS class of a verdict (VERDICT_CLASSES by prefix; ``open`` if unresolved)."""
    return next((c for v, c in VERDICT_CLASSES.items() if verdict.startswith(v)), "open")


FINDINGS_HEAD = (
    '<colgroup><col style="width: 16%"><col style="width: 38%"><col style="width: 16%">'
    '<col style="width: 4%"><col style="width: 12%"><col style="width: 14%"></colgroup>'
    "<tr><th>where</th><th>claim</th><th>estimate [95% CI]</th><th>n</th>"
    "<th>p (adjusted)</th><th>verdict</th></tr>"
)


def _finding_row(finding: Finding) -> str:
    """A finding as a table row: where, the claim with its measure and numbers below it, the
    estimate with its interval, n, raw and adjusted p-values, and the verdict coloured by its
    class (primary claims marked)."""
    detail = "; ".join(part for part in (finding.measure, finding.detail, finding.key) if part)
    verdict = _verdict_class(finding.verdict)
    primary = " <b>primary</b>" if finding.primary else ""
    return (
        f"<tr><td>{html.escape(finding.subject)}{primary}</td><td>{html.escape(finding.claim)}"
        f' <span class="detail">({html.escape(detail)})</span></td>'
        f"<td>{html.escape(finding.interval())}</td><td>{finding.n}</td>"
        f'<td class="detail">{html.escape(finding.pvalues())}</td>'
        f'<td class="verdict {verdict}">{html.escape(finding.verdict)}</td></tr>'
    )


def _group_html(group: FindingGroup, open_: bool = False) -> list[str]:
    """A finding group, folded: its title and verdict tally as the summary, then a table of
    its findings and its notes."""
    return [
        f"<details{' open' if open_ else ''}><summary><b>{html.escape(group.title)}</b> — "
        f"{html.escape(_verdict_tally([group]))}</summary>",
        f'<table class="findings">{FINDINGS_HEAD}',
        *map(_finding_row, group.findings),
        "</table>",
        *(f'<p class="note">{html.escape(note)}</p>' for note in group.notes),
        "</details>",
    ]


def _verdict_tally(groups: list[FindingGroup]) -> str:
    """``N findings: a supported, flat or equivalent, b contradicted, ...``."""
    counts = Counter(_verdict_class(f.verdict) for g in groups for f in g.findings)
    parts = [
        f"{counts['yes']} supported, flat or equivalent",
        f"{counts['no']} contradicted",
        *([f"{counts['bad']} drifting"] if counts["bad"] else []),
        f"{counts['open']} not resolved, not testable or not applicable",
    ]
    return f"{counts.total()} findings: {', '.join(parts)}."


def _answer_html(groups: list[FindingGroup], figure: list[str]) -> list[str]:
    """The answer first: the primary claims and where BN breaks and what to use instead
    (:func:`bnstudy.findings.answer`), beside the headline ``figure``."""
    lines = answer(groups) or ["No primary claim and no BN recovery to report (see Findings)."]
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return [
        '<section id="answer"><h2>The answer</h2><div class="answer">',
        f'<div class="claims"><ul>{items}</ul></div><div class="headline">',
        *figure,
        "</div></div></section>",
    ]


def _findings_html(groups: list[FindingGroup], method: str) -> list[str]:
    """The findings: a tally of the verdicts and how they are decided, then each group folded
    (the controls check first, open when a control drifts), a line naming the groups with
    nothing to test and why, and the rules folded away."""
    tested = sorted((g for g in groups if not g.skipped), key=lambda g: g.title != CONTROLS_TITLE)
    skipped = "; ".join(f"{g.title} ({g.skipped})" for g in groups if g.skipped)
    rules = (f"<dt>{html.escape(g.title)}</dt><dd>{html.escape(g.rule)}</dd>" for g in tested)
    parts = [
        '<section id="findings"><h2>All findings</h2>',
        f"<p>{html.escape(_verdict_tally(tested))} Also as "
        f'<a href="{FINDINGS_MD}">{FINDINGS_MD}</a>; every paired difference is in '
        f'<a href="{PAIRED_CSV}">{PAIRED_CSV}</a>.</p>',
        f'<p class="note">{html.escape(method)}</p>',
    ]
    for group in tested:
        parts += _group_html(group, open_=any(f.verdict == DRIFT for f in group.findings))
    if skipped:
        parts.append(f'<p class="note">Nothing to test: {html.escape(skipped)}.</p>')
    parts += ['<details><summary>How each verdict is decided</summary><dl class="rule">', *rules]
    return [*parts, "</dl></details></section>"]


def _figure_html(png: str, heading: str, caption: str, reason: str | None = None) -> list[str]:
    """One figure as a section named after its PNG: heading, image (or why it was skipped,
    ``reason``) and caption."""
    parts = [f'<section id="{png.removesuffix(".png")}"><h2>{html.escape(heading)}</h2>']
    if reason is None:
        parts.append(f'<figure><img src="{png}" alt="{html.escape(heading)}">')
        parts.append(f"<figcaption>{html.escape(caption)}</figcaption>")
        return [*parts, "</figure></section>"]
    parts.append(f"<p>{html.escape(caption)}</p>")
    return [*parts, f"<p>Plot skipped: {html.escape(reason)}.</p></section>"]


def _report_figure_html(png: str, reason: str | None, note: str) -> list[str]:
    """A figure of FIGURES (:func:`_figure_html`), its caption followed by ``note``."""
    heading, caption, _ = FIGURES[png]
    return _figure_html(png, heading, f"{caption} {note}".strip(), reason)


def _pivot_html(
    pivot: pd.DataFrame, n: int, heading: str = PIVOT_HEADING, section_id: str = "pivot"
) -> list[str]:
    """The accuracy pivot table (:func:`accuracy_pivot`) with its heading and note, as a
    section with id ``section_id``."""
    return [
        f'<section id="{section_id}"><h2>{html.escape(heading)}</h2>',
        f"<p>{html.escape(_pivot_note(n))}</p>",
        _html_table(pivot, "pivot"),
        "</section>",
    ]


def _tables_html(table: pd.DataFrame, failures: pd.DataFrame) -> list[str]:
    """The full summary table, folded away, and the failed runs."""
    parts = [
        '<section id="summary"><h2>All cells</h2>',
        f'<p>{html.escape(SUMMARY_NOTE)} Also as <a href="{SUMMARY_CSV}">{SUMMARY_CSV}</a> '
        f'(with more diagnostics) and <a href="{SUMMARY_MD}">{SUMMARY_MD}</a>.</p>',
        f"<details><summary>The summary table ({len(table)} rows: every norm × batch × test "
        "setting)</summary>",
        _html_table(table, "summary"),
        "</details></section>",
    ]
    if not failures.empty:
        parts += ["<h2>Failed runs</h2>", _html_table(failures, "failures")]
    return parts


class PageParts(NamedTuple):
    """What index.html says besides the tables: what was run, the findings, how they were
    decided, whether the sweep is complete, and the figures written (PNG -> why skipped)."""

    setup: dict[str, str]
    groups: list[FindingGroup]
    method: str
    completeness: str
    figures: dict[str, str | None]


def _report_page(
    title: str,
    df: pd.DataFrame,
    parts: PageParts,
    pivot: tuple[pd.DataFrame, int],
    summary: pd.DataFrame,
) -> str:
    """index.html: the controls-drift warning if any, what is missing, the answer beside the
    headline figure, what was run, the findings folded by group, the ``pivot`` table with its
    n (:func:`accuracy_pivot`), the other figures, the ``summary`` table
    (:func:`format_summary`) and the failed runs."""
    groups, figures = parts.groups, parts.figures
    warning = drift_warning(groups)
    notes = _caption_notes(df)
    body = [f'<div class="warning">Warning — {html.escape(warning)}</div>'] if warning else []
    if parts.completeness:
        body.append(f'<p class="completeness">{html.escape(parts.completeness)}</p>')
    headline = _report_figure_html(HEADLINE, figures[HEADLINE], notes.get(HEADLINE, ""))
    body += _answer_html(groups, headline)
    body += [*_setups_html([], [parts.setup]), *_findings_html(groups, parts.method)]
    body += _pivot_html(*pivot)
    for png, reason in figures.items():
        if png != HEADLINE:
            body += _report_figure_html(png, reason, notes.get(png, ""))
    body += _tables_html(summary, failure_table(df))
    return _page(title, body)


def _setup_markdown(rows: dict[str, str]) -> str:
    """What was run as a markdown list (findings.md's introduction)."""
    return "\n".join(f"- **{heading}:** {text}" for heading, text in rows.items())


def study_analysis(sweep_dir: Path) -> AnalysisConfig:
    """The ``analysis`` section of the study as run (``study.yaml``), or the defaults when the
    sweep folder has none."""
    path = Path(sweep_dir) / STUDY_YAML
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    section = (raw or {}).get("analysis") or {}
    try:
        return AnalysisConfig.model_validate(section)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ValueError(f"{path}: analysis: {problems}") from None


def sweep_resampler(sweep_dir: Path, analysis: AnalysisConfig) -> Resampler:
    """The resampler of a sweep: its runs' stored test outputs, ``analysis``'s bootstrap and
    equivalence margin."""
    return Resampler(
        lambda run_id: store.read_test_outputs(sweep_dir, run_id),
        Bootstrap(analysis.bootstrap_resamples, analysis.bootstrap_seed),
        analysis.equivalence_margin,
    )


def completeness(sweep_dir: Path) -> str:
    """Planned against present runs, naming each planned run without a result (missing,
    damaged: what is wrong, or running) and each failed one; empty for a folder without a
    plan (a runs table alone) or a complete sweep without failures."""
    if not (Path(sweep_dir) / store.PLAN).is_file():
        return ""
    status = store.sweep_status(sweep_dir)
    planned = len(status.missing) + sum(status.counts.values())
    if not status.missing and not status.failures:
        return ""
    text = f"{sum(status.counts.values())} of {planned} planned runs have a result"
    text += f" ({counts_text(status.counts)})." if status.counts else "."
    for entry in status.missing:
        run_id = entry["run_id"]
        why = (
            f"damaged: {status.damaged[run_id]}"
            if run_id in status.damaged
            else "running"
            if run_id in status.running
            else "missing"
        )
        text += f" {run_id} ({_swept_text(entry)}): {why}."
    for entry in status.failures:
        text += f" {entry['run_id']} ({_swept_text(entry)}): {entry['status']}, {entry['error']}."
    return text


def _swept_text(entry: dict) -> str:
    """``model.norm=batch, seed=3``: a planned run's swept values."""
    return ", ".join(f"{key}={value}" for key, value in entry.get("swept", {}).items())


def write_report(sweep_dir: Path) -> Path:
    """Write ``sweep_dir/report/`` (index.html, findings.md, paired.csv, summary.csv,
    summary.md, figures) from ``sweep_dir/runs.csv`` and the run folders (configs, provenance,
    histories, stored predictions), and return the report folder. Works on partial sweeps."""
    sweep_dir = Path(sweep_dir)
    df = load_runs(sweep_dir / RUNS_CSV)
    out = sweep_dir / REPORT_DIR
    out.mkdir(exist_ok=True)
    name = _sweep_name(df, sweep_dir)
    title = f"bnstudy report: {name}"
    analysis = study_analysis(sweep_dir)
    resampler = sweep_resampler(sweep_dir, analysis)
    baseline = flip_baseline(df, lambda run_id: store.read_predictions(sweep_dir, run_id))
    groups = build_findings(df, baseline, resampler, analysis)
    setup, method, missing = (
        setup_rows(sweep_dir, df),
        method_text(analysis, groups),
        completeness(sweep_dir),
    )
    (out / FINDINGS_MD).write_text(
        findings_markdown(
            f"bnstudy findings: {name}", _setup_markdown(setup), groups, method, missing
        ),
        encoding="utf-8",
    )
    paired_table(df).to_csv(out / PAIRED_CSV, index=False, float_format=CSV_FLOATS)
    summary = summarize(df, resampler)
    summary.to_csv(out / SUMMARY_CSV, index=False)
    pivot, n = accuracy_pivot(summary, df)
    shown = format_summary(summary)
    (out / SUMMARY_MD).write_text(
        f"# {title}\n\n{_pivot_note(n)}\n\n{_markdown_table(pivot)}\n"
        f"{SUMMARY_NOTE}\n\n{_markdown_table(shown)}",
        encoding="utf-8",
    )
    inputs = FigureInputs(df, history_table(sweep_dir, df), baseline, resampler)
    figures = _write_figures({png: partial(f.draw, inputs) for png, f in FIGURES.items()}, out)
    parts = PageParts(setup, groups, method, missing, figures)
    page = _report_page(title, df, parts, (pivot, n), shown)
    (out / INDEX_HTML).write_text(page, encoding="utf-8")
    return out


# ---------------------------------------------------------------------------------------------
# Comparing studies.

COMPARISON = (  # heading and caption of the comparison's figure
    "Test accuracy",
    "Test accuracy per test setting of each study along its own batch axis: colour = norm (and "
    f"other factors), line style and marker = study; {BAND}; dashed grey: chance (100 / number "
    "of classes).",
)


def study_labels(sweep_dirs: list[Path], frames: list[pd.DataFrame]) -> list[str]:
    """A label per study: its name from the runs table; where names repeat (one study run on two
    machines), its folder relative to the folders' common parent; then a number if still equal."""
    names = [_sweep_name(df, Path(d)) for d, df in zip(sweep_dirs, frames, strict=True)]
    if len(set(names)) == len(names):
        return names
    paths = [Path(d).resolve() for d in sweep_dirs]
    common = Path(os.path.commonpath(paths))
    labels = [path.relative_to(common).as_posix() for path in paths]
    if len(set(labels)) == len(labels):
        return labels
    return [f"{name} #{index}" for index, name in enumerate(names, start=1)]


def _study_heading(label: str, sweep_dir: Path, out_dir: Path) -> str:
    """A study's label as HTML, linked (relative to ``out_dir``) to its report if it has one."""
    page = Path(sweep_dir) / REPORT_DIR / INDEX_HTML
    if not page.is_file():
        return html.escape(label)
    return f'<a href="{html.escape(os.path.relpath(page, out_dir))}">{html.escape(label)}</a>'


def _setups_html(headings: list[str], setups: list[dict[str, str]]) -> list[str]:
    """The "what was run" section: a row per setup heading and a cell per study (under its
    ``headings``, HTML; none for one study), or one cell across them where they all say the
    same."""
    rows = []
    for heading in dict.fromkeys(key for setup in setups for key in setup):
        texts = [html.escape(setup.get(heading, "")) for setup in setups]
        cells = (
            [f"<td{_span(len(texts))}>{texts[0]}</td>"]
            if len(set(texts)) == 1
            else [f"<td>{text}</td>" for text in texts]
        )
        rows.append(f"<tr><th>{html.escape(heading)}</th>{''.join(cells)}</tr>")
    head = ["<tr><th></th>" + "".join(f"<th>{h}</th>" for h in headings) + "</tr>"]
    return [
        '<section id="setup"><h2>What was run</h2><table class="setup">',
        *(head if headings else []),
        *rows,
        "</table></section>",
    ]


def _span(columns: int) -> str:
    """The colspan attribute of a cell across ``columns`` columns (none for one)."""
    return f' colspan="{columns}"' if columns > 1 else ""


def write_comparison(sweep_dirs: list[Path], out_dir: Path) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/accuracy_vs_batch_size.png`` comparing the
    studies in ``sweep_dirs`` (each a folder with a runs.csv; at least two): a table of the
    studies (what each ran, side by side, linked to their reports), their test accuracies overlaid
    along their batch axes (:func:`bnstudy.plots.plot_comparison`), and each study's accuracy
    pivot table. Returns ``out_dir``."""
    if len(sweep_dirs) < 2:
        raise ValueError(f"a comparison needs at least two studies, got {len(sweep_dirs)}")
    frames = [load_runs(Path(d) / RUNS_CSV) for d in sweep_dirs]
    labels = study_labels(sweep_dirs, frames)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    studies = dict(zip(labels, frames, strict=True))
    reasons = _write_figures({ACCURACY_PNG: lambda: plots.plot_comparison(studies)}, out_dir)
    headings = [_study_heading(*study, out_dir) for study in zip(labels, sweep_dirs, strict=True)]
    setups = [setup_rows(Path(d), df) for d, df in zip(sweep_dirs, frames, strict=True)]
    body = [*_setups_html(headings, setups)]
    body += _figure_html(ACCURACY_PNG, *COMPARISON, reasons[ACCURACY_PNG])
    for index, (label, df) in enumerate(zip(labels, frames, strict=True), start=1):
        body += _pivot_html(*accuracy_pivot(summarize(df), df), label, f"pivot-{index}")
    page = _page(f"bnstudy comparison: {', '.join(labels)}", body)
    (out_dir / INDEX_HTML).write_text(page, encoding="utf-8")
    return out_dir
