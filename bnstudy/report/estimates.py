"""Paired comparisons and the estimates of accuracy they give, in percentage points (pp).

Comparisons are paired where the design pairs them:

- test modes of one trained model (same run_id): eval − train, precise − eval, precise − train;
- a batch-statistic norm against a batch-independent one (a control) at the same seed, axis
  value and other factors (same data order and initialization seed).

Each comparison is the mean of the per-pair differences with a 95% bootstrap interval that
resamples seeds and test images, pairing both (:mod:`bnstudy.resampling`), and two tests from
the same replicates: the difference from 0 and the equivalence within ±margin
(:func:`comparison_table`); :func:`difference_finding` states a row of it as a finding. A
cell's accuracy gets the same bootstrap (:func:`level_estimate`).
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import pandas as pd

from bnstudy.norm_catalog import display_label, ordered_norms
from bnstudy.report.runs_table import (
    ACC,
    ARM,
    AXIS_SHORT,
    accuracy_rows,
    batch_axis,
    batch_stat_mask,
    ordered_settings,
    other_factors,
    series_columns,
    series_labels,
    setting_name,
    sort_by,
    test_batch_rank,
)
from bnstudy.report.verdicts import Finding
from bnstudy.resampling import Resampler, arms_of
from bnstudy.results import (
    EVAL,
    NORM,
    NUM_CLASSES,
    RUN_ID,
    SAME,
    SEED,
    TEST_BATCH,
    TEST_MODE,
    TEST_MODES,
    TRAIN,
)
from bnstudy.stats import DIFFERENCE, FIRST, SECOND, Estimate, paired_difference

AT_CHANCE_MARGIN = 5.0  # pp: a seed within this of chance (100 / classes) is stuck at chance
FIRST_ARM, SECOND_ARM = f"{FIRST}_{ARM}", f"{SECOND}_{ARM}"  # pair columns: each side's arm
ESTIMATE_COLUMNS = ("mean", "ci_low", "ci_high", "n", "pvalue", "pvalue_equivalent", "images")
CHANCE_COLUMNS = (
    f"{FIRST}_at_chance",
    f"{SECOND}_at_chance",
    f"{FIRST}_median",
    f"{SECOND}_median",
)


def _mode_comparisons(settings: list[tuple[str, str]]) -> list[tuple[tuple, tuple]]:
    """Within-run comparisons among ``settings``, as each test mode asks
    (``ModeSpec.compare_with``): eval − each train setting, precise − eval, precise − each train
    setting, adabn − eval, adabn − precise."""
    return [
        (first, second)
        for mode in TEST_MODES.values()
        for other in mode.compare_with
        for first in settings
        if first[0] == mode.name
        for second in settings
        if second[0] == other
    ]


def _comparison_columns(first: tuple, second: tuple, axis: str) -> dict[str, str]:
    """Columns naming a comparison of two settings (test_mode, test_batch): ``comparison``,
    ``setting`` (the first's name), the two test modes, and ``test_batch`` of the train-mode
    side (else of the first)."""
    train_side = second if second[0] == TRAIN else first
    return {
        "comparison": f"{setting_name(*first, axis)} − {setting_name(*second, axis)}",
        "setting": setting_name(*first, axis),
        "first_mode": first[0],
        "second_mode": second[0],
        TEST_BATCH: train_side[1],
    }


def mode_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Per run of a batch-statistic norm and axis value: test accuracy (pp) in one test setting
    minus another (:func:`_mode_comparisons`), with ``first``, ``second``, ``difference`` and the
    columns of :func:`_comparison_columns`."""
    rows = accuracy_rows(df)
    rows = rows[batch_stat_mask(rows)]
    axis = batch_axis(df)
    keys = [RUN_ID, SEED, *series_columns(df), axis]
    frames = [
        paired_difference(
            rows, "setting", ACC, keys, (setting_name(*a, axis), setting_name(*b, axis)), ARM
        ).assign(**_comparison_columns(a, b, axis))
        for a, b in _mode_comparisons(ordered_settings(rows))
    ]
    return _concat(frames, keys)


def control_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Per seed, axis value and other factors: a batch-statistic norm's test accuracy (pp) in
    each of its test settings minus a control's (batch-independent norm) in eval mode, with
    ``norm``, ``control``, ``first``, ``second``, ``difference`` and
    :func:`_comparison_columns` (the comparison named ``<norm> (<setting>) − <control>``)."""
    rows = accuracy_rows(df)
    axis = batch_axis(df)
    keys = [SEED, axis, *other_factors(df)]
    uses = batch_stat_mask(rows)
    controls = rows[~uses & rows[TEST_MODE].eq(EVAL)]
    frames = []
    for setting, norm, control in product(
        ordered_settings(rows[uses]),
        ordered_norms(rows.loc[uses, NORM]),
        ordered_norms(controls[NORM]),
    ):
        name = setting_name(*setting, axis)
        bn = rows[rows[NORM].eq(norm) & rows["setting"].eq(name)]
        pairs = paired_difference(pd.concat([bn, controls]), NORM, ACC, keys, (norm, control), ARM)
        columns = _comparison_columns(setting, (EVAL, EVAL), axis)
        columns["comparison"] = f"{norm} ({name}) − {control}"
        frames.append(pairs.assign(**{NORM: norm}, control=control, **columns))
    return _concat(frames, keys)


def _concat(frames: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    """The frames stacked, or an empty frame with the pair columns if there are none."""
    if not frames:
        return pd.DataFrame(columns=[*keys, FIRST, SECOND, DIFFERENCE, "comparison"])
    return pd.concat(frames, ignore_index=True)


def chance_level(df: pd.DataFrame) -> float:
    """Chance accuracy in percent, 100 / the fewest classes in the table; NaN if unknown."""
    if NUM_CLASSES not in df.columns or df[NUM_CLASSES].isna().all():
        return math.nan
    return 100 / float(df[NUM_CLASSES].min())


def at_chance(values: pd.Series, chance: float) -> int:
    """How many accuracies (percent) lie within AT_CHANCE_MARGIN of ``chance``: seeds stuck
    at chance, which make a cell's seeds bimodal beside ones that learned."""
    return int((values < chance + AT_CHANCE_MARGIN).sum()) if not math.isnan(chance) else 0


def comparison_table(
    pairs: pd.DataFrame,
    keys: list[str],
    resampler: Resampler | None = None,
    chance: float = math.nan,
) -> pd.DataFrame:
    """Per ``keys`` group of ``pairs``: the mean paired difference with its bootstrap interval
    (``ci_low``, ``ci_high``), n pairs, the p-values of no difference and of equivalence within
    the resampler's margin (``margin``, pp), ``images`` (test images resampled; 1: seeds only),
    the std of the per-pair differences,
    the means of ``first`` and ``second``, and per side the seeds at ``chance`` (percent;
    :func:`at_chance`) and the median. Each side's arm (``first_arm``, ``second_arm``) names
    the stored predictions to resample; without them (or without a ``resampler``) seeds only."""
    resampler = resampler or Resampler(None)
    columns = [*keys, *ESTIMATE_COLUMNS, "std", FIRST, SECOND, *CHANCE_COLUMNS, "margin"]
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for cell, group in pairs.groupby(keys, dropna=False, sort=False):
        cell = cell if isinstance(cell, tuple) else (cell,)
        arms = [
            group[column] if column in group else [""] * len(group)
            for column in (FIRST_ARM, SECOND_ARM)
        ]
        estimate = resampler.difference(
            "|".join(map(str, cell)),
            (list(arms[0]), group[FIRST].tolist()),
            (list(arms[1]), group[SECOND].tolist()),
        )
        sides = (group[FIRST], group[SECOND])
        chances = [at_chance(values, chance) for values in sides]
        medians = [values.median() for values in sides]
        means = [values.mean() for values in sides]
        std = group[DIFFERENCE].std() if DIFFERENCE in group else np.nan
        rows.append(
            (*cell, *_estimate_values(estimate), std, *means, *chances, *medians, resampler.margin)
        )
    return pd.DataFrame(rows, columns=columns)


def _estimate_values(estimate: Estimate) -> tuple:
    """An estimate's values in ESTIMATE_COLUMNS order."""
    return (
        estimate.mean,
        estimate.low,
        estimate.high,
        estimate.n,
        estimate.pvalue,
        estimate.pvalue_equivalent,
        estimate.images,
    )


def level_estimate(
    resampler: Resampler, cell: object, rows: pd.DataFrame, values: pd.Series
) -> Estimate:
    """The mean accuracy (pp) of a cell with its bootstrap interval: ``rows`` are its ok runs
    (one per seed; their arms name the stored predictions), ``values`` their accuracies in
    percent. Drawn by the cell's key, so the summary table and the figures agree."""
    key = "summary|" + "|".join(map(str, cell if isinstance(cell, tuple) else (cell,)))
    return resampler.level(key, arms_of(rows), values.tolist())


def mode_table(df: pd.DataFrame, resampler: Resampler | None = None) -> pd.DataFrame:
    """:func:`comparison_table` of :func:`mode_pairs` per series, axis value and comparison,
    sorted by series and axis value."""
    series = [*series_columns(df), batch_axis(df)]
    keys = [*series, "comparison", "first_mode", "second_mode", TEST_BATCH]
    table = comparison_table(mode_pairs(df), keys, resampler, chance_level(df))
    return sort_by(table, series)


def shown_rows(table: pd.DataFrame, mode_column: str, modes: tuple[str, ...]) -> pd.DataFrame:
    """Rows of a comparison table whose ``mode_column`` is one of ``modes`` or train mode at the
    reference test batch: ``same`` (the normalization batch) if present, else the first."""
    trains = table.loc[table[mode_column].eq(TRAIN), TEST_BATCH]
    ranked = sorted(trains.unique(), key=test_batch_rank)
    reference = SAME if SAME in ranked else next(iter(ranked), None)
    at_reference = table[mode_column].eq(TRAIN) & table[TEST_BATCH].eq(reference)
    return table[table[mode_column].isin(modes) | at_reference]


def cell_subject(row: pd.Series, series: list[str], axis: str) -> str:
    """``<Norm>[, key=value] @ <axis> <value>`` for a row of a comparison table, the norm by its
    display name (``BatchNorm @ norm batch 4``)."""
    label = display_label(series_labels(row.to_frame().T, series).iloc[0])
    return f"{label} @ {AXIS_SHORT[axis]} {int(row[axis])}"


def cell_key(row: pd.Series, series: list[str], axis: str) -> str:
    """``<norm>[,key=value]@<axis value>`` (``@any`` without one): a cell in a finding key."""
    label = series_labels(row.to_frame().T, series).iloc[0]
    return f"{label}@{'any' if pd.isna(row[axis]) else int(row[axis])}"


def difference_finding(
    row: pd.Series,
    subject: str,
    claim: str,
    direction: int,
    names: tuple[str, str],
    key: str,
) -> Finding:
    """A finding from a row of :func:`comparison_table`: ``claim`` is that first − second has
    the sign of ``direction``; ``names`` name the first and the second."""
    first, second = names
    detail = f"{first} {row[FIRST]:.1f}%, {second} {row[SECOND]:.1f}%"
    for name, side in ((first, FIRST), (second, SECOND)):
        if row.get(f"{side}_at_chance", 0) > 0:
            detail += (
                f"; {name}: {int(row[f'{side}_at_chance'])} of {int(row['n'])} seeds at chance, "
                f"median {row[f'{side}_median']:.1f}%"
            )
    if row.get("images", 1) == 1:
        detail += "; seeds only (no stored predictions)"
    return Finding(
        subject=subject,
        claim=claim,
        measure=f"{first} − {second}",
        estimate=row["mean"],
        low=row["ci_low"],
        high=row["ci_high"],
        n=int(row["n"]),
        detail=detail,
        key=key,
        direction=direction,
        margin=row.get("margin", math.nan),
        pvalue=row["pvalue"],
        pvalue_equivalent=row["pvalue_equivalent"],
    )


def second_name(row: pd.Series) -> str:
    """The name of the second setting of a comparison-table row."""
    return row["comparison"].split(" − ", 1)[1]


def compared_modes(row: pd.Series) -> tuple[str, str]:
    """The test modes a within-run comparison-table row compares."""
    return row["first_mode"], row["second_mode"]
