"""The report's tables: summary.csv (per cell: accuracy with its bootstrap interval, the other
metrics and diagnostics, counts of each outcome), its display version and the accuracy pivot
for summary.md and the page, paired.csv (every paired difference behind the findings) and the
failed runs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bnstudy.report.estimates import (
    at_chance,
    chance_level,
    control_pairs,
    level_estimate,
    mode_pairs,
)
from bnstudy.report.load import DIAGNOSTICS, METRICS
from bnstudy.report.recovery import recovery_pairs
from bnstudy.report.runs_table import (
    AXIS_LABELS,
    SETTING_COLUMNS,
    along_axis,
    batch_axis,
    batch_stat_mask,
    factor_columns,
    measured,
    series_columns,
    series_labels,
    setting_name,
    shared_norms,
    sort_by,
)
from bnstudy.resampling import Resampler
from bnstudy.results import (
    BATCH_SIZE,
    DIVERGED,
    ERROR,
    ERROR_AT,
    ERROR_MESSAGE,
    EVAL,
    FAILURES,
    MIN_VALUES_PER_STAT,
    NORM,
    NORM_BATCH_SIZE,
    RUN_ID,
    SAMPLES_PER_SEC,
    SEED,
    STATUS,
    TEST_ACC,
    TEST_FLIP_RATE,
    TEST_LOSS,
    TEST_MODE,
    TRAIN_ACC,
)
from bnstudy.stats import DIFFERENCE, FIRST, SECOND

CSV_FLOATS = "%.6g"  # paired.csv: enough digits for pp differences, no float noise
# Column registry of summary.csv: output column -> (input column, aggregation); the bootstrap
# interval test_acc_ci_low / test_acc_ci_high, test_acc_median and n_at_chance follow
# test_acc_std.
SUMMARY_STATS = {
    "test_acc_mean": (TEST_ACC, "mean"),
    "test_acc_std": (TEST_ACC, "std"),
    "test_loss_mean": (TEST_LOSS, "mean"),
    "test_loss_std": (TEST_LOSS, "std"),
    "train_acc_mean": (TRAIN_ACC, "mean"),
    "train_acc_std": (TRAIN_ACC, "std"),
    "samples_per_sec_mean": (SAMPLES_PER_SEC, "mean"),
    **{f"{col}_mean": (col, "mean") for col in DIAGNOSTICS},
    "n": (TEST_ACC, "count"),
    **{f"n_{failure}": (f"is_{failure}", "sum") for failure in FAILURES},
}
CI_COLUMNS = ("test_acc_ci_low", "test_acc_ci_high")
SPREAD_COLUMNS = ("test_acc_median", "n_at_chance")  # bimodal seeds: the median, how many failed
# Display columns of summary.md / index.html: header -> (metric, scale, number format); shown
# as mean [95% CI] where summary.csv has the interval, else mean ± std where it has the std,
# else the mean.
DISPLAY_COLUMNS = {
    "test acc (%) [95% CI]": (TEST_ACC, 100, ".1f"),
    "test loss ± std": (TEST_LOSS, 1, ".3f"),
    "train acc (%) ± std": (TRAIN_ACC, 100, ".1f"),
    "samples/s": (SAMPLES_PER_SEC, 1, ".0f"),
    "flip (%)": (TEST_FLIP_RATE, 100, ".1f"),
    "min values/stat": (MIN_VALUES_PER_STAT, 1, ".0f"),
}
COUNT_COLUMNS = ("n", *(f"n_{failure}" for failure in FAILURES))
# display tables leave these out when every count is 0 (as bnstudy.results.counts_text does)
SHOWN_IF_ANY = tuple(f"n_{failure}" for failure in FAILURES if failure not in (ERROR, DIVERGED))
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
NO_OK_RUNS_NOTE = "No ok runs: no test accuracy to show."  # the pivot's note instead
SAME_MODEL = "same model"  # pivot cell of a norm trained once per seed, after its first row
NO_RESULT = "no result"
FAILURE_COLUMNS = (RUN_ID, NORM, BATCH_SIZE, NORM_BATCH_SIZE, SEED, STATUS)
FAILURE_COLUMNS += (ERROR_AT, ERROR_MESSAGE)


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
        **{f"is_{failure}": df[STATUS].eq(failure) for failure in FAILURES},
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
        ok = group[group[TEST_ACC].notna()]
        values = 100 * ok[TEST_ACC]
        estimate = level_estimate(resampler, cell, ok, values)
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
    rows = summary[batch_stat_mask(summary) | summary[TEST_MODE].eq(EVAL)]
    rows = rows.assign(column=_pivot_columns(rows, df))
    n = int(rows["n"].max()) if len(rows) else 0
    cells = rows.assign(cell=[_pivot_cell(row, n) for _, row in rows.iterrows()])
    table = cells.pivot(index=axis, columns="column", values="cell")
    table = table[list(dict.fromkeys(cells["column"]))].sort_index()
    if axis == NORM_BATCH_SIZE:  # a shared norm's columns: one per value of the other factors
        shared = cells.loc[cells[NORM].isin(shared_norms(df)), "column"]
        table.iloc[1:, table.columns.get_indexer(shared.unique())] = SAME_MODEL
    table.columns.name = None
    return table.rename_axis(AXIS_LABELS[axis]).reset_index(), n


def pivot_note(n: int) -> str:
    """The note of the accuracy pivot table whose cells have ``n`` seeds at most."""
    return PIVOT_NOTE.format(n=n) if n else NO_OK_RUNS_NOTE


def _markdown_table(table: pd.DataFrame) -> str:
    """GitHub-flavoured markdown table of ``table``, NaN as blank and pipes escaped."""
    rows = [list(table.columns), *table.astype(object).fillna("").to_numpy().tolist()]
    lines = ["| " + " | ".join(str(v).replace("|", r"\|") for v in row) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * len(table.columns))
    return "\n".join(lines) + "\n"


def summary_markdown(title: str, pivot: pd.DataFrame, n: int, shown: pd.DataFrame) -> str:
    """summary.md: ``title``, the accuracy ``pivot`` (:func:`accuracy_pivot`, its cells of
    ``n`` seeds at most) with its note, then the ``shown`` summary (:func:`format_summary`)
    with its note."""
    return (
        f"# {title}\n\n{pivot_note(n)}\n\n{_markdown_table(pivot)}\n"
        f"{SUMMARY_NOTE}\n\n{_markdown_table(shown)}"
    )


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
        return pd.DataFrame(columns=["comparison", *keys, SEED, FIRST, SECOND, DIFFERENCE])
    table = pd.concat(pairs, ignore_index=True)
    front = ["comparison", *keys, SEED, *(c for c in (RUN_ID, "control") if c in table)]
    return table[[*front, FIRST, SECOND, DIFFERENCE]]


def failure_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per failed run (an outcome of bnstudy.results.FAILURES) with the FAILURE_COLUMNS
    the table has, sorted by norm, batch size and seed."""
    failed = df[df[STATUS].isin(FAILURES)].drop_duplicates(RUN_ID)
    columns = [col for col in FAILURE_COLUMNS if col in failed.columns]
    return sort_by(failed[columns], [NORM, BATCH_SIZE, SEED])
