"""Tests for bnstudy.data.synthetic: shapes, determinism, independence and sizes."""

import pytest
import torch
from data_helpers import _assert_standardized, _load, _own_standardized

from bnstudy.data import Dataset


@pytest.mark.parametrize(
    ("name", "image_size", "shape", "classes"),
    [
        ("synthetic2d", None, (3, 32, 32), 10),
        ("synthetic2d", 8, (3, 8, 8), 10),
        ("synthetic2d", 64, (3, 64, 64), 10),
        ("synthetic3d", None, (1, 32, 32, 32), 6),
        ("synthetic3d", 12, (1, 12, 12, 12), 6),
    ],
)
def test_synthetic_shapes_dtypes_labels(name, image_size, shape, classes):
    data = _load(name, image_size=image_size)
    assert isinstance(data, Dataset)
    assert (data.num_classes, data.in_channels, data.spatial_dims) == (
        classes,
        shape[0],
        len(shape) - 1,
    )
    for split, n in ((data.train, 60), (data.test, 30)):
        assert split.x.shape == (n, *shape) and split.x.dtype == torch.float32
        assert split.y.shape == (n,) and split.y.dtype == torch.int64
        assert split.y.min() >= 0 and split.y.max() < classes
        assert torch.isfinite(split.x).all()
    assert data.train.y.bincount(minlength=classes).tolist() == [60 // classes] * classes


@pytest.mark.parametrize("name", ["synthetic2d", "synthetic3d"])
def test_synthetic_is_deterministic_per_seed(name):
    a, b, c = (_load(name, seed=seed, image_size=16) for seed in (3, 3, 4))
    for split in ("train", "test"):
        assert torch.equal(getattr(a, split).x, getattr(b, split).x)
        assert torch.equal(getattr(a, split).y, getattr(b, split).y)
        assert not torch.equal(getattr(a, split).x, getattr(c, split).x)


@pytest.mark.parametrize("name", ["synthetic2d", "synthetic3d"])
def test_synthetic_test_split_independent_of_train_size(name):
    small, large = (
        _load(name, train_size=20, image_size=12),
        _load(name, train_size=90, image_size=12),
    )
    assert torch.equal(small.test.y, large.test.y)
    # the train statistics differ, so compare the test images re-standardized on their own
    torch.testing.assert_close(_own_standardized(small.test.x), _own_standardized(large.test.x))


@pytest.mark.parametrize("name", ["synthetic2d", "synthetic3d"])
def test_synthetic_train_standardized_and_test_distinct(name):
    data = _load(name, image_size=16)
    _assert_standardized(data.train.x)
    train, test = data.train.x.flatten(1), data.test.x.flatten(1)
    assert torch.cdist(train, test).min() > 1.0  # no test image repeats a train image
    assert abs(data.test.x.mean().item()) < 0.5  # same distribution, so roughly centred too


@pytest.mark.parametrize(
    ("name", "sizes"), [("synthetic2d", (5000, 1000)), ("synthetic3d", (1000, 500))]
)
def test_synthetic_default_sizes(name, sizes):
    data = _load(name, train_size=None, test_size=None, image_size=4)
    assert (len(data.train.y), len(data.test.y)) == sizes


@pytest.mark.parametrize("kwargs", [{"train_size": 0}, {"test_size": -1}, {"image_size": 0}])
def test_synthetic_rejects_non_positive_sizes(kwargs):
    with pytest.raises(ValueError):
        _load("synthetic2d", **kwargs)
