"""Findings and their verdicts: a :class:`Finding` states a claim with a direction (or claims
equality) and carries the p-values of its two tests from the same bootstrap replicates (the
difference from 0 and the equivalence within ±margin); :class:`FindingGroup` collects the
findings of one type. :func:`adjust` adjusts their p-values for multiple testing (Holm over the
primary claims the study names, Benjamini–Hochberg over the rest) and decides each verdict on
the adjusted p-values (:func:`decide`); :func:`method_text` says how, :func:`claim_sentence`
writes a decided finding as a sentence. The claim families are in bnstudy.report.recovery,
.modes, .controls, .noise and .flips; bnstudy.report.findings assembles them.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from bnstudy.analysis_config import AnalysisConfig
from bnstudy.stats import Estimate, benjamini_hochberg, holm

SUPPORTED, CONTRADICTED = "supported", "contradicted"
EQUIVALENT = "equivalent"  # within ±margin, by two one-sided tests
FLAT, DRIFT = "flat", "drift"  # the controls check's words for equal and different
NOT_APPLICABLE = "not applicable: one trained model per seed serves every value"
NOT_TESTABLE = "not testable"
PP, POINTS, TIMES, NUMBER = "pp", "points", "×", "number"  # signed pp, pp, ratio, signed
METHOD = (
    "Uncertainty from a two-level bootstrap ({resamples} replicates, random seed {seed}; "
    "analysis.bootstrap_resamples, analysis.bootstrap_seed): each replicate draws the seeds "
    "(or runs) and the test images with replacement, one draw of images shared by every seed "
    "and by both arms of a comparison (seeds and images are crossed: Owen 2007, the "
    "pigeonhole bootstrap); where a run's predictions were not stored, seeds only. Its "
    "standard error × √(n/(n−1)) gives t statistics with n − 1 degrees of freedom (n = seeds "
    "or pairs): 95% intervals (cut at 0 and 100 for accuracies), p = two-sided p-value of no "
    "difference, p≡ = equivalence within ±{margin} pp (two one-sided tests, "
    "analysis.equivalence_margin; ±{slope_margin} for the noise exponent). Multiple testing: "
    "Holm over the primary claims ({primary}), Benjamini–Hochberg over all other findings, "
    "both tests of a finding in its family, which counts at most one true null per finding; "
    "verdicts use the adjusted p-values (adj) at α = "
    "{alpha}. An equivalence verdict at α is the 90% interval inside ±margin: a 95% interval "
    "may reach past it."
)
DIRECTIONAL_RULE = (
    "Verdict: supported if the adjusted p-value of no difference is below α and the estimate "
    "has the claimed sign, contradicted if it has the other sign; else equivalent within "
    "±margin if the adjusted equivalence p-value is below α; else not resolved at n = number "
    "of pairs."
)
DEFAULT_ANALYSIS = AnalysisConfig()


@dataclass(frozen=True)
class Finding:
    """One line of findings: ``subject: claim: measure = estimate [low, high], n → verdict``.

    ``estimate``, ``low`` and ``high`` are in ``unit`` (NaN: not shown); ``detail`` carries the
    numbers behind the estimate in words. ``key`` names the finding for ``analysis.primary``
    (e.g. ``recovery/batch@1``). A testable finding carries its raw p-values: ``pvalue`` of no
    difference from ``null`` and ``pvalue_equivalent`` of equivalence within ``null ± margin``;
    ``direction`` is the claimed sign of estimate − null (+1, −1) or 0 for a claim of equality;
    ``words`` are the verdicts for (as claimed, the opposite): supported/contradicted, or for a
    claim of equality e.g. flat/drift. :func:`adjust` fills the adjusted p-values and
    ``primary``, and :func:`decide` the verdict; a finding without p-values keeps its own."""

    subject: str
    claim: str
    measure: str
    estimate: float
    low: float
    high: float
    n: int
    verdict: str = ""
    unit: str = PP
    detail: str = ""
    key: str = ""
    direction: int = 0
    null: float = 0.0
    margin: float = math.nan
    pvalue: float = math.nan
    pvalue_equivalent: float = math.nan
    adjusted: float = math.nan
    adjusted_equivalent: float = math.nan
    primary: bool = False
    words: tuple[str, str] = (SUPPORTED, CONTRADICTED)

    @property
    def testable(self) -> bool:
        """Whether the finding has a p-value to adjust."""
        return not (math.isnan(self.pvalue) and math.isnan(self.pvalue_equivalent))

    def interval(self) -> str:
        """``estimate unit [low, high]``, e.g. ``-2.6 pp [-5.6, +0.4]``; without the bounds when
        they are NaN; empty when the estimate is."""
        if math.isnan(self.estimate):
            return ""
        text = _number(self.estimate, self.unit) + _unit_suffix(self.unit)
        if not math.isnan(self.low):
            text += f" [{_number(self.low, self.unit)}, {_number(self.high, self.unit)}]"
        return text

    def pvalues(self) -> str:
        """``p = raw (adj adjusted); p≡ = raw (adj adjusted)`` for the tests it has."""
        parts = []
        for name, raw, adjusted in (
            ("p", self.pvalue, self.adjusted),
            ("p≡", self.pvalue_equivalent, self.adjusted_equivalent),
        ):
            if not math.isnan(raw):
                parts.append(f"{name} {_p(raw)} (adj {_p(adjusted).removeprefix('= ')})")
        return "; ".join(parts)

    def describe(self) -> str:
        """The line without its verdict."""
        text = f"{self.subject}: {self.claim}"
        if self.interval():
            text += f": {self.measure} = {self.interval()}"
        text += f", n = {self.n}"
        if self.pvalues():
            text += f"; {self.pvalues()}"
        return text + (f" ({self.detail})" if self.detail else "")


def _p(value: float) -> str:
    """``= 0.012`` (2 significant digits), ``< 0.001`` below that, ``= –`` if NaN: a p-value
    after its name."""
    if math.isnan(value):
        return "= –"
    return "< 0.001" if value < 0.001 else f"= {value:.2g}"


def estimate_finding(estimate: Estimate, **fields: object) -> Finding:
    """A testable finding from a bootstrap :class:`bnstudy.stats.Estimate` and the other
    :class:`Finding` fields."""
    return Finding(
        estimate=estimate.mean,
        low=estimate.low,
        high=estimate.high,
        n=estimate.n,
        pvalue=estimate.pvalue,
        pvalue_equivalent=estimate.pvalue_equivalent,
        **fields,
    )


def decide(finding: Finding, alpha: float) -> str:
    """The verdict of a testable finding from its adjusted p-values: for a directional claim
    the first of (as claimed / the opposite, by the estimate's sign, if the difference is
    significant), ``equivalent within ±margin``, ``not resolved at n``; for a claim of equality
    ``words[0] (within ±margin)`` if equivalent, ``words[1]`` if different, else not resolved.
    A finding without p-values keeps its verdict."""
    if not finding.testable:
        return finding.verdict or f"not resolved at n = {finding.n}"
    differs = finding.adjusted < alpha
    equivalent = finding.adjusted_equivalent < alpha
    within = f"within {_margin_text(finding.margin, finding.unit)}"
    as_claimed, opposite = finding.words
    if finding.direction:
        if differs:
            side = math.copysign(1, finding.estimate - finding.null)
            return as_claimed if side == finding.direction else opposite
        if equivalent:
            return f"{EQUIVALENT} {within}"
    else:
        if equivalent:
            return f"{as_claimed} ({within})"
        if differs:
            return opposite
    return f"not resolved at n = {finding.n}"


def _margin_text(margin: float, unit: str) -> str:
    """``±1.0 pp``, ``±0.10``: an equivalence margin in ``unit``."""
    if unit in (PP, POINTS):
        return f"±{margin:.1f} pp"
    return f"±{margin:.2f}{_unit_suffix(unit)}"


def adjust(groups: list[FindingGroup], analysis: AnalysisConfig) -> list[FindingGroup]:
    """The groups with every testable finding's p-values adjusted and its verdict decided:
    findings whose key matches a pattern of ``analysis.primary`` are primary and adjusted by
    Holm (family-wise error), the others by Benjamini–Hochberg (false discovery rate). Both
    tests of a finding (difference, equivalence) are members of its family, so the error rate
    holds over every verdict the family can give; as at most one of a finding's two nulls is
    true (no difference lies within the margin), the family counts its findings, not its tests,
    as the most true nulls (Shaffer 1986). Then each group's notes are written from its
    decided findings."""
    found = [(g, i, f) for g, group in enumerate(groups) for i, f in enumerate(group.findings)]
    primary = np.array(
        [any(fnmatch.fnmatchcase(f.key, p) for p in analysis.primary) for _, _, f in found],
        dtype=bool,
    )
    raw = np.array([(f.pvalue, f.pvalue_equivalent) for _, _, f in found], dtype=float)
    adjusted = np.full(raw.shape, np.nan)
    for members, method in ((primary, holm), (~primary, benjamini_hochberg)):
        claims = int((~np.isnan(raw[members])).any(axis=1).sum())  # one true null each at most
        adjusted[members] = method(raw[members].ravel(), claims).reshape(-1, 2)
    decided = [list(group.findings) for group in groups]
    for index, (g, i, finding) in enumerate(found):
        finding = replace(
            finding,
            primary=bool(primary[index]),
            adjusted=float(adjusted[index, 0]),
            adjusted_equivalent=float(adjusted[index, 1]),
        )
        decided[g][i] = replace(finding, verdict=decide(finding, analysis.alpha))
    return [
        replace(group, findings=mine, notes=group.annotate(mine) if group.annotate else group.notes)
        for group, mine in zip(groups, decided, strict=True)
    ]


@dataclass(frozen=True)
class FindingGroup:
    """The findings of one type under a heading, with the rule their verdicts follow, notes
    (interpretation lines), or why there are none. ``annotate`` writes the notes from the
    decided findings (:func:`adjust`), where they depend on the verdicts."""

    title: str
    rule: str
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str = ""
    annotate: Callable[[list[Finding]], list[str]] | None = None


def _number(value: float, unit: str) -> str:
    """A number in ``unit``: signed pp or pp with 1 decimal, a ratio or a plain number with 2
    decimals (a plain number signed)."""
    if unit == PP:
        return f"{value:+.1f}"
    if unit == NUMBER:
        return f"{value:+.2f}"
    return f"{value:.1f}" if unit == POINTS else f"{value:.2f}"


def _unit_suffix(unit: str) -> str:
    """What follows a number in ``unit``: `` pp``, ``×`` or nothing (a plain number)."""
    return {TIMES: "×", NUMBER: ""}.get(unit, " pp")


def finding_key(family: str, *parts: object) -> str:
    """``family/part/part``: a finding's key, without spaces (``recovery/batch@1``)."""
    return "/".join([family, *(str(p).replace(", ", ",").replace(" ", "") for p in parts)])


