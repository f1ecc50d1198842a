"""Statistics for the report: the two-level bootstrap over seeds and test images with the
tests it gives (difference from a null, equivalence within a margin), adjustments for multiple
testing (Holm, Benjamini–Hochberg), paired differences, and per-seed t-intervals for the
figures' diagnostics.

A t-interval here is the two-sided Student-t interval for a mean over independent replicates
(seeds): ``mean ± t_{(1+c)/2, n-1} · s / √n`` with ``s`` the sample standard deviation (ddof 1)
and ``c`` the confidence (0.95). It is undefined, NaN, for n < 2. NaN values are dropped first.
Accuracies and their differences get the bootstrap (:func:`bootstrap_estimate`) instead.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.special import stdtr, stdtrit

# Student's t through scipy.special (stdtr: the CDF, stdtrit: its inverse): what scipy.stats.t
# computes, without importing scipy.stats, which takes twice as long.

CONFIDENCE = 0.95
FIRST, SECOND, DIFFERENCE = "first", "second", "difference"  # columns of paired_difference


def t_half_width(std: object, n: object, confidence: float = CONFIDENCE) -> np.ndarray:
    """Half-width ``t_{(1+c)/2, n-1} · std / √n`` of the t-interval, elementwise over arrays of
    standard deviations and counts; NaN where n < 2."""
    n = np.asarray(n, dtype=float)
    degrees = np.where(n >= 2, n - 1, np.nan)
    quantile = stdtrit(degrees, (1 + confidence) / 2)
    return quantile * np.asarray(std, dtype=float) / np.sqrt(np.where(n >= 2, n, np.nan))


def interval_table(
    frame: pd.DataFrame, value: str, keys: Sequence[str], confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """Per ``keys`` group of ``frame`` (in order of appearance, NaN keys kept): ``mean``, ``std``,
    ``n`` (non-NaN values) of ``value`` and the bounds ``ci_low``, ``ci_high`` of its t-interval."""
    stats = frame.groupby(list(keys), dropna=False, sort=False)[value].agg(
        mean="mean", std="std", n="count"
    )
    half = t_half_width(stats["std"], stats["n"], confidence)
    return stats.assign(ci_low=stats["mean"] - half, ci_high=stats["mean"] + half).reset_index()


def paired_difference(
    frame: pd.DataFrame,
    by: str,
    value: str,
    pair_on: Sequence[str],
    levels: tuple[object, object],
    carry: str | None = None,
) -> pd.DataFrame:
    """Pair the rows of ``frame`` whose ``by`` is ``levels[0]`` with those whose ``by`` is
    ``levels[1]`` on equal ``pair_on`` values (NaN matches NaN), and return per pair the
    ``pair_on`` columns, both values (``first``, ``second``) and ``difference`` = first − second,
    and the column ``carry`` of each side as ``first_<carry>``, ``second_<carry>``. Pairs with a
    NaN value are dropped; a ``pair_on`` key repeated within a level raises
    ``pandas.errors.MergeError`` (the pairing would be ambiguous)."""
    first, second = (
        frame.loc[frame[by].eq(level), [*pair_on, value, *([carry] if carry else [])]].rename(
            columns={value: name, carry: f"{name}_{carry}"}
        )
        for level, name in zip(levels, (FIRST, SECOND), strict=True)
    )
    pairs = first.merge(second, on=list(pair_on), validate="one_to_one")
    pairs[DIFFERENCE] = pairs[FIRST] - pairs[SECOND]
    return pairs.dropna(subset=[DIFFERENCE]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Two-level bootstrap over seeds and test images, tests from its replicates, and adjustments
# for multiple testing.


@dataclass(frozen=True)
class Bootstrap:
    """How the report resamples: ``resamples`` replicates, each drawing seeds and test images
    with replacement; the random stream of each quantity is seeded by ``seed`` and the
    quantity's name, so the same inputs give the same intervals whatever else is computed."""

    resamples: int = 2000
    seed: int = 0
    confidence: float = CONFIDENCE

    def rng(self, key: str) -> np.random.Generator:
        """The generator of the quantity named ``key``."""
        return np.random.default_rng([self.seed, zlib.crc32(key.encode())])


