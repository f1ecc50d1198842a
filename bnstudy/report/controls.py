"""The study's controls: each batch-statistic norm against the batch-independent norms at the
same seed (BN − control < 0), and the controls check, which must find the batch-independent
norms flat along the batch axis; a drifting control means the batch-size effects are
confounded with something else (:func:`drift_warning`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

import pandas as pd

from bnstudy.norm_catalog import display_label
from bnstudy.report.estimates import (
    cell_key,
    cell_subject,
    chance_level,
    comparison_table,
    control_pairs,
    difference_finding,
    shown_rows,
)
from bnstudy.report.runs_table import (
    ACC,
    ARM,
    AXIS_LABELS,
    AXIS_SHORT,
    OPTIMIZER_COLUMNS,
    batch_axis,
    batch_stat_mask,
    series_columns,
    series_labels,
    sort_by,
)
from bnstudy.report.verdicts import (
    DIRECTIONAL_RULE,
    DRIFT,
    FLAT,
    NOT_APPLICABLE,
    NOT_TESTABLE,
    Finding,
    FindingGroup,
    estimate_finding,
    finding_key,
)
from bnstudy.resampling import Resampler, arm
from bnstudy.results import (
    EVAL,
    NORM,
    OK,
    RUN_ID,
    SEED,
    STATUS,
    TEST_ACC,
    TEST_BATCH,
    TEST_MODE,
    TEST_MODES,
)

CONTROLS_TITLE = "Controls check: batch-independent norms must be flat along the batch axis"
CONTROLS_RULE = (
    "Each batch-independent norm in eval mode, at each value of the batch axis (and optimizer "
    "setup, batch_size × accumulate) against its value at the largest one, paired by seed (a "
    "seed-blocked comparison): drift if the adjusted p-value of no difference is below α, "
    "flat (within ±margin) if the adjusted equivalence p-value is, else not resolved at n; a "
    "non-significant difference is never read as flat. Not applicable when one trained model "
    "per seed serves every value (identical by construction); not testable with fewer than 2 "
    "seeds."
)
NO_CONTROLS = "the study has no batch-independent norm (e.g. group, layer, frozen_bn, none)"
DRIFT_WARNING = (
    "controls drift: the batch-size effects in this study are confounded with something else "
    "(e.g. the optimization budget)"
)


def control_findings(
    df: pd.DataFrame, mode: str = EVAL, resampler: Resampler | None = None
) -> FindingGroup:
    """Per batch-statistic norm in test ``mode`` (eval, or train at the reference test batch),
    control and axis value: claim BN − control < 0, paired by seed."""
    group = f"BN ({mode} mode) below the batch-independent controls (claim BN − control < 0, "
    group += "paired by seed)"
    pairs = control_pairs(df)
    pairs = pairs[pairs["first_mode"].eq(mode)] if not pairs.empty else pairs
    if pairs.empty:
        return FindingGroup(group, DIRECTIONAL_RULE, skipped=_control_skip(df, mode))
    axis, series = batch_axis(df), series_columns(df)
    keys = [*series, axis, "control", "comparison", "setting", "first_mode", TEST_BATCH]
    table = comparison_table(pairs, keys, resampler, chance_level(df))
    table = shown_rows(sort_by(table, [*series, axis]), "first_mode", (EVAL,))
    findings = [
        difference_finding(
            row,
            cell_subject(row, series, axis),
            f"{row['setting']} below {display_label(row['control'])}",
            -1,
            (row[NORM], row["control"]),
            finding_key(
                "control", cell_key(row, series, axis), _setting_key(row), f"vs-{row['control']}"
            ),
        )
        for _, row in table.iterrows()
    ]
    return FindingGroup(group, DIRECTIONAL_RULE, findings)


def _setting_key(row: pd.Series) -> str:
    """A comparison row's first test setting in a key: its mode, or ``train:<test batch>``."""
    mode = row["first_mode"]
    return f"{mode}:{row[TEST_BATCH]}" if TEST_MODES[mode].per_test_batch else mode


def _control_skip(df: pd.DataFrame, mode: str) -> str:
    """Why there is no BN-vs-control comparison in test ``mode``."""
    uses = batch_stat_mask(df)
    if not uses.any():
        return "no norm in the study uses batch statistics"
    if uses.all():
        return NO_CONTROLS
    if not df[TEST_MODE].eq(mode).any():
        return f"the study has no {mode}-mode rows"
    return "no seed has ok results for both a batch-statistic norm and a control"


