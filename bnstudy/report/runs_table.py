"""The runs table as the analysis reads it: its batch axis, factors, order and test settings.

The batch axis is the column a study varies batch size along: ``norm_batch_size`` (samples per
BN statistic, ghost batch norm) when it takes several values among the runs of norms that use
batch statistics and is not just their batch_size, else ``batch_size`` (an optimizer-batch
study, and every table from before ``norm_batch_size``). Norms without batch statistics leave
``norm_batch_size`` empty: one trained model per seed serves every value, so
:func:`along_axis` repeats its rows at each one. Columns are named as in
:mod:`bnstudy.results`; the columns the report adds (``acc``, ``arm``, ...) are declared here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from bnstudy.norm_catalog import BATCH_STATISTICS, ordered_norms
from bnstudy.resampling import arms_of
from bnstudy.results import (
    ACCUMULATE,
    BATCH_SIZE,
    INIT_OUTPUT_STD,
    INIT_ZERO_FRACTION,
    MIN_VALUES_PER_STAT,
    NORM,
    NORM_BATCH_SIZE,
    OK,
    RUN_ID,
    SAME,
    SEED,
    STATUS,
    TEST_ACC,
    TEST_BATCH,
    TEST_MODE,
    TEST_MODES,
    counts_text,
)

AXIS_LABELS = {
    NORM_BATCH_SIZE: "normalization batch size (samples per BN statistic)",
    BATCH_SIZE: "training batch size",
}
AXIS_SHORT = {NORM_BATCH_SIZE: "norm batch", BATCH_SIZE: "batch"}
SAME_BATCH = {NORM_BATCH_SIZE: "normalization batch", BATCH_SIZE: "training batch"}
# test modes evaluated once, in registry order, then "same", then numeric test batch sizes
TEST_BATCH_RANK = {
    **{name: index - len(TEST_MODES) - 1 for index, name in enumerate(TEST_MODES)},
    SAME: -1,
}
# Batch columns that can be factors of their own when they are not the axis.
BATCH_COLUMNS = (BATCH_SIZE, NORM_BATCH_SIZE, ACCUMULATE)
OPTIMIZER_COLUMNS = (BATCH_SIZE, ACCUMULATE)  # what a control's training depends on
# A swept (dotted) column whose last key is one of these copies a base column: never a factor.
ALIAS_KEYS = (NORM, BATCH_SIZE, NORM_BATCH_SIZE, ACCUMULATE, SEED)
SETTING_COLUMNS = (TEST_MODE, TEST_BATCH)  # a test setting
# Diagnostics measured before training (bnstudy.diagnostics): they count for failed runs too.
PRE_TRAINING = (MIN_VALUES_PER_STAT, INIT_ZERO_FRACTION, INIT_OUTPUT_STD)
# Columns the report adds to the runs table.
ACC = "acc"  # test accuracy in percent, added by accuracy_rows
ARM = "arm"  # accuracy_rows: the run's test setting, as bnstudy.resampling.arm names it
ROW = "_row"  # along_axis: a row's position, while its axis values are looked up


def batch_stat_mask(df: pd.DataFrame) -> pd.Series:
    """Per row of ``df``, whether its norm normalizes with batch statistics (the BN family; the
    others compute the same thing at every batch size and are the study's controls), as a bool
    Series: ``df[mask]`` selects rows even when ``df`` is empty (an empty mask of object dtype
    would select columns)."""
    return df[NORM].isin(BATCH_STATISTICS)


def batch_axis(df: pd.DataFrame) -> str:
    """The column the study varies batch size along: ``norm_batch_size`` if, among rows of
    norms that use batch statistics, it takes more than one value and differs from batch_size
    somewhere (ghost batches); else ``batch_size`` (an optimizer-batch study, where a BN run's
    norm_batch_size is its batch_size and the controls are trained at each batch size)."""
    if NORM_BATCH_SIZE in df.columns:
        bn = df.loc[batch_stat_mask(df), [NORM_BATCH_SIZE, BATCH_SIZE]]
        values = bn[NORM_BATCH_SIZE]
        if values.nunique() > 1 and (values.notna() & values.ne(bn[BATCH_SIZE])).any():
            return NORM_BATCH_SIZE
    return BATCH_SIZE


def along_axis(df: pd.DataFrame, axis: str | None = None) -> pd.DataFrame:
    """``df`` with each row whose batch-axis value is missing (a norm without batch statistics
    in a normalization-batch study: one trained model per seed) repeated at the axis values
    that rows with the same optimizer setup (batch_size, accumulate) have, or at every axis
    value when none has that setup; axis values as integers. ``axis`` is the study's batch axis,
    by default ``df``'s own (pass the study's for a part of it, such as the ok runs, whose own
    may differ). Idempotent."""
    axis = axis or batch_axis(df)
    missing = df[axis].isna()
    values = df.loc[~missing, [c for c in OPTIMIZER_COLUMNS if c in df.columns] + [axis]]
    if not missing.any() or values.empty:
        return df
    setup = [c for c in values.columns if c != axis]
    shared = df[missing]
    # which row of ``shared`` goes to which axis value: merged on its keys alone, then taken
    rows = shared[setup].assign(**{ROW: np.arange(len(shared))})
    matched = rows.merge(values.drop_duplicates(), on=setup)[[ROW, axis]] if setup else None
    unmatched = _unmatched(rows, values, setup)[[ROW]]
    spread = unmatched.merge(values[[axis]].drop_duplicates(), how="cross")
    placed = pd.concat([part for part in (matched, spread) if part is not None and len(part)])
    repeated = shared.iloc[placed[ROW].to_numpy()].assign(**{axis: placed[axis].to_numpy()})
    return pd.concat([df[~missing], repeated], ignore_index=True).astype({axis: int})


def _unmatched(shared: pd.DataFrame, values: pd.DataFrame, setup: list[str]) -> pd.DataFrame:
    """The rows of ``shared`` whose optimizer setup no row on the axis has."""
    if not setup:
        return shared
    known = set(values[setup].itertuples(index=False, name=None))
    return shared[[row not in known for row in shared[setup].itertuples(index=False, name=None)]]


def shared_norms(df: pd.DataFrame) -> list[str]:
    """Norms whose every row has no batch-axis value: one trained model per seed serves every
    value (call before :func:`along_axis`)."""
    missing = df[batch_axis(df)].isna().groupby(df[NORM]).all()
    return ordered_norms(missing.index[missing])


def axis_values(df: pd.DataFrame, axis: str | None = None) -> list[int]:
    """The distinct values of column ``axis`` (by default the batch axis), ascending."""
    return sorted(int(v) for v in df[axis or batch_axis(df)].dropna().unique())


def _is_swept(column: str) -> bool:
    """A dotted (swept) column that is not a copy of a base column such as ``model.norm``."""
    return "." in column and column.rsplit(".", 1)[1] not in ALIAS_KEYS


def other_factors(df: pd.DataFrame) -> list[str]:
    """Factors besides norm, batch axis and test setting: swept columns and batch columns other
    than the axis that vary, and take several values for some norm and for some axis value (so
    an lr zipped with batch size, or a norm_batch_size equal to batch_size, is left out)."""
    axis = batch_axis(df)
    candidates = [c for c in df.columns if _is_swept(c)]
    candidates += [c for c in BATCH_COLUMNS if c in df.columns and c != axis]
    varying = [col for col in candidates if df[col].nunique() > 1]  # as many after along_axis
    if not varying:
        return []
    df = along_axis(df, axis)
    return [
        col
        for col in varying
        if all(df.groupby(key)[col].nunique().max() > 1 for key in (NORM, axis))
    ]


def series_columns(df: pd.DataFrame) -> list[str]:
    """Columns whose values make one plotted line: the norm plus any other factor."""
    return [NORM, *other_factors(df)]


def series_labels(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Label per row: the norm, then ``key=value`` for each other factor the row has (a run
    that ignores a swept key, as BN ignores model.group.groups, has no value for it)."""
    labels = frame[columns[0]].astype(str)
    for col in columns[1:]:
        part = (f", {col}=" + frame[col].astype(object).astype(str)).where(frame[col].notna(), "")
        labels = labels + part
    return labels


