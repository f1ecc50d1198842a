"""Tests for bnstudy.stats against hand-computed values and scipy's own intervals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from bnstudy import stats

T_975_1 = 12.706204736174707  # t quantile 0.975 at 1 degree of freedom
T_975_2 = 4.302652729749464  # ... at 2 degrees of freedom


def test_t_half_width_is_elementwise_and_nan_below_two() -> None:
    half = stats.t_half_width([math.sqrt(2), 1.0, 3.0], [2, 1, 0])
    assert half[0] == pytest.approx(T_975_1)
    assert np.isnan(half[1:]).all()


def test_interval_table_per_group() -> None:
    frame = pd.DataFrame(
        {"g": ["a", "a", "a", "b", "b", "c"], "v": [1.0, 2.0, 3.0, 10.0, math.nan, 7.0]}
    )
    table = stats.interval_table(frame, "v", ["g"]).set_index("g")
    assert list(table.index) == ["a", "b", "c"]
    assert table.loc["a", "ci_low"] == pytest.approx(2 - T_975_2 / math.sqrt(3))
    assert table.loc["a", "ci_high"] == pytest.approx(2 + T_975_2 / math.sqrt(3))
    assert (table.loc["b", "mean"], table.loc["b", "n"]) == (10.0, 1)
    assert math.isnan(table.loc["b", "ci_low"]) and math.isnan(table.loc["c", "ci_high"])


def test_paired_difference_pairs_on_keys_and_drops_unpaired() -> None:
    frame = pd.DataFrame(
        {
            "mode": ["eval", "eval", "eval", "train", "train", "train"],
            "run": ["r0", "r1", "r2", "r1", "r0", "r3"],
            "acc": [80.0, 70.0, 60.0, 75.0, 90.0, 50.0],
        }
    )
    pairs = stats.paired_difference(frame, "mode", "acc", ["run"], ("eval", "train"))
    pairs = pairs.set_index("run")
    assert sorted(pairs.index) == ["r0", "r1"]  # r2 and r3 have no partner
    assert pairs.loc["r0", "difference"] == -10.0
    assert (pairs.loc["r1", "first"], pairs.loc["r1", "second"]) == (70.0, 75.0)
    assert pairs["difference"].mean() == -7.5


def test_paired_difference_drops_nan_and_rejects_ambiguous_pairs() -> None:
    frame = pd.DataFrame(
        {"norm": ["bn", "gn", "bn", "gn"], "seed": [0, 0, 1, 1], "acc": [1.0, 2.0, math.nan, 3.0]}
    )
    pairs = stats.paired_difference(frame, "norm", "acc", ["seed"], ("bn", "gn"))
    assert list(pairs["seed"]) == [0] and list(pairs["difference"]) == [-1.0]
    doubled = pd.concat([frame, frame.head(1)])
    with pytest.raises(pd.errors.MergeError):
        stats.paired_difference(doubled, "norm", "acc", ["seed"], ("bn", "gn"))


def test_holm_and_benjamini_hochberg_against_hand_computation() -> None:
    p = [0.01, 0.04, 0.03, math.nan, 0.005]
    # Holm, m = 4: 0.005·4, 0.01·3, 0.03·2, then max(0.04·1, 0.06)
    assert np.allclose(stats.holm(p), [0.03, 0.06, 0.06, np.nan, 0.02], equal_nan=True)
    # BH: 0.005·4/1, 0.01·4/2, 0.03·4/3, 0.04·4/4, then the running minimum from the top
    assert np.allclose(
        stats.benjamini_hochberg(p), [0.02, 0.04, 0.04, np.nan, 0.02], equal_nan=True
    )
    assert stats.holm([]).size == 0 and stats.holm([0.9, 0.8]).max() == 1


def test_bootstrap_of_seeds_only_is_the_paired_t_test() -> None:
    values = np.array([-30.0, -21.0, -12.0])
    estimate = stats.bootstrap_estimate(values, stats.Bootstrap(4000), "k", margin=1.0)
    assert estimate.mean == pytest.approx(-21) and (estimate.n, estimate.images) == (3, 1)
    expected = scipy.stats.ttest_1samp(values, 0).pvalue  # 0.057
    assert estimate.pvalue == pytest.approx(expected, abs=0.01)
    expected = scipy.stats.t.interval(0.95, 2, loc=-21, scale=values.std(ddof=1) / math.sqrt(3))
    assert (estimate.low, estimate.high) == pytest.approx(expected, abs=1)
    assert estimate.pvalue_equivalent > 0.5


def test_accuracy_intervals_stay_within_0_and_100() -> None:
    # one seed perfect, one at 50 %: the t-interval runs past 100; an accuracy's stops there
    values = np.array([100.0, 50.0])
    assert 75 + T_975_1 * values.std(ddof=1) / math.sqrt(2) > 100
    estimate = stats.bootstrap_estimate(values, stats.Bootstrap(), "k", bounds=(0, 100))
    assert (estimate.low, estimate.high) == (0, 100)


def test_resampling_images_widens_the_interval_and_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    # 5 seeds each right on exactly 90 of 100 images: no seed-to-seed variation at all
    correct = np.stack([100.0 * (rng.permutation(100) < 90) for _ in range(5)])
    seeds_only = stats.bootstrap_estimate(correct.mean(1), stats.Bootstrap(), "k")
    crossed = stats.bootstrap_estimate(correct, stats.Bootstrap(), "k")
    assert seeds_only.high - seeds_only.low == 0
    assert crossed.high - crossed.low > 2 and crossed.images == 100
    assert stats.bootstrap_estimate(correct, stats.Bootstrap(), "k") == crossed
    assert stats.bootstrap_estimate(correct, stats.Bootstrap(seed=1), "k") != crossed


def test_crossed_replicates_share_the_image_draw_across_seeds() -> None:
    # every seed right on the same 50 of 100 images: a draw shared by all seeds keeps the
    # between-image variance (std 5 pp for 100 images); drawing within each seed would shrink
    # it by √5
    correct = np.tile(100.0 * (np.arange(100) < 50), (5, 1))
    replicates = stats.crossed_replicates(correct, 4000, np.random.default_rng(0))
    assert replicates.std() == pytest.approx(5.0, rel=0.1)


def test_equivalence_within_the_margin() -> None:
    close = stats.bootstrap_estimate(
        np.array([0.1, -0.1, 0.05, 0.0, -0.05]), stats.Bootstrap(), "k", margin=1.0
    )
    assert close.pvalue_equivalent < 0.01 and close.pvalue > 0.5
    far = stats.bootstrap_estimate(
        np.array([3.0, 2.0, 4.0, 3.5, 2.5]), stats.Bootstrap(), "k", margin=1.0
    )
    assert far.pvalue_equivalent > 0.5 and far.pvalue < 0.01


def test_adjustments_with_a_bound_on_the_true_hypotheses() -> None:
    # 4 tests of 2 claims (at most one true null each): multipliers min(2, 4 - j + 1)
    p = [0.01, 0.02, 0.5, 0.9]
    assert np.allclose(stats.holm(p, true_nulls=2), [0.02, 0.04, 1.0, 1.0])
    assert np.allclose(stats.holm(p), [0.04, 0.06, 1.0, 1.0])
    # BH with k = 2 in place of m = 4: 0.01·2/1, 0.02·2/2, 0.5·2/3, 0.9·2/4
    assert np.allclose(
        stats.benjamini_hochberg(p, true_nulls=2), [0.02, 0.02, 0.3333, 0.45], atol=1e-4
    )
