"""What a sweep's runs table supports: the batch axis, paired comparisons, the controls check,
and findings with verdicts.

The batch axis is the column a study varies batch size along: ``norm_batch_size`` (samples per
BN statistic, ghost batch norm) when it takes several values among the runs of norms that use
batch statistics and is not just their batch_size, else ``batch_size`` (an optimizer-batch
study, and every table from before ``norm_batch_size``). Norms without batch statistics leave
``norm_batch_size`` empty: one trained model per seed serves every value, so
:func:`along_axis` repeats its rows at each one.

Comparisons are paired where the design pairs them, accuracies in percentage points (pp):

- test modes of one trained model (same run_id): eval − train, precise − eval, precise − train;
- a batch-statistic norm against a batch-independent one (a control) at the same seed, axis
  value and other factors (same data order and initialization seed).

Each comparison is the mean of the per-pair differences with a 95% bootstrap interval that
resamples seeds and test images, pairing both (:mod:`bnstudy.resampling`), and two tests from
the same replicates: the difference from 0 and the equivalence within ±margin. A
:class:`Finding` states a claim with a direction (or claims equality); :func:`build_findings`
collects them in :class:`FindingGroup` s, one per type, adjusts their p-values for multiple
testing (:func:`adjust`: Holm over the primary claims the study names, Benjamini–Hochberg over
the rest) and decides each verdict on the adjusted p-values (:func:`decide`);
:func:`findings_markdown` writes them out.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from itertools import combinations, product

import numpy as np
import pandas as pd

from bnstudy.analysis_config import AnalysisConfig
from bnstudy.norm_catalog import ordered_norms, uses_batch_statistics
from bnstudy.resampling import DEFAULT_BOOTSTRAP, Resampler, arm, arms_of
from bnstudy.results import OK, TEST_MODES, counts_text
from bnstudy.stats import (
    DIFFERENCE,
    FIRST,
    SECOND,
    Bootstrap,
    Estimate,
    benjamini_hochberg,
    bootstrap_estimate,
    holm,
    paired_difference,
    replicate_estimate,
)

# Vocabulary of runs.csv (the outcomes, ok and the failures, are in bnstudy.results).
EVAL, TRAIN, PRECISE, SAME = "eval", "train", "precise", "same"
NORM_BATCH_SIZE, BATCH_SIZE = "norm_batch_size", "batch_size"
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
BATCH_COLUMNS = (BATCH_SIZE, NORM_BATCH_SIZE, "accumulate")
OPTIMIZER_COLUMNS = (BATCH_SIZE, "accumulate")  # what a control's training depends on
# A swept (dotted) column whose last key is one of these copies a base column: never a factor.
ALIAS_KEYS = ("norm", BATCH_SIZE, NORM_BATCH_SIZE, "accumulate", "seed")
ACC = "acc"  # test accuracy in percent, added by accuracy_rows
EPOCH, STEP, SAMPLE = "epoch", "step", "sample"  # units of a run's length (training_budget)
ROW = "_row"  # along_axis: a row's position, while its axis values are looked up
SETTING_COLUMNS = ("test_mode", "test_batch")  # a test setting
# Diagnostics measured before training (bnstudy.diagnostics): they count for failed runs too.
PRE_TRAINING = ("min_values_per_stat", "init_zero_fraction", "init_output_std")

# Verdicts and rules.
SUPPORTED, CONTRADICTED = "supported", "contradicted"
EQUIVALENT = "equivalent"  # within ±margin, by two one-sided tests
FLAT, DRIFT = "flat", "drift"  # the controls check's words for equal and different
NOT_APPLICABLE = "not applicable: one trained model per seed serves every value"
NOT_TESTABLE = "not testable"
AT_CHANCE_MARGIN = 5.0  # pp: a seed within this of chance (100 / classes) is stuck at chance
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
CONTROLS_RULE = (
    "Each batch-independent norm in eval mode, at each value of the batch axis (and optimizer "
    "setup, batch_size × accumulate) against its value at the largest one, paired by seed (a "
    "seed-blocked comparison): drift if the adjusted p-value of no difference is below α, "
    "flat (within ±margin) if the adjusted equivalence p-value is, else not resolved at n; a "
    "non-significant difference is never read as flat. Not applicable when one trained model "
    "per seed serves every value (identical by construction); not testable with fewer than 2 "
    "seeds."
)
NOISE_RULE = (
    "Per batch-statistic norm: the exponent of batch-mean noise (bn_mean_noise) in images per "
    "statistic, the slope of log noise against log images over all runs (least squares), "
    "resampling seeds (every run of a drawn seed); supported (equivalent to −0.5 within "
    "±{slope_margin}) if the adjusted equivalence p-value is below α, contradicted if the "
    "adjusted p-value of slope = −0.5 is, else not resolved. Independent images predict −0.5; "
    "so does the 1/√values law at a fixed image size, which differs in level: the second "
    "claim compares, per run at 2 or more images, how far (|log ratio|) the measurement lies "
    "from each prediction, averaged per seed: supported if it lies closer to the between-image "
    "prediction (difference < 0). " + DIRECTIONAL_RULE
)
FLIP_RULE = (
    "Baseline of a run: the mean, over the other seeds of its cell, of the fraction of test "
    "images whose predictions in the same test setting differ from its own (what training "
    "randomness alone changes). Difference = the run's train-mode flip rate − its baseline, "
    "mean over the runs of the cell; resampled by seed (a drawn seed against the other "
    "distinct seeds drawn) and by test image (shared by flips and disagreements). Test batches "
    "of one image are left out (nothing else in the batch: no flip by construction). "
    + DIRECTIONAL_RULE
)
CONTROLS_TITLE = "Controls check: batch-independent norms must be flat along the batch axis"
DRIFT_WARNING = (
    "controls drift: the batch-size effects in this study are confounded with something else "
    "(e.g. the optimization budget)"
)
NOISE_COLUMNS = ("bn_mean_noise", "bn_mean_noise_between_images", "bn_mean_noise_values_law")
BETWEEN_RATIO, VALUES_RATIO = "between_ratio", "values_ratio"
BASELINE = "baseline"
FLIP_TITLE = "Flip rate vs seed-to-seed disagreement (claim flip − baseline < 0)"
DEFAULT_ANALYSIS = AnalysisConfig()
ARM = "arm"  # accuracy_rows: the run's test setting, as bnstudy.resampling.arm names it

Predictions = Callable[[str], dict[str, list[int]] | None]  # run_id -> predictions per label


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


# ---------------------------------------------------------------------------------------------
# The runs table: batch axis, factors, order.


def uses_batch_stats(norm: object) -> bool:
    """Whether the norm named ``norm`` normalizes with batch statistics (the BN family); the
    others compute the same thing at every batch size and are the study's controls."""
    return uses_batch_statistics(norm)