def factor_columns(df: pd.DataFrame) -> list[str]:
    """Grouping factors: norm, the batch axis, test_mode, test_batch, then the other factors
    (:func:`other_factors`)."""
    return [NORM, batch_axis(df), *SETTING_COLUMNS, *other_factors(df)]


def _sort_key(col: pd.Series) -> pd.Series:
    """Sort key per column: norms in registry order (others after, alphabetically), test batches
    as the modes evaluated once (eval < precise < adabn) < same < 1 < 2 < ..., anything else by
    value."""
    if col.name == NORM:
        order = ordered_norms(col.dropna())
        return pd.Series(pd.Categorical(col, categories=order, ordered=True), index=col.index)
    if col.name == TEST_BATCH:
        return col.map(test_batch_rank)
    return col


def test_batch_rank(label: object) -> float:
    """Position of a test_batch label: the modes evaluated once, same, then the numeric sizes;
    others last."""
    if label in TEST_BATCH_RANK:
        return TEST_BATCH_RANK[label]
    return float(label) if str(label).isdigit() else math.inf


def sort_by(df: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """``df`` sorted by ``columns`` (norm and test_batch in their natural order), fresh index."""
    return df.sort_values(list(columns), key=_sort_key, ignore_index=True, kind="stable")


def test_batch_label(test_batch: object, axis: str = BATCH_SIZE) -> str:
    """``test batch = ...`` for a train-mode test_batch label (``same``: the batch the norm
    normalized over in training)."""
    return "test batch = " + (SAME_BATCH[axis] if test_batch == SAME else str(test_batch))


def setting_name(test_mode: str, test_batch: object, axis: str = BATCH_SIZE) -> str:
    """Short name of a test setting: ``eval mode``, ``precise mode``, ``train mode (test batch =
    ...)``."""
    if test_mode in TEST_MODES and TEST_MODES[test_mode].per_test_batch:
        return f"{test_mode} mode ({test_batch_label(test_batch, axis)})"
    return f"{test_mode} mode"


def counts_line(df: pd.DataFrame) -> str:
    """``N runs: a ok, b error, c diverged[, d oom]; R rows`` (runs counted once per run_id;
    oom and other outcomes only when some run had them)."""
    per_run = df.drop_duplicates(RUN_ID)[STATUS].value_counts()
    return f"{df[RUN_ID].nunique()} runs: {counts_text(per_run)}; {len(df)} rows"


def measured(df: pd.DataFrame, column: str) -> pd.Series:
    """The values of ``column`` that count: on every row for the PRE_TRAINING diagnostics, on
    ok rows only (NaN elsewhere) for everything else."""
    return df[column] if column in PRE_TRAINING else df[column].where(df[STATUS].eq(OK))


def ordered_settings(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The distinct test settings (test_mode, test_batch) of ``frame``, in order eval, precise,
    ..., train at the same batch, then at each numeric test batch."""
    settings = frame[list(SETTING_COLUMNS)].dropna().drop_duplicates()
    return list(sort_by(settings, [TEST_BATCH]).itertuples(index=False, name=None))


def setting_names(df: pd.DataFrame) -> list[str]:
    """The names (:func:`setting_name`) of the test settings in the table (:func:`ordered_settings`
    order)."""
    axis = batch_axis(df)
    return [setting_name(m, b, axis) for m, b in ordered_settings(df)]


def accuracy_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The ok rows with a test accuracy, on the batch axis, with ``acc`` (test accuracy in
    percent), ``setting`` (:func:`setting_name`) and ``arm`` (the run's test setting, whose
    stored predictions :mod:`bnstudy.resampling` reads)."""
    df = along_axis(df)
    axis = batch_axis(df)
    ok = df[df[STATUS].eq(OK) & df[TEST_ACC].notna()]
    names = [setting_name(m, b, axis) for m, b in zip(ok[TEST_MODE], ok[TEST_BATCH], strict=True)]
    arms = arms_of(ok)
    return ok.assign(**{ACC: 100 * ok[TEST_ACC], "setting": names, ARM: arms})