def method_text(analysis: AnalysisConfig, groups: Iterable[FindingGroup] = ()) -> str:
    """How the intervals, tests and adjustments were computed (METHOD) for ``analysis``, and
    the patterns of ``analysis.primary`` that match no finding of ``groups`` (a typo would
    otherwise leave the primary family silently empty)."""
    primary = ", ".join(analysis.primary) if analysis.primary else "none declared"
    keys = [f.key for group in groups for f in group.findings]
    unmatched = [p for p in analysis.primary if not any(fnmatch.fnmatchcase(k, p) for k in keys)]
    text = METHOD.format(
        resamples=analysis.bootstrap_resamples,
        seed=analysis.bootstrap_seed,
        margin=analysis.equivalence_margin,
        slope_margin=analysis.noise_slope_margin,
        primary=primary,
        alpha=analysis.alpha,
    )
    if unmatched:
        text += f" Primary patterns that match no finding: {', '.join(unmatched)}."
    return text


def claim_sentence(finding: Finding) -> str:
    """A decided finding in one sentence: where, the claim, the estimate with its interval,
    the adjusted p-value of the test that decided it (equivalence for a verdict within a
    margin) and the verdict."""
    within = "within ±" in finding.verdict
    test = finding.adjusted_equivalent if within else finding.adjusted
    name = "equivalence p" if within else "p"
    adjusted = f", adjusted {name} {_p(test)}" if not math.isnan(test) else ""
    measured = f": {finding.interval()}" if finding.interval() else ""
    return (
        f"{finding.subject} {finding.claim}{measured} (n = {finding.n}{adjusted}) → "
        f"{finding.verdict}"
    )
