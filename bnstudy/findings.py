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

Each comparison is the per-pair difference, its mean and 95% t-interval over pairs
(:mod:`bnstudy.stats`). A :class:`Finding` states a claim with a direction and gets a verdict
(:func:`verdict`); :func:`build_findings` collects them in :class:`FindingGroup` s, one per type,
and :func:`findings_markdown` writes them out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from itertools import combinations, product

import numpy as np
import pandas as pd

from bnstudy.norms import NORMS, uses_batch_statistics
from bnstudy.outcomes import OK, counts_text
from bnstudy.stats import (
    DIFFERENCE,
    FIRST,
    SECOND,
    interval_table,
    one_way_anova,
    paired_difference,
    t_interval,
)
from bnstudy.test_modes import TEST_MODES

# Vocabulary of runs.csv (the outcomes, ok and the failures, are in bnstudy.outcomes).
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
FLAT, DRIFT, NOT_TESTABLE = "no drift detected", "drift", "not testable"
FLAT_BY_CONSTRUCTION = "flat by construction"
ONE_MODEL = "one trained model per seed serves every value"
ALPHA = 0.05  # controls check: drift if the ANOVA p-value is below this
NOISE_BAND = (0.67, 1.5)  # noise law: a prediction fits if the ratio's interval lies within
PP, POINTS, TIMES = "pp", "points", "×"  # signed difference, unsigned pp, ratio
DIRECTIONAL_RULE = (
    "Verdict: supported if the 95% t-interval of the paired difference excludes 0 in the "
    "claimed direction, contradicted if it excludes 0 in the other direction, else not "
    "resolved at n = number of pairs."
)
CONTROLS_RULE = (
    "Each batch-independent norm, eval mode: one-way ANOVA of test accuracy across the values "
    "of the batch axis (and the optimizer setups, batch_size × accumulate, where a study has "
    f"several) with seeds as replicates; drift if p < {ALPHA}, else no drift detected (at a "
    "few seeds only large drifts are detected: read the range); not testable if there is one "
    "value or every value has fewer than 2 seeds; flat by construction if one trained model per "
    "seed serves every value. Range = max − min of the per-value means."
)
NOISE_RULE = (
    "Per run, the measured noise of BN batch means (bn_mean_noise) divided by each prediction; "
    "mean and 95% t-interval over the seeds at each normalization batch size of 2 or more (at "
    "1 image per batch the between-image prediction is the measurement itself). Supported if "
    "the between-image ratio's interval lies "
    f"within [{NOISE_BAND[0]}, {NOISE_BAND[1]}] and the values-law ratio's interval lies above "
    f"{NOISE_BAND[1]}; contradicted if the between-image ratio's interval lies entirely outside "
    f"[{NOISE_BAND[0]}, {NOISE_BAND[1]}]; else not resolved."
)
FLIP_RULE = (
    "Baseline of a run: the mean, over the other seeds of its cell, of the fraction of test "
    "images whose predictions in the same test setting differ from its own (what training "
    "randomness alone changes). Difference = the run's train-mode flip rate − its baseline; "
    "interval over runs (the runs share seeds, so it is somewhat narrow). Test batches of one "
    "image are left out (nothing else in the batch: no flip by construction). " + DIRECTIONAL_RULE
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

Predictions = Callable[[str], dict[str, list[int]] | None]  # run_id -> predictions per label


@dataclass(frozen=True)
class Finding:
    """One line of findings: ``subject: claim: measure = estimate [low, high], n → verdict``.

    ``estimate``, ``low`` and ``high`` are in ``unit`` (NaN: not shown); ``detail`` carries the
    numbers behind the estimate in words."""

    subject: str
    claim: str
    measure: str
    estimate: float
    low: float
    high: float
    n: int
    verdict: str
    unit: str = PP
    detail: str = ""

    def interval(self) -> str:
        """``estimate unit [low, high]``, e.g. ``-2.6 pp [-5.6, +0.4]``; without the bounds when
        they are NaN; empty when the estimate is."""
        if math.isnan(self.estimate):
            return ""
        text = _number(self.estimate, self.unit) + _unit_suffix(self.unit)
        if not math.isnan(self.low):
            text += f" [{_number(self.low, self.unit)}, {_number(self.high, self.unit)}]"
        return text

    def describe(self) -> str:
        """The line without its verdict."""
        text = f"{self.subject}: {self.claim}"
        if self.interval():
            text += f": {self.measure} = {self.interval()}"
        text += f", n = {self.n}"
        return text + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class FindingGroup:
    """The findings of one type under a heading, with the rule their verdicts follow, notes
    (interpretation lines), or why there are none."""

    title: str
    rule: str
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str = ""


def _number(value: float, unit: str) -> str:
    """A number in ``unit``: signed pp or pp with 1 decimal, a ratio with 2 decimals."""
    if unit == PP:
        return f"{value:+.1f}"
    return f"{value:.1f}" if unit == POINTS else f"{value:.2f}"


def _unit_suffix(unit: str) -> str:
    """What follows a number in ``unit``: `` pp`` or ``×``."""
    return "×" if unit == TIMES else " pp"


# ---------------------------------------------------------------------------------------------
# The runs table: batch axis, factors, order.


def uses_batch_stats(norm: object) -> bool:
    """Whether the norm named ``norm`` normalizes with batch statistics (the BN family); the
    others compute the same thing at every batch size and are the study's controls."""
    return isinstance(norm, str) and uses_batch_statistics(norm)


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


def ordered_norms(norms: Iterable[str]) -> list[str]:
    """Distinct ``norms`` in registry order, unknown names after them alphabetically."""
    present = set(norms)
    return [n for n in NORMS if n in present] + sorted(present - set(NORMS))


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
    percent) and ``setting`` (:func:`setting_name`)."""
    df = along_axis(df)
    axis = batch_axis(df)
    ok = df[df["status"].eq(OK) & df["test_acc"].notna()]
    names = [
        setting_name(m, b, axis) for m, b in zip(ok["test_mode"], ok["test_batch"], strict=True)
    ]
    return ok.assign(**{ACC: 100 * ok["test_acc"], "setting": names})


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
            rows, "setting", ACC, keys, (setting_name(*a, axis), setting_name(*b, axis))
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
        pairs = paired_difference(pd.concat([bn, controls]), "norm", ACC, keys, (norm, control))
        columns = _comparison_columns(setting, (EVAL, EVAL), axis)
        columns["comparison"] = f"{norm} ({name}) − {control}"
        frames.append(pairs.assign(norm=norm, control=control, **columns))
    return _concat(frames, keys)


def _concat(frames: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    """The frames stacked, or an empty frame with the pair columns if there are none."""
    if not frames:
        return pd.DataFrame(columns=[*keys, FIRST, SECOND, DIFFERENCE, "comparison"])
    return pd.concat(frames, ignore_index=True)


def comparison_table(pairs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per ``keys`` group of ``pairs``: the mean, std, n and t-interval (``ci_low``,
    ``ci_high``) of the difference, and the means of ``first`` and ``second``."""
    if pairs.empty:
        return pd.DataFrame(columns=[*keys, "mean", "std", "n", "ci_low", "ci_high", FIRST, SECOND])
    intervals = interval_table(pairs, DIFFERENCE, keys)
    means = pairs.groupby(keys, dropna=False, sort=False)[[FIRST, SECOND]].mean().reset_index()
    return intervals.merge(means, on=keys)


