"""The evidence behind a study's intervals: which test images each run got right, and the
two-level bootstrap of accuracies and paired differences built from them.

A run's ``predictions.json`` (bnstudy.store) holds, per test setting, its prediction for each
test image and the test labels. A quantity over n seeds is then a matrix of seeds × test
images (100 for a right answer, 0 for a wrong one; a paired difference subtracts two such
matrices, pairing the images and the seeds of its two arms), and :func:`bnstudy.stats.
crossed_replicates` resamples both. Runs without stored outputs (tables written before they
were kept, or a runs table without run folders) fall back to their accuracies, one value per
seed: then only seeds are resampled, and the estimate says so (``images == 1``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Protocol

import numpy as np
import pandas as pd

from bnstudy.stats import (
    Bootstrap,
    Estimate,
    bootstrap_estimate,
    image_draws,
    replicate_estimate,
)
from bnstudy.test_modes import setting_key

DEFAULT_BOOTSTRAP = Bootstrap()
ARM_SEPARATOR = "\x1f"  # between run_id and test_batch label in an arm's name


class Outputs(Protocol):
    """What a run stored of its tests (bnstudy.store.TestOutputs)."""

    labels: list[int] | None
    predictions: dict[str, list[int]]
    flips: dict[str, list[int]]
    reshuffles: int | None


def arm(run_id: str, key: object) -> str:
    """The name of one arm of a comparison: a run's test setting, by its key in the run's
    predictions.json (:func:`bnstudy.test_modes.setting_key`)."""
    return f"{run_id}{ARM_SEPARATOR}{key}"


def arms_of(rows: pd.DataFrame) -> list[str]:
    """The arm of each row of a runs table (its run and test setting)."""
    columns = zip(rows["run_id"], rows["test_mode"], rows["test_batch"], strict=True)
    return [arm(run_id, setting_key(mode, str(label))) for run_id, mode, label in columns]


class Resampler:
    """Bootstraps accuracies and paired differences over seeds and test images.

    ``read`` returns a run's stored outputs (None when it has none); ``bootstrap`` says how to
    resample; ``margin`` (pp) is the equivalence margin of accuracy differences."""

    def __init__(
        self,
        read: Callable[[str], Outputs | None] | None,
        bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
        margin: float = 1.0,
    ) -> None:
        self.read, self.bootstrap, self.margin = read, bootstrap, margin
        self._outputs: dict[str, Outputs | None] = {}

    def outputs(self, run_id: str) -> Outputs | None:
        """The run's stored outputs, read once."""
        if run_id not in self._outputs:
            self._outputs[run_id] = self.read(run_id) if self.read else None
        return self._outputs[run_id]

    def correct(self, name: str) -> np.ndarray | None:
        """Per test image, 100 if the arm ``name`` (:func:`arm`) predicted it right, else 0;
        None without stored labels and predictions."""
        run_id, label = name.split(ARM_SEPARATOR, 1)
        outputs = self.outputs(run_id)
        if outputs is None or outputs.labels is None or label not in outputs.predictions:
            return None
        predicted = np.asarray(outputs.predictions[label])
        return 100.0 * (predicted == np.asarray(outputs.labels))

    def evidence(self, arms: Sequence[str], values: Sequence[float]) -> np.ndarray:
        """Seeds × images of the ``arms`` when every one has stored outputs of one length, else
        the per-seed ``values`` as one column."""
        rows = [self.correct(name) for name in arms]
        if rows and all(r is not None for r in rows) and len({len(r) for r in rows}) == 1:
            return np.stack(rows)
        return np.asarray(values, dtype=float).reshape(-1, 1)

    def level(self, key: str, arms: Sequence[str], values: Sequence[float]) -> Estimate:
        """Mean accuracy (pp) of ``arms`` (one per seed) with its interval; ``values`` are their
        accuracies, used when outputs are missing."""
        return bootstrap_estimate(
            self.evidence(arms, values), self.bootstrap, key, bounds=(0.0, 100.0)
        )

    def difference(
        self,
        key: str,
        first: tuple[Sequence[str], Sequence[float]],
        second: tuple[Sequence[str], Sequence[float]],
    ) -> Estimate:
        """Mean paired difference first − second (pp) of two lists of arms, paired by position
        (the same seed, or the same run), with the tests against 0 and within ±margin."""
        a, b = self.evidence(*first), self.evidence(*second)
        if a.shape != b.shape:  # one side lacks outputs: both sides by their accuracies
            a = np.asarray(first[1], dtype=float).reshape(-1, 1)
            b = np.asarray(second[1], dtype=float).reshape(-1, 1)
        return bootstrap_estimate(
            a - b, self.bootstrap, key, margin=self.margin, bounds=(-100.0, 100.0)
        )

    def flip_excess(self, key: str, arms: Sequence[str], flip_rates: Sequence[float]) -> Estimate:
        """Mean over runs (seeds of one cell) of flip rate − seed-to-seed disagreement (pp).

        A run's disagreement is the mean over the other seeds of the fraction of test images
        whose predictions in the arm's setting differ. Resampled as the other quantities:
        seeds with replacement (a drawn seed is compared with the other distinct seeds drawn)
        and test images, shared by the flips and the disagreements; a run's flip rate is
        resampled by image where its per-image flip counts were stored. NaN without stored
        predictions for every arm."""
        predictions = [self._predictions(name) for name in arms]
        if len(arms) < 2 or any(p is None for p in predictions):
            return Estimate(math.nan, math.nan, math.nan, math.nan, math.nan, len(arms), 0)
        flips = np.stack(
            [self._flips(name, rate) for name, rate in zip(arms, flip_rates, strict=True)]
        )
        predicted = np.stack(predictions)
        pairs = list(combinations(range(len(arms)), 2))
        disagree = np.stack([100.0 * (predicted[a] != predicted[b]) for a, b in pairs])
        estimate = _flip_excess(flips.mean(1), disagree.mean(1), pairs, np.ones(len(arms)))
        replicates = self._flip_replicates(key, flips, disagree, pairs)
        return replicate_estimate(
            estimate, replicates, self.bootstrap, len(arms), disagree.shape[1]
        )

    def _predictions(self, name: str) -> np.ndarray | None:
        run_id, label = name.split(ARM_SEPARATOR, 1)
        outputs = self.outputs(run_id)
        if outputs is None or label not in outputs.predictions:
            return None
        return np.asarray(outputs.predictions[label])

    def _flips(self, name: str, rate: float) -> np.ndarray:
        """Per image, the percentage of reshuffles that changed the arm's prediction; the run's
        flip rate (percent) at every image when per-image counts were not stored."""
        run_id, label = name.split(ARM_SEPARATOR, 1)
        outputs = self.outputs(run_id)
        counts = outputs.flips.get(label) if outputs is not None else None
        images = len(self._predictions(name))
        if counts is None or not outputs.reshuffles or len(counts) != images:
            return np.full(images, rate)
        return 100.0 * np.asarray(counts, dtype=float) / outputs.reshuffles

    def _flip_replicates(
        self, key: str, flips: np.ndarray, disagree: np.ndarray, pairs: list[tuple[int, int]]
    ) -> np.ndarray:
        seeds = len(flips)
        rng, resamples = self.bootstrap.rng(key), self.bootstrap.resamples
        counts = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=resamples)
        columns, drawn = image_draws(np.vstack([flips, disagree]), resamples, rng)
        means = columns @ drawn.T / flips.shape[1]  # quantities × replicates
        return np.array(
            [
                _flip_excess(means[:seeds, b], means[seeds:, b], pairs, counts[b])
                for b in range(resamples)
            ]
        )


def _flip_excess(
    flips: np.ndarray, disagree: np.ndarray, pairs: list[tuple[int, int]], counts: np.ndarray
) -> float:
    """Σ_s counts_s · (flips_s − mean over the other drawn seeds t of disagree_st) / Σ counts;
    NaN when a drawn seed has no other distinct seed drawn."""
    seeds = len(flips)
    matrix = np.zeros((seeds, seeds))
    for value, (a, b) in zip(disagree, pairs, strict=True):
        matrix[a, b] = matrix[b, a] = value
    drawn = counts > 0
    others = drawn.sum() - drawn  # distinct other seeds drawn, per seed
    if np.any(others[drawn] == 0):
        return math.nan
    baseline = (matrix @ drawn) / np.where(others > 0, others, 1)
    return float(np.sum(counts * (flips - baseline)) / counts.sum())
