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
from typing import Protocol

import numpy as np
import pandas as pd

from bnstudy.analysis_config import AnalysisConfig
from bnstudy.results import RUN_ID, TEST_BATCH, TEST_MODE, setting_key
from bnstudy.stats import Bootstrap, Estimate, bootstrap_estimate

DEFAULT_BOOTSTRAP = Bootstrap()
DEFAULT_MARGIN = AnalysisConfig.model_fields["equivalence_margin"].default  # pp
ARM_SEPARATOR = "\x1f"  # between run_id and test_batch label in an arm's name


class Outputs(Protocol):
    """What a run stored of its tests (bnstudy.store.TestOutputs)."""

    labels: list[int] | None
    predictions: dict[str, list[int]]
    flips: dict[str, list[int]]
    reshuffles: int | None


def arm(run_id: str, key: object) -> str:
    """The name of one arm of a comparison: a run's test setting, by its key in the run's
    predictions.json (:func:`bnstudy.results.setting_key`)."""
    return f"{run_id}{ARM_SEPARATOR}{key}"


def arms_of(rows: pd.DataFrame) -> list[str]:
    """The arm of each row of a runs table (its run and test setting)."""
    columns = zip(rows[RUN_ID], rows[TEST_MODE], rows[TEST_BATCH], strict=True)
    return [arm(run_id, setting_key(mode, str(label))) for run_id, mode, label in columns]


