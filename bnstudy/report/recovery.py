"""Recovery: each norm against BN (``batch``) at its largest batch-axis value, in eval mode,
paired by seed: how far a norm falls short of BN's large-batch accuracy, and from which axis
value each batch-statistic norm is no longer shown short."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from bnstudy.norm_catalog import display_label
from bnstudy.report.estimates import (
    FIRST_ARM,
    SECOND_ARM,
    cell_key,
    chance_level,
    comparison_table,
    difference_finding,
)
from bnstudy.report.runs_table import (
    ACC,
    ARM,
    AXIS_SHORT,
    accuracy_rows,
    batch_axis,
    other_factors,
    series_columns,
    series_labels,
    sort_by,
)
from bnstudy.report.verdicts import (
    DIRECTIONAL_RULE,
    EQUIVALENT,
    SUPPORTED,
    Finding,
    FindingGroup,
    finding_key,
)
from bnstudy.resampling import Resampler
from bnstudy.results import EVAL, NORM, RUN_ID, SEED, TEST_MODE
from bnstudy.stats import DIFFERENCE, FIRST, SECOND

REFERENCE_NORM = "batch"  # recovery is measured against BN at its largest batch-axis value
RECOVERY_TITLE = "Recovery: each norm against BN at its largest batch (eval mode, paired by seed)"
RECOVERY_RULE = (
    "Reference: BN (batch) in eval mode at the largest value of the batch axis, per seed. Per "
    "norm (and axis value, for norms with batch statistics; the others trained once per seed "
    "serve every value): eval-mode accuracy − the reference's at the same seed (same data "
    "order and initialization seed), mean over seeds; the share is the "
    "norm's mean accuracy as a percentage of the reference's. Claim: it falls short of the "
    "reference. " + DIRECTIONAL_RULE
)


def recovery_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Per run in eval mode: its test accuracy (pp, ``first``) and BN's at the largest
    batch-axis value with the same seed and other factors (``second``), ``difference``, and the
    ``comparison`` name; norms without batch statistics once per run, with no axis value."""
    rows = _eval_rows(df)
    axis, others = batch_axis(df), other_factors(df)
    reference = rows[rows[NORM].eq(REFERENCE_NORM)]
    columns = ["comparison", NORM, *others, axis, SEED, RUN_ID, FIRST, SECOND, DIFFERENCE]
    if reference.empty:
        return pd.DataFrame(columns=[*columns, FIRST_ARM, SECOND_ARM])
    top = int(reference[axis].max())
    keys = [SEED, *others]
    second = reference[reference[axis].eq(top)][[*keys, ACC, ARM]]
    second = second.rename(columns={ACC: SECOND, ARM: SECOND_ARM})
    # a run without an axis value (trained once per seed) counts once, not at every value
    shared = rows[RUN_ID].isin(df.loc[df[axis].isna(), RUN_ID])
    once = rows[shared].drop_duplicates(RUN_ID).assign(**{axis: np.nan})
    runs = pd.concat([rows[~shared], once], ignore_index=True)
    runs = runs[~(runs[NORM].eq(REFERENCE_NORM) & runs[axis].eq(top))]
    pairs = runs.merge(second, on=keys).rename(columns={ACC: FIRST, ARM: FIRST_ARM})
    pairs[DIFFERENCE] = pairs[FIRST] - pairs[SECOND]
    pairs["comparison"] = f"norm − {_reference_name(axis, top)}"
    return pairs[[*columns, FIRST_ARM, SECOND_ARM]]


