"""Tests for bnstudy.resampling: evidence from stored predictions, paired across arms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bnstudy.resampling import Resampler, arm
from bnstudy.stats import Bootstrap
from bnstudy.store import TestOutputs as Outputs


def outputs_of(runs: dict[str, Outputs]) -> Resampler:
    """A resampler over the stored outputs ``runs`` (run_id -> outputs)."""
    return Resampler(runs.get, Bootstrap(1000), margin=1.0)


def test_both_arms_of_a_comparison_are_resampled_on_the_same_images() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200).tolist()
    runs = {
        f"r{seed}": Outputs(labels, {"eval": rng.integers(0, 2, 200).tolist()}, {}, None)
        for seed in range(4)
    }
    runs |= {
        f"c{seed}": Outputs(labels, {"eval": runs[f"r{seed}"].predictions["eval"]}, {}, None)
        for seed in range(4)
    }
    resampler = outputs_of(runs)
    first = ([arm(f"r{s}", "eval") for s in range(4)], [0.0] * 4)
    same = ([arm(f"c{s}", "eval") for s in range(4)], [0.0] * 4)
    # identical predictions: every paired replicate is exactly 0, although each arm varies
    difference = resampler.difference("k", first, same)
    assert (difference.mean, difference.low, difference.high) == (0, 0, 0)
    assert difference.images == 200 and difference.pvalue_equivalent < 0.01
    level = resampler.level("k", *first)
    assert level.high - level.low > 5


def test_runs_without_stored_outputs_fall_back_to_seeds() -> None:
    resampler = outputs_of({})
    estimate = resampler.level("k", [arm("a", "eval"), arm("b", "eval")], [90.0, 92.0])
    assert estimate.images == 1 and estimate.mean == pytest.approx(91)


def test_flip_excess_against_the_seed_to_seed_disagreement() -> None:
    labels = [0] * 10
    predictions = {0: [0] * 10, 1: [0] * 8 + [1] * 2, 2: [0] * 5 + [1] * 5}
    runs = {
        f"r{s}": Outputs(labels, {"same": p}, {"same": [1] * 10}, 10)
        for s, p in predictions.items()
    }
    resampler = outputs_of(runs)
    arms = [arm(f"r{s}", "same") for s in predictions]
    estimate = resampler.flip_excess(arms, [0.0, 0.0, 0.0])
    # per-image flips 1 of 10 reshuffles = 10 %; disagreements 20, 50, 30 % → baseline 33.3 %
    assert estimate.mean == pytest.approx(10 - 100 / 3)
    assert estimate.low < estimate.mean < estimate.high


def test_flip_excess_needs_three_seeds() -> None:
    labels = [0] * 10
    runs = {f"r{s}": Outputs(labels, {"same": [s % 2] * 10}, {}, None) for s in range(2)}
    estimate = outputs_of(runs).flip_excess([arm(f"r{s}", "same") for s in range(2)], [5.1, 24.9])
    assert estimate.n == 2 and math.isnan(estimate.mean) and math.isnan(estimate.pvalue)


def test_the_same_runs_get_the_same_interval_wherever_they_appear() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 50).tolist()
    runs = {
        f"g{s}": Outputs(labels, {"eval": rng.integers(0, 3, 50).tolist()}, {}, None)
        for s in range(3)
    }
    resampler = outputs_of(runs)
    arms = [arm(f"g{s}", "eval") for s in range(3)]
    # a control repeated at two axis values: different names, one interval
    assert resampler.level("at 4", arms, [0, 0, 0]) == resampler.level("at 32", arms, [0, 0, 0])
    fresh = outputs_of(runs).level("elsewhere", arms, [0, 0, 0])
    assert fresh == resampler.level("at 4", arms, [0, 0, 0])


def test_predictions_on_another_test_set_are_not_paired_by_image() -> None:
    short = Outputs([0, 1], {"eval": [0, 1, 1]}, {}, None)  # damaged: lengths differ
    other = Outputs([1, 0, 0], {"eval": [1, 0, 0]}, {}, None)  # another test set
    good = Outputs([0, 1, 1], {"eval": [0, 1, 0]}, {}, None)
    resampler = outputs_of({"a": good, "b": short, "c": other})
    assert resampler.correct(arm("b", "eval")) is None
    for pair in (["a", "b"], ["a", "c"]):
        arms = [arm(run, "eval") for run in pair]
        assert resampler.evidence(arms, [60.0, 70.0]).shape == (2, 1)  # seeds only


def test_without_stored_outputs_the_same_runs_still_get_the_same_interval() -> None:
    # seeds only (no predictions.json), named by different callers: one interval
    resampler = outputs_of({})
    arms = [arm(f"r{s}", "eval") for s in range(4)]
    values = [90.0, 92.0, 85.0, 95.0]
    summary, figure = resampler.level("summary|a", arms, values), resampler.level("b", arms, values)
    assert summary == figure and summary.images == 1
