"""Flip rate: whether reshuffling the test batches in train mode changes fewer predictions than
changing the seed does. The seed-to-seed baseline of a run is how often the other seeds of its
cell predict a test image differently (:func:`flip_baseline`); the claim is flip − baseline < 0,
resampled by seed and test image."""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import combinations

import numpy as np
import pandas as pd

from bnstudy.report.estimates import cell_key, cell_subject
from bnstudy.report.runs_table import (
    along_axis,
    batch_axis,
    batch_stat_mask,
    series_columns,
    setting_name,
    sort_by,
)
from bnstudy.report.verdicts import (
    DIRECTIONAL_RULE,
    Finding,
    FindingGroup,
    estimate_finding,
    finding_key,
)
from bnstudy.resampling import Resampler, arms_of
from bnstudy.results import (
    OK,
    RUN_ID,
    STATUS,
    TEST_BATCH,
    TEST_BATCH_SIZE,
    TEST_FLIP_RATE,
    TEST_MODE,
    TRAIN,
)
from bnstudy.stats import Estimate

Predictions = Callable[[str], dict[str, list[int]] | None]  # run_id -> predictions per label
BASELINE = "baseline"
FLIP_TITLE = "Flip rate vs seed-to-seed disagreement (claim flip − baseline < 0)"
FLIP_RULE = (
    "Baseline of a run: the mean, over the other seeds of its cell, of the fraction of test "
    "images whose predictions in the same test setting differ from its own (what training "
    "randomness alone changes). Difference = the run's train-mode flip rate − its baseline, "
    "mean over the runs of the cell; resampled by seed (a drawn seed against the other "
    "distinct seeds drawn) and by test image (shared by flips and disagreements). Test batches "
    "of one image are left out (nothing else in the batch: no flip by construction). "
    + DIRECTIONAL_RULE
)


def seed_disagreement(predictions: list[list[int]]) -> tuple[float, int]:
    """Mean over pairs of prediction lists of the fraction of positions where they differ, and
    the number of pairs (NaN, 0 with fewer than 2 lists). Lists must have equal lengths."""
    rates = []
    for a, b in combinations(predictions, 2):
        if len(a) != len(b):
            raise ValueError(f"predictions of different lengths ({len(a)}, {len(b)}) in one cell")
        rates.append(float(np.mean(np.asarray(a) != np.asarray(b))))
    return (float(np.mean(rates)), len(rates)) if rates else (math.nan, 0)


def flip_baseline(df: pd.DataFrame, read_predictions: Predictions) -> pd.DataFrame:
    """Per ok train-mode run with stored predictions, in a cell (norm, other factors, axis
    value, test_batch) of at least 2 such runs: ``baseline`` = the mean fraction (percent) of
    test images whose predictions in that setting differ between this run and each other run
    (seed) of its cell, and ``pairs`` = the number of other runs."""
    df = along_axis(df)
    keys = [*series_columns(df), batch_axis(df), TEST_BATCH]
    runs = df[df[STATUS].eq(OK) & df[TEST_MODE].eq(TRAIN)]
    loaded = {run_id: read_predictions(run_id) for run_id in runs[RUN_ID].unique()}
    rows = []
    for cell, group in runs.groupby(keys, dropna=False, sort=False):
        label = cell[-1]
        found = {r: loaded[r][label] for r in group[RUN_ID] if loaded[r] and label in loaded[r]}
        for run_id, rate in run_disagreement(found).items():
            rows.append((*cell, run_id, 100 * rate, len(found) - 1))
    return pd.DataFrame(rows, columns=[*keys, RUN_ID, BASELINE, "pairs"])


def run_disagreement(predictions: dict[str, list[int]]) -> dict[str, float]:
    """Per run: the mean over the other runs of the fraction of positions where their
    prediction lists differ (:func:`seed_disagreement` of each pair); empty with < 2 runs."""
    rates: dict[str, list[float]] = {run_id: [] for run_id in predictions}
    for (a, mine), (b, theirs) in combinations(predictions.items(), 2):
        rate, _ = seed_disagreement([mine, theirs])
        rates[a].append(rate)
        rates[b].append(rate)
    return {run_id: float(np.mean(r)) for run_id, r in rates.items() if r}


def flip_findings(
    df: pd.DataFrame, baseline: pd.DataFrame, resampler: Resampler | None = None
) -> FindingGroup:
    """Per batch-statistic norm, axis value and train-mode test batch: claim the train-mode flip
    rate is below the seed-to-seed baseline (flip − baseline < 0), resampled by seed and test
    image (:meth:`bnstudy.resampling.Resampler.flip_excess`)."""
    group = FLIP_TITLE
    df = along_axis(df)
    series, axis = series_columns(df), batch_axis(df)
    train = df[df[STATUS].eq(OK) & df[TEST_MODE].eq(TRAIN) & batch_stat_mask(df)]
    if TEST_BATCH_SIZE in train.columns:
        train = train[train[TEST_BATCH_SIZE].ne(1)]
    train = train.dropna(subset=[TEST_FLIP_RATE]).merge(
        baseline, on=[*series, axis, TEST_BATCH, RUN_ID]
    )
    if train.empty:
        return FindingGroup(group, FLIP_RULE, skipped=_flip_skip(df, baseline))
    resampler = resampler or Resampler(None)
    keys = [*series, axis, TEST_BATCH]
    findings = []
    for _, cell in sort_by(train, keys).groupby(keys, sort=False, dropna=False):
        row = cell.iloc[0]
        key = finding_key("flip", cell_key(row, series, axis), row[TEST_BATCH])
        arms = arms_of(cell)
        estimate = resampler.flip_excess(arms, (100 * cell[TEST_FLIP_RATE]).tolist())
        means = (100 * cell[TEST_FLIP_RATE].mean(), cell[BASELINE].mean())
        findings.append(_flip_finding(row, estimate, means, series, axis, key))
    return FindingGroup(group, FLIP_RULE, findings)


def _flip_skip(df: pd.DataFrame, baseline: pd.DataFrame) -> str:
    """Why there is no flip-rate finding."""
    if baseline.empty:
        return "no cell has stored train-mode predictions (predictions.json) of 2 seeds"
    if not df[TEST_MODE].eq(TRAIN).any():
        return "the study has no train-mode rows"
    return "no batch-statistic norm has a train-mode flip rate in a cell with a baseline"


def _flip_finding(
    row: pd.Series,
    estimate: Estimate,
    means: tuple[float, float],
    series: list[str],
    axis: str,
    key: str,
) -> Finding:
    """The flip-rate finding of one cell (``row`` its first run) from its estimate and the
    mean flip rate and baseline (percent)."""
    setting = setting_name(TRAIN, row[TEST_BATCH], axis)
    return estimate_finding(
        estimate,
        subject=cell_subject(row, series, axis),
        claim=f"reshuffling test batches ({setting}) flips fewer predictions than changing "
        "the seed",
        measure="flip − baseline",
        detail=f"flip {means[0]:.1f}%, seeds disagree on {means[1]:.1f}%",
        key=key,
        direction=-1,
    )
