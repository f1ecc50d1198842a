"""The noise law: per batch-statistic norm, how the noise of BN's batch means falls with the
images per statistic (the exponent of a log-log fit, against −0.5), and whether its level
follows the between-image prediction rather than the 1/√values law."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bnstudy.norm_catalog import display_label
from bnstudy.report.runs_table import (
    along_axis,
    batch_axis,
    batch_stat_mask,
    series_columns,
    series_labels,
)
from bnstudy.report.verdicts import (
    DEFAULT_ANALYSIS,
    DIRECTIONAL_RULE,
    NOT_TESTABLE,
    NUMBER,
    Finding,
    FindingGroup,
    estimate_finding,
    finding_key,
)
from bnstudy.resampling import DEFAULT_BOOTSTRAP
from bnstudy.results import (
    BN_MEAN_NOISE,
    BN_MEAN_NOISE_BETWEEN_IMAGES,
    BN_MEAN_NOISE_VALUES_LAW,
    NOISE_IMAGES,
    OK,
    RUN_ID,
    SEED,
    STATUS,
)
from bnstudy.stats import Bootstrap, bootstrap_estimate, replicate_estimate

PREDICTED_EXPONENT = -0.5  # noise of a mean over k independent images ∝ k^(−1/2)
NOISE_COLUMNS = (BN_MEAN_NOISE, BN_MEAN_NOISE_BETWEEN_IMAGES, BN_MEAN_NOISE_VALUES_LAW)
BETWEEN_RATIO, VALUES_RATIO = "between_ratio", "values_ratio"
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


def noise_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """One row per ok run of a batch-statistic norm with noise measurements: series columns, the
    axis value, ``seed``, ``images`` (per statistic in the noise measurement: noise_images,
    else the axis value), the measured noise (``bn_mean_noise``), ``between_ratio`` =
    bn_mean_noise / between-image prediction and ``values_ratio`` = bn_mean_noise / values-law
    prediction."""
    df = along_axis(df)
    series, axis = series_columns(df), batch_axis(df)
    runs = df[df[STATUS].eq(OK) & batch_stat_mask(df)].drop_duplicates(RUN_ID)
    runs = runs.dropna(subset=list(NOISE_COLUMNS))
    measured, between, values = (runs[col] for col in NOISE_COLUMNS)
    images = runs[NOISE_IMAGES] if NOISE_IMAGES in runs else pd.Series(np.nan, runs.index)
    return runs[[*series, axis, SEED, NOISE_COLUMNS[0]]].assign(
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
    seeds, seed_index = np.unique(runs[SEED].to_numpy(), return_inverse=True)
    key = finding_key("noise", label, "exponent")
    fields = dict(
        subject=display_label(label),
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
    per_seed = closer.groupby(runs[SEED]).mean()
    key = finding_key("noise", label, "level")
    estimate = bootstrap_estimate(per_seed.to_numpy(), bootstrap, key)
    between, values = (np.exp(np.log(runs[col]).mean()) for col in (BETWEEN_RATIO, VALUES_RATIO))
    return estimate_finding(
        estimate,
        subject=display_label(label),
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