def _control_checks(
    rows: pd.DataFrame, label: str, axis: str, setup: list[str], resampler: Resampler
) -> list[Finding]:
    """The controls check (CONTROLS_RULE) of one control's ok eval-mode rows (accuracy ``acc``,
    ``arm``): each cell of the batch axis and the optimizer ``setup`` columns against the cell
    at the largest axis value, paired by seed."""
    claim = f"flat along the {AXIS_LABELS[axis]}" + (f" and {', '.join(setup)}" if setup else "")
    key = finding_key("controls", label)
    seeds = int(rows[SEED].nunique())
    if rows[axis].isna().all() and (not setup or rows[setup].nunique().max() <= 1):
        return [
            Finding(label, claim, "", math.nan, math.nan, math.nan, seeds, NOT_APPLICABLE, key=key)
        ]
    cells = dict(tuple(rows.groupby([axis, *setup], dropna=False, sort=True)))
    if len(cells) < 2:
        return [
            Finding(label, claim, "", math.nan, math.nan, math.nan, seeds, NOT_TESTABLE, key=key)
        ]
    *others, top = cells
    reference = cells[top]
    findings = []
    for cell in others:
        pairs = cells[cell].merge(
            reference, on=SEED, suffixes=("", "_reference"), validate="one_to_one"
        )
        name, reference_name = _setup_name(cell, axis, setup), _setup_name(top, axis, setup)
        estimate = resampler.difference(
            f"{key}|{name}",
            (pairs[ARM].tolist(), pairs[ACC].tolist()),
            (pairs[f"{ARM}_reference"].tolist(), pairs[f"{ACC}_reference"].tolist()),
        )
        finding = estimate_finding(
            estimate,
            subject=f"{display_label(label)} @ {name}",
            claim=claim,
            measure=f"{name} − {reference_name}",
            detail=f"{name} {pairs[ACC].mean():.1f}%, {reference_name} "
            f"{pairs[f'{ACC}_reference'].mean():.1f}%",
            key=finding_key("controls", label, name),
            margin=resampler.margin,
            words=(FLAT, DRIFT),
        )
        findings.append(finding if estimate.n >= 2 else replace(finding, verdict=NOT_TESTABLE))
    return findings


def _setup_name(cell: tuple, axis: str, setup: list[str]) -> str:
    """``norm batch 4[, accumulate 2]``: a cell of the controls check."""
    values = cell if isinstance(cell, tuple) else (cell,)
    parts = [] if pd.isna(values[0]) else [f"{AXIS_SHORT[axis]} {int(values[0])}"]
    parts += [f"{column} {int(value)}" for column, value in zip(setup, values[1:], strict=True)]
    return ", ".join(parts)


def controls_check(df: pd.DataFrame, resampler: Resampler | None = None) -> FindingGroup:
    """The controls check (CONTROLS_RULE), per batch-independent norm (and other non-optimizer
    factors) in eval mode, across the batch axis and the optimizer setups (batch_size, accumulate)
    it was trained with; call on the table as loaded, before
    :func:`bnstudy.report.runs_table.along_axis`."""
    group = CONTROLS_TITLE
    ok = df[df[STATUS].eq(OK) & df[TEST_MODE].eq(EVAL) & df[TEST_ACC].notna()]
    rows = ok[~batch_stat_mask(ok)]
    rows = rows.assign(
        **{
            ACC: 100 * rows[TEST_ACC],
            ARM: [arm(r, EVAL) for r in rows[RUN_ID]],
        }
    )
    if rows.empty:
        return FindingGroup(group, CONTROLS_RULE, skipped=_controls_skip(df))
    axis = batch_axis(df)
    series = [c for c in series_columns(df) if c not in OPTIMIZER_COLUMNS]
    setup = [c for c in series_columns(df) if c in OPTIMIZER_COLUMNS]
    labels = series_labels(rows, series)
    findings = [
        finding
        for label in series_labels(sort_by(rows[series].drop_duplicates(), series), series)
        for finding in _control_checks(
            rows[labels.eq(label)], label, axis, setup, resampler or Resampler(None)
        )
    ]
    return FindingGroup(group, CONTROLS_RULE, findings)


def _controls_skip(df: pd.DataFrame) -> str:
    """Why the controls check has nothing to check."""
    if batch_stat_mask(df).all():
        return NO_CONTROLS
    return "no batch-independent norm has an ok eval-mode result"


def drift_warning(groups: Iterable[FindingGroup]) -> str | None:
    """DRIFT_WARNING naming the drifting controls, or None if no control drifts."""
    drifting = [f.subject for g in groups for f in g.findings if f.verdict == DRIFT]
    return f"{DRIFT_WARNING}. Drifting: {', '.join(drifting)}." if drifting else None
