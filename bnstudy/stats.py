"""Small statistics for the report: t confidence intervals, paired differences, one-way ANOVA.

Every interval here is the two-sided Student-t interval for a mean over independent replicates
(seeds): ``mean ± t_{(1+c)/2, n-1} · s / √n`` with ``s`` the sample standard deviation (ddof 1)
and ``c`` the confidence (0.95). It is undefined, NaN, for n < 2. NaN values are dropped first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

# scipy.stats is imported where it is used: it takes a second or more to import, and `bnstudy
# run` imports this module (bnstudy.progress -> bnstudy.findings) without computing anything.

CONFIDENCE = 0.95
FIRST, SECOND, DIFFERENCE = "first", "second", "difference"  # columns of paired_difference


class Interval(NamedTuple):
    """A mean with the bounds of its t-interval and the number of values it is over."""

    mean: float
    low: float
    high: float
    n: int


class AnovaResult(NamedTuple):
    """One-way ANOVA: the F statistic and its p-value (NaN when not testable)."""

    statistic: float
    pvalue: float


def t_half_width(std: object, n: object, confidence: float = CONFIDENCE) -> np.ndarray:
    """Half-width ``t_{(1+c)/2, n-1} · std / √n`` of the t-interval, elementwise over arrays of
    standard deviations and counts; NaN where n < 2."""
    import scipy.stats

    n = np.asarray(n, dtype=float)
    degrees = np.where(n >= 2, n - 1, np.nan)
    quantile = scipy.stats.t.ppf((1 + confidence) / 2, degrees)
    return quantile * np.asarray(std, dtype=float) / np.sqrt(np.where(n >= 2, n, np.nan))


def t_interval(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean of the non-NaN ``values`` with its t-interval and their count; NaN bounds for n < 2,
    NaN mean for n = 0."""
    x = np.asarray(list(values), dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return Interval(np.nan, np.nan, np.nan, 0)
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else np.nan
    half = float(t_half_width(std, x.size, confidence))
    return Interval(mean, mean - half, mean + half, int(x.size))


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
    frame: pd.DataFrame, by: str, value: str, pair_on: Sequence[str], levels: tuple[object, object]
) -> pd.DataFrame:
    """Pair the rows of ``frame`` whose ``by`` is ``levels[0]`` with those whose ``by`` is
    ``levels[1]`` on equal ``pair_on`` values (NaN matches NaN), and return per pair the
    ``pair_on`` columns, both values (``first``, ``second``) and ``difference`` = first − second.
    Pairs with a NaN value are dropped; a ``pair_on`` key repeated within a level raises
    ``pandas.errors.MergeError`` (the pairing would be ambiguous)."""
    first, second = (
        frame.loc[frame[by].eq(level), [*pair_on, value]].rename(columns={value: name})
        for level, name in zip(levels, (FIRST, SECOND), strict=True)
    )
    pairs = first.merge(second, on=list(pair_on), validate="one_to_one")
    pairs[DIFFERENCE] = pairs[FIRST] - pairs[SECOND]
    return pairs.dropna(subset=[DIFFERENCE]).reset_index(drop=True)


def one_way_anova(groups: Iterable[Iterable[float]]) -> AnovaResult:
    """One-way ANOVA (``scipy.stats.f_oneway``) across ``groups`` of replicate values, NaNs and
    empty groups dropped. Not testable (NaN, NaN) with fewer than 2 groups or when no group has
    2 values. Identical values everywhere give (NaN, NaN); zero spread within groups but
    different means gives (inf, 0)."""
    arrays = [np.asarray(list(g), dtype=float) for g in groups]
    arrays = [a[~np.isnan(a)] for a in arrays]
    arrays = [a for a in arrays if a.size]
    if len(arrays) < 2 or max(a.size for a in arrays) < 2:
        return AnovaResult(np.nan, np.nan)
    import scipy.stats

    result = scipy.stats.f_oneway(*arrays)
    return AnovaResult(float(result.statistic), float(result.pvalue))
