"""All findings of a study: :func:`build_findings` collects the claim families in
:class:`bnstudy.report.verdicts.FindingGroup` s, one per type (recovery, eval-mode collapse, BN
against the controls, the controls check, PreciseBN, noise law, flip rate), adjusts their
p-values and decides their verdicts; :func:`answer` says what they answer in a few sentences
and :func:`findings_markdown` writes them out as findings.md."""

from __future__ import annotations

import math

import pandas as pd

from bnstudy.analysis_config import AnalysisConfig
from bnstudy.norm_catalog import display_label
from bnstudy.report.controls import control_findings, controls_check, drift_warning
from bnstudy.report.flips import FLIP_RULE, FLIP_TITLE, flip_findings
from bnstudy.report.modes import eval_collapse_findings, precise_findings
from bnstudy.report.noise import noise_findings
from bnstudy.report.recovery import RECOVERY_TITLE, REFERENCE_NORM, recovery_findings
from bnstudy.report.runs_table import counts_line
from bnstudy.report.verdicts import (
    DEFAULT_ANALYSIS,
    Finding,
    FindingGroup,
    adjust,
    claim_sentence,
)
from bnstudy.resampling import Resampler
from bnstudy.results import EVAL, OK, STATUS, TRAIN
from bnstudy.stats import Bootstrap


def build_findings(
    df: pd.DataFrame,
    baseline: pd.DataFrame | None = None,
    resampler: Resampler | None = None,
    analysis: AnalysisConfig = DEFAULT_ANALYSIS,
) -> list[FindingGroup]:
    """All finding groups of a runs table as loaded (before
    :func:`bnstudy.report.runs_table.along_axis`), in order: recovery against BN at its largest
    batch, eval-mode collapse, BN vs controls in eval and in train mode, controls check, PreciseBN,
    noise law, and flip rate against the seed-to-seed ``baseline``
    (:func:`bnstudy.report.flips.flip_baseline`; skipped without one); p-values adjusted and
    verdicts decided by ``analysis`` (:func:`bnstudy.report.verdicts.adjust`). ``resampler`` reads
    the runs' stored predictions (seeds only without one). Every group is skipped, saying so, when
    no run is ok (a sweep that has just started, or whose runs all failed)."""
    if resampler is None:
        resampler = Resampler(
            None,
            Bootstrap(analysis.bootstrap_resamples, analysis.bootstrap_seed),
            analysis.equivalence_margin,
        )
    groups = [
        recovery_findings(df, resampler),
        eval_collapse_findings(df, resampler),
        control_findings(df, EVAL, resampler),
        control_findings(df, TRAIN, resampler),
        controls_check(df, resampler),
        precise_findings(df, resampler),
        noise_findings(df, resampler.bootstrap, analysis.noise_slope_margin),
    ]
    if baseline is None:
        groups.append(FindingGroup(FLIP_TITLE, FLIP_RULE, skipped="no predictions were read"))
    else:
        groups.append(flip_findings(df, baseline, resampler))
    if df[STATUS].eq(OK).any():
        return adjust(groups, analysis)
    skipped = f"no ok runs ({counts_line(df)})"
    return [FindingGroup(group.title, group.rule, skipped=skipped) for group in groups]


def answer(groups: list[FindingGroup]) -> list[str]:
    """The study's answer in a few sentences: each primary claim
    (:func:`bnstudy.report.verdicts.claim_sentence`); where BN stops reaching its own large-batch
    accuracy (the recovery notes of ``batch``); and the best batch-independent alternative, by its
    mean, against BN at its largest batch."""
    found = [f for g in groups for f in g.findings]
    lines = [f"Primary: {claim_sentence(f)}" for f in found if f.primary]
    recovery = next((g for g in groups if g.title == RECOVERY_TITLE and not g.skipped), None)
    if recovery is None:
        return lines
    lines += [
        f"Where BN breaks (eval mode): {note}"
        for note in recovery.notes
        if note.split(":")[0].split(",")[0] == display_label(REFERENCE_NORM)
    ]
    alternatives = [
        f for f in recovery.findings if f.key.endswith("@any") and not math.isnan(f.estimate)
    ]
    if alternatives:
        best = max(alternatives, key=lambda f: f.estimate)
        lines.append(
            "Best batch-independent alternative (the highest mean, picked after the fact: its "
            f"interval is optimistic): {claim_sentence(best)}"
        )
    return lines


def findings_markdown(
    title: str,
    intro: str,
    groups: list[FindingGroup],
    method: str = "",
    completeness: str = "",
) -> str:
    """findings.md: title, the controls-drift warning if any control drifts, ``completeness``
    (planned against present runs), ``intro`` (what was run), the answer (:func:`answer`),
    ``method`` (how intervals, tests and adjustments were computed), then per group a heading,
    its rule, one line per finding with its key, raw and adjusted p-values and verdict, and the
    notes (or why the group is empty)."""
    lines = [f"# {title}", ""]
    warning = drift_warning(groups)
    if warning:
        lines += [f"> **Warning — {warning}**", ""]
    if completeness:
        lines += [completeness, ""]
    lines += [intro, ""]
    summary = answer(groups)
    if summary:
        lines += ["## The answer", "", *(f"- {line}" for line in summary), ""]
    if method:
        lines += ["## How intervals and verdicts are computed", "", method, ""]
    for group in groups:
        lines += [f"## {group.title}", "", group.rule, ""]
        if group.skipped:
            lines += [f"Skipped: {group.skipped}.", ""]
            continue
        lines += [_markdown_line(f) for f in group.findings]
        lines += ["", *(f"*{note}*" for note in group.notes), ""] if group.notes else [""]
    return "\n".join(lines).rstrip() + "\n"


def _markdown_line(finding: Finding) -> str:
    """One finding in findings.md: the line, its verdict, its key (primary ones marked)."""
    key = f" `{finding.key}`" if finding.key else ""
    return f"- {finding.describe()} → **{finding.verdict}**{key}" + (
        " (primary)" if finding.primary else ""
    )
