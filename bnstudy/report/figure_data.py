"""What the report's figures draw, computed from the runs table: per figure, its estimate tables
(``<figure>_data``), or :class:`NothingToPlot` with the reason it has nothing to show. The
figures (:mod:`bnstudy.report.figures`) draw these tables and compute nothing themselves.

Lines are means over seeds, bands and bars their 95% intervals (none for one seed): for
accuracies and their paired differences the findings' bootstrap over seeds and test images
(given a resampler; seeds only without), for the diagnostics and the learning curves
t-intervals over seeds. A norm without batch statistics in a normalization-batch study counts
at every axis value from its one model per seed. A diagnostic that is the same in every run is
left out (:func:`constant_panels` names it).
"""

from __future__ import annotations

import pandas as pd

from bnstudy.report.estimates import comparison_table, level_estimate, mode_pairs
from bnstudy.report.flips import BASELINE
from bnstudy.report.noise import NOISE_COLUMNS
from bnstudy.report.recovery import recovery_skip, recovery_table
from bnstudy.report.runs_table import (
    ACC,
    SETTING_COLUMNS,
    along_axis,
    batch_axis,
    batch_stat_mask,
    measured,
    series_columns,
    series_labels,
    sort_by,
)
from bnstudy.resampling import Resampler
from bnstudy.results import (
    BN_MEAN_NOISE,
    BN_VAR_NOISE,
    EVAL,
    INIT_OUTPUT_STD,
    INIT_ZERO_FRACTION,
    MIN_VALUES_PER_STAT,
    NUM_CLASSES,
    OUTPUT_STD,
    RUN_ID,
    TEST_ACC,
    TEST_BATCH,
    TEST_FLIP_RATE,
    TEST_MODE,
    TRAIN,
    TRAIN_ACC,
    TRAIN_LOSS,
    ZERO_FRACTION,
)
from bnstudy.stats import FIRST, SECOND, interval_table


class NothingToPlot(ValueError):
    """The runs table holds nothing a figure could show; the message says why."""


# Panels of the per-run diagnostic figures: panel title -> columns drawn (init_* dashed).
COLLAPSE_PANELS = {
    "output std": (INIT_OUTPUT_STD, OUTPUT_STD),
    "fraction of outputs exactly 0": (INIT_ZERO_FRACTION, ZERO_FRACTION),
}
BATCH_STATS_PANELS = {
    "fewest values per norm statistic": (MIN_VALUES_PER_STAT,),
    "std of batch means / population std": (BN_MEAN_NOISE,),
    "std of batch variances / population var": (BN_VAR_NOISE,),
}
# Quantities the tables add, each as <name>_mean, _std, _ci_low, _ci_high: the train-mode flip
# rate in percent, a paired test-mode difference in pp, the learning curves' train loss (and
# train accuracy in percent, ACC).
FLIP, DIFF, LOSS = "flip", "diff", "loss"
RECOVERY = "recovery"  # a norm's accuracy − BN's at its largest batch (recovery_table), in pp
CURVES = (LOSS, ACC)  # the learning curves' quantities, in panel order
NUM_CLASSES_COLUMNS = (NUM_CLASSES, "data.num_classes")


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
    rows = df.assign(**{ACC: 100 * measured(df, TEST_ACC)})
    table = seed_stats(rows, ACC, keys)
    resampler = resampler or Resampler(None)
    bounds = []
    for cell, group in rows[rows[ACC].notna()].groupby(keys, dropna=False, sort=False):
        estimate = level_estimate(resampler, cell, group, group[ACC])
        bounds.append((*cell, estimate.low, estimate.high))
    bounds = pd.DataFrame(bounds, columns=[*keys, "acc_ci_low", "acc_ci_high"])
    intervals = table.drop(columns=["acc_ci_low", "acc_ci_high"]).merge(bounds, how="left")
    intervals = intervals.astype({"acc_ci_low": float, "acc_ci_high": float})
    return intervals[table.columns]  # NaN keys match NaN in a merge


def mode_differences(df: pd.DataFrame, resampler: Resampler | None = None) -> pd.DataFrame:
    """Paired test-mode differences (:func:`bnstudy.report.estimates.mode_pairs`) of the
    batch-statistic norms: per series, axis value and comparison, ``diff_mean``, ``diff_std``,
    ``diff_ci_low``, ``diff_ci_high`` (pp, the findings' bootstrap interval) and ``n`` runs,
    sorted."""
    keys = [*series_columns(df), batch_axis(df)]
    comparison = ["comparison", "first_mode", "second_mode", TEST_BATCH]
    table = comparison_table(mode_pairs(df), [*keys, *comparison], resampler)
    return sort_by(_named(table.drop(columns=[FIRST, SECOND]), DIFF), keys)


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
    return gap.rename(columns=lambda col: col.replace(f"{DIFF}_", "gap_")).reset_index(drop=True)


def compute_flip_rate(df: pd.DataFrame) -> pd.DataFrame:
    """Train-mode flip rate in percent of the norms that use batch statistics: flip_mean,
    flip_std, flip_ci_low, flip_ci_high and n over ok seeds per norm (and other factors), axis
    value and test_batch; n = 0 where every seed failed."""
    df = along_axis(df)
    train = df[df[TEST_MODE].eq(TRAIN) & batch_stat_mask(df)]
    keys = [*series_columns(df), batch_axis(df), TEST_BATCH]
    return seed_stats(train.assign(**{FLIP: 100 * measured(train, TEST_FLIP_RATE)}), FLIP, keys)