def _eval_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The ok eval-mode rows with an accuracy (:func:`bnstudy.report.runs_table.accuracy_rows`)."""
    rows = accuracy_rows(df)
    return rows[rows[TEST_MODE].eq(EVAL)]


def recovery_reference(df: pd.DataFrame) -> str:
    """The name of the recovery reference: BN at the largest batch-axis value where it has an
    ok eval-mode result, e.g. ``BatchNorm @ norm batch 32``."""
    axis, rows = batch_axis(df), _eval_rows(df)
    return _reference_name(axis, int(rows.loc[rows[NORM].eq(REFERENCE_NORM), axis].max()))


def _reference_name(axis: str, top: int) -> str:
    """``BatchNorm @ <axis> <top>``: BN at the axis value ``top``."""
    return f"{display_label(REFERENCE_NORM)} @ {AXIS_SHORT[axis]} {top}"


def recovery_table(df: pd.DataFrame, resampler: Resampler | None = None) -> pd.DataFrame:
    """:func:`bnstudy.report.estimates.comparison_table` of :func:`recovery_pairs` per norm, other
    factors and axis value (NaN: every value), in registry order, with ``share`` = first / second in
    percent."""
    pairs = recovery_pairs(df)
    keys = [*series_columns(df), batch_axis(df)]
    table = sort_by(comparison_table(pairs, keys, resampler, chance_level(df)), keys)
    return table.assign(share=100 * table[FIRST] / table[SECOND])


def recovery_findings(df: pd.DataFrame, resampler: Resampler | None = None) -> FindingGroup:
    """Per norm (and axis value): claim it falls short of BN at the largest batch-axis value
    (first − second < 0), paired by seed; notes say where each batch-statistic norm stops
    being shown short."""
    table = recovery_table(df, resampler)
    if table.empty:
        return FindingGroup(RECOVERY_TITLE, RECOVERY_RULE, skipped=recovery_skip(df))
    axis, series = batch_axis(df), series_columns(df)
    reference = recovery_reference(df)
    findings = [_recovery_finding(row, series, axis, reference) for _, row in table.iterrows()]
    return FindingGroup(
        RECOVERY_TITLE,
        RECOVERY_RULE,
        findings,
        annotate=lambda decided: _recovery_notes(table, decided, series, axis),
    )


def _recovery_finding(row: pd.Series, series: list[str], axis: str, reference: str) -> Finding:
    label = display_label(series_labels(row.to_frame().T, series).iloc[0])
    where = (
        "any " + AXIS_SHORT[axis] if pd.isna(row[axis]) else f"{AXIS_SHORT[axis]} {int(row[axis])}"
    )
    finding = difference_finding(
        row,
        f"{label} @ {where}",
        f"falls short of {reference}",
        -1,
        (label, reference),
        finding_key("recovery", cell_key(row, series, axis)),
    )
    return replace(finding, detail=finding.detail + f"; {row['share']:.1f}% of it")


def _recovery_notes(
    table: pd.DataFrame, findings: list[Finding], series: list[str], axis: str
) -> list[str]:
    """Per batch-statistic series: the smallest axis value from which it is not shown short."""
    short = pd.Series([f.verdict == SUPPORTED for f in findings], index=table.index)
    decided = pd.Series(findings, index=table.index)
    labels = series_labels(table, series)
    notes = []
    for series_label in dict.fromkeys(labels[table[axis].notna()]):
        mine, label = table[labels.eq(series_label)], display_label(series_label)
        shown_short, found = short[mine.index], decided[mine.index].tolist()
        values = mine[axis].astype(int).tolist()
        last_short = max((v for v, s in zip(values, shown_short, strict=True) if s), default=None)
        if last_short is None:
            notes.append(f"{label}: not shown short of the reference at any {AXIS_SHORT[axis]}")
        elif last_short == values[-1]:
            notes.append(
                f"{label}: shown short of the reference up to {AXIS_SHORT[axis]} {values[-1]}"
            )
        else:
            first_ok = min(v for v in values if v > last_short)
            above = [f for f, v in zip(found, values, strict=True) if v > last_short]
            how = (
                "equivalent to it" + above[0].verdict.removeprefix(EQUIVALENT)
                if all(f.verdict.startswith(EQUIVALENT) for f in above)
                else "not shown short"
            )
            notes.append(
                f"{label}: shown short up to {AXIS_SHORT[axis]} {last_short}, {how} from "
                f"{first_ok} up"
            )
    return notes


def recovery_skip(df: pd.DataFrame) -> str:
    """Why a study has no recovery comparison."""
    if not df[NORM].eq(REFERENCE_NORM).any():
        return f"the study has no {REFERENCE_NORM} runs to measure recovery against"
    return f"no seed has ok eval-mode results for {REFERENCE_NORM} and another norm"
