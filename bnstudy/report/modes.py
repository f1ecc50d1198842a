"""Test modes compared within one trained model, per batch-statistic norm and axis value:
the eval-mode collapse (eval − train < 0) and PreciseBN (precise − eval > 0, precise − train
< 0), paired per run, with a one-line interpretation per norm of what eval mode loses."""

from __future__ import annotations

import pandas as pd

from bnstudy.norm_catalog import display_label
from bnstudy.report.estimates import (
    cell_key,
    cell_subject,
    compared_modes,
    difference_finding,
    mode_table,
    second_name,
    shown_rows,
)
from bnstudy.report.runs_table import (
    AXIS_SHORT,
    batch_axis,
    batch_stat_mask,
    series_columns,
    series_labels,
)
from bnstudy.report.verdicts import (
    CONTRADICTED,
    DIRECTIONAL_RULE,
    EQUIVALENT,
    SUPPORTED,
    Finding,
    FindingGroup,
    finding_key,
)
from bnstudy.resampling import Resampler
from bnstudy.results import ADABN, EVAL, PRECISE, PRECISE_VARIANCE, TEST_BATCH, TEST_MODE, TRAIN

ESTIMATORS = {  # eval.precise_variance -> what precise mode's variance is
    "population": "population variance (mean of batch variances + variance of batch means)",
    "batch_average": "average of per-batch variances (what the running average converges to)",
}


def eval_collapse_findings(df: pd.DataFrame, resampler: Resampler | None = None) -> FindingGroup:
    """Per batch-statistic norm, axis value and train-mode test batch: claim eval − train < 0
    (the eval-mode collapse), paired per run."""
    group = "Eval-mode collapse: BN eval mode below train mode (claim eval − train < 0, per run)"
    table = mode_table(df, resampler)
    rows = table[table["first_mode"].eq(EVAL) & table["second_mode"].eq(TRAIN)]
    if rows.empty:
        return FindingGroup(group, DIRECTIONAL_RULE, skipped=_mode_skip(df, TRAIN))
    series, axis = series_columns(df), batch_axis(df)
    findings = [
        difference_finding(
            row,
            cell_subject(row, series, axis),
            f"eval mode below {second_name(row)}",
            -1,
            compared_modes(row),
            finding_key("collapse", cell_key(row, series, axis), row[TEST_BATCH]),
        )
        for _, row in rows.iterrows()
    ]
    return FindingGroup(group, DIRECTIONAL_RULE, findings)


def _mode_skip(df: pd.DataFrame, mode: str) -> str:
    """Why no batch-statistic norm has a within-run comparison with ``mode``."""
    if not batch_stat_mask(df).any():
        return "no norm in the study uses batch statistics"
    if not df[TEST_MODE].eq(mode).any():
        return f"the study has no {mode}-mode rows"
    return f"no ok run of a batch-statistic norm has both eval-mode and {mode}-mode results"


def precise_estimator(df: pd.DataFrame) -> str:
    """Which variance estimator the table's precise/adabn rows used (eval.precise_variance),
    in words; tables from before it was recorded used the average of per-batch variances."""
    rows = df[df[TEST_MODE].isin([PRECISE, ADABN])]
    if PRECISE_VARIANCE not in df.columns or rows[PRECISE_VARIANCE].isna().all():
        return ESTIMATORS["batch_average"] + ", as every run before bnstudy recorded it"
    names = [str(name) for name in rows[PRECISE_VARIANCE].dropna().unique()]
    return "; ".join(ESTIMATORS.get(name, name) for name in sorted(names))


def precise_findings(df: pd.DataFrame, resampler: Resampler | None = None) -> FindingGroup:
    """Per batch-statistic norm and axis value: claim precise − eval > 0 (PreciseBN recovers the
    eval-mode collapse) and precise − train < 0 (at the reference train-mode test batch), paired
    per run, with a one-line interpretation per norm at its smallest axis value."""
    group = (
        "PreciseBN: population statistics recomputed with frozen weights (estimator: "
        f"{precise_estimator(df)})"
    )
    table = mode_table(df, resampler)
    rows = shown_rows(table[table["first_mode"].eq(PRECISE)], "second_mode", (EVAL,))
    if rows.empty:
        return FindingGroup(group, DIRECTIONAL_RULE, skipped=_mode_skip(df, PRECISE))
    series, axis = series_columns(df), batch_axis(df)
    findings = [_precise_finding(row, series, axis) for _, row in rows.iterrows()]
    return FindingGroup(
        group,
        DIRECTIONAL_RULE,
        findings,
        annotate=lambda decided: _precise_notes(rows, decided, series, axis),
    )


def _precise_finding(row: pd.Series, series: list[str], axis: str) -> Finding:
    """precise − eval (claim > 0) or precise − train (claim < 0) of one table row."""
    subject, cell = cell_subject(row, series, axis), cell_key(row, series, axis)
    if row["second_mode"] == EVAL:
        claim = "precise recovers the eval-mode collapse"
        key = finding_key("precise", cell, "vs-eval")
        return difference_finding(row, subject, claim, 1, compared_modes(row), key)
    claim = f"precise stays below {second_name(row)}"
    key = finding_key("precise", cell, f"vs-train:{row[TEST_BATCH]}")
    return difference_finding(row, subject, claim, -1, compared_modes(row), key)


def _precise_notes(
    rows: pd.DataFrame, decided: list[Finding], series: list[str], axis: str
) -> list[str]:
    """Per series, :func:`_interpret` of its decided precise findings at its smallest axis
    value."""
    found_at = pd.Series(decided, index=rows.index)
    notes = []
    for label, cell in rows.groupby(series_labels(rows, series), sort=False):
        smallest = cell[cell[axis].eq(cell[axis].min())]
        found = {row["second_mode"]: found_at[i] for i, row in smallest.iterrows()}
        where = f"{display_label(label)} @ {AXIS_SHORT[axis]} {int(smallest[axis].iloc[0])}"
        notes.append(f"{where}: {_interpret(found.get(EVAL), found.get(TRAIN))}")
    return notes


def _interpret(recover: Finding | None, below: Finding | None) -> str:
    """What the decided precise − eval (``recover``) and precise − train (``below``) findings
    say about eval mode's loss, each only as far as its verdict goes."""
    sentences = []
    if recover is not None:
        if recover.verdict == SUPPORTED:
            sentences.append(
                f"population statistics recover {recover.estimate:.1f} pp over the running "
                "average: part of eval mode's loss is in the running (EMA) statistics"
            )
        elif recover.verdict.startswith(EQUIVALENT):
            sentences.append(
                "population statistics do no better than the running average "
                f"({recover.verdict}): the EMA is not what loses accuracy"
            )
        elif recover.verdict == CONTRADICTED:
            sentences.append(
                f"population statistics are {-recover.estimate:.1f} pp worse than the running "
                "average"
            )
    if below is not None:
        if below.verdict == SUPPORTED:
            sentences.append(
                f"even population statistics stay {-below.estimate:.1f} pp below train mode: "
                "the network relies on statistics that differ between its training batches "
                "and the population (train/test inconsistency)"
            )
        elif below.verdict.startswith(EQUIVALENT):
            sentences.append(f"population statistics match train mode ({below.verdict})")
        elif below.verdict == CONTRADICTED:
            sentences.append(f"population statistics beat train mode by {below.estimate:.1f} pp")
    if not sentences:
        n = min((f.n for f in (recover, below) if f is not None), default=0)
        return f"not resolved at n = {n}."
    return "; ".join(sentences) + "."