def batch_stat_mask(df: pd.DataFrame) -> pd.Series:
    """Per row of ``df``, whether its norm uses batch statistics (:func:`uses_batch_stats`), as
    a bool Series: ``df[mask]`` selects rows even when ``df`` is empty (an empty mask of object
    dtype would select columns)."""
    return df["norm"].map(uses_batch_stats).astype(bool)


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
    missing = df[batch_axis(df)].isna().groupby(df["norm"]).all()
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
        if all(df.groupby(key)[col].nunique().max() > 1 for key in ("norm", axis))
    ]


def series_columns(df: pd.DataFrame) -> list[str]:
    """Columns whose values make one plotted line: the norm plus any other factor."""
    return ["norm", *other_factors(df)]


def series_labels(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Label per row: the norm, then ``key=value`` for each other factor."""
    labels = frame[columns[0]].astype(str)
    for col in columns[1:]:
        labels = labels + f", {col}=" + frame[col].astype(str)
    return labels


def _sort_key(col: pd.Series) -> pd.Series:
    """Sort key per column: norms in registry order (others after, alphabetically), test batches
    as the modes evaluated once (eval < precise < adabn) < same < 1 < 2 < ..., anything else by
    value."""
    if col.name == "norm":
        order = ordered_norms(col.dropna())
        return pd.Series(pd.Categorical(col, categories=order, ordered=True), index=col.index)
    if col.name == "test_batch":
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
    per_run = df.drop_duplicates("run_id")["status"].value_counts()
    return f"{df['run_id'].nunique()} runs: {counts_text(per_run)}; {len(df)} rows"


def measured(df: pd.DataFrame, column: str) -> pd.Series:
    """The values of ``column`` that count: on every row for the PRE_TRAINING diagnostics, on
    ok rows only (NaN elsewhere) for everything else."""
    return df[column] if column in PRE_TRAINING else df[column].where(df["status"].eq(OK))


def ordered_settings(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The distinct test settings (test_mode, test_batch) of ``frame``, in order eval, precise,
    ..., train at the same batch, then at each numeric test batch."""
    settings = frame[list(SETTING_COLUMNS)].dropna().drop_duplicates()
    return list(sort_by(settings, ["test_batch"]).itertuples(index=False, name=None))


def setting_names(df: pd.DataFrame) -> list[str]:
    """The names (:func:`setting_name`) of the test settings in the table (:func:`ordered_settings`
    order)."""
    axis = batch_axis(df)
    return [setting_name(m, b, axis) for m, b in ordered_settings(df)]


def training_budget(epochs: int, steps: float | None, samples: float | None) -> tuple[int, str]:
    """What sets a run's length, as (amount, unit): ``steps`` optimizer steps or ``samples``
    training samples when set (they replace epochs, bnstudy.config.TrainConfig), else
    ``epochs`` passes over the training split. None and NaN are unset."""
    for amount, unit in ((steps, STEP), (samples, SAMPLE)):
        if amount is not None and not pd.isna(amount):
            return int(amount), unit
    return int(epochs), EPOCH


def count_text(count: object, noun: str) -> str:
    """``count noun`` with an s unless the count is ``1`` (``1 epoch``, ``4 steps``, ``1, 2
    epochs``); empty without a count."""
    text = str(count)
    return f"{text} {noun}{'' if text == '1' else 's'}" if text else ""


def design_text(df: pd.DataFrame) -> str:
    """Run counts, norms, batch-axis values, seeds, test settings, and which norms one trained
    model per seed serves at every axis value (call before :func:`along_axis`); just the counts
    for a table without rows."""
    if df.empty:
        return f"{counts_line(df)}: no run has finished yet."
    axis = batch_axis(df)
    seeds = sorted(int(s) for s in df["seed"].dropna().unique())
    text = (
        f"{counts_line(df)}. Norms: {', '.join(ordered_norms(df['norm'].dropna()))}; "
        f"{AXIS_LABELS[axis]}: {', '.join(map(str, axis_values(df)))}; "
        f"seeds: {', '.join(map(str, seeds))}; test settings: {', '.join(setting_names(df))}."
    )
    shared = shared_norms(df)
    if shared and axis == NORM_BATCH_SIZE:
        text += (
            f" {', '.join(shared)}: no batch statistics, so one trained model per seed serves "
            "every normalization batch size; its results are repeated at each value."
        )
    return text


# Provenance columns of runs.csv (bnstudy.store) that tell environments apart: float results
# are bit-identical only with the same device, kernels, versions and precision.
ENVIRONMENT_COLUMNS = ("device_name", "torch", "device", "cuda", "cpu_capability", "precision")


def environments(df: pd.DataFrame) -> list[tuple[str, int]]:
    """The distinct environments the runs computed in, in order of appearance, each with its
    number of runs: ``<device name> (torch <version>, CUDA <version> | <ISA> kernels,
    <precision>)``; CUDA for GPU runs, torch's CPU kernel set for CPU runs, and each part only
    where the table records it (older tables have device name and torch only)."""
    columns = [col for col in ENVIRONMENT_COLUMNS if col in df.columns]
    if not {"device_name", "torch"} <= set(columns):
        return []
    runs = df.drop_duplicates("run_id").dropna(subset=["device_name", "torch"])
    keys = runs[columns].astype(object).where(runs[columns].notna(), None)
    labels = [_environment_label(dict(zip(columns, row, strict=True))) for row in keys.values]
    counts = pd.Series(labels, dtype=object).value_counts(sort=False)
    return list(counts.items())


def _environment_label(env: dict[str, object]) -> str:
    on_gpu = str(env.get("device") or "").startswith("cuda")
    parts = [f"torch {env['torch']}"]
    if on_gpu and env.get("cuda"):
        parts.append(f"CUDA {env['cuda']}")
    if not on_gpu and env.get("cpu_capability"):
        parts.append(f"{env['cpu_capability']} kernels")
    if env.get("precision"):
        parts.append(str(env["precision"]))
    return f"{env['device_name']} ({', '.join(parts)})"


# ---------------------------------------------------------------------------------------------
# Paired comparisons.


def accuracy_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The ok rows with a test accuracy, on the batch axis, with ``acc`` (test accuracy in
    percent), ``setting`` (:func:`setting_name`) and ``arm`` (the run's test setting, whose
    stored predictions :mod:`bnstudy.resampling` reads)."""
    df = along_axis(df)
    axis = batch_axis(df)
    ok = df[df["status"].eq(OK) & df["test_acc"].notna()]
    names = [
        setting_name(m, b, axis) for m, b in zip(ok["test_mode"], ok["test_batch"], strict=True)
    ]
    arms = arms_of(ok)
    return ok.assign(**{ACC: 100 * ok["test_acc"], "setting": names, ARM: arms})


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
        "test_batch": train_side[1],
    }


def mode_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Per run of a batch-statistic norm and axis value: test accuracy (pp) in one test setting
    minus another (:func:`_mode_comparisons`), with ``first``, ``second``, ``difference`` and the
    columns of :func:`_comparison_columns`."""
    rows = accuracy_rows(df)
    rows = rows[batch_stat_mask(rows)]
    axis = batch_axis(df)
    keys = ["run_id", "seed", *series_columns(df), axis]
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
    keys = ["seed", axis, *other_factors(df)]
    uses = batch_stat_mask(rows)
    controls = rows[~uses & rows["test_mode"].eq(EVAL)]
    frames = []
    for setting, norm, control in product(
        ordered_settings(rows[uses]),
        ordered_norms(rows.loc[uses, "norm"]),
        ordered_norms(controls.norm),
    ):
        name = setting_name(*setting, axis)
        bn = rows[rows["norm"].eq(norm) & rows["setting"].eq(name)]
        pairs = paired_difference(
            pd.concat([bn, controls]), "norm", ACC, keys, (norm, control), ARM
        )
        columns = _comparison_columns(setting, (EVAL, EVAL), axis)
        columns["comparison"] = f"{norm} ({name}) − {control}"
        frames.append(pairs.assign(norm=norm, control=control, **columns))
    return _concat(frames, keys)


def _concat(frames: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    """The frames stacked, or an empty frame with the pair columns if there are none."""
    if not frames:
        return pd.DataFrame(columns=[*keys, FIRST, SECOND, DIFFERENCE, "comparison"])
    return pd.concat(frames, ignore_index=True)


FIRST_ARM, SECOND_ARM = f"{FIRST}_{ARM}", f"{SECOND}_{ARM}"  # pair columns: each side's arm
ESTIMATE_COLUMNS = ("mean", "ci_low", "ci_high", "n", "pvalue", "pvalue_equivalent", "images")
CHANCE_COLUMNS = (
    f"{FIRST}_at_chance",
    f"{SECOND}_at_chance",
    f"{FIRST}_median",
    f"{SECOND}_median",
)


def chance_level(df: pd.DataFrame) -> float:
    """Chance accuracy in percent, 100 / the fewest classes in the table; NaN if unknown."""
    if "num_classes" not in df.columns or df["num_classes"].isna().all():
        return math.nan
    return 100 / float(df["num_classes"].min())


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


# ---------------------------------------------------------------------------------------------
# Findings.


def _where(row: pd.Series, series: list[str], axis: str) -> str:
    """``<norm>[, key=value] @ <axis> <value>`` for a row of a comparison table."""
    label = series_labels(row.to_frame().T, series).iloc[0]
    return f"{label} @ {AXIS_SHORT[axis]} {int(row[axis])}"


def _cell(row: pd.Series, series: list[str], axis: str) -> str:
    """``<norm>[,key=value]@<axis value>`` (``@any`` without one): a cell in a finding key."""
    label = series_labels(row.to_frame().T, series).iloc[0]
    return f"{label}@{'any' if pd.isna(row[axis]) else int(row[axis])}"


def finding_key(family: str, *parts: object) -> str:
    """``family/part/part``: a finding's key, without spaces (``recovery/batch@1``)."""
    return "/".join([family, *(str(p).replace(", ", ",").replace(" ", "") for p in parts)])


def _difference_finding(
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


def _second(row: pd.Series) -> str:
    """The name of the second setting of a comparison-table row."""
    return row["comparison"].split(" − ", 1)[1]


def _modes(row: pd.Series) -> tuple[str, str]:
    """The test modes a within-run comparison-table row compares."""
    return row["first_mode"], row["second_mode"]


def _mode_table(df: pd.DataFrame, resampler: Resampler | None = None) -> pd.DataFrame:
    """:func:`comparison_table` of :func:`mode_pairs` per series, axis value and comparison,
    sorted by series and axis value."""
    series = [*series_columns(df), batch_axis(df)]
    keys = [*series, "comparison", "first_mode", "second_mode", "test_batch"]
    table = comparison_table(mode_pairs(df), keys, resampler, chance_level(df))
    return sort_by(table, series)


def eval_collapse_findings(df: pd.DataFrame, resampler: Resampler | None = None) -> FindingGroup:
    """Per batch-statistic norm, axis value and train-mode test batch: claim eval − train < 0
    (the eval-mode collapse), paired per run."""
    group = "Eval-mode collapse: BN eval mode below train mode (claim eval − train < 0, per run)"
    table = _mode_table(df, resampler)
    rows = table[table["first_mode"].eq(EVAL) & table["second_mode"].eq(TRAIN)]
    if rows.empty:
        return FindingGroup(group, DIRECTIONAL_RULE, skipped=_mode_skip(df, TRAIN))
    series, axis = series_columns(df), batch_axis(df)
    findings = [
        _difference_finding(
            row,
            _where(row, series, axis),
            f"eval mode below {_second(row)}",
            -1,
            _modes(row),
            finding_key("collapse", _cell(row, series, axis), row["test_batch"]),
        )
        for _, row in rows.iterrows()
    ]
    return FindingGroup(group, DIRECTIONAL_RULE, findings)


def _mode_skip(df: pd.DataFrame, mode: str) -> str:
    """Why no batch-statistic norm has a within-run comparison with ``mode``."""
    if not batch_stat_mask(df).any():
        return "no norm in the study uses batch statistics"
    if not df["test_mode"].eq(mode).any():
        return f"the study has no {mode}-mode rows"
    return f"no ok run of a batch-statistic norm has both eval-mode and {mode}-mode results"


def _shown(table: pd.DataFrame, mode_column: str, modes: tuple[str, ...]) -> pd.DataFrame:
    """Rows of a comparison table whose ``mode_column`` is one of ``modes`` or train mode at the
    reference test batch: ``same`` (the normalization batch) if present, else the first."""
    trains = table.loc[table[mode_column].eq(TRAIN), "test_batch"]
    ranked = sorted(trains.unique(), key=test_batch_rank)
    reference = SAME if SAME in ranked else next(iter(ranked), None)
    at_reference = table[mode_column].eq(TRAIN) & table["test_batch"].eq(reference)
    return table[table[mode_column].isin(modes) | at_reference]


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
    keys = [*series, axis, "control", "comparison", "setting", "first_mode", "test_batch"]
    table = comparison_table(pairs, keys, resampler, chance_level(df))
    table = _shown(sort_by(table, [*series, axis]), "first_mode", (EVAL,))
    findings = [
        _difference_finding(
            row,
            _where(row, series, axis),
            f"{row['setting']} below {row['control']}",
            -1,
            (row["norm"], row["control"]),
            finding_key(
                "control", _cell(row, series, axis), _setting_key(row), f"vs-{row['control']}"
            ),
        )
        for _, row in table.iterrows()
    ]
    return FindingGroup(group, DIRECTIONAL_RULE, findings)


def _setting_key(row: pd.Series) -> str:
    """A comparison row's first test setting in a key: its mode, or ``train:<test batch>``."""
    mode = row["first_mode"]
    return f"{mode}:{row['test_batch']}" if TEST_MODES[mode].per_test_batch else mode


def _control_skip(df: pd.DataFrame, mode: str) -> str:
    """Why there is no BN-vs-control comparison in test ``mode``."""
    uses = batch_stat_mask(df)
    if not uses.any():
        return "no norm in the study uses batch statistics"
    if uses.all():
        return "the study has no batch-independent norm (group, instance, layer, none)"
    if not df["test_mode"].eq(mode).any():
        return f"the study has no {mode}-mode rows"
    return "no seed has ok results for both a batch-statistic norm and a control"


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
    reference = rows[rows["norm"].eq(REFERENCE_NORM)]
    columns = ["comparison", "norm", *others, axis, "seed", "run_id", FIRST, SECOND, DIFFERENCE]
    if reference.empty:
        return pd.DataFrame(columns=[*columns, FIRST_ARM, SECOND_ARM])
    top = int(reference[axis].max())
    keys = ["seed", *others]
    second = reference[reference[axis].eq(top)][[*keys, ACC, ARM]]
    second = second.rename(columns={ACC: SECOND, ARM: SECOND_ARM})
    # a run without an axis value (trained once per seed) counts once, not at every value
    shared = rows["run_id"].isin(df.loc[df[axis].isna(), "run_id"])
    once = rows[shared].drop_duplicates("run_id").assign(**{axis: np.nan})
    runs = pd.concat([rows[~shared], once], ignore_index=True)
    runs = runs[~(runs["norm"].eq(REFERENCE_NORM) & runs[axis].eq(top))]
    pairs = runs.merge(second, on=keys).rename(columns={ACC: FIRST, ARM: FIRST_ARM})
    pairs[DIFFERENCE] = pairs[FIRST] - pairs[SECOND]
    pairs["comparison"] = f"norm − {_reference_name(axis, top)}"
    return pairs[[*columns, FIRST_ARM, SECOND_ARM]]


def _eval_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The ok eval-mode rows with an accuracy (:func:`accuracy_rows`)."""
    rows = accuracy_rows(df)
    return rows[rows["test_mode"].eq(EVAL)]


def recovery_reference(df: pd.DataFrame) -> str:
    """The name of the recovery reference: BN at the largest batch-axis value where it has an
    ok eval-mode result, e.g. ``batch @ norm batch 32``."""
    axis, rows = batch_axis(df), _eval_rows(df)
    return _reference_name(axis, int(rows.loc[rows["norm"].eq(REFERENCE_NORM), axis].max()))


def _reference_name(axis: str, top: int) -> str:
    """``batch @ <axis> <top>``: BN at the axis value ``top``."""
    return f"{REFERENCE_NORM} @ {AXIS_SHORT[axis]} {top}"


def recovery_table(df: pd.DataFrame, resampler: Resampler | None = None) -> pd.DataFrame:
    """:func:`comparison_table` of :func:`recovery_pairs` per norm, other factors and axis value
    (NaN: every value), in registry order, with ``share`` = first / second in percent."""
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
    label = series_labels(row.to_frame().T, series).iloc[0]
    where = (
        "any " + AXIS_SHORT[axis] if pd.isna(row[axis]) else f"{AXIS_SHORT[axis]} {int(row[axis])}"
    )
    finding = _difference_finding(
        row,
        f"{label} @ {where}",
        f"falls short of {reference}",
        -1,
        (label, reference),
        finding_key("recovery", _cell(row, series, axis)),
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
    for label in dict.fromkeys(labels[table[axis].notna()]):
        mine = table[labels.eq(label)]
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
    if not df["norm"].eq(REFERENCE_NORM).any():
        return f"the study has no {REFERENCE_NORM} runs to measure recovery against"
    return f"no seed has ok eval-mode results for {REFERENCE_NORM} and another norm"


def _control_checks(
    rows: pd.DataFrame, label: str, axis: str, setup: list[str], resampler: Resampler
) -> list[Finding]:
    """The controls check (CONTROLS_RULE) of one control's ok eval-mode rows (accuracy ``acc``,
    ``arm``): each cell of the batch axis and the optimizer ``setup`` columns against the cell
    at the largest axis value, paired by seed."""
    claim = f"flat along the {AXIS_LABELS[axis]}" + (f" and {', '.join(setup)}" if setup else "")
    key = finding_key("controls", label)
    seeds = int(rows["seed"].nunique())
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
            reference, on="seed", suffixes=("", "_reference"), validate="one_to_one"
        )
        name, reference_name = _setup_name(cell, axis, setup), _setup_name(top, axis, setup)
        estimate = resampler.difference(
            f"{key}|{name}",
            (pairs[ARM].tolist(), pairs[ACC].tolist()),
            (pairs[f"{ARM}_reference"].tolist(), pairs[f"{ACC}_reference"].tolist()),
        )
        finding = estimate_finding(
            estimate,
            subject=f"{label} @ {name}",
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
    factors) in eval mode, across the batch axis and the optimizer setups (batch_size,
    accumulate) it was trained with; call on the table as loaded, before :func:`along_axis`."""
    group = CONTROLS_TITLE
    ok = df[df["status"].eq(OK) & df["test_mode"].eq(EVAL) & df["test_acc"].notna()]
    rows = ok[~batch_stat_mask(ok)]
    rows = rows.assign(
        **{
            ACC: 100 * rows["test_acc"],
            ARM: [arm(r, EVAL) for r in rows["run_id"]],
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
        return "the study has no batch-independent norm (group, instance, layer, none)"
    return "no batch-independent norm has an ok eval-mode result"


def drift_warning(groups: Iterable[FindingGroup]) -> str | None:
    """DRIFT_WARNING naming the drifting controls, or None if no control drifts."""
    drifting = [f.subject for g in groups for f in g.findings if f.verdict == DRIFT]
    return f"{DRIFT_WARNING}. Drifting: {', '.join(drifting)}." if drifting else None


ESTIMATORS = {  # eval.precise_variance -> what precise mode's variance is
    "population": "population variance (mean of batch variances + variance of batch means)",
    "batch_average": "average of per-batch variances (what the running average converges to)",
}


def precise_estimator(df: pd.DataFrame) -> str:
    """Which variance estimator the table's precise/adabn rows used (eval.precise_variance),
    in words; tables from before it was recorded used the average of per-batch variances."""
    rows = df[df["test_mode"].isin([PRECISE, "adabn"])]
    if "precise_variance" not in df.columns or rows["precise_variance"].isna().all():
        return ESTIMATORS["batch_average"] + ", as every run before bnstudy recorded it"
    names = [str(name) for name in rows["precise_variance"].dropna().unique()]
    return "; ".join(ESTIMATORS.get(name, name) for name in sorted(names))


def precise_findings(df: pd.DataFrame, resampler: Resampler | None = None) -> FindingGroup:
    """Per batch-statistic norm and axis value: claim precise − eval > 0 (PreciseBN recovers the
    eval-mode collapse) and precise − train < 0 (at the reference train-mode test batch), paired
    per run, with a one-line interpretation per norm at its smallest axis value."""
    group = (
        "PreciseBN: population statistics recomputed with frozen weights (estimator: "
        f"{precise_estimator(df)})"
    )
    table = _mode_table(df, resampler)
    rows = _shown(table[table["first_mode"].eq(PRECISE)], "second_mode", (EVAL,))
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
    subject, cell = _where(row, series, axis), _cell(row, series, axis)
    if row["second_mode"] == EVAL:
        claim = "precise recovers the eval-mode collapse"
        key = finding_key("precise", cell, "vs-eval")
        return _difference_finding(row, subject, claim, 1, _modes(row), key)
    claim = f"precise stays below {_second(row)}"
    key = finding_key("precise", cell, f"vs-train:{row['test_batch']}")
    return _difference_finding(row, subject, claim, -1, _modes(row), key)


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
        where = f"{label} @ {AXIS_SHORT[axis]} {int(smallest[axis].iloc[0])}"
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


PREDICTED_EXPONENT = -0.5  # noise of a mean over k independent images ∝ k^(−1/2)


def noise_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """One row per ok run of a batch-statistic norm with noise measurements: series columns, the
    axis value, ``seed``, ``images`` (per statistic in the noise measurement: noise_images,
    else the axis value), the measured noise (``bn_mean_noise``), ``between_ratio`` =
    bn_mean_noise / between-image prediction and ``values_ratio`` = bn_mean_noise / values-law
    prediction."""
    df = along_axis(df)
    series, axis = series_columns(df), batch_axis(df)
    runs = df[df["status"].eq(OK) & batch_stat_mask(df)].drop_duplicates("run_id")
    runs = runs.dropna(subset=list(NOISE_COLUMNS))
    measured, between, values = (runs[col] for col in NOISE_COLUMNS)
    images = runs["noise_images"] if "noise_images" in runs else pd.Series(np.nan, runs.index)
    return runs[[*series, axis, "seed", NOISE_COLUMNS[0]]].assign(
        images=images.fillna(runs[axis]),
        **{BETWEEN_RATIO: measured / between, VALUES_RATIO: measured / values},
    )


def noise_findings(
    df: pd.DataFrame,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    slope_margin: float = DEFAULT_ANALYSIS.noise_slope_margin,
) -> FindingGroup:
    """Per batch-statistic norm (and other factors): the exponent of its batch-mean noise in
    images per statistic, and whether its level follows the between-image prediction rather
    than the values law (NOISE_RULE)."""
    group = "Noise law: BN batch-mean noise follows 1/√images, not 1/√values"
    rule = NOISE_RULE.format(slope_margin=slope_margin)
    present = all(col in df.columns for col in NOISE_COLUMNS)
    ratios = noise_ratios(df) if present else pd.DataFrame()
    if ratios.empty:
        reason = f"no ok run of a batch-statistic norm has values of {', '.join(NOISE_COLUMNS)}"
        return FindingGroup(group, rule, skipped=reason)
    labels = series_labels(ratios, series_columns(df))
    findings = []
    for label in dict.fromkeys(labels):
        runs = ratios[labels.eq(label)]
        findings.append(_exponent_finding(runs, label, bootstrap, slope_margin))
        findings.append(_level_finding(runs[runs["images"].gt(1)], label, bootstrap))
    return FindingGroup(group, rule, findings)


def _exponent_finding(
    runs: pd.DataFrame, label: str, bootstrap: Bootstrap, margin: float
) -> Finding:
    """The log-log slope of measured noise against images per statistic over ``runs``, with
    seeds resampled (every run of a drawn seed), tested against −0.5. Each number of images
    is its own trained network: the slope is across networks, as the study varies them."""
    runs = runs[runs[NOISE_COLUMNS[0]].gt(0)]
    x, y = np.log(runs["images"].to_numpy(float)), np.log(runs[NOISE_COLUMNS[0]].to_numpy(float))
    seeds, seed_index = np.unique(runs["seed"].to_numpy(), return_inverse=True)
    key = finding_key("noise", label, "exponent")
    fields = dict(
        subject=label,
        claim=f"noise ∝ images^{PREDICTED_EXPONENT:+.1f}",
        measure="slope of log noise vs log images per statistic",
        unit=NUMBER,
        key=key,
        null=PREDICTED_EXPONENT,
        margin=margin,
        detail=_noise_levels(runs),
    )
    if np.unique(x).size < 2 or seeds.size < 2:
        return Finding(
            estimate=math.nan,
            low=math.nan,
            high=math.nan,
            n=int(seeds.size),
            verdict=NOT_TESTABLE,
            **fields,
        )
    rng = bootstrap.rng(key)
    counts = rng.multinomial(seeds.size, np.full(seeds.size, 1 / seeds.size), bootstrap.resamples)
    replicates = _weighted_slopes(x, y, counts[:, seed_index])
    slope = float(_weighted_slopes(x, y, np.ones((1, x.size)))[0])
    estimate = replicate_estimate(
        slope, replicates, bootstrap, int(seeds.size), 1, PREDICTED_EXPONENT, margin
    )
    return estimate_finding(estimate, **fields)


def _weighted_slopes(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Least-squares slopes of y on x, one per row of ``weights`` (NaN where x does not vary
    among the weighted points)."""
    total = weights.sum(1, keepdims=True)
    x_mean, y_mean = (weights @ x)[:, None] / total, (weights @ y)[:, None] / total
    spread = (weights * (x - x_mean) ** 2).sum(1)
    covariance = (weights * (x - x_mean) * (y - y_mean)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(spread > 1e-12, covariance / spread, np.nan)


def _noise_levels(runs: pd.DataFrame) -> str:
    """``mean noise 0.310 at 1 → 0.060 at 32``: the measured noise at the fewest and the most
    images per statistic."""
    means = runs.groupby("images")[NOISE_COLUMNS[0]].mean()
    if means.empty:
        return ""
    first, last = means.index[0], means.index[-1]
    return f"mean noise {means[first]:.3f} at {int(first)} → {means[last]:.3f} at {int(last)}"


def _level_finding(runs: pd.DataFrame, label: str, bootstrap: Bootstrap) -> Finding:
    """Whether measured noise lies closer (in |log ratio|) to the between-image prediction
    than to the values law, per seed averaged over its runs at 2 or more images."""
    ratios = runs[[BETWEEN_RATIO, VALUES_RATIO]].astype(float)
    runs = runs[(ratios > 0).all(axis=1) & np.isfinite(ratios).all(axis=1)]
    closer = np.abs(np.log(runs[BETWEEN_RATIO])) - np.abs(np.log(runs[VALUES_RATIO]))
    per_seed = closer.groupby(runs["seed"]).mean()
    key = finding_key("noise", label, "level")
    estimate = bootstrap_estimate(per_seed.to_numpy(), bootstrap, key)
    between, values = (np.exp(np.log(runs[col]).mean()) for col in (BETWEEN_RATIO, VALUES_RATIO))
    return estimate_finding(
        estimate,
        subject=label,
        claim="its level follows independent images, not independent values",
        measure="|log(measured / between-image)| − |log(measured / values law)|",
        unit=NUMBER,
        key=key,
        direction=-1,
        detail=(
            f"measured / between-image prediction {between:.2f}×, / values law {values:.2f}× "
            "(geometric means over runs at 2 or more images)"
        ),
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
    keys = [*series_columns(df), batch_axis(df), "test_batch"]
    runs = df[df["status"].eq(OK) & df["test_mode"].eq(TRAIN)]
    loaded = {run_id: read_predictions(run_id) for run_id in runs["run_id"].unique()}
    rows = []
    for cell, group in runs.groupby(keys, dropna=False, sort=False):
        label = cell[-1]
        found = {r: loaded[r][label] for r in group["run_id"] if loaded[r] and label in loaded[r]}
        for run_id, rate in run_disagreement(found).items():
            rows.append((*cell, run_id, 100 * rate, len(found) - 1))
    return pd.DataFrame(rows, columns=[*keys, "run_id", BASELINE, "pairs"])


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
    train = df[df["status"].eq(OK) & df["test_mode"].eq(TRAIN) & batch_stat_mask(df)]
    if "test_batch_size" in train.columns:
        train = train[train["test_batch_size"].ne(1)]
    train = train.dropna(subset=["test_flip_rate"]).merge(
        baseline, on=[*series, axis, "test_batch", "run_id"]
    )
    if train.empty:
        return FindingGroup(group, FLIP_RULE, skipped=_flip_skip(df, baseline))
    resampler = resampler or Resampler(None)
    keys = [*series, axis, "test_batch"]
    findings = []
    for _, cell in sort_by(train, keys).groupby(keys, sort=False, dropna=False):
        row = cell.iloc[0]
        key = finding_key("flip", _cell(row, series, axis), row["test_batch"])
        arms = arms_of(cell)
        estimate = resampler.flip_excess(arms, (100 * cell["test_flip_rate"]).tolist())
        means = (100 * cell["test_flip_rate"].mean(), cell[BASELINE].mean())
        findings.append(_flip_finding(row, estimate, means, series, axis, key))
    return FindingGroup(group, FLIP_RULE, findings)


def _flip_skip(df: pd.DataFrame, baseline: pd.DataFrame) -> str:
    """Why there is no flip-rate finding."""
    if baseline.empty:
        return "no cell has stored train-mode predictions (predictions.json) of 2 seeds"
    if not df["test_mode"].eq(TRAIN).any():
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
    setting = setting_name(TRAIN, row["test_batch"], axis)
    return estimate_finding(
        estimate,
        subject=_where(row, series, axis),
        claim=f"reshuffling test batches ({setting}) flips fewer predictions than changing "
        "the seed",
        measure="flip − baseline",
        detail=f"flip {means[0]:.1f}%, seeds disagree on {means[1]:.1f}%",
        key=key,
        direction=-1,
    )


def build_findings(
    df: pd.DataFrame,
    baseline: pd.DataFrame | None = None,
    resampler: Resampler | None = None,
    analysis: AnalysisConfig = DEFAULT_ANALYSIS,
) -> list[FindingGroup]:
    """All finding groups of a runs table as loaded (before :func:`along_axis`), in order:
    recovery against BN at its largest batch, eval-mode collapse, BN vs controls in eval and in
    train mode, controls check, PreciseBN, noise law, and flip rate against the seed-to-seed
    ``baseline`` (:func:`flip_baseline`; skipped without one); p-values adjusted and verdicts
    decided by ``analysis`` (:func:`adjust`). ``resampler`` reads the runs' stored predictions
    (seeds only without one). Every group is skipped, saying so, when no run is ok (a sweep
    that has just started, or whose runs all failed)."""
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
    if df["status"].eq(OK).any():
        return adjust(groups, analysis)
    skipped = f"no ok runs ({counts_line(df)})"
    return [FindingGroup(group.title, group.rule, skipped=skipped) for group in groups]


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


def answer(groups: list[FindingGroup]) -> list[str]:
    """The study's answer in a few sentences: each primary claim (:func:`claim_sentence`);
    where BN stops reaching its own large-batch accuracy (the recovery notes of ``batch``); and
    the best batch-independent alternative, by its mean, against BN at its largest batch."""
    found = [f for g in groups for f in g.findings]
    lines = [f"Primary: {claim_sentence(f)}" for f in found if f.primary]
    recovery = next((g for g in groups if g.title == RECOVERY_TITLE and not g.skipped), None)
    if recovery is None:
        return lines
    lines += [
        f"Where BN breaks (eval mode): {note}"
        for note in recovery.notes
        if note.split(":")[0].split(",")[0] == REFERENCE_NORM
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