# ---------------------------------------------------------------------------------------------
# Findings.


def verdict(low: float, high: float, direction: int, n: int) -> str:
    """``supported`` if the interval [low, high] excludes 0 on the side of ``direction`` (+1:
    the claim is difference > 0, −1: < 0), ``contradicted`` if it excludes 0 on the other side,
    else ``not resolved at n = <n>`` (also when the bounds are NaN)."""
    if direction * low > 0 and direction * high > 0:
        return SUPPORTED
    if direction * low < 0 and direction * high < 0:
        return CONTRADICTED
    return f"not resolved at n = {n}"


def _where(row: pd.Series, series: list[str], axis: str) -> str:
    """``<norm>[, key=value] @ <axis> <value>`` for a row of a comparison table."""
    label = series_labels(row.to_frame().T, series).iloc[0]
    return f"{label} @ {AXIS_SHORT[axis]} {int(row[axis])}"


def _difference_finding(
    row: pd.Series, subject: str, claim: str, direction: int, names: tuple[str, str]
) -> Finding:
    """A finding from a row of :func:`comparison_table`: ``claim`` is that first − second has
    the sign of ``direction``; ``names`` name the first and the second."""
    first, second = names
    return Finding(
        subject=subject,
        claim=claim,
        measure=f"{first} − {second}",
        estimate=row["mean"],
        low=row["ci_low"],
        high=row["ci_high"],
        n=int(row["n"]),
        verdict=verdict(row["ci_low"], row["ci_high"], direction, int(row["n"])),
        detail=f"{first} {row[FIRST]:.1f}%, {second} {row[SECOND]:.1f}%",
    )