class Estimate(NamedTuple):
    """A bootstrapped quantity: the estimate from the data, its interval, the
    p-value of the two-sided test of ``null`` (``pvalue``), the p-value of the equivalence test
    within ``null ± margin`` (``pvalue_equivalent``, two one-sided tests), the number of
    seeds (or pairs of runs) n, and the number of test images resampled (1: seeds only)."""

    mean: float
    low: float
    high: float
    pvalue: float
    pvalue_equivalent: float
    n: int
    images: int


def crossed_replicates(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of the mean of ``values`` (seeds × test images): each replicate draws
    n seeds and T images with replacement and averages the drawn cells.

    Seeds and images are crossed factors (every seed is tested on the same images), so one
    draw of images is shared by every seed and, the caller pairing arms in ``values``, by both
    arms of a comparison (Owen 2007, "The pigeonhole bootstrap", Ann. Appl. Stat.). Drawing
    images anew within each seed would shrink the test-set variance by the number of seeds,
    although seeds agree on which images are hard. A single column (T = 1) resamples seeds
    only."""
    seeds, images = values.shape
    seed_counts = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=resamples)
    if images == 1:
        return seed_counts @ values[:, 0] / seeds
    columns, image_counts = image_draws(values, resamples, rng)
    per_pattern = seed_counts @ columns / seeds  # replicates × patterns: mean over drawn seeds
    return (per_pattern * image_counts).sum(1) / images


def image_draws(
    values: np.ndarray, resamples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Test images drawn with replacement, ``resamples`` times, from the columns of ``values``
    (quantities × images): the distinct columns (quantities × K) and, per replicate, how many
    drawn images have each (replicates × K). Drawing T images with replacement is drawing
    multinomial counts over the distinct columns with their frequencies: the same
    distribution, at a cost in K (a few hundred for 0/100 answers of a few seeds) instead of T."""
    columns, inverse = np.unique(values, axis=1, return_inverse=True)
    frequencies = np.bincount(inverse.ravel(), minlength=columns.shape[1]) / values.shape[1]
    return columns, rng.multinomial(values.shape[1], frequencies, size=resamples)


def bootstrap_estimate(
    values: np.ndarray,
    bootstrap: Bootstrap,
    key: str,
    *,
    null: float = 0.0,
    margin: float = math.nan,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> Estimate:
    """The :class:`Estimate` (:func:`replicate_estimate`) of the mean of ``values`` (seeds ×
    images, or a vector of per-seed values) from :func:`crossed_replicates`. NaN interval and
    p-values for fewer than 2 seeds."""
    values = np.asarray(values, dtype=float)
    values = values.reshape(len(values), -1) if values.size else values.reshape(0, 1)
    n, images = values.shape
    estimate = float(values.mean()) if values.size else math.nan
    if n < 2:
        return Estimate(estimate, math.nan, math.nan, math.nan, math.nan, n, images)
    replicates = crossed_replicates(values, bootstrap.resamples, bootstrap.rng(key))
    return replicate_estimate(estimate, replicates, bootstrap, n, images, null, margin, bounds)


def replicate_estimate(
    estimate: float,
    replicates: np.ndarray,
    bootstrap: Bootstrap,
    n: int,
    images: int,
    null: float = 0.0,
    margin: float = math.nan,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> Estimate:
    """An :class:`Estimate` of ``estimate`` over ``n`` seeds from its bootstrap ``replicates``
    (NaN ones dropped), by the t statistic with the bootstrap's standard error.

    The standard error is the replicates' standard deviation inflated by √(n/(n−1)) (the
    bootstrap's variance of a mean over n seeds lacks that factor), with n − 1 degrees of
    freedom: with images resampled it includes the test set's sampling error, with seeds only
    it is the paired t-test's. Interval: ``estimate ± t_{(1+c)/2, n−1} · se``, cut at the
    quantity's ``bounds`` (an accuracy lies in [0, 100]); tests: two-sided p of ``estimate =
    null``, and the equivalence p within ``null ± margin``, the larger of the two one-sided
    p-values (TOST, Schuirmann 1987). Interval and tests agree: the interval excludes ``null``
    exactly when p < 1 − c. At 5 seeds the plain percentile interval of the replicates is
    too narrow (at 3 it is the range of the seeds); this one is the t-interval's width with
    the test set's error added. NaN for n < 2."""
    replicates = replicates[~np.isnan(replicates)]
    if replicates.size == 0 or n < 2:
        return Estimate(estimate, math.nan, math.nan, math.nan, math.nan, n, images)
    error = float(replicates.std()) * math.sqrt(n / (n - 1))
    half = float(stdtrit(n - 1, (1 + bootstrap.confidence) / 2)) * error
    low, high = max(estimate - half, bounds[0]), min(estimate + half, bounds[1])

    def below(bound: float) -> float:
        """p-value of the one-sided test that the quantity is below ``bound``."""
        if error == 0:
            return 0.0 if estimate < bound else 1.0
        return float(stdtr(n - 1, (estimate - bound) / error))

    pvalue = 1.0 if error == 0 and estimate == null else 2 * min(below(null), 1 - below(null))
    equivalent = (
        max(below(null + margin), 1 - below(null - margin)) if not math.isnan(margin) else math.nan
    )
    return Estimate(estimate, low, high, min(1.0, pvalue), equivalent, n, images)


def holm(pvalues: Sequence[float], true_nulls: int | None = None) -> np.ndarray:
    """Holm's step-down adjustment (Holm 1979): controls the family-wise error rate. The i-th
    smallest of m p-values becomes max over j ≤ i of min(1, min(k, m − j + 1)·p_(j)), with k
    (``true_nulls``, default m) the most hypotheses that can be true at once: Shaffer's (1986)
    bound, e.g. k = m/2 when the family holds, per claim, a test of no difference and one of
    equivalence, of which at most one null is true. NaN stays NaN and does not count in m."""
    p, order = _ordered(pvalues)
    m = order.size
    bound = m if true_nulls is None else min(true_nulls, m)
    scaled = np.minimum(bound, m - np.arange(m)) * p[order]
    adjusted = np.full(p.shape, np.nan)
    adjusted[order] = np.minimum(1, np.maximum.accumulate(scaled))
    return adjusted


def benjamini_hochberg(pvalues: Sequence[float], true_nulls: int | None = None) -> np.ndarray:
    """Benjamini–Hochberg's step-up adjustment (1995): controls the false discovery rate. The
    i-th smallest of m p-values becomes min over j ≥ i of min(1, k·p_(j)/j), with k
    (``true_nulls``, default m) an upper bound on the true hypotheses: the false discovery rate
    is then at most α·m₀/k ≤ α (Benjamini & Hochberg 2000's adaptive form with a known bound).
    NaN stays NaN and does not count in m."""
    p, order = _ordered(pvalues)
    m = order.size
    bound = m if true_nulls is None else min(true_nulls, m)
    scaled = bound * p[order] / np.arange(1, m + 1)
    adjusted = np.full(p.shape, np.nan)
    adjusted[order] = np.minimum(1, np.minimum.accumulate(scaled[::-1])[::-1])
    return adjusted


def _ordered(pvalues: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The p-values as an array and the positions of the non-NaN ones, smallest first."""
    p = np.asarray(pvalues, dtype=float)
    present = np.flatnonzero(~np.isnan(p))
    return p, present[np.argsort(p[present], kind="stable")]
