"""Tests for bnstudy.data.files: seeded class-balanced subsets."""

import pytest
import torch

from bnstudy.data import balanced_subset


def test_balanced_subset_takes_floor_per_class_and_spreads_the_remainder():
    labels = torch.arange(10).repeat(5)  # 5 per class
    pick = balanced_subset(labels, 23, seed=0, what="train_size")
    assert len(pick) == 23 and torch.equal(pick, pick.sort().values)
    assert len(set(pick.tolist())) == 23
    assert sorted(labels[pick].bincount(minlength=10).tolist()) == [2] * 7 + [3] * 3
    again, other = balanced_subset(labels, 23, 0, "x"), balanced_subset(labels, 23, 1, "x")
    assert torch.equal(pick, again) and not torch.equal(pick, other)


def test_balanced_subset_gives_small_classes_all_they_have():
    labels = torch.tensor([0] * 2 + [1] * 10 + [2] * 10)
    counts = labels[balanced_subset(labels, 13, 0, "train_size")].bincount().tolist()
    assert counts[0] == 2 and sorted(counts[1:]) == [5, 6]


def test_balanced_subset_all_none_and_too_many():
    labels = torch.tensor([1, 0, 1, 1])
    assert balanced_subset(labels, None, 0, "x").tolist() == [0, 1, 2, 3]
    assert balanced_subset(labels, 4, 0, "x").tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="train_size=5 but only 4"):
        balanced_subset(labels, 5, 0, "train_size")