class Resampler:
    """Bootstraps accuracies and paired differences over seeds and test images.

    ``read`` returns a run's stored outputs (None when it has none); ``bootstrap`` says how to
    resample; ``margin`` (pp) is the equivalence margin of accuracy differences. A quantity's
    random draws are seeded by what it is computed from (its arms, or its values), so the same
    runs get the same interval wherever they appear (a control repeated along the batch axis,
    the summary table and a figure), and each is computed once."""

    def __init__(
        self,
        read: Callable[[str], Outputs | None] | None,
        bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
        margin: float = DEFAULT_MARGIN,
    ) -> None:
        self.read, self.bootstrap, self.margin = read, bootstrap, margin
        self._outputs: dict[str, Outputs | None] = {}
        self._estimates: dict[str, Estimate] = {}

    def outputs(self, run_id: str) -> Outputs | None:
        """The run's stored outputs, read once."""
        if run_id not in self._outputs:
            self._outputs[run_id] = self.read(run_id) if self.read else None
        return self._outputs[run_id]

    def _labelled(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The arm's predictions and the run's test labels, or None when either is missing or
        their lengths differ (a damaged file)."""
        run_id, label = name.split(ARM_SEPARATOR, 1)
        outputs = self.outputs(run_id)
        if outputs is None or outputs.labels is None or label not in outputs.predictions:
            return None
        predicted, labels = np.asarray(outputs.predictions[label]), np.asarray(outputs.labels)
        return (predicted, labels) if predicted.shape == labels.shape else None

    def correct(self, name: str) -> np.ndarray | None:
        """Per test image, 100 if the arm ``name`` (:func:`arm`) predicted it right, else 0;
        None without stored labels and predictions."""
        labelled = self._labelled(name)
        return None if labelled is None else 100.0 * (labelled[0] == labelled[1])

    def _aligned(self, arms: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """Predictions and labels of every arm when all have them on one test set (the same
        labels in the same order), else None: then images cannot be paired."""
        found = [self._labelled(name) for name in arms]
        if not found or any(f is None for f in found):
            return None
        labels = found[0][1]
        return found if all(np.array_equal(f[1], labels) for f in found) else None

    def evidence(self, arms: Sequence[str], values: Sequence[float]) -> np.ndarray:
        """Seeds × images (100 right, 0 wrong) of the ``arms`` when all have stored outputs on
        one test set, else the per-seed ``values`` as one column."""
        found = self._aligned(arms)
        if found is None:
            return np.asarray(values, dtype=float).reshape(-1, 1)
        return np.stack([100.0 * (predicted == labels) for predicted, labels in found])

    def _cached(self, kind: str, parts: Sequence[object], compute: Callable[[str], Estimate]):
        """The estimate of ``kind`` from ``parts`` (arms, or values where arms are missing),
        computed once with draws seeded by them."""
        key = kind + "|" + "|".join(map(str, parts))
        if key not in self._estimates:
            self._estimates[key] = compute(key)
        return self._estimates[key]

    def level(self, key: str, arms: Sequence[str], values: Sequence[float]) -> Estimate:
        """Mean accuracy (pp) of ``arms`` (one per seed) with its interval; ``values`` are their
        accuracies, used when outputs are missing. ``key`` names it where arms are missing."""
        evidence = self.evidence(arms, values)
        parts = _parts(arms, evidence.shape[1] > 1, [key, *values])
        return self._cached(
            "level",
            parts,
            lambda seed: bootstrap_estimate(evidence, self.bootstrap, seed, bounds=(0.0, 100.0)),
        )

    def difference(
        self,
        key: str,
        first: tuple[Sequence[str], Sequence[float]],
        second: tuple[Sequence[str], Sequence[float]],
    ) -> Estimate:
        """Mean paired difference first − second (pp) of two lists of arms, paired by position
        (the same seed, or the same run), with the tests against 0 and within ±margin; images
        are paired when both sides have stored outputs on one test set, else seeds only."""
        paired = self._aligned([*first[0], *second[0]]) is not None
        a, b = (
            self.evidence(*side) if paired else np.asarray(side[1], dtype=float).reshape(-1, 1)
            for side in (first, second)
        )
        arms = [*first[0], "−", *second[0]]
        parts = _parts(arms, paired, [key, *first[1], "−", *second[1]])
        return self._cached(
            "difference",
            parts,
            lambda seed: bootstrap_estimate(
                a - b, self.bootstrap, seed, margin=self.margin, bounds=(-100.0, 100.0)
            ),
        )

    def flip_excess(self, arms: Sequence[str], flip_rates: Sequence[float]) -> Estimate:
        """Mean over runs (seeds of one cell) of flip rate − seed-to-seed disagreement (pp).

        Per run and test image: the share of reshuffles that changed the image's prediction
        (the run's flip rate where per-image counts were not stored) minus the share of the
        other seeds whose prediction of it differs from this run's; its mean is the run's flip
        rate minus its baseline. These per-run excesses (seeds × images) are resampled as every
        other quantity. Needs stored predictions of every arm on one test set and 3 seeds (with
        2 the two runs' baselines are one number, and a seed resample holding one of them has
        none): NaN otherwise."""
        found = self._aligned(arms)
        if found is None or len(arms) < 3:
            nan = math.nan
            return Estimate(nan, nan, nan, nan, nan, len(arms), 0)
        predicted = np.stack([predictions for predictions, _ in found])
        flips = np.stack(
            [
                self._flips(name, rate, predicted.shape[1])
                for name, rate in zip(arms, flip_rates, strict=True)
            ]
        )
        others = len(arms) - 1
        disagree = np.stack(
            [100.0 * (predicted != row).sum(0) / others for row in predicted]
        )  # per run and image: the share of the other seeds that predict it otherwise
        excess = flips - disagree
        return self._cached(
            "flip", arms, lambda seed: bootstrap_estimate(excess, self.bootstrap, seed)
        )

    def _flips(self, name: str, rate: float, images: int) -> np.ndarray:
        """Per image, the percentage of reshuffles that changed the arm's prediction; the run's
        flip rate (percent) at every image when per-image counts were not stored."""
        run_id, label = name.split(ARM_SEPARATOR, 1)
        outputs = self.outputs(run_id)
        counts = outputs.flips.get(label) if outputs is not None else None
        if counts is None or not outputs.reshuffles or len(counts) != images:
            return np.full(images, rate)
        return 100.0 * np.asarray(counts, dtype=float) / outputs.reshuffles


def _parts(arms: Sequence[str], images: bool, unnamed: list[object]) -> list[object]:
    """What seeds a quantity's draws: its arms (marked when only seeds are resampled), or, for
    a table without run ids, ``unnamed`` (the caller's key and the values)."""
    named = bool(arms) and all(ARM_SEPARATOR in name for name in arms if name != "−")
    if not named:
        return unnamed
    return list(arms) if images else ["seeds", *arms]