def _second(row: pd.Series) -> str:
    """The name of the second setting of a comparison-table row."""
    return row["comparison"].split(" − ", 1)[1]


def _modes(row: pd.Series) -> tuple[str, str]:
    """The test modes a within-run comparison-table row compares."""
    return row["first_mode"], row["second_mode"]


def _mode_table(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`comparison_table` of :func:`mode_pairs` per series, axis value and comparison,
    sorted by series and axis value."""
    series = [*series_columns(df), batch_axis(df)]
    keys = [*series, "comparison", "first_mode", "second_mode", "test_batch"]
    return sort_by(comparison_table(mode_pairs(df), keys), series)


def eval_collapse_findings(df: pd.DataFrame) -> FindingGroup:
    """Per batch-statistic norm, axis value and train-mode test batch: claim eval − train < 0
    (the eval-mode collapse), paired per run."""
    group = "Eval-mode collapse: BN eval mode below train mode (claim eval − train < 0, per run)"
    table = _mode_table(df)
    rows = table[table["first_mode"].eq(EVAL) & table["second_mode"].eq(TRAIN)]
    if rows.empty:
        return FindingGroup(group, DIRECTIONAL_RULE, skipped=_mode_skip(df, TRAIN))
    series, axis = series_columns(df), batch_axis(df)
    findings = [
        _difference_finding(
            row, _where(row, series, axis), f"eval mode below {_second(row)}", -1, _modes(row)
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


def control_findings(df: pd.DataFrame, mode: str = EVAL) -> FindingGroup:
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
    table = _shown(sort_by(comparison_table(pairs, keys), [*series, axis]), "first_mode", (EVAL,))
    findings = [
        _difference_finding(
            row,
            _where(row, series, axis),
            f"{row['setting']} below {row['control']}",
            -1,
            (row["norm"], row["control"]),
        )
        for _, row in table.iterrows()
    ]
    return FindingGroup(group, DIRECTIONAL_RULE, findings)


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
    "order and initialization seed); mean and 95% t-interval over seeds; the share is the "
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
    if reference.empty:
        return pd.DataFrame(columns=["comparison", "norm", *others, axis, "seed", FIRST, SECOND])
    top = int(reference[axis].max())
    keys = ["seed", *others]
    second = reference[reference[axis].eq(top)][[*keys, ACC]].rename(columns={ACC: SECOND})
    # a run without an axis value (trained once per seed) counts once, not at every value
    shared = rows["run_id"].isin(df.loc[df[axis].isna(), "run_id"])
    once = rows[shared].drop_duplicates("run_id").assign(**{axis: np.nan})
    runs = pd.concat([rows[~shared], once], ignore_index=True)
    runs = runs[~(runs["norm"].eq(REFERENCE_NORM) & runs[axis].eq(top))]
    pairs = runs.merge(second, on=keys).rename(columns={ACC: FIRST})
    pairs[DIFFERENCE] = pairs[FIRST] - pairs[SECOND]
    pairs["comparison"] = f"norm − {_reference_name(axis, top)}"
    return pairs[["comparison", "norm", *others, axis, "seed", "run_id", FIRST, SECOND, DIFFERENCE]]


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


def recovery_table(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`comparison_table` of :func:`recovery_pairs` per norm, other factors and axis value
    (NaN: every value), in registry order, with ``share`` = first / second in percent."""
    pairs = recovery_pairs(df)
    keys = [*series_columns(df), batch_axis(df)]
    table = sort_by(comparison_table(pairs, keys), keys)
    return table.assign(share=100 * table[FIRST] / table[SECOND])


def recovery_findings(df: pd.DataFrame) -> FindingGroup:
    """Per norm (and axis value): claim it falls short of BN at the largest batch-axis value
    (first − second < 0), paired by seed; notes say where each batch-statistic norm stops
    being shown short."""
    table = recovery_table(df)
    if table.empty:
        return FindingGroup(RECOVERY_TITLE, RECOVERY_RULE, skipped=recovery_skip(df))
    axis, series = batch_axis(df), series_columns(df)
    reference = recovery_reference(df)
    findings = [_recovery_finding(row, series, axis, reference) for _, row in table.iterrows()]
    return FindingGroup(
        RECOVERY_TITLE, RECOVERY_RULE, findings, _recovery_notes(table, findings, series, axis)
    )


def _recovery_finding(row: pd.Series, series: list[str], axis: str, reference: str) -> Finding:
    label = series_labels(row.to_frame().T, series).iloc[0]
    where = (
        "any " + AXIS_SHORT[axis] if pd.isna(row[axis]) else f"{AXIS_SHORT[axis]} {int(row[axis])}"
    )
    finding = _difference_finding(
        row, f"{label} @ {where}", f"falls short of {reference}", -1, (label, reference)
    )
    return replace(finding, detail=finding.detail + f"; {row['share']:.1f}% of it")


def _recovery_notes(
    table: pd.DataFrame, findings: list[Finding], series: list[str], axis: str
) -> list[str]:
    """Per batch-statistic series: the smallest axis value from which it is not shown short."""
    short = pd.Series([f.verdict == SUPPORTED for f in findings], index=table.index)
    labels = series_labels(table, series)
    notes = []
    for label in dict.fromkeys(labels[table[axis].notna()]):
        mine = table[labels.eq(label)]
        shown_short = short[mine.index]
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
            notes.append(
                f"{label}: shown short up to {AXIS_SHORT[axis]} {last_short}, not from "
                f"{first_ok} up"
            )
    return notes


def recovery_skip(df: pd.DataFrame) -> str:
    """Why a study has no recovery comparison."""
    if not df["norm"].eq(REFERENCE_NORM).any():
        return f"the study has no {REFERENCE_NORM} runs to measure recovery against"
    return f"no seed has ok eval-mode results for {REFERENCE_NORM} and another norm"


def _control_check(rows: pd.DataFrame, subject: str, axis: str, setup: list[str]) -> Finding:
    """The controls check (CONTROLS_RULE) of one control's ok eval-mode rows (accuracy ``acc``)
    across the values of the batch axis and the optimizer ``setup`` columns; n = runs."""
    claim = f"flat along the {AXIS_LABELS[axis]}" + (f" and {', '.join(setup)}" if setup else "")
    cells = rows.groupby([axis, *setup], dropna=False)[ACC]
    means, counts = cells.mean(), cells.count()
    if len(means) == 1 and rows[axis].isna().all():
        seeds = int(rows["seed"].nunique())
        return Finding(
            subject,
            claim,
            "",
            math.nan,
            math.nan,
            math.nan,
            seeds,
            FLAT_BY_CONSTRUCTION,
            detail=ONE_MODEL,
        )
    if len(means) < 2 or counts.max() < 2:
        status, detail = NOT_TESTABLE, f"{len(means)} value(s), at most {counts.max()} seed(s) each"
    else:
        pvalue = one_way_anova(group for _, group in cells).pvalue
        status = DRIFT if pvalue < ALPHA else f"{FLAT} at n = {counts.min()} per value"
        detail = (
            f"ANOVA p = {pvalue:.3g} over {len(means)} values with {counts.min()}–{counts.max()} "
            f"seeds each; means {means.min():.1f}–{means.max():.1f}%"
        )
    spread = float(means.max() - means.min())
    return Finding(
        subject,
        claim,
        "range of the per-value means",
        spread,
        math.nan,
        math.nan,
        len(rows),
        status,
        unit=POINTS,
        detail=detail,
    )


def controls_check(df: pd.DataFrame) -> FindingGroup:
    """The controls check (CONTROLS_RULE), one finding per batch-independent norm (and other
    non-optimizer factors) in eval mode, across the batch axis and the optimizer setups
    (batch_size, accumulate) it was trained with; call on the table as loaded, before
    :func:`along_axis`."""
    group = CONTROLS_TITLE
    ok = df[df["status"].eq(OK) & df["test_mode"].eq(EVAL) & df["test_acc"].notna()]
    rows = ok[~batch_stat_mask(ok)].assign(**{ACC: lambda r: 100 * r["test_acc"]})
    if rows.empty:
        return FindingGroup(group, CONTROLS_RULE, skipped=_controls_skip(df))
    axis = batch_axis(df)
    series = [c for c in series_columns(df) if c not in OPTIMIZER_COLUMNS]
    setup = [c for c in series_columns(df) if c in OPTIMIZER_COLUMNS]
    labels = series_labels(rows, series)
    findings = [
        _control_check(rows[labels.eq(label)], label, axis, setup)
        for label in series_labels(sort_by(rows[series].drop_duplicates(), series), series)
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


def precise_findings(df: pd.DataFrame) -> FindingGroup:
    """Per batch-statistic norm and axis value: claim precise − eval > 0 (PreciseBN recovers the
    eval-mode collapse) and precise − train < 0 (at the reference train-mode test batch), paired
    per run, with a one-line interpretation per norm at its smallest axis value."""
    group = "PreciseBN: population statistics recomputed with frozen weights"
    table = _mode_table(df)
    rows = _shown(table[table["first_mode"].eq(PRECISE)], "second_mode", (EVAL,))
    if rows.empty:
        return FindingGroup(group, DIRECTIONAL_RULE, skipped=_mode_skip(df, PRECISE))
    series, axis = series_columns(df), batch_axis(df)
    findings = [_precise_finding(row, _where(row, series, axis)) for _, row in rows.iterrows()]
    return FindingGroup(group, DIRECTIONAL_RULE, findings, _precise_notes(rows, series, axis))


def _precise_finding(row: pd.Series, subject: str) -> Finding:
    """precise − eval (claim > 0) or precise − train (claim < 0) of one table row."""
    if row["second_mode"] == EVAL:
        claim = "precise recovers the eval-mode collapse"
        return _difference_finding(row, subject, claim, 1, _modes(row))
    claim = f"precise stays below {_second(row)}"
    return _difference_finding(row, subject, claim, -1, _modes(row))


def _precise_notes(rows: pd.DataFrame, series: list[str], axis: str) -> list[str]:
    """Per series, :func:`_interpret` of its precise findings at its smallest axis value."""
    notes = []
    for label, cell in rows.groupby(series_labels(rows, series), sort=False):
        smallest = cell[cell[axis].eq(cell[axis].min())]
        found = {row["second_mode"]: _precise_finding(row, "") for _, row in smallest.iterrows()}
        where = f"{label} @ {AXIS_SHORT[axis]} {int(smallest[axis].iloc[0])}"
        notes.append(f"{where}: {_interpret(found.get(EVAL), found.get(TRAIN))}")
    return notes


def _interpret(recover: Finding | None, below: Finding | None) -> str:
    """What precise − eval (``recover``) and precise − train (``below``) say about the eval-mode
    collapse: train/test inconsistency if precise stays below train mode (supported); EMA noise
    if precise recovers (supported) and is not shown below train mode; else not resolved."""
    if below is not None and below.verdict == SUPPORTED:
        return (
            f"precise stays {-below.estimate:.1f} pp below train mode: the collapse is train/test "
            "inconsistency (batch statistics differ from population statistics), not EMA noise."
        )
    if recover is not None and recover.verdict == SUPPORTED:
        return (
            f"precise recovers {recover.estimate:.1f} pp and is not shown to stay below train "
            "mode: the collapse was mostly noise in the running (EMA) statistics."
        )
    n = min((f.n for f in (recover, below) if f is not None), default=0)
    return f"not resolved at n = {n}."


def noise_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """One row per ok run of a batch-statistic norm with noise measurements: series columns, the
    axis value, ``between_ratio`` = bn_mean_noise / between-image prediction and
    ``values_ratio`` = bn_mean_noise / values-law prediction."""
    df = along_axis(df)
    series, axis = series_columns(df), batch_axis(df)
    runs = df[df["status"].eq(OK) & batch_stat_mask(df)].drop_duplicates("run_id")
    runs = runs.dropna(subset=list(NOISE_COLUMNS))
    measured, between, values = (runs[col] for col in NOISE_COLUMNS)
    return runs[[*series, axis]].assign(
        **{BETWEEN_RATIO: measured / between, VALUES_RATIO: measured / values}
    )


def _noise_verdict(between: tuple, values: tuple) -> str:
    """NOISE_RULE applied to the intervals of the two ratios."""
    low, high = NOISE_BAND
    if between.low >= low and between.high <= high and values.low > high:
        return SUPPORTED
    if between.high < low or between.low > high:
        return CONTRADICTED
    return f"not resolved at n = {between.n}"


def noise_findings(df: pd.DataFrame) -> FindingGroup:
    """Per batch-statistic norm (and other factors): the noise law (NOISE_RULE), over its runs
    at every axis value."""
    group = "Noise law: BN batch-mean noise follows 1/√images, not 1/√values"
    present = all(col in df.columns for col in NOISE_COLUMNS)
    ratios = noise_ratios(df) if present else pd.DataFrame()
    if ratios.empty:
        reason = f"no ok run of a batch-statistic norm has values of {', '.join(NOISE_COLUMNS)}"
        return FindingGroup(group, NOISE_RULE, skipped=reason)
    series, axis = series_columns(df), batch_axis(df)
    ratios = ratios[ratios[axis].gt(1)]
    labels = series_labels(ratios, series)
    findings = [
        _noise_finding(cell, f"{label} @ {AXIS_SHORT[axis]} {int(value)}")
        for label in dict.fromkeys(labels)
        for value, cell in ratios[labels.eq(label)].groupby(axis)
    ]
    return FindingGroup(group, NOISE_RULE, findings)


def _noise_finding(runs: pd.DataFrame, subject: str) -> Finding:
    """The noise-law finding of one norm's runs at one axis value."""
    between, values = t_interval(runs[BETWEEN_RATIO]), t_interval(runs[VALUES_RATIO])
    detail = (
        f"measured / values-law prediction {_number(values.mean, TIMES)}{TIMES} "
        f"[{_number(values.low, TIMES)}, {_number(values.high, TIMES)}]"
    )
    return Finding(
        subject,
        "noise follows 1/√images",
        "measured / between-image prediction",
        between.mean,
        between.low,
        between.high,
        between.n,
        _noise_verdict(between, values),
        unit=TIMES,
        detail=detail,
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


def flip_findings(df: pd.DataFrame, baseline: pd.DataFrame) -> FindingGroup:
    """Per batch-statistic norm, axis value and train-mode test batch: claim the train-mode flip
    rate is below the seed-to-seed baseline (flip − baseline < 0)."""
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
    pairs = train.assign(
        **{FIRST: 100 * train["test_flip_rate"], SECOND: train[BASELINE]},
    ).assign(**{DIFFERENCE: lambda p: p[FIRST] - p[SECOND]})
    keys = [*series, axis, "test_batch"]
    table = sort_by(comparison_table(pairs, keys), keys)
    findings = [_flip_finding(row, _where(row, series, axis), axis) for _, row in table.iterrows()]
    return FindingGroup(group, FLIP_RULE, findings)


def _flip_skip(df: pd.DataFrame, baseline: pd.DataFrame) -> str:
    """Why there is no flip-rate finding."""
    if baseline.empty:
        return "no cell has stored train-mode predictions (predictions.json) of 2 seeds"
    if not df["test_mode"].eq(TRAIN).any():
        return "the study has no train-mode rows"
    return "no batch-statistic norm has a train-mode flip rate in a cell with a baseline"


def _flip_finding(row: pd.Series, subject: str, axis: str) -> Finding:
    """The flip-rate finding of one row of the flip comparison table."""
    setting = setting_name(TRAIN, row["test_batch"], axis)
    return Finding(
        subject,
        f"reshuffling test batches ({setting}) flips fewer predictions than changing the seed",
        "flip − baseline",
        row["mean"],
        row["ci_low"],
        row["ci_high"],
        int(row["n"]),
        verdict(row["ci_low"], row["ci_high"], -1, int(row["n"])),
        detail=f"flip {row[FIRST]:.1f}%, seeds disagree on {row[SECOND]:.1f}%",
    )


def build_findings(df: pd.DataFrame, baseline: pd.DataFrame | None = None) -> list[FindingGroup]:
    """All finding groups of a runs table as loaded (before :func:`along_axis`), in order:
    recovery against BN at its largest batch, eval-mode collapse, BN vs controls in eval and in
    train mode, controls check, PreciseBN, noise law, and flip rate against the seed-to-seed
    ``baseline`` (:func:`flip_baseline`; skipped without one). Every group is skipped, saying
    so, when no run is ok (a sweep that has just started, or whose runs all failed)."""
    groups = [
        recovery_findings(df),
        eval_collapse_findings(df),
        control_findings(df, EVAL),
        control_findings(df, TRAIN),
        controls_check(df),
        precise_findings(df),
        noise_findings(df),
    ]
    if baseline is None:
        groups.append(FindingGroup(FLIP_TITLE, FLIP_RULE, skipped="no predictions were read"))
    else:
        groups.append(flip_findings(df, baseline))
    if df["status"].eq(OK).any():
        return groups
    skipped = f"no ok runs ({counts_line(df)})"
    return [FindingGroup(group.title, group.rule, skipped=skipped) for group in groups]


def findings_markdown(title: str, intro: str, groups: list[FindingGroup]) -> str:
    """findings.md: title, the controls-drift warning if any control drifts, ``intro`` (what was
    run), then per group a heading, its rule, one line per finding and the notes (or why the
    group is empty)."""
    lines = [f"# {title}", ""]
    warning = drift_warning(groups)
    if warning:
        lines += [f"> **Warning — {warning}**", ""]
    lines += [intro, ""]
    for group in groups:
        lines += [f"## {group.title}", "", group.rule, ""]
        if group.skipped:
            lines += [f"Skipped: {group.skipped}.", ""]
            continue
        lines += [f"- {f.describe()} → **{f.verdict}**" for f in group.findings]
        lines += ["", *(f"*{note}*" for note in group.notes), ""] if group.notes else [""]
    return "\n".join(lines).rstrip() + "\n"