def baseline_means(baseline: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """The seed-to-seed baseline (:func:`bnstudy.report.flips.flip_baseline`) of the
    batch-statistic norms of the study ``df``, averaged per series, axis value and test batch,
    sorted by series and axis value."""
    series, axis = series_columns(df), batch_axis(df)
    keys = [*series, axis, TEST_BATCH]
    means = baseline[batch_stat_mask(baseline)].groupby(keys, as_index=False)[BASELINE].mean()
    return sort_by(means, [*series, axis])


def run_stats(df: pd.DataFrame, column: str, series: list[str], axis: str) -> pd.DataFrame:
    """A per-run diagnostic's mean, std, t-interval and n over seeds per ``series`` (the norm and
    other factors) and ``axis`` value, one value per run (ok runs only, except the PRE_TRAINING
    diagnostics); series never measured are left out (e.g. batch-statistic noise of group
    norm)."""
    df = along_axis(df, axis)
    values = df.assign(**{column: measured(df, column)})
    runs = values.groupby([RUN_ID, axis])[[*series, column]].first().reset_index()
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
    ``df`` places it (:func:`bnstudy.report.runs_table.along_axis`): the ok runs alone may have
    another batch axis and fewer values (BN ok at one normalization batch size only)."""
    axis = batch_axis(df)
    placed = along_axis(df)[[RUN_ID, axis]].drop_duplicates()
    history = history.drop(columns=axis, errors="ignore").merge(placed, on=RUN_ID)
    history = history.assign(**{LOSS: history[TRAIN_LOSS], ACC: 100 * history[TRAIN_ACC]})
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


# ---------------------------------------------------------------------------------------------
# Each figure's tables, or why it has none.


def _train_mode_reason(df: pd.DataFrame) -> str | None:
    """Why a train-mode figure cannot be drawn because the sweep lacks train-mode rows, or
    None."""
    return None if df[TEST_MODE].eq(TRAIN).any() else "the sweep has no train-mode test rows"


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


def accuracy_data(df: pd.DataFrame, resampler: Resampler | None = None) -> pd.DataFrame:
    """The accuracy figure's :func:`accuracy_table`. Raises NothingToPlot for a table without
    rows."""
    _require("the runs table has no rows yet" if df.empty else None)
    return accuracy_table(df, resampler)


def recovery_data(df: pd.DataFrame, resampler: Resampler | None = None) -> pd.DataFrame:
    """The recovery figure's :func:`bnstudy.report.recovery.recovery_table`, its estimate
    named ``recovery_*``. Raises NothingToPlot when there is nothing to compare (no BN runs, or
    no other norm)."""
    table = recovery_table(df, resampler)
    _require(recovery_skip(df) if table.empty else None)
    return _named(table, RECOVERY)


def gap_data(df: pd.DataFrame, resampler: Resampler | None = None) -> pd.DataFrame:
    """The test-mode difference figure's :func:`mode_differences`. Raises NothingToPlot if no
    run has both eval-mode and train-mode results."""
    table = mode_differences(df, resampler)
    if _gap(table).empty:
        raise NothingToPlot(
            _train_mode_reason(df) or "no run has both eval-mode and train-mode results yet"
        )
    return table


def flip_data(
    df: pd.DataFrame, baseline: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The flip-rate figure's :func:`compute_flip_rate` and :func:`baseline_means` of
    ``baseline`` (None without one). Raises NothingToPlot if no train-mode row of a
    batch-statistic norm has a flip rate."""
    train = df[df[TEST_MODE].eq(TRAIN) & batch_stat_mask(df)]
    _require(_train_mode_reason(df) or _unmeasured_reason(train, [TEST_FLIP_RATE]))
    means = None if baseline is None or baseline.empty else baseline_means(baseline, df)
    return compute_flip_rate(df), means


def panel_data(
    df: pd.DataFrame, panels: dict[str, tuple[str, ...]]
) -> dict[str, dict[str, pd.DataFrame]]:
    """A per-run figure's panels (title -> diagnostic columns, e.g. COLLAPSE_PANELS) that are
    not constant (:func:`constant_panels`): title -> column -> its :func:`run_stats`. Raises
    NothingToPlot if none of the columns is measured or every panel is constant."""
    _require(_unmeasured_reason(df, [col for columns in panels.values() for col in columns]))
    constant = constant_panels(df, panels)
    shown = {title: columns for title, columns in panels.items() if title not in constant}
    _require(None if shown else "every value is the same in every run: " + ", ".join(constant))
    series, axis = series_columns(df), batch_axis(df)
    df = along_axis(df, axis)  # once for all panels
    return {
        title: {column: run_stats(df, column, series, axis) for column in columns}
        for title, columns in shown.items()
    }


def noise_data(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The noise figure's :func:`run_stats` of the measured noise and its two predictions
    (NOISE_COLUMNS, in that order). Raises NothingToPlot if the predictions are not
    measured."""
    _require(_unmeasured_reason(df, list(NOISE_COLUMNS[1:])))
    series, axis = series_columns(df), batch_axis(df)
    df = along_axis(df, axis)  # once for all lines
    return {column: run_stats(df, column, series, axis) for column in NOISE_COLUMNS}


def learning_data(history: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """The learning curves' :func:`learning_table`. Raises NothingToPlot if ``history`` is
    empty."""
    _require("no run folder has a history.jsonl" if history.empty else None)
    return learning_table(history, df)


def comparison_data(studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The comparison figure's :func:`studies_table`. Raises NothingToPlot if no study's table
    has rows."""
    _require(None if studies else "no study to compare")
    _require(None if any(not df.empty for df in studies.values()) else "no study has runs yet")
    return studies_table(studies)
